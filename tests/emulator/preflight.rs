//! preflight (issue #30) against moto where it serves: the stack's state and channels (DynamoDB, SNS,
//! SQS, KMS), its rules, targets and schedules (EventBridge), the member accounts (STS and IAM, many
//! accounts), EC2's dry run, and the opted-in resources coverage lists; the drill's manual action end
//! to end. What moto does not serve (`TestEventPattern` answers empty, `Simulate*Policy` is not
//! implemented, CloudWatch speaks an older protocol) is tested with mocks in shared/src/preflight.
//!
//! NOT YET REGISTERED in main.rs (`mod preflight;`): written at the end of a session whose build did not
//! finish in time, so never compiled nor run. Register it, build, and fix what the compiler says.

use std::sync::Arc;

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use harness::{ami, in_account, sdk_config, unique};
use selfheal::clients::Aws;
use selfheal::drill::{self, Deliverer, Drill, DrillConfig};
use selfheal::preflight::{coverage, dry_run, members, resources, rules, Deployment, Scope};
use serde_json::{json, Value};

const HUB: &str = "123456789012";

async fn ledger_table(sdk: &aws_config::SdkConfig, keys: [&str; 2]) -> String {
    let name = unique("pf-ledger");
    let key = |n: &str, t| KeySchemaElement::builder().attribute_name(n).key_type(t).build().unwrap();
    let attr = |n: &str| {
        AttributeDefinition::builder().attribute_name(n).attribute_type(ScalarAttributeType::S).build().unwrap()
    };
    aws_sdk_dynamodb::Client::new(sdk)
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(keys[0], KeyType::Hash))
        .key_schema(key(keys[1], KeyType::Range))
        .attribute_definitions(attr(keys[0]))
        .attribute_definitions(attr(keys[1]))
        .send()
        .await
        .unwrap();
    name
}

async fn key_with_policy(sdk: &aws_config::SdkConfig, services: &[&str]) -> String {
    let statements: Vec<Value> = std::iter::once(json!({"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{HUB}:root")}, "Action": "kms:*", "Resource": "*"}))
        .chain(services.iter().map(|s| json!({"Effect": "Allow", "Principal": {"Service": s}, "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*"})))
        .collect();
    let policy = json!({"Version": "2012-10-17", "Statement": statements}).to_string();
    let key = aws_sdk_kms::Client::new(sdk).create_key().policy(policy).send().await.unwrap();
    key.key_metadata().unwrap().arn().unwrap().to_string()
}

/// A deployment of the stack's state and channels, created in moto.
async fn deployed_state(sdk: &aws_config::SdkConfig) -> Deployment {
    let mut d = Deployment::named(&unique("pf"), HUB, "us-east-1");
    d.ledger_table = Some(ledger_table(sdk, ["pk", "sk"]).await);
    let sns = aws_sdk_sns::Client::new(sdk);
    for name in ["EventsTopicArn", "AlarmsTopicArn"] {
        let t = sns.create_topic().name(unique("pf-topic")).send().await.unwrap();
        d.topics.push((name.into(), t.topic_arn().unwrap().to_string()));
    }
    d.alarms_topic = Some(d.topics[1].1.clone());
    let q = aws_sdk_sqs::Client::new(sdk).create_queue().queue_name(unique("pf-dlq")).send().await.unwrap();
    d.dead_letter_queue_url = Some(q.queue_url().unwrap().to_string());
    d.key_arn = Some(key_with_policy(sdk, &["cloudwatch.amazonaws.com", "events.amazonaws.com"]).await);
    d
}

fn row<'a>(rows: &'a [selfheal::preflight::Check], area: &str) -> &'a selfheal::preflight::Check {
    rows.iter().find(|c| c.area == area).unwrap_or_else(|| panic!("no {area} row: {rows:#?}"))
}

