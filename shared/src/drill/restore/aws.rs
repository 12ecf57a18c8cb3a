//! The restore test's AWS calls, per kind: find the resources the suite backs up and their newest
//! recovery points, start a restore into a scratch resource, wait for it and verify it, delete it, and
//! delete an earlier test's leftovers.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::sample::{is_leftover, Candidate, Expect, Kind, RecoveryPoint, SCRATCH_PREFIX};
use super::SCRATCH_TAG;
use crate::clients::Aws;
use crate::config::CommonConfig;
use crate::drill::DRILL_TAG;
use crate::error::{Error, Result};
use crate::guardrails::is_opted_in;

/// The key prefix of a scratch object in its bucket (it starts with [`SCRATCH_PREFIX`]).
const S3_SCRATCH_DIR: &str = "selfheal-restore-test";

fn chrono(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

/// The policy a resource's tags name, when they also opt it in.
fn policy_of<'a>(
    tags: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    policy_tag: &str,
    config: &CommonConfig,
) -> Option<String> {
    let policy = tags.clone().find(|(k, _)| *k == policy_tag).map(|(_, v)| v.to_string())?;
    is_opted_in(tags, config).then_some(policy)
}

/// Every resource in this place the suite backs up, with its newest recovery point.
pub(super) async fn discover(
    aws: &Aws,
    account: Option<&str>,
    policy_tag: &str,
    config: &CommonConfig,
) -> Result<Vec<Candidate>> {
    let mut out = Vec::new();
    out.extend(volumes(aws, account, policy_tag, config).await?);
    out.extend(databases(aws, account, policy_tag, config).await?);
    out.extend(clusters(aws, account, policy_tag, config).await?);
    out.extend(tables(aws, account, policy_tag, config).await?);
    out.extend(objects(aws, account, policy_tag, config).await?);
    Ok(out)
}

fn candidate(
    kind: Kind,
    account: Option<&str>,
    source: &str,
    policy: String,
    point: Option<RecoveryPoint>,
) -> Candidate {
    Candidate { kind, account: account.map(str::to_string), source: source.to_string(), policy, point }
}

async fn volumes(aws: &Aws, account: Option<&str>, policy_tag: &str, config: &CommonConfig) -> Result<Vec<Candidate>> {
    use aws_sdk_ec2::types::Filter;
    let ec2 = aws.ec2();
    let mut pages = ec2
        .describe_volumes()
        .filters(Filter::builder().name("tag-key").values(policy_tag).build())
        .into_paginator()
        .send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("ec2", "DescribeVolumes", e))?;
        for v in page.volumes() {
            let tags = v.tags().iter().filter_map(|t| Some((t.key()?, t.value().unwrap_or(""))));
            let name = v.tags().iter().find(|t| t.key() == Some("Name")).and_then(|t| t.value()).unwrap_or("");
            if name.starts_with(SCRATCH_PREFIX) {
                continue;
            }
            if let (Some(policy), Some(id)) = (policy_of(tags, policy_tag, config), v.volume_id()) {
                found.push((id.to_string(), policy));
            }
        }
    }
    let mut out = Vec::new();
    for (id, policy) in found {
        let snaps = ec2
            .describe_snapshots()
            .owner_ids("self")
            .filters(Filter::builder().name("volume-id").values(&id).build())
            .send()
            .await
            .map_err(|e| Error::aws("ec2", "DescribeSnapshots", e))?;
        let newest = snaps
            .snapshots()
            .iter()
            .filter(|s| s.state() == Some(&aws_sdk_ec2::types::SnapshotState::Completed))
            .filter_map(|s| Some((chrono(s.start_time())?, s)))
            .max_by_key(|(t, _)| *t);
        let point = newest.and_then(|(taken, s)| {
            Some(RecoveryPoint {
                id: s.snapshot_id()?.to_string(),
                taken,
                expect: Expect::SizeGib { gib: s.volume_size().unwrap_or(0) as i64 },
            })
        });
        out.push(candidate(Kind::EbsVolume, account, &id, policy, point));
    }
    Ok(out)
}

