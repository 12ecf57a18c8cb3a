//! Guardrails: the one path every action takes.
//!
//! [`Ctx::execute`] runs an action only when, in order:
//! 1. this (target, action, event) has not been claimed by another delivery (the ledger's conditional
//!    write: redelivered and concurrent duplicates become [`Outcome::Duplicate`]);
//! 2. no other invocation holds the target's lease (one invocation acts on a resource at a time;
//!    different resources proceed in parallel). The lease is renewed while the action runs, released
//!    when it ends, and taken over after it expires when its holder crashed ([`crate::ledger::Lease`]);
//! 3. the target is not inside its cooldown (a lock item with an expiry, taken atomically);
//! 4. the target's group has a free slot in the rate window (an atomic counter with a ceiling).
//!
//! In dry-run the same checks are *read* rather than taken, the action's future is run in its
//! describe-only form by the caller, and the result is recorded as [`Outcome::DryRun`]. Opt-in tags and
//! "is it really broken?" re-checks are the callers' (they need the resource's own API), through
//! [`is_opted_in`] and [`Ctx::record`]. Every decision, acted or not, is audited and published.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::config::CommonConfig;
use crate::context::Ctx;
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::Result;
use crate::ledger::{ClaimResult, Lease, LeaseKeeper, LeaseResult};

/// Whether a resource's tags opt it in (`tag == value`, the value compared case-insensitively).
pub fn is_opted_in<'a, I>(tags: I, config: &CommonConfig) -> bool
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    tags.into_iter().any(|(k, v)| k == config.opt_in_tag && v.trim().eq_ignore_ascii_case(&config.opt_in_value))
}

/// The dry-run that applies: the function's global setting wins; an invocation can only ask for a
/// dry run, never turn one off.
pub fn effective_dry_run(global: bool, requested: Option<bool>) -> bool {
    global || requested.unwrap_or(false)
}

/// What a caller asks the guardrails to let it do.
#[derive(Debug, Clone)]
pub struct ActionRequest {
    /// The action's name (`replace-instance`, `promote-replica`, `flip-record`, ...).
    pub action: String,
    pub target: Target,
    /// The trigger's ledger id.
    pub event_id: String,
    /// The trigger's kind name.
    pub trigger: String,
    pub dry_run: bool,
    /// Why the action is wanted.
    pub reason: String,
}

/// What the action's work reports back.
#[derive(Debug, Clone)]
pub struct ActionReport {
    pub outcome: Outcome,
    pub reason: String,
    pub severity: Option<Severity>,
    pub details: BTreeMap<String, Value>,
}

impl ActionReport {
    fn new(outcome: Outcome, reason: impl Into<String>) -> Self {
        ActionReport { outcome, reason: reason.into(), severity: None, details: BTreeMap::new() }
    }

    /// The action was carried out.
    pub fn acted(reason: impl Into<String>) -> Self {
        Self::new(Outcome::Acted, reason)
    }

    /// The dry-run plan: what would have been done.
    pub fn would(reason: impl Into<String>) -> Self {
        Self::new(Outcome::DryRun, reason)
    }

    /// Nothing turned out to be needed.
    pub fn skipped(reason: impl Into<String>) -> Self {
        Self::new(Outcome::Skipped, reason)
    }

    /// A precondition found while acting refused it.
    pub fn refused(reason: impl Into<String>) -> Self {
        Self::new(Outcome::Refused, reason)
    }

    /// The action failed part-way; the details say what state it left.
    pub fn failed(reason: impl Into<String>) -> Self {
        Self::new(Outcome::Failed, reason)
    }

    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = Some(severity);
        self
    }

    pub fn detail(mut self, key: &str, value: impl Serialize) -> Self {
        let v = serde_json::to_value(value).unwrap_or_else(|e| Value::String(format!("<unserialisable: {e}>")));
        self.details.insert(key.to_string(), v);
        self
    }
}

impl Ctx {
    /// An envelope for `req` with the given outcome, stamped with this function and the trigger.
    pub fn envelope(&self, req: &ActionRequest, outcome: Outcome, reason: impl Into<String>) -> Envelope {
        let mut target = req.target.clone();
        if self.place.account.is_some() {
            target.account = self.place.account.clone();
            target.account_name = self.place.account_name.clone();
            target.region = self.place.region.clone();
        }
        Envelope::new(&self.config.function, &req.action, target, outcome, reason)
            .event(&req.event_id, &req.trigger)
            .dry_run(req.dry_run)
    }

