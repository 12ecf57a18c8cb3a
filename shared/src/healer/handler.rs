//! The instance-healer handler: [`Healer`] takes each trigger through intake, the guards (opt-in,
//! maintenance, lifecycle, health re-check, short-circuit) and the group or standalone replacement.

use serde_json::Value;

use super::config::{AsgMethod, HealerConfig};
use super::group::{replace_in_group, short_circuit};
use super::health::{refine, Health};
use super::intake::{intake, Failure, HealRequest, Intake};
use super::standalone::{choose_step, client_token, ladder, standalone_step, InstanceFacts, Step};
use super::{asg, ec2, ACTION, ASG_TAG, FUNCTION, STANDALONE};
use crate::config::{CommonConfig, Env};
use crate::context::Ctx;
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::{Error, Result};
use crate::fleet::Placed;
use crate::guardrails::{effective_dry_run, is_opted_in, ActionReport, ActionRequest};
use crate::trigger::Trigger;

/// The instance-healer handler.
pub struct Healer {
    ctx: Ctx,
    cfg: HealerConfig,
}

/// What a pre-check concluded.
enum Verdict {
    Go { health: Health, group: Option<asg::Group> },
    Stop(Envelope),
}

impl Healer {
    /// Cold start: reads and validates all configuration, loads AWS configuration.
    pub async fn from_env() -> Result<Self> {
        let mut env = Env::from_process();
        let common = CommonConfig::read(&mut env, FUNCTION);
        let cfg = HealerConfig::read(&mut env);
        env.finish()?;
        let ctx = Ctx::new(common.clone(), crate::clients::Aws::load(&common.aws_timeouts).await);
        Ok(Healer { ctx, cfg })
    }

