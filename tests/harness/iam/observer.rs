//! What the evaluator reads from the emulator before a call is sent: the observer [`record`] installs
//! on a call log asks moto, with the call's own credentials and region, for the tags of what a
//! mutating call names (and for where an `AssumeRole` target sits in the organization), on a thread of
//! its own, and the call log keeps the answer with the request.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use selfheal::clients::{CallLog, CallObserver, CallRecord};
use serde_json::{json, Value as Json};

use super::form::Form;
use super::{ORG, STACK_REGION};

/// Turns on request recording on `calls`, with the observer that captures tags before each call.
pub fn record(calls: &CallLog) {
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

pub(super) fn is_ec2_id(v: &str) -> bool {
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
        let endpoint = crate::moto_endpoint();
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::iam::tests::call;

    #[test]
    fn only_mutating_calls_look_up_the_tags_of_what_they_name() {
        let of = |op: &str, body: &str| lookups(&call(op, body, json!({})));
        assert_eq!(
            of("ec2:TerminateInstances", "Action=TerminateInstances&InstanceId.1=i-0abc&InstanceId.2=vol-1&Name=web"),
            [Lookup::Ec2Tags(STACK_REGION.into(), vec!["i-0abc".into(), "vol-1".into()])]
        );
        let copy = of("ec2:CopySnapshot", "SourceRegion=us-west-2&SourceSnapshotId=snap-1");
        assert_eq!(copy, [Lookup::Ec2Tags("us-west-2".into(), vec!["snap-1".into()])], "the source's own region");
        assert!(of("ec2:DescribeInstances", "InstanceId.1=i-0abc").is_empty(), "reads look nothing up");
        assert_eq!(of("autoscaling:SetInstanceHealth", "InstanceId=i-1"), [Lookup::GroupOf("i-1".into())]);
        assert_eq!(
            of("rds:CopyDBSnapshot", "SourceDBSnapshotIdentifier=arn%3Aaws%3Ards%3Aus-west-2%3A1%3Asnapshot%3As&TargetDBSnapshotIdentifier=t"),
            [Lookup::Rds("snapshot", "arn:aws:rds:us-west-2:1:snapshot:s".into())]
        );
        let assume = of("sts:AssumeRole", "RoleArn=arn%3Aaws%3Aiam%3A%3A111111111111%3Arole%2Fr");
        assert_eq!(assume, [Lookup::OrgPath("111111111111".into())]);
        assert!(of("dynamodb:PutItem", r#"{"TableName": "t"}"#).is_empty());
    }
}
