//! RDS calls: every listing paginated. Also the tagged [`Database`] (instance or Aurora cluster)
//! they find, and the DB snapshot names and ARNs the suite uses.

use std::collections::{HashMap, HashSet};

use aws_sdk_rds::types::Tag;
use chrono::{DateTime, Utc};

use super::dr_copy::DrCopies;
use super::retention::{Snap, SnapState};
use super::{
    to_chrono, CREATED_BY, KIND_CLUSTER, KIND_DB, TAG_COPY_OF, TAG_CREATED_BY, TAG_POLICY, TAG_SOURCE, TAG_SWEEP,
};
use crate::config::CommonConfig;
use crate::error::{Error, Result};

/// A tagged database: a DB instance, or an Aurora cluster (backed up as a whole).
#[derive(Debug, Clone)]
pub struct Database {
    pub id: String,
    pub arn: String,
    pub policy: String,
    pub retention_days: i32,
    /// An Aurora (or Multi-AZ DB) cluster rather than an instance.
    pub cluster: bool,
    /// Also carries the suite's opt-in tag; without it the database is only reported.
    pub opted_in: bool,
}

impl Database {
    /// The report's resource kind.
    pub fn kind(&self) -> &'static str {
        if self.cluster {
            KIND_CLUSTER
        } else {
            KIND_DB
        }
    }
}

/// A DB snapshot identifier for `db` at `now` (letters, digits, single hyphens, at most 255).
pub fn db_snapshot_id(db: &str, now: DateTime<Utc>) -> String {
    let mut id = format!("selfheal-{}-{}", db, now.format("%Y%m%d%H%M%S"));
    while id.contains("--") {
        id = id.replace("--", "-");
    }
    id.chars().take(255).collect()
}

fn tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

fn opted_in(tags: &[Tag], config: &CommonConfig) -> bool {
    super::opted_in(tags.iter().map(|t| (t.key(), t.value())), config)
}

/// DB instances carrying the policy tag, and the tagged members of clusters as (member, cluster):
/// those are left out, as their backups are the cluster's ([`tagged_clusters`]).
pub async fn tagged_databases(
    rds: &aws_sdk_rds::Client,
    policy_tag: &str,
    config: &CommonConfig,
) -> Result<(Vec<Database>, Vec<(String, String)>)> {
    let mut pages = rds.describe_db_instances().max_records(100).into_paginator().items().send();
    let mut out = Vec::new();
    let mut members = Vec::new();
    while let Some(db) = pages.next().await {
        let db = db.map_err(|e| Error::aws("rds", "DescribeDBInstances", e))?;
        let (Some(id), Some(policy)) = (db.db_instance_identifier(), tag(db.tag_list(), policy_tag)) else {
            continue;
        };
        if let Some(cluster) = db.db_cluster_identifier() {
            tracing::debug!(db = id, cluster, "cluster member: backed up through its cluster");
            members.push((id.to_string(), cluster.to_string()));
            continue;
        }
        out.push(Database {
            id: id.to_string(),
            arn: db.db_instance_arn().unwrap_or_default().to_string(),
            policy: policy.trim().to_string(),
            retention_days: db.backup_retention_period().unwrap_or(0),
            cluster: false,
            opted_in: opted_in(db.tag_list(), config),
        });
    }
    Ok((out, members))
}

/// DB clusters (Aurora) carrying the policy tag.
pub async fn tagged_clusters(
    rds: &aws_sdk_rds::Client,
    policy_tag: &str,
    config: &CommonConfig,
) -> Result<Vec<Database>> {
    let mut pages = rds.describe_db_clusters().max_records(100).into_paginator().items().send();
    let mut out = Vec::new();
    while let Some(c) = pages.next().await {
        let c = c.map_err(|e| Error::aws("rds", "DescribeDBClusters", e))?;
        let (Some(id), Some(policy)) = (c.db_cluster_identifier(), tag(c.tag_list(), policy_tag)) else {
            continue;
        };
        out.push(Database {
            id: id.to_string(),
            arn: c.db_cluster_arn().unwrap_or_default().to_string(),
            policy: policy.trim().to_string(),
            retention_days: c.backup_retention_period().unwrap_or(0),
            cluster: true,
            opted_in: opted_in(c.tag_list(), config),
        });
    }
    Ok(out)
}

fn snap_state(status: Option<&str>) -> SnapState {
    match status {
        Some("available") => SnapState::Completed,
        Some("creating") | Some("copying") | Some("pending") => SnapState::Pending,
        _ => SnapState::Error,
    }
}

/// DB (or cluster) snapshots by the database they belong to, and by database the sweeps
/// (`selfheal:sweep`) that took one of them: what an earlier attempt of a sweep already did.
#[derive(Debug, Clone, Default)]
pub struct DbListed {
    pub snaps: HashMap<String, Vec<Snap>>,
    pub swept: HashMap<String, HashSet<String>>,
}

impl DbListed {
    fn add(&mut self, db: &str, snap: Snap, sweep: Option<&str>) {
        if let Some(sweep) = sweep.filter(|_| snap.ours) {
            self.swept.entry(db.to_string()).or_default().insert(sweep.to_string());
        }
        self.snaps.entry(db.to_string()).or_default().push(snap);
    }
}