    /// Audits and publishes a decision that did not go through [`Ctx::execute`] (a skip, an opt-in
    /// refusal, a short-circuit). Returns the envelope.
    pub async fn record(&self, envelope: Envelope) -> Result<Envelope> {
        self.ledger.audit(&envelope).await?;
        self.publisher.publish(&envelope).await?;
        Ok(envelope)
    }

    /// Runs `work` under every guardrail (see the module docs) and records the decision.
    ///
    /// `work` is not polled unless the guards admit it. An `Err` from `work` is recorded as
    /// [`Outcome::Failed`] (critical) and the claim is released for a retry; the envelope comes back
    /// either way, so the caller can fail the invocation and let Lambda retry or dead-letter it.
    ///
    /// The guarded run is boxed: with its ledger calls and the action inside, it is too large a future
    /// to live on a caller's stack (a test thread's, a Lambda's).
    pub fn execute<'a, F>(&'a self, req: ActionRequest, work: F) -> impl Future<Output = Result<Envelope>> + 'a
    where
        F: Future<Output = Result<ActionReport>> + 'a,
    {
        Box::pin(self.guarded(req, work))
    }

    async fn guarded<F>(&self, req: ActionRequest, work: F) -> Result<Envelope>
    where
        F: Future<Output = Result<ActionReport>>,
    {
        let cfg = &self.config;
        let started = Instant::now();
        let claim = match self.ledger.claim(&req.target.id, &req.action, &req.event_id, req.dry_run).await? {
            ClaimResult::Claimed(c) => c,
            ClaimResult::AlreadyClaimed { status, reason, at } => {
                let env = self
                    .envelope(&req, Outcome::Duplicate, format!("event already handled ({status} at {at}): {reason}"))
                    .detail("previousStatus", status);
                return self.record(env).await;
            }
        };

        // The resource's lease: taken in live mode, read in dry-run.
        let lease = match self.lease_for(&req).await? {
            Ok(lease) => lease,
            Err(refused) => {
                self.ledger.complete(&claim, Outcome::Refused, &refused.reason).await?;
                return self.record(refused).await;
            }
        };

        // Cooldown, then rate limit: taken in live mode, read in dry-run.
        let refusal = if req.dry_run { self.would_refuse(&req).await? } else { self.take_guards(&req).await? };
        if let Some(reason) = refusal {
            if let Some(lease) = &lease {
                self.ledger.release_lease(lease).await?;
            }
            self.ledger.complete(&claim, Outcome::Refused, &reason).await?;
            let env = self.envelope(&req, Outcome::Refused, reason).severity(Severity::Warning);
            return self.record(env).await;
        }

        let keeper = lease.clone().map(|l| LeaseKeeper::start(self.ledger.clone(), l, cfg.lease));
        let result = work.await;
        let lease_lost = keeper.map(LeaseKeeper::stop).unwrap_or(false);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let mut report = match result {
            Ok(report) => report,
            Err(e) => ActionReport::failed(format!("{}: {e}", req.action)),
        };
        if let Some(lease) = &lease {
            if lease_lost {
                report.reason = format!(
                    "{} (the lease on {} expired mid-action and was taken over: another invocation may have acted \
                     on it too; check its audit trail)",
                    report.reason, req.target.id
                );
                report = report.severity(Severity::Critical).detail("leaseLost", true);
            } else {
                self.ledger.release_lease(lease).await?;
            }
            if let Some(prev) = &lease.took_over {
                report = report.detail("leaseTakenOverFrom", prev.describe());
            }
        }
        if !req.dry_run
            && matches!(
                report.outcome,
                Outcome::Failed | Outcome::Skipped | Outcome::Refused | Outcome::AwaitingApproval
            )
        {
            // Nothing (or not everything) was done: let the next attempt act without waiting out
            // the cooldown. The rate slot stays taken, so a failing action cannot loop unbounded.
            self.ledger.release_cooldown(&req.target.id, &req.event_id).await?;
        }
        self.ledger.complete(&claim, report.outcome, &report.reason).await?;
        let mut env = self.envelope(&req, report.outcome, report.reason.clone()).detail("durationMs", elapsed_ms);
        if let Some(sev) = report.severity {
            env.severity = sev;
        }
        env.details.extend(report.details);
        crate::telemetry::Metric::new()
            .dimension("Function", &cfg.function)
            .dimension("Action", &req.action)
            .millis("ActionDuration", elapsed_ms as f64)
            .emit();
        self.record(env).await
    }

    /// The lease on the request's target: `Ok(Some)` taken (live), `Ok(None)` free (dry-run reads it
    /// and takes nothing), or `Err` with the refusal to record when another invocation holds it.
    async fn lease_for(&self, req: &ActionRequest) -> Result<std::result::Result<Option<Lease>, Envelope>> {
        let cfg = &self.config;
        let id = &req.target.id;
        let held = if req.dry_run {
            self.ledger.read_lease(id).await?
        } else {
            match self.ledger.take_lease(id, &cfg.function, &req.action, &req.event_id, cfg.lease).await? {
                LeaseResult::Taken(lease) => return Ok(Ok(Some(lease))),
                LeaseResult::Held(holder) => Some(holder),
            }
        };
        let Some(holder) = held else { return Ok(Ok(None)) };
        let reason = format!(
            "{}{id} is being acted on by {}: standing down, so two actions never race on one resource",
            if req.dry_run { "would stand down: " } else { "" },
            holder.describe()
        );
        tracing::warn!(target = %id, holder = %holder.describe(), "lease held: standing down");
        Ok(Err(self
            .envelope(req, Outcome::Refused, reason)
            .severity(Severity::Warning)
            .detail("leaseHolder", holder.describe())
            .detail("guard", "lease")))
    }

    async fn take_guards(&self, req: &ActionRequest) -> Result<Option<String>> {
        let cfg = &self.config;
        if let Some(held) = self.ledger.take_cooldown(&req.target.id, &req.event_id, cfg.cooldown).await? {
            return Ok(Some(format!(
                "cooldown: {} was acted on for event {} and is cooling down until {}",
                req.target.id,
                held.by_event,
                held.until.to_rfc3339()
            )));
        }
        if let Some(group) = &req.target.group {
            if !self.ledger.take_rate_slot(group, cfg.rate_window, cfg.rate_limit).await? {
                self.ledger.release_cooldown(&req.target.id, &req.event_id).await?;
                return Ok(Some(format!(
                    "rate limit: {group} already had {} actions in the last {}s window",
                    cfg.rate_limit,
                    cfg.rate_window.as_secs()
                )));
            }
        }
        Ok(None)
    }

    async fn would_refuse(&self, req: &ActionRequest) -> Result<Option<String>> {
        let cfg = &self.config;
        // As take_cooldown: no cooldown configured, none is held against the action (one an earlier
        // configuration left in the ledger included).
        let held = if cfg.cooldown.is_zero() { None } else { self.ledger.read_cooldown(&req.target.id).await? };
        if let Some(held) = held {
            return Ok(Some(format!(
                "would be refused: cooldown on {} until {}",
                req.target.id,
                held.until.to_rfc3339()
            )));
        }
        if let Some(group) = &req.target.group {
            let used = self.ledger.rate_used(group, cfg.rate_window).await?;
            if used >= cfg.rate_limit {
                return Ok(Some(format!("would be refused: rate limit on {group} ({used}/{})", cfg.rate_limit)));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    fn cfg() -> CommonConfig {
        let mut env = Env::from_map([("SELFHEAL_LEDGER_TABLE".to_string(), "t".to_string())].into());
        CommonConfig::read(&mut env, "test")
    }

    #[test]
    fn opt_in_needs_tag_and_value() {
        let c = cfg();
        assert!(is_opted_in([("selfheal:enabled", "true")], &c));
        assert!(is_opted_in([("Name", "x"), ("selfheal:enabled", " TRUE ")], &c));
        assert!(!is_opted_in([("selfheal:enabled", "false")], &c));
        assert!(!is_opted_in([("selfheal:enable", "true")], &c));
        assert!(!is_opted_in(std::iter::empty(), &c));
    }

    #[test]
    fn invocation_cannot_turn_global_dry_run_off() {
        assert!(effective_dry_run(true, Some(false)));
        assert!(effective_dry_run(false, Some(true)));
        assert!(!effective_dry_run(false, None));
    }
}
