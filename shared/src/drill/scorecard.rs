//! The resilience scorecard: each drill result scored against the RTO and RPO targets of its
//! disruption type ([`super::targets`]): met, missed (by how much), not recovered, or not measured
//! (and why).
//!
//! **RTO is the time until the service is recovered**: to a step that acted and whose recovery was
//! verified on the resources (traffic or capacity back, the record flipped, the replica promoted) —
//! never to a refusal, a park for approval or a page. What each step came to is read from its
//! decisions' outcomes ([`StepOutcome`]):
//! - a step whose decisions acted and whose recovery was verified **recovered**;
//! - a step whose decisions are only refusals, failures or duplicates (the short-circuit's page, a
//!   guard's refusal) ended in a **page**, and the scenario is **not recovered** (a failure: "the outcome
//!   was a page (refused ×2), not a recovery"), however well the drill's own expectation was met;
//! - a step **parked** for a human's approval counts only when a later step of the same function
//!   recovered (the approved move): the RTO runs through the park, and the time from the park to the
//!   approval is shown beside it ("of which 42.0s waiting for approval"). The RTO is judged with that
//!   wait in it — users wait for the human too — so the wait is shown, never subtracted;
//! - a step with no decision of its own (a check over other steps) counts by its verification; a
//!   scenario with no step that acted recovered nothing.
//!
//! | scenario | disruption type | RTO measured as | RPO measured as |
//! |---|---|---|---|
//! | `lose-instance` | Hardware | injection to the group verified back at capacity | not measured: a stateless web tier has no data to lose |
//! | `lose-az` | AZ | injection to the last step's recovery verified; a short-circuit and a page alone is not recovered | not measured: stateless |
//! | `lose-primary-db` | Hardware (the fault is the instance's: a stopped instance, RDS-EVENT-0031's storage failure) | injection to the replica promoted and the CNAME repointed | the promoted replica's lag at promotion (db-failover's `lagSeconds`) |
//! | `region-failover` | Region | injection to the flip verified (the steps after it — the standby replica's promotion, the failback — are the way back, not the recovery), the approval wait shown | the promoted replica's lag at promotion |
//! | `stale-backups` | Software | not measured: no outage, a backup gap is scored by its RPO | the age of the newest snapshot (or of the volume, if it never had one) when the backup was needed, the worst volume's |
//! | `az-outage` | AZ | the delivery to the slowest step's recovery (every step is timed from the one delivery); a group left to a page is not recovered | the largest lag among the promotions |
//! | `restore-test` | Software (data lost or corrupted: the way back is a restore) | each restore's request to the scratch resource verified; the slowest restore is the scenario's; a restore that failed (or left its scratch resource behind) is not recovered, with its reason | each recovery point's age when its restore started, the oldest; an S3 version restore's age is shown, not scored (versioning keeps every write) |
//! | `approval-expires` | none: it checks a guard (an approval left to expire), not a recovery | not measured | not measured |
//!
//! Steps run in turn, each timed from its own start; the scenario's clock places them from the ledger's
//! times of their decisions (without those, end to end). A dry run injects nothing: its RTO and RPO
//! are not measured. A scenario whose recovery was not verified within the drill's window missed its
//! RTO when the window is past the target (by at least the difference), and is not measured when the
//! window was shorter than the target.
//!
//! Everything here is pure except [`gather`], which reads the evidence (the ledger's decisions, the
//! snapshots' ages) once the scenarios have run.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::report::{tally, DrillReport, StepReport};
use super::restores::RestoreResult;
use super::targets::{Disruption, Target, Targets};
use crate::telemetry::Metric;

/// The disruption type a scenario scores against.
pub fn disruption(scenario: &str) -> Option<Disruption> {
    Some(match scenario {
        "lose-instance" => Disruption::Hardware,
        // `two-az` is scored too: its honest outcome is a page (a region event), so "not recovered".
        "lose-az" | "az-outage" | "gray-az" | "two-az" => Disruption::Az,
        "lose-primary-db" => Disruption::Hardware,
        "region-failover" => Disruption::Region,
        "stale-backups" => Disruption::Software,
        // Data lost or corrupted: the recovery is a restore from backup.
        "restore-test" => Disruption::Software,
        // `approval-expires` (and any scenario not listed) checks a guard, not a recovery: unscored.
        _ => return None,
    })
}

/// How a scenario's steps make up its recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Course {
    /// One after the other, each timed from its own start: every step is part of the recovery.
    InTurn,
    /// In turn, and the service is back at the first step that acts; the steps after it are the way
    /// back (`region-failover`: the flip is the recovery; the standby replica's promotion is scored by
    /// the RPO, the failback is the return home; `gray-az`: the evacuation is the recovery, its end
    /// after the hysteresis is the return home).
    UntilFirstAction,
    /// Every step a view of one delivery, timed from it (`az-outage`): the slowest step's time.
    AtOnce,
}

fn course(scenario: &str) -> Course {
    match scenario {
        "region-failover" | "gray-az" => Course::UntilFirstAction,
        "az-outage" => Course::AtOnce,
        _ => Course::InTurn,
    }
}

/// What one step came to, from its decisions' outcomes and its verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// A decision acted and the recovery was verified on the resources.
    Recovered,
    /// A decision acted, but the recovery was not verified within the drill's window.
    Unverified,
    /// Decisions, none acted, at least one parked for a human's approval.
    Parked,
    /// Decisions, none acted or parked: refusals, failures, duplicates — what ends in a page.
    Page,
    /// No decision of its own (a check over other steps, or that nothing happened): its verification only.
    Check,
}

impl StepOutcome {
    pub fn of(step: &StepReport) -> Self {
        let outcomes = step.outcomes();
        if outcomes.contains(&"acted") {
            if step.recover_ms.is_some() {
                StepOutcome::Recovered
            } else {
                StepOutcome::Unverified
            }
        } else if outcomes.contains(&"awaiting-approval") {
            StepOutcome::Parked
        } else if outcomes.is_empty() {
            StepOutcome::Check
        } else {
            StepOutcome::Page
        }
    }
}

/// What decisions that recovered nothing amount to, in words.
fn came_to(outcomes: &[&str]) -> &'static str {
    let all = |w: &str| outcomes.iter().all(|o| *o == w);
    if all("awaiting-approval") {
        "a park for a human's approval"
    } else if all("failed") {
        "a failed action"
    } else if all("dry-run") {
        "a dry run"
    } else if outcomes.iter().all(|o| matches!(*o, "refused" | "duplicate" | "awaiting-approval" | "failed")) {
        "a page"
    } else {
        "nothing acted"
    }
}

/// One decision the suite recorded during a scenario, timed from the scenario's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEvent {
    pub at_ms: u64,
    pub function: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    /// A promotion's replica lag (db-failover's `lagSeconds`), when it carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
}

/// What a drill could measure beyond its report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    pub events: Vec<LedgerEvent>,
    /// The age, in seconds, of the newest snapshot when a backup was needed (the worst volume's), or
    /// why it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_age_secs: Option<std::result::Result<f64, String>>,
}

