//! The resilience scorecard: each drill result scored against the RTO and RPO targets of its
//! disruption type ([`super::targets`]): met, missed (by how much), or not measured (and why).
//!
//! | scenario | disruption type | RTO measured as | RPO measured as |
//! |---|---|---|---|
//! | `lose-instance` | Hardware | injection to the group verified back at capacity | not measured: a stateless web tier has no data to lose |
//! | `lose-az` | AZ | injection to the expected reaction verified (the short-circuit and the page: healing an AZ is a person's call) | not measured: stateless |
//! | `lose-primary-db` | Hardware (the fault is the instance's: a stopped instance, RDS-EVENT-0031's storage failure) | injection to the replica promoted and the CNAME repointed | the promoted replica's lag at promotion (db-failover's `lagSeconds`) |
//! | `region-failover` | Region | injection to the last step verified | the promoted replica's lag at promotion |
//! | `stale-backups` | Software | not measured: no outage, a backup gap is scored by its RPO | the age of the newest snapshot (or of the volume, if it never had one) when the backup was needed, the worst volume's |
//! | `az-outage` | AZ | injection to the last resource verified | the largest lag among the promotions |
//! | `approval-expires` | none: it checks a guard (an approval left to expire), not a recovery | not measured | not measured |
//!
//! A dry run injects nothing: its RTO and RPO are not measured. A scenario not recovered within the
//! drill's window missed its RTO when the window is past the target (by at least the difference), and
//! is not measured when the window was shorter than the target.
//!
//! Everything here is pure except [`gather`], which reads the evidence (the ledger's decisions, the
//! snapshots' ages) once the scenarios have run.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::report::DrillReport;
use super::targets::{Disruption, Target, Targets};
use crate::telemetry::Metric;

/// The disruption type a scenario scores against.
pub fn disruption(scenario: &str) -> Option<Disruption> {
    Some(match scenario {
        "lose-instance" => Disruption::Hardware,
        "lose-az" | "az-outage" => Disruption::Az,
        "lose-primary-db" => Disruption::Hardware,
        "region-failover" => Disruption::Region,
        "stale-backups" => Disruption::Software,
        // `approval-expires` (and any scenario not listed) checks a guard, not a recovery: unscored.
        _ => return None,
    })
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

    /// `met`, `missed` or `not-measured`.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Met { .. } => "met",
            Verdict::Missed { .. } => "missed",
            Verdict::NotMeasured { .. } => "not-measured",
        }
    }

    /// In words: `met: 2.1s of 300s`, `missed by 40.0s: 340.0s of 300s`, `not measured: why`.
    pub fn describe(&self) -> String {
        match self {
            Verdict::Met { measured_secs, target_secs } => format!("met: {measured_secs:.1}s of {target_secs}s"),
            Verdict::Missed { measured_secs, target_secs, by_secs, lower_bound } => {
                let at_least = if *lower_bound { "at least " } else { "" };
                format!("missed by {at_least}{by_secs:.1}s: {at_least}{measured_secs:.1}s of {target_secs}s")
            }
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
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Injected => "injected",
            EventKind::Detected => "detected",
            EventKind::Action => "action",
            EventKind::Recovered => "recovered",
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
    pub rpo: Verdict,
    pub passed: bool,
    pub timeline: Vec<TimelineEvent>,
}

/// Every scenario's score, and where the targets came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scorecard {
    pub targets: Targets,
    pub scores: Vec<Score>,
}