fn rds_policy(tags: &[aws_sdk_rds::types::Tag], policy_tag: &str, config: &CommonConfig) -> Option<String> {
    policy_of(tags.iter().filter_map(|t| Some((t.key()?, t.value().unwrap_or("")))), policy_tag, config)
}

async fn databases(
    aws: &Aws,
    account: Option<&str>,
    policy_tag: &str,
    config: &CommonConfig,
) -> Result<Vec<Candidate>> {
    let rds = aws.rds();
    let mut pages = rds.describe_db_instances().into_paginator().send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("rds", "DescribeDBInstances", e))?;
        for d in page.db_instances() {
            let id = d.db_instance_identifier().unwrap_or("");
            // Cluster members are backed up through their cluster, replicas through their source.
            if id.starts_with(SCRATCH_PREFIX)
                || d.db_cluster_identifier().is_some()
                || d.read_replica_source_db_instance_identifier().is_some()
            {
                continue;
            }
            if let Some(policy) = rds_policy(d.tag_list(), policy_tag, config) {
                found.push((id.to_string(), policy));
            }
        }
    }
    let mut out = Vec::new();
    for (id, policy) in found {
        let snaps = rds
            .describe_db_snapshots()
            .db_instance_identifier(&id)
            .send()
            .await
            .map_err(|e| Error::aws("rds", "DescribeDBSnapshots", e))?;
        let newest = snaps
            .db_snapshots()
            .iter()
            .filter(|s| s.status() == Some("available"))
            .filter_map(|s| Some((chrono(s.snapshot_create_time())?, s)))
            .max_by_key(|(t, _)| *t);
        let point = newest.and_then(|(taken, s)| {
            Some(RecoveryPoint {
                id: s.db_snapshot_identifier()?.to_string(),
                taken,
                expect: Expect::SizeGib { gib: s.allocated_storage().unwrap_or(0) as i64 },
            })
        });
        out.push(candidate(Kind::RdsInstance, account, &id, policy, point));
    }
    Ok(out)
}

async fn clusters(aws: &Aws, account: Option<&str>, policy_tag: &str, config: &CommonConfig) -> Result<Vec<Candidate>> {
    let rds = aws.rds();
    let mut pages = rds.describe_db_clusters().into_paginator().send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("rds", "DescribeDBClusters", e))?;
        for c in page.db_clusters() {
            let id = c.db_cluster_identifier().unwrap_or("");
            if id.starts_with(SCRATCH_PREFIX) {
                continue;
            }
            if let Some(policy) = rds_policy(c.tag_list(), policy_tag, config) {
                found.push((id.to_string(), policy));
            }
        }
    }
    let mut out = Vec::new();
    for (id, policy) in found {
        let snaps = rds
            .describe_db_cluster_snapshots()
            .db_cluster_identifier(&id)
            .send()
            .await
            .map_err(|e| Error::aws("rds", "DescribeDBClusterSnapshots", e))?;
        let newest = snaps
            .db_cluster_snapshots()
            .iter()
            .filter(|s| s.status() == Some("available"))
            .filter_map(|s| Some((chrono(s.snapshot_create_time())?, s)))
            .max_by_key(|(t, _)| *t);
        let point = newest.and_then(|(taken, s)| {
            Some(RecoveryPoint {
                id: s.db_cluster_snapshot_identifier()?.to_string(),
                taken,
                expect: Expect::Available,
            })
        });
        out.push(candidate(Kind::RdsCluster, account, &id, policy, point));
    }
    Ok(out)
}

