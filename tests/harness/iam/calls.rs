//! What each recorded call asks IAM: the authorizations (action, resource ARN, request context) IAM
//! makes for one call, from its operation, its request parameters, the credentials that signed it and
//! the tags the observer read before it was sent: the resource tags of what it touches, the request
//! tags it writes, the implicit `ec2:CreateTags` or `rds:AddTagsToResource` a tag-on-create adds. An
//! operation it does not model is an error.

use selfheal::clients::CallRecord;
use serde_json::Value as Json;

use super::conditions::Context;
use super::form::{percent_decode, Form};
use super::policy::Request;
use super::ORG;

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
pub(super) enum Caller {
    Hub,
    Member { account: String, role: String },
}

pub(super) struct Call<'a> {
    pub(super) record: &'a CallRecord,
    pub(super) account: String,
    pub(super) region: String,
    pub(super) form: Form,
    pub(super) json: Json,
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

    pub(super) fn form(&self, key: &str) -> Result<String, String> {
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
    pub(super) fn requests(&self) -> Result<Vec<Request>, String> {
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
                let mut out = Vec::new();
                // What it creates: the instance, its volumes and its network interface.
                for kind in ["instance", "volume", "network-interface"] {
                    out.extend(self.ec2_created(op, kind, region, &self.form.tags_for(kind)));
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
                out.extend(self.ec2_created(op, "snapshot", region, &self.form.tags_for("snapshot")));
                Ok(out)
            }
            "ec2:CopySnapshot" => {
                let source_region = self.form("SourceRegion")?;
                let mut out = vec![self.ec2_existing(op, &self.form("SourceSnapshotId")?, &source_region)];
                out.extend(self.ec2_created(op, "snapshot", region, &self.form.tags_for("snapshot")));
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
pub(super) fn reads_anywhere(op: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::iam::tests::call;

    fn requests(r: &CallRecord) -> Result<Vec<Request>, String> {
        let json = serde_json::from_str(&r.body).unwrap_or(Json::Null);
        Call { record: r, account: "111111111111".into(), region: "us-east-1".into(), form: Form::parse(&r.body), json }
            .requests()
    }

    fn resources(r: &CallRecord) -> Vec<(String, String)> {
        let out = requests(r).unwrap_or_else(|e| panic!("{e}"));
        out.into_iter().map(|q| (q.action, q.resource)).collect()
    }

    #[test]
    fn each_call_names_the_resources_iam_authorizes_it_on() {
        let batch = call("dynamodb:BatchWriteItem", r#"{"RequestItems": {"a": [], "b": []}}"#, json!({}));
        let tables: Vec<String> = resources(&batch).into_iter().map(|(_, r)| r).collect();
        assert_eq!(
            tables,
            ["arn:aws:dynamodb:us-east-1:111111111111:table/a", "arn:aws:dynamodb:us-east-1:111111111111:table/b"]
        );
        assert!(requests(&call("dynamodb:GetItem", "{}", json!({}))).unwrap_err().contains("no table named"));
        let mut rrset = call("route53:ChangeResourceRecordSets", "<x/>", json!({}));
        rrset.uri = "http://127.0.0.1:5000/2013-04-01/hostedzone/Z1/rrset/".into();
        assert_eq!(
            resources(&rrset),
            [("route53:ChangeResourceRecordSets".to_string(), "arn:aws:route53:::hostedzone/Z1".to_string())]
        );
        rrset.uri = "http://127.0.0.1:5000/2013-04-01/hostedzone/".into();
        assert!(requests(&rrset).is_err(), "no zone id in the path");
        assert!(requests(&call("sts:GetCallerIdentity", "Action=GetCallerIdentity", json!({}))).unwrap().is_empty());
        let publish = call("sns:Publish", "Action=Publish&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A1%3At", json!({}));
        assert_eq!(resources(&publish)[0].1, "arn:aws:sns:us-east-1:1:t");
        assert!(requests(&call("ec2:DeleteVolume", "VolumeId=vol-1", json!({})))
            .unwrap_err()
            .contains("does not model"));
        let profile = call("ec2:RunInstances", "ImageId=ami-1&IamInstanceProfile.Name=p", json!({}));
        assert!(requests(&profile).unwrap_err().contains("iam:PassRole"), "what it cannot see is refused");
    }

    #[test]
    fn a_tag_on_create_adds_the_implicit_tagging_with_the_request_tags() {
        let take = call(
            "ec2:CreateSnapshot",
            "VolumeId=vol-1&TagSpecification.1.ResourceType=snapshot&TagSpecification.1.Tag.1.Key=k&TagSpecification.1.Tag.1.Value=v",
            json!({"ec2": {"vol-1": {"Team": "web"}}}),
        );
        let r = requests(&take).unwrap();
        assert_eq!(r.len(), 3, "{r:#?}");
        assert_eq!(r[0].resource, "arn:aws:ec2:us-east-1:111111111111:volume/vol-1");
        assert_eq!(r[0].context.get("aws:resourcetag/team"), Some(&vec!["web".to_string()]), "tags read before");
        assert_eq!(r[1].resource, "arn:aws:ec2:us-east-1::snapshot/*", "snapshots carry no account");
        assert_eq!(r[1].context.get("aws:requesttag/k"), Some(&vec!["v".to_string()]));
        assert_eq!(r[1].context.get("aws:tagkeys"), Some(&vec!["k".to_string()]));
        assert_eq!(
            (r[2].action.as_str(), r[2].resource.as_str()),
            ("ec2:CreateTags", "arn:aws:ec2:us-east-1::snapshot/*")
        );
        assert_eq!(r[2].context.get("ec2:createaction"), Some(&vec!["CreateSnapshot".to_string()]));
        // Untagged: no implicit CreateTags, and no request-tag keys at all (absent, not empty).
        let bare = requests(&call("ec2:CreateSnapshot", "VolumeId=vol-1", json!({}))).unwrap();
        assert_eq!(bare.len(), 2);
        assert!(bare[1].context.is_empty(), "{bare:#?}");
        let db = call(
            "rds:CreateDBSnapshot",
            "DBInstanceIdentifier=d&DBSnapshotIdentifier=s&Tags.Tag.1.Key=k&Tags.Tag.1.Value=v",
            json!({}),
        );
        let db = resources(&db);
        assert_eq!(
            db.last().unwrap(),
            &("rds:AddTagsToResource".to_string(), "arn:aws:rds:us-east-1:111111111111:snapshot:s".to_string())
        );
    }
}
