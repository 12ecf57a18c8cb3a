//! The handler: [`BackupEnforcer`], built from the environment, and its Lambda entry, which turns
//! a schedule or a manual `sweep` into a sweep.

use chrono::Utc;
use serde_json::Value;

use super::config::BackupConfig;
use super::report::response_decisions;
use super::FUNCTION;
use crate::config::{CommonConfig, Env};
use crate::context::Ctx;
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::{Error, Result};
use crate::fleet::Placed;
use crate::guardrails::effective_dry_run;
use crate::trigger::{Trigger, TriggerKind};

/// The backup-enforcer handler.
pub struct BackupEnforcer {
    pub(super) ctx: Ctx,
    pub(super) cfg: BackupConfig,
}

impl BackupEnforcer {
    pub async fn from_env() -> Result<Self> {
        let mut env = Env::from_process();
        let common = CommonConfig::read(&mut env, FUNCTION);
        let cfg = BackupConfig::read(&mut env);
        env.finish()?;
        let ctx = Ctx::new(common.clone(), crate::clients::Aws::load(&common.aws_timeouts).await);
        Ok(BackupEnforcer { ctx, cfg })
    }

    pub fn new(ctx: Ctx, cfg: BackupConfig) -> Self {
        BackupEnforcer { ctx, cfg }
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// The Lambda entry: parse, sweep, conclude (an error when any action failed).
    pub async fn handle(&self, payload: &Value) -> Result<Value> {
        crate::lambda::handle_each(FUNCTION, payload, |t| async move { self.handle_trigger(&t).await }).await
    }

    /// One trigger: a schedule or a manual `sweep` runs a sweep now. A schedule covers the fleet
    /// (the hub's account and every member account, in each of `SELFHEAL_BACKUP_REGIONS`), one place
    /// after another, each with what is left of the time budget; a manual sweep covers the account
    /// and region it names (the hub's own by default). A place the hub cannot act in is reported
    /// (critical) and the others are still swept.
    pub async fn handle_trigger(&self, t: &Trigger) -> Result<Vec<Envelope>> {
        let dry_run = match &t.kind {
            TriggerKind::Schedule { .. } => effective_dry_run(self.ctx.config.dry_run, None),
            TriggerKind::Manual(m) if m.action == "sweep" => effective_dry_run(self.ctx.config.dry_run, m.dry_run),
            TriggerKind::Manual(m) => {
                return Err(Error::malformed(
                    "manual",
                    format!("{FUNCTION} understands action \"sweep\", got {:?}", m.action),
                ))
            }
            other => return Err(Error::UnsupportedTrigger { function: FUNCTION, trigger: other.name().to_string() }),
        };
        let fleet = &self.ctx.config.fleet;
        let fleet_wide = fleet.accounts.len() + fleet.org_units.len() + self.cfg.regions.len() > 0;
        let (scopes, problem) = match &t.kind {
            TriggerKind::Schedule { .. } if fleet_wide => self.ctx.fleet_scopes(&self.cfg.regions).await?,
            _ => (vec![t.scope.clone()], None),
        };
        let started = std::time::Instant::now();
        let mut envelopes = Vec::new();
        if let Some(problem) = problem {
            // The explicitly listed accounts are still swept; the OUs' are not, and a human is told.
            let target = Target::new("organization", fleet.org_units.join(","));
            let env = Envelope::new(FUNCTION, "list-accounts", target, Outcome::Failed, problem)
                .event(&t.event_id, t.kind.name())
                .severity(Severity::Critical);
            envelopes.push(self.ctx.record(env).await?);
        }
        let mut errors = Vec::new();
        for scope in &scopes {
            let ctx = match self.ctx.at(scope, t).await? {
                Placed::Refused(env) => {
                    envelopes.push(*env);
                    continue;
                }
                Placed::Here(ctx) => *ctx,
            };
            let cfg = BackupConfig {
                time_budget: self.cfg.time_budget.saturating_sub(started.elapsed()),
                ..self.cfg.clone()
            };
            let here = BackupEnforcer { ctx, cfg };
            match Box::pin(here.sweep(t, dry_run, Utc::now())).await {
                Ok(sweep) => envelopes.extend(sweep.envelopes),
                Err(e) => {
                    tracing::error!(place = %scope.describe(), error = %e, "backup sweep of one place failed");
                    errors.push(e);
                }
            }
        }
        match errors.len() {
            0 => Ok(response_decisions(envelopes)),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Many(errors)),
        }
    }
}
