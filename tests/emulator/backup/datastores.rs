//! DynamoDB tables and S3 buckets (issue #29) against moto: an opted-in table gets point-in-time
//! recovery with its policy's period, deletion protection and an on-demand backup, and a second
//! sweep does nothing; a table with the policy tag only is reported, untouched; the suite deletes
//! only its own expired backups (an owner's of the same age stays); a bucket gets versioning and the
//! suite's lifecycle rule while the owner's rule stays exactly as it was; replication missing is
//! reported, created only when the policy says so, and a rule or a policy naming a bucket that does
//! not exist is a named failure; dry run changes nothing; three accounts in two regions, each table
//! and bucket swept once, by its own region's sweep.
//!
//! What moto cannot produce is answered by the fault proxy as the AWS API reference shows it, so the
//! sweep is driven through it: a table that is UPDATING and a global table whose replica is not
//! ACTIVE (moto's tables are ACTIVE at once and have no replicas: `DescribeTable` answered for that
//! one table), and a bucket another account owns (moto ignores `ExpectedBucketOwner`: S3's
//! `AccessDenied` answered for that one bucket).

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PointInTimeRecoveryStatus, ScalarAttributeType,
};
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination, ExpirationStatus, LifecycleExpiration,
    LifecycleRule, LifecycleRuleFilter, ReplicationConfiguration, ReplicationRule, ReplicationRuleFilter,
    ReplicationRuleStatus, Tag, Tagging, VersioningConfiguration,
};
use chrono::{Duration, Utc};
use harness::proxy::{Fault, FaultProxy, Rule, Times};
use harness::{in_account, sdk_config, unique, OPT_IN};
use selfheal::backup::LIFECYCLE_RULE_ID;
use selfheal::clients::Aws;
use selfheal::{Envelope, Outcome};
use serde_json::Value;

use super::common::{enforcer, for_target, report, schedule, tally};
use selfheal::backup::{BackupConfig, BackupEnforcer};

const TABLE: &str = "dynamodb-table";
const BUCKET: &str = "s3-bucket";

/// A table with `tags`.
async fn table(ddb: &aws_sdk_dynamodb::Client, tags: &[(&str, &str)]) -> String {
    let name = unique("tbl");
    let tags = tags.iter().map(|(k, v)| aws_sdk_dynamodb::types::Tag::builder().key(*k).value(*v).build().unwrap());
    ddb.create_table()
        .table_name(&name)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build().unwrap())
        .billing_mode(BillingMode::PayPerRequest)
        .set_tags(Some(tags.collect()))
        .send()
        .await
        .unwrap();
    name
}

async fn pitr(ddb: &aws_sdk_dynamodb::Client, table: &str) -> (bool, Option<i32>) {
    let out = ddb.describe_continuous_backups().table_name(table).send().await.unwrap();
    let p = out.continuous_backups_description().unwrap().point_in_time_recovery_description().unwrap();
    (p.point_in_time_recovery_status() == Some(&PointInTimeRecoveryStatus::Enabled), p.recovery_period_in_days())
}

async fn protected(ddb: &aws_sdk_dynamodb::Client, table: &str) -> bool {
    let d = ddb.describe_table().table_name(table).send().await.unwrap();
    d.table().unwrap().deletion_protection_enabled().unwrap_or(false)
}

async fn backup_names(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Vec<String> {
    let out = ddb.list_backups().table_name(table).send().await.unwrap();
    let mut names: Vec<String> =
        out.backup_summaries().iter().filter_map(|b| b.backup_name().map(str::to_string)).collect();
    names.sort();
    names
}

/// A bucket in `region` with `tags` (none: untagged).
async fn bucket(s3: &aws_sdk_s3::Client, region: &str, tags: &[(&str, &str)]) -> String {
    let name = unique("bkt");
    let mut create = s3.create_bucket().bucket(&name);
    if region != "us-east-1" {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder().location_constraint(BucketLocationConstraint::from(region)).build(),
        );
    }
    create.send().await.unwrap();
    if !tags.is_empty() {
        let set = tags.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap()).collect();
        s3.put_bucket_tagging()
            .bucket(&name)
            .tagging(Tagging::builder().set_tag_set(Some(set)).build().unwrap())
            .send()
            .await
            .unwrap();
    }
    name
}

