//! Drills in a real account through AWS Fault Injection Service: instead of injecting the fault
//! itself, the drill starts one of the suite's experiment templates (`infra/drills.yaml`: instance
//! loss, AZ power interruption, database failover; targets selected by the drill tag, stop conditions
//! on CloudWatch alarms), then follows the suite's reaction in the ledger — detected at its first
//! decision, recovered at the decision the scenario wants (each function verifies its own action
//! before recording `acted`) — and the report is scored like any other.
//!
//! Which template a scenario starts: `SELFHEAL_DRILL_FIS_TEMPLATES`, a JSON map of scenario name to
//! experiment template id (`{"lose-instance":"EXT1a2b..","lose-az":"EXT..","lose-primary-db":"EXT.."}`),
//! with `params.fis: true` in the drill invocation; or `params.fisTemplate: "EXT.."` for one named
//! scenario. FIS injects real faults: only live drills (with the confirmation phrase) start one. The
//! local game day keeps injecting its faults itself (moto records experiments, it injects nothing).

use std::collections::BTreeMap;
use std::time::Instant;

pub use aws_sdk_fis as sdk;
use serde_json::Value;

use super::report::{DrillReport, StepReport};
use super::{Drill, DrillRequest, Mode, Scenario};
use crate::config::Env;
use crate::error::{Error, Result};

/// Scenario name -> experiment template id (`SELFHEAL_DRILL_FIS_TEMPLATES`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FisTemplates(pub BTreeMap<String, String>);

impl FisTemplates {
    pub fn read(env: &mut Env) -> Self {
        let Some(text) = env.optional("SELFHEAL_DRILL_FIS_TEMPLATES") else { return Self::default() };
        match serde_json::from_str::<BTreeMap<String, String>>(&text) {
            Ok(map) => {
                for k in map.keys() {
                    if Scenario::parse(k).is_err() {
                        env.problem("SELFHEAL_DRILL_FIS_TEMPLATES", format!("names {k:?}, which is no scenario"));
                    }
                }
                FisTemplates(map)
            }
            Err(e) => {
                env.problem(
                    "SELFHEAL_DRILL_FIS_TEMPLATES",
                    format!("must be a JSON map of scenario to template id: {e}"),
                );
                Self::default()
            }
        }
    }
}

/// What a scenario's FIS experiment should get from the suite: the function, the outcome wanted.
pub fn reaction(s: Scenario) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match s {
        Scenario::LoseInstance => ("instance-healer", "acted", "the lost instance replaced through its group"),
        Scenario::LoseAz => (
            "zone-evacuator",
            "acted",
            "the healer short-circuits on the AZ and zone-evacuator shifts its load balancers and groups away",
        ),
        Scenario::AzOutage => ("db-failover", "acted", "each failed database promoted"),
        Scenario::LosePrimaryDb => ("db-failover", "acted", "the best replica promoted and the CNAME repointed"),
        Scenario::RegionFailover => ("dns-failover", "acted", "the app record flipped to the standby"),
        // A gray failure and two impaired AZs are the alarms' state changes: the drill delivers them, no
        // experiment injects them.
        Scenario::StaleBackups
        | Scenario::ApprovalExpires
        | Scenario::GrayAz
        | Scenario::TwoAz
        | Scenario::RestoreTest => return None,
    })
}

/// The experiments an invocation asks for: `(scenario, template id)` each, or `None` for a drill that
/// injects its faults itself.
pub fn plan(payload: &Value, req: &DrillRequest, templates: &FisTemplates) -> Result<Option<Vec<(Scenario, String)>>> {
    let params = payload.get("params").cloned().unwrap_or(Value::Null);
    let one = params.get("fisTemplate").and_then(Value::as_str).map(str::to_string);
    let all = params.get("fis").and_then(Value::as_bool) == Some(true);
    if one.is_none() && !all {
        return Ok(None);
    }
    if req.mode != Mode::Live {
        return Err(Error::Precondition(
            "an AWS FIS experiment injects real faults: run it as a live drill (mode live, with the confirmation)"
                .into(),
        ));
    }
    let mut out = Vec::new();
    for s in &req.scenarios {
        if reaction(*s).is_none() {
            return Err(Error::malformed("drill", format!("{} has no FIS experiment: nothing to inject", s.name())));
        }
        let id = match &one {
            Some(id) if req.scenarios.len() == 1 => id.clone(),
            Some(_) => return Err(Error::malformed("drill", "params.fisTemplate names one scenario's template")),
            None => templates.0.get(s.name()).cloned().ok_or_else(|| Error::Config {
                name: "SELFHEAL_DRILL_FIS_TEMPLATES".into(),
                problem: format!("has no template for {}", s.name()),
            })?,
        };
        out.push((*s, id));
    }
    Ok(Some(out))
}

