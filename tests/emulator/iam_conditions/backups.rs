//! backup-enforcer's snapshots, DR copies and their expiry against moto: every call passes the
//! conditions of its role, judged on the tags read before it (the deletes refused had the snapshots
//! lacked `selfheal:created-by`, the snapshots refused under another opt-in value).

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use harness::iam::{assert_allowed, assert_still_known, evaluate, record, Deployment};
use harness::{sdk_config, unique};
use serde_json::json;

/// backup-enforcer over three sweeps two days apart, with a DR region and a one-day retention:
/// EBS and DB snapshots taken (tagged on create), copied to the DR region, the expired ones and
/// their copies deleted (the deletes that once carried a condition on a tag never written), and
/// retention and plans set. Every call passes its statement's conditions.
#[tokio::test]
async fn backups_copies_and_their_expiry_pass_the_conditions() {
    use chrono::{Duration, Utc};
    let tag = unique("iam-bk");
    let vars = [
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_POLICIES", r#"{"drp":{"copyRegion":"us-west-2","retentionDays":1,"minKeep":1}}"#),
        ("SELFHEAL_BACKUP_MAX_DELETE_PERCENT", "100"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
    ];
    let sdk = sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let rds = aws_sdk_rds::Client::new(&sdk);
    let spec = TagSpecification::builder()
        .resource_type(ResourceType::Volume)
        .tags(Tag::builder().key(&tag).value("drp").build())
        .tags(Tag::builder().key("selfheal:enabled").value("true").build())
        .build();
    ec2.create_volume().availability_zone("us-east-1a").size(8).tag_specifications(spec).send().await.unwrap();
    let rds_tag = |k: &str, v: &str| aws_sdk_rds::types::Tag::builder().key(k).value(v).build();
    rds.create_db_instance()
        .db_instance_identifier(unique("iam-db"))
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .master_username("admin")
        .master_user_password("password123")
        .allocated_storage(20)
        .backup_retention_period(0)
        .tags(rds_tag(&tag, "drp"))
        .tags(rds_tag("selfheal:enabled", "true"))
        .send()
        .await
        .unwrap();

    let ctx = harness::ctx("backup-enforcer", &vars).await;
    let mut env = harness::env(&vars);
    let cfg = selfheal::backup::BackupConfig::read(&mut env);
    env.finish().unwrap();
    let e = selfheal::backup::BackupEnforcer::new(ctx, cfg);
    record(&e.ctx().aws.calls);
    let schedule = || {
        let id = uuid::Uuid::new_v4().to_string();
        let ev = harness::event("schedule-backup-sweep.json", &[("53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", &id)]);
        selfheal::parse_event(&ev).unwrap().remove(0)
    };
    let t0 = Utc::now();
    let mut deleted = 0;
    for day in [0, 2, 4] {
        // Snapshots carry the emulator's real creation times: a pause keeps their order plain.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let sweep = e.sweep(&schedule(), false, t0 + Duration::days(day)).await.unwrap();
        deleted += sweep.report.snapshots_deleted;
    }
    assert!(deleted >= 2, "the expired snapshot and its copy were deleted");
    let eval = assert_allowed(e.ctx());
    assert_still_known(&eval, "backup-enforcer", &["backup:DescribeBackupVault", "backup:CreateBackupVault"]);
    // The tags read before each call are what the conditions were judged on: the same calls, had the
    // snapshots lacked selfheal:created-by or the volumes another opt-in value, are refused.
    let records = e.ctx().aws.calls.records();
    let mut untagged = records.clone();
    for r in untagged.iter_mut().filter(|r| r.operation.ends_with("DeleteSnapshot")) {
        r.observed = Some(json!({}));
    }
    let deployment = Deployment::of(&e.ctx().config);
    let refused = evaluate(&deployment, &untagged).unwrap();
    for op in ["ec2:DeleteSnapshot", "rds:DeleteDBSnapshot"] {
        let called = records.iter().any(|r| r.operation == op);
        assert_eq!(refused.denied.iter().any(|(a, _)| a == op), called, "{op}: {:#?}", refused.denials);
    }
    let other = Deployment { opt_in_value: "yes".into(), ..deployment };
    let refused = evaluate(&other, &records).unwrap();
    assert!(refused.denied.iter().any(|(a, r)| a == "ec2:CreateSnapshot" && r.contains(":volume/")));
    for k in [
        "hub/SnapshotOptedInVolumes ec2:CreateSnapshot",
        "hub/TagNewSnapshots ec2:CreateTags",
        "hub/NewSnapshots ec2:CopySnapshot",
        "hub/ExpireSuiteSnapshots ec2:DeleteSnapshot",
        "hub/OptedInDatabases rds:CreateDBSnapshot",
        "hub/NewDbSnapshots rds:AddTagsToResource",
    ] {
        assert!(eval.by_statement.contains_key(k), "{k} was not exercised: {}", eval.summary());
    }
}
