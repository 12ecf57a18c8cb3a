//! Survival under faults at the wire, for the foundation (the ledger and publishing every function
//! relies on). The per-function fault tests live with each function's tests.

use std::time::Duration;

use harness::proxy::{Fault, FaultProxy, Rule, Times};
use harness::{ctx_with, moto_endpoint, sdk_config_with};
use selfheal::clients::Aws;
use selfheal::{ActionReport, ActionRequest, Outcome, Target};

fn request(target: &str, event_id: &str) -> ActionRequest {
    ActionRequest {
        action: "probe".into(),
        target: Target::new("test", target),
        event_id: event_id.into(),
        trigger: "manual".into(),
        dry_run: false,
        reason: "resilience".into(),
    }
}

async fn rig(seed: u64, attempt_timeout: Duration) -> (FaultProxy, selfheal::Ctx) {
    rig_with(seed, attempt_timeout, selfheal::clients::resilience().0).await
}

async fn rig_with(
    seed: u64,
    attempt_timeout: Duration,
    retry: aws_config::retry::RetryConfig,
) -> (FaultProxy, selfheal::Ctx) {
    let proxy = FaultProxy::start(&moto_endpoint(), seed).await;
    let timeout = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(attempt_timeout)
        .operation_timeout(Duration::from_secs(30))
        .build();
    let aws = Aws::from_sdk_config(sdk_config_with(&proxy.endpoint, retry, timeout).await);
    let ctx = ctx_with("test", &[], aws).await;
    (proxy, ctx)
}

#[tokio::test]
async fn throttled_ledger_writes_are_retried_and_the_action_happens_once() {
    let (proxy, ctx) = rig(7, Duration::from_secs(5)).await;
    proxy.add(Rule::new("PutItem", Fault::Throttle, Times::First(2)));
    let env = ctx.execute(request("t-1", "e1"), async { Ok(ActionReport::acted("done")) }).await.unwrap();
    assert_eq!(env.outcome, Outcome::Acted);
    assert_eq!(proxy.faulted("PutItem"), 2);
    assert!(proxy.count("PutItem") >= 3, "retried after throttling: {:?}", proxy.seen());
}

#[tokio::test]
async fn a_ledger_that_keeps_failing_stops_the_action_before_it_starts() {
    let (proxy, ctx) = rig(7, Duration::from_secs(5)).await;
    proxy.add(Rule::new("PutItem", Fault::ServerError(500), Times::Always));
    let ran = std::sync::atomic::AtomicBool::new(false);
    let res = ctx
        .execute(request("t-2", "e1"), async {
            ran.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(ActionReport::acted("done"))
        })
        .await;
    let err = res.unwrap_err().to_string();
    assert!(err.contains("dynamodb:PutItem failed"), "{err}");
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst), "no action without a claim");
    assert_eq!(proxy.count("PutItem"), 4, "the SDK tried 4 times: {:?}", proxy.seen());
}

#[tokio::test]
async fn slow_and_dropped_responses_are_retried_within_the_attempt_timeout() {
    let (proxy, ctx) = rig(11, Duration::from_millis(800)).await;
    proxy.add(Rule::new("PutItem", Fault::Delay(Duration::from_secs(3)), Times::First(1)));
    proxy.add(Rule::new("UpdateItem", Fault::Drop, Times::First(1)));
    let env = ctx.execute(request("t-3", "e1"), async { Ok(ActionReport::acted("done")) }).await.unwrap();
    assert_eq!(env.outcome, Outcome::Acted);
    assert_eq!(proxy.faulted("PutItem"), 1);
    assert_eq!(proxy.faulted("UpdateItem"), 1);
}

