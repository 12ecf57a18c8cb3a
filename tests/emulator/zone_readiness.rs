//! zone-evacuator's readiness sweep against moto and the ARC stand-in: an opted-in ALB without zonal
//! shift and an opted-in group without an AvailabilityZoneImpairmentPolicy (and no room to lose an
//! AZ). With `SELFHEAL_ZONE_READINESS_FIX=true` and `params.fix: true` the sweep turns the ALB's
//! `zonal_shift.config.enabled` on (read back from moto) and sends the group's policy (moto accepts it
//! and never returns it: the request as sent is the evidence), never raises the group's maximum, and
//! reports the per-AZ alarms as unchecked (moto does not speak CloudWatch's current protocol, so
//! `DescribeAlarms` fails here) instead of failing. Without the setting, or in a dry run, nothing in
//! ELB, Auto Scaling or CloudWatch changes.
//!
//! Each test works in an account of its own: the sweep covers every opted-in resource of its place,
//! and fixes there must not touch other tests' load balancers.

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, LoadBalancerTypeEnum, ProtocolEnum, Tag as ElbTag,
};
use harness::arc::ArcStandIn;
use harness::{ami, ctx_with, env, in_account, on_big_stack, unique, OPT_IN};
use selfheal::clients::Aws;
use selfheal::db::{DbConfig, DbFailover};
use selfheal::trigger::parse_event;
use selfheal::zone::{Evacuator, ZoneConfig};
use selfheal::{Envelope, Outcome};
use serde_json::{json, Value};

/// A twelve-digit account no other test uses.
fn fresh_account() -> String {
    let n = uuid::Uuid::new_v4().as_u128() % 900_000_000_000;
    format!("{}", 100_000_000_000 + n)
}

struct Place {
    aws: Aws,
    _arc: ArcStandIn,
    lb_arn: String,
    lb_name: String,
    group: String,
}

/// In a fresh account: a VPC over us-east-1a and us-east-1b, an opted-in ALB there (zonal shift off:
/// moto leaves the attribute out until it is set) with a target group behind a listener, and an opted-in group of 2 (max 2) over
/// both subnets.
async fn place() -> Place {
    let sdk = in_account(&fresh_account()).await;
    let arc = ArcStandIn::start().await;
    let aws = Aws::from_sdk_config(sdk).with_endpoint("arc-zonal-shift", arc.endpoint());
    let ec2 = aws.ec2();
    let vpc = ec2.create_vpc().cidr_block("10.40.0.0/16").send().await.unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let mut subnets = Vec::new();
    for (i, az) in ["us-east-1a", "us-east-1b"].iter().enumerate() {
        let s = ec2.create_subnet().vpc_id(&vpc_id).cidr_block(format!("10.40.{i}.0/24")).availability_zone(*az);
        subnets.push(s.send().await.unwrap().subnet().unwrap().subnet_id().unwrap().to_string());
    }
    let elb = aws.elbv2();
    let lb_name = unique("web");
    let lb = elb
        .create_load_balancer()
        .name(&lb_name)
        .r#type(LoadBalancerTypeEnum::Application)
        .set_subnets(Some(subnets.clone()))
        .tags(ElbTag::builder().key(OPT_IN.0).value(OPT_IN.1).build())
        .send()
        .await
        .unwrap();
    let lb_arn = lb.load_balancers()[0].load_balancer_arn().unwrap().to_string();
    let tg = elb
        .create_target_group()
        .name(unique("tg"))
        .protocol(ProtocolEnum::Http)
        .port(80)
        .vpc_id(&vpc_id)
        .send()
        .await
        .unwrap();
    let tg_arn = tg.target_groups()[0].target_group_arn().unwrap().to_string();
    elb.create_listener()
        .load_balancer_arn(&lb_arn)
        .protocol(ProtocolEnum::Http)
        .port(80)
        .default_actions(Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&tg_arn).build())
        .send()
        .await
        .unwrap();

    let data = aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
        .image_id(ami(&ec2).await)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .build();
    let lt = ec2.create_launch_template().launch_template_name(unique("lt")).launch_template_data(data).send().await;
    let lt_id = lt.unwrap().launch_template().unwrap().launch_template_id().unwrap().to_string();
    let group = unique("web-asg");
    aws.autoscaling()
        .create_auto_scaling_group()
        .auto_scaling_group_name(&group)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_id(lt_id)
                .version("$Latest")
                .build(),
        )
        .min_size(2)
        .max_size(2)
        .desired_capacity(2)
        .vpc_zone_identifier(subnets.join(","))
        .tags(
            aws_sdk_autoscaling::types::Tag::builder()
                .key(OPT_IN.0)
                .value(OPT_IN.1)
                .propagate_at_launch(true)
                .resource_id(&group)
                .resource_type("auto-scaling-group")
                .build(),
        )
        .send()
        .await
        .unwrap();
    Place { aws, _arc: arc, lb_arn, lb_name, group }
}

