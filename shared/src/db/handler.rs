//! The db-failover handler: [`DbFailover`], trigger dispatch to an instance or a cluster, and the
//! guards (replica, opt-in, fresh status) before an instance's plan runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::choice::{choose_instance_plan, is_unavailable, DbInstanceInfo, Plan};
use super::config::DbConfig;
use super::intent::{intent_from_trigger, FailoverIntent, Intent, TargetKind};
use super::lag::{CloudWatchLag, LagSource, StaticLag};
use super::rds::{describe_cluster, describe_instance};
use super::{ACTION_FAILOVER, FUNCTION, PROMOTED_FROM_TAG, RATE_GROUP};
use crate::clients::Aws;
use crate::config::{CommonConfig, Env};
use crate::context::Ctx;
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::{Error, Result};
use crate::fleet::Placed;
use crate::guardrails::{effective_dry_run, is_opted_in, ActionRequest};
use crate::trigger::Trigger;

/// The db-failover handler: configuration, context and lag source, built once per cold start.
#[derive(Debug, Clone)]
pub struct DbFailover {
    pub(super) ctx: Ctx,
    pub(super) cfg: DbConfig,
    pub(super) lag: Arc<dyn LagSource>,
    /// The hub's own AWS configuration: the database DNS record (`SELFHEAL_DB_DNS_*`) is the hub's,
    /// whichever account the database that fails over lives in.
    pub(super) dns_aws: Aws,
}

pub(super) struct Decision {
    pub(super) req: ActionRequest,
    pub(super) intent: FailoverIntent,
}

impl DbFailover {
    /// Reads and validates every setting (common and db-failover's) and loads AWS configuration.
    pub async fn from_env() -> Result<Self> {
        let mut env = Env::from_process();
        let common = CommonConfig::read(&mut env, FUNCTION);
        let cfg = DbConfig::read(&mut env);
        // Emulators only (moto does not speak CloudWatch's current protocol): every replica reports
        // this lag. Never set it against a real account: it replaces the RPO guard's evidence.
        let lag_override = env
            .optional("SELFHEAL_DB_LAG_OVERRIDE_SECONDS")
            .map(|_| env.number("SELFHEAL_DB_LAG_OVERRIDE_SECONDS", 0.0f64, 0.0, 86_400.0));
        env.finish()?;
        let handler = DbFailover::new(Ctx::new(common.clone(), Aws::load(&common.aws_timeouts).await), cfg);
        Ok(match lag_override {
            Some(lag) => {
                tracing::warn!(lag, "SELFHEAL_DB_LAG_OVERRIDE_SECONDS is set: replica lag is not read from CloudWatch");
                handler.with_lag_source(Arc::new(StaticLag::new(Vec::<(String, f64)>::new()).with_default(lag)))
            }
            None => handler,
        })
    }

    /// A handler reading replica lag from CloudWatch.
    pub fn new(ctx: Ctx, cfg: DbConfig) -> Self {
        let lag = Arc::new(CloudWatchLag::from_aws(&ctx.aws));
        DbFailover { dns_aws: ctx.aws.clone(), ctx, cfg, lag }
    }

