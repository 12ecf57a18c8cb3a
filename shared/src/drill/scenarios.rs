//! The drill scenarios: for each, the fault injected, the events delivered the way AWS would deliver
//! them, the reaction expected, and how recovery is verified against the resources themselves.
//!
//! | scenario | injected (live) | expected reaction |
//! |---|---|---|
//! | `lose-instance` | one web instance stops | instance-healer replaces it through its group; the group is back at desired capacity without it |
//! | `lose-az` | every web instance in one AZ stops | the `maxUnhealthy` short-circuit (an AZ event is upstream trouble, like Kubernetes MachineHealthCheck): nothing replaced, a human paged; then the drill restarts them |
//! | `lose-primary-db` | the orders primary stops | db-failover promotes the best replica and repoints the database CNAME |
//! | `region-failover` | the primary region's health check fails | dns-failover flips the app record to the standby and db-failover promotes the accounts replica; then the check recovers and a failback restores the record |
//! | `stale-backups` | (nothing: the tagged volumes have never been snapshotted) | backup-enforcer's sweep snapshots each one |
//! | `az-outage` | one AZ of the larger fleet goes down: its instances stop, every database whose writer is there fails | every failed database promoted exactly once, all in parallel (the last within 1.5× the first's time); each group as the maxUnhealthy rule says (see [`super::az_outage`]) |
//!
//! `all` is the first five, the standard game day. `az-outage` runs when named: it needs the larger
//! fleet ([`super::architecture::Fleet`], `drill-cli provision --fleet`), which the others do not.
//!
//! Over several accounts (`drill-cli provision --accounts N`) each fault is injected and each
//! recovery verified in the account the resource lives in (the drill acts there through its member
//! role, as the functions do), and every event says that account the way AWS would: EventBridge's
//! `account`, the alarm's ARN and `AWSAccountId`, a manual invocation's `account` and `region`.
//!
//! In dry-run mode nothing is injected: each scenario sends its function a manual dry-run request for
//! the same target and expects a `dry-run` decision with nothing changed.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::events::ec2_alarm;
pub use super::events::{
    alarm_event, alarm_event_in, manual, manual_in, rds_event, rds_event_in, schedule_event, schedule_event_in,
};
use super::report::{DrillReport, StepReport};
use super::resources::{
    in_service, in_service_by_az, require_drill_tag_ec2, require_drill_tag_rds, set_health_check_inverted,
    start_instances, stop_instances,
};
use super::steps::{aws_in, in_account, run_step, Step, Verify};
use super::{Architecture, Drill, Mode};
use crate::error::{Error, Result};

/// A game-day scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    LoseInstance,
    LoseAz,
    LosePrimaryDb,
    RegionFailover,
    ApprovalExpires,
    StaleBackups,
    AzOutage,
}

impl Scenario {
    /// The standard game day (`all`): every scenario the reference architecture alone can run.
    pub const ALL: [Scenario; 6] = [
        Scenario::LoseInstance,
        Scenario::LoseAz,
        Scenario::LosePrimaryDb,
        Scenario::ApprovalExpires,
        Scenario::RegionFailover,
        Scenario::StaleBackups,
    ];

    /// Every scenario, `az-outage` (which needs the larger fleet) included.
    pub const EVERY: [Scenario; 7] = [
        Scenario::LoseInstance,
        Scenario::LoseAz,
        Scenario::LosePrimaryDb,
        Scenario::ApprovalExpires,
        Scenario::RegionFailover,
        Scenario::StaleBackups,
        Scenario::AzOutage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::LoseInstance => "lose-instance",
            Scenario::LoseAz => "lose-az",
            Scenario::LosePrimaryDb => "lose-primary-db",
            Scenario::RegionFailover => "region-failover",
            Scenario::ApprovalExpires => "approval-expires",
            Scenario::StaleBackups => "stale-backups",
            Scenario::AzOutage => "az-outage",
        }
    }

    /// Whether the scenario needs the larger fleet provisioned (`drill-cli provision --fleet`).
    pub fn needs_fleet(self) -> bool {
        self == Scenario::AzOutage
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::EVERY.iter().copied().find(|x| x.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::EVERY.iter().map(|x| x.name()).collect();
            Error::malformed("drill", format!("unknown scenario {s:?}; known: {}, or all", names.join(", ")))
        })
    }
}