async fn evacuator(p: &Place, vars: &[(&str, &str)]) -> Evacuator {
    let ctx = ctx_with(selfheal::zone::FUNCTION, vars, p.aws.clone()).await;
    let mut e = env(vars);
    let cfg = ZoneConfig::read(&mut e);
    let db = DbFailover::new(ctx.clone(), DbConfig::read(&mut e));
    e.finish().expect("valid settings");
    Evacuator::new(ctx, cfg, db)
}

async fn readiness(ev: &Evacuator, params: Value, dry_run: bool) -> Vec<Envelope> {
    let t =
        parse_event(&json!({"source": "selfheal.manual", "action": "readiness", "params": params, "dryRun": dry_run}))
            .unwrap()
            .remove(0);
    ev.handle_trigger(&t).await.expect("the sweep reports, it does not fail")
}

async fn zonal_shift_attribute(aws: &Aws, arn: &str) -> Option<String> {
    let out = aws.elbv2().describe_load_balancer_attributes().load_balancer_arn(arn).send().await.unwrap();
    out.attributes()
        .iter()
        .find(|a| a.key() == Some("zonal_shift.config.enabled"))
        .and_then(|a| a.value())
        .map(str::to_string)
}

async fn max_size(aws: &Aws, group: &str) -> i32 {
    let out = aws.autoscaling().describe_auto_scaling_groups().auto_scaling_group_names(group).send().await.unwrap();
    out.auto_scaling_groups()[0].max_size().unwrap()
}

fn report(envs: &[Envelope]) -> &Envelope {
    envs.iter().find(|e| e.action == "readiness").expect("one readiness report")
}

fn resource<'a>(report: &'a Envelope, name: &str) -> &'a Value {
    report.details["resources"].as_array().unwrap().iter().find(|r| r["name"] == name).expect(name)
}

fn finding<'a>(resource: &'a Value, check: &str, status: &str) -> &'a Value {
    resource["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check && f["status"] == status)
        .unwrap_or_else(|| panic!("no {status} {check} finding in {resource}"))
}

/// ELB, Auto Scaling and CloudWatch calls that change something (the ledger and topic aside).
fn changes(aws: &Aws) -> Vec<String> {
    aws.calls
        .mutating_calls()
        .into_iter()
        .filter(|c| ["elasticloadbalancing:", "autoscaling:", "cloudwatch:"].iter().any(|s| c.starts_with(s)))
        .collect()
}

