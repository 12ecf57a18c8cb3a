//! Retention: what is stale (needs a new snapshot), which snapshots may be deleted and which are
//! kept, and the automated-backup retention an RDS database should have.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::policy::Policy;
use super::RDS_MAX_RETENTION_DAYS;

/// A snapshot's state, as far as the decisions care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapState {
    Completed,
    Pending,
    Error,
}

/// One snapshot of a resource (EBS snapshot or DB snapshot), typed for the decisions.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snap {
    pub id: String,
    pub started: DateTime<Utc>,
    pub state: SnapState,
    /// Created by this suite (tag `selfheal:created-by=backup-enforcer`) and so prunable.
    pub ours: bool,
}

/// Whether the resource needs a new snapshot: no completed or in-progress snapshot is younger than
/// the policy's max age.
pub fn is_stale(snaps: &[Snap], policy: &Policy, now: DateTime<Utc>) -> bool {
    let newest = snaps.iter().filter(|s| s.state != SnapState::Error).map(|s| s.started).max();
    match newest {
        None => true,
        Some(t) => now - t > policy.max_age(),
    }
}

/// What retention decided for one resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Prune {
    /// Snapshots to delete now, oldest first.
    pub delete: Vec<String>,
    /// Past retention but left for a later run by the per-run delete cap.
    pub deferred: Vec<String>,
    /// Past retention but in use by an own AMI.
    pub spared_ami: Vec<String>,
}

/// Retention for one resource's snapshots: only the suite's own completed snapshots are candidates;
/// the newest `min_keep` of them are kept whatever their age; AMI-backed ones are spared; and at most
/// `max_delete_percent` of all the resource's snapshots (rounded down) go in one run, oldest first.
pub fn plan_prune(
    snaps: &[Snap],
    in_use_by_ami: &HashSet<String>,
    policy: &Policy,
    now: DateTime<Utc>,
    max_delete_percent: u32,
) -> Prune {
    let mut ours: Vec<&Snap> = snaps.iter().filter(|s| s.ours && s.state == SnapState::Completed).collect();
    // Newest first; the id breaks ties so the decision is deterministic.
    ours.sort_by(|a, b| b.started.cmp(&a.started).then_with(|| b.id.cmp(&a.id)));
    let cutoff = now - policy.retention();
    let mut expired: Vec<&Snap> = ours.into_iter().skip(policy.min_keep).filter(|s| s.started < cutoff).collect();
    expired.reverse(); // oldest first
    let mut out = Prune::default();
    let cap = snaps.len() * max_delete_percent as usize / 100;
    for s in expired {
        if in_use_by_ami.contains(&s.id) {
            out.spared_ami.push(s.id.clone());
        } else if out.delete.len() < cap {
            out.delete.push(s.id.clone());
        } else {
            out.deferred.push(s.id.clone());
        }
    }
    out
}

/// The automated-backup retention a DB instance should have, when it has less (never lowered).
pub fn rds_retention_fix(current_days: i32, policy: &Policy) -> Option<i32> {
    let want = (policy.retention_days.min(RDS_MAX_RETENTION_DAYS as u32)) as i32;
    (current_days < want).then_some(want)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::test_support::{policy, snap, t};

    #[test]
    fn staleness_uses_the_newest_usable_snapshot() {
        let p = policy();
        assert!(is_stale(&[], &p, t(0)));
        assert!(!is_stale(&[snap("a", 0, false)], &p, t(24)));
        assert!(is_stale(&[snap("a", 0, false)], &p, t(25)));
        let mut pending = snap("b", 20, true);
        pending.state = SnapState::Pending;
        assert!(!is_stale(&[snap("a", 0, false), pending.clone()], &p, t(25)), "a pending snapshot counts");
        pending.state = SnapState::Error;
        assert!(is_stale(&[snap("a", 0, false), pending], &p, t(25)), "a failed snapshot does not");
    }

    #[test]
    fn prune_spares_foreign_ami_newest_and_respects_cap() {
        let p = policy();
        let now = t(24 * 30);
        // ours: o1..o5 (oldest first), all past retention; f foreign; a ours but AMI-backed.
        let snaps = vec![
            snap("o1", 0, true),
            snap("o2", 1, true),
            snap("a", 2, true),
            snap("o3", 3, true),
            snap("f", 4, false),
            snap("o4", 5, true),
            snap("o5", 6, true),
        ];
        let amis: HashSet<String> = ["a".to_string()].into();
        let pr = plan_prune(&snaps, &amis, &p, now, 100);
        assert_eq!(pr.delete, vec!["o1", "o2", "o3"]);
        assert_eq!(pr.spared_ami, vec!["a"]);
        assert!(pr.deferred.is_empty());
        // 7 snapshots at 30% -> at most 2 deletions.
        let pr = plan_prune(&snaps, &amis, &p, now, 30);
        assert_eq!(pr.delete, vec!["o1", "o2"]);
        assert_eq!(pr.deferred, vec!["o3"]);
        assert!(plan_prune(&snaps, &amis, &p, now, 0).delete.is_empty());
        // Inside retention nothing goes.
        assert!(plan_prune(&snaps, &amis, &p, t(24 * 6), 100).delete.is_empty());
        // Only foreign snapshots: nothing goes.
        let foreign: Vec<Snap> = (0..5).map(|i| snap(&format!("f{i}"), i, false)).collect();
        assert!(plan_prune(&foreign, &amis, &p, now, 100).delete.is_empty());
    }

    #[test]
    fn pending_snapshots_are_never_pruned() {
        let p = policy();
        let mut s = vec![snap("o1", 0, true), snap("o2", 1, true), snap("o3", 2, true)];
        s[0].state = SnapState::Pending;
        let pr = plan_prune(&s, &HashSet::new(), &p, t(24 * 30), 100);
        assert!(pr.delete.is_empty(), "{pr:?}");
    }

    #[test]
    fn rds_retention_only_rises_and_caps_at_35() {
        let mut p = policy();
        assert_eq!(rds_retention_fix(0, &p), Some(7));
        assert_eq!(rds_retention_fix(7, &p), None);
        assert_eq!(rds_retention_fix(14, &p), None);
        p.retention_days = 90;
        assert_eq!(rds_retention_fix(30, &p), Some(35));
    }
}
