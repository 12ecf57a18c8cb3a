//! The `restore-test` drill (issue #29) against moto, each test in an account of its own: every kind
//! the suite backs up (EBS snapshot → volume, RDS snapshot → instance, Aurora cluster snapshot →
//! cluster, DynamoDB point in time → table, S3 previous version → scratch object) restored, verified
//! against its recovery point, timed, scored and deleted; a resource without a recovery point, a
//! restore AWS refuses and a restore whose answer is lost (through the fault proxy), a dry run, and an
//! earlier test's leftovers.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PointInTimeRecoverySpecification,
    ScalarAttributeType,
};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use harness::proxy::{Fault, FaultProxy, Rule, Times};
use harness::{unique, OPT_IN};
use selfheal::clients::Aws;
use selfheal::drill::deliver::{BoxFuture, Deliverer};
use selfheal::drill::restore::SCRATCH_TAG;
use selfheal::drill::{self, Drill, DrillConfig, CONFIRM_PHRASE};
use serde_json::{json, Value};

const POLICY_TAG: &str = "selfheal:backup";

/// A fresh 12-digit account: nothing else in moto lives there.
fn fresh_account() -> String {
    let n = uuid::Uuid::new_v4().as_u128() % 900_000_000_000 + 100_000_000_000;
    n.to_string()
}

/// The drill acting in `sdk`'s account (its ledger there too), delivering nothing.
async fn drill_in(sdk: aws_config::SdkConfig, vars: &[(&str, &str)]) -> Drill {
    let aws = Aws::from_sdk_config(sdk);
    let ctx = harness::ctx_with(drill::FUNCTION, vars, aws).await;
    let mut env = harness::env(vars);
    let mut cfg = DrillConfig::read(&mut env);
    env.finish().expect("valid drill settings");
    cfg.recovery_timeout = Duration::from_secs(20);
    cfg.poll_interval = Duration::from_millis(100);
    let deliverer = Deliverer::InProcess(Arc::new(|function: String, _event: Value| -> BoxFuture {
        Box::pin(
            async move { Err(selfheal::Error::Precondition(format!("a restore test delivers nothing to {function}"))) },
        )
    }));
    Drill { ctx, cfg, deliverer }
}

fn invocation(mode: &str) -> Value {
    json!({"source": "selfheal.manual", "action": "drill",
           "params": {"scenario": "restore-test", "mode": mode, "confirm": CONFIRM_PHRASE}})
}

fn ec2_tags(rt: ResourceType, tags: &[(&str, &str)]) -> TagSpecification {
    let mut b = TagSpecification::builder().resource_type(rt);
    for (k, v) in tags {
        b = b.tags(Tag::builder().key(*k).value(*v).build());
    }
    b.build()
}

fn rds_tags(tags: &[(&str, &str)]) -> Vec<aws_sdk_rds::types::Tag> {
    tags.iter().map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(*k).value(*v).build()).collect()
}

/// A volume under `policy` (opted in), with a snapshot when `snapshot`.
async fn volume(aws: &Aws, policy: &str, snapshot: bool) -> String {
    let ec2 = aws.ec2();
    let v = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(8)
        .tag_specifications(ec2_tags(ResourceType::Volume, &[(POLICY_TAG, policy), OPT_IN]))
        .send()
        .await
        .unwrap();
    let id = v.volume_id().unwrap().to_string();
    if snapshot {
        ec2.create_snapshot().volume_id(&id).send().await.unwrap();
    }
    id
}

async fn database(aws: &Aws, policy: &str) -> String {
    let id = unique("orders");
    aws.rds()
        .create_db_instance()
        .db_instance_identifier(&id)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .master_username("admin")
        .master_user_password("password123")
        .allocated_storage(20)
        .set_tags(Some(rds_tags(&[(POLICY_TAG, policy), OPT_IN])))
        .send()
        .await
        .unwrap();
    aws.rds()
        .create_db_snapshot()
        .db_instance_identifier(&id)
        .db_snapshot_identifier(format!("{id}-manual"))
        .send()
        .await
        .unwrap();
    id
}

