//! The zone-evacuator rig: an ARC stand-in, the real [`Evacuator`] on a fresh ledger with its ARC client
//! pointed at the stand-in, and a place (the hub or a member account) built in moto with a VPC of one
//! subnet per AZ, load balancers and Auto Scaling groups spread over them; events shaped as AWS delivers
//! them; and readers of what moto and the stand-in hold afterwards.
//!
//! Every rig opts in with a value of its own (`SELFHEAL_OPT_IN_VALUE`): the evacuator acts on every
//! opted-in load balancer, group and writer of a place, and the tests share moto's accounts, so one test
//! never evacuates another's resources.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag as AsgTag};
use aws_sdk_ec2::types::RequestLaunchTemplateData;
use aws_sdk_elasticloadbalancingv2::types::{LoadBalancerAttribute, LoadBalancerTypeEnum, Tag as ElbTag};
use chrono::{DateTime, Utc};
use harness::arc::{ArcRequest, ArcStandIn, Shift};
use harness::unique;
use selfheal::clients::Aws;
use selfheal::db::{DbConfig, DbFailover, StaticLag};
use selfheal::zone::{Evacuator, ZoneConfig, FUNCTION};
use selfheal::{parse_event, Envelope, Outcome};
use serde_json::{json, Value};

/// moto's default account: the hub.
pub const HUB: &str = "123456789012";
/// The AZs every place spreads over, in subnet order.
pub const NAMES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
/// The AZ the tests impair.
pub const BAD: &str = "us-east-1a";
/// The ELB attribute without which ARC cannot shift a load balancer.
pub const ZONAL_SHIFT: &str = "zonal_shift.config.enabled";
/// The comment prefix of the evacuator's shifts.
pub const COMMENT: &str = "selfheal zone-evacuator";

/// A load balancer built in moto.
#[derive(Debug, Clone)]
pub struct Lb {
    pub arn: String,
    pub name: String,
    /// The ELB dimension per-AZ alarms name (`app/<name>/<id>`).
    pub dim: String,
    pub azs: Vec<String>,
}

/// An Auto Scaling group built in moto.
#[derive(Debug, Clone)]
pub struct Group {
    pub arn: String,
    pub name: String,
    /// `VPCZoneIdentifier` as created, in order.
    pub subnets: Vec<String>,
    pub azs: Vec<String>,
}

/// One account's network in the region, with its own clients (not the evacuator's call log).
pub struct Place {
    pub account: String,
    pub aws: Aws,
    /// AZ name → AZ ID in this account, as moto serves them.
    pub ids: BTreeMap<String, String>,
    /// One subnet per [`NAMES`] entry.
    pub subnets: Vec<String>,
    pub launch_template: String,
    pub opt_in: String,
}

impl Place {
    /// A VPC with one subnet in each of [`NAMES`] and a launch template, in the account `sdk` acts in.
    pub async fn build(account: &str, aws: Aws, opt_in: &str) -> Place {
        let ec2 = aws.ec2();
        let zones = ec2.describe_availability_zones().send().await.unwrap();
        let ids: BTreeMap<String, String> = zones
            .availability_zones()
            .iter()
            .map(|z| (z.zone_name().unwrap().to_string(), z.zone_id().unwrap().to_string()))
            .collect();
        let vpc = ec2.create_vpc().cidr_block("10.40.0.0/16").send().await.unwrap();
        let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
        let mut subnets = Vec::new();
        for (i, az) in NAMES.iter().enumerate() {
            let s = ec2
                .create_subnet()
                .vpc_id(&vpc_id)
                .cidr_block(format!("10.40.{i}.0/24"))
                .availability_zone(*az)
                .send()
                .await
                .unwrap();
            subnets.push(s.subnet().unwrap().subnet_id().unwrap().to_string());
        }
        let image = harness::ami(&ec2).await;
        let lt = ec2
            .create_launch_template()
            .launch_template_name(unique("zone-lt"))
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id(image)
                    .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let launch_template = lt.launch_template().unwrap().launch_template_id().unwrap().to_string();
        Place { account: account.to_string(), aws, ids, subnets, launch_template, opt_in: opt_in.to_string() }
    }

    pub fn id(&self, az: &str) -> String {
        self.ids.get(az).unwrap_or_else(|| panic!("moto has no AZ {az}")).clone()
    }

    fn subnet(&self, az: &str) -> String {
        self.subnets[NAMES.iter().position(|n| *n == az).unwrap_or_else(|| panic!("no subnet in {az}"))].clone()
    }

