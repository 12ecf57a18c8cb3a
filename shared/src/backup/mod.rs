//! backup-enforcer: keeps every opted-in EBS volume, RDS instance and Aurora cluster backed up on
//! schedule, prunes the suite's own snapshots by retention, keeps one AWS Backup plan (and its
//! vault) per policy in line with configuration, and keeps opted-in DynamoDB tables and S3 buckets
//! protected (issue #29).
//!
//! DynamoDB tables ([`plan_table`]; `tables.rs` decides, `dynamodb.rs` calls, `sweep_tables.rs`
//! sweeps): point-in-time recovery with the policy's period (`pitrRecoveryDays`), deletion
//! protection, on-demand backups named `selfheal-<table>-<window>` when the policy asks
//! (`tableBackups`) and only those pruned, with the snapshots' guards; every replica of a global
//! table ACTIVE (else a critical failure); a table not ACTIVE refused by name; the RPO from
//! `LatestRestorableDateTime` in the report. S3 buckets of the sweep's region ([`plan_bucket`];
//! `buckets.rs`, `s3.rs`, `sweep_buckets.rs`): versioning enabled (never suspended), the lifecycle
//! rule [`LIFECYCLE_RULE_ID`] merged into the owner's configuration without touching the owner's
//! rules, replication checked against the policy's `replicationDestination` (missing, disabled, to a
//! bucket that does not exist: failures) and created only with `createReplication`; a bucket that
//! answers AccessDenied to `ExpectedBucketOwner` refused by name.
//!
//! A resource is managed when it carries both the policy tag (`selfheal:backup=<policy>`) and the
//! suite's opt-in tag (`selfheal:enabled=true` by default, as for every function, and as the IAM
//! conditions in `infra/template.yaml` require); one with a policy tag only is counted in the report
//! as not opted in and left alone. Aurora cluster members are backed up through their cluster.
//! Policies (`gold`, `silver`, `bronze` built in, overridable with `SELFHEAL_BACKUP_POLICIES`) say how
//! old the newest snapshot may be, how long the suite's snapshots are kept, how many are always kept,
//! which vault the plan targets and which region copies go to.
//!
//! A sweep of one place (an account in a region; EventBridge schedule or
//! `{"source":"selfheal.manual","action":"sweep"}`) is one decision about many resources, so it goes
//! through the guardrails in bulk ([`sweep`](self::Sweep)); incident-driven actions elsewhere keep the
//! per-action path, [`Ctx::execute`](crate::context::Ctx::execute):
//! 1. takes one lease per policy in the place (`backup-sweep/<policy>`, the ledger's lease, renewed
//!    while the sweep runs, released at the end). Another sweep of the place holding one (an
//!    overlapping schedule, a redelivery while the first runs) makes this one stand down: one
//!    `duplicate` report naming the holder, nothing done. A dry run takes no lease;
//! 2. lists everything once, paginated: volumes, every self-owned snapshot, every snapshot an own AMI
//!    uses, DB instances and clusters, their snapshots, and the copies already in each DR region;
//! 3. decides per resource with pure functions ([`is_stale`], [`plan_prune`], [`rds_retention_fix`],
//!    [`copy_candidate`]) that take `now` as a parameter. The sweep's id is
//!    `sweep:<policy>:<slot>` (the policy window; [`sweep_event_id`]) and every snapshot it takes
//!    carries it (`selfheal:sweep`): a resource with a snapshot of this sweep is done, however its age
//!    reads, and counts as fixed by an earlier attempt (`fixedEarlier`). A retried sweep finds its own
//!    work by listing, not by ledger items per resource;
//! 4. acts per resource with bounded concurrency (`SELFHEAL_BACKUP_CONCURRENCY`) and at most
//!    `SELFHEAL_BACKUP_API_RATE` mutating calls a second in the place ([`Throttle`]: it waits, never
//!    exceeds). One resource failing never stops the others;
//! 5. audits every per-resource decision in batches (`BatchWriteItem`, 25 a request, unprocessed items
//!    retried with backoff; [`crate::ledger::Ledger::audit_batch`]), publishes none of them on its
//!    own, and ends with one compliance report (compliant / fixed / failed per resource type, every
//!    failed resource named, critical) and EMF metrics. A sweep starts on no resource once its time
//!    budget (`SELFHEAL_BACKUP_TIME_BUDGET_SECONDS`) is spent; the report counts those left and fails,
//!    and the retry lists what was done and does the rest.
//!
//! Beyond the listings, a sweep in which every volume needs a snapshot makes 1.04 requests per volume:
//! the snapshot, and a 25th of a `BatchWriteItem`.
//!
//! Fleet-wide, a schedule covers the hub's account and every member account in each of
//! `SELFHEAL_BACKUP_REGIONS`. Without `SELFHEAL_BACKUP_QUEUE_URL` the scheduled invocation sweeps
//! them one after another (one report each). With it, the sweep is fanned out on Lambda and SQS
//! ([`fanout`](self::SweepPlan)): the schedule's invocation *plans* (records the run in the ledger
//! with every shard outstanding, sends one shard per account and region to the queue); the queue
//! invokes this function with each shard (batch size 1, at most `MaximumConcurrency` at once) and
//! the worker sweeps that place, answering with a partial batch response (`batchItemFailures`). A
//! shard that fails is retried by SQS; on its last receive (`SELFHEAL_BACKUP_SHARD_MAX_RECEIVES`) it
//! is counted as finished, failed, with its reason, and SQS moves it to the dead-letter queue. A
//! worker out of time sends the rest of its shard on as a new message. The worker that finishes the
//! last shard assembles the run's one summary from the shards' stored results and publishes it once:
//! every failed resource named with its account and region, every failed shard with its reason.
//!
//! Deletion guards: only snapshots the suite created (`selfheal:created-by=backup-enforcer`), never the
//! newest `min_keep`, never one an own AMI uses, never a pending one, and never more than
//! `SELFHEAL_BACKUP_MAX_DELETE_PERCENT` of a resource's snapshots in one run. The same retention, with
//! the same guards, applies separately to a resource's copies in its policy's DR region.
//!
//! IAM actions called: ec2:DescribeTags (the tagged volumes), ec2:DescribeSnapshots, ec2:DescribeImages,
//! ec2:CreateSnapshot, ec2:CreateTags (tags on create), ec2:DeleteSnapshot, ec2:CopySnapshot (DR
//! region); rds:DescribeDBInstances, rds:DescribeDBSnapshots, rds:CreateDBSnapshot,
//! rds:AddTagsToResource (tags on create), rds:DeleteDBSnapshot, rds:ModifyDBInstance,
//! rds:DescribeDBClusters, rds:DescribeDBClusterSnapshots, rds:CreateDBClusterSnapshot,
//! rds:DeleteDBClusterSnapshot, rds:ModifyDBCluster, rds:CopyDBSnapshot and rds:CopyDBClusterSnapshot
//! (DR region);
//! backup:ListBackupPlans, backup:GetBackupPlan, backup:CreateBackupPlan, backup:UpdateBackupPlan,
//! backup:DescribeBackupVault, backup:CreateBackupVault;
//! dynamodb:ListTables, dynamodb:ListTagsOfResource, dynamodb:DescribeTable,
//! dynamodb:DescribeContinuousBackups, dynamodb:ListBackups, dynamodb:UpdateContinuousBackups,
//! dynamodb:UpdateTable (deletion protection), dynamodb:CreateBackup, dynamodb:DeleteBackup;
//! s3:ListAllMyBuckets (`ListBuckets`), s3:GetBucketTagging, s3:GetBucketVersioning,
//! s3:PutBucketVersioning, s3:GetLifecycleConfiguration, s3:PutLifecycleConfiguration,
//! s3:GetReplicationConfiguration, s3:PutReplicationConfiguration, s3:ListBucket (`HeadBucket` on a
//! replication destination), iam:PassRole (the replication role, to S3 only); in the hub: dynamodb:BatchWriteItem (the
//! sweep's audit records), sqs:SendMessage (`SendMessageBatch` too: the planner's shards, a worker's
//! rest of a shard), and for the queue's event source mapping sqs:ReceiveMessage,
//! sqs:DeleteMessage, sqs:GetQueueAttributes.

