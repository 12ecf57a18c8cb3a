//! One sweep of one place (an account and region): its leases, then AWS Backup plans, volumes,
//! databases, DynamoDB tables and S3 buckets, concluded by the compliance report; and what the per-resource parts share ([`Work`],
//! [`Pass`], decisions, DR regions).
//!
//! A sweep is one decision about many resources, so it goes through the guardrails in bulk:
//! - **one lease per policy** in the place (`backup-sweep/<policy>`, the ledger's per-resource
//!   lease, renewed while the sweep runs), all taken before anything is listed: a second sweep of
//!   the same place (overlapping, or a redelivery while the first still runs) stands down, and one
//!   that comes after lists what the first did and finds nothing left to do;
//! - **the work is its own evidence**: every snapshot carries the sweep's id (`selfheal:sweep`,
//!   `sweep:<policy>:<slot>`), so a retried sweep sees what it already did by listing, not by a
//!   ledger item per resource;
//! - **decisions audited in batches** (`BatchWriteItem`, 25 a request, leftovers retried), not one
//!   claim, cooldown, outcome and audit write per resource;
//! - **one report** per sweep, published once, naming every resource that failed (critical).
//!
//! Incident-driven actions (and nothing else here) keep the per-action path,
//! [`Ctx::execute`](crate::context::Ctx::execute).

use std::collections::BTreeSet;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};

use super::enforcer::BackupEnforcer;
use super::policy::Policy;
use super::report::Report;
use super::retention::Prune;
use super::window::sweep_event_id;
use super::{FUNCTION, KIND_BUCKET, KIND_CLUSTER, KIND_DB, KIND_PLAN, KIND_TABLE, KIND_VOLUME};
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::Result;
use crate::guardrails::{ActionReport, ActionRequest};
use crate::ledger::{Lease, LeaseHolder, LeaseKeeper, LeaseResult, BATCH_WRITE_LIMIT};
use crate::telemetry::Metric;
use crate::trigger::Trigger;

/// The lease target of a policy's sweep in one place (the ledger qualifies it by account and region).
pub const SWEEP_TARGET: &str = "backup-sweep";

/// Batches of audit records written at once at the end of a sweep.
const AUDIT_CONCURRENCY: usize = 4;

/// What the sweep found for one resource before acting.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Work {
    pub(super) snapshot: bool,
    pub(super) prune: Prune,
    pub(super) copy: Option<String>,
    /// Retention applied to the resource's copies in the DR region.
    pub(super) dr_prune: Prune,
    pub(super) retention: Option<i32>,
    pub(super) current_retention: i32,
}

impl Work {
    pub(super) fn is_empty(&self) -> bool {
        !self.snapshot
            && self.prune.delete.is_empty()
            && self.copy.is_none()
            && self.dr_prune.delete.is_empty()
            && self.retention.is_none()
    }

    pub(super) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.snapshot {
            parts.push("take a snapshot".to_string());
        }
        if !self.prune.delete.is_empty() {
            parts.push(format!("delete {} expired snapshot(s)", self.prune.delete.len()));
        }
        if let Some(c) = &self.copy {
            parts.push(format!("copy {c} to the DR region"));
        }
        if !self.dr_prune.delete.is_empty() {
            parts.push(format!("delete {} expired DR-region copy(ies)", self.dr_prune.delete.len()));
        }
        if let Some(d) = self.retention {
            parts.push(format!("set automated backup retention {} -> {d} days", self.current_retention));
        }
        parts.join(", ")
    }
}

/// One sweep of one place: the trigger, the mode, the time decisions are made at, the schedule slot
/// that names the sweep (`sweep:<policy>:<slot bucket>`), and when to stop starting on resources.
#[derive(Debug, Clone)]
pub(super) struct Pass {
    pub(super) t: Trigger,
    pub(super) dry_run: bool,
    pub(super) now: DateTime<Utc>,
    pub(super) slot: DateTime<Utc>,
    pub(super) deadline: Instant,
    /// Publish the report (a sweep on its own); a shard's is only audited (its run's summary is
    /// published).
    pub(super) publish: bool,
}