    /// An ALB over `azs`; opted in (this rig's value) when `opted_in`, with zonal shift enabled when
    /// `zonal_shift`.
    pub async fn lb(&self, azs: &[&str], opted_in: bool, zonal_shift: bool) -> Lb {
        let elb = self.aws.elbv2();
        let name = unique("zlb");
        let value = if opted_in { self.opt_in.as_str() } else { "false" };
        let out = elb
            .create_load_balancer()
            .name(&name)
            .r#type(LoadBalancerTypeEnum::Application)
            .set_subnets(Some(azs.iter().map(|a| self.subnet(a)).collect()))
            .tags(ElbTag::builder().key(harness::OPT_IN.0).value(value).build())
            .send()
            .await
            .unwrap();
        let arn = out.load_balancers()[0].load_balancer_arn().unwrap().to_string();
        if zonal_shift {
            elb.modify_load_balancer_attributes()
                .load_balancer_arn(&arn)
                .attributes(LoadBalancerAttribute::builder().key(ZONAL_SHIFT).value("true").build())
                .send()
                .await
                .unwrap();
        }
        let dim = arn.split_once(":loadbalancer/").unwrap().1.to_string();
        Lb { arn, name, dim, azs: azs.iter().map(|a| a.to_string()).collect() }
    }

    /// A group with `per_az` in-service instances in each of its subnets (`(AZ, count)`, in the order of
    /// its `VPCZoneIdentifier`), desired capacity their sum, minimum 0, maximum `max`; opted in when
    /// `opted_in`. The instances are launched in each subnet and attached (moto launches a group's own
    /// into one AZ).
    pub async fn group(&self, per_az: &[(&str, i32)], max: i32, opted_in: bool) -> Group {
        let asg = self.aws.autoscaling();
        let ec2 = self.aws.ec2();
        let name = unique("zasg");
        let subnets: Vec<String> = per_az.iter().map(|(az, _)| self.subnet(az)).collect();
        let value = if opted_in { self.opt_in.as_str() } else { "false" };
        let template = || {
            LaunchTemplateSpecification::builder().launch_template_id(&self.launch_template).version("$Latest").build()
        };
        asg.create_auto_scaling_group()
            .auto_scaling_group_name(&name)
            .launch_template(template())
            .min_size(0)
            .max_size(max)
            .desired_capacity(0)
            .vpc_zone_identifier(subnets.join(","))
            .tags(
                AsgTag::builder()
                    .key(harness::OPT_IN.0)
                    .value(value)
                    .propagate_at_launch(false)
                    .resource_id(&name)
                    .resource_type("auto-scaling-group")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let mut launched = Vec::new();
        for ((_, count), subnet) in per_az.iter().zip(&subnets).filter(|((_, n), _)| *n > 0) {
            let run = ec2
                .run_instances()
                .launch_template(
                    aws_sdk_ec2::types::LaunchTemplateSpecification::builder()
                        .launch_template_id(&self.launch_template)
                        .version("$Latest")
                        .build(),
                )
                .subnet_id(subnet)
                .min_count(*count)
                .max_count(*count)
                .send()
                .await
                .unwrap();
            launched.extend(run.instances().iter().map(|i| i.instance_id().unwrap().to_string()));
        }
        let desired: i32 = per_az.iter().map(|(_, n)| n).sum();
        if !launched.is_empty() {
            asg.attach_instances()
                .auto_scaling_group_name(&name)
                .set_instance_ids(Some(launched))
                .send()
                .await
                .unwrap();
        }
        asg.update_auto_scaling_group().auto_scaling_group_name(&name).desired_capacity(desired).send().await.unwrap();
        let out = asg.describe_auto_scaling_groups().auto_scaling_group_names(&name).send().await.unwrap();
        let g = &out.auto_scaling_groups()[0];
        let arn = g.auto_scaling_group_arn().unwrap().to_string();
        let in_service: Vec<&str> = g.instances().iter().filter_map(|i| i.availability_zone()).collect();
        assert_eq!(in_service.len() as i32, desired, "{name}: {in_service:?}");
        Group { arn, name, subnets, azs: per_az.iter().map(|(a, _)| a.to_string()).collect() }
    }

    /// A group's desired capacity and `VPCZoneIdentifier` in moto now; `None` when it is gone.
    pub async fn group_now(&self, g: &Group) -> Option<(i32, String)> {
        let out = self.aws.autoscaling().describe_auto_scaling_groups().auto_scaling_group_names(&g.name).send().await;
        let out = out.unwrap();
        let g = out.auto_scaling_groups().first()?;
        Some((g.desired_capacity().unwrap(), g.vpc_zone_identifier().unwrap_or_default().to_string()))
    }
}

/// The evacuator, its ARC stand-in and the place the test builds in.
pub struct Rig {
    pub stand_in: ArcStandIn,
    pub ev: Evacuator,
    pub place: Place,
}

/// The settings every rig has: the template's cooldown for this function (its flap guard is the
/// hysteresis), db-failover's waits short, and this rig's own opt-in value.
fn settings<'a>(opt_in: &'a str, member: Option<&'a str>, vars: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
        ("SELFHEAL_OPT_IN_VALUE", opt_in),
        ("SELFHEAL_DB_POLL_SECONDS", "1"),
        ("SELFHEAL_DB_WAIT_SECONDS", "30"),
    ];
    if let Some(m) = member {
        all.push(("SELFHEAL_ACCOUNTS", m));
    }
    all.extend_from_slice(vars);
    all
}

