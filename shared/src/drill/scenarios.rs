//! The drill scenarios: for each, the fault injected, the events delivered the way AWS would deliver
//! them, the reaction expected, and how recovery is verified against the resources themselves.
//!
//! | scenario | injected (live) | expected reaction | scored |
//! |---|---|---|---|
//! | `lose-instance` | one web instance stops | instance-healer replaces it through its group; the group is back at desired capacity without it | Hardware RTO: to the group verified back at capacity |
//! | `gray-az` | a gray failure in us-east-1a: its targets fail and slow down while their health checks pass, seen as the AZ's per-AZ load balancer alarms (`selfheal-az\|us-east-1a\|5xx\|<lb>`, `...\|latency\|...`) going to ALARM, delivered through EventBridge | zone-evacuator evacuates the AZ: the load balancer and the group shifted away from its AZ ID in ARC, the group's desired capacity raised by its members there first, the Multi-AZ writers there failed over, nothing for another AZ; then the alarms clear and, after the hysteresis, the re-check schedule ends the evacuation: shifts cancelled, capacity back | AZ RTO: to the evacuation verified (the end after it is the way back) |
//! | `two-az` | the per-AZ alarms of us-east-1a and us-east-1b go to ALARM at once | a region event: no zonal shift at all, capacity untouched, and zone-evacuator's critical `region-event` page (the region failover, with its approval, is the path); then the alarms clear | the scenario passes on the page, and the page is all it does: its RTO is **not recovered** — the honest score of a page |
//! | `lose-az` | every web instance in one AZ stops | the healer's `maxUnhealthy` short-circuit on the AZ (nothing replaced into a bad AZ) and its decision, through the suite's topic, makes zone-evacuator evacuate the AZ: load balancer and group shifted away from the AZ's ID, capacity raised in the others; then the drill restarts the instances and ends the evacuation as an operator would | AZ RTO: to the evacuation verified |
//! | `lose-primary-db` | the orders primary stops | db-failover promotes the best replica and repoints the database CNAME | Hardware RTO |
//! | `region-failover` | the primary region's health check fails | dns-failover flips the app record to the standby and db-failover promotes the accounts replica; then the check recovers and a failback restores the record | Region RTO: to the flip, the approval shown apart |
//! | `stale-backups` | (nothing: the tagged volumes have never been snapshotted) | backup-enforcer's sweep snapshots each one | RPO only |
//! | `az-outage` | one AZ of the larger fleet goes down: its instances stop, every database whose writer is there fails | every failed database promoted exactly once, all in parallel (the last within 1.5× the first's time); each group as the maxUnhealthy rule says, and the AZ evacuated: every load balancer and group shifted away, capacity raised (see [`super::az_outage`]) | AZ RTO: to the slowest recovery |
//!
//! `all` is the standard game day, in the order of [`Scenario::ALL`] (`gray-az` before `lose-az`, whose
//! healer signal keeps counting for `SELFHEAL_ZONE_SIGNAL_TTL_SECONDS` after it). `az-outage` runs when
//! named: it needs the larger fleet ([`super::architecture::Fleet`], `drill-cli provision --fleet`),
//! which the others do not. `two-az` runs when named, and is not in `all` because its outcome is a
//! race today: zone-evacuator judges each signal as it records it, so when the two AZs' alarms arrive
//! together one invocation can still see one AZ impaired and evacuate it while another sees both and
//! pages (seen in process). The drill then fails the scenario, says which resource was shifted, and
//! ends that evacuation after it; the standard game day stays a measure of the suite, not of that race.
//!
//! The zone scenarios expect what [`super::evacuation`] works out from the resources. Moto launches a
//! group's new members into its first subnet (us-east-1a's) whatever ARC says, so a raised capacity is
//! verified as the desired capacity and the members in service, not by where they land; and it scales
//! a group in by its oldest members, so after an evacuation has ended the group need not be balanced
//! over the AZs: `lose-az` loses the first AZ (of us-east-1a, b, c) whose loss the healer's
//! maxUnhealthy rule reads as an AZ's (us-east-1a on a fresh architecture), and `lose-instance` loses
//! a member in us-east-1a, where moto launches its replacement. The game day sets
//! `SELFHEAL_ZONE_MIN_SIGNALS=1`: the reference architecture has one load balancer, so its per-AZ
//! alarms are one resource's, and the default of 2 would want two load balancers' alarms.
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