/// What one sweep returns: every decision envelope (the report's last) and the report.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub envelopes: Vec<Envelope>,
    pub report: Report,
    /// Another sweep of this place held its lease: this one did nothing (the report says whose).
    pub stood_down: Option<LeaseHolder>,
}

impl BackupEnforcer {
    pub(super) fn policy(&self, name: &str) -> Option<&Policy> {
        self.cfg.policies.get(name)
    }

    /// A full sweep of this context's place at `now` (injectable so staleness and retention can be
    /// tested), its slot `now` too.
    pub async fn sweep(&self, t: &Trigger, dry_run: bool, now: DateTime<Utc>) -> Result<Sweep> {
        let deadline = Instant::now() + self.cfg.time_budget;
        let pass = Pass { t: t.clone(), dry_run, now, slot: now, deadline, publish: true };
        self.sweep_place(&pass).await
    }

    /// The sweep of one place under its leases (live) and its report.
    pub(super) async fn sweep_place(&self, pass: &Pass) -> Result<Sweep> {
        let started = Instant::now();
        tracing::info!(event_id = %pass.t.event_id, dry_run = pass.dry_run, place = %self.place_key(), "backup sweep starting");
        // A dry run changes nothing, so it takes no lease (two dry runs may overlap harmlessly).
        let leases = if pass.dry_run {
            Vec::new()
        } else {
            match self.take_sweep_leases(pass).await? {
                Ok(leases) => leases,
                Err((policy, holder)) => return self.stand_down(pass, &policy, holder).await,
            }
        };
        let ttl = self.ctx.config.lease;
        let keepers: Vec<LeaseKeeper> =
            leases.iter().map(|l| LeaseKeeper::start(self.ctx.ledger.clone(), l.clone(), ttl)).collect();
        let swept = self.sweep_leased(pass).await;
        let lost = keepers.into_iter().map(LeaseKeeper::stop).fold(false, |a, b| a | b);
        for lease in &leases {
            // A no-op for a lease that was taken over.
            if let Err(e) = self.ctx.ledger.release_lease(lease).await {
                tracing::warn!(target = %lease.target, error = %e, "sweep lease not released: it expires on its own");
            }
        }
        let (mut envelopes, report) = swept?;
        let mut env = self.report_envelope(pass, &report, started);
        if lost {
            env.reason = format!(
                "{} (a sweep lease expired mid-sweep and was taken over: another sweep may have acted in this place \
                 too; check the audit trail)",
                env.reason
            );
            env.severity = Severity::Critical;
            env.details.insert("leaseLost".into(), json!(true));
        }
        let env = self.conclude(pass, env).await?;
        tracing::info!(event_id = %pass.t.event_id, dry_run = pass.dry_run, report = %json!(report), "backup sweep finished");
        envelopes.push(env);
        Ok(Sweep { envelopes, report, stood_down: None })
    }

    /// This context's place, as the throttle and messages name it: `account/region`, or `home`.
    pub(super) fn place_key(&self) -> String {
        match (&self.ctx.place.account, &self.ctx.place.region) {
            (Some(a), Some(r)) => format!("{a}/{r}"),
            _ => format!("home/{}", self.home_region()),
        }
    }

    /// Waits for one mutating call's turn in this place (`region`: another region's bucket, for
    /// DR-region calls) and counts the wait.
    pub(super) async fn pace(&self, region: Option<&str>) -> u64 {
        let key = match region {
            Some(r) => format!("{}@{r}", self.place_key()),
            None => self.place_key(),
        };
        self.throttle.acquire(&key, self.cfg.api_rate, self.cfg.api_burst).await.as_millis() as u64
    }

