//! instance-healer end to end against moto: real-shaped events through `Healer::handle`, asserting on
//! the instances and groups in the emulator, the returned decisions, the ledger and the call log.
//!
//! Moto reports every instance's status checks `ok`, so tests make an instance broken the way the
//! module's rule reads it: Auto Scaling `SetInstanceHealth Unhealthy`, or stopping it.

use std::collections::BTreeSet;

use aws_sdk_autoscaling::types::Tag as AsgTag;
use aws_sdk_ec2::types::{InstanceType, LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData};
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use harness::{ami, healer, OPT_IN, PLACEHOLDER};
use harness::{event, sdk_config, unique};
use selfheal::healer::{Healer, FUNCTION, REPLACES_TAG};
use serde_json::{json, Value};

struct Env {
    ec2: aws_sdk_ec2::Client,
    asg: aws_sdk_autoscaling::Client,
    sdk: aws_config::SdkConfig,
}

async fn clients() -> Env {
    let sdk = sdk_config().await;
    Env { ec2: aws_sdk_ec2::Client::new(&sdk), asg: aws_sdk_autoscaling::Client::new(&sdk), sdk }
}

/// A fresh VPC with one subnet in each of three AZs.
async fn vpc(ec2: &aws_sdk_ec2::Client) -> (String, Vec<String>) {
    let v = ec2.create_vpc().cidr_block("10.20.0.0/16").send().await.unwrap();
    let vpc_id = v.vpc().unwrap().vpc_id().unwrap().to_string();
    let mut subnets = Vec::new();
    for (i, az) in ["us-east-1a", "us-east-1b", "us-east-1c"].iter().enumerate() {
        let s = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(format!("10.20.{i}.0/24"))
            .availability_zone(*az)
            .send()
            .await
            .unwrap();
        subnets.push(s.subnet().unwrap().subnet_id().unwrap().to_string());
    }
    (vpc_id, subnets)
}

/// A 3-AZ group of `n` instances from a launch template; opted in through a propagated tag.
async fn group(e: &Env, n: i32, opted_in: bool) -> String {
    let name = unique("web-asg");
    let (_, subnets) = vpc(&e.ec2).await;
    let data = RequestLaunchTemplateData::builder()
        .image_id(ami(&e.ec2).await)
        .instance_type(InstanceType::T3Micro)
        .tag_specifications(
            LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key("app").value("web").build())
                .build(),
        )
        .build();
    let lt = e.ec2.create_launch_template().launch_template_name(unique("lt")).launch_template_data(data).send().await;
    let lt_id = lt.unwrap().launch_template().unwrap().launch_template_id().unwrap().to_string();
    let mut req = e
        .asg
        .create_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_id(lt_id)
                .version("$Latest")
                .build(),
        )
        .min_size(n)
        .max_size(n * 2)
        .desired_capacity(n)
        .availability_zones("us-east-1a")
        .availability_zones("us-east-1b")
        .availability_zones("us-east-1c")
        .vpc_zone_identifier(subnets.join(","));
    if opted_in {
        req = req.tags(
            AsgTag::builder()
                .key(OPT_IN.0)
                .value(OPT_IN.1)
                .propagate_at_launch(true)
                .resource_id(&name)
                .resource_type("auto-scaling-group")
                .build(),
        );
    }
    req.send().await.unwrap();
    name
}

async fn members(e: &Env, name: &str) -> (i32, Vec<(String, String, String)>) {
    let out = e.asg.describe_auto_scaling_groups().auto_scaling_group_names(name).send().await.unwrap();
    let g = &out.auto_scaling_groups()[0];
    let m = g
        .instances()
        .iter()
        .map(|i| {
            (
                i.instance_id().unwrap().to_string(),
                i.lifecycle_state().unwrap().as_str().to_string(),
                i.health_status().unwrap().to_string(),
            )
        })
        .collect();
    (g.desired_capacity().unwrap(), m)
}

