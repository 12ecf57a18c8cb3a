//! Standing down when another recovery owns the resource, against moto: what moto 5.2.5 can show.
//!
//! Moto shows: Auto Scaling processes suspended (`SuspendProcesses`) and an instance in `Standby`
//! (`EnterStandby`); AWS Health's simplified-automatic-recovery outcome events arrive as any event does;
//! Blue/Green deployments that are `AVAILABLE` (moto completes a switchover at once, never describing
//! `SWITCHOVER_IN_PROGRESS`) and global databases that are `available` (no failover state); and the
//! suite's Route 53 changes recorded per zone, with `GetChange` always `INSYNC`.
//!
//! Moto cannot show the rest, which the unit tests cover against responses shaped as the AWS API
//! reference shows them (`aws-smithy-mocks`, in `shared/src/{healer/asg,healer/ec2,db/rds,
//! db/dns_record,dns/route53}.rs`): an instance refresh (moto does not implement
//! `DescribeInstanceRefreshes`: the decision names it `unchecked`), a running scaling activity (moto
//! answers none), a warm pool or lifecycle-hook state, impaired status checks and scheduled events,
//! `MaintenanceOptions`, a database `rebooting`/`modifying`/`failing-over`, a Blue/Green switchover in
//! progress, a global database failing over, and a `PENDING` Route 53 change. The healer's handler is
//! still driven through each of its stand-downs moto cannot show (issue #30): the fault proxy answers
//! the one read that shows the other recovery (`DescribeInstanceRefreshes`, `DescribeScalingActivities`,
//! `DescribeAutoScalingInstances` with a lifecycle-hook or warm-pool state, `DescribeInstanceStatus`
//! with a scheduled event open now) as the API reference does, and forwards the rest to moto.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_autoscaling::types::Tag as AsgTag;
use aws_sdk_ec2::types::{InstanceType, LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData};
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use harness::proxy::{Fault, FaultProxy, Rule, Times};
use harness::{ami, healer, OPT_IN, PLACEHOLDER};
use harness::{event, sdk_config, unique, zone_with_cname};
use selfheal::db::{DbConfig, DbFailover, StaticLag};
use selfheal::healer::{AUTO_RECOVERY_FAILURE, AUTO_RECOVERY_SUCCESS};
use selfheal::ledger::zone_change::ChangeBy;
use serde_json::{json, Value};

struct Aws {
    ec2: aws_sdk_ec2::Client,
    asg: aws_sdk_autoscaling::Client,
}

async fn aws() -> Aws {
    let sdk = sdk_config().await;
    Aws { ec2: aws_sdk_ec2::Client::new(&sdk), asg: aws_sdk_autoscaling::Client::new(&sdk) }
}

/// A fresh VPC (its own, so no other test's instances share a maxUnhealthy scope) with a subnet in
/// each of three AZs.
async fn subnets(ec2: &aws_sdk_ec2::Client) -> Vec<String> {
    let v = ec2.create_vpc().cidr_block("10.30.0.0/16").send().await.unwrap();
    let vpc = v.vpc().unwrap().vpc_id().unwrap().to_string();
    let mut out = Vec::new();
    for (i, az) in ["us-east-1a", "us-east-1b", "us-east-1c"].iter().enumerate() {
        let s = ec2.create_subnet().vpc_id(&vpc).cidr_block(format!("10.30.{i}.0/24")).availability_zone(*az);
        out.push(s.send().await.unwrap().subnet().unwrap().subnet_id().unwrap().to_string());
    }
    out
}