    pub fn new(ctx: Ctx, cfg: HealerConfig) -> Self {
        Healer { ctx, cfg }
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    pub fn config(&self) -> &HealerConfig {
        &self.cfg
    }

    /// Lambda entry: every trigger in the payload is handled; the decisions come back, or an error
    /// when an action failed or a trigger could not be handled (each named).
    pub async fn handle(&self, payload: &Value) -> Result<Value> {
        crate::lambda::handle_each(FUNCTION, payload, |t| async move { self.handle_trigger(&t).await }).await
    }

    /// Handles one trigger (the drill calls this directly), in the account and region it is about.
    pub async fn handle_trigger(&self, t: &Trigger) -> Result<Vec<Envelope>> {
        let elsewhere;
        let healer = match self.ctx.for_trigger(t).await? {
            Placed::Refused(env) => return Ok(vec![*env]),
            Placed::Here(ctx) if ctx.place == self.ctx.place => self,
            Placed::Here(ctx) => {
                elsewhere = Healer { ctx: *ctx, cfg: self.cfg.clone() };
                &elsewhere
            }
        };
        // Boxed: the handling future is large (see `heal`).
        Box::pin(healer.handle_here(t)).await
    }

    async fn handle_here(&self, t: &Trigger) -> Result<Vec<Envelope>> {
        let mut out = Vec::new();
        for item in intake(t, &self.cfg)? {
            match item {
                Intake::Ignore { target, reason } => {
                    let req = self.request(t, &target, None, self.ctx.config.dry_run, &reason);
                    tracing::info!(target = %target, reason = %reason, "ignored");
                    out.push(self.ctx.record(self.ctx.envelope(&req, Outcome::Skipped, reason)).await?);
                }
                // Boxed: the healing future is large, and a binary embedding it inline overflows layout.
                Intake::Heal(h) => out.push(Box::pin(self.heal(t, h)).await?),
            }
        }
        Ok(out)
    }

    fn request(&self, t: &Trigger, id: &str, group: Option<&str>, dry_run: bool, reason: &str) -> ActionRequest {
        ActionRequest {
            action: ACTION.to_string(),
            target: Target::new("ec2-instance", id).in_group(group.unwrap_or(STANDALONE)),
            event_id: t.event_id.clone(),
            trigger: t.kind.name().to_string(),
            dry_run,
            reason: reason.to_string(),
        }
    }

    async fn refuse(&self, req: &ActionRequest, reason: String, severity: Severity) -> Result<Envelope> {
        tracing::warn!(target = %req.target.id, reason = %reason, "refused");
        self.ctx.record(self.ctx.envelope(req, Outcome::Refused, reason).severity(severity)).await
    }

    async fn heal(&self, t: &Trigger, h: HealRequest) -> Result<Envelope> {
        let ctx = &self.ctx;
        let dry_run = effective_dry_run(ctx.config.dry_run, h.dry_run);
        let ec2c = ctx.aws.ec2();
        let asgc = ctx.aws.autoscaling();
        let id = h.instance_id.clone();

        let Some(inst) = ec2::describe(&ec2c, &id).await? else {
            let req = self.request(t, &id, None, dry_run, &h.reason);
            let err = Error::NotFound { kind: "EC2 instance", id: id.clone() };
            self.refuse(&req, err.to_string(), Severity::Warning).await?;
            return Err(err);
        };
        let membership = asg::membership(&asgc, &id).await?;
        let group_name = membership.as_ref().map(|m| m.group.clone()).or_else(|| inst.tag(ASG_TAG).map(str::to_string));
        let req = self.request(t, &id, group_name.as_deref(), dry_run, &h.reason);

        // A redelivery of an event already claimed: let the guardrails record the duplicate.
        if let Some(status) = ctx.ledger.claim_status(&id, ACTION, &t.event_id, dry_run).await? {
            if status != "failed" {
                return ctx.execute(req, async { Ok(ActionReport::skipped("duplicate")) }).await;
            }
        }

        let (health, group) = match self.precheck(&req, &h, &inst, membership.as_ref(), group_name.as_deref()).await? {
            Verdict::Go { health, group } => (health, group),
            Verdict::Stop(env) => return Ok(env),
        };

        match group {
            Some(g) => {
                let method = self.cfg.asg_method;
                let wait = self.cfg.wait;
                let poll = self.cfg.poll;
                let evidence = health.problems();
                let work = async move {
                    if dry_run {
                        return Ok(ActionReport::would(format!(
                            "would replace {id} through Auto Scaling group {} ({method:?}), keeping desired capacity {}",
                            g.name, g.desired
                        ))
                        .detail("group", &g.name)
                        .detail("method", method)
                        .detail("evidence", &evidence));
                    }
                    replace_in_group(&asgc, &id, &g, method, wait, poll).await.map(|r| r.detail("evidence", &evidence))
                };
                ctx.execute(req, work).await
            }
            None => {
                let prior = self.prior_steps(&id).await?;
                let failure = refine(h.failure, &health);
                let steps = ladder(failure, &inst.state, inst.ebs_backed);
                let step = choose_step(&steps, prior, h.step);
                if step == Step::Replace && inst.state != "terminated" && ec2::termination_protected(&ec2c, &id).await?
                {
                    return self
                        .refuse(
                            &req,
                            format!("{id} has termination protection on; not replacing it"),
                            Severity::Warning,
                        )
                        .await;
                }
                if step == Step::StopStart && !inst.ebs_backed {
                    return self
                        .refuse(
                            &req,
                            format!("{id} has an instance-store root and cannot stop/start"),
                            Severity::Warning,
                        )
                        .await;
                }
                tracing::info!(instance = %id, ?failure, step = step.as_str(), prior, "standalone step chosen");
                let token = client_token(&id, &t.event_id);
                let (wait, poll) = (self.cfg.wait, self.cfg.poll);
                let evidence = health.problems();
                let ladder_names: Vec<&str> = steps.iter().map(|s| s.as_str()).collect();
                let work = async move {
                    let report = if dry_run {
                        Ok(ActionReport::would(format!("would {} standalone instance {id}", step.as_str())))
                    } else {
                        standalone_step(&ec2c, &inst, step, &token, wait, poll).await
                    };
                    report.map(|r| {
                        r.detail("step", step.as_str())
                            .detail("failure", failure)
                            .detail("ladder", &ladder_names)
                            .detail("priorSteps", prior)
                            .detail("evidence", &evidence)
                    })
                };
                ctx.execute(req, work).await
            }
        }
    }

    /// Opt-in, maintenance, lifecycle, health re-check and the short-circuit.
    async fn precheck(
        &self,
        req: &ActionRequest,
        h: &HealRequest,
        inst: &InstanceFacts,
        membership: Option<&asg::Membership>,
        group_name: Option<&str>,
    ) -> Result<Verdict> {
        let cfg = &self.ctx.config;
        let id = &inst.id;
        let stop = |env: Envelope| Ok(Verdict::Stop(env));
        if !is_opted_in(inst.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())), cfg) {
            let why = format!("{id} is not opted in (needs tag {}={})", cfg.opt_in_tag, cfg.opt_in_value);
            return stop(self.refuse(req, why, Severity::Warning).await?);
        }
        if let Some(v) = inst.tag(&self.cfg.maintenance_tag) {
            let why = format!("{id} is under maintenance (tag {}={v})", self.cfg.maintenance_tag);
            return stop(self.refuse(req, why, Severity::Warning).await?);
        }
        if let Some(m) = membership {
            if m.protected {
                let why = format!("{id} is protected from scale-in in group {}", m.group);
                return stop(self.refuse(req, why, Severity::Warning).await?);
            }
        }
        if h.from_state_change && inst.state_reason.as_deref().is_some_and(|r| r.starts_with("User initiated")) {
            let why = format!(
                "{id} was {} by a user ({}): a deploy or maintenance, not a failure",
                inst.state,
                inst.state_reason.as_deref().unwrap_or_default()
            );
            return stop(self.refuse(req, why, Severity::Info).await?);
        }
        let ec2c = self.ctx.aws.ec2();
        let group = match group_name {
            Some(g) => Some(asg::group(&self.ctx.aws.autoscaling(), g).await?),
            None => None,
        };

