//! The handler: [`BackupEnforcer`], built from the environment, and its Lambda entry, which turns
//! a schedule or a manual `sweep` into a sweep.

use chrono::Utc;
use serde_json::Value;

use super::config::BackupConfig;
use super::report::response_decisions;
use super::FUNCTION;
use crate::config::{CommonConfig, Env};
use crate::context::Ctx;
use crate::envelope::Envelope;
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

    /// One trigger: a schedule or a manual `sweep` runs a sweep now.
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
        let here = match self.ctx.for_trigger(t).await? {
            Placed::Refused(env) => return Ok(vec![*env]),
            Placed::Here(ctx) if ctx.place == self.ctx.place => None,
            Placed::Here(ctx) => Some(BackupEnforcer { ctx: *ctx, cfg: self.cfg.clone() }),
        };
        let me = here.as_ref().unwrap_or(self);
        Ok(response_decisions(Box::pin(me.sweep(t, dry_run, Utc::now())).await?.envelopes))
    }
}