#[tokio::test]
async fn seeded_random_faults_are_deterministic() {
    async fn run(seed: u64) -> Vec<bool> {
        // Standard (not adaptive) retries: the determinism is the proxy's; adaptive mode's client-side
        // rate limiter would only make the test slow.
        let retry = aws_config::retry::RetryConfig::standard()
            .with_max_attempts(4)
            .with_initial_backoff(Duration::from_millis(10));
        let (proxy, ctx) = rig_with(seed, Duration::from_secs(5), retry).await;
        proxy.add(Rule::new("GetItem", Fault::Throttle, Times::Probability(0.5)));
        for i in 0..8 {
            let _ = ctx.ledger.read_cooldown(&format!("t-{i}")).await;
        }
        proxy.seen().iter().filter(|s| s.operation == "GetItem").map(|s| s.fault.is_some()).collect()
    }
    let a = run(1234).await;
    let b = run(1234).await;
    assert_eq!(a, b);
    assert!(a.iter().any(|x| *x) && a.iter().any(|x| !*x), "a mix of faults and passes: {a:?}");
}

/// The reference architecture behind a fault proxy, and a function's settings for it.
async fn architecture_behind_proxy(seed: u64) -> (FaultProxy, Aws, selfheal::drill::Architecture) {
    let proxy = FaultProxy::start(&moto_endpoint(), seed).await;
    let (retry, timeout) = selfheal::clients::resilience();
    let aws = Aws::from_sdk_config(sdk_config_with(&proxy.endpoint, retry, timeout).await);
    let prefix = harness::unique("fx");
    let arch = gameday::provision::provision(&aws, &prefix, &format!("{prefix}-ledger"), ("selfheal:enabled", "true"))
        .await
        .unwrap();
    (proxy, aws, arch)
}

fn settings(
    arch: &selfheal::drill::Architecture,
    function: &str,
) -> (selfheal::config::CommonConfig, selfheal::config::Env) {
    let mut env = selfheal::config::Env::from_map(gameday::gameday_env(arch).into_iter().collect());
    let common = selfheal::config::CommonConfig::read(&mut env, function);
    (common, env)
}

#[tokio::test]
async fn instance_healer_retries_a_throttled_replacement_and_replaces_once() {
    use selfheal::healer::{Healer, HealerConfig};
    let (proxy, aws, arch) = architecture_behind_proxy(21).await;
    let (common, mut env) = settings(&arch, "instance-healer");
    let healer = Healer::new(selfheal::Ctx::new(common, aws.clone()), HealerConfig::read(&mut env));
    let group =
        aws.autoscaling().describe_auto_scaling_groups().auto_scaling_group_names(&arch.asg_name).send().await.unwrap();
    let victim = group.auto_scaling_groups()[0].instances()[0].instance_id().unwrap().to_string();
    aws.ec2().stop_instances().instance_ids(&victim).send().await.unwrap();

    proxy.add(Rule::new("TerminateInstanceInAutoScalingGroup", Fault::Throttle, Times::First(2)));
    let alarm = selfheal::drill::scenarios::alarm_event(
        &arch.topic_arn,
        "fx-status",
        "ALARM",
        "StatusCheckFailed",
        "AWS/EC2",
        &[("InstanceId", victim.as_str())],
    );
    let out = healer.handle(&alarm).await.unwrap();
    assert_eq!(out["decisions"][0]["outcome"], "acted", "{out}");
    assert_eq!(proxy.faulted("TerminateInstanceInAutoScalingGroup"), 2);
    assert_eq!(proxy.count("TerminateInstanceInAutoScalingGroup"), 3, "retried until it went through, once");
    let group =
        aws.autoscaling().describe_auto_scaling_groups().auto_scaling_group_names(&arch.asg_name).send().await.unwrap();
    let members: Vec<&str> =
        group.auto_scaling_groups()[0].instances().iter().filter_map(|i| i.instance_id()).collect();
    assert_eq!(members.len(), arch.asg_desired as usize);
    assert!(!members.contains(&victim.as_str()));
}