        // Terminated members of a group are the group's to replace.
        if h.failure == Failure::Terminated && group.is_some() {
            let why = format!("{id} was terminated inside an Auto Scaling group, which replaces it itself");
            return stop(self.ctx.record(self.ctx.envelope(req, Outcome::Skipped, why)).await?);
        }

        // Gather the fleet's health: the target and its peers.
        let peers: Vec<Health> = match &group {
            Some(g) => {
                let ids: Vec<String> = g.members.iter().map(|m| m.instance_id.clone()).collect();
                let mut with_target = ids;
                if !with_target.contains(id) {
                    with_target.push(id.clone());
                }
                let statuses = ec2::statuses(&ec2c, &with_target).await?;
                let mut hs: Vec<Health> = g
                    .members
                    .iter()
                    .map(|m| {
                        let st = statuses.get(&m.instance_id).cloned().unwrap_or_default();
                        Health {
                            instance_id: m.instance_id.clone(),
                            // The target's state is the one just described; a member EC2 no longer
                            // reports is gone.
                            state: if m.instance_id == *id {
                                inst.state.clone()
                            } else {
                                st.state.unwrap_or_else(|| "unknown".into())
                            },
                            az: m.az.clone(),
                            instance_status: st.instance,
                            system_status: st.system,
                            asg_health: Some(m.health.clone()),
                            lifecycle: Some(m.lifecycle.clone()),
                        }
                    })
                    .collect();
                if !hs.iter().any(|x| x.instance_id == *id) {
                    let mut me = ec2::health_of(inst, &statuses);
                    me.asg_health = membership.map(|m| m.health.clone());
                    me.lifecycle = membership.map(|m| m.lifecycle.clone());
                    hs.push(me);
                }
                hs
            }
            None => {
                let mut facts = match (&inst.vpc_id, &inst.az) {
                    (Some(vpc), Some(az)) => {
                        ec2::standalone_peers(&ec2c, (&cfg.opt_in_tag, &cfg.opt_in_value), vpc, az).await?
                    }
                    _ => Vec::new(),
                };
                facts.retain(|f| f.id != *id);
                facts.push(inst.clone());
                let ids: Vec<String> = facts.iter().map(|f| f.id.clone()).collect();
                let statuses = ec2::statuses(&ec2c, &ids).await?;
                facts.iter().map(|f| ec2::health_of(f, &statuses)).collect()
            }
        };
        let Some(health) = peers.iter().find(|p| p.instance_id == *id).cloned() else {
            return Err(Error::ActionFailed(format!("{id}: health facts missing")));
        };

