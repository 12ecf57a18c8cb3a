//! The compliance report: counts per resource type and what the sweep did, and how many decisions
//! a sweep's Lambda response carries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::envelope::{Envelope, Outcome};

/// Counts for one resource type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Tally {
    pub compliant: u64,
    pub fixed: u64,
    pub failed: u64,
    /// Dry-run: would have been fixed.
    pub would_fix: u64,
    /// Another run holds the window's claim, or a guard refused.
    pub skipped: u64,
    /// Carries a policy tag but not the opt-in tag: left alone.
    pub not_opted_in: u64,
}

/// The sweep's outcome, sent as the details of one envelope.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Report {
    pub dry_run: bool,
    pub by_type: BTreeMap<String, Tally>,
    pub snapshots_created: u64,
    pub snapshots_deleted: u64,
    pub snapshots_copied: u64,
    pub deletes_deferred: u64,
    pub retention_fixed: u64,
    /// Resources not started on because the sweep's time budget ran out.
    pub left_for_next_run: u64,
    /// Resources an earlier attempt of this same sweep fixed (their snapshot carries the sweep's id,
    /// `selfheal:sweep`): counted as fixed, found by listing, not by per-resource ledger items.
    pub fixed_earlier: u64,
    /// Audit records written in batches, and the `BatchWriteItem` requests that took.
    pub audited: u64,
    pub audit_requests: u64,
    /// Time the sweep waited for its API rate (`SELFHEAL_BACKUP_API_RATE`), in milliseconds.
    pub throttled_ms: u64,
    /// Aurora members carrying the policy tag whose cluster does not ("member (cluster c)"): members
    /// are backed up through their cluster, so these are not backed up at all. At most
    /// [`REPORT_LIST_LIMIT`].
    pub untagged_clusters: Vec<String>,
    /// Plan drift found, by plan name.
    pub drift: BTreeMap<String, Vec<String>>,
    /// Failures (resource id -> why), at most [`REPORT_LIST_LIMIT`].
    pub failures: BTreeMap<String, String>,
    /// Listing errors: a whole resource type that could not be inventoried.
    pub errors: Vec<String>,
    /// Resources with a policy tag but without the opt-in tag, at most [`REPORT_LIST_LIMIT`].
    pub not_opted_in: Vec<String>,
    /// DynamoDB on-demand backups the suite took and deleted.
    pub table_backups_created: u64,
    pub table_backups_deleted: u64,
    /// The recovery point of each opted-in DynamoDB table with point-in-time recovery: how old its
    /// `LatestRestorableDateTime` was, in seconds (`<kind>/<id>`), at most [`REPORT_LIST_LIMIT`].
    pub rpo_seconds: BTreeMap<String, i64>,
    /// Requests the inventory of each resource type took (tables, buckets), for requests per resource.
    pub inventory_requests: BTreeMap<String, u64>,
}

/// Most entries kept in the report's failure list.
pub const REPORT_LIST_LIMIT: usize = 100;

/// Most per-resource decisions a sweep's Lambda response carries. A sweep over thousands of
/// resources would otherwise outgrow Lambda's 6 MB response limit, fail the invocation and have it
/// retried whole; every decision is already audited in the ledger and published.
pub const RESPONSE_DECISION_LIMIT: usize = 200;

/// The decisions a sweep answers with: all of them when they are few; otherwise the failed ones (up
/// to [`RESPONSE_DECISION_LIMIT`], so the invocation still fails and is retried) and the compliance
/// report (the last envelope), which is marked with how many were left out.
pub fn response_decisions(mut envelopes: Vec<Envelope>) -> Vec<Envelope> {
    if envelopes.len() <= RESPONSE_DECISION_LIMIT {
        return envelopes;
    }
    let Some(mut report) = envelopes.pop() else { return envelopes };
    let total = envelopes.len();
    let mut kept: Vec<Envelope> =
        envelopes.into_iter().filter(|e| e.outcome == Outcome::Failed).take(RESPONSE_DECISION_LIMIT).collect();
    report.details.insert("decisionsOmittedFromResponse".into(), json!(total - kept.len()));
    kept.push(report);
    kept
}

impl Report {
    pub(super) fn tally(&mut self, kind: &str) -> &mut Tally {
        self.by_type.entry(kind.to_string()).or_default()
    }

    pub(super) fn not_opted_in(&mut self, kind: &str, id: &str) {
        self.tally(kind).not_opted_in += 1;
        if self.not_opted_in.len() < REPORT_LIST_LIMIT {
            self.not_opted_in.push(id.to_string());
        }
    }

    /// A resource with work to do that the sweep did not start on: its time budget had run out.
    pub(super) fn out_of_time(&mut self, kind: &str) {
        self.tally(kind).skipped += 1;
        self.left_for_next_run += 1;
    }

    pub(super) fn fail(&mut self, kind: &str, id: &str, why: impl Into<String>) {
        self.tally(kind).failed += 1;
        if self.failures.len() < REPORT_LIST_LIMIT {
            self.failures.insert(id.to_string(), why.into());
        }
    }

