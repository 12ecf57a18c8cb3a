//! The policy window: runs within one window (the policy's max age) share one ledger claim per
//! resource, through the sweep's event id.

use chrono::{DateTime, Utc};

use super::policy::Policy;

/// The policy window `now` falls in: runs in the same window share ledger claims.
pub fn time_bucket(now: DateTime<Utc>, policy: &Policy) -> i64 {
    let secs = (policy.max_age_hours.max(1) * 3600) as i64;
    now.timestamp().div_euclid(secs)
}

/// The ledger event id for a policy's sweep window.
pub fn sweep_event_id(policy: &Policy, now: DateTime<Utc>) -> String {
    format!("sweep:{}:{}", policy.name, time_bucket(now, policy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::test_support::{policy, t};
    use chrono::Duration;

    #[test]
    fn buckets_follow_the_policy_window() {
        let p = policy();
        assert_eq!(sweep_event_id(&p, t(0)), sweep_event_id(&p, t(0) + Duration::minutes(1)));
        assert_ne!(time_bucket(t(0), &p), time_bucket(t(24), &p));
    }
}
