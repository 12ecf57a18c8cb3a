//! A role's policy: the statements of a role's inline policies or trust policy, read from the
//! templates (the hub role of a function, a member stack's role by name), and IAM's decision for one
//! request over them: an explicit Deny wins, else a matching Allow, else an implicit deny. Whatever a
//! statement uses that the evaluator does not understand is an error.

use serde_json::Value as Json;
use serde_norway::Value;

use super::conditions::{action_matches, condition_fails, glob, validate_condition, Context};
use super::template::{get, hub_template, member_template, Stack};

/// One policy statement, resolved.
#[derive(Debug, Clone)]
pub(super) struct Statement {
    pub(super) sid: String,
    pub(super) allow: bool,
    pub(super) actions: Vec<String>,
    pub(super) resources: Vec<String>,
    pub(super) condition: Option<Json>,
    /// Trust policies: the AWS principals (account roots or ARNs) and services.
    pub(super) principals: Vec<String>,
}

pub(super) fn strings(v: &Json) -> Vec<String> {
    match v {
        Json::String(s) => vec![s.clone()],
        Json::Array(items) => items.iter().flat_map(strings).collect(),
        Json::Bool(b) => vec![b.to_string()],
        Json::Number(n) => vec![n.to_string()],
        other => vec![other.to_string()],
    }
}

pub(super) fn statements_of(doc: &Json, what: &str) -> Result<Vec<Statement>, String> {
    let items = match doc.get("Statement") {
        Some(Json::Array(items)) => items.clone(),
        Some(one @ Json::Object(_)) => vec![one.clone()],
        _ => return Err(format!("{what}: no Statement")),
    };
    let mut out = Vec::new();
    for (i, st) in items.iter().enumerate() {
        let m = st.as_object().ok_or_else(|| format!("{what}: statement {i} is not a mapping"))?;
        for k in m.keys() {
            if !["Sid", "Effect", "Action", "Resource", "Condition", "Principal"].contains(&k.as_str()) {
                return Err(format!("{what}: statement {i}: {k} is not understood by this evaluator"));
            }
        }
        let allow = match m.get("Effect").and_then(Json::as_str) {
            Some("Allow") => true,
            Some("Deny") => false,
            other => return Err(format!("{what}: statement {i}: Effect {other:?}")),
        };
        let principals = match m.get("Principal") {
            None => Vec::new(),
            Some(Json::Object(p)) => {
                let mut v = Vec::new();
                for (kind, ids) in p {
                    if !["AWS", "Service"].contains(&kind.as_str()) {
                        return Err(format!("{what}: statement {i}: principal kind {kind} is not understood"));
                    }
                    v.extend(strings(ids));
                }
                v
            }
            Some(other) => return Err(format!("{what}: statement {i}: Principal {other}")),
        };
        // Its operators and keys are checked when a request reaches it (validate_condition): a
        // statement no call gets to (a KMS key's, say) may use keys this evaluator does not know.
        let condition = m.get("Condition").cloned();
        out.push(Statement {
            sid: m.get("Sid").and_then(Json::as_str).map(str::to_string).unwrap_or_else(|| format!("#{i}")),
            allow,
            actions: m.get("Action").map(strings).unwrap_or_default(),
            resources: m.get("Resource").map(strings).unwrap_or_default(),
            condition,
            principals,
        });
    }
    Ok(out)
}

/// The inline policies' statements of `role`, resolved in `stack`.
pub(super) fn role_policy(stack: &Stack, role: &Value, what: &str) -> Result<Vec<Statement>, String> {
    let mut out = Vec::new();
    let policies = get(role, "Properties").and_then(|p| get(p, "Policies")).and_then(Value::as_sequence);
    for p in policies.into_iter().flatten() {
        let doc = get(p, "PolicyDocument").ok_or_else(|| format!("{what}: a policy without a document"))?;
        let doc = stack.resolve(doc)?.ok_or_else(|| format!("{what}: an empty policy document"))?;
        out.extend(statements_of(&doc, what)?);
    }
    for key in ["ManagedPolicyArns", "PermissionsBoundary"] {
        if get(role, "Properties").and_then(|p| get(p, key)).is_some() {
            return Err(format!("{what}: {key} is not understood by this evaluator"));
        }
    }
    Ok(out)
}

pub(super) fn trust_policy(stack: &Stack, role: &Value, what: &str) -> Result<Vec<Statement>, String> {
    let doc = get(role, "Properties")
        .and_then(|p| get(p, "AssumeRolePolicyDocument"))
        .ok_or_else(|| format!("{what}: no trust policy"))?;
    let doc = stack.resolve(doc)?.ok_or_else(|| format!("{what}: an empty trust policy"))?;
    statements_of(&doc, what)
}