async fn ids(e: &Env, name: &str) -> BTreeSet<String> {
    members(e, name).await.1.into_iter().map(|(id, _, _)| id).collect()
}

async fn mark_unhealthy(e: &Env, id: &str) {
    e.asg.set_instance_health().instance_id(id).health_status("Unhealthy").send().await.unwrap();
}

async fn instance(e: &Env, id: &str) -> aws_sdk_ec2::types::Instance {
    let out = e.ec2.describe_instances().instance_ids(id).send().await.unwrap();
    out.reservations()[0].instances()[0].clone()
}

async fn state(e: &Env, id: &str) -> String {
    instance(e, id).await.state().unwrap().name().unwrap().as_str().to_string()
}

fn tag(i: &aws_sdk_ec2::types::Instance, key: &str) -> Option<String> {
    i.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).map(str::to_string)
}

/// The mutating calls outside the ledger (DynamoDB) and the notifier (SNS).
fn resource_mutations(h: &Healer) -> Vec<String> {
    h.ctx()
        .aws
        .calls
        .mutating_calls()
        .into_iter()
        .filter(|c| !c.starts_with("dynamodb:") && !c.starts_with("sns:"))
        .collect()
}

fn decision(out: &Value) -> &Value {
    let d = out["decisions"].as_array().expect("decisions");
    assert_eq!(d.len(), 1, "{out}");
    &d[0]
}

fn alarm(file: &str, id: &str) -> Value {
    event(file, &[(PLACEHOLDER, id)])
}

/// A standalone instance with a security group, a Name tag and an Elastic IP; `opted_in` tags both the
/// instance and the address.
async fn standalone(e: &Env, opted_in: bool) -> (String, String, String, String) {
    let (vpc_id, subnets) = vpc(&e.ec2).await;
    let sg = e.ec2.create_security_group().group_name(unique("sg")).description("web").vpc_id(&vpc_id).send().await;
    let sg = sg.unwrap().group_id().unwrap().to_string();
    let mut tags = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .tags(Tag::builder().key("Name").value("web-1").build());
    if opted_in {
        tags = tags.tags(Tag::builder().key(OPT_IN.0).value(OPT_IN.1).build());
    }
    let r = e
        .ec2
        .run_instances()
        .image_id(ami(&e.ec2).await)
        .instance_type(InstanceType::T3Small)
        .min_count(1)
        .max_count(1)
        .subnet_id(&subnets[1])
        .security_group_ids(&sg)
        .tag_specifications(tags.build())
        .send()
        .await
        .unwrap();
    let id = r.instances()[0].instance_id().unwrap().to_string();
    let mut alloc = e.ec2.allocate_address().domain(aws_sdk_ec2::types::DomainType::Vpc);
    if opted_in {
        alloc = alloc.tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::ElasticIp)
                .tags(Tag::builder().key(OPT_IN.0).value(OPT_IN.1).build())
                .build(),
        );
    }
    let alloc = alloc.send().await.unwrap();
    let alloc_id = alloc.allocation_id().unwrap().to_string();
    e.ec2.associate_address().allocation_id(&alloc_id).instance_id(&id).send().await.unwrap();
    (id, sg, subnets[1].clone(), alloc_id)
}

