//! drill: game days on demand.
//!
//! A drill injects a fault the way reality would (stops an instance, loses an AZ, stops the primary
//! database, fails the primary region's health check, lets backups go stale), delivers the events AWS
//! would deliver, follows the suite's reaction through the ledger's audit trail and the resources
//! themselves, and ends with a [`DrillReport`]: what was injected, each action taken, time to detect
//! and to recover, the guards that fired, and pass/fail against the scenario's expected outcome.
//!
//! - [`architecture`]: the reference architecture under drill, as ids (what the drill reads from
//!   `SELFHEAL_DRILL_ARCHITECTURE`). Creating it in the emulator for a local game day, the sandbox's
//!   sample events and `drill-cli` are the dev-only `gameday` crate's (`tools/gameday`), which nothing
//!   deployed depends on.
//! - [`scenarios`]: the scenarios, their injections and their expected outcomes; [`az_outage`]: the
//!   largest one, a whole AZ of a larger fleet lost at once and healed in parallel; `evacuation`: the
//!   AZ evacuation the zone scenarios expect of zone-evacuator; [`steps`]: the step machinery they all
//!   build on (deliver a step's events, relay one function's decisions to another as the suite's topic
//!   would, follow the ledger, verify the resources).
//! - [`events`]: the events a drill delivers, shaped the way AWS delivers them.
//! - [`deliver`]: how events reach the functions (the Lambda runtime emulator over HTTP, an SNS topic
//!   in a real account, or in-process handlers in tests).
//! - [`report`]: the report and its rendering.
//! - [`targets`], [`scorecard`], [`html`]: RTO/RPO targets per disruption type, each result scored
//!   against them, and the self-contained HTML report; [`fis`]: drills started as AWS FIS experiments;
//!   [`practice_run`]: drills started as ARC zonal autoshift practice runs; [`preflight`]: the manual
//!   `preflight` and `coverage` actions (issue #30); [`standard_alarms`]: the manual `keep-alarms`
//!   action (issue #30, optional).
//!
//! Live drills refuse unless the invocation carries the confirmation phrase [`CONFIRM_PHRASE`] and
//! every target carries the drill tag ([`DRILL_TAG`]` = true`); dry-run drills inject
//! nothing and ask each function for its dry-run decision instead.
//!
//! The drill takes only manual `drill` invocations ([`HANDLES`]). Unlike the other functions it does
//! not record any other event as `skipped`: no rule or subscription delivers events to it, it is
//! invoked synchronously by a person or `drill-cli` (so nothing retries it and nothing reaches a
//! dead-letter queue), and the caller is best served by an error at once, naming what arrived.

pub mod architecture;
pub mod az_outage;
pub mod deliver;
mod evacuation;
pub mod events;
pub mod fis;
pub mod html;
pub mod practice_run;
pub mod preflight;
pub mod report;
mod resources;
pub mod restore;
pub mod restores;
pub mod scenarios;
pub mod scorecard;
pub mod standard_alarms;
pub mod steps;
pub mod targets;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{CommonConfig, Env};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::trigger::{parse_event, TriggerKind};

pub use architecture::{Architecture, Fleet, DRILL_TAG};
pub use deliver::Deliverer;
pub use report::{Distribution, DrillReport, ResourceTiming, StepReport};
pub use scenarios::Scenario;

/// The function's name in envelopes and logs.
pub const FUNCTION: &str = "drill";

/// What a live drill's invocation must carry in `params.confirm`.
pub const CONFIRM_PHRASE: &str = "inject real faults";

/// Whether a drill changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    DryRun,
    Live,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "dry-run" => Ok(Mode::DryRun),
            "live" => Ok(Mode::Live),
            other => Err(Error::malformed("drill", format!("mode must be dry-run or live, got {other:?}"))),
        }
    }
}

/// The drill's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillConfig {
    /// How long to wait for the suite to detect and recover, per step.
    pub recovery_timeout: Duration,
    /// How often to poll while waiting.
    pub poll_interval: Duration,
    /// The architecture under drill, as the game day's provisioning wrote it (JSON), when known.
    pub architecture: Option<Architecture>,
    /// The instance-healer's maxUnhealthy thresholds (`SELFHEAL_HEALER_MAX_UNHEALTHY_PERCENT`,
    /// `SELFHEAL_HEALER_MIN_UNHEALTHY`, read as the healer reads them): what `az-outage` expects of each
    /// group follows from them. A game day gives every function the same environment.
    pub max_unhealthy_percent: u32,
    pub min_unhealthy: u32,
    /// zone-evacuator's settings (`SELFHEAL_ZONE_*`, read as it reads them): how many load balancers'
    /// per-AZ alarms call an AZ impaired, how long the hysteresis before an evacuation ends.
    pub zone: crate::zone::ZoneConfig,
    /// The restore test's settings (`restore-test`).
    pub restore: restore::RestoreConfig,
}

