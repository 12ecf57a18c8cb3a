//! What each recorded call asks IAM: the authorizations (action, resource ARN, request context) IAM
//! makes for one call, from its operation, its request parameters, the credentials that signed it and
//! the tags the observer read before it was sent: the resource tags of what it touches, the request
//! tags it writes, the implicit `ec2:CreateTags` or `rds:AddTagsToResource` a tag-on-create adds. An
//! operation it does not model is an error.
//!
//! Resource types and condition keys follow the Service Authorization Reference: ARC zonal shift's
//! `StartZonalShift`, `UpdateZonalShift`, `CancelZonalShift` and `GetManagedResource` are authorized on
//! its ALB and NLB resource types (the load balancer's ARN) with `arc-zonal-shift:ResourceIdentifier`,
//! `aws:ResourceTag/*` and `elasticloadbalancing:ResourceTag/*`, and it defines no type for any other
//! managed resource (an Auto Scaling group), which IAM can then only grant on `*`, with the identifier
//! as its one key; its `List*` have no resource type. ELB's `ModifyLoadBalancerAttributes` is
//! authorized on the load balancer (its tags as both tag keys), its `Describe*` on `*`. Auto Scaling's
//! `UpdateAutoScalingGroup` on the group (its tags as `aws:` and `autoscaling:ResourceTag/*`), with
//! `autoscaling:LaunchConfigurationName`, `LaunchTemplateVersionSpecified`, `InstanceTypes`, `MinSize`,
//! `MaxSize` and `VPCZoneIdentifiers` present only when the request sets them. CloudWatch's
//! `DescribeAlarms` on the alarm type.

use selfheal::clients::CallRecord;
use serde_json::Value as Json;

use super::conditions::Context;
use super::form::{percent_decode, Form};
use super::observer::{arc_resource, is_load_balancer, shift_named};
use super::policy::Request;
use super::ORG;

fn tag_context(ctx: &mut Context, prefix: &str, tags: &[(String, String)]) {
    for (k, v) in tags {
        ctx.insert(format!("{prefix}/{}", k.to_ascii_lowercase()), vec![v.clone()]);
    }
}

fn resource_tags(ctx: &mut Context, tags: &Json) {
    resource_tags_as(ctx, tags, &["aws:resourcetag"]);
}

/// A resource's tags under each of `prefixes` (`aws:ResourceTag/*` and a service's own).
fn resource_tags_as(ctx: &mut Context, tags: &Json, prefixes: &[&str]) {
    if let Some(m) = tags.as_object() {
        let pairs: Vec<(String, String)> =
            m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect();
        for p in prefixes {
            tag_context(ctx, p, &pairs);
        }
    }
}