/// Versioning's status, read from the raw body: moto's answer (root `GetBucketVersioningResponse`)
/// does not parse with the SDK.
async fn versioning(s3: &aws_sdk_s3::Client, bucket: &str) -> Option<BucketVersioningStatus> {
    use aws_sdk_s3::error::SdkError;
    match s3.get_bucket_versioning().bucket(bucket).send().await {
        Ok(o) => o.status().cloned(),
        Err(SdkError::ServiceError(e)) if e.raw().status().is_success() => status(e.raw().body().bytes()),
        Err(SdkError::ResponseError(e)) => status(e.raw().body().bytes()),
        Err(e) => panic!("GetBucketVersioning: {e:?}"),
    }
}

fn status(body: Option<&[u8]>) -> Option<BucketVersioningStatus> {
    let body = String::from_utf8_lossy(body.unwrap_or_default()).to_string();
    ["Enabled", "Suspended"]
        .into_iter()
        .find(|s| body.contains(&format!("<Status>{s}</Status>")))
        .map(BucketVersioningStatus::from)
}

/// The test policy `tb` of the expiry test, for its windows.
fn e_policy() -> selfheal::backup::Policy {
    selfheal::backup::parse_policies(Some(r#"{"tb":{"tableBackups":true,"retentionDays":1,"minKeep":1}}"#)).unwrap()
        ["tb"]
        .clone()
}

async fn lifecycle(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<LifecycleRule> {
    match s3.get_bucket_lifecycle_configuration().bucket(bucket).send().await {
        Ok(o) => o.rules().to_vec(),
        Err(_) => Vec::new(),
    }
}

async fn enable_versioning(s3: &aws_sdk_s3::Client, bucket: &str) {
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .unwrap();
}

fn owners_rule() -> LifecycleRule {
    LifecycleRule::builder()
        .id("owner-logs-expire")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("logs/").build())
        .expiration(LifecycleExpiration::builder().days(365).build())
        .build()
        .unwrap()
}

fn decisions(v: &Value) -> Vec<Envelope> {
    serde_json::from_value(v["decisions"].clone()).expect("decisions")
}

fn vars<'a>(tag: &'a str, policies: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("SELFHEAL_BACKUP_POLICY_TAG", tag),
        ("SELFHEAL_BACKUP_POLICIES", policies),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_BACKUP_RDS", "false"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
    ];
    v.extend_from_slice(extra);
    v
}

#[tokio::test]
async fn an_opted_in_table_gets_pitr_deletion_protection_and_a_backup_and_a_second_sweep_does_nothing() {
    let tag = unique("ddb");
    let vars = vars(&tag, r#"{"tb":{"tableBackups":true,"pitrRecoveryDays":10}}"#, &[("SELFHEAL_BACKUP_S3", "false")]);
    let e = enforcer(&vars).await;
    let ddb = e.ctx().aws.dynamodb();
    let opted = table(&ddb, &[(&tag, "tb"), OPT_IN]).await;
    let policy_only = table(&ddb, &[(&tag, "tb")]).await;
    let untagged = table(&ddb, &[]).await;

    let now = Utc::now();
    let first = e.sweep(&schedule(), false, now).await.unwrap();
    assert_eq!(pitr(&ddb, &opted).await, (true, Some(10)), "PITR on with the policy's period");
    assert!(protected(&ddb, &opted).await, "deletion protection on");
    let names = backup_names(&ddb, &opted).await;
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with(&format!("selfheal-{opted}-")), "{names:?}");
    for t in [&policy_only, &untagged] {
        assert!(!pitr(&ddb, t).await.0, "{t} untouched");
        assert!(!protected(&ddb, t).await && backup_names(&ddb, t).await.is_empty(), "{t} untouched");
    }
    let r = report(&first.envelopes);
    assert_eq!(tally(r, TABLE, "fixed"), 1, "{:?}", r.details);
    assert_eq!(tally(r, TABLE, "notOptedIn"), 1, "{:?}", r.details);
    assert!(first.report.not_opted_in.contains(&policy_only));
    assert_eq!(first.report.table_backups_created, 1);
    assert!(first.report.inventory_requests[TABLE] > 0);
    let acted = for_target(&first.envelopes, &opted);
    assert_eq!(acted.len(), 1);
    assert_eq!(acted[0].outcome, Outcome::Acted, "{:?}", acted[0]);
    assert!(acted[0].reason.contains("turn point-in-time recovery on (10 days)"), "{}", acted[0].reason);
    assert!(for_target(&first.envelopes, &policy_only).is_empty());

    // Again: PITR, protection and this window's backup are there; nothing is changed.
    e.ctx().aws.calls.clear();
    let again = e.sweep(&schedule(), false, now + Duration::minutes(5)).await.unwrap();
    let calls = e.ctx().aws.calls.calls();
    for op in ["dynamodb:UpdateContinuousBackups", "dynamodb:UpdateTable", "dynamodb:CreateBackup"] {
        assert!(!calls.iter().any(|c| c == op), "{op} called again: {calls:?}");
    }
    assert_eq!(backup_names(&ddb, &opted).await.len(), 1);
    assert!(for_target(&again.envelopes, &opted).is_empty(), "no decision on a compliant table");
    assert_eq!(again.report.table_backups_created, 0);
    assert!(again.report.rpo_seconds.contains_key(&format!("{TABLE}/{opted}")), "{:?}", again.report.rpo_seconds);
    assert!(!again.report.has_failures(), "{:?}", again.report);
}