#[tokio::test]
async fn an_unhealthy_member_of_a_three_az_group_is_replaced_and_a_duplicate_alarm_acts_once() {
    let e = clients().await;
    let name = group(&e, 3, true).await;
    let before = ids(&e, &name).await;
    assert_eq!(before.len(), 3);
    let sick = before.iter().next().unwrap().clone();
    mark_unhealthy(&e, &sick).await;

    let h = healer(&[]).await;
    let out = h.handle(&alarm("alarm-sns-ec2-status-check.json", &sick)).await.unwrap();
    let d = decision(&out);
    assert_eq!(d["outcome"], "acted", "{d}");
    assert_eq!(d["target"]["group"], name.as_str());
    let new_id = d["details"]["replacement"].as_str().expect("replacement id reported").to_string();
    assert!(!before.contains(&new_id));

    let (desired, after) = members(&e, &name).await;
    assert_eq!(desired, 3, "desired capacity kept");
    let after_ids: BTreeSet<String> = after.iter().map(|m| m.0.clone()).collect();
    assert_eq!(after_ids.len(), 3, "capacity back to desired: {after:?}");
    assert!(after_ids.contains(&new_id), "the replacement is in the group");
    assert!(!after_ids.contains(&sick), "the unhealthy instance left the group");
    assert!(matches!(state(&e, &sick).await.as_str(), "shutting-down" | "terminated"));
    assert!(after.iter().all(|m| m.1 == "InService" || m.1 == "Pending"), "{after:?}");
    let trail = h.ctx().ledger.audit_trail(&sick).await.unwrap();
    assert!(trail.iter().any(|r| r.outcome == "acted" && r.function == FUNCTION), "audited");

    // The same alarm state change redelivered, this time through EventBridge: one identity, no second
    // replacement.
    let out = h.handle(&alarm("alarm-eventbridge-ec2-status-check.json", &sick)).await.unwrap();
    assert_eq!(decision(&out)["outcome"], "duplicate", "{out}");
    assert_eq!(ids(&e, &name).await, after_ids, "nothing replaced twice");
    let terminations =
        h.ctx().aws.calls.calls().iter().filter(|c| c.ends_with(":TerminateInstanceInAutoScalingGroup")).count();
    assert_eq!(terminations, 1);
}

#[tokio::test]
async fn an_unhealthy_share_above_the_threshold_replaces_nothing_and_pages() {
    let e = clients().await;
    let name = group(&e, 3, true).await;
    let before = ids(&e, &name).await;
    let sick: Vec<String> = before.iter().take(2).cloned().collect();
    for id in &sick {
        mark_unhealthy(&e, id).await;
    }
    let topic = unique("healer-topic");
    let (topic_arn, queue) = harness::topic_with_queue(&e.sdk, &topic).await;
    let h = healer(&[("SELFHEAL_TOPIC_ARN", topic_arn.as_str())]).await;

    let out = h.handle(&alarm("alarm-lambda-action-ec2-status-check.json", &sick[0])).await.unwrap();
    let d = decision(&out);
    assert_eq!(d["outcome"], "refused", "{d}");
    assert_eq!(d["severity"], "critical");
    assert!(d["reason"].as_str().unwrap().contains("short-circuit: 2 of 3"), "{d}");
    let evidence = d["details"]["shortCircuit"]["evidence"].as_object().unwrap();
    assert!(sick.iter().all(|id| evidence.contains_key(id)), "{d}");
    // A group-wide short-circuit is a person's to look at, not an AZ for zone-evacuator.
    assert_eq!(d["details"]["shortCircuit"]["scope"], "group", "{d}");
    assert!(
        d["details"].get("evacuation").is_none() && d["reason"].as_str().unwrap().contains("a person must look"),
        "{d}"
    );

    assert_eq!(ids(&e, &name).await, before, "nothing replaced");
    for id in &before {
        assert_eq!(state(&e, id).await, "running");
    }
    assert!(resource_mutations(&h).is_empty(), "{:?}", resource_mutations(&h));
    let notes = harness::drain_notifications(&e.sdk, &queue).await;
    assert!(
        notes.iter().any(|(m, _)| m["severity"] == "critical" && m["target"]["id"] == sick[0].as_str()),
        "a critical envelope was published: {notes:?}"
    );
}

