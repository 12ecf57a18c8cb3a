//! Sweeps at fleet scale, against moto: the bulk guardrails (one lease per policy and place, the
//! snapshot's sweep tag as the evidence, batched audit records, one report) and the fan-out over SQS
//! (a planner, one shard per account and region, workers answering with partial batch responses,
//! retries, the dead-letter queue, one summary per run).
//!
//! The queue's event source mapping is played by [`EventSourceMapping`]: it receives one message at
//! a time (batch size 1), hands it to the function as Lambda does (`Records[]` with `messageId`,
//! `body`, `attributes.ApproximateReceiveCount`, `eventSourceARN`), deletes what succeeded, and makes
//! each reported failure visible again at once (a visibility timeout of zero, so the test does not
//! wait it out). moto moves a message to the dead-letter queue on the receive after its
//! `maxReceiveCount`-th, as SQS does.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use chrono::Utc;
use harness::proxy::{Fault, FaultProxy, Rule, Times};
use harness::{ec2_in, in_account};
use harness::{event, sdk_config, unique, REGION};
use selfheal::backup::{builtin_policies, sweep_event_id, BackupConfig, BackupEnforcer, FUNCTION};
use selfheal::{parse_event, Envelope, Outcome, Severity, Trigger};
use serde_json::{json, Value};

const HUB: &str = "123456789012";
const MEMBER: &str = "111111111111";
const OTHER_REGION: &str = "eu-west-1";

/// An opted-in volume under the test's policy tag (policy silver), never backed up.
async fn stale_volume(ec2: &aws_sdk_ec2::Client, region: &str, tag: &str) -> String {
    let spec = TagSpecification::builder()
        .resource_type(ResourceType::Volume)
        .tags(Tag::builder().key(tag).value("silver").build())
        .tags(Tag::builder().key("selfheal:enabled").value("true").build())
        .build();
    let v = ec2.create_volume().availability_zone(format!("{region}a")).size(8).tag_specifications(spec).send().await;
    v.unwrap().volume_id().unwrap().to_string()
}

async fn snapshots_of(ec2: &aws_sdk_ec2::Client, volume: &str) -> Vec<aws_sdk_ec2::types::Snapshot> {
    let out = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(Filter::builder().name("volume-id").values(volume).build())
        .send()
        .await
        .unwrap();
    out.snapshots().to_vec()
}

fn tag_of<'a>(s: &'a aws_sdk_ec2::types::Snapshot, key: &str) -> Option<&'a str> {
    s.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

fn schedule() -> Value {
    event("schedule-backup-sweep.json", &[("53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", &uuid::Uuid::new_v4().to_string())])
}

async fn enforcer_with(vars: &[(&str, &str)], aws: Option<selfheal::clients::Aws>) -> BackupEnforcer {
    let ctx = match aws {
        Some(aws) => harness::ctx_with(FUNCTION, vars, aws).await,
        None => harness::ctx(FUNCTION, vars).await,
    };
    let mut env = harness::env(vars);
    let cfg = BackupConfig::read(&mut env);
    env.finish().expect("backup configuration is valid");
    BackupEnforcer::new(ctx, cfg)
}

/// The sweep queue with its dead-letter queue (`maxReceiveCount` receives, then SQS moves a
/// message there): (queue URL, queue ARN, dead-letter queue URL).
async fn sweep_queue(sdk: &SdkConfig, max_receives: u32) -> (String, String, String) {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let arn_of = |url: String| {
        let sqs = sqs.clone();
        async move {
            let a = sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .unwrap();
            a.attributes().unwrap()[&QueueAttributeName::QueueArn].clone()
        }
    };
    let name = unique("sweeps");
    let dlq = sqs.create_queue().queue_name(format!("{name}-dlq")).send().await.unwrap();
    let dlq = dlq.queue_url().unwrap().to_string();
    let redrive =
        json!({"deadLetterTargetArn": arn_of(dlq.clone()).await, "maxReceiveCount": max_receives.to_string()});
    let q = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .attributes(QueueAttributeName::VisibilityTimeout, "60")
        .send()
        .await
        .unwrap();
    let url = q.queue_url().unwrap().to_string();
    let arn = arn_of(url.clone()).await;
    (url, arn, dlq)
}