/// An opted-in 3-AZ group of three instances; returns its name and members.
async fn group(a: &Aws) -> (String, Vec<String>) {
    let name = unique("sd-asg");
    let subnets = subnets(&a.ec2).await;
    let data = RequestLaunchTemplateData::builder()
        .image_id(ami(&a.ec2).await)
        .instance_type(InstanceType::T3Micro)
        .tag_specifications(
            LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key("app").value("web").build())
                .build(),
        )
        .build();
    let lt = a.ec2.create_launch_template().launch_template_name(unique("lt")).launch_template_data(data).send().await;
    let lt_id = lt.unwrap().launch_template().unwrap().launch_template_id().unwrap().to_string();
    a.asg
        .create_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_id(lt_id)
                .version("$Latest")
                .build(),
        )
        .min_size(3)
        .max_size(6)
        .desired_capacity(3)
        .vpc_zone_identifier(subnets.join(","))
        .tags(
            AsgTag::builder()
                .key(OPT_IN.0)
                .value(OPT_IN.1)
                .propagate_at_launch(true)
                .resource_id(&name)
                .resource_type("auto-scaling-group")
                .build(),
        )
        .send()
        .await
        .unwrap();
    (name.clone(), members(a, &name).await)
}

async fn members(a: &Aws, group: &str) -> Vec<String> {
    let out = a.asg.describe_auto_scaling_groups().auto_scaling_group_names(group).send().await.unwrap();
    let mut ids: Vec<String> =
        out.auto_scaling_groups()[0].instances().iter().filter_map(|i| i.instance_id()).map(str::to_string).collect();
    ids.sort();
    ids
}

/// An opted-in standalone instance in its own VPC.
async fn standalone(a: &Aws) -> String {
    let subnet = subnets(&a.ec2).await.remove(0);
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .tags(Tag::builder().key(OPT_IN.0).value(OPT_IN.1).build())
        .build();
    let r = a
        .ec2
        .run_instances()
        .image_id(ami(&a.ec2).await)
        .instance_type(InstanceType::T3Small)
        .min_count(1)
        .max_count(1)
        .subnet_id(subnet)
        .tag_specifications(tags)
        .send()
        .await
        .unwrap();
    r.instances()[0].instance_id().unwrap().to_string()
}

fn decision(out: &Value) -> Value {
    let d = out["decisions"].as_array().expect("decisions");
    assert_eq!(d.len(), 1, "{out}");
    d[0].clone()
}

/// The mutating calls outside the ledger (DynamoDB) and the notifier (SNS).
fn resource_mutations(calls: &selfheal::clients::CallLog) -> Vec<String> {
    calls.mutating_calls().into_iter().filter(|c| !c.starts_with("dynamodb:") && !c.starts_with("sns:")).collect()
}

fn assert_stood_down(d: &Value, recovery: &str, names: &str) {
    assert_eq!(d["outcome"], "refused", "{d}");
    assert_eq!(d["severity"], "warning", "{d}");
    assert_eq!(d["details"]["guard"], "another-recovery", "{d}");
    assert_eq!(d["details"]["recovery"], recovery, "{d}");
    let reason = d["reason"].as_str().unwrap();
    assert!(reason.contains(names) && reason.contains("standing down"), "{reason}");
}

#[tokio::test]
async fn a_group_with_a_replacement_process_suspended_stands_down_whatever_the_method() {
    let a = aws().await;
    let (name, ids) = group(&a).await;
    let sick = ids[0].clone();
    a.asg.set_instance_health().instance_id(&sick).health_status("Unhealthy").send().await.unwrap();
    let alarm = event("alarm-sns-ec2-status-check.json", &[(PLACEHOLDER, &sick)]);
    let h = healer(&[]).await; // the default method, terminate
    let dry = healer(&[("SELFHEAL_DRY_RUN", "true")]).await;

    for process in ["ReplaceUnhealthy", "Launch", "Terminate"] {
        a.asg.suspend_processes().auto_scaling_group_name(&name).scaling_processes(process).send().await.unwrap();
        let d = decision(&h.handle(&alarm).await.unwrap());
        assert_stood_down(&d, "suspended-processes", &format!("group {name} has {process} suspended"));
        assert_eq!(d["details"]["inProgress"]["group"], name.as_str());
        // A dry run shows the same refusal.
        let dd = decision(&dry.handle(&alarm).await.unwrap());
        assert_eq!(dd["outcome"], "refused", "{dd}");
        assert_eq!(dd["reason"], d["reason"]);
        assert_eq!(dd["dryRun"], true);
        a.asg.resume_processes().auto_scaling_group_name(&name).scaling_processes(process).send().await.unwrap();
    }
    assert!(resource_mutations(&h.ctx().aws.calls).is_empty(), "{:?}", resource_mutations(&h.ctx().aws.calls));
    assert_eq!(members(&a, &name).await, ids, "nothing replaced");

    // Nothing suspended: moto answers no scaling activity and does not serve instance refreshes, which
    // the decision names; the replacement goes on.
    let d = decision(&h.handle(&alarm).await.unwrap());
    assert_eq!(d["outcome"], "acted", "{d}");
    let unchecked = d["details"]["unchecked"].to_string();
    assert!(unchecked.contains("does not serve DescribeInstanceRefreshes"), "{d}");
    // (DescribeInstanceRefreshes itself is asked once per endpoint and process: whichever test met
    // moto first learnt it is not served.)
    let calls = h.ctx().aws.calls.calls();
    let op = "autoscaling:DescribeScalingActivities";
    assert!(calls.iter().any(|c| c == op), "{op} was asked: {calls:?}");
}

