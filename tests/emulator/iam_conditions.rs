//! IAM conditions proven against the code: every AWS call a function makes in these tests, with the
//! tags it writes and the tags on what it touches, is evaluated against the statements of the role it
//! runs as (its role in `infra/template.yaml`, or in a member account its `selfheal-<function>` role
//! in `infra/member.yaml`, whose trust policy is evaluated for the `AssumeRole` that reached it), as
//! IAM would: action, resource and every condition must match; an explicit `Deny` wins; no matching
//! `Allow` is a denial. A call the policy would deny fails the test that made it.
//!
//! How a call is seen: [`record`] turns on the call log's request recording
//! ([`selfheal::clients::CallLog::record_requests`]), whose observer sees each request just before it
//! is first sent; for a mutating call it asks the emulator, with the same credentials and region, for
//! the tags of what the call names (instances, volumes, snapshots, Elastic IPs, Auto Scaling groups,
//! databases, clusters and their snapshots) before the call changes or removes them, and where an
//! `AssumeRole` target sits in the organization. The request itself gives the rest: the resource ids,
//! the tags written (`TagSpecification`, `Tags`), the external id presented. The credentials that
//! signed a call say where it ran: the function's own (the hub role), or those an `AssumeRole` in the
//! same log returned (that member account's role).
//!
//! The evaluator knows the subset of IAM the templates use (`StringEquals`, `StringLike`,
//! `StringNotEquals`, `StringNotLike`, `ArnEquals`, `ArnLike`, `Null`, the `ForAllValues:` and
//! `ForAnyValue:` qualifiers; the keys `aws:ResourceTag/*`, `aws:RequestTag/*`, `aws:TagKeys`,
//! `ec2:CreateAction`, `iam:PassedToService`, `aws:ResourceAccount`, `aws:ResourceOrgID`,
//! `aws:ResourceOrgPaths`, `aws:PrincipalArn`, `aws:PrincipalOrgID`, `sts:ExternalId`) and how each
//! operation the functions call is authorized (which resources, which implicit `ec2:CreateTags` or
//! `rds:AddTagsToResource` a tag-on-create adds). Anything else (an operator, a key, an intrinsic,
//! an operation it does not model) is an error, never a silent allow.
//!
//! What it found that waits for a fix in the templates is listed in [`KNOWN_MISMATCHES`], with the
//! fix: reported by the tests that meet it, and ratcheted ([`assert_still_known`]) so an entry goes
//! when its fix lands. Any other denial fails the test.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use selfheal::clients::{CallLog, CallObserver, CallRecord};
use selfheal::config::CommonConfig;
use selfheal::Ctx;
use serde_json::{json, Value as Json};
use serde_norway::Value;

/// The organization every test deployment is in (every account the hub serves belongs to it).
const ORG: &str = "o-selfhealtest";
/// The hub's account when the configuration does not name it: moto's default.
const DEFAULT_HUB: &str = "123456789012";
/// The hub stack's name and region (its roles are `selfheal-<function>`, as the member trust expects).
const STACK_NAME: &str = "selfheal";
const STACK_REGION: &str = harness::REGION;

// ---------------------------------------------------------------- recording

/// Turns on request recording on `calls`, with the observer that captures tags before each call.
pub(crate) fn record(calls: &CallLog) {
    let observer: CallObserver = Arc::new(|r: &CallRecord| {
        let wanted = lookups(r);
        if wanted.is_empty() {
            return None;
        }
        resolve_blocking(r, wanted)
    });
    calls.record_requests(Some(observer));
}

/// What the observer asks the emulator before a call.
#[derive(Debug, Clone, PartialEq)]
enum Lookup {
    /// Tags of EC2 resources by id, in a region.
    Ec2Tags(String, Vec<String>),
    /// The Auto Scaling group of an instance: its ARN and tags.
    GroupOf(String),
    /// An RDS resource's ARN and tags: (kind: db, cluster, snapshot, cluster-snapshot; id or ARN).
    Rds(&'static str, String),
    /// Where an account sits in the organization.
    OrgPath(String),
}

fn is_ec2_id(v: &str) -> bool {
    let Some((prefix, rest)) = v.split_once('-') else { return false };
    ["i", "vol", "snap", "eipalloc", "eni", "ami", "subnet", "sg", "lt"].contains(&prefix)
        && !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The lookups a call needs before it is sent (none for reads and calls on untagged things).
fn lookups(r: &CallRecord) -> Vec<Lookup> {
    let op = r.operation.as_str();
    let region = r.region.clone().unwrap_or_else(|| STACK_REGION.to_string());
    let form = Form::parse(&r.body);
    let mut out = Vec::new();
    match op.split_once(':').map(|(s, _)| s).unwrap_or_default() {
        "ec2" if selfheal::clients::is_mutating(op) => {
            let mut here = Vec::new();
            for (k, v) in &form.0 {
                if k == "SourceSnapshotId" {
                    let source = form.get("SourceRegion").unwrap_or(&region).to_string();
                    out.push(Lookup::Ec2Tags(source, vec![v.clone()]));
                } else if is_ec2_id(v) {
                    here.push(v.clone());
                }
            }
            if !here.is_empty() {
                out.push(Lookup::Ec2Tags(region, here));
            }
        }
        "autoscaling" if selfheal::clients::is_mutating(op) => {
            out.extend(form.get("InstanceId").map(|i| Lookup::GroupOf(i.to_string())));
        }
        "rds" if selfheal::clients::is_mutating(op) => {
            for (key, kind) in [
                ("DBInstanceIdentifier", "db"),
                ("DBClusterIdentifier", "cluster"),
                ("DBSnapshotIdentifier", "snapshot"),
                ("DBClusterSnapshotIdentifier", "cluster-snapshot"),
                ("SourceDBSnapshotIdentifier", "snapshot"),
                ("SourceDBClusterSnapshotIdentifier", "cluster-snapshot"),
                ("ResourceName", "arn"),
            ] {
                out.extend(form.get(key).map(|v| Lookup::Rds(kind, v.to_string())));
            }
        }
        "sts" if op == "sts:AssumeRole" => {
            if let Some(account) = form.get("RoleArn").and_then(|a| a.split(':').nth(4)) {
                out.push(Lookup::OrgPath(account.to_string()));
            }
        }
        _ => {}
    }
    out
}

type Job = (CallRecord, Vec<Lookup>, mpsc::Sender<Json>);

/// Runs the lookups on a thread of its own (with its own runtime: the observer is synchronous and
/// runs inside the caller's runtime), waiting for the answer.
fn resolve_blocking(r: &CallRecord, wanted: Vec<Lookup>) -> Option<Json> {
    static RESOLVER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let sender = RESOLVER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let endpoint = harness::moto_endpoint();
        std::thread::Builder::new()
            .name("iam-conditions-resolver".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                let mut configs: HashMap<(String, String), aws_types::SdkConfig> = HashMap::new();
                while let Ok((record, wanted, reply)) = rx.recv() {
                    let answer = rt.block_on(resolve(&endpoint, &mut configs, &record, &wanted));
                    let _ = reply.send(answer);
                }
            })
            .expect("resolver thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    sender.lock().unwrap_or_else(|p| p.into_inner()).send((r.clone(), wanted, tx)).ok()?;
    rx.recv().ok()
}

async fn sdk_for(
    endpoint: &str,
    configs: &mut HashMap<(String, String), aws_types::SdkConfig>,
    key: &str,
    region: &str,
) -> aws_types::SdkConfig {
    let k = (key.to_string(), region.to_string());
    if let Some(c) = configs.get(&k) {
        return c.clone();
    }
    // The emulator tells accounts apart by access key and checks no signature.
    let creds = aws_sdk_sts::config::Credentials::new(key, "resolver", None, None, "iam-conditions");
    let c = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .load()
        .await;
    configs.insert(k, c.clone());
    c
}

fn tag_map<'a>(pairs: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>) -> Json {
    let m: serde_json::Map<String, Json> =
        pairs.filter_map(|(k, v)| Some((k?.to_string(), Json::String(v.unwrap_or_default().to_string())))).collect();
    Json::Object(m)
}

async fn resolve(
    endpoint: &str,
    configs: &mut HashMap<(String, String), aws_types::SdkConfig>,
    r: &CallRecord,
    wanted: &[Lookup],
) -> Json {
    let key = r.access_key_id.clone().unwrap_or_else(|| "testing".into());
    let region = r.region.clone().unwrap_or_else(|| STACK_REGION.to_string());
    let mut ec2_tags = serde_json::Map::new();
    let mut groups = serde_json::Map::new();
    let mut rds = serde_json::Map::new();
    let mut org_path = Json::Null;
    for w in wanted {
        match w {
            Lookup::Ec2Tags(in_region, ids) => {
                let ec2 = aws_sdk_ec2::Client::new(&sdk_for(endpoint, configs, &key, in_region).await);
                let filter = aws_sdk_ec2::types::Filter::builder().name("resource-id").set_values(Some(ids.clone()));
                let Ok(out) = ec2.describe_tags().filters(filter.build()).send().await else { continue };
                for id in ids {
                    let tags = out.tags().iter().filter(|t| t.resource_id() == Some(id.as_str()));
                    ec2_tags.insert(id.clone(), tag_map(tags.map(|t| (t.key(), t.value()))));
                }
            }
            Lookup::GroupOf(instance) => {
                let asg = aws_sdk_autoscaling::Client::new(&sdk_for(endpoint, configs, &key, &region).await);
                let Ok(out) = asg.describe_auto_scaling_instances().instance_ids(instance).send().await else {
                    continue;
                };
                let Some(name) = out.auto_scaling_instances().first().and_then(|i| i.auto_scaling_group_name()) else {
                    continue;
                };
                let Ok(g) = asg.describe_auto_scaling_groups().auto_scaling_group_names(name).send().await else {
                    continue;
                };
                if let Some(g) = g.auto_scaling_groups().first() {
                    let tags = tag_map(g.tags().iter().map(|t| (t.key(), t.value())));
                    groups.insert(instance.clone(), json!({"arn": g.auto_scaling_group_arn(), "tags": tags}));
                }
            }
            Lookup::Rds(kind, id) => {
                // An ARN names its own region (a DR copy's source); an identifier is in the call's.
                let in_region = id.strip_prefix("arn:").and_then(|a| a.split(':').nth(2)).unwrap_or(&region);
                let name = if id.starts_with("arn:") { id.rsplit(':').next().unwrap_or(id) } else { id };
                let client = aws_sdk_rds::Client::new(&sdk_for(endpoint, configs, &key, in_region).await);
                let found: Option<(Option<String>, Json)> = match *kind {
                    "db" => {
                        client.describe_db_instances().db_instance_identifier(name).send().await.ok().and_then(|o| {
                            o.db_instances().first().map(|d| {
                                let tags = tag_map(d.tag_list().iter().map(|t| (t.key(), t.value())));
                                (d.db_instance_arn().map(str::to_string), tags)
                            })
                        })
                    }
                    "cluster" => {
                        client.describe_db_clusters().db_cluster_identifier(name).send().await.ok().and_then(|o| {
                            o.db_clusters().first().map(|d| {
                                let tags = tag_map(d.tag_list().iter().map(|t| (t.key(), t.value())));
                                (d.db_cluster_arn().map(str::to_string), tags)
                            })
                        })
                    }
                    "snapshot" => {
                        client.describe_db_snapshots().db_snapshot_identifier(name).send().await.ok().and_then(|o| {
                            o.db_snapshots().first().map(|d| {
                                let tags = tag_map(d.tag_list().iter().map(|t| (t.key(), t.value())));
                                (d.db_snapshot_arn().map(str::to_string), tags)
                            })
                        })
                    }
                    "cluster-snapshot" => client
                        .describe_db_cluster_snapshots()
                        .db_cluster_snapshot_identifier(name)
                        .send()
                        .await
                        .ok()
                        .and_then(|o| {
                            o.db_cluster_snapshots().first().map(|d| {
                                let tags = tag_map(d.tag_list().iter().map(|t| (t.key(), t.value())));
                                (d.db_cluster_snapshot_arn().map(str::to_string), tags)
                            })
                        }),
                    _ => client.list_tags_for_resource().resource_name(id).send().await.ok().map(|o| {
                        let tags = tag_map(o.tag_list().iter().map(|t| (t.key(), t.value())));
                        (Some(id.clone()), tags)
                    }),
                };
                if let Some((arn, tags)) = found {
                    rds.insert(format!("{kind}/{id}"), json!({"arn": arn, "tags": tags}));
                }
            }
            Lookup::OrgPath(account) => {
                let org = aws_sdk_organizations::Client::new(&sdk_for(endpoint, configs, &key, &region).await);
                let mut path = Vec::new();
                let mut child = account.clone();
                // Up to the root (moto's organization, when the account is in it).
                for _ in 0..10 {
                    let Ok(out) = org.list_parents().child_id(&child).send().await else { break };
                    let Some(p) = out.parents().first().and_then(|p| p.id()) else { break };
                    path.push(p.to_string());
                    if p.starts_with("r-") {
                        break;
                    }
                    child = p.to_string();
                }
                if path.last().is_some_and(|p| p.starts_with("r-")) {
                    path.reverse();
                    org_path = Json::String(format!("{ORG}/{}/", path.join("/")));
                }
            }
        }
    }
    json!({"ec2": ec2_tags, "groups": groups, "rds": rds, "orgPath": org_path})
}

// ---------------------------------------------------------------- request parameters

/// A query-protocol form body, decoded.
#[derive(Debug, Default)]
struct Form(BTreeMap<String, String>);

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
        {
            (b'%', Some(h), Some(l)) => Some((h * 16 + l) as u8),
            _ => None,
        };
        match (bytes[i], escaped) {
            (_, Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b'+', None) => out.push(b' '),
            (b, None) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Form {
    fn parse(body: &str) -> Form {
        let body = body.trim();
        if body.starts_with('{') || body.starts_with('<') {
            return Form::default();
        }
        Form(
            body.split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).or_else(|| self.0.get(&format!("{key}.1")).map(String::as_str))
    }

    /// `prefix.1`, `prefix.2`, ... (and `prefix` itself).
    fn list(&self, prefix: &str) -> Vec<String> {
        let mut out: Vec<(usize, String)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(prefix)?;
                if rest.is_empty() {
                    return Some((0, v.clone()));
                }
                rest.strip_prefix('.')?.parse::<usize>().ok().map(|n| (n, v.clone()))
            })
            .collect();
        out.sort();
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// Tags under `prefix`: `prefix.<anything>.Key` with its `.Value`.
    fn tags(&self, prefix: &str) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|(k, key)| {
                let middle = k.strip_prefix(prefix)?.strip_prefix('.')?.strip_suffix(".Key")?;
                // Not a deeper structure's key (`TagSpecification.1.Tag.1.Key` under `TagSpecification`).
                if middle.split('.').count() > 2 {
                    return None;
                }
                let value = self.0.get(&format!("{prefix}.{middle}.Value")).cloned().unwrap_or_default();
                Some((key.clone(), value))
            })
            .collect()
    }

    /// EC2's `TagSpecification.N`: (resource type, tags).
    fn tag_specifications(&self) -> Vec<(String, Vec<(String, String)>)> {
        let mut out = Vec::new();
        for n in 1.. {
            let Some(rt) = self.0.get(&format!("TagSpecification.{n}.ResourceType")) else { break };
            out.push((rt.clone(), self.tags(&format!("TagSpecification.{n}.Tag"))));
        }
        out
    }
}

