//! The drill report: what was injected, what the suite did, how fast, which guards fired, and whether
//! the scenario's expected outcome was met; rendered as text blocks and a summary table.

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
}