use chrono::{DateTime, Utc};

use crate::config::CommonConfig;

mod buckets;
mod config;
mod dr_copy;
pub mod dynamodb;
pub mod ec2;
mod enforcer;
mod fanout;
mod handler;
pub mod plans;
mod policy;
pub mod rds;
mod report;
mod retention;
pub mod s3;
mod sweep;
mod sweep_buckets;
mod sweep_databases;
mod sweep_plans;
mod sweep_tables;
mod sweep_volumes;
mod tables;
mod throttle;
mod window;

pub use buckets::{merge_lifecycle, plan_bucket, Bucket, BucketPlan, Versioning, LIFECYCLE_RULE_ID};
pub use config::BackupConfig;
pub use dr_copy::{copy_candidate, DrCopies};
pub use ec2::Volume;
pub use enforcer::BackupEnforcer;
pub use fanout::{ShardBody, SweepPlan, SHARD_KIND};
pub use handler::sweep_request;
pub use plans::{desired_rule, plan_drift, RuleSpec};
pub use policy::{builtin_policies, parse_policies, Policy};
pub use rds::{db_snapshot_id, Database};
pub use report::{response_decisions, Report, Tally, REPORT_LIST_LIMIT, RESPONSE_DECISION_LIMIT};
pub use retention::{is_stale, plan_prune, rds_retention_fix, Prune, Snap, SnapState};
pub use sweep::Sweep;
pub use tables::{backup_name, is_suite_backup, plan_table, Pitr, Table, TablePlan, TableWork};
pub use throttle::Throttle;
pub use window::{sweep_event_id, time_bucket};