async fn tables(aws: &Aws, account: Option<&str>, policy_tag: &str, config: &CommonConfig) -> Result<Vec<Candidate>> {
    let ddb = aws.dynamodb();
    let mut names = Vec::new();
    let mut pages = ddb.list_tables().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("dynamodb", "ListTables", e))?;
        names.extend(page.table_names().iter().filter(|n| !n.starts_with(SCRATCH_PREFIX)).cloned());
    }
    let mut out = Vec::new();
    for name in names {
        let table = ddb
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .map_err(|e| Error::aws("dynamodb", "DescribeTable", e))?;
        let Some(t) = table.table() else { continue };
        let Some(arn) = t.table_arn() else { continue };
        let tags = ddb
            .list_tags_of_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(|e| Error::aws("dynamodb", "ListTagsOfResource", e))?;
        let Some(policy) = policy_of(tags.tags().iter().map(|t| (t.key(), t.value())), policy_tag, config) else {
            continue;
        };
        let backups = ddb
            .describe_continuous_backups()
            .table_name(&name)
            .send()
            .await
            .map_err(|e| Error::aws("dynamodb", "DescribeContinuousBackups", e))?;
        let pitr = backups.continuous_backups_description().and_then(|d| d.point_in_time_recovery_description());
        let enabled = pitr.and_then(|p| p.point_in_time_recovery_status())
            == Some(&aws_sdk_dynamodb::types::PointInTimeRecoveryStatus::Enabled);
        let latest = pitr.and_then(|p| chrono(p.latest_restorable_date_time()));
        let point = match (enabled, latest) {
            (true, Some(taken)) => Some(RecoveryPoint {
                id: "latest-restorable-time".into(),
                taken,
                expect: Expect::Items { count: t.item_count().unwrap_or(0) },
            }),
            _ => None,
        };
        out.push(candidate(Kind::DynamodbTable, account, &name, policy, point));
    }
    Ok(out)
}

/// The buckets of this region (a bucket lists in every region; it is tested in its own).
async fn objects(aws: &Aws, account: Option<&str>, policy_tag: &str, config: &CommonConfig) -> Result<Vec<Candidate>> {
    let s3 = aws.s3();
    let region = aws.sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
    let buckets = s3.list_buckets().send().await.map_err(|e| Error::aws("s3", "ListBuckets", e))?;
    let mut out = Vec::new();
    for b in buckets.buckets() {
        let Some(bucket) = b.name() else { continue };
        // A bucket without tags answers NoSuchTagSet: not one the suite backs up.
        let Ok(tagging) = s3.get_bucket_tagging().bucket(bucket).send().await else { continue };
        let Some(policy) = policy_of(tagging.tag_set().iter().map(|t| (t.key(), t.value())), policy_tag, config) else {
            continue;
        };
        let location = s3
            .get_bucket_location()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| Error::aws("s3", "GetBucketLocation", e))?;
        let at = location.location_constraint().map(|c| c.as_str().to_string()).filter(|c| !c.is_empty());
        if at.as_deref().unwrap_or("us-east-1") != region {
            continue;
        }
        let versions = s3
            .list_object_versions()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| Error::aws("s3", "ListObjectVersions", e))?;
        // The first object (by key) with a previous version that is not a delete marker; a bucket none of
        // whose objects was ever overwritten has nothing to restore from (and is not a failure).
        let previous = versions
            .versions()
            .iter()
            .filter(|v| v.is_latest() == Some(false))
            .filter(|v| v.key().is_some_and(|k| !k.starts_with(S3_SCRATCH_DIR)))
            .filter(|v| v.e_tag().is_some_and(|e| !e.contains('-')))
            .min_by_key(|v| v.key().unwrap_or(""));
        let Some(v) = previous else {
            tracing::info!(bucket, "restore test: no object has a previous version to restore");
            continue;
        };
        let (Some(key), Some(version), Some(etag)) = (v.key(), v.version_id(), v.e_tag()) else { continue };
        let point = chrono(v.last_modified()).map(|taken| RecoveryPoint {
            id: version.to_string(),
            taken,
            expect: Expect::Etag { etag: etag.trim_matches('"').to_string() },
        });
        out.push(candidate(Kind::S3Object, account, &format!("{bucket}/{key}"), policy, point));
    }
    Ok(out)
}