use super::az_outage::{expected_group_outcome, GroupOutcome};
use super::evacuation::{end_after_drill, survey, Plan};
pub use super::events::{
    alarm_event, alarm_event_in, manual, manual_in, rds_event, rds_event_in, schedule_event, schedule_event_in,
};
use super::events::{ec2_alarm, per_az_alarm};
use super::report::{DrillReport, StepReport};
use super::resources::{
    in_service_by_az, require_drill_tag_ec2, require_drill_tag_rds, set_health_check_inverted, start_instances,
    stop_instances,
};
use super::steps::{aws_in, in_account, run_step, Relay, Step, Verify};
use super::{Architecture, Drill, Mode};
use crate::error::{Error, Result};
use crate::zone::FUNCTION as ZONE;

/// A game-day scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    LoseInstance,
    GrayAz,
    TwoAz,
    LoseAz,
    LosePrimaryDb,
    RegionFailover,
    ApprovalExpires,
    StaleBackups,
    AzOutage,
    RestoreTest,
}

impl Scenario {
    /// The standard game day (`all`): every scenario the reference architecture alone can run, but
    /// `two-az` (see the module documentation). `gray-az` comes before `lose-az`: the healer's AZ signal
    /// `lose-az` leads to counts for a while after it.
    pub const ALL: [Scenario; 8] = [
        Scenario::LoseInstance,
        Scenario::GrayAz,
        Scenario::LoseAz,
        Scenario::LosePrimaryDb,
        Scenario::ApprovalExpires,
        Scenario::RegionFailover,
        Scenario::StaleBackups,
        Scenario::RestoreTest,
    ];