/// `DescribeInstanceRefreshes` as the Auto Scaling API reference shows it, for `group`: one refresh in
/// `status`.
fn refreshes_answer(group: &str, id: &str, status: &str) -> String {
    format!(
        "<DescribeInstanceRefreshesResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\">\
         <DescribeInstanceRefreshesResult><InstanceRefreshes><member>\
         <InstanceRefreshId>{id}</InstanceRefreshId><AutoScalingGroupName>{group}</AutoScalingGroupName>\
         <Status>{status}</Status><StatusReason>Waiting for instances to warm up before continuing.</StatusReason>\
         <StartTime>2026-11-25T10:11:27Z</StartTime><PercentageComplete>40</PercentageComplete>\
         <InstancesToUpdate>2</InstancesToUpdate></member></InstanceRefreshes></DescribeInstanceRefreshesResult>\
         <ResponseMetadata><RequestId>fault-proxy</RequestId></ResponseMetadata></DescribeInstanceRefreshesResponse>"
    )
}

/// The healer's handler, driven through the instance-refresh stand-down it computes: moto does not
/// serve `DescribeInstanceRefreshes`, so the fault proxy answers it as the API reference shows (a
/// refresh `InProgress`) and forwards everything else to moto. The handler refuses (dry run too) and
/// replaces nothing; once the refresh is `Successful`, the same alarm replaces the instance, so the
/// refresh is what held it.
#[tokio::test]
async fn an_instance_refresh_in_progress_makes_the_handler_stand_down_and_a_finished_one_does_not() {
    let a = aws().await;
    let (name, ids) = group(&a).await;
    let sick = ids[0].clone();
    a.asg.set_instance_health().instance_id(&sick).health_status("Unhealthy").send().await.unwrap();
    let alarm = event("alarm-sns-ec2-status-check.json", &[(PLACEHOLDER, &sick)]);
    let proxy = FaultProxy::start(&harness::moto_endpoint(), 1).await;
    let refresh = uuid::Uuid::new_v4().to_string();
    proxy.add(Rule::new(
        "DescribeInstanceRefreshes",
        Fault::Answer { body: refreshes_answer(&name, &refresh, "InProgress") },
        Times::Always,
    ));
    let through_proxy = |vars: &'static [(&'static str, &'static str)]| {
        let endpoint = proxy.endpoint.clone();
        async move {
            let aws = selfheal::clients::Aws::from_sdk_config(harness::sdk_config_at(&endpoint).await);
            let mut all = vec![("SELFHEAL_HEALER_WAIT_SECONDS", "20"), ("SELFHEAL_HEALER_POLL_SECONDS", "1")];
            all.extend_from_slice(vars);
            let ctx = harness::ctx_with("instance-healer", &all, aws).await;
            let cfg = selfheal::healer::HealerConfig::read(&mut harness::env(&all));
            selfheal::healer::Healer::new(ctx, cfg)
        }
    };
    let h = through_proxy(&[]).await;
    let dry = through_proxy(&[("SELFHEAL_DRY_RUN", "true")]).await;

    let d = decision(&h.handle(&alarm).await.unwrap());
    assert_stood_down(&d, "instance-refresh", &format!("instance refresh {refresh}"));
    let dd = decision(&dry.handle(&alarm).await.unwrap());
    assert_eq!(
        (dd["outcome"].as_str(), dd["reason"].clone(), dd["dryRun"].as_bool()),
        (Some("refused"), d["reason"].clone(), Some(true))
    );
    assert!(proxy.faulted("DescribeInstanceRefreshes") >= 2, "the handler read the refreshes: {:?}", proxy.seen());
    assert!(resource_mutations(&h.ctx().aws.calls).is_empty(), "{:?}", resource_mutations(&h.ctx().aws.calls));
    assert_eq!(members(&a, &name).await, ids, "nothing replaced");

    // The refresh is over: the same alarm (a new state change) replaces the instance.
    proxy.clear();
    proxy.add(Rule::new(
        "DescribeInstanceRefreshes",
        Fault::Answer { body: refreshes_answer(&name, &refresh, "Successful") },
        Times::Always,
    ));
    let later = event(
        "alarm-sns-ec2-status-check.json",
        &[(PLACEHOLDER, &sick), ("2026-11-25T10:15:31", "2026-11-25T11:15:31")],
    );
    let d = decision(&h.handle(&later).await.unwrap());
    assert_eq!(d["outcome"], "acted", "{d}");
    assert!(d["details"].get("unchecked").is_none(), "the refreshes were read: {d}");
}

