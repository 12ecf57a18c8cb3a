//! backup-enforcer's DynamoDB tables and S3 buckets (issue #29) against moto: every call passes the
//! conditions of its role: the table changes only on tables carrying the opt-in tag (refused under
//! another opt-in value), the bucket calls on this account's buckets (`s3:ResourceAccount`), the
//! replication role passed only to S3.

use harness::iam::{assert_allowed, evaluate, record, Deployment};
use harness::{sdk_config, unique};
use selfheal::clients::Aws;

#[tokio::test]
async fn table_and_bucket_protection_passes_the_conditions_and_table_changes_need_the_opt_in_tag() {
    use chrono::{Duration, Utc};
    let tag = unique("iam-ds");
    let sdk = sdk_config().await;
    let dr = Aws::from_sdk_config(sdk.clone()).in_region("us-west-2").s3();
    let dest = unique("iam-dr");
    dr.create_bucket()
        .bucket(&dest)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::UsWest2)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let policies = format!(
        r#"{{"ds":{{"tableBackups":true,"retentionDays":1,"minKeep":1,"replicationDestination":"arn:aws:s3:::{dest}",
            "replicationRole":"selfheal-replication-dr","createReplication":true}}}}"#
    );
    let vars = [
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_POLICIES", policies.as_str()),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_BACKUP_RDS", "false"),
        ("SELFHEAL_BACKUP_MAX_DELETE_PERCENT", "100"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
    ];
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("iam-tbl");
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, Tag,
    };
    ddb.create_table()
        .table_name(&table)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build().unwrap())
        .billing_mode(BillingMode::PayPerRequest)
        .tags(Tag::builder().key(&tag).value("ds").build().unwrap())
        .tags(Tag::builder().key("selfheal:enabled").value("true").build().unwrap())
        .send()
        .await
        .unwrap();
    let ctx = harness::ctx("backup-enforcer", &vars).await;
    let s3 = ctx.aws.s3();
    let bucket = unique("iam-bkt");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let tags = [(&tag, "ds"), (&"selfheal:enabled".to_string(), "true")]
        .iter()
        .map(|(k, v)| aws_sdk_s3::types::Tag::builder().key(k.as_str()).value(*v).build().unwrap())
        .collect();
    s3.put_bucket_tagging()
        .bucket(&bucket)
        .tagging(aws_sdk_s3::types::Tagging::builder().set_tag_set(Some(tags)).build().unwrap())
        .send()
        .await
        .unwrap();

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
    for day in [0, 3, 6] {
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let sweep = e.sweep(&schedule(), false, t0 + Duration::days(day)).await.unwrap();
        assert!(!sweep.report.has_failures(), "{:?}", sweep.report);
        deleted += sweep.report.table_backups_deleted;
    }
    assert_eq!(deleted, 1, "an expired suite backup was deleted");
    let eval = assert_allowed(e.ctx());
    for k in [
        "hub/ListTablesAndBackups tag:GetResources",
        "hub/ReadTables dynamodb:DescribeTable",
        "hub/ProtectOptedInTables dynamodb:UpdateContinuousBackups",
        "hub/ProtectOptedInTables dynamodb:UpdateTable",
        "hub/ProtectOptedInTables dynamodb:CreateBackup",
        "hub/ExpireSuiteTableBackups dynamodb:DeleteBackup",
        "hub/ListBuckets s3:ListAllMyBuckets",
        "hub/OwnBuckets s3:GetBucketTagging",
        "hub/OwnBuckets s3:PutBucketVersioning",
        "hub/OwnBuckets s3:PutLifecycleConfiguration",
        "hub/OwnBuckets s3:PutReplicationConfiguration",
        "hub/OwnBuckets s3:ListBucket",
        "hub/PassReplicationRole iam:PassRole",
    ] {
        assert!(eval.by_statement.contains_key(k), "{k} was not exercised: {}", eval.summary());
    }
    // The same calls under another opt-in value: the table changes are refused (the tags read before
    // each call are what the condition was judged on).
    let records = e.ctx().aws.calls.records();
    let deployment = Deployment::of(&e.ctx().config);
    let other = Deployment { opt_in_value: "yes".into(), ..deployment };
    let refused = evaluate(&other, &records).unwrap();
    for op in ["dynamodb:UpdateContinuousBackups", "dynamodb:UpdateTable", "dynamodb:CreateBackup"] {
        assert!(
            refused.denied.iter().any(|(a, r)| a == op && r.ends_with(&format!(":table/{table}"))),
            "{op}: {:#?}",
            refused.denials
        );
    }
}
