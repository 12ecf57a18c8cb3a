//! Which resources a restore test restores (one per kind and backup policy, rotating day by day), and
//! which scratch resources an earlier, interrupted test left behind: pure decisions.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

pub use crate::drill::restores::Kind;

/// A resource the suite backs up (it carries a backup policy tag and the opt-in tag) and its newest
/// recovery point, if it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub kind: Kind,
    /// The account it lives in (`None`: the drill's own).
    pub account: Option<String>,
    /// The volume, DB instance, cluster, table, or `bucket/key`.
    pub source: String,
    pub policy: String,
    pub point: Option<RecoveryPoint>,
}

/// What a restore starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryPoint {
    /// The snapshot id, `latest-restorable-time`, or the object's version id.
    pub id: String,
    /// When the data it holds was current.
    pub taken: DateTime<Utc>,
    /// What verification compares the restore against: the volume's or database's size in GiB, the
    /// table's item count, the object's ETag.
    pub expect: Expect,
}

/// What a restored resource must show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "what")]
pub enum Expect {
    /// A volume or database of this size.
    SizeGib { gib: i64 },
    /// A table holding this many items (the source's count when the restore started).
    Items { count: i64 },
    /// An object whose content hashes to this ETag (an MD5 in hex for an object not uploaded in parts).
    Etag { etag: String },
    /// A database cluster that becomes available (Aurora's storage has no size to compare).
    Available,
}

/// One resource of each kind for each policy, rotating through them day by day (`day`: a day number,
/// see [`day_number`]) so that every resource is restored in turn; resources without a recovery point
/// are left to [`without_point`]. Sorted by kind, policy, source.
pub fn sample(candidates: &[Candidate], day: u32) -> Vec<Candidate> {
    let mut groups: BTreeMap<(Kind, &str), Vec<&Candidate>> = BTreeMap::new();
    for c in candidates.iter().filter(|c| c.point.is_some()) {
        groups.entry((c.kind, c.policy.as_str())).or_default().push(c);
    }
    groups
        .into_values()
        .map(|mut g| {
            g.sort_by(|a, b| (&a.account, &a.source).cmp(&(&b.account, &b.source)));
            g[day as usize % g.len()].clone()
        })
        .collect()
}

/// The resources the suite backs up that have no recovery point at all: each is a restore that cannot
/// be attempted, reported as a failed one.
pub fn without_point(candidates: &[Candidate]) -> Vec<&Candidate> {
    candidates.iter().filter(|c| c.point.is_none()).collect()
}

/// The day number [`sample`] rotates by.
pub fn day_number(now: DateTime<Utc>) -> u32 {
    now.num_days_from_ce().unsigned_abs()
}

/// The name prefix of every scratch resource a restore test creates (volumes carry it in their `Name`
/// tag, the others in their identifier): with the scratch tag, what marks a resource as the drill's to
/// delete.
pub const SCRATCH_PREFIX: &str = "selfheal-restore-";

/// Whether a resource found at the start of a restore test is an earlier test's scratch resource to
/// delete now: it carries the scratch tag, its name starts with [`SCRATCH_PREFIX`], and it was created
/// at least `leftover_minutes` ago (a younger one may belong to a test still running). Both marks are
/// required, so nothing the suite did not create is ever deleted.
pub fn is_leftover(
    name: &str,
    tagged: bool,
    created: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    leftover_minutes: u64,
) -> bool {
    let old_enough = created.is_some_and(|c| now.signed_duration_since(c).num_minutes() >= leftover_minutes as i64);
    tagged && name.starts_with(SCRATCH_PREFIX) && old_enough
}

/// A scratch resource's name: the prefix, the kind, the run and a short form of the source (DB and
/// table identifiers allow 63 characters of letters, digits and hyphens, starting with a letter).
pub fn scratch_name(kind: Kind, run: &str, source: &str) -> String {
    let short: String =
        source.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).take(24).collect();
    let run: String = run.chars().filter(|c| c.is_ascii_alphanumeric()).take(8).collect();
    let kind = match kind {
        Kind::EbsVolume => "vol",
        Kind::RdsInstance => "db",
        Kind::RdsCluster => "cluster",
        Kind::DynamodbTable => "table",
        Kind::S3Object => "obj",
    };
    let name = format!("{SCRATCH_PREFIX}{kind}-{run}-{short}");
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + h * 3600, 0).unwrap()
    }

    fn cand(kind: Kind, source: &str, policy: &str, point: bool) -> Candidate {
        Candidate {
            kind,
            account: None,
            source: source.into(),
            policy: policy.into(),
            point: point.then(|| RecoveryPoint { id: "p".into(), taken: at(0), expect: Expect::Available }),
        }
    }

    #[test]
    fn one_per_kind_and_policy_rotating_by_day() {
        let c = vec![
            cand(Kind::EbsVolume, "vol-b", "gold", true),
            cand(Kind::EbsVolume, "vol-a", "gold", true),
            cand(Kind::EbsVolume, "vol-c", "silver", true),
            cand(Kind::EbsVolume, "vol-d", "gold", false),
            cand(Kind::DynamodbTable, "orders", "gold", true),
        ];
        let day0: Vec<String> = sample(&c, 0).into_iter().map(|c| c.source).collect();
        assert_eq!(day0, ["vol-a", "vol-c", "orders"]);
        let day1: Vec<String> = sample(&c, 1).into_iter().map(|c| c.source).collect();
        assert_eq!(day1, ["vol-b", "vol-c", "orders"], "the next day restores the next gold volume");
        assert_eq!(without_point(&c).len(), 1);
        assert_eq!(without_point(&c)[0].source, "vol-d");
    }

    #[test]
    fn a_leftover_needs_the_tag_the_prefix_and_the_age() {
        let now = at(10);
        let name = scratch_name(Kind::RdsInstance, "run-1234abcd", "orders");
        assert!(is_leftover(&name, true, Some(at(7)), now, 120));
        assert!(!is_leftover(&name, true, Some(at(9)), now, 120), "a young one may belong to a running test");
        assert!(!is_leftover(&name, false, Some(at(0)), now, 120), "not tagged as scratch: not ours");
        assert!(!is_leftover("orders-restored", true, Some(at(0)), now, 120), "not named as scratch: not ours");
        assert!(!is_leftover(&name, true, None, now, 120), "no creation time: kept");
    }

    #[test]
    fn scratch_names_are_valid_identifiers() {
        let n = scratch_name(Kind::RdsCluster, "3f2a9c1e-77", "Orders_Cluster.Prod--Main-Very-Long-Name");
        assert!(n.starts_with("selfheal-restore-cluster-3f2a9c1e-orders-cluster-prod"), "{n}");
        assert!(n.len() <= 63 && !n.ends_with('-') && !n.contains("--"), "{n}");
        assert!(n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{n}");
    }
}