/// One target's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    Met {
        measured_secs: f64,
        target_secs: u64,
    },
    /// `by_secs`: how far past the target (at least, when `lower_bound`: not recovered at all).
    Missed {
        measured_secs: f64,
        target_secs: u64,
        by_secs: f64,
        lower_bound: bool,
    },
    /// The outcome was not a recovery (a page, a refusal, a park): a failure, whatever the time.
    NotRecovered {
        why: String,
    },
    NotMeasured {
        why: String,
    },
}

impl Verdict {
    pub fn judge(measured_secs: f64, target_secs: u64) -> Self {
        if measured_secs <= target_secs as f64 {
            Verdict::Met { measured_secs, target_secs }
        } else {
            Verdict::Missed {
                measured_secs,
                target_secs,
                by_secs: measured_secs - target_secs as f64,
                lower_bound: false,
            }
        }
    }

    fn not(why: impl Into<String>) -> Self {
        Verdict::NotMeasured { why: why.into() }
    }

    /// `met`, `missed`, `not-recovered` or `not-measured`.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Met { .. } => "met",
            Verdict::Missed { .. } => "missed",
            Verdict::NotRecovered { .. } => "not-recovered",
            Verdict::NotMeasured { .. } => "not-measured",
        }
    }

    /// Whether the target was failed: missed, or not recovered at all.
    pub fn failed(&self) -> bool {
        matches!(self, Verdict::Missed { .. } | Verdict::NotRecovered { .. })
    }

    /// The time measured, when one was (for a recovery not seen within the drill's window, the window:
    /// a lower bound); `None` when not measured or not recovered.
    pub fn measured_secs(&self) -> Option<f64> {
        match self {
            Verdict::Met { measured_secs, .. } | Verdict::Missed { measured_secs, .. } => Some(*measured_secs),
            Verdict::NotRecovered { .. } | Verdict::NotMeasured { .. } => None,
        }
    }

    /// In words: `met: 2.1s of 300s`, `missed by 40.0s: 340.0s of 300s`, `not recovered: why`,
    /// `not measured: why`.
    pub fn describe(&self) -> String {
        match self {
            Verdict::Met { measured_secs, target_secs } => format!("met: {measured_secs:.1}s of {target_secs}s"),
            Verdict::Missed { measured_secs, target_secs, by_secs, lower_bound } => {
                let at_least = if *lower_bound { "at least " } else { "" };
                format!("missed by {at_least}{by_secs:.1}s: {at_least}{measured_secs:.1}s of {target_secs}s")
            }
            Verdict::NotRecovered { why } => format!("not recovered: {why}"),
            Verdict::NotMeasured { why } => format!("not measured: {why}"),
        }
    }
}

/// What a timeline event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    Injected,
    Detected,
    Action,
    Recovered,
    /// A step's expectation verified that is no recovery: a page, a park, a check.
    Verified,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Injected => "injected",
            EventKind::Detected => "detected",
            EventKind::Action => "action",
            EventKind::Recovered => "recovered",
            EventKind::Verified => "verified",
        }
    }
}

/// One point on a scenario's timeline, from the scenario's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEvent {
    pub at_ms: u64,
    pub kind: EventKind,
    pub label: String,
}

/// One scenario's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Score {
    pub scenario: String,
    pub mode: String,
    pub disruption: Option<Disruption>,
    pub target: Option<Target>,
    pub rto: Verdict,
    /// Of the RTO, the time its decisions sat parked until a human approved them: shown beside it,
    /// part of it (see the module's notes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_wait_secs: Option<f64>,
    pub rpo: Verdict,
    pub passed: bool,
    pub timeline: Vec<TimelineEvent>,
    /// For `restore-test`: each restore's time and recovery point, scored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restores: Vec<RestoreScore>,
}

/// One restore of a restore test, scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreScore {
    pub kind: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub point: Option<String>,
    /// Restore time against the RTO target.
    pub rto: Verdict,
    /// The recovery point's age against the RPO target.
    pub rpo: Verdict,
}

/// Every scenario's score, and where the targets came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scorecard {
    pub targets: Targets,
    pub scores: Vec<Score>,
}

/// The time until a report's service recovered, in seconds, or why there is none; and of it, the time
/// its decisions sat parked until a human approved them.
fn rto(report: &DrillReport, evidence: &Evidence, target: Target, window_secs: f64) -> (Verdict, Option<f64>) {
    if report.mode != "live" {
        return (Verdict::not("a dry run injects nothing"), None);
    }
    if report.scenario == "stale-backups" {
        return (Verdict::not("no outage: a backup gap is scored by its RPO"), None);
    }
    if report.scenario == RESTORE_TEST {
        return (restore_rto(report, target), None);
    }
    let course = course(&report.scenario);
    let all: Vec<StepOutcome> = report.steps.iter().map(StepOutcome::of).collect();
    // The steps of the recovery: every one, or up to the first that acted.
    let end = match course {
        Course::UntilFirstAction => all
            .iter()
            .position(|o| matches!(o, StepOutcome::Recovered | StepOutcome::Unverified))
            .map_or(all.len(), |i| i + 1),
        Course::InTurn | Course::AtOnce => all.len(),
    };
    let (steps, outcomes) = (&report.steps[..end], &all[..end]);
    // A park counts when a later step of the same function recovered: the approved move.
    let settled_by = |i: usize| {
        (i + 1..end).find(|&j| outcomes[j] == StepOutcome::Recovered && steps[j].function == steps[i].function)
    };
    let unrecovered: Vec<usize> = (0..end)
        .filter(|&i| match outcomes[i] {
            StepOutcome::Page => true,
            StepOutcome::Parked => settled_by(i).is_none(),
            _ => false,
        })
        .collect();
    if !unrecovered.is_empty() {
        let words: Vec<&str> = unrecovered.iter().flat_map(|&i| steps[i].outcomes()).collect();
        let what = format!("{} ({})", came_to(&words), tally(words.iter().copied()));
        let mut why = if unrecovered.len() == end {
            format!("the outcome was {what}, not a recovery")
        } else {
            format!("{} of {end} steps ended in {what}, not a recovery", unrecovered.len())
        };
        why.push_str(&unrecovered_resources(report));
        return (Verdict::NotRecovered { why }, None);
    }
    if steps.is_empty() || steps.iter().any(|s| s.recover_ms.is_none()) {
        return (not_within(report, target, window_secs), None);
    }
    if !outcomes.contains(&StepOutcome::Recovered) {
        return (Verdict::NotRecovered { why: "no decision acted: nothing was recovered".into() }, None);
    }
    let placed = place(report, evidence);
    let ms = match course {
        Course::AtOnce => steps.iter().filter_map(|s| s.recover_ms).max().unwrap_or(0),
        Course::InTurn | Course::UntilFirstAction => {
            let start = placed.first().map_or(0, |p| p.start_ms);
            let done = steps.iter().zip(&placed).filter_map(|(s, p)| s.recover_ms.map(|r| p.start_ms + r)).max();
            done.unwrap_or(start).saturating_sub(start)
        }
    };
    // The approval wait: from each park to its approval (the settling step's start), or, parked and
    // approved within one step (a person approving during an FIS drill), to the approved decision.
    let mut wait_ms: Option<u64> = None;
    for (i, (step, p)) in steps.iter().zip(&placed).enumerate() {
        let parked_at = p.events.iter().find(|e| e.outcome == "awaiting-approval").map(|e| e.at_ms);
        let waited = match outcomes[i] {
            StepOutcome::Parked => settled_by(i).map(|j| {
                let from = parked_at.or(step.detect_ms.map(|d| p.start_ms + d)).unwrap_or(p.start_ms);
                placed[j].start_ms.saturating_sub(from)
            }),
            StepOutcome::Recovered => parked_at.and_then(|from| {
                p.events.iter().find(|e| e.outcome == "acted" && e.at_ms >= from).map(|e| e.at_ms - from)
            }),
            _ => None,
        };
        if let Some(w) = waited {
            wait_ms = Some(wait_ms.unwrap_or(0) + w);
        }
    }
    (Verdict::judge(ms as f64 / 1000.0, target.rto_in_secs), wait_ms.map(|w| w as f64 / 1000.0))
}

