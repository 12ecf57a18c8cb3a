//! A member account with an external id, against moto: the healer presents the id when it assumes its
//! member role, the role's trust lets it in, the member role's statements allow what it does there,
//! and member stacks expecting another id would refuse it.

use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use harness::iam::{assert_allowed, evaluate, record, Deployment, DEFAULT_HUB};
use selfheal::healer::{Healer, HealerConfig};
use selfheal::Outcome;

/// In a member account with an external id configured: the healer presents it when it assumes its
/// member role, the role's trust (which requires it) lets it in, and the member role's statements
/// allow what it does there. The same calls against a member stack expecting another id are refused.
#[tokio::test]
async fn a_member_role_with_an_external_id_is_assumed_with_it_and_its_trust_holds() {
    const MEMBER: &str = "111111111111";
    let member = harness::in_account(MEMBER).await;
    let ec2 = aws_sdk_ec2::Client::new(&member);
    let vpc = ec2.create_vpc().cidr_block("10.50.0.0/16").send().await.unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let subnet = ec2.create_subnet().vpc_id(&vpc_id).cidr_block("10.50.1.0/24").availability_zone("us-east-1a");
    let subnet = subnet.send().await.unwrap().subnet().unwrap().subnet_id().unwrap().to_string();
    let image = harness::ami(&ec2).await;
    let r = ec2
        .run_instances()
        .image_id(image)
        .instance_type(InstanceType::T3Small)
        .min_count(1)
        .max_count(1)
        .subnet_id(&subnet)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key("selfheal:enabled").value("true").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let id = r.instances()[0].instance_id().unwrap().to_string();
    ec2.stop_instances().instance_ids(&id).send().await.unwrap();

    let vars = [
        ("SELFHEAL_ACCOUNTS", MEMBER),
        ("SELFHEAL_EXTERNAL_ID", "selfheal-ext-7"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
        ("SELFHEAL_HEALER_WAIT_SECONDS", "20"),
        ("SELFHEAL_HEALER_POLL_SECONDS", "1"),
    ];
    let ctx = harness::ctx("instance-healer", &vars).await;
    let mut env = harness::env(&vars);
    let cfg = HealerConfig::read(&mut env);
    env.finish().unwrap();
    let h = Healer::new(ctx, cfg);
    record(&h.ctx().aws.calls);
    let text = harness::event("alarm-lambda-action-ec2-status-check.json", &[("i-0123456789abcdef0", &id)])
        .to_string()
        .replace(DEFAULT_HUB, MEMBER);
    let out = h.handle(&serde_json::from_str(&text).unwrap()).await.unwrap();
    let d: Vec<selfheal::Envelope> = serde_json::from_value(out["decisions"].clone()).unwrap();
    assert_eq!(d[0].outcome, Outcome::Acted, "{}", d[0].reason);
    assert_eq!(d[0].target.account.as_deref(), Some(MEMBER));

    let e = assert_allowed(h.ctx());
    assert_eq!(e.trusts, 1, "{}", e.summary());
    assert!(e.member_calls > 0 && e.by_statement.contains_key("trust/HubFunction sts:AssumeRole"), "{}", e.summary());
    assert!(e.by_statement.contains_key("member/OptedInInstances ec2:StartInstances"), "{}", e.summary());
    // The member stacks deployed with another external id: the trust refuses the hub.
    let mut wrong = Deployment::of(&h.ctx().config);
    wrong.member_external_id = "another-id".into();
    let refused = evaluate(&wrong, &h.ctx().aws.calls.records()).unwrap();
    assert!(
        refused.denials.len() == 1
            && refused.denials[0].contains("trust policy")
            && refused.denials[0].contains("sts:ExternalId"),
        "{:#?}",
        refused.denials
    );
}
