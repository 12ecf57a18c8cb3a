//! Offline checks of the SAM application (`infra/template.yaml`), the member stack
//! (`infra/member.yaml`) and the declared IAM action lists (`infra/iam-actions.json`): every function
//! crate is deployed, every declared action is granted to that function's own role, nothing mutating
//! is granted on `*` without a condition, and the member roles mirror the hub roles (see the
//! hub-and-spoke section at the end).
//!
//! The template is parsed with `serde_norway`, which keeps CloudFormation short-form tags (`!Ref`,
//! `!GetAtt`, `!Sub`, `!If`) as tagged values: a tagged resource is never the literal `*`, and a
//! statement under `!If [cond, statement, AWS::NoValue]` counts as granted (the condition may hold).
//!
//! [`iam_action`] and [`granted_actions`] are for the CallLog subset test: the actions a function's
//! code is seen calling against moto must all be granted to its role.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_norway::{Mapping, Value};

fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn template() -> Value {
    let text = std::fs::read_to_string(repo_path("infra/template.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

/// `infra/iam-actions.json`: function name -> the IAM actions its code may call.
fn declared_actions() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(repo_path("infra/iam-actions.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The function crates under `functions/` (one binary of the same name each).
fn function_crates() -> BTreeSet<String> {
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

/// One Allow statement, flattened.
#[derive(Debug, Clone)]
struct Grant {
    actions: Vec<String>,
    resources: Vec<String>,
    conditional: bool,
}

fn grants_of_role(role: &Value) -> Vec<Grant> {
    let mut out = Vec::new();
    let policies = get(role, "Properties").and_then(|p| get(p, "Policies")).and_then(Value::as_sequence);
    for policy in policies.into_iter().flatten() {
        let Some(doc) = get(policy, "PolicyDocument") else { continue };
        for st in statements(doc) {
            if str_at(&st, &["Effect"]) != Some("Allow") {
                continue;
            }
            out.push(Grant {
                actions: get(&st, "Action").map(strings).unwrap_or_default(),
                resources: get(&st, "Resource").map(strings).unwrap_or_default(),
                conditional: get(&st, "Condition").is_some(),
            });
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

/// Read-only by name: the only actions allowed on `*` without a condition.
fn is_read_only(action: &str) -> bool {
    let op = action.rsplit(':').next().unwrap_or(action);
    !op.contains('*') && ["Describe", "Get", "List"].iter().any(|r| op.starts_with(r))
}

/// Problems: mutating actions granted on the literal resource `*` without a condition.
fn unconditioned_wildcard_mutations(grants: &[Grant]) -> Vec<String> {
    grants
        .iter()
        .filter(|g| !g.conditional && g.resources.iter().any(|r| r == "*"))
        .flat_map(|g| g.actions.iter().filter(|a| !is_read_only(a)).cloned())
        .collect()
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

/// Every Allow statement of `function`'s own role in the template.
fn grants_for(t: &Value, function: &str) -> Vec<Grant> {
    let fns = functions_by_binary(t);
    let (_, f) = fns.get(function).unwrap_or_else(|| panic!("{function} is not in the template"));
    let role = resources(t).get(role_id(f).as_str()).expect("role resource");
    assert_eq!(str_at(role, &["Type"]), Some("AWS::IAM::Role"));
    grants_of_role(role)
}

/// The IAM action a CallLog key names: the SDK's service names (`auto scaling`, `route 53`, `ec2`...)
/// mapped to IAM prefixes (`autoscaling`, `route53`).
pub(crate) fn iam_action(call: &str) -> String {
    let (service, op) = call.split_once(':').unwrap_or(("", call));
    let prefix: String = service.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
    format!("{prefix}:{op}")
}

/// Every action (or action pattern) `function`'s role allows, on whatever resource.
pub(crate) fn granted_actions(function: &str) -> Vec<String> {
    grants_for(&template(), function).into_iter().flat_map(|g| g.actions).collect()
}

/// Whether `function`'s role grants `call` (a CallLog key or an IAM action) on some resource.
pub(crate) fn is_granted(function: &str, call: &str) -> bool {
    let action = iam_action(call);
    // AWS documents GetCallerIdentity as needing no permission (it cannot be denied). A function
    // asks it once for the hub's own account where SELFHEAL_HOME_ACCOUNT is unset: in local runs,
    // not in a deploy, which sets it.
    action == "sts:GetCallerIdentity" || granted_actions(function).iter().any(|p| covers(p, &action))
}

#[test]
fn every_function_crate_is_deployed_from_the_workspace_root() {
    let t = template();
    let fns = functions_by_binary(&t);
    let crates = function_crates();
    assert!(crates.len() >= 6, "expected the six function crates, found {crates:?}");
    let globals = get(&t, "Globals").and_then(|g| get(g, "Function")).unwrap();
    let setting =
        |f: &Value, key: &str| get(f, "Properties").and_then(|p| get(p, key)).or_else(|| get(globals, key)).cloned();
    let mut roles = BTreeSet::new();
    for name in &crates {
        let (id, f) = fns.get(name).unwrap_or_else(|| panic!("functions/{name} is not deployed by the template"));
        assert_eq!(str_at(f, &["Metadata", "BuildMethod"]), Some("rust-cargolambda"), "{id}");
        assert_eq!(setting(f, "Runtime").as_ref().and_then(Value::as_str), Some("provided.al2023"), "{id}");
        assert_eq!(setting(f, "CodeUri").as_ref().and_then(Value::as_str), Some(".."), "{id}");
        let log = get(f, "Properties").and_then(|p| get(p, "LoggingConfig")).unwrap_or_else(|| panic!("{id}"));
        assert_eq!(str_at(log, &["LogFormat"]), Some("JSON"), "{id}");
        let group = get(log, "LogGroup").and_then(tag_of);
        assert_eq!(group.as_deref(), Some("Ref"), "{id} must log to its own AWS::Logs::LogGroup");
        assert!(roles.insert(role_id(f)), "{id} shares its role with another function");
    }
    for name in fns.keys() {
        assert!(crates.contains(name), "the template builds {name}, which has no crate in functions/");
    }
    for (id, res) in resources(&t) {
        if str_at(res, &["Type"]) == Some("AWS::Logs::LogGroup") {
            assert!(get(res, "Properties").and_then(|p| get(p, "RetentionInDays")).is_some(), "{id:?}");
        }
    }
    let on_failure = str_at(globals, &["EventInvokeConfig", "DestinationConfig", "OnFailure", "Type"]);
    assert_eq!(on_failure, Some("SQS"), "async failures must go to the dead-letter queue");
}

/// Per-resource leases in the ledger keep two invocations off one resource, so the healing functions'
/// reserved concurrency is only a ceiling: a parameter, never 1 by default (one failover or sweep
/// would hold up every other). The drill stays alone.
#[test]
fn healing_concurrency_is_a_parameter_ceiling_above_one_and_the_drill_runs_alone() {
    let t = template();
    let fns = functions_by_binary(&t);
    let reserved = |name: &str| get(&fns[name].1, "Properties").and_then(|p| get(p, "ReservedConcurrentExecutions"));
    for name in ["db-failover", "dns-failover", "backup-enforcer"] {
        assert_eq!(reserved(name).map(canon), Some(canon_of("!Ref HealingConcurrency")), "{name}");
    }
    let number = |key: &str| {
        get(&t, "Parameters")
            .and_then(|p| get(p, "HealingConcurrency"))
            .and_then(|p| get(p, key))
            .and_then(Value::as_u64)
    };
    let (default, min) = (number("Default"), number("MinValue"));
    assert!(default.is_some_and(|d| d >= 2), "HealingConcurrency's default must be a ceiling above 1: {default:?}");
    assert!(min.is_some_and(|m| m >= 2), "HealingConcurrency must not go down to 1: MinValue {min:?}");
    assert_eq!(reserved("drill").and_then(Value::as_u64), Some(1), "one drill at a time");
}

#[test]
fn a_fresh_deploy_only_observes_and_every_function_reads_the_common_settings() {
    let t = template();
    assert_eq!(str_at(&t, &["Parameters", "DryRun", "Default"]), Some("true"));
    let vars = get(&t, "Globals")
        .and_then(|g| get(g, "Function"))
        .and_then(|f| get(f, "Environment"))
        .and_then(|e| get(e, "Variables"))
        .unwrap();
    for key in [
        "SELFHEAL_OPT_IN_TAG",
        "SELFHEAL_OPT_IN_VALUE",
        "SELFHEAL_DRY_RUN",
        "SELFHEAL_LEDGER_TABLE",
        "SELFHEAL_LEDGER_TTL_DAYS",
        "SELFHEAL_TOPIC_ARN",
        "SELFHEAL_COOLDOWN_SECONDS",
        "SELFHEAL_RATE_LIMIT",
        "SELFHEAL_RATE_WINDOW_SECONDS",
    ] {
        assert!(get(vars, key).is_some(), "Globals lack {key}");
    }
    assert_eq!(str_at(vars, &["SELFHEAL_OPT_IN_TAG"]), Some("selfheal:enabled"));
    let fns = functions_by_binary(&t);
    let notifier = get(&fns["notifier"].1, "Properties").and_then(|p| get(p, "Environment")).unwrap();
    for key in [
        "SELFHEAL_NOTIFY_TOPIC_INFO",
        "SELFHEAL_NOTIFY_TOPIC_WARNING",
        "SELFHEAL_NOTIFY_TOPIC_CRITICAL",
        "SELFHEAL_CHATBOT_TOPIC_ARN",
        "SELFHEAL_WEBHOOK_SECRET_ARN",
        "SELFHEAL_WEBHOOK_FORMAT",
    ] {
        assert!(get(notifier, "Variables").and_then(|v| get(v, key)).is_some(), "notifier lacks {key}");
    }
    // The ledger: on-demand, pk/sk, TTL on expires_at, point-in-time recovery.
    let table = resources(&t).values().find(|r| str_at(r, &["Type"]) == Some("AWS::DynamoDB::Table")).unwrap();
    let p = get(table, "Properties").unwrap();
    assert_eq!(str_at(p, &["BillingMode"]), Some("PAY_PER_REQUEST"));
    assert_eq!(str_at(p, &["TimeToLiveSpecification", "AttributeName"]), Some("expires_at"));
    let pitr = get(p, "PointInTimeRecoverySpecification").and_then(|s| get(s, "PointInTimeRecoveryEnabled"));
    assert_eq!(pitr.and_then(Value::as_bool), Some(true));
    let keys: Vec<(String, String)> = get(p, "KeySchema")
        .and_then(Value::as_sequence)
        .unwrap()
        .iter()
        .map(|k| (str_at(k, &["AttributeName"]).unwrap().into(), str_at(k, &["KeyType"]).unwrap().into()))
        .collect();
    assert_eq!(keys, vec![("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())]);
}

#[test]
fn every_declared_action_is_granted_to_that_functions_own_role() {
    let t = template();
    let declared = declared_actions();
    for name in function_crates() {
        let actions = declared.get(&name).unwrap_or_else(|| panic!("infra/iam-actions.json lacks {name}"));
        assert!(!actions.is_empty(), "{name} declares no actions");
        let grants = grants_for(&t, &name);
        let missing: Vec<&String> =
            actions.iter().filter(|a| !grants.iter().any(|g| g.actions.iter().any(|p| covers(p, a)))).collect();
        assert!(missing.is_empty(), "{name}: declared in iam-actions.json but not granted: {missing:?}");
    }
    for name in declared.keys() {
        assert!(function_crates().contains(name), "iam-actions.json names {name}, which is no function crate");
    }
}

#[test]
fn nothing_mutating_is_granted_on_every_resource_without_a_condition() {
    let mut problems = Vec::new();
    for (name, t) in [("infra/template.yaml", template()), ("infra/member.yaml", member_template())] {
        for (id, res) in resources(&t) {
            if str_at(res, &["Type"]) == Some("AWS::IAM::Role") {
                for action in unconditioned_wildcard_mutations(&grants_of_role(res)) {
                    problems.push(format!("{name}: {}: {action} on * without a Condition", id.as_str().unwrap_or("?")));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_policy_checks_catch_what_they_claim_to() {
    let role: Value = serde_norway::from_str(
        r#"
Type: AWS::IAM::Role
Properties:
  Policies:
    - PolicyName: p
      PolicyDocument:
        Statement:
          - { Effect: Allow, Action: ec2:DescribeInstances, Resource: "*" }
          - { Effect: Allow, Action: [ec2:TerminateInstances], Resource: "*" }
          - Effect: Allow
            Action: ec2:StopInstances
            Resource: "*"
            Condition: { StringEquals: { "aws:ResourceTag/selfheal:enabled": "true" } }
          - { Effect: Allow, Action: "rds:*", Resource: "*" }
          - { Effect: Allow, Action: sns:Publish, Resource: !Ref Topic }
          - !If [HasX, { Effect: Allow, Action: ec2:RebootInstances, Resource: "*" }, !Ref AWS::NoValue]
"#,
    )
    .unwrap();
    let grants = grants_of_role(&role);
    assert_eq!(grants.len(), 6);
    let bad = unconditioned_wildcard_mutations(&grants);
    assert_eq!(bad, vec!["ec2:TerminateInstances", "rds:*", "ec2:RebootInstances"]);
    assert!(covers("ec2:Describe*", "ec2:DescribeInstances"));
    assert!(!covers("ec2:Describe*", "ec2:TerminateInstances"));
    assert!(covers("*", "rds:FailoverDBCluster"));
}

#[test]
fn call_log_names_map_to_granted_iam_actions() {
    assert_eq!(iam_action("auto scaling:SetInstanceHealth"), "autoscaling:SetInstanceHealth");
    assert_eq!(iam_action("route 53:ChangeResourceRecordSets"), "route53:ChangeResourceRecordSets");
    assert_eq!(iam_action("dynamodb:PutItem"), "dynamodb:PutItem");
    assert!(is_granted("instance-healer", "auto scaling:TerminateInstanceInAutoScalingGroup"));
    assert!(is_granted("dns-failover", "route 53:ChangeResourceRecordSets"));
    assert!(is_granted("db-failover", "rds:PromoteReadReplica"));
    assert!(is_granted("notifier", "sns:Publish"));
    // Least privilege across roles: the notifier cannot terminate, the healer cannot touch DNS.
    assert!(!is_granted("notifier", "ec2:TerminateInstances"));
    assert!(!is_granted("instance-healer", "route 53:ChangeResourceRecordSets"));
    assert!(!is_granted("dns-failover", "rds:PromoteReadReplica"));
}

/// Every `"SELFHEAL_..."` string literal in the library: the settings the code reads.
fn settings_read_by_the_code() -> BTreeSet<String> {
    fn walk(dir: &std::path::Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()) {
            if entry.is_dir() {
                walk(&entry, out);
            } else if entry.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&entry).unwrap();
                for (i, piece) in text.split('"').enumerate() {
                    let literal = i % 2 == 1;
                    let name_like = piece.starts_with("SELFHEAL_")
                        && !piece.ends_with('_')
                        && piece.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                    if literal && name_like {
                        out.insert(piece.to_string());
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&repo_path("shared/src"), &mut out);
    out
}

#[test]
fn every_setting_the_code_reads_is_documented_and_every_one_the_template_sets_is_read() {
    let read = settings_read_by_the_code();
    assert!(read.len() > 40 && read.contains("SELFHEAL_LEDGER_TABLE"), "the scan found too little: {read:?}");
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let section = readme.split("## Configuration").nth(1).and_then(|s| s.split("\n## ").next()).unwrap_or_default();
    let undocumented: Vec<_> = read.iter().filter(|n| !section.contains(&format!("`{n}`"))).collect();
    assert!(undocumented.is_empty(), "README § Configuration does not document {undocumented:?}");

    let t = template();
    let mut set = BTreeMap::new();
    let globals = get(&t, "Globals").and_then(|g| get(g, "Function")).cloned().unwrap();
    let mut sources = vec![("Globals".to_string(), globals)];
    for (name, (_, f)) in functions_by_binary(&t) {
        sources.push((name, get(&f, "Properties").cloned().unwrap()));
    }
    for (owner, props) in sources {
        let vars = get(&props, "Environment").and_then(|e| get(e, "Variables")).and_then(Value::as_mapping);
        for key in vars.into_iter().flat_map(|m| m.keys()).filter_map(Value::as_str) {
            if key.starts_with("SELFHEAL_") {
                set.insert(key.to_string(), owner.clone());
            }
        }
    }
    assert!(set.len() > 10, "the template scan found too little: {set:?}");
    let unread: Vec<_> = set.iter().filter(|(k, _)| !read.contains(*k)).collect();
    assert!(unread.is_empty(), "the template sets variables no code reads: {unread:?}");
}

// ---------------------------------------------------------------- hub and spoke (infra/member.yaml)
//
// The hub template is the one source of truth for what each acting function may do. The member stack
// repeats those statements for the role the hub assumes in a member account; the checks below compare
// the two templates statement by statement (so a change to one without the other fails), and check
// the trust between them, the hub's side of the assumption, and the event forwarding.

/// The functions that act in member accounts, each through its own `selfheal-<function>` role there.
const ACTING: [&str; 4] = ["instance-healer", "db-failover", "dns-failover", "backup-enforcer"];

/// Services only the hub uses (its ledger, topics, dead-letter queue, logs, secrets, tracing, the
/// assumption itself, and listing the accounts under `MemberOrgUnits`, which the hub does with its
/// own credentials): their statements stay in the hub role and are not repeated in member roles.
const HUB_ONLY_SERVICES: [&str; 8] =
    ["dynamodb", "sns", "sqs", "secretsmanager", "logs", "xray", "sts", "organizations"];

pub(crate) fn template_text(rel: &str) -> String {
    std::fs::read_to_string(repo_path(rel)).unwrap()
}

pub(crate) fn parse(text: &str) -> Value {
    serde_norway::from_str(text).unwrap()
}

fn member_template() -> Value {
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
fn canon_of(yaml: &str) -> String {
    canon(&parse(yaml))
}

/// One policy statement rendered canonically: `Action`/`Resource` lists sorted (a single value and a
/// one-element list are the same grant); a statement-level `!If` keeps its condition and branches.
fn canon_statement(st: &Value) -> String {
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

/// The raw statements of every inline policy of a role (statement-level `!If` kept as is).
fn role_statements(role: &Value) -> Vec<Value> {
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
fn statement_actions(st: &Value) -> Vec<String> {
    statements(&Value::Mapping(Mapping::from_iter([("Statement".into(), Value::Sequence(vec![st.clone()]))])))
        .iter()
        .flat_map(|s| get(s, "Action").map(strings).unwrap_or_default())
        .collect()
}

/// Whether a statement is hub-only (every action in [`HUB_ONLY_SERVICES`]); a statement mixing
/// hub-only and other actions is an error, since it could be neither kept nor dropped whole.
fn is_hub_only(st: &Value) -> Result<bool, String> {
    let actions = statement_actions(st);
    let hub_only = |a: &String| HUB_ONLY_SERVICES.iter().any(|s| a.to_ascii_lowercase().starts_with(&format!("{s}:")));
    match actions.iter().filter(|a| hub_only(a)).count() {
        0 => Ok(false),
        n if n == actions.len() => Ok(true),
        _ => Err(format!("statement mixes hub-only and member actions: {actions:?}")),
    }
}

/// The hub's role resource for an acting function.
fn hub_role<'a>(hub: &'a Value, function: &str) -> &'a Value {
    let fns = functions_by_binary(hub);
    let (_, f) = fns.get(function).unwrap_or_else(|| panic!("{function} is not in the hub template"));
    resources(hub).get(role_id(f).as_str()).expect("hub role resource")
}

/// The member stack's role named `name` (`RoleName`), with its logical id.
fn member_role<'a>(member: &'a Value, name: &str) -> Option<(String, &'a Value)> {
    resources(member)
        .iter()
        .find(|(_, r)| {
            str_at(r, &["Type"]) == Some("AWS::IAM::Role") && str_at(r, &["Properties", "RoleName"]) == Some(name)
        })
        .map(|(id, r)| (id.as_str().unwrap_or_default().to_string(), r))
}

/// Parameters (`!Ref X`, `${X}`) and conditions (`!If [C, ...]`) a value refers to, pseudo
/// parameters and `${Res.Attr}` aside.
fn references(v: &Value, params: &mut BTreeSet<String>, conditions: &mut BTreeSet<String>) {
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

/// Differences between each acting function's hub role and its member role: the member role must
/// carry exactly the hub role's statements other than the hub-only ones, with `${AWS::Region}`
/// widened to `*` (one global role serves every region of the member account), nothing else, and
/// refer to parameters and conditions defined as in the hub template.
fn member_policy_drift(hub: &Value, member: &Value) -> Vec<String> {
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

/// Every `!If` condition name used in `v`.
fn if_conditions(v: &Value, out: &mut BTreeSet<String>) {
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

/// Problems with a member role's trust policy: it must let exactly the hub function's role
/// (`aws:PrincipalArn` = `<HubStackName>-<function>` in `HubAccountId`) of the organization
/// (`aws:PrincipalOrgID`) assume it, presenting the `ExternalId` whenever one is configured.
fn trust_problems(member: &Value, function: &str) -> Vec<String> {
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
fn resource_texts(v: &Value) -> Vec<String> {
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
fn unfenced_cross_account_grants(t: &Value) -> Vec<String> {
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
fn hub_function_patterns(hub: &Value) -> BTreeSet<(String, String)> {
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
fn forwarding_problems(hub: &Value, member: &Value) -> Vec<String> {
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

// ---------------------------------------------------------------- the hub's side, evaluated
//
// Which member accounts the hub may act in is decided by three parameters (`OrganizationId`,
// `MemberAccounts`, `MemberOrgUnits`) that reach IAM through conditions and intrinsics. Rather than
// compare the statements with the text expected of them, the checks below evaluate them as
// CloudFormation and IAM would, for every combination of the three, against sample accounts placed
// in an organization, and compare the outcome with what the code serves. Whatever they cannot
// evaluate (an unknown intrinsic, operator or condition key) is reported, never passed over.

/// Parameter (and pseudo parameter) values for evaluating the template offline.
pub(crate) type Params = BTreeMap<String, String>;

/// `template` with `${Name}` replaced from `vars`, then `params` (`${!Literal}` kept literal), as
/// `!Sub` does.
fn substitute(template: &str, vars: &BTreeMap<String, String>, params: &Params) -> Result<String, String> {
    let (mut out, mut rest) = (String::new(), template);
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after.find('}').ok_or_else(|| format!("!Sub: unclosed ${{ in {template:?}"))?;
        let name = &after[..end];
        match name.strip_prefix('!') {
            Some(literal) => out.push_str(&format!("${{{literal}}}")),
            None => out.push_str(
                vars.get(name).or_else(|| params.get(name)).ok_or_else(|| format!("!Sub: no value for {name}"))?,
            ),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `v` with `!Ref`, `!Sub`, `!Join` and `!Split` evaluated as CloudFormation would for `params`
/// (delimiters must be literal, as CloudFormation requires). Any other intrinsic is an error.
pub(crate) fn evaluate(v: &Value, params: &Params) -> Result<Value, String> {
    let Value::Tagged(t) = v else {
        return Ok(match v {
            Value::Sequence(items) => {
                Value::Sequence(items.iter().map(|i| evaluate(i, params)).collect::<Result<_, _>>()?)
            }
            Value::Mapping(m) => Value::Mapping(
                m.iter().map(|(k, i)| Ok((k.clone(), evaluate(i, params)?))).collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        });
    };
    let tag = tag_of(v).unwrap_or_default();
    let parts: &[Value] = t.value.as_sequence().map(Vec::as_slice).unwrap_or(&[]);
    let text = |v: &Value| -> Result<String, String> {
        let e = evaluate(v, params)?;
        e.as_str().map(str::to_string).ok_or_else(|| format!("!{tag}: expected a string, got {}", canon(&e)))
    };
    // Not `as_str`, which sees through tags.
    let literal = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("!{tag}: CloudFormation takes a literal here, not {}", canon(other))),
    };
    match (tag.as_str(), &t.value) {
        ("Ref", Value::String(name)) => {
            params.get(name).map(|s| Value::String(s.clone())).ok_or_else(|| format!("no value for !Ref {name}"))
        }
        ("Sub", Value::String(s)) => substitute(s, &BTreeMap::new(), params).map(Value::String),
        ("Sub", _) if parts.len() == 2 => {
            let mut vars = BTreeMap::new();
            for (k, val) in parts[1].as_mapping().into_iter().flatten() {
                vars.insert(k.as_str().unwrap_or_default().to_string(), text(val)?);
            }
            substitute(&literal(&parts[0])?, &vars, params).map(Value::String)
        }
        ("Join", _) if parts.len() == 2 => {
            let items = match evaluate(&parts[1], params)? {
                Value::Sequence(items) => items,
                other => return Err(format!("!Join: expected a list, got {}", canon(&other))),
            };
            let items: Vec<String> = items
                .iter()
                .map(|i| i.as_str().map(str::to_string).ok_or_else(|| format!("!Join: not a string: {}", canon(i))))
                .collect::<Result<_, _>>()?;
            Ok(Value::String(items.join(&literal(&parts[0])?)))
        }
        ("Split", _) if parts.len() == 2 => {
            let delimiter = literal(&parts[0])?;
            Ok(Value::Sequence(
                text(&parts[1])?.split(delimiter.as_str()).map(|s| Value::String(s.to_string())).collect(),
            ))
        }
        _ => Err(format!("cannot evaluate {}", canon(v))),
    }
}

/// Whether the template's condition `name` holds for `params`.
pub(crate) fn condition_holds(t: &Value, name: &str, params: &Params) -> Result<bool, String> {
    let def = get(t, "Conditions").and_then(|c| get(c, name)).ok_or_else(|| format!("no condition {name}"))?;
    condition_value(t, def, params)
}

/// A condition function (`!Not`, `!And`, `!Or`, `!Equals`, `!Condition`) evaluated for `params`.
fn condition_value(t: &Value, v: &Value, params: &Params) -> Result<bool, String> {
    let Value::Tagged(tagged) = v else { return Err(format!("not a condition function: {}", canon(v))) };
    let args: &[Value] = tagged.value.as_sequence().map(Vec::as_slice).unwrap_or(&[]);
    let each = || args.iter().map(|a| condition_value(t, a, params)).collect::<Result<Vec<bool>, String>>();
    match tag_of(v).as_deref() {
        Some("Condition") => condition_holds(t, tagged.value.as_str().unwrap_or_default(), params),
        Some("Not") if args.len() == 1 => Ok(!condition_value(t, &args[0], params)?),
        Some("And") => Ok(each()?.into_iter().all(|b| b)),
        Some("Or") => Ok(each()?.into_iter().any(|b| b)),
        Some("Equals") if args.len() == 2 => Ok(evaluate(&args[0], params)? == evaluate(&args[1], params)?),
        _ => Err(format!("cannot evaluate the condition {}", canon(v))),
    }
}

/// IAM's wildcard matching (`StringLike`, `Resource`, `Action`): `*` any run of characters, `?` one.
pub(crate) fn glob_matches(pattern: &str, s: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    // matched[j]: the pattern so far matches s[..j].
    let mut matched = vec![false; s.len() + 1];
    matched[0] = true;
    for c in pattern.chars() {
        let mut next = vec![false; s.len() + 1];
        if c == '*' {
            let mut any = false;
            for j in 0..=s.len() {
                any |= matched[j];
                next[j] = any;
            }
        } else {
            for j in 1..=s.len() {
                next[j] = matched[j - 1] && (c == '?' || c == s[j - 1]);
            }
        }
        matched = next;
    }
    matched[s.len()]
}

/// The request context keys [`iam_condition_holds`] knows: those of the resource's account.
const RESOURCE_ACCOUNT_KEYS: [&str; 3] = ["aws:ResourceAccount", "aws:ResourceOrgID", "aws:ResourceOrgPaths"];

/// Whether an evaluated `Condition` holds in `context` (key -> values; a missing key is absent from
/// the request). Keys are ANDed, values of one key ORed; `ForAnyValue` is false and `ForAllValues`
/// true for an absent key, as in IAM. Other operators and keys are errors.
fn iam_condition_holds(condition: Option<&Value>, context: &BTreeMap<&str, Vec<String>>) -> Result<bool, String> {
    let Some(condition) = condition else { return Ok(true) };
    let blocks = condition.as_mapping().ok_or_else(|| format!("Condition is not a mapping: {}", canon(condition)))?;
    for (op, block) in blocks {
        let op = op.as_str().unwrap_or_default();
        let (set, test) = match op.split_once(':') {
            Some((set, test)) => (Some(set), test),
            None => (None, op),
        };
        if !["StringEquals", "StringLike"].contains(&test)
            || set.is_some_and(|s| s != "ForAnyValue" && s != "ForAllValues")
        {
            return Err(format!("unknown condition operator {op}"));
        }
        let block = block.as_mapping().ok_or_else(|| format!("{op}: not a mapping of keys"))?;
        for (key, wanted) in block {
            let key = key.as_str().unwrap_or_default();
            if !RESOURCE_ACCOUNT_KEYS.contains(&key) {
                return Err(format!("unknown condition key {key}"));
            }
            let wanted = strings(wanted);
            let matches =
                |v: &String| wanted.iter().any(|w| if test == "StringLike" { glob_matches(w, v) } else { w == v });
            let have = context.get(key);
            let holds = match set {
                Some("ForAllValues") => have.is_none_or(|vs| vs.iter().all(matches)),
                _ => have.is_some_and(|vs| vs.iter().any(matches)),
            };
            if !holds {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The organization of the scenarios below.
const ORG: &str = "o-aaaaaaaaaa";

/// An account the hub might be asked to act in, as IAM sees it when it owns the resource.
struct SampleAccount {
    id: &'static str,
    org: Option<&'static str>,
    /// `aws:ResourceOrgPaths`: `<org>/<root>/<ou>/.../`.
    path: Option<&'static str>,
    what: &'static str,
}

const SAMPLE_ACCOUNTS: [SampleAccount; 9] = [
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
fn resource_context(a: &SampleAccount) -> BTreeMap<&'static str, Vec<String>> {
    let mut context = BTreeMap::from([("aws:ResourceAccount", vec![a.id.to_string()])]);
    if let (Some(org), Some(path)) = (a.org, a.path) {
        context.insert("aws:ResourceOrgID", vec![org.to_string()]);
        context.insert("aws:ResourceOrgPaths", vec![path.to_string()]);
    }
    context
}

/// What AWS Organizations lets the hub list when MemberOrgUnits names OUs: these two, nothing else.
const ORG_LISTING: [&str; 2] =
    ["organizations:ListAccountsForParent", "organizations:ListOrganizationalUnitsForParent"];

/// Problems with the hub's side of acting in member accounts, for every combination of
/// `OrganizationId`, `MemberAccounts` and `MemberOrgUnits` (empty or set): each acting function's
/// `SELFHEAL_ACCOUNTS` must carry the listed accounts and units; its role may assume its own member
/// role in exactly the sample accounts of the organization the code serves (listed, or under a
/// listed OU or root at any depth), no other role anywhere, and nothing at all without an
/// organization; and it may list the organization's OUs and accounts (those two actions only)
/// exactly when it acts under OUs.
fn assume_problems(hub: &Value) -> Vec<String> {
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
            assert_eq!(
                str_at(res, &["Condition"]),
                Some("CreateRoles"),
                "{id:?}: a named role in every region would collide"
            );
        }
    }
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

#[test]
fn the_hub_and_spoke_checks_catch_what_they_claim_to() {
    let (hub_text, member_text) = (template_text("infra/template.yaml"), template_text("infra/member.yaml"));
    let (hub, member) = (parse(&hub_text), parse(&member_text));
    let drift = |hub: &Value, text: &str| member_policy_drift(hub, &parse(text));
    let mentions = |problems: &[String], what: &str| problems.iter().any(|p| p.contains(what));

    // A member role losing an action, a tag condition, or its region widening.
    let d = drift(&hub, &mutated(&member_text, "                  - ec2:RebootInstances\n", ""));
    assert!(mentions(&d, "selfheal-instance-healer lacks") && mentions(&d, "OptedInInstances"), "{d:#?}");
    let d = drift(
        &hub,
        &mutated(
            &member_text,
            r#"{ "aws:ResourceTag/selfheal:enabled": !Ref OptInTagValue }"#,
            r#"{ "aws:ResourceTag/selfheal:enabled": "true" }"#,
        ),
    );
    assert!(mentions(&d, "lacks") && mentions(&d, "does not"), "{d:#?}");
    let d = drift(
        &hub,
        &mutated(
            &member_text,
            ":ec2:*:${AWS::AccountId}:instance/*",
            ":ec2:${AWS::Region}:${AWS::AccountId}:instance/*",
        ),
    );
    assert!(mentions(&d, "must not be scoped to the region"), "{d:#?}");
    // A member role gaining a statement, or a hub-only one.
    let extra = "              - { Sid: More, Effect: Allow, Action: route53:DeleteHostedZone, Resource: \"*\" }\n";
    let d = drift(
        &hub,
        &mutated(
            &member_text,
            "              - Sid: HealthChecks\n",
            &format!("{extra}              - Sid: HealthChecks\n"),
        ),
    );
    assert!(mentions(&d, "selfheal-dns-failover has a statement") && mentions(&d, "DeleteHostedZone"), "{d:#?}");
    let ledger = "              - { Sid: Ledger, Effect: Allow, Action: dynamodb:GetItem, Resource: \"*\" }\n";
    let d = drift(
        &hub,
        &mutated(
            &member_text,
            "              - Sid: HealthChecks\n",
            &format!("{ledger}              - Sid: HealthChecks\n"),
        ),
    );
    assert!(mentions(&d, "grants hub-only actions"), "{d:#?}");
    // The hub role gaining an action the member role lacks.
    let grown = parse(&mutated(
        &hub_text,
        "                  - rds:FailoverDBCluster\n",
        "                  - rds:FailoverDBCluster\n                  - rds:DeleteDBInstance\n",
    ));
    let d = member_policy_drift(&grown, &member);
    assert!(mentions(&d, "selfheal-db-failover lacks") && mentions(&d, "rds:DeleteDBInstance"), "{d:#?}");
    // A statement mixing hub-only and member actions cannot be mirrored.
    let mixed = parse(&mutated(
        &hub_text,
        "                Action: [route53:ChangeResourceRecordSets, route53:ListResourceRecordSets]\n",
        "                Action: [route53:ChangeResourceRecordSets, route53:ListResourceRecordSets, sns:Publish]\n",
    ));
    assert!(mentions(&member_policy_drift(&mixed, &member), "mixes hub-only"));
    // A referenced parameter defined differently.
    let d = drift(&hub, &mutated(&member_text, "    Default: \"*\"\n", "    Default: Z0000000000000\n"));
    assert!(mentions(&d, "parameter HostedZoneId: Default"), "{d:#?}");

    // Trust: each of the three conditions, and the role it names.
    let t = parse(&mutated(
        &member_text,
        r#""aws:PrincipalOrgID": !Ref OrganizationId, "sts:ExternalId": !Ref ExternalId"#,
        r#""aws:PrincipalOrgID": !Ref OrganizationId"#,
    ));
    assert!(mentions(&trust_problems(&t, "instance-healer"), "sts:ExternalId must be StringEquals"));
    let t = parse(&mutated(
        &member_text,
        r#"- { "aws:PrincipalOrgID": !Ref OrganizationId }"#,
        r#"- { "aws:SourceAccount": !Ref HubAccountId }"#,
    ));
    assert!(mentions(&trust_problems(&t, "instance-healer"), "aws:PrincipalOrgID must be"));
    let t = parse(&mutated(&member_text, "role/${HubStackName}-db-failover", "role/${HubStackName}-*"));
    assert!(mentions(&trust_problems(&t, "db-failover"), "aws:PrincipalArn must be"));
    assert!(trust_problems(&t, "instance-healer").is_empty());
    let t = parse(&mutated(
        &member_text,
        r#"Principal: { AWS: !Sub "arn:${AWS::Partition}:iam::${HubAccountId}:root" }"#,
        r#"Principal: { AWS: "*" }"#,
    ));
    assert!(mentions(&trust_problems(&t, "instance-healer"), "Principal must be the hub account"));

    // Forwarding: a pattern that differs, a hub-bus rule without its permission.
    let f =
        forwarding_problems(&hub, &parse(&mutated(&member_text, "state: [stopped, terminated]", "state: [stopped]")));
    assert!(mentions(&f, "member: no rule forwards") && mentions(&f, "member: a rule forwards"), "{f:#?}");
    let f = forwarding_problems(
        &parse(&mutated(
            &hub_text,
            "      SourceArn: !GetAtt HubRdsEvents.Arn\n",
            "      SourceArn: !GetAtt HubStatusCheckAlarm.Arn\n",
        )),
        &member,
    );
    assert!(mentions(&f, "no AWS::Lambda::Permission lets HubRdsEvents invoke DbFailoverFunction"), "{f:#?}");
    let f = forwarding_problems(
        &parse(&mutated(&hub_text, "              state: [stopped, terminated]\n", "              state: [stopped]\n")),
        &member,
    );
    assert!(mentions(&f, "hub bus: no rule routes") && mentions(&f, "hub bus: a rule routes"), "{f:#?}");

    // A grant into any account without the organization fence: the account-list statement (also
    // caught by evaluation: a listed account of another organization becomes assumable), and the
    // OU statement (another organization's OU of the same id becomes assumable).
    let unfenced = mutated(&hub_text, "                      \"aws:ResourceOrgID\": !Ref OrganizationId\n", "");
    assert!(mentions(&unfenced_cross_account_grants(&parse(&unfenced)), "InstanceHealerRole"));
    let p = assume_problems(&parse(&unfenced));
    assert!(mentions(&p, "instance-healer") && mentions(&p, "888888888888"), "{p:#?}");
    let ou_fence = "                    StringEquals:\n                      \"aws:ResourceOrgID\": !Ref OrganizationId\n                    ForAnyValue:StringLike:";
    let unfenced = parse(&mutated(&hub_text, ou_fence, "                    ForAnyValue:StringLike:"));
    assert!(mentions(&unfenced_cross_account_grants(&unfenced), "InstanceHealerRole"));
    let p = assume_problems(&unfenced);
    assert!(mentions(&p, "role/selfheal-instance-healer (a listed account of another organization"), "{p:#?}");

    // The hub's side, evaluated: the unmutated template passes, so each failure below is the mutation's.
    assert!(assume_problems(&hub).is_empty());
    let assume = |from: &str, to: &str| assume_problems(&parse(&mutated(&hub_text, from, to)));
    // OU patterns not anchored at path separators admit an OU whose id extends a listed one.
    let p =
        assume(r#"!Sub ["*/${Units}/*", { Units: !Join ["/*,*/","#, r#"!Sub ["*${Units}*", { Units: !Join ["*,*","#);
    assert!(mentions(&p, "666666666666") && mentions(&p, "whose id extends a listed one"), "{p:#?}");
    // Account list and OU paths in one statement: IAM ANDs the keys, so each shuts the other's accounts out.
    let p = assume(
        ou_fence,
        "                    StringEquals:\n                      \"aws:ResourceOrgID\": !Ref OrganizationId\n                      \"aws:ResourceAccount\": !Split [\",\", !Ref MemberAccounts]\n                    ForAnyValue:StringLike:",
    );
    assert!(mentions(&p, "instance-healer") && mentions(&p, "an account in a child OU of a listed OU"), "{p:#?}");
    // The OU statement present only with MemberAccounts: accounts under the OUs cannot be reached.
    let p = assume(
        "                - ActsInMemberOrgUnits\n                - Sid: AssumeMemberRoleUnderOrgUnits",
        "                - ActsInMemberAccounts\n                - Sid: AssumeMemberRoleUnderOrgUnits",
    );
    assert!(mentions(&p, "MemberAccounts=\"\" MemberOrgUnits=\"r-ab12\"") && mentions(&p, "333333333333"), "{p:#?}");
    // Acting under OUs without an organization: the statements exist with nothing to fence them to.
    let p = assume(
        "  ActsInMemberOrgUnits: !And [!Condition HasOrganization, !Condition HasMemberOrgUnits]\n",
        "  ActsInMemberOrgUnits: !Condition HasMemberOrgUnits\n",
    );
    assert!(mentions(&p, "although no member account is served"), "{p:#?}");
    assert!(mentions(&p, "organizations:ListAccountsForParent granted: true"), "{p:#?}");
    // Listing the organization without MemberOrgUnits, or more of AWS Organizations than the two calls.
    let p = assume(
        "                - ActsInMemberOrgUnits\n                - Sid: ListOrgUnitAccounts",
        "                - HasOrganization\n                - Sid: ListOrgUnitAccounts",
    );
    assert!(mentions(&p, "ListOrganizationalUnitsForParent granted: true"), "{p:#?}");
    let p = assume(
        "Action: [organizations:ListAccountsForParent, organizations:ListOrganizationalUnitsForParent]",
        "Action: [\"organizations:List*\"]",
    );
    assert!(mentions(&p, "grants organizations:List*"), "{p:#?}");
    // Another function's member role, or the OUs left out of what the code reads.
    let p = assume("iam::*:role/selfheal-db-failover\n", "iam::*:role/selfheal-*\n");
    assert!(mentions(&p, "db-failover") && mentions(&p, "role/selfheal-instance-healer, not its own"), "{p:#?}");
    let p = assume(
        "SELFHEAL_ACCOUNTS: !Join [\",\", [!Ref MemberAccounts, !Ref MemberOrgUnits]]",
        "SELFHEAL_ACCOUNTS: !Ref MemberAccounts",
    );
    assert!(mentions(&p, "SELFHEAL_ACCOUNTS must carry [\"ou-ab12-11111111\", \"ou-ab12-22222222\"]"), "{p:#?}");
}

#[test]
fn the_offline_evaluators_behave_like_cloudformation_and_iam() {
    let params: Params = [("U", "ou-ab12-11111111,r-ab12"), ("A", ""), ("B", "x"), ("AWS::Partition", "aws")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let eval = |yaml: &str| evaluate(&parse(yaml), &params);
    assert_eq!(
        eval(r#"!Split [",", !Sub ["*/${Units}/*", { Units: !Join ["/*,*/", !Split [",", !Ref U]] }]]"#),
        Ok(parse(r#"["*/ou-ab12-11111111/*", "*/r-ab12/*"]"#))
    );
    assert_eq!(eval(r#"!Join [",", [!Ref A, !Ref B]]"#), Ok(Value::String(",x".into())));
    assert_eq!(eval(r#"!Split [",", !Ref A]"#), Ok(parse(r#"[""]"#)));
    assert_eq!(
        eval("!Sub arn:${AWS::Partition}:iam::*:role/${!Literal}"),
        Ok(Value::String("arn:aws:iam::*:role/${Literal}".into()))
    );
    for bad in ["!Ref Missing", "!GetAtt X.Arn", "!Join [!Ref B, [a]]", "!Split [!Ref B, a]"] {
        assert!(eval(bad).is_err(), "{bad}: {:?}", eval(bad));
    }
    let t = parse("Conditions:\n  HasA: !Not [!Equals [!Ref A, \"\"]]\n  HasB: !Not [!Equals [!Ref B, \"\"]]\n  Both: !And [!Condition HasA, !Condition HasB]\n  Either: !Or [!Condition HasA, !Condition HasB]\n");
    assert_eq!(condition_holds(&t, "HasB", &params), Ok(true));
    assert_eq!(condition_holds(&t, "Both", &params), Ok(false));
    assert_eq!(condition_holds(&t, "Either", &params), Ok(true));
    assert!(glob_matches("*/ou-a/*", "o-x/r-a/ou-a/") && glob_matches("*/ou-a/*", "o-x/r-a/ou-a/ou-b/"));
    assert!(!glob_matches("*/ou-a/*", "o-x/r-a/ou-ab/") && !glob_matches("*/ou-a/*", "o-x/r-a/"));
    assert!(glob_matches("a?c", "abc") && !glob_matches("a?c", "ac") && glob_matches("*", ""));
    let context = BTreeMap::from([("aws:ResourceAccount", vec!["111111111111".to_string()])]);
    let holds = |yaml: &str| iam_condition_holds(Some(&parse(yaml)), &context);
    assert_eq!(holds(r#"{ StringEquals: { "aws:ResourceAccount": ["2", "111111111111"] } }"#), Ok(true));
    assert_eq!(
        holds(r#"{ StringEquals: { "aws:ResourceAccount": "111111111111", "aws:ResourceOrgID": o-a } }"#),
        Ok(false)
    );
    assert_eq!(holds(r#"{ "ForAnyValue:StringLike": { "aws:ResourceOrgPaths": "*" } }"#), Ok(false));
    assert_eq!(holds(r#"{ "ForAllValues:StringLike": { "aws:ResourceOrgPaths": "x" } }"#), Ok(true));
    assert!(holds(r#"{ StringNotEquals: { "aws:ResourceAccount": "1" } }"#).is_err());
    assert!(holds(r#"{ StringEquals: { "aws:PrincipalTag/x": "1" } }"#).is_err());
}
