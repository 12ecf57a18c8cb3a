//! db-failover against moto: real-shaped RDS events, alarms and manual invocations through the
//! handler; assertions on what happened in RDS and Route 53, the envelopes, the ledger and the topic.
//!
//! A failed primary is simulated with `StopDBInstance` (status `stopped`). Moto refuses to stop a read
//! replica and keeps `ReadReplicaSourceDBInstanceIdentifier` after a promotion, so "the replica is now
//! standalone" is checked by moto accepting `StopDBInstance` on it (and by the promoted-from tag).
//! Replica lag comes from `StaticLag` (moto cannot answer CloudWatch's current protocol).

use std::sync::Arc;

use aws_sdk_rds::types::Tag;
use harness::OPT_IN;
use harness::{cname, ctx, event, sdk_config, unique, zone_with_cname};
use selfheal::db::{DbConfig, DbFailover, StaticLag, PROMOTED_FROM_TAG};
use selfheal::{Envelope, Outcome, Severity};
use serde_json::Value;

async fn rds() -> aws_sdk_rds::Client {
    aws_sdk_rds::Client::new(&sdk_config().await)
}

fn tags(pairs: &[(&str, &str)]) -> Vec<Tag> {
    pairs.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build()).collect()
}

async fn create_primary(rds: &aws_sdk_rds::Client, id: &str, az: &str, multi_az: bool, t: &[(&str, &str)]) -> String {
    let out = rds
        .create_db_instance()
        .db_instance_identifier(id)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .master_username("admin_user")
        .master_user_password("secret-password-1")
        .allocated_storage(20)
        .backup_retention_period(1)
        .availability_zone(az)
        .multi_az(multi_az)
        .set_tags(Some(tags(t)))
        .send()
        .await
        .unwrap();
    out.db_instance().unwrap().endpoint().unwrap().address().unwrap().to_string()
}

async fn create_replica(rds: &aws_sdk_rds::Client, id: &str, source: &str, az: &str, t: &[(&str, &str)]) -> String {
    let out = rds
        .create_db_instance_read_replica()
        .db_instance_identifier(id)
        .source_db_instance_identifier(source)
        .availability_zone(az)
        .set_tags(Some(tags(t)))
        .send()
        .await
        .unwrap();
    out.db_instance().unwrap().endpoint().unwrap().address().unwrap().to_string()
}

async fn stop(rds: &aws_sdk_rds::Client, id: &str) {
    rds.stop_db_instance().db_instance_identifier(id).send().await.unwrap();
}

/// Moto refuses `StopDBInstance` on a read replica: accepting it proves the instance is standalone.
async fn is_standalone(rds: &aws_sdk_rds::Client, id: &str) -> bool {
    rds.stop_db_instance().db_instance_identifier(id).send().await.is_ok()
}

async fn instance_tags(rds: &aws_sdk_rds::Client, id: &str) -> Vec<(String, String)> {
    let d = rds.describe_db_instances().db_instance_identifier(id).send().await.unwrap();
    d.db_instances()[0]
        .tag_list()
        .iter()
        .map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string()))
        .collect()
}

async fn handler(vars: &[(&str, &str)], dns: Option<(&str, &str)>, lag: StaticLag) -> DbFailover {
    let ctx = ctx("db-failover", vars).await;
    let mut db_vars = vec![("SELFHEAL_DB_POLL_SECONDS", "1"), ("SELFHEAL_DB_WAIT_SECONDS", "30")];
    if let Some((zone, record)) = dns {
        db_vars.push(("SELFHEAL_DB_DNS_ZONE_ID", zone));
        db_vars.push(("SELFHEAL_DB_DNS_RECORD", record));
    }
    let mut env = harness::env(&db_vars);
    let cfg = DbConfig::read(&mut env);
    env.finish().unwrap();
    DbFailover::new(ctx, cfg).with_lag_source(Arc::new(lag))
}

fn decisions(v: &Value) -> Vec<Envelope> {
    serde_json::from_value(v["decisions"].clone()).unwrap()
}

fn rds_mutations(h: &DbFailover) -> Vec<String> {
    h.ctx()
        .aws
        .calls
        .mutating_calls()
        .into_iter()
        .filter(|c| !c.starts_with("dynamodb:") && !c.starts_with("sns:"))
        .collect()
}

/// A stopped, opted-in primary with two replicas: r1 in the primary's AZ, r2 in another one.
struct Fixture {
    primary: String,
    primary_endpoint: String,
    r1: String,
    r2: String,
    r2_endpoint: String,
}

