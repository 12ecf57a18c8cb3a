//! Each function's role may make each call its code makes: `iam:SimulatePrincipalPolicy` for the role
//! `<stack>-<function>` and every action `infra/iam-actions.json` declares for the function.
//!
//! Each action is simulated on a resource of the kind the role's own policy grants it on (the role's
//! inline statements, read with `ListRolePolicies` / `GetRolePolicy`, their wildcards filled), with
//! the context keys the code supplies: the opt-in tag as `aws:ResourceTag/…` and `aws:RequestTag/…`
//! with the value the functions read (`SELFHEAL_OPT_IN_VALUE`), `aws:TagKeys`, the drill tag for the
//! drill and the `created-by` tag for the snapshots backup-enforcer deletes. Keys the code does not
//! decide (an ARN pattern the template scopes a call to) take the statement's own values. An action no
//! statement grants, and one whose simulation is denied (a condition on another tag value, a
//! permissions boundary, an explicit deny), are named. Member-account calls (`sts:AssumeRole`,
//! `organizations:*`) are left to [`super::members`], which tries them for real.

use std::collections::BTreeMap;

use aws_sdk_iam::types::{ContextEntry, ContextKeyTypeEnum, PolicyEvaluationDecisionType};
use serde_json::Value;

use super::{Check, Deployment};
use crate::clients::Aws;
use crate::error::Error;

/// The actions each function's code calls: the list the template tests check the roles against.
pub const DECLARED: &str = include_str!("../../../infra/iam-actions.json");

pub fn client(aws: &Aws) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&aws.sdk)
}

/// function → its actions, from [`DECLARED`].
pub fn declared() -> BTreeMap<String, Vec<String>> {
    serde_json::from_str(DECLARED).unwrap_or_default()
}

/// Calls tried for real in member accounts, not simulated here.
fn simulated(action: &str) -> bool {
    action != "sts:AssumeRole" && !action.starts_with("organizations:")
}

/// What to simulate an action on: a resource and the context keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulation {
    pub resource: String,
    pub context: BTreeMap<String, Vec<String>>,
}

/// Whether an IAM action pattern (`ec2:Describe*`, `*`) covers `action`.
fn covers(pattern: &str, action: &str) -> bool {
    let (p, a) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
    match p.split_once('*') {
        None => p == a,
        Some((head, tail)) => a.starts_with(head) && a.len() >= head.len() + tail.len() && a.ends_with(tail),
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => vec![],
    }
}

/// The first Allow statement of `policies` granting `action`: its first resource (wildcards filled
/// with `preflight`, `*` kept) and its condition values.
pub fn simulation_for(policies: &[Value], action: &str) -> Option<Simulation> {
    let statements = policies.iter().flat_map(|p| match &p["Statement"] {
        Value::Array(a) => a.clone(),
        s @ Value::Object(_) => vec![s.clone()],
        _ => vec![],
    });
    for s in statements {
        if s["Effect"].as_str() != Some("Allow") || !strings(&s["Action"]).iter().any(|p| covers(p, action)) {
            continue;
        }
        let resource = strings(&s["Resource"]).into_iter().next().unwrap_or_else(|| "*".into());
        let resource = if resource == "*" { resource } else { resource.replace('*', "preflight") };
        let mut context = BTreeMap::new();
        if let Some(conditions) = s["Condition"].as_object() {
            for keys in conditions.values().filter_map(Value::as_object) {
                for (key, values) in keys {
                    let values = strings(values).into_iter().map(|v| v.replace('*', "preflight")).collect();
                    context.insert(key.clone(), values);
                }
            }
        }
        return Some(Simulation { resource, context });
    }
    None
}

/// The context keys the code supplies for `function`, over the statement's own.
pub fn code_context(d: &Deployment, function: &str, sim: &mut Simulation) {
    let tag = &d.opt_in_tag;
    for key in [format!("aws:ResourceTag/{tag}"), format!("aws:RequestTag/{tag}")] {
        if sim.context.contains_key(&key) {
            sim.context.insert(key, vec![d.opt_in_value.clone()]);
        }
    }
    if sim.context.contains_key("aws:TagKeys") {
        sim.context.insert("aws:TagKeys".into(), vec![tag.clone()]);
    }
    let own = match function {
        "drill" => Some(("aws:ResourceTag/selfheal:drill", "true")),
        "backup-enforcer" => Some(("aws:ResourceTag/selfheal:created-by", "backup-enforcer")),
        _ => None,
    };
    if let Some((key, value)) = own.filter(|(k, _)| sim.context.contains_key(*k)) {
        sim.context.insert(key.into(), vec![value.into()]);
    }
}