/// The time to recover a report measures, in seconds, or why there is none.
fn rto(report: &DrillReport, target: Target, window_secs: f64) -> Verdict {
    if report.mode != "live" {
        return Verdict::not("a dry run injects nothing");
    }
    if report.scenario == "stale-backups" {
        return Verdict::not("no outage: a backup gap is scored by its RPO");
    }
    match report.recover_ms() {
        Some(ms) if report.passed => Verdict::judge(ms as f64 / 1000.0, target.rto_in_secs),
        _ => {
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
    }
}

/// The data a report's disruption put at risk, in seconds, or why it is not measured.
fn rpo(report: &DrillReport, evidence: &Evidence, target: Target) -> Verdict {
    if report.mode != "live" {
        return Verdict::not("a dry run injects nothing");
    }
    match report.scenario.as_str() {
        "lose-instance" | "lose-az" => Verdict::not("a stateless web tier: no data to lose"),
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

/// The decisions' prefix as a step's `actions` list names them: `function action target `.
fn names(step_action: &str, e: &LedgerEvent) -> bool {
    step_action.starts_with(&format!("{} {} {} ", e.function, e.action, e.target))
}

/// A report's timeline: the fault injected, detected, each decision, recovered, per step.
pub fn timeline(report: &DrillReport, evidence: &Evidence) -> Vec<TimelineEvent> {
    let mut out = Vec::new();
    let mut cursor = 0u64;
    let mut by_time: Vec<&LedgerEvent> = evidence.events.iter().collect();
    by_time.sort_by_key(|e| e.at_ms);
    for (i, step) in report.steps.iter().enumerate() {
        let mine: Vec<&LedgerEvent> = by_time
            .iter()
            .copied()
            .filter(|e| e.function == step.function && e.at_ms >= cursor && step.actions.iter().any(|a| names(a, e)))
            // A later step's identical decisions (a second failback) are its own: as many as it lists.
            .take(step.actions.len())
            .collect();
        let first = mine.iter().map(|e| e.at_ms).min();
        // The step's start: its first decision less its time to detect (both from the ledger's clock).
        let t0 = match (first, step.detect_ms) {
            (Some(f), Some(d)) => f.saturating_sub(d).max(cursor),
            _ => cursor,
        };
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
        for e in &mine {
            out.push(TimelineEvent {
                at_ms: e.at_ms,
                kind: EventKind::Action,
                label: format!("{} {} {}: {}", e.function, e.action, e.target, e.outcome),
            });
        }
        let end = match step.recover_ms {
            Some(r) => {
                out.push(TimelineEvent {
                    at_ms: t0 + r,
                    kind: EventKind::Recovered,
                    label: format!("recovered: {}", step.name),
                });
                t0 + r
            }
            None => mine.iter().map(|e| e.at_ms).max().unwrap_or(t0),
        };
        cursor = cursor.max(end);
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
    let (rto_v, rpo_v) = match target {
        Some(t) => (rto(report, t, window_secs), rpo(report, evidence, t)),
        None => (Verdict::not(UNSCORED), Verdict::not(UNSCORED)),
    };
    Score {
        scenario: report.scenario.clone(),
        mode: report.mode.clone(),
        disruption,
        target,
        rto: rto_v,
        rpo: rpo_v,
        passed: report.passed,
        timeline: timeline(report, evidence),
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
    /// The EMF record of this score: per scenario, how many targets were met, missed and not measured,
    /// and the times measured (the dashboard's "drill scores").
    pub fn metric(&self) -> Metric {
        let verdicts = [&self.rto, &self.rpo];
        let n = |w: &str| verdicts.iter().filter(|v| v.word() == w).count() as f64;
        let mut m = Metric::new()
            .dimension("Function", super::FUNCTION)
            .dimension("Scenario", &self.scenario)
            .count("TargetsMet", n("met"))
            .count("TargetsMissed", n("missed"))
            .count("TargetsNotMeasured", n("not-measured"));
        let secs = |v: &Verdict| match v {
            Verdict::Met { measured_secs, .. } | Verdict::Missed { measured_secs, .. } => Some(*measured_secs),
            Verdict::NotMeasured { .. } => None,
        };
        if let Some(s) = secs(&self.rto) {
            m = m.millis("TimeToRecover", s * 1000.0);
        }
        if let Some(s) = secs(&self.rpo) {
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
                sc.rto.describe(),
                sc.rpo.describe()
            ));
        }
        let all: Vec<&Verdict> = self.scores.iter().flat_map(|s| [&s.rto, &s.rpo]).collect();
        let n = |w: &str| all.iter().filter(|v| v.word() == w).count();
        s.push_str(&format!("{} targets met, {} missed, {} not measured\n", n("met"), n("missed"), n("not-measured")));
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
    let targets = match source.load(&drill.ctx.aws).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "the drill's targets could not be read; scoring against the defaults");
            Targets {
                source: format!("defaults (the configured targets could not be read: {e})"),
                ..Targets::defaults()
            }
        }
    };
    let evidence = gather(drill, reports, Some(arch)).await;
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
        }
    }

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
        let ok =
            score(&report("lose-instance", "live", Some(400), Some(2100), vec![]), &Evidence::default(), &t, 120.0);
        assert_eq!(ok.rto, Verdict::Met { measured_secs: 2.1, target_secs: 300 });
        assert_eq!(ok.rpo.word(), "not-measured");
        let slow =
            score(&report("lose-instance", "live", Some(400), Some(400_000), vec![]), &Evidence::default(), &t, 600.0);
        assert_eq!(slow.rto.describe(), "missed by 100.0s: 400.0s of 300s");
        // Not recovered: missed by at least the window past the target, or not measured within it.
        let never = report("lose-instance", "live", Some(400), None, vec![]);
        assert_eq!(
            score(&never, &Evidence::default(), &t, 400.0).rto.describe(),
            "missed by at least 100.0s: at least 400.0s of 300s"
        );
        assert!(score(&never, &Evidence::default(), &t, 120.0).rto.describe().contains("shorter than the 300s target"));
        let dry = score(&report("lose-instance", "dry-run", Some(1), Some(2), vec![]), &Evidence::default(), &t, 120.0);
        assert_eq!((dry.rto.word(), dry.rpo.word()), ("not-measured", "not-measured"));
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
        let s = score(&report("lose-instance", "live", Some(400), Some(2100), vec![]), &Evidence::default(), &t, 120.0);
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
            std::slice::from_ref(&report("lose-instance", "live", Some(400), Some(2100), vec![])),
            &[],
            &t,
            120.0,
        );
        assert!(card.render().contains("1 targets met, 0 missed, 1 not measured"), "{}", card.render());
    }
}
