//! What the evaluator reads from the emulator before a call is sent: the observer [`record`] installs
//! on a call log asks moto, with the call's own credentials and region, for the tags of what a
//! mutating call names (and for where an `AssumeRole` target sits in the organization), on a thread of
//! its own, and the call log keeps the answer with the request.
//!
//! ARC zonal shift calls are judged on the managed resource they are about: `StartZonalShift` and
//! `GetManagedResource` name it (the body's `resourceIdentifier`, the path), and for a load balancer
//! its tags are read from moto. `UpdateZonalShift` and `CancelZonalShift` name only a shift id: the
//! resource is what ARC holds for that shift, so [`record_with_arc`] asks the test's ARC stand-in
//! ([`crate::arc::ArcStandIn::shifts`]) before the call; under [`record`] alone they cannot be judged.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use selfheal::clients::{CallLog, CallObserver, CallRecord};
use serde_json::{json, Value as Json};

use super::form::{uri_segments, Form};
use super::{ORG, STACK_REGION};

/// The managed resource (ARN) ARC holds for a zonal shift id, as the test's ARC answers it.
pub type ShiftResolver = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Turns on request recording on `calls`, with the observer that captures tags before each call.
pub fn record(calls: &CallLog) {
    install(calls, None);
}

/// [`record`], with the zonal shifts of `arc` resolved to their resource for `UpdateZonalShift` and
/// `CancelZonalShift` (the stand-in the function under test calls).
pub fn record_with_arc(calls: &CallLog, arc: &crate::arc::ArcStandIn) {
    let arc = arc.clone();
    record_with_shifts(
        calls,
        Arc::new(move |id: &str| {
            arc.shifts().into_iter().find(|s| s.zonal_shift_id == id).map(|s| s.resource_identifier)
        }),
    );
}

/// [`record`], with `shifts` telling the resource of a zonal shift id.
pub fn record_with_shifts(calls: &CallLog, shifts: ShiftResolver) {
    install(calls, Some(shifts));
}

fn install(calls: &CallLog, shifts: Option<ShiftResolver>) {
    let observer: CallObserver = Arc::new(move |r: &CallRecord| observe(r, shifts.as_ref()));
    calls.record_requests(Some(observer));
}

/// What the observer keeps for `r`: the lookups' answers, and the resource of the shift it names.
fn observe(r: &CallRecord, shifts: Option<&ShiftResolver>) -> Option<Json> {
    let mut wanted = lookups(r);
    let shift = shift_named(r).map(|id| {
        let resource = shifts.and_then(|resolve| resolve(&id));
        if let Some(arn) = resource.as_deref().filter(|a| is_load_balancer(a)) {
            wanted.push(Lookup::ElbTags(vec![arn.to_string()]));
        }
        json!({"id": id, "resource": resource})
    });
    if wanted.is_empty() && shift.is_none() {
        return None;
    }
    let mut observed = if wanted.is_empty() { json!({}) } else { resolve_blocking(r, wanted)? };
    if let Some(s) = shift {
        observed["arcShift"] = s;
    }
    Some(observed)
}

/// The shift id an `UpdateZonalShift` or `CancelZonalShift` names (`/zonalshifts/{id}`).
pub(super) fn shift_named(r: &CallRecord) -> Option<String> {
    if !["arc-zonal-shift:UpdateZonalShift", "arc-zonal-shift:CancelZonalShift"].contains(&r.operation.as_str()) {
        return None;
    }
    match uri_segments(&r.uri).as_slice() {
        [z, id] if z == "zonalshifts" => Some(id.clone()),
        _ => None,
    }
}

