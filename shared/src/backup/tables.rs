//! DynamoDB decisions, pure (they take `now`): what an opted-in table needs (point-in-time recovery
//! with the policy's period, deletion protection, an on-demand backup when the policy asks, the
//! suite's expired backups pruned), why nothing is done to a table that is not ACTIVE, the health of
//! a global table's replicas, and the RPO its latest restorable time gives.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::policy::Policy;
use super::retention::{is_stale, plan_prune, Prune, Snap};
use super::window::time_bucket;

/// Every on-demand backup the suite takes is named `selfheal-<table>-<policy window>`: how it
/// knows its own (and only those are ever deleted) and what a sweep already took.
pub const BACKUP_PREFIX: &str = "selfheal-";
/// DynamoDB backup names are at most 255 characters.
const BACKUP_NAME_MAX: usize = 255;

/// A DynamoDB table carrying the policy tag, as the decisions see it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Table {
    pub name: String,
    pub arn: String,
    pub policy: String,
    /// Also carries the suite's opt-in tag; without it the table is only reported.
    pub opted_in: bool,
    /// `TableStatus` as AWS spells it (`ACTIVE`, `UPDATING`, `CREATING`, ...).
    pub status: String,
    pub deletion_protection: bool,
    pub pitr: Pitr,
    /// A global table's replicas as (region, `ReplicaStatus`; empty when AWS names none); empty for a
    /// table that is not global.
    pub replicas: Vec<(String, String)>,
}

/// Point-in-time recovery as `DescribeContinuousBackups` tells it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pitr {
    pub enabled: bool,
    pub recovery_days: Option<i32>,
    pub latest_restorable: Option<DateTime<Utc>>,
}

/// What an ACTIVE opted-in table needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableWork {
    /// Turn point-in-time recovery on with this recovery period (days).
    pub pitr_days: Option<i32>,
    pub deletion_protection: bool,
    /// Take an on-demand backup with this name.
    pub backup: Option<String>,
    /// The suite's own expired backups (ARNs) to delete, with the snapshots' guards.
    pub prune: Prune,
}

impl TableWork {
    pub fn is_empty(&self) -> bool {
        self.pitr_days.is_none() && !self.deletion_protection && self.backup.is_none() && self.prune.delete.is_empty()
    }

    pub fn describe(&self, pitr: &Pitr) -> String {
        let mut parts = Vec::new();
        if let Some(d) = self.pitr_days {
            match (pitr.enabled, pitr.recovery_days) {
                (true, Some(now)) => parts.push(format!("set the point-in-time recovery period {now} -> {d} days")),
                _ => parts.push(format!("turn point-in-time recovery on ({d} days)")),
            }
        }
        if self.deletion_protection {
            parts.push("turn deletion protection on".into());
        }
        if let Some(b) = &self.backup {
            parts.push(format!("take on-demand backup {b}"));
        }
        if !self.prune.delete.is_empty() {
            parts.push(format!("delete {} expired suite backup(s)", self.prune.delete.len()));
        }
        parts.join(", ")
    }
}

/// The decision about one opted-in table.
#[derive(Debug, Clone, PartialEq)]
pub enum TablePlan {
    /// Nothing done: the table is not ACTIVE (its reason names the status). Refused, not failed:
    /// the next sweep finds it settled.
    NotActive(String),
    /// The work (maybe none), and what is wrong with its replicas (each a critical failure).
    Work { work: TableWork, replica_problems: Vec<String> },
}

/// The name of the on-demand backup a policy's sweep in `slot`'s window takes of `table`.
pub fn backup_name(table: &str, policy: &Policy, slot: DateTime<Utc>) -> String {
    let window = time_bucket(slot, policy);
    let room = BACKUP_NAME_MAX - BACKUP_PREFIX.len() - 1 - window.to_string().len();
    let table: String = table.chars().take(room).collect();
    format!("{BACKUP_PREFIX}{table}-{window}")
}

/// Whether a backup of `table` named `name` is one the suite took: `selfheal-<table>-<digits>`.
/// An owner's backup, whatever its age, is never the suite's to delete.
pub fn is_suite_backup(name: &str, table: &str) -> bool {
    let Some((t, window)) = name.strip_prefix(BACKUP_PREFIX).and_then(|rest| rest.rsplit_once('-')) else {
        return false;
    };
    if window.is_empty() || !window.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let room = BACKUP_NAME_MAX.saturating_sub(BACKUP_PREFIX.len() + 1 + window.len());
    t == table.chars().take(room).collect::<String>()
}