impl Rig {
    /// Resources in the hub account (moto's default).
    pub async fn hub(vars: &[(&str, &str)]) -> Rig {
        Rig::build(None, vars).await
    }

    /// Resources in the member account `account`, served by the hub (`SELFHEAL_ACCOUNTS`).
    pub async fn member(account: &str, vars: &[(&str, &str)]) -> Rig {
        Rig::build(Some(account), vars).await
    }

    async fn build(member: Option<&str>, vars: &[(&str, &str)]) -> Rig {
        let stand_in = ArcStandIn::start().await;
        let opt_in = unique("zone");
        let all = settings(&opt_in, member, vars);
        let aws =
            Aws::from_sdk_config(harness::sdk_config().await).with_endpoint("arc-zonal-shift", stand_in.endpoint());
        let ctx = harness::ctx_with(FUNCTION, &all, aws).await;
        let mut env = harness::env(&all);
        let cfg = ZoneConfig::read(&mut env);
        let db = DbFailover::new(ctx.clone(), DbConfig::read(&mut env))
            .with_lag_source(Arc::new(StaticLag::new(Vec::<(String, f64)>::new()).with_default(1.0)));
        env.finish().expect("valid zone and db settings");
        let ev = Evacuator::new(ctx, cfg, db);
        let (account, sdk) = match member {
            Some(m) => (m.to_string(), harness::in_account(m).await),
            None => (HUB.to_string(), harness::sdk_config().await),
        };
        let place = Place::build(&account, Aws::from_sdk_config(sdk), &opt_in).await;
        Rig { stand_in, ev, place }
    }

    /// The AZ ID of `az` in the rig's account.
    pub fn id(&self, az: &str) -> String {
        self.place.id(az)
    }

    /// Registers a resource with ARC (the stand-in) in `azs`: ARC then manages it (a group so
    /// registered is one ARC can shift).
    pub fn register(&self, arn: &str, name: &str, azs: &[String], autoshift: bool) {
        let pairs: Vec<(String, String)> = azs.iter().map(|a| (a.clone(), self.id(a))).collect();
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        self.stand_in.register(arn, name, &refs, autoshift);
    }

    /// An opted-in ALB in every AZ, zonal shift enabled, registered with ARC.
    pub async fn ready_lb(&self) -> Lb {
        let lb = self.place.lb(&NAMES, true, true).await;
        self.register(&lb.arn, &lb.name, &lb.azs, false);
        lb
    }

    /// An opted-in group with two in-service instances per AZ, maximum `max`, registered with ARC.
    pub async fn ready_group(&self, max: i32) -> Group {
        let g = self.place.group(&[(NAMES[0], 2), (NAMES[1], 2), (NAMES[2], 2)], max, true).await;
        self.register(&g.arn, &g.name, &g.azs, false);
        g
    }

    /// A CloudWatch Alarm State Change (EventBridge shape) of the suite's per-AZ alarm
    /// `selfheal-az|<az>|<signal>|<lb>`, from the rig's account, changed now.
    pub fn alarm(&self, az: &str, signal: &str, lb: &Lb, state: &str) -> Value {
        self.alarm_at(az, signal, lb, state, Utc::now())
    }