/// Lambda's SQS event source mapping, batch size 1, for one function.
struct EventSourceMapping {
    sqs: aws_sdk_sqs::Client,
    url: String,
    arn: String,
    /// Receives per message id, as the worker saw them.
    receives: BTreeMap<String, Vec<u32>>,
}

impl EventSourceMapping {
    async fn new(url: &str, arn: &str) -> Self {
        let sqs = aws_sdk_sqs::Client::new(&sdk_config().await);
        EventSourceMapping { sqs, url: url.into(), arn: arn.into(), receives: BTreeMap::new() }
    }

    /// Delivers messages until the queue is empty; returns the partial batch responses.
    async fn drain(&mut self, e: &BackupEnforcer) -> Vec<Value> {
        let mut answers = Vec::new();
        while let Some(answer) = self.drain_one(e).await {
            answers.push(answer);
            assert!(answers.len() < 100, "the queue never empties: {answers:?}");
        }
        answers
    }

    /// Delivers one message, if there is one; returns the partial batch response.
    async fn drain_one(&mut self, e: &BackupEnforcer) -> Option<Value> {
        {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(1)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap();
            let m = got.messages().first()?;
            let attrs = m.attributes().cloned().unwrap_or_default();
            let count =
                attrs.get(&MessageSystemAttributeName::ApproximateReceiveCount).cloned().unwrap_or_else(|| "1".into());
            let id = m.message_id().unwrap().to_string();
            self.receives.entry(id.clone()).or_default().push(count.parse().unwrap());
            // The shape Lambda hands the function (AWS Lambda developer guide, "Using Lambda with SQS").
            let record = json!({
                "messageId": id, "receiptHandle": m.receipt_handle(), "body": m.body(),
                "attributes": {"ApproximateReceiveCount": count, "SentTimestamp": "1764065731180",
                               "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1764065731190"},
                "messageAttributes": {}, "md5OfBody": m.md5_of_body(), "eventSource": "aws:sqs",
                "eventSourceARN": self.arn, "awsRegion": REGION,
            });
            let answer = e.handle(&json!({ "Records": [record] })).await.expect("a shard batch never fails whole");
            let failed: Vec<&str> = answer["batchItemFailures"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|f| f["itemIdentifier"].as_str())
                .collect();
            let handle = m.receipt_handle().unwrap();
            if failed.contains(&id.as_str()) {
                self.sqs
                    .change_message_visibility()
                    .queue_url(&self.url)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .unwrap();
            } else {
                self.sqs.delete_message().queue_url(&self.url).receipt_handle(handle).send().await.unwrap();
            }
            Some(answer)
        }
    }
}

/// The shard bodies left in a queue (read, not deleted, and left visible).
async fn bodies_in(url: &str) -> Vec<Value> {
    let sqs = aws_sdk_sqs::Client::new(&sdk_config().await);
    let got = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .wait_time_seconds(0)
        .send()
        .await
        .unwrap();
    got.messages().iter().map(|m| serde_json::from_str(m.body().unwrap()).unwrap()).collect()
}

/// The compliance-report envelopes published to the suite topic.
async fn published_reports(sdk: &SdkConfig, queue: &str) -> Vec<Envelope> {
    harness::drain_notifications(sdk, queue)
        .await
        .into_iter()
        .filter_map(|(m, _)| serde_json::from_value::<Envelope>(m).ok())
        .filter(|e| e.action == "compliance-report")
        .collect()
}