/// A recovery not verified within the drill's window: missed by at least the window past the target,
/// or not measured when the window was shorter than the target.
fn not_within(report: &DrillReport, target: Target, window_secs: f64) -> Verdict {
    let waited = window_secs.max(report.total_ms as f64 / 1000.0);
    if waited > target.rto_in_secs as f64 {
        Verdict::Missed {
            measured_secs: waited,
            target_secs: target.rto_in_secs,
            by_secs: waited - target.rto_in_secs as f64,
            lower_bound: true,
        }
    } else {
        Verdict::not(format!(
            "not recovered within the drill's {waited:.0}s window, shorter than the {}s target",
            target.rto_in_secs
        ))
    }
}

/// For a scenario over many resources, how many of each kind were not recovered: `; 5 of 6 instances
/// not recovered` (nothing when every one was).
fn unrecovered_resources(report: &DrillReport) -> String {
    let mut kinds: Vec<&str> = report.resources.iter().map(|r| r.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut s = String::new();
    for kind in kinds {
        let of_kind = report.resources.iter().filter(|r| r.kind == kind);
        let not = of_kind.clone().filter(|r| r.recover_ms.is_none()).count();
        if not > 0 {
            s.push_str(&format!("; {not} of {} {kind}s not recovered", of_kind.count()));
        }
    }
    s
}

/// The data a report's disruption put at risk, in seconds, or why it is not measured.
fn rpo(report: &DrillReport, evidence: &Evidence, target: Target) -> Verdict {
    if report.mode != "live" {
        return Verdict::not("a dry run injects nothing");
    }
    match report.scenario.as_str() {
        "lose-instance" | "lose-az" => Verdict::not("a stateless web tier: no data to lose"),
        RESTORE_TEST => restore_rpo(&report.restores, target),
        "stale-backups" => match &evidence.backup_age_secs {
            Some(Ok(age)) => Verdict::judge(*age, target.rpo_in_secs),
            Some(Err(why)) => Verdict::not(why.clone()),
            None => Verdict::not("the snapshots' ages were not read"),
        },
        _ => {
            let lags = evidence
                .events
                .iter()
                .filter(|e| e.function == "db-failover" && e.outcome == "acted")
                .filter_map(|e| e.lag_seconds);
            match lags.fold(None, |m: Option<f64>, l| Some(m.map_or(l, |m| m.max(l)))) {
                Some(lag) => Verdict::judge(lag, target.rpo_in_secs),
                None => Verdict::not("no promotion recorded its replica's lag"),
            }
        }
    }
}

const RESTORE_TEST: &str = super::restore::SCENARIO;

/// One restore's verdict: its time against the RTO target, its recovery point's age against the RPO.
fn restore_verdicts(r: &RestoreResult, target: Target) -> (Verdict, Verdict) {
    let rto = match (&r.error, r.restore_ms) {
        (Some(e), _) => Verdict::NotRecovered { why: format!("the restore of {} failed: {e}", r.source) },
        (None, Some(ms)) => Verdict::judge(ms as f64 / 1000.0, target.rto_in_secs),
        (None, None) => Verdict::not("not restored"),
    };
    let rpo = match (r.point_age_secs, r.scores_rpo) {
        (Some(age), true) => Verdict::judge(age, target.rpo_in_secs),
        (Some(age), false) => {
            Verdict::not(format!("versioning keeps every write (the version restored is {age:.0}s old)"))
        }
        (None, _) => Verdict::NotRecovered { why: format!("{} has no recovery point", r.source) },
    };
    (rto, rpo)
}

/// A restore test's RTO: every restore must have succeeded (the first failure, named, otherwise); then
/// the slowest restore's time.
fn restore_rto(report: &DrillReport, target: Target) -> Verdict {
    if report.restores.is_empty() {
        return Verdict::NotRecovered { why: "nothing was restored".into() };
    }
    let verdicts: Vec<Verdict> = report.restores.iter().map(|r| restore_verdicts(r, target).0).collect();
    let failed: Vec<&Verdict> = verdicts.iter().filter(|v| v.failed() && v.measured_secs().is_none()).collect();
    if let Some(Verdict::NotRecovered { why }) = failed.first() {
        let more = if failed.len() > 1 { format!(" (and {} more)", failed.len() - 1) } else { String::new() };
        return Verdict::NotRecovered { why: format!("{why}{more}") };
    }
    match verdicts.iter().filter_map(Verdict::measured_secs).reduce(f64::max) {
        Some(slowest) => Verdict::judge(slowest, target.rto_in_secs),
        None => Verdict::not("no restore was timed"),
    }
}

/// A restore test's RPO: the oldest recovery point restored (of the kinds whose age is the data at
/// risk); a resource without any recovery point fails it.
fn restore_rpo(restores: &[RestoreResult], target: Target) -> Verdict {
    if let Some(r) = restores.iter().find(|r| r.point.is_none()) {
        return Verdict::NotRecovered { why: format!("{} {} has no recovery point", r.kind.as_str(), r.source) };
    }
    match restores.iter().filter(|r| r.scores_rpo).filter_map(|r| r.point_age_secs).reduce(f64::max) {
        Some(age) => Verdict::judge(age, target.rpo_in_secs),
        None => Verdict::not("no recovery point whose age is data at risk was restored"),
    }
}

/// Each restore of a restore test, scored.
fn restore_scores(report: &DrillReport, target: Option<Target>) -> Vec<RestoreScore> {
    report
        .restores
        .iter()
        .map(|r| {
            let (rto, rpo) = match (target, report.mode.as_str()) {
                (Some(t), "live") => restore_verdicts(r, t),
                _ => (Verdict::not("a dry run restores nothing"), Verdict::not("a dry run restores nothing")),
            };
            RestoreScore {
                kind: r.kind.as_str().to_string(),
                source: r.source.clone(),
                account: r.account.clone(),
                point: r.point.clone(),
                rto,
                rpo,
            }
        })
        .collect()
}

/// The decisions' prefix as a step's `actions` list names them: `function action target `.
fn names(step_action: &str, e: &LedgerEvent) -> bool {
    step_action.starts_with(&format!("{} {} {} ", e.function, e.action, e.target))
}

/// A step on the scenario's clock: when it started (from the scenario's start), and the evidence's
/// decisions that are its own.
struct Placed<'a> {
    start_ms: u64,
    events: Vec<&'a LedgerEvent>,
}

