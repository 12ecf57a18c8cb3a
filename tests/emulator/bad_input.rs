//! Bad input never panics and never reaches AWS: property tests over the event parser with random JSON,
//! mutated and truncated real samples, wrong types and huge payloads. Seeded, so every run is the same.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use selfheal::trigger::{parse_bytes, parse_event, MAX_EVENT_BYTES};
use serde_json::{json, Value};

/// A runner with a fixed seed and a bounded number of cases.
pub fn seeded_runner(cases: u32) -> TestRunner {
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

/// Arbitrary JSON, weighted towards the keys the parser looks at.
pub fn any_json() -> impl Strategy<Value = Value> {
    let keys = prop_oneof![
        Just("Records".to_string()),
        Just("Sns".to_string()),
        Just("Message".to_string()),
        Just("detail-type".to_string()),
        Just("source".to_string()),
        Just("detail".to_string()),
        Just("alarmData".to_string()),
        Just("action".to_string()),
        Just("schema".to_string()),
        Just("id".to_string()),
        "[a-zA-Z-]{1,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        prop_oneof![
            Just("aws.ec2".to_string()),
            Just("selfheal.manual".to_string()),
            Just("CloudWatch Alarm State Change".to_string()),
            Just("selfheal.envelope/v1".to_string()),
            ".{0,20}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every sample event, as text.
pub fn samples() -> Vec<String> {
    harness::event_names().iter().map(|n| harness::event(n, &[]).to_string()).collect()
}

/// Replaces the value at a random path of `v` with `replacement`, or removes the key.
pub fn mutate(v: &mut Value, choices: &[usize], replacement: Value) {
    let mut cur = v;
    for (depth, c) in choices.iter().enumerate() {
        let next = match cur {
            Value::Object(m) if !m.is_empty() => {
                let key = m.keys().nth(c % m.len()).cloned().unwrap_or_default();
                if depth == choices.len() - 1 {
                    if c % 3 == 0 {
                        m.remove(&key);
                    } else {
                        m.insert(key, replacement);
                    }
                    return;
                }
                m.get_mut(&key)
            }
            Value::Array(a) if !a.is_empty() => {
                let i = c % a.len();
                if depth == choices.len() - 1 {
                    a[i] = replacement;
                    return;
                }
                a.get_mut(i)
            }
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
}

#[test]
fn random_json_never_panics_and_errors_say_something() {
    let mut runner = seeded_runner(2000);
    runner
        .run(&any_json(), |v| {
            if let Err(e) = parse_event(&v) {
                prop_assert!(!e.to_string().is_empty());
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn mutated_samples_never_panic() {
    let samples = samples();
    let mut runner = seeded_runner(3000);
    let strategy = (0..samples.len(), prop::collection::vec(any::<usize>(), 1..6), any_json());
    runner
        .run(&strategy, |(i, path, replacement)| {
            let mut v: Value = serde_json::from_str(&samples[i]).unwrap();
            mutate(&mut v, &path, replacement);
            let _ = parse_event(&v);
            Ok(())
        })
        .unwrap();
}

#[test]
fn truncated_samples_are_rejected_cleanly() {
    for s in samples() {
        for cut in [1, s.len() / 3, s.len() / 2, s.len() - 1] {
            let err = parse_bytes(&s.as_bytes()[..cut]).unwrap_err().to_string();
            assert!(err.contains("not valid JSON"), "{err}");
        }
    }
}

#[test]
fn huge_payloads_are_refused_before_parsing() {
    let big = vec![b' '; MAX_EVENT_BYTES + 1];
    let err = parse_bytes(&big).unwrap_err().to_string();
    assert!(err.contains("exceeds the"), "{err}");
    // Deeply nested JSON inside the limit is refused by serde's recursion limit, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse_bytes(deep.as_bytes()).is_err());
}

/// Every handler's entry: random JSON that the parser rejects makes no AWS call in any function.
#[test]
fn every_handler_rejects_bad_input_without_an_aws_call() {
    use selfheal::backup::{BackupConfig, BackupEnforcer};
    use selfheal::db::{DbConfig, DbFailover};
    use selfheal::dns::{DnsConfig, DnsFailover};
    use selfheal::healer::{Healer, HealerConfig};
    use selfheal::notifier::{Notifier, NotifierConfig};

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let inputs = std::sync::Mutex::new(Vec::new());
    let mut runner = seeded_runner(150);
    runner
        .run(&any_json(), |v| {
            if parse_event(&v).is_err() {
                inputs.lock().unwrap().push(v);
            }
            Ok(())
        })
        .unwrap();
    let inputs = inputs.into_inner().unwrap();
    assert!(inputs.len() > 100, "the generator makes mostly bad input: {}", inputs.len());
    rt.block_on(async {
        let vars = [("SELFHEAL_DNS_RECORDS", "example.com./app.example.com./A")];
        let env = || harness::env(&vars);
        let healer = Healer::new(harness::ctx("instance-healer", &vars).await, HealerConfig::read(&mut env()));
        let db = DbFailover::new(harness::ctx("db-failover", &vars).await, DbConfig::read(&mut env()));
        let dns = DnsFailover::new(harness::ctx("dns-failover", &vars).await, DnsConfig::read(&mut env()));
        let backup = BackupEnforcer::new(harness::ctx("backup-enforcer", &vars).await, BackupConfig::read(&mut env()));
        let notifier = Notifier::new(harness::ctx("notifier", &vars).await, NotifierConfig::read(&mut env())).unwrap();
        for ctx in [healer.ctx(), db.ctx(), dns.ctx(), backup.ctx(), notifier.ctx()] {
            ctx.aws.calls.clear();
        }
        for v in &inputs {
            assert!(healer.handle(v).await.is_err());
            assert!(db.handle(v).await.is_err());
            assert!(dns.handle(v).await.is_err());
            assert!(backup.handle(v).await.is_err());
            assert!(notifier.handle(v).await.is_err());
        }
        for (name, ctx) in [
            ("instance-healer", healer.ctx()),
            ("db-failover", db.ctx()),
            ("dns-failover", dns.ctx()),
            ("backup-enforcer", backup.ctx()),
            ("notifier", notifier.ctx()),
        ] {
            assert_eq!(ctx.aws.calls.total(), 0, "{name} called AWS on bad input: {:?}", ctx.aws.calls.calls());
        }
    });
}

/// An S3 `ObjectCreated` notification, as S3 invokes a function (or publishes to a topic).
fn s3_event() -> Value {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-25T10:15:31.180Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "static-uploads",
               "bucket": {"name": "static-content", "arn": "arn:aws:s3:::static-content"},
               "object": {"key": "index.html", "size": 1024, "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                          "sequencer": "0A1B2C3D4E5F678901"}}
    }]})
}

/// An SQS batch, as an event source mapping delivers it.
fn sqs_event() -> Value {
    json!({"Records": [{
        "messageId": uuid::Uuid::new_v4().to_string(), "receiptHandle": "MessageReceiptHandle", "body": "hello",
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1523232000000"},
        "messageAttributes": {}, "md5OfBody": "5d41402abc4b2a76b9719d911017c592", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:orders", "awsRegion": "us-east-1"
    }]})
}

/// A DynamoDB stream batch.
fn dynamodb_event() -> Value {
    json!({"Records": [{
        "eventID": uuid::Uuid::new_v4().simple().to_string(), "eventName": "INSERT", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {"Keys": {"Id": {"N": "101"}}, "SequenceNumber": "111", "SizeBytes": 26, "StreamViewType": "KEYS_ONLY"},
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-11-25T00:00:00.000"
    }]})
}

/// The envelope published for `decision` (by its id) among the topic's notifications, with its attributes.
fn published(notifications: &[(Value, Value)], decision: &Value) -> (Value, Value) {
    notifications
        .iter()
        .find(|(m, _)| m["id"] == decision["id"])
        .cloned()
        .unwrap_or_else(|| panic!("{decision} was not published: {notifications:?}"))
}

/// A well-formed event that is not for the function is not an error to retry: each is a `skipped`
/// decision in the ledger's audit trail, published to the suite topic as a warning that names the
/// event and what the function takes, and the invocation succeeds. Nothing else is called.
#[tokio::test]
async fn an_event_not_for_the_function_is_skipped_audited_and_published_as_a_warning() {
    use selfheal::backup::{BackupConfig, BackupEnforcer};
    use selfheal::db::{DbConfig, DbFailover};
    use selfheal::dns::{DnsConfig, DnsFailover};
    use selfheal::healer::{Healer, HealerConfig};

    let sdk = harness::sdk_config().await;
    let (topic, queue) = harness::topic_with_queue(&sdk, &harness::unique("suite")).await;
    let vars = [("SELFHEAL_TOPIC_ARN", topic.as_str()), ("SELFHEAL_DNS_RECORDS", "example.com./app.example.com./A")];
    let env = || harness::env(&vars);
    let healer = Healer::new(harness::ctx("instance-healer", &vars).await, HealerConfig::read(&mut env()));
    let db = DbFailover::new(harness::ctx("db-failover", &vars).await, DbConfig::read(&mut env()));
    let dns = DnsFailover::new(harness::ctx("dns-failover", &vars).await, DnsConfig::read(&mut env()));
    let backup = BackupEnforcer::new(harness::ctx("backup-enforcer", &vars).await, BackupConfig::read(&mut env()));

    let cpu_alarm = harness::event("alarm-sns-ec2-status-check.json", &[("StatusCheckFailed", "CPUUtilization")]);
    let mut aws_s3 = harness::event("schedule-backup-sweep.json", &[]);
    aws_s3["detail-type"] = json!("Object Created");
    aws_s3["source"] = json!("aws.s3");
    aws_s3["id"] = json!(uuid::Uuid::new_v4().to_string());
    // Route 53 ARC zonal shift and AZ-wide Health events (for zone-evacuator) are skipped by every
    // other function as a foreign event was; each copy gets its own id, so each has its own trail.
    let fresh = |name: &str| {
        let mut v = harness::event(name, &[]);
        v["id"] = json!(uuid::Uuid::new_v4().to_string());
        v
    };
    // (function, its context, the response, what the reason must say)
    let cases: Vec<(&str, &selfheal::Ctx, Value, &str)> = vec![
        (
            "instance-healer",
            healer.ctx(),
            healer.handle(&s3_event()).await.expect("succeeds"),
            "instance-healer does not handle an S3 event (aws:s3, 1 record): it takes CloudWatch alarms",
        ),
        (
            "instance-healer",
            healer.ctx(),
            healer.handle(&harness::event("schedule-backup-sweep.json", &[])).await.expect("succeeds"),
            "instance-healer does not handle a scheduled event (arn:aws:events:us-east-1:123456789012:rule/selfheal-backup-sweep)",
        ),
        (
            "instance-healer",
            healer.ctx(),
            healer.handle(&cpu_alarm).await.expect("succeeds"),
            "whose metric \"CPUUtilization\" is not one it is configured for (StatusCheckFailed, ",
        ),
        (
            "instance-healer",
            healer.ctx(),
            healer.handle(&fresh("arc-autoshift-in-progress.json")).await.expect("succeeds"),
            "instance-healer does not handle an ARC zonal shift event (\"Autoshift In Progress\" away from use1-az1, 1 \
             resource): it takes CloudWatch alarms",
        ),
        (
            "instance-healer",
            healer.ctx(),
            healer.handle(&fresh("health-az-operational-issue.json")).await.expect("succeeds"),
            "instance-healer does not handle an AWS Health event (EC2 AWS_EC2_OPERATIONAL_ISSUE in us-east-1a): it \
             takes CloudWatch alarms",
        ),
        (
            "db-failover",
            db.ctx(),
            db.handle(&fresh("arc-practice-run-started.json")).await.expect("succeeds"),
            "db-failover does not handle an ARC zonal shift event (\"Practice Run Started\" away from use1-az1, 1 \
             resource): it takes RDS DB instance",
        ),
        (
            "dns-failover",
            dns.ctx(),
            dns.handle(&fresh("arc-autoshift-in-progress.json")).await.expect("succeeds"),
            "dns-failover does not handle an ARC zonal shift event (\"Autoshift In Progress\" away from use1-az1, 1 \
             resource): it takes CloudWatch alarms on Route 53 health checks",
        ),
        (
            "backup-enforcer",
            backup.ctx(),
            backup.handle(&fresh("arc-practice-run-started.json")).await.expect("succeeds"),
            "backup-enforcer does not handle an ARC zonal shift event (\"Practice Run Started\" away from use1-az1, 1 \
             resource): it takes schedules",
        ),
        (
            "db-failover",
            db.ctx(),
            db.handle(&sqs_event()).await.expect("succeeds"),
            "db-failover does not handle an SQS message batch (aws:sqs, 1 record): it takes RDS DB instance",
        ),
        (
            "dns-failover",
            dns.ctx(),
            dns.handle(&harness::event("rds-db-instance-event-failure.json", &[])).await.expect("succeeds"),
            "dns-failover does not handle an RDS DB instance event (orders-db RDS-EVENT-0031): it takes CloudWatch \
             alarms on Route 53 health checks",
        ),
        (
            "backup-enforcer",
            backup.ctx(),
            backup.handle(&dynamodb_event()).await.expect("succeeds"),
            "backup-enforcer does not handle a DynamoDB stream event (aws:dynamodb, 1 record): it takes schedules",
        ),
        (
            "backup-enforcer",
            backup.ctx(),
            backup.handle(&aws_s3).await.expect("succeeds"),
            "backup-enforcer does not handle an EventBridge event from aws.s3 (\"Object Created\")",
        ),
    ];
    let notifications = harness::drain_notifications(&sdk, &queue).await;
    assert_eq!(notifications.len(), cases.len(), "one warning per event: {notifications:?}");
    for (function, ctx, out, want) in cases {
        let decisions = out["decisions"].as_array().expect("decisions");
        assert_eq!(decisions.len(), 1, "{out}");
        let d = &decisions[0];
        assert_eq!((d["outcome"].as_str(), d["severity"].as_str()), (Some("skipped"), Some("warning")), "{d}");
        assert_eq!((d["function"].as_str(), d["action"].as_str()), (Some(function), Some("handle-event")), "{d}");
        let reason = d["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(want), "{function}: expected {want:?} in {reason:?}");
        assert!(reason.contains(": it takes "), "names what the function does take: {reason}");
        assert_eq!(d["target"], json!({"kind": "event", "id": d["eventId"]}), "{d}");

        // Audited: the event's own trail in the ledger says skipped.
        let event_id = d["eventId"].as_str().unwrap();
        let trail = ctx.ledger.audit_trail(event_id).await.unwrap();
        assert_eq!(trail.len(), 1, "{function} {event_id}: {trail:?}");
        assert_eq!((trail[0].outcome.as_str(), trail[0].action.as_str()), ("skipped", "handle-event"), "{trail:?}");

        // Published as a warning, with the attributes subscribers filter on.
        let (message, attrs) = published(&notifications, d);
        assert_eq!(message["reason"], d["reason"]);
        assert_eq!(attrs["severity"]["Value"], "warning", "{attrs}");
        assert_eq!(attrs["outcome"]["Value"], "skipped", "{attrs}");
        assert_eq!(attrs["function"]["Value"], function, "{attrs}");

        // Nothing but the ledger, the topic (and, for an event naming an account, the identity check).
        let others: Vec<String> = ctx
            .aws
            .calls
            .mutating_calls()
            .into_iter()
            .filter(|c| !c.starts_with("dynamodb:") && !c.starts_with("sns:"))
            .collect();
        assert!(others.is_empty(), "{function} acted on an event not for it: {others:?}");
    }
}

/// The notifier takes envelopes and alarms. Anything else it is sent (an S3 notification published to
/// the alarms topic, a schedule) is audited as skipped and delivered as a warning through its own
/// channels, since it does not publish to the suite topic it consumes; the invocation succeeds.
#[tokio::test]
async fn the_notifier_audits_an_event_not_for_it_and_delivers_a_warning() {
    use selfheal::notifier::{Notifier, NotifierConfig};

    let sdk = harness::sdk_config().await;
    let (info, info_q) = harness::topic_with_queue(&sdk, &harness::unique("info")).await;
    let (warning, warning_q) = harness::topic_with_queue(&sdk, &harness::unique("warning")).await;
    let mut env = harness::env(&[
        ("SELFHEAL_NOTIFY_TOPIC_INFO", info.as_str()),
        ("SELFHEAL_NOTIFY_TOPIC_WARNING", warning.as_str()),
    ]);
    let cfg = NotifierConfig::read(&mut env);
    env.finish().unwrap();
    let notifier = Notifier::new(harness::ctx("notifier", &[]).await, cfg).unwrap();

    let s3_via_sns = harness::sns_event("arn:aws:sns:us-east-1:123456789012:selfheal-alarms", &s3_event());
    let out = notifier.handle(&s3_via_sns).await.expect("succeeds");
    let n = &out["notifications"][0];
    let reason = n["skipped"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("notifier does not handle an S3 event (aws:s3, 1 record): it takes selfheal envelopes"),
        "{out}"
    );
    assert_eq!(n["delivered"], json!(["severity-topic"]), "{out}");

    let warnings = harness::drain_notifications(&sdk, &warning_q).await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let (message, attrs) = &warnings[0];
    assert_eq!((message["outcome"].as_str(), message["reason"].as_str()), (Some("skipped"), Some(reason)));
    assert_eq!(attrs["severity"]["Value"], "warning", "{attrs}");
    assert!(harness::drain_notifications(&sdk, &info_q).await.is_empty(), "not passed on as news");

    let event_id = message["eventId"].as_str().unwrap();
    assert!(event_id.starts_with("foreign:aws:s3:"), "{event_id}");
    let trail = notifier.ctx().ledger.audit_trail(event_id).await.unwrap();
    assert_eq!(trail.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>(), ["skipped"], "{trail:?}");
    assert_eq!(trail[0].function, "notifier");
}

/// Malformed input still fails the invocation, so Lambda's retries and the on-failure destination keep
/// it, and nothing is done: not even a skip is recorded.
#[tokio::test]
async fn malformed_input_still_fails_the_invocation_and_records_nothing() {
    use selfheal::backup::{BackupConfig, BackupEnforcer};
    use selfheal::db::{DbConfig, DbFailover};
    use selfheal::dns::{DnsConfig, DnsFailover};
    use selfheal::healer::{Healer, HealerConfig};
    use selfheal::notifier::{Notifier, NotifierConfig};

    let sdk = harness::sdk_config().await;
    let (topic, queue) = harness::topic_with_queue(&sdk, &harness::unique("suite")).await;
    let vars = [("SELFHEAL_TOPIC_ARN", topic.as_str()), ("SELFHEAL_DNS_RECORDS", "example.com./app.example.com./A")];
    let env = || harness::env(&vars);
    let healer = Healer::new(harness::ctx("instance-healer", &vars).await, HealerConfig::read(&mut env()));
    let db = DbFailover::new(harness::ctx("db-failover", &vars).await, DbConfig::read(&mut env()));
    let dns = DnsFailover::new(harness::ctx("dns-failover", &vars).await, DnsConfig::read(&mut env()));
    let backup = BackupEnforcer::new(harness::ctx("backup-enforcer", &vars).await, BackupConfig::read(&mut env()));
    let notifier = Notifier::new(harness::ctx("notifier", &[]).await, NotifierConfig::read(&mut env())).unwrap();
    for ctx in [healer.ctx(), db.ctx(), dns.ctx(), backup.ctx(), notifier.ctx()] {
        ctx.aws.calls.clear();
    }

    // Records that name no other service are read as SNS, and this one is broken.
    let broken_sns = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": 5}}]});
    let mut no_id = harness::event("schedule-backup-sweep.json", &[]);
    no_id.as_object_mut().unwrap().remove("id");
    let manual = |action: &str| json!({"source": "selfheal.manual", "action": action, "target": "x-1", "dryRun": 1});
    for (payload, want) in [
        (&broken_sns, "malformed SNS event"),
        (&no_id, "malformed EventBridge event: missing field id"),
        (&manual("replace"), "malformed manual event"),
    ] {
        for (name, result) in [
            ("instance-healer", healer.handle(payload).await),
            ("db-failover", db.handle(payload).await),
            ("dns-failover", dns.handle(payload).await),
            ("backup-enforcer", backup.handle(payload).await),
            ("notifier", notifier.handle(payload).await),
        ] {
            let err = result.expect_err(name).to_string();
            assert!(err.contains(want), "{name}: expected {want:?} in {err:?}");
        }
    }
    // Well-formed for the parser, but a manual request a function cannot read is still an error.
    let unreadable = [
        ("instance-healer", healer.handle(&json!({"source": "selfheal.manual", "action": "replace"})).await),
        ("db-failover", db.handle(&json!({"source": "selfheal.manual", "action": "reboot-it"})).await),
        ("backup-enforcer", backup.handle(&json!({"source": "selfheal.manual", "action": "nuke"})).await),
    ];
    for (name, result) in unreadable {
        let err = result.expect_err(name).to_string();
        assert!(err.contains("malformed manual event"), "{name}: {err}");
    }
    for (name, ctx) in [
        ("instance-healer", healer.ctx()),
        ("db-failover", db.ctx()),
        ("dns-failover", dns.ctx()),
        ("backup-enforcer", backup.ctx()),
        ("notifier", notifier.ctx()),
    ] {
        assert_eq!(ctx.aws.calls.total(), 0, "{name} called AWS on malformed input: {:?}", ctx.aws.calls.calls());
    }
    assert!(harness::drain_notifications(&sdk, &queue).await.is_empty(), "nothing published");
}

/// The drill is the exception: invoked synchronously by a person or `drill-cli`, with nothing retrying
/// it, it answers anything but a manual `drill` with an error naming what arrived.
#[test]
fn the_drill_answers_an_event_not_for_it_with_an_error_naming_it() {
    for (payload, event) in [
        (s3_event(), "an S3 event (aws:s3, 1 record)"),
        (
            harness::event("schedule-backup-sweep.json", &[]),
            "a scheduled event (arn:aws:events:us-east-1:123456789012:rule/selfheal-backup-sweep)",
        ),
        (
            harness::event("arc-practice-run-started.json", &[]),
            "an ARC zonal shift event (\"Practice Run Started\" away from use1-az1, 1 resource)",
        ),
    ] {
        let err = selfheal::drill::parse_request(&payload).unwrap_err();
        assert_eq!(err.kind(), "selfheal.UnsupportedTrigger");
        assert_eq!(
            err.to_string(),
            format!(
                "drill does not handle {event}: it takes manual \"drill\", \"preflight\", \"coverage\" and \"keep-alarms\" \
                 invocations"
            )
        );
    }
}

/// An event about a resource that does not exist in the account it names is not an error to retry:
/// a `refused` decision naming the missing resource (`missing: {kind, id}`, `guard: "not-found"`),
/// audited against it and published as a warning; the invocation succeeds (it used to fail with
/// `selfheal.NotFound`, and Lambda retried it twice for nothing) and nothing is acted on.
/// backup-enforcer takes no event that names a resource (schedules and sweeps name a place); the
/// zone-evacuator's case (an AZ the account does not have) is `zone::bad_input`'s.
#[tokio::test]
async fn an_event_about_a_resource_that_does_not_exist_is_refused_audited_and_the_invocation_succeeds() {
    use selfheal::db::{DbConfig, DbFailover};
    use selfheal::dns::{DnsConfig, DnsFailover};
    use selfheal::healer::{Healer, HealerConfig};

    let sdk = harness::sdk_config().await;
    let (topic, queue) = harness::topic_with_queue(&sdk, &harness::unique("suite")).await;
    let zone = format!("{}.example.com.", harness::unique("nozone"));
    let records = format!("{zone}/app.{zone}/A");
    let vars = [("SELFHEAL_TOPIC_ARN", topic.as_str()), ("SELFHEAL_DNS_RECORDS", records.as_str())];
    let env = || harness::env(&vars);
    let healer = Healer::new(harness::ctx("instance-healer", &vars).await, HealerConfig::read(&mut env()));
    let db = DbFailover::new(harness::ctx("db-failover", &vars).await, DbConfig::read(&mut env()));
    let dns = DnsFailover::new(harness::ctx("dns-failover", &vars).await, DnsConfig::read(&mut env()));

    let ghost_instance = format!("i-0{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let ghost_stopped = format!("i-0{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let ghost_db = harness::unique("ghost-db");
    let ghost_cluster = harness::unique("ghost-aurora");
    let fresh = |name: &str, replace: &[(&str, &str)]| {
        let mut v = harness::event(name, replace);
        v["id"] = json!(uuid::Uuid::new_v4().to_string());
        v
    };
    let mut replace = harness::event("manual-replace-instance.json", &[("i-0123456789abcdef0", &ghost_instance)]);
    replace["dryRun"] = json!(false);
    replace["requestId"] = json!(harness::unique("op"));
    let mut failover = harness::event("manual-dns-failback.json", &[("example.com.", &zone)]);
    failover["action"] = json!("failover");
    failover["dryRun"] = json!(false);
    failover["requestId"] = json!(harness::unique("op"));
    // (function, its context, the response, the missing resource's kind and id)
    let cases: Vec<(&str, &selfheal::Ctx, Value, &str, String)> = vec![
        (
            "instance-healer",
            healer.ctx(),
            healer.handle(&replace).await.expect("succeeds"),
            "EC2 instance",
            ghost_instance,
        ),
        (
            "instance-healer",
            healer.ctx(),
            healer
                .handle(&fresh("ec2-instance-state-change-stopped.json", &[("i-0123456789abcdef0", &ghost_stopped)]))
                .await
                .expect("succeeds"),
            "EC2 instance",
            ghost_stopped,
        ),
        (
            "db-failover",
            db.ctx(),
            db.handle(&fresh("rds-db-instance-event-failure.json", &[("orders-db", &ghost_db)]))
                .await
                .expect("succeeds"),
            "DB instance",
            ghost_db,
        ),
        (
            "db-failover",
            db.ctx(),
            db.handle(&fresh("rds-db-cluster-event-failover.json", &[("orders-aurora", &ghost_cluster)]))
                .await
                .expect("succeeds"),
            "DB cluster",
            ghost_cluster,
        ),
        ("dns-failover", dns.ctx(), dns.handle(&failover).await.expect("succeeds"), "hosted zone", zone.clone()),
    ];
    let notifications = harness::drain_notifications(&sdk, &queue).await;
    assert_eq!(notifications.len(), cases.len(), "one warning per event: {notifications:?}");
    for (function, ctx, out, kind, id) in cases {
        let decisions = out["decisions"].as_array().expect("decisions");
        assert_eq!(decisions.len(), 1, "{out}");
        let d = &decisions[0];
        assert_eq!((d["outcome"].as_str(), d["severity"].as_str()), (Some("refused"), Some("warning")), "{d}");
        assert_eq!(d["function"].as_str(), Some(function), "{d}");
        let reason = d["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(&format!("{kind} {id} does not exist in ")), "{function}: {reason}");
        assert_eq!(d["details"]["missing"], json!({"kind": kind, "id": id}), "{d}");
        assert_eq!(d["details"]["guard"], "not-found", "{d}");
        assert_eq!(d["target"]["id"], json!(id), "{d}");

        // Audited against the missing resource, and published as a warning.
        let trail = ctx.ledger.audit_trail(&id).await.unwrap();
        assert_eq!(trail.len(), 1, "{function} {id}: {trail:?}");
        assert_eq!(trail[0].outcome.as_str(), "refused", "{trail:?}");
        let (message, attrs) = published(&notifications, d);
        assert_eq!(message["reason"], d["reason"]);
        assert_eq!(attrs["severity"]["Value"], "warning", "{attrs}");
        assert_eq!(attrs["outcome"]["Value"], "refused", "{attrs}");

        // Nothing acted on: no mutating call but the ledger's and the topic's.
        let others: Vec<String> = ctx
            .aws
            .calls
            .mutating_calls()
            .into_iter()
            .filter(|c| !c.starts_with("dynamodb:") && !c.starts_with("sns:"))
            .collect();
        assert!(others.is_empty(), "{function} acted on a resource that does not exist: {others:?}");
    }
}