// ---------------------------------------------------------------- the templates, resolved

fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(harness::root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn hub_template() -> &'static Value {
    static T: OnceLock<Value> = OnceLock::new();
    T.get_or_init(|| serde_norway::from_str(&repo_file("infra/template.yaml")).expect("infra/template.yaml"))
}

fn member_template() -> &'static Value {
    static T: OnceLock<Value> = OnceLock::new();
    T.get_or_init(|| serde_norway::from_str(&repo_file("infra/member.yaml")).expect("infra/member.yaml"))
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping().and_then(|m| m.get(key))
}

fn tag_of(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) => Some(t.tag.to_string().trim_start_matches('!').to_string()),
        _ => None,
    }
}

type Params = BTreeMap<String, String>;

/// A template, its parameter values and what its resources stand for in the tests (`LedgerTable.Arn`,
/// `EventsTopic` -> the real ARN); an unbound resource resolves to `unbound:<name>`, which matches
/// nothing real.
struct Stack<'a> {
    t: &'a Value,
    params: Params,
    bindings: BTreeMap<String, String>,
}

impl Stack<'_> {
    /// `t`'s parameters at their defaults, `set` over them, and the pseudo parameters.
    fn new<'a>(t: &'a Value, account: &str, set: &[(&str, String)]) -> Stack<'a> {
        let mut params = Params::new();
        for (k, p) in get(t, "Parameters").and_then(Value::as_mapping).into_iter().flatten() {
            let default = match get(p, "Default") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Bool(b)) => b.to_string(),
                _ => String::new(),
            };
            params.insert(k.as_str().unwrap_or_default().to_string(), default);
        }
        for (k, v) in [
            ("AWS::AccountId", account),
            ("AWS::Region", STACK_REGION),
            ("AWS::Partition", "aws"),
            ("AWS::StackName", STACK_NAME),
            ("AWS::URLSuffix", "amazonaws.com"),
        ] {
            params.insert(k.to_string(), v.to_string());
        }
        for (k, v) in set {
            assert!(params.contains_key(*k), "the template has no parameter {k}");
            params.insert(k.to_string(), v.clone());
        }
        Stack { t, params, bindings: BTreeMap::new() }
    }

    fn bind(mut self, name: &str, value: Option<&str>) -> Self {
        if let Some(v) = value {
            self.bindings.insert(name.to_string(), v.to_string());
        }
        self
    }

    fn reference(&self, name: &str) -> Result<String, String> {
        if let Some(v) = self.params.get(name).or_else(|| self.bindings.get(name)) {
            return Ok(v.clone());
        }
        let resource = name.split('.').next().unwrap_or(name);
        if get(self.t, "Resources").and_then(|r| get(r, resource)).is_some() {
            return Ok(format!("unbound:{name}"));
        }
        Err(format!("nothing named {name} in the template"))
    }

    fn sub(&self, text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
        let (mut out, mut rest) = (String::new(), text);
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let end = after.find('}').ok_or_else(|| format!("!Sub: unclosed ${{ in {text:?}"))?;
            let name = &after[..end];
            match name.strip_prefix('!') {
                Some(literal) => out.push_str(&format!("${{{literal}}}")),
                None => match vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&self.reference(name)?),
                },
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn condition(&self, name: &str) -> Result<bool, String> {
        let def = get(self.t, "Conditions").and_then(|c| get(c, name)).ok_or_else(|| format!("no condition {name}"))?;
        self.condition_value(def)
    }

    fn condition_value(&self, v: &Value) -> Result<bool, String> {
        let Value::Tagged(t) = v else { return Err(format!("not a condition function: {v:?}")) };
        let args: &[Value] = t.value.as_sequence().map(Vec::as_slice).unwrap_or(&[]);
        match tag_of(v).as_deref() {
            Some("Condition") => self.condition(t.value.as_str().unwrap_or_default()),
            Some("Not") if args.len() == 1 => Ok(!self.condition_value(&args[0])?),
            Some("And") => args.iter().try_fold(true, |acc, a| Ok(acc & self.condition_value(a)?)),
            Some("Or") => args.iter().try_fold(false, |acc, a| Ok(acc | self.condition_value(a)?)),
            Some("Equals") if args.len() == 2 => Ok(self.resolve(&args[0])? == self.resolve(&args[1])?),
            _ => Err(format!("cannot evaluate the condition {v:?}")),
        }
    }

    /// `v` with its intrinsics evaluated, as JSON; `None` for `AWS::NoValue`.
    fn resolve(&self, v: &Value) -> Result<Option<Json>, String> {
        match v {
            Value::Null => Ok(Some(Json::Null)),
            Value::Bool(b) => Ok(Some(Json::Bool(*b))),
            Value::Number(n) => Ok(Some(Json::String(n.to_string()))),
            Value::String(s) => Ok(Some(Json::String(s.clone()))),
            Value::Sequence(items) => {
                let mut out = Vec::new();
                for i in items {
                    out.extend(self.resolve(i)?);
                }
                Ok(Some(Json::Array(out)))
            }
            Value::Mapping(m) => {
                let mut out = serde_json::Map::new();
                for (k, i) in m {
                    let k = k.as_str().ok_or_else(|| format!("a non-string key: {k:?}"))?;
                    if let Some(x) = self.resolve(i)? {
                        out.insert(k.to_string(), x);
                    }
                }
                Ok(Some(Json::Object(out)))
            }
            Value::Tagged(t) => {
                let tag = tag_of(v).unwrap_or_default();
                let parts: &[Value] = t.value.as_sequence().map(Vec::as_slice).unwrap_or(&[]);
                let text = |x: &Value| -> Result<String, String> {
                    match self.resolve(x)? {
                        Some(Json::String(s)) => Ok(s),
                        other => Err(format!("!{tag}: expected a string, got {other:?}")),
                    }
                };
                match (tag.as_str(), &t.value) {
                    ("Ref", Value::String(name)) if name == "AWS::NoValue" => Ok(None),
                    ("Ref", Value::String(name)) => self.reference(name).map(|s| Some(Json::String(s))),
                    ("GetAtt", Value::String(dotted)) => self.reference(dotted).map(|s| Some(Json::String(s))),
                    ("GetAtt", _) if parts.len() == 2 => {
                        let dotted = format!("{}.{}", text(&parts[0])?, text(&parts[1])?);
                        self.reference(&dotted).map(|s| Some(Json::String(s)))
                    }
                    ("Sub", Value::String(s)) => self.sub(s, &BTreeMap::new()).map(|s| Some(Json::String(s))),
                    ("Sub", _) if parts.len() == 2 => {
                        let mut vars = BTreeMap::new();
                        for (k, x) in parts[1].as_mapping().into_iter().flatten() {
                            vars.insert(k.as_str().unwrap_or_default().to_string(), text(x)?);
                        }
                        let Value::String(template) = &parts[0] else { return Err("!Sub: not a literal".into()) };
                        self.sub(template, &vars).map(|s| Some(Json::String(s)))
                    }
                    ("Join", _) if parts.len() == 2 => {
                        let Value::String(sep) = &parts[0] else { return Err("!Join: delimiter not literal".into()) };
                        let items = match self.resolve(&parts[1])? {
                            Some(Json::Array(items)) => items,
                            other => return Err(format!("!Join: expected a list, got {other:?}")),
                        };
                        let items: Vec<String> = items
                            .iter()
                            .map(|i| i.as_str().map(str::to_string).ok_or_else(|| format!("!Join: {i}")))
                            .collect::<Result<_, _>>()?;
                        Ok(Some(Json::String(items.join(sep))))
                    }
                    ("Split", _) if parts.len() == 2 => {
                        let Value::String(sep) = &parts[0] else { return Err("!Split: delimiter not literal".into()) };
                        let s = text(&parts[1])?;
                        Ok(Some(Json::Array(s.split(sep.as_str()).map(|p| Json::String(p.to_string())).collect())))
                    }
                    ("If", _) if parts.len() == 3 => {
                        let c = parts[0].as_str().ok_or("!If: condition name")?;
                        self.resolve(if self.condition(c)? { &parts[1] } else { &parts[2] })
                    }
                    _ => Err(format!("cannot evaluate !{tag} {:?}", t.value)),
                }
            }
        }
    }
}