/// Places each step on the scenario's clock: a step starts at its first decision less its time to
/// detect (both from the ledger's clock), never before the step before it ended; without decisions in
/// the evidence, where the step before it ended. The steps of a scenario timed from one delivery
/// ([`Course::AtOnce`]) all start with the first.
fn place<'a>(report: &DrillReport, evidence: &'a Evidence) -> Vec<Placed<'a>> {
    let at_once = course(&report.scenario) == Course::AtOnce;
    let mut by_time: Vec<&LedgerEvent> = evidence.events.iter().collect();
    by_time.sort_by_key(|e| e.at_ms);
    let mut out: Vec<Placed> = Vec::new();
    let mut cursor = 0u64;
    for step in &report.steps {
        let events: Vec<&LedgerEvent> = by_time
            .iter()
            .copied()
            .filter(|e| e.function == step.function && e.at_ms >= cursor && step.actions.iter().any(|a| names(a, e)))
            // A later step's identical decisions (a second failback) are its own: as many as it lists.
            .take(step.actions.len())
            .collect();
        let start_ms = match (out.first(), at_once) {
            (Some(first), true) => first.start_ms,
            _ => match (events.iter().map(|e| e.at_ms).min(), step.detect_ms) {
                (Some(f), Some(d)) => f.saturating_sub(d).max(cursor),
                _ => cursor,
            },
        };
        if !at_once {
            let end = match step.recover_ms {
                Some(r) => start_ms + r,
                None => events.iter().map(|e| e.at_ms).max().unwrap_or(start_ms),
            };
            cursor = cursor.max(end);
        }
        out.push(Placed { start_ms, events });
    }
    out
}

/// A report's timeline: the fault injected, detected, each decision, and per step its recovery — or,
/// for a step that recovered nothing (a page, a park, a check), what was verified.
pub fn timeline(report: &DrillReport, evidence: &Evidence) -> Vec<TimelineEvent> {
    let mut out = Vec::new();
    for (i, (step, placed)) in report.steps.iter().zip(place(report, evidence)).enumerate() {
        let t0 = placed.start_ms;
        if i == 0 {
            let label =
                if report.injected.is_empty() { "fault injected".to_string() } else { report.injected.join("; ") };
            out.push(TimelineEvent { at_ms: t0, kind: EventKind::Injected, label });
        } else {
            out.push(TimelineEvent { at_ms: t0, kind: EventKind::Injected, label: format!("step: {}", step.name) });
        }
        if let Some(d) = step.detect_ms {
            out.push(TimelineEvent {
                at_ms: t0 + d,
                kind: EventKind::Detected,
                label: format!("{} detected", step.function),
            });
        }
        for e in &placed.events {
            out.push(TimelineEvent {
                at_ms: e.at_ms,
                kind: EventKind::Action,
                label: format!("{} {} {}: {}", e.function, e.action, e.target, e.outcome),
            });
        }
        if let Some(r) = step.recover_ms {
            let outcomes = step.outcomes();
            let (kind, label) = match StepOutcome::of(step) {
                StepOutcome::Recovered => (EventKind::Recovered, format!("recovered: {}", step.name)),
                StepOutcome::Page | StepOutcome::Parked => (
                    EventKind::Verified,
                    format!(
                        "{} ({}), not a recovery: {}",
                        came_to(&outcomes),
                        tally(outcomes.iter().copied()),
                        step.name
                    ),
                ),
                StepOutcome::Check | StepOutcome::Unverified => {
                    (EventKind::Verified, format!("verified: {}", step.name))
                }
            };
            out.push(TimelineEvent { at_ms: t0 + r, kind, label });
        }
    }
    out.sort_by_key(|e| e.at_ms);
    out
}

/// Why a scenario without a disruption type is not scored.
const UNSCORED: &str = "the scenario checks a guard, not a recovery: no disruption type";

/// Scores one report against the targets. `window_secs`: how long the drill waited for recovery.
pub fn score(report: &DrillReport, evidence: &Evidence, targets: &Targets, window_secs: f64) -> Score {
    let disruption = disruption(&report.scenario);
    let target = disruption.and_then(|d| targets.get(d));
    let ((rto_v, approval_wait_secs), rpo_v) = match target {
        Some(t) => (rto(report, evidence, t, window_secs), rpo(report, evidence, t)),
        None => ((Verdict::not(UNSCORED), None), Verdict::not(UNSCORED)),
    };
    Score {
        scenario: report.scenario.clone(),
        mode: report.mode.clone(),
        disruption,
        target,
        rto: rto_v,
        approval_wait_secs,
        rpo: rpo_v,
        passed: report.passed,
        timeline: timeline(report, evidence),
        restores: restore_scores(report, target),
    }
}

/// Scores every report; `evidence[i]` is `reports[i]`'s (missing: none).
pub fn score_all(reports: &[DrillReport], evidence: &[Evidence], targets: &Targets, window_secs: f64) -> Scorecard {
    let none = Evidence::default();
    Scorecard {
        targets: targets.clone(),
        scores: reports
            .iter()
            .enumerate()
            .map(|(i, r)| score(r, evidence.get(i).unwrap_or(&none), targets, window_secs))
            .collect(),
    }
}

impl Score {
    /// The RTO in words, with the approval wait when there was one: `met: 50.0s of 3600s, of which
    /// 42.0s waiting for approval`.
    pub fn rto_text(&self) -> String {
        match self.approval_wait_secs {
            Some(w) => format!("{}, of which {w:.1}s waiting for approval", self.rto.describe()),
            None => self.rto.describe(),
        }
    }

    /// The EMF record of this score: per scenario, how many targets were met, missed (a target not
    /// recovered at all counts as missed) and not measured, and the times measured (the dashboard's
    /// "drill scores").
    pub fn metric(&self) -> Metric {
        let verdicts = [&self.rto, &self.rpo];
        let n = |f: fn(&Verdict) -> bool| verdicts.iter().filter(|v| f(v)).count() as f64;
        let mut m = Metric::new()
            .dimension("Function", super::FUNCTION)
            .dimension("Scenario", &self.scenario)
            .count("TargetsMet", n(|v| matches!(v, Verdict::Met { .. })))
            .count("TargetsMissed", n(Verdict::failed))
            .count("TargetsNotMeasured", n(|v| matches!(v, Verdict::NotMeasured { .. })));
        if let Some(s) = self.rto.measured_secs() {
            m = m.millis("TimeToRecover", s * 1000.0);
        }
        if let Some(s) = self.rpo.measured_secs() {
            m = m.millis("RecoveryPoint", s * 1000.0);
        }
        m
    }
}

/// The names of every metric [`Score::metric`] can emit.
pub const METRICS: [&str; 5] = ["TargetsMet", "TargetsMissed", "TargetsNotMeasured", "TimeToRecover", "RecoveryPoint"];

