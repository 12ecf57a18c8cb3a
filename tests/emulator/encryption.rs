//! Encryption at rest, proven from the template (`infra/template.yaml`): every SNS topic and SQS queue
//! is encrypted with the stack's own rotating KMS key, and everything that writes to one of them may
//! use that key. A writer the key policy leaves out is a silent outage: an alarm that cannot publish
//! to its encrypted topic is dropped, with nothing but a CloudWatch metric to show for it.
//!
//! The writers are derived from the template, never listed by hand: alarm actions (CloudWatch),
//! EventBridge rule targets and their dead-letter queues (EventBridge), topic and queue policies that
//! let a service write, the roles that may `sns:Publish` / `sqs:SendMessage` to them, and each
//! function's on-failure destination (its role); so are the readers that need the key, the roles of
//! functions polling a queue (an SQS event source). The key policy is then evaluated for each writer as
//! KMS would see the request: the principal, and for a role `aws:PrincipalArn`, `kms:CallerAccount`
//! and `kms:ViaService`. A service's request is taken to carry no condition key at all (AWS does not
//! pass `aws:SourceAccount` to KMS for every delivery), so a condition on a service grant fails here as
//! it could fail silently in AWS. What the checker cannot evaluate is reported, never passed over.
//!
//! Also here: the on-failure destination of every function, the optional customer-managed keys for
//! logs and the ledger, and a round trip through a topic and a queue encrypted with a key created
//! from the template's policy in moto.

use std::collections::{BTreeMap, BTreeSet};

use harness::{drain_notifications, moto_endpoint, sdk_config, unique, REGION};
use selfheal::{Envelope, Outcome, Target};
use serde_norway::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::infra::{
    canon, condition_holds, covers, evaluate, functions_by_binary, get, glob_matches, mutated, parse, resolve_ifs,
    resources, role_id, statements, str_at, strings, tag_of, template_text, Params,
};

/// moto's default account: the emulator test creates its key there.
const ACCOUNT: &str = "123456789012";

/// How a principal uses an encrypted topic or queue, and so what it needs of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
    /// Publishes or sends: a data key to encrypt with (and to decrypt a cached one).
    Write,
    /// Receives from a queue (an SQS event source polls with the function's role).
    Read,
}

impl Access {
    fn needs(self) -> &'static [&'static str] {
        match self {
            Access::Write => &["kms:GenerateDataKey", "kms:Decrypt"],
            Access::Read => &["kms:Decrypt"],
        }
    }
}

fn pseudo_params(stack: &str) -> Params {
    [("AWS::AccountId", ACCOUNT), ("AWS::Region", REGION), ("AWS::Partition", "aws"), ("AWS::StackName", stack)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn hub_text() -> String {
    template_text("infra/template.yaml")
}

fn logical_id(k: &Value) -> String {
    k.as_str().unwrap_or_default().to_string()
}

/// `${Name}` and `${Name.Attr}` in a `!Sub` string, `${!Literal}` aside.
fn sub_names(s: &str) -> Vec<String> {
    s.split("${")
        .skip(1)
        .filter(|p| !p.starts_with('!'))
        .map(|p| p.split(['}', '.']).next().unwrap_or_default().to_string())
        .collect()
}

/// The names a value refers to: `!Ref X`, `!GetAtt X.Attr` / `[X, Attr]`, `${X}` / `${X.Attr}` in a
/// `!Sub`, through `!If` branches and lists.
fn referents(v: &Value) -> Vec<String> {
    let Value::Tagged(t) = v else {
        return match v {
            Value::Sequence(items) => items.iter().flat_map(referents).collect(),
            Value::Mapping(m) => m.values().flat_map(referents).collect(),
            _ => Vec::new(),
        };
    };
    match (tag_of(v).as_deref(), &t.value) {
        (Some("Ref"), Value::String(s)) => vec![s.clone()],
        (Some("GetAtt"), Value::String(s)) => vec![s.split('.').next().unwrap_or_default().to_string()],
        (Some("GetAtt"), Value::Sequence(parts)) => {
            parts.first().and_then(Value::as_str).map(str::to_string).into_iter().collect()
        }
        (Some("Sub"), Value::String(s)) => sub_names(s),
        (Some("Sub"), Value::Sequence(parts)) => {
            let vars: BTreeSet<String> =
                parts.get(1).and_then(Value::as_mapping).into_iter().flatten().map(|(k, _)| logical_id(k)).collect();
            let own = parts.first().and_then(Value::as_str).map(sub_names).unwrap_or_default();
            own.into_iter().filter(|n| !vars.contains(n)).chain(parts.iter().skip(1).flat_map(referents)).collect()
        }
        (Some("If"), Value::Sequence(parts)) => parts.iter().skip(1).flat_map(referents).collect(),
        (_, inner) => referents(inner),
    }
}

/// Who writes to an encrypted topic or queue, as KMS sees the request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Writer {
    /// An AWS service principal (`cloudwatch.amazonaws.com`).
    Service(String),
    /// A role of the template (logical id), writing with its own credentials.
    Role(String),
}

impl std::fmt::Display for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Writer::Service(s) => write!(f, "{s}"),
            Writer::Role(r) => write!(f, "role {r}"),
        }
    }
}