#[tokio::test]
async fn the_stacks_state_and_channels_hold_and_each_missing_or_broken_one_is_named() {
    let sdk = sdk_config().await;
    let aws = Aws::from_sdk_config(sdk.clone());
    let d = deployed_state(&sdk).await;
    let rows = resources::check(&aws, &d).await;
    assert!(rows.iter().all(|c| c.holds), "{rows:#?}");
    assert_eq!(rows.len(), 5, "ledger, two topics, queue, key: {rows:#?}");

    // A missing table, a deleted topic, a queue with undelivered events, a key policy without the services.
    let mut broken = d.clone();
    broken.ledger_table = Some(unique("pf-missing"));
    let gone = aws_sdk_sns::Client::new(&sdk).create_topic().name(unique("pf-gone")).send().await.unwrap();
    let gone = gone.topic_arn().unwrap().to_string();
    aws_sdk_sns::Client::new(&sdk).delete_topic().topic_arn(&gone).send().await.unwrap();
    broken.topics = vec![("CriticalTopicArn".into(), gone)];
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    sqs.send_message()
        .queue_url(broken.dead_letter_queue_url.as_deref().unwrap())
        .message_body("{}")
        .send()
        .await
        .unwrap();
    broken.key_arn = Some(key_with_policy(&sdk, &["cloudwatch.amazonaws.com"]).await);
    let rows = resources::check(&aws, &broken).await;
    let ledger = row(&rows, "ledger");
    assert!(!ledger.holds && ledger.detail.contains("DescribeTable"), "{ledger:?}");
    assert!(!row(&rows, "topic").holds, "{rows:#?}");
    let queue = row(&rows, "queue");
    assert!(!queue.holds && queue.detail.contains("1 messages waiting"), "{queue:?}");
    let key = row(&rows, "key");
    assert!(!key.holds && key.detail.contains("events.amazonaws.com"), "{key:?}");

    // Another table than the ledger's shape.
    let mut other = d.clone();
    other.ledger_table = Some(ledger_table(&sdk, ["id", "at"]).await);
    let ledger = resources::check(&aws, &other).await.remove(0);
    assert!(!ledger.holds && ledger.detail.contains("not pk/sk"), "{ledger:?}");
}

#[tokio::test]
async fn the_stacks_rules_are_read_with_their_targets_schedules_and_state() {
    let sdk = sdk_config().await;
    let aws = Aws::from_sdk_config(sdk.clone());
    let d = Deployment::named(&unique("pf"), HUB, "us-east-1");
    let eb = aws_sdk_eventbridge::Client::new(&sdk);
    let function = d.function_arn("instance-healer");
    for (suffix, pattern, schedule, enabled) in [
        ("InstanceStopped-1", Some(r#"{"source":["aws.ec2"]}"#), None, true),
        ("ExpireApprovals-2", None, Some("rate(15 minutes)"), true),
        ("CoverageReport-3", None, Some("rate(1 day)"), false),
    ] {
        let name = format!("{}-{suffix}", d.stack);
        eb.put_rule()
            .name(&name)
            .set_event_pattern(pattern.map(String::from))
            .set_schedule_expression(schedule.map(String::from))
            .state(if enabled { "ENABLED".into() } else { "DISABLED".into() })
            .send()
            .await
            .unwrap();
        eb.put_targets()
            .rule(&name)
            .targets(aws_sdk_eventbridge::types::Target::builder().id("f").arn(&function).build().unwrap())
            .send()
            .await
            .unwrap();
    }
    eb.put_rule().name(unique("someone-else")).event_pattern(r#"{"source":["aws.ec2"]}"#).send().await.unwrap();
    let routes = rules::deployed(&aws, &d).await.unwrap();
    assert_eq!(routes.len(), 3, "only the stack's own rules: {routes:#?}");
    let stopped = routes.iter().find(|r| r.name.ends_with("InstanceStopped-1")).unwrap();
    assert_eq!(stopped.targets, vec![function.clone()]);
    assert!(stopped.enabled && stopped.pattern.is_some());
    assert!(!routes.iter().find(|r| r.name.ends_with("CoverageReport-3")).unwrap().enabled);
    // moto's TestEventPattern is a stub that answers no match for everything: the pattern rule reads as
    // matching nothing here (the mocked tests in shared/src/preflight/rules.rs prove both answers).
    let rows = rules::check(&eb, &Ok(routes)).await;
    let schedules: Vec<_> = rows.iter().filter(|c| c.area == "schedule").collect();
    assert_eq!(schedules.len(), 2, "{rows:#?}");
    assert!(schedules.iter().all(|c| c.holds));
    assert!(schedules.iter().any(|c| c.detail == "rate(1 day) (disabled)"), "{schedules:#?}");
    // No rule of a stack that is not there.
    let none = rules::deployed(&aws, &Deployment::named(&unique("absent"), HUB, "us-east-1")).await.unwrap();
    let rows = rules::check(&eb, &Ok(none)).await;
    assert!(!rows[0].holds && rows[0].detail.contains("no rule"), "{rows:#?}");
}

async fn member_roles(account: &str, hub_stack: &str, skip: &[&str]) {
    let iam = aws_sdk_iam::Client::new(&in_account(account).await);
    for function in members::ACTING.iter().filter(|f| !skip.contains(f)) {
        let trust = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{HUB}:root")}, "Action": "sts:AssumeRole",
            "Condition": {"ArnEquals": {"aws:PrincipalArn": format!("arn:aws:iam::{HUB}:role/{hub_stack}-{function}")}}}]});
        let name = format!("selfheal-{function}");
        let _ = iam.delete_role().role_name(&name).send().await;
        iam.create_role().role_name(&name).assume_role_policy_document(trust.to_string()).send().await.unwrap();
    }
}

