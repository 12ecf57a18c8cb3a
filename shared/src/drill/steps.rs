//! The step machinery every scenario shares: a [`Step`] (events to one function, the decisions wanted, a
//! [`Verify`] on the resources), [`run_step`] delivering it and following the ledger and the resources
//! until the reaction and the recovery are seen, and the helpers that name accounts and decisions in
//! the report ([`aws_in`], [`in_account`], [`account_label`], [`describe`], [`problem`]).
//!
//! The scenarios (`scenarios.rs`) and `az-outage` (`az_outage.rs`) build on it; it uses neither.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::deliver::Answer;
use super::report::{DrillReport, StepReport};
use super::resources::{group_members, in_service, record_answer};
use super::Drill;
use crate::clients::Aws;
use crate::error::{Error, Result};
use crate::fleet::Placed;
use crate::ledger::AuditRecord;
use crate::trigger::Scope;

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

/// ` in 111111111111` for a member account, nothing for the hub's.
pub(super) fn in_account(account: Option<&str>) -> String {
    account.map(|a| format!(" in {a}")).unwrap_or_default()
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
