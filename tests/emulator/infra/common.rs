//! What several infra checks share: loading the templates (`infra/template.yaml`, `infra/member.yaml`)
//! and the declared action lists (`infra/iam-actions.json`), navigating a parsed template (its
//! functions, their roles, a role's statements), rendering values canonically, and resolving `!If`.
//!
//! The templates are parsed with `serde_norway`, which keeps CloudFormation short-form tags (`!Ref`,
//! `!GetAtt`, `!Sub`, `!If`) as tagged values.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_norway::{Mapping, Value};

pub(super) fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

pub(super) fn template() -> Value {
    let text = std::fs::read_to_string(repo_path("infra/template.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

/// `infra/iam-actions.json`: function name -> the IAM actions its code may call.
pub(crate) fn declared_actions() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(repo_path("infra/iam-actions.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The function crates under `functions/` (one binary of the same name each).
pub(super) fn function_crates() -> BTreeSet<String> {
    std::fs::read_dir(repo_path("functions"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// A tagged value's tag without the `!` (`Ref`, `GetAtt`, `Sub`, `If`...).
pub(crate) fn tag_of(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) => Some(t.tag.to_string().trim_start_matches('!').to_string()),
        _ => None,
    }
}

pub(crate) fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping().and_then(|m| m.get(key))
}

pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| get(v, k)).and_then(Value::as_str)
}

/// A string or a list of strings; tagged values (intrinsics) become `"!Tag ..."` so they never
/// compare equal to a literal.
pub(crate) fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items.iter().flat_map(strings).collect(),
        Value::Tagged(t) => vec![format!("{} {:?}", t.tag, t.value)],
        other => vec![format!("{other:?}")],
    }
}

/// The statements of a policy document, resolving `!If [cond, a, b]` to both branches (minus NoValue).
pub(crate) fn statements(doc: &Value) -> Vec<Value> {
    fn expand(v: &Value, out: &mut Vec<Value>) {
        if tag_of(v).as_deref() == Some("If") {
            if let Value::Tagged(t) = v {
                if let Some(branches) = t.value.as_sequence() {
                    for b in branches.iter().skip(1) {
                        expand(b, out);
                    }
                }
            }
            return;
        }
        if tag_of(v).as_deref() == Some("Ref") {
            return; // AWS::NoValue
        }
        if v.is_mapping() {
            out.push(v.clone());
        }
    }
    let mut out = Vec::new();
    if let Some(Value::Sequence(items)) = get(doc, "Statement") {
        for s in items {
            expand(s, &mut out);
        }
    }
    out
}

/// Whether an IAM action pattern (`ec2:Describe*`, `*`) covers `action`. Case-insensitive, like IAM.
pub(crate) fn covers(pattern: &str, action: &str) -> bool {
    let (p, a) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
    match p.split_once('*') {
        None => p == a,
        Some((prefix, rest)) => a.starts_with(prefix) && (rest.is_empty() || a.ends_with(rest)),
    }
}

/// The parsed template's serverless functions: binary name -> (logical id, function resource).
pub(crate) fn functions_by_binary(t: &Value) -> BTreeMap<String, (String, Value)> {
    let mut out = BTreeMap::new();
    for (id, res) in get(t, "Resources").and_then(Value::as_mapping).unwrap() {
        if str_at(res, &["Type"]) != Some("AWS::Serverless::Function") {
            continue;
        }
        let bin = str_at(res, &["Metadata", "BuildProperties", "Binary"])
            .unwrap_or_else(|| panic!("{id:?} has no Metadata.BuildProperties.Binary"));
        let prev = out.insert(bin.to_string(), (id.as_str().unwrap().to_string(), res.clone()));
        assert!(prev.is_none(), "two functions build binary {bin}");
    }
    out
}

pub(crate) fn resources(t: &Value) -> &Mapping {
    get(t, "Resources").and_then(Value::as_mapping).unwrap()
}

/// The logical id of the role a function runs as (`Role: !GetAtt XRole.Arn`).
pub(crate) fn role_id(function: &Value) -> String {
    let role = get(function, "Properties").and_then(|p| get(p, "Role")).expect("function without Role");
    assert_eq!(tag_of(role).as_deref(), Some("GetAtt"), "Role must be !GetAtt <Role>.Arn, got {role:?}");
    let Value::Tagged(t) = role else { unreachable!() };
    let target = t.value.as_str().expect("!GetAtt in dotted form").to_string();
    target.strip_suffix(".Arn").expect("!GetAtt <Role>.Arn").to_string()
}

/// The functions that act in member accounts, each through its own `selfheal-<function>` role there.
pub(super) const ACTING: [&str; 5] =
    ["instance-healer", "db-failover", "dns-failover", "backup-enforcer", "zone-evacuator"];

pub(crate) fn template_text(rel: &str) -> String {
    std::fs::read_to_string(repo_path(rel)).unwrap()
}

pub(crate) fn parse(text: &str) -> Value {
    serde_norway::from_str(text).unwrap()
}

pub(super) fn member_template() -> Value {
    parse(&template_text("infra/member.yaml"))
}

/// `text` with the first `from` replaced by `to`; panics when `from` is absent, so a mutation test
/// can never silently test the unmutated template.
pub(crate) fn mutated(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "mutation target not found: {from:?}");
    text.replacen(from, to, 1)
}