#[tokio::test]
async fn an_instance_put_in_standby_stands_down_even_when_forced() {
    let a = aws().await;
    let (name, ids) = group(&a).await;
    let held = ids[1].clone();
    a.asg
        .enter_standby()
        .auto_scaling_group_name(&name)
        .instance_ids(&held)
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .unwrap();
    let h = healer(&[]).await;
    let manual = json!({"source": "selfheal.manual", "action": "replace", "target": held, "force": true,
        "reason": "test: forced replace of a standby instance", "requestId": unique("req")});
    let d = decision(&h.handle(&manual).await.unwrap());
    assert_stood_down(&d, "standby", &format!("{held} is Standby in group {name}"));
    assert_eq!(d["details"]["inProgress"]["lifecycleState"], "Standby");
    assert!(resource_mutations(&h.ctx().aws.calls).is_empty(), "{:?}", resource_mutations(&h.ctx().aws.calls));
    let trail = h.ctx().ledger.audit_trail(&held).await.unwrap();
    assert_eq!(trail.len(), 1, "the stand-down is audited");
    assert_eq!(trail[0].outcome, "refused");
}

fn health_event(code: &str, id: &str) -> Value {
    event(
        "health-ec2-instance-retirement.json",
        &[
            ("AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED", code),
            ("scheduledChange", "issue"),
            (PLACEHOLDER, id),
            ("1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e", &uuid::Uuid::new_v4().to_string()),
        ],
    )
}

#[tokio::test]
async fn simplified_auto_recovery_outcomes_from_aws_health_are_recorded_and_acted_on() {
    let a = aws().await;
    let id = standalone(&a).await;
    let h = healer(&[("SELFHEAL_COOLDOWN_SECONDS", "0")]).await;

    // EC2 recovered it: nothing to do.
    let d = decision(&h.handle(&health_event(AUTO_RECOVERY_SUCCESS, &id)).await.unwrap());
    assert_eq!(d["outcome"], "skipped", "{d}");
    assert!(d["reason"].as_str().unwrap().contains(&format!("recovered {id}")), "{d}");
    assert!(resource_mutations(&h.ctx().aws.calls).is_empty());
    assert_eq!(h.ctx().ledger.progress(&format!("auto-recovery-failed#{id}")).await.unwrap(), None);

    // EC2 gave up on it, and it is still broken (stopped): the failure is recorded, so the
    // auto-recovery stand-down stops waiting, and the instance is healed.
    a.ec2.stop_instances().instance_ids(&id).send().await.unwrap();
    let before = chrono::Utc::now();
    let d = decision(&h.handle(&health_event(AUTO_RECOVERY_FAILURE, &id)).await.unwrap());
    assert_eq!(d["outcome"], "acted", "{d}");
    assert_eq!(d["details"]["step"], "stop-start", "{d}");
    assert_eq!(d["trigger"], "health", "{d}");
    let progress = h.ctx().ledger.progress(&format!("auto-recovery-failed#{id}")).await.unwrap().expect("recorded");
    let at = chrono::DateTime::parse_from_rfc3339(&progress["at"]).unwrap();
    assert!(at >= before - chrono::Duration::seconds(1), "{progress:?}");
    assert!(progress["event"].contains(AUTO_RECOVERY_FAILURE), "{progress:?}");
}