impl Scorecard {
    /// The scorecard as a text table for terminals and logs.
    pub fn render(&self) -> String {
        let mut s = format!("scorecard (targets: {})\n", self.targets.source);
        s.push_str(&format!("{:<18} {:<9} {:<10}  {:<40}  {}\n", "SCENARIO", "TYPE", "RESULT", "RTO", "RPO"));
        for sc in &self.scores {
            s.push_str(&format!(
                "{:<18} {:<9} {:<10}  {:<40}  {}\n",
                sc.scenario,
                sc.disruption.map(|d| d.as_str()).unwrap_or("-"),
                if sc.passed { "PASS" } else { "FAIL" },
                sc.rto_text(),
                sc.rpo.describe()
            ));
            for r in &sc.restores {
                s.push_str(&format!(
                    "  {:<16} {:<40}  RTO {}; RPO {}\n",
                    r.kind,
                    r.source,
                    r.rto.describe(),
                    r.rpo.describe()
                ));
            }
        }
        let all: Vec<&Verdict> = self.scores.iter().flat_map(|s| [&s.rto, &s.rpo]).collect();
        let n = |w: &str| all.iter().filter(|v| v.word() == w).count();
        let not_recovered = match n("not-recovered") {
            0 => String::new(),
            k => format!(" ({k} not recovered)"),
        };
        s.push_str(&format!(
            "{} targets met, {} missed{not_recovered}, {} not measured\n",
            n("met"),
            all.iter().filter(|v| v.failed()).count(),
            n("not-measured")
        ));
        s
    }
}

/// Reads a promotion's lag from a decision's details (a number, or the text a progress marker holds).
pub fn lag_of(details: &std::collections::BTreeMap<String, Value>) -> Option<f64> {
    match details.get("lagSeconds")? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn ms_between(from: &str, to: &str) -> Option<u64> {
    let a = chrono::DateTime::parse_from_rfc3339(from).ok()?;
    let b = chrono::DateTime::parse_from_rfc3339(to).ok()?;
    Some((b - a).num_milliseconds().max(0) as u64)
}

/// The evidence for each report: the decisions recorded between its start and the next's (the drill's
/// own left out), and for a live `stale-backups` (given the architecture) the age of each volume's newest earlier snapshot.
pub async fn gather(
    drill: &super::Drill,
    reports: &[DrillReport],
    arch: Option<&super::Architecture>,
) -> Vec<Evidence> {
    let mut out = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        let until = reports.get(i + 1).map(|n| n.started_at.clone());
        let records = match drill.ctx.ledger.audit_since(&r.started_at).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "the scorecard could not read the ledger");
                vec![]
            }
        };
        let events = records
            .iter()
            .filter(|rec| rec.function != super::FUNCTION)
            .filter(|rec| until.as_deref().map(|u| rec.time.as_str() < u).unwrap_or(true))
            .filter_map(|rec| {
                Some(LedgerEvent {
                    at_ms: ms_between(&r.started_at, &rec.time)?,
                    function: rec.function.clone(),
                    action: rec.action.clone(),
                    target: rec.envelope.target.id.clone(),
                    outcome: rec.outcome.clone(),
                    lag_seconds: lag_of(&rec.envelope.details),
                })
            })
            .collect();
        let backup_age_secs = match arch {
            Some(arch) if r.scenario == "stale-backups" && r.mode == "live" => {
                Some(backup_age(drill, arch, &r.started_at).await)
            }
            _ => None,
        };
        out.push(Evidence { events, backup_age_secs });
    }
    out
}

/// Scores a run: loads the targets (the defaults, named as such, when a configured source cannot be
/// read), gathers the evidence, scores every report, and when `emit` writes each score's EMF record.
pub async fn assess(
    drill: &super::Drill,
    reports: &[DrillReport],
    arch: &super::Architecture,
    source: &super::targets::TargetSource,
    emit: bool,
) -> Scorecard {
    score_gathered(drill, reports, Some(arch), source, emit).await
}

/// The configured targets, or the defaults (named as such) when they cannot be read.
async fn load_targets(drill: &super::Drill, source: &super::targets::TargetSource) -> Targets {
    match source.load(&drill.ctx.aws).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "the drill's targets could not be read; scoring against the defaults");
            Targets {
                source: format!("defaults (the configured targets could not be read: {e})"),
                ..Targets::defaults()
            }
        }
    }
}

/// [`assess`] for scenarios that need no architecture (`restore-test` on its own schedule).
pub async fn assess_without_architecture(
    drill: &super::Drill,
    reports: &[DrillReport],
    source: &super::targets::TargetSource,
    emit: bool,
) -> Scorecard {
    score_gathered(drill, reports, None, source, emit).await
}

async fn score_gathered(
    drill: &super::Drill,
    reports: &[DrillReport],
    arch: Option<&super::Architecture>,
    source: &super::targets::TargetSource,
    emit: bool,
) -> Scorecard {
    let targets = load_targets(drill, source).await;
    let evidence = gather(drill, reports, arch).await;
    let card = score_all(reports, &evidence, &targets, drill.cfg.recovery_timeout.as_secs_f64());
    if emit {
        for s in &card.scores {
            s.metric().emit();
        }
    }
    card
}

/// Snapshots started within this many seconds before a scenario's start count as the scenario's own:
/// an emulator (and the verifier, `Verify::Snapshotted`) keeps snapshot times to the second.
const SNAPSHOT_CLOCK_SLACK_SECS: f64 = 5.0;