/// What an opted-in table needs under `policy` at `now`: `backups` are all of its on-demand backups
/// (ARN as id; `ours` by [`is_suite_backup`]), `names` their names (a backup named for this sweep is
/// the evidence an earlier attempt took it). Pure.
pub fn plan_table(
    t: &Table,
    backups: &[Snap],
    names: &HashSet<String>,
    policy: &Policy,
    now: DateTime<Utc>,
    slot: DateTime<Utc>,
    max_delete_percent: u32,
) -> TablePlan {
    if t.status != "ACTIVE" {
        let status = if t.status.is_empty() { "in an unknown state" } else { t.status.as_str() };
        return TablePlan::NotActive(format!(
            "table is {status}: DynamoDB takes no backup or setting change until it is ACTIVE again; nothing done, \
             the next sweep looks again"
        ));
    }
    let want = policy.pitr_days();
    let pitr_days = (!t.pitr.enabled || t.pitr.recovery_days != Some(want)).then_some(want);
    let name = backup_name(&t.name, policy, slot);
    let backup = (policy.table_backups && !names.contains(&name) && is_stale(backups, policy, now)).then_some(name);
    // Only the suite's own, AVAILABLE ones are candidates (plan_prune), under the same guards as
    // snapshots; the backups of a policy that no longer asks for them still expire.
    let prune = plan_prune(backups, &HashSet::new(), policy, now, max_delete_percent);
    let work = TableWork { pitr_days, deletion_protection: !t.deletion_protection, backup, prune };
    TablePlan::Work { work, replica_problems: replica_problems(t, policy.copy_region.as_deref()) }
}

/// What is wrong with a global table's replicas: each one not ACTIVE, and none in the policy's DR
/// region when it names one. A table without replicas is not a global table: nothing.
pub fn replica_problems(t: &Table, dr_region: Option<&str>) -> Vec<String> {
    if t.replicas.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<String> = t
        .replicas
        .iter()
        .filter(|(_, status)| status != "ACTIVE")
        .map(|(region, status)| {
            let status = if status.is_empty() { "without a status" } else { status.as_str() };
            format!("replica in {region} is {status}")
        })
        .collect();
    if let Some(dr) = dr_region.filter(|dr| !t.replicas.iter().any(|(r, _)| r == dr)) {
        out.push(format!("no replica in the policy's DR region {dr}"));
    }
    out
}