#[tokio::test]
async fn a_standalone_instance_is_replaced_with_the_same_configuration_and_its_eip_moved() {
    let e = clients().await;
    let (old, sg, subnet, alloc) = standalone(&e, true).await;
    let old_inst = instance(&e, &old).await;
    let h = healer(&[]).await;

    let manual = json!({"source": "selfheal.manual", "action": "replace", "target": old, "force": true,
        "params": {"step": "replace"}, "reason": "test: replace standalone", "requestId": unique("req")});
    let out = h.handle(&manual).await.unwrap();
    let d = decision(&out);
    assert_eq!(d["outcome"], "acted", "{d}");
    assert_eq!(d["target"]["group"], "standalone");
    assert_eq!(d["details"]["step"], "replace");
    let new_id = d["details"]["replacement"].as_str().unwrap().to_string();

    let new = instance(&e, &new_id).await;
    assert_eq!(new.state().unwrap().name().unwrap().as_str(), "running");
    assert_eq!(new.image_id(), old_inst.image_id());
    assert_eq!(new.instance_type(), old_inst.instance_type());
    assert_eq!(new.subnet_id(), Some(subnet.as_str()));
    let sgs: Vec<&str> = new.security_groups().iter().filter_map(|g| g.group_id()).collect();
    assert_eq!(sgs, vec![sg.as_str()]);
    assert_eq!(tag(&new, "Name").as_deref(), Some("web-1"));
    assert_eq!(tag(&new, OPT_IN.0).as_deref(), Some(OPT_IN.1));
    assert_eq!(tag(&new, REPLACES_TAG).as_deref(), Some(old.as_str()));

    let addr = e.ec2.describe_addresses().allocation_ids(&alloc).send().await.unwrap();
    assert_eq!(addr.addresses()[0].instance_id(), Some(new_id.as_str()), "the Elastic IP moved");
    assert!(matches!(state(&e, &old).await.as_str(), "shutting-down" | "terminated"));
    // The replacement was running before the old one was terminated.
    let calls = h.ctx().aws.calls.calls();
    let pos = |op: &str| calls.iter().position(|c| c == op).unwrap_or_else(|| panic!("{op} in {calls:?}"));
    assert!(pos("ec2:RunInstances") < pos("ec2:AssociateAddress"));
    assert!(pos("ec2:AssociateAddress") < pos("ec2:TerminateInstances"));
}

#[tokio::test]
async fn a_replacement_whose_elastic_ip_is_not_opted_in_is_refused_before_anything_is_launched() {
    let e = clients().await;
    let (old, _, _, alloc) = standalone(&e, true).await;
    e.ec2.delete_tags().resources(&alloc).tags(Tag::builder().key(OPT_IN.0).build()).send().await.unwrap();
    let h = healer(&[]).await;

    let manual = json!({"source": "selfheal.manual", "action": "replace", "target": old, "force": true,
        "params": {"step": "replace"}, "reason": "test: replace standalone", "requestId": unique("req")});
    let out = h.handle(&manual).await.unwrap();
    let d = decision(&out);
    assert_eq!(d["outcome"], "refused", "{d}");
    assert_eq!(d["severity"], "critical", "the instance stays broken: a human must act");
    let reason = d["reason"].as_str().unwrap();
    assert!(
        reason.contains(&alloc) && reason.contains("is not opted in") && reason.contains("Nothing launched"),
        "{reason}"
    );
    assert!(resource_mutations(&h).is_empty(), "nothing launched, moved or terminated: {:?}", resource_mutations(&h));
    assert_eq!(state(&e, &old).await, "running");
    let addr = e.ec2.describe_addresses().allocation_ids(&alloc).send().await.unwrap();
    assert_eq!(addr.addresses()[0].instance_id(), Some(old.as_str()), "the address stays where it was");

    // Opted in again, the same replacement goes ahead and takes the address.
    e.ec2
        .create_tags()
        .resources(&alloc)
        .tags(Tag::builder().key(OPT_IN.0).value(OPT_IN.1).build())
        .send()
        .await
        .unwrap();
    let manual = json!({"source": "selfheal.manual", "action": "replace", "target": old, "force": true,
        "params": {"step": "replace"}, "reason": "test: replace standalone", "requestId": unique("req")});
    let d = decision(&h.handle(&manual).await.unwrap()).clone();
    assert_eq!(d["outcome"], "acted", "{d}");
    let new_id = d["details"]["replacement"].as_str().unwrap();
    let addr = e.ec2.describe_addresses().allocation_ids(&alloc).send().await.unwrap();
    assert_eq!(addr.addresses()[0].instance_id(), Some(new_id));
}