/// One policy statement, resolved.
#[derive(Debug, Clone)]
struct Statement {
    sid: String,
    allow: bool,
    actions: Vec<String>,
    resources: Vec<String>,
    condition: Option<Json>,
    /// Trust policies: the AWS principals (account roots or ARNs) and services.
    principals: Vec<String>,
}

fn strings(v: &Json) -> Vec<String> {
    match v {
        Json::String(s) => vec![s.clone()],
        Json::Array(items) => items.iter().flat_map(strings).collect(),
        Json::Bool(b) => vec![b.to_string()],
        Json::Number(n) => vec![n.to_string()],
        other => vec![other.to_string()],
    }
}

fn statements_of(doc: &Json, what: &str) -> Result<Vec<Statement>, String> {
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
fn role_policy(stack: &Stack, role: &Value, what: &str) -> Result<Vec<Statement>, String> {
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

fn trust_policy(stack: &Stack, role: &Value, what: &str) -> Result<Vec<Statement>, String> {
    let doc = get(role, "Properties")
        .and_then(|p| get(p, "AssumeRolePolicyDocument"))
        .ok_or_else(|| format!("{what}: no trust policy"))?;
    let doc = stack.resolve(doc)?.ok_or_else(|| format!("{what}: an empty trust policy"))?;
    statements_of(&doc, what)
}

/// The hub role of `function` (the template's function whose binary is `function`).
fn hub_role(function: &str) -> Result<&'static Value, String> {
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
fn member_role(stack: &Stack, name: &str) -> Result<Option<&'static Value>, String> {
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

// ---------------------------------------------------------------- IAM, the subset the templates use

/// The request context: condition key (lower case) -> values. A key that is absent is not in it.
type Context = BTreeMap<String, Vec<String>>;

const KNOWN_KEYS: [&str; 9] = [
    "aws:tagkeys",
    "ec2:createaction",
    "iam:passedtoservice",
    "aws:resourceaccount",
    "aws:resourceorgid",
    "aws:resourceorgpaths",
    "aws:principalarn",
    "aws:principalorgid",
    "sts:externalid",
];
const KNOWN_KEY_PREFIXES: [&str; 2] = ["aws:resourcetag/", "aws:requesttag/"];
const OPERATORS: [&str; 7] =
    ["StringEquals", "StringNotEquals", "StringLike", "StringNotLike", "ArnEquals", "ArnLike", "Null"];

fn known_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    KNOWN_KEYS.contains(&k.as_str()) || KNOWN_KEY_PREFIXES.iter().any(|p| k.starts_with(p) && k.len() > p.len())
}

/// The qualifier and operator of a condition block's name (`ForAnyValue:StringLike`).
fn operator(name: &str) -> Result<(Option<&str>, &str), String> {
    let (set, op) = match name.split_once(':') {
        Some((set, op)) => (Some(set), op),
        None => (None, name),
    };
    if !OPERATORS.contains(&op) || set.is_some_and(|s| !["ForAnyValue", "ForAllValues"].contains(&s)) {
        return Err(format!("unknown condition operator {name}"));
    }
    if op == "Null" && set.is_some() {
        return Err(format!("unknown condition operator {name}"));
    }
    Ok((set, op))
}

fn validate_condition(c: &Json) -> Result<(), String> {
    let blocks = c.as_object().ok_or_else(|| format!("Condition is not a mapping: {c}"))?;
    for (name, block) in blocks {
        operator(name)?;
        for key in block.as_object().ok_or_else(|| format!("{name}: not a mapping of keys"))?.keys() {
            if !known_key(key) {
                return Err(format!("unknown condition key {key}"));
            }
        }
    }
    Ok(())
}

/// IAM's wildcard matching: `*` any run of characters, `?` one.
fn glob(pattern: &str, s: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
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

fn action_matches(pattern: &str, action: &str) -> bool {
    glob(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
}

/// Whether one condition block holds in `context`; `Err` for what the evaluator does not know.
fn block_holds(name: &str, key: &str, wanted: &Json, context: &Context) -> Result<bool, String> {
    let (set, op) = operator(name)?;
    if !known_key(key) {
        return Err(format!("unknown condition key {key}"));
    }
    let wanted = strings(wanted);
    let have = context.get(&key.to_ascii_lowercase());
    if op == "Null" {
        let absent = have.is_none_or(|v| v.is_empty());
        return match wanted.as_slice() {
            [w] if w == "true" => Ok(absent),
            [w] if w == "false" => Ok(!absent),
            _ => Err(format!("Null takes true or false, got {wanted:?}")),
        };
    }
    let negated = op.contains("Not");
    let one = |v: &String| {
        wanted.iter().any(|w| match op {
            "StringEquals" | "StringNotEquals" => w == v,
            _ => glob(w, v),
        })
    };
    let values: &[String] = have.map(Vec::as_slice).unwrap_or(&[]);
    Ok(match (set, negated) {
        (Some("ForAllValues"), false) => values.iter().all(one),
        (Some("ForAllValues"), true) => values.iter().all(|v| !one(v)),
        (Some(_), false) => values.iter().any(one),
        (Some(_), true) => values.iter().any(|v| !one(v)),
        // A plain operator on an absent key: false, its negation true.
        (None, false) => values.iter().any(one),
        (None, true) => !values.iter().any(one),
    })
}

/// Why a statement's condition does not hold (`None`: it holds).
fn condition_fails(c: Option<&Json>, context: &Context) -> Result<Option<String>, String> {
    let Some(c) = c else { return Ok(None) };
    for (name, block) in c.as_object().ok_or("Condition is not a mapping")? {
        for (key, wanted) in block.as_object().ok_or("condition block is not a mapping")? {
            if !block_holds(name, key, wanted, context)? {
                let have = context.get(&key.to_ascii_lowercase());
                return Ok(Some(format!("{name} {key} {wanted} (the request has {have:?})")));
            }
        }
    }
    Ok(None)
}

/// One authorization IAM makes for a call.
#[derive(Debug, Clone, PartialEq)]
struct Request {
    action: String,
    resource: String,
    context: Context,
}

#[derive(Debug, Clone, PartialEq)]
enum Decision {
    Allowed { sid: String, conditioned: bool },
    Denied(String),
}

/// IAM's decision for `req` under `statements` (one identity policy, or one trust policy for
/// `principal`): an explicit Deny wins, else a matching Allow, else an implicit deny.
fn decide(statements: &[Statement], req: &Request, principal: Option<&str>) -> Result<Decision, String> {
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

// ---------------------------------------------------------------- what each call asks IAM

fn tag_context(ctx: &mut Context, prefix: &str, tags: &[(String, String)]) {
    for (k, v) in tags {
        ctx.insert(format!("{prefix}/{}", k.to_ascii_lowercase()), vec![v.clone()]);
    }
}

fn resource_tags(ctx: &mut Context, tags: &Json) {
    if let Some(m) = tags.as_object() {
        let pairs: Vec<(String, String)> =
            m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect();
        tag_context(ctx, "aws:resourcetag", &pairs);
    }
}

/// The tags a request writes (`aws:RequestTag/*`, `aws:TagKeys`; absent when it writes none).
fn request_tags(ctx: &mut Context, tags: &[(String, String)]) {
    tag_context(ctx, "aws:requesttag", tags);
    if !tags.is_empty() {
        ctx.insert("aws:tagkeys".into(), tags.iter().map(|(k, _)| k.clone()).collect());
    }
}

/// Where a call ran and as whom.
#[derive(Debug, Clone, PartialEq)]
enum Caller {
    Hub,
    Member { account: String, role: String },
}

struct Call<'a> {
    record: &'a CallRecord,
    account: String,
    region: String,
    form: Form,
    json: Json,
}

impl Call<'_> {
    fn observed(&self, path: &[&str]) -> Option<&Json> {
        path.iter().try_fold(self.record.observed.as_ref()?, |v, k| v.get(*k))
    }

    fn ec2_arn(&self, region: &str, id: &str) -> String {
        let (kind, owned) = match id.split('-').next().unwrap_or_default() {
            "i" => ("instance", true),
            "vol" => ("volume", true),
            "snap" => ("snapshot", false),
            "ami" => ("image", false),
            "eipalloc" => ("elastic-ip", true),
            "eni" => ("network-interface", true),
            "subnet" => ("subnet", true),
            "sg" => ("security-group", true),
            "lt" => ("launch-template", true),
            _ => ("unknown", true),
        };
        let account = if owned { self.account.as_str() } else { "" };
        format!("arn:aws:ec2:{region}:{account}:{kind}/{id}")
    }

    /// A request on an existing EC2 resource, with its tags as they were before the call.
    fn ec2_existing(&self, action: &str, id: &str, region: &str) -> Request {
        let mut context = Context::new();
        if let Some(tags) = self.observed(&["ec2", id]) {
            resource_tags(&mut context, tags);
        }
        Request { action: action.into(), resource: self.ec2_arn(region, id), context }
    }

    /// A resource created by the call, with the tags the request puts on it; and the implicit
    /// `ec2:CreateTags` a tag-on-create adds.
    fn ec2_created(&self, action: &str, kind: &str, region: &str, tags: &[(String, String)]) -> Vec<Request> {
        let account = if kind == "snapshot" { "" } else { self.account.as_str() };
        let resource = format!("arn:aws:ec2:{region}:{account}:{kind}/*");
        let mut context = Context::new();
        request_tags(&mut context, tags);
        let mut out = vec![Request { action: action.into(), resource: resource.clone(), context: context.clone() }];
        if !tags.is_empty() {
            let create = action.strip_prefix("ec2:").unwrap_or(action).to_string();
            context.insert("ec2:createaction".into(), vec![create]);
            out.push(Request { action: "ec2:CreateTags".into(), resource, context });
        }
        out
    }

    fn rds_existing(&self, action: &str, kind: &str, id: &str) -> Request {
        let found = self.observed(&["rds", &format!("{kind}/{id}")]);
        let arn = found.and_then(|f| f.get("arn")).and_then(Json::as_str).map(str::to_string).unwrap_or_else(|| {
            if id.starts_with("arn:") {
                id.to_string()
            } else {
                format!("arn:aws:rds:{}:{}:{kind}:{id}", self.region, self.account)
            }
        });
        let mut context = Context::new();
        if let Some(tags) = found.and_then(|f| f.get("tags")) {
            resource_tags(&mut context, tags);
        }
        Request { action: action.into(), resource: arn, context }
    }

    fn rds_created(&self, action: &str, kind: &str, id: &str, tags: &[(String, String)]) -> Vec<Request> {
        let resource = format!("arn:aws:rds:{}:{}:{kind}:{id}", self.region, self.account);
        let mut context = Context::new();
        request_tags(&mut context, tags);
        let mut out = vec![Request { action: action.into(), resource: resource.clone(), context: context.clone() }];
        if !tags.is_empty() {
            // RDS authorizes tags given on create as rds:AddTagsToResource on the new resource.
            out.push(Request { action: "rds:AddTagsToResource".into(), resource, context });
        }
        out
    }

    fn anywhere(&self, action: &str) -> Request {
        Request { action: action.into(), resource: "*".into(), context: Context::new() }
    }

    fn form(&self, key: &str) -> Result<String, String> {
        self.form
            .get(key)
            .map(str::to_string)
            .ok_or_else(|| format!("{}: no {key} in the request", self.record.operation))
    }

    fn path(&self) -> String {
        let uri = &self.record.uri;
        let after_scheme = uri.split_once("://").map(|(_, r)| r).unwrap_or(uri);
        let path = after_scheme.find('/').map(|i| &after_scheme[i..]).unwrap_or("/");
        percent_decode(path.split('?').next().unwrap_or(path))
    }

    /// The path segment after `after` (`/2013-04-01/hostedzone/Z1/rrset`, "hostedzone" -> "Z1").
    fn segment_after(&self, after: &str) -> Result<String, String> {
        let path = self.path();
        let segs: Vec<&str> = path.split('/').collect();
        segs.iter()
            .position(|s| *s == after)
            .and_then(|i| segs.get(i + 1))
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string())
            .ok_or_else(|| format!("{}: no {after}/<id> in {path}", self.record.operation))
    }

    /// The IAM authorizations the call needs.
    fn requests(&self) -> Result<Vec<Request>, String> {
        let op = self.record.operation.as_str();
        let (region, account) = (self.region.as_str(), self.account.as_str());
        let action = op.to_string();
        let one = |r: Request| Ok(vec![r]);
        match op {
            "sts:GetCallerIdentity" => Ok(vec![]), // needs no permission and cannot be denied
            "ec2:RebootInstances" | "ec2:StopInstances" | "ec2:StartInstances" | "ec2:TerminateInstances" => {
                let ids = self.form.list("InstanceId");
                if ids.is_empty() {
                    return Err(format!("{op}: no InstanceId"));
                }
                Ok(ids.iter().map(|id| self.ec2_existing(op, id, region)).collect())
            }
            "ec2:DescribeInstanceAttribute" => one(self.ec2_existing(op, &self.form("InstanceId")?, region)),
            "ec2:CreateTags" => {
                let tags = self.form.tags("Tag");
                let mut out = Vec::new();
                for id in self.form.list("ResourceId") {
                    let mut r = self.ec2_existing(op, &id, region);
                    request_tags(&mut r.context, &tags);
                    out.push(r);
                }
                Ok(out)
            }
            "ec2:AssociateAddress" => {
                let alloc = self.form("AllocationId").map_err(|e| format!("{e} (an EC2-Classic address?)"))?;
                let mut out = vec![self.ec2_existing(op, &alloc, region)];
                if let Some(i) = self.form.get("InstanceId") {
                    out.push(self.ec2_existing(op, i, region));
                }
                if let Some(n) = self.form.get("NetworkInterfaceId") {
                    out.push(self.ec2_existing(op, n, region));
                }
                Ok(out)
            }
            "ec2:RunInstances" => {
                if self.form.0.keys().any(|k| k.starts_with("IamInstanceProfile")) {
                    return Err("ec2:RunInstances with an instance profile: iam:PassRole is not modelled".into());
                }
                if self.form.0.keys().any(|k| k.starts_with("NetworkInterface.")) {
                    return Err("ec2:RunInstances with network interface specifications is not modelled".into());
                }
                let specs = self.form.tag_specifications();
                let tags_for = |kind: &str| -> Vec<(String, String)> {
                    specs.iter().filter(|(rt, _)| rt == kind).flat_map(|(_, t)| t.clone()).collect()
                };
                let mut out = Vec::new();
                // What it creates: the instance, its volumes and its network interface.
                for kind in ["instance", "volume", "network-interface"] {
                    out.extend(self.ec2_created(op, kind, region, &tags_for(kind)));
                }
                for (rt, _) in &specs {
                    if !["instance", "volume", "network-interface"].contains(&rt.as_str()) {
                        return Err(format!("ec2:RunInstances tags a {rt}, which is not modelled"));
                    }
                }
                // What it uses.
                let mut used: Vec<String> = ["ImageId", "SubnetId"]
                    .iter()
                    .filter_map(|k| self.form.get(k).map(|v| self.ec2_arn(region, v)))
                    .collect();
                used.extend(self.form.list("SecurityGroupId").iter().map(|g| self.ec2_arn(region, g)));
                if let Some(lt) = self.form.get("LaunchTemplate.LaunchTemplateId") {
                    used.push(self.ec2_arn(region, lt));
                }
                if let Some(k) = self.form.get("KeyName") {
                    used.push(format!("arn:aws:ec2:{region}:{account}:key-pair/{k}"));
                }
                out.extend(used.into_iter().map(|resource| Request {
                    action: action.clone(),
                    resource,
                    context: Context::new(),
                }));
                Ok(out)
            }
            "ec2:CreateSnapshot" => {
                let mut out = vec![self.ec2_existing(op, &self.form("VolumeId")?, region)];
                let tags: Vec<(String, String)> = self
                    .form
                    .tag_specifications()
                    .into_iter()
                    .filter(|(rt, _)| rt == "snapshot")
                    .flat_map(|(_, t)| t)
                    .collect();
                out.extend(self.ec2_created(op, "snapshot", region, &tags));
                Ok(out)
            }
            "ec2:CopySnapshot" => {
                let source_region = self.form("SourceRegion")?;
                let mut out = vec![self.ec2_existing(op, &self.form("SourceSnapshotId")?, &source_region)];
                let tags: Vec<(String, String)> = self
                    .form
                    .tag_specifications()
                    .into_iter()
                    .filter(|(rt, _)| rt == "snapshot")
                    .flat_map(|(_, t)| t)
                    .collect();
                out.extend(self.ec2_created(op, "snapshot", region, &tags));
                Ok(out)
            }
            "ec2:DeleteSnapshot" => one(self.ec2_existing(op, &self.form("SnapshotId")?, region)),
            "autoscaling:SetInstanceHealth" | "autoscaling:TerminateInstanceInAutoScalingGroup" => {
                let instance = self.form("InstanceId")?;
                let group = self.observed(&["groups", &instance]);
                let arn = group.and_then(|g| g.get("arn")).and_then(Json::as_str).map(str::to_string).unwrap_or_else(
                    || format!("arn:aws:autoscaling:{region}:{account}:autoScalingGroup:unknown:autoScalingGroupName/unknown-group-of-{instance}"),
                );
                let mut context = Context::new();
                if let Some(tags) = group.and_then(|g| g.get("tags")) {
                    resource_tags(&mut context, tags);
                }
                one(Request { action, resource: arn, context })
            }
            "rds:RebootDBInstance" | "rds:PromoteReadReplica" | "rds:ModifyDBInstance" | "rds:StopDBInstance" => {
                one(self.rds_existing(op, "db", &self.form("DBInstanceIdentifier")?))
            }
            "rds:FailoverDBCluster" | "rds:ModifyDBCluster" => {
                one(self.rds_existing(op, "cluster", &self.form("DBClusterIdentifier")?))
            }
            "rds:AddTagsToResource" => {
                let mut r = self.rds_existing(op, "arn", &self.form("ResourceName")?);
                request_tags(&mut r.context, &self.form.tags("Tags"));
                one(r)
            }
            "rds:CreateDBSnapshot" => {
                let mut out = vec![self.rds_existing(op, "db", &self.form("DBInstanceIdentifier")?)];
                out.extend(self.rds_created(
                    op,
                    "snapshot",
                    &self.form("DBSnapshotIdentifier")?,
                    &self.form.tags("Tags"),
                ));
                Ok(out)
            }
            "rds:CreateDBClusterSnapshot" => {
                let mut out = vec![self.rds_existing(op, "cluster", &self.form("DBClusterIdentifier")?)];
                let id = self.form("DBClusterSnapshotIdentifier")?;
                out.extend(self.rds_created(op, "cluster-snapshot", &id, &self.form.tags("Tags")));
                Ok(out)
            }
            "rds:CopyDBSnapshot" => {
                let mut out = vec![self.rds_existing(op, "snapshot", &self.form("SourceDBSnapshotIdentifier")?)];
                let id = self.form("TargetDBSnapshotIdentifier")?;
                out.extend(self.rds_created(op, "snapshot", &id, &self.form.tags("Tags")));
                Ok(out)
            }
            "rds:CopyDBClusterSnapshot" => {
                let source = self.form("SourceDBClusterSnapshotIdentifier")?;
                let mut out = vec![self.rds_existing(op, "cluster-snapshot", &source)];
                let id = self.form("TargetDBClusterSnapshotIdentifier")?;
                out.extend(self.rds_created(op, "cluster-snapshot", &id, &self.form.tags("Tags")));
                Ok(out)
            }
            "rds:DeleteDBSnapshot" => one(self.rds_existing(op, "snapshot", &self.form("DBSnapshotIdentifier")?)),
            "rds:DeleteDBClusterSnapshot" => {
                one(self.rds_existing(op, "cluster-snapshot", &self.form("DBClusterSnapshotIdentifier")?))
            }
            "route53:ListHealthChecks" | "route53:ListHostedZones" | "route53:ListHostedZonesByName" => {
                one(self.anywhere(op))
            }
            "route53:GetHealthCheck" | "route53:GetHealthCheckStatus" | "route53:UpdateHealthCheck" => one(Request {
                action,
                resource: format!("arn:aws:route53:::healthcheck/{}", self.segment_after("healthcheck")?),
                context: Context::new(),
            }),
            "route53:GetHostedZone" | "route53:ListResourceRecordSets" | "route53:ChangeResourceRecordSets" => {
                one(Request {
                    action,
                    resource: format!("arn:aws:route53:::hostedzone/{}", self.segment_after("hostedzone")?),
                    context: Context::new(),
                })
            }
            "route53:GetChange" => one(Request {
                action,
                resource: format!("arn:aws:route53:::change/{}", self.segment_after("change")?),
                context: Context::new(),
            }),
            "route53:ListTagsForResource" => {
                let path = self.path();
                let kind = if path.contains("/tags/healthcheck/") { "healthcheck" } else { "hostedzone" };
                let id = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or_default();
                one(Request { action, resource: format!("arn:aws:route53:::{kind}/{id}"), context: Context::new() })
            }
            "backup:CreateBackupPlan" => one(Request {
                action,
                resource: format!("arn:aws:backup:{region}:{account}:backup-plan:*"),
                context: Context::new(),
            }),
            "backup:GetBackupPlan" | "backup:UpdateBackupPlan" => one(Request {
                action,
                resource: format!("arn:aws:backup:{region}:{account}:backup-plan:{}", self.segment_after("plans")?),
                context: Context::new(),
            }),
            "backup:CreateBackupVault" | "backup:DescribeBackupVault" => one(Request {
                action,
                resource: format!(
                    "arn:aws:backup:{region}:{account}:backup-vault:{}",
                    self.segment_after("backup-vaults")?
                ),
                context: Context::new(),
            }),
            "sns:Publish" => one(Request { action, resource: self.form("TopicArn")?, context: Context::new() }),
            _ if op.starts_with("dynamodb:") => {
                // One table, or the tables a batch names.
                let mut tables: Vec<String> =
                    self.json.get("TableName").and_then(Json::as_str).map(str::to_string).into_iter().collect();
                if op == "dynamodb:BatchWriteItem" || op == "dynamodb:BatchGetItem" {
                    let items = self.json.get("RequestItems").and_then(Json::as_object);
                    tables.extend(items.into_iter().flat_map(|m| m.keys().cloned()));
                }
                if tables.is_empty() {
                    return Err(format!("{op}: no table named (TableName, or a batch's RequestItems)"));
                }
                Ok(tables
                    .into_iter()
                    .map(|t| Request {
                        action: action.clone(),
                        resource: format!("arn:aws:dynamodb:{region}:{account}:table/{t}"),
                        context: Context::new(),
                    })
                    .collect())
            }
            "sts:AssumeRole" => {
                // The identity side; the member role's trust is evaluated beside it.
                let role = self.form("RoleArn")?;
                let role_account = role.split(':').nth(4).unwrap_or_default().to_string();
                let path = self
                    .observed(&["orgPath"])
                    .and_then(Json::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{ORG}/r-selfheal/"));
                let context = Context::from([
                    ("aws:resourceaccount".to_string(), vec![role_account]),
                    ("aws:resourceorgid".to_string(), vec![ORG.to_string()]),
                    ("aws:resourceorgpaths".to_string(), vec![path]),
                ]);
                one(Request { action, resource: role, context })
            }
            _ if reads_anywhere(op) => one(self.anywhere(op)),
            _ => Err(format!("{op}: this evaluator does not model how IAM authorizes it")),
        }
    }
}

/// Reads of services whose statements grant reads on `*` only (no read there is scoped to a
/// resource or conditioned), so any read's resource can stand as `*`: EC2, Auto Scaling and RDS
/// `Describe*`, RDS `ListTagsForResource`, CloudWatch and AWS Backup listings, AWS Organizations.
/// Route 53, DynamoDB and AWS Backup's per-resource reads are scoped, and modelled one by one.
fn reads_anywhere(op: &str) -> bool {
    let (service, name) = op.split_once(':').unwrap_or(("", op));
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
    match service {
        "ec2" | "autoscaling" => starts(&["Describe"]) && name != "DescribeInstanceAttribute",
        "rds" => starts(&["Describe"]) || name == "ListTagsForResource",
        "cloudwatch" => starts(&["Describe", "Get", "List"]),
        "backup" => starts(&["List"]),
        "organizations" => starts(&["List", "Describe"]),
        _ => false,
    }
}

// ---------------------------------------------------------------- evaluation

/// What a deployment of the templates looks like for a function's configuration.
#[derive(Debug, Clone)]
pub(crate) struct Deployment {
    pub function: String,
    pub hub_account: String,
    pub opt_in_value: String,
    pub ledger_table: String,
    pub topic_arn: Option<String>,
    pub member_accounts: Vec<String>,
    pub member_org_units: Vec<String>,
    /// The hub's `MemberExternalId` (what the functions present) and the member stacks'
    /// `ExternalId` (what the roles require); the same in a correct deployment.
    pub hub_external_id: String,
    pub member_external_id: String,
}

impl Deployment {
    /// The deployment the function's configuration implies: the template sets each variable from a
    /// parameter, so the parameters are read back from the variables.
    pub(crate) fn of(config: &CommonConfig) -> Deployment {
        let external = config.fleet.external_id.clone().unwrap_or_default();
        Deployment {
            function: config.function.clone(),
            hub_account: config.fleet.home_account.clone().unwrap_or_else(|| DEFAULT_HUB.to_string()),
            opt_in_value: config.opt_in_value.clone(),
            ledger_table: config.ledger_table.clone(),
            topic_arn: config.topic_arn.clone(),
            member_accounts: config.fleet.accounts.keys().cloned().collect(),
            member_org_units: config.fleet.org_units.clone(),
            hub_external_id: external.clone(),
            member_external_id: external,
        }
    }

    fn serves_members(&self) -> bool {
        !self.member_accounts.is_empty() || !self.member_org_units.is_empty()
    }

    fn hub_stack(&self) -> Stack<'static> {
        let org = if self.serves_members() { ORG } else { "" };
        Stack::new(
            hub_template(),
            &self.hub_account,
            &[
                ("OptInTagValue", self.opt_in_value.clone()),
                ("OrganizationId", org.to_string()),
                ("MemberAccounts", self.member_accounts.join(",")),
                ("MemberOrgUnits", self.member_org_units.join(",")),
                ("MemberExternalId", self.hub_external_id.clone()),
            ],
        )
        .bind(
            "LedgerTable.Arn",
            Some(&format!("arn:aws:dynamodb:{STACK_REGION}:{}:table/{}", self.hub_account, self.ledger_table)),
        )
        .bind("EventsTopic", self.topic_arn.as_deref())
    }

    fn member_stack(&self, account: &str) -> Stack<'static> {
        Stack::new(
            member_template(),
            account,
            &[
                ("HubAccountId", self.hub_account.clone()),
                ("HubStackName", STACK_NAME.to_string()),
                ("OrganizationId", ORG.to_string()),
                ("ExternalId", self.member_external_id.clone()),
                ("OptInTagValue", self.opt_in_value.clone()),
            ],
        )
    }

    fn hub_role_arn(&self) -> String {
        format!("arn:aws:iam::{}:role/{STACK_NAME}-{}", self.hub_account, self.function)
    }
}