/// Every DB snapshot (manual and automated), grouped by DB instance.
pub async fn snapshots_by_db(rds: &aws_sdk_rds::Client) -> Result<DbListed> {
    let mut pages = rds.describe_db_snapshots().max_records(100).into_paginator().items().send();
    let mut out = DbListed::default();
    while let Some(s) = pages.next().await {
        let s = s.map_err(|e| Error::aws("rds", "DescribeDBSnapshots", e))?;
        let (Some(id), Some(db)) = (s.db_snapshot_identifier(), s.db_instance_identifier()) else { continue };
        let state = snap_state(s.status());
        let ours = s.snapshot_type() == Some("manual") && tag(s.tag_list(), TAG_CREATED_BY) == Some(CREATED_BY);
        let started = to_chrono(s.snapshot_create_time().or(s.original_snapshot_create_time()));
        out.add(db, Snap { id: id.to_string(), started, state, ours }, tag(s.tag_list(), TAG_SWEEP));
    }
    Ok(out)
}

/// Every DB cluster snapshot (manual and automated), grouped by cluster.
pub async fn snapshots_by_cluster(rds: &aws_sdk_rds::Client) -> Result<DbListed> {
    let mut pages = rds.describe_db_cluster_snapshots().max_records(100).into_paginator().items().send();
    let mut out = DbListed::default();
    while let Some(s) = pages.next().await {
        let s = s.map_err(|e| Error::aws("rds", "DescribeDBClusterSnapshots", e))?;
        let (Some(id), Some(cluster)) = (s.db_cluster_snapshot_identifier(), s.db_cluster_identifier()) else {
            continue;
        };
        let ours = s.snapshot_type() == Some("manual") && tag(s.tag_list(), TAG_CREATED_BY) == Some(CREATED_BY);
        let started = to_chrono(s.snapshot_create_time().or(s.cluster_create_time()));
        let snap = Snap { id: id.to_string(), started, state: snap_state(s.status()), ours };
        out.add(cluster, snap, tag(s.tag_list(), TAG_SWEEP));
    }
    Ok(out)
}

fn suite_tags(db: &str, policy: &str) -> Vec<Tag> {
    vec![
        Tag::builder().key(TAG_CREATED_BY).value(CREATED_BY).build(),
        Tag::builder().key(TAG_POLICY).value(policy).build(),
        Tag::builder().key(TAG_SOURCE).value(db).build(),
    ]
}

/// Takes a tagged snapshot of the instance or cluster; whether it is already available (and so
/// can be copied in the same run).
/// Its tags name the sweep that took it (`selfheal:sweep`).
pub async fn create_snapshot(
    rds: &aws_sdk_rds::Client,
    db: &Database,
    snapshot: &str,
    policy: &str,
    sweep: &str,
) -> Result<bool> {
    let mut tags = suite_tags(&db.id, policy);
    tags.push(Tag::builder().key(TAG_SWEEP).value(sweep).build());
    let status = if db.cluster {
        rds.create_db_cluster_snapshot()
            .db_cluster_identifier(&db.id)
            .db_cluster_snapshot_identifier(snapshot)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| Error::aws("rds", "CreateDBClusterSnapshot", e))?
            .db_cluster_snapshot()
            .and_then(|s| s.status().map(str::to_string))
    } else {
        rds.create_db_snapshot()
            .db_instance_identifier(&db.id)
            .db_snapshot_identifier(snapshot)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| Error::aws("rds", "CreateDBSnapshot", e))?
            .db_snapshot()
            .and_then(|s| s.status().map(str::to_string))
    };
    Ok(status.as_deref() == Some("available"))
}

/// The ARN of snapshot `snapshot` of `db`, built from the database's own ARN (pure):
/// `arn:<partition>:rds:<region>:<account>:snapshot:<id>` (`cluster-snapshot` for a cluster).
pub fn snapshot_arn(db_arn: &str, cluster: bool, snapshot: &str) -> Option<String> {
    let parts: Vec<&str> = db_arn.splitn(7, ':').collect();
    let [arn, partition, service, region, account, _kind, _name] = parts.as_slice() else { return None };
    if *arn != "arn" || *service != "rds" || region.is_empty() || account.is_empty() {
        return None;
    }
    let kind = if cluster { "cluster-snapshot" } else { "snapshot" };
    Some(format!("arn:{partition}:rds:{region}:{account}:{kind}:{snapshot}"))
}