async fn cluster(aws: &Aws, policy: &str) -> String {
    let id = unique("ledger-cluster");
    aws.rds()
        .create_db_cluster()
        .db_cluster_identifier(&id)
        .engine("aurora-postgresql")
        .master_username("admin")
        .master_user_password("password123")
        .set_tags(Some(rds_tags(&[(POLICY_TAG, policy), OPT_IN])))
        .send()
        .await
        .unwrap();
    aws.rds()
        .create_db_cluster_snapshot()
        .db_cluster_identifier(&id)
        .db_cluster_snapshot_identifier(format!("{id}-manual"))
        .send()
        .await
        .unwrap();
    id
}

/// A table under `policy` holding `items` items, point-in-time recovery on when `pitr`.
async fn table(aws: &Aws, policy: &str, items: usize, pitr: bool) -> String {
    let ddb = aws.dynamodb();
    let name = unique("sessions");
    ddb.create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("id").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("id").key_type(KeyType::Hash).build().unwrap())
        .tags(aws_sdk_dynamodb::types::Tag::builder().key(POLICY_TAG).value(policy).build().unwrap())
        .tags(aws_sdk_dynamodb::types::Tag::builder().key(OPT_IN.0).value(OPT_IN.1).build().unwrap())
        .send()
        .await
        .unwrap();
    if pitr {
        ddb.update_continuous_backups()
            .table_name(&name)
            .point_in_time_recovery_specification(
                PointInTimeRecoverySpecification::builder().point_in_time_recovery_enabled(true).build().unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
    for i in 0..items {
        ddb.put_item().table_name(&name).item("id", AttributeValue::S(format!("item-{i}"))).send().await.unwrap();
    }
    name
}

const FIRST: &[u8] = b"<h1>version one</h1>\n";
const SECOND: &[u8] = b"<h1>version two</h1>\n";

/// A versioned bucket under `policy` whose `index.html` was written twice.
async fn bucket(aws: &Aws, policy: &str) -> String {
    use aws_sdk_s3::types::{BucketVersioningStatus, Tagging, VersioningConfiguration};
    let s3 = aws.s3();
    let name = unique("static");
    s3.create_bucket().bucket(&name).send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket(&name)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .unwrap();
    let tag = |k: &str, v: &str| aws_sdk_s3::types::Tag::builder().key(k).value(v).build().unwrap();
    let tagging = Tagging::builder().tag_set(tag(POLICY_TAG, policy)).tag_set(tag(OPT_IN.0, OPT_IN.1)).build().unwrap();
    s3.put_bucket_tagging().bucket(&name).tagging(tagging).send().await.unwrap();
    for body in [FIRST, SECOND] {
        s3.put_object()
            .bucket(&name)
            .key("index.html")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(body))
            .send()
            .await
            .unwrap();
    }
    name
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// What a restore test left in the account: scratch volumes, DB instances, clusters, tables, objects.
async fn scratch_left(aws: &Aws, bucket: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let vols = aws
        .ec2()
        .describe_volumes()
        .filters(Filter::builder().name("tag-key").values(SCRATCH_TAG).build())
        .send()
        .await
        .unwrap();
    out.extend(vols.volumes().iter().filter_map(|v| v.volume_id().map(str::to_string)));
    let dbs = aws.rds().describe_db_instances().send().await.unwrap();
    out.extend(
        dbs.db_instances()
            .iter()
            .filter_map(|d| d.db_instance_identifier())
            .filter(|i| i.starts_with("selfheal-restore-"))
            .map(str::to_string),
    );
    let clusters = aws.rds().describe_db_clusters().send().await.unwrap();
    out.extend(
        clusters
            .db_clusters()
            .iter()
            .filter_map(|c| c.db_cluster_identifier())
            .filter(|i| i.starts_with("selfheal-restore-"))
            .map(str::to_string),
    );
    let tables = aws.dynamodb().list_tables().send().await.unwrap();
    out.extend(tables.table_names().iter().filter(|n| n.starts_with("selfheal-restore-")).cloned());
    if let Some(b) = bucket {
        let v = aws.s3().list_object_versions().bucket(b).prefix("selfheal-restore-").send().await.unwrap();
        out.extend(v.versions().iter().filter_map(|v| v.key().map(str::to_string)));
        out.extend(v.delete_markers().iter().filter_map(|m| m.key().map(str::to_string)));
    }
    out
}

fn restores(out: &Value) -> &Vec<Value> {
    out["reports"][0]["restores"].as_array().expect("the report lists its restores")
}

fn of_kind<'a>(out: &'a Value, kind: &str) -> &'a Value {
    restores(out).iter().find(|r| r["kind"] == kind).unwrap_or_else(|| panic!("no {kind} restore in {out}"))
}