/// The role's inline policy documents.
pub async fn inline_policies(iam: &aws_sdk_iam::Client, role: &str) -> crate::Result<Vec<Value>> {
    let names = iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|e| Error::aws("iam", "ListRolePolicies", e))?
        .policy_names()
        .to_vec();
    let mut out = Vec::new();
    for name in names {
        let doc = iam
            .get_role_policy()
            .role_name(role)
            .policy_name(&name)
            .send()
            .await
            .map_err(|e| Error::aws("iam", "GetRolePolicy", e))?
            .policy_document()
            .to_string();
        // IAM answers the document URL-encoded (RFC 3986).
        let text = percent_decode(&doc);
        out.push(serde_json::from_str(&text).unwrap_or(Value::Null));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).and_then(|c| hex(*c)), b.get(i + 2).and_then(|c| hex(*c))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Simulates one action; `Ok(None)` when allowed, `Ok(Some(decision))` when not.
pub async fn simulate(
    iam: &aws_sdk_iam::Client,
    role_arn: &str,
    action: &str,
    sim: &Simulation,
) -> crate::Result<Option<String>> {
    let mut call = iam.simulate_principal_policy().policy_source_arn(role_arn).action_names(action);
    call = call.resource_arns(&sim.resource);
    for (key, values) in &sim.context {
        let list = values.len() > 1 || key == "aws:TagKeys";
        call = call.context_entries(
            ContextEntry::builder()
                .context_key_name(key)
                .context_key_type(if list { ContextKeyTypeEnum::StringList } else { ContextKeyTypeEnum::String })
                .set_context_key_values(Some(values.clone()))
                .build(),
        );
    }
    let out = call.send().await.map_err(|e| Error::aws("iam", "SimulatePrincipalPolicy", e))?;
    let denied = out
        .evaluation_results()
        .iter()
        .find(|r| r.eval_decision() != &PolicyEvaluationDecisionType::Allowed)
        .map(|r| r.eval_decision().as_str().to_string());
    if out.evaluation_results().is_empty() {
        return Ok(Some("no evaluation result".into()));
    }
    Ok(denied)
}