    /// Takes the sweep lease of every policy in this place, in name order, or none: `Err` names the
    /// policy whose lease another sweep holds, and whom.
    async fn take_sweep_leases(&self, pass: &Pass) -> Result<std::result::Result<Vec<Lease>, (String, LeaseHolder)>> {
        let ledger = &self.ctx.ledger;
        let attempt = uuid::Uuid::new_v4().simple().to_string();
        let mut taken = Vec::new();
        for policy in self.cfg.policies.values() {
            let target = format!("{SWEEP_TARGET}/{}", policy.name);
            // Unique per attempt: a duplicate delivery of the same sweep must not take it over.
            let event = format!("{} {} {}", sweep_event_id(policy, pass.slot), pass.t.event_id, &attempt[..8]);
            match ledger.take_lease(&target, FUNCTION, "sweep", &event, self.ctx.config.lease).await? {
                LeaseResult::Taken(lease) => taken.push(lease),
                LeaseResult::Held(holder) => {
                    for lease in &taken {
                        ledger.release_lease(lease).await?;
                    }
                    return Ok(Err((policy.name.clone(), holder)));
                }
            }
        }
        Ok(Ok(taken))
    }

    /// Another sweep of this place is running: record that this one stood down, and do nothing.
    async fn stand_down(&self, pass: &Pass, policy: &str, holder: LeaseHolder) -> Result<Sweep> {
        let req = self.report_request(pass);
        let reason = format!(
            "backup sweep of {}: another sweep holds the {policy} sweep lease ({}): standing down, so each resource \
             is acted on once",
            self.place_key(),
            holder.describe()
        );
        tracing::warn!(event_id = %pass.t.event_id, holder = %holder.describe(), "sweep lease held: standing down");
        let env = self
            .ctx
            .envelope(&req, Outcome::Duplicate, reason)
            .detail("leaseHolder", holder.describe())
            .detail("policy", policy)
            .detail("guard", "lease");
        let report = Report { dry_run: pass.dry_run, ..Report::default() };
        let mut env = env;
        if let Ok(Value::Object(m)) = serde_json::to_value(&report) {
            env.details.extend(m);
        }
        let env = self.conclude(pass, env).await?;
        Ok(Sweep { envelopes: vec![env], report, stood_down: Some(holder) })
    }

    /// Records a sweep's report: audited and published, or (a shard's) audited only.
    async fn conclude(&self, pass: &Pass, env: Envelope) -> Result<Envelope> {
        if pass.publish {
            self.ctx.record(env).await
        } else {
            self.ctx.ledger.audit(&env).await?;
            Ok(env)
        }
    }