#[tokio::test]
async fn a_stopped_standalone_instance_is_started_and_once_healthy_is_left_alone() {
    let e = clients().await;
    let (id, _, _, _) = standalone(&e, true).await;
    e.ec2.stop_instances().instance_ids(&id).send().await.unwrap();
    let h = healer(&[("SELFHEAL_COOLDOWN_SECONDS", "0")]).await;

    let out = h.handle(&alarm("alarm-lambda-action-ec2-status-check.json", &id)).await.unwrap();
    let d = decision(&out);
    assert_eq!(d["outcome"], "acted", "{d}");
    assert_eq!(d["details"]["step"], "stop-start");
    assert_eq!(state(&e, &id).await, "running");

    // A later alarm on the now-healthy instance: the re-check refuses.
    let later = alarm("alarm-lambda-action-ec2-status-check.json", &id);
    let later: Value =
        serde_json::from_str(&later.to_string().replace("2026-11-25T10:15:31.180", "2026-11-25T11:15:31.180")).unwrap();
    h.ctx().aws.calls.clear();
    let out = h.handle(&later).await.unwrap();
    let d = decision(&out);
    assert_eq!(d["outcome"], "refused", "{d}");
    assert!(d["reason"].as_str().unwrap().contains("healthy again"), "{d}");
    assert!(resource_mutations(&h).is_empty());

    // An EC2 state-change event for a stop a user made is a deploy, not a failure.
    e.ec2.stop_instances().instance_ids(&id).send().await.unwrap();
    let out = h.handle(&event("ec2-instance-state-change-stopped.json", &[(PLACEHOLDER, &id)])).await.unwrap();
    let d = decision(&out);
    assert_eq!(d["outcome"], "refused", "{d}");
    assert!(d["reason"].as_str().unwrap().contains("by a user"), "{d}");
    assert_eq!(state(&e, &id).await, "stopped");
}

#[tokio::test]
async fn an_instance_without_the_opt_in_tag_is_left_alone() {
    let e = clients().await;
    let name = group(&e, 3, false).await;
    let before = ids(&e, &name).await;
    let sick = before.iter().next().unwrap().clone();
    mark_unhealthy(&e, &sick).await;
    let h = healer(&[]).await;

    let out = h.handle(&alarm("alarm-sns-ec2-status-check.json", &sick)).await.unwrap();
    let d = decision(&out);
    assert_eq!(d["outcome"], "refused", "{d}");
    assert!(d["reason"].as_str().unwrap().contains("not opted in"), "{d}");
    assert_eq!(ids(&e, &name).await, before);
    assert!(resource_mutations(&h).is_empty(), "{:?}", resource_mutations(&h));
    let trail = h.ctx().ledger.audit_trail(&sick).await.unwrap();
    assert_eq!(trail.len(), 1, "the refusal is audited");
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let e = clients().await;
    let name = group(&e, 3, true).await;
    let before = ids(&e, &name).await;
    let sick = before.iter().next().unwrap().clone();
    mark_unhealthy(&e, &sick).await;
    let (solo, _, _, alloc) = standalone(&e, true).await;
    e.ec2.stop_instances().instance_ids(&solo).send().await.unwrap();
    let h = healer(&[("SELFHEAL_DRY_RUN", "true")]).await;
    h.ctx().aws.calls.clear();

    let out = h.handle(&alarm("alarm-eventbridge-ec2-status-check.json", &sick)).await.unwrap();
    let d = decision(&out);
    assert_eq!(d["outcome"], "dry-run", "{d}");
    assert!(d["reason"].as_str().unwrap().starts_with("would replace"), "{d}");
    // The sample manual event asks for a dry run itself.
    let out = h.handle(&event("manual-replace-instance.json", &[(PLACEHOLDER, &solo)])).await.unwrap();
    let d = decision(&out);
    assert_eq!(d["outcome"], "dry-run", "{d}");
    assert_eq!(d["details"]["step"], "stop-start", "{d}");

    assert!(resource_mutations(&h).is_empty(), "{:?}", resource_mutations(&h));
    assert_eq!(ids(&e, &name).await, before);
    assert_eq!(state(&e, &sick).await, "running");
    assert_eq!(state(&e, &solo).await, "stopped");
    let addr = e.ec2.describe_addresses().allocation_ids(&alloc).send().await.unwrap();
    assert_eq!(addr.addresses()[0].instance_id(), Some(solo.as_str()));
}