/// One row per function: its actions allowed, or each one that is not, and why.
pub async fn check(iam: &aws_sdk_iam::Client, d: &Deployment) -> Vec<Check> {
    let mut out = Vec::new();
    for (function, actions) in declared() {
        let role_name = format!("{}-{function}", d.stack);
        let role_arn = d.role_arn(&function);
        let policies = match inline_policies(iam, &role_name).await {
            Ok(p) => p,
            Err(e) => {
                out.push(Check::fails(
                    "iam",
                    role_name,
                    e.to_string(),
                    "deploy the stack, or allow the caller iam:ListRolePolicies and iam:GetRolePolicy",
                ));
                continue;
            }
        };
        let mut denied = Vec::new();
        let mut tried = 0;
        for action in actions.iter().filter(|a| simulated(a)) {
            tried += 1;
            let Some(mut sim) = simulation_for(&policies, action) else {
                denied.push(format!("{action}: no statement of the role grants it"));
                continue;
            };
            code_context(d, &function, &mut sim);
            match simulate(iam, &role_arn, action, &sim).await {
                Ok(None) => {}
                Ok(Some(decision)) => denied.push(format!("{action} on {}: {decision}", sim.resource)),
                Err(e) => denied.push(format!("{action}: {e}")),
            }
        }
        out.push(if denied.is_empty() {
            Check::holds("iam", role_name, format!("{tried} actions allowed with the tags the code writes"))
        } else {
            Check::fails(
                "iam",
                role_name,
                denied.join("; "),
                "grant them as infra/template.yaml does (redeploy it; check permission boundaries and the OptInTagValue parameter)",
            )
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_iam::operation::get_role_policy::GetRolePolicyOutput;
    use aws_sdk_iam::operation::list_role_policies::ListRolePoliciesOutput;
    use aws_sdk_iam::operation::simulate_principal_policy::SimulatePrincipalPolicyOutput;
    use aws_sdk_iam::types::EvaluationResult;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use serde_json::json;

    fn policy() -> Value {
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["ec2:DescribeInstances", "ec2:Describe*"], "Resource": "*"},
            {"Effect": "Allow", "Action": "ec2:TerminateInstances",
             "Resource": ["arn:aws:ec2:us-east-1:123456789012:instance/*"],
             "Condition": {"StringEquals": {"aws:ResourceTag/selfheal:enabled": "yes"}}}
        ]})
    }

    #[test]
    fn the_granting_statement_gives_the_resource_and_the_code_gives_the_tag() {
        let d = Deployment::named("s", "123456789012", "us-east-1");
        let mut sim = simulation_for(&[policy()], "ec2:TerminateInstances").unwrap();
        assert_eq!(sim.resource, "arn:aws:ec2:us-east-1:123456789012:instance/preflight");
        assert_eq!(sim.context["aws:ResourceTag/selfheal:enabled"], vec!["yes"]);
        code_context(&d, "instance-healer", &mut sim);
        // The template's tag value and the functions' disagree: the simulation sees the code's.
        assert_eq!(sim.context["aws:ResourceTag/selfheal:enabled"], vec!["true"]);
        assert_eq!(simulation_for(&[policy()], "ec2:DescribeTags").unwrap().resource, "*");
        assert!(simulation_for(&[policy()], "ec2:RebootInstances").is_none());
        assert!(covers("ec2:Describe*", "ec2:DescribeInstances") && !covers("ec2:Describe*", "ec2:RunInstances"));
        assert_eq!(percent_decode("%7B%22a%22%3A1%7D"), r#"{"a":1}"#);
    }

    fn result(action: &str, decision: PolicyEvaluationDecisionType) -> EvaluationResult {
        EvaluationResult::builder().eval_action_name(action).eval_decision(decision).build().unwrap()
    }

    // SimulatePrincipalPolicy is not implemented by moto: IAM's answers are mocked, shaped from the API
    // reference (EvaluationResults with EvalDecision allowed / implicitDeny / explicitDeny).
    #[tokio::test]
    async fn a_denied_action_and_an_ungranted_one_are_named_per_role() {
        let list = mock!(aws_sdk_iam::Client::list_role_policies)
            .then_output(|| ListRolePoliciesOutput::builder().policy_names("p").is_truncated(false).build().unwrap());
        let get = mock!(aws_sdk_iam::Client::get_role_policy).then_output(|| {
            let doc = serde_json::to_string(&json!({"Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*",
                 "Condition": {"StringEquals": {"aws:ResourceTag/selfheal:enabled": "true"}}}
            ]}))
            .unwrap();
            GetRolePolicyOutput::builder().role_name("r").policy_name("p").policy_document(doc).build().unwrap()
        });
        let deny = mock!(aws_sdk_iam::Client::simulate_principal_policy)
            .match_requests(|r| {
                r.policy_source_arn() == Some("arn:aws:iam::123456789012:role/s-instance-healer")
                    && r.action_names().iter().map(String::as_str).eq(["ec2:TerminateInstances"])
                    && r.context_entries().iter().any(|c| {
                        c.context_key_name() == Some("aws:ResourceTag/selfheal:enabled")
                            && c.context_key_values().iter().map(String::as_str).eq(["true"])
                    })
            })
            .then_output(|| {
                SimulatePrincipalPolicyOutput::builder()
                    .evaluation_results(result("ec2:TerminateInstances", PolicyEvaluationDecisionType::ExplicitDeny))
                    .build()
            });
        let allow = mock!(aws_sdk_iam::Client::simulate_principal_policy).then_output(|| {
            SimulatePrincipalPolicyOutput::builder()
                .evaluation_results(result("x", PolicyEvaluationDecisionType::Allowed))
                .build()
        });
        let client = mock_client!(aws_sdk_iam, RuleMode::MatchAny, [&list, &get, &deny, &allow]);
        let d = Deployment::named("s", "123456789012", "us-east-1");
        let checks = check(&client, &d).await;
        assert_eq!(checks.len(), declared().len(), "one row per function: {checks:#?}");
        let healer = checks.iter().find(|c| c.subject == "s-instance-healer").unwrap();
        assert!(!healer.holds, "{healer:?}");
        assert!(healer.detail.contains("ec2:TerminateInstances on *: explicitDeny"), "{healer:?}");
        assert!(checks.iter().filter(|c| c.subject != "s-instance-healer").all(|c| c.holds), "{checks:#?}");
        assert!(deny.num_calls() == 1 && allow.num_calls() > 10);
    }
}
