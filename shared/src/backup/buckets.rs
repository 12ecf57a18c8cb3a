//! S3 decisions, pure: what an opted-in bucket needs (versioning enabled, the suite's
//! noncurrent-version expiration rule merged into the owner's lifecycle configuration without
//! touching the owner's rules, cross-region replication created when the policy says so), what is
//! wrong with its replication (missing, disabled, to a bucket that does not exist), and which errors
//! name a bucket the suite may not touch.

use std::collections::HashSet;

use aws_sdk_s3::types::{ExpirationStatus, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration};
use serde::Serialize;

use super::policy::Policy;

/// The id of the one lifecycle rule the suite writes; every other rule is the owner's.
pub const LIFECYCLE_RULE_ID: &str = "selfheal-noncurrent-expiration";
/// The id of the replication rule the suite creates (only on a bucket that has none).
pub const REPLICATION_RULE_ID: &str = "selfheal-replication";

/// A bucket's versioning as `GetBucketVersioning` tells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Versioning {
    Enabled,
    Suspended,
    /// Never enabled (no status).
    #[default]
    Never,
}

/// One replication rule, as far as the decisions care.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaRule {
    pub id: String,
    pub enabled: bool,
    /// The destination bucket's ARN.
    pub destination: String,
}

/// A bucket carrying the policy tag, in the sweep's region.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bucket {
    pub name: String,
    pub policy: String,
    /// Also carries the suite's opt-in tag; without it the bucket is only reported.
    pub opted_in: bool,
    pub versioning: Versioning,
    /// Its lifecycle rules as read (the owner's, and the suite's own if there).
    pub lifecycle: Vec<LifecycleRule>,
    /// Its replication rules (`None`: no replication configuration, or not read because the policy
    /// names no destination).
    pub replication: Option<Vec<ReplicaRule>>,
}

/// What an opted-in bucket needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BucketWork {
    pub enable_versioning: bool,
    /// The whole lifecycle configuration to write: the owner's rules as read, and the suite's.
    pub lifecycle: Option<Vec<LifecycleRule>>,
    /// Create replication to (destination bucket ARN, role ARN).
    pub create_replication: Option<(String, String)>,
}

impl BucketWork {
    pub fn is_empty(&self) -> bool {
        !self.enable_versioning && self.lifecycle.is_none() && self.create_replication.is_none()
    }

    pub fn describe(&self, days: i32) -> String {
        let mut parts = Vec::new();
        if self.enable_versioning {
            parts.push("enable versioning".to_string());
        }
        if self.lifecycle.is_some() {
            parts.push(format!("expire noncurrent versions after {days} days (rule {LIFECYCLE_RULE_ID})"));
        }
        if let Some((dest, _)) = &self.create_replication {
            parts.push(format!("create replication to {dest}"));
        }
        parts.join(", ")
    }
}

/// The decision about one opted-in bucket: the work (maybe none) and what is wrong with its
/// replication that the work does not fix (each a failure in the report).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BucketPlan {
    pub work: BucketWork,
    pub problems: Vec<String>,
}

/// The suite's lifecycle rule: noncurrent versions of every object expire after `days`.
pub fn our_rule(days: i32) -> Result<LifecycleRule, String> {
    LifecycleRule::builder()
        .id(LIFECYCLE_RULE_ID)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .noncurrent_version_expiration(NoncurrentVersionExpiration::builder().noncurrent_days(days).build())
        .build()
        .map_err(|e| format!("lifecycle rule {LIFECYCLE_RULE_ID}: {e}"))
}

/// Whether `r` is the suite's rule as it should be: enabled, noncurrent versions after `days`, and
/// nothing else that expires or moves objects.
fn is_our_rule_with(r: &LifecycleRule, days: i32) -> bool {
    r.id() == Some(LIFECYCLE_RULE_ID)
        && r.status() == &ExpirationStatus::Enabled
        && r.noncurrent_version_expiration().and_then(|n| n.noncurrent_days()) == Some(days)
        && r.expiration().is_none()
        && r.transitions().is_empty()
        && r.noncurrent_version_transitions().is_empty()
        && r.filter()
            .is_none_or(|f| f.prefix().unwrap_or_default().is_empty() && f.and().is_none() && f.tag().is_none())
}

/// The lifecycle configuration to write so noncurrent versions expire after `days`, or `None` when
/// the bucket's already does: every rule of the owner exactly as read, in its order, and the suite's
/// one rule (replacing its earlier version in place, or added last). Pure.
pub fn merge_lifecycle(existing: &[LifecycleRule], days: i32) -> Result<Option<Vec<LifecycleRule>>, String> {
    let ours: Vec<&LifecycleRule> = existing.iter().filter(|r| r.id() == Some(LIFECYCLE_RULE_ID)).collect();
    if ours.len() == 1 && is_our_rule_with(ours[0], days) {
        return Ok(None);
    }
    let rule = our_rule(days)?;
    let mut out = Vec::with_capacity(existing.len() + 1);
    let mut placed = false;
    for r in existing {
        if r.id() == Some(LIFECYCLE_RULE_ID) {
            if !placed {
                out.push(rule.clone());
                placed = true;
            }
        } else {
            out.push(r.clone());
        }
    }
    if !placed {
        out.push(rule);
    }
    Ok(Some(out))
}