async fn fixture(stopped: bool, r1_tags: &[(&str, &str)]) -> Fixture {
    let rds = rds().await;
    let primary = unique("orders");
    let primary_endpoint = create_primary(&rds, &primary, "us-east-1a", false, &[OPT_IN]).await;
    let r1 = format!("{primary}-r1");
    let r2 = format!("{primary}-r2");
    create_replica(&rds, &r1, &primary, "us-east-1a", r1_tags).await;
    let r2_endpoint = create_replica(&rds, &r2, &primary, "us-east-1b", &[]).await;
    if stopped {
        stop(&rds, &primary).await;
    }
    Fixture { primary, primary_endpoint, r1, r2, r2_endpoint }
}

#[tokio::test]
async fn failed_primary_promotes_the_replica_in_another_az_and_repoints_dns() {
    let f = fixture(true, &[]).await;
    let (zone, record) = zone_with_cname(&f.primary_endpoint).await;
    let lag = StaticLag::new([(f.r1.as_str(), 1.0), (f.r2.as_str(), 4.0)]);
    let h = handler(&[], Some((&zone, &record)), lag).await;

    let out = h.handle(&event("rds-db-instance-event-failure.json", &[("orders-db", &f.primary)])).await.unwrap();
    let d = decisions(&out);
    assert_eq!(d.len(), 1);
    let e = &d[0];
    assert_eq!(e.outcome, Outcome::Acted, "{}", e.reason);
    assert_eq!(e.action, "promote-replica");
    assert_eq!(e.details["oldWriter"], f.primary.as_str());
    assert_eq!(e.details["newWriter"], f.r2.as_str(), "the replica outside the failed primary's AZ wins");
    assert_eq!(e.details["lagSeconds"], 4.0);
    assert!(e.details["tookSeconds"].as_f64().is_some());
    assert_eq!(e.details["dnsBefore"], f.primary_endpoint.as_str());

    // In the emulator: the record points at the new writer, r2 is standalone and tagged, r1 untouched.
    assert_eq!(cname(&zone, &record).await, f.r2_endpoint);
    let rds = rds().await;
    assert!(instance_tags(&rds, &f.r2).await.contains(&(PROMOTED_FROM_TAG.to_string(), f.primary.clone())));
    assert!(!is_standalone(&rds, &f.r1).await, "r1 must still be a replica");
    assert!(is_standalone(&rds, &f.r2).await, "r2 must be standalone after promotion");
    // The ledger has the audit record.
    let trail = h.ctx().ledger.audit_trail(&f.primary).await.unwrap();
    assert_eq!(trail.iter().filter(|r| r.outcome == "acted").count(), 1);
}

#[tokio::test]
async fn healthy_primary_is_left_alone() {
    let f = fixture(false, &[]).await;
    let (zone, record) = zone_with_cname(&f.primary_endpoint).await;
    let lag = StaticLag::new([(f.r1.as_str(), 1.0), (f.r2.as_str(), 1.0)]);
    let h = handler(&[], Some((&zone, &record)), lag).await;

    let out = h.handle(&event("alarm-sns-rds-primary.json", &[("orders-db", &f.primary)])).await.unwrap();
    let d = decisions(&out);
    assert_eq!(d[0].outcome, Outcome::Skipped, "{}", d[0].reason);
    assert!(d[0].reason.contains("available"), "{}", d[0].reason);
    assert!(rds_mutations(&h).is_empty(), "{:?}", rds_mutations(&h));
    assert_eq!(cname(&zone, &record).await, f.primary_endpoint);
    let rds = rds().await;
    assert!(!is_standalone(&rds, &f.r1).await && !is_standalone(&rds, &f.r2).await);
}

#[tokio::test]
async fn replica_over_the_lag_limit_is_skipped_even_when_preferred() {
    // r1 carries the preferred tag but lags beyond the RPO guard: r2 is promoted.
    let f = fixture(true, &[("selfheal:promote-priority", "0")]).await;
    let lag = StaticLag::new([(f.r1.as_str(), 120.0), (f.r2.as_str(), 5.0)]);
    let h = handler(&[], None, lag).await;
    let out = h.handle(&event("rds-db-instance-event-failure.json", &[("orders-db", &f.primary)])).await.unwrap();
    let e = &decisions(&out)[0];
    assert_eq!(e.outcome, Outcome::Acted, "{}", e.reason);
    assert_eq!(e.details["newWriter"], f.r2.as_str());
    let rejected = e.details["rejected"].to_string();
    assert!(rejected.contains(&f.r1) && rejected.contains("RPO guard"), "{rejected}");
    let rds = rds().await;
    assert!(!is_standalone(&rds, &f.r1).await);
    assert!(is_standalone(&rds, &f.r2).await);
}