/// Runs one scenario and reports; failures inside a scenario are reported, not raised.
pub async fn run(drill: &Drill, scenario: Scenario, mode: Mode, arch: &Architecture) -> DrillReport {
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut report = DrillReport {
        scenario: scenario.name().into(),
        mode: if mode == Mode::Live { "live".into() } else { "dry-run".into() },
        started_at,
        injected: vec![],
        steps: vec![],
        guards_fired: vec![],
        passed: false,
        total_ms: 0,
        resources: vec![],
    };
    // Boxed: the scenario futures are large, and the drill may run on a small stack.
    let result = Box::pin(run_inner(drill, scenario, mode, arch, &mut report)).await;
    if let Err(e) = result {
        report.steps.push(StepReport {
            name: "scenario".into(),
            function: "drill".into(),
            expected: "the scenario runs to the end".into(),
            observed: format!("drill error: {e}"),
            detect_ms: None,
            recover_ms: None,
            actions: vec![],
            accounts: vec![],
            passed: false,
        });
    }
    report.passed = !report.steps.is_empty() && report.steps.iter().all(|s| s.passed);
    report.total_ms = started.elapsed().as_millis() as u64;
    report
}

async fn run_inner(
    drill: &Drill,
    scenario: Scenario,
    mode: Mode,
    arch: &Architecture,
    report: &mut DrillReport,
) -> Result<()> {
    let live = mode == Mode::Live;
    let aws = &drill.ctx.aws;
    let web_account = arch.web_member();
    let db_account = arch.db_member();
    let owned = |a: Option<&str>| a.map(str::to_string);
    match scenario {
        Scenario::LoseInstance => {
            let aws = &aws_in(drill, web_account).await?;
            let members = in_service(aws, &arch.asg_name).await?;
            let victim =
                members.first().cloned().ok_or_else(|| Error::Precondition("the group has no instance".into()))?;
            let step = if live {
                require_drill_tag_ec2(aws, std::slice::from_ref(&victim)).await?;
                stop_instances(aws, std::slice::from_ref(&victim)).await?;
                report.injected.push(format!("stopped {victim} in {}{}", arch.asg_name, in_account(web_account)));
                Step {
                    name: "replace the lost instance".into(),
                    function: "instance-healer",
                    events: vec![ec2_alarm(arch, &victim)],
                    expected: format!(
                        "{victim} replaced through {}; group back to {}",
                        arch.asg_name, arch.asg_desired
                    ),
                    want: vec!["acted"],
                    want_count: 1,
                    verify: Verify::GroupRecovered {
                        account: owned(web_account),
                        asg: arch.asg_name.clone(),
                        desired: arch.asg_desired as usize,
                        gone: vec![victim.clone()],
                    },
                }
            } else {
                dry_run_step(
                    drill,
                    web_account,
                    "instance-healer",
                    "replace",
                    &victim,
                    Verify::GroupUntouched {
                        account: owned(web_account),
                        asg: arch.asg_name.clone(),
                        members: members.clone(),
                    },
                )
            };
            run_step(drill, step, report).await
        }
        Scenario::LoseAz => {
            let aws = &aws_in(drill, web_account).await?;
            let by_az = in_service_by_az(aws, &arch.asg_name).await?;
            let members: Vec<String> = by_az.iter().map(|(i, _)| i.clone()).collect();
            let az = super::architecture::AZS[0];
            let victims: Vec<String> = by_az.iter().filter(|(_, z)| z == az).map(|(i, _)| i.clone()).collect();
            if victims.is_empty() {
                return Err(Error::Precondition(format!("no in-service instance in {az}")));
            }
            if !live {
                let step = dry_run_step(
                    drill,
                    web_account,
                    "instance-healer",
                    "replace",
                    &victims[0],
                    Verify::GroupUntouched { account: owned(web_account), asg: arch.asg_name.clone(), members },
                );
                return run_step(drill, step, report).await;
            }
            require_drill_tag_ec2(aws, &victims).await?;
            stop_instances(aws, &victims).await?;
            report.injected.push(format!(
                "stopped every instance in {az}{}: {}",
                in_account(web_account),
                victims.join(", ")
            ));
            let step = Step {
                name: format!("short-circuit on {az}'s outage"),
                function: "instance-healer",
                events: victims.iter().map(|v| ec2_alarm(arch, v)).collect(),
                expected: "maxUnhealthy fires for the AZ: nothing replaced, a human paged with the evidence".into(),
                want: vec!["refused"],
                want_count: victims.len(),
                verify: Verify::GroupUntouched { account: owned(web_account), asg: arch.asg_name.clone(), members },
            };
            let result = run_step(drill, step, report).await;
            start_instances(aws, &victims).await?;
            report.injected.push(format!("restarted {} after the drill", victims.join(", ")));
            result
        }
        Scenario::LosePrimaryDb => {
            let primary = arch.db_primary.clone();
            let replicas = arch.db_replicas.clone();

            let aws = &aws_in(drill, db_account).await?;
            let step = if live {
                require_drill_tag_rds(aws, &primary).await?;
                aws.rds()
                    .stop_db_instance()
                    .db_instance_identifier(&primary)
                    .send()
                    .await
                    .map_err(|e| Error::aws("rds", "StopDBInstance", e))?;
                report.injected.push(format!("stopped the primary database {primary}{}", in_account(db_account)));
                Step {
                    name: "promote the best replica".into(),
                    function: "db-failover",
                    events: vec![rds_event_in(
                        &arch.account_id(arch.db_account.as_ref()),
                        &primary,
                        "failure",
                        "RDS-EVENT-0031",
                        "The DB instance has failed due to an incompatible configuration or an underlying storage issue.",
                    )],
                    expected: format!("one of {} promoted and {} repointed at it", replicas.join(", "), arch.db_record),
                    want: vec!["acted"],
                    want_count: 1,
                    verify: Verify::ReplicaPromoted {
                        account: owned(db_account),
                        replicas: replicas.clone(),
                        cname: Some((arch.zone_id.clone(), arch.db_record.clone())),
                    },
                }
            } else {
                dry_run_step(
                    drill,
                    db_account,
                    "db-failover",
                    "failover",
                    &primary,
                    Verify::StillReplicas { account: owned(db_account), replicas: replicas.clone() },
                )
            };
            run_step(drill, step, report).await
        }
        Scenario::RegionFailover => {
            let primary_value = arch.primary_ip.clone();
            let standby_value = arch.secondary_ip.clone();
            let health_alarm = |state: &str| {
                alarm_event(
                    &arch.topic_arn,
                    &format!("{}-primary-health", arch.prefix),
                    state,
                    "HealthCheckStatus",
                    "AWS/Route53",
                    &[("HealthCheckId", arch.primary_health_check.as_str())],
                )
            };
            if !live {
                let mut s = dry_run_step(
                    drill,
                    None,
                    "dns-failover",
                    "failover",
                    &arch.app_record,
                    app_answers(arch, primary_value),
                );
                s.events =
                    vec![manual("failover", &arch.app_record, true, false, json!({"zone": arch.zone_id, "type": "A"}))];
                return run_step(drill, s, report).await;
            }
            set_health_check_inverted(aws, &arch.primary_health_check, true).await?;
            report
                .injected
                .push(format!("failed the primary region's health check {} (inverted it)", arch.primary_health_check));
            // A region failover is a large move: dns-failover parks it until a human approves
            // (SELFHEAL_APPROVAL_ALWAYS, on by default). The drill plays the human.
            let asked = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            run_step(drill, awaits_approval(arch, health_alarm("ALARM"), &primary_value), report).await?;
            let token = parked_token(drill, "dns-failover", &asked).await?;
            report.injected.push(format!("a human approved the failover (token {}…)", &token[..8.min(token.len())]));
            run_step(
                drill,
                Step {
                    name: "approved, the failover re-checks and flips the app record to the standby".into(),
                    function: "dns-failover",
                    events: vec![crate::approval::settle_payload(crate::approval::APPROVE, &token)],
                    expected: format!("{} answers {standby_value}", arch.app_record),
                    want: vec!["acted"],
                    want_count: 1,
                    verify: app_answers(arch, standby_value.clone()),
                },
                report,
            )
            .await?;
            if let (Some(db), Some(replica)) = (&arch.region_db_primary, &arch.region_db_replica) {
                run_step(
                    drill,
                    Step {
                        name: "promote the standby region's replica".into(),
                        function: "db-failover",
                        events: vec![manual_in(
                            drill,
                            db_account,
                            "failover",
                            db,
                            false,
                            true,
                            json!({"replica": replica, "mode": "promote"}),
                        )],
                        expected: format!("{replica} promoted{}", in_account(db_account)),
                        want: vec!["acted"],
                        want_count: 1,
                        verify: Verify::ReplicaPromoted {
                            account: owned(db_account),
                            replicas: vec![replica.clone()],
                            cname: None,
                        },
                    },
                    report,
                )
                .await?;
            }
            set_health_check_inverted(aws, &arch.primary_health_check, false).await?;
            report.injected.push(format!("restored the primary's health check {}", arch.primary_health_check));
            let failback =
                || manual("failback", &arch.app_record, false, false, json!({"zone": arch.zone_id, "type": "A"}));
            run_step(
                drill,
                Step {
                    name: "an immediate failback is held by the anti-flap window".into(),
                    function: "dns-failover",
                    events: vec![failback()],
                    expected: format!("refused; {} still answers {standby_value}", arch.app_record),
                    want: vec!["refused"],
                    want_count: 1,
                    verify: app_answers(arch, standby_value.clone()),
                },
                report,
            )
            .await?;
            let window = drill.ctx.config.cooldown + Duration::from_secs(1);
            report.injected.push(format!("waited out the {}s anti-flap window", window.as_secs()));
            tokio::time::sleep(window).await;
            run_step(
                drill,
                Step {
                    name: "fail back after the anti-flap window".into(),
                    function: "dns-failover",
                    events: vec![failback()],
                    expected: format!("{} answers {primary_value} again", arch.app_record),
                    want: vec!["acted"],
                    want_count: 1,
                    verify: app_answers(arch, primary_value),
                },
                report,
            )
            .await
        }
        Scenario::ApprovalExpires => {
            let primary_value = arch.primary_ip.clone();
            let health_alarm = alarm_event(
                &arch.topic_arn,
                &format!("{}-primary-health", arch.prefix),
                "ALARM",
                "HealthCheckStatus",
                "AWS/Route53",
                &[("HealthCheckId", arch.primary_health_check.as_str())],
            );
            if !live {
                let mut s = dry_run_step(
                    drill,
                    None,
                    "dns-failover",
                    "failover",
                    &arch.app_record,
                    app_answers(arch, primary_value),
                );
                s.events =
                    vec![manual("failover", &arch.app_record, true, false, json!({"zone": arch.zone_id, "type": "A"}))];
                return run_step(drill, s, report).await;
            }
            set_health_check_inverted(aws, &arch.primary_health_check, true).await?;
            report
                .injected
                .push(format!("failed the primary region's health check {} (inverted it)", arch.primary_health_check));
            run_step(drill, awaits_approval(arch, health_alarm, &primary_value), report).await?;
            let ttl = drill.ctx.config.approval.ttl + Duration::from_secs(1);
            report.injected.push(format!("nobody answered the approval request for {}s", ttl.as_secs()));
            tokio::time::sleep(ttl).await;
            let expire = json!({"source": crate::trigger::MANUAL_SOURCE, "action": crate::approval::EXPIRE});
            let outcome = run_step(
                drill,
                Step {
                    name: "unanswered, the approval expires and nothing moves".into(),
                    function: "dns-failover",
                    events: vec![expire],
                    expected: format!(
                        "the decision closed as expired; {} still answers {primary_value}",
                        arch.app_record
                    ),
                    want: vec!["refused"],
                    want_count: 1,
                    verify: app_answers(arch, primary_value.clone()),
                },
                report,
            )
            .await;
            set_health_check_inverted(aws, &arch.primary_health_check, false).await?;
            report.injected.push(format!("restored the primary's health check {}", arch.primary_health_check));
            outcome
        }
        Scenario::AzOutage => super::az_outage::run(drill, mode, arch, report).await,
        Scenario::StaleBackups => {
            let volumes: Vec<(String, Option<String>)> = arch
                .backup_volumes
                .iter()
                .enumerate()
                .map(|(i, v)| (v.clone(), owned(arch.volume_member(i))))
                .collect();
            let mut places: Vec<Option<String>> = volumes.iter().map(|(_, a)| a.clone()).collect();
            places.sort();
            places.dedup();
            let step = if live {
                report
                    .injected
                    .push(format!("none: {} tagged volumes have never been snapshotted", arch.backup_volumes.len()));
                Step {
                    name: "scheduled sweep".into(),
                    function: "backup-enforcer",
                    events: vec![schedule_event(&format!("{}-backup-sweep", arch.prefix))],
                    expected: if places.len() > 1 {
                        format!(
                            "a fresh snapshot of each of {} volumes, in {} accounts",
                            arch.backup_volumes.len(),
                            places.len()
                        )
                    } else {
                        format!("a fresh snapshot of each of {} volumes", arch.backup_volumes.len())
                    },
                    want: vec!["acted"],
                    want_count: arch.backup_volumes.len(),
                    verify: Verify::Snapshotted { volumes },
                }
            } else {
                let mut s = dry_run_step(
                    drill,
                    None,
                    "backup-enforcer",
                    "sweep",
                    "sweep",
                    Verify::Snapshotted { volumes: vec![] },
                );
                // A manual sweep covers the account it names: one per account holding volumes.
                s.events = places
                    .iter()
                    .map(|a| {
                        let mut v = json!({"source": "selfheal.manual", "action": "sweep", "dryRun": true,
                            "requestId": format!("drill-{}", uuid::Uuid::new_v4())});
                        if let Some(a) = a {
                            v["account"] = json!(a);
                            v["region"] = json!(drill.ctx.home_region().unwrap_or_else(|| "us-east-1".to_string()));
                        }
                        v
                    })
                    .collect();
                s.want_count = arch.backup_volumes.len();
                s
            };
            run_step(drill, step, report).await
        }
    }
}