/// A bucket's name from its ARN (`arn:aws:s3:::name`).
pub fn bucket_of(arn: &str) -> &str {
    arn.strip_prefix("arn:aws:s3:::").unwrap_or(arn)
}

/// What an opted-in bucket needs under `policy`; `missing` holds the destination bucket ARNs found
/// not to exist. Replication is judged only when the policy names a destination; the suite never
/// changes replication a bucket already has. Pure.
pub fn plan_bucket(b: &Bucket, policy: &Policy, missing: &HashSet<String>) -> Result<BucketPlan, String> {
    let mut plan = BucketPlan::default();
    plan.work.enable_versioning = b.versioning != Versioning::Enabled;
    plan.work.lifecycle = merge_lifecycle(&b.lifecycle, policy.noncurrent_days())?;
    let Some(dest) = &policy.replication_destination else { return Ok(plan) };
    match b.replication.as_deref() {
        Some(rules) if !rules.is_empty() => {
            for r in rules.iter().filter(|r| r.enabled && missing.contains(&r.destination)) {
                plan.problems.push(format!(
                    "replication rule {} replicates to bucket {} that does not exist",
                    r.id,
                    bucket_of(&r.destination)
                ));
            }
            if !rules.iter().any(|r| r.enabled) {
                plan.problems.push("replication is configured but disabled (no rule is Enabled)".into());
            } else if !rules.iter().any(|r| r.enabled && &r.destination == dest) {
                plan.problems.push(format!(
                    "no enabled replication rule to the policy's destination {} (the bucket's rules are left as the \
                     owner wrote them)",
                    bucket_of(dest)
                ));
            }
        }
        _ => match (&policy.replication_role, policy.create_replication) {
            (Some(role), true) if !missing.contains(dest) => {
                plan.work.create_replication = Some((dest.clone(), role.clone()));
            }
            (_, true) => plan.problems.push(format!(
                "replication missing, and its destination bucket {} does not exist: not created",
                bucket_of(dest)
            )),
            _ => plan.problems.push(format!(
                "replication missing: policy {} wants replication to {} (createReplication is off: reported, not created)",
                policy.name,
                bucket_of(dest)
            )),
        },
    }
    Ok(plan)
}

