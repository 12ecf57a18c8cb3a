//! The zone-evacuator handler: [`Evacuator`] places each trigger in its account and region, records its
//! signal, judges the place ([`super::assess`]) and starts, keeps or ends the evacuation there (the
//! `evacuate` and `end` files); the schedule re-checks every evacuation in progress across the fleet.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::assess::{assess, Verdict};
use super::azs::AzMap;
use super::config::ZoneConfig;
use super::signals::{intake, Intake};
use super::{actions, FUNCTION};
use crate::clients::Aws;
use crate::config::{CommonConfig, Env};
use crate::context::Ctx;
use crate::db::{DbConfig, DbFailover, StaticLag};
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::Result;
use crate::fleet::Placed;
use crate::guardrails::{effective_dry_run, ActionRequest};
use crate::ledger::{Evacuation, ZoneSignal};
use crate::trigger::{Scope, Trigger, TriggerKind};

/// The zone-evacuator handler.
#[derive(Debug, Clone)]
pub struct Evacuator {
    pub(super) ctx: Ctx,
    pub(super) cfg: ZoneConfig,
    /// db-failover's handler over this context: writers move through its code and guards.
    pub(super) db: DbFailover,
}

impl Evacuator {
    /// Cold start: reads and validates every setting (common, the evacuator's, db-failover's).
    pub async fn from_env() -> Result<Self> {
        let mut env = Env::from_process();
        let common = CommonConfig::read(&mut env, FUNCTION);
        let cfg = ZoneConfig::read(&mut env);
        let db_cfg = DbConfig::read(&mut env);
        // Emulators only, as db-failover's own: every replica reports this lag.
        let lag_override = env
            .optional("SELFHEAL_DB_LAG_OVERRIDE_SECONDS")
            .map(|_| env.number("SELFHEAL_DB_LAG_OVERRIDE_SECONDS", 0.0f64, 0.0, 86_400.0));
        env.finish()?;
        let ctx = Ctx::new(common.clone(), Aws::load(&common.aws_timeouts).await);
        let mut db = DbFailover::new(ctx.clone(), db_cfg);
        if let Some(lag) = lag_override {
            db = db.with_lag_source(Arc::new(StaticLag::new(Vec::<(String, f64)>::new()).with_default(lag)));
        }
        Ok(Evacuator { ctx, cfg, db })
    }