#[tokio::test]
async fn a_fleet_sweep_is_planned_as_one_shard_per_place_and_a_failed_shard_is_retried_then_summarised_once() {
    let sdk = sdk_config().await;
    let tag = unique("fan");
    let mut volumes = Vec::new();
    for account in [HUB, MEMBER] {
        let acct = in_account(account).await;
        for region in [REGION, OTHER_REGION] {
            let ec2 = ec2_in(&acct, region);
            volumes.push((account, region, stale_volume(&ec2, region, &tag).await, ec2));
        }
    }
    let (queue, queue_arn, dlq) = sweep_queue(&sdk, 3).await;
    let (topic, notifications) = harness::topic_with_queue(&sdk, &unique("suite")).await;
    // The first snapshot call anywhere is refused: that shard fails, and its retry succeeds.
    let proxy = FaultProxy::start(&harness::moto_endpoint(), 41).await;
    proxy.add(Rule::new("CreateSnapshot", Fault::AccessDenied, Times::First(1)));
    let aws = selfheal::clients::Aws::from_sdk_config(harness::sdk_config_at(&proxy.endpoint).await);
    let vars = [
        ("SELFHEAL_ACCOUNTS", MEMBER),
        ("SELFHEAL_BACKUP_REGIONS", "us-east-1,eu-west-1"),
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_BACKUP_RDS", "false"),
        ("SELFHEAL_BACKUP_QUEUE_URL", queue.as_str()),
        ("SELFHEAL_BACKUP_SHARD_MAX_RECEIVES", "3"),
        ("SELFHEAL_TOPIC_ARN", topic.as_str()),
    ];
    let e = enforcer_with(&vars, Some(aws)).await;

    // The planner: one shard per account and region, and no sweeping of its own.
    let sched = schedule();
    let planned = e.handle(&sched).await.unwrap();
    let plan: Vec<Envelope> = serde_json::from_value(planned["decisions"].clone()).unwrap();
    assert_eq!(plan.len(), 1, "{planned}");
    assert_eq!((plan[0].action.as_str(), plan[0].outcome), ("plan-sweep", Outcome::Acted), "{plan:?}");
    let mut places: Vec<String> = serde_json::from_value(plan[0].details["places"].clone()).unwrap();
    places.sort();
    let want = [
        format!("{MEMBER}/{OTHER_REGION}"),
        format!("{MEMBER}/{REGION}"),
        format!("{HUB}/{OTHER_REGION}"),
        format!("{HUB}/{REGION}"),
    ];
    assert_eq!(places, want);
    assert_eq!(proxy.count("CreateSnapshot"), 0, "the planner acts on nothing");
    // A redelivered schedule plans the same run again: its shards are counted once.
    e.handle(&sched).await.unwrap();
    let queued = bodies_in(&queue).await;
    assert!(queued.iter().all(|b| b["schema"] == "selfheal.shard/v1" && b["kind"] == "backup-sweep"), "{queued:?}");

    // The workers.
    let mut esm = EventSourceMapping::new(&queue, &queue_arn).await;
    let answers = esm.drain(&e).await;
    let failed_once: Vec<&Value> =
        answers.iter().filter(|a| !a["batchItemFailures"].as_array().unwrap().is_empty()).collect();
    assert_eq!(proxy.faulted("CreateSnapshot"), 1);
    assert_eq!(failed_once.len(), 1, "one shard failed once and was retried: {answers:?} {:?}", esm.receives);
    // (Listing the queue above received each message once already.)
    let twice: Vec<&Vec<u32>> = esm.receives.values().filter(|r| r.len() == 2).collect();
    assert_eq!(twice.len(), 1, "the failed shard came back, and only it: {:?}", esm.receives);
    assert_eq!(twice[0][1], twice[0][0] + 1, "its receive count went up: {:?}", esm.receives);
    assert!(bodies_in(&dlq).await.is_empty(), "nothing was dead-lettered");

    for (account, region, volume, ec2) in &volumes {
        let snaps = snapshots_of(ec2, volume).await;
        assert_eq!(snaps.len(), 1, "{account}/{region}: one snapshot of {volume}, however often its shard ran");
        let sweep = tag_of(&snaps[0], "selfheal:sweep").unwrap_or_default();
        assert!(sweep.starts_with("sweep:silver:"), "the snapshot names its sweep: {sweep}");
    }

    // One summary, published once, assembled from the four shards.
    let reports = published_reports(&sdk, &notifications).await;
    assert_eq!(reports.len(), 1, "one notification for the whole sweep: {reports:?}");
    let s = &reports[0];
    assert_eq!((s.outcome, s.severity), (Outcome::Acted, Severity::Info), "{s:?}");
    assert_eq!(s.target.kind, "backup-sweep");
    assert_eq!(s.details["byType"]["ebs-volume"]["fixed"], 4, "{:?}", s.details);
    assert_eq!(s.details["snapshotsCreated"], 4);
    let shards = s.details["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 4, "{shards:?}");
    assert!(shards.iter().all(|sh| sh["outcome"] == "acted"), "{shards:?}");
    assert!(
        s.reason.starts_with("backup sweep of 4 place(s): ebs-volume: 0 compliant, 4 fixed, 0 failed"),
        "{}",
        s.reason
    );

    // Each per-volume decision is in the audit trail, written in batches.
    let calls = e.ctx().aws.calls.executions();
    assert!(calls.get("dynamodb:BatchWriteItem").copied().unwrap_or(0) >= 4, "{calls:?}");
}

#[tokio::test]
async fn a_shard_that_keeps_failing_lands_in_the_dead_letter_queue_and_the_summary_names_each_failed_volume() {
    let sdk = sdk_config().await;
    let tag = unique("dlq");
    let mut volumes = Vec::new();
    for account in [HUB, MEMBER] {
        let ec2 = ec2_in(&in_account(account).await, REGION);
        volumes.push((account, stale_volume(&ec2, REGION, &tag).await));
    }
    let (queue, queue_arn, dlq) = sweep_queue(&sdk, 2).await;
    let (topic, notifications) = harness::topic_with_queue(&sdk, &unique("suite")).await;
    let proxy = FaultProxy::start(&harness::moto_endpoint(), 43).await;
    proxy.add(Rule::new("CreateSnapshot", Fault::AccessDenied, Times::Always));
    let aws = selfheal::clients::Aws::from_sdk_config(harness::sdk_config_at(&proxy.endpoint).await);
    let vars = [
        ("SELFHEAL_ACCOUNTS", MEMBER),
        ("SELFHEAL_BACKUP_REGIONS", "us-east-1"),
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_BACKUP_RDS", "false"),
        ("SELFHEAL_BACKUP_QUEUE_URL", queue.as_str()),
        ("SELFHEAL_BACKUP_SHARD_MAX_RECEIVES", "2"),
        ("SELFHEAL_TOPIC_ARN", topic.as_str()),
    ];
    let e = enforcer_with(&vars, Some(aws)).await;
    e.handle(&schedule()).await.unwrap();

    let mut esm = EventSourceMapping::new(&queue, &queue_arn).await;
    let answers = esm.drain(&e).await;
    assert_eq!(answers.len(), 4, "two shards, each received twice: {answers:?}");
    assert!(answers.iter().all(|a| a["batchItemFailures"].as_array().unwrap().len() == 1), "{answers:?}");
    assert!(esm.receives.values().all(|r| r == &[1, 2]), "{:?}", esm.receives);
    // SQS moved both to the dead-letter queue after their second receive.
    let dead = bodies_in(&dlq).await;
    let mut dead_places: Vec<String> =
        dead.iter().map(|b| format!("{}/{}", b["account"].as_str().unwrap(), b["region"].as_str().unwrap())).collect();
    dead_places.sort();
    assert_eq!(dead_places, [format!("{MEMBER}/{REGION}"), format!("{HUB}/{REGION}")], "{dead:?}");

    // The summary went out once, when the last shard's last receive counted it: critical, each
    // failed volume named with its place and AWS's words, each failed shard with its reason.
    let reports = published_reports(&sdk, &notifications).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    let s = &reports[0];
    assert_eq!((s.outcome, s.severity), (Outcome::Failed, Severity::Critical), "{s:?}");
    assert_eq!(s.details["byType"]["ebs-volume"]["failed"], 2, "{:?}", s.details);
    for (account, volume) in &volumes {
        let key = format!("{account}/{REGION}: {volume}");
        let why = s.details["failures"][&key].as_str().unwrap_or_else(|| panic!("{key} not named: {:?}", s.details));
        assert!(why.contains("ec2:CreateSnapshot failed"), "{why}");
        assert!(s.reason.contains(&key), "the summary's text names {key}: {}", s.reason);
    }
    let failed_shards: Vec<String> = serde_json::from_value(s.details["failedShards"].clone()).unwrap();
    assert_eq!(failed_shards.len(), 2, "{failed_shards:?}");
    assert!(
        failed_shards.iter().all(|f| f.contains("failed on receive 2 of 2; the message goes to the dead-letter queue")),
        "{failed_shards:?}"
    );
}

#[tokio::test]
async fn a_sweep_stands_down_while_another_holds_its_place_and_a_retry_sees_its_own_work_by_the_sweep_tag() {
    let tag = unique("lease");
    let vars = [
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_BACKUP_RDS", "false"),
    ];
    let e = enforcer_with(&vars, None).await;
    let ec2 = e.ctx().aws.ec2();
    let a = stale_volume(&ec2, REGION, &tag).await;
    let b = stale_volume(&ec2, REGION, &tag).await;
    let t: Trigger = parse_event(&schedule()).unwrap().remove(0);
    let now = Utc::now();

    // Another sweep holds the place's gold sweep lease (as a running sweep does).
    let held = e
        .ctx()
        .ledger
        .take_lease(
            "backup-sweep/gold",
            FUNCTION,
            "sweep",
            "sweep:gold:1 other-event x",
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    let selfheal::ledger::LeaseResult::Taken(held) = held else { panic!("{held:?}") };
    let stood = e.sweep(&t, false, now).await.unwrap();
    assert!(stood.stood_down.is_some());
    assert_eq!(stood.envelopes.len(), 1, "only the stand-down: {:?}", stood.envelopes);
    let r = &stood.envelopes[0];
    assert_eq!((r.action.as_str(), r.outcome), ("compliance-report", Outcome::Duplicate), "{r:?}");
    assert!(
        r.reason.contains("another sweep holds the gold sweep lease") && r.reason.contains("other-event"),
        "{}",
        r.reason
    );
    for v in [&a, &b] {
        assert!(snapshots_of(&ec2, v).await.is_empty(), "nothing done while the other sweep runs");
    }
    e.ctx().ledger.release_lease(&held).await.unwrap();

    // An earlier attempt of this same sweep already snapshotted `b`: its snapshot carries the sweep's id.
    let sweep_id = sweep_event_id(&builtin_policies()["silver"], now);
    let spec = TagSpecification::builder()
        .resource_type(ResourceType::Snapshot)
        .tags(Tag::builder().key("selfheal:created-by").value("backup-enforcer").build())
        .tags(Tag::builder().key("selfheal:source").value(&b).build())
        .tags(Tag::builder().key("selfheal:sweep").value(&sweep_id).build())
        .build();
    ec2.create_snapshot().volume_id(&b).tag_specifications(spec).send().await.unwrap();

    let done = e.sweep(&t, false, now).await.unwrap();
    assert!(done.stood_down.is_none());
    assert_eq!(snapshots_of(&ec2, &a).await.len(), 1);
    assert_eq!(snapshots_of(&ec2, &b).await.len(), 1, "b is not snapshotted twice");
    assert_eq!(tag_of(&snapshots_of(&ec2, &a).await[0], "selfheal:sweep"), Some(sweep_id.as_str()));
    assert_eq!(done.report.by_type["ebs-volume"].fixed, 2, "{:?}", done.report);
    assert_eq!(done.report.fixed_earlier, 1, "b counts as fixed by this sweep's earlier attempt: {:?}", done.report);
    assert_eq!(done.report.snapshots_created, 1);
    // Its leases are released: a sweep right after takes them again and finds nothing to do.
    let again = e.sweep(&parse_event(&schedule()).unwrap().remove(0), false, Utc::now()).await.unwrap();
    assert!(again.stood_down.is_none());
    assert_eq!(again.report.snapshots_created, 0);
}

/// Requests a sweep of `n` stale volumes makes, by operation.
async fn sweep_requests(n: usize) -> BTreeMap<String, u64> {
    let tag = unique("per-volume");
    let (topic, _) = harness::topic_with_queue(&sdk_config().await, &unique("suite")).await;
    let vars = [
        ("SELFHEAL_TOPIC_ARN", topic.as_str()),
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_BACKUP_RDS", "false"),
        // Volumes only: tables and buckets are listed too (one request each), however many other
        // tests have made in the emulator.
        ("SELFHEAL_BACKUP_DYNAMODB", "false"),
        ("SELFHEAL_BACKUP_S3", "false"),
        ("SELFHEAL_BACKUP_API_RATE", "1000"),
        ("SELFHEAL_BACKUP_API_BURST", "1000"),
    ];
    let e = enforcer_with(&vars, None).await;
    let ec2 = e.ctx().aws.ec2();
    for _ in 0..n {
        stale_volume(&ec2, REGION, &tag).await;
    }
    e.ctx().aws.calls.clear();
    let sweep = e.sweep(&parse_event(&schedule()).unwrap().remove(0), false, Utc::now()).await.unwrap();
    assert_eq!(sweep.report.snapshots_created, n as u64, "{:?}", sweep.report);
    assert_eq!(sweep.report.audited, n as u64);
    e.ctx().aws.calls.executions()
}

#[tokio::test]
async fn a_sweep_where_every_volume_needs_a_snapshot_makes_at_most_1_1_requests_per_volume_beyond_the_listings() {
    let (small, large) = (10, 60);
    let (a, b) = tokio::join!(sweep_requests(small), sweep_requests(large));
    let beyond_listings = |calls: &BTreeMap<String, u64>| {
        calls.iter().filter(|(op, _)| !op.contains(":Describe")).map(|(_, n)| n).sum::<u64>()
    };
    let per_volume = (beyond_listings(&b) - beyond_listings(&a)) as f64 / (large - small) as f64;
    assert!(per_volume <= 1.1, "{per_volume:.3} requests per volume: {a:?} vs {b:?}");
    assert_eq!(b["ec2:CreateSnapshot"], large as u64);
    assert_eq!(b["dynamodb:BatchWriteItem"], large.div_ceil(25) as u64, "audit records 25 to a request: {b:?}");
    assert_eq!(b.get("sns:Publish"), Some(&1), "one notification for the sweep: {b:?}");
    for per_action in ["dynamodb:UpdateItem", "dynamodb:GetItem"] {
        assert!(b.get(per_action).copied().unwrap_or(0) < 5, "no per-volume {per_action}: {b:?}");
    }
}

#[tokio::test]
async fn a_shard_larger_than_one_invocation_is_sent_on_and_its_next_part_finishes_it() {
    let sdk = sdk_config().await;
    let tag = unique("part");
    let ec2 = ec2_in(&sdk, REGION);
    let volumes = [stale_volume(&ec2, REGION, &tag).await, stale_volume(&ec2, REGION, &tag).await];
    let (queue, queue_arn, _dlq) = sweep_queue(&sdk, 3).await;
    let (topic, notifications) = harness::topic_with_queue(&sdk, &unique("suite")).await;
    let vars = |budget: &'static str| {
        vec![
            ("SELFHEAL_BACKUP_REGIONS", "us-east-1".to_string()),
            ("SELFHEAL_BACKUP_POLICY_TAG", tag.clone()),
            ("SELFHEAL_BACKUP_MANAGE_PLANS", "false".to_string()),
            ("SELFHEAL_BACKUP_RDS", "false".to_string()),
            ("SELFHEAL_BACKUP_QUEUE_URL", queue.clone()),
            ("SELFHEAL_TOPIC_ARN", topic.clone()),
            ("SELFHEAL_BACKUP_TIME_BUDGET_SECONDS", budget.to_string()),
        ]
    };
    let spent = vars("0");
    let spent: Vec<(&str, &str)> = spent.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out_of_time = enforcer_with(&spent, None).await;
    out_of_time.handle(&schedule()).await.unwrap();

    // The first worker has no time: it starts on nothing, sends the rest on as part 1, and succeeds.
    let mut esm = EventSourceMapping::new(&queue, &queue_arn).await;
    let first = esm.drain_one(&out_of_time).await.expect("the shard");
    assert!(first["batchItemFailures"].as_array().unwrap().is_empty(), "{first}");
    for v in &volumes {
        assert!(snapshots_of(&ec2, v).await.is_empty());
    }
    let next = bodies_in(&queue).await;
    assert_eq!(next.len(), 1, "{next:?}");
    assert_eq!(next[0]["part"], 1);
    assert!(published_reports(&sdk, &notifications).await.is_empty(), "no summary before the shard is done");

    // The next part, with time (the same ledger: the run is recorded there), does the rest.
    let ample = vars("600");
    let ample: Vec<(&str, &str)> = ample.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut env = harness::env(&ample);
    let cfg = BackupConfig::read(&mut env);
    env.finish().unwrap();
    let with_time = BackupEnforcer::new(out_of_time.ctx().clone(), cfg);
    esm.drain(&with_time).await;
    for v in &volumes {
        assert_eq!(snapshots_of(&ec2, v).await.len(), 1, "{v}");
    }
    let reports = published_reports(&sdk, &notifications).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].details["byType"]["ebs-volume"]["fixed"], 2, "{:?}", reports[0].details);
    assert_eq!(reports[0].details["shards"][0]["parts"], 2, "{:?}", reports[0].details);
}
