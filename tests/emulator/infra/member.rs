//! Offline checks of the member stack (`infra/member.yaml`) against the hub (`infra/template.yaml`).
//! The hub template is the one source of truth for what each acting function may do. The member stack
//! repeats those statements for the role the hub assumes in a member account; the checks below compare
//! the two templates statement by statement (so a change to one without the other fails), and check
//! the trust between them, the event forwarding, and that no grant into other accounts leaves the
//! organization. (The hub's side of the assumption is evaluated in `assume.rs`; each check is proven
//! to catch what it claims to in `mutations.rs`.)

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::Value;

use super::common::{
    canon, canon_of, functions_by_binary, get, hub_role, if_conditions, member_role, member_template, references,
    resolve_ifs, resources, role_statements, statement_actions, statements, str_at, strings, tag_of, template, ACTING,
};

/// Services only the hub uses (its topics, dead-letter queue, logs, secrets, tracing, the assumption
/// itself, and listing the accounts under `MemberOrgUnits`, which the hub does with its own
/// credentials): their statements stay in the hub role and are not repeated in member roles.
pub(super) const HUB_ONLY_SERVICES: [&str; 7] =
    ["sns", "sqs", "secretsmanager", "logs", "xray", "sts", "organizations"];

/// DynamoDB's item actions: the ledger's, hub-only. Table-level DynamoDB actions are not (the
/// backup-enforcer protects member accounts' tables too, issue #29).
pub(super) const LEDGER_ACTIONS: [&str; 10] = [
    "dynamodb:getitem",
    "dynamodb:putitem",
    "dynamodb:updateitem",
    "dynamodb:deleteitem",
    "dynamodb:query",
    "dynamodb:scan",
    "dynamodb:batchwriteitem",
    "dynamodb:batchgetitem",
    "dynamodb:transactwriteitems",
    "dynamodb:conditioncheckitem",
];

/// One policy statement rendered canonically: `Action`/`Resource` lists sorted (a single value and a
/// one-element list are the same grant); a statement-level `!If` keeps its condition and branches.
pub(super) fn canon_statement(st: &Value) -> String {
    if tag_of(st).as_deref() == Some("If") {
        let Value::Tagged(t) = st else { unreachable!() };
        let parts = t.value.as_sequence().cloned().unwrap_or_default();
        let branches: Vec<String> = parts.iter().skip(1).map(canon_statement).collect();
        return format!("!If({}, {})", parts.first().map(canon).unwrap_or_default(), branches.join(", "));
    }
    let Some(m) = st.as_mapping() else { return canon(st) };
    let mut entries = Vec::new();
    for (k, v) in m {
        let key = k.as_str().unwrap_or_default();
        let value = if ["Action", "NotAction", "Resource", "NotResource"].contains(&key) {
            let mut items: Vec<String> = match v {
                Value::Sequence(items) => items.iter().map(canon).collect(),
                single => vec![canon(single)],
            };
            items.sort();
            format!("[{}]", items.join(", "))
        } else {
            canon(v)
        };
        entries.push(format!("{key}: {value}"));
    }
    entries.sort();
    format!("{{{}}}", entries.join(", "))
}

/// Whether a statement is hub-only (every action in [`HUB_ONLY_SERVICES`]); a statement mixing
/// hub-only and other actions is an error, since it could be neither kept nor dropped whole.
pub(super) fn is_hub_only(st: &Value) -> Result<bool, String> {
    let actions = statement_actions(st);
    let hub_only = |a: &String| {
        let a = a.to_ascii_lowercase();
        HUB_ONLY_SERVICES.iter().any(|s| a.starts_with(&format!("{s}:"))) || LEDGER_ACTIONS.contains(&a.as_str())
    };
    match actions.iter().filter(|a| hub_only(a)).count() {
        0 => Ok(false),
        n if n == actions.len() => Ok(true),
        _ => Err(format!("statement mixes hub-only and member actions: {actions:?}")),
    }
}