/// The resource an ARC call names itself: `StartZonalShift`'s `resourceIdentifier`,
/// `GetManagedResource`'s path (`/managedresources/{arn}`).
pub(super) fn arc_resource(r: &CallRecord) -> Option<String> {
    match r.operation.as_str() {
        "arc-zonal-shift:StartZonalShift" => serde_json::from_str::<Json>(&r.body)
            .ok()?
            .get("resourceIdentifier")
            .and_then(Json::as_str)
            .map(str::to_string),
        "arc-zonal-shift:GetManagedResource" => match uri_segments(&r.uri).as_slice() {
            [m, arn] if m == "managedresources" => Some(arn.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// An Application or Network Load Balancer's ARN (ARC's ALB and NLB resource types).
pub(super) fn is_load_balancer(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let service = parts.nth(2);
    let resource = parts.nth(2).unwrap_or_default();
    service == Some("elasticloadbalancing")
        && (resource.starts_with("loadbalancer/app/") || resource.starts_with("loadbalancer/net/"))
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
    /// Tags of Elastic Load Balancing resources, by ARN.
    ElbTags(Vec<String>),
    /// An Auto Scaling group by name: its ARN and tags.
    Group(String),
    /// A DynamoDB table's tags, by name (in the call's region).
    DynamoTags(String),
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
            out.extend(form.get("AutoScalingGroupName").map(|g| Lookup::Group(g.to_string())));
        }
        "elasticloadbalancing" if selfheal::clients::is_mutating(op) => {
            let arns: Vec<String> = ["LoadBalancerArn", "ResourceArns.member"]
                .iter()
                .flat_map(|k| form.list(k))
                .filter(|a| a.starts_with("arn:"))
                .collect();
            if !arns.is_empty() {
                out.push(Lookup::ElbTags(arns));
            }
        }
        // Reads too: IAM judges GetManagedResource on the load balancer's tags as well.
        "arc-zonal-shift" => {
            out.extend(arc_resource(r).filter(|a| is_load_balancer(a)).map(|a| Lookup::ElbTags(vec![a])));
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
        // backup-enforcer's changes to a table are judged on its tags (the ledger's writes are not).
        "dynamodb"
            if ["dynamodb:UpdateContinuousBackups", "dynamodb:UpdateTable", "dynamodb:CreateBackup"].contains(&op) =>
        {
            let body: Json = serde_json::from_str(&r.body).unwrap_or(Json::Null);
            out.extend(body.get("TableName").and_then(Json::as_str).map(|t| Lookup::DynamoTags(t.to_string())));
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
    let mut elb_tags = serde_json::Map::new();
    let mut by_name = serde_json::Map::new();
    let mut tables = serde_json::Map::new();
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
            Lookup::ElbTags(arns) => {
                for arn in arns {
                    let in_region =
                        arn.split(':').nth(3).filter(|r| !r.is_empty()).unwrap_or(region.as_str()).to_string();
                    let elb = aws_sdk_elasticloadbalancingv2::Client::new(
                        &sdk_for(endpoint, configs, &key, &in_region).await,
                    );
                    let Ok(out) = elb.describe_tags().resource_arns(arn).send().await else { continue };
                    for d in out.tag_descriptions().iter().filter(|d| d.resource_arn() == Some(arn.as_str())) {
                        elb_tags.insert(arn.clone(), tag_map(d.tags().iter().map(|t| (t.key(), t.value()))));
                    }
                }
            }
            Lookup::Group(name) => {
                let asg = aws_sdk_autoscaling::Client::new(&sdk_for(endpoint, configs, &key, &region).await);
                let Ok(g) = asg.describe_auto_scaling_groups().auto_scaling_group_names(name).send().await else {
                    continue;
                };
                if let Some(g) = g.auto_scaling_groups().first() {
                    let tags = tag_map(g.tags().iter().map(|t| (t.key(), t.value())));
                    by_name.insert(name.clone(), json!({"arn": g.auto_scaling_group_arn(), "tags": tags}));
                }
            }
            Lookup::DynamoTags(table) => {
                let ddb = aws_sdk_dynamodb::Client::new(&sdk_for(endpoint, configs, &key, &region).await);
                let Ok(d) = ddb.describe_table().table_name(table).send().await else { continue };
                let Some(arn) = d.table().and_then(|t| t.table_arn()) else { continue };
                let Ok(out) = ddb.list_tags_of_resource().resource_arn(arn).send().await else { continue };
                tables.insert(table.clone(), tag_map(out.tags().iter().map(|t| (Some(t.key()), Some(t.value())))));
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
    json!({
        "ec2": ec2_tags, "groups": groups, "group": by_name, "rds": rds, "elb": elb_tags, "dynamodb": tables,
        "orgPath": org_path
    })
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
        let lb = "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/web/1";
        let modify = of(
            "elasticloadbalancing:ModifyLoadBalancerAttributes",
            "LoadBalancerArn=arn%3Aaws%3Aelasticloadbalancing%3Aus-east-1%3A1%3Aloadbalancer%2Fapp%2Fweb%2F1",
        );
        assert_eq!(modify, [Lookup::ElbTags(vec![lb.into()])]);
        assert!(of("elasticloadbalancing:DescribeTags", "ResourceArns.member.1=arn%3Ax").is_empty());
        let update = of("autoscaling:UpdateAutoScalingGroup", "AutoScalingGroupName=web&DesiredCapacity=3");
        assert_eq!(update, [Lookup::Group("web".into())]);
    }

    #[test]
    fn an_arc_call_looks_up_the_load_balancer_it_is_about_and_a_shift_id_is_asked_of_arc() {
        let lb = "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/db/2";
        let group = "arn:aws:autoscaling:us-east-1:1:autoScalingGroup:u:autoScalingGroupName/web";
        let start = |arn: &str| {
            let body = json!({"resourceIdentifier": arn, "awayFrom": "use1-az1", "expiresIn": "1h", "comment": "c"});
            lookups(&call("arc-zonal-shift:StartZonalShift", &body.to_string(), json!({})))
        };
        assert_eq!(start(lb), [Lookup::ElbTags(vec![lb.into()])]);
        assert!(start(group).is_empty(), "a group's tags are no key of ARC's");
        let mut get = call("arc-zonal-shift:GetManagedResource", "", json!({}));
        get.uri = "http://127.0.0.1:1/managedresources/arn%3Aaws%3Aelasticloadbalancing%3Aus-east-1%3A1%3Aloadbalancer%2Fnet%2Fdb%2F2".into();
        assert_eq!(lookups(&get), [Lookup::ElbTags(vec![lb.into()])]);
        assert!(is_load_balancer(lb) && !is_load_balancer(group));
        assert!(!is_load_balancer("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/gwy/g/3"), "no ARC type");
        assert!(!is_load_balancer("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/app/x"));
        // Cancel names a shift: the resolver (ARC) says whose; a group needs nothing from moto.
        let mut cancel = call("arc-zonal-shift:CancelZonalShift", "", json!({}));
        cancel.uri = "http://127.0.0.1:1/zonalshifts/s-9".into();
        let arc: ShiftResolver = Arc::new(move |id: &str| (id == "s-9").then(|| group.to_string()));
        assert_eq!(observe(&cancel, Some(&arc)), Some(json!({"arcShift": {"id": "s-9", "resource": group}})));
        assert_eq!(observe(&cancel, None), Some(json!({"arcShift": {"id": "s-9", "resource": null}})));
        cancel.uri = "http://127.0.0.1:1/zonalshifts/s-8".into();
        assert_eq!(observe(&cancel, Some(&arc)), Some(json!({"arcShift": {"id": "s-8", "resource": null}})));
        let list = call("arc-zonal-shift:ListZonalShifts", "", json!({}));
        assert_eq!(observe(&list, Some(&arc)), None, "nothing to look up");
    }
}