        if h.failure != Failure::Terminated && health.is_going_away() {
            let why = format!(
                "{id} is already going away (state {}, lifecycle {})",
                health.state,
                health.lifecycle.as_deref().unwrap_or("-")
            );
            return stop(self.refuse(req, why, Severity::Info).await?);
        }
        if let Some(m) = membership {
            if m.lifecycle != "InService" && !m.lifecycle.is_empty() {
                let why = format!("{id} is {} in group {}, not InService: left to the group", m.lifecycle, m.group);
                return stop(self.refuse(req, why, Severity::Info).await?);
            }
        }
        if let Some(g) = &group {
            for p in ["Launch", "Terminate", "ReplaceUnhealthy"] {
                if g.suspended.iter().any(|s| s == p) && (p == "Launch" || self.cfg.asg_method == AsgMethod::SetHealth)
                {
                    let why = format!("group {} has the {p} process suspended: a replacement would not come", g.name);
                    return stop(self.refuse(req, why, Severity::Warning).await?);
                }
            }
        }
        if h.recheck && health.problems().is_empty() {
            let why = format!(
                "{id} is healthy again (running, status checks {}/{}, group health {}): not acting",
                health.instance_status.as_deref().unwrap_or("-"),
                health.system_status.as_deref().unwrap_or("-"),
                health.asg_health.as_deref().unwrap_or("-")
            );
            let env = self.ctx.envelope(req, Outcome::Refused, why).severity(Severity::Info).detail("health", &health);
            tracing::info!(instance = %id, "healthy again");
            return stop(self.ctx.record(env).await?);
        }
        if let Some(sc) = short_circuit(&peers, id, self.cfg.max_unhealthy_percent, self.cfg.min_unhealthy) {
            let scope_name = group_name.unwrap_or(STANDALONE);
            let why = format!(
                "short-circuit: {} of {} instances in {scope_name} ({}) are unhealthy, above {}%; replacing nothing: \
                 the cause is likely upstream, a person must look",
                sc.unhealthy, sc.members, sc.scope, sc.max_percent
            );
            tracing::error!(instance = %id, group = scope_name, unhealthy = sc.unhealthy, members = sc.members, "short-circuit");
            let env = self
                .ctx
                .envelope(req, Outcome::Refused, why)
                .severity(Severity::Critical)
                .detail("shortCircuit", &sc)
                .detail("health", &health);
            return stop(self.ctx.record(env).await?);
        }
        Ok(Verdict::Go { health, group })
    }

    /// This function's acted standalone steps on `id` inside the escalation window.
    async fn prior_steps(&self, id: &str) -> Result<usize> {
        let since = chrono::Utc::now()
            - chrono::Duration::from_std(self.cfg.escalation_window).unwrap_or_else(|_| chrono::Duration::hours(6));
        let since = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let trail = self.ctx.ledger.audit_trail(id).await?;
        Ok(trail
            .iter()
            .filter(|r| r.function == FUNCTION && r.action == ACTION && r.outcome == Outcome::Acted.as_str())
            .filter(|r| r.time >= since)
            .filter(|r| {
                r.envelope.details.get("step").and_then(Value::as_str).is_some_and(|s| Step::parse(s).is_some())
            })
            .count())
    }
}
