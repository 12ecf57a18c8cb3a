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
//!
//! In dry-run mode nothing is injected: each scenario sends its function a manual dry-run request for
//! the same target and expects a `dry-run` decision with nothing changed.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::deliver::Answer;
use super::report::{DrillReport, StepReport};
use super::{Architecture, Drill, Mode};
use crate::error::{Error, Result};
use crate::ledger::AuditRecord;

/// A game-day scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    LoseInstance,
    LoseAz,
    LosePrimaryDb,
    RegionFailover,
    StaleBackups,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::LoseInstance,
        Scenario::LoseAz,
        Scenario::LosePrimaryDb,
        Scenario::RegionFailover,
        Scenario::StaleBackups,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::LoseInstance => "lose-instance",
            Scenario::LoseAz => "lose-az",
            Scenario::LosePrimaryDb => "lose-primary-db",
            Scenario::RegionFailover => "region-failover",
            Scenario::StaleBackups => "stale-backups",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.iter().copied().find(|x| x.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|x| x.name()).collect();
            Error::malformed("drill", format!("unknown scenario {s:?}; known: {}, or all", names.join(", ")))
        })
    }
}

/// How a step's recovery is verified against the resources.
#[derive(Debug, Clone)]
pub enum Verify {
    /// The group has `desired` in-service members and none of `gone`.
    GroupRecovered { asg: String, desired: usize, gone: Vec<String> },
    /// Every one of `members` is still in the group (nothing was replaced).
    GroupUntouched { asg: String, members: Vec<String> },
    /// One of `replicas` is a promoted writer now, and when set the CNAME points at it.
    ReplicaPromoted { replicas: Vec<String>, cname: Option<(String, String)> },
    /// The record's answer (the PRIMARY set's, for failover pairs) is `value`.
    RecordAnswers { zone_id: String, name: String, value: String },
    /// Each volume has a snapshot the suite created after the step started.
    Snapshotted { volumes: Vec<String> },
    /// The listed DB instances are unchanged (still replicas of their source).
    StillReplicas { replicas: Vec<String> },
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

fn now_cw() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

fn sns_wrap(topic: &str, message: &Value) -> Value {
    json!({"Records": [{
        "EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{topic}:drill"),
        "Sns": {
            "Type": "Notification", "MessageId": uuid::Uuid::new_v4().to_string(), "TopicArn": topic,
            "Subject": "ALARM", "Message": message.to_string(),
            "Timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "SignatureVersion": "1", "Signature": "EXAMPLE", "SigningCertURL": "EXAMPLE", "UnsubscribeURL": "EXAMPLE",
            "MessageAttributes": {}
        }
    }]})
}

/// A CloudWatch alarm notification as SNS delivers it (each call is a new state change).
pub fn alarm_event(
    topic: &str,
    name: &str,
    state: &str,
    metric: &str,
    namespace: &str,
    dims: &[(&str, &str)],
) -> Value {
    let dimensions: Vec<Value> = dims.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
    let message = json!({
        "AlarmName": name, "AlarmDescription": "selfheal drill", "AWSAccountId": "123456789012",
        "NewStateValue": state, "NewStateReason": format!("drill: {metric} crossed its threshold"),
        "StateChangeTime": now_cw(), "Region": "US East (N. Virginia)",
        "AlarmArn": format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"),
        "OldStateValue": if state == "ALARM" { "OK" } else { "ALARM" },
        "Trigger": {"MetricName": metric, "Namespace": namespace, "StatisticType": "Statistic",
            "Statistic": "MAXIMUM", "Unit": null, "Dimensions": dimensions, "Period": 60, "EvaluationPeriods": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold", "Threshold": 1.0,
            "TreatMissingData": "missing", "EvaluateLowSampleCountPercentile": ""}
    });
    sns_wrap(topic, &message)
}

/// An RDS event as EventBridge delivers it.
pub fn rds_event(db: &str, category: &str, event_id: &str, message: &str) -> Value {
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "RDS DB Instance Event",
        "source": "aws.rds", "account": "123456789012",
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "region": "us-east-1",
        "resources": [format!("arn:aws:rds:us-east-1:123456789012:db:{db}")],
        "detail": {"EventCategories": [category], "SourceType": "DB_INSTANCE",
            "SourceArn": format!("arn:aws:rds:us-east-1:123456789012:db:{db}"),
            "Date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "Message": message, "SourceIdentifier": db, "EventID": event_id}
    })
}

/// The EventBridge schedule event.
pub fn schedule_event(rule: &str) -> Value {
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012",
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "region": "us-east-1",
        "resources": [format!("arn:aws:events:us-east-1:123456789012:rule/{rule}")], "detail": {}
    })
}

