//! Offline checks of the SAM application (`infra/template.yaml`) and the declared IAM action lists
//! (`infra/iam-actions.json`): every function crate is deployed, with the settings every function
//! reads; every declared action is granted to that function's own role; nothing mutating is granted on
//! `*` without a condition (in the member stack's roles either); every setting the code reads is
//! documented and every one the template sets is read.
//!
//! A statement under `!If [cond, statement, AWS::NoValue]` counts as granted (the condition may hold),
//! and a tagged resource is never the literal `*`. [`iam_action`] and [`granted_actions`] are for the
//! CallLog subset test: the actions a function's code is seen calling against moto must all be granted
//! to its role.

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::Value;

use super::common::{
    canon, canon_of, covers, declared_actions, function_crates, functions_by_binary, get, member_template, repo_path,
    resources, role_id, role_statements, statement_actions, statements, str_at, strings, tag_of, template,
};

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

/// Read-only by name: the only actions allowed on `*` without a condition.
fn is_read_only(action: &str) -> bool {
    let op = action.rsplit(':').next().unwrap_or(action);
    // TestEventPattern (preflight) matches a pattern against an event it is given: it names and touches
    // no resource, so IAM knows it only on "*".
    action == "events:TestEventPattern"
        || (!op.contains('*') && ["Describe", "Get", "List"].iter().any(|r| op.starts_with(r)))
}