/// The worst volume's newest-snapshot age at `at` (a volume never snapshotted counts from its creation).
async fn backup_age(drill: &super::Drill, arch: &super::Architecture, at: &str) -> std::result::Result<f64, String> {
    let at = chrono::DateTime::parse_from_rfc3339(at).map_err(|e| e.to_string())?.timestamp_millis() as f64 / 1000.0;
    let mut worst: Option<f64> = None;
    for (i, v) in arch.backup_volumes.iter().enumerate() {
        let aws = super::steps::aws_in(drill, arch.volume_member(i)).await.map_err(|e| e.to_string())?;
        let filter = aws_sdk_ec2::types::Filter::builder().name("volume-id").values(v).build();
        let snaps = aws
            .ec2()
            .describe_snapshots()
            .owner_ids("self")
            .filters(filter)
            .send()
            .await
            .map_err(|e| format!("DescribeSnapshots: {e}"))?;
        let secs = |t: &aws_smithy_types::DateTime| t.secs() as f64 + t.subsec_nanos() as f64 / 1e9;
        let newest = snaps
            .snapshots()
            .iter()
            .filter_map(|s| s.start_time().map(secs))
            .filter(|t| *t < at - SNAPSHOT_CLOCK_SLACK_SECS)
            .reduce(f64::max);
        let since = match newest {
            Some(t) => t,
            None => {
                let vols = aws
                    .ec2()
                    .describe_volumes()
                    .volume_ids(v)
                    .send()
                    .await
                    .map_err(|e| format!("DescribeVolumes: {e}"))?;
                match vols.volumes().first().and_then(|v| v.create_time()).map(secs) {
                    Some(t) => t,
                    None => return Err(format!("{v} has neither a snapshot nor a creation time")),
                }
            }
        };
        let age = (at - since).max(0.0);
        worst = Some(worst.map_or(age, |w| w.max(age)));
    }
    worst.ok_or_else(|| "no backup volumes in the architecture".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::report::StepReport;

    fn report(
        scenario: &str,
        mode: &str,
        detect: Option<u64>,
        recover: Option<u64>,
        actions: Vec<&str>,
    ) -> DrillReport {
        DrillReport {
            scenario: scenario.into(),
            mode: mode.into(),
            started_at: "2026-01-01T00:00:00.000Z".into(),
            injected: vec!["stopped i-1".into()],
            steps: vec![StepReport {
                name: "replace".into(),
                function: "instance-healer".into(),
                expected: "e".into(),
                observed: "o".into(),
                detect_ms: detect,
                recover_ms: recover,
                actions: actions.into_iter().map(String::from).collect(),
                accounts: vec![],
                passed: recover.is_some(),
            }],
            guards_fired: vec![],
            passed: recover.is_some(),
            total_ms: recover.unwrap_or(200_000),
            resources: vec![],
            restores: vec![],
        }
    }

    /// A decision that acted, as a step's `actions` names it.
    const ACTED: &str = "instance-healer replace i-1 in hub: acted (replaced through its group)";

    fn event(at_ms: u64, function: &str, target: &str, outcome: &str, lag: Option<f64>) -> LedgerEvent {
        LedgerEvent {
            at_ms,
            function: function.into(),
            action: "replace".into(),
            target: target.into(),
            outcome: outcome.into(),
            lag_seconds: lag,
        }
    }

    #[test]
    fn every_scenario_has_a_disruption_type() {
        for s in crate::drill::Scenario::EVERY {
            // The one scenario that checks a guard (an approval left to expire), not a recovery.
            let guard_only = s.name() == "approval-expires";
            assert_eq!(disruption(s.name()).is_none(), guard_only, "{}", s.name());
        }
        assert_eq!(disruption("lose-primary-db"), Some(Disruption::Hardware));
        assert_eq!(disruption("region-failover"), Some(Disruption::Region));
        assert_eq!(disruption("az-outage"), Some(Disruption::Az));
    }

    #[test]
    fn rto_is_met_missed_by_how_much_or_not_measured() {
        let t = Targets::defaults();
        let ok = score(
            &report("lose-instance", "live", Some(400), Some(2100), vec![ACTED]),
            &Evidence::default(),
            &t,
            120.0,
        );
        assert_eq!(ok.rto, Verdict::Met { measured_secs: 2.1, target_secs: 300 });
        assert_eq!(ok.rpo.word(), "not-measured");
        let slow = score(
            &report("lose-instance", "live", Some(400), Some(400_000), vec![ACTED]),
            &Evidence::default(),
            &t,
            600.0,
        );
        assert_eq!(slow.rto.describe(), "missed by 100.0s: 400.0s of 300s");
        // Not recovered: missed by at least the window past the target, or not measured within it.
        let never = report("lose-instance", "live", Some(400), None, vec![]);
        assert_eq!(
            score(&never, &Evidence::default(), &t, 400.0).rto.describe(),
            "missed by at least 100.0s: at least 400.0s of 300s"
        );
        assert!(score(&never, &Evidence::default(), &t, 120.0).rto.describe().contains("shorter than the 300s target"));
        let dry = score(
            &report(
                "lose-instance",
                "dry-run",
                Some(1),
                Some(2),
                vec!["instance-healer replace i-1 in hub: dry-run (r)"],
            ),
            &Evidence::default(),
            &t,
            120.0,
        );
        assert_eq!((dry.rto.word(), dry.rpo.word()), ("not-measured", "not-measured"));
    }

    fn step(name: &str, function: &str, detect: u64, recover: Option<u64>, actions: &[&str]) -> StepReport {
        StepReport {
            name: name.into(),
            function: function.into(),
            expected: "e".into(),
            observed: "o".into(),
            detect_ms: Some(detect),
            recover_ms: recover,
            actions: actions.iter().map(|a| a.to_string()).collect(),
            accounts: vec![],
            passed: recover.is_some(),
        }
    }

    fn live(scenario: &str, steps: Vec<StepReport>) -> DrillReport {
        DrillReport {
            scenario: scenario.into(),
            mode: "live".into(),
            started_at: "2026-01-01T00:00:00.000Z".into(),
            injected: vec!["the fault".into()],
            passed: steps.iter().all(|s| s.passed),
            steps,
            guards_fired: vec![],
            total_ms: 60_000,
            resources: vec![],
            restores: vec![],
        }
    }

    fn decision(at_ms: u64, function: &str, action: &str, target: &str, outcome: &str) -> LedgerEvent {
        LedgerEvent {
            at_ms,
            function: function.into(),
            action: action.into(),
            target: target.into(),
            outcome: outcome.into(),
            lag_seconds: None,
        }
    }

    const PAGED: [&str; 2] = [
        "instance-healer replace i-1 in hub: refused (replacing nothing: the cause is likely upstream, a person must look)",
        "instance-healer replace i-2 in hub: refused (replacing nothing: the cause is likely upstream, a person must look)",
    ];

    #[test]
    fn a_step_that_only_pages_is_not_recovered_however_fast() {
        let t = Targets::defaults();
        // lose-az as measured: both instances refused, the drill's expectation met in 1.2 s.
        let lose_az = report("lose-az", "live", Some(300), Some(1200), PAGED.to_vec());
        assert!(lose_az.passed);
        let s = score(&lose_az, &Evidence::default(), &t, 120.0);
        assert_eq!(s.rto, Verdict::NotRecovered { why: "the outcome was a page (refused ×2), not a recovery".into() });
        assert!(s.rto.failed() && s.rto.measured_secs().is_none());
        assert_eq!(s.rto_text(), "not recovered: the outcome was a page (refused ×2), not a recovery");
        // Its timeline verifies the page; nothing on it says recovered.
        let tl = timeline(&lose_az, &Evidence::default());
        assert!(tl.iter().all(|e| e.kind != EventKind::Recovered), "{tl:?}");
        assert_eq!(
            tl.last().map(|e| (e.at_ms, e.kind, e.label.as_str())),
            Some((1200, EventKind::Verified, "a page (refused ×2), not a recovery: replace"))
        );
        // A missed target for the dashboard, with no time to recover; named in the card's total.
        let emf = s.metric().to_emf();
        assert_eq!((emf["TargetsMet"].as_f64(), emf["TargetsMissed"].as_f64()), (Some(0.0), Some(1.0)));
        assert!(emf.get("TimeToRecover").is_none(), "{emf}");
        let card = score_all(std::slice::from_ref(&lose_az), &[], &t, 120.0);
        assert!(
            card.render().contains("0 targets met, 1 missed (1 not recovered), 1 not measured"),
            "{}",
            card.render()
        );
        // A failed action is no recovery either, nor a step whose decisions acted nothing at all.
        let failed =
            report("lose-instance", "live", Some(300), None, vec!["instance-healer replace i-1 in hub: failed (x)"]);
        assert_eq!(
            score(&failed, &Evidence::default(), &t, 600.0).rto.describe(),
            "not recovered: the outcome was a failed action (failed ×1), not a recovery"
        );
        let checked = report("lose-instance", "live", Some(300), Some(900), vec![]);
        assert_eq!(
            score(&checked, &Evidence::default(), &t, 120.0).rto,
            Verdict::NotRecovered { why: "no decision acted: nothing was recovered".into() }
        );
    }

    #[test]
    fn a_park_never_approved_is_not_recovered() {
        let parked = live(
            "region-failover",
            vec![step(
                "the region failover waits for a human's approval",
                "dns-failover",
                100,
                Some(200),
                &["dns-failover failover app.example.com. in hub: awaiting-approval (a region failover needs a human)"],
            )],
        );
        let s = score(&parked, &Evidence::default(), &Targets::defaults(), 120.0);
        assert_eq!(
            s.rto.describe(),
            "not recovered: the outcome was a park for a human's approval (awaiting-approval ×1), not a recovery"
        );
        assert_eq!(s.approval_wait_secs, None);
        // Approved, but the approved re-check refused: the park and the refusal, no recovery.
        let mut refused = parked.clone();
        refused.steps.push(step(
            "approved, the failover flips",
            "dns-failover",
            50,
            None,
            &["dns-failover failover app.example.com. in hub: refused (the standby is unhealthy)"],
        ));
        assert_eq!(
            score(&refused, &Evidence::default(), &Targets::defaults(), 120.0).rto.describe(),
            "not recovered: the outcome was a page (awaiting-approval ×1, refused ×1), not a recovery"
        );
    }

    /// region-failover as the scenario runs it: parked, approved 42 s later and flipped, the standby
    /// replica promoted, a failback held by the anti-flap window, then the failback.
    fn region_failover() -> (DrillReport, Evidence) {
        let rec = "app.example.com.";
        let r = live(
            "region-failover",
            vec![
                step(
                    "park",
                    "dns-failover",
                    100,
                    Some(200),
                    &["dns-failover failover app.example.com. in hub: awaiting-approval (ask)"],
                ),
                step(
                    "flip",
                    "dns-failover",
                    300,
                    Some(900),
                    &["dns-failover failover app.example.com. in hub: acted (r)"],
                ),
                step("promote", "db-failover", 100, Some(5000), &["db-failover failover db-a in hub: acted (r)"]),
                step(
                    "held failback",
                    "dns-failover",
                    50,
                    Some(100),
                    &["dns-failover failback app.example.com. in hub: refused (anti-flap)"],
                ),
                step(
                    "failback",
                    "dns-failover",
                    50,
                    Some(700),
                    &["dns-failover failback app.example.com. in hub: acted (r)"],
                ),
            ],
        );
        let ev = Evidence {
            events: vec![
                decision(1_100, "dns-failover", "failover", rec, "awaiting-approval"),
                // Approved at 43.1 s: the flip decided 0.3 s later, verified at 44.0 s.
                decision(43_400, "dns-failover", "failover", rec, "acted"),
                decision(44_200, "db-failover", "failover", "db-a", "acted"),
                decision(50_000, "dns-failover", "failback", rec, "refused"),
                decision(60_050, "dns-failover", "failback", rec, "acted"),
            ],
            backup_age_secs: None,
        };
        (r, ev)
    }

    #[test]
    fn a_region_failovers_rto_runs_to_the_flip_with_the_approval_wait_shown_in_it() {
        let t = Targets::defaults();
        let (r, ev) = region_failover();
        let s = score(&r, &ev, &t, 120.0);
        // From the alarm's delivery (1.0 s) to the flip verified (44.0 s); not to the park (0.2 s), nor
        // to the promotion or the failback after it.
        assert_eq!(s.rto, Verdict::Met { measured_secs: 43.0, target_secs: 3600 });
        assert_eq!(s.approval_wait_secs, Some(42.0));
        assert_eq!(s.rto_text(), "met: 43.0s of 3600s, of which 42.0s waiting for approval");
        let card = score_all(std::slice::from_ref(&r), std::slice::from_ref(&ev), &t, 120.0);
        assert!(
            card.render().contains("met: 43.0s of 3600s, of which 42.0s waiting for approval"),
            "{}",
            card.render()
        );
        // The wait is judged with the RTO, not taken out of it.
        let tight = Targets::from_json(r#"{"Region":{"rtoInSecs":10,"rpoInSecs":300}}"#, "t").unwrap();
        assert_eq!(score(&r, &ev, &tight, 120.0).rto.describe(), "missed by 33.0s: 43.0s of 10s");
        // Without the ledger's times the steps are laid end to end: the flip verified at 1.1 s, after
        // 0.1 s parked.
        let bare = score(&r, &Evidence::default(), &t, 120.0);
        assert_eq!((bare.rto.measured_secs(), bare.approval_wait_secs), (Some(1.1), Some(0.1)));
        // Parked and approved within one step (a person approving during an FIS drill): to the approved
        // decision.
        let fis = live(
            "region-failover",
            vec![step(
                "AWS FIS experiment",
                "dns-failover",
                100,
                Some(30_400),
                &[
                    "dns-failover failover app.example.com. in hub: awaiting-approval (ask)",
                    "dns-failover failover app.example.com. in hub: acted (r)",
                ],
            )],
        );
        let ev = Evidence {
            events: vec![
                decision(100, "dns-failover", "failover", "app.example.com.", "awaiting-approval"),
                decision(30_400, "dns-failover", "failover", "app.example.com.", "acted"),
            ],
            backup_age_secs: None,
        };
        let s = score(&fis, &ev, &t, 120.0);
        assert_eq!((s.rto.measured_secs(), s.approval_wait_secs), (Some(30.4), Some(30.3)));
    }

    #[test]
    fn an_az_outage_with_groups_left_to_a_page_is_not_recovered() {
        let t = Targets::defaults();
        let healer = |n: &str, recover, outcome: &str, victims: &[&str]| {
            let actions: Vec<String> =
                victims.iter().map(|v| format!("instance-healer replace {v} in hub: {outcome} (r)")).collect();
            let actions: Vec<&str> = actions.iter().map(String::as_str).collect();
            step(n, "instance-healer", 100, Some(recover), &actions)
        };
        let steps = |web: &str, batch: &str| {
            vec![
                step("promote", "db-failover", 200, Some(1500), &["db-failover failover db-0 in hub: acted (r)"]),
                step("in parallel", "db-failover", 150, Some(1500), &[]),
                healer("fleet-web", 3000, web, &["i-w1", "i-w2", "i-w3"]),
                healer("fleet-api", 2000, "acted", &["i-a1"]),
                healer("fleet-batch", 3000, batch, &["i-b1", "i-b2"]),
            ]
        };
        let instance = |id: &str, recover: Option<u64>| crate::drill::ResourceTiming {
            kind: "instance".into(),
            id: id.into(),
            group: None,
            detect_ms: Some(100),
            recover_ms: recover,
            outcome: "o".into(),
            passed: true,
        };
        let mut paged = live("az-outage", steps("refused", "refused"));
        paged.resources = ["i-w1", "i-w2", "i-w3", "i-b1", "i-b2"].iter().map(|i| instance(i, None)).collect();
        paged.resources.push(instance("i-a1", Some(2000)));
        assert!(paged.passed);
        assert_eq!(
            score(&paged, &Evidence::default(), &t, 120.0).rto.describe(),
            "not recovered: 2 of 5 steps ended in a page (refused ×5), not a recovery; 5 of 6 instances not recovered"
        );
        // Every group healed: the slowest step's time from the one delivery, not the steps end to end.
        let healed = live("az-outage", steps("acted", "acted"));
        assert_eq!(
            score(&healed, &Evidence::default(), &t, 120.0).rto,
            Verdict::Met { measured_secs: 3.0, target_secs: 600 }
        );
        let recovered: Vec<u64> = timeline(&healed, &Evidence::default())
            .iter()
            .filter(|e| e.kind == EventKind::Recovered)
            .map(|e| e.at_ms)
            .collect();
        assert_eq!(recovered, vec![1500, 2000, 3000, 3000]);
    }

    #[test]
    fn rpo_is_the_promoted_replicas_lag_or_the_newest_snapshots_age() {
        let t = Targets::from_json(
            r#"{"Hardware":{"rtoInSecs":60,"rpoInSecs":5},"Software":{"rtoInSecs":60,"rpoInSecs":600}}"#,
            "t",
        )
        .unwrap();
        let ev = Evidence {
            events: vec![
                event(100, "db-failover", "db-1", "acted", Some(2.0)),
                event(120, "db-failover", "db-2", "refused", Some(9.0)),
            ],
            backup_age_secs: None,
        };
        let db = score(&report("lose-primary-db", "live", Some(50), Some(900), vec![]), &ev, &t, 120.0);
        assert_eq!(db.rpo, Verdict::Met { measured_secs: 2.0, target_secs: 5 });
        let lagging =
            Evidence { events: vec![event(100, "db-failover", "db-1", "acted", Some(7.5))], backup_age_secs: None };
        assert_eq!(
            score(&report("lose-primary-db", "live", Some(50), Some(900), vec![]), &lagging, &t, 120.0).rpo.describe(),
            "missed by 2.5s: 7.5s of 5s"
        );
        let no_lag =
            score(&report("lose-primary-db", "live", Some(50), Some(900), vec![]), &Evidence::default(), &t, 120.0);
        assert_eq!(no_lag.rpo, Verdict::NotMeasured { why: "no promotion recorded its replica's lag".into() });
        let stale = Evidence { events: vec![], backup_age_secs: Some(Ok(3600.0)) };
        let backups = score(&report("stale-backups", "live", Some(50), Some(900), vec![]), &stale, &t, 120.0);
        assert_eq!(backups.rpo.describe(), "missed by 3000.0s: 3600.0s of 600s");
        assert_eq!(backups.rto.word(), "not-measured");
    }

    #[test]
    fn the_timeline_runs_from_injection_through_each_action_to_recovery() {
        let r = report(
            "lose-instance",
            "live",
            Some(400),
            Some(2100),
            vec!["instance-healer replace i-1 in hub: acted (r)"],
        );
        let ev = Evidence {
            events: vec![
                event(1400, "instance-healer", "i-1", "acted", None),
                event(1500, "notifier", "x", "acted", None),
            ],
            backup_age_secs: None,
        };
        let tl = timeline(&r, &ev);
        let kinds: Vec<(u64, EventKind)> = tl.iter().map(|e| (e.at_ms, e.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (1000, EventKind::Injected),
                (1400, EventKind::Detected),
                (1400, EventKind::Action),
                (3100, EventKind::Recovered)
            ]
        );
        assert_eq!(tl[0].label, "stopped i-1");
        assert_eq!(tl[2].label, "instance-healer replace i-1: acted");
    }

    #[test]
    fn each_score_is_one_metric_record_per_scenario() {
        let t = Targets::defaults();
        let s = score(
            &report("lose-instance", "live", Some(400), Some(2100), vec![ACTED]),
            &Evidence::default(),
            &t,
            120.0,
        );
        let emf = s.metric().to_emf();
        assert_eq!(
            (emf["Scenario"].as_str(), emf["TargetsMet"].as_f64(), emf["TargetsNotMeasured"].as_f64()),
            (Some("lose-instance"), Some(1.0), Some(1.0))
        );
        assert_eq!(emf["TimeToRecover"].as_f64(), Some(2100.0));
        for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap() {
            assert!(METRICS.contains(&m["Name"].as_str().unwrap()));
        }
        let card = score_all(
            std::slice::from_ref(&report("lose-instance", "live", Some(400), Some(2100), vec![ACTED])),
            &[],
            &t,
            120.0,
        );
        assert!(card.render().contains("1 targets met, 0 missed, 1 not measured"), "{}", card.render());
    }

    // The misses cargo-mutants found in this module's library pass (README § Mutation testing).

    #[test]
    fn a_recovery_not_seen_is_judged_on_the_longer_of_the_window_and_the_drills_own_time() {
        let t = Target { rto_in_secs: 300, rpo_in_secs: 60 };
        // The drill ran 400 s (its own clock) against a 120 s window: missed by at least 100 s.
        let mut long = report("lose-instance", "live", Some(400), None, vec![]);
        long.total_ms = 400_000;
        assert_eq!(not_within(&long, t, 120.0).describe(), "missed by at least 100.0s: at least 400.0s of 300s");
        // Waited exactly the target: not measured, not missed by zero.
        long.total_ms = 300_000;
        assert!(not_within(&long, t, 10.0).describe().contains("shorter than the 300s target"));
    }

    #[test]
    fn only_the_kinds_with_a_resource_not_recovered_are_named() {
        let timing = |kind: &str, id: &str, recover: Option<u64>| crate::drill::ResourceTiming {
            kind: kind.into(),
            id: id.into(),
            group: None,
            detect_ms: Some(1),
            recover_ms: recover,
            outcome: "o".into(),
            passed: recover.is_some(),
        };
        let mut r = report("az-outage", "live", Some(1), Some(2), vec![]);
        r.resources = vec![timing("instance", "i-1", Some(5)), timing("instance", "i-2", Some(6))];
        assert_eq!(unrecovered_resources(&r), "", "every one recovered: nothing to say");
        r.resources.push(timing("database", "db-1", None));
        assert_eq!(unrecovered_resources(&r), "; 1 of 1 databases not recovered");
    }

    #[test]
    fn the_rpo_of_a_web_tier_is_none_and_of_a_restore_test_its_oldest_scored_point() {
        let t = Target { rto_in_secs: 300, rpo_in_secs: 60 };
        let web = report("lose-instance", "live", Some(1), Some(2), vec![ACTED]);
        assert!(rpo(&web, &Evidence::default(), t).describe().contains("stateless web tier"));
        let mut restore = report(RESTORE_TEST, "live", Some(1), Some(2), vec![]);
        let point = |age: f64, scores: bool| RestoreResult {
            kind: crate::drill::restores::Kind::EbsVolume,
            account: None,
            source: "vol-1".into(),
            policy: "gold".into(),
            point: Some("snap-1".into()),
            point_age_secs: Some(age),
            scores_rpo: scores,
            scratch: None,
            restore_ms: Some(1000),
            verified: None,
            error: None,
            cleaned: true,
        };
        restore.restores = vec![point(30.0, true), point(45.0, true), point(9_000.0, false)];
        assert_eq!(rpo(&restore, &Evidence::default(), t), Verdict::Met { measured_secs: 45.0, target_secs: 60 });
    }
}
