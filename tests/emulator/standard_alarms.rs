//! The standard alarms (issue #30, optional setting) through the drill's `keep-alarms` action: the
//! opted-in resources are real (moto: EC2, RDS, Route 53, in a fresh account each), CloudWatch is the
//! stand-in of [`crate::cloudwatch_standin`] (moto does not speak its current protocol). What is
//! asserted is what the stand-in holds afterwards and which calls changed it, the answer, and the
//! ledger's audit trail.

use std::sync::Arc;

use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, MetricAlarm, Statistic};
use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use harness::{ami, unique};
use selfheal::clients::Aws;
use selfheal::drill::deliver::BoxFuture;
use selfheal::drill::{self, Deliverer, Drill, DrillConfig};
use selfheal::preflight::{coverage, Deployment};
use selfheal::standard_alarms::spec::{MANAGED_TAG, PREFIX};
use selfheal::standard_alarms::Settings;
use selfheal::{parse_event, Trigger};
use serde_json::{json, Value};

use crate::cloudwatch_standin::{builder_of, CloudWatch};

const REGION: &str = "us-east-1";
const OPT_IN: (&str, &str) = ("selfheal:enabled", "true");

fn fresh_account() -> String {
    let n = uuid::Uuid::new_v4().as_u128() % 900_000_000_000 + 100_000_000_000;
    n.to_string()
}

async fn drill_in(sdk: aws_config::SdkConfig, vars: &[(&str, &str)]) -> Drill {
    let ctx = harness::ctx_with(drill::FUNCTION, vars, Aws::from_sdk_config(sdk)).await;
    let mut env = harness::env(&[]);
    let cfg = DrillConfig::read(&mut env);
    env.finish().expect("valid drill settings");
    let deliverer = Deliverer::InProcess(Arc::new(|_f: String, _e: Value| -> BoxFuture {
        Box::pin(async { Err(selfheal::Error::Precondition("keeping alarms delivers nothing".into())) })
    }));
    Drill { ctx, cfg, deliverer }
}

fn keep_alarms(dry_run: bool) -> Trigger {
    let payload = json!({"source": "selfheal.manual", "action": "keep-alarms", "dryRun": dry_run,
                         "requestId": unique("keep")});
    parse_event(&payload).expect("a manual invocation").remove(0)
}

fn on() -> Settings {
    Settings { enabled: true, max_deletes: 10 }
}

fn deployment(account: &str) -> Deployment {
    let mut d = Deployment::named(&unique("std"), account, REGION);
    d.alarms_topic = Some(format!("arn:aws:sns:{REGION}:{account}:std-alarms"));
    d
}

async fn instance(ec2: &aws_sdk_ec2::Client, opted_in: bool) -> String {
    let mut tags = TagSpecification::builder().resource_type(ResourceType::Instance);
    if opted_in {
        tags = tags.tags(Tag::builder().key(OPT_IN.0).value(OPT_IN.1).build());
    }
    let run = ec2
        .run_instances()
        .image_id(ami(ec2).await)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .tag_specifications(tags.tags(Tag::builder().key("Name").value("std").build()).build())
        .send()
        .await
        .unwrap();
    run.instances()[0].instance_id().unwrap().to_string()
}

async fn database(rds: &aws_sdk_rds::Client) -> String {
    let id = unique("std-db");
    rds.create_db_instance()
        .db_instance_identifier(&id)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .master_username("admin_user")
        .master_user_password("secret-password-1")
        .allocated_storage(20)
        .tags(aws_sdk_rds::types::Tag::builder().key(OPT_IN.0).value(OPT_IN.1).build())
        .send()
        .await
        .unwrap();
    id
}

async fn health_check(r53: &aws_sdk_route53::Client) -> String {
    let hc = r53
        .create_health_check()
        .caller_reference(unique("std"))
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
    let id = hc.health_check().unwrap().id().to_string();
    r53.change_tags_for_resource()
        .resource_type(aws_sdk_route53::types::TagResourceType::Healthcheck)
        .resource_id(&id)
        .add_tags(aws_sdk_route53::types::Tag::builder().key(OPT_IN.0).value(OPT_IN.1).build())
        .send()
        .await
        .unwrap();
    id
}