/// What an evaluation covered and found.
#[derive(Debug, Default, Clone)]
pub(crate) struct Evaluation {
    /// Calls evaluated (GetCallerIdentity aside).
    pub calls: usize,
    /// Authorizations asked of IAM (a call may need several: each resource, an implicit CreateTags).
    pub requests: usize,
    /// Of those, the ones a statement with a Condition allowed (the conditions were evaluated and held).
    pub conditioned: usize,
    /// Trust policies evaluated (one per AssumeRole).
    pub trusts: usize,
    /// Calls made in member accounts, through a member role.
    pub member_calls: usize,
    /// Allowed authorizations by statement: "<role>/<Sid> <action>" -> count.
    pub by_statement: BTreeMap<String, usize>,
    /// One line per authorization IAM would refuse...
    pub denials: Vec<String>,
    /// ...and its (action, resource), in the same order.
    pub denied: Vec<(String, String)>,
    /// The [`KNOWN_MISMATCHES`] met (by index), which [`assert_allowed`] let pass.
    pub known: BTreeSet<usize>,
}

impl Evaluation {
    pub(crate) fn summary(&self) -> String {
        let mut s = format!(
            "{} calls ({} in member accounts), {} authorizations ({} allowed by a conditioned statement), {} trust \
             policies; {} denied",
            self.calls,
            self.member_calls,
            self.requests,
            self.conditioned,
            self.trusts,
            self.denials.len()
        );
        for (k, n) in &self.by_statement {
            s.push_str(&format!("\n  {n:>4}  {k}"));
        }
        s
    }