fn ec2_tags(name: &str, run: &str) -> aws_sdk_ec2::types::TagSpecification {
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
    TagSpecification::builder()
        .resource_type(ResourceType::Volume)
        .tags(Tag::builder().key(SCRATCH_TAG).value(run).build())
        .tags(Tag::builder().key(DRILL_TAG).value("true").build())
        .tags(Tag::builder().key("Name").value(name).build())
        .build()
}

fn rds_tags(run: &str) -> Vec<aws_sdk_rds::types::Tag> {
    use aws_sdk_rds::types::Tag;
    vec![Tag::builder().key(SCRATCH_TAG).value(run).build(), Tag::builder().key(DRILL_TAG).value("true").build()]
}

fn split_object(source: &str) -> Result<(&str, &str)> {
    source.split_once('/').ok_or_else(|| Error::Precondition(format!("{source:?} is not bucket/key")))
}

/// The scratch key of an object restored by run `run`.
fn scratch_key(name: &str, key: &str) -> String {
    format!("{S3_SCRATCH_DIR}/{name}/{key}")
}

/// Starts the restore of `point` into the scratch resource `name`; answers its id (a volume id, a DB,
/// cluster or table identifier, `bucket/key` of the scratch object).
pub(super) async fn start(aws: &Aws, c: &Candidate, point: &RecoveryPoint, name: &str, run: &str) -> Result<String> {
    match c.kind {
        Kind::EbsVolume => {
            let ec2 = aws.ec2();
            let source = ec2
                .describe_volumes()
                .volume_ids(&c.source)
                .send()
                .await
                .map_err(|e| Error::aws("ec2", "DescribeVolumes", e))?;
            let az = source
                .volumes()
                .first()
                .and_then(|v| v.availability_zone())
                .ok_or_else(|| Error::NotFound { kind: "EBS volume", id: c.source.clone() })?
                .to_string();
            let v = ec2
                .create_volume()
                .client_token(name)
                .snapshot_id(&point.id)
                .availability_zone(az)
                .tag_specifications(ec2_tags(name, run))
                .send()
                .await
                .map_err(|e| Error::aws("ec2", "CreateVolume", e))?;
            v.volume_id()
                .map(str::to_string)
                .ok_or_else(|| Error::Precondition("CreateVolume answered no volume id".into()))
        }
        Kind::RdsInstance => {
            aws.rds()
                .restore_db_instance_from_db_snapshot()
                .db_instance_identifier(name)
                .db_snapshot_identifier(&point.id)
                .multi_az(false)
                .publicly_accessible(false)
                .deletion_protection(false)
                .set_tags(Some(rds_tags(run)))
                .send()
                .await
                .map_err(|e| Error::aws("rds", "RestoreDBInstanceFromDBSnapshot", e))?;
            Ok(name.to_string())
        }
        Kind::RdsCluster => {
            let rds = aws.rds();
            let snap = rds
                .describe_db_cluster_snapshots()
                .db_cluster_snapshot_identifier(&point.id)
                .send()
                .await
                .map_err(|e| Error::aws("rds", "DescribeDBClusterSnapshots", e))?;
            let engine = snap
                .db_cluster_snapshots()
                .first()
                .and_then(|s| s.engine())
                .ok_or_else(|| Error::NotFound { kind: "DB cluster snapshot", id: point.id.clone() })?
                .to_string();
            rds.restore_db_cluster_from_snapshot()
                .db_cluster_identifier(name)
                .snapshot_identifier(&point.id)
                .engine(engine)
                .deletion_protection(false)
                .set_tags(Some(rds_tags(run)))
                .send()
                .await
                .map_err(|e| Error::aws("rds", "RestoreDBClusterFromSnapshot", e))?;
            Ok(name.to_string())
        }
        Kind::DynamodbTable => {
            let ddb = aws.dynamodb();
            let restored = ddb
                .restore_table_to_point_in_time()
                .source_table_name(&c.source)
                .target_table_name(name)
                .use_latest_restorable_time(true)
                .send()
                .await
                .map_err(|e| Error::aws("dynamodb", "RestoreTableToPointInTime", e))?;
            // RestoreTableToPointInTime takes no tags: the scratch tag is added at once.
            if let Some(arn) = restored.table_description().and_then(|t| t.table_arn()) {
                use aws_sdk_dynamodb::types::Tag;
                let tag = |k: &str, v: &str| {
                    Tag::builder().key(k).value(v).build().map_err(|e| Error::aws("dynamodb", "TagResource", e))
                };
                ddb.tag_resource()
                    .resource_arn(arn)
                    .tags(tag(SCRATCH_TAG, run)?)
                    .tags(tag(DRILL_TAG, "true")?)
                    .send()
                    .await
                    .map_err(|e| Error::aws("dynamodb", "TagResource", e))?;
            }
            Ok(name.to_string())
        }
        Kind::S3Object => {
            let (bucket, key) = split_object(&c.source)?;
            let scratch = scratch_key(name, key);
            let source = format!("{bucket}/{}?versionId={}", urlencode_key(key), point.id);
            aws.s3()
                .copy_object()
                .bucket(bucket)
                .key(&scratch)
                .copy_source(source)
                .tagging_directive(aws_sdk_s3::types::TaggingDirective::Replace)
                .tagging(format!("{}={run}&{}=true", urlencode_key(SCRATCH_TAG), urlencode_key(DRILL_TAG)))
                .send()
                .await
                .map_err(|e| Error::aws("s3", "CopyObject", e))?;
            Ok(format!("{bucket}/{scratch}"))
        }
    }
}