/// The encrypted kinds of store: logical id -> the service that writes it (`sns`, `sqs`).
fn stores(t: &Value) -> BTreeMap<String, &'static str> {
    resources(t)
        .iter()
        .filter_map(|(id, r)| match str_at(r, &["Type"]) {
            Some("AWS::SNS::Topic") => Some((logical_id(id), "sns")),
            Some("AWS::SQS::Queue") => Some((logical_id(id), "sqs")),
            _ => None,
        })
        .collect()
}

/// (store, who, how) -> where in the template that use comes from.
type Uses = BTreeMap<(String, Writer, Access), Vec<String>>;

/// Every use of a topic or queue the template sets up (who writes it, who reads it), each with where
/// it comes from; and what could not be understood.
fn writes(t: &Value) -> (Uses, Vec<String>) {
    let stores = stores(t);
    let mut out = Uses::new();
    let mut problems = Vec::new();
    let mut reads = Vec::new();
    let mut add = |targets: Vec<String>, writer: &Writer, why: String| {
        for target in targets.into_iter().filter(|s| stores.contains_key(s)) {
            out.entry((target, writer.clone(), Access::Write)).or_default().push(why.clone());
        }
    };
    let service = |s: &str| Writer::Service(s.to_string());
    let all_of = |kind: &str| stores.iter().filter(|(_, k)| **k == kind).map(|(s, _)| s.clone()).collect::<Vec<_>>();
    let globals = get(t, "Globals").and_then(|g| get(g, "Function"));
    for (id, r) in resources(t) {
        let id = logical_id(id);
        let props = get(r, "Properties").cloned().unwrap_or(Value::Null);
        let at = |key: &str| get(&props, key);
        match str_at(r, &["Type"]).unwrap_or_default() {
            "AWS::CloudWatch::Alarm" | "AWS::CloudWatch::CompositeAlarm" => {
                for key in ["AlarmActions", "OKActions", "InsufficientDataActions"] {
                    if let Some(v) = at(key) {
                        add(referents(v), &service("cloudwatch.amazonaws.com"), format!("{id}.{key}"));
                    }
                }
            }
            "AWS::Events::Rule" => {
                for target in at("Targets").and_then(Value::as_sequence).into_iter().flatten() {
                    let events = service("events.amazonaws.com");
                    add(get(target, "Arn").map(referents).unwrap_or_default(), &events, format!("{id} target"));
                    let dlq = get(target, "DeadLetterConfig").and_then(|d| get(d, "Arn"));
                    add(dlq.map(referents).unwrap_or_default(), &events, format!("{id} target's dead-letter queue"));
                }
            }
            ty @ ("AWS::SNS::TopicPolicy" | "AWS::SQS::QueuePolicy") => {
                let (list, action) = if ty == "AWS::SNS::TopicPolicy" {
                    ("Topics", "sns:Publish")
                } else {
                    ("Queues", "sqs:SendMessage")
                };
                let targets = at(list).map(referents).unwrap_or_default();
                for st in at("PolicyDocument").map(statements).unwrap_or_default() {
                    let actions = get(&st, "Action").map(strings).unwrap_or_default();
                    if str_at(&st, &["Effect"]) != Some("Allow") || !actions.iter().any(|a| covers(a, action)) {
                        continue;
                    }
                    let principal = get(&st, "Principal");
                    let services_only = principal
                        .and_then(Value::as_mapping)
                        .is_some_and(|m| m.keys().all(|k| k.as_str() == Some("Service")));
                    if !services_only {
                        problems.push(format!("{id}: a principal other than a service may {action}: not modelled"));
                        continue;
                    }
                    for s in principal.and_then(|p| get(p, "Service")).map(strings).unwrap_or_default() {
                        add(targets.clone(), &Writer::Service(s), format!("{id} lets it {action}"));
                    }
                }
            }
            "AWS::IAM::Role" => {
                let role = Writer::Role(id.clone());
                for policy in at("Policies").and_then(Value::as_sequence).into_iter().flatten() {
                    for st in get(policy, "PolicyDocument").map(statements).unwrap_or_default() {
                        if str_at(&st, &["Effect"]) != Some("Allow") {
                            continue;
                        }
                        let actions = get(&st, "Action").map(strings).unwrap_or_default();
                        for (action, kind) in [("sns:Publish", "sns"), ("sqs:SendMessage", "sqs")] {
                            if !actions.iter().any(|a| covers(a, action)) {
                                continue;
                            }
                            let resources = get(&st, "Resource").cloned().unwrap_or(Value::Null);
                            let wildcard = strings(&resources).iter().any(|r| r == "*");
                            let targets = if wildcard { all_of(kind) } else { referents(&resources) };
                            add(targets, &role, format!("{id} grants {action}"));
                        }
                    }
                }
            }
            "AWS::Serverless::Function" => {
                let role = Writer::Role(role_id(r));
                let invoke = at("EventInvokeConfig").or_else(|| globals.and_then(|g| get(g, "EventInvokeConfig")));
                for outcome in ["OnFailure", "OnSuccess"] {
                    let dest = invoke.and_then(|c| get(c, "DestinationConfig")).and_then(|d| get(d, outcome));
                    let dest = dest.and_then(|d| get(d, "Destination"));
                    add(dest.map(referents).unwrap_or_default(), &role, format!("{id} {outcome} destination"));
                }
                let dlq = at("DeadLetterQueue").and_then(|d| get(d, "TargetArn"));
                add(dlq.map(referents).unwrap_or_default(), &role, format!("{id} DeadLetterQueue"));
                for (name, event) in at("Events").and_then(Value::as_mapping).into_iter().flatten() {
                    let why = format!("{id}.Events.{}", logical_id(name));
                    let ep = get(event, "Properties");
                    let dlc = ep.and_then(|p| get(p, "DeadLetterConfig"));
                    let principal = match str_at(event, &["Type"]).unwrap_or_default() {
                        "EventBridgeRule" | "CloudWatchEvent" | "Schedule" => "events.amazonaws.com",
                        "ScheduleV2" => "scheduler.amazonaws.com",
                        "SQS" => {
                            let queue = ep.and_then(|p| get(p, "Queue")).map(referents).unwrap_or_default();
                            reads.extend(queue.into_iter().map(|q| (q, role.clone(), format!("{why} polls it"))));
                            continue;
                        }
                        "SNS" => {
                            let redrive =
                                ep.and_then(|p| get(p, "RedrivePolicy")).and_then(|r| get(r, "deadLetterTargetArn"));
                            add(redrive.map(referents).unwrap_or_default(), &service("sns.amazonaws.com"), why.clone());
                            if ep.and_then(|p| get(p, "SqsSubscription")).is_some() {
                                problems.push(format!(
                                    "{why}: SqsSubscription: SAM would create a queue this check cannot see"
                                ));
                            }
                            continue;
                        }
                        _ => continue,
                    };
                    match dlc.map(|d| get(d, "Arn")) {
                        None => {}
                        Some(Some(arn)) => add(referents(arn), &service(principal), format!("{why} dead-letter queue")),
                        Some(None) => problems.push(format!(
                            "{why}: a DeadLetterConfig without Arn: SAM would create a queue \
                             that is not encrypted with the stack's key"
                        )),
                    }
                }
            }
            _ => {}
        }
    }
    for (queue, reader, why) in reads.into_iter().filter(|(q, _, _)| stores.contains_key(q)) {
        out.entry((queue, reader, Access::Read)).or_default().push(why);
    }
    (out, problems)
}

