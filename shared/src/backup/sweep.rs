//! One sweep: AWS Backup plans, then volumes, then databases, concluded by the compliance report
//! and metrics; and what the per-resource parts share ([`Work`], action requests, DR regions).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::handler::BackupEnforcer;
use super::policy::Policy;
use super::report::Report;
use super::retention::Prune;
use super::window::sweep_event_id;
use super::{FUNCTION, KIND_CLUSTER, KIND_DB, KIND_PLAN, KIND_VOLUME};
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::Result;
use crate::guardrails::ActionRequest;
use crate::telemetry::Metric;
use crate::trigger::Trigger;

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

/// What one sweep returns: every decision envelope (the report's last) and the report.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub envelopes: Vec<Envelope>,
    pub report: Report,
}

impl BackupEnforcer {
    pub(super) fn policy(&self, name: &str) -> Option<&Policy> {
        self.cfg.policies.get(name)
    }

    /// A full sweep at `now` (injectable so staleness and retention can be tested).
    pub async fn sweep(&self, t: &Trigger, dry_run: bool, now: DateTime<Utc>) -> Result<Sweep> {
        let started = std::time::Instant::now();
        let deadline = started + self.cfg.time_budget;
        tracing::info!(event_id = %t.event_id, dry_run, "backup sweep starting");
        let mut report = Report { dry_run, ..Report::default() };
        let mut envelopes = Vec::new();

        if self.cfg.manage_plans {
            let used = self.cfg.policies.values().cloned().collect::<Vec<_>>();
            for p in used {
                let env = self.enforce_plan(t, &p, dry_run, now, &mut report).await;
                match env {
                    Ok(Some(e)) => {
                        report.count_envelope(KIND_PLAN, &e);
                        envelopes.push(e);
                    }
                    Ok(None) => report.tally(KIND_PLAN).compliant += 1,
                    Err(e) => report.fail(KIND_PLAN, &p.plan_name(), e.to_string()),
                }
            }
        }

        match self.sweep_volumes(t, dry_run, now, deadline, &mut report).await {
            Ok(mut envs) => envelopes.append(&mut envs),
            Err(e) => report.errors.push(format!("{KIND_VOLUME}: {e}")),
        }
        if self.cfg.manage_rds {
            match self.sweep_databases(t, dry_run, now, deadline, &mut report).await {
                Ok(mut envs) => envelopes.append(&mut envs),
                Err(e) => report.errors.push(format!("{KIND_DB}/{KIND_CLUSTER}: {e}")),
            }
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
            .millis("SweepDuration", started.elapsed().as_millis() as f64)
            .emit();

        let fixed: u64 = report.by_type.values().map(|t| t.fixed + t.would_fix).sum();
        // Out of time: failing the invocation has Lambda retry the sweep, which finds the finished
        // resources done (same claims) and goes on with the rest.
        let outcome = if !report.errors.is_empty() || report.left_for_next_run > 0 {
            Outcome::Failed
        } else if dry_run {
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
        let summary = report
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
                format!(
                    "{} left for the retry: the {} s time budget ran out",
                    report.left_for_next_run,
                    self.cfg.time_budget.as_secs()
                )
            }))
            .collect::<Vec<_>>()
            .join("; ");
        let req = ActionRequest {
            action: "compliance-report".into(),
            target: Target::new("backup-sweep", t.event_id.clone()),
            event_id: t.event_id.clone(),
            trigger: t.kind.name().into(),
            dry_run,
            reason: "backup sweep finished".into(),
        };
        let mut env = self.ctx.envelope(&req, outcome, format!("backup sweep: {summary}")).severity(severity);
        if let Ok(Value::Object(m)) = serde_json::to_value(&report) {
            env.details.extend(m);
        }
        env.details.insert("durationMs".into(), json!(started.elapsed().as_millis() as u64));
        let env = self.ctx.record(env).await?;
        tracing::info!(event_id = %t.event_id, dry_run, report = %json!(report), "backup sweep finished");
        envelopes.push(env);
        Ok(Sweep { envelopes, report })
    }

    pub(super) fn request(
        &self,
        t: &Trigger,
        kind: &str,
        id: &str,
        policy: &Policy,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> ActionRequest {
        ActionRequest {
            action: "enforce-backup".into(),
            target: Target::new(kind, id),
            event_id: sweep_event_id(policy, now),
            trigger: t.kind.name().into(),
            dry_run,
            reason: format!("policy {}", policy.name),
        }
    }

    pub(super) async fn unknown_policy(
        &self,
        t: &Trigger,
        kind: &str,
        id: &str,
        policy: &str,
        dry_run: bool,
    ) -> Result<Envelope> {
        let req = ActionRequest {
            action: "enforce-backup".into(),
            target: Target::new(kind, id),
            event_id: t.event_id.clone(),
            trigger: t.kind.name().into(),
            dry_run,
            reason: String::new(),
        };
        let known: Vec<&String> = self.cfg.policies.keys().collect();
        let why = format!("{} names unknown policy {policy:?} (known: {known:?}); nothing done", self.cfg.policy_tag);
        self.ctx.record(self.ctx.envelope(&req, Outcome::Refused, why).severity(Severity::Warning)).await
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