    /// Every scenario, `az-outage` (which needs the larger fleet) included.
    pub const EVERY: [Scenario; 10] = [
        Scenario::LoseInstance,
        Scenario::GrayAz,
        Scenario::TwoAz,
        Scenario::LoseAz,
        Scenario::LosePrimaryDb,
        Scenario::ApprovalExpires,
        Scenario::RegionFailover,
        Scenario::StaleBackups,
        Scenario::AzOutage,
        Scenario::RestoreTest,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::LoseInstance => "lose-instance",
            Scenario::GrayAz => "gray-az",
            Scenario::TwoAz => "two-az",
            Scenario::LoseAz => "lose-az",
            Scenario::LosePrimaryDb => "lose-primary-db",
            Scenario::RegionFailover => "region-failover",
            Scenario::ApprovalExpires => "approval-expires",
            Scenario::StaleBackups => "stale-backups",
            Scenario::AzOutage => "az-outage",
            Scenario::RestoreTest => super::restore::SCENARIO,
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
    run_in(drill, scenario, mode, Some(arch)).await
}

/// Runs a scenario that needs no architecture (`restore-test`, in the drill's own account); any other
/// is reported as failed, naming what is missing.
pub async fn run_without_architecture(drill: &Drill, scenario: Scenario, mode: Mode) -> DrillReport {
    run_in(drill, scenario, mode, None).await
}

async fn run_in(drill: &Drill, scenario: Scenario, mode: Mode, arch: Option<&Architecture>) -> DrillReport {
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
        restores: vec![],
    };
    // Boxed: the scenario futures are large, and the drill may run on a small stack.
    let result = match arch {
        Some(arch) => Box::pin(run_inner(drill, scenario, mode, arch, &mut report)).await,
        None if scenario == Scenario::RestoreTest => super::restore::run(drill, mode, None, &mut report).await,
        None => Err(Error::Precondition(format!("{} needs SELFHEAL_DRILL_ARCHITECTURE", scenario.name()))),
    };
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
            let by_az = in_service_by_az(aws, &arch.asg_name).await?;
            let members: Vec<String> = by_az.iter().map(|(i, _)| i.clone()).collect();
            // A member in the first AZ, where moto launches the replacement: the group stays balanced.
            let victim = by_az
                .iter()
                .find(|(_, az)| az == super::architecture::AZS[0])
                .or(by_az.first())
                .map(|(i, _)| i.clone())
                .ok_or_else(|| Error::Precondition("the group has no instance".into()))?;
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
                    ..Step::default()
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
            let in_az = |az: &str| by_az.iter().filter(|(_, z)| z == az).count();
            let (max, min) = (drill.cfg.max_unhealthy_percent, drill.cfg.min_unhealthy);
            // The first AZ whose loss the healer reads as an AZ's (see the module documentation).
            let az = super::architecture::AZS
                .into_iter()
                .find(|az| {
                    expected_group_outcome(members.len(), in_az(az), az, max, min).0
                        == GroupOutcome::ShortCircuit { scope: format!("az:{az}") }
                })
                .ok_or_else(|| {
                    let spread: Vec<String> =
                        super::architecture::AZS.iter().map(|az| format!("{} in {az}", in_az(az))).collect();
                    Error::Precondition(format!(
                        "no AZ of {} holds members whose loss the healer's rule reads as an AZ's ({}): provision a \
                         fresh architecture",
                        arch.asg_name,
                        spread.join(", ")
                    ))
                })?;
            let victims: Vec<String> = by_az.iter().filter(|(_, z)| z == az).map(|(i, _)| i.clone()).collect();
            let plan = survey(drill, arch, az).await?;
            if !live {
                let step = dry_run_step(
                    drill,
                    web_account,
                    "instance-healer",
                    "replace",
                    &victims[0],
                    Verify::GroupUntouched {
                        account: owned(web_account),
                        asg: arch.asg_name.clone(),
                        members: members.clone(),
                    },
                );
                run_step(drill, step, report).await?;
                return run_step(drill, plan.dry_run_step(drill), report).await;
            }
            require_drill_tag_ec2(aws, &victims).await?;
            stop_instances(aws, &victims).await?;
            report.injected.push(format!(
                "stopped every instance in {az}{}: {}",
                in_account(web_account),
                victims.join(", ")
            ));
            let step = Step {
                name: format!("{az} lost: the healer short-circuits, zone-evacuator evacuates the AZ"),
                function: ZONE,
                events: victims.iter().map(|v| ec2_alarm(arch, v)).collect(),
                expected: format!(
                    "instance-healer's maxUnhealthy short-circuit on {az} (nothing replaced into a bad AZ, refused \
                     ×{}), and its decision, through the suite's topic, has zone-evacuator evacuate {az}: {}",
                    victims.len(),
                    plan.describe()
                ),
                want: vec!["acted"],
                want_count: 1,
                verify: Verify::All(vec![
                    Verify::GroupUntouched { account: owned(web_account), asg: arch.asg_name.clone(), members },
                    plan.verify(),
                ]),
                relay: Some(Relay { from: crate::healer::FUNCTION, want: vec!["refused"], want_count: victims.len() }),
                ..Step::default()
            };
            let result = run_step(drill, step, report).await;
            start_instances(aws, &victims).await?;
            report.injected.push(format!("restarted {} after the drill", victims.join(", ")));
            end_after_drill(drill, &[&plan], vec![], report).await?;
            result
        }
        Scenario::GrayAz => gray_az(drill, live, arch, report).await,
        Scenario::TwoAz => two_az(drill, live, arch, report).await,
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
                    ..Step::default()
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
            // A region failover is a large move: dns-failover parks it until listed approvers approve
            // (SELFHEAL_APPROVAL_ALWAYS, on by default). The drill plays them with the bare token, which
            // only break-glass accepts (SELFHEAL_APPROVAL_BREAK_GLASS, on in the local game day): the
            // drill is no approver AWS verified, and never pretends to be one.
            let asked = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            run_step(drill, awaits_approval(arch, health_alarm("ALARM"), &primary_value), report).await?;
            let token = parked_token(drill, "dns-failover", &asked).await?;
            report.injected.push(format!(
                "the drill approved the failover by break-glass (token {}…; SELFHEAL_APPROVAL_BREAK_GLASS)",
                &token[..8.min(token.len())]
            ));
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
                    ..Step::default()
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
                        ..Step::default()
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
                    ..Step::default()
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
                    ..Step::default()
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
                    ..Step::default()
                },
                report,
            )
            .await;
            set_health_check_inverted(aws, &arch.primary_health_check, false).await?;
            report.injected.push(format!("restored the primary's health check {}", arch.primary_health_check));
            outcome
        }
        Scenario::AzOutage => super::az_outage::run(drill, mode, arch, report).await,
        Scenario::RestoreTest => super::restore::run(drill, mode, Some(arch), report).await,
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
                    ..Step::default()
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

