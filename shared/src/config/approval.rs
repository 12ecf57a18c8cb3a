//! Which large moves wait for a human: the kinds of move that always do, the per-group threshold
//! beyond which any action does, and how long a parked decision waits ([`crate::approval`] parks and
//! settles them).

use std::time::Duration;

use super::Env;

/// Moving an application's DNS traffic to its standby region.
pub const REGION_FAILOVER: &str = "region-failover";
/// Promoting a read replica that lives in another region than its failed primary.
pub const CROSS_REGION_PROMOTION: &str = "cross-region-promotion";
/// The kinds of move `SELFHEAL_APPROVAL_ALWAYS` may name.
pub const MOVE_KINDS: [&str; 2] = [REGION_FAILOVER, CROSS_REGION_PROMOTION];

/// Which actions wait for a human.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalPolicy {
    /// Kinds of move that always need approval.
    pub always: Vec<String>,
    /// Actions per group per rate window beyond which a human approves; 0 turns the threshold off.
    pub after: u32,
    /// How long a parked decision waits.
    pub ttl: Duration,
}

impl ApprovalPolicy {
    /// Reads `SELFHEAL_APPROVAL_ALWAYS` (comma-separated kinds, or `none`), `SELFHEAL_APPROVAL_AFTER`
    /// and `SELFHEAL_APPROVAL_TTL_SECONDS`.
    pub fn read(env: &mut Env) -> Self {
        let text = env.string("SELFHEAL_APPROVAL_ALWAYS", &MOVE_KINDS.join(","));
        let mut always = Vec::new();
        for kind in text.split(',').map(str::trim).filter(|k| !k.is_empty() && *k != "none") {
            if MOVE_KINDS.contains(&kind) {
                always.push(kind.to_string());
            } else {
                env.problem(
                    "SELFHEAL_APPROVAL_ALWAYS",
                    format!("unknown kind of move {kind:?}; known: {}, or none", MOVE_KINDS.join(", ")),
                );
            }
        }
        ApprovalPolicy {
            always,
            after: env.number("SELFHEAL_APPROVAL_AFTER", 0u32, 0, 10_000),
            ttl: env.seconds("SELFHEAL_APPROVAL_TTL_SECONDS", 3600, 1, 7 * 86_400),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn policy(vars: &[(&str, &str)]) -> (ApprovalPolicy, std::result::Result<(), Error>) {
        let mut env = Env::from_map(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let p = ApprovalPolicy::read(&mut env);
        (p, env.finish())
    }

    #[test]
    fn the_default_policy_approves_region_failovers_and_cross_region_promotions() {
        let (p, ok) = policy(&[]);
        assert!(ok.is_ok());
        assert_eq!(p.always, vec![REGION_FAILOVER.to_string(), CROSS_REGION_PROMOTION.to_string()]);
        assert_eq!(p.after, 0);
        assert_eq!(p.ttl, Duration::from_secs(3600));
        let (p, _) = policy(&[("SELFHEAL_APPROVAL_ALWAYS", "none"), ("SELFHEAL_APPROVAL_AFTER", "5")]);
        assert!(p.always.is_empty());
        assert_eq!(p.after, 5);
    }

    #[test]
    fn an_unknown_kind_of_move_is_named() {
        let (_, res) = policy(&[("SELFHEAL_APPROVAL_ALWAYS", "region-failover,az-evacuation")]);
        let err = res.expect_err("an unknown kind must be refused").to_string();
        assert!(err.contains("SELFHEAL_APPROVAL_ALWAYS") && err.contains("az-evacuation"), "{err}");
    }
}