#[tokio::test]
async fn db_failover_gives_up_cleanly_when_promotion_keeps_failing_and_never_promotes_twice() {
    use selfheal::db::{DbConfig, DbFailover, StaticLag};
    let (proxy, aws, arch) = architecture_behind_proxy(22).await;
    let (common, mut env) = settings(&arch, "db-failover");
    let db = DbFailover::new(selfheal::Ctx::new(common, aws.clone()), DbConfig::read(&mut env))
        .with_lag_source(std::sync::Arc::new(StaticLag::new(Vec::<(String, f64)>::new()).with_default(1.0)));
    aws.rds().stop_db_instance().db_instance_identifier(&arch.db_primary).send().await.unwrap();

    proxy.add(Rule::new("PromoteReadReplica", Fault::ServerError(500), Times::Always));
    let event = selfheal::drill::scenarios::rds_event(&arch.db_primary, "failure", "RDS-EVENT-0031", "failed");
    let err = db.handle(&event).await.unwrap_err().to_string();
    assert!(err.contains("action failed"), "the invocation fails so Lambda retries: {err}");
    assert_eq!(proxy.count("PromoteReadReplica"), 4, "retried as a 5xx, then gave up: {:?}", proxy.seen());
    // Nothing half-done: no replica was promoted, and the ledger knows the attempt failed.
    for r in &arch.db_replicas {
        let d = aws.rds().describe_db_instances().db_instance_identifier(r).send().await.unwrap();
        let tags = d.db_instances()[0].tag_list();
        assert!(!tags.iter().any(|t| t.key() == Some("selfheal:promoted-from")), "{r} was promoted");
    }
    let trail = db.ctx().ledger.audit_trail(&arch.db_primary).await.unwrap();
    assert!(trail.iter().any(|r| r.outcome == "failed"), "{:?}", trail.iter().map(|r| &r.outcome).collect::<Vec<_>>());

    // A retry after the fault clears does not promote a second replica blindly: the one-promotion
    // marker is held, so a person decides.
    proxy.clear();
    let again = selfheal::drill::scenarios::rds_event(&arch.db_primary, "failure", "RDS-EVENT-0031", "failed");
    let _ = db.handle(&again).await;
    assert_eq!(proxy.count("PromoteReadReplica"), 4, "no further promotion attempt");
}

/// `PromoteReadReplica` reaches RDS and is applied, and its answer is lost on the way back. The SDK
/// retries; RDS refuses the retry because the instance is no longer a read replica (moto would
/// promote it again, so the proxy answers the retry as RDS does). db-failover must see the promotion
/// as done (wait for the new writer, repoint DNS, record that the answer was lost) rather than fail
/// and leave a finished promotion to a human, and nothing may promote a second replica.
#[tokio::test]
async fn db_failover_sees_a_promotion_whose_answer_was_lost_as_done_and_never_promotes_twice() {
    use selfheal::db::{DbConfig, DbFailover, StaticLag, PROMOTED_FROM_TAG};
    let (proxy, aws, arch) = architecture_behind_proxy(25).await;
    let (common, mut env) = settings(&arch, "db-failover");
    let db = DbFailover::new(selfheal::Ctx::new(common, aws.clone()), DbConfig::read(&mut env))
        .with_lag_source(std::sync::Arc::new(StaticLag::new(Vec::<(String, f64)>::new()).with_default(1.0)));
    aws.rds().stop_db_instance().db_instance_identifier(&arch.db_primary).send().await.unwrap();

    proxy.add(Rule::new("PromoteReadReplica", Fault::DropResponse, Times::First(1)));
    let not_a_replica = Fault::Reject {
        status: 400,
        code: "InvalidDBInstanceState".into(),
        message: "DB Instance is not a read replica.".into(),
    };
    proxy.add(Rule::new("PromoteReadReplica", not_a_replica, Times::Always));
    let event = selfheal::drill::scenarios::rds_event(&arch.db_primary, "failure", "RDS-EVENT-0031", "failed");
    let out = db.handle(&event).await.expect("the promotion is seen as done");
    let d = &out["decisions"][0];
    assert_eq!((d["action"].as_str(), d["outcome"].as_str()), (Some("promote-replica"), Some("acted")), "{out}");
    let reason = d["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("PromoteReadReplica's answer was lost"), "says what happened: {reason}");
    let lost = d["details"]["promoteAnswerLost"].as_str().unwrap_or_default();
    assert!(lost.contains("not a read replica"), "the evidence is recorded: {out}");
    let new_writer = d["details"]["newWriter"].as_str().unwrap().to_string();
    // At the wire: the promotion that was applied (its answer dropped) and the retry RDS refused.
    assert_eq!((proxy.count("PromoteReadReplica"), proxy.faulted("PromoteReadReplica")), (2, 2), "{:?}", proxy.seen());

    // Exactly one replica promoted, tagged as such, and the database record points at it.
    let mut promoted = Vec::new();
    for r in &arch.db_replicas {
        let out = aws.rds().describe_db_instances().db_instance_identifier(r).send().await.unwrap();
        let tags = out.db_instances()[0].tag_list();
        if tags.iter().any(|t| t.key() == Some(PROMOTED_FROM_TAG) && t.value() == Some(arch.db_primary.as_str())) {
            promoted.push(r.clone());
        }
    }
    assert_eq!(promoted, vec![new_writer.clone()]);
    assert_eq!(d["details"]["dnsAfter"], d["details"]["newEndpoint"], "{out}");
    assert_eq!(d["details"]["dnsRecord"].as_str(), Some(arch.db_record.as_str()), "{out}");
    let trail = db.ctx().ledger.audit_trail(&arch.db_primary).await.unwrap();
    let outcomes: Vec<&str> = trail.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, ["acted"], "no failure recorded for a promotion that happened");

    // It converges: Lambda redelivering the event finds it done, a second event about the same
    // failed primary is refused, and neither calls PromoteReadReplica again.
    proxy.clear();
    let again = db.handle(&event).await.unwrap();
    assert_eq!(again["decisions"][0]["outcome"], "duplicate", "{again}");
    let second = selfheal::drill::scenarios::rds_event(&arch.db_primary, "failure", "RDS-EVENT-0031", "failed");
    let second = db.handle(&second).await.unwrap();
    assert_eq!(second["decisions"][0]["outcome"], "refused", "{second}");
    assert_eq!(proxy.count("PromoteReadReplica"), 2, "no further promotion attempt: {:?}", proxy.seen());
}