/// The hub role of `function` (the template's function whose binary is `function`).
pub(super) fn hub_role(function: &str) -> Result<&'static Value, String> {
    let t = hub_template();
    let resources = get(t, "Resources").and_then(Value::as_mapping).ok_or("no Resources")?;
    let f = resources
        .values()
        .find(|r| {
            get(r, "Metadata")
                .and_then(|m| get(m, "BuildProperties"))
                .and_then(|b| get(b, "Binary"))
                .and_then(Value::as_str)
                == Some(function)
        })
        .ok_or_else(|| format!("{function} is not in infra/template.yaml"))?;
    let Some(Value::Tagged(role)) = get(f, "Properties").and_then(|p| get(p, "Role")) else {
        return Err(format!("{function}: Role is not !GetAtt <Role>.Arn"));
    };
    let id = role.value.as_str().and_then(|s| s.strip_suffix(".Arn")).ok_or("Role: !GetAtt <Role>.Arn")?;
    resources.get(id).ok_or_else(|| format!("no resource {id}"))
}

/// The member stack's role named `name`, when it is created in `stack`'s region.
pub(super) fn member_role(stack: &Stack, name: &str) -> Result<Option<&'static Value>, String> {
    let t = member_template();
    for r in get(t, "Resources").and_then(Value::as_mapping).into_iter().flat_map(|m| m.values()) {
        let props = get(r, "Properties");
        if get(r, "Type").and_then(Value::as_str) != Some("AWS::IAM::Role")
            || props.and_then(|p| get(p, "RoleName")).and_then(Value::as_str) != Some(name)
        {
            continue;
        }
        if let Some(c) = get(r, "Condition").and_then(Value::as_str) {
            if !stack.condition(c)? {
                return Ok(None);
            }
        }
        return Ok(Some(r));
    }
    Ok(None)
}

/// One authorization IAM makes for a call.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Request {
    pub(super) action: String,
    pub(super) resource: String,
    pub(super) context: Context,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Decision {
    Allowed { sid: String, conditioned: bool },
    Denied(String),
}

/// IAM's decision for `req` under `statements` (one identity policy, or one trust policy for
/// `principal`): an explicit Deny wins, else a matching Allow, else an implicit deny.
pub(super) fn decide(statements: &[Statement], req: &Request, principal: Option<&str>) -> Result<Decision, String> {
    let mut allowed = None;
    let mut near = Vec::new();
    for st in statements {
        if !st.actions.iter().any(|a| action_matches(a, &req.action)) {
            continue;
        }
        if let Some(p) = principal {
            if !st.principals.iter().any(|x| x == "*" || x == p || principal_is_account_root(x, p)) {
                near.push(format!("{}: principal {p} is not in {:?}", st.sid, st.principals));
                continue;
            }
        }
        let resource_ok = principal.is_some() || st.resources.iter().any(|r| glob(r, &req.resource));
        if !resource_ok {
            near.push(format!("{}: resource {} is not in {:?}", st.sid, req.resource, st.resources));
            continue;
        }
        if let Some(c) = &st.condition {
            validate_condition(c).map_err(|e| format!("statement {}: {e}", st.sid))?;
        }
        match condition_fails(st.condition.as_ref(), &req.context)? {
            Some(why) => near.push(format!("{}: {why}", st.sid)),
            None if !st.allow => return Ok(Decision::Denied(format!("explicitly denied by {}", st.sid))),
            None => {
                allowed.get_or_insert(Decision::Allowed { sid: st.sid.clone(), conditioned: st.condition.is_some() });
            }
        }
    }
    Ok(allowed.unwrap_or_else(|| {
        Decision::Denied(if near.is_empty() {
            "no statement grants the action".to_string()
        } else {
            format!("no statement allows it: {}", near.join("; "))
        })
    }))
}