/// A canonical rendering of a template value: mappings by sorted key, tags as `!Tag(...)`, a `!Sub`
/// without `${` the same as the plain string. Two values render equally iff CloudFormation would
/// resolve them equally in the same stack.
pub(crate) fn canon(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(items) => format!("[{}]", items.iter().map(canon).collect::<Vec<_>>().join(", ")),
        Value::Mapping(m) => {
            let mut entries: Vec<String> = m.iter().map(|(k, v)| format!("{}: {}", canon(k), canon(v))).collect();
            entries.sort();
            format!("{{{}}}", entries.join(", "))
        }
        Value::Tagged(t) => {
            let tag = tag_of(v).unwrap_or_default();
            match &t.value {
                Value::String(s) if tag == "Sub" && !s.contains("${") => canon(&t.value),
                inner => format!("!{tag}({})", canon(inner)),
            }
        }
        other => format!("{other:?}"),
    }
}

/// `canon` of a YAML snippet (`!Ref X`, `!Sub "..."`), for comparing against expectations.
pub(super) fn canon_of(yaml: &str) -> String {
    canon(&parse(yaml))
}

/// The raw statements of every inline policy of a role (statement-level `!If` kept as is).
pub(super) fn role_statements(role: &Value) -> Vec<Value> {
    let policies = get(role, "Properties").and_then(|p| get(p, "Policies")).and_then(Value::as_sequence);
    policies
        .into_iter()
        .flatten()
        .filter_map(|p| get(p, "PolicyDocument").and_then(|d| get(d, "Statement")).and_then(Value::as_sequence))
        .flatten()
        .cloned()
        .collect()
}

/// The actions a raw statement names, through a statement-level `!If`'s branches.
pub(super) fn statement_actions(st: &Value) -> Vec<String> {
    statements(&Value::Mapping(Mapping::from_iter([("Statement".into(), Value::Sequence(vec![st.clone()]))])))
        .iter()
        .flat_map(|s| get(s, "Action").map(strings).unwrap_or_default())
        .collect()
}

/// The hub's role resource for an acting function.
pub(super) fn hub_role<'a>(hub: &'a Value, function: &str) -> &'a Value {
    let fns = functions_by_binary(hub);
    let (_, f) = fns.get(function).unwrap_or_else(|| panic!("{function} is not in the hub template"));
    resources(hub).get(role_id(f).as_str()).expect("hub role resource")
}

/// The member stack's role named `name` (`RoleName`), with its logical id.
pub(super) fn member_role<'a>(member: &'a Value, name: &str) -> Option<(String, &'a Value)> {
    resources(member)
        .iter()
        .find(|(_, r)| {
            str_at(r, &["Type"]) == Some("AWS::IAM::Role") && str_at(r, &["Properties", "RoleName"]) == Some(name)
        })
        .map(|(id, r)| (id.as_str().unwrap_or_default().to_string(), r))
}

/// Parameters (`!Ref X`, `${X}`) and conditions (`!If [C, ...]`) a value refers to, pseudo
/// parameters and `${Res.Attr}` aside.
pub(super) fn references(v: &Value, params: &mut BTreeSet<String>, conditions: &mut BTreeSet<String>) {
    match v {
        Value::Sequence(items) => items.iter().for_each(|i| references(i, params, conditions)),
        Value::Mapping(m) => m.values().for_each(|i| references(i, params, conditions)),
        Value::Tagged(t) => {
            match (tag_of(v).as_deref(), &t.value) {
                (Some("Ref"), Value::String(s)) if !s.starts_with("AWS::") => {
                    params.insert(s.clone());
                }
                (Some("Sub"), Value::String(s)) => {
                    for piece in s.split("${").skip(1) {
                        let name = piece.split('}').next().unwrap_or_default();
                        if !name.starts_with("AWS::") && !name.contains('.') && !name.starts_with('!') {
                            params.insert(name.to_string());
                        }
                    }
                }
                (Some("If"), Value::Sequence(parts)) => {
                    if let Some(c) = parts.first().and_then(Value::as_str) {
                        conditions.insert(c.to_string());
                    }
                }
                _ => {}
            }
            references(&t.value, params, conditions);
        }
        _ => {}
    }
}

/// Every `!If` condition name used in `v`.
pub(super) fn if_conditions(v: &Value, out: &mut BTreeSet<String>) {
    let (mut ignored, mut conditions) = (BTreeSet::new(), BTreeSet::new());
    references(v, &mut ignored, &mut conditions);
    out.extend(conditions);
}

/// `v` with every `!If` resolved under `holds` (condition name -> value) and `AWS::NoValue` dropped.
pub(crate) fn resolve_ifs(v: &Value, holds: &BTreeMap<String, bool>) -> Option<Value> {
    match v {
        Value::Tagged(t) if tag_of(v).as_deref() == Some("If") => {
            let parts = t.value.as_sequence()?;
            let c = parts.first()?.as_str()?;
            let branch = if holds.get(c).copied().unwrap_or(false) { parts.get(1) } else { parts.get(2) };
            resolve_ifs(branch?, holds)
        }
        Value::Tagged(t) if tag_of(v).as_deref() == Some("Ref") && t.value.as_str() == Some("AWS::NoValue") => None,
        Value::Mapping(m) => {
            Some(Value::Mapping(m.iter().filter_map(|(k, v)| resolve_ifs(v, holds).map(|v| (k.clone(), v))).collect()))
        }
        Value::Sequence(items) => Some(Value::Sequence(items.iter().filter_map(|i| resolve_ifs(i, holds)).collect())),
        other => Some(other.clone()),
    }
}