#[tokio::test]
async fn every_member_account_is_assumed_and_one_missing_a_role_or_trusting_another_hub_is_named() {
    let aws = Aws::from_sdk_config(sdk_config().await);
    // Accounts of this test alone (IAM role names are per account).
    let (good, missing, other_hub) = ("300000000001", "300000000002", "300000000003");
    let mut d = Deployment::named(&unique("pf"), HUB, "us-east-1");
    member_roles(good, &d.stack, &[]).await;
    member_roles(missing, &d.stack, &["db-failover"]).await;
    member_roles(other_hub, "another-hub", &[]).await;
    d.members = vec![good.into(), missing.into(), other_hub.into()];
    let rows = members::check(&aws, &d).await;
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert!(rows[0].holds && rows[0].detail.contains("assumed selfheal-preflight"), "{rows:#?}");
    assert!(
        !rows[1].holds && rows[1].subject == missing && rows[1].detail.contains("selfheal-db-failover"),
        "{rows:#?}"
    );
    assert!(!rows[2].holds && rows[2].detail.contains("does not trust the hub role"), "{rows:#?}");
}

#[tokio::test]
async fn ec2_answers_the_dry_run_of_the_drills_injections_without_acting() {
    let sdk = sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .tags(Tag::builder().key("selfheal:drill").value("true").build())
        .build();
    let run = ec2
        .run_instances()
        .image_id(ami(&ec2).await)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .tag_specifications(tags)
        .send()
        .await
        .unwrap();
    let id = run.instances()[0].instance_id().unwrap().to_string();
    let rows = dry_run::check_with(&ec2).await;
    let mine: Vec<_> = rows.iter().filter(|c| c.subject.ends_with(&id)).collect();
    // Other tests' drill-tagged instances may be listed first (three are tried); when this one is, both hold.
    assert!(rows.iter().all(|c| c.holds), "{rows:#?}");
    assert!(mine.is_empty() || mine.len() == 2, "{rows:#?}");
    let state = ec2.describe_instances().instance_ids(&id).send().await.unwrap();
    let state = state.reservations()[0].instances()[0].state().unwrap().name().unwrap().as_str().to_string();
    assert_eq!(state, "running", "a dry run stops nothing");
}