    /// Plans, volumes, databases, tables, buckets; then every decision audited in batches. The report is not yet
    /// recorded.
    async fn sweep_leased(&self, pass: &Pass) -> Result<(Vec<Envelope>, Report)> {
        let started = Instant::now();
        let mut report = Report { dry_run: pass.dry_run, ..Report::default() };
        let mut envelopes = Vec::new();

        if self.cfg.manage_plans {
            let used = self.cfg.policies.values().cloned().collect::<Vec<_>>();
            for p in used {
                match self.enforce_plan(pass, &p, &mut report).await {
                    Ok(Some(e)) => {
                        report.count_envelope(KIND_PLAN, &e);
                        envelopes.push(e);
                    }
                    Ok(None) => report.tally(KIND_PLAN).compliant += 1,
                    Err(e) => report.fail(KIND_PLAN, &p.plan_name(), e.to_string()),
                }
            }
        }
        match self.sweep_volumes(pass, &mut report).await {
            Ok(mut envs) => envelopes.append(&mut envs),
            Err(e) => report.errors.push(format!("{KIND_VOLUME}: {e}")),
        }
        if self.cfg.manage_rds {
            match self.sweep_databases(pass, &mut report).await {
                Ok(mut envs) => envelopes.append(&mut envs),
                Err(e) => report.errors.push(format!("{KIND_DB}/{KIND_CLUSTER}: {e}")),
            }
        }
        if self.cfg.manage_tables {
            match self.sweep_tables(pass, &mut report).await {
                Ok(mut envs) => envelopes.append(&mut envs),
                Err(e) => report.errors.push(format!("{KIND_TABLE}: {e}")),
            }
        }
        if self.cfg.manage_buckets {
            match self.sweep_buckets(pass, &mut report).await {
                Ok(mut envs) => envelopes.append(&mut envs),
                Err(e) => report.errors.push(format!("{KIND_BUCKET}: {e}")),
            }
        }

        // Every decision is audited, 25 to a request; none is published on its own.
        // Owned batches: a stream of futures borrowing from the list would not be `Send` for every
        // lifetime, which the Lambda runtime needs of the whole handler.
        let batches: Vec<Vec<Envelope>> = envelopes.chunks(BATCH_WRITE_LIMIT).map(<[Envelope]>::to_vec).collect();
        let ledger = self.ctx.ledger.clone();
        let results: Vec<Result<usize>> = stream::iter(batches)
            .map(move |batch| {
                let ledger = ledger.clone();
                async move { ledger.audit_batch(&batch).await }
            })
            .buffer_unordered(AUDIT_CONCURRENCY)
            .collect()
            .await;
        for r in results {
            match r {
                Ok(requests) => report.audit_requests += requests as u64,
                Err(e) => report.errors.push(format!("audit: {e}")),
            }
        }
        report.audited = envelopes.len() as u64;
        for e in &envelopes {
            tracing::info!(
                function = FUNCTION,
                action = %e.action,
                target = %e.target.id,
                outcome = e.outcome.as_str(),
                reason = %e.reason,
                "decision (audited in a batch, summarised in the sweep's report)"
            );
        }

        for (kind, tally) in &report.by_type {
            Metric::new()
                .dimension("Function", FUNCTION)
                .dimension("ResourceType", kind)
                .count("Compliant", tally.compliant as f64)
                .count("Fixed", tally.fixed as f64)
                .count("Failed", tally.failed as f64)
                .count("WouldFix", tally.would_fix as f64)
                .emit();
        }
        Metric::new()
            .dimension("Function", FUNCTION)
            .count("SnapshotsCreated", report.snapshots_created as f64)
            .count("SnapshotsDeleted", report.snapshots_deleted as f64)
            .count("SnapshotsCopied", report.snapshots_copied as f64)
            .count("TableBackupsCreated", report.table_backups_created as f64)
            .count("TableBackupsDeleted", report.table_backups_deleted as f64)
            .millis("SweepDuration", started.elapsed().as_millis() as f64)
            .emit();
        Ok((envelopes, report))
    }

    fn report_request(&self, pass: &Pass) -> ActionRequest {
        ActionRequest {
            action: "compliance-report".into(),
            target: Target::new("backup-sweep", pass.t.event_id.clone()),
            event_id: pass.t.event_id.clone(),
            trigger: pass.t.kind.name().into(),
            dry_run: pass.dry_run,
            reason: "backup sweep finished".into(),
        }
    }

    /// The compliance report's envelope (not yet recorded).
    fn report_envelope(&self, pass: &Pass, report: &Report, started: Instant) -> Envelope {
        let (outcome, severity) = report_verdict(report);
        let summary = report_summary(report, self.cfg.time_budget.as_secs());
        let req = self.report_request(pass);
        let mut env = self.ctx.envelope(&req, outcome, format!("backup sweep: {summary}")).severity(severity);
        if let Ok(Value::Object(m)) = serde_json::to_value(report) {
            env.details.extend(m);
        }
        env.details.insert("durationMs".into(), json!(started.elapsed().as_millis() as u64));
        env
    }

    /// A per-resource decision under the sweep's guardrails (not yet audited: the sweep audits its
    /// decisions in batches).
    pub(super) fn decision(&self, req: &ActionRequest, result: Result<ActionReport>, started: Instant) -> Envelope {
        let report = result.unwrap_or_else(|e| ActionReport::failed(format!("{}: {e}", req.action)));
        let mut env = self
            .ctx
            .envelope(req, report.outcome, report.reason.clone())
            .detail("durationMs", started.elapsed().as_millis() as u64);
        if let Some(sev) = report.severity {
            env.severity = sev;
        }
        env.details.extend(report.details);
        env
    }

    pub(super) fn request(&self, pass: &Pass, kind: &str, id: &str, policy: &Policy) -> ActionRequest {
        ActionRequest {
            action: "enforce-backup".into(),
            target: Target::new(kind, id),
            event_id: sweep_event_id(policy, pass.slot),
            trigger: pass.t.kind.name().into(),
            dry_run: pass.dry_run,
            reason: format!("policy {}", policy.name),
        }
    }