impl DrillConfig {
    pub fn read(env: &mut Env) -> Self {
        let architecture = match env.optional("SELFHEAL_DRILL_ARCHITECTURE") {
            None => None,
            Some(text) => match serde_json::from_str(&text) {
                Ok(a) => Some(a),
                Err(e) => {
                    env.problem("SELFHEAL_DRILL_ARCHITECTURE", format!("is not an architecture description: {e}"));
                    None
                }
            },
        };
        let healer = crate::healer::HealerConfig::read(env);
        let zone = crate::zone::ZoneConfig::read(env);
        DrillConfig {
            recovery_timeout: env.seconds("SELFHEAL_DRILL_RECOVERY_TIMEOUT_SECONDS", 180, 1, 3600),
            poll_interval: Duration::from_millis(env.number("SELFHEAL_DRILL_POLL_MS", 500u64, 10, 60_000)),
            architecture,
            max_unhealthy_percent: healer.max_unhealthy_percent,
            min_unhealthy: healer.min_unhealthy,
            zone,
            restore: restore::RestoreConfig::read(env),
        }
    }
}

/// What the drill takes, for the message naming an event that is not for it.
pub const HANDLES: &str = "manual \"drill\", \"preflight\", \"coverage\" and \"keep-alarms\" invocations";

/// One drill request, from a manual invocation's `params`.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillRequest {
    pub scenarios: Vec<Scenario>,
    pub mode: Mode,
}

/// Reads and validates a drill request: `{"source":"selfheal.manual","action":"drill",
/// "params":{"scenario":"lose-instance"|"all","mode":"dry-run"|"live","confirm":"inject real faults"}}`.
pub fn parse_request(payload: &Value) -> Result<DrillRequest> {
    let m = parse_manual(payload)?;
    let scenario = m
        .params
        .get("scenario")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::malformed("drill", "params.scenario is required (a scenario name or \"all\")"))?;
    let scenarios = if scenario == "all" { Scenario::ALL.to_vec() } else { vec![Scenario::parse(scenario)?] };
    Ok(DrillRequest { scenarios, mode: parse_mode(&m)? })
}

/// The manual `drill` invocation in a payload.
fn parse_manual(payload: &Value) -> Result<crate::trigger::Manual> {
    let mut triggers = parse_event(payload)?;
    let trigger = triggers.pop().ok_or_else(|| Error::malformed("drill", "no trigger"))?;
    let TriggerKind::Manual(m) = trigger.kind else {
        return Err(Error::UnsupportedTrigger { function: FUNCTION, event: trigger.describe(), handles: HANDLES });
    };
    if m.action != "drill" {
        return Err(Error::malformed("drill", format!("action must be \"drill\", got {:?}", m.action)));
    }
    Ok(m)
}

/// A drill invocation's mode (`params.mode`, dry-run unless said; `dryRun: true` wins); a live one must
/// carry the confirmation phrase.
fn parse_mode(m: &crate::trigger::Manual) -> Result<Mode> {
    let mode = match m.params.get("mode").and_then(Value::as_str) {
        Some(s) => Mode::parse(s)?,
        None => Mode::DryRun,
    };
    let mode = if m.dry_run == Some(true) { Mode::DryRun } else { mode };
    if mode == Mode::Live && m.params.get("confirm").and_then(Value::as_str) != Some(CONFIRM_PHRASE) {
        return Err(Error::Precondition(format!(
            "a live drill injects real faults: set params.confirm to {CONFIRM_PHRASE:?} to proceed"
        )));
    }
    Ok(mode)
}

/// The drill handler: runs scenarios against an architecture and reports.
pub struct Drill {
    pub ctx: Ctx,
    pub cfg: DrillConfig,
    pub deliverer: Deliverer,
}

impl Drill {
    /// Builds the drill from the process environment. Events go to `SELFHEAL_DRILL_LAMBDA_ENDPOINT`
    /// (a Lambda runtime emulator) when set, and otherwise are published to the alarms topic
    /// `SELFHEAL_DRILL_EVENTS_TOPIC_ARN` the functions subscribe to.
    pub async fn from_env() -> Result<Self> {
        let mut env = Env::from_process();
        let common = CommonConfig::read(&mut env, FUNCTION);
        let cfg = DrillConfig::read(&mut env);
        let endpoint = env.optional("SELFHEAL_DRILL_LAMBDA_ENDPOINT");
        let topic = env.optional("SELFHEAL_DRILL_EVENTS_TOPIC_ARN");
        if endpoint.is_none() && topic.is_none() {
            env.problem(
                "SELFHEAL_DRILL_LAMBDA_ENDPOINT",
                "set it (local runtime emulator) or SELFHEAL_DRILL_EVENTS_TOPIC_ARN (deployed suite)",
            );
        }
        env.finish()?;
        let aws = crate::clients::Aws::load(&common.aws_timeouts).await;
        let ctx = Ctx::new(common, aws);
        let deliverer = match (endpoint, topic) {
            (Some(ep), _) => Deliverer::http(&ep)?,
            (None, Some(t)) => Deliverer::topic(ctx.publisher.sns(), &t),
            (None, None) => return Err(Error::Precondition("no way to deliver events".into())),
        };
        Ok(Drill { ctx, cfg, deliverer })
    }

