//! zone-evacuator through a whole evacuation, against moto and the ARC stand-in, with every request
//! recorded and judged against its role: the hub's `ZoneEvacuatorRole` (infra/template.yaml) and a
//! member account's `selfheal-zone-evacuator` (infra/member.yaml). Per-AZ alarms of two opted-in load
//! balancers in one AZ: both load balancers and a registered group shifted away (the group's capacity
//! raised first), another group (not registered in ARC) loses the AZ's subnets, a Multi-AZ writer is
//! rebooted over; a storm of the same alarm extends the shifts; the alarms clear, and with no
//! hysteresis the shifts are cancelled and the capacity and subnets put back. The same calls under
//! another opt-in value are refused, and a zonal shift of a load balancer that is not opted in, sent
//! with the evacuator's own credentials, is denied.
//!
//! Each test opts its resources in with a value of its own (`SELFHEAL_OPT_IN_VALUE`): moto is shared
//! by every test of the process, and the evacuator acts on every opted-in resource of a place.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_elasticloadbalancingv2::types::{LoadBalancerAttribute, LoadBalancerTypeEnum, Tag as ElbTag};
use harness::arc::ArcStandIn;
use harness::iam::{assert_allowed, evaluate, record_with_arc, Deployment, DEFAULT_HUB};
use harness::{ami, in_account, sdk_config, unique};
use selfheal::clients::Aws;
use selfheal::db::{DbConfig, DbFailover, StaticLag};
use selfheal::zone::{Evacuator, ZoneConfig};
use selfheal::{Envelope, Outcome};
use serde_json::{json, Value};

const TAG: &str = "selfheal:enabled";
/// The AZ evacuated, and the one left.
const BAD: &str = "us-east-1a";
const GOOD: &str = "us-east-1b";

/// What one place (an account of moto) holds for a test.
struct Place {
    /// The opted-in load balancers (ALB ARNs), each in both AZs.
    lbs: Vec<String>,
    /// An ALB in both AZs that is not opted in (its tag says "false").
    outsider: String,
    /// A group ARC manages (registered in the stand-in), one instance in each AZ: (name, ARN).
    shifted: (String, String),
    /// A group ARC does not manage: it loses the AZ's subnets.
    fallback: String,
    /// Its subnets, as created (BAD's first).
    subnets: Vec<String>,
    /// AZ name -> AZ ID, as moto reports them in this account.
    az_ids: BTreeMap<String, String>,
}

impl Place {
    fn azs(&self) -> Vec<(&str, &str)> {
        [BAD, GOOD].iter().map(|n| (*n, self.az_ids[*n].as_str())).collect()
    }

    /// Registers what ARC manages (the load balancers, outsider included, and one group).
    fn register(&self, arc: &ArcStandIn) {
        for lb in self.lbs.iter().chain([&self.outsider]) {
            arc.register(lb, lb.rsplit('/').nth(1).unwrap_or("lb"), &self.azs(), false);
        }
        arc.register(&self.shifted.1, &self.shifted.0, &self.azs(), false);
    }
}

