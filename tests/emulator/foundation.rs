//! The foundation: every sample event parses to the right trigger, malformed events get clear errors,
//! duplicates act once, and dry-run mutates nothing but the ledger.

use std::sync::Arc;

use harness::{ctx, event, event_names, sdk_config, unique};
use selfheal::trigger::{parse_event, Delivery, RdsSource, TriggerKind};
use selfheal::{ActionReport, ActionRequest, Outcome, Target};
use serde_json::json;

/// The trigger kind a sample must parse to, from its file-name prefix (see events/README.md).
fn expected_kind(name: &str) -> &'static str {
    const PREFIXES: [(&str, &str); 10] = [
        ("alarm-", "alarm"),
        ("arc-", "zonal-shift"),
        ("autoscaling-", "autoscaling"),
        ("ec2-instance-state-change-", "ec2-instance-state-change"),
        ("envelope-", "envelope"),
        ("health-", "health"),
        ("manual-", "manual"),
        ("rds-", "rds"),
        ("schedule-", "schedule"),
        ("shard-", "shard"),
    ];
    PREFIXES
        .iter()
        .find(|(p, _)| name.starts_with(p))
        .map(|(_, k)| *k)
        .unwrap_or_else(|| panic!("events/{name}: the file name must start with a trigger-kind prefix"))
}

#[test]
fn every_sample_event_parses_to_the_right_trigger() {
    let names = event_names();
    assert!(names.len() >= 16, "samples are missing from events/: {names:?}");
    for name in &names {
        let want = expected_kind(name);
        let triggers = parse_event(&event(name, &[])).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(triggers.len(), 1, "{name}");
        assert_eq!(triggers[0].kind.name(), want, "{name}");
        assert!(!triggers[0].event_id.is_empty(), "{name}");
    }
}

#[test]
fn one_alarm_state_change_has_one_identity_whichever_way_it_arrives() {
    let ids: Vec<String> = [
        "alarm-sns-ec2-status-check.json",
        "alarm-eventbridge-ec2-status-check.json",
        "alarm-lambda-action-ec2-status-check.json",
    ]
    .iter()
    .map(|n| parse_event(&event(n, &[])).unwrap().remove(0).event_id)
    .collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[1], ids[2]);
    assert_eq!(ids[0], "alarm:web-i-0123456789abcdef0-status-check:2026-11-25T10:15:31.180Z");
}

#[test]
fn alarm_fields_are_extracted() {
    let t = parse_event(&event("alarm-sns-ec2-status-check.json", &[])).unwrap().remove(0);
    let TriggerKind::Alarm(a) = t.kind else { panic!("not an alarm") };
    assert_eq!(a.dimension("InstanceId"), Some("i-0123456789abcdef0"));
    assert_eq!(a.metric_name.as_deref(), Some("StatusCheckFailed"));
    assert_eq!(a.namespace.as_deref(), Some("AWS/EC2"));
    assert!(matches!(t.delivery, Delivery::Sns { .. }));
    assert!(a.description.is_none(), "null AlarmDescription is accepted");

    let t = parse_event(&event("rds-db-cluster-event-failover.json", &[])).unwrap().remove(0);
    let TriggerKind::Rds(r) = t.kind else { panic!("not rds") };
    assert_eq!(r.source, RdsSource::Cluster);
    assert_eq!(r.identifier, "orders-aurora");
    assert_eq!(r.categories, vec!["failover"]);
    assert_eq!(t.event_id, "eb:5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d");

    let t = parse_event(&event("health-ec2-instance-retirement.json", &[])).unwrap().remove(0);
    let TriggerKind::Health(h) = t.kind else { panic!("not health") };
    assert_eq!(h.affected_entities, vec!["i-0123456789abcdef0"]);
    assert_eq!(h.availability_zone, None);

    let t = parse_event(&event("health-az-operational-issue.json", &[])).unwrap().remove(0);
    let TriggerKind::Health(h) = t.kind else { panic!("not health") };
    assert_eq!(
        (h.availability_zone.as_deref(), h.status_code.as_deref(), h.region.as_deref()),
        (Some("us-east-1a"), Some("open"), Some("us-east-1"))
    );

    let t = parse_event(&event("alarm-eventbridge-az-5xx.json", &[])).unwrap().remove(0);
    let TriggerKind::Alarm(a) = t.kind else { panic!("not an alarm") };
    assert_eq!(a.name, "selfheal-az|us-east-1a|5xx|app/web/50dc6c495c0c9188");
    assert_eq!(a.dimension("AvailabilityZone"), Some("us-east-1a"));
    assert_eq!(a.dimension("LoadBalancer"), Some("app/web/50dc6c495c0c9188"));

    let t = parse_event(&event("arc-autoshift-in-progress.json", &[])).unwrap().remove(0);
    let TriggerKind::ZonalShift(z) = t.kind else { panic!("not a zonal shift") };
    assert_eq!((z.detail_type.as_str(), z.away_from.as_deref()), ("Autoshift In Progress", Some("use1-az1")));
}