#[tokio::test]
async fn an_unknown_instance_id_is_refused_naming_it_and_the_invocation_succeeds() {
    let h = healer(&[]).await;
    let manual = json!({"source": "selfheal.manual", "action": "replace", "target": "i-0000000000000dead",
        "requestId": unique("req")});
    let out = h.handle(&manual).await.expect("a refusal, not a failed invocation");
    let d = decision(&out);
    assert_eq!(d["outcome"], "refused", "{d}");
    let reason = d["reason"].as_str().unwrap();
    assert!(reason.contains("EC2 instance i-0000000000000dead does not exist in"), "{reason}");
    assert_eq!(d["details"]["missing"], json!({"kind": "EC2 instance", "id": "i-0000000000000dead"}), "{d}");
    assert!(resource_mutations(&h).is_empty());

    let bad = json!({"source": "selfheal.manual", "action": "reboot-everything", "target": "i-0000000000000dead"});
    let err = h.handle(&bad).await.unwrap_err().to_string();
    assert!(err.contains("understands action \"replace\""), "{err}");
}

/// Handles one alarm per instance, all at once, each in its own task (as parallel Lambdas would).
async fn race(h: &std::sync::Arc<Healer>, instances: &[String]) -> Vec<Value> {
    let mut tasks = Vec::new();
    for id in instances {
        let (h, ev) = (h.clone(), alarm("alarm-lambda-action-ec2-status-check.json", id));
        tasks.push(tokio::spawn(async move { h.handle(&ev).await.unwrap() }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(decision(&t.await.unwrap()).clone());
    }
    out
}

/// With the function-wide concurrency of 1 gone, the guards that must see the whole group still hold
/// when every member's alarm arrives at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_parallel_invocations_for_ten_sick_members_of_one_group_all_short_circuit() {
    let e = clients().await;
    let name = group(&e, 12, true).await;
    let before = ids(&e, &name).await;
    let sick: Vec<String> = before.iter().take(10).cloned().collect();
    for id in &sick {
        mark_unhealthy(&e, id).await;
    }
    let h = std::sync::Arc::new(healer(&[("SELFHEAL_RATE_LIMIT", "100"), ("SELFHEAL_COOLDOWN_SECONDS", "0")]).await);

    let decisions = race(&h, &sick).await;
    for d in &decisions {
        assert_eq!(d["outcome"], "refused", "{d}");
        assert_eq!(d["severity"], "critical", "{d}");
        assert!(d["reason"].as_str().unwrap().contains("short-circuit: 10 of 12"), "{d}");
    }
    let targets: BTreeSet<&str> = decisions.iter().filter_map(|d| d["target"]["id"].as_str()).collect();
    assert_eq!(targets.len(), 10, "one decision per member");
    // In the emulator: nothing terminated, nothing replaced.
    assert_eq!(ids(&e, &name).await, before, "nothing replaced");
    assert!(resource_mutations(&h).is_empty(), "{:?}", resource_mutations(&h));
}

/// Under the threshold, the group's rate limit is an atomic counter: three members racing for a limit
/// of two get exactly two replacements.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_parallel_replacements_in_one_group_stop_at_its_rate_limit() {
    let e = clients().await;
    let name = group(&e, 10, true).await;
    let before = ids(&e, &name).await;
    let sick: Vec<String> = before.iter().take(3).cloned().collect();
    for id in &sick {
        mark_unhealthy(&e, id).await;
    }
    let h = std::sync::Arc::new(healer(&[("SELFHEAL_RATE_LIMIT", "2"), ("SELFHEAL_COOLDOWN_SECONDS", "0")]).await);

    let decisions = race(&h, &sick).await;
    let acted: Vec<&Value> = decisions.iter().filter(|d| d["outcome"] == "acted").collect();
    let refused: Vec<&Value> = decisions.iter().filter(|d| d["outcome"] == "refused").collect();
    assert_eq!(acted.len(), 2, "{decisions:#?}");
    assert_eq!(refused.len(), 1, "{decisions:#?}");
    assert!(refused[0]["reason"].as_str().unwrap().contains("rate limit"), "{}", refused[0]);
    // In the emulator: exactly two of the sick members are gone from the group.
    let after = ids(&e, &name).await;
    let gone: Vec<&String> = sick.iter().filter(|id| !after.contains(*id)).collect();
    assert_eq!(gone.len(), 2, "{gone:?}");
    let terminations =
        h.ctx().aws.calls.calls().iter().filter(|c| c.ends_with(":TerminateInstanceInAutoScalingGroup")).count();
    assert_eq!(terminations, 2);
}