/// The application record answers `value`.
fn app_answers(arch: &Architecture, value: impl Into<String>) -> Verify {
    Verify::RecordAnswers { zone_id: arch.zone_id.clone(), name: arch.app_record.clone(), value: value.into() }
}

fn dry_run_step(
    drill: &Drill,
    account: Option<&str>,
    function: &'static str,
    action: &str,
    target: &str,
    verify: Verify,
) -> Step {
    Step {
        name: format!("dry-run {action} {target}"),
        function,
        events: vec![manual_in(drill, account, action, target, true, true, json!({}))],
        expected: "a dry-run decision and nothing changed".into(),
        want: vec!["dry-run"],
        want_count: 1,
        verify,
    }
}

/// The step where a region failover is parked for a human: nothing moves, the record still answers
/// `primary_value`.
fn awaits_approval(arch: &Architecture, alarm: Value, primary_value: &str) -> Step {
    Step {
        name: "the region failover waits for a human's approval".into(),
        function: "dns-failover",
        events: vec![alarm],
        expected: format!("parked as awaiting-approval; {} still answers {primary_value}", arch.app_record),
        want: vec!["awaiting-approval"],
        want_count: 1,
        verify: app_answers(arch, primary_value.to_string()),
    }
}

/// The token of the decision `function` parked for approval since `since`, from the audit trail (the
/// notification carries the same).
async fn parked_token(drill: &Drill, function: &str, since: &str) -> Result<String> {
    drill
        .ctx
        .ledger
        .audit_since(since)
        .await?
        .into_iter()
        .rev()
        .filter(|r| r.function == function && r.outcome == "awaiting-approval")
        .find_map(|r| r.envelope.details.get("approval")?.get("token")?.as_str().map(str::to_string))
        .ok_or_else(|| Error::Precondition(format!("{function} parked no decision for approval since {since}")))
}