#[test]
fn malformed_events_get_errors_that_name_the_problem() {
    let cases = vec![
        (json!("just a string"), "expected a JSON object, got a string"),
        (json!({"foo": 1}), "got an object with keys [foo]"),
        (json!({"Records": []}), "Records is empty"),
        (json!({"Records": [{"Sns": {"Message": 5}}]}), "malformed SNS event"),
        (
            harness::sns_event("arn:aws:sns:us-east-1:123456789012:t", &json!({"hello": "world"})),
            "neither a CloudWatch alarm",
        ),
        (
            json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0", "EventSubscriptionArn": "arn", "Sns": {"MessageId": "m", "TopicArn": "t", "Message": "not json", "Timestamp": "2026-01-01T00:00:00Z", "Type": "Notification", "SignatureVersion": "1", "Signature": "", "SigningCertURL": "", "UnsubscribeURL": "", "MessageAttributes": {}}}]}),
            "is not JSON",
        ),
        (json!({"id": "1", "detail-type": "Object Created", "source": "", "detail": {}}), "source is empty"),
        (
            json!({"id": "1", "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "detail": {"state": "stopped"}}),
            "instance-id",
        ),
        (
            json!({"id": "1", "detail-type": "RDS DB Instance Event", "source": "aws.rds", "detail": {"Message": "x"}}),
            "missing field SourceIdentifier",
        ),
        (json!({"source": "selfheal.manual", "action": 7}), "malformed manual event"),
        (json!({"source": "selfheal.manual", "action": ""}), "action is empty"),
        (
            json!({"source": "aws.cloudwatch", "alarmData": {"alarmName": "x", "state": {"value": "RED", "reason": "", "timestamp": "2026-01-01T00:00:00Z"}}}),
            "malformed",
        ),
    ];
    for (payload, want) in cases {
        let err = parse_event(&payload).expect_err(&payload.to_string()).to_string();
        assert!(err.contains(want), "for {payload}: expected {want:?} in {err:?}");
    }
}

fn request(target: &str, event_id: &str, dry_run: bool) -> ActionRequest {
    ActionRequest {
        action: "send-message".into(),
        target: Target::new("sqs-queue", target).in_group("test-group"),
        event_id: event_id.into(),
        trigger: "manual".into(),
        dry_run,
        reason: "test".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_duplicate_delivered_ten_times_concurrently_acts_once() {
    let ctx = Arc::new(ctx("test", &[]).await);
    let sdk = sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = sqs.create_queue().queue_name(unique("dup")).send().await.unwrap();
    let url = queue.queue_url().unwrap().to_string();

    let mut tasks = Vec::new();
    for _ in 0..10 {
        let ctx = ctx.clone();
        let sqs = sqs.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let req = request(&url, "eb:same-event", false);
            ctx.execute(req, async {
                sqs.send_message()
                    .queue_url(&url)
                    .message_body("acted")
                    .send()
                    .await
                    .map_err(|e| selfheal::Error::aws("sqs", "SendMessage", e))?;
                Ok(ActionReport::acted("sent"))
            })
            .await
            .unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap().outcome);
    }
    assert_eq!(outcomes.iter().filter(|o| **o == Outcome::Acted).count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == Outcome::Duplicate).count(), 9, "{outcomes:?}");

    // What happened in the emulator: exactly one message was sent.
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    let n = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .cloned();
    assert_eq!(n.as_deref(), Some("1"));

    // And the audit trail holds all ten decisions.
    let trail = ctx.ledger.audit_trail(&url).await.unwrap();
    assert_eq!(trail.len(), 10);
    assert_eq!(trail.iter().filter(|r| r.outcome == "acted").count(), 1);
}

#[tokio::test]
async fn cooldown_and_rate_limit_refuse_and_say_why() {
    let ctx = ctx("test", &[("SELFHEAL_COOLDOWN_SECONDS", "600"), ("SELFHEAL_RATE_LIMIT", "2")]).await;
    let ok = || async { Ok(ActionReport::acted("done")) };
    // Two different events on the same target inside the cooldown: one acts.
    let a = ctx.execute(request("q-1", "e1", false), ok()).await.unwrap();
    let b = ctx.execute(request("q-1", "e2", false), ok()).await.unwrap();
    assert_eq!(a.outcome, Outcome::Acted);
    assert_eq!(b.outcome, Outcome::Refused);
    assert!(b.reason.contains("cooldown"), "{}", b.reason);
    // The group allows two actions per window: the third target is refused by the rate limit.
    let c = ctx.execute(request("q-2", "e3", false), ok()).await.unwrap();
    let d = ctx.execute(request("q-3", "e4", false), ok()).await.unwrap();
    assert_eq!(c.outcome, Outcome::Acted);
    assert_eq!(d.outcome, Outcome::Refused);
    assert!(d.reason.contains("rate limit"), "{}", d.reason);
    // The refused rate-limit did not leave a cooldown behind on q-3.
    assert!(ctx.ledger.read_cooldown("q-3").await.unwrap().is_none());
}

#[tokio::test]
async fn dry_run_mutates_nothing_but_the_ledger_and_takes_no_cooldown() {
    let ctx = ctx("test", &[("SELFHEAL_COOLDOWN_SECONDS", "600")]).await;
    let sdk = sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = sqs.create_queue().queue_name(unique("dry")).send().await.unwrap().queue_url().unwrap().to_string();
    ctx.aws.calls.clear();

    let env = ctx
        .execute(request(&url, "e1", true), async { Ok(ActionReport::would("would send one message")) })
        .await
        .unwrap();
    assert_eq!(env.outcome, Outcome::DryRun);
    assert!(env.dry_run);
    let mutating: Vec<String> =
        ctx.aws.calls.mutating_calls().into_iter().filter(|c| !c.starts_with("dynamodb:")).collect();
    assert!(mutating.is_empty(), "dry-run made mutating calls: {mutating:?}");
    // No cooldown was taken: the same event handled live afterwards acts.
    let live = ctx.execute(request(&url, "e1", false), async { Ok(ActionReport::acted("sent")) }).await.unwrap();
    assert_eq!(live.outcome, Outcome::Acted);
}

#[tokio::test]
async fn a_failed_action_can_be_retried_by_redelivery() {
    let ctx = ctx("test", &[]).await;
    let first = ctx
        .execute(request("q-f", "e1", false), async { Err(selfheal::Error::Precondition("simulated failure".into())) })
        .await
        .unwrap();
    assert_eq!(first.outcome, Outcome::Failed);
    assert_eq!(first.severity, selfheal::Severity::Critical);
    let retry = ctx.execute(request("q-f", "e1", false), async { Ok(ActionReport::acted("ok")) }).await.unwrap();
    assert_eq!(retry.outcome, Outcome::Acted, "{}", retry.reason);
}

#[tokio::test]
async fn a_ledger_table_that_does_not_exist_is_named_with_what_to_do_and_nothing_is_done() {
    let table = unique("no-such-ledger");
    let mut env = harness::env(&[("SELFHEAL_LEDGER_TABLE", table.as_str())]);
    let config = selfheal::config::CommonConfig::read(&mut env, "test");
    env.finish().unwrap();
    let ctx = selfheal::Ctx::new(config, selfheal::clients::Aws::from_sdk_config(sdk_config().await));
    let acted = std::sync::atomic::AtomicBool::new(false);
    let err = ctx
        .execute(request("q-missing", "e1", false), async {
            acted.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(ActionReport::acted("should not run"))
        })
        .await
        .unwrap_err()
        .to_string();
    let want = format!(
        "SELFHEAL_LEDGER_TABLE: ledger table `{table}` not found in us-east-1: deploy infra/template.yaml or point \
         SELFHEAL_LEDGER_TABLE at it"
    );
    assert!(err.contains(&want), "{err}");
    assert!(!acted.load(std::sync::atomic::Ordering::SeqCst), "no action without a ledger");
}

#[tokio::test]
async fn a_topic_that_does_not_exist_is_named_with_what_to_do() {
    let topic = format!("arn:aws:sns:us-east-1:123456789012:{}", unique("no-such-topic"));
    let ctx = ctx("test", &[("SELFHEAL_TOPIC_ARN", topic.as_str())]).await;
    let env = ctx.envelope(&request("q-topic", "e1", true), Outcome::DryRun, "would send");
    let err = ctx.record(env).await.unwrap_err().to_string();
    let want = format!("SELFHEAL_TOPIC_ARN: topic `{topic}` not found: deploy infra/template.yaml or point");
    assert!(err.contains(&want), "{err}");
}

/// `tests/FAILURE-MODES.md` names only tests that exist, so the table cannot drift from the suite.
#[test]
fn the_failure_modes_document_names_only_real_tests() {
    let root = harness::root().join("tests");
    let doc = std::fs::read_to_string(root.join("FAILURE-MODES.md")).unwrap();
    let mut named = 0;
    for cell in doc.split('`') {
        let Some((module, test)) = cell.rsplit_once("::") else { continue };
        if module.contains(' ') || test.contains(' ') || module.is_empty() || test.is_empty() {
            continue;
        }
        let files = test_module_files(&root, module);
        assert!(!files.is_empty(), "FAILURE-MODES.md names module {module}, which has no file under tests/");
        assert!(
            files.iter().any(|f| std::fs::read_to_string(f).unwrap().contains(&format!("fn {test}("))),
            "FAILURE-MODES.md names {module}::{test}, which is not in {files:?}"
        );
        named += 1;
    }
    assert!(named >= 30, "the document names {named} tests");
}

/// The files the test module `module` may be in: `a::b` is `emulator/a/b.rs` (or `a/b/mod.rs`), a path
/// starting `harness::` is under `harness/` (`harness` alone: its `lib.rs`), and a module's `tests`
/// block (`a::tests`) is its own file or in the module's file.
fn test_module_files(root: &std::path::Path, module: &str) -> Vec<std::path::PathBuf> {
    let segments: Vec<&str> = module.split("::").collect();
    let (dir, segments) = match segments.split_first() {
        Some((&"harness", rest)) => (root.join("harness"), rest.to_vec()),
        _ => (root.join("emulator"), segments),
    };
    let mut candidates = Vec::new();
    let mut paths = vec![segments.clone()];
    if segments.last() == Some(&"tests") {
        paths.push(segments[..segments.len() - 1].to_vec());
    }
    for path in paths {
        let path = path.join("/");
        if path.is_empty() {
            candidates.push(dir.join("lib.rs"));
        } else {
            candidates.push(dir.join(format!("{path}.rs")));
            candidates.push(dir.join(&path).join("mod.rs"));
        }
    }
    candidates.into_iter().filter(|f| f.is_file()).collect()
}