#[tokio::test]
async fn dns_failover_survives_a_dropped_change_and_reaches_insync_once() {
    use selfheal::dns::{DnsConfig, DnsFailover};
    let (proxy, aws, arch) = architecture_behind_proxy(23).await;
    // The dropped change under test, not the approval a region failover waits for (tested in dns.rs).
    let mut vars: std::collections::HashMap<String, String> = gameday::gameday_env(&arch).into_iter().collect();
    vars.insert("SELFHEAL_APPROVAL_ALWAYS".into(), "none".into());
    let mut env = selfheal::config::Env::from_map(vars);
    let common = selfheal::config::CommonConfig::read(&mut env, "dns-failover");
    let dns = DnsFailover::new(selfheal::Ctx::new(common, aws.clone()), DnsConfig::read(&mut env));
    aws.route53()
        .update_health_check()
        .health_check_id(&arch.primary_health_check)
        .inverted(true)
        .send()
        .await
        .unwrap();

    let changes_before = proxy.count("ChangeResourceRecordSets");
    proxy.add(Rule::new("GetChange", Fault::Drop, Times::First(1)));
    proxy.add(Rule::new("ListResourceRecordSets", Fault::Throttle, Times::First(1)));
    let alarm = selfheal::drill::scenarios::alarm_event(
        &arch.topic_arn,
        "fx-health",
        "ALARM",
        "HealthCheckStatus",
        "AWS/Route53",
        &[("HealthCheckId", arch.primary_health_check.as_str())],
    );
    let out = dns.handle(&alarm).await.unwrap();
    assert_eq!(out["decisions"][0]["outcome"], "acted", "{out}");
    assert_eq!(out["decisions"][0]["details"]["insync"], true, "{out}");
    assert_eq!(proxy.count("ChangeResourceRecordSets") - changes_before, 1, "one change batch: {:?}", proxy.seen());
    assert_eq!(proxy.faulted("GetChange"), 1);
}