/// More than N instances of one group in the rate window wait for a human; the approval re-checks
/// the instance and replaces it.
#[tokio::test]
async fn a_replacement_beyond_the_groups_blast_radius_waits_for_approval() {
    let e = clients().await;
    let name = group(&e, 6, true).await;
    let before = ids(&e, &name).await;
    let sick: Vec<String> = before.iter().take(2).cloned().collect();
    for id in &sick {
        mark_unhealthy(&e, id).await;
    }
    let approver = "arn:aws:sts::123456789012:assumed-role/Oncall/alice";
    let h = healer(&[
        ("SELFHEAL_APPROVAL_AFTER", "1"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
        ("SELFHEAL_APPROVERS", "arn:aws:iam::123456789012:role/Oncall"),
    ])
    .await;

    let first = h.handle(&alarm("alarm-lambda-action-ec2-status-check.json", &sick[0])).await.unwrap();
    assert_eq!(decision(&first)["outcome"], "acted", "{first}");
    let second = h.handle(&alarm("alarm-lambda-action-ec2-status-check.json", &sick[1])).await.unwrap();
    let parked = decision(&second).clone();
    assert_eq!(parked["outcome"], "awaiting-approval", "{parked}");
    assert!(parked["reason"].as_str().unwrap().contains("beyond 1 a human approves"), "{parked}");
    assert!(ids(&e, &name).await.contains(&sick[1]), "not replaced before the approval");

    assert_eq!(parked["details"]["approval"]["approvalsRequired"], 1, "one person for anything but a region failover");

    // One listed approver, verified by AWS (the Function URL request the game day tooling builds).
    let token = parked["details"]["approval"]["token"].as_str().unwrap();
    let body = json!({"action": "approve", "token": token});
    let answer = h.handle(&gameday::approve::function_url_request(approver, &body)).await.unwrap();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let approved = gameday::approve::response_decisions(&answer);
    let d = decision(&approved);
    assert_eq!(d["outcome"], "acted", "{d}");
    assert_eq!(d["details"]["approvedWith"], token[..8]);
    assert_eq!(d["details"]["approvedBy"][0]["principal"], approver);
    let after = ids(&e, &name).await;
    assert!(!after.contains(&sick[0]) && !after.contains(&sick[1]), "both sick members replaced: {after:?}");
}