#[tokio::test]
async fn no_replica_within_the_lag_limit_promotes_nothing_and_pages_a_human() {
    let f = fixture(true, &[]).await;
    let sdk = sdk_config().await;
    let (topic, queue) = harness::topic_with_queue(&sdk, &unique("db-topic")).await;
    let lag = StaticLag::new([(f.r1.as_str(), 90.0)]); // r2: no datapoint, unknown lag
    let h = handler(&[("SELFHEAL_TOPIC_ARN", &topic)], None, lag).await;

    let out = h.handle(&event("rds-db-instance-event-failure.json", &[("orders-db", &f.primary)])).await.unwrap();
    let e = &decisions(&out)[0];
    assert_eq!(e.outcome, Outcome::Refused, "{}", e.reason);
    assert_eq!(e.severity, Severity::Critical);
    assert!(e.reason.contains("a human must decide"), "{}", e.reason);
    assert!(rds_mutations(&h).is_empty(), "{:?}", rds_mutations(&h));
    let rds = rds().await;
    assert!(!is_standalone(&rds, &f.r1).await && !is_standalone(&rds, &f.r2).await);

    // The page went out on the topic as a critical envelope.
    let notes = harness::drain_notifications(&sdk, &queue).await;
    let critical: Vec<&Value> = notes
        .iter()
        .map(|(m, _)| m)
        .filter(|m| m["severity"] == "critical" && m["target"]["id"] == f.primary.as_str())
        .collect();
    assert_eq!(critical.len(), 1, "{notes:?}");
}

#[tokio::test]
async fn duplicate_and_second_events_for_one_incident_promote_once() {
    let f = fixture(true, &[]).await;
    let lag = StaticLag::new([(f.r1.as_str(), 1.0), (f.r2.as_str(), 2.0)]);
    // No cooldown: the one-promotion-per-primary marker alone must stop the second event.
    let h = handler(&[("SELFHEAL_COOLDOWN_SECONDS", "0")], None, lag).await;
    let ev = event("rds-db-instance-event-failure.json", &[("orders-db", &f.primary)]);

    let first = decisions(&h.handle(&ev).await.unwrap()).remove(0);
    assert_eq!(first.outcome, Outcome::Acted, "{}", first.reason);
    let again = decisions(&h.handle(&ev).await.unwrap()).remove(0);
    assert_eq!(again.outcome, Outcome::Duplicate, "{}", again.reason);

    // The alarm for the same failure is a different event: the marker refuses a second promotion.
    let alarm = decisions(&h.handle(&event("alarm-sns-rds-primary.json", &[("orders-db", &f.primary)])).await.unwrap())
        .remove(0);
    assert_eq!(alarm.outcome, Outcome::Refused, "{}", alarm.reason);
    assert_eq!(alarm.severity, Severity::Critical);
    assert!(alarm.reason.contains("already promoted"), "{}", alarm.reason);

    let promotions = h.ctx().aws.calls.calls().iter().filter(|c| c.as_str() == "rds:PromoteReadReplica").count();
    assert_eq!(promotions, 1);
    let rds = rds().await;
    assert!(is_standalone(&rds, &f.r2).await);
    assert!(!is_standalone(&rds, &f.r1).await, "the second replica must not be promoted");
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let f = fixture(true, &[]).await;
    let (zone, record) = zone_with_cname(&f.primary_endpoint).await;
    let lag = StaticLag::new([(f.r1.as_str(), 1.0), (f.r2.as_str(), 1.0)]);
    let h = handler(&[("SELFHEAL_DRY_RUN", "true")], Some((&zone, &record)), lag).await;

    let out = h.handle(&event("manual-promote-replica.json", &[("orders-db", &f.primary)])).await.unwrap();
    let e = &decisions(&out)[0];
    assert_eq!(e.outcome, Outcome::DryRun, "{}", e.reason);
    assert!(e.dry_run);
    assert_eq!(e.details["newWriter"], f.r2.as_str());
    assert!(rds_mutations(&h).is_empty(), "dry-run mutated: {:?}", rds_mutations(&h));
    assert_eq!(cname(&zone, &record).await, f.primary_endpoint);
    assert!(!h.ctx().ledger.is_marked(&format!("promotion#{}", f.primary)).await.unwrap());
    let rds = rds().await;
    assert!(!is_standalone(&rds, &f.r1).await && !is_standalone(&rds, &f.r2).await);
}

