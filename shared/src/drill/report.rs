//! The drill report: what was injected, what the suite did, how fast, which guards fired, and whether
//! the scenario's expected outcome was met; for scenarios over many resources (`az-outage`), each
//! resource's times and their distribution (first, median, last); rendered as text blocks and a
//! summary table.

use serde::{Deserialize, Serialize};

/// One step of a scenario: one fault and the reaction it should get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    pub name: String,
    /// The function expected to react.
    pub function: String,
    /// What the step expected.
    pub expected: String,
    /// What the drill saw.
    pub observed: String,
    /// Injection to the function's first recorded decision.
    pub detect_ms: Option<u64>,
    /// Injection to the resources being verified healthy again.
    pub recover_ms: Option<u64>,
    /// Each decision recorded, as `function action target in account: outcome (reason)`.
    pub actions: Vec<String>,
    /// The accounts the decisions were about (`hub` for the hub's own), the hub first.
    #[serde(default)]
    pub accounts: Vec<String>,
    pub passed: bool,
}

/// The outcome a line of [`StepReport::actions`] names: the lines read `function action target in
/// account: outcome (reason)` (the drill's `steps::describe`), so it is the word after the first `: `
/// (`acted`, `refused`, `awaiting-approval`, ...); `None` for a line of another shape.
pub fn outcome_of(action: &str) -> Option<&str> {
    let (_, rest) = action.split_once(": ")?;
    rest.split_whitespace().next()
}

/// How many of each outcome, in the order first seen: `refused ×2, duplicate ×1`.
pub fn tally<'a>(outcomes: impl IntoIterator<Item = &'a str>) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for o in outcomes {
        match counts.iter_mut().find(|(w, _)| *w == o) {
            Some((_, n)) => *n += 1,
            None => counts.push((o, 1)),
        }
    }
    counts.iter().map(|(w, n)| format!("{w} ×{n}")).collect::<Vec<_>>().join(", ")
}

impl StepReport {
    /// The outcomes of the step's decisions, in order (see [`outcome_of`]).
    pub fn outcomes(&self) -> Vec<&str> {
        self.actions.iter().filter_map(|a| outcome_of(a)).collect()
    }
}

/// One scenario's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillReport {
    pub scenario: String,
    pub mode: String,
    pub started_at: String,
    /// The faults injected, in words.
    pub injected: Vec<String>,
    pub steps: Vec<StepReport>,
    /// Guards that fired (refusals, duplicates, short-circuits), in words.
    pub guards_fired: Vec<String>,
    pub passed: bool,
    pub total_ms: u64,
    /// Per resource, for scenarios over many (`az-outage`): its times and what became of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceTiming>,
    /// For `restore-test`: each restore, its recovery point, time and verification.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restores: Vec<super::restores::RestoreResult>,
}

/// One resource's reaction in a scenario over many.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceTiming {
    /// `database` or `instance`.
    pub kind: String,
    pub id: String,
    /// The Auto Scaling group of an instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Delivery of the events to the function's first recorded decision about it.
    pub detect_ms: Option<u64>,
    /// Delivery of the events to the decision that healed it, confirmed on the resource itself; `None`
    /// when it was not healed (or was, by design, held back).
    pub recover_ms: Option<u64>,
    /// What became of it, in words.
    pub outcome: String,
    /// Whether that is what the scenario expected.
    pub passed: bool,
}

/// How a set of times is spread: the first, the median and the last, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distribution {
    pub count: usize,
    pub first: u64,
    pub median: u64,
    pub last: u64,
}

impl Distribution {
    /// The distribution of `values`; `None` when there are none. The median of an even count is the
    /// mean of the two middle values.
    pub fn of(values: impl IntoIterator<Item = u64>) -> Option<Self> {
        let mut v: Vec<u64> = values.into_iter().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]).div_ceil(2) };
        Some(Distribution { count: n, first: v[0], median, last: v[n - 1] })
    }

    /// The last over the first (the first counted as at least 1 ms).
    pub fn spread(&self) -> f64 {
        self.last as f64 / self.first.max(1) as f64
    }

    fn render(&self) -> String {
        format!("first {}, median {}, last {}", fine_secs(self.first), fine_secs(self.median), fine_secs(self.last))
    }
}