/// Starts the experiment (`StartExperiment`); returns its id.
pub async fn start(drill: &Drill, template_id: &str) -> Result<String> {
    let client = sdk::Client::new(&drill.ctx.aws.sdk);
    let out = client
        .start_experiment()
        .experiment_template_id(template_id)
        .client_token(uuid::Uuid::new_v4().to_string())
        .send()
        .await
        .map_err(|e| Error::aws("fis", "StartExperiment", e))?;
    out.experiment()
        .and_then(|e| e.id())
        .map(str::to_string)
        .ok_or_else(|| Error::Precondition("StartExperiment returned no experiment".into()))
}

/// The experiment's state and its reason (`GetExperiment`).
pub async fn state(drill: &Drill, id: &str) -> Result<(String, String)> {
    let client = sdk::Client::new(&drill.ctx.aws.sdk);
    let out = client.get_experiment().id(id).send().await.map_err(|e| Error::aws("fis", "GetExperiment", e))?;
    let st = out.experiment().and_then(|e| e.state());
    Ok((
        st.and_then(|s| s.status()).map(|s| s.as_str().to_string()).unwrap_or_else(|| "unknown".into()),
        st.and_then(|s| s.reason()).unwrap_or("").to_string(),
    ))
}

/// Runs one scenario through an experiment and reports it.
pub async fn run(drill: &Drill, scenario: Scenario, template_id: &str) -> DrillReport {
    let started = Instant::now();
    let t0 = chrono::Utc::now();
    let since = t0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut report = DrillReport {
        scenario: scenario.name().into(),
        mode: "live".into(),
        started_at: since.clone(),
        injected: vec![],
        steps: vec![],
        guards_fired: vec![],
        passed: false,
        total_ms: 0,
        resources: vec![],
        restores: vec![],
    };
    let (function, want, expected) = reaction(scenario).unwrap_or(("drill", "acted", "nothing"));
    let step = match Box::pin(follow(drill, template_id, function, want, &since, t0, &mut report)).await {
        Ok(step) => step,
        Err(e) => StepReport {
            name: format!("AWS FIS experiment from {template_id}"),
            function: "drill".into(),
            expected: "the experiment starts and the suite reacts".into(),
            observed: format!("drill error: {e}"),
            detect_ms: None,
            recover_ms: None,
            actions: vec![],
            accounts: vec![],
            passed: false,
        },
    };
    report.steps.push(StepReport { expected: expected.into(), ..step });
    report.passed = report.steps.iter().all(|s| s.passed);
    report.total_ms = started.elapsed().as_millis() as u64;
    report
}