    /// [`Rig::alarm`] with the state change's time given (CloudWatch's `+0000` form, as AWS sends it).
    pub fn alarm_at(&self, az: &str, signal: &str, lb: &Lb, state: &str, at: DateTime<Utc>) -> Value {
        let name = format!("selfheal-az|{az}|{signal}|{}", lb.dim);
        let account = &self.place.account;
        let stamp = at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
        json!({
            "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "CloudWatch Alarm State Change",
            "source": "aws.cloudwatch", "account": account, "time": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "region": harness::REGION,
            "resources": [format!("arn:aws:cloudwatch:{}:{account}:alarm:{name}", harness::REGION)],
            "detail": {
                "alarmName": name,
                "state": {"value": state, "reason": format!("Threshold Crossed ({signal} in {az})"), "timestamp": stamp},
                "previousState": {"value": if state == "OK" { "ALARM" } else { "OK" }, "reason": "", "timestamp": stamp},
                "configuration": {"metrics": [{"id": "m1", "metricStat": {"metric": {
                    "namespace": "AWS/ApplicationELB", "name": "HTTPCode_Target_5XX_Count",
                    "dimensions": {"LoadBalancer": lb.dim, "AvailabilityZone": az}}, "period": 60, "stat": "Sum"}}]}
            }
        })
    }

    /// The re-check schedule's event (EventBridge `Scheduled Event`).
    pub fn schedule(&self) -> Value {
        json!({
            "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": HUB, "time": Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "region": harness::REGION, "resources": [format!("arn:aws:events:{}:{HUB}:rule/selfheal-zone-recheck", harness::REGION)],
            "detail": {}
        })
    }

    /// A manual invocation in the rig's account.
    pub fn manual(&self, action: &str, target: Option<&str>) -> Value {
        let mut v = json!({"source": "selfheal.manual", "action": action, "reason": "zone test",
                           "requestId": uuid::Uuid::new_v4().to_string()});
        if let Some(t) = target {
            v["target"] = json!(t);
        }
        if self.place.account != HUB {
            v["account"] = json!(self.place.account);
            v["region"] = json!(harness::REGION);
        }
        v
    }

    /// Hands one event to the evacuator, as Lambda would; every decision it made (a failed action is a
    /// decision here, not an error).
    pub async fn deliver(&self, event: &Value) -> Vec<Envelope> {
        deliver(&self.ev, event).await
    }

    /// The `StartZonalShift` requests ARC received, by resource ARN.
    pub fn starts(&self) -> BTreeMap<String, Vec<ArcRequest>> {
        let mut by: BTreeMap<String, Vec<ArcRequest>> = BTreeMap::new();
        for r in self.stand_in.requests_for("StartZonalShift") {
            by.entry(r.body["resourceIdentifier"].as_str().unwrap_or_default().to_string()).or_default().push(r);
        }
        by
    }

    /// The shifts ARC holds on `arn`.
    pub fn shifts_of(&self, arn: &str) -> Vec<Shift> {
        self.stand_in.shifts().into_iter().filter(|s| s.resource_identifier == arn).collect()
    }

    /// The ARC operations that change something, as the stand-in received them.
    pub fn arc_changes(&self) -> Vec<ArcRequest> {
        let ops = ["StartZonalShift", "UpdateZonalShift", "CancelZonalShift"];
        self.stand_in.requests().into_iter().filter(|r| ops.contains(&r.operation.as_str())).collect()
    }
}

/// [`Rig::deliver`] for an evacuator moved onto another task.
pub async fn deliver(ev: &Evacuator, event: &Value) -> Vec<Envelope> {
    let t = parse_event(event).expect("a well-formed event").remove(0);
    Box::pin(ev.handle_trigger(&t)).await.expect("the evacuator handles the event")
}

/// The decisions about `target` (an ARN, an AZ ID, a region) with `action`.
pub fn about<'a>(ds: &'a [Envelope], action: &str, target: &str) -> Vec<&'a Envelope> {
    ds.iter().filter(|d| d.action == action && d.target.id == target).collect()
}

/// The one decision about `target` with `action` that is not a duplicate.
pub fn the<'a>(ds: &'a [Envelope], action: &str, target: &str) -> &'a Envelope {
    let found: Vec<&Envelope> =
        about(ds, action, target).into_iter().filter(|d| d.outcome != Outcome::Duplicate).collect();
    assert_eq!(found.len(), 1, "{action} on {target}: {:#?}", summaries(ds));
    found[0]
}

/// Each decision in one line, for failure messages.
pub fn summaries(ds: &[Envelope]) -> Vec<String> {
    ds.iter()
        .map(|d| format!("{} {} {} {}: {}", d.action, d.target.id, d.outcome.as_str(), d.severity.as_str(), d.reason))
        .collect()
}

/// No decision failed.
pub fn none_failed(ds: &[Envelope]) {
    let failed: Vec<String> = ds
        .iter()
        .filter(|d| d.outcome == Outcome::Failed)
        .map(|d| format!("{} {}: {}", d.action, d.target.id, d.reason))
        .collect();
    assert!(failed.is_empty(), "failed decisions: {failed:#?}");
}