    /// Handles a manual drill invocation.
    pub async fn handle(&self, payload: &Value) -> Result<Value> {
        // preflight and coverage (issue #30): read-only proofs of the deployment, no architecture needed.
        if let Some(scope) = preflight::requested(payload) {
            return self.preflight(scope).await;
        }
        // The standard alarms (issue #30, optional): kept for the opted-in resources, no architecture needed.
        if let Some(t) = standard_alarms::requested(payload) {
            return self.keep_standard_alarms(&t).await;
        }
        // An ARC practice run (issue #28) names its resource and AZ in place of a scenario.
        let practice = practice_run::plan(payload)?;
        let req = if practice.is_none() { Some(parse_request(payload)?) } else { None };
        // A restore test needs no architecture: it finds what the suite backs up by tag (the deployed
        // drill's optional DrillRestoreTestSchedule).
        if let (None, Some(req), None) = (&self.cfg.architecture, &req, &practice) {
            if req.scenarios == [Scenario::RestoreTest] {
                return self.restore_test(req.mode).await;
            }
        }
        let arch = self.cfg.architecture.clone().ok_or_else(|| Error::Config {
            name: "SELFHEAL_DRILL_ARCHITECTURE".into(),
            problem: "is required: the drill needs to know which resources are its targets".into(),
        })?;
        // Targets and FIS templates (issue #20): read per invocation, from the function's environment.
        let mut env = Env::from_process();
        let targets = targets::TargetSource::read(&mut env);
        let fis_templates = fis::FisTemplates::read(&mut env);
        env.finish()?;
        let reports = match (&practice, &req) {
            (Some(run), _) => practice_run::run_all(self, run).await?,
            (None, Some(req)) => match fis::plan(payload, req, &fis_templates)? {
                Some(plan) => fis::run_all(self, &plan).await?,
                None => self.run(req, &arch).await?,
            },
            (None, None) => vec![],
        };
        let passed = reports.iter().all(|r| r.passed);
        let card = scorecard::assess(self, &reports, &arch, &targets, true).await;
        let text = format!("{}\n{}", report::render_all(&reports), card.render());
        tracing::info!(passed, "drill finished\n{text}");
        Ok(json!({ "passed": passed, "reports": reports, "scorecard": card, "text": text }))
    }

    /// A restore test without an architecture: the drill's own account; reported and scored as a drill.
    async fn restore_test(&self, mode: Mode) -> Result<Value> {
        let report = scenarios::run_without_architecture(self, Scenario::RestoreTest, mode).await;
        self.record_report(Scenario::RestoreTest, mode, &report).await?;
        let reports = vec![report];
        let mut env = Env::from_process();
        let targets = targets::TargetSource::read(&mut env);
        env.finish()?;
        let card = scorecard::assess_without_architecture(self, &reports, &targets, true).await;
        let passed = reports.iter().all(|r| r.passed);
        let text = format!("{}\n{}", report::render_all(&reports), card.render());
        tracing::info!(passed, "drill finished\n{text}");
        Ok(json!({ "passed": passed, "reports": reports, "scorecard": card, "text": text }))
    }

    /// Records a scenario's report as the drill's decision.
    async fn record_report(&self, s: Scenario, mode: Mode, report: &DrillReport) -> Result<()> {
        let envelope = crate::envelope::Envelope::new(
            FUNCTION,
            s.name(),
            crate::envelope::Target::new("scenario", s.name()),
            if report.passed { crate::envelope::Outcome::Acted } else { crate::envelope::Outcome::Failed },
            report.headline(),
        )
        .dry_run(mode == Mode::DryRun)
        .detail("report", report);
        self.ctx.record(envelope).await?;
        Ok(())
    }

    /// Runs every requested scenario in order.
    pub async fn run(&self, req: &DrillRequest, arch: &Architecture) -> Result<Vec<DrillReport>> {
        let mut out = Vec::new();
        for s in &req.scenarios {
            let report = scenarios::run(self, *s, req.mode, arch).await;
            self.record_report(*s, req.mode, &report).await?;
            out.push(report);
        }
        Ok(out)
    }
}