fn someone_elses(name: &str, instance: &str) -> MetricAlarm {
    MetricAlarm::builder()
        .alarm_name(name)
        .namespace("AWS/EC2")
        .metric_name("CPUUtilization")
        .dimensions(Dimension::builder().name("InstanceId").value(instance).build())
        .statistic(Statistic::Average)
        .period(300)
        .evaluation_periods(1)
        .threshold(90.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .build()
}

fn changes_of(answer: &Value) -> Vec<(String, String)> {
    answer["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["change"].as_str().unwrap().to_string(), c["outcome"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn opted_in_resources_get_their_alarm_kept_and_only_the_suites_own_alarms_are_ever_changed() {
    let account = fresh_account();
    let sdk = harness::in_account(&account).await;
    let (ec2, rds, r53) =
        (aws_sdk_ec2::Client::new(&sdk), aws_sdk_rds::Client::new(&sdk), aws_sdk_route53::Client::new(&sdk));
    let (standalone, not_opted_in) = (instance(&ec2, true).await, instance(&ec2, false).await);
    let (db, hc) = (database(&rds).await, health_check(&r53).await);
    let drill = drill_in(sdk.clone(), &[("SELFHEAL_COOLDOWN_SECONDS", "900")]).await;
    let d = deployment(&account);
    let topic = d.alarms_topic.clone().unwrap();
    let cw = CloudWatch::new(&account, REGION);
    // The owner's own alarm on the instance, and an alarm named like the suite's it did not create.
    cw.seed(someone_elses("owners-cpu", &standalone), &[]);
    let squatter = format!("{PREFIX}instance|i-0123456789abcdef0");
    cw.seed(someone_elses(&squatter, "i-0123456789abcdef0"), &[("team", "web")]);

    let answer = drill.keep_standard_alarms_of(&d, &on(), &cw.client(), &keep_alarms(false)).await.unwrap();
    assert_eq!(answer["outcome"], "acted", "{answer:#}");
    let expected = [
        format!("{PREFIX}database|{db}"),
        format!("{PREFIX}health-check|{hc}"),
        format!("{PREFIX}instance|{standalone}"),
    ];
    let mut puts: Vec<String> = expected.iter().map(|n| format!("PutMetricAlarm {n}")).collect();
    assert_eq!(cw.changes(), puts, "exactly the three missing alarms are created, nothing else is touched");
    let (alarm, tags) = cw.get(&expected[2]).unwrap();
    assert_eq!(alarm.metric_name(), Some("StatusCheckFailed"));
    assert_eq!(alarm.dimensions()[0].value(), Some(standalone.as_str()));
    assert_eq!((alarm.alarm_actions(), alarm.ok_actions()), ([topic.clone()].as_slice(), [topic.clone()].as_slice()));
    assert!(tags.iter().any(|t| t.key() == Some(MANAGED_TAG.0) && t.value() == Some(MANAGED_TAG.1)));
    assert_eq!(cw.get(&expected[0]).unwrap().0.metric_name(), Some("CPUUtilization"));
    assert_eq!(cw.get(&expected[1]).unwrap().0.metric_name(), Some("HealthCheckStatus"));
    assert!(!cw.names().iter().any(|n| n.contains(&not_opted_in)), "an instance not opted in gets no alarm");
    assert_eq!(cw.get("owners-cpu").unwrap().0.threshold(), Some(90.0), "the owner's alarm is untouched");
    assert!(cw.get(&squatter).is_some(), "an alarm named like the suite's but not tagged is never deleted");
    assert_eq!(answer["leftAlone"][0]["alarm"], squatter.as_str(), "{answer:#}");
    let trail = drill.ctx.ledger.audit_trail(&expected[2]).await.unwrap();
    assert_eq!(
        trail.iter().map(|r| (r.action.as_str(), r.outcome.as_str())).collect::<Vec<_>>(),
        [("create-alarm", "acted")]
    );

    // Coverage now finds each opted-in resource covered by its standard alarm, reaching the suite.
    let eb = aws_sdk_eventbridge::Client::new(&sdk);
    let rows = coverage::check_with(&drill.ctx.aws, &cw.client(), &eb, &d, &Ok(vec![])).await;
    for id in [&standalone, &db, &hc] {
        let row = rows.iter().find(|r| r.subject.ends_with(id.as_str())).unwrap_or_else(|| panic!("{rows:#?}"));
        assert!(row.holds && row.detail.contains(PREFIX), "{row:#?}");
    }

    // Again: nothing to change, nothing changed.
    let answer = drill.keep_standard_alarms_of(&d, &on(), &cw.client(), &keep_alarms(false)).await.unwrap();
    assert_eq!((answer["outcome"].as_str(), answer["inPlace"].as_u64()), (Some("skipped"), Some(3)), "{answer:#}");
    assert_eq!(cw.changes().len(), 3);

    // Someone raises the instance alarm's threshold. Within the cooldown of its creation the suite
    // does not put it back (an edit is reverted at most once per cooldown: no fight with a person)...
    let edited = builder_of(&cw.get(&expected[2]).unwrap().0).threshold(5.0).build();
    cw.seed(edited, &[MANAGED_TAG]);
    let answer = drill.keep_standard_alarms_of(&d, &on(), &cw.client(), &keep_alarms(false)).await.unwrap();
    assert_eq!(changes_of(&answer), [("update-alarm".to_string(), "refused".to_string())], "{answer:#}");
    assert!(answer["reason"].as_str().unwrap().contains("1 refused"), "{answer:#}");
    assert_eq!(cw.changes().len(), 3);
    // ...without one (the same ledger, the cooldown set to 0: as the dry run and the live run both
    // read it), it is put back and keeps the suite's tag.
    let ledger = drill.ctx.config.ledger_table.clone();
    let drill = drill_in(sdk.clone(), &[("SELFHEAL_LEDGER_TABLE", &ledger), ("SELFHEAL_COOLDOWN_SECONDS", "0")]).await;
    let answer = drill.keep_standard_alarms_of(&d, &on(), &cw.client(), &keep_alarms(false)).await.unwrap();
    assert_eq!(changes_of(&answer), [("update-alarm".to_string(), "acted".to_string())], "{answer:#}");
    let (alarm, tags) = cw.get(&expected[2]).unwrap();
    assert_eq!(alarm.threshold(), Some(1.0));
    assert!(tags.iter().any(|t| t.key() == Some(MANAGED_TAG.0)), "{tags:?}");
    puts.push(format!("PutMetricAlarm {}", expected[2]));
    assert_eq!(cw.changes(), puts);

    // The instance leaves the suite (its opt-in tag removed): a dry run only says so, a live run
    // deletes its alarm and no other.
    ec2.delete_tags()
        .resources(&standalone)
        .tags(Tag::builder().key(OPT_IN.0).value(OPT_IN.1).build())
        .send()
        .await
        .unwrap();
    let answer = drill.keep_standard_alarms_of(&d, &on(), &cw.client(), &keep_alarms(true)).await.unwrap();
    assert_eq!(changes_of(&answer).len(), 1, "{answer:#}");
    assert!(answer["changes"][0]["reason"].as_str().unwrap().starts_with("would delete-alarm"), "{answer:#}");
    assert!(cw.get(&expected[2]).is_some(), "a dry run deletes nothing");
    let answer = drill.keep_standard_alarms_of(&d, &on(), &cw.client(), &keep_alarms(false)).await.unwrap();
    assert_eq!(changes_of(&answer), [("delete-alarm".to_string(), "acted".to_string())], "{answer:#}");
    assert_eq!(cw.changes().last().unwrap(), &format!("DeleteAlarms {}", expected[2]));
    assert!(cw.get(&expected[2]).is_none());
    assert!(cw.get("owners-cpu").is_some() && cw.get(&squatter).is_some());
    assert!(cw.get(&expected[0]).is_some() && cw.get(&expected[1]).is_some());
}

#[tokio::test]
async fn many_deletions_at_once_are_held_back_and_off_or_unreadable_changes_nothing() {
    let account = fresh_account();
    let sdk = harness::in_account(&account).await;
    let drill = drill_in(sdk.clone(), &[]).await;
    let d = deployment(&account);
    let cw = CloudWatch::new(&account, REGION);
    // Three alarms the suite made for instances that are gone.
    for i in 0..3 {
        cw.seed(someone_elses(&format!("{PREFIX}instance|i-gone{i}"), &format!("i-gone{i}")), &[MANAGED_TAG]);
    }

    let limited = Settings { enabled: true, max_deletes: 2 };
    let answer = drill.keep_standard_alarms_of(&d, &limited, &cw.client(), &keep_alarms(false)).await.unwrap();
    assert!(answer["heldBack"].as_str().unwrap().starts_with("3 standard alarms would be deleted"), "{answer:#}");
    assert!(cw.changes().is_empty(), "none deleted: {:?}", cw.changes());
    let summary = drill.ctx.ledger.audit_trail(&d.stack).await.unwrap();
    assert_eq!(summary.last().unwrap().envelope.severity, selfheal::Severity::Warning);

    // Off: nothing is read or changed.
    let off = Settings { enabled: false, max_deletes: 10 };
    let answer = drill.keep_standard_alarms_of(&d, &off, &cw.client(), &keep_alarms(false)).await.unwrap();
    assert!(answer["reason"].as_str().unwrap().contains("SELFHEAL_STANDARD_ALARMS is not true"), "{answer:#}");
    assert!(cw.changes().is_empty());

    // The resources cannot be read (EC2 unreachable): nothing is deleted, though nothing looks opted in.
    let dead = harness::sdk_config_at("http://127.0.0.1:9").await;
    let mut blind = drill_in(sdk.clone(), &[]).await;
    blind.ctx.aws = Aws::from_sdk_config(dead);
    let answer = blind.keep_standard_alarms_of(&d, &on(), &cw.client(), &keep_alarms(false)).await.unwrap();
    assert_eq!(answer["outcome"], "failed", "{answer:#}");
    assert!(answer["reason"].as_str().unwrap().starts_with("cannot read, nothing changed"), "{answer:#}");
    assert!(cw.changes().is_empty());

    // Within the limit, the three go, in one run.
    let answer = drill.keep_standard_alarms_of(&d, &on(), &cw.client(), &keep_alarms(false)).await.unwrap();
    assert_eq!(changes_of(&answer).len(), 3, "{answer:#}");
    assert!(cw.names().is_empty(), "{:?}", cw.names());
}