/// Percent-encodes an S3 key for `CopySource` (every byte but unreserved ones and `/`).
fn urlencode_key(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The scratch id a restore whose answer was lost would have made, to delete by name.
pub(super) fn scratch_id_by_name(kind: Kind, c: &Candidate, name: &str) -> String {
    match kind {
        Kind::S3Object => match split_object(&c.source) {
            Ok((bucket, key)) => format!("{bucket}/{}", scratch_key(name, key)),
            Err(_) => name.to_string(),
        },
        _ => name.to_string(),
    }
}

/// Waits until the scratch resource is ready (or `deadline`) and verifies it against `expect`; answers
/// what was seen.
pub(super) async fn verify(
    aws: &Aws,
    kind: Kind,
    scratch: &str,
    expect: &Expect,
    timeout: Duration,
    poll: Duration,
) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(seen) = ready(aws, kind, scratch).await? {
            return check(aws, kind, scratch, expect, seen).await;
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("{} {scratch} to be available", kind.as_str()),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// What a ready scratch resource shows (its size in GiB, or nothing to compare); `None` while not ready.
async fn ready(aws: &Aws, kind: Kind, scratch: &str) -> Result<Option<Option<i64>>> {
    Ok(match kind {
        Kind::EbsVolume => {
            let v = aws
                .ec2()
                .describe_volumes()
                .volume_ids(scratch)
                .send()
                .await
                .map_err(|e| Error::aws("ec2", "DescribeVolumes", e))?;
            v.volumes()
                .first()
                .filter(|v| v.state() == Some(&aws_sdk_ec2::types::VolumeState::Available))
                .map(|v| v.size().map(i64::from))
        }
        Kind::RdsInstance => {
            let d = aws
                .rds()
                .describe_db_instances()
                .db_instance_identifier(scratch)
                .send()
                .await
                .map_err(|e| Error::aws("rds", "DescribeDBInstances", e))?;
            d.db_instances()
                .first()
                .filter(|d| d.db_instance_status() == Some("available"))
                .map(|d| d.allocated_storage().map(i64::from))
        }
        Kind::RdsCluster => {
            let d = aws
                .rds()
                .describe_db_clusters()
                .db_cluster_identifier(scratch)
                .send()
                .await
                .map_err(|e| Error::aws("rds", "DescribeDBClusters", e))?;
            d.db_clusters().first().filter(|c| c.status() == Some("available")).map(|_| None)
        }
        Kind::DynamodbTable => {
            let t = aws
                .dynamodb()
                .describe_table()
                .table_name(scratch)
                .send()
                .await
                .map_err(|e| Error::aws("dynamodb", "DescribeTable", e))?;
            t.table().filter(|t| t.table_status() == Some(&aws_sdk_dynamodb::types::TableStatus::Active)).map(|_| None)
        }
        Kind::S3Object => Some(None),
    })
}

/// Compares a ready scratch resource with what its recovery point holds.
async fn check(aws: &Aws, kind: Kind, scratch: &str, expect: &Expect, size: Option<i64>) -> Result<String> {
    match (kind, expect) {
        (_, Expect::SizeGib { gib }) => match size {
            Some(s) if s == *gib => Ok(format!("available, {s} GiB as the recovery point")),
            other => Err(Error::Precondition(format!(
                "restored size {} GiB, the recovery point's {gib} GiB",
                other.map_or("unknown".into(), |s| s.to_string())
            ))),
        },
        (_, Expect::Available) => Ok("available".into()),
        (Kind::DynamodbTable, Expect::Items { count }) => {
            let ddb = aws.dynamodb();
            let mut restored: i64 = 0;
            let mut pages =
                ddb.scan().table_name(scratch).select(aws_sdk_dynamodb::types::Select::Count).into_paginator().send();
            while let Some(page) = pages.next().await {
                restored += page.map_err(|e| Error::aws("dynamodb", "Scan", e))?.count() as i64;
            }
            if restored == *count {
                Ok(format!("active, {restored} items as the source"))
            } else if restored == 0 && *count > 0 {
                Err(Error::Precondition(format!("the restored table is empty; the source holds {count} items")))
            } else {
                // DynamoDB refreshes a table's ItemCount about every six hours: a difference is shown.
                Ok(format!("active, {restored} items (the source's ItemCount, refreshed every ~6 h, says {count})"))
            }
        }
        (Kind::S3Object, Expect::Etag { etag }) => {
            use md5::{Digest, Md5};
            let (bucket, key) = split_object(scratch)?;
            let got = aws
                .s3()
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| Error::aws("s3", "GetObject", e))?;
            let bytes = got
                .body
                .collect()
                .await
                .map_err(|e| Error::Precondition(format!("reading s3://{scratch}: {e}")))?
                .into_bytes();
            let digest: String = Md5::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
            if digest == *etag {
                Ok(format!("{} bytes, MD5 {digest} as the version's ETag", bytes.len()))
            } else {
                Err(Error::Precondition(format!("the restored object's MD5 {digest} is not the version's ETag {etag}")))
            }
        }
        (k, e) => Err(Error::Precondition(format!("nothing to verify a {} against {e:?}", k.as_str()))),
    }
}

/// Whether an AWS error says the resource is already gone.
fn gone(message: &str) -> bool {
    ["NotFound", "NoSuchKey", "ResourceNotFound", "does not exist", "not found"].iter().any(|w| message.contains(w))
}

/// Deletes a scratch resource (a missing one is already deleted). `name`: the scratch name it was
/// created under (a volume's `Name`: a retried `CreateVolume` whose first answer was lost may have made
/// a second volume, and every volume of that name is deleted).
pub(super) async fn delete(aws: &Aws, kind: Kind, scratch: &str, name: &str) -> Result<()> {
    let result = match kind {
        Kind::EbsVolume => delete_volume(aws, scratch, name).await,
        Kind::RdsInstance => aws
            .rds()
            .delete_db_instance()
            .db_instance_identifier(scratch)
            .skip_final_snapshot(true)
            .delete_automated_backups(true)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| Error::aws("rds", "DeleteDBInstance", e)),
        Kind::RdsCluster => aws
            .rds()
            .delete_db_cluster()
            .db_cluster_identifier(scratch)
            .skip_final_snapshot(true)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| Error::aws("rds", "DeleteDBCluster", e)),
        Kind::DynamodbTable => aws
            .dynamodb()
            .delete_table()
            .table_name(scratch)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| Error::aws("dynamodb", "DeleteTable", e)),
        Kind::S3Object => delete_object(aws, scratch).await,
    };
    match result {
        Err(e) if gone(&e.to_string()) => Ok(()),
        other => other,
    }
}