#[tokio::test]
async fn primary_not_opted_in_is_refused() {
    let rds = rds().await;
    let primary = unique("orders");
    create_primary(&rds, &primary, "us-east-1a", false, &[]).await;
    let r1 = format!("{primary}-r1");
    create_replica(&rds, &r1, &primary, "us-east-1b", &[]).await;
    stop(&rds, &primary).await;
    let h = handler(&[], None, StaticLag::new([(r1.as_str(), 1.0)])).await;
    let out = h.handle(&event("rds-db-instance-event-failure.json", &[("orders-db", &primary)])).await.unwrap();
    let e = &decisions(&out)[0];
    assert_eq!(e.outcome, Outcome::Refused);
    assert!(e.reason.contains("not opted in"), "{}", e.reason);
    assert!(!is_standalone(&rds, &r1).await);
}

#[tokio::test]
async fn multi_az_primary_is_rebooted_with_forced_failover() {
    let rds = rds().await;
    let primary = unique("orders");
    create_primary(&rds, &primary, "us-east-1a", true, &[OPT_IN]).await;
    let h = handler(&[], None, StaticLag::default()).await;
    // A planned failover: the primary is healthy, so the operator forces it.
    let mut ev = event("manual-promote-replica.json", &[("orders-db", &primary)]);
    ev["dryRun"] = Value::Bool(false);
    ev["force"] = Value::Bool(true);
    let e = decisions(&h.handle(&ev).await.unwrap()).remove(0);
    assert_eq!(e.outcome, Outcome::Acted, "{}", e.reason);
    assert_eq!(e.action, "reboot-failover");
    assert!(h.ctx().aws.calls.calls().contains(&"rds:RebootDBInstance".to_string()));
}