/// Why an S3 error code means the bucket is not the suite's to touch (a named refusal, nothing
/// done): `AccessDenied` on a call made with `ExpectedBucketOwner` (another account owns it, or a
/// bucket policy denies this role); `None` for any other error (a failure).
pub fn refusal(code: Option<&str>, bucket: &str, account: &str) -> Option<String> {
    match code {
        Some("AccessDenied") | Some("AllAccessDisabled") => Some(format!(
            "bucket {bucket} refused the call with ExpectedBucketOwner={account} (AccessDenied): another account owns \
             it, or its bucket policy denies this role; nothing done"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::test_support::policy;
    use aws_sdk_s3::types::{LifecycleExpiration, Transition, TransitionStorageClass};

    fn owners_rule() -> LifecycleRule {
        LifecycleRule::builder()
            .id("logs-to-glacier")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("logs/").build())
            .transitions(Transition::builder().days(30).storage_class(TransitionStorageClass::Glacier).build())
            .expiration(LifecycleExpiration::builder().days(365).build())
            .build()
            .unwrap()
    }

    #[test]
    fn our_lifecycle_rule_is_merged_and_the_owners_rules_are_kept_as_they_are() {
        let owner = owners_rule();
        let merged = merge_lifecycle(std::slice::from_ref(&owner), 7).unwrap().expect("our rule is missing");
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0], owner, "the owner's rule, untouched, first");
        assert!(is_our_rule_with(&merged[1], 7));
        assert_eq!(merge_lifecycle(&merged, 7).unwrap(), None, "already there: nothing to write");
        // Another period: our rule replaced in place, the owner's kept.
        let again = merge_lifecycle(&merged, 30).unwrap().unwrap();
        assert_eq!(again[0], owner);
        assert!(is_our_rule_with(&again[1], 30) && again.len() == 2);
        // A rule with our id that someone widened (an expiration of current objects): ours again.
        let widened = LifecycleRule::builder()
            .id(LIFECYCLE_RULE_ID)
            .status(ExpirationStatus::Enabled)
            .expiration(LifecycleExpiration::builder().days(1).build())
            .noncurrent_version_expiration(NoncurrentVersionExpiration::builder().noncurrent_days(7).build())
            .build()
            .unwrap();
        let fixed = merge_lifecycle(&[widened, owner.clone()], 7).unwrap().unwrap();
        assert!(is_our_rule_with(&fixed[0], 7) && fixed[1] == owner, "{fixed:?}");
        // No configuration at all: ours alone.
        assert_eq!(merge_lifecycle(&[], 7).unwrap().unwrap().len(), 1);
    }

    fn bucket() -> Bucket {
        Bucket { name: "b".into(), policy: "silver".into(), opted_in: true, ..Bucket::default() }
    }

    #[test]
    fn versioning_is_enabled_never_suspended_and_noncurrent_days_follow_the_policy() {
        let p = policy();
        let plan = plan_bucket(&bucket(), &p, &HashSet::new()).unwrap();
        assert!(plan.work.enable_versioning && plan.problems.is_empty());
        assert!(plan.work.describe(7).contains("expire noncurrent versions after 7 days"));
        let mut suspended = bucket();
        suspended.versioning = Versioning::Suspended;
        assert!(plan_bucket(&suspended, &p, &HashSet::new()).unwrap().work.enable_versioning);
        let mut ok = bucket();
        ok.versioning = Versioning::Enabled;
        ok.lifecycle = vec![our_rule(7).unwrap()];
        let plan = plan_bucket(&ok, &p, &HashSet::new()).unwrap();
        assert!(plan.work.is_empty() && plan.problems.is_empty(), "{plan:?}");
    }

    #[test]
    fn replication_is_reported_when_missing_and_created_only_when_the_policy_says_so() {
        let mut p = policy();
        let dest = "arn:aws:s3:::dr-bucket".to_string();
        let mut b = bucket();
        b.versioning = Versioning::Enabled;
        b.lifecycle = vec![our_rule(7).unwrap()];
        assert!(plan_bucket(&b, &p, &HashSet::new()).unwrap().problems.is_empty(), "no destination: not judged");
        p.replication_destination = Some(dest.clone());
        let plan = plan_bucket(&b, &p, &HashSet::new()).unwrap();
        assert!(plan.work.is_empty());
        assert!(plan.problems[0].starts_with("replication missing: policy silver wants replication to dr-bucket"));
        p.replication_role = Some("arn:aws:iam::111111111111:role/r".into());
        p.create_replication = true;
        let plan = plan_bucket(&b, &p, &HashSet::new()).unwrap();
        assert_eq!(plan.work.create_replication, Some((dest.clone(), "arn:aws:iam::111111111111:role/r".into())));
        assert!(plan.problems.is_empty());
        // Its destination does not exist: not created, a named failure.
        let missing: HashSet<String> = [dest.clone()].into();
        let plan = plan_bucket(&b, &p, &missing).unwrap();
        assert!(plan.work.create_replication.is_none());
        assert_eq!(
            plan.problems,
            vec!["replication missing, and its destination bucket dr-bucket does not exist: not created"]
        );

        // Existing replication is the owner's: judged, never changed.
        let rule = |id: &str, enabled, d: &str| ReplicaRule { id: id.into(), enabled, destination: d.into() };
        b.replication = Some(vec![rule("r1", true, &dest)]);
        let plan = plan_bucket(&b, &p, &HashSet::new()).unwrap();
        assert!(plan.work.is_empty() && plan.problems.is_empty(), "{plan:?}");
        let plan = plan_bucket(&b, &p, &missing).unwrap();
        assert_eq!(plan.problems, vec!["replication rule r1 replicates to bucket dr-bucket that does not exist"]);
        b.replication = Some(vec![rule("r1", false, &dest)]);
        let plan = plan_bucket(&b, &p, &HashSet::new()).unwrap();
        assert!(plan.work.create_replication.is_none());
        assert_eq!(plan.problems, vec!["replication is configured but disabled (no rule is Enabled)"]);
        b.replication = Some(vec![rule("r1", true, "arn:aws:s3:::elsewhere")]);
        let plan = plan_bucket(&b, &p, &HashSet::new()).unwrap();
        assert!(plan.problems[0].starts_with("no enabled replication rule to the policy's destination dr-bucket"));
    }

    #[test]
    fn access_denied_names_a_bucket_the_suite_may_not_touch() {
        let why = refusal(Some("AccessDenied"), "theirs", "111111111111").expect("a refusal");
        assert!(why.contains("bucket theirs") && why.contains("ExpectedBucketOwner=111111111111"), "{why}");
        assert!(why.contains("nothing done"));
        assert_eq!(refusal(Some("InternalError"), "b", "1"), None);
        assert_eq!(refusal(None, "b", "1"), None);
    }
}
