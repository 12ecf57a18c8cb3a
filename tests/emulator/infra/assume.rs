//! The hub's side of acting in member accounts, evaluated (`infra/template.yaml`). Which member
//! accounts the hub may act in is decided by three parameters (`OrganizationId`, `MemberAccounts`,
//! `MemberOrgUnits`) that reach IAM through conditions and intrinsics. Rather than compare the
//! statements with the text expected of them, the checks below evaluate them as CloudFormation and IAM
//! would, for every combination of the three, against sample accounts placed in an organization, and
//! compare the outcome with what the code serves. Whatever they cannot evaluate (an unknown intrinsic,
//! operator or condition key) is reported, never passed over.

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::Value;

use super::common::{
    canon, canon_of, covers, declared_actions, functions_by_binary, get, hub_role, if_conditions, member_role,
    member_template, resolve_ifs, role_statements, statement_actions, str_at, strings, template, ACTING,
};
use super::eval::{condition_holds, evaluate, glob_matches, iam_condition_holds, Params};
use super::template::is_granted;

/// The organization of the scenarios below.
pub(super) const ORG: &str = "o-aaaaaaaaaa";

/// An account the hub might be asked to act in, as IAM sees it when it owns the resource.
pub(super) struct SampleAccount {
    id: &'static str,
    org: Option<&'static str>,
    /// `aws:ResourceOrgPaths`: `<org>/<root>/<ou>/.../`.
    path: Option<&'static str>,
    what: &'static str,
}

pub(super) const SAMPLE_ACCOUNTS: [SampleAccount; 9] = [
    SampleAccount {
        id: "111111111111",
        org: Some(ORG),
        path: Some("o-aaaaaaaaaa/r-ab12/ou-ab12-33333333/"),
        what: "a listed account in an unlisted OU",
    },
    SampleAccount {
        id: "222222222222",
        org: Some(ORG),
        path: Some("o-aaaaaaaaaa/r-ab12/"),
        what: "a listed account directly under the root",
    },
    SampleAccount {
        id: "333333333333",
        org: Some(ORG),
        path: Some("o-aaaaaaaaaa/r-ab12/ou-ab12-11111111/"),
        what: "an account directly in a listed OU",
    },
    SampleAccount {
        id: "444444444444",
        org: Some(ORG),
        path: Some("o-aaaaaaaaaa/r-ab12/ou-ab12-11111111/ou-ab12-44444444/"),
        what: "an account in a child OU of a listed OU",
    },
    SampleAccount {
        id: "555555555555",
        org: Some(ORG),
        path: Some("o-aaaaaaaaaa/r-ab12/ou-ab12-33333333/ou-ab12-22222222/"),
        what: "an account in a listed OU nested in an unlisted one",
    },
    SampleAccount {
        id: "666666666666",
        org: Some(ORG),
        path: Some("o-aaaaaaaaaa/r-ab12/ou-ab12-111111119/"),
        what: "an account in an unlisted OU whose id extends a listed one",
    },
    SampleAccount {
        id: "777777777777",
        org: Some(ORG),
        path: Some("o-aaaaaaaaaa/r-ab12/ou-ab12-33333333/"),
        what: "an unlisted account in an unlisted OU",
    },
    SampleAccount {
        id: "888888888888",
        org: Some("o-bbbbbbbbbb"),
        path: Some("o-bbbbbbbbbb/r-ab12/ou-ab12-11111111/"),
        what: "a listed account of another organization, in an OU of a listed id",
    },
    SampleAccount { id: "999999999999", org: None, path: None, what: "an account in no organization" },
];

/// The request context of a call on a resource of `a`.
pub(super) fn resource_context(a: &SampleAccount) -> BTreeMap<&'static str, Vec<String>> {
    let mut context = BTreeMap::from([("aws:ResourceAccount", vec![a.id.to_string()])]);
    if let (Some(org), Some(path)) = (a.org, a.path) {
        context.insert("aws:ResourceOrgID", vec![org.to_string()]);
        context.insert("aws:ResourceOrgPaths", vec![path.to_string()]);
    }
    context
}

/// What AWS Organizations lets the hub list when MemberOrgUnits names OUs: these two, nothing else.
pub(super) const ORG_LISTING: [&str; 2] =
    ["organizations:ListAccountsForParent", "organizations:ListOrganizationalUnitsForParent"];