/// The recovery point objective met now: how old the latest restorable time is, in seconds.
pub fn rpo_seconds(pitr: &Pitr, now: DateTime<Utc>) -> Option<i64> {
    pitr.latest_restorable.filter(|_| pitr.enabled).map(|t| (now - t).num_seconds().max(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::retention::SnapState;
    use crate::backup::test_support::{policy, snap, t};

    fn table(status: &str) -> Table {
        Table {
            name: "orders".into(),
            arn: "arn:aws:dynamodb:us-east-1:111111111111:table/orders".into(),
            policy: "silver".into(),
            opted_in: true,
            status: status.into(),
            ..Table::default()
        }
    }

    fn work(plan: TablePlan) -> (TableWork, Vec<String>) {
        match plan {
            TablePlan::Work { work, replica_problems } => (work, replica_problems),
            other => panic!("expected work: {other:?}"),
        }
    }

    #[test]
    fn a_table_that_is_not_active_is_a_named_decision_and_nothing_is_done() {
        let p = policy();
        let none = HashSet::new();
        for status in ["UPDATING", "CREATING", "ARCHIVING", ""] {
            match plan_table(&table(status), &[], &none, &p, t(0), t(0), 50) {
                TablePlan::NotActive(why) => {
                    assert!(why.starts_with("table is "), "{why}");
                    assert!(why.contains("nothing done"), "{why}");
                    if !status.is_empty() {
                        assert!(why.contains(&format!("table is {status}:")), "{why}");
                    }
                }
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_unprotected_table_gets_pitr_with_the_policy_period_and_deletion_protection() {
        let mut p = policy();
        let none = HashSet::new();
        let (w, problems) = work(plan_table(&table("ACTIVE"), &[], &none, &p, t(0), t(0), 50));
        assert_eq!(w.pitr_days, Some(7), "the retention (7) is the default period");
        assert!(w.deletion_protection && w.backup.is_none() && problems.is_empty());
        assert!(w.describe(&Pitr::default()).contains("turn point-in-time recovery on (7 days)"));

        // Compliant: PITR on with the period, protected.
        let mut ok = table("ACTIVE");
        ok.deletion_protection = true;
        ok.pitr = Pitr { enabled: true, recovery_days: Some(7), latest_restorable: Some(t(0)) };
        let (w, _) = work(plan_table(&ok, &[], &none, &p, t(0), t(0), 50));
        assert!(w.is_empty(), "{w:?}");
        // Another period in the policy: the period is set, nothing else.
        p.pitr_recovery_days = Some(35);
        let (w, _) = work(plan_table(&ok, &[], &none, &p, t(0), t(0), 50));
        assert_eq!((w.pitr_days, w.deletion_protection), (Some(35), false));
        assert!(w.describe(&ok.pitr).contains("7 -> 35 days"));
    }

    #[test]
    fn on_demand_backups_follow_the_schedule_and_only_the_suites_own_expire() {
        let mut p = policy();
        p.table_backups = true;
        let mut ok = table("ACTIVE");
        ok.deletion_protection = true;
        ok.pitr = Pitr { enabled: true, recovery_days: Some(7), latest_restorable: None };
        let none = HashSet::new();
        let now = t(24 * 30);
        let (w, _) = work(plan_table(&ok, &[], &none, &p, now, now, 100));
        let name = w.backup.clone().expect("no backup yet: one is taken");
        assert!(is_suite_backup(&name, "orders"), "{name}");
        // Taken already in this window (an earlier attempt): not again.
        let taken: HashSet<String> = [name.clone()].into();
        assert!(work(plan_table(&ok, &[], &taken, &p, now, now, 100)).0.backup.is_none());
        // A fresh backup (anyone's) means none is due.
        let fresh = [snap("arn:owner", 24 * 30 - 1, false)];
        assert!(work(plan_table(&ok, &fresh, &none, &p, now, now, 100)).0.backup.is_none());

        // Expiry: the suite's old ones beyond min_keep (2) go; the owner's of the same age stay.
        let backups = vec![
            snap("arn:ours-1", 0, true),
            snap("arn:owners", 0, false),
            snap("arn:ours-2", 1, true),
            snap("arn:ours-3", 2, true),
            snap("arn:ours-4", 3, true),
        ];
        let (w, _) = work(plan_table(&ok, &backups, &none, &p, now, now, 100));
        assert_eq!(w.prune.delete, vec!["arn:ours-1", "arn:ours-2"]);
        // The same cap on deletions as snapshots: 5 backups at 20% -> one.
        let (w, _) = work(plan_table(&ok, &backups, &none, &p, now, now, 20));
        assert_eq!((w.prune.delete.len(), w.prune.deferred.len()), (1, 1));
        // Never one that is not AVAILABLE.
        let mut creating = backups.clone();
        creating[0].state = SnapState::Pending;
        let (w, _) = work(plan_table(&ok, &creating, &none, &p, now, now, 100));
        assert_eq!(w.prune.delete, vec!["arn:ours-2"]);
        // Without tableBackups, nothing is taken.
        p.table_backups = false;
        assert!(work(plan_table(&ok, &[], &none, &p, now, now, 100)).0.backup.is_none());
    }

    #[test]
    fn suite_backups_are_known_by_name() {
        let p = policy();
        let name = backup_name("orders", &p, t(0));
        assert!(name.starts_with("selfheal-orders-") && is_suite_backup(&name, "orders"), "{name}");
        assert!(!is_suite_backup(&name, "order"), "another table's");
        assert!(!is_suite_backup("selfheal-orders-nightly", "orders"), "an owner's name that looks alike");
        assert!(!is_suite_backup("orders-before-migration", "orders"));
        assert!(!is_suite_backup("selfheal-orders-", "orders"));
        let long = "t".repeat(255);
        let name = backup_name(&long, &p, t(0));
        assert!(name.len() <= 255 && is_suite_backup(&name, &long), "{}", name.len());
    }

    #[test]
    fn every_replica_of_a_global_table_must_be_active() {
        let mut g = table("ACTIVE");
        assert!(replica_problems(&g, Some("us-west-2")).is_empty(), "not a global table");
        g.replicas = vec![("us-east-1".into(), "ACTIVE".into()), ("us-west-2".into(), "ACTIVE".into())];
        assert!(replica_problems(&g, Some("us-west-2")).is_empty());
        g.replicas[1].1 = "INACCESSIBLE_ENCRYPTION_CREDENTIALS".into();
        assert_eq!(replica_problems(&g, None), vec!["replica in us-west-2 is INACCESSIBLE_ENCRYPTION_CREDENTIALS"]);
        g.replicas.pop();
        assert_eq!(replica_problems(&g, Some("us-west-2")), vec!["no replica in the policy's DR region us-west-2"]);
    }

    #[test]
    fn the_rpo_is_the_age_of_the_latest_restorable_time() {
        let pitr = Pitr { enabled: true, recovery_days: Some(7), latest_restorable: Some(t(0)) };
        assert_eq!(rpo_seconds(&pitr, t(1)), Some(3600));
        assert_eq!(rpo_seconds(&Pitr { enabled: false, ..pitr.clone() }, t(1)), None);
        assert_eq!(rpo_seconds(&Pitr::default(), t(1)), None);
    }
}