/// The function's name in envelopes and the ledger.
pub const FUNCTION: &str = "backup-enforcer";
/// The tag value every snapshot the suite creates carries under [`TAG_CREATED_BY`].
pub const CREATED_BY: &str = "backup-enforcer";
pub const TAG_CREATED_BY: &str = "selfheal:created-by";
pub const TAG_POLICY: &str = "selfheal:policy";
/// The resource (volume or DB instance id) a suite snapshot was taken of.
pub const TAG_SOURCE: &str = "selfheal:source";
/// The sweep that took a snapshot (`sweep:<policy>:<slot>`, in the snapshot's own account and
/// region): how a retried sweep sees by listing what it already did.
pub const TAG_SWEEP: &str = "selfheal:sweep";
/// On a DR-region copy: the home-region snapshot it copies.
pub const TAG_COPY_OF: &str = "selfheal:copy-of";

/// Resource kinds in envelopes and the report.
pub const KIND_VOLUME: &str = "ebs-volume";
pub const KIND_DB: &str = "rds-instance";
/// An Aurora cluster: backed up as one (its member instances have no snapshots of their own).
pub const KIND_CLUSTER: &str = "rds-cluster";
pub const KIND_PLAN: &str = "backup-plan";
/// A DynamoDB table: point-in-time recovery, deletion protection, on-demand backups, replicas.
pub const KIND_TABLE: &str = "dynamodb-table";
/// An S3 bucket: versioning, noncurrent-version expiration, cross-region replication.
pub const KIND_BUCKET: &str = "s3-bucket";

/// RDS keeps automated backups for at most this many days.
pub const RDS_MAX_RETENTION_DAYS: i32 = 35;

// Helpers shared by the AWS layers (ec2, rds).

fn to_chrono(t: Option<&aws_smithy_types::DateTime>) -> DateTime<Utc> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos())).unwrap_or(DateTime::UNIX_EPOCH)
}

/// Whether AWS tags (as `(key, value)` options) opt a resource in.
fn opted_in<'a>(tags: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>, config: &CommonConfig) -> bool {
    crate::guardrails::is_opted_in(tags.filter_map(|(k, v)| Some((k?, v.unwrap_or("")))), config)
}

#[cfg(test)]
mod test_support {
    //! Fixtures shared by the unit tests of every file in this module.
    use chrono::{DateTime, Utc};

    use super::{builtin_policies, Policy, Snap, SnapState};

    pub(super) fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + h * 3600, 0).unwrap()
    }

    pub(super) fn snap(id: &str, hours: i64, ours: bool) -> Snap {
        Snap { id: id.into(), started: t(hours), state: SnapState::Completed, ours }
    }

    pub(super) fn policy() -> Policy {
        Policy { retention_days: 7, min_keep: 2, max_age_hours: 24, ..builtin_policies()["silver"].clone() }
    }
}