/// The per-AZ alarms of `az` (5xx and latency of the load balancer) changing to `state`.
fn per_az_alarms(arch: &Architecture, az: &str, state: &str) -> Result<Vec<Value>> {
    ["5xx", "latency"]
        .into_iter()
        .map(|signal| {
            per_az_alarm(arch, az, signal, state).ok_or_else(|| {
                Error::Precondition("the architecture has no load balancer, so no per-AZ alarms to deliver".into())
            })
        })
        .collect()
}

/// Refuses a game day whose per-AZ alarms cannot call an AZ impaired: each load balancer's alarms are
/// one resource, and zone-evacuator wants `SELFHEAL_ZONE_MIN_SIGNALS` of them.
fn alarms_suffice(drill: &Drill, arch: &Architecture) -> Result<()> {
    let lbs = arch.load_balancer_arn.iter().count();
    let min = drill.cfg.zone.min_signals as usize;
    if min > lbs {
        return Err(Error::Precondition(format!(
            "SELFHEAL_ZONE_MIN_SIGNALS is {min}: an AZ is impaired on the per-AZ alarms of {min} load balancers, and \
             the architecture has {lbs} (the local game day sets 1)"
        )));
    }
    Ok(())
}

/// `gray-az` (see the module documentation): evacuate us-east-1a on its per-AZ alarms, then end the
/// evacuation once they clear and the hysteresis has passed.
async fn gray_az(drill: &Drill, live: bool, arch: &Architecture, report: &mut DrillReport) -> Result<()> {
    let az = super::architecture::AZS[0];
    let plan = survey(drill, arch, az).await?;
    if !live {
        return run_step(drill, plan.dry_run_step(drill), report).await;
    }
    alarms_suffice(drill, arch)?;
    let lb = arch.load_balancer_dimension().unwrap_or("-");
    report.injected.push(format!(
        "a gray failure in {az}{}: the targets there answer 5xx and slowly while their health checks pass — delivered as \
         CloudWatch would report it (the emulator's targets serve nothing): {lb}'s per-AZ 5xx and latency alarms for \
         {az} to ALARM, through EventBridge",
        in_account(plan.account.as_deref())
    ));
    let outcome = run_step(
        drill,
        Step {
            name: format!("evacuate {az} on its per-AZ alarms"),
            function: ZONE,
            events: per_az_alarms(arch, az, "ALARM")?,
            expected: plan.describe(),
            want: vec!["acted"],
            want_count: 1,
            verify: plan.verify(),
            ..Step::default()
        },
        report,
    )
    .await;
    if outcome.is_ok() && report.steps.last().is_some_and(|s| s.passed) {
        // The way back: the alarms clear one after the other, and the re-check schedule's next tick
        // after the hysteresis ends the evacuation.
        let mut clears = per_az_alarms(arch, az, "OK")?;
        let second = clears.split_off(1);
        let hysteresis = drill.cfg.zone.hysteresis + Duration::from_secs(1);
        let tick = schedule_event_in(arch.home(), &format!("{}-zone-recheck", arch.prefix));
        report.injected.push(format!(
            "the gray failure ends: {az}'s alarms back to OK; {}s later the re-check schedule ticks",
            hysteresis.as_secs()
        ));
        run_step(
            drill,
            Step {
                name: format!("{az}'s alarms clear: after the hysteresis the evacuation ends"),
                function: ZONE,
                events: clears,
                expected: format!(
                    "after {}s clear (SELFHEAL_ZONE_HYSTERESIS_SECONDS), the next re-check ends the evacuation: every \
                     shift cancelled, each group's desired capacity back",
                    drill.cfg.zone.hysteresis.as_secs()
                ),
                want: vec!["acted"],
                // Each shift ended, and the evacuation.
                want_count: plan.resources().len() + 1,
                verify: plan.not_shifted(),
                later: vec![(Duration::ZERO, second), (hysteresis, vec![tick])],
                ..Step::default()
            },
            report,
        )
        .await?;
    }
    end_after_drill(drill, &[&plan], vec![], report).await?;
    outcome
}