#[test]
fn readiness_fixes_zonal_shift_and_reports_headroom_and_unchecked_alarms() {
    on_big_stack(|| async {
        let p = place().await;
        assert_ne!(zonal_shift_attribute(&p.aws, &p.lb_arn).await.as_deref(), Some("true"));
        let ev = evacuator(&p, &[("SELFHEAL_ZONE_READINESS_FIX", "true"), ("SELFHEAL_COOLDOWN_SECONDS", "0")]).await;
        p.aws.calls.clear();
        p.aws.calls.record_requests(None);
        let envs = readiness(&ev, json!({"fix": true}), false).await;

        assert_eq!(zonal_shift_attribute(&p.aws, &p.lb_arn).await.as_deref(), Some("true"), "{envs:#?}");
        let fixes: Vec<(&str, &str, Outcome)> = envs
            .iter()
            .filter(|e| e.action != "readiness")
            .map(|e| (e.action.as_str(), e.target.kind.as_str(), e.outcome))
            .collect();
        assert_eq!(fixes.len(), 2, "{fixes:?}");
        assert!(fixes.contains(&("enable-zonal-shift", "load-balancer", Outcome::Acted)), "{fixes:?}");
        assert!(fixes.contains(&("enable-zonal-shift", "autoscaling-group", Outcome::Acted)), "{fixes:?}");

        let updates: Vec<_> =
            p.aws.calls.records().into_iter().filter(|r| r.operation == "autoscaling:UpdateAutoScalingGroup").collect();
        assert_eq!(updates.len(), 1, "{updates:#?}");
        let body = &updates[0].body;
        assert!(body.contains(&format!("AutoScalingGroupName={}", p.group)), "{body}");
        assert!(body.contains("AvailabilityZoneImpairmentPolicy.ZonalShiftEnabled=true"), "{body}");
        assert!(
            body.contains("AvailabilityZoneImpairmentPolicy.ImpairedZoneHealthCheckBehavior=IgnoreUnhealthy"),
            "{body}"
        );
        assert!(!body.contains("MaxSize"), "the maximum is never raised: {body}");
        assert_eq!(updates[0].status, Some(200), "moto accepted the policy");
        assert_eq!(max_size(&p.aws, &p.group).await, 2);
        let modifies: Vec<_> = p
            .aws
            .calls
            .records()
            .into_iter()
            .filter(|r| r.operation == "elasticloadbalancing:ModifyLoadBalancerAttributes")
            .collect();
        assert_eq!(modifies.len(), 1);
        assert!(
            modifies[0].body.contains("zonal_shift.config.enabled")
                && !modifies[0].body.contains("Attributes.member.2")
        );
        assert!(!changes(&p.aws).iter().any(|c| c == "cloudwatch:PutMetricAlarm"), "no alarm is created blind");

        let r = report(&envs);
        assert_eq!(r.outcome, Outcome::Acted);
        let lb = resource(r, &p.lb_name);
        assert!(lb["ready"] == false, "as found: zonal shift was off: {lb}");
        let alarms = finding(lb, "per-az-alarms", "unchecked");
        assert!(
            alarms["detail"].as_str().unwrap().starts_with("alarms unchecked: AWS cloudwatch:DescribeAlarms failed"),
            "{alarms}"
        );
        finding(lb, "azs", "ok");
        finding(lb, "autoshift", "note");
        let g = resource(r, &p.group);
        let h = finding(g, "headroom", "fail");
        let n = &h["numbers"];
        assert_eq!((n["desired"].as_i64(), n["max"].as_i64()), (Some(2), Some(2)), "{h}");
        assert!(n["neededMax"].as_i64().unwrap() > 2 && n["largestInService"].as_i64().unwrap() >= 1, "{h}");
        assert!(h["detail"].as_str().unwrap().contains("cost decision"), "{h}");
        let lb_fixes = lb["fixes"].as_array().unwrap();
        assert_eq!(lb_fixes.len(), 1);
        assert_eq!(lb_fixes[0]["outcome"], "acted");
        let s = &r.details["summary"];
        assert_eq!(
            (s["loadBalancers"].as_u64(), s["groups"].as_u64(), s["fixesMade"].as_u64()),
            (Some(1), Some(1), Some(2)),
            "{s}"
        );
        assert!(r.reason.contains("fixes: 2 made, 0 failed"), "{}", r.reason);

        // Swept again: zonal shift is now on for both (ARC does not know the group; the policy was sent,
        // and moto does not return it, so the group is still planned: a sweep says what it reads).
        let again = readiness(&ev, json!({}), false).await;
        let lb = resource(report(&again), &p.lb_name);
        finding(lb, "zonal-shift", "ok");
        assert!(again.iter().all(|e| e.action == "readiness"), "not asked to fix: {again:#?}");
    });
}

#[test]
fn without_the_setting_or_in_a_dry_run_nothing_changes() {
    on_big_stack(|| async {
        let p = place().await;
        let not_allowed = evacuator(&p, &[]).await;
        p.aws.calls.clear();
        let envs = readiness(&not_allowed, json!({"fix": true}), false).await;
        assert_eq!(envs.len(), 1, "the report only: {envs:#?}");
        assert_eq!(envs[0].outcome, Outcome::Skipped);
        assert!(envs[0].reason.contains("SELFHEAL_ZONE_READINESS_FIX is not true"), "{}", envs[0].reason);
        assert_eq!(changes(&p.aws), Vec::<String>::new());

        let allowed = evacuator(&p, &[("SELFHEAL_ZONE_READINESS_FIX", "true")]).await;
        let envs = readiness(&allowed, json!({"fix": true}), true).await;
        let would: Vec<Outcome> = envs.iter().filter(|e| e.action != "readiness").map(|e| e.outcome).collect();
        assert_eq!(would, vec![Outcome::DryRun, Outcome::DryRun], "{envs:#?}");
        assert!(envs.iter().all(|e| e.dry_run));
        assert!(report(&envs).reason.contains("dry run: 2 fix(es) would be made"), "{}", report(&envs).reason);
        assert_eq!(changes(&p.aws), Vec::<String>::new(), "a dry run changes nothing");
        assert_ne!(zonal_shift_attribute(&p.aws, &p.lb_arn).await.as_deref(), Some("true"));
    });
}