    pub(super) fn count_envelope(&mut self, kind: &str, env: &Envelope) {
        match env.outcome {
            Outcome::Acted => self.tally(kind).fixed += 1,
            Outcome::DryRun => self.tally(kind).would_fix += 1,
            Outcome::Failed => self.fail(kind, &env.target.id, env.reason.clone()),
            Outcome::Skipped => self.tally(kind).compliant += 1,
            Outcome::Duplicate | Outcome::Refused | Outcome::Observed | Outcome::AwaitingApproval => {
                self.tally(kind).skipped += 1
            }
        }
        let n = |k: &str| env.details.get(k).and_then(Value::as_array).map(|a| a.len() as u64).unwrap_or(0);
        if env.outcome == Outcome::Acted || env.outcome == Outcome::Failed {
            self.snapshots_created += n("created");
            self.snapshots_deleted += n("deleted") + n("drDeleted");
            self.snapshots_copied += n("copied");
            self.table_backups_created += n("backupsCreated");
            self.table_backups_deleted += n("backupsDeleted");
            if env.details.get("retentionSetTo").is_some_and(|v| !v.is_null()) {
                self.retention_fixed += 1;
            }
        }
        self.deletes_deferred += n("deferred") + n("drDeferred");
    }

    /// The recovery point of `kind`/`id`: its latest restorable time was `secs` old.
    pub(super) fn rpo(&mut self, kind: &str, id: &str, secs: i64) {
        if self.rpo_seconds.len() < REPORT_LIST_LIMIT {
            self.rpo_seconds.insert(format!("{kind}/{id}"), secs);
        }
    }

    /// Adds `other` (another place's, or another shard's, report) into this one; failure lists stay
    /// within [`REPORT_LIST_LIMIT`] and each entry is named `{place}: {id}` when `place` is given.
    pub fn merge(&mut self, other: &Report, place: Option<&str>) {
        let named = |id: &str| match place {
            Some(p) => format!("{p}: {id}"),
            None => id.to_string(),
        };
        for (kind, t) in &other.by_type {
            let mine = self.tally(kind);
            mine.compliant += t.compliant;
            mine.fixed += t.fixed;
            mine.failed += t.failed;
            mine.would_fix += t.would_fix;
            mine.skipped += t.skipped;
            mine.not_opted_in += t.not_opted_in;
        }
        self.snapshots_created += other.snapshots_created;
        self.snapshots_deleted += other.snapshots_deleted;
        self.snapshots_copied += other.snapshots_copied;
        self.deletes_deferred += other.deletes_deferred;
        self.retention_fixed += other.retention_fixed;
        self.left_for_next_run += other.left_for_next_run;
        self.fixed_earlier += other.fixed_earlier;
        self.audited += other.audited;
        self.audit_requests += other.audit_requests;
        self.throttled_ms += other.throttled_ms;
        self.table_backups_created += other.table_backups_created;
        self.table_backups_deleted += other.table_backups_deleted;
        for (kind, n) in &other.inventory_requests {
            *self.inventory_requests.entry(kind.clone()).or_default() += n;
        }
        for (id, secs) in &other.rpo_seconds {
            if self.rpo_seconds.len() < REPORT_LIST_LIMIT {
                self.rpo_seconds.insert(named(id), *secs);
            }
        }
        let room = |len: usize| REPORT_LIST_LIMIT.saturating_sub(len);
        let cluster_room = room(self.untagged_clusters.len());
        self.untagged_clusters.extend(other.untagged_clusters.iter().take(cluster_room).map(|c| named(c)));
        for (plan, drift) in &other.drift {
            self.drift.insert(named(plan), drift.clone());
        }
        for (id, why) in &other.failures {
            if self.failures.len() < REPORT_LIST_LIMIT {
                self.failures.insert(named(id), why.clone());
            }
        }
        self.errors.extend(other.errors.iter().map(|e| named(e)));
        let opt_room = room(self.not_opted_in.len());
        self.not_opted_in.extend(other.not_opted_in.iter().take(opt_room).map(|c| named(c)));
    }

    /// Whether anything failed.
    pub fn has_failures(&self) -> bool {
        !self.errors.is_empty() || self.by_type.values().any(|t| t.failed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::{FUNCTION, KIND_VOLUME};
    use crate::envelope::Target;

    #[test]
    fn large_sweeps_answer_with_failures_and_the_report_only() {
        let env =
            |id: &str, outcome| Envelope::new(FUNCTION, "enforce-backup", Target::new(KIND_VOLUME, id), outcome, "");
        let small: Vec<Envelope> = (0..3).map(|i| env(&format!("vol-{i}"), Outcome::Acted)).collect();
        assert_eq!(response_decisions(small.clone()), small);

        let mut big: Vec<Envelope> = (0..5000).map(|i| env(&format!("vol-{i}"), Outcome::Acted)).collect();
        big[17].outcome = Outcome::Failed;
        big.push(Envelope::new(FUNCTION, "compliance-report", Target::new("backup-sweep", "e"), Outcome::Failed, ""));
        let out = response_decisions(big);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].target.id, "vol-17");
        assert_eq!(out[1].action, "compliance-report");
        assert_eq!(out[1].details["decisionsOmittedFromResponse"], 4999);

        let all_failed: Vec<Envelope> =
            (0..=RESPONSE_DECISION_LIMIT * 2).map(|i| env(&format!("v{i}"), Outcome::Failed)).collect();
        assert_eq!(response_decisions(all_failed).len(), RESPONSE_DECISION_LIMIT + 1);
    }
}