const GROUP_TAGS: [&str; 2] = ["aws:resourcetag", "autoscaling:resourcetag"];
const ELB_TAGS: [&str; 2] = ["aws:resourcetag", "elasticloadbalancing:resourcetag"];

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

    /// A request on an Auto Scaling group: the group the observer found (`found`: its ARN and tags),
    /// else an ARN naming it that no tag condition can match.
    fn group_existing(&self, action: &str, found: Option<&Json>, name: &str) -> Request {
        let arn = found.and_then(|g| g.get("arn")).and_then(Json::as_str).map(str::to_string).unwrap_or_else(|| {
            format!(
                "arn:aws:autoscaling:{}:{}:autoScalingGroup:unknown:autoScalingGroupName/{name}",
                self.region, self.account
            )
        });
        let mut context = Context::new();
        if let Some(tags) = found.and_then(|g| g.get("tags")) {
            resource_tags_as(&mut context, tags, &GROUP_TAGS);
        }
        Request { action: action.into(), resource: arn, context }
    }

    /// The keys `UpdateAutoScalingGroup` sets from its request: each only when the request sets what
    /// it is about. What else the reference lists keys for (capacity reservations, a mixed instances
    /// policy's distribution) is refused as not modelled.
    fn group_update_keys(&self) -> Result<Context, String> {
        let op = &self.record.operation;
        let keys = &self.form.0;
        if let Some(k) = keys.keys().find(|k| {
            k.starts_with("CapacityReservationSpecification")
                || k.starts_with("MixedInstancesPolicy.InstancesDistribution")
        }) {
            return Err(format!("{op} with {k}: its condition keys are not modelled"));
        }
        let mut ctx = Context::new();
        let mut set = |key: &str, values: Vec<String>| {
            if !values.is_empty() {
                ctx.insert(key.to_string(), values);
            }
        };
        set(
            "autoscaling:launchconfigurationname",
            self.form.get("LaunchConfigurationName").map(str::to_string).into_iter().collect(),
        );
        set("autoscaling:minsize", self.form.get("MinSize").map(str::to_string).into_iter().collect());
        set("autoscaling:maxsize", self.form.get("MaxSize").map(str::to_string).into_iter().collect());
        let subnets = self.form.get("VPCZoneIdentifier").unwrap_or_default();
        set(
            "autoscaling:vpczoneidentifiers",
            subnets.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect(),
        );
        // A launch template (its own, or a mixed instances policy's): whether a version other than
        // $Latest or $Default is named.
        const MIXED: &str = "MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.";
        if keys.keys().any(|k| k.starts_with("LaunchTemplate.") || k.starts_with(MIXED)) {
            let version = self.form.get("LaunchTemplate.Version").or_else(|| self.form.get(&format!("{MIXED}Version")));
            let specific = version.is_some_and(|v| !["$Latest", "$Default"].contains(&v));
            set("autoscaling:launchtemplateversionspecified", vec![specific.to_string()]);
        }
        let types: Vec<String> = keys
            .iter()
            .filter(|(k, _)| {
                k.starts_with("MixedInstancesPolicy.LaunchTemplate.Overrides.") && k.ends_with(".InstanceType")
            })
            .map(|(_, v)| v.clone())
            .collect();
        set("autoscaling:instancetypes", types);
        Ok(ctx)
    }

    /// A request on an existing Application or Network Load Balancer, with its tags as they were.
    fn elb_existing(&self, action: &str, arn: &str) -> Request {
        let mut context = Context::new();
        if let Some(tags) = self.observed(&["elb", arn]) {
            resource_tags_as(&mut context, tags, &ELB_TAGS);
        }
        Request { action: action.into(), resource: arn.to_string(), context }
    }

    /// An ARC zonal shift request about the managed resource `arn`: on the load balancer (ALB, NLB)
    /// with its tags, or, for a resource the reference defines no type for, on `*`; with
    /// `arc-zonal-shift:ResourceIdentifier` either way.
    fn arc_managed(&self, action: &str, arn: &str) -> Request {
        let mut r = if is_load_balancer(arn) {
            self.elb_existing(action, arn)
        } else {
            Request { action: action.into(), resource: "*".into(), context: Context::new() }
        };
        r.context.insert("arc-zonal-shift:resourceidentifier".into(), vec![arn.to_string()]);
        r
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
            // The drill's restore test (issue #29): a scratch volume from a snapshot, and its deletion.
            "ec2:CreateVolume" => {
                let mut out = vec![self.ec2_existing(op, &self.form("SnapshotId")?, region)];
                out.extend(self.ec2_created(op, "volume", region, &self.form.tags_for("volume")));
                Ok(out)
            }
            "ec2:DeleteVolume" => one(self.ec2_existing(op, &self.form("VolumeId")?, region)),
            "autoscaling:SetInstanceHealth" | "autoscaling:TerminateInstanceInAutoScalingGroup" => {
                let instance = self.form("InstanceId")?;
                let group = self.observed(&["groups", &instance]);
                one(self.group_existing(op, group, &format!("unknown-group-of-{instance}")))
            }
            "autoscaling:UpdateAutoScalingGroup" => {
                let name = self.form("AutoScalingGroupName")?;
                let mut r = self.group_existing(op, self.observed(&["group", &name]), &name);
                r.context.extend(self.group_update_keys()?);
                one(r)
            }
            "elasticloadbalancing:ModifyLoadBalancerAttributes" => {
                one(self.elb_existing(op, &self.form("LoadBalancerArn")?))
            }
            "arc-zonal-shift:StartZonalShift" | "arc-zonal-shift:GetManagedResource" => {
                let arn = arc_resource(self.record).ok_or_else(|| format!("{op}: no managed resource named"))?;
                one(self.arc_managed(op, &arn))
            }
            "arc-zonal-shift:UpdateZonalShift" | "arc-zonal-shift:CancelZonalShift" => {
                // Only a shift id in the request: the resource is the one ARC holds for it.
                let id = shift_named(self.record).ok_or_else(|| format!("{op}: no /zonalshifts/<id> in the URI"))?;
                let arn = self.observed(&["arcShift", "resource"]).and_then(Json::as_str).ok_or_else(|| {
                    format!(
                        "{op}: the resource of zonal shift {id} is unknown (record the calls with record_with_arc, so \
                         the observer asks ARC)"
                    )
                })?;
                one(self.arc_managed(op, arn))
            }
            "cloudwatch:DescribeAlarms" => {
                // CloudWatch sends Smithy RPC v2 CBOR: the recorded body is text only where CBOR is.
                if self.record.body.contains("AlarmNames") {
                    return Err(format!("{op} by alarm names is not modelled (only a listing, by prefix or not)"));
                }
                one(Request {
                    action,
                    resource: format!("arn:aws:cloudwatch:{region}:{account}:alarm:*"),
                    context: Context::new(),
                })
            }
            "cloudwatch:PutMetricAlarm" => Err(format!(
                "{op}: its alarm name, actions (cloudwatch:AlarmActions) and tags are in a CBOR body, which the call \
                 log keeps as lossy text: not modelled"
            )),
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
            // The restore test's scratch databases: restored from a snapshot under a new name with its
            // tags (authorized on the source and on the new resource), and deleted.
            "rds:RestoreDBInstanceFromDBSnapshot" => {
                let mut out = vec![self.rds_existing(op, "snapshot", &self.form("DBSnapshotIdentifier")?)];
                let id = self.form("DBInstanceIdentifier")?;
                out.extend(self.rds_created(op, "db", &id, &self.form.tags("Tags")));
                Ok(out)
            }
            "rds:RestoreDBClusterFromSnapshot" => {
                let mut out = vec![self.rds_existing(op, "cluster-snapshot", &self.form("SnapshotIdentifier")?)];
                let id = self.form("DBClusterIdentifier")?;
                out.extend(self.rds_created(op, "cluster", &id, &self.form.tags("Tags")));
                Ok(out)
            }
            "rds:DeleteDBInstance" => one(self.rds_existing(op, "db", &self.form("DBInstanceIdentifier")?)),
            "rds:DeleteDBCluster" => one(self.rds_existing(op, "cluster", &self.form("DBClusterIdentifier")?)),
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
            // backup-enforcer's tables (issue #29): listings on "*" (no resource type), tag reads and
            // describes on the table, the changes on the table with its tags, backups by their ARN.
            "dynamodb:ListTables" | "dynamodb:ListBackups" => {
                one(Request { action, resource: "*".into(), context: Context::new() })
            }
            "dynamodb:ListTagsOfResource" | "dynamodb:DeleteBackup" => {
                let key = if op == "dynamodb:DeleteBackup" { "BackupArn" } else { "ResourceArn" };
                let arn = self.json.get(key).and_then(Json::as_str).ok_or_else(|| format!("{op}: no {key}"))?;
                one(Request { action, resource: arn.to_string(), context: Context::new() })
            }
            // The restore test's table: restored from the source's point in time into a new table
            // (authorized on both), tagged by ARN.
            "dynamodb:RestoreTableToPointInTime" => {
                let table = |key: &str| self.json.get(key).and_then(Json::as_str).map(str::to_string);
                let arn = |t: String| format!("arn:aws:dynamodb:{region}:{account}:table/{t}");
                let source = table("SourceTableArn")
                    .or_else(|| table("SourceTableName").map(arn))
                    .ok_or_else(|| format!("{op}: no SourceTableName or SourceTableArn"))?;
                let target = table("TargetTableName").ok_or_else(|| format!("{op}: no TargetTableName"))?;
                Ok(vec![
                    Request { action: action.clone(), resource: source, context: Context::new() },
                    Request { action, resource: arn(target), context: Context::new() },
                ])
            }
            "dynamodb:TagResource" => {
                let arn = self
                    .json
                    .get("ResourceArn")
                    .and_then(Json::as_str)
                    .ok_or_else(|| format!("{op}: no ResourceArn"))?;
                one(Request { action, resource: arn.to_string(), context: Context::new() })
            }
            "dynamodb:UpdateContinuousBackups" | "dynamodb:UpdateTable" | "dynamodb:CreateBackup" => {
                let table =
                    self.json.get("TableName").and_then(Json::as_str).ok_or_else(|| format!("{op}: no TableName"))?;
                let mut context = Context::new();
                if let Some(tags) = self.observed(&["dynamodb", table]) {
                    resource_tags(&mut context, tags);
                }
                one(Request { action, resource: format!("arn:aws:dynamodb:{region}:{account}:table/{table}"), context })
            }
            // S3 (path-style requests: the bucket is the path's first segment). Bucket actions are
            // judged with s3:ResourceAccount, the bucket owner's account: the caller's own (the sweep
            // lists only its own buckets and sends ExpectedBucketOwner with every call on them).
            "s3:ListBuckets" => {
                one(Request { action: "s3:ListAllMyBuckets".into(), resource: "*".into(), context: Context::new() })
            }
            "s3:GetBucketTagging"
            | "s3:GetBucketVersioning"
            | "s3:PutBucketVersioning"
            | "s3:GetBucketLifecycleConfiguration"
            | "s3:PutBucketLifecycleConfiguration"
            | "s3:GetBucketReplication"
            | "s3:PutBucketReplication"
            | "s3:HeadBucket" => {
                let bucket = super::form::uri_segments(&self.record.uri)
                    .into_iter()
                    .next()
                    .ok_or_else(|| format!("{op}: no bucket in {}", self.record.uri))?;
                let iam = match op {
                    "s3:GetBucketLifecycleConfiguration" => "s3:GetLifecycleConfiguration",
                    "s3:PutBucketLifecycleConfiguration" => "s3:PutLifecycleConfiguration",
                    "s3:GetBucketReplication" => "s3:GetReplicationConfiguration",
                    "s3:PutBucketReplication" => "s3:PutReplicationConfiguration",
                    "s3:HeadBucket" => "s3:ListBucket",
                    other => other,
                };
                let context = Context::from([("s3:resourceaccount".to_string(), vec![account.to_string()])]);
                let mut out = vec![Request { action: iam.into(), resource: format!("arn:aws:s3:::{bucket}"), context }];
                if op == "s3:PutBucketReplication" {
                    // The role S3 replicates as is passed to S3.
                    let role = self
                        .record
                        .body
                        .split_once("<Role>")
                        .and_then(|(_, r)| r.split_once("</Role>"))
                        .map(|(r, _)| r.trim().to_string())
                        .ok_or_else(|| format!("{op}: no Role in the replication configuration"))?;
                    let context =
                        Context::from([("iam:passedtoservice".to_string(), vec!["s3.amazonaws.com".to_string()])]);
                    out.push(Request { action: "iam:PassRole".into(), resource: role, context });
                }
                Ok(out)
            }
            // Object calls (the restore test's scratch copy of a version): on `bucket/key`, as the
            // version's own action when the request names a version; a copy is the destination's
            // PutObject and its source's GetObjectVersion (x-amz-copy-source).
            "s3:ListObjectVersions" | "s3:GetBucketLocation" => {
                let bucket = super::form::uri_segments(&self.record.uri)
                    .into_iter()
                    .next()
                    .ok_or_else(|| format!("{op}: no bucket in {}", self.record.uri))?;
                let iam = if op == "s3:ListObjectVersions" { "s3:ListBucketVersions" } else { op };
                let context = Context::from([("s3:resourceaccount".to_string(), vec![account.to_string()])]);
                one(Request { action: iam.into(), resource: format!("arn:aws:s3:::{bucket}"), context })
            }
            "s3:GetObject"
            | "s3:HeadObject"
            | "s3:PutObjectTagging"
            | "s3:GetObjectTagging"
            | "s3:DeleteObject"
            | "s3:CopyObject" => {
                let segments = super::form::uri_segments(&self.record.uri);
                let (bucket, key) = match segments.split_first() {
                    Some((b, rest)) if !rest.is_empty() => (b.clone(), rest.join("/")),
                    _ => return Err(format!("{op}: no bucket/key in {}", self.record.uri)),
                };
                let versioned = self.record.uri.contains("versionId=");
                let iam = match (op, versioned) {
                    ("s3:HeadObject" | "s3:GetObject", false) => "s3:GetObject",
                    ("s3:HeadObject" | "s3:GetObject", true) => "s3:GetObjectVersion",
                    ("s3:GetObjectTagging", false) => "s3:GetObjectTagging",
                    ("s3:GetObjectTagging", true) => "s3:GetObjectVersionTagging",
                    ("s3:PutObjectTagging", false) => "s3:PutObjectTagging",
                    ("s3:PutObjectTagging", true) => "s3:PutObjectVersionTagging",
                    ("s3:DeleteObject", false) => "s3:DeleteObject",
                    ("s3:DeleteObject", true) => "s3:DeleteObjectVersion",
                    _ => "s3:PutObject",
                };
                let mut out = vec![Request {
                    action: iam.into(),
                    resource: format!("arn:aws:s3:::{bucket}/{key}"),
                    context: Context::new(),
                }];
                if op == "s3:CopyObject" {
                    let source = self
                        .record
                        .copy_source
                        .as_deref()
                        .map(percent_decode)
                        .ok_or_else(|| format!("{op}: no x-amz-copy-source recorded"))?;
                    let (object, version) = match source.trim_start_matches('/').split_once("?versionId=") {
                        Some((o, _)) => (o.to_string(), true),
                        None => (source.trim_start_matches('/').to_string(), false),
                    };
                    let read = if version { "s3:GetObjectVersion" } else { "s3:GetObject" };
                    out.push(Request {
                        action: read.into(),
                        resource: format!("arn:aws:s3:::{object}"),
                        context: Context::new(),
                    });
                }
                Ok(out)
            }
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
/// `Describe*`, RDS `ListTagsForResource`, CloudWatch and AWS Backup listings, AWS Organizations,
/// Elastic Load Balancing's `Describe*`, ARC zonal shift's `List*` and the tagging API's
/// `GetResources` (the reference gives them no resource type). Route 53, DynamoDB and AWS Backup's per-resource reads, CloudWatch's
/// `DescribeAlarms` (the alarm type) and ARC's `GetManagedResource` are scoped, and modelled one by one.
pub(super) fn reads_anywhere(op: &str) -> bool {
    let (service, name) = op.split_once(':').unwrap_or(("", op));
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
    match service {
        "ec2" | "autoscaling" => starts(&["Describe"]) && name != "DescribeInstanceAttribute",
        "rds" => starts(&["Describe"]) || name == "ListTagsForResource",
        "cloudwatch" => starts(&["Describe", "Get", "List"]) && name != "DescribeAlarms",
        "backup" => starts(&["List"]),
        "organizations" => starts(&["List", "Describe"]),
        "elasticloadbalancing" => starts(&["Describe"]),
        "arc-zonal-shift" => starts(&["List"]),
        // The Resource Groups Tagging API's reads name no resource type ("*" only).
        "tag" => name == "GetResources",
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
        assert!(requests(&call("ec2:DetachVolume", "VolumeId=vol-1", json!({})))
            .unwrap_err()
            .contains("does not model"));
        let profile = call("ec2:RunInstances", "ImageId=ami-1&IamInstanceProfile.Name=p", json!({}));
        assert!(requests(&profile).unwrap_err().contains("iam:PassRole"), "what it cannot see is refused");
    }

    #[test]
    fn table_and_bucket_calls_are_judged_on_the_table_s_tags_and_the_bucket_s_owner() {
        let observed = json!({"dynamodb": {"orders": {"selfheal:enabled": "true"}}});
        let pitr = call("dynamodb:UpdateContinuousBackups", r#"{"TableName": "orders"}"#, observed);
        let r = requests(&pitr).unwrap();
        assert_eq!(r[0].resource, "arn:aws:dynamodb:us-east-1:111111111111:table/orders");
        assert_eq!(r[0].context["aws:resourcetag/selfheal:enabled"], ["true"]);
        let list = call("dynamodb:ListTables", "{}", json!({}));
        assert_eq!(resources(&list), [("dynamodb:ListTables".to_string(), "*".to_string())]);
        let del = call(
            "dynamodb:DeleteBackup",
            r#"{"BackupArn": "arn:aws:dynamodb:us-east-1:1:table/t/backup/b"}"#,
            json!({}),
        );
        assert_eq!(resources(&del)[0].1, "arn:aws:dynamodb:us-east-1:1:table/t/backup/b");

        let mut rep = call(
            "s3:PutBucketReplication",
            "<ReplicationConfiguration><Role>arn:aws:iam::111111111111:role/selfheal-replication-dr</Role></ReplicationConfiguration>",
            json!({}),
        );
        rep.uri = "http://127.0.0.1:5000/my-bucket?replication".into();
        let r = requests(&rep).unwrap();
        assert_eq!(
            (r[0].action.as_str(), r[0].resource.as_str()),
            ("s3:PutReplicationConfiguration", "arn:aws:s3:::my-bucket")
        );
        assert_eq!(r[0].context["s3:resourceaccount"], ["111111111111"]);
        assert_eq!(
            (r[1].action.as_str(), r[1].resource.as_str()),
            ("iam:PassRole", "arn:aws:iam::111111111111:role/selfheal-replication-dr")
        );
        assert_eq!(r[1].context["iam:passedtoservice"], ["s3.amazonaws.com"]);
        let mut head = call("s3:HeadBucket", "", json!({}));
        head.uri = "http://127.0.0.1:5000/dest".into();
        assert_eq!(requests(&head).unwrap()[0].action, "s3:ListBucket");
        let listing = call("s3:ListBuckets", "", json!({}));
        assert_eq!(resources(&listing), [("s3:ListAllMyBuckets".to_string(), "*".to_string())]);
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

    const LB: &str = "arn:aws:elasticloadbalancing:us-east-1:111111111111:loadbalancer/app/web/50dc6c495c0c9188";
    const GROUP: &str = "arn:aws:autoscaling:us-east-1:111111111111:autoScalingGroup:9d1f:autoScalingGroupName/web";

    fn arc(op: &str, uri: &str, body: &str, observed: Json) -> CallRecord {
        let mut r = call(op, body, observed);
        r.uri = format!("http://127.0.0.1:9000{uri}");
        r
    }

    fn key<'a>(r: &'a Request, k: &str) -> Option<&'a Vec<String>> {
        r.context.get(k)
    }

    #[test]
    fn arc_zonal_shift_calls_are_judged_on_the_managed_resource_they_are_about() {
        let tags = json!({"elb": {LB: {"selfheal:enabled": "true", "Team": "web"}}});
        let start = |arn: &str, observed: Json| {
            let body = json!({"awayFrom": "use1-az6", "comment": "c", "expiresIn": "60m", "resourceIdentifier": arn});
            arc("arc-zonal-shift:StartZonalShift", "/zonalshifts", &body.to_string(), observed)
        };
        // A load balancer: its ARN (the ALB resource type), its tags under both tag keys, its identifier.
        let r = requests(&start(LB, tags.clone())).unwrap();
        assert_eq!((r.len(), r[0].resource.as_str()), (1, LB));
        assert_eq!(key(&r[0], "aws:resourcetag/selfheal:enabled"), Some(&vec!["true".to_string()]));
        assert_eq!(key(&r[0], "elasticloadbalancing:resourcetag/team"), Some(&vec!["web".to_string()]));
        assert_eq!(key(&r[0], "arc-zonal-shift:resourceidentifier"), Some(&vec![LB.to_string()]));
        // Tags not read (the load balancer is gone, or the observer did not look): none in the context.
        let bare = requests(&start(LB, json!({}))).unwrap();
        assert_eq!(bare[0].context.len(), 1, "{bare:#?}");
        // A group: the reference defines no resource type for it, so "*", and no tag key.
        let g = requests(&start(GROUP, tags.clone())).unwrap();
        assert_eq!(g[0].resource, "*");
        assert_eq!(g[0].context.keys().collect::<Vec<_>>(), ["arc-zonal-shift:resourceidentifier"]);
        assert!(requests(&arc("arc-zonal-shift:StartZonalShift", "/zonalshifts", "{}", json!({})))
            .unwrap_err()
            .contains("no managed resource"));
        // GetManagedResource: the ARN is one encoded path segment.
        let encoded = percent_encode(LB);
        let get = arc("arc-zonal-shift:GetManagedResource", &format!("/managedresources/{encoded}"), "", tags.clone());
        let r = requests(&get).unwrap();
        assert_eq!((r[0].resource.as_str(), r[0].context.len()), (LB, 5), "{r:#?}");
        // Update and Cancel name a shift: its resource is the one ARC holds for it, as the observer read.
        for op in ["arc-zonal-shift:UpdateZonalShift", "arc-zonal-shift:CancelZonalShift"] {
            let mut seen = tags.clone();
            seen["arcShift"] = json!({"id": "s-1", "resource": LB});
            let r = requests(&arc(op, "/zonalshifts/s-1", r#"{"expiresIn": "60m"}"#, seen)).unwrap();
            assert_eq!((r[0].action.as_str(), r[0].resource.as_str()), (op, LB));
            assert_eq!(key(&r[0], "aws:resourcetag/selfheal:enabled"), Some(&vec!["true".to_string()]));
            let unknown = json!({"arcShift": {"id": "s-1", "resource": null}});
            let err = requests(&arc(op, "/zonalshifts/s-1", "", unknown)).unwrap_err();
            assert!(err.contains("zonal shift s-1 is unknown") && err.contains("record_with_arc"), "{err}");
            assert!(requests(&arc(op, "/zonalshifts", "", json!({}))).unwrap_err().contains("/zonalshifts/<id>"));
        }
        for op in ["ListManagedResources", "ListZonalShifts", "ListAutoshifts"] {
            let list = arc(&format!("arc-zonal-shift:{op}"), "/managedresources", "", json!({}));
            assert_eq!(resources(&list)[0].1, "*");
        }
        assert!(requests(&call("arc-zonal-shift:UpdatePracticeRunConfiguration", "{}", json!({}))).is_err());
    }

    fn percent_encode(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    #[test]
    fn a_group_update_carries_the_keys_of_what_it_sets_and_only_those() {
        let found = json!({"group": {"web": {"arn": GROUP, "tags": {"selfheal:enabled": "true"}}}});
        let update = |params: &str| {
            let body = format!("Action=UpdateAutoScalingGroup&AutoScalingGroupName=web{params}");
            requests(&call("autoscaling:UpdateAutoScalingGroup", &body, found.clone()))
        };
        let desired = update("&DesiredCapacity=4").unwrap();
        assert_eq!(desired[0].resource, GROUP);
        let keys: Vec<&String> = desired[0].context.keys().collect();
        assert_eq!(keys, ["autoscaling:resourcetag/selfheal:enabled", "aws:resourcetag/selfheal:enabled"]);
        let subnets = update("&VPCZoneIdentifier=subnet-1%2Csubnet-2").unwrap();
        assert_eq!(
            key(&subnets[0], "autoscaling:vpczoneidentifiers"),
            Some(&vec!["subnet-1".into(), "subnet-2".into()])
        );
        let all = update(
            "&MinSize=1&MaxSize=9&LaunchConfigurationName=lc&LaunchTemplate.LaunchTemplateId=lt-1&LaunchTemplate.Version=3\
             &MixedInstancesPolicy.LaunchTemplate.Overrides.member.1.InstanceType=m5.large\
             &MixedInstancesPolicy.LaunchTemplate.Overrides.member.2.InstanceType=c5.large",
        )
        .unwrap();
        let has = |k: &str| key(&all[0], k).cloned().unwrap_or_default();
        assert_eq!((has("autoscaling:minsize"), has("autoscaling:maxsize")), (vec!["1".into()], vec!["9".into()]));
        assert_eq!(has("autoscaling:launchconfigurationname"), ["lc"]);
        assert_eq!(has("autoscaling:launchtemplateversionspecified"), ["true"]);
        assert_eq!(has("autoscaling:instancetypes"), ["m5.large", "c5.large"]);
        for latest in [
            "&LaunchTemplate.LaunchTemplateId=lt-1&LaunchTemplate.Version=%24Latest",
            "&LaunchTemplate.LaunchTemplateName=x",
        ] {
            let r = update(latest).unwrap();
            assert_eq!(
                key(&r[0], "autoscaling:launchtemplateversionspecified"),
                Some(&vec!["false".into()]),
                "{latest}"
            );
        }
        let mixed = update("&MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.Version=2").unwrap();
        assert_eq!(key(&mixed[0], "autoscaling:launchtemplateversionspecified"), Some(&vec!["true".into()]));
        for unmodelled in [
            "&CapacityReservationSpecification.CapacityReservationPreference=none",
            "&MixedInstancesPolicy.InstancesDistribution.OnDemandBaseCapacity=1",
        ] {
            assert!(update(unmodelled).unwrap_err().contains("not modelled"), "{unmodelled}");
        }
        // A group the observer did not find: an ARN naming it, no tags.
        let gone = requests(&call(
            "autoscaling:UpdateAutoScalingGroup",
            "AutoScalingGroupName=gone&DesiredCapacity=1",
            json!({}),
        ));
        let gone = gone.unwrap();
        assert!(gone[0].resource.ends_with(":autoScalingGroupName/gone") && gone[0].context.is_empty(), "{gone:#?}");
        assert!(requests(&call("autoscaling:UpdateAutoScalingGroup", "DesiredCapacity=1", json!({}))).is_err());
    }

    #[test]
    fn load_balancer_attributes_alarms_and_the_evacuator_s_reads() {
        let modify = call(
            "elasticloadbalancing:ModifyLoadBalancerAttributes",
            &format!("Action=ModifyLoadBalancerAttributes&LoadBalancerArn={}&Attributes.member.1.Key=zonal_shift.config.enabled&Attributes.member.1.Value=true", percent_encode(LB)),
            json!({"elb": {LB: {"selfheal:enabled": "true"}}}),
        );
        let r = requests(&modify).unwrap();
        assert_eq!(r[0].resource, LB);
        assert_eq!(key(&r[0], "elasticloadbalancing:resourcetag/selfheal:enabled"), Some(&vec!["true".into()]));
        for op in [
            "elasticloadbalancing:DescribeLoadBalancers",
            "elasticloadbalancing:DescribeTags",
            "elasticloadbalancing:DescribeLoadBalancerAttributes",
            "ec2:DescribeAvailabilityZones",
            "ec2:DescribeSubnets",
            "autoscaling:DescribeAutoScalingGroups",
        ] {
            assert_eq!(resources(&call(op, "Action=x", json!({}))), [(op.to_string(), "*".to_string())]);
        }
        assert!(requests(&call("elasticloadbalancing:DeleteLoadBalancer", "", json!({})))
            .unwrap_err()
            .contains("does not model"));
        let listing =
            requests(&call("cloudwatch:DescribeAlarms", "\u{fffd}oAlarmNamePrefixlselfheal-az|", json!({}))).unwrap();
        assert_eq!(listing[0].resource, "arn:aws:cloudwatch:us-east-1:111111111111:alarm:*");
        assert!(requests(&call("cloudwatch:DescribeAlarms", "\u{fffd}jAlarmNames\u{fffd}", json!({}))).is_err());
        assert!(requests(&call("cloudwatch:PutMetricAlarm", "", json!({}))).unwrap_err().contains("CBOR"));
        assert_eq!(resources(&call("cloudwatch:GetMetricData", "", json!({})))[0].1, "*");
    }

    /// The restore test's calls (issue #29): each on its source and on what it creates or deletes.
    #[test]
    fn restore_calls_are_judged_on_their_source_and_their_scratch_resource() {
        let vol = call(
            "ec2:CreateVolume",
            "SnapshotId=snap-1&TagSpecification.1.ResourceType=volume&TagSpecification.1.Tag.1.Key=k&TagSpecification.1.Tag.1.Value=v",
            json!({}),
        );
        let got = resources(&vol);
        assert_eq!(got[0], ("ec2:CreateVolume".into(), "arn:aws:ec2:us-east-1::snapshot/snap-1".into()));
        assert_eq!(got[1], ("ec2:CreateVolume".into(), "arn:aws:ec2:us-east-1:111111111111:volume/*".into()));
        assert_eq!(got[2].0, "ec2:CreateTags");
        let db = call(
            "rds:RestoreDBInstanceFromDBSnapshot",
            "DBSnapshotIdentifier=s&DBInstanceIdentifier=selfheal-restore-x",
            json!({}),
        );
        let got: Vec<String> = resources(&db).into_iter().map(|(_, r)| r).collect();
        assert_eq!(
            got,
            [
                "arn:aws:rds:us-east-1:111111111111:snapshot:s",
                "arn:aws:rds:us-east-1:111111111111:db:selfheal-restore-x"
            ]
        );
        let table = call(
            "dynamodb:RestoreTableToPointInTime",
            r#"{"SourceTableName": "orders", "TargetTableName": "selfheal-restore-t"}"#,
            json!({}),
        );
        let got: Vec<String> = resources(&table).into_iter().map(|(_, r)| r).collect();
        assert_eq!(
            got,
            [
                "arn:aws:dynamodb:us-east-1:111111111111:table/orders",
                "arn:aws:dynamodb:us-east-1:111111111111:table/selfheal-restore-t"
            ]
        );
        let mut copy = call("s3:CopyObject", "", json!({}));
        copy.uri = "http://127.0.0.1:5000/web/selfheal-restore-test/x/index.html".into();
        assert!(requests(&copy).unwrap_err().contains("x-amz-copy-source"), "a copy without its source is no answer");
        copy.copy_source = Some("web/index.html?versionId=v1".into());
        assert_eq!(
            resources(&copy),
            [
                ("s3:PutObject".to_string(), "arn:aws:s3:::web/selfheal-restore-test/x/index.html".to_string()),
                ("s3:GetObjectVersion".to_string(), "arn:aws:s3:::web/index.html".to_string())
            ]
        );
        let mut delete = call("s3:DeleteObject", "", json!({}));
        delete.uri = "http://127.0.0.1:5000/web/selfheal-restore-test/x/index.html?versionId=v2".into();
        assert_eq!(resources(&delete)[0].0, "s3:DeleteObjectVersion");
    }
}