    /// Replaces the lag source (tests and drills use [`StaticLag`]).
    pub fn with_lag_source(mut self, lag: Arc<dyn LagSource>) -> Self {
        self.lag = lag;
        self
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    pub fn config(&self) -> &DbConfig {
        &self.cfg
    }

    /// Handles one invocation payload: every trigger it carries, then [`crate::lambda::conclude`].
    pub async fn handle(&self, payload: &Value) -> Result<Value> {
        crate::lambda::handle_each(&self.ctx, payload, |t| async move { self.handle_trigger(&t).await }).await
    }

    /// Handles one trigger and returns the decisions recorded for it.
    pub async fn handle_trigger(&self, t: &Trigger) -> Result<Vec<Envelope>> {
        let elsewhere;
        let db = match self.ctx.for_trigger(t).await? {
            Placed::Refused(env) => return Ok(vec![*env]),
            Placed::Here(ctx) if ctx.place == self.ctx.place => self,
            Placed::Here(ctx) => {
                let lag = self.lag.in_place(&ctx.aws);
                elsewhere = DbFailover { ctx: *ctx, cfg: self.cfg.clone(), lag, dns_aws: self.dns_aws.clone() };
                &elsewhere
            }
        };
        // Boxed: the failover futures are large enough to overflow a test thread's stack inline.
        Box::pin(db.handle_here(t)).await
    }

    async fn handle_here(&self, t: &Trigger) -> Result<Vec<Envelope>> {
        let intent = match intent_from_trigger(t)? {
            Intent::Ignore { target, reason } => {
                let req = self.request(t, ACTION_FAILOVER, target, self.ctx.config.dry_run, reason.clone());
                let env = self.ctx.envelope(&req, Outcome::Skipped, reason);
                return Ok(vec![self.ctx.record(env).await?]);
            }
            Intent::Failover(i) => i,
        };
        let dry_run = effective_dry_run(self.ctx.config.dry_run, intent.dry_run_requested);
        tracing::info!(event_id = %t.event_id, target = %intent.id, force = intent.force, dry_run, "db-failover trigger");
        let rds = self.ctx.aws.rds();
        match intent.kind {
            TargetKind::Cluster => self.cluster(t, intent, dry_run).await.map(|e| vec![e]),
            TargetKind::Instance | TargetKind::Either => {
                let Some(primary) = describe_instance(&rds, &intent.id, None).await? else {
                    if intent.kind == TargetKind::Either && describe_cluster(&rds, &intent.id).await?.is_some() {
                        return self.cluster(t, intent, dry_run).await.map(|e| vec![e]);
                    }
                    let req = self.request(
                        t,
                        ACTION_FAILOVER,
                        Target::new("rds-instance", &intent.id),
                        dry_run,
                        intent.reason,
                    );
                    let env = self
                        .ctx
                        .envelope(
                            &req,
                            Outcome::Refused,
                            format!(
                                "DB instance {} does not exist in {}: refused, nothing was done",
                                req.target.id,
                                t.scope.describe()
                            ),
                        )
                        .severity(Severity::Warning)
                        .detail("guard", "not-found")
                        .detail("missing", serde_json::json!({ "kind": "DB instance", "id": req.target.id }));
                    return Ok(vec![self.ctx.record(env).await?]);
                };
                if let Some(cluster) = primary.cluster.clone() {
                    let intent = FailoverIntent { kind: TargetKind::Cluster, id: cluster, ..intent };
                    return self.cluster(t, intent, dry_run).await.map(|e| vec![e]);
                }
                self.instance(t, intent, primary, dry_run).await.map(|e| vec![e])
            }
        }
    }

    pub(super) fn request(
        &self,
        t: &Trigger,
        action: &str,
        target: Target,
        dry_run: bool,
        reason: String,
    ) -> ActionRequest {
        ActionRequest {
            action: action.to_string(),
            target,
            event_id: t.event_id.clone(),
            trigger: t.kind.name().to_string(),
            dry_run,
            reason,
        }
    }

    pub(super) async fn refuse(&self, req: &ActionRequest, reason: String, severity: Severity) -> Result<Envelope> {
        tracing::warn!(target = %req.target.id, reason = %reason, "db-failover refused");
        let env = self.ctx.envelope(req, Outcome::Refused, reason).severity(severity);
        self.ctx.record(env).await
    }

    async fn instance(
        &self,
        t: &Trigger,
        intent: FailoverIntent,
        primary: DbInstanceInfo,
        dry_run: bool,
    ) -> Result<Envelope> {
        let target = Target::new("rds-instance", &primary.id).in_group(RATE_GROUP);
        let req = self.request(t, ACTION_FAILOVER, target, dry_run, intent.reason.clone());
        if primary.replica_source.is_some() && !primary.tags.contains_key(PROMOTED_FROM_TAG) {
            let why = format!(
                "{} is a read replica of {}; failover acts on primaries",
                primary.id,
                primary.replica_source.as_deref().unwrap_or("?")
            );
            return self.ctx.record(self.ctx.envelope(&req, Outcome::Skipped, why)).await;
        }
        if !is_opted_in(primary.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())), &self.ctx.config) {
            let why = format!(
                "{} is not opted in (tag {}={})",
                primary.id, self.ctx.config.opt_in_tag, self.ctx.config.opt_in_value
            );
            return self.refuse(&req, why, Severity::Warning).await;
        }
        // Another recovery owning it, read now: `force` does not override this.
        if let Some(sd) = super::rds::instance_stand_down(&self.ctx.aws.rds(), &primary).await? {
            tracing::warn!(db = %primary.id, recovery = sd.recovery, "another recovery: standing down");
            return self.ctx.record(sd.envelope(&self.ctx, &req)).await;
        }
        if !is_unavailable(&primary.status) && !intent.force {
            let why = format!(
                "{} is {} on a fresh DescribeDBInstances: the event is stale or flapping, nothing to do",
                primary.id, primary.status
            );
            let env = self.ctx.envelope(&req, Outcome::Skipped, why).detail("status", &primary.status);
            return self.ctx.record(env).await;
        }
        let plan = match choose_instance_plan(&primary, intent.mode.as_deref()) {
            Ok(p) => p,
            Err(why) => {
                let why = format!("{why}; a human must restore the writer");
                return self.refuse(&req, why, Severity::Critical).await;
            }
        };
        let d = Decision { req, intent };
        match plan {
            Plan::RebootWithFailover => self.reboot(t, d, primary).await,
            Plan::PromoteReplica => self.promote(t, d, primary).await,
        }
    }

    /// Polls an instance until `done` holds, bounded by `limit` (the configured wait, or less when the
    /// invocation is near its deadline).
    pub(super) async fn wait_instance<F>(
        &self,
        rds: &aws_sdk_rds::Client,
        id: &str,
        region: Option<&str>,
        limit: Duration,
        done: F,
    ) -> Result<DbInstanceInfo>
    where
        F: Fn(&DbInstanceInfo) -> bool,
    {
        let deadline = Instant::now() + limit;
        loop {
            let info = describe_instance(rds, id, region)
                .await?
                .ok_or_else(|| Error::NotFound { kind: "DB instance", id: id.to_string() })?;
            if done(&info) {
                return Ok(info);
            }
            if Instant::now() + self.cfg.poll > deadline {
                return Err(Error::Timeout {
                    what: format!("{id} to become available (last status {})", info.status),
                    seconds: limit.as_secs(),
                });
            }
            tokio::time::sleep(self.cfg.poll).await;
        }
    }
}