/// Differences between each acting function's hub role and its member role: the member role must
/// carry exactly the hub role's statements other than the hub-only ones, with `${AWS::Region}`
/// widened to `*` (one global role serves every region of the member account), nothing else, and
/// refer to parameters and conditions defined as in the hub template.
pub(super) fn member_policy_drift(hub: &Value, member: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, res) in resources(member) {
        let ty = str_at(res, &["Type"]).unwrap_or_default();
        if ["AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"].contains(&ty) {
            problems.push(format!("member stack: {id:?} ({ty}) would grant beyond the mirrored statements"));
        }
    }
    for function in ACTING {
        let name = format!("selfheal-{function}");
        let Some((id, role)) = member_role(member, &name) else {
            problems.push(format!("member stack has no role named {name}"));
            continue;
        };
        for key in ["ManagedPolicyArns", "PermissionsBoundary"] {
            if get(role, "Properties").and_then(|p| get(p, key)).is_some() {
                problems.push(format!("{name} ({id}) has {key}: only the mirrored inline statements may grant"));
            }
        }
        let mut expected: BTreeMap<String, usize> = BTreeMap::new();
        let (mut params, mut conditions) = (BTreeSet::new(), BTreeSet::new());
        for st in role_statements(hub_role(hub, function)) {
            match is_hub_only(&st) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    problems.push(format!("hub role of {function}: {e}"));
                    continue;
                }
            }
            references(&st, &mut params, &mut conditions);
            *expected.entry(canon_statement(&st).replace("${AWS::Region}", "*")).or_default() += 1;
        }
        let mut actual: BTreeMap<String, usize> = BTreeMap::new();
        for st in role_statements(role) {
            let c = canon_statement(&st);
            if c.contains("${AWS::Region}") {
                problems.push(format!("{name}: a global role must not be scoped to the region it is created in: {c}"));
            }
            match is_hub_only(&st) {
                Ok(true) => problems.push(format!("{name} grants hub-only actions: {c}")),
                Err(e) => problems.push(format!("{name}: {e}")),
                Ok(false) => {}
            }
            *actual.entry(c).or_default() += 1;
        }
        for (st, n) in &expected {
            if actual.get(st).copied().unwrap_or(0) < *n {
                problems.push(format!("{name} lacks the hub role's statement {st}"));
            }
        }
        for (st, n) in &actual {
            if expected.get(st).copied().unwrap_or(0) < *n {
                problems.push(format!("{name} has a statement the hub role of {function} does not: {st}"));
            }
        }
        for p in &params {
            let (h, m) =
                (get(hub, "Parameters").and_then(|ps| get(ps, p)), get(member, "Parameters").and_then(|ps| get(ps, p)));
            let Some(m) = m else {
                problems.push(format!("{name} refers to parameter {p}, which the member stack lacks"));
                continue;
            };
            for key in ["Type", "Default", "AllowedPattern", "AllowedValues", "MinLength", "MaxLength", "NoEcho"] {
                let (hv, mv) = (h.and_then(|h| get(h, key)).map(canon), get(m, key).map(canon));
                if hv != mv {
                    problems
                        .push(format!("parameter {p}: {key} is {hv:?} in the hub stack, {mv:?} in the member stack"));
                }
            }
        }
        for c in &conditions {
            let h = get(hub, "Conditions").and_then(|cs| get(cs, c)).map(canon);
            let m = get(member, "Conditions").and_then(|cs| get(cs, c)).map(canon);
            if h != m {
                problems.push(format!("condition {c} is {h:?} in the hub stack, {m:?} in the member stack"));
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

/// Problems with a member role's trust policy: it must let exactly the hub function's role
/// (`aws:PrincipalArn` = `<HubStackName>-<function>` in `HubAccountId`) of the organization
/// (`aws:PrincipalOrgID`) assume it, presenting the `ExternalId` whenever one is configured.
pub(super) fn trust_problems(member: &Value, function: &str) -> Vec<String> {
    let name = format!("selfheal-{function}");
    let Some((_, role)) = member_role(member, &name) else { return vec![format!("no member role {name}")] };
    let mut problems = Vec::new();
    let Some(doc) = get(role, "Properties").and_then(|p| get(p, "AssumeRolePolicyDocument")) else {
        return vec![format!("{name} has no trust policy")];
    };
    let items = get(doc, "Statement").and_then(Value::as_sequence).cloned().unwrap_or_default();
    if items.len() != 1 || !items[0].is_mapping() {
        return vec![format!("{name}: the trust policy must be exactly one plain statement, found {}", items.len())];
    }
    let st = &items[0];
    if str_at(st, &["Effect"]) != Some("Allow") {
        problems.push(format!("{name}: trust statement is not Allow"));
    }
    if get(st, "Action").map(strings) != Some(vec!["sts:AssumeRole".to_string()]) {
        problems.push(format!("{name}: trust must allow sts:AssumeRole only, got {:?}", get(st, "Action")));
    }
    let principal = get(st, "Principal").map(canon).unwrap_or_default();
    let hub_root = format!("{{\"AWS\": {}}}", canon_of(r#"!Sub "arn:${AWS::Partition}:iam::${HubAccountId}:root""#));
    if principal != hub_root {
        problems.push(format!("{name}: Principal must be the hub account ({hub_root}), got {principal}"));
    }
    let hub_role_arn = canon_of(&format!(
        r#"!Sub "arn:${{AWS::Partition}}:iam::${{HubAccountId}}:role/${{HubStackName}}-{function}""#
    ));
    let org = canon_of("!Ref OrganizationId");
    let external = canon_of("!Ref ExternalId");
    let has_external_def = canon_of(r#"!Not [!Equals [!Ref ExternalId, ""]]"#);
    let has_external = get(member, "Conditions")
        .and_then(Value::as_mapping)
        .and_then(|cs| cs.iter().find(|(_, d)| canon(d) == has_external_def))
        .and_then(|(k, _)| k.as_str().map(str::to_string));
    let Some(condition) = get(st, "Condition") else {
        problems.push(format!("{name}: the trust statement has no Condition"));
        return problems;
    };
    let mut used = BTreeSet::new();
    if_conditions(condition, &mut used);
    match &has_external {
        Some(c) if used.contains(c) => {}
        _ => problems.push(format!(
            "{name}: sts:ExternalId must be required exactly when ExternalId is set (an !If on a condition \
             defined as {has_external_def}); conditions used: {used:?}"
        )),
    }
    let used: Vec<String> = used.into_iter().collect();
    for bits in 0..(1u32 << used.len()) {
        let holds: BTreeMap<String, bool> =
            used.iter().enumerate().map(|(i, c)| (c.clone(), bits & (1 << i) != 0)).collect();
        let resolved = resolve_ifs(condition, &holds).unwrap_or(Value::Null);
        let mut keys: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (op, block) in resolved.as_mapping().into_iter().flatten() {
            for (k, v) in block.as_mapping().into_iter().flatten() {
                keys.entry(k.as_str().unwrap_or_default().to_string())
                    .or_default()
                    .push((op.as_str().unwrap_or_default().to_string(), canon(v)));
            }
        }
        let when = format!("{name} (with {holds:?})");
        let arn_ok = keys.get("aws:PrincipalArn").is_some_and(|v| {
            v.iter().all(|(op, val)| ["ArnEquals", "ArnLike"].contains(&op.as_str()) && *val == hub_role_arn)
        });
        if !arn_ok {
            problems.push(format!(
                "{when}: aws:PrincipalArn must be ArnEquals {hub_role_arn}, got {:?}",
                keys.get("aws:PrincipalArn")
            ));
        }
        if keys.get("aws:PrincipalOrgID") != Some(&vec![("StringEquals".to_string(), org.clone())]) {
            problems.push(format!(
                "{when}: aws:PrincipalOrgID must be StringEquals {org}, got {:?}",
                keys.get("aws:PrincipalOrgID")
            ));
        }
        let external_given = has_external.as_ref().and_then(|c| holds.get(c)).copied();
        let got = keys.get("sts:ExternalId");
        match external_given {
            Some(true) if got != Some(&vec![("StringEquals".to_string(), external.clone())]) => problems.push(format!(
                "{when}: with an ExternalId set, sts:ExternalId must be StringEquals {external}, got {got:?}"
            )),
            Some(false) if got.is_some() => {
                problems.push(format!("{when}: without an ExternalId, no sts:ExternalId may be required, got {got:?}"))
            }
            _ => {}
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

/// Every resource ARN text a statement names (`!Sub` texts, plain strings, both branches of `!If`).
pub(super) fn resource_texts(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items.iter().flat_map(resource_texts).collect(),
        Value::Tagged(t) => match (tag_of(v).as_deref(), &t.value) {
            (Some("Sub"), Value::String(s)) => vec![s.clone()],
            (Some("If"), Value::Sequence(parts)) => parts.iter().skip(1).flat_map(resource_texts).collect(),
            _ => vec![],
        },
        _ => vec![],
    }
}

/// Problems: statements granting on resources in *any* account (`arn:...:iam::*:...`) without
/// fencing them to the organization (`aws:ResourceOrgID`). Such a grant is a wildcard over accounts
/// even though its resource is not the literal `*`.
pub(super) fn unfenced_cross_account_grants(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, res) in resources(t) {
        if str_at(res, &["Type"]) != Some("AWS::IAM::Role") {
            continue;
        }
        let policies = get(res, "Properties").and_then(|p| get(p, "Policies")).and_then(Value::as_sequence);
        for doc in policies.into_iter().flatten().filter_map(|p| get(p, "PolicyDocument")) {
            for st in statements(doc) {
                let any_account = get(&st, "Resource").map(resource_texts).unwrap_or_default().into_iter().any(|r| {
                    let r = r
                        .replace("${AWS::Partition}", "aws")
                        .replace("${AWS::Region}", "r")
                        .replace("${AWS::AccountId}", "1");
                    r.split(':').nth(4) == Some("*")
                });
                let fenced = get(&st, "Condition")
                    .and_then(Value::as_mapping)
                    .into_iter()
                    .flat_map(|m| m.values())
                    .any(|block| get(block, "aws:ResourceOrgID").is_some());
                if any_account && !fenced {
                    problems.push(format!(
                        "{}: {} in any account without aws:ResourceOrgID",
                        id.as_str().unwrap_or("?"),
                        canon_statement(&st)
                    ));
                }
            }
        }
    }
    problems
}

/// The EventBridge patterns that reach hub functions on the default bus: (function, pattern).
pub(super) fn hub_function_patterns(hub: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (bin, (_, f)) in functions_by_binary(hub) {
        let events = get(&f, "Properties").and_then(|p| get(p, "Events")).and_then(Value::as_mapping);
        for ev in events.into_iter().flat_map(|m| m.values()) {
            if str_at(ev, &["Type"]) == Some("EventBridgeRule")
                && get(ev, "Properties").and_then(|p| get(p, "EventBusName")).is_none()
            {
                let pattern = get(ev, "Properties").and_then(|p| get(p, "Pattern")).map(canon).unwrap_or_default();
                out.insert((bin.clone(), pattern));
            }
        }
    }
    out
}

/// Problems with the forwarding path: every pattern that reaches a hub function on the hub's
/// default bus must also be forwarded by the member stack to the hub bus (and nothing else), and be
/// routed from the hub bus to the same function (with its invoke permission and dead-letter queue);
/// the hub bus accepts PutEvents from the organization only.
pub(super) fn forwarding_problems(hub: &Value, member: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let local = hub_function_patterns(hub);
    if local.is_empty() {
        problems.push("the hub functions have no EventBridge rules".to_string());
    }
    let by_id: BTreeMap<String, String> =
        functions_by_binary(hub).into_iter().map(|(bin, (id, _))| (id, bin)).collect();
    let bus = canon_of("!Ref HubEventBus");
    let has_org = canon_of(r#"!Not [!Equals [!Ref OrganizationId, ""]]"#);
    if get(hub, "Conditions").and_then(|c| get(c, "HasOrganization")).map(canon) != Some(has_org.clone()) {
        problems.push(format!("hub: condition HasOrganization must be {has_org}"));
    }
    let mut routed = BTreeSet::new();
    for (id, res) in resources(hub) {
        let id = id.as_str().unwrap_or_default();
        match str_at(res, &["Type"]) {
            Some("AWS::Events::EventBus") if str_at(res, &["Condition"]) != Some("HasOrganization") => {
                problems.push(format!(
                    "hub: {id} must be created only with an OrganizationId (Condition: HasOrganization)"
                ));
            }
            Some("AWS::Events::EventBusPolicy") => {
                let st = get(res, "Properties").and_then(|p| get(p, "Statement")).cloned().unwrap_or(Value::Null);
                let org = get(&st, "Condition")
                    .and_then(|c| get(c, "StringEquals"))
                    .and_then(|c| get(c, "aws:PrincipalOrgID"))
                    .map(canon);
                if org != Some(canon_of("!Ref OrganizationId"))
                    || get(&st, "Action").map(strings) != Some(vec!["events:PutEvents".into()])
                {
                    problems.push(format!(
                        "hub: {id} must allow only events:PutEvents, only for aws:PrincipalOrgID = OrganizationId"
                    ));
                }
            }
            Some("AWS::Events::Rule") => {
                let props = get(res, "Properties").cloned().unwrap_or(Value::Null);
                if get(&props, "EventBusName").map(canon) != Some(bus.clone()) {
                    continue;
                }
                if str_at(res, &["Condition"]) != Some("HasOrganization") {
                    problems.push(format!("hub: {id} must share the bus's Condition: HasOrganization"));
                }
                let pattern = get(&props, "EventPattern").map(canon).unwrap_or_default();
                for target in get(&props, "Targets").and_then(Value::as_sequence).into_iter().flatten() {
                    let arn = get(target, "Arn").cloned().unwrap_or(Value::Null);
                    let function_id = match (&arn, tag_of(&arn).as_deref()) {
                        (Value::Tagged(t), Some("GetAtt")) => {
                            t.value.as_str().and_then(|s| s.strip_suffix(".Arn")).map(str::to_string)
                        }
                        _ => None,
                    };
                    let Some(bin) = function_id.as_ref().and_then(|f| by_id.get(f)) else {
                        problems.push(format!("hub: {id} targets {} rather than a selfheal function", canon(&arn)));
                        continue;
                    };
                    if get(target, "DeadLetterConfig").is_none() || get(target, "RetryPolicy").is_none() {
                        problems
                            .push(format!("hub: {id} target lacks the DeadLetterConfig/RetryPolicy every rule has"));
                    }
                    let function_id = function_id.unwrap();
                    let permitted = resources(hub).values().any(|p| {
                        str_at(p, &["Type"]) == Some("AWS::Lambda::Permission")
                            && str_at(p, &["Properties", "Principal"]) == Some("events.amazonaws.com")
                            && get(p, "Properties").and_then(|q| get(q, "SourceArn")).map(canon)
                                == Some(canon_of(&format!("!GetAtt {id}.Arn")))
                            && get(p, "Properties").and_then(|q| get(q, "FunctionName")).map(canon).is_some_and(|f| {
                                f == canon_of(&format!("!Ref {function_id}"))
                                    || f == canon_of(&format!("!GetAtt {function_id}.Arn"))
                            })
                    });
                    if !permitted {
                        problems.push(format!("hub: no AWS::Lambda::Permission lets {id} invoke {function_id}"));
                    }
                    routed.insert((bin.clone(), pattern.clone()));
                }
            }
            _ => {}
        }
    }
    for missing in local.difference(&routed) {
        problems.push(format!("hub bus: no rule routes {} to {} as the default bus does", missing.1, missing.0));
    }
    for extra in routed.difference(&local) {
        problems.push(format!("hub bus: a rule routes {} to {}, which the default bus does not", extra.1, extra.0));
    }
    let patterns: BTreeSet<String> = local.iter().map(|(_, p)| p.clone()).collect();
    let mut forwarded = BTreeSet::new();
    for (id, res) in resources(member) {
        if str_at(res, &["Type"]) != Some("AWS::Events::Rule") {
            continue;
        }
        let id = id.as_str().unwrap_or_default();
        let props = get(res, "Properties").cloned().unwrap_or(Value::Null);
        if get(&props, "EventBusName").is_some() {
            problems.push(format!("member: {id} must watch the account's default bus"));
        }
        let targets = get(&props, "Targets").and_then(Value::as_sequence).cloned().unwrap_or_default();
        let to_hub = !targets.is_empty()
            && targets.iter().all(|t| {
                get(t, "Arn").map(canon) == Some(canon_of("!Ref HubEventBusArn"))
                    && get(t, "RoleArn").is_some_and(|r| tag_of(r).as_deref() == Some("GetAtt"))
            });
        if !to_hub {
            problems
                .push(format!("member: {id} must target only !Ref HubEventBusArn, with a RoleArn (cross-account bus)"));
        }
        forwarded.insert(get(&props, "EventPattern").map(canon).unwrap_or_default());
    }
    for missing in patterns.difference(&forwarded) {
        problems.push(format!("member: no rule forwards {missing}, which the hub's functions handle"));
    }
    for extra in forwarded.difference(&patterns) {
        problems.push(format!("member: a rule forwards {extra}, which no hub function handles"));
    }
    problems
}

#[test]
fn member_roles_grant_what_the_hub_roles_grant_minus_the_hub_only_statements() {
    let (hub, member) = (template(), member_template());
    for function in ACTING {
        let (_, role) = member_role(&member, &format!("selfheal-{function}")).expect("member role");
        assert!(role_statements(role).len() >= 3, "{function}: the member role grants almost nothing");
        let hub_only = role_statements(hub_role(&hub, function)).iter().filter(|s| is_hub_only(s) == Ok(true)).count();
        assert!(hub_only >= 4, "{function}: expected the hub-only statements (logs, DLQ, ledger, events, sts)");
    }
    let drift = member_policy_drift(&hub, &member);
    assert!(drift.is_empty(), "infra/member.yaml has drifted from infra/template.yaml:\n{drift:#?}");
}

#[test]
fn member_roles_trust_only_the_hub_function_from_the_organization() {
    let member = member_template();
    let problems: Vec<String> = ACTING.iter().flat_map(|f| trust_problems(&member, f)).collect();
    assert!(problems.is_empty(), "{problems:#?}");
    // IAM is global: the roles exist in one region of each account only.
    assert_eq!(
        get(&member, "Conditions").and_then(|c| get(c, "CreateRoles")).map(canon),
        Some(canon_of(r#"!Equals [!Ref "AWS::Region", !Ref RoleRegion]"#))
    );
    for (id, res) in resources(&member) {
        if str_at(res, &["Type"]) == Some("AWS::IAM::Role") && str_at(res, &["Properties", "RoleName"]).is_some() {
            // CreateRoles itself, or a condition that requires it (the optional preflight role).
            let condition = str_at(res, &["Condition"]).unwrap_or_default();
            let requires = get(&member, "Conditions").and_then(|c| get(c, condition)).map(canon).unwrap_or_default();
            assert!(
                condition == "CreateRoles" || (requires.contains("And") && requires.contains("CreateRoles")),
                "{id:?}: a named role in every region would collide ({condition}: {requires})"
            );
        }
    }
}

#[test]
fn member_accounts_forward_the_events_the_hub_routes_to_the_same_functions() {
    let problems = forwarding_problems(&template(), &member_template());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn grants_into_other_accounts_stay_inside_the_organization() {
    for (name, t) in [("infra/template.yaml", template()), ("infra/member.yaml", member_template())] {
        let problems = unfenced_cross_account_grants(&t);
        assert!(problems.is_empty(), "{name}: {problems:#?}");
    }
}