/// Builds a place in `sdk`'s account: a VPC with a subnet in each AZ, `lbs` opted-in ALBs and one
/// not, two opted-in groups, and (`writer`) an opted-in Multi-AZ database in [`BAD`].
async fn build(sdk: &SdkConfig, opt_in: &str, lbs: usize, writer: bool) -> Place {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let az_ids: BTreeMap<String, String> = ec2
        .describe_availability_zones()
        .send()
        .await
        .unwrap()
        .availability_zones()
        .iter()
        .filter_map(|z| Some((z.zone_name()?.to_string(), z.zone_id()?.to_string())))
        .collect();
    let vpc = ec2.create_vpc().cidr_block("10.61.0.0/16").send().await.unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let mut subnets = Vec::new();
    for (i, az) in [BAD, GOOD].iter().enumerate() {
        let s = ec2.create_subnet().vpc_id(&vpc_id).cidr_block(format!("10.61.{i}.0/24")).availability_zone(*az);
        subnets.push(s.send().await.unwrap().subnet().unwrap().subnet_id().unwrap().to_string());
    }

    let elb = Aws::from_sdk_config(sdk.clone()).elbv2();
    let alb = |enabled: String| {
        let elb = elb.clone();
        let subnets = subnets.clone();
        async move {
            let out = elb
                .create_load_balancer()
                .name(unique("zn"))
                .r#type(LoadBalancerTypeEnum::Application)
                .set_subnets(Some(subnets))
                .tags(ElbTag::builder().key(TAG).value(enabled).build())
                .send()
                .await
                .unwrap();
            let arn = out.load_balancers()[0].load_balancer_arn().unwrap().to_string();
            let on = LoadBalancerAttribute::builder().key("zonal_shift.config.enabled").value("true").build();
            elb.modify_load_balancer_attributes().load_balancer_arn(&arn).attributes(on).send().await.unwrap();
            arn
        }
    };
    let mut opted = Vec::new();
    for _ in 0..lbs {
        opted.push(alb(opt_in.to_string()).await);
    }
    let outsider = alb("false".to_string()).await;

    let template = ec2
        .create_launch_template()
        .launch_template_name(unique("zone-lt"))
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id(ami(&ec2).await)
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let template = template.launch_template().unwrap().launch_template_id().unwrap().to_string();
    let asg = aws_sdk_autoscaling::Client::new(sdk);
    let group = |per_subnet: i32| {
        let (asg, ec2, template, subnets) = (asg.clone(), ec2.clone(), template.clone(), subnets.clone());
        let opt_in = opt_in.to_string();
        async move {
            let name = unique("zone-asg");
            let spec = || {
                aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                    .launch_template_id(&template)
                    .version("$Latest")
                    .build()
            };
            asg.create_auto_scaling_group()
                .auto_scaling_group_name(&name)
                .launch_template(spec())
                .min_size(0)
                .max_size(6)
                .desired_capacity(0)
                .vpc_zone_identifier(subnets.join(","))
                .tags(
                    aws_sdk_autoscaling::types::Tag::builder()
                        .key(TAG)
                        .value(opt_in)
                        .propagate_at_launch(true)
                        .resource_id(&name)
                        .resource_type("auto-scaling-group")
                        .build(),
                )
                .send()
                .await
                .unwrap();
            // One instance per subnet, attached: a group launched at once lands in one AZ in moto.
            let mut launched = Vec::new();
            for subnet in subnets.iter().filter(|_| per_subnet > 0) {
                let lt =
                    aws_sdk_ec2::types::LaunchTemplateSpecification::builder().launch_template_id(&template).build();
                let run = ec2
                    .run_instances()
                    .launch_template(lt)
                    .subnet_id(subnet)
                    .min_count(per_subnet)
                    .max_count(per_subnet);
                let run = run.send().await.unwrap();
                launched.extend(run.instances().iter().filter_map(|i| i.instance_id()).map(str::to_string));
            }
            if !launched.is_empty() {
                asg.attach_instances()
                    .auto_scaling_group_name(&name)
                    .set_instance_ids(Some(launched))
                    .send()
                    .await
                    .unwrap();
            }
            let g = asg.describe_auto_scaling_groups().auto_scaling_group_names(&name).send().await.unwrap();
            (name, g.auto_scaling_groups()[0].auto_scaling_group_arn().unwrap().to_string())
        }
    };
    let shifted = group(1).await;
    let (fallback, _) = group(0).await;

    if writer {
        aws_sdk_rds::Client::new(sdk)
            .create_db_instance()
            .db_instance_identifier(unique("zone-db"))
            .engine("postgres")
            .db_instance_class("db.t3.micro")
            .master_username("admin_user")
            .master_user_password("secret-password-1")
            .allocated_storage(20)
            .multi_az(true)
            .availability_zone(BAD)
            .tags(aws_sdk_rds::types::Tag::builder().key(TAG).value(opt_in).build())
            .send()
            .await
            .unwrap();
    }
    Place { lbs: opted, outsider, shifted, fallback, subnets, az_ids }
}

/// The evacuator of a fresh ledger, with ARC at the stand-in, its requests recorded for the IAM
/// evaluation; `vars` add settings. With it, the db-failover it moves writers through.
async fn evacuator(arc: &ArcStandIn, opt_in: &str, vars: &[(&str, &str)]) -> (Evacuator, DbFailover) {
    let mut all = vec![
        ("SELFHEAL_OPT_IN_VALUE", opt_in),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
        ("SELFHEAL_ZONE_HYSTERESIS_SECONDS", "0"),
        ("SELFHEAL_ZONE_SHIFT_EXPIRY_MINUTES", "30"),
        ("SELFHEAL_DB_POLL_SECONDS", "1"),
        ("SELFHEAL_DB_WAIT_SECONDS", "30"),
    ];
    all.extend_from_slice(vars);
    let aws = Aws::from_sdk_config(sdk_config().await).with_endpoint("arc-zonal-shift", arc.endpoint());
    let ctx = harness::ctx_with("zone-evacuator", &all, aws).await;
    let mut env = harness::env(&all);
    let cfg = ZoneConfig::read(&mut env);
    let db_cfg = DbConfig::read(&mut env);
    env.finish().unwrap();
    let db = DbFailover::new(ctx.clone(), db_cfg).with_lag_source(std::sync::Arc::new(StaticLag::default()));
    record_with_arc(&ctx.aws.calls, arc);
    (Evacuator::new(ctx, cfg, db.clone()), db)
}