#[tokio::test]
async fn backup_enforcer_rides_out_throttled_snapshots_and_a_failed_listing_and_takes_each_once() {
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
    use selfheal::backup::{BackupConfig, BackupEnforcer};
    let proxy = FaultProxy::start(&moto_endpoint(), 24).await;
    let (retry, timeout) = selfheal::clients::resilience();
    let aws = Aws::from_sdk_config(sdk_config_with(&proxy.endpoint, retry, timeout).await);
    let tag = harness::unique("bk");
    let vars = [
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_BACKUP_RDS", "false"),
    ];
    let ctx = ctx_with(selfheal::backup::FUNCTION, &vars, aws.clone()).await;
    let mut env = harness::env(&vars);
    let enforcer = BackupEnforcer::new(ctx, BackupConfig::read(&mut env));
    let ec2 = aws.ec2();
    let mut volumes = Vec::new();
    for _ in 0..4 {
        let spec = TagSpecification::builder()
            .resource_type(ResourceType::Volume)
            .tags(Tag::builder().key(&tag).value("gold").build())
            .tags(Tag::builder().key("selfheal:enabled").value("true").build())
            .build();
        let v = ec2.create_volume().availability_zone("us-east-1a").size(8).tag_specifications(spec).send().await;
        volumes.push(v.unwrap().volume_id().unwrap().to_string());
    }

    proxy.add(Rule::new("DescribeSnapshots", Fault::ServerError(503), Times::First(1)));
    proxy.add(Rule::new("CreateSnapshot", Fault::Throttle, Times::First(3)));
    let trigger = selfheal::parse_event(&harness::event("schedule-backup-sweep.json", &[])).unwrap().remove(0);
    let sweep = enforcer.sweep(&trigger, false, chrono::Utc::now()).await.unwrap();

    assert_eq!(proxy.faulted("DescribeSnapshots"), 1);
    assert_eq!(proxy.faulted("CreateSnapshot"), 3);
    assert_eq!(
        proxy.count("CreateSnapshot"),
        4 + 3,
        "each volume's snapshot went through once, after retries: {:?}",
        proxy.seen()
    );
    assert_eq!(sweep.report.by_type["ebs-volume"].fixed, 4, "{:?}", sweep.report);
    assert!(!sweep.report.has_failures(), "{:?}", sweep.report);
    for v in &volumes {
        let snaps = ec2
            .describe_snapshots()
            .owner_ids("self")
            .filters(aws_sdk_ec2::types::Filter::builder().name("volume-id").values(v).build())
            .send()
            .await
            .unwrap();
        assert_eq!(snaps.snapshots().len(), 1, "{v}: {:?}", snaps.snapshots());
    }
}

#[tokio::test]
async fn the_notifier_rides_out_a_throttled_publish_and_a_failing_secret_read_and_delivers_once() {
    use selfheal::notifier::{Notifier, NotifierConfig};
    let sdk = harness::sdk_config().await;
    let (info, info_q) = harness::topic_with_queue(&sdk, &harness::unique("info")).await;
    let hook = harness::WebhookReceiver::start(&[200]).await;
    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(harness::unique("hook"))
        .secret_string(&hook.url)
        .send()
        .await
        .unwrap();
    let arn = secret.arn().unwrap().to_string();

    let proxy = FaultProxy::start(&moto_endpoint(), 31).await;
    let (retry, timeout) = selfheal::clients::resilience();
    let aws = Aws::from_sdk_config(sdk_config_with(&proxy.endpoint, retry, timeout).await);
    let ctx = ctx_with(selfheal::notifier::FUNCTION, &[], aws).await;
    let mut env = harness::env(&[("SELFHEAL_NOTIFY_TOPIC_INFO", info.as_str()), ("SELFHEAL_WEBHOOK_SECRET_ARN", &arn)]);
    let cfg = NotifierConfig::read(&mut env);
    env.finish().unwrap();
    let notifier = Notifier::new(ctx, cfg).unwrap();

    proxy.add(Rule::new("Publish", Fault::Throttle, Times::First(2)));
    proxy.add(Rule::new("GetSecretValue", Fault::ServerError(503), Times::First(1)));
    let out = notifier.handle(&harness::event("envelope-sns.json", &[])).await.unwrap();
    assert_eq!(out["notifications"][0]["delivered"].as_array().unwrap().len(), 2, "{out}");

    assert_eq!((proxy.faulted("Publish"), proxy.faulted("GetSecretValue")), (2, 1), "{:?}", proxy.seen());
    assert_eq!(harness::drain_notifications(&sdk, &info_q).await.len(), 1, "delivered once, after retries");
    assert_eq!(hook.received().len(), 1);
}