async fn db_handler() -> DbFailover {
    let ctx = harness::ctx("db-failover", &[]).await;
    let mut env = harness::env(&[("SELFHEAL_DB_POLL_SECONDS", "1"), ("SELFHEAL_DB_WAIT_SECONDS", "30")]);
    let cfg = DbConfig::read(&mut env);
    env.finish().unwrap();
    DbFailover::new(ctx, cfg).with_lag_source(Arc::new(StaticLag::default()))
}

fn rds_tags() -> Vec<aws_sdk_rds::types::Tag> {
    vec![aws_sdk_rds::types::Tag::builder().key(OPT_IN.0).value(OPT_IN.1).build()]
}

#[tokio::test]
async fn a_blue_green_deployment_not_switching_over_is_read_and_the_failover_goes_on() {
    let rds = aws_sdk_rds::Client::new(&sdk_config().await);
    let primary = unique("orders-bg");
    let created = rds
        .create_db_instance()
        .db_instance_identifier(&primary)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .master_username("admin_user")
        .master_user_password("secret-password-1")
        .allocated_storage(20)
        .multi_az(true)
        .set_tags(Some(rds_tags()))
        .send()
        .await
        .unwrap();
    let arn = created.db_instance().unwrap().db_instance_arn().unwrap().to_string();
    rds.create_blue_green_deployment().blue_green_deployment_name(unique("bg")).source(&arn).send().await.unwrap();
    let deployments = selfheal::db::describe_blue_green_deployments(&rds).await.unwrap();
    let ours = deployments.iter().find(|d| d.source == arn).expect("moto lists the deployment");
    assert_eq!(ours.status, "AVAILABLE");
    assert!(selfheal::db::stand_down::blue_green(std::slice::from_ref(&arn), &deployments).is_none());

    // A planned (forced) failover of the Multi-AZ primary: the deployment is read, and as it is not
    // switching over the reboot with failover goes on.
    let h = db_handler().await;
    let mut ev = event("manual-promote-replica.json", &[("orders-db", &primary)]);
    ev["dryRun"] = Value::Bool(false);
    ev["force"] = Value::Bool(true);
    let d = decision(&h.handle(&ev).await.unwrap());
    assert_eq!(d["outcome"], "acted", "{d}");
    assert_eq!(d["action"], "reboot-failover");
    let calls = h.ctx().aws.calls.calls();
    let pos = |op: &str| calls.iter().position(|c| c == op).unwrap_or_else(|| panic!("{op} in {calls:?}"));
    assert!(pos("rds:DescribeBlueGreenDeployments") < pos("rds:RebootDBInstance"), "read before acting");
}

