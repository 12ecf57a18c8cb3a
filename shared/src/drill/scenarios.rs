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
//! fleet ([`super::provision::Fleet`], `drill-cli provision --fleet`), which the others do not.
//!
//! Over several accounts ([`super::provision::provision_accounts`]) each fault is injected and each
//! recovery verified in the account the resource lives in (the drill acts there through its member
//! role, as the functions do), and every event says that account the way AWS would: EventBridge's
//! `account`, the alarm's ARN and `AWSAccountId`, a manual invocation's `account` and `region`.
//!
//! In dry-run mode nothing is injected: each scenario sends its function a manual dry-run request for
//! the same target and expects a `dry-run` decision with nothing changed.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::deliver::Answer;
pub use super::events::{
    alarm_event, alarm_event_in, manual, manual_in, rds_event, rds_event_in, schedule_event, schedule_event_in,
};
use super::report::{DrillReport, StepReport};
use super::resources::{
    group_members, in_service, in_service_by_az, record_answer, require_drill_tag_ec2, require_drill_tag_rds,
    set_health_check_inverted, start_instances, stop_instances,
};
use super::{Architecture, Drill, Mode};
use crate::clients::Aws;
use crate::error::{Error, Result};
use crate::fleet::Placed;
use crate::ledger::AuditRecord;
use crate::trigger::Scope;

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

/// How a step's recovery is verified against the resources. `account`: the member account the
/// resources live in (`None`: the hub's); DNS is always the hub's.
#[derive(Debug, Clone)]
pub enum Verify {
    /// The group has `desired` in-service members and none of `gone`.
    GroupRecovered { account: Option<String>, asg: String, desired: usize, gone: Vec<String> },
    /// Every one of `members` is still in the group (nothing was replaced).
    GroupUntouched { account: Option<String>, asg: String, members: Vec<String> },
    /// One of `replicas` is a promoted writer now, and when set the (hub's) CNAME points at it.
    ReplicaPromoted { account: Option<String>, replicas: Vec<String>, cname: Option<(String, String)> },
    /// The record's answer (the PRIMARY set's, for failover pairs) is `value`.
    RecordAnswers { zone_id: String, name: String, value: String },
    /// Each volume (with its member account, `None` for the hub's) has a snapshot the suite created
    /// after the step started.
    Snapshotted { volumes: Vec<(String, Option<String>)> },
    /// The listed DB instances are unchanged (still replicas of their source).
    StillReplicas { account: Option<String>, replicas: Vec<String> },
    /// Every one of these holds.
    All(Vec<Verify>),
}

/// One step: an event to one function, the decisions wanted, and the verification.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub function: &'static str,
    pub events: Vec<Value>,
    pub expected: String,
    /// Outcomes that count as the reaction (`acted`, `refused`, `dry-run`, ...).
    pub want: Vec<&'static str>,
    /// How many decisions with a wanted outcome are needed.
    pub want_count: usize,
    pub verify: Verify,
}

/// The drill's clients in member account `account` (through its member role, the way the functions
/// act there), or its own for the hub (`None`).
pub async fn aws_in(drill: &Drill, account: Option<&str>) -> Result<Aws> {
    let Some(account) = account else { return Ok(drill.ctx.aws.clone()) };
    let trigger = crate::trigger::parse_event(&json!({
        "source": crate::trigger::MANUAL_SOURCE, "action": "drill", "requestId": "drill-game-day"
    }))?
    .pop()
    .ok_or_else(|| Error::malformed("drill", "no trigger"))?;
    let scope = Scope { account: Some(account.to_string()), region: None };
    match drill.ctx.at(&scope, &trigger).await? {
        Placed::Here(ctx) => Ok(ctx.aws),
        Placed::Refused(e) => Err(Error::Precondition(format!("the drill cannot act in {account}: {}", e.reason))),
    }
}

