//! The instance-healer handler: [`Healer`] takes each trigger through intake, the guards (opt-in,
//! maintenance, lifecycle, health re-check, short-circuit) and the group or standalone replacement.

use serde_json::Value;

use super::config::HealerConfig;
use super::facts::InstanceFacts;
use super::group::{replace_in_group, short_circuit};
use super::health::{refine, Health};
use super::intake::{auto_recovery_failures, intake, Failure, HealRequest, Intake};
use super::stand_down;
use super::standalone::{choose_step, client_token, ladder, standalone_step, unmovable_eips};
use super::Step;
use super::{asg, ec2, ACTION, ASG_TAG, FUNCTION, STANDALONE};
use crate::approval::{with_approval, Approval};
use crate::config::{CommonConfig, Env};
use crate::context::Ctx;
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::{Error, Result};
use crate::fleet::Placed;
use crate::guardrails::{effective_dry_run, is_opted_in, ActionReport, ActionRequest};
use crate::stand_down::StandDown;
use crate::trigger::Trigger;

/// The instance-healer handler.
pub struct Healer {
    ctx: Ctx,
    cfg: HealerConfig,
}

/// What a pre-check concluded.
enum Verdict {
    /// Go on; `unchecked` names any stand-down check the endpoint could not serve (an emulator).
    Go {
        health: Health,
        group: Option<asg::Group>,
        unchecked: Vec<String>,
    },
    Stop(Envelope),
}