    fn add(&mut self, other: &Evaluation) {
        self.calls += other.calls;
        self.requests += other.requests;
        self.conditioned += other.conditioned;
        self.trusts += other.trusts;
        self.member_calls += other.member_calls;
        for (k, n) in &other.by_statement {
            *self.by_statement.entry(k.clone()).or_default() += n;
        }
        self.denials.extend(other.denials.iter().cloned());
        self.denied.extend(other.denied.iter().cloned());
        self.known.extend(other.known.iter().copied());
    }

    fn deny(&mut self, action: &str, resource: &str, text: String) {
        self.denials.push(text);
        self.denied.push((action.to_string(), resource.to_string()));
    }
}

/// The credentials each AssumeRole in the log handed out: access key -> (account, role name).
fn assumed_keys(records: &[CallRecord]) -> BTreeMap<String, (String, String)> {
    let between = |text: &str, tag: &str| -> Option<String> {
        let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
        let end = text[start..].find(&format!("</{tag}>"))? + start;
        Some(text[start..end].trim().to_string())
    };
    let mut out = BTreeMap::new();
    for r in records.iter().filter(|r| r.operation == "sts:AssumeRole" && r.status == Some(200)) {
        let text = r.response.as_deref().unwrap_or_default();
        let (Some(key), Some(arn)) = (between(text, "AccessKeyId"), between(text, "Arn")) else { continue };
        // arn:aws:sts::111111111111:assumed-role/selfheal-instance-healer/session
        let account = arn.split(':').nth(4).unwrap_or_default().to_string();
        let role = arn.split('/').nth(1).unwrap_or_default().to_string();
        out.insert(key, (account, role));
    }
    out
}

/// Evaluates every recorded call of `deployment.function` against the templates.
pub(crate) fn evaluate(deployment: &Deployment, records: &[CallRecord]) -> Result<Evaluation, String> {
    let hub = deployment.hub_stack();
    let hub_policy =
        role_policy(&hub, hub_role(&deployment.function)?, &format!("hub role of {}", deployment.function))?;
    let assumed = assumed_keys(records);
    // (account, role) -> the member role's statements, `None` when the member stack has no such role.
    let mut member_policies: BTreeMap<(String, String), Option<Vec<Statement>>> = BTreeMap::new();
    let mut eval = Evaluation::default();
    for (n, r) in records.iter().enumerate() {
        if r.operation == "sts:GetCallerIdentity" {
            continue;
        }
        let caller = match r.access_key_id.as_ref().and_then(|k| assumed.get(k)) {
            Some((account, role)) => Caller::Member { account: account.clone(), role: role.clone() },
            None => Caller::Hub,
        };
        let call = Call {
            record: r,
            account: match &caller {
                Caller::Hub => deployment.hub_account.clone(),
                Caller::Member { account, .. } => account.clone(),
            },
            region: r.region.clone().unwrap_or_else(|| STACK_REGION.to_string()),
            form: Form::parse(&r.body),
            json: serde_json::from_str(&r.body).unwrap_or(Json::Null),
        };
        let who = match &caller {
            Caller::Hub => format!("{STACK_NAME}-{} (hub {})", deployment.function, deployment.hub_account),
            Caller::Member { account, role } => format!("{role} (member {account})"),
        };
        let requests = call.requests().map_err(|e| format!("call {n} ({who}): {e}"))?;
        eval.calls += 1;
        let policy = match &caller {
            Caller::Hub => &hub_policy,
            Caller::Member { account, role } => {
                eval.member_calls += 1;
                let key = (account.clone(), role.clone());
                if !member_policies.contains_key(&key) {
                    let stack = deployment.member_stack(account);
                    let loaded = match member_role(&stack, role)? {
                        Some(res) => Some(role_policy(&stack, res, &format!("member role {role}"))?),
                        None => None,
                    };
                    member_policies.insert(key.clone(), loaded);
                }
                match &member_policies[&key] {
                    Some(policy) => policy,
                    None => {
                        let text = format!(
                            "{} in {account}: {} as {role}: infra/member.yaml creates no role {role}",
                            deployment.function, r.operation
                        );
                        eval.deny(&r.operation, &format!("arn:aws:iam::{account}:role/{role}"), text);
                        continue;
                    }
                }
            }
        };
        for req in &requests {
            eval.requests += 1;
            match decide(policy, req, None)? {
                Decision::Allowed { sid, conditioned } => {
                    eval.conditioned += usize::from(conditioned);
                    let role = match &caller {
                        Caller::Hub => "hub",
                        Caller::Member { .. } => "member",
                    };
                    *eval.by_statement.entry(format!("{role}/{sid} {}", req.action)).or_default() += 1;
                }
                Decision::Denied(why) => eval.deny(
                    &req.action,
                    &req.resource,
                    format!(
                        "{}: {} as {who} on {} with {:?}: {why}",
                        deployment.function, req.action, req.resource, req.context
                    ),
                ),
            }
        }
        // Cross-account: the member role's trust policy must let the hub role in too.
        if r.operation == "sts:AssumeRole" && matches!(caller, Caller::Hub) {
            let role_arn = call.form("RoleArn")?;
            let account = role_arn.split(':').nth(4).unwrap_or_default().to_string();
            let role = role_arn.rsplit('/').next().unwrap_or_default().to_string();
            if account == deployment.hub_account {
                continue;
            }
            eval.trusts += 1;
            let stack = deployment.member_stack(&account);
            let Some(res) = member_role(&stack, &role)? else {
                let text = format!(
                    "{}: sts:AssumeRole of {role_arn}: infra/member.yaml creates no role {role}",
                    deployment.function
                );
                eval.deny("sts:AssumeRole", &role_arn, text);
                continue;
            };
            let trust = trust_policy(&stack, res, &format!("trust of member role {role}"))?;
            let mut context = Context::from([
                ("aws:principalarn".to_string(), vec![deployment.hub_role_arn()]),
                ("aws:principalorgid".to_string(), vec![ORG.to_string()]),
            ]);
            if let Some(x) = call.form.get("ExternalId") {
                context.insert("sts:externalid".into(), vec![x.to_string()]);
            }
            let req = Request { action: "sts:AssumeRole".into(), resource: role_arn.clone(), context };
            match decide(&trust, &req, Some(&deployment.hub_role_arn()))? {
                Decision::Allowed { sid, conditioned } => {
                    eval.conditioned += usize::from(conditioned);
                    *eval.by_statement.entry(format!("trust/{sid} sts:AssumeRole")).or_default() += 1;
                }
                Decision::Denied(why) => {
                    let text = format!(
                        "{}: the trust policy of {role_arn} refuses {} with {:?}: {why}",
                        deployment.function,
                        deployment.hub_role_arn(),
                        req.context
                    );
                    eval.deny("sts:AssumeRole", &role_arn, text)
                }
            }
        }
    }
    Ok(eval)
}