/// The suite's copies in the client's (DR) region, DB and cluster snapshots alike (copies carry
/// [`TAG_COPY_OF`]).
pub async fn copied_snapshots(rds: &aws_sdk_rds::Client) -> Result<DrCopies> {
    let mut out = DrCopies::default();
    let mut pages =
        rds.describe_db_snapshots().snapshot_type("manual").max_records(100).into_paginator().items().send();
    while let Some(s) = pages.next().await {
        let s = s.map_err(|e| Error::aws("rds", "DescribeDBSnapshots", e))?;
        let Some(id) = s.db_snapshot_identifier() else { continue };
        let snap = Snap {
            id: id.to_string(),
            started: to_chrono(s.snapshot_create_time().or(s.original_snapshot_create_time())),
            state: snap_state(s.status()),
            ours: tag(s.tag_list(), TAG_CREATED_BY) == Some(CREATED_BY),
        };
        out.add(tag(s.tag_list(), TAG_COPY_OF), tag(s.tag_list(), TAG_SOURCE), snap);
    }
    let mut pages =
        rds.describe_db_cluster_snapshots().snapshot_type("manual").max_records(100).into_paginator().items().send();
    while let Some(s) = pages.next().await {
        let s = s.map_err(|e| Error::aws("rds", "DescribeDBClusterSnapshots", e))?;
        let Some(id) = s.db_cluster_snapshot_identifier() else { continue };
        let snap = Snap {
            id: id.to_string(),
            started: to_chrono(s.snapshot_create_time().or(s.cluster_create_time())),
            state: snap_state(s.status()),
            ours: tag(s.tag_list(), TAG_CREATED_BY) == Some(CREATED_BY),
        };
        out.add(tag(s.tag_list(), TAG_COPY_OF), tag(s.tag_list(), TAG_SOURCE), snap);
    }
    Ok(out)
}

/// Copies `snapshot` of `db` into the DR client's region under the same identifier, tagged as a
/// suite copy. (Outside GovCloud a cross-region copy needs no pre-signed URL; an encrypted source
/// would need a KMS key in the DR region, which policies do not name yet.)
pub async fn copy_snapshot(dr: &aws_sdk_rds::Client, db: &Database, snapshot: &str, policy: &str) -> Result<String> {
    let source = snapshot_arn(&db.arn, db.cluster, snapshot)
        .ok_or_else(|| Error::Precondition(format!("{} has no usable ARN ({:?})", db.id, db.arn)))?;
    let mut tags = suite_tags(&db.id, policy);
    tags.push(Tag::builder().key(TAG_COPY_OF).value(snapshot).build());
    if db.cluster {
        dr.copy_db_cluster_snapshot()
            .source_db_cluster_snapshot_identifier(&source)
            .target_db_cluster_snapshot_identifier(snapshot)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| Error::aws("rds", "CopyDBClusterSnapshot", e))?;
    } else {
        dr.copy_db_snapshot()
            .source_db_snapshot_identifier(&source)
            .target_db_snapshot_identifier(snapshot)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| Error::aws("rds", "CopyDBSnapshot", e))?;
    }
    Ok(snapshot.to_string())
}

pub async fn delete_snapshot(rds: &aws_sdk_rds::Client, db: &Database, snapshot: &str) -> Result<()> {
    if db.cluster {
        rds.delete_db_cluster_snapshot()
            .db_cluster_snapshot_identifier(snapshot)
            .send()
            .await
            .map_err(|e| Error::aws("rds", "DeleteDBClusterSnapshot", e))?;
    } else {
        rds.delete_db_snapshot()
            .db_snapshot_identifier(snapshot)
            .send()
            .await
            .map_err(|e| Error::aws("rds", "DeleteDBSnapshot", e))?;
    }
    Ok(())
}

/// Sets automated-backup retention. On an instance, turning backups on from 0 causes a brief I/O
/// suspension, so that change waits for the maintenance window; raising a non-zero retention
/// applies now. A cluster always has backups on (at least 1 day), so its change applies now.
pub async fn set_retention(rds: &aws_sdk_rds::Client, db: &Database, days: i32) -> Result<()> {
    if db.cluster {
        rds.modify_db_cluster()
            .db_cluster_identifier(&db.id)
            .backup_retention_period(days)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| Error::aws("rds", "ModifyDBCluster", e))?;
    } else {
        rds.modify_db_instance()
            .db_instance_identifier(&db.id)
            .backup_retention_period(days)
            .apply_immediately(db.retention_days > 0)
            .send()
            .await
            .map_err(|e| Error::aws("rds", "ModifyDBInstance", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::rds;
    use crate::backup::test_support::t;

    #[test]
    fn db_snapshot_arns_come_from_the_database_arn() {
        assert_eq!(
            rds::snapshot_arn("arn:aws:rds:us-east-1:123456789012:db:orders", false, "selfheal-orders-1").as_deref(),
            Some("arn:aws:rds:us-east-1:123456789012:snapshot:selfheal-orders-1")
        );
        assert_eq!(
            rds::snapshot_arn("arn:aws-cn:rds:cn-north-1:123456789012:cluster:au", true, "s1").as_deref(),
            Some("arn:aws-cn:rds:cn-north-1:123456789012:cluster-snapshot:s1")
        );
        for bad in ["", "orders", "arn:aws:ec2:us-east-1:123456789012:volume/v", "arn:aws:rds:::db:x"] {
            assert_eq!(rds::snapshot_arn(bad, false, "s"), None, "{bad}");
        }
    }

    #[test]
    fn db_snapshot_ids_are_valid() {
        let id = db_snapshot_id("orders-db", t(0));
        assert!(id.starts_with("selfheal-orders-db-2027"), "{id}");
        assert!(!id.contains("--"));
    }
}