/// A manual invocation.
pub fn manual(action: &str, target: &str, dry_run: bool, force: bool, params: Value) -> Value {
    json!({"source": "selfheal.manual", "action": action, "target": target, "dryRun": dry_run, "force": force,
           "reason": "drill", "requestId": format!("drill-{}", uuid::Uuid::new_v4()), "params": params})
}

fn ec2_alarm(arch: &Architecture, instance: &str) -> Value {
    alarm_event(
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
    match scenario {
        Scenario::LoseInstance => {
            let members = in_service(aws, &arch.asg_name).await?;
            let victim =
                members.first().cloned().ok_or_else(|| Error::Precondition("the group has no instance".into()))?;
            let step = if live {
                require_drill_tag_ec2(aws, std::slice::from_ref(&victim)).await?;
                stop_instances(aws, std::slice::from_ref(&victim)).await?;
                report.injected.push(format!("stopped {victim} in {}", arch.asg_name));
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
                        asg: arch.asg_name.clone(),
                        desired: arch.asg_desired as usize,
                        gone: vec![victim.clone()],
                    },
                }
            } else {
                dry_run_step(
                    "instance-healer",
                    "replace",
                    &victim,
                    Verify::GroupUntouched { asg: arch.asg_name.clone(), members: members.clone() },
                )
            };
            run_step(drill, step, report).await
        }
        Scenario::LoseAz => {
            let by_az = in_service_by_az(aws, &arch.asg_name).await?;
            let members: Vec<String> = by_az.iter().map(|(i, _)| i.clone()).collect();
            let az = super::provision::AZS[0];
            let victims: Vec<String> = by_az.iter().filter(|(_, z)| z == az).map(|(i, _)| i.clone()).collect();
            if victims.is_empty() {
                return Err(Error::Precondition(format!("no in-service instance in {az}")));
            }
            if !live {
                let step = dry_run_step(
                    "instance-healer",
                    "replace",
                    &victims[0],
                    Verify::GroupUntouched { asg: arch.asg_name.clone(), members },
                );
                return run_step(drill, step, report).await;
            }
            require_drill_tag_ec2(aws, &victims).await?;
            stop_instances(aws, &victims).await?;
            report.injected.push(format!("stopped every instance in {az}: {}", victims.join(", ")));
            let step = Step {
                name: format!("short-circuit on {az}'s outage"),
                function: "instance-healer",
                events: victims.iter().map(|v| ec2_alarm(arch, v)).collect(),
                expected: "maxUnhealthy fires for the AZ: nothing replaced, a human paged with the evidence".into(),
                want: vec!["refused"],
                want_count: victims.len(),
                verify: Verify::GroupUntouched { asg: arch.asg_name.clone(), members },
            };
            let result = run_step(drill, step, report).await;
            start_instances(aws, &victims).await?;
            report.injected.push(format!("restarted {} after the drill", victims.join(", ")));
            result
        }
        Scenario::LosePrimaryDb => {
            let primary = arch.db_primary.clone();
            let replicas = arch.db_replicas.clone();

            let step = if live {
                require_drill_tag_rds(aws, &primary).await?;
                aws.rds()
                    .stop_db_instance()
                    .db_instance_identifier(&primary)
                    .send()
                    .await
                    .map_err(|e| Error::aws("rds", "StopDBInstance", e))?;
                report.injected.push(format!("stopped the primary database {primary}"));
                Step {
                    name: "promote the best replica".into(),
                    function: "db-failover",
                    events: vec![rds_event(
                        &primary,
                        "failure",
                        "RDS-EVENT-0031",
                        "The DB instance has failed due to an incompatible configuration or an underlying storage issue.",
                    )],
                    expected: format!("one of {} promoted and {} repointed at it", replicas.join(", "), arch.db_record),
                    want: vec!["acted"],
                    want_count: 1,
                    verify: Verify::ReplicaPromoted {
                        replicas: replicas.clone(),
                        cname: Some((arch.zone_id.clone(), arch.db_record.clone())),
                    },
                }
            } else {
                let mut s = dry_run_step(
                    "db-failover",
                    "failover",
                    &primary,
                    Verify::StillReplicas { replicas: replicas.clone() },
                );
                s.events = vec![manual("failover", &primary, true, true, json!({}))];
                s
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
                let mut s =
                    dry_run_step("dns-failover", "failover", &arch.app_record, app_answers(arch, primary_value));
                s.events =
                    vec![manual("failover", &arch.app_record, true, false, json!({"zone": arch.zone_id, "type": "A"}))];
                return run_step(drill, s, report).await;
            }
            set_health_check_inverted(aws, &arch.primary_health_check, true).await?;
            report
                .injected
                .push(format!("failed the primary region's health check {} (inverted it)", arch.primary_health_check));
            run_step(
                drill,
                Step {
                    name: "flip the app record to the standby".into(),
                    function: "dns-failover",
                    events: vec![health_alarm("ALARM")],
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
                        events: vec![manual(
                            "failover",
                            db,
                            false,
                            true,
                            json!({"replica": replica, "mode": "promote"}),
                        )],
                        expected: format!("{replica} promoted"),
                        want: vec!["acted"],
                        want_count: 1,
                        verify: Verify::ReplicaPromoted { replicas: vec![replica.clone()], cname: None },
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
        Scenario::StaleBackups => {
            let step = if live {
                report
                    .injected
                    .push(format!("none: {} tagged volumes have never been snapshotted", arch.backup_volumes.len()));
                Step {
                    name: "scheduled sweep".into(),
                    function: "backup-enforcer",
                    events: vec![schedule_event(&format!("{}-backup-sweep", arch.prefix))],
                    expected: format!("a fresh snapshot of each of {} volumes", arch.backup_volumes.len()),
                    want: vec!["acted"],
                    want_count: arch.backup_volumes.len(),
                    verify: Verify::Snapshotted { volumes: arch.backup_volumes.clone() },
                }
            } else {
                let mut s = dry_run_step("backup-enforcer", "sweep", "sweep", Verify::Snapshotted { volumes: vec![] });
                s.events = vec![json!({"source": "selfheal.manual", "action": "sweep", "dryRun": true,
                    "requestId": format!("drill-{}", uuid::Uuid::new_v4())})];
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

fn dry_run_step(function: &'static str, action: &str, target: &str, verify: Verify) -> Step {
    Step {
        name: format!("dry-run {action} {target}"),
        function,
        events: vec![manual(action, target, true, true, json!({}))],
        expected: "a dry-run decision and nothing changed".into(),
        want: vec!["dry-run"],
        want_count: 1,
        verify,
    }
}

fn describe(r: &AuditRecord) -> String {
    format!("{} {} {}: {} ({})", r.function, r.action, r.target, r.outcome, r.envelope.reason)
}

/// Delivers the step's events, then follows the ledger and the resources until the reaction and the
/// recovery are seen or the recovery timeout passes.
async fn run_step(drill: &Drill, step: Step, report: &mut DrillReport) -> Result<()> {
    let t0 = chrono::Utc::now();
    let since = t0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let clock = Instant::now();
    let mut answers = Vec::new();
    for event in &step.events {
        match drill.deliverer.deliver(step.function, event).await {
            Ok(Answer::FunctionError(e)) => answers.push(format!("function error: {e}")),
            Ok(_) => {}
            Err(e) => answers.push(format!("delivery failed: {e}")),
        }
    }
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
            report.guards_fired.push(describe(r));
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
        actions: records.iter().map(describe).collect(),
        passed: recover_ms.is_some(),
    });
    Ok(())
}

/// Checks a verification; returns whether it holds and what was seen.
async fn verify(drill: &Drill, v: &Verify, since: &chrono::DateTime<chrono::Utc>) -> Result<(bool, String)> {
    let aws = &drill.ctx.aws;
    match v {
        Verify::GroupRecovered { asg, desired, gone } => {
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
        Verify::GroupUntouched { asg, members } => {
            let now = group_members(aws, asg).await?;
            let missing: Vec<&String> = members.iter().filter(|m| !now.contains(m)).collect();
            Ok((missing.is_empty(), format!("{asg} members replaced: {missing:?}")))
        }
        Verify::ReplicaPromoted { replicas, cname } => {
            let mut promoted = None;
            for replica in replicas {
                let db = aws
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
            for v in volumes {
                let snaps = aws
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
        Verify::StillReplicas { replicas } => {
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

/// The answer of a record: the PRIMARY set's value for a failover pair, the heaviest for weighted, the
/// value for a simple record.
async fn record_answer(aws: &crate::clients::Aws, zone_id: &str, name: &str) -> Result<String> {
    let out = aws
        .route53()
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .start_record_name(name)
        .send()
        .await
        .map_err(|e| Error::aws("route53", "ListResourceRecordSets", e))?;
    let norm = |s: &str| s.trim_end_matches('.').to_ascii_lowercase();
    let sets: Vec<_> = out.resource_record_sets().iter().filter(|s| norm(s.name()) == norm(name)).collect();
    let value_of = |s: &aws_sdk_route53::types::ResourceRecordSet| {
        s.resource_records().first().map(|r| r.value().to_string()).unwrap_or_default()
    };
    if let Some(p) =
        sets.iter().find(|s| s.failover() == Some(&aws_sdk_route53::types::ResourceRecordSetFailover::Primary))
    {
        return Ok(value_of(p));
    }
    if let Some(w) = sets.iter().filter(|s| s.weight().is_some()).max_by_key(|s| s.weight().unwrap_or(0)) {
        return Ok(value_of(w));
    }
    Ok(sets.first().map(|s| value_of(s)).unwrap_or_default())
}

async fn group_members(aws: &crate::clients::Aws, asg: &str) -> Result<Vec<String>> {
    Ok(in_service_by_az_all(aws, asg).await?.into_iter().map(|(i, _, _)| i).collect())
}

async fn in_service(aws: &crate::clients::Aws, asg: &str) -> Result<Vec<String>> {
    Ok(in_service_by_az(aws, asg).await?.into_iter().map(|(i, _)| i).collect())
}

async fn in_service_by_az(aws: &crate::clients::Aws, asg: &str) -> Result<Vec<(String, String)>> {
    Ok(in_service_by_az_all(aws, asg)
        .await?
        .into_iter()
        .filter(|(_, _, state)| state == "InService")
        .map(|(i, az, _)| (i, az))
        .collect())
}

/// (instance, AZ, lifecycle state) of every member, sorted by instance id.
async fn in_service_by_az_all(aws: &crate::clients::Aws, asg: &str) -> Result<Vec<(String, String, String)>> {
    let out = aws
        .autoscaling()
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(asg)
        .send()
        .await
        .map_err(|e| Error::aws("autoscaling", "DescribeAutoScalingGroups", e))?;
    let group = out
        .auto_scaling_groups()
        .first()
        .ok_or_else(|| Error::NotFound { kind: "Auto Scaling group", id: asg.to_string() })?;
    let mut members: Vec<(String, String, String)> = group
        .instances()
        .iter()
        .map(|i| {
            (
                i.instance_id().unwrap_or_default().to_string(),
                i.availability_zone().unwrap_or_default().to_string(),
                i.lifecycle_state().map(|s| s.as_str().to_string()).unwrap_or_default(),
            )
        })
        .collect();
    members.sort();
    Ok(members)
}

async fn require_drill_tag_ec2(aws: &crate::clients::Aws, ids: &[String]) -> Result<()> {
    let out = aws
        .ec2()
        .describe_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| Error::aws("ec2", "DescribeInstances", e))?;
    for r in out.reservations() {
        for i in r.instances() {
            let tagged = i.tags().iter().any(|t| t.key() == Some(super::DRILL_TAG) && t.value() == Some("true"));
            if !tagged {
                return Err(Error::Precondition(format!(
                    "{} does not carry {}=true: live drills only touch drill-tagged resources",
                    i.instance_id().unwrap_or("?"),
                    super::DRILL_TAG
                )));
            }
        }
    }
    Ok(())
}

async fn require_drill_tag_rds(aws: &crate::clients::Aws, db: &str) -> Result<()> {
    let out = aws
        .rds()
        .describe_db_instances()
        .db_instance_identifier(db)
        .send()
        .await
        .map_err(|e| Error::aws("rds", "DescribeDBInstances", e))?;
    let tagged = out
        .db_instances()
        .first()
        .map(|i| i.tag_list().iter().any(|t| t.key() == Some(super::DRILL_TAG) && t.value() == Some("true")))
        .unwrap_or(false);
    if tagged {
        Ok(())
    } else {
        Err(Error::Precondition(format!(
            "{db} does not carry {}=true: live drills only touch drill-tagged resources",
            super::DRILL_TAG
        )))
    }
}

async fn stop_instances(aws: &crate::clients::Aws, ids: &[String]) -> Result<()> {
    aws.ec2()
        .stop_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| Error::aws("ec2", "StopInstances", e))?;
    Ok(())
}

async fn start_instances(aws: &crate::clients::Aws, ids: &[String]) -> Result<()> {
    aws.ec2()
        .start_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| Error::aws("ec2", "StartInstances", e))?;
    Ok(())
}

async fn set_health_check_inverted(aws: &crate::clients::Aws, id: &str, inverted: bool) -> Result<()> {
    aws.route53()
        .update_health_check()
        .health_check_id(id)
        .inverted(inverted)
        .send()
        .await
        .map_err(|e| Error::aws("route53", "UpdateHealthCheck", e))?;
    Ok(())
}