/// A denial this evaluation found that waits for its fix in a file another change owns: the tests
/// that meet it report it (with the fix) and pass; [`assert_allowed`] fails on any other denial. Once
/// fixed, `iam_conditions::tests::a_standalone_replacement_with_its_elastic_ip_passes_the_conditions`
/// fails until the entry is removed here.
pub(crate) struct Known {
    pub function: &'static str,
    pub action: &'static str,
    /// A glob over the resource ARN.
    pub resource: &'static str,
    /// Only in a region other than the stack's (the resource ARN's region).
    pub elsewhere: bool,
    pub fix: &'static str,
}

// The four mismatches this evaluation first found (the healer's DescribeInstanceAttribute; the
// replacement's volumes and network interface under a RequestTag condition; backup vaults and the hub's
// own sweep outside the stack's region) are fixed in the templates; a new one goes here with its fix.
pub(crate) const KNOWN_MISMATCHES: [Known; 0] = [];

fn known_mismatch(function: &str, action: &str, resource: &str) -> Option<usize> {
    let elsewhere = resource.split(':').nth(3).is_some_and(|r| !r.is_empty() && r != STACK_REGION);
    KNOWN_MISMATCHES.iter().position(|k| {
        k.function == function && k.action == action && glob(k.resource, resource) && (elsewhere || !k.elsewhere)
    })
}

/// The ratchet: every [`KNOWN_MISMATCHES`] entry of `function` for `actions` was met by `eval`; one
/// that no longer is has been fixed, and its entry must go (so it can never hide a new denial).
pub(crate) fn assert_still_known(eval: &Evaluation, function: &str, actions: &[&str]) {
    for (i, k) in KNOWN_MISMATCHES.iter().enumerate() {
        if k.function == function && actions.contains(&k.action) {
            assert!(
                eval.known.contains(&i),
                "{function}: {} on {} is allowed now: remove it from KNOWN_MISMATCHES",
                k.action,
                k.resource
            );
        }
    }
}

/// Evaluates everything `ctx`'s function was recorded calling, and fails on any denial but the
/// [`KNOWN_MISMATCHES`] (reported, with their fix).
pub(crate) fn assert_allowed(ctx: &Ctx) -> Evaluation {
    let function = ctx.config.function.as_str();
    let records = ctx.aws.calls.records();
    assert!(!records.is_empty(), "{function}: nothing recorded (was iam_conditions::record called?)");
    let mut eval = evaluate(&Deployment::of(&ctx.config), &records)
        .unwrap_or_else(|e| panic!("{function}: the IAM evaluation could not run: {e}"));
    eprintln!("iam conditions, {function}: {}", eval.summary());
    let mut unknown = Vec::new();
    for (text, (action, resource)) in eval.denials.iter().zip(&eval.denied) {
        match known_mismatch(function, action, resource) {
            Some(i) => {
                eprintln!("KNOWN MISMATCH (waits for its fix): {text}\n  fix: {}", KNOWN_MISMATCHES[i].fix);
                eval.known.insert(i);
            }
            None => unknown.push(text.clone()),
        }
    }
    assert!(unknown.is_empty(), "calls infra/template.yaml or infra/member.yaml would deny:\n{}", unknown.join("\n"));
    eval
}

/// [`assert_allowed`] for several functions, with the totals.
pub(crate) fn assert_all_allowed<'a>(ctxs: impl IntoIterator<Item = &'a Ctx>) -> Evaluation {
    let mut total = Evaluation::default();
    for c in ctxs {
        total.add(&assert_allowed(c));
    }
    total
}

