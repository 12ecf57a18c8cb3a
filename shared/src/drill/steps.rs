//! The step machinery every scenario shares: a [`Step`] (events to one function, the decisions wanted, a
//! [`Verify`] on the resources), [`run_step`] delivering it and following the ledger and the resources
//! until the reaction and the recovery are seen, the [`Relay`] of one function's decisions to another
//! the way the suite's topic carries them ([`relay`]), and the helpers that name accounts and decisions
//! in the report ([`aws_in`], [`in_account`], [`account_label`], [`describe`], [`problem`]).
//!
//! The scenarios (`scenarios.rs`, `evacuation.rs`) and `az-outage` (`az_outage.rs`) build on it; it
//! uses none of them.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::deliver::Answer;
use super::events::envelope_notification;
use super::report::{DrillReport, StepReport};
use super::resources::{arc_view, capacity, group_members, in_service, record_answer};
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
    /// An AZ is evacuated (the service's recovery from losing it): in ARC, every one of
    /// `load_balancers` and `groups` has zone-evacuator's zonal shift away from `az_id` applied (traffic
    /// weight 0 there) and no shift away from another AZ; each group's desired capacity was raised to at
    /// least its [`Raised::to`] with that many members in service; and no evacuation of another AZ was
    /// decided since the step started.
    Evacuated { account: Option<String>, az_id: String, load_balancers: Vec<String>, groups: Vec<Raised> },
    /// None of `resources` (ARNs) has an active zonal shift, and each of `groups` (name, desired) has
    /// that desired capacity: nothing shifted, or every shift ended and the capacity put back.
    NotShifted { account: Option<String>, resources: Vec<String>, groups: Vec<(String, i32)> },
    /// `function` decided `action` with `outcome` since the step started, about each of `targets`
    /// (about anything, when empty).
    Decided { function: &'static str, action: String, outcome: String, targets: Vec<String> },
    /// Every one of these holds.
    All(Vec<Verify>),
}

impl Default for Verify {
    fn default() -> Self {
        Verify::All(vec![])
    }
}

/// A group an evacuation raises: its desired capacity `from` before, at least `to` after (by its
/// in-service members in the AZ, the share the other AZs must carry).
#[derive(Debug, Clone, PartialEq)]
pub struct Raised {
    pub name: String,
    pub arn: String,
    pub from: i32,
    pub to: i32,
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
    /// When the reaction starts in another function and reaches this one through the suite's topic (the
    /// healer's AZ short-circuit, which zone-evacuator subscribes to): the events go to that function,
    /// and its decisions are delivered to this one as the topic would.
    pub relay: Option<Relay>,
    /// Events delivered to the step's function later within the step, each batch after its pause from
    /// the one before (a second alarm clearing after the first; the re-check schedule's tick once a
    /// hysteresis has passed).
    pub later: Vec<(Duration, Vec<Value>)>,
}

impl Default for Step {
    fn default() -> Self {
        Step {
            name: String::new(),
            function: "",
            events: vec![],
            expected: String::new(),
            want: vec![],
            want_count: 1,
            verify: Verify::default(),
            relay: None,
            later: vec![],
        }
    }
}

/// The first function of a relayed step: it gets the step's events, and its decisions (at least
/// `want_count` of them with an outcome in `want`) go on to the step's function.
#[derive(Debug, Clone)]
pub struct Relay {
    pub from: &'static str,
    pub want: Vec<&'static str>,
    pub want_count: usize,
}

/// A running relay of one function's decisions to another ([`relay`]).
pub(super) struct Relaying {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Relaying {
    /// Relays what is left, waits for every delivery, and returns the problems the deliveries had.
    pub async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap_or_else(|e| vec![format!("the relay panicked: {e}")])
    }
}