#[tokio::test]
async fn the_suite_deletes_only_its_own_expired_table_backups() {
    let tag = unique("ddb-exp");
    let vars = vars(
        &tag,
        r#"{"tb":{"tableBackups":true,"retentionDays":1,"minKeep":1}}"#,
        &[("SELFHEAL_BACKUP_S3", "false"), ("SELFHEAL_BACKUP_MAX_DELETE_PERCENT", "100")],
    );
    let e = enforcer(&vars).await;
    let ddb = e.ctx().aws.dynamodb();
    let t = table(&ddb, &[(&tag, "tb"), OPT_IN]).await;
    // The owner's own backup, as old as the suite's first, and one named like the suite's but not.
    ddb.create_backup().table_name(&t).backup_name("owners-nightly").send().await.unwrap();
    ddb.create_backup().table_name(&t).backup_name(format!("selfheal-{t}-manual")).send().await.unwrap();
    let t0 = Utc::now();
    let first_window = selfheal::backup::time_bucket(t0 + Duration::days(3), &e_policy());
    let mut deleted = 0;
    // Day 0: the owner's backups are fresh, none is due. Days 3 and 6: one each. Day 9: another, and
    // the day-3 one (expired, not the newest) goes.
    for day in [0, 3, 6, 9] {
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let s = e.sweep(&schedule(), false, t0 + Duration::days(day)).await.unwrap();
        assert!(!s.report.has_failures(), "{:?}", s.report);
        deleted += s.report.table_backups_deleted;
    }
    let names = backup_names(&ddb, &t).await;
    assert_eq!(deleted, 1, "the first suite backup, expired and not the newest: {names:?}");
    assert!(names.contains(&"owners-nightly".to_string()), "the owner's backup stays: {names:?}");
    assert!(names.contains(&format!("selfheal-{t}-manual")), "a look-alike name is not the suite's: {names:?}");
    let ours: Vec<&String> = names.iter().filter(|n| selfheal::backup::is_suite_backup(n, &t)).collect();
    assert_eq!(ours.len(), 2, "three taken, the oldest deleted: {names:?}");
    assert!(!names.iter().any(|n| n.ends_with(&format!("-{}", first_window))), "the oldest went: {names:?}");
}