/// Seconds with two decimals: per-resource times in an emulator are often well under a second.
fn fine_secs(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

fn secs(ms: Option<u64>) -> String {
    match ms {
        Some(ms) => format!("{:.1}s", ms as f64 / 1000.0),
        None => "-".to_string(),
    }
}

impl DrillReport {
    /// Time to detect: the slowest step's.
    pub fn detect_ms(&self) -> Option<u64> {
        self.steps.iter().map(|s| s.detect_ms).collect::<Option<Vec<_>>>().and_then(|v| v.into_iter().max())
    }

    /// Time to recover: the slowest step's.
    pub fn recover_ms(&self) -> Option<u64> {
        self.steps.iter().map(|s| s.recover_ms).collect::<Option<Vec<_>>>().and_then(|v| v.into_iter().max())
    }

    /// The accounts the scenario's decisions were about, over every step (`hub` first).
    pub fn accounts(&self) -> Vec<String> {
        let mut v: Vec<String> = self.steps.iter().flat_map(|s| s.accounts.iter().cloned()).collect();
        v.sort_by_key(|l| (l != "hub", l.clone()));
        v.dedup();
        v
    }

    /// The distribution of the `kind` resources' times to detect (`recover` false) or to recover.
    pub fn distribution(&self, kind: &str, recover: bool) -> Option<Distribution> {
        Distribution::of(self.resources.iter().filter(|r| r.kind == kind).filter_map(|r| {
            if recover {
                r.recover_ms
            } else {
                r.detect_ms
            }
        }))
    }

    /// One line per kind of resource: how many, and the distributions of detection and recovery.
    pub fn render_distributions(&self) -> String {
        let mut kinds: Vec<&str> = self.resources.iter().map(|r| r.kind.as_str()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        let mut s = String::new();
        for kind in kinds {
            let all = self.resources.iter().filter(|r| r.kind == kind).count();
            let detect = self.distribution(kind, false).map(|d| d.render()).unwrap_or_else(|| "none".into());
            let recover = match self.distribution(kind, true) {
                None => "none".to_string(),
                Some(d) => format!("{} of {all}: {} (last/first {:.2}x)", d.count, d.render(), d.spread()),
            };
            s.push_str(&format!("  {kind}s ({all}): detect {detect}; recover {recover}\n"));
        }
        s
    }

    /// One line: scenario, result, time to recover.
    pub fn headline(&self) -> String {
        format!(
            "{} ({}): {} — detected in {}, recovered in {}",
            self.scenario,
            self.mode,
            if self.passed { "PASS" } else { "FAIL" },
            secs(self.detect_ms()),
            secs(self.recover_ms())
        )
    }

    /// The full text block.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("=== {} [{}] {}\n", self.scenario, self.mode, if self.passed { "PASS" } else { "FAIL" }));
        s.push_str(&format!("started {}, took {}\n", self.started_at, secs(Some(self.total_ms))));
        for i in &self.injected {
            s.push_str(&format!("  injected: {i}\n"));
        }
        for step in &self.steps {
            s.push_str(&format!(
                "  step {} -> {} [{}] detect {} recover {}\n",
                step.name,
                step.function,
                if step.passed { "ok" } else { "FAILED" },
                secs(step.detect_ms),
                secs(step.recover_ms)
            ));
            s.push_str(&format!("    expected: {}\n    observed: {}\n", step.expected, step.observed));
            for a in &step.actions {
                s.push_str(&format!("    action: {a}\n"));
            }
        }
        if !self.resources.is_empty() {
            s.push_str("  per resource, from the events' delivery:\n");
            s.push_str(&self.render_distributions());
            for r in &self.resources {
                s.push_str(&format!(
                    "    {} {}{} [{}] detect {} recover {}: {}\n",
                    r.kind,
                    r.id,
                    r.group.as_deref().map(|g| format!(" ({g})")).unwrap_or_default(),
                    if r.passed { "ok" } else { "FAILED" },
                    r.detect_ms.map(fine_secs).unwrap_or_else(|| "-".into()),
                    r.recover_ms.map(fine_secs).unwrap_or_else(|| "-".into()),
                    r.outcome
                ));
            }
        }
        for g in &self.guards_fired {
            s.push_str(&format!("  guard fired: {g}\n"));
        }
        s
    }
}

/// Every report, then a summary table (the accounts acted in last: the one column of varying width).
pub fn render_all(reports: &[DrillReport]) -> String {
    let mut s = String::new();
    for r in reports {
        s.push_str(&r.render());
        s.push('\n');
    }
    s.push_str(&format!(
        "{:<24} {:<8} {:<6} {:>8} {:>9} {:>8} {:>7}  {}\n",
        "SCENARIO", "MODE", "RESULT", "DETECT", "RECOVER", "ACTIONS", "GUARDS", "ACCOUNTS"
    ));
    for r in reports {
        let actions: usize = r.steps.iter().map(|st| st.actions.len()).sum();
        let accounts = r.accounts();
        s.push_str(&format!(
            "{:<24} {:<8} {:<6} {:>8} {:>9} {:>8} {:>7}  {}\n",
            r.scenario,
            r.mode,
            if r.passed { "PASS" } else { "FAIL" },
            secs(r.detect_ms()),
            secs(r.recover_ms()),
            actions,
            r.guards_fired.len(),
            if accounts.is_empty() { "-".to_string() } else { accounts.join(",") }
        ));
    }
    let passed = reports.iter().filter(|r| r.passed).count();
    s.push_str(&format!("{passed} of {} scenarios passed\n", reports.len()));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_reports_each_scenario_and_the_total() {
        let r = DrillReport {
            scenario: "lose-instance".into(),
            mode: "live".into(),
            started_at: "t".into(),
            injected: vec!["stopped i-1".into()],
            steps: vec![StepReport {
                name: "replace".into(),
                function: "instance-healer".into(),
                expected: "e".into(),
                observed: "o".into(),
                detect_ms: Some(400),
                recover_ms: Some(2100),
                actions: vec!["a".into()],
                accounts: vec!["111111111111".into()],
                passed: true,
            }],
            guards_fired: vec![],
            passed: true,
            total_ms: 2500,
            resources: vec![],
            restores: vec![],
        };
        let text = render_all(std::slice::from_ref(&r));
        assert!(
            text.contains(
                "lose-instance            live     PASS       0.4s      2.1s        1       0  111111111111\n"
            ),
            "{text}"
        );
        assert!(text.contains("GUARDS  ACCOUNTS\n"), "{text}");
        assert!(text.ends_with("1 of 1 scenarios passed\n"));
        assert_eq!(r.headline(), "lose-instance (live): PASS — detected in 0.4s, recovered in 2.1s");
    }

    #[test]
    fn a_steps_outcomes_are_read_from_its_decisions_and_tallied() {
        let step = StepReport {
            name: "n".into(),
            function: "instance-healer".into(),
            expected: "e".into(),
            observed: "o".into(),
            detect_ms: None,
            recover_ms: None,
            actions: vec![
                "instance-healer replace i-1 in hub: refused (replacing nothing: a person must look)".into(),
                "dns-failover failover arn:aws:x:y in 111111111111: awaiting-approval (a region: ask)".into(),
                "instance-healer replace i-2 in hub: refused (r: with a colon)".into(),
                "not a decision line".into(),
            ],
            accounts: vec![],
            passed: true,
        };
        assert_eq!(step.outcomes(), vec!["refused", "awaiting-approval", "refused"]);
        assert_eq!(tally(step.outcomes()), "refused ×2, awaiting-approval ×1");
        assert_eq!(tally([]), "");
    }

    #[test]
    fn distributions_show_first_median_and_last_per_kind() {
        assert_eq!(Distribution::of([]), None);
        let d = Distribution::of([400, 100, 300]).unwrap();
        assert_eq!((d.count, d.first, d.median, d.last), (3, 100, 300, 400));
        assert_eq!(Distribution::of([100, 200, 300, 400]).unwrap().median, 250);
        assert!((d.spread() - 4.0).abs() < 1e-9);
        let timing = |kind: &str, id: &str, detect, recover| ResourceTiming {
            kind: kind.into(),
            id: id.into(),
            group: None,
            detect_ms: Some(detect),
            recover_ms: recover,
            outcome: "o".into(),
            passed: true,
        };
        let r = DrillReport {
            scenario: "az-outage".into(),
            mode: "live".into(),
            started_at: "t".into(),
            injected: vec![],
            steps: vec![],
            guards_fired: vec![],
            passed: true,
            total_ms: 1,
            resources: vec![
                timing("database", "db-0", 100, Some(1000)),
                timing("database", "db-1", 200, Some(1200)),
                timing("database", "db-2", 300, Some(1500)),
                timing("instance", "i-1", 50, None),
            ],
            restores: vec![],
        };
        let text = r.render_distributions();
        assert!(
            text.contains(
                "  databases (3): detect first 0.10s, median 0.20s, last 0.30s; \
                 recover 3 of 3: first 1.00s, median 1.20s, last 1.50s (last/first 1.50x)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  instances (1): detect first 0.05s, median 0.05s, last 0.05s; recover none\n"),
            "{text}"
        );
        assert!(r.render().contains("    database db-2 [ok] detect 0.30s recover 1.50s: o\n"), "{}", r.render());
    }
}