#[tokio::test]
async fn coverage_lists_the_opted_in_resources_of_each_kind() {
    // An account of this test alone, so the listing holds exactly what it made.
    let sdk = in_account("300000000010").await;
    let aws = Aws::from_sdk_config(sdk.clone());
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let tag = |v: &str| Tag::builder().key("selfheal:enabled").value(v).build();
    let mut ids = Vec::new();
    for v in ["true", "false"] {
        let run = ec2
            .run_instances()
            .image_id(ami(&ec2).await)
            .instance_type(InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .tag_specifications(TagSpecification::builder().resource_type(ResourceType::Instance).tags(tag(v)).build())
            .send()
            .await
            .unwrap();
        ids.push(run.instances()[0].instance_id().unwrap().to_string());
    }
    let r53 = aws_sdk_route53::Client::new(&sdk);
    let hc = r53
        .create_health_check()
        .caller_reference(unique("pf"))
        .health_check_config(
            aws_sdk_route53::types::HealthCheckConfig::builder()
                .r#type(aws_sdk_route53::types::HealthCheckType::Https)
                .fully_qualified_domain_name("example.com")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let hc = hc.health_check().unwrap().id().to_string();
    r53.change_tags_for_resource()
        .resource_type(aws_sdk_route53::types::TagResourceType::Healthcheck)
        .resource_id(&hc)
        .add_tags(aws_sdk_route53::types::Tag::builder().key("selfheal:enabled").value("true").build())
        .send()
        .await
        .unwrap();
    // Aurora clusters too (issue #30): one opted in, one not.
    let rds = aws_sdk_rds::Client::new(&sdk);
    let mut clusters = Vec::new();
    for v in ["true", "false"] {
        let id = unique("pf-aurora");
        rds.create_db_cluster()
            .db_cluster_identifier(&id)
            .engine("aurora-postgresql")
            .master_username("admin")
            .master_user_password("password123")
            .tags(aws_sdk_rds::types::Tag::builder().key("selfheal:enabled").value(v).build())
            .send()
            .await
            .unwrap();
        clusters.push(id);
    }
    let d = Deployment::named("pf", "300000000010", "us-east-1");
    let found = coverage::opted_in(&aws, &d).await.unwrap();
    let cluster = found.iter().find(|r| r.id == clusters[0]).expect("the opted-in cluster is listed");
    assert_eq!(
        (cluster.kind, cluster.dimensions.clone()),
        ("database cluster", vec![("DBClusterIdentifier".to_string(), clusters[0].clone())])
    );
    assert!(!found.iter().any(|r| r.id == clusters[1]), "a cluster not opted in is not listed");
    let names: Vec<(&str, &str)> = found.iter().map(|r| (r.kind, r.id.as_str())).collect();
    assert!(names.contains(&("instance", ids[0].as_str())), "{names:?}");
    assert!(!names.iter().any(|(_, id)| *id == ids[1]), "not opted in: {names:?}");
    assert!(names.contains(&("health check", hc.as_str())), "{names:?}");
    // Without alarms (CloudWatch is read through mocks: shared/src/preflight/coverage.rs) each is uncovered.
    let rows = coverage::assess(&found, &[]);
    assert!(rows.iter().all(|c| !c.holds && c.detail.contains("never healed")), "{rows:#?}");
}

#[tokio::test]
async fn the_drills_preflight_action_records_one_envelope_and_answers_the_report() {
    let sdk = sdk_config().await;
    let ctx = harness::ctx(drill::FUNCTION, &[]).await;
    let mut d = deployed_state(&sdk).await;
    d.ledger_table = Some(ctx.config.ledger_table.clone());
    let mut env = harness::env(&[]);
    let cfg = DrillConfig::read(&mut env);
    env.finish().unwrap();
    let deliverer = Deliverer::InProcess(Arc::new(|_f: String, _e: Value| -> drill::deliver::BoxFuture {
        Box::pin(async { Err(selfheal::Error::Precondition("preflight delivers nothing".into())) })
    }));
    let drill = Drill { ctx, cfg, deliverer };
    let answer = drill.preflight_of(&d, Scope::Everything).await.unwrap();
    let checks = answer["checks"].as_array().unwrap();
    let holds = |area: &str| checks.iter().filter(|c| c["area"] == area).all(|c| c["holds"] == true);
    assert!(holds("ledger") && holds("topic") && holds("queue") && holds("key"), "{answer:#}");
    // The stack has no rules and no roles in this emulator: the report does not hold, and says so.
    assert_eq!(answer["passed"], false);
    assert!(answer["text"].as_str().unwrap().contains("NOT READY"));
    let trail = drill.ctx.ledger.audit_trail(&d.stack).await.unwrap();
    assert_eq!(trail.len(), 1, "{trail:#?}");
}