#[tokio::test]
async fn a_bucket_gets_versioning_and_the_suites_lifecycle_rule_and_the_owners_rule_stays_as_it_was() {
    let tag = unique("s3");
    let vars = vars(&tag, r#"{"keep":{"noncurrentVersionDays":9}}"#, &[("SELFHEAL_BACKUP_DYNAMODB", "false")]);
    let e = enforcer(&vars).await;
    let s3 = e.ctx().aws.s3();
    let b = bucket(&s3, "us-east-1", &[(&tag, "keep"), OPT_IN]).await;
    let policy_only = bucket(&s3, "us-east-1", &[(&tag, "keep")]).await;
    s3.put_bucket_lifecycle_configuration()
        .bucket(&b)
        .lifecycle_configuration(BucketLifecycleConfiguration::builder().rules(owners_rule()).build().unwrap())
        .send()
        .await
        .unwrap();
    let before = lifecycle(&s3, &b).await;
    assert_eq!(before.len(), 1);

    let s = e.sweep(&schedule(), false, Utc::now()).await.unwrap();
    assert!(!s.report.has_failures(), "{:?}", s.report);
    assert_eq!(versioning(&s3, &b).await, Some(BucketVersioningStatus::Enabled));
    let after = lifecycle(&s3, &b).await;
    assert_eq!(after.len(), 2, "{after:?}");
    let owners = after.iter().find(|r| r.id() == Some("owner-logs-expire")).expect("the owner's rule is there");
    assert_eq!(owners, &before[0], "the owner's rule exactly as it was");
    let ours = after.iter().find(|r| r.id() == Some(LIFECYCLE_RULE_ID)).expect("our rule");
    assert_eq!(ours.noncurrent_version_expiration().and_then(|n| n.noncurrent_days()), Some(9));
    assert_eq!(tally(report(&s.envelopes), BUCKET, "fixed"), 1);
    assert_eq!(tally(report(&s.envelopes), BUCKET, "notOptedIn"), 1);
    assert_eq!(versioning(&s3, &policy_only).await, None, "a bucket not opted in is left alone");
    assert!(lifecycle(&s3, &policy_only).await.is_empty());

    // Again: compliant, nothing written.
    e.ctx().aws.calls.clear();
    let again = e.sweep(&schedule(), false, Utc::now()).await.unwrap();
    let calls = e.ctx().aws.calls.calls();
    assert!(!calls.iter().any(|c| c.starts_with("s3:Put")), "{calls:?}");
    assert_eq!(tally(report(&again.envelopes), BUCKET, "compliant"), 1);
    assert_eq!(lifecycle(&s3, &b).await, after);
}

#[tokio::test]
async fn replication_missing_is_reported_created_only_when_the_policy_says_so_and_a_missing_destination_is_named() {
    let tag = unique("s3-rep");
    let sdk = sdk_config().await;
    let dr = Aws::from_sdk_config(sdk.clone()).in_region("us-west-2").s3();
    let dest = bucket(&dr, "us-west-2", &[]).await;
    let gone = unique("no-such-bucket");
    let policies = format!(
        r#"{{"rep":{{"replicationDestination":"arn:aws:s3:::{dest}"}},
            "mk":{{"replicationDestination":"arn:aws:s3:::{dest}","replicationRole":"selfheal-replication-dr","createReplication":true}},
            "gone":{{"replicationDestination":"arn:aws:s3:::{gone}","replicationRole":"selfheal-replication-dr","createReplication":true}}}}"#
    );
    let vars = vars(&tag, &policies, &[("SELFHEAL_BACKUP_DYNAMODB", "false")]);
    let e = enforcer(&vars).await;
    let s3 = e.ctx().aws.s3();
    let reported = bucket(&s3, "us-east-1", &[(&tag, "rep"), OPT_IN]).await;
    let created = bucket(&s3, "us-east-1", &[(&tag, "mk"), OPT_IN]).await;
    let to_gone = bucket(&s3, "us-east-1", &[(&tag, "gone"), OPT_IN]).await;
    // The owner's rule to a bucket that does not exist (S3 wants versioning before replication).
    let bad_rule = bucket(&s3, "us-east-1", &[(&tag, "rep"), OPT_IN]).await;
    enable_versioning(&s3, &bad_rule).await;
    let rule = ReplicationRule::builder()
        .id("owners-rule")
        .priority(1)
        .status(ReplicationRuleStatus::Enabled)
        .filter(ReplicationRuleFilter::builder().prefix("").build())
        .delete_marker_replication(
            DeleteMarkerReplication::builder().status(DeleteMarkerReplicationStatus::Disabled).build(),
        )
        .destination(Destination::builder().bucket(format!("arn:aws:s3:::{gone}")).build().unwrap())
        .build()
        .unwrap();
    s3.put_bucket_replication()
        .bucket(&bad_rule)
        .replication_configuration(
            ReplicationConfiguration::builder()
                .role("arn:aws:iam::123456789012:role/owners-replication")
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let s = e.sweep(&schedule(), false, Utc::now()).await.unwrap();
    let on = |b: &str| -> Envelope {
        let d = for_target(&s.envelopes, b);
        assert_eq!(d.len(), 1, "{b}: {d:?}");
        d[0].clone()
    };
    let r = on(&reported);
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert!(r.reason.contains("replication missing: policy rep wants replication to"), "{}", r.reason);
    assert!(s3.get_bucket_replication().bucket(&reported).send().await.is_err(), "reported, not created");
    assert_eq!(versioning(&s3, &reported).await, Some(BucketVersioningStatus::Enabled), "the rest is still done");

    let c = on(&created);
    assert_eq!(c.outcome, Outcome::Acted, "{c:?}");
    let conf = s3.get_bucket_replication().bucket(&created).send().await.unwrap();
    let conf = conf.replication_configuration().unwrap();
    assert_eq!(
        conf.role(),
        "arn:aws:iam::123456789012:role/selfheal-replication-dr",
        "a role name, in the bucket's account"
    );
    assert_eq!(conf.rules()[0].id(), Some("selfheal-replication"));
    assert_eq!(conf.rules()[0].destination().unwrap().bucket(), format!("arn:aws:s3:::{dest}"));

    let g = on(&to_gone);
    assert_eq!(g.outcome, Outcome::Failed);
    assert!(g.reason.contains(&format!("its destination bucket {gone} does not exist: not created")), "{}", g.reason);
    assert!(s3.get_bucket_replication().bucket(&to_gone).send().await.is_err());

    let bad = on(&bad_rule);
    assert_eq!(bad.outcome, Outcome::Failed);
    assert!(
        bad.reason.contains(&format!("replication rule owners-rule replicates to bucket {gone} that does not exist")),
        "{}",
        bad.reason
    );
    let kept = s3.get_bucket_replication().bucket(&bad_rule).send().await.unwrap();
    assert_eq!(
        kept.replication_configuration().unwrap().rules()[0].id(),
        Some("owners-rule"),
        "the owner's replication is never changed"
    );

    let rep = report(&s.envelopes);
    assert_eq!(tally(rep, BUCKET, "failed"), 3, "{:?}", rep.details);
    assert_eq!(tally(rep, BUCKET, "fixed"), 1);
    assert_eq!(rep.outcome, Outcome::Failed);
    for b in [&reported, &to_gone, &bad_rule] {
        assert!(s.report.failures.contains_key(b.as_str()), "{b} named in the report: {:?}", s.report.failures);
    }
}