#[tokio::test]
async fn a_global_database_not_moving_is_read_and_the_cluster_failover_goes_on() {
    let rds = aws_sdk_rds::Client::new(&sdk_config().await);
    let global = unique("orders-global");
    rds.create_global_cluster().global_cluster_identifier(&global).engine("aurora-postgresql").send().await.unwrap();
    let cluster = unique("orders-member");
    let created = rds
        .create_db_cluster()
        .db_cluster_identifier(&cluster)
        .engine("aurora-postgresql")
        .global_cluster_identifier(&global)
        .master_username("admin_user")
        .master_user_password("secret-password-1")
        .set_tags(Some(rds_tags()))
        .send()
        .await
        .unwrap();
    let cluster_arn = created.db_cluster().unwrap().db_cluster_arn().unwrap().to_string();
    for (suffix, az, tier) in [("w", "us-east-1a", 1), ("r", "us-east-1b", 0)] {
        rds.create_db_instance()
            .db_instance_identifier(format!("{cluster}-{suffix}"))
            .db_cluster_identifier(&cluster)
            .engine("aurora-postgresql")
            .db_instance_class("db.r5.large")
            .availability_zone(az)
            .promotion_tier(tier)
            .send()
            .await
            .unwrap();
    }
    let globals = selfheal::db::describe_global_clusters(&rds).await.unwrap();
    let ours = globals.iter().find(|g| g.id == global).expect("moto lists the global database");
    assert!(ours.members.contains(&cluster_arn), "{ours:?}");
    assert_eq!(ours.status, "available");
    assert!(selfheal::db::stand_down::global_cluster(&cluster_arn, &globals).is_none());

    rds.stop_db_instance().db_instance_identifier(format!("{cluster}-w")).send().await.unwrap();
    let h = db_handler().await;
    let d = decision(
        &h.handle(&event("rds-db-cluster-event-failover.json", &[("orders-aurora", &cluster)])).await.unwrap(),
    );
    assert_eq!(d["outcome"], "acted", "{d}");
    assert_eq!(d["action"], "failover-cluster");
    let calls = h.ctx().aws.calls.calls();
    let pos = |op: &str| calls.iter().position(|c| c == op).unwrap_or_else(|| panic!("{op} in {calls:?}"));
    assert!(pos("rds:DescribeGlobalClusters") < pos("rds:FailoverDBCluster"), "read before acting");
    assert!(pos("rds:DescribeBlueGreenDeployments") < pos("rds:FailoverDBCluster"));
}

#[tokio::test]
async fn the_suites_zone_changes_are_recorded_and_an_insync_one_holds_nothing() {
    let ctx = harness::ctx("dns-failover", &[]).await;
    let r53 = aws_sdk_route53::Client::new(&sdk_config().await);
    let (zone, record) = zone_with_cname("orders.old.example.internal").await;
    assert_eq!(ctx.ledger.last_zone_change(&zone).await.unwrap(), None);

    // db-failover's record repoint, recorded.
    let dns = selfheal::db::DnsRecord { zone_id: zone.clone(), name: record.clone(), ttl: 60 };
    let by = ChangeBy {
        function: "db-failover".into(),
        action: "promote-replica".into(),
        event_id: unique("ev"),
        target: record.clone(),
    };
    let wait = Duration::from_secs(5);
    let id = selfheal::db::upsert_cname_recorded(
        &r53,
        &dns,
        "orders.new.example.internal",
        "test",
        wait,
        wait,
        &ctx.ledger,
        &by,
    )
    .await
    .unwrap();
    let last = ctx.ledger.last_zone_change(&zone).await.unwrap().expect("recorded");
    assert_eq!((last.change_id.as_str(), &last.by), (id.as_str(), &by));
    assert!(chrono::DateTime::parse_from_rfc3339(&last.submitted_at).is_ok(), "{last:?}");
    // moto answers GetChange INSYNC: nothing is pending, so nothing stands down.
    assert_eq!(selfheal::stand_down::change_status(&r53, &id).await.unwrap().as_deref(), Some("INSYNC"));
    assert!(selfheal::stand_down::pending_change_refusal(&ctx.ledger, &r53, &zone).await.unwrap().is_none());

    // dns-failover's change batches, recorded over it: the newest is the one that matters.
    let set = selfheal::dns::RecordSet {
        name: record.clone(),
        rtype: "CNAME".into(),
        set_identifier: None,
        failover: None,
        weight: None,
        ttl: Some(60),
        values: vec!["orders.dr.example.internal".into()],
        alias: None,
        health_check_id: None,
    };
    let batch = [selfheal::dns::PlannedChange { action: "UPSERT".into(), record_set: set }];
    let by2 = ChangeBy { function: "dns-failover".into(), action: "failover".into(), ..by.clone() };
    let id2 = selfheal::dns::submit_recorded(&r53, &ctx.ledger, &zone, &batch, "test", &by2).await.unwrap();
    let last = ctx.ledger.last_zone_change(&zone).await.unwrap().expect("recorded");
    assert_eq!((last.change_id.as_str(), last.by.function.as_str()), (id2.as_str(), "dns-failover"));
    assert!(selfheal::stand_down::pending_change_refusal(&ctx.ledger, &r53, &zone).await.unwrap().is_none());
}