/// A scratch volume by id, and every volume named `name` (a restore whose answer was lost, a retried
/// create).
async fn delete_volume(aws: &Aws, scratch: &str, name: &str) -> Result<()> {
    let ec2 = aws.ec2();
    let mut ids: Vec<String> = Vec::new();
    if scratch.starts_with("vol-") {
        ids.push(scratch.to_string());
    }
    if name.starts_with(SCRATCH_PREFIX) {
        let named = ec2
            .describe_volumes()
            .filters(aws_sdk_ec2::types::Filter::builder().name("tag:Name").values(name).build())
            .filters(aws_sdk_ec2::types::Filter::builder().name("tag-key").values(SCRATCH_TAG).build())
            .send()
            .await
            .map_err(|e| Error::aws("ec2", "DescribeVolumes", e))?;
        ids.extend(named.volumes().iter().filter_map(|v| v.volume_id().map(str::to_string)));
    }
    ids.sort();
    ids.dedup();
    for id in ids {
        ec2.delete_volume().volume_id(&id).send().await.map_err(|e| Error::aws("ec2", "DeleteVolume", e))?;
    }
    Ok(())
}

/// Every version of a scratch object (so a versioned bucket keeps no trace of it, not even a delete
/// marker).
async fn delete_object(aws: &Aws, scratch: &str) -> Result<()> {
    let (bucket, key) = split_object(scratch)?;
    let s3 = aws.s3();
    let versions = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await
        .map_err(|e| Error::aws("s3", "ListObjectVersions", e))?;
    let ids = versions
        .versions()
        .iter()
        .filter(|v| v.key() == Some(key))
        .filter_map(|v| v.version_id())
        .chain(versions.delete_markers().iter().filter(|m| m.key() == Some(key)).filter_map(|m| m.version_id()));
    for id in ids {
        s3.delete_object()
            .bucket(bucket)
            .key(key)
            .version_id(id)
            .send()
            .await
            .map_err(|e| Error::aws("s3", "DeleteObject", e))?;
    }
    Ok(())
}