/// `arn:aws:iam::<account>:root` names every principal of the account.
fn principal_is_account_root(pattern: &str, principal: &str) -> bool {
    let Some(account) = pattern.strip_prefix("arn:aws:iam::").and_then(|r| r.strip_suffix(":root")) else {
        return false;
    };
    principal.split(':').nth(4) == Some(account)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::iam::{DEFAULT_HUB, STACK_REGION};

    #[test]
    fn a_trust_policy_lets_in_only_its_principals_and_an_account_root_means_the_whole_account() {
        assert!(principal_is_account_root("arn:aws:iam::111111111111:root", "arn:aws:iam::111111111111:role/x"));
        assert!(!principal_is_account_root("arn:aws:iam::111111111111:root", "arn:aws:iam::222222222222:role/x"));
        assert!(!principal_is_account_root("arn:aws:iam::111111111111:role/x", "arn:aws:iam::111111111111:role/x"));
        let trust = statements_of(
            &json!({"Statement": {"Sid": "Hub", "Effect": "Allow", "Action": "sts:AssumeRole",
                "Principal": {"AWS": "arn:aws:iam::111111111111:root"}}}),
            "trust",
        )
        .unwrap();
        let req = Request {
            action: "sts:AssumeRole".into(),
            resource: "arn:aws:iam::3:role/r".into(),
            context: Context::new(),
        };
        let from = |p: &str| decide(&trust, &req, Some(p));
        assert!(matches!(
            from("arn:aws:iam::111111111111:role/selfheal-x"),
            Ok(Decision::Allowed { conditioned: false, .. })
        ));
        let other = from("arn:aws:iam::222222222222:role/selfheal-x");
        assert!(matches!(&other, Ok(Decision::Denied(w)) if w.contains("is not in")), "{other:?}");
        // No principal: an identity policy, whose statements must name the resource.
        assert!(matches!(decide(&trust, &req, None), Ok(Decision::Denied(_))));
    }

    #[test]
    fn statements_are_read_strictly() {
        let one = |st: Json| statements_of(&json!({"Statement": [st]}), "t");
        let st = one(json!({"Effect": "Allow", "Action": ["a:B", "a:C"], "Resource": "*"})).unwrap();
        assert_eq!((st[0].sid.as_str(), st[0].actions.len(), st[0].allow), ("#0", 2, true));
        assert!(!one(json!({"Effect": "Deny", "Action": "a:B", "Resource": "*"})).unwrap()[0].allow);
        assert!(one(json!({"Effect": "Maybe", "Action": "a:B"})).unwrap_err().contains("Effect"));
        assert!(one(json!({"Effect": "Allow", "NotResource": "*"})).unwrap_err().contains("NotResource"));
        let federated = one(json!({"Effect": "Allow", "Principal": {"Federated": "x"}, "Action": "a:B"}));
        assert!(federated.unwrap_err().contains("Federated"));
        assert!(statements_of(&json!({"Version": "2012-10-17"}), "t").is_err(), "no Statement");
    }

    #[test]
    fn the_roles_are_found_in_the_templates() {
        assert!(hub_role("not-a-function").unwrap_err().contains("not in infra/template.yaml"));
        let hub = Stack::new(hub_template(), DEFAULT_HUB, &[]);
        let healer = role_policy(&hub, hub_role("instance-healer").unwrap(), "hub healer").unwrap();
        assert!(healer.iter().any(|s| s.sid == "OptedInInstances" && s.condition.is_some()), "{healer:?}");
        // Member roles exist in the stack's role region only (IAM is global).
        let member = |region: &str| {
            Stack::new(
                member_template(),
                "111111111111",
                &[("HubAccountId", DEFAULT_HUB.into()), ("RoleRegion", region.into())],
            )
        };
        let here = member(STACK_REGION);
        let role = member_role(&here, "selfheal-instance-healer").unwrap().expect("created in the role region");
        let trust = trust_policy(&here, role, "trust").unwrap();
        assert!(trust.iter().all(|s| s.allow && !s.principals.is_empty()), "{trust:?}");
        assert!(member_role(&member("eu-west-1"), "selfheal-instance-healer").unwrap().is_none());
        assert!(member_role(&here, "selfheal-not-a-function").unwrap().is_none());
    }

    /// backup-enforcer's table selections (issue #29, `tableDrCopies`): hub and member roles may call
    /// the selection APIs on their own account's plans, and pass AWS Backup's default role or a
    /// `selfheal-backup*` role, to AWS Backup only.
    #[test]
    fn backup_enforcer_passes_only_backup_roles_and_only_to_aws_backup() {
        let hub = Stack::new(hub_template(), DEFAULT_HUB, &[]);
        let member = Stack::new(
            member_template(),
            "111111111111",
            &[("HubAccountId", DEFAULT_HUB.into()), ("RoleRegion", STACK_REGION.into())],
        );
        let roles = [
            (DEFAULT_HUB, role_policy(&hub, hub_role("backup-enforcer").unwrap(), "hub").unwrap()),
            (
                "111111111111",
                role_policy(
                    &member,
                    member_role(&member, "selfheal-backup-enforcer").unwrap().expect("member role"),
                    "member",
                )
                .unwrap(),
            ),
        ];
        for (account, policy) in &roles {
            let pass = |role: &str, service: &str| {
                let mut context = Context::new();
                context.insert("iam:passedtoservice".into(), vec![service.to_string()]);
                let req = Request {
                    action: "iam:PassRole".into(),
                    resource: format!("arn:aws:iam::{account}:role/{role}"),
                    context,
                };
                matches!(decide(policy, &req, None), Ok(Decision::Allowed { .. }))
            };
            assert!(pass("service-role/AWSBackupDefaultServiceRole", "backup.amazonaws.com"), "{account}");
            assert!(pass("selfheal-backup-tables", "backup.amazonaws.com"), "{account}");
            assert!(!pass("selfheal-backup-tables", "ec2.amazonaws.com"), "{account}: to AWS Backup only");
            assert!(!pass("admin", "backup.amazonaws.com"), "{account}: no other role");
            for action in
                ["backup:ListBackupSelections", "backup:CreateBackupSelection", "backup:DeleteBackupSelection"]
            {
                let on = |acct: &str| Request {
                    action: action.into(),
                    resource: format!("arn:aws:backup:{STACK_REGION}:{acct}:backup-plan:p-1"),
                    context: Context::new(),
                };
                assert!(matches!(decide(policy, &on(account), None), Ok(Decision::Allowed { .. })), "{action}");
                assert!(!matches!(decide(policy, &on("999999999999"), None), Ok(Decision::Allowed { .. })), "{action}");
            }
        }
    }
}
