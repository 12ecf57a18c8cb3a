//! [`BackupEnforcer`]: the function's state (context, settings, the API rate it shares between
//! sweeps), built once at cold start. What it does is in `handler` (the entry), `sweep*` and `fanout`.

use super::config::BackupConfig;
use super::throttle::Throttle;
use super::FUNCTION;
use crate::config::{CommonConfig, Env};
use crate::context::Ctx;
use crate::error::Result;

/// The backup-enforcer handler.
pub struct BackupEnforcer {
    pub(super) ctx: Ctx,
    pub(super) cfg: BackupConfig,
    /// The API rate per place, shared by every sweep this process runs.
    pub(super) throttle: Throttle,
}

impl BackupEnforcer {
    pub async fn from_env() -> Result<Self> {
        let mut env = Env::from_process();
        let common = CommonConfig::read(&mut env, FUNCTION);
        let cfg = BackupConfig::read(&mut env);
        env.finish()?;
        let ctx = Ctx::new(common.clone(), crate::clients::Aws::load(&common.aws_timeouts).await);
        Ok(BackupEnforcer::new(ctx, cfg))
    }

    pub fn new(ctx: Ctx, cfg: BackupConfig) -> Self {
        BackupEnforcer { ctx, cfg, throttle: Throttle::default() }
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }
}