// ---------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
    use harness::{sdk_config, unique};
    use selfheal::healer::{Healer, HealerConfig};
    use selfheal::Outcome;

    fn ctx_of(pairs: &[(&str, &[&str])]) -> Context {
        pairs.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.iter().map(|s| s.to_string()).collect())).collect()
    }

    #[test]
    fn the_evaluator_behaves_like_iam_and_refuses_what_it_does_not_know() {
        let c = ctx_of(&[
            ("aws:ResourceTag/selfheal:enabled", &["true"]),
            ("aws:TagKeys", &["a", "b"]),
            ("aws:PrincipalArn", &["arn:aws:iam::123456789012:role/selfheal-db-failover"]),
        ]);
        let holds = |op: &str, key: &str, wanted: Json| block_holds(op, key, &wanted, &c);
        // Present and absent keys, plain and negated, as IAM evaluates them.
        assert_eq!(holds("StringEquals", "aws:ResourceTag/selfheal:enabled", json!("true")), Ok(true));
        assert_eq!(holds("StringEquals", "aws:resourcetag/SELFHEAL:ENABLED", json!(["x", "true"])), Ok(true));
        assert_eq!(holds("StringEquals", "aws:ResourceTag/selfheal:enabled", json!("TRUE")), Ok(false));
        assert_eq!(holds("StringEquals", "aws:ResourceTag/selfheal:created-by", json!("backup-enforcer")), Ok(false));
        assert_eq!(holds("StringNotEquals", "aws:ResourceTag/selfheal:created-by", json!("x")), Ok(true));
        assert_eq!(holds("StringLike", "aws:ResourceTag/selfheal:enabled", json!("t*")), Ok(true));
        assert_eq!(holds("StringNotLike", "aws:ResourceTag/selfheal:enabled", json!("t*")), Ok(false));
        assert_eq!(holds("Null", "aws:RequestTag/selfheal:enabled", json!("true")), Ok(true));
        assert_eq!(holds("Null", "aws:ResourceTag/selfheal:enabled", json!(true)), Ok(false));
        assert_eq!(holds("Null", "aws:ResourceTag/selfheal:enabled", json!("false")), Ok(true));
        assert_eq!(holds("ForAllValues:StringEquals", "aws:TagKeys", json!(["a", "b", "c"])), Ok(true));
        assert_eq!(holds("ForAllValues:StringEquals", "aws:TagKeys", json!(["a"])), Ok(false));
        assert_eq!(holds("ForAllValues:StringEquals", "aws:RequestTag/x", json!("y")), Ok(true), "absent: vacuous");
        assert_eq!(holds("ForAnyValue:StringEquals", "aws:TagKeys", json!(["b"])), Ok(true));
        assert_eq!(holds("ForAnyValue:StringLike", "aws:RequestTag/x", json!("*")), Ok(false), "absent");
        assert_eq!(
            holds("ArnEquals", "aws:PrincipalArn", json!("arn:aws:iam::123456789012:role/selfheal-db-failover")),
            Ok(true)
        );
        assert_eq!(holds("ArnLike", "aws:PrincipalArn", json!("arn:aws:iam::*:role/selfheal-*")), Ok(true));
        assert_eq!(
            holds("ArnEquals", "aws:PrincipalArn", json!("arn:aws:iam::123456789012:role/selfheal-instance-healer")),
            Ok(false)
        );
        // What it does not know is an error, never an answer.
        for op in ["NumericEquals", "StringEqualsIfExists", "ForAnyValue:Null", "ForSome:StringEquals", "Bool"] {
            assert!(holds(op, "aws:TagKeys", json!("a")).is_err(), "{op}");
        }
        for key in ["aws:PrincipalTag/team", "ec2:InstanceType", "aws:SourceIp", "aws:ResourceTag/"] {
            assert!(holds("StringEquals", key, json!("a")).is_err(), "{key}");
        }
        // A statement a request reaches is checked whole, even the blocks after one that fails, and
        // whatever its effect: an unknown key or operator there is an error, not a pass or a deny.
        let reached = |effect: &str, condition: Json| {
            let doc = json!({"Statement": [{"Sid": "S", "Effect": effect, "Action": "ec2:StopInstances",
                "Resource": "*", "Condition": condition}]});
            let policy = statements_of(&doc, "t").unwrap();
            let r = Request { action: "ec2:StopInstances".into(), resource: "*".into(), context: c.clone() };
            decide(&policy, &r, None)
        };
        let unknown_key = reached("Allow", json!({"StringEquals": {"ec2:ResourceTag/x": "y"}}));
        assert!(unknown_key.unwrap_err().contains("ec2:ResourceTag/x"));
        assert!(reached("Deny", json!({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01"}})).is_err());
        let second_block = json!({"StringEquals": {"aws:ResourceTag/x": "y"}, "Bool": {"aws:SecureTransport": "true"}});
        assert!(reached("Allow", second_block).is_err());
        let fails = reached("Allow", json!({"StringEquals": {"aws:ResourceTag/x": "y"}}));
        assert!(matches!(fails, Ok(Decision::Denied(_))), "{fails:?}");
        let holds = reached("Allow", json!({"StringEquals": {"aws:ResourceTag/selfheal:enabled": "true"}}));
        assert!(matches!(holds, Ok(Decision::Allowed { conditioned: true, .. })), "{holds:?}");
        let not_action = json!({"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]});
        assert!(statements_of(&not_action, "t").unwrap_err().contains("NotAction"));

        // An explicit Deny wins over any Allow; no Allow is a denial; the resource must match too.
        let policy = statements_of(
            &json!({"Statement": [
                {"Sid": "All", "Effect": "Allow", "Action": "ec2:*", "Resource": "*"},
                {"Sid": "Fence", "Effect": "Deny", "Action": "ec2:TerminateInstances", "Resource": "*",
                 "Condition": {"StringNotEquals": {"aws:ResourceTag/selfheal:enabled": "true"}}},
                {"Sid": "Zone", "Effect": "Allow", "Action": "route53:Change*", "Resource": "arn:aws:route53:::hostedzone/Z1"}
            ]}),
            "t",
        )
        .unwrap();
        let req = |action: &str, resource: &str, c: Context| Request {
            action: action.into(),
            resource: resource.into(),
            context: c,
        };
        let i = "arn:aws:ec2:us-east-1:1:instance/i-1";
        assert!(
            matches!(decide(&policy, &req("ec2:TerminateInstances", i, Context::new()), None), Ok(Decision::Denied(w)) if w.contains("Fence"))
        );
        assert!(matches!(
            decide(&policy, &req("ec2:TerminateInstances", i, c.clone()), None),
            Ok(Decision::Allowed { .. })
        ));
        assert!(matches!(
            decide(&policy, &req("EC2:stopinstances", i, Context::new()), None),
            Ok(Decision::Allowed { .. })
        ));
        let z2 = "arn:aws:route53:::hostedzone/Z2";
        assert!(
            matches!(decide(&policy, &req("route53:ChangeResourceRecordSets", z2, Context::new()), None), Ok(Decision::Denied(w)) if w.contains("Zone: resource"))
        );
        assert!(matches!(
            decide(&policy, &req("rds:RebootDBInstance", "*", Context::new()), None),
            Ok(Decision::Denied(_))
        ));

        // Request parameters as the SDK serializes them.
        let form = Form::parse(
            "Action=RunInstances&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=selfheal%3Aenabled\
             &TagSpecification.1.Tag.1.Value=true&TagSpecification.1.Tag.2.Key=Name&TagSpecification.1.Tag.2.Value=web+1\
             &InstanceId.1=i-1&InstanceId.2=i-2&Tags.Tag.1.Key=a&Tags.Tag.1.Value=b%2Fc",
        );
        assert_eq!(
            form.tag_specifications(),
            vec![(
                "instance".to_string(),
                vec![("selfheal:enabled".into(), "true".into()), ("Name".into(), "web 1".into())]
            )]
        );
        assert_eq!(form.list("InstanceId"), ["i-1", "i-2"]);
        assert_eq!(form.tags("Tags"), vec![("a".to_string(), "b/c".to_string())]);
        assert!(form.tags("TagSpecification").is_empty(), "a deeper structure's tags are not its own");
        assert_eq!(percent_decode("%E2%9C%93%zz%4"), "✓%zz%4");
        assert!(reads_anywhere("rds:DescribeBlueGreenDeployments") && reads_anywhere("ec2:DescribeVolumes"));
        assert!(!reads_anywhere("ec2:DescribeInstanceAttribute") && !reads_anywhere("route53:GetHealthCheck"));
        assert!(!reads_anywhere("rds:DeleteDBSnapshot") && !reads_anywhere("backup:GetBackupPlan"));
        assert!(is_ec2_id("snap-0abc") && is_ec2_id("eipalloc-12") && !is_ec2_id("prod-db") && !is_ec2_id("i-"));
    }

    /// A recorded call, as the call log would keep it.
    fn call(operation: &str, body: &str, observed: Json) -> CallRecord {
        CallRecord {
            operation: operation.into(),
            method: "POST".into(),
            uri: "http://127.0.0.1:5000/".into(),
            body: body.into(),
            access_key_id: Some("testing".into()),
            region: Some(STACK_REGION.into()),
            observed: Some(observed),
            status: Some(200),
            response: None,
        }
    }

    fn deployment(function: &str) -> Deployment {
        Deployment {
            function: function.into(),
            hub_account: DEFAULT_HUB.into(),
            opt_in_value: "true".into(),
            ledger_table: "ledger".into(),
            topic_arn: None,
            member_accounts: vec![],
            member_org_units: vec![],
            hub_external_id: String::new(),
            member_external_id: String::new(),
        }
    }

    fn denials(d: &Deployment, records: &[CallRecord]) -> Vec<String> {
        evaluate(d, records).unwrap_or_else(|e| panic!("{e}")).denials
    }

    #[test]
    fn the_evaluation_catches_the_two_historical_bugs_and_a_wrong_trust() {
        // 1. Deletes conditioned on a tag the suite never wrote: a snapshot without
        //    selfheal:created-by cannot be expired, one with it can.
        let backup = deployment("backup-enforcer");
        let delete = |tags: Json| {
            call(
                "ec2:DeleteSnapshot",
                "Action=DeleteSnapshot&SnapshotId=snap-0123",
                json!({"ec2": {"snap-0123": tags}}),
            )
        };
        let d = denials(&backup, &[delete(json!({"selfheal:policy": "gold", "selfheal:source": "vol-1"}))]);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(d[0].contains("ec2:DeleteSnapshot") && d[0].contains("ExpireSuiteSnapshots"), "{d:#?}");
        assert!(d[0].contains("aws:ResourceTag/selfheal:created-by"), "names the condition that failed: {d:#?}");
        assert!(denials(&backup, &[delete(json!({"selfheal:created-by": "backup-enforcer"}))]).is_empty());
        let rds_delete = call(
            "rds:DeleteDBSnapshot",
            "Action=DeleteDBSnapshot&DBSnapshotIdentifier=orders-1",
            json!({"rds": {"snapshot/orders-1": {"arn": "arn:aws:rds:us-east-1:123456789012:snapshot:orders-1",
                "tags": {"selfheal:policy": "gold"}}}}),
        );
        assert_eq!(denials(&backup, &[rds_delete]).len(), 1);
        // The same bug one step earlier: a snapshot taken without the tag is one the suite can never
        // delete; taking it is allowed, the tags it carries are what the delete is judged on.
        let take = call(
            "ec2:CreateSnapshot",
            "Action=CreateSnapshot&VolumeId=vol-1&TagSpecification.1.ResourceType=snapshot\
             &TagSpecification.1.Tag.1.Key=selfheal%3Apolicy&TagSpecification.1.Tag.1.Value=gold",
            json!({"ec2": {"vol-1": {"selfheal:enabled": "true"}}}),
        );
        assert!(denials(&backup, &[take]).is_empty());

        // 2. Opt-in never checked: an instance without the opt-in tag cannot be rebooted or
        //    terminated, a group without it cannot be touched, a replacement launched without it is refused.
        let healer = deployment("instance-healer");
        let reboot = |tags: Json| {
            call("ec2:RebootInstances", "Action=RebootInstances&InstanceId.1=i-0abc", json!({"ec2": {"i-0abc": tags}}))
        };
        let d = denials(&healer, &[reboot(json!({"Name": "web"}))]);
        assert!(d.len() == 1 && d[0].contains("OptedInInstances"), "{d:#?}");
        assert!(denials(&healer, &[reboot(json!({"selfheal:enabled": "true"}))]).is_empty());
        let d = denials(&healer, &[reboot(json!({"selfheal:enabled": "false"}))]);
        assert_eq!(d.len(), 1, "the value matters too: {d:#?}");
        let group = |tags: Json| {
            call(
                "autoscaling:TerminateInstanceInAutoScalingGroup",
                "Action=TerminateInstanceInAutoScalingGroup&InstanceId=i-0abc&ShouldDecrementDesiredCapacity=false",
                json!({"groups": {"i-0abc": {"arn": "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:u:autoScalingGroupName/web",
                    "tags": tags}}}),
            )
        };
        assert_eq!(denials(&healer, &[group(json!({}))]).len(), 1);
        assert!(denials(&healer, &[group(json!({"selfheal:enabled": "true"}))]).is_empty());
        let launch = |tags: &str| {
            call(
                "ec2:RunInstances",
                &format!("Action=RunInstances&ImageId=ami-12&SubnetId=subnet-1&MinCount=1&MaxCount=1{tags}"),
                json!({}),
            )
        };
        let d = denials(&healer, &[launch("")]);
        assert!(d.iter().any(|x| x.contains("instance/*") && x.contains("LaunchReplacementTagged")), "{d:#?}");
        let spec = |rt: &str, n: usize| {
            format!("&TagSpecification.{n}.ResourceType={rt}&TagSpecification.{n}.Tag.1.Key=selfheal%3Aenabled&TagSpecification.{n}.Tag.1.Value=true")
        };
        let all = format!("{}{}{}", spec("instance", 1), spec("volume", 2), spec("network-interface", 3));
        assert!(denials(&healer, &[launch(&all)]).is_empty(), "{:#?}", denials(&healer, &[launch(&all)]));

        // 3. The trust: the member role requires the external id when one is configured, and trusts
        //    only its own function's hub role.
        let mut fleet = deployment("instance-healer");
        fleet.member_accounts = vec!["111111111111".into()];
        fleet.hub_external_id = "ext-1".into();
        fleet.member_external_id = "ext-1".into();
        let assume = |role: &str, external: &str| {
            call(
                "sts:AssumeRole",
                &format!("Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A111111111111%3Arole%2F{role}&RoleSessionName=s{external}"),
                json!({"orgPath": null}),
            )
        };
        assert!(denials(&fleet, &[assume("selfheal-instance-healer", "&ExternalId=ext-1")]).is_empty());
        let d = denials(&fleet, &[assume("selfheal-instance-healer", "")]);
        assert!(d.len() == 1 && d[0].contains("trust policy") && d[0].contains("sts:ExternalId"), "{d:#?}");
        let d = denials(&fleet, &[assume("selfheal-instance-healer", "&ExternalId=ext-2")]);
        assert_eq!(d.len(), 1, "{d:#?}");
        let d = denials(&fleet, &[assume("selfheal-db-failover", "&ExternalId=ext-1")]);
        assert!(d.iter().any(|x| x.contains("AssumeMemberRole")), "not its own role: {d:#?}");
        assert!(d.iter().any(|x| x.contains("aws:PrincipalArn")), "the db role trusts the db function only: {d:#?}");
        let mut outside = fleet.clone();
        outside.member_accounts = vec!["222222222222".into()];
        assert!(!denials(&outside, &[assume("selfheal-instance-healer", "&ExternalId=ext-1")]).is_empty());

        // 4. Calls with the credentials an AssumeRole returned are the member role's.
        let mut assumed = assume("selfheal-instance-healer", "&ExternalId=ext-1");
        assumed.response = Some(
            "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIAMEMBER</AccessKeyId></Credentials>\
             <AssumedRoleUser><Arn>arn:aws:sts::111111111111:assumed-role/selfheal-instance-healer/s</Arn>\
             </AssumedRoleUser></AssumeRoleResult></AssumeRoleResponse>"
                .into(),
        );
        let mut in_member = reboot(json!({}));
        in_member.access_key_id = Some("ASIAMEMBER".into());
        let e = evaluate(&fleet, &[assumed.clone(), in_member.clone()]).unwrap();
        assert_eq!((e.member_calls, e.trusts), (1, 1));
        assert!(
            e.denials.len() == 1 && e.denials[0].contains("selfheal-instance-healer (member 111111111111)"),
            "{e:#?}"
        );
        in_member.observed = Some(json!({"ec2": {"i-0abc": {"selfheal:enabled": "true"}}}));
        let e = evaluate(&fleet, &[assumed, in_member]).unwrap();
        assert!(
            e.denials.is_empty() && e.by_statement.contains_key("member/OptedInInstances ec2:RebootInstances"),
            "{e:#?}"
        );

        // 5. What it cannot model is an error, not a pass.
        let unknown = call("ec2:DeleteVolume", "Action=DeleteVolume&VolumeId=vol-1", json!({}));
        assert!(evaluate(&healer, &[unknown]).unwrap_err().contains("does not model"));
    }

    /// The hub's healer replacing a standalone instance whose Elastic IP is opted in too (as
    /// infra/README.md asks): RunInstances, AssociateAddress, TerminateInstances.
    #[tokio::test]
    async fn a_standalone_replacement_with_its_elastic_ip_passes_the_conditions() {
        let sdk = sdk_config().await;
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let vpc = ec2.create_vpc().cidr_block("10.40.0.0/16").send().await.unwrap();
        let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
        let subnet = ec2.create_subnet().vpc_id(&vpc_id).cidr_block("10.40.1.0/24").availability_zone("us-east-1b");
        let subnet = subnet.send().await.unwrap().subnet().unwrap().subnet_id().unwrap().to_string();
        let sg = ec2.create_security_group().group_name(unique("sg")).description("web").vpc_id(&vpc_id).send();
        let sg = sg.await.unwrap().group_id().unwrap().to_string();
        let image =
            ec2.describe_images().owners("amazon").send().await.unwrap().images()[0].image_id().unwrap().to_string();
        let opt_in = || Tag::builder().key("selfheal:enabled").value("true").build();
        let r = ec2
            .run_instances()
            .image_id(image)
            .instance_type(InstanceType::T3Small)
            .min_count(1)
            .max_count(1)
            .subnet_id(&subnet)
            .security_group_ids(&sg)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(opt_in())
                    .tags(Tag::builder().key("Name").value("web-1").build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let old = r.instances()[0].instance_id().unwrap().to_string();
        let alloc = ec2
            .allocate_address()
            .domain(aws_sdk_ec2::types::DomainType::Vpc)
            .tag_specifications(
                TagSpecification::builder().resource_type(ResourceType::ElasticIp).tags(opt_in()).build(),
            )
            .send()
            .await
            .unwrap();
        let alloc = alloc.allocation_id().unwrap().to_string();
        ec2.associate_address().allocation_id(&alloc).instance_id(&old).send().await.unwrap();

        let vars = [("SELFHEAL_HEALER_WAIT_SECONDS", "20"), ("SELFHEAL_HEALER_POLL_SECONDS", "1")];
        let ctx = harness::ctx("instance-healer", &vars).await;
        let mut env = harness::env(&vars);
        let cfg = HealerConfig::read(&mut env);
        env.finish().unwrap();
        let h = Healer::new(ctx, cfg);
        record(&h.ctx().aws.calls);
        let manual = json!({"source": "selfheal.manual", "action": "replace", "target": old, "force": true,
            "params": {"step": "replace"}, "requestId": unique("req")});
        let out = h.handle(&manual).await.unwrap();
        let d: Vec<selfheal::Envelope> = serde_json::from_value(out["decisions"].clone()).unwrap();
        assert_eq!(d[0].outcome, Outcome::Acted, "{}", d[0].reason);
        let calls = h.ctx().aws.calls.calls();
        for op in ["ec2:RunInstances", "ec2:AssociateAddress", "ec2:TerminateInstances"] {
            assert!(calls.iter().any(|c| c == op), "{op} not called: {calls:?}");
        }
        let e = assert_allowed(h.ctx());
        assert_still_known(&e, "instance-healer", &["ec2:DescribeInstanceAttribute", "ec2:RunInstances"]);
        // Judged on the tags read before each call: with another opt-in value deployed, the old instance
        // could be neither terminated nor robbed of its address, and the replacement not launched.
        let other = Deployment { opt_in_value: "yes".into(), ..Deployment::of(&h.ctx().config) };
        let refused = evaluate(&other, &h.ctx().aws.calls.records()).unwrap();
        for (op, on) in [
            ("ec2:TerminateInstances", ":instance/i-"),
            ("ec2:AssociateAddress", ":elastic-ip/eipalloc-"),
            ("ec2:RunInstances", ":instance/*"),
        ] {
            let hit = refused.denied.iter().any(|(a, r)| a == op && r.contains(on));
            assert!(hit, "{op} on {on}: {:#?}", refused.denials);
        }
        for k in ["hub/OptedInInstances ec2:AssociateAddress", "hub/OptedInInstances ec2:TerminateInstances"] {
            assert!(e.by_statement.contains_key(k), "{k}: {}", e.summary());
        }
    }

    /// backup-enforcer over three sweeps two days apart, with a DR region and a one-day retention:
    /// EBS and DB snapshots taken (tagged on create), copied to the DR region, the expired ones and
    /// their copies deleted (the deletes that once carried a condition on a tag never written), and
    /// retention and plans set. Every call passes its statement's conditions.
    #[tokio::test]
    async fn backups_copies_and_their_expiry_pass_the_conditions() {
        use chrono::{Duration, Utc};
        let tag = unique("iam-bk");
        let vars = [
            ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
            ("SELFHEAL_BACKUP_POLICIES", r#"{"drp":{"copyRegion":"us-west-2","retentionDays":1,"minKeep":1}}"#),
            ("SELFHEAL_BACKUP_MAX_DELETE_PERCENT", "100"),
            ("SELFHEAL_COOLDOWN_SECONDS", "0"),
        ];
        let sdk = sdk_config().await;
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let rds = aws_sdk_rds::Client::new(&sdk);
        let spec = TagSpecification::builder()
            .resource_type(ResourceType::Volume)
            .tags(Tag::builder().key(&tag).value("drp").build())
            .tags(Tag::builder().key("selfheal:enabled").value("true").build())
            .build();
        ec2.create_volume().availability_zone("us-east-1a").size(8).tag_specifications(spec).send().await.unwrap();
        let rds_tag = |k: &str, v: &str| aws_sdk_rds::types::Tag::builder().key(k).value(v).build();
        rds.create_db_instance()
            .db_instance_identifier(unique("iam-db"))
            .engine("postgres")
            .db_instance_class("db.t3.micro")
            .master_username("admin")
            .master_user_password("password123")
            .allocated_storage(20)
            .backup_retention_period(0)
            .tags(rds_tag(&tag, "drp"))
            .tags(rds_tag("selfheal:enabled", "true"))
            .send()
            .await
            .unwrap();

        let ctx = harness::ctx("backup-enforcer", &vars).await;
        let mut env = harness::env(&vars);
        let cfg = selfheal::backup::BackupConfig::read(&mut env);
        env.finish().unwrap();
        let e = selfheal::backup::BackupEnforcer::new(ctx, cfg);
        record(&e.ctx().aws.calls);
        let schedule = || {
            let id = uuid::Uuid::new_v4().to_string();
            let ev = harness::event("schedule-backup-sweep.json", &[("53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", &id)]);
            selfheal::parse_event(&ev).unwrap().remove(0)
        };
        let t0 = Utc::now();
        let mut deleted = 0;
        for day in [0, 2, 4] {
            // Snapshots carry the emulator's real creation times: a pause keeps their order plain.
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            let sweep = e.sweep(&schedule(), false, t0 + Duration::days(day)).await.unwrap();
            deleted += sweep.report.snapshots_deleted;
        }
        assert!(deleted >= 2, "the expired snapshot and its copy were deleted");
        let eval = assert_allowed(e.ctx());
        assert_still_known(&eval, "backup-enforcer", &["backup:DescribeBackupVault", "backup:CreateBackupVault"]);
        // The tags read before each call are what the conditions were judged on: the same calls, had the
        // snapshots lacked selfheal:created-by or the volumes another opt-in value, are refused.
        let records = e.ctx().aws.calls.records();
        let mut untagged = records.clone();
        for r in untagged.iter_mut().filter(|r| r.operation.ends_with("DeleteSnapshot")) {
            r.observed = Some(json!({}));
        }
        let deployment = Deployment::of(&e.ctx().config);
        let refused = evaluate(&deployment, &untagged).unwrap();
        for op in ["ec2:DeleteSnapshot", "rds:DeleteDBSnapshot"] {
            let called = records.iter().any(|r| r.operation == op);
            assert_eq!(refused.denied.iter().any(|(a, _)| a == op), called, "{op}: {:#?}", refused.denials);
        }
        let other = Deployment { opt_in_value: "yes".into(), ..deployment };
        let refused = evaluate(&other, &records).unwrap();
        assert!(refused.denied.iter().any(|(a, r)| a == "ec2:CreateSnapshot" && r.contains(":volume/")));
        for k in [
            "hub/SnapshotOptedInVolumes ec2:CreateSnapshot",
            "hub/TagNewSnapshots ec2:CreateTags",
            "hub/NewSnapshots ec2:CopySnapshot",
            "hub/ExpireSuiteSnapshots ec2:DeleteSnapshot",
            "hub/OptedInDatabases rds:CreateDBSnapshot",
            "hub/NewDbSnapshots rds:AddTagsToResource",
        ] {
            assert!(eval.by_statement.contains_key(k), "{k} was not exercised: {}", eval.summary());
        }
    }

    /// In a member account with an external id configured: the healer presents it when it assumes its
    /// member role, the role's trust (which requires it) lets it in, and the member role's statements
    /// allow what it does there. The same calls against a member stack expecting another id are refused.
    #[tokio::test]
    async fn a_member_role_with_an_external_id_is_assumed_with_it_and_its_trust_holds() {
        const MEMBER: &str = "111111111111";
        let member = harness::in_account(MEMBER).await;
        let ec2 = aws_sdk_ec2::Client::new(&member);
        let vpc = ec2.create_vpc().cidr_block("10.50.0.0/16").send().await.unwrap();
        let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
        let subnet = ec2.create_subnet().vpc_id(&vpc_id).cidr_block("10.50.1.0/24").availability_zone("us-east-1a");
        let subnet = subnet.send().await.unwrap().subnet().unwrap().subnet_id().unwrap().to_string();
        let image = harness::ami(&ec2).await;
        let r = ec2
            .run_instances()
            .image_id(image)
            .instance_type(InstanceType::T3Small)
            .min_count(1)
            .max_count(1)
            .subnet_id(&subnet)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(Tag::builder().key("selfheal:enabled").value("true").build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let id = r.instances()[0].instance_id().unwrap().to_string();
        ec2.stop_instances().instance_ids(&id).send().await.unwrap();

        let vars = [
            ("SELFHEAL_ACCOUNTS", MEMBER),
            ("SELFHEAL_EXTERNAL_ID", "selfheal-ext-7"),
            ("SELFHEAL_COOLDOWN_SECONDS", "0"),
            ("SELFHEAL_HEALER_WAIT_SECONDS", "20"),
            ("SELFHEAL_HEALER_POLL_SECONDS", "1"),
        ];
        let ctx = harness::ctx("instance-healer", &vars).await;
        let mut env = harness::env(&vars);
        let cfg = HealerConfig::read(&mut env);
        env.finish().unwrap();
        let h = Healer::new(ctx, cfg);
        record(&h.ctx().aws.calls);
        let text = harness::event("alarm-lambda-action-ec2-status-check.json", &[("i-0123456789abcdef0", &id)])
            .to_string()
            .replace(DEFAULT_HUB, MEMBER);
        let out = h.handle(&serde_json::from_str(&text).unwrap()).await.unwrap();
        let d: Vec<selfheal::Envelope> = serde_json::from_value(out["decisions"].clone()).unwrap();
        assert_eq!(d[0].outcome, Outcome::Acted, "{}", d[0].reason);
        assert_eq!(d[0].target.account.as_deref(), Some(MEMBER));

        let e = assert_allowed(h.ctx());
        assert_eq!(e.trusts, 1, "{}", e.summary());
        assert!(
            e.member_calls > 0 && e.by_statement.contains_key("trust/HubFunction sts:AssumeRole"),
            "{}",
            e.summary()
        );
        assert!(e.by_statement.contains_key("member/OptedInInstances ec2:StartInstances"), "{}", e.summary());
        // The member stacks deployed with another external id: the trust refuses the hub.
        let mut wrong = Deployment::of(&h.ctx().config);
        wrong.member_external_id = "another-id".into();
        let refused = evaluate(&wrong, &h.ctx().aws.calls.records()).unwrap();
        assert!(
            refused.denials.len() == 1
                && refused.denials[0].contains("trust policy")
                && refused.denials[0].contains("sts:ExternalId"),
            "{:#?}",
            refused.denials
        );
    }
}