#[tokio::test]
async fn every_kind_is_restored_verified_timed_scored_and_its_scratch_deleted() {
    let account = fresh_account();
    let sdk = harness::in_account(&account).await;
    let aws = Aws::from_sdk_config(sdk.clone());
    let vol = volume(&aws, "gold", true).await;
    let db = database(&aws, "gold").await;
    let cl = cluster(&aws, "gold").await;
    let tbl = table(&aws, "gold", 7, true).await;
    let bkt = bucket(&aws, "gold").await;
    // Tagged with a policy but not opted in: the suite does not back it up, the test leaves it alone.
    let ignored = aws
        .ec2()
        .create_volume()
        .availability_zone("us-east-1a")
        .size(4)
        .tag_specifications(ec2_tags(ResourceType::Volume, &[(POLICY_TAG, "gold")]))
        .send()
        .await
        .unwrap();
    aws.ec2().create_snapshot().volume_id(ignored.volume_id().unwrap()).send().await.unwrap();

    // The hub is this account: the drill's role is judged as deployed here.
    let drill = drill_in(sdk, &[("SELFHEAL_HOME_ACCOUNT", &account)]).await;
    drill.ctx.aws.calls.clear();
    // Every call judged as IAM would, conditions included, against the drill's role (harness::iam).
    harness::iam::record(&drill.ctx.aws.calls);
    let out = drill.handle(&invocation("live")).await.expect("the drill runs");
    // The report as the drill prints it (README § Benchmarks quotes its restore times: `--nocapture`).
    eprintln!("{}", out["text"].as_str().unwrap_or_default());
    let times: Vec<String> =
        restores(&out).iter().map(|r| format!("{}={}ms", r["kind"].as_str().unwrap_or("?"), r["restoreMs"])).collect();
    eprintln!("restore times: {}", times.join(" "));
    assert_eq!(out["passed"], true, "{}", out["text"]);
    // Every call the restore test made is allowed by the drill's role, with the tags it writes and the
    // tags on what it deletes, and declared.
    let eval = harness::iam::assert_allowed(&drill.ctx);
    for sid in [
        "hub/RestoreTestVolumes ec2:CreateVolume",
        "hub/RestoreTestDeleteVolumes ec2:DeleteVolume",
        "hub/RestoreTestDatabases rds:RestoreDBInstanceFromDBSnapshot",
        "hub/RestoreTestDeleteDatabases rds:DeleteDBCluster",
        "hub/RestoreTestTableSources dynamodb:RestoreTableToPointInTime",
        "hub/RestoreTestTables dynamodb:DeleteTable",
        "hub/RestoreTestReadVersions s3:GetObjectVersion",
        "hub/RestoreTestObjects s3:DeleteObjectVersion",
    ] {
        assert!(eval.by_statement.contains_key(sid), "{sid} was not evaluated: {:#?}", eval.by_statement);
    }
    let declared = crate::infra::common::declared_actions();
    for call in drill.ctx.aws.calls.calls() {
        assert!(crate::infra::template::is_granted("drill", &call), "{call} is not granted to the drill role");
        let action = crate::infra::template::iam_action(&call);
        assert!(declared["drill"].contains(&action), "{action} is not in infra/iam-actions.json");
    }
    let kinds: Vec<&str> = restores(&out).iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ebs-volume", "rds-instance", "rds-cluster", "dynamodb-table", "s3-object"], "{out}");
    assert_eq!(of_kind(&out, "ebs-volume")["source"], vol.as_str());
    assert_eq!(of_kind(&out, "rds-instance")["source"], db.as_str());
    assert_eq!(of_kind(&out, "rds-cluster")["source"], cl.as_str());
    assert_eq!(of_kind(&out, "dynamodb-table")["source"], tbl.as_str());
    assert_eq!(of_kind(&out, "s3-object")["source"], format!("{bkt}/index.html"));
    for r in restores(&out) {
        assert!(r["restoreMs"].is_u64(), "timed: {r}");
        assert_eq!(r["cleaned"], true, "{r}");
        assert!(r["error"].is_null(), "{r}");
        assert!(r["scratch"].as_str().is_some_and(|s| s.contains("selfheal-restore-") || s.starts_with("vol-")), "{r}");
    }
    // Verified against the recovery point: the sizes, the items counted, the old version's content.
    assert!(of_kind(&out, "ebs-volume")["verified"].as_str().unwrap().contains("8 GiB"), "{out}");
    assert!(of_kind(&out, "rds-instance")["verified"].as_str().unwrap().contains("20 GiB"), "{out}");
    assert!(of_kind(&out, "dynamodb-table")["verified"].as_str().unwrap().contains("7 items as the source"), "{out}");
    let s3 = of_kind(&out, "s3-object")["verified"].as_str().unwrap().to_string();
    assert!(s3.contains(&md5_hex(FIRST)), "the previous version restored, not the current one: {s3}");
    assert!(!s3.contains(&md5_hex(SECOND)), "{s3}");

    // Scored against the Software targets: every restore and the scenario.
    let score = &out["scorecard"]["scores"][0];
    assert_eq!(score["scenario"], "restore-test");
    assert_eq!(score["disruption"], "Software");
    assert_eq!(score["rto"]["verdict"], "met", "{score}");
    assert_eq!(score["rpo"]["verdict"], "met", "{score}");
    let scored = score["restores"].as_array().unwrap();
    assert_eq!(scored.len(), 5);
    let s3_score = scored.iter().find(|r| r["kind"] == "s3-object").unwrap();
    assert_eq!(s3_score["rpo"]["verdict"], "not-measured", "a version's age is no data at risk: {s3_score}");
    assert!(out["text"].as_str().unwrap().contains("restore-test"), "{}", out["text"]);

    // Nothing left behind; the sources untouched.
    assert_eq!(scratch_left(&aws, Some(&bkt)).await, Vec::<String>::new());
    let items =
        aws.dynamodb().scan().table_name(&tbl).select(aws_sdk_dynamodb::types::Select::Count).send().await.unwrap();
    assert_eq!(items.count(), 7);
    let current = aws.s3().get_object().bucket(&bkt).key("index.html").send().await.unwrap();
    assert_eq!(current.body.collect().await.unwrap().into_bytes().as_ref(), SECOND);
    let dbs = aws.rds().describe_db_instances().db_instance_identifier(&db).send().await.unwrap();
    assert_eq!(dbs.db_instances().len(), 1);
}

