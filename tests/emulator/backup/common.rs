//! What the backup-enforcer tests share: an enforcer configured from test settings, its scheduled
//! trigger, volumes, databases and Aurora clusters tagged with a test's policy tag (and the suite's
//! opt-in tag), their snapshots, and readers of a sweep's envelopes and compliance report.

use std::collections::HashSet;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use harness::OPT_IN;
use harness::{ctx, env, event, unique};
use selfheal::backup::{BackupConfig, BackupEnforcer, FUNCTION};
use selfheal::{parse_event, Envelope, Trigger};
use serde_json::Value;

pub(super) async fn enforcer(vars: &[(&str, &str)]) -> BackupEnforcer {
    let ctx = ctx(FUNCTION, vars).await;
    let mut e = env(vars);
    let cfg = BackupConfig::read(&mut e);
    e.finish().expect("backup configuration is valid");
    BackupEnforcer::new(ctx, cfg)
}

/// Clients for the DR region the tests' policies copy to.
pub(super) async fn dr_aws() -> selfheal::clients::Aws {
    selfheal::clients::Aws::from_sdk_config(harness::sdk_config().await).in_region("us-west-2")
}

pub(super) fn schedule() -> Trigger {
    let id = uuid::Uuid::new_v4().to_string();
    parse_event(&event("schedule-backup-sweep.json", &[("53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", &id)]))
        .unwrap()
        .remove(0)
}

/// A volume with the policy tag and the suite's opt-in tag.
pub(super) async fn volume(ec2: &aws_sdk_ec2::Client, tag: &str, policy: &str) -> String {
    volume_tagged(ec2, &[(tag, policy), (OPT_IN.0, OPT_IN.1)]).await
}

pub(super) async fn volume_tagged(ec2: &aws_sdk_ec2::Client, tags: &[(&str, &str)]) -> String {
    let mut spec = TagSpecification::builder().resource_type(ResourceType::Volume);
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(*k).value(*v).build());
    }
    let v = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(8)
        .tag_specifications(spec.build())
        .send()
        .await
        .unwrap();
    v.volume_id().unwrap().to_string()
}

pub(super) fn suite_tags(volume: &str, policy: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(ResourceType::Snapshot)
        .tags(Tag::builder().key("selfheal:created-by").value("backup-enforcer").build())
        .tags(Tag::builder().key("selfheal:policy").value(policy).build())
        .tags(Tag::builder().key("selfheal:source").value(volume).build())
        .build()
}

pub(super) async fn snapshot(ec2: &aws_sdk_ec2::Client, volume: &str, tags: Option<TagSpecification>) -> String {
    let s = ec2.create_snapshot().volume_id(volume).set_tag_specifications(tags.map(|t| vec![t])).send().await.unwrap();
    s.snapshot_id().unwrap().to_string()
}

/// Snapshots of a volume: by volume id or by the suite's source tag.
pub(super) async fn snapshots_of(ec2: &aws_sdk_ec2::Client, volume: &str) -> Vec<aws_sdk_ec2::types::Snapshot> {
    let all = ec2.describe_snapshots().owner_ids("self").send().await.unwrap();
    all.snapshots()
        .iter()
        .filter(|s| {
            s.volume_id() == Some(volume)
                || s.tags().iter().any(|t| t.key() == Some("selfheal:source") && t.value() == Some(volume))
        })
        .cloned()
        .collect()
}

pub(super) fn ids(snaps: &[aws_sdk_ec2::types::Snapshot]) -> HashSet<String> {
    snaps.iter().filter_map(|s| s.snapshot_id().map(str::to_string)).collect()
}

pub(super) fn tag_of<'a>(s: &'a aws_sdk_ec2::types::Snapshot, key: &str) -> Option<&'a str> {
    s.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

/// A DB instance with the policy tag and the suite's opt-in tag.
pub(super) async fn database(rds: &aws_sdk_rds::Client, tag: &str, policy: &str, retention: i32) -> String {
    database_tagged(rds, &[(tag, policy), (OPT_IN.0, OPT_IN.1)], retention).await
}

pub(super) fn rds_tags(tags: &[(&str, &str)]) -> Vec<aws_sdk_rds::types::Tag> {
    tags.iter().map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(*k).value(*v).build()).collect()
}

pub(super) async fn database_tagged(rds: &aws_sdk_rds::Client, tags: &[(&str, &str)], retention: i32) -> String {
    let id = unique("db");
    rds.create_db_instance()
        .db_instance_identifier(&id)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .master_username("admin")
        .master_user_password("password123")
        .allocated_storage(20)
        .backup_retention_period(retention)
        .set_tags(Some(rds_tags(tags)))
        .send()
        .await
        .unwrap();
    id
}

/// Manual snapshots of a DB instance (moto also makes an automated one when the instance is created).
pub(super) async fn db_snapshots(rds: &aws_sdk_rds::Client, db: &str) -> Vec<aws_sdk_rds::types::DbSnapshot> {
    let r = rds.describe_db_snapshots().db_instance_identifier(db).send().await.unwrap();
    r.db_snapshots().iter().filter(|s| s.snapshot_type() == Some("manual")).cloned().collect()
}

pub(super) async fn db_retention(rds: &aws_sdk_rds::Client, db: &str) -> i32 {
    let r = rds.describe_db_instances().db_instance_identifier(db).send().await.unwrap();
    r.db_instances()[0].backup_retention_period().unwrap()
}

pub(super) fn for_target<'a>(envs: &'a [Envelope], id: &str) -> Vec<&'a Envelope> {
    envs.iter().filter(|e| e.target.id == id).collect()
}

pub(super) fn report(envs: &[Envelope]) -> &Envelope {
    let r = envs.last().unwrap();
    assert_eq!(r.action, "compliance-report");
    r
}

pub(super) fn tally(report: &Envelope, kind: &str, field: &str) -> u64 {
    report.details["byType"][kind][field].as_u64().unwrap_or(0)
}

pub(super) fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

/// An Aurora cluster with the policy and opt-in tags, and one member instance that carries them too.
pub(super) async fn aurora(rds: &aws_sdk_rds::Client, tag: &str, policy: &str) -> (String, String) {
    let cluster = unique("aurora");
    let tags = [(tag, policy), OPT_IN];
    rds.create_db_cluster()
        .db_cluster_identifier(&cluster)
        .engine("aurora-postgresql")
        .master_username("admin")
        .master_user_password("password123")
        .backup_retention_period(1)
        .set_tags(Some(rds_tags(&tags)))
        .send()
        .await
        .unwrap();
    let member = format!("{cluster}-1");
    rds.create_db_instance()
        .db_instance_identifier(&member)
        .db_cluster_identifier(&cluster)
        .engine("aurora-postgresql")
        .db_instance_class("db.r6g.large")
        .set_tags(Some(rds_tags(&tags)))
        .send()
        .await
        .unwrap();
    (cluster, member)
}

/// Manual snapshots of a DB cluster.
pub(super) async fn cluster_snapshots(
    rds: &aws_sdk_rds::Client,
    cluster: &str,
) -> Vec<aws_sdk_rds::types::DbClusterSnapshot> {
    let r = rds.describe_db_cluster_snapshots().db_cluster_identifier(cluster).send().await.unwrap();
    r.db_cluster_snapshots().iter().filter(|s| s.snapshot_type() == Some("manual")).cloned().collect()
}