    pub fn new(ctx: Ctx, cfg: ZoneConfig, db: DbFailover) -> Self {
        Evacuator { ctx, cfg, db }
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    pub fn config(&self) -> &ZoneConfig {
        &self.cfg
    }

    /// Lambda entry: every trigger in the payload.
    pub async fn handle(&self, payload: &Value) -> Result<Value> {
        crate::lambda::handle_each(&self.ctx, payload, |t| async move { self.handle_trigger(&t).await }).await
    }

    /// Handles one trigger (drills and tests call this directly), in the place it is about.
    pub async fn handle_trigger(&self, t: &Trigger) -> Result<Vec<Envelope>> {
        let now = Utc::now();
        let what = intake(t, now)?;
        if what == Intake::Sweep {
            return Box::pin(self.sweep(t, now)).await;
        }
        // The healer's decision names its group's place in its target; the SNS delivery does not.
        let placed;
        let t = match &t.kind {
            TriggerKind::Envelope(env) if t.scope == Scope::default() => {
                placed = Trigger {
                    scope: Scope { account: env.target.account.clone(), region: env.target.region.clone() },
                    ..t.clone()
                };
                &placed
            }
            // A Health event is delivered to one region and may be about another (`detail.eventRegion`).
            TriggerKind::Health(h) if h.region.is_some() && h.region != t.scope.region => {
                placed = Trigger { scope: Scope { region: h.region.clone(), ..t.scope.clone() }, ..t.clone() };
                &placed
            }
            _ => t,
        };
        let here = match self.ctx.for_trigger(t).await? {
            Placed::Refused(env) => return Ok(vec![*env]),
            Placed::Here(ctx) => self.at(*ctx),
        };
        Box::pin(here.handle_here(t, what, now)).await
    }

    fn at(&self, ctx: Ctx) -> Evacuator {
        Evacuator { ctx, cfg: self.cfg.clone(), db: self.db.clone() }
    }

    /// `account/region` of this context, for messages.
    pub(super) fn place_name(&self) -> String {
        let region = self.ctx.place.region.clone().or_else(|| self.ctx.home_region()).unwrap_or_else(|| "-".into());
        match (&self.ctx.place.account, &self.ctx.place.account_name) {
            (Some(a), Some(n)) => format!("{a} ({n})/{region}"),
            (Some(a), None) => format!("{a}/{region}"),
            _ => format!("the hub account/{region}"),
        }
    }

    /// The place as the ledger's fleet-wide index keeps it (`None` at home).
    pub(super) fn place_keys(&self) -> (Option<&str>, Option<&str>) {
        (self.ctx.place.account.as_deref(), self.ctx.place.region.as_deref())
    }

    pub(super) fn dry_run(&self, t: &Trigger) -> bool {
        let asked = match &t.kind {
            TriggerKind::Manual(m) => m.dry_run,
            _ => None,
        };
        effective_dry_run(self.ctx.config.dry_run, asked)
    }

    pub(super) fn request(
        &self,
        t: &Trigger,
        action: &str,
        target: Target,
        event_id: String,
        reason: String,
    ) -> ActionRequest {
        ActionRequest {
            action: action.to_string(),
            target,
            event_id,
            trigger: t.kind.name().to_string(),
            dry_run: self.dry_run(t),
            reason,
        }
    }

    pub(super) fn az_target(&self, az_id: &str) -> Target {
        let region = self.ctx.place.region.clone().or_else(|| self.ctx.home_region()).unwrap_or_else(|| "home".into());
        Target::new("availability-zone", az_id).in_group(region)
    }

    pub(super) async fn az_map(&self) -> Result<AzMap> {
        AzMap::read(&self.ctx.aws.ec2()).await
    }

    async fn handle_here(&self, t: &Trigger, what: Intake, now: DateTime<Utc>) -> Result<Vec<Envelope>> {
        match what {
            Intake::Signal(sig) => {
                tracing::info!(az = %sig.az, source = %sig.source, impaired = sig.impaired, place = %self.place_name(), "signal");
                self.ctx.ledger.record_signal(&sig).await?;
                self.reassess(t, now, Some(&sig)).await
            }
            Intake::Reassess { why } => {
                tracing::info!(why = %why, place = %self.place_name(), "re-assessing");
                self.reassess(t, now, None).await
            }
            Intake::Sweep => self.reassess(t, now, None).await,
            Intake::Evacuate { az, reason } => {
                let (name, _) = match self.resolve(t, actions::EVACUATE, &az).await? {
                    Ok(pair) => pair,
                    Err(refused) => return Ok(vec![refused]),
                };
                let sig = ZoneSignal {
                    az: name,
                    source: "manual".into(),
                    impaired: true,
                    at: now,
                    detail: reason,
                    resource: None,
                };
                if !self.dry_run(t) {
                    self.ctx.ledger.record_signal(&sig).await?;
                    return self.reassess(t, now, Some(&sig)).await;
                }
                // A dry run records nothing: judge as if the request were recorded.
                let mut signals = self.ctx.ledger.zone_signals().await?;
                signals.push(sig.clone());
                self.reassess_with(t, now, Some(&sig), signals).await
            }
            Intake::End { az, reason } => {
                let (name, az_id) = match self.resolve(t, actions::END, &az).await? {
                    Ok(pair) => pair,
                    Err(refused) => return Ok(vec![refused]),
                };
                match self.ctx.ledger.evacuation(&name).await?.filter(|e| e.active) {
                    Some(e) => {
                        if !self.dry_run(t) {
                            let clear = ZoneSignal {
                                impaired: false,
                                at: now,
                                source: "manual".into(),
                                az: name.clone(),
                                detail: reason.clone(),
                                resource: None,
                            };
                            self.ctx.ledger.record_signal(&clear).await?;
                        }
                        self.end(t, &e, &format!("ended by request: {reason}"), now).await
                    }
                    None => {
                        let req = self.request(t, actions::END, self.az_target(&az_id), t.event_id.clone(), reason);
                        let why = format!("no evacuation of {name} ({az_id}) is in progress in {}", self.place_name());
                        Ok(vec![self.ctx.record(self.ctx.envelope(&req, Outcome::Skipped, why)).await?])
                    }
                }
            }
            Intake::Assess => {
                let signals = self.ctx.ledger.zone_signals().await?;
                let verdict = assess(&signals, now, &self.cfg);
                let evacs: Vec<Evacuation> =
                    self.ctx.ledger.evacuations().await?.into_iter().filter(|e| e.active).collect();
                let req = self.request(t, actions::ASSESS, self.az_target("-"), t.event_id.clone(), "assess".into());
                let why = format!("{} in {}: {}", describe(&verdict), self.place_name(), describe_evacuations(&evacs));
                let env = self
                    .ctx
                    .envelope(&req, Outcome::Skipped, why)
                    .severity(Severity::Info)
                    .detail("assessment", &verdict);
                Ok(vec![self.ctx.record(env).await?])
            }
            Intake::Readiness { fix } => self.readiness(t, fix).await,
            Intake::Ignore { target, reason } => {
                let req = self.request(t, "ignore", Target::new("event", target), t.event_id.clone(), reason.clone());
                Ok(vec![self.ctx.record(self.ctx.envelope(&req, Outcome::Skipped, reason)).await?])
            }
        }
    }

    /// `(name, ID)` of an AZ an operator named, or the refusal naming the AZs the place has.
    async fn resolve(
        &self,
        t: &Trigger,
        action: &str,
        az: &str,
    ) -> Result<std::result::Result<(String, String), Envelope>> {
        let map = self.az_map().await?;
        match map.resolve(az, &self.place_name()) {
            Ok(pair) => Ok(Ok(pair)),
            Err(e) => {
                let req = self.request(t, action, self.az_target(az), t.event_id.clone(), format!("{action} {az}"));
                let env = self
                    .ctx
                    .envelope(&req, Outcome::Refused, e.to_string())
                    .severity(Severity::Warning)
                    .detail("guard", "not-found")
                    .detail("missing", serde_json::json!({ "kind": "availability zone", "id": az }));
                Ok(Err(self.ctx.record(env).await?))
            }
        }
    }

    /// Judges the place now and acts on the verdict.
    pub(super) async fn reassess(
        &self,
        t: &Trigger,
        now: DateTime<Utc>,
        sig: Option<&ZoneSignal>,
    ) -> Result<Vec<Envelope>> {
        let signals = self.ctx.ledger.zone_signals().await?;
        self.reassess_with(t, now, sig, signals).await
    }

    async fn reassess_with(
        &self,
        t: &Trigger,
        now: DateTime<Utc>,
        sig: Option<&ZoneSignal>,
        signals: Vec<ZoneSignal>,
    ) -> Result<Vec<Envelope>> {
        let mut verdict = assess(&signals, now, &self.cfg);
        let mut evacs: Vec<Evacuation> =
            self.ctx.ledger.evacuations().await?.into_iter().filter(|e| e.active).collect();
        if matches!(verdict, Verdict::One { .. }) && evacs.is_empty() && !self.cfg.settle.is_zero() && !self.dry_run(t)
        {
            // About to start an evacuation: let the signals delivered with this one land, and judge again.
            tokio::time::sleep(self.cfg.settle).await;
            let signals = self.ctx.ledger.zone_signals().await?;
            verdict = assess(&signals, Utc::now(), &self.cfg);
            evacs = self.ctx.ledger.evacuations().await?.into_iter().filter(|e| e.active).collect();
        }
        let mut out = Vec::new();

        // A region event: two impaired AZs, or one besides an evacuation in progress.
        let second = matches!(&verdict, Verdict::One { impaired } if evacs.iter().any(|e| e.az != impaired.az));
        let region_event = matches!(verdict, Verdict::Many { .. }) || second;
        if region_event {
            if let Some(env) = self.region_event(t, &verdict, &evacs, now).await? {
                out.push(env);
            }
        }
        for e in &evacs {
            if verdict.is_impaired(&e.az) && region_event {
                // Nothing automatic in a region event: an evacuation in progress is held (no new shift,
                // no extension); its shifts end at their own expiry unless a person extends them.
                tracing::warn!(az = %e.az, evacuation = %e.id, "region event: the evacuation is held");
                continue;
            }
            if verdict.is_impaired(&e.az) {
                if e.clear_since.is_some() && !self.dry_run(t) {
                    self.ctx.ledger.set_clear_since(&e.az, &e.id, None).await?;
                }
                out.extend(self.evacuate(t, &e.az, Some(e.clone()), &verdict, now).await?);
                continue;
            }
            match e.clear_since {
                None => {
                    if !self.dry_run(t) {
                        self.ctx.ledger.set_clear_since(&e.az, &e.id, Some(now)).await?;
                    }
                    tracing::info!(az = %e.az, evacuation = %e.id, "clear: the hysteresis starts");
                }
                Some(since) => {
                    let clear = now.signed_duration_since(since).to_std().unwrap_or_default();
                    if clear >= self.cfg.hysteresis {
                        let why = format!(
                            "{} has been clear for {}s (hysteresis {}s)",
                            e.az,
                            clear.as_secs(),
                            self.cfg.hysteresis.as_secs()
                        );
                        out.extend(self.end(t, e, &why, now).await?);
                    }
                }
            }
        }
        if let Verdict::One { impaired } = &verdict {
            if evacs.is_empty() {
                out.extend(self.evacuate(t, &impaired.az, None, &verdict, now).await?);
            }
        }
        if out.is_empty() {
            // Nothing changed: the judgement itself is the decision.
            let az = sig.map(|s| s.az.clone()).unwrap_or_else(|| "-".into());
            let req = self.request(t, actions::ASSESS, self.az_target(&az), t.event_id.clone(), "re-assess".into());
            let why = format!("{} in {}: {}", describe(&verdict), self.place_name(), describe_evacuations(&evacs));
            let mut env =
                self.ctx.envelope(&req, Outcome::Skipped, why).severity(Severity::Info).detail("assessment", &verdict);
            if let Some(s) = sig {
                env = env.detail(
                    "signal",
                    json!({"az": s.az, "source": s.source, "impaired": s.impaired, "detail": s.detail}),
                );
            }
            out.push(self.ctx.record(env).await?);
        }
        Ok(out)
    }

    /// The critical page of a region event, at most once an hour per set of AZs.
    async fn region_event(
        &self,
        t: &Trigger,
        verdict: &Verdict,
        evacs: &[Evacuation],
        now: DateTime<Utc>,
    ) -> Result<Option<Envelope>> {
        let mut azs: Vec<String> = verdict.impaired_azs().into_iter().map(str::to_string).collect();
        azs.extend(evacs.iter().map(|e| e.az.clone()));
        azs.sort();
        azs.dedup();
        let key = format!("zone-region-event#{}#{}", azs.join(","), now.format("%Y-%m-%dT%H"));
        if !self.dry_run(t) && !self.ctx.ledger.mark_once(&key).await? {
            return Ok(None);
        }
        let region = self.ctx.place.region.clone().or_else(|| self.ctx.home_region()).unwrap_or_else(|| "home".into());
        let req = self.request(
            t,
            actions::REGION_EVENT,
            Target::new("region", &region),
            t.event_id.clone(),
            "region event".into(),
        );
        let why = format!(
            "{} AZs of {} are impaired ({}): a region event, not one AZ's, so nothing automatic — the region failover, with \
             its approval, is the path; {} (held: no new shift and no extension; its shifts expire at their own time \
             unless a person extends them)",
            azs.len(),
            self.place_name(),
            azs.join(", "),
            describe_evacuations(evacs)
        );
        tracing::error!(place = %self.place_name(), azs = ?azs, "region event");
        let env = self
            .ctx
            .envelope(&req, Outcome::Refused, why)
            .severity(Severity::Critical)
            .detail("impairedAzs", &azs)
            .detail("assessment", verdict);
        Ok(Some(self.ctx.record(env).await?))
    }

    /// The scheduled re-check: every place with an evacuation in progress is judged again (a quiet
    /// fleet records nothing: the schedule fires every minute).
    async fn sweep(&self, t: &Trigger, now: DateTime<Utc>) -> Result<Vec<Envelope>> {
        let active = self.ctx.ledger.active_evacuations().await?;
        let mut places: Vec<Scope> =
            active.iter().map(|a| Scope { account: a.account.clone(), region: a.region.clone() }).collect();
        places.sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));
        places.dedup();
        let mut out = Vec::new();
        for scope in places {
            match self.ctx.at(&scope, t).await? {
                Placed::Refused(env) => out.push(*env),
                Placed::Here(ctx) => out.extend(Box::pin(self.at(*ctx).reassess(t, now, None)).await?),
            }
        }
        if out.is_empty() {
            // Every minute of a quiet fleet: a log line, not a decision published to the topics.
            tracing::debug!("scheduled re-check: no evacuation in progress anywhere in the fleet");
        }
        Ok(out)
    }
}

fn describe(v: &Verdict) -> String {
    match v {
        Verdict::Healthy { below_threshold } if below_threshold.is_empty() => "no AZ is impaired".into(),
        Verdict::Healthy { below_threshold } => format!(
            "no AZ is impaired (below the threshold: {})",
            below_threshold
                .iter()
                .map(|i| format!("{} with {} alarming resource(s)", i.az, i.alarming.len()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Verdict::One { impaired } => format!("{} is impaired ({})", impaired.az, impaired.evidence.join("; ")),
        Verdict::Many { impaired } => {
            format!(
                "{} AZs are impaired ({})",
                impaired.len(),
                impaired.iter().map(|i| i.az.as_str()).collect::<Vec<_>>().join(", ")
            )
        }
    }
}

fn describe_evacuations(evacs: &[Evacuation]) -> String {
    if evacs.is_empty() {
        return "no evacuation in progress".into();
    }
    evacs
        .iter()
        .map(|e| match e.clear_since {
            Some(s) => format!("evacuation of {} ({}) in progress, clear since {}", e.az, e.az_id, s.to_rfc3339()),
            None => format!("evacuation of {} ({}) in progress", e.az, e.az_id),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