/// A per-AZ alarm of `lb` in `az` changing to `state` (`ALARM`, `OK`), as EventBridge delivers it.
fn alarm(account: &str, lb: &str, az: &str, state: &str) -> Value {
    let dimension = lb.split_once(":loadbalancer/").unwrap().1;
    let name = format!("selfheal-az|{az}|5xx|{dimension}");
    let now = chrono::Utc::now().to_rfc3339();
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch", "account": account, "time": now, "region": harness::REGION,
        "resources": [format!("arn:aws:cloudwatch:{}:{account}:alarm:{name}", harness::REGION)],
        "detail": {
            "alarmName": name,
            "state": {"value": state, "reason": "Threshold Crossed", "timestamp": now},
            "previousState": {"value": if state == "OK" { "ALARM" } else { "OK" }, "reason": "", "timestamp": now},
            "configuration": {"metrics": [{"id": "m1", "metricStat": {"metric": {
                "namespace": "AWS/ApplicationELB", "name": "HTTPCode_Target_5XX_Count",
                "dimensions": {"LoadBalancer": dimension, "AvailabilityZone": az}}}}]}
        }
    })
}

async fn handle(ev: &Evacuator, event: &Value) -> Vec<Envelope> {
    let mut out = Vec::new();
    for t in selfheal::parse_event(event).unwrap() {
        out.extend(Box::pin(ev.handle_trigger(&t)).await.unwrap());
    }
    out
}

fn acted<'a>(envs: &'a [Envelope], action: &str) -> Vec<&'a Envelope> {
    envs.iter().filter(|e| e.action == action && e.outcome == Outcome::Acted).collect()
}