/// The status-check alarm of a web instance, from the account the web tier lives in.
pub(super) fn ec2_alarm(arch: &Architecture, instance: &str) -> Value {
    alarm_event_in(
        &arch.account_id(arch.web_account.as_ref()),
        &arch.topic_arn,
        &format!("{}-{instance}-status-check", arch.prefix),
        "ALARM",
        "StatusCheckFailed",
        "AWS/EC2",
        &[("InstanceId", instance)],
    )
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
            let az = super::provision::AZS[0];
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

/// ` in 111111111111` for a member account, nothing for the hub's.
pub(super) fn in_account(account: Option<&str>) -> String {
    account.map(|a| format!(" in {a}")).unwrap_or_default()
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

/// The account a decision acted in, as the report names it: `hub` for the hub's own.
pub(super) fn account_label(drill: &Drill, r: &AuditRecord) -> String {
    match r.envelope.target.account.as_deref() {
        Some(a) if Some(a) != drill.ctx.config.fleet.home_account.as_deref() => a.to_string(),
        _ => "hub".to_string(),
    }
}

pub(super) fn describe(drill: &Drill, r: &AuditRecord) -> String {
    format!(
        "{} {} {} in {}: {} ({})",
        r.function,
        r.action,
        r.envelope.target.id,
        account_label(drill, r),
        r.outcome,
        r.envelope.reason
    )
}

/// A delivery's answer as a problem to report, if it is one.
pub(super) fn problem(answer: Result<Answer>) -> Option<String> {
    match answer {
        Ok(Answer::FunctionError(e)) => Some(format!("function error: {e}")),
        Ok(_) => None,
        Err(e) => Some(format!("delivery failed: {e}")),
    }
}

/// Delivers the step's events, all at once as AWS would, then follows the ledger and the resources until the reaction and the
/// recovery are seen or the recovery timeout passes.
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

pub(super) async fn run_step(drill: &Drill, step: Step, report: &mut DrillReport) -> Result<()> {
    let t0 = chrono::Utc::now();
    let since = t0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let clock = Instant::now();
    let deliveries: Vec<(String, Value)> = step.events.iter().map(|e| (step.function.to_string(), e.clone())).collect();
    let answers: Vec<String> = drill.deliverer.deliver_all(deliveries).await.into_iter().filter_map(problem).collect();
    let deadline = clock + drill.cfg.recovery_timeout;
    let mut detect_ms = None;
    let mut recover_ms = None;
    let mut records: Vec<AuditRecord>;
    let mut last_check = String::new();
    loop {
        records =
            drill.ctx.ledger.audit_since(&since).await?.into_iter().filter(|r| r.function == step.function).collect();
        if detect_ms.is_none() {
            if let Some(first) = records.first() {
                let at = chrono::DateTime::parse_from_rfc3339(&first.time)
                    .map(|t| (t.with_timezone(&chrono::Utc) - t0).num_milliseconds().max(0) as u64)
                    .unwrap_or_else(|_| clock.elapsed().as_millis() as u64);
                detect_ms = Some(at);
            }
        }
        let wanted = records.iter().filter(|r| step.want.contains(&r.outcome.as_str())).count();
        if wanted >= step.want_count {
            let (ok, observed) = verify(drill, &step.verify, &t0).await?;
            last_check = observed;
            if ok {
                recover_ms = Some(clock.elapsed().as_millis() as u64);
                break;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(drill.cfg.poll_interval.min(Duration::from_secs(5))).await;
    }
    for r in &records {
        if matches!(r.outcome.as_str(), "refused" | "duplicate") {
            report.guards_fired.push(describe(drill, r));
        }
    }
    let outcomes: Vec<&str> = records.iter().map(|r| r.outcome.as_str()).collect();
    let mut observed = if records.is_empty() {
        format!("no decision by {} within {}s", step.function, drill.cfg.recovery_timeout.as_secs())
    } else {
        format!("decisions: {}", outcomes.join(", "))
    };
    if !last_check.is_empty() {
        observed.push_str(&format!("; {last_check}"));
    }
    if !answers.is_empty() {
        observed.push_str(&format!("; {}", answers.join("; ")));
    }
    report.steps.push(StepReport {
        name: step.name,
        function: step.function.into(),
        expected: step.expected,
        observed,
        detect_ms,
        recover_ms,
        actions: records.iter().map(|r| describe(drill, r)).collect(),
        accounts: {
            let mut a: Vec<String> = records.iter().map(|r| account_label(drill, r)).collect();
            a.sort_by_key(|l| (l != "hub", l.clone()));
            a.dedup();
            a
        },
        passed: recover_ms.is_some(),
    });
    Ok(())
}

/// Checks a verification; returns whether it holds and what was seen.
async fn verify(drill: &Drill, v: &Verify, since: &chrono::DateTime<chrono::Utc>) -> Result<(bool, String)> {
    let aws = &drill.ctx.aws;
    match v {
        Verify::All(all) => {
            let mut ok = true;
            let mut seen = Vec::new();
            for v in all {
                let (holds, what) = Box::pin(verify(drill, v, since)).await?;
                ok &= holds;
                seen.push(what);
            }
            Ok((ok, seen.join("; ")))
        }
        Verify::GroupRecovered { account, asg, desired, gone } => {
            let aws = &aws_in(drill, account.as_deref()).await?;
            let members = in_service(aws, asg).await?;
            let lingering: Vec<&String> = gone.iter().filter(|g| members.contains(g)).collect();
            let ok = members.len() >= *desired && lingering.is_empty();
            Ok((
                ok,
                format!(
                    "{asg} has {} in service (want {desired}), lost ones still in it: {lingering:?}",
                    members.len()
                ),
            ))
        }
        Verify::GroupUntouched { account, asg, members } => {
            let aws = &aws_in(drill, account.as_deref()).await?;
            let now = group_members(aws, asg).await?;
            let missing: Vec<&String> = members.iter().filter(|m| !now.contains(m)).collect();
            Ok((missing.is_empty(), format!("{asg} members replaced: {missing:?}")))
        }
        Verify::ReplicaPromoted { account, replicas, cname } => {
            let db_aws = aws_in(drill, account.as_deref()).await?;
            let mut promoted = None;
            for replica in replicas {
                let db = db_aws
                    .rds()
                    .describe_db_instances()
                    .db_instance_identifier(replica)
                    .send()
                    .await
                    .map_err(|e| Error::aws("rds", "DescribeDBInstances", e))?;
                let Some(inst) = db.db_instances().first() else { continue };
                let tagged = inst.tag_list().iter().any(|t| t.key() == Some("selfheal:promoted-from"));
                if tagged || inst.read_replica_source_db_instance_identifier().is_none() {
                    let endpoint = inst.endpoint().and_then(|e| e.address()).unwrap_or("").to_string();
                    promoted = Some((replica.clone(), endpoint));
                    break;
                }
            }
            let Some((replica, endpoint)) = promoted else {
                return Ok((false, format!("none of {} promoted", replicas.join(", "))));
            };
            let mut ok = true;
            let mut seen = format!("{replica} promoted");
            if let Some((zone, name)) = cname {
                let answer = record_answer(aws, zone, name).await?;
                ok = answer.trim_end_matches('.') == endpoint.trim_end_matches('.');
                seen.push_str(&format!("; {name} -> {answer}"));
            }
            Ok((ok, seen))
        }
        Verify::RecordAnswers { zone_id, name, value } => {
            let answer = record_answer(aws, zone_id, name).await?;
            Ok((answer == *value, format!("{name} answers {answer}")))
        }
        Verify::Snapshotted { volumes } => {
            let mut missing = Vec::new();
            for (v, account) in volumes {
                let snaps = aws_in(drill, account.as_deref())
                    .await?
                    .ec2()
                    .describe_snapshots()
                    .owner_ids("self")
                    .filters(aws_sdk_ec2::types::Filter::builder().name("volume-id").values(v).build())
                    .send()
                    .await
                    .map_err(|e| Error::aws("ec2", "DescribeSnapshots", e))?;
                let fresh = snaps
                    .snapshots()
                    .iter()
                    .any(|s| s.start_time().map(|t| t.secs() >= since.timestamp() - 5).unwrap_or(false));
                if !fresh {
                    missing.push(v.clone());
                }
            }
            Ok((
                missing.is_empty(),
                format!("{} of {} volumes snapshotted", volumes.len() - missing.len(), volumes.len()),
            ))
        }
        Verify::StillReplicas { account, replicas } => {
            let aws = &aws_in(drill, account.as_deref()).await?;
            let mut changed = Vec::new();
            for r in replicas {
                let db = aws
                    .rds()
                    .describe_db_instances()
                    .db_instance_identifier(r)
                    .send()
                    .await
                    .map_err(|e| Error::aws("rds", "DescribeDBInstances", e))?;
                let still = db
                    .db_instances()
                    .first()
                    .map(|i| !i.tag_list().iter().any(|t| t.key() == Some("selfheal:promoted-from")))
                    .unwrap_or(false);
                if !still {
                    changed.push(r.clone());
                }
            }
            Ok((changed.is_empty(), format!("replicas changed: {changed:?}")))
        }
    }
}
