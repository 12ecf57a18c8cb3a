//! The hub's healer replacing a standalone instance with its opted-in Elastic IP (`RunInstances`,
//! `AssociateAddress`, `TerminateInstances`) against moto: every call passes the conditions of its
//! role, and the same calls under another opt-in value are refused.

use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use harness::iam::{assert_allowed, assert_still_known, evaluate, record, Deployment};
use harness::{sdk_config, unique};
use selfheal::healer::{Healer, HealerConfig};
use selfheal::Outcome;
use serde_json::json;

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
        .tag_specifications(TagSpecification::builder().resource_type(ResourceType::ElasticIp).tags(opt_in()).build())
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