/// `two-az` (see the module documentation): two AZs' alarms at once are a region event, paged, and
/// nothing is shifted.
async fn two_az(drill: &Drill, live: bool, arch: &Architecture, report: &mut DrillReport) -> Result<()> {
    let (a, b) = (super::architecture::AZS[0], super::architecture::AZS[1]);
    let plans: Vec<Plan> = vec![survey(drill, arch, a).await?, survey(drill, arch, b).await?];
    let nothing = plans[0].not_shifted();
    if !live {
        let mut step = plans[0].dry_run_step(drill);
        step.name = format!("dry-run evacuate {a} and {b}");
        step.events.extend(plans[1].dry_run_step(drill).events);
        step.want_count = 2;
        return run_step(drill, step, report).await;
    }
    alarms_suffice(drill, arch)?;
    // Both AZs' alarms interleaved, all at once.
    let (alarms_a, alarms_b) = (per_az_alarms(arch, a, "ALARM")?, per_az_alarms(arch, b, "ALARM")?);
    let events: Vec<Value> = alarms_a.into_iter().zip(alarms_b).flat_map(|(x, y)| [x, y]).collect();
    report.injected.push(format!(
        "gray failures in {a} and {b} at once{}: both AZs' per-AZ 5xx and latency alarms to ALARM, through EventBridge",
        in_account(plans[0].account.as_deref())
    ));
    let outcome = run_step(
        drill,
        Step {
            name: format!("{a} and {b} impaired at once: a region event, nothing shifted"),
            function: ZONE,
            events,
            expected:
                "zone-evacuator's critical region-event page (two AZs: the region failover, with its approval, is \
                       the path) and no zonal shift at all, capacity untouched — a page, not a recovery"
                    .into(),
            want: vec!["refused"],
            want_count: 1,
            verify: Verify::All(vec![
                Verify::Decided {
                    function: ZONE,
                    action: crate::zone::actions::REGION_EVENT.into(),
                    outcome: "refused".into(),
                    targets: vec![],
                },
                nothing,
            ]),
            ..Step::default()
        },
        report,
    )
    .await;
    let mut clears = per_az_alarms(arch, a, "OK")?;
    clears.extend(per_az_alarms(arch, b, "OK")?);
    end_after_drill(drill, &plans.iter().collect::<Vec<_>>(), clears, report).await?;
    outcome
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
        ..Step::default()
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
        ..Step::default()
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