/// Problems with the hub's side of acting in member accounts, for every combination of
/// `OrganizationId`, `MemberAccounts` and `MemberOrgUnits` (empty or set): each acting function's
/// `SELFHEAL_ACCOUNTS` must carry the listed accounts and units; its role may assume its own member
/// role in exactly the sample accounts of the organization the code serves (listed, or under a
/// listed OU or root at any depth), no other role anywhere, and nothing at all without an
/// organization; and it may list the organization's OUs and accounts (those two actions only)
/// exactly when it acts under OUs.
pub(super) fn assume_problems(hub: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let fns = functions_by_binary(hub);
    let pieces =
        |s: &str| s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect::<Vec<_>>();
    for org in ["", ORG] {
        for accounts in ["", "111111111111,222222222222,888888888888"] {
            for units in ["", "ou-ab12-11111111,ou-ab12-22222222", "r-ab12"] {
                let params: Params = [
                    ("AWS::Partition", "aws"),
                    ("OrganizationId", org),
                    ("MemberAccounts", accounts),
                    ("MemberOrgUnits", units),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                let when = format!("OrganizationId={org:?} MemberAccounts={accounts:?} MemberOrgUnits={units:?}");
                let (listed, under) = (pieces(accounts), pieces(units));
                for function in ACTING {
                    let var = get(&fns[function].1, "Properties")
                        .and_then(|p| get(p, "Environment"))
                        .and_then(|e| get(e, "Variables"))
                        .and_then(|v| get(v, "SELFHEAL_ACCOUNTS"));
                    let want = [listed.clone(), under.clone()].concat();
                    match var.map(|v| evaluate(v, &params)) {
                        Some(Ok(Value::String(s))) if pieces(&s) == want => {}
                        got => problems.push(format!(
                            "{function} ({when}): SELFHEAL_ACCOUNTS must carry {want:?} (the code reads it), got {got:?}"
                        )),
                    }
                    let statements: Vec<Value> = role_statements(hub_role(hub, function))
                        .into_iter()
                        .filter(|s| {
                            statement_actions(s).iter().any(|a| {
                                let a = a.to_ascii_lowercase();
                                a.starts_with("sts:") || a.starts_with("organizations:") || a == "*"
                            })
                        })
                        .collect();
                    let mut used = BTreeSet::new();
                    statements.iter().for_each(|s| if_conditions(s, &mut used));
                    let resolved = used
                        .iter()
                        .map(|c| condition_holds(hub, c, &params).map(|h| (c.clone(), h)))
                        .collect::<Result<BTreeMap<_, _>, _>>()
                        .and_then(|holds| {
                            statements
                                .iter()
                                .filter_map(|s| resolve_ifs(s, &holds))
                                .map(|s| evaluate(&s, &params))
                                .collect()
                        });
                    let resolved: Vec<Value> = match resolved {
                        Ok(r) => r,
                        Err(e) => {
                            problems.push(format!("{function} ({when}): {e}"));
                            continue;
                        }
                    };
                    let allows = |action: &str, resource: &str, context: &BTreeMap<&str, Vec<String>>| {
                        let mut allowed = false;
                        for st in &resolved {
                            if str_at(st, &["Effect"]) != Some("Allow")
                                || get(st, "NotAction").is_some()
                                || get(st, "NotResource").is_some()
                            {
                                return Err(format!("only plain Allow statements are understood: {}", canon(st)));
                            }
                            let actions = get(st, "Action").map(strings).unwrap_or_default();
                            let resources = get(st, "Resource").map(strings).unwrap_or_default();
                            if actions.iter().any(|p| covers(p, action))
                                && resources.iter().any(|r| glob_matches(r, resource))
                                && iam_condition_holds(get(st, "Condition"), context)?
                            {
                                allowed = true;
                            }
                        }
                        Ok(allowed)
                    };
                    let assumes = resolved.iter().any(|st| {
                        get(st, "Action").map(strings).unwrap_or_default().iter().any(|a| covers(a, "sts:AssumeRole"))
                    });
                    if assumes && (org.is_empty() || (listed.is_empty() && under.is_empty())) {
                        problems.push(format!(
                            "{function} ({when}): an sts:AssumeRole statement exists although no member account is served"
                        ));
                    }
                    for a in &SAMPLE_ACCOUNTS {
                        let served = !org.is_empty()
                            && a.org == Some(org)
                            && (listed.iter().any(|l| l == a.id)
                                || a.path.is_some_and(|p| p.split('/').any(|seg| under.iter().any(|u| u == seg))));
                        let context = resource_context(a);
                        let own = format!("arn:aws:iam::{}:role/selfheal-{function}", a.id);
                        match allows("sts:AssumeRole", &own, &context) {
                            Ok(got) if got != served => problems.push(format!(
                                "{function} ({when}): may assume {own} ({}): {got}; the code serves it: {served}",
                                a.what
                            )),
                            Err(e) => problems.push(format!("{function} ({when}): {e}")),
                            Ok(_) => {}
                        }
                        let others = ACTING
                            .iter()
                            .filter(|f| **f != function)
                            .map(|f| format!("selfheal-{f}"))
                            .chain(["OrganizationAccountAccessRole".to_string(), format!("selfheal-{function}-x")]);
                        for other in others {
                            let arn = format!("arn:aws:iam::{}:role/{other}", a.id);
                            if allows("sts:AssumeRole", &arn, &context) != Ok(false) {
                                problems
                                    .push(format!("{function} ({when}): may assume {arn}, not its own member role"));
                            }
                        }
                    }
                    let want_listing = !org.is_empty() && !under.is_empty();
                    let ou = format!("arn:aws:organizations::000000000000:ou/{ORG}/ou-ab12-11111111");
                    for action in ORG_LISTING {
                        match allows(action, &ou, &BTreeMap::new()) {
                            Ok(got) if got != want_listing => problems.push(format!(
                                "{function} ({when}): {action} granted: {got}; it must be exactly when it acts under OUs \
                                 (OrganizationId and MemberOrgUnits set): {want_listing}"
                            )),
                            Err(e) => problems.push(format!("{function} ({when}): {e}")),
                            Ok(_) => {}
                        }
                    }
                    for st in &resolved {
                        for a in get(st, "Action").map(strings).unwrap_or_default() {
                            let org_action = a.to_ascii_lowercase().starts_with("organizations:");
                            if a == "*" || (org_action && !ORG_LISTING.contains(&a.as_str())) {
                                problems.push(format!(
                                    "{function} ({when}): grants {a}; of AWS Organizations only {ORG_LISTING:?}"
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

#[test]
fn the_hub_assumes_exactly_its_own_member_role() {
    let (hub, member) = (template(), member_template());
    let fns = functions_by_binary(&hub);
    let declared = declared_actions();
    for (name, actions) in &declared {
        let mut sorted = actions.clone();
        sorted.sort();
        assert_eq!(actions, &sorted, "infra/iam-actions.json: {name}'s list is not sorted");
    }
    for function in ACTING {
        let role_name = format!("selfheal-{function}");
        let role = hub_role(&hub, function);
        // The member trust names <HubStackName>-<function>: the hub role must be named so.
        assert_eq!(
            get(role, "Properties").and_then(|p| get(p, "RoleName")).map(canon),
            Some(canon_of(&format!("!Sub ${{AWS::StackName}}-{function}"))),
            "{function}"
        );
        assert!(member_role(&member, &role_name).is_some(), "the member stack lacks {role_name}");
        for action in ["sts:AssumeRole"].into_iter().chain(ORG_LISTING) {
            assert!(declared[function].contains(&action.to_string()), "iam-actions.json: {function} lacks {action}");
        }
        // What the code reads (shared/src/fleet.rs); SELFHEAL_ACCOUNTS is evaluated in assume_problems.
        let vars = get(&fns[function].1, "Properties")
            .and_then(|p| get(p, "Environment"))
            .and_then(|e| get(e, "Variables"))
            .unwrap();
        let var = |k: &str| get(vars, k).map(canon);
        assert_eq!(var("SELFHEAL_HOME_ACCOUNT"), Some(canon_of("!Ref AWS::AccountId")), "{function}");
        assert_eq!(var("SELFHEAL_MEMBER_ROLE_NAME"), Some(canon(&Value::String(role_name.clone()))), "{function}");
        assert_eq!(var("SELFHEAL_EXTERNAL_ID"), Some(canon_of("!Ref MemberExternalId")), "{function}");
    }
    // Which accounts, under every combination of the three parameters.
    let problems = assume_problems(&hub);
    assert!(problems.is_empty(), "{problems:#?}");
    for function in ["notifier", "drill"] {
        for action in ["sts:AssumeRole"].into_iter().chain(ORG_LISTING) {
            assert!(!is_granted(function, action), "{function} acts in no member account: {action}");
        }
    }
    // The OU patterns are built by concatenation (`*/<unit>/*`): only ids, never a wildcard or a
    // path separator, may get into them.
    let param = |name: &str, key: &str| get(&hub, "Parameters").and_then(|p| get(p, name)).and_then(|p| get(p, key));
    let unit = "(ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}|r-[0-9a-z]{4,32})";
    assert_eq!(
        param("MemberOrgUnits", "AllowedPattern").and_then(Value::as_str),
        Some(format!("^({unit}(,{unit})*)?$").as_str())
    );
    assert_eq!(param("MemberOrgUnits", "Default").and_then(Value::as_str), Some(""));
    assert_eq!(param("MemberExternalId", "NoEcho").and_then(Value::as_bool), Some(true));
    assert_eq!(
        get(&member, "Parameters")
            .and_then(|p| get(p, "ExternalId"))
            .and_then(|p| get(p, "NoEcho"))
            .and_then(Value::as_bool),
        Some(true)
    );
}