/// `DescribeScalingActivities` as the API reference shows it: one activity, `status`, terminating
/// `instance` of `group`.
fn activities_answer(group: &str, instance: &str, status: &str) -> String {
    format!(
        "<DescribeScalingActivitiesResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\">\
         <DescribeScalingActivitiesResult><Activities><member>\
         <ActivityId>f9f2d65b-f1f2-43e7-b46d-d86756459699</ActivityId><AutoScalingGroupName>{group}</AutoScalingGroupName>\
         <Description>Terminating EC2 instance: {instance}</Description>\
         <Cause>At 2026-11-25T10:14:44Z an instance was taken out of service in response to an EC2 health check \
         indicating it has been terminated or stopped.</Cause>\
         <StartTime>2026-11-25T10:14:44.930Z</StartTime><StatusCode>{status}</StatusCode><Progress>50</Progress>\
         <Details>{{\"Subnet ID\":\"subnet-0b1a2c3d\",\"Availability Zone\":\"us-east-1a\"}}</Details>\
         </member></Activities></DescribeScalingActivitiesResult>\
         <ResponseMetadata><RequestId>fault-proxy</RequestId></ResponseMetadata></DescribeScalingActivitiesResponse>"
    )
}

/// `DescribeAutoScalingInstances` as the API reference shows it: `instance` in `group`, `lifecycle`.
fn membership_answer(group: &str, instance: &str, lifecycle: &str) -> String {
    format!(
        "<DescribeAutoScalingInstancesResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\">\
         <DescribeAutoScalingInstancesResult><AutoScalingInstances><member>\
         <InstanceId>{instance}</InstanceId><InstanceType>t3.small</InstanceType>\
         <AutoScalingGroupName>{group}</AutoScalingGroupName><AvailabilityZone>us-east-1a</AvailabilityZone>\
         <LifecycleState>{lifecycle}</LifecycleState><HealthStatus>UNHEALTHY</HealthStatus>\
         <ProtectedFromScaleIn>false</ProtectedFromScaleIn>\
         </member></AutoScalingInstances></DescribeAutoScalingInstancesResult>\
         <ResponseMetadata><RequestId>fault-proxy</RequestId></ResponseMetadata></DescribeAutoScalingInstancesResponse>"
    )
}

/// `DescribeInstanceStatus` as the API reference shows it: `instance` impaired, with a
/// `system-maintenance` event whose window is open now.
fn status_answer(instance: &str) -> String {
    let at = |h: i64| (chrono::Utc::now() + chrono::Duration::hours(h)).format("%Y-%m-%dT%H:%M:%S.000Z").to_string();
    format!(
        "<DescribeInstanceStatusResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
         <requestId>3be1508e-c444-4fef-89cc-0b1223c4f02f</requestId><instanceStatusSet><item>\
         <instanceId>{instance}</instanceId><availabilityZone>us-east-1a</availabilityZone>\
         <instanceState><code>16</code><name>running</name></instanceState>\
         <systemStatus><status>impaired</status><details><item><name>reachability</name><status>failed</status>\
         </item></details></systemStatus>\
         <instanceStatus><status>impaired</status><details><item><name>reachability</name><status>failed</status>\
         </item></details></instanceStatus>\
         <eventsSet><item><instanceEventId>instance-event-0d59937288b749b32</instanceEventId>\
         <code>system-maintenance</code><description>The instance is scheduled for maintenance of the underlying \
         host</description><notBefore>{}</notBefore><notAfter>{}</notAfter></item></eventsSet>\
         </item></instanceStatusSet></DescribeInstanceStatusResponse>",
        at(-1),
        at(1)
    )
}

