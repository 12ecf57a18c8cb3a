//! The Lambda entry of [`BackupEnforcer`] (built in `enforcer`), which turns
//! a schedule or a manual `sweep` into a sweep (or, with a sweep queue, a schedule into a planned
//! run of shards), and an SQS batch of shards into their sweeps and a partial batch response.

use chrono::Utc;
use serde_json::Value;

use super::enforcer::BackupEnforcer;
use super::report::response_decisions;
use super::sweep::Pass;
use super::FUNCTION;
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::{Error, Result};
use crate::fleet::Placed;
use crate::guardrails::effective_dry_run;
use crate::trigger::{Trigger, TriggerKind};

/// What backup-enforcer takes, for the message naming an event that is not for it.
pub const HANDLES: &str = "schedules (the sweep), manual \"sweep\" invocations and SQS batches of its own sweep shards";

/// Whether a trigger asks for a sweep (a schedule, or a manual `sweep`), and the dry run it asks for;
/// `Err` for any other (a shard is not a sweep request: [`BackupEnforcer::handle_trigger`] takes it
/// first). Pure.
pub fn sweep_request(t: &Trigger) -> Result<Option<bool>> {
    match &t.kind {
        TriggerKind::Schedule { .. } => Ok(None),
        TriggerKind::Manual(m) if m.action == "sweep" => Ok(m.dry_run),
        TriggerKind::Manual(m) => {
            Err(Error::malformed("manual", format!("{FUNCTION} understands action \"sweep\", got {:?}", m.action)))
        }
        _ => Err(Error::UnsupportedTrigger { function: FUNCTION, event: t.describe(), handles: HANDLES }),
    }
}

impl BackupEnforcer {
    /// The Lambda entry: parse, sweep, conclude (an error when any action failed). An SQS batch of
    /// sweep shards is answered with a partial batch response instead (`batchItemFailures`: the
    /// shards to retry), and never fails as a whole.
    pub async fn handle(&self, payload: &Value) -> Result<Value> {
        if let Ok(triggers) = crate::trigger::parse_event(payload) {
            if !triggers.is_empty() && triggers.iter().all(|t| matches!(t.kind, TriggerKind::Shard(_))) {
                return Ok(self.handle_shard_batch(&triggers).await);
            }
        }
        crate::lambda::handle_each(&self.ctx, payload, |t| async move { self.handle_trigger(&t).await }).await
    }

    /// One trigger: a schedule or a manual `sweep` runs a sweep now. A schedule covers the fleet
    /// (the hub's account and every member account, in each of `SELFHEAL_BACKUP_REGIONS`), one place
    /// after another, each with what is left of the time budget; a manual sweep covers the account
    /// and region it names (the hub's own by default). A place the hub cannot act in is reported
    /// (critical) and the others are still swept.
    pub async fn handle_trigger(&self, t: &Trigger) -> Result<Vec<Envelope>> {
        if let TriggerKind::Shard(msg) = &t.kind {
            return match Box::pin(self.work_shard(t, msg)).await? {
                super::fanout::ShardEnd::Done(_) => Ok(Vec::new()),
                super::fanout::ShardEnd::Retry(why) => Err(Error::ActionFailed(why)),
            };
        }
        let dry_run = effective_dry_run(self.ctx.config.dry_run, sweep_request(t)?);
        if matches!(t.kind, TriggerKind::Schedule { .. }) && self.cfg.queue_url.is_some() {
            return self.plan_sweep(t, dry_run).await;
        }
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
            let here = BackupEnforcer { ctx, cfg: self.cfg.clone(), throttle: self.throttle.clone() };
            let now = Utc::now();
            let deadline = started + self.cfg.time_budget;
            let pass = Pass { t: t.clone(), dry_run, now, slot: now, deadline, publish: true };
            match Box::pin(here.sweep_place(&pass)).await {
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