/// The ledger marker recording that EC2 gave up recovering an instance (its `at` progress field).
fn auto_recovery_failed_key(id: &str) -> String {
    format!("auto-recovery-failed#{id}")
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
        crate::lambda::handle_each(&self.ctx, payload, |t| async move { self.handle_trigger(&t).await }).await
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
        let items = intake(t, &self.cfg)?;
        // EC2 gave up recovering these: remembered, so the auto-recovery stand-down stops waiting.
        for (id, arn) in auto_recovery_failures(t) {
            let key = auto_recovery_failed_key(&id);
            self.ctx.ledger.mark_once(&key).await?;
            let at = chrono::Utc::now().to_rfc3339();
            self.ctx.ledger.note_progress(&key, &[("at", &at), ("event", &arn)]).await?;
            tracing::warn!(instance = %id, event = %arn, "EC2 simplified automatic recovery failed");
        }
        for item in items {
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
            // A refusal, not an error: nothing was done and a retry would find nothing either. Recorded
            // here rather than by the shared entry so the event's other instances are still healed.
            let req = self.request(t, &id, None, dry_run, &h.reason);
            let reason = format!(
                "EC2 instance {id} does not exist in {}: refused, nothing was done ({})",
                t.scope.describe(),
                h.reason
            );
            tracing::warn!(target = %id, reason = %reason, "refused");
            let env = ctx
                .envelope(&req, Outcome::Refused, reason)
                .severity(Severity::Warning)
                .detail("guard", "not-found")
                .detail("missing", serde_json::json!({ "kind": "EC2 instance", "id": id }));
            return ctx.record(env).await;
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

        let (health, group, unchecked) =
            match self.precheck(&req, &h, &inst, membership.as_ref(), group_name.as_deref()).await? {
                Verdict::Go { health, group, unchecked } => (health, group, unchecked),
                Verdict::Stop(env) => return Ok(env),
            };
        let noted = move |r: ActionReport| if unchecked.is_empty() { r } else { r.detail("unchecked", &unchecked) };

        match group {
            Some(g) => {
                let method = self.cfg.asg_method;
                let wait = self.cfg.wait;
                let poll = self.cfg.poll;
                let evidence = health.problems();
                let asked = req.clone();
                let work = async move {
                    // More than N instances of one group in the rate window wait for a human.
                    let what = format!(
                        "replace {id} through Auto Scaling group {} ({method:?}), keeping desired capacity {}",
                        g.name, g.desired
                    );
                    let approval = match ctx.approval(&asked, t, None, &what).await? {
                        Approval::Parked(r) => return Ok(r.detail("group", &g.name).detail("evidence", &evidence)),
                        other => other,
                    };
                    if dry_run {
                        return Ok(noted(with_approval(
                            ActionReport::would(format!("would {what}"))
                                .detail("group", &g.name)
                                .detail("method", method)
                                .detail("evidence", &evidence),
                            &approval,
                        )));
                    }
                    replace_in_group(&asgc, &id, &g, method, wait, poll)
                        .await
                        .map(|r| noted(with_approval(r.detail("evidence", &evidence), &approval)))
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
                let eips = if step == Step::Replace && inst.state != "terminated" {
                    ec2::elastic_ips(&ec2c, &id).await?
                } else {
                    Vec::new()
                };
                if let Some(why) = unmovable_eips(&id, &eips, &ctx.config) {
                    return self.refuse(&req, why, Severity::Critical).await;
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
                        standalone_step(&ec2c, &inst, step, &eips, &token, wait, poll).await
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
        let (peers, statuses): (Vec<Health>, _) = match &group {
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
                (hs, statuses)
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
                (facts.iter().map(|f| ec2::health_of(f, &statuses)).collect(), statuses)
            }
        };
        let Some(health) = peers.iter().find(|p| p.instance_id == *id).cloned() else {
            return Err(Error::ActionFailed(format!("{id}: health facts missing")));
        };

        // Another recovery owning the instance, read now. (A terminated instance is past recovering.)
        let mut unchecked = Vec::new();
        if h.failure != Failure::Terminated {
            let status = statuses.get(id).cloned().unwrap_or_default();
            if let Some(sd) = self.stand_down(inst, membership, group.as_ref(), &status, &mut unchecked).await? {
                return stop(self.stand_down_refusal(req, sd).await?);
            }
        }

        if h.failure != Failure::Terminated && health.is_going_away() {
            let why = format!(
                "{id} is already going away (state {}, lifecycle {})",
                health.state,
                health.lifecycle.as_deref().unwrap_or("-")
            );
            return stop(self.refuse(req, why, Severity::Info).await?);
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
            let (next, evacuation) = self.evacuation_for(&sc.scope).await?;
            let why = format!(
                "short-circuit: {} of {} instances in {scope_name} ({}) are unhealthy, above {}%; replacing nothing: {next}",
                sc.unhealthy, sc.members, sc.scope, sc.max_percent
            );
            tracing::error!(instance = %id, group = scope_name, unhealthy = sc.unhealthy, members = sc.members, "short-circuit");
            let mut env = self
                .ctx
                .envelope(req, Outcome::Refused, why)
                .severity(Severity::Critical)
                .detail("shortCircuit", &sc)
                .detail("health", &health);
            if let Some(e) = evacuation {
                env = env.detail("evacuation", e);
            }
            return stop(self.ctx.record(env).await?);
        }
        Ok(Verdict::Go { health, group, unchecked })
    }

    /// What follows a short-circuit, in words, and the evacuation it leads to: an AZ's short-circuit is
    /// zone-evacuator's evidence (it takes this decision from the topic) — named by its id when one is
    /// already in progress for the AZ; a group-wide one is a person's to look at.
    async fn evacuation_for(&self, scope: &str) -> Result<(String, Option<Value>)> {
        let Some(az) = scope.strip_prefix("az:").filter(|a| !a.is_empty() && *a != "unknown") else {
            return Ok(("the cause is likely upstream, a person must look".into(), None));
        };
        Ok(match self.ctx.ledger.evacuation(az).await?.filter(|e| e.active) {
            Some(e) => (
                format!("the cause is likely {az} itself, which zone-evacuator is evacuating ({})", e.id),
                Some(
                    serde_json::json!({"by": "zone-evacuator", "az": az, "azId": e.az_id, "id": e.id, "inProgress": true}),
                ),
            ),
            None => (
                format!("the cause is likely {az} itself; this decision is zone-evacuator's evidence to evacuate it"),
                Some(serde_json::json!({"by": "zone-evacuator", "az": az, "inProgress": false})),
            ),
        })
    }

    /// Another recovery owning the instance, read at decision time ([`stand_down`]): for a group
    /// member, its lifecycle (warm pool, lifecycle hook, standby, launch), the group's suspended
    /// processes, an instance refresh and scaling activities naming it; for any instance, a scheduled
    /// event acting on it now; for a standalone instance, EC2's simplified automatic recovery inside its
    /// grace. What the endpoint cannot tell (an emulator without instance refreshes) is noted in
    /// `unchecked`.
    async fn stand_down(
        &self,
        inst: &InstanceFacts,
        membership: Option<&asg::Membership>,
        group: Option<&asg::Group>,
        status: &ec2::StatusCheck,
        unchecked: &mut Vec<String>,
    ) -> Result<Option<StandDown>> {
        let id = &inst.id;
        if let Some(g) = group {
            let lifecycle = membership
                .map(|m| m.lifecycle.as_str())
                .or_else(|| g.members.iter().find(|m| m.instance_id == *id).map(|m| m.lifecycle.as_str()))
                .unwrap_or_default();
            if let Some(sd) = stand_down::lifecycle(id, &g.name, lifecycle) {
                return Ok(Some(sd));
            }
            if let Some(sd) = stand_down::suspended_processes(&g.name, &g.suspended) {
                return Ok(Some(sd));
            }
            let asgc = self.ctx.aws.autoscaling();
            let endpoint = self.ctx.aws.sdk.endpoint_url();
            match asg::instance_refreshes(&asgc, &g.name, endpoint).await? {
                Some(refreshes) => {
                    if let Some(sd) = stand_down::instance_refresh(&g.name, &refreshes) {
                        return Ok(Some(sd));
                    }
                }
                None => unchecked.push(format!(
                    "instance refresh: the endpoint {} does not serve DescribeInstanceRefreshes",
                    endpoint.unwrap_or("-")
                )),
            }
            let activities = asg::scaling_activities(&asgc, &g.name).await?;
            if let Some(sd) = stand_down::scaling_activity(id, &g.name, &activities) {
                return Ok(Some(sd));
            }
        }
        let now = chrono::Utc::now();
        if let Some(sd) = stand_down::scheduled_event(id, &status.events, now) {
            return Ok(Some(sd));
        }
        if group.is_none() {
            let grace = self.cfg.auto_recovery_grace;
            let mut facts = stand_down::AutoRecovery {
                setting: inst.auto_recovery.clone(),
                system_status: status.system.clone(),
                impaired_since: status.system_impaired_since,
                failure_reported_at: None,
            };
            if stand_down::auto_recovery(id, &facts, now, grace).is_some() {
                // Only now worth a ledger read: has EC2 already reported that it gave up?
                facts.failure_reported_at = self.auto_recovery_failed_at(id).await?;
                return Ok(stand_down::auto_recovery(id, &facts, now, grace));
            }
        }
        Ok(None)
    }

    /// When an `AWS_EC2_SIMPLIFIED_AUTO_RECOVERY_FAILURE` for `id` was last recorded.
    async fn auto_recovery_failed_at(&self, id: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let progress = self.ctx.ledger.progress(&auto_recovery_failed_key(id)).await?;
        Ok(progress
            .and_then(|p| p.get("at").cloned())
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(&at).ok())
            .map(|at| at.with_timezone(&chrono::Utc)))
    }

    /// Records a stand-down: refused, naming what is in progress, with `guard` and `recovery` details.
    async fn stand_down_refusal(&self, req: &ActionRequest, sd: StandDown) -> Result<Envelope> {
        tracing::warn!(target = %req.target.id, recovery = sd.recovery, reason = %sd.reason, "another recovery: standing down");
        self.ctx.record(sd.envelope(&self.ctx, req)).await
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