#[tokio::test]
async fn a_resource_without_a_recovery_point_fails_the_test_by_name_and_a_dry_run_restores_nothing() {
    let sdk = harness::in_account(&fresh_account()).await;
    let aws = Aws::from_sdk_config(sdk.clone());
    let vol = volume(&aws, "silver", true).await;
    let never = volume(&aws, "gold", false).await;
    let drill = drill_in(sdk, &[]).await;

    let dry = drill.handle(&invocation("dry-run")).await.expect("the drill runs");
    assert_eq!(restores(&dry).len(), 2, "{dry}");
    assert!(restores(&dry).iter().all(|r| r["scratch"].is_null() && r["restoreMs"].is_null()), "{dry}");
    assert_eq!(scratch_left(&aws, None).await, Vec::<String>::new(), "a dry run creates nothing");
    assert_eq!(dry["scorecard"]["scores"][0]["rto"]["verdict"], "not-measured", "{dry}");

    let live = drill.handle(&invocation("live")).await.expect("the drill runs");
    assert_eq!(live["passed"], false, "{}", live["text"]);
    let missing = restores(&live).iter().find(|r| r["source"] == never.as_str()).expect("named");
    assert!(missing["error"].as_str().unwrap().contains("no recovery point"), "{missing}");
    let restored = restores(&live).iter().find(|r| r["source"] == vol.as_str()).expect("restored");
    assert_eq!(restored["cleaned"], true);
    assert!(restored["error"].is_null(), "{restored}");
    let score = &live["scorecard"]["scores"][0];
    assert_eq!(score["rpo"]["verdict"], "not-recovered", "{score}");
    assert!(score["rpo"]["why"].as_str().unwrap().contains(&never), "{score}");
    assert_eq!(scratch_left(&aws, None).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_refused_restore_is_a_missed_target_with_its_reason_and_a_lost_answer_leaves_nothing_behind() {
    let account = fresh_account();
    let sdk = harness::in_account(&account).await;
    let aws = Aws::from_sdk_config(sdk.clone());
    let vol = volume(&aws, "gold", true).await;
    let db = database(&aws, "gold").await;
    let proxy = FaultProxy::start(&harness::moto_endpoint(), 11).await;
    // RDS refuses the restore; EC2 makes the volume but its answer is lost on the way back (the SDK
    // retries, and may make a second).
    proxy.add(Rule::new(
        "RestoreDBInstanceFromDBSnapshot",
        Fault::Reject {
            status: 400,
            code: "StorageQuotaExceeded".into(),
            message: "The request would exceed the storage quota".into(),
        },
        Times::Always,
    ));
    proxy.add(Rule::new("CreateVolume", Fault::DropResponse, Times::First(1)));
    let via_proxy = sdk.to_builder().endpoint_url(&proxy.endpoint).build();
    let drill = drill_in(via_proxy, &[]).await;

    let out = drill.handle(&invocation("live")).await.expect("the drill runs");
    assert_eq!(out["passed"], false, "{}", out["text"]);
    let refused = of_kind(&out, "rds-instance");
    assert_eq!(refused["source"], db.as_str());
    assert!(refused["error"].as_str().unwrap().contains("StorageQuotaExceeded"), "{refused}");
    assert_eq!(refused["cleaned"], true, "nothing was made, nothing is left: {refused}");
    let score = &out["scorecard"]["scores"][0];
    assert_eq!(score["rto"]["verdict"], "not-recovered", "{score}");
    assert!(score["rto"]["why"].as_str().unwrap().contains("StorageQuotaExceeded"), "{score}");
    assert_eq!(proxy.faulted("CreateVolume"), 1, "the volume's first answer was lost");
    let ebs = of_kind(&out, "ebs-volume");
    assert_eq!(ebs["source"], vol.as_str());
    assert_eq!(ebs["cleaned"], true, "{ebs}");
    // Whatever the lost answer made is gone too.
    assert_eq!(scratch_left(&aws, None).await, Vec::<String>::new());
}

#[tokio::test]
async fn an_earlier_tests_leftovers_are_deleted_and_nothing_the_suite_did_not_create() {
    let sdk = harness::in_account(&fresh_account()).await;
    let aws = Aws::from_sdk_config(sdk.clone());
    let ec2 = aws.ec2();
    let make = |tags: Vec<(&'static str, String)>| {
        let ec2 = ec2.clone();
        async move {
            let mut b = TagSpecification::builder().resource_type(ResourceType::Volume);
            for (k, v) in tags {
                b = b.tags(Tag::builder().key(k).value(v).build());
            }
            let v = ec2
                .create_volume()
                .availability_zone("us-east-1b")
                .size(1)
                .tag_specifications(b.build())
                .send()
                .await
                .unwrap();
            v.volume_id().unwrap().to_string()
        }
    };
    let leftover =
        make(vec![(SCRATCH_TAG, "old-run".into()), ("Name", "selfheal-restore-vol-oldrun-vol-1".into())]).await;
    let named_only = make(vec![("Name", "selfheal-restore-vol-not-ours".into())]).await;
    let tagged_only = make(vec![(SCRATCH_TAG, "old-run".into()), ("Name", "someone-elses".into())]).await;
    // Nothing under a policy: the test itself restores nothing and fails, saying so.
    let drill = drill_in(sdk, &[("SELFHEAL_DRILL_RESTORE_LEFTOVER_MINUTES", "0")]).await;
    let out = drill.handle(&invocation("live")).await.expect("the drill runs");
    let injected = out["reports"][0]["injected"].to_string();
    assert!(injected.contains(&leftover), "the leftover is named: {injected}");
    let left: Vec<String> = ec2
        .describe_volumes()
        .volume_ids(&named_only)
        .volume_ids(&tagged_only)
        .send()
        .await
        .unwrap()
        .volumes()
        .iter()
        .filter_map(|v| v.volume_id().map(str::to_string))
        .collect();
    assert_eq!(left.len(), 2, "a volume with only one of the two marks is kept: {left:?}");
    let gone = ec2
        .describe_volumes()
        .filters(Filter::builder().name("volume-id").values(&leftover).build())
        .send()
        .await
        .unwrap();
    assert!(gone.volumes().is_empty(), "the leftover is deleted");
    assert_eq!(out["passed"], false);
    assert!(out["text"].as_str().unwrap().contains("no resource the suite backs up"), "{}", out["text"]);
}