/// Deletes what an earlier test left behind in this place ([`is_leftover`]); answers what it deleted.
/// Best effort: a failure is logged and the test goes on (its own scratch resources are deleted on every
/// path regardless).
pub(super) async fn delete_leftovers(aws: &Aws, now: DateTime<Utc>, minutes: u64) -> Vec<String> {
    let mut out = Vec::new();
    if let Err(e) = leftovers(aws, now, minutes, &mut out).await {
        tracing::warn!(error = %e, "restore test: earlier scratch resources could not all be looked for");
    }
    out
}

async fn leftovers(aws: &Aws, now: DateTime<Utc>, minutes: u64, out: &mut Vec<String>) -> Result<()> {
    // Volumes: the scratch tag and the name.
    let vols = aws
        .ec2()
        .describe_volumes()
        .filters(aws_sdk_ec2::types::Filter::builder().name("tag-key").values(SCRATCH_TAG).build())
        .send()
        .await
        .map_err(|e| Error::aws("ec2", "DescribeVolumes", e))?;
    for v in vols.volumes() {
        let name = v.tags().iter().find(|t| t.key() == Some("Name")).and_then(|t| t.value()).unwrap_or("");
        if let (true, Some(id)) = (is_leftover(name, true, chrono(v.create_time()), now, minutes), v.volume_id()) {
            delete(aws, Kind::EbsVolume, id, name).await?;
            out.push(id.to_string());
        }
    }
    let scratch_tagged = |tags: &[aws_sdk_rds::types::Tag]| tags.iter().any(|t| t.key() == Some(SCRATCH_TAG));
    let dbs =
        aws.rds().describe_db_instances().send().await.map_err(|e| Error::aws("rds", "DescribeDBInstances", e))?;
    for d in dbs.db_instances() {
        let id = d.db_instance_identifier().unwrap_or("");
        if is_leftover(id, scratch_tagged(d.tag_list()), chrono(d.instance_create_time()), now, minutes) {
            delete(aws, Kind::RdsInstance, id, id).await?;
            out.push(id.to_string());
        }
    }
    let clusters =
        aws.rds().describe_db_clusters().send().await.map_err(|e| Error::aws("rds", "DescribeDBClusters", e))?;
    for c in clusters.db_clusters() {
        let id = c.db_cluster_identifier().unwrap_or("");
        if is_leftover(id, scratch_tagged(c.tag_list()), chrono(c.cluster_create_time()), now, minutes) {
            delete(aws, Kind::RdsCluster, id, id).await?;
            out.push(id.to_string());
        }
    }
    let ddb = aws.dynamodb();
    let tables = ddb.list_tables().exclusive_start_table_name(SCRATCH_PREFIX.trim_end_matches('-')).send().await;
    let names: Vec<String> = tables
        .map_err(|e| Error::aws("dynamodb", "ListTables", e))?
        .table_names()
        .iter()
        .filter(|n| n.starts_with(SCRATCH_PREFIX))
        .cloned()
        .collect();
    for name in names {
        let t = ddb
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .map_err(|e| Error::aws("dynamodb", "DescribeTable", e))?;
        let Some(t) = t.table() else { continue };
        let tagged = match t.table_arn() {
            Some(arn) => ddb
                .list_tags_of_resource()
                .resource_arn(arn)
                .send()
                .await
                .map_err(|e| Error::aws("dynamodb", "ListTagsOfResource", e))?
                .tags()
                .iter()
                .any(|t| t.key() == SCRATCH_TAG),
            None => false,
        };
        if is_leftover(&name, tagged, chrono(t.creation_date_time()), now, minutes) {
            delete(aws, Kind::DynamodbTable, &name, &name).await?;
            out.push(name);
        }
    }
    // Objects: under the scratch prefix of each bucket, tagged as scratch.
    let s3 = aws.s3();
    let buckets = s3.list_buckets().send().await.map_err(|e| Error::aws("s3", "ListBuckets", e))?;
    for b in buckets.buckets() {
        let Some(bucket) = b.name() else { continue };
        let Ok(versions) = s3.list_object_versions().bucket(bucket).prefix(format!("{S3_SCRATCH_DIR}/")).send().await
        else {
            continue;
        };
        for v in versions.versions() {
            let (Some(key), Some(id)) = (v.key(), v.version_id()) else { continue };
            let tagged = s3
                .get_object_tagging()
                .bucket(bucket)
                .key(key)
                .version_id(id)
                .send()
                .await
                .map(|t| t.tag_set().iter().any(|t| t.key() == SCRATCH_TAG))
                .unwrap_or(false);
            if is_leftover(key, tagged, chrono(v.last_modified()), now, minutes) {
                let scratch = format!("{bucket}/{key}");
                delete(aws, Kind::S3Object, &scratch, key).await?;
                out.push(scratch);
            }
        }
    }
    Ok(())
}