/// The principal a key policy statement must name for a writer.
#[derive(Debug)]
enum Principal {
    Service(String),
    Arn(String),
}

/// How KMS sees `writer`'s request when it writes to a store of `kind` (`sns`, `sqs`).
fn kms_request(
    t: &Value,
    writer: &Writer,
    kind: &str,
    params: &Params,
) -> Result<(Principal, BTreeMap<String, String>), String> {
    match writer {
        Writer::Service(s) => Ok((Principal::Service(s.clone()), BTreeMap::new())),
        Writer::Role(id) => {
            let role = resources(t).get(id.as_str()).ok_or_else(|| format!("no role {id}"))?;
            let name = get(role, "Properties").and_then(|p| get(p, "RoleName")).ok_or_else(|| {
                format!(
                    "{id} has no RoleName: a key policy could only name it by !GetAtt, \
                     a dependency cycle through the topics and queue it writes"
                )
            })?;
            let name = evaluate(name, params)?;
            let name = name.as_str().ok_or_else(|| format!("{id}: RoleName is not a string"))?;
            let arn = format!("arn:aws:iam::{ACCOUNT}:role/{name}");
            let context = [
                ("aws:PrincipalArn", arn.clone()),
                ("aws:PrincipalAccount", ACCOUNT.to_string()),
                ("kms:CallerAccount", ACCOUNT.to_string()),
                ("kms:ViaService", format!("{kind}.{REGION}.amazonaws.com")),
            ];
            Ok((Principal::Arn(arn), context.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
        }
    }
}

/// Whether an evaluated statement's `Principal` names `principal` directly. `AWS: *` covers any
/// account principal (its conditions then decide), never a service; the account root does not count:
/// it delegates to IAM policies, and the roles carry no KMS grant of their own.
fn names(statement_principal: Option<&Value>, principal: &Principal) -> Result<bool, String> {
    let Some(p) = statement_principal else { return Err("a statement without Principal".into()) };
    if p.as_str() == Some("*") {
        return Ok(matches!(principal, Principal::Arn(_)));
    }
    let m = p.as_mapping().ok_or_else(|| format!("Principal is neither * nor a mapping: {}", canon(p)))?;
    for (k, v) in m {
        let listed = strings(v);
        match (k.as_str(), principal) {
            (Some("Service"), Principal::Service(s)) if listed.contains(s) => return Ok(true),
            (Some("AWS"), Principal::Arn(a)) if listed.iter().any(|l| l == "*" || l == a) => return Ok(true),
            (Some("Service" | "AWS"), _) => {}
            (other, _) => return Err(format!("Principal {other:?} is not modelled")),
        }
    }
    Ok(false)
}

/// Whether an evaluated `Condition` holds for a request carrying `context` (single-valued keys). Keys
/// are ANDed and a key's values ORed, as in IAM; a key absent from the request fails its test.
/// Operators other than String/Arn Equals/Like are errors.
fn kms_condition_holds(condition: Option<&Value>, context: &BTreeMap<String, String>) -> Result<bool, String> {
    let Some(condition) = condition else { return Ok(true) };
    let blocks = condition.as_mapping().ok_or_else(|| format!("Condition is not a mapping: {}", canon(condition)))?;
    for (op, block) in blocks {
        let op = op.as_str().unwrap_or_default();
        let like = match op {
            "StringEquals" | "ArnEquals" => false,
            "StringLike" | "ArnLike" => true,
            other => return Err(format!("condition operator {other} is not modelled")),
        };
        let block = block.as_mapping().ok_or_else(|| format!("{op}: not a mapping of keys"))?;
        for (key, wanted) in block {
            let Some(have) = context.get(key.as_str().unwrap_or_default()) else { return Ok(false) };
            let wanted = strings(wanted);
            if !wanted.iter().any(|w| if like { glob_matches(w, have) } else { w == have }) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Whether `key_policy` lets `principal` call `action` with `context`: some Allow statement matches
/// and no Deny does.
fn key_allows(
    key_policy: &Value,
    principal: &Principal,
    context: &BTreeMap<String, String>,
    action: &str,
    params: &Params,
) -> Result<bool, String> {
    let mut allowed = false;
    for st in statements(key_policy) {
        let st = evaluate(&st, params)?;
        if ["NotAction", "NotPrincipal", "NotResource"].iter().any(|k| get(&st, k).is_some()) {
            return Err(format!("{} is not modelled", canon(&st)));
        }
        let acts = get(&st, "Action").map(strings).unwrap_or_default().iter().any(|a| covers(a, action));
        // In a key policy, `Resource: "*"` is the key itself.
        let on_key = get(&st, "Resource").map(strings).unwrap_or_default().iter().any(|r| r == "*");
        if !acts || !on_key || !names(get(&st, "Principal"), principal)? {
            continue;
        }
        if kms_condition_holds(get(&st, "Condition"), context)? {
            match str_at(&st, &["Effect"]) {
                Some("Deny") => return Ok(false),
                Some("Allow") => allowed = true,
                other => return Err(format!("Effect {other:?}")),
            }
        }
    }
    Ok(allowed)
}

/// The key resource (logical id) a store is encrypted with, if it is one of the template's keys.
fn store_key(t: &Value, store: &str) -> Option<String> {
    let r = resources(t).get(store)?;
    let key = get(r, "Properties").and_then(|p| get(p, "KmsMasterKeyId"))?;
    let ids = referents(key);
    let [id] = ids.as_slice() else { return None };
    (resources(t).get(id.as_str()).and_then(|k| str_at(k, &["Type"])) == Some("AWS::KMS::Key")).then(|| id.clone())
}

/// Everything wrong with the encryption of the template's topics and queues: a store not encrypted
/// with a rotating key of the template, a writer its key's policy does not let encrypt (and decrypt
/// the data key), anything the checker could not evaluate.
fn encryption_problems(t: &Value) -> Vec<String> {
    let params = pseudo_params("selfheal");
    let mut problems = Vec::new();
    let stores = stores(t);
    for store in stores.keys() {
        match store_key(t, store) {
            None => problems.push(format!("{store} is not encrypted with a KMS key of the template (KmsMasterKeyId)")),
            Some(key) => {
                let rotates = get(&resources(t)[key.as_str()], "Properties").and_then(|p| get(p, "EnableKeyRotation"));
                if rotates.and_then(Value::as_bool) != Some(true) {
                    problems.push(format!("{key} (encrypting {store}) does not rotate (EnableKeyRotation)"));
                }
            }
        }
    }
    let (writes, mut unknown) = writes(t);
    problems.append(&mut unknown);
    for ((store, writer, access), why) in &writes {
        let Some(key) = store_key(t, store) else { continue };
        let Some(policy) = get(&resources(t)[key.as_str()], "Properties").and_then(|p| get(p, "KeyPolicy")) else {
            problems.push(format!("{key} has no KeyPolicy"));
            continue;
        };
        let (principal, context) = match kms_request(t, writer, stores[store], &params) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{writer} uses {store} ({}): {e}", why.join("; ")));
                continue;
            }
        };
        for action in access.needs() {
            match key_allows(policy, &principal, &context, action, &params) {
                Ok(true) => {}
                Ok(false) => problems.push(format!(
                    "{key}'s policy does not let {writer} {action}, yet it uses {store} ({})",
                    why.join("; ")
                )),
                Err(e) => problems.push(format!("{key}'s policy, for {writer} using {store}: {e}")),
            }
        }
    }
    problems
}

#[test]
fn every_topic_and_queue_is_encrypted_with_the_stacks_rotating_key() {
    let t = parse(&hub_text());
    let stores = stores(&t);
    assert!(stores.len() >= 7, "the six topics and the dead-letter queue, found {stores:?}");
    for store in stores.keys() {
        assert_eq!(store_key(&t, store).as_deref(), Some("EncryptionKey"), "{store}");
    }
    let key = &resources(&t)["EncryptionKey"];
    assert_eq!(get(key, "Properties").and_then(|p| get(p, "EnableKeyRotation")).and_then(Value::as_bool), Some(true));
    let problems = encryption_problems(&t);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_writer_of_an_encrypted_topic_or_queue_may_use_its_key() {
    let t = parse(&hub_text());
    let (writes, unknown) = writes(&t);
    assert!(unknown.is_empty(), "{unknown:#?}");
    // The writers the template is known to set up must all be found, so the check is not vacuous.
    let role = |r: &str| Writer::Role(r.to_string());
    let service = |s: &str| Writer::Service(s.to_string());
    let mut expected = vec![
        ("AlarmsTopic", service("cloudwatch.amazonaws.com")),
        ("AlarmsTopic", role("DrillRole")),
        ("DeadLetterQueue", service("events.amazonaws.com")),
    ];
    for topic in ["InfoTopic", "WarningTopic", "CriticalTopic", "ChatbotTopic"] {
        expected.push((topic, role("NotifierRole")));
    }
    for r in ["InstanceHealerRole", "DbFailoverRole", "DnsFailoverRole", "BackupEnforcerRole", "DrillRole"] {
        expected.push(("EventsTopic", role(r)));
    }
    for (_, f) in functions_by_binary(&t).into_values() {
        expected.push(("DeadLetterQueue", Writer::Role(role_id(&f))));
    }
    for (store, writer) in expected {
        let found = writes.contains_key(&(store.to_string(), writer.clone(), Access::Write));
        assert!(found, "{writer} writing {store} was not found");
    }
    let problems = encryption_problems(&t);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_key_policy_check_catches_what_it_claims_to() {
    let text = hub_text();
    assert!(encryption_problems(&parse(&text)).is_empty());
    let cases: [(&str, &str, &str, &[&str]); 9] = [
        (
            "the CloudWatch grant names another service",
            "Principal: { Service: cloudwatch.amazonaws.com }\n            Action: [kms:GenerateDataKey*, kms:Decrypt]",
            "Principal: { Service: logs.amazonaws.com }\n            Action: [kms:GenerateDataKey*, kms:Decrypt]",
            &["cloudwatch.amazonaws.com", "AlarmsTopic", "Ec2StatusCheckAlarm.AlarmActions"],
        ),
        (
            "the drill's role is left out of the functions' grant",
            "                  - !Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${AWS::StackName}-drill\n",
            "",
            &["role DrillRole", "AlarmsTopic"],
        ),
        (
            "the functions may use the key through SNS only",
            r#""kms:ViaService": [!Sub "sns.${AWS::Region}.amazonaws.com", !Sub "sqs.${AWS::Region}.amazonaws.com"]"#,
            r#""kms:ViaService": !Sub "sns.${AWS::Region}.amazonaws.com""#,
            &["role NotifierRole", "DeadLetterQueue", "OnFailure destination"],
        ),
        (
            "EventBridge's grant asks for a condition key its requests do not carry",
            concat!(
                "Principal: { Service: events.amazonaws.com }\n",
                "            Action: [kms:GenerateDataKey*, kms:Decrypt]\n",
                "            Resource: \"*\"\n",
            ),
            concat!(
                "Principal: { Service: events.amazonaws.com }\n",
                "            Action: [kms:GenerateDataKey*, kms:Decrypt]\n",
                "            Resource: \"*\"\n",
                "            Condition:\n",
                "              StringEquals: { \"aws:SourceAccount\": !Ref AWS::AccountId }\n",
            ),
            &["events.amazonaws.com", "DeadLetterQueue"],
        ),
        (
            "the grant to the functions lacks Decrypt",
            "            Principal: { AWS: \"*\" }\n            Action: [kms:GenerateDataKey*, kms:Decrypt]",
            "            Principal: { AWS: \"*\" }\n            Action: [kms:GenerateDataKey*]",
            &["role InstanceHealerRole kms:Decrypt", "EventsTopic"],
        ),
        (
            "a topic is not encrypted",
            "      DisplayName: selfheal info\n      KmsMasterKeyId: !Ref EncryptionKey\n",
            "      DisplayName: selfheal info\n",
            &["InfoTopic is not encrypted"],
        ),
        (
            "a publishing role has no predictable name",
            "      RoleName: !Sub ${AWS::StackName}-notifier\n",
            "",
            &["NotifierRole has no RoleName"],
        ),
        (
            "a condition operator the checker does not know",
            "              ArnEquals:\n                \"aws:PrincipalArn\":",
            "              ArnNotEquals:\n                \"aws:PrincipalArn\":",
            &["ArnNotEquals is not modelled"],
        ),
        (
            "an EventBridge rule's dead-letter queue SAM would create unencrypted",
            concat!(
                "            DeadLetterConfig:\n",
                "              Arn: !GetAtt DeadLetterQueue.Arn\n",
                "            RetryPolicy:\n",
                "              MaximumRetryAttempts: 2",
            ),
            concat!(
                "            DeadLetterConfig:\n",
                "              Type: SQS\n",
                "            RetryPolicy:\n",
                "              MaximumRetryAttempts: 2",
            ),
            &["BackupEnforcerFunction.Events.Sweep", "not encrypted with the stack's key"],
        ),
    ];
    for (what, from, to, expect) in cases {
        let problems = encryption_problems(&parse(&mutated(&text, from, to)));
        let all = problems.join("\n");
        for e in expect {
            assert!(all.contains(e), "{what}: expected a problem mentioning {e:?}, got:\n{all}");
        }
    }
}

/// A queue a function polls (an SQS event source) is read with the function's role, which must be
/// able to decrypt: shown on a template of its own, so it holds whatever queues the real one has.
#[test]
fn an_sqs_event_sources_role_must_be_able_to_decrypt_its_queue() {
    let template = r#"
Resources:
  Key:
    Type: AWS::KMS::Key
    Properties:
      EnableKeyRotation: true
      KeyPolicy:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: { AWS: "*" }
            Action: [kms:GenerateDataKey*]
            Resource: "*"
            Condition:
              ArnEquals:
                "aws:PrincipalArn": !Sub "arn:aws:iam::${AWS::AccountId}:role/${AWS::StackName}-worker"
  Work:
    Type: AWS::SQS::Queue
    Properties: { KmsMasterKeyId: !Ref Key }
  WorkerRole:
    Type: AWS::IAM::Role
    Properties: { RoleName: !Sub "${AWS::StackName}-worker" }
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      Role: !GetAtt WorkerRole.Arn
      Events:
        Shards: { Type: SQS, Properties: { Queue: !GetAtt Work.Arn } }
"#;
    let problems = encryption_problems(&parse(template));
    let all = problems.join("\n");
    assert!(
        all.contains("does not let role WorkerRole kms:Decrypt, yet it uses Work (Worker.Events.Shards polls it)"),
        "{all}"
    );
    assert_eq!(problems.len(), 1, "{all}");
    let fixed = mutated(template, "Action: [kms:GenerateDataKey*]", "Action: [kms:GenerateDataKey*, kms:Decrypt]");
    let problems = encryption_problems(&parse(&fixed));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_function_sends_its_failed_invocations_to_an_encrypted_queue_its_role_may_write() {
    let t = parse(&hub_text());
    let (writes, _) = writes(&t);
    let globals = get(&t, "Globals").and_then(|g| get(g, "Function"));
    for (name, (id, f)) in functions_by_binary(&t) {
        let props = get(&f, "Properties");
        let invoke = props
            .and_then(|p| get(p, "EventInvokeConfig"))
            .or_else(|| globals.and_then(|g| get(g, "EventInvokeConfig")));
        let on_failure = invoke.and_then(|c| get(c, "DestinationConfig")).and_then(|d| get(d, "OnFailure"));
        assert_eq!(on_failure.and_then(|o| str_at(o, &["Type"])), Some("SQS"), "{name}: no on-failure destination");
        let queue = on_failure.and_then(|o| get(o, "Destination")).map(referents).unwrap_or_default();
        let [queue] = queue.as_slice() else {
            panic!("{name}: the on-failure destination must name one queue: {queue:?}")
        };
        assert_eq!(store_key(&t, queue).as_deref(), Some("EncryptionKey"), "{name}: {queue}");
        // The role itself must be allowed to send there (Lambda sends with the function's role).
        let role = Writer::Role(role_id(&f));
        let why = writes.get(&(queue.clone(), role.clone(), Access::Write)).cloned().unwrap_or_default();
        assert!(
            why.iter().any(|w| w.ends_with("grants sqs:SendMessage")),
            "{id}: {role} may not sqs:SendMessage to its on-failure destination {queue}: {why:?}"
        );
    }
}

#[test]
fn logs_and_the_ledger_take_an_optional_customer_managed_key() {
    let t = parse(&hub_text());
    let key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    for value in ["", key] {
        let mut params = pseudo_params("selfheal");
        params.insert("LogsKmsKeyArn".into(), value.into());
        params.insert("LedgerKmsKeyArn".into(), value.into());
        let holds: BTreeMap<String, bool> = ["HasLogsKey", "HasLedgerKey"]
            .into_iter()
            .map(|c| (c.to_string(), condition_holds(&t, c, &params).unwrap()))
            .collect();
        // A property as deployed: its `!If`s resolved, then its intrinsics evaluated.
        let deployed = |id: &str, key: &str| {
            let props = resolve_ifs(get(&resources(&t)[id], "Properties").unwrap(), &holds).unwrap();
            get(&props, key).map(|v| evaluate(v, &params).unwrap())
        };
        let mut groups = 0;
        for (id, r) in resources(&t) {
            if str_at(r, &["Type"]) == Some("AWS::Logs::LogGroup") {
                groups += 1;
                let key_id = deployed(id.as_str().unwrap(), "KmsKeyId");
                let want = (!value.is_empty()).then_some(value);
                assert_eq!(key_id.as_ref().and_then(Value::as_str), want, "{id:?} with LogsKmsKeyArn={value:?}");
            }
        }
        assert!(groups >= 6, "one log group per function");
        let sse = deployed("LedgerTable", "SSESpecification").unwrap();
        assert_eq!(get(&sse, "SSEEnabled").and_then(Value::as_bool), Some(true), "the ledger is always encrypted");
        if value.is_empty() {
            assert!(get(&sse, "KMSMasterKeyId").is_none(), "no key given: DynamoDB's own");
        } else {
            assert_eq!(str_at(&sse, &["SSEType"]), Some("KMS"));
            assert_eq!(str_at(&sse, &["KMSMasterKeyId"]), Some(key));
        }
    }
}

/// A checkov finding that is a choice is skipped next to its resource, with the reason: a skip without
/// one would be an unexplained finding that `scripts/check-infra` (which runs checkov) lets through.
/// Skips live in `Metadata` (not inline comments, not the `bridgecrew` key), where this test sees them.
#[test]
fn every_checkov_skip_in_the_templates_says_why() {
    let mut skips = 0;
    for rel in ["infra/template.yaml", "infra/member.yaml"] {
        let text = template_text(rel);
        assert!(!text.contains("checkov:skip="), "{rel}: skip in the resource's Metadata with a comment, not inline");
        for (id, r) in resources(&parse(&text)) {
            let metadata = get(r, "Metadata");
            assert!(metadata.and_then(|m| get(m, "bridgecrew")).is_none(), "{rel} {id:?}: use Metadata.checkov");
            let list = metadata.and_then(|m| get(m, "checkov")).and_then(|c| get(c, "skip"));
            for skip in list.and_then(Value::as_sequence).into_iter().flatten() {
                let check = str_at(skip, &["id"]).unwrap_or_default();
                let why = str_at(skip, &["comment"]).unwrap_or_default();
                assert!(check.starts_with("CKV_AWS_") || check.starts_with("CKV2_AWS_"), "{rel} {id:?}: {check:?}");
                assert!(
                    why.split_whitespace().count() >= 8,
                    "{rel} {id:?}: skipping {check} needs its reason: {why:?}"
                );
                skips += 1;
            }
        }
    }
    assert!(skips > 0, "the scan found no skip at all");
}

// ---------------------------------------------------------------- the same key in moto

/// One KMS call to moto (there is no KMS client among the test dependencies): JSON over HTTP/1.1,
/// with a signature moto does not check.
async fn kms(action: &str, body: serde_json::Value) -> serde_json::Value {
    let endpoint = moto_endpoint();
    let addr = endpoint.strip_prefix("http://").unwrap_or_else(|| panic!("not an http endpoint: {endpoint}"));
    let addr = addr.trim_end_matches('/');
    let payload = body.to_string();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.1\r\n\
         X-Amz-Target: TrentService.{action}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/kms/aws4_request, \
         SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to moto");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("receive");
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("KMS {action}: no HTTP response: {text}"));
    assert!(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"), "KMS {action}: {head}\n{body}");
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "KMS {action}: chunked answer");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("KMS {action}: {e}: {body}"))
}

/// moto stores a key policy without evaluating its Allow statements, so who may use the key is proven
/// offline above. What this proves: the template's policy, as CloudFormation would resolve it, makes a
/// key; the key rotates and makes data keys; and a topic and a queue encrypted with it carry the
/// suite's envelopes, through the same publishing code the functions use.
#[tokio::test]
async fn a_topic_and_queue_encrypted_with_the_templates_key_carry_the_suites_envelopes() {
    let t = parse(&hub_text());
    let stack = unique("selfheal");
    let policy = get(&resources(&t)["EncryptionKey"], "Properties").and_then(|p| get(p, "KeyPolicy")).unwrap();
    let policy = evaluate(policy, &pseudo_params(&stack)).expect("the key policy resolves offline");
    let policy = serde_json::to_string(&policy).unwrap();
    assert!(policy.contains(&format!("arn:aws:iam::{ACCOUNT}:role/{stack}-notifier")), "{policy}");

    let created = kms("CreateKey", serde_json::json!({"Policy": policy, "Description": "selfheal test"})).await;
    let key_id = created["KeyMetadata"]["KeyId"].as_str().expect("key id").to_string();
    let described = kms("GetKeyPolicy", serde_json::json!({"KeyId": key_id, "PolicyName": "default"})).await;
    let stored: serde_json::Value = serde_json::from_str(described["Policy"].as_str().unwrap()).unwrap();
    assert_eq!(stored, serde_json::from_str::<serde_json::Value>(&policy).unwrap(), "moto keeps the policy as given");
    kms("EnableKeyRotation", serde_json::json!({"KeyId": key_id})).await;
    let rotation = kms("GetKeyRotationStatus", serde_json::json!({"KeyId": key_id})).await;
    assert_eq!(rotation["KeyRotationEnabled"], serde_json::json!(true));
    let data_key = kms("GenerateDataKey", serde_json::json!({"KeyId": key_id, "KeySpec": "AES_256"})).await;
    assert!(data_key["CiphertextBlob"].as_str().is_some_and(|c| !c.is_empty()), "{data_key}");

    let sdk = sdk_config().await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let name = unique("encrypted");
    let topic = sns.create_topic().name(&name).attributes("KmsMasterKeyId", &key_id).send().await.expect("topic");
    let topic_arn = topic.topic_arn().unwrap().to_string();
    let queue = sqs
        .create_queue()
        .queue_name(format!("{name}-q"))
        .attributes(aws_sdk_sqs::types::QueueAttributeName::KmsMasterKeyId, &key_id)
        .send()
        .await
        .expect("queue");
    let queue_url = queue.queue_url().unwrap().to_string();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .expect("queue attributes");
    let attr = |n: aws_sdk_sqs::types::QueueAttributeName| attrs.attributes().and_then(|a| a.get(&n)).cloned();
    assert_eq!(attr(aws_sdk_sqs::types::QueueAttributeName::KmsMasterKeyId), Some(key_id.clone()));
    let queue_arn = attr(aws_sdk_sqs::types::QueueAttributeName::QueueArn).expect("queue arn");
    let topic_attrs = sns.get_topic_attributes().topic_arn(&topic_arn).send().await.expect("topic attributes");
    assert_eq!(topic_attrs.attributes().and_then(|a| a.get("KmsMasterKeyId")), Some(&key_id));
    sns.subscribe().topic_arn(&topic_arn).protocol("sqs").endpoint(queue_arn).send().await.expect("subscribe");

    let envelope = Envelope::new(
        "instance-healer",
        "reboot",
        Target::new("ec2-instance", "i-0123456789abcdef0"),
        Outcome::DryRun,
        "encrypted",
    );
    selfheal::envelope::publish_to(&sns, &topic_arn, &envelope).await.expect("publish to the encrypted topic");
    let got = drain_notifications(&sdk, &queue_url).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0["id"], serde_json::json!(envelope.id), "{got:?}");
}