/// Delivers each decision `from` records from `since` on to `to`, as the suite's topic delivers it to
/// a subscription filtered on `function` (SNS, the envelope and its message attributes), one delivery
/// per decision, until [`Relaying::finish`]. `None` when the deliverer's topic does that itself (a real
/// account: the subscription is the suite's own).
pub(super) fn relay(drill: &Drill, from: &'static str, to: &'static str, since: &str) -> Option<Relaying> {
    if drill.deliverer.topic_delivers_decisions() {
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, ledger, deliverer) = (stop.clone(), drill.ctx.ledger.clone(), drill.deliverer.clone());
    let topic = drill.ctx.config.topic_arn.clone().unwrap_or_default();
    let poll = drill.cfg.poll_interval.min(Duration::from_millis(500));
    let since = since.to_string();
    let task = tokio::spawn(async move {
        let mut seen = HashSet::new();
        let mut deliveries = Vec::new();
        let mut problems = Vec::new();
        loop {
            let stopping = flag.load(Ordering::SeqCst);
            match ledger.audit_since(&since).await {
                Ok(records) => {
                    for r in records.into_iter().filter(|r| r.function == from) {
                        if seen.insert(r.envelope.id.clone()) {
                            let (d, event) = (deliverer.clone(), envelope_notification(&topic, &r.envelope));
                            deliveries.push(tokio::spawn(async move { d.deliver(to, &event).await }));
                        }
                    }
                }
                Err(e) => problems.push(format!("relaying {from}'s decisions: {e}")),
            }
            if stopping {
                break;
            }
            tokio::time::sleep(poll).await;
        }
        for d in futures::future::join_all(deliveries).await {
            let answer = d.unwrap_or_else(|e| {
                Err(Error::Delivery { channel: "drill relay".into(), message: format!("the delivery panicked: {e}") })
            });
            problems.extend(problem(answer).map(|p| format!("{from}'s decision to {to}: {p}")));
        }
        problems
    });
    Some(Relaying { stop, task })
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

/// Delivers the step's events, all at once as AWS would (to the relay's first function, when the step
/// has one, whose decisions are relayed on; then, after the pause, the later events), then follows the
/// ledger and the resources until the reaction and the recovery are seen or the recovery timeout passes.
pub(super) async fn run_step(drill: &Drill, step: Step, report: &mut DrillReport) -> Result<()> {
    let t0 = chrono::Utc::now();
    let since = t0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let clock = Instant::now();
    let first = step.relay.as_ref().map(|r| r.from).unwrap_or(step.function);
    let relaying = step.relay.as_ref().and_then(|r| relay(drill, r.from, step.function, &since));
    let deliveries: Vec<(String, Value)> = step.events.iter().map(|e| (first.to_string(), e.clone())).collect();
    let mut answers: Vec<String> =
        drill.deliverer.deliver_all(deliveries).await.into_iter().filter_map(problem).collect();
    for (pause, events) in &step.later {
        tokio::time::sleep(*pause).await;
        let later: Vec<(String, Value)> = events.iter().map(|e| (step.function.to_string(), e.clone())).collect();
        answers.extend(drill.deliverer.deliver_all(later).await.into_iter().filter_map(problem));
    }
    let deadline = clock + drill.cfg.recovery_timeout;
    let mut detect_ms = None;
    let mut recover_ms = None;
    let mut records: Vec<AuditRecord>;
    let mut last_check = String::new();
    let mine = |r: &AuditRecord| r.function == step.function || r.function == first;
    loop {
        records = drill.ctx.ledger.audit_since(&since).await?.into_iter().filter(mine).collect();
        if detect_ms.is_none() {
            if let Some(first) = records.first() {
                let at = chrono::DateTime::parse_from_rfc3339(&first.time)
                    .map(|t| (t.with_timezone(&chrono::Utc) - t0).num_milliseconds().max(0) as u64)
                    .unwrap_or_else(|_| clock.elapsed().as_millis() as u64);
                detect_ms = Some(at);
            }
        }
        let count = |function: &str, want: &[&str]| {
            records.iter().filter(|r| r.function == function && want.contains(&r.outcome.as_str())).count()
        };
        let relayed = step.relay.as_ref().is_none_or(|r| count(r.from, &r.want) >= r.want_count);
        if relayed && count(step.function, &step.want) >= step.want_count {
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
    if let Some(r) = relaying {
        answers.extend(r.finish().await);
        // What the last relayed deliveries decided belongs to the step too.
        records = drill.ctx.ledger.audit_since(&since).await?.into_iter().filter(mine).collect();
    }
    for r in &records {
        if matches!(r.outcome.as_str(), "refused" | "duplicate") {
            report.guards_fired.push(describe(drill, r));
        }
    }
    let outcomes = |function: &str| -> Vec<&str> {
        records.iter().filter(|r| r.function == function).map(|r| r.outcome.as_str()).collect()
    };
    let mut observed = if records.is_empty() {
        format!("no decision by {first} within {}s", drill.cfg.recovery_timeout.as_secs())
    } else if first != step.function {
        format!(
            "decisions: {}: {}; {}: {}",
            first,
            join_or_none(&outcomes(first)),
            step.function,
            join_or_none(&outcomes(step.function))
        )
    } else {
        format!("decisions: {}", outcomes(step.function).join(", "))
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

fn join_or_none(v: &[&str]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Checks a verification; returns whether it holds and what was seen.
pub(super) async fn verify(drill: &Drill, v: &Verify, since: &chrono::DateTime<chrono::Utc>) -> Result<(bool, String)> {
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
        Verify::Evacuated { account, az_id, load_balancers, groups } => {
            let aws = &aws_in(drill, account.as_deref()).await?;
            let mut problems = Vec::new();
            let mut seen = Vec::new();
            for arn in load_balancers.iter().chain(groups.iter().map(|g| &g.arn)) {
                match arc_view(aws, arn).await? {
                    None => problems.push(format!("ARC does not manage {arn}")),
                    Some(view) => {
                        if !view.shifted_away_from(az_id) {
                            problems.push(format!(
                                "{} not shifted away from {az_id} (ARC: shifts away from {:?}, weights {:?})",
                                short(arn),
                                view.away_from(),
                                view.weights
                            ));
                        }
                        let others: Vec<String> = view.away_from().into_iter().filter(|a| a != az_id).collect();
                        if !others.is_empty() {
                            problems.push(format!("{} also shifted away from {others:?}", short(arn)));
                        }
                    }
                }
            }
            for g in groups {
                let c = capacity(aws, &g.name).await?;
                seen.push(format!("{} desired {} → {} ({} in service)", g.name, g.from, c.desired, c.total()));
                if c.desired < g.to || c.total() < g.to as usize {
                    problems.push(format!(
                        "{}: desired {} with {} in service, want at least {} (raised from {} by the AZ's share)",
                        g.name,
                        c.desired,
                        c.total(),
                        g.to,
                        g.from
                    ));
                }
            }
            let since_text = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let elsewhere: Vec<String> = drill
                .ctx
                .ledger
                .audit_since(&since_text)
                .await?
                .into_iter()
                .filter(|r| {
                    r.function == crate::zone::FUNCTION
                        && r.action == crate::zone::actions::EVACUATE
                        && r.outcome == "acted"
                        && r.target != *az_id
                })
                .map(|r| r.target)
                .collect();
            if !elsewhere.is_empty() {
                problems.push(format!("another AZ evacuated too: {elsewhere:?}"));
            }
            let n = load_balancers.len() + groups.len();
            let mut text = format!(
                "{} of {n} load balancers and groups shifted away from {az_id}; {}",
                n - problems.iter().filter(|p| p.contains("not shifted") || p.contains("ARC does not")).count(),
                seen.join(", ")
            );
            if !problems.is_empty() {
                text.push_str(&format!("; {}", problems.join("; ")));
            }
            Ok((problems.is_empty(), text))
        }
        Verify::NotShifted { account, resources, groups } => {
            let aws = &aws_in(drill, account.as_deref()).await?;
            let mut problems = Vec::new();
            for arn in resources {
                if let Some(view) = arc_view(aws, arn).await? {
                    if !view.shifts.is_empty() {
                        problems.push(format!("{} shifted away from {:?}", short(arn), view.away_from()));
                    }
                }
            }
            for (name, desired) in groups {
                let c = capacity(aws, name).await?;
                if c.desired != *desired {
                    problems.push(format!("{name} desired {} (want {desired})", c.desired));
                }
            }
            let text = if problems.is_empty() {
                format!("no zonal shift on the {} load balancers and groups, capacity as before", resources.len())
            } else {
                problems.join("; ")
            };
            Ok((problems.is_empty(), text))
        }
        Verify::Decided { function, action, outcome, targets } => {
            let since_text = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let found: Vec<String> = drill
                .ctx
                .ledger
                .audit_since(&since_text)
                .await?
                .into_iter()
                .filter(|r| r.function == *function && r.action == *action && r.outcome == *outcome)
                .map(|r| r.target)
                .collect();
            let missing: Vec<&String> = targets.iter().filter(|t| !found.contains(t)).collect();
            let ok = if targets.is_empty() { !found.is_empty() } else { missing.is_empty() };
            let text = match (targets.is_empty(), ok) {
                (true, true) => format!("{function} {action}: {outcome} ({})", found.join(", ")),
                (true, false) => format!("no {function} {action} {outcome}"),
                (false, true) => format!("{function} {action} {outcome} for {}", targets.join(", ")),
                (false, false) => format!("no {function} {action} {outcome} for {missing:?}"),
            };
            Ok((ok, text))
        }
    }
}

/// The last part of an ARN, for messages (`app/web/50dc…`, `autoScalingGroupName/web`).
fn short(arn: &str) -> &str {
    arn.rsplit_once(":loadbalancer/")
        .or_else(|| arn.rsplit_once(":autoScalingGroupName/"))
        .map(|(_, name)| name)
        .unwrap_or(arn)
}