    /// The decision on a resource whose policy tag names no policy (a refusal, audited with the rest).
    pub(super) fn unknown_policy(&self, pass: &Pass, kind: &str, id: &str, policy: &str) -> Envelope {
        let req = ActionRequest {
            action: "enforce-backup".into(),
            target: Target::new(kind, id),
            event_id: pass.t.event_id.clone(),
            trigger: pass.t.kind.name().into(),
            dry_run: pass.dry_run,
            reason: String::new(),
        };
        let known: Vec<&String> = self.cfg.policies.keys().collect();
        let why = format!("{} names unknown policy {policy:?} (known: {known:?}); nothing done", self.cfg.policy_tag);
        self.ctx.envelope(&req, Outcome::Refused, why).severity(Severity::Warning)
    }

    /// The DR regions (other than this one) the policies named by `policies` copy to, each once.
    pub(super) fn dr_regions<'a>(&self, policies: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
        let home = self.home_region();
        policies
            .filter_map(|name| self.policy(name).and_then(|p| p.copy_region.clone()))
            .filter(|region| *region != home)
            .collect()
    }

    pub(super) fn home_region(&self) -> String {
        self.ctx.aws.sdk.region().map(|r| r.to_string()).unwrap_or_default()
    }
}

/// A report's outcome and severity: failed when anything failed or was left for the retry; critical
/// when a resource failed (each is named in the report).
pub(super) fn report_verdict(report: &Report) -> (Outcome, Severity) {
    // Fixed by this attempt (not by an earlier attempt of the same sweep).
    let fixed: u64 =
        report.by_type.values().map(|t| t.fixed + t.would_fix).sum::<u64>().saturating_sub(report.fixed_earlier);
    // Out of time: failing has the retry (Lambda's, or the queue's) sweep again, which lists what
    // this attempt did and goes on with the rest.
    let outcome = if report.has_failures() || report.left_for_next_run > 0 {
        Outcome::Failed
    } else if report.dry_run {
        Outcome::DryRun
    } else if fixed > 0 {
        Outcome::Acted
    } else {
        Outcome::Skipped
    };
    let severity = if report.has_failures() {
        Severity::Critical
    } else if report.left_for_next_run > 0 || !report.untagged_clusters.is_empty() {
        Severity::Warning
    } else {
        Severity::Info
    };
    (outcome, severity)
}

/// The report in a sentence per resource type, then every failure by name.
pub(super) fn report_summary(report: &Report, budget_secs: u64) -> String {
    report
        .by_type
        .iter()
        .map(|(k, t)| {
            let mut line =
                format!("{k}: {} compliant, {} fixed, {} failed", t.compliant, t.fixed + t.would_fix, t.failed);
            if t.not_opted_in > 0 {
                line.push_str(&format!(", {} not opted in", t.not_opted_in));
            }
            line
        })
        .chain(report.errors.iter().map(|e| format!("not inventoried: {e}")))
        .chain((!report.untagged_clusters.is_empty()).then(|| {
            format!(
                "not backed up: {} Aurora member(s) tagged but not their cluster, which is what is backed up: {}",
                report.untagged_clusters.len(),
                report.untagged_clusters.join(", ")
            )
        }))
        .chain((report.left_for_next_run > 0).then(|| {
            format!("{} left for the retry: the {budget_secs} s time budget ran out", report.left_for_next_run)
        }))
        .chain((!report.failures.is_empty()).then(|| {
            let failed: u64 = report.by_type.values().map(|t| t.failed).sum();
            let named: Vec<String> = report.failures.iter().map(|(id, why)| format!("{id} ({why})")).collect();
            let more = failed.saturating_sub(named.len() as u64);
            let more = if more > 0 { format!(" and {more} more (in the audit trail)") } else { String::new() };
            format!("failed: {}{more}", named.join(", "))
        }))
        .collect::<Vec<_>>()
        .join("; ")
}
