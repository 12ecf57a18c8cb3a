//! The drill's manual `preflight` and `coverage` actions (issue #30): `{"source":"selfheal.manual",
//! "action":"preflight"}` proves the stack the drill is deployed in ([`crate::preflight`]), `coverage`
//! reports only which opted-in resources have an alarm that reaches the suite (the stack's
//! `CoverageReport` schedule runs it, disabled by default). Both answer the report as JSON and record
//! one envelope (acted when everything holds, failed with the count to fix otherwise), so a report
//! that does not hold reaches the suite's topics like any other decision.

use serde_json::Value;

use super::{Drill, FUNCTION};
use crate::config::Env;
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::Result;
use crate::preflight::{self, Deployment, Scope};
use crate::trigger::{parse_event, TriggerKind};

/// The preflight scope a payload asks for, when it is a manual `preflight` or `coverage` invocation.
pub fn requested(payload: &Value) -> Option<Scope> {
    let mut triggers = parse_event(payload).ok()?;
    let TriggerKind::Manual(m) = triggers.pop()?.kind else { return None };
    match m.action.as_str() {
        "preflight" => Some(Scope::Everything),
        "coverage" => Some(Scope::CoverageOnly),
        _ => None,
    }
}

impl Drill {
    /// Runs preflight (or coverage alone) against the stack the drill is deployed in.
    pub async fn preflight(&self, scope: Scope) -> Result<Value> {
        let account = preflight::caller_account(&self.ctx.aws).await?;
        let region = self.ctx.aws.sdk.region().map(|r| r.to_string()).unwrap_or_default();
        let mut env = Env::from_process();
        let d = Deployment::from_env(&mut env, &account, &region);
        env.finish()?;
        self.preflight_of(&d, scope).await
    }

    /// Runs preflight (or coverage alone) against `d`, records its envelope and answers the report.
    pub async fn preflight_of(&self, d: &Deployment, scope: Scope) -> Result<Value> {
        let report = preflight::run(&self.ctx.aws, d, scope).await;
        let action = if scope == Scope::CoverageOnly { "coverage" } else { "preflight" };
        tracing::info!(
            passed = report.passed(),
            failures = report.failures(),
            action,
            "preflight finished\n{}",
            report.render()
        );
        let (outcome, severity) =
            if report.passed() { (Outcome::Acted, Severity::Info) } else { (Outcome::Failed, Severity::Warning) };
        let headline = if report.passed() {
            format!("{action}: all {} checks hold", report.checks.len())
        } else {
            format!("{action}: {} of {} checks do not hold", report.failures(), report.checks.len())
        };
        let envelope = Envelope::new(FUNCTION, action, Target::new("stack", &d.stack), outcome, headline)
            .severity(severity)
            .detail("failures", report.checks.iter().filter(|c| !c.holds).collect::<Vec<_>>());
        self.ctx.record(envelope).await?;
        Ok(report.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn preflight_and_coverage_are_recognised_and_a_drill_is_not() {
        assert_eq!(requested(&json!({"source": "selfheal.manual", "action": "preflight"})), Some(Scope::Everything));
        assert_eq!(requested(&json!({"source": "selfheal.manual", "action": "coverage"})), Some(Scope::CoverageOnly));
        assert_eq!(requested(&json!({"source": "selfheal.manual", "action": "drill"})), None);
        assert_eq!(requested(&json!({"nonsense": true})), None);
    }
}
