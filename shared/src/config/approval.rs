//! Which large moves wait for a human: the kinds of move that always do, the per-group threshold
//! beyond which any action does, and how long a parked decision waits; who may approve or reject
//! (`SELFHEAL_APPROVERS`, matched by [`Approvers::admits`]), how many distinct approvers each kind of
//! move needs (`SELFHEAL_APPROVALS_REQUIRED`), and whether a bare token may still settle one
//! (`SELFHEAL_APPROVAL_BREAK_GLASS`) ([`crate::approval`] parks and settles them).

use std::time::Duration;

use super::Env;

/// Moving an application's DNS traffic to its standby region.
pub const REGION_FAILOVER: &str = "region-failover";
/// Promoting a read replica that lives in another region than its failed primary.
pub const CROSS_REGION_PROMOTION: &str = "cross-region-promotion";
/// The kinds of move `SELFHEAL_APPROVAL_ALWAYS` may name.
pub const MOVE_KINDS: [&str; 2] = [REGION_FAILOVER, CROSS_REGION_PROMOTION];
/// What `SELFHEAL_APPROVALS_REQUIRED` calls every other move (one beyond the blast-radius threshold).
pub const ANY_MOVE: &str = "*";
/// The default of `SELFHEAL_APPROVALS_REQUIRED`: two people for a region failover, one otherwise.
pub const DEFAULT_REQUIRED: &str = "region-failover=2,*=1";

/// Which actions wait for a human.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalPolicy {
    /// Kinds of move that always need approval.
    pub always: Vec<String>,
    /// Actions per group per rate window beyond which a human approves; 0 turns the threshold off.
    pub after: u32,
    /// How long a parked decision waits.
    pub ttl: Duration,
    /// Who may approve or reject, as AWS verified them (empty: nobody; decisions only expire, or are
    /// settled by break-glass).
    pub approvers: Approvers,
    /// Distinct approvers each kind of move needs (`*`: any other move).
    pub required: Vec<(String, u32)>,
    /// A bare token, sent by a direct invocation (no AWS-verified caller), may approve or reject.
    pub break_glass: bool,
    /// The approval Function URL of this function, when the deployment knows it; otherwise the
    /// approval command looks it up (`aws lambda get-function-url-config`).
    pub url: Option<String>,
}

/// The principals `SELFHEAL_APPROVERS` lists: ARN patterns where `*` matches any run of characters.
/// A role's ARN (`arn:aws:iam::111122223333:role/path/Name`) also admits the sessions of that role
/// (`arn:aws:sts::111122223333:assumed-role/Name/alice`, what AWS reports for a caller that assumed
/// it), IAM Identity Center permission-set roles (`.../role/aws-reserved/sso.amazonaws.com/
/// AWSReservedSSO_Approver_*`) included: a session ARN carries no path, so a role pattern is matched
/// on its partition, account and name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Approvers(pub Vec<String>);

impl Approvers {
    /// Whether `arn` (as AWS reported the caller) is listed.
    pub fn admits(&self, arn: &str) -> bool {
        self.0.iter().any(|p| admits(p, arn))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether pattern `p` admits the caller `arn`.
fn admits(p: &str, arn: &str) -> bool {
    if glob(p, arn) {
        return true;
    }
    // A role pattern admits the role's sessions.
    let (Some(role), Some(session)) = (role_pattern(p), assumed_role(arn)) else { return false };
    glob(role.0, session.0) && glob(role.1, session.1) && glob(role.2, session.2)
}

/// (partition, account, role name) of a role ARN pattern `arn:P:iam::A:role/[path/]NAME`.
fn role_pattern(p: &str) -> Option<(&str, &str, &str)> {
    let rest = p.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let path = resource.strip_prefix("role/")?;
    Some((partition, account, path.rsplit('/').next()?))
}

/// (partition, account, role name) of a session ARN `arn:P:sts::A:assumed-role/NAME/SESSION`.
fn assumed_role(arn: &str) -> Option<(&str, &str, &str)> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("sts::")?;
    let (account, resource) = rest.split_once(':')?;
    let (name, _session) = resource.strip_prefix("assumed-role/")?.split_once('/')?;
    Some((partition, account, name))
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (none included).
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

impl ApprovalPolicy {
    /// How many distinct approvers a move of `kind` needs (`None`: a move beyond the threshold).
    pub fn required_for(&self, kind: Option<&str>) -> u32 {
        let of = |k: &str| self.required.iter().find(|(name, _)| name == k).map(|(_, n)| *n);
        kind.and_then(of).or_else(|| of(ANY_MOVE)).unwrap_or(1)
    }
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
            approvers: read_approvers(env),
            required: read_required(env),
            break_glass: env.bool("SELFHEAL_APPROVAL_BREAK_GLASS", false),
            url: env.optional("SELFHEAL_APPROVAL_URL").filter(|u| !u.trim().is_empty()),
        }
    }
}

/// `SELFHEAL_APPROVERS`: comma-separated ARN patterns; each must be an ARN (`arn:` and six parts).
fn read_approvers(env: &mut Env) -> Approvers {
    let text = env.string("SELFHEAL_APPROVERS", "");
    let mut out = Vec::new();
    for p in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if p.starts_with("arn:") && p.splitn(6, ':').count() == 6 {
            out.push(p.to_string());
        } else {
            env.problem(
                "SELFHEAL_APPROVERS",
                format!(
                    "{p:?} is not an ARN pattern (arn:aws:iam::111122223333:role/Approver, \
                     arn:aws:sts::111122223333:assumed-role/Approver/alice, `*` for any run of characters)"
                ),
            );
        }
    }
    Approvers(out)
}