#[tokio::test]
async fn aurora_failover_picks_the_lowest_tier_reader_in_another_az() {
    let rds = rds().await;
    let cluster = unique("orders-aurora");
    rds.create_db_cluster()
        .db_cluster_identifier(&cluster)
        .engine("aurora-postgresql")
        .master_username("admin_user")
        .master_user_password("secret-password-1")
        .set_tags(Some(tags(&[OPT_IN])))
        .send()
        .await
        .unwrap();
    // (suffix, AZ, tier): the writer first; then tier 2 elsewhere, tier 0 in the writer's AZ, tier 0 elsewhere.
    let members = [("w", "us-east-1a", 1), ("t2", "us-east-1b", 2), ("t0a", "us-east-1a", 0), ("t0c", "us-east-1c", 0)];
    for (suffix, az, tier) in members {
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
    let writer = format!("{cluster}-w");
    let want = format!("{cluster}-t0c");
    let h = handler(&[], None, StaticLag::default()).await;
    let ev = event("rds-db-cluster-event-failover.json", &[("orders-aurora", &cluster)]);

    // Writer healthy: the event is stale, nothing happens.
    let e = decisions(&h.handle(&ev).await.unwrap()).remove(0);
    assert_eq!(e.outcome, Outcome::Skipped, "{}", e.reason);
    assert!(rds_mutations(&h).is_empty());

    // Writer down: fail over (a redelivery of the same event, so use a fresh event id).
    stop(&rds, &writer).await;
    let mut ev2 = ev.clone();
    ev2["id"] = Value::String(uuid::Uuid::new_v4().to_string());
    let e = decisions(&h.handle(&ev2).await.unwrap()).remove(0);
    assert_eq!(e.outcome, Outcome::Acted, "{}", e.reason);
    assert_eq!(e.action, "failover-cluster");
    assert_eq!(e.details["newWriter"], want.as_str());
    assert_eq!(e.details["oldWriter"], writer.as_str());
    let c = rds.describe_db_clusters().db_cluster_identifier(&cluster).send().await.unwrap();
    let now_writer = c.db_clusters()[0]
        .db_cluster_members()
        .iter()
        .find(|m| m.is_cluster_writer() == Some(true))
        .and_then(|m| m.db_instance_identifier())
        .unwrap()
        .to_string();
    assert_eq!(now_writer, want);
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_does_nothing() {
    let h = handler(&[], None, StaticLag::default()).await;
    let err = h
        .handle(&serde_json::json!({"source": "selfheal.manual", "action": "failover"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("target"), "{err}");
    // A schedule is well-formed but not for db-failover: a skipped warning, not an error to retry.
    let skipped = decisions(&h.handle(&event("schedule-backup-sweep.json", &[])).await.unwrap()).remove(0);
    assert_eq!((skipped.outcome, skipped.severity), (Outcome::Skipped, Severity::Warning), "{}", skipped.reason);
    assert!(skipped.reason.contains("does not handle a scheduled event"), "{}", skipped.reason);
    assert!(rds_mutations(&h).is_empty());
}

/// moto finishes a promotion at once, so "still converging" is shown the one way moto allows: the
/// invocation reaches its wait with less than the record margin left before its deadline.
#[tokio::test]
async fn a_promotion_out_of_time_records_its_progress_and_the_retry_resumes_it_without_promoting_twice() {
    let f = fixture(true, &[]).await;
    let (zone, record) = zone_with_cname(&f.primary_endpoint).await;
    let lag = StaticLag::new([(f.r1.as_str(), 1.0), (f.r2.as_str(), 4.0)]);
    let h = handler(&[], Some((&zone, &record)), lag).await;
    let ev = event("rds-db-instance-event-failure.json", &[("orders-db", &f.primary)]);

    // The first invocation promotes, then finds its deadline too near to wait: it fails, resumable.
    let near = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let err = selfheal::deadline::within(near, Box::pin(h.handle(&ev)))
        .await
        .expect_err("the invocation must fail for a retry");
    let text = err.to_string();
    assert!(text.contains("still converging") && text.contains("the retry resumes"), "{text}");
    let trail = h.ctx().ledger.audit_trail(&f.primary).await.unwrap();
    let failed = trail.iter().find(|r| r.outcome == "failed").expect("the failure is audited");
    assert_eq!(failed.envelope.details["resumable"], true);
    assert_eq!(failed.envelope.details["newWriter"], f.r2.as_str());
    // In the emulator: r2 is promoted, the record still names the failed primary.
    let rds = rds().await;
    assert!(instance_tags(&rds, &f.r2).await.contains(&(PROMOTED_FROM_TAG.to_string(), f.primary.clone())));
    assert_eq!(cname(&zone, &record).await, f.primary_endpoint);
    let progress = h.ctx().ledger.progress(&format!("promotion#{}", f.primary)).await.unwrap().unwrap();
    assert_eq!(progress.get("phase").map(String::as_str), Some("promoted"));

    // Lambda's retry (no deadline pressure) resumes: waits for r2 and repoints DNS, promoting nothing.
    let out = h.handle(&ev).await.unwrap();
    let d = decisions(&out);
    assert_eq!(d[0].outcome, Outcome::Acted, "{}", d[0].reason);
    assert_eq!(d[0].details["resumed"], true);
    assert_eq!(d[0].details["newWriter"], f.r2.as_str());
    assert_eq!(cname(&zone, &record).await, f.r2_endpoint);
    let promotions = h.ctx().aws.calls.executions().get("rds:PromoteReadReplica").copied().unwrap_or(0);
    assert_eq!(promotions, 1, "one PromoteReadReplica over both invocations");
    assert!(!is_standalone(&rds, &f.r1).await, "r1 must still be a replica");
    let progress = h.ctx().ledger.progress(&format!("promotion#{}", f.primary)).await.unwrap().unwrap();
    assert_eq!(progress.get("phase").map(String::as_str), Some("done"));

    // A third delivery finds the promotion done and refuses a second one.
    let again = decisions(&h.handle(&ev).await.unwrap());
    assert!(matches!(again[0].outcome, Outcome::Duplicate | Outcome::Refused), "{:?}", again[0]);
}

/// With many databases behind one configured record, promoting one must not steal the others' name.
#[tokio::test]
async fn a_database_record_that_names_another_database_is_left_alone() {
    let f = fixture(true, &[]).await;
    let elsewhere = "another-db.cluster.example.internal";
    let (zone, record) = zone_with_cname(elsewhere).await;
    let lag = StaticLag::new([(f.r1.as_str(), 1.0), (f.r2.as_str(), 4.0)]);
    let h = handler(&[], Some((&zone, &record)), lag).await;

    let out = h.handle(&event("rds-db-instance-event-failure.json", &[("orders-db", &f.primary)])).await.unwrap();
    let d = decisions(&out);
    assert_eq!(d[0].outcome, Outcome::Acted, "{}", d[0].reason);
    let left = d[0].details["dnsLeftAlone"].as_str().unwrap_or_default();
    assert!(left.contains(elsewhere) && left.contains(&f.primary), "{:?}", d[0].details);
    assert_eq!(cname(&zone, &record).await, elsewhere);
    assert!(is_standalone(&rds().await, &f.r2).await);
}