/// Every stand-down moto cannot show, driven through the healer's handler (issue #30): the fault
/// proxy answers the one read that shows the other recovery as the API reference does (a scaling
/// activity still draining the instance, a lifecycle hook holding it, the warm pool owning it, a
/// scheduled maintenance event acting on it now) and forwards the rest to moto. Each time the handler
/// refuses naming that recovery and replaces nothing; a finished scaling activity holds nothing, so
/// the same alarm replaces the instance: the answer is what held it.
#[tokio::test]
async fn each_stand_down_moto_cannot_show_holds_the_handler_through_a_read_answered_as_aws_would() {
    type Answer = fn(&str, &str) -> (String, String);
    let cases: [(&str, &str, Answer); 4] = [
        ("scaling-activity", "scaling activity f9f2d65b", |g, i| {
            ("DescribeScalingActivities".into(), activities_answer(g, i, "WaitingForELBConnectionDraining"))
        }),
        ("lifecycle-hook", "held by a lifecycle hook", |g, i| {
            ("DescribeAutoScalingInstances".into(), membership_answer(g, i, "Pending:Wait"))
        }),
        ("warm-pool", "is in the warm pool", |g, i| {
            ("DescribeAutoScalingInstances".into(), membership_answer(g, i, "Warmed:Stopped"))
        }),
        ("scheduled-event", "scheduled event system-maintenance", |_, i| {
            ("DescribeInstanceStatus".into(), status_answer(i))
        }),
    ];
    let a = aws().await;
    for (recovery, names, answer) in cases {
        let (name, ids) = group(&a).await;
        let sick = ids[0].clone();
        a.asg.set_instance_health().instance_id(&sick).health_status("Unhealthy").send().await.unwrap();
        let alarm = event("alarm-sns-ec2-status-check.json", &[(PLACEHOLDER, &sick)]);
        let proxy = FaultProxy::start(&harness::moto_endpoint(), 3).await;
        let (operation, body) = answer(&name, &sick);
        proxy.add(Rule::new(&operation, Fault::Answer { body }, Times::Always));
        let aws = selfheal::clients::Aws::from_sdk_config(harness::sdk_config_at(&proxy.endpoint).await);
        let vars = [("SELFHEAL_HEALER_WAIT_SECONDS", "20"), ("SELFHEAL_HEALER_POLL_SECONDS", "1")];
        let ctx = harness::ctx_with("instance-healer", &vars, aws).await;
        let h = selfheal::healer::Healer::new(ctx, selfheal::healer::HealerConfig::read(&mut harness::env(&vars)));

        let d = decision(&h.handle(&alarm).await.unwrap());
        assert_stood_down(&d, recovery, names);
        assert!(proxy.faulted(&operation) >= 1, "{recovery}: the handler read {operation}: {:?}", proxy.seen());
        assert!(
            resource_mutations(&h.ctx().aws.calls).is_empty(),
            "{recovery}: {:?}",
            resource_mutations(&h.ctx().aws.calls)
        );
        assert_eq!(members(&a, &name).await, ids, "{recovery}: nothing replaced");

        if recovery == "scaling-activity" {
            proxy.clear();
            proxy.add(Rule::new(
                &operation,
                Fault::Answer { body: activities_answer(&name, &sick, "Successful") },
                Times::Always,
            ));
            let later = event(
                "alarm-sns-ec2-status-check.json",
                &[(PLACEHOLDER, &sick), ("2026-11-25T10:15:31", "2026-11-25T11:15:31")],
            );
            let d = decision(&h.handle(&later).await.unwrap());
            assert_eq!(d["outcome"], "acted", "a finished activity holds nothing: {d}");
        }
    }
}