/// `SELFHEAL_APPROVALS_REQUIRED`: `kind=N` pairs (a kind of move, or `*` for every other), N in 1..=10;
/// the default's entries stand where the setting names nothing else.
fn read_required(env: &mut Env) -> Vec<(String, u32)> {
    let text = env.string("SELFHEAL_APPROVALS_REQUIRED", DEFAULT_REQUIRED);
    let mut out: Vec<(String, u32)> = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((kind, n)) = pair.split_once('=').map(|(k, n)| (k.trim(), n.trim())) else {
            env.problem("SELFHEAL_APPROVALS_REQUIRED", format!("{pair:?} is not kind=N (e.g. region-failover=2,*=1)"));
            continue;
        };
        if kind != ANY_MOVE && !MOVE_KINDS.contains(&kind) {
            env.problem(
                "SELFHEAL_APPROVALS_REQUIRED",
                format!("unknown kind of move {kind:?}; known: {}, or * for any other", MOVE_KINDS.join(", ")),
            );
            continue;
        }
        match n.parse::<u32>() {
            Ok(n @ 1..=10) => out.push((kind.to_string(), n)),
            _ => env
                .problem("SELFHEAL_APPROVALS_REQUIRED", format!("{kind}={n}: the number of approvers must be 1 to 10")),
        }
    }
    for (kind, n) in [(REGION_FAILOVER, 2), (ANY_MOVE, 1)] {
        if !out.iter().any(|(k, _)| k == kind) {
            out.push((kind.to_string(), n));
        }
    }
    out
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
    fn two_people_approve_a_region_failover_and_one_anything_else_by_default() {
        let (p, ok) = policy(&[]);
        assert!(ok.is_ok());
        assert_eq!(p.required_for(Some(REGION_FAILOVER)), 2);
        assert_eq!(p.required_for(Some(CROSS_REGION_PROMOTION)), 1);
        assert_eq!(p.required_for(None), 1);
        assert!(p.approvers.is_empty() && !p.break_glass && p.url.is_none());
        let (p, ok) = policy(&[("SELFHEAL_APPROVALS_REQUIRED", "*=2,cross-region-promotion=3")]);
        assert!(ok.is_ok());
        assert_eq!((p.required_for(None), p.required_for(Some(CROSS_REGION_PROMOTION))), (2, 3));
        assert_eq!(p.required_for(Some(REGION_FAILOVER)), 2);
    }

    #[test]
    fn bad_approver_settings_are_named() {
        for (name, value, says) in [
            ("SELFHEAL_APPROVALS_REQUIRED", "region-failover=0", "1 to 10"),
            ("SELFHEAL_APPROVALS_REQUIRED", "az-evacuation=2", "az-evacuation"),
            ("SELFHEAL_APPROVALS_REQUIRED", "two", "kind=N"),
            ("SELFHEAL_APPROVERS", "alice", "not an ARN pattern"),
        ] {
            let err = policy(&[(name, value)]).1.expect_err(value).to_string();
            assert!(err.contains(name) && err.contains(says), "{err}");
        }
    }

    #[test]
    fn approvers_are_matched_by_arn_role_and_sso_permission_set() {
        let approvers = Approvers(vec![
            "arn:aws:iam::111111111111:user/alice".into(),
            "arn:aws:iam::111111111111:role/ops/Approver".into(),
            "arn:aws:iam::222222222222:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_SREApprover_*".into(),
            "arn:aws:sts::333333333333:assumed-role/Oncall/carol".into(),
        ]);
        for ok in [
            "arn:aws:iam::111111111111:user/alice",
            "arn:aws:sts::111111111111:assumed-role/Approver/bob",
            "arn:aws:sts::222222222222:assumed-role/AWSReservedSSO_SREApprover_0123abcd/dan@example.com",
            "arn:aws:sts::333333333333:assumed-role/Oncall/carol",
        ] {
            assert!(approvers.admits(ok), "{ok}");
        }
        for no in [
            "arn:aws:iam::111111111111:user/alicex",
            "arn:aws:iam::111111111111:user/mallory",
            "arn:aws:sts::999999999999:assumed-role/Approver/bob",
            "arn:aws:sts::111111111111:assumed-role/ApproverX/bob",
            "arn:aws:sts::222222222222:assumed-role/AWSReservedSSO_ReadOnly_0123abcd/dan@example.com",
            "arn:aws:sts::333333333333:assumed-role/Oncall/mallory",
            "arn:aws:iam::111111111111:root",
        ] {
            assert!(!approvers.admits(no), "{no}");
        }
        assert!(!Approvers::default().admits("arn:aws:iam::111111111111:user/alice"), "empty admits nobody");
        assert!(glob("a*c*e", "abcde") && glob("*", "") && !glob("a*c", "ab") && glob("ab*", "ab"));
    }

    #[test]
    fn an_unknown_kind_of_move_is_named() {
        let (_, res) = policy(&[("SELFHEAL_APPROVAL_ALWAYS", "region-failover,az-evacuation")]);
        let err = res.expect_err("an unknown kind must be refused").to_string();
        assert!(err.contains("SELFHEAL_APPROVAL_ALWAYS") && err.contains("az-evacuation"), "{err}");
    }
}