/// Problems: mutating actions granted on the literal resource `*` without a condition.
fn unconditioned_wildcard_mutations(grants: &[Grant]) -> Vec<String> {
    grants
        .iter()
        .filter(|g| !g.conditional && g.resources.iter().any(|r| r == "*"))
        .flat_map(|g| g.actions.iter().filter(|a| !is_read_only(a)).cloned())
        .collect()
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
    // S3 operations whose IAM action is named otherwise (the Service Authorization Reference). A
    // CopyObject is authorized as the destination's PutObject (and the source's GetObjectVersion); a
    // delete or tag read of a version as its *Version action: the calls here name the version.
    let op = match (prefix.as_str(), op) {
        ("s3", "ListBuckets") => "ListAllMyBuckets",
        ("s3", "HeadBucket") => "ListBucket",
        ("s3", "GetBucketLifecycleConfiguration") => "GetLifecycleConfiguration",
        ("s3", "PutBucketLifecycleConfiguration") => "PutLifecycleConfiguration",
        ("s3", "GetBucketReplication") => "GetReplicationConfiguration",
        ("s3", "PutBucketReplication") => "PutReplicationConfiguration",
        ("s3", "ListObjectVersions") => "ListBucketVersions",
        ("s3", "CopyObject") => "PutObject",
        ("s3", "DeleteObject") => "DeleteObjectVersion",
        ("s3", "GetObjectTagging") => "GetObjectVersionTagging",
        (_, op) => op,
    };
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
    assert_eq!(iam_action("s3:PutBucketLifecycleConfiguration"), "s3:PutLifecycleConfiguration");
    assert!(is_granted("backup-enforcer", "s3:ListBuckets") && is_granted("backup-enforcer", "s3:HeadBucket"));
    assert!(is_granted("backup-enforcer", "dynamodb:UpdateContinuousBackups"));
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

/// The functions that park decisions for approval have an approval URL on which AWS verifies the
/// caller (`AuthType: AWS_IAM`), no function has a public one, and the approvers' policy lets them
/// invoke those URLs with IAM auth, invoke the functions only through a URL, and find the URLs.
#[test]
fn the_approval_urls_use_iam_auth_and_the_approver_policy_reaches_only_them() {
    let t = template();
    let fns = functions_by_binary(&t);
    let parking = ["db-failover", "dns-failover", "instance-healer"];
    for (name, (id, f)) in &fns {
        let auth = str_at(f, &["Properties", "FunctionUrlConfig", "AuthType"]);
        if parking.contains(&name.as_str()) {
            assert_eq!(auth, Some("AWS_IAM"), "{name} ({id}) needs an approval URL with IAM auth");
        } else {
            assert_eq!(auth, None, "{name} parks no decisions: no URL");
        }
    }
    for (id, res) in resources(&t) {
        assert_ne!(str_at(res, &["Properties", "AuthType"]), Some("NONE"), "{id:?}: a public URL");
        if str_at(res, &["Type"]) == Some("AWS::Lambda::Permission") {
            let action = str_at(res, &["Properties", "Action"]).unwrap_or_default();
            assert!(!action.contains("InvokeFunctionUrl"), "{id:?}: URL access is the approvers' own policy's");
        }
    }
    let policy = resources(&t).get("ApproverPolicy").expect("ApproverPolicy");
    assert_eq!(str_at(policy, &["Type"]), Some("AWS::IAM::ManagedPolicy"));
    let doc = get(policy, "Properties").and_then(|p| get(p, "PolicyDocument")).unwrap();
    let parking_ids: BTreeSet<String> = parking.iter().map(|n| fns[*n].0.clone()).collect();
    let mut seen = BTreeMap::new();
    for st in statements(doc) {
        assert_eq!(str_at(&st, &["Effect"]), Some("Allow"));
        let targets: BTreeSet<String> = get(&st, "Resource")
            .and_then(Value::as_sequence)
            .unwrap()
            .iter()
            .map(|r| strings(r).join(" "))
            .map(|r| parking_ids.iter().find(|id| r.contains(id.as_str())).cloned().unwrap_or(r))
            .collect();
        assert_eq!(targets, parking_ids, "only the approval functions: {st:?}");
        let action = str_at(&st, &["Action"]).unwrap().to_string();
        let condition = get(&st, "Condition").map(|c| format!("{c:?}")).unwrap_or_default();
        seen.insert(action, condition);
    }
    assert!(
        seen["lambda:InvokeFunctionUrl"].contains("lambda:FunctionUrlAuthType")
            && seen["lambda:InvokeFunctionUrl"].contains("AWS_IAM"),
        "{seen:?}"
    );
    assert!(seen["lambda:InvokeFunction"].contains("lambda:InvokedViaFunctionUrl"), "{seen:?}");
    assert!(seen.contains_key("lambda:GetFunctionUrlConfig"), "{seen:?}");
    assert_eq!(seen.len(), 3, "{seen:?}");
    let outputs = get(&t, "Outputs").unwrap();
    for out in ["InstanceHealerApprovalUrl", "DbFailoverApprovalUrl", "DnsFailoverApprovalUrl", "ApproverPolicyArn"] {
        assert!(get(outputs, out).is_some(), "Outputs lack {out}");
    }
}

/// The standard alarms (issue #30): the drill may write, tag and delete alarms only under the
/// `selfheal-std|` name prefix, and may create or put one only with the alarms topic as its action.
#[test]
fn the_drill_keeps_only_standard_alarms_and_only_with_the_alarms_topic_as_action() {
    let t = template();
    let fns = functions_by_binary(&t);
    let (_, f) = fns.get("drill").unwrap();
    let role = resources(&t).get(role_id(f).as_str()).unwrap();
    let writes = ["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:TagResource"];
    let mut seen = BTreeSet::new();
    for st in role_statements(role) {
        let actions = statement_actions(&st);
        for w in writes.iter().filter(|w| actions.iter().any(|a| covers(a, w))) {
            seen.insert(*w);
            let resources = get(&st, "Resource").map(strings).unwrap_or_default();
            assert!(
                !resources.is_empty() && resources.iter().all(|r| r.contains(":alarm:selfheal-std|*\"")),
                "{w} granted beyond the standard alarms: {resources:?}"
            );
            if *w == "cloudwatch:PutMetricAlarm" {
                let cond = canon(get(&st, "Condition").expect("PutMetricAlarm is conditioned"));
                assert!(
                    cond.contains("ForAllValues:StringEquals") && cond.contains("cloudwatch:AlarmActions"),
                    "{cond}"
                );
                assert!(cond.contains("AlarmsTopic"), "the only action allowed is the alarms topic: {cond}");
            }
        }
    }
    assert_eq!(seen.len(), writes.len(), "the keeper's writes are granted: {seen:?}");
}