#[tokio::test]
async fn a_dry_run_changes_no_table_and_no_bucket() {
    let tag = unique("ds-dry");
    let vars = vars(&tag, r#"{"tb":{"tableBackups":true}}"#, &[]);
    let e = enforcer(&vars).await;
    let (ddb, s3) = (e.ctx().aws.dynamodb(), e.ctx().aws.s3());
    let t = table(&ddb, &[(&tag, "tb"), OPT_IN]).await;
    let b = bucket(&s3, "us-east-1", &[(&tag, "tb"), OPT_IN]).await;
    let s = e.sweep(&schedule(), true, Utc::now()).await.unwrap();
    assert!(!pitr(&ddb, &t).await.0);
    assert!(!protected(&ddb, &t).await && backup_names(&ddb, &t).await.is_empty());
    assert_eq!(versioning(&s3, &b).await, None);
    assert!(lifecycle(&s3, &b).await.is_empty());
    let r = report(&s.envelopes);
    assert_eq!(r.outcome, Outcome::DryRun, "{:?}", r.details);
    assert_eq!((tally(r, TABLE, "wouldFix"), tally(r, BUCKET, "wouldFix")), (1, 1), "{:?}", r.details);
    let d = for_target(&s.envelopes, &t);
    assert!(d[0].reason.starts_with("would turn point-in-time recovery on"), "{}", d[0].reason);
    assert_eq!(d[0].details["wouldProtect"], true);
    let calls = e.ctx().aws.calls.calls();
    for op in
        ["dynamodb:UpdateContinuousBackups", "dynamodb:UpdateTable", "dynamodb:CreateBackup", "s3:PutBucketVersioning"]
    {
        assert!(!calls.iter().any(|c| c == op), "{op} in a dry run: {calls:?}");
    }
}

#[tokio::test]
async fn three_accounts_in_two_regions_each_table_and_bucket_swept_once_by_its_own_region() {
    const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
    let tag = unique("ds-fleet");
    let mut places = Vec::new();
    for account in ["123456789012", "111111111111", "222222222222"] {
        let sdk = if account == "123456789012" { sdk_config().await } else { in_account(account).await };
        for region in REGIONS {
            let aws = Aws::from_sdk_config(sdk.clone()).in_region(region);
            let t = table(&aws.dynamodb(), &[(&tag, "silver"), OPT_IN]).await;
            let b = bucket(&aws.s3(), region, &[(&tag, "silver"), OPT_IN]).await;
            places.push((aws, t, b));
        }
    }
    let vars = vars(
        &tag,
        "{}",
        &[("SELFHEAL_ACCOUNTS", "111111111111,222222222222"), ("SELFHEAL_BACKUP_REGIONS", "us-east-1,eu-west-1")],
    );
    let e = enforcer(&vars).await;
    let out = e.handle(&schedule_event()).await.unwrap();
    let d = decisions(&out);
    let reports: Vec<&Envelope> = d.iter().filter(|e| e.action == "compliance-report").collect();
    assert_eq!(reports.len(), 6, "one report per account and region");
    for (aws, t, b) in &places {
        assert_eq!(pitr(&aws.dynamodb(), t).await, (true, Some(14)), "silver: 14 days of PITR");
        assert!(protected(&aws.dynamodb(), t).await);
        assert_eq!(versioning(&aws.s3(), b).await, Some(BucketVersioningStatus::Enabled));
        assert_eq!(for_target(&d, t).len(), 1, "{t} decided once");
        assert_eq!(for_target(&d, b).len(), 1, "{b} decided once, by its own region's sweep");
    }
    let fixed = |kind: &str| reports.iter().map(|r| tally(r, kind, "fixed")).sum::<u64>();
    assert_eq!((fixed(TABLE), fixed(BUCKET)), (6, 6));
}

fn schedule_event() -> Value {
    harness::event(
        "schedule-backup-sweep.json",
        &[("53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", &uuid::Uuid::new_v4().to_string())],
    )
}

/// backup-enforcer whose every call goes through a fault proxy in front of moto.
async fn enforcer_behind(proxy: &FaultProxy, vars: &[(&str, &str)]) -> BackupEnforcer {
    let aws = Aws::from_sdk_config(harness::sdk_config_at(&proxy.endpoint).await);
    let ctx = harness::ctx_with(selfheal::backup::FUNCTION, vars, aws).await;
    let mut e = harness::env(vars);
    let cfg = BackupConfig::read(&mut e);
    e.finish().expect("backup configuration is valid");
    BackupEnforcer::new(ctx, cfg)
}

/// `DescribeTable` of `name` as DynamoDB answers it (API reference), with this status and replicas.
fn described(name: &str, status: &str, replicas: Value) -> String {
    serde_json::json!({"Table": {
        "TableName": name, "TableArn": format!("arn:aws:dynamodb:us-east-1:123456789012:table/{name}"),
        "TableStatus": status, "DeletionProtectionEnabled": false, "ItemCount": 0, "TableSizeBytes": 0,
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        "Replicas": replicas
    }})
    .to_string()
}

#[tokio::test]
async fn an_updating_table_is_refused_by_name_and_a_replica_not_active_is_critical() {
    let proxy = FaultProxy::start(&harness::moto_endpoint(), 29).await;
    let tag = unique("ddb");
    let vars = vars(&tag, r#"{"tb":{"tableBackups":true}}"#, &[("SELFHEAL_BACKUP_S3", "false")]);
    let e = enforcer_behind(&proxy, &vars).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let (updating, global) = (table(&ddb, &[(&tag, "tb"), OPT_IN]).await, table(&ddb, &[(&tag, "tb"), OPT_IN]).await);
    let answer = |body: String| Fault::Answer { body };
    proxy.add(
        Rule::new("DescribeTable", answer(described(&updating, "UPDATING", serde_json::json!([]))), Times::Always)
            .when(&updating),
    );
    let replicas = serde_json::json!([{"RegionName": "us-east-1", "ReplicaStatus": "ACTIVE"},
                                      {"RegionName": "us-west-2", "ReplicaStatus": "CREATING"}]);
    proxy.add(Rule::new("DescribeTable", answer(described(&global, "ACTIVE", replicas)), Times::Always).when(&global));

    let out = e.sweep(&schedule(), false, Utc::now()).await.unwrap();
    let refused = for_target(&out.envelopes, &updating);
    assert_eq!(refused.len(), 1, "{:?}", out.envelopes);
    assert_eq!(refused[0].outcome, Outcome::Refused, "{:?}", refused[0]);
    assert!(refused[0].reason.contains("UPDATING"), "{}", refused[0].reason);
    assert_eq!(refused[0].details["guard"], "table-status");
    assert!(!pitr(&ddb, &updating).await.0, "nothing done to the UPDATING table");
    assert!(!protected(&ddb, &updating).await && backup_names(&ddb, &updating).await.is_empty());

    let critical = for_target(&out.envelopes, &global);
    assert_eq!(critical.len(), 1, "{:?}", out.envelopes);
    assert_eq!((critical[0].outcome, critical[0].severity), (Outcome::Failed, selfheal::Severity::Critical));
    assert!(
        critical[0].reason.contains("us-west-2") && critical[0].reason.contains("CREATING"),
        "{}",
        critical[0].reason
    );
    // The table's own protection is still made: the replica is reported, not a reason to do nothing.
    assert!(pitr(&ddb, &global).await.0);
    assert!(proxy.faulted("DescribeTable") >= 2, "both tables were described through the proxy's answers");
}

#[tokio::test]
async fn a_bucket_another_account_owns_is_refused_by_name_and_nothing_is_done() {
    let proxy = FaultProxy::start(&harness::moto_endpoint(), 29).await;
    let tag = unique("s3");
    let vars = vars(&tag, r#"{"bk":{}}"#, &[("SELFHEAL_BACKUP_DYNAMODB", "false")]);
    let e = enforcer_behind(&proxy, &vars).await;
    let s3 = Aws::from_sdk_config(sdk_config().await).s3();
    let (foreign, own) = (
        bucket(&s3, "us-east-1", &[(&tag, "bk"), OPT_IN]).await,
        bucket(&s3, "us-east-1", &[(&tag, "bk"), OPT_IN]).await,
    );
    // S3 refuses every call that names the bucket with another ExpectedBucketOwner (API reference:
    // 403 AccessDenied); moto does not check it.
    let denied = Fault::RejectRest { status: 403, code: "AccessDenied".into(), message: "Access Denied".into() };
    for method in ["GET", "PUT"] {
        // (The SDK's path-style bucket requests end in a slash: `GET /<bucket>/?tagging`.)
        proxy.add(Rule::new(&format!("{method} /{foreign}/"), denied.clone(), Times::Always));
    }

    let out = e.sweep(&schedule(), false, Utc::now()).await.unwrap();
    let refused = for_target(&out.envelopes, &foreign);
    assert_eq!(refused.len(), 1, "{:?}", out.envelopes);
    let seen: Vec<String> = proxy.seen().into_iter().map(|s| s.operation).filter(|o| o.contains(&foreign)).collect();
    assert_eq!(refused[0].outcome, Outcome::Refused, "{:?} {seen:?}", refused[0]);
    assert!(
        refused[0].reason.contains("AccessDenied") || refused[0].reason.contains("another account"),
        "{}",
        refused[0].reason
    );
    assert_eq!(proxy.count(&format!("PUT /{foreign}/")), 0, "nothing written to the foreign bucket");
    assert_eq!(versioning(&s3, &foreign).await, None, "its versioning untouched");
    assert_eq!(versioning(&s3, &own).await, Some(BucketVersioningStatus::Enabled), "the own bucket is swept");
}