fn summary(envs: &[Envelope]) -> String {
    envs.iter()
        .map(|e| format!("{} {} {}: {}", e.action, e.outcome.as_str(), e.target.id, e.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn group_state(sdk: &SdkConfig, name: &str) -> (i32, Vec<String>) {
    let asg = aws_sdk_autoscaling::Client::new(sdk);
    let out = asg.describe_auto_scaling_groups().auto_scaling_group_names(name).send().await.unwrap();
    let g = &out.auto_scaling_groups()[0];
    let subnets = g.vpc_zone_identifier().unwrap_or_default().split(',').filter(|s| !s.is_empty()).map(str::to_string);
    (g.desired_capacity().unwrap_or(-1), subnets.collect())
}

/// The hub: the whole evacuation, every call allowed by `ZoneEvacuatorRole` with each of its
/// statements that act exercised; the same calls refused under another opt-in value; a load balancer
/// that is not opted in cannot be shifted with the evacuator's credentials.
#[test]
fn an_evacuation_and_its_end_pass_the_hub_role_and_an_unopted_load_balancer_is_denied() {
    harness::on_big_stack(|| async {
        let opt_in = unique("zone");
        let sdk = sdk_config().await;
        let place = build(&sdk, &opt_in, 2, true).await;
        let (bad_id, start) = (place.az_ids[BAD].clone(), group_state(&sdk, &place.shifted.0).await);
        assert_eq!(start.0, 2, "one in-service instance in each AZ");
        let arc = ArcStandIn::start().await;
        place.register(&arc);
        let (ev, db) = evacuator(&arc, &opt_in, &[]).await;

        // Two load balancers' per-AZ alarms in BAD: the first is below the threshold, the second evacuates.
        let first = handle(&ev, &alarm(DEFAULT_HUB, &place.lbs[0], BAD, "ALARM")).await;
        assert!(first.iter().all(|e| e.outcome != Outcome::Acted), "{}", summary(&first));
        let out = handle(&ev, &alarm(DEFAULT_HUB, &place.lbs[1], BAD, "ALARM")).await;
        assert_eq!(acted(&out, "evacuate-az").len(), 1, "{}", summary(&out));
        assert_eq!(acted(&out, "shift-away").len(), 3, "two load balancers and a group: {}", summary(&out));
        assert_eq!(acted(&out, "remove-subnets").len(), 1, "{}", summary(&out));
        assert_eq!(acted(&out, selfheal::db::ACTION_REBOOT).len(), 1, "the writer moved: {}", summary(&out));
        let shifts = arc.shifts();
        assert_eq!(shifts.len(), 3, "{shifts:?}");
        assert!(shifts.iter().all(|s| s.status == "ACTIVE" && s.away_from == bad_id), "{shifts:?}");
        assert!(!shifts.iter().any(|s| s.resource_identifier == place.outsider), "not opted in: not shifted");
        assert_eq!(group_state(&sdk, &place.shifted.0).await.0, 3, "capacity raised by BAD's share first");
        assert_eq!(group_state(&sdk, &place.fallback).await.1, [place.subnets[1].clone()], "BAD's subnet removed");

        // A storm of the same alarm while the shifts expire within the (longer) extension window.
        let longer =
            ZoneConfig { shift_expiry_minutes: 60, extend_before: Duration::from_secs(40 * 60), ..ev.config().clone() };
        let storm = Evacuator::new(ev.ctx().clone(), longer, db);
        let out = handle(&storm, &alarm(DEFAULT_HUB, &place.lbs[0], BAD, "ALARM")).await;
        assert_eq!(acted(&out, "extend-shift").len(), 3, "{}", summary(&out));
        assert_eq!(arc.requests_for("UpdateZonalShift").len(), 3);

        // The alarms clear; with no hysteresis the second clear ends the evacuation.
        handle(&ev, &alarm(DEFAULT_HUB, &place.lbs[0], BAD, "OK")).await;
        let out = handle(&ev, &alarm(DEFAULT_HUB, &place.lbs[1], BAD, "OK")).await;
        assert_eq!(acted(&out, "end-evacuation").len(), 1, "{}", summary(&out));
        assert!(arc.shifts().iter().all(|s| s.status == "CANCELED"), "{:?}", arc.shifts());
        assert_eq!(group_state(&sdk, &place.shifted.0).await.0, 2, "capacity put back");
        assert_eq!(group_state(&sdk, &place.fallback).await.1, place.subnets, "exactly the recorded subnets back");

        // Every call allowed by the hub role, each acting statement exercised.
        let e = assert_allowed(ev.ctx());
        for k in [
            "hub/ShiftOptedInLoadBalancers arc-zonal-shift:StartZonalShift",
            "hub/ShiftOptedInLoadBalancers arc-zonal-shift:UpdateZonalShift",
            "hub/ShiftOptedInLoadBalancers arc-zonal-shift:CancelZonalShift",
            "hub/ShiftAutoScalingGroups arc-zonal-shift:StartZonalShift",
            "hub/ShiftAutoScalingGroups arc-zonal-shift:UpdateZonalShift",
            "hub/ShiftAutoScalingGroups arc-zonal-shift:CancelZonalShift",
            "hub/OptedInGroups autoscaling:UpdateAutoScalingGroup",
            "hub/OptedInWriters rds:RebootDBInstance",
            "hub/ReadOnly arc-zonal-shift:ListManagedResources",
            "hub/ReadOnly elasticloadbalancing:DescribeLoadBalancerAttributes",
            "hub/ReadOnly ec2:DescribeAvailabilityZones",
            "hub/ReadOnly ec2:DescribeSubnets",
        ] {
            assert!(e.by_statement.contains_key(k), "{k} was not exercised: {}", e.summary());
        }

        // Judged on the tags read before each call: under another opt-in value the load balancers'
        // shifts, the group updates and the reboot are refused. The group's shifts are not: ARC has no
        // tag key for a group, so IAM cannot check its opt-in (the code does).
        let records = ev.ctx().aws.calls.records();
        let other = Deployment { opt_in_value: "another".into(), ..Deployment::of(&ev.ctx().config) };
        let refused = evaluate(&other, &records).unwrap();
        let denied = |op: &str, on: &str| refused.denied.iter().filter(|(a, r)| a == op && r.contains(on)).count();
        for op in ["StartZonalShift", "UpdateZonalShift", "CancelZonalShift"] {
            let op = format!("arc-zonal-shift:{op}");
            assert_eq!(denied(&op, ":loadbalancer/app/"), 2, "{op}: {:#?}", refused.denials);
            assert_eq!(denied(&op, "*"), 0, "{op} of the group is not tag-conditioned: {:#?}", refused.denials);
        }
        assert_eq!(denied("autoscaling:UpdateAutoScalingGroup", ":autoScalingGroup:"), 4, "{:#?}", refused.denials);
        assert_eq!(denied("rds:RebootDBInstance", ":db:"), 1, "{:#?}", refused.denials);

        // The negative, sent: a zonal shift of the load balancer that is not opted in, with the
        // evacuator's own credentials, and a group update that would change its minimum.
        let probe = Aws::from_sdk_config(sdk_config().await).with_endpoint("arc-zonal-shift", arc.endpoint());
        record_with_arc(&probe.calls, &arc);
        let sent = probe
            .arc()
            .start_zonal_shift()
            .resource_identifier(&place.outsider)
            .away_from(&bad_id)
            .expires_in("5m")
            .comment("not opted in")
            .send()
            .await;
        assert!(sent.is_ok(), "the stand-in checks no IAM: {sent:?}");
        probe
            .autoscaling()
            .update_auto_scaling_group()
            .auto_scaling_group_name(&place.shifted.0)
            .min_size(0)
            .send()
            .await
            .unwrap();
        let probed = evaluate(&Deployment::of(&ev.ctx().config), &probe.calls.records()).unwrap();
        let expected = [
            ("arc-zonal-shift:StartZonalShift".to_string(), place.outsider.clone()),
            ("autoscaling:UpdateAutoScalingGroup".to_string(), place.shifted.1.clone()),
        ];
        assert_eq!(probed.denied, expected, "{:#?}", probed.denials);
        assert!(probed.denials[0].contains("aws:ResourceTag/selfheal:enabled"), "{}", probed.denials[0]);
        assert!(probed.denials[1].contains("autoscaling:MinSize"), "{}", probed.denials[1]);
    });
}

/// A member account: the evacuation there runs through its `selfheal-zone-evacuator` role (its trust
/// evaluated for the `AssumeRole`), shifts that account's load balancer and group, and the schedule's
/// re-check ends it once the alarm has cleared.
#[test]
fn a_member_account_s_evacuation_passes_its_member_role() {
    const MEMBER: &str = "210987654321";
    harness::on_big_stack(|| async {
        let opt_in = unique("zone-m");
        let member = in_account(MEMBER).await;
        let place = build(&member, &opt_in, 1, false).await;
        assert!(place.shifted.1.contains(&format!(":{MEMBER}:")), "{}", place.shifted.1);
        let arc = ArcStandIn::start().await;
        place.register(&arc);
        let (ev, _) =
            evacuator(&arc, &opt_in, &[("SELFHEAL_ACCOUNTS", MEMBER), ("SELFHEAL_ZONE_MIN_SIGNALS", "1")]).await;

        let out = handle(&ev, &alarm(MEMBER, &place.lbs[0], BAD, "ALARM")).await;
        assert_eq!(acted(&out, "shift-away").len(), 2, "the load balancer and the group: {}", summary(&out));
        assert_eq!(acted(&out, "remove-subnets").len(), 1, "{}", summary(&out));
        assert!(out.iter().all(|e| e.target.account.as_deref() == Some(MEMBER)), "{}", summary(&out));
        assert_eq!(group_state(&member, &place.shifted.0).await.0, 3, "raised in the member account");
        handle(&ev, &alarm(MEMBER, &place.lbs[0], BAD, "OK")).await;
        let id = uuid::Uuid::new_v4().to_string();
        let out = handle(
            &ev,
            &harness::event("schedule-backup-sweep.json", &[("53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", &id)]),
        )
        .await;
        assert_eq!(acted(&out, "end-evacuation").len(), 1, "{}", summary(&out));
        assert!(arc.shifts().iter().all(|s| s.status == "CANCELED"), "{:?}", arc.shifts());
        assert_eq!(group_state(&member, &place.fallback).await.1, place.subnets);

        let e = assert_allowed(ev.ctx());
        assert!(e.trusts >= 1 && e.member_calls > 0, "{}", e.summary());
        for k in [
            "trust/HubFunction sts:AssumeRole",
            "member/ShiftOptedInLoadBalancers arc-zonal-shift:StartZonalShift",
            "member/ShiftOptedInLoadBalancers arc-zonal-shift:CancelZonalShift",
            "member/ShiftAutoScalingGroups arc-zonal-shift:StartZonalShift",
            "member/ShiftAutoScalingGroups arc-zonal-shift:CancelZonalShift",
            "member/OptedInGroups autoscaling:UpdateAutoScalingGroup",
            "member/ReadOnly elasticloadbalancing:DescribeTags",
        ] {
            assert!(e.by_statement.contains_key(k), "{k} was not exercised: {}", e.summary());
        }
        // The member's shifts were made with its role's credentials: the hub role could not have.
        let as_hub: Vec<_> = ev
            .ctx()
            .aws
            .calls
            .records()
            .into_iter()
            .filter(|r| r.operation.starts_with("arc-zonal-shift:Start"))
            .collect();
        assert!(!as_hub.is_empty() && as_hub.iter().all(|r| r.access_key_id.as_deref() != Some("testing")));
    });
}
