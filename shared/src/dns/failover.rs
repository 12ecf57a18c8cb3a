//! [`DnsFailover`]: the function's state (context and settings), built once at cold start. What it
//! does is in `handler` (each trigger) and `flip` (moving a record).

use super::config::DnsConfig;
use super::FUNCTION;
use crate::config::{CommonConfig, Env};
use crate::context::Ctx;
use crate::error::Result;

/// The dns-failover handler.
pub struct DnsFailover {
    pub(super) ctx: Ctx,
    pub(super) cfg: DnsConfig,
}

impl DnsFailover {
    pub fn new(ctx: Ctx, cfg: DnsConfig) -> Self {
        DnsFailover { ctx, cfg }
    }

    /// Cold start: reads and validates every setting, loads AWS configuration.
    pub async fn from_env() -> Result<Self> {
        let mut env = Env::from_process();
        let common = CommonConfig::read(&mut env, FUNCTION);
        let cfg = DnsConfig::read(&mut env);
        env.finish()?;
        let aws = crate::clients::Aws::load(&common.aws_timeouts).await;
        Ok(DnsFailover::new(Ctx::new(common, aws), cfg))
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    pub fn config(&self) -> &DnsConfig {
        &self.cfg
    }
}