async fn follow(
    drill: &Drill,
    template_id: &str,
    function: &str,
    want: &str,
    since: &str,
    t0: chrono::DateTime<chrono::Utc>,
    report: &mut DrillReport,
) -> Result<StepReport> {
    let clock = Instant::now();
    let id = start(drill, template_id).await?;
    report.injected.push(format!("AWS FIS experiment {id} from template {template_id}"));
    let at = |time: &str| {
        chrono::DateTime::parse_from_rfc3339(time)
            .map(|t| (t.with_timezone(&chrono::Utc) - t0).num_milliseconds().max(0) as u64)
            .ok()
    };
    let deadline = clock + drill.cfg.recovery_timeout;
    let (mut detect_ms, mut recover_ms) = (None, None);
    let mut records;
    let mut experiment;
    loop {
        experiment = state(drill, &id).await?;
        records = drill
            .ctx
            .ledger
            .audit_since(since)
            .await?
            .into_iter()
            .filter(|r| r.function == function)
            .collect::<Vec<_>>();
        if detect_ms.is_none() {
            detect_ms = records.first().and_then(|r| at(&r.time));
        }
        if let Some(r) = records.iter().find(|r| r.outcome == want) {
            recover_ms = at(&r.time);
            break;
        }
        // A failed experiment injected nothing (a stop condition that fired after the injection
        // still leaves the fault for the suite to heal: keep waiting).
        if experiment.0 == "failed" || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(drill.cfg.poll_interval).await;
    }
    for r in &records {
        if matches!(r.outcome.as_str(), "refused" | "duplicate") && want != "refused" {
            report.guards_fired.push(super::steps::describe(drill, r));
        }
    }
    let outcomes: Vec<&str> = records.iter().map(|r| r.outcome.as_str()).collect();
    let decisions = if records.is_empty() {
        format!("no decision by {function} within {}s", drill.cfg.recovery_timeout.as_secs())
    } else {
        format!("decisions: {}", outcomes.join(", "))
    };
    let reason = if experiment.1.is_empty() { String::new() } else { format!(" ({})", experiment.1) };
    Ok(StepReport {
        name: format!("AWS FIS experiment {id} from {template_id}"),
        function: function.into(),
        expected: String::new(),
        observed: format!("{decisions}; experiment {}{reason}", experiment.0),
        detect_ms,
        recover_ms,
        actions: records.iter().map(|r| super::steps::describe(drill, r)).collect(),
        accounts: {
            let mut a: Vec<String> = records.iter().map(|r| super::steps::account_label(drill, r)).collect();
            a.sort_by_key(|l| (l != "hub", l.clone()));
            a.dedup();
            a
        },
        passed: recover_ms.is_some(),
    })
}

/// Runs every planned experiment in order, recording each report in the ledger as the drill does.
pub async fn run_all(drill: &Drill, plan: &[(Scenario, String)]) -> Result<Vec<DrillReport>> {
    let mut out = Vec::new();
    for (s, id) in plan {
        let report = run(drill, *s, id).await;
        let envelope = crate::envelope::Envelope::new(
            super::FUNCTION,
            s.name(),
            crate::envelope::Target::new("scenario", s.name()),
            if report.passed { crate::envelope::Outcome::Acted } else { crate::envelope::Outcome::Failed },
            report.headline(),
        )
        .detail("report", &report)
        .detail("fisTemplate", id);
        drill.ctx.record(envelope).await?;
        out.push(report);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(mode: Mode, scenarios: Vec<Scenario>) -> DrillRequest {
        DrillRequest { scenarios, mode }
    }

    #[test]
    fn a_plan_names_each_scenarios_template_and_only_for_live_drills() {
        let templates = FisTemplates([("lose-instance".to_string(), "EXT1".to_string())].into());
        let live = req(Mode::Live, vec![Scenario::LoseInstance]);
        assert_eq!(plan(&json!({"params": {}}), &live, &templates).unwrap(), None);
        assert_eq!(
            plan(&json!({"params": {"fis": true}}), &live, &templates).unwrap(),
            Some(vec![(Scenario::LoseInstance, "EXT1".to_string())])
        );
        assert_eq!(
            plan(&json!({"params": {"fisTemplate": "EXT9"}}), &live, &templates).unwrap(),
            Some(vec![(Scenario::LoseInstance, "EXT9".to_string())])
        );
        let dry = req(Mode::DryRun, vec![Scenario::LoseInstance]);
        assert!(plan(&json!({"params": {"fis": true}}), &dry, &templates)
            .unwrap_err()
            .to_string()
            .contains("live drill"));
        let db = req(Mode::Live, vec![Scenario::LosePrimaryDb]);
        assert!(plan(&json!({"params": {"fis": true}}), &db, &templates)
            .unwrap_err()
            .to_string()
            .contains("SELFHEAL_DRILL_FIS_TEMPLATES"));
        let backups = req(Mode::Live, vec![Scenario::StaleBackups]);
        assert!(plan(&json!({"params": {"fis": true}}), &backups, &templates).is_err());
    }

    #[test]
    fn templates_must_name_scenarios() {
        let mut env = Env::from_map(
            [("SELFHEAL_DRILL_FIS_TEMPLATES".to_string(), r#"{"lose-everything":"EXT"}"#.to_string())].into(),
        );
        FisTemplates::read(&mut env);
        assert!(env.finish().is_err());
        let mut env =
            Env::from_map([("SELFHEAL_DRILL_FIS_TEMPLATES".to_string(), r#"{"lose-az":"EXT2"}"#.to_string())].into());
        assert_eq!(FisTemplates::read(&mut env).0["lose-az"], "EXT2");
        assert!(env.finish().is_ok());
    }
}
