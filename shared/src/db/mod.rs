//! db-failover: gets a database writer back after its primary fails.
//!
//! Triggers: RDS DB instance/cluster events through EventBridge (categories `failure`, `availability`,
//! `failover`), CloudWatch alarms on a database (dimension `DBInstanceIdentifier` or
//! `DBClusterIdentifier`, by SNS or EventBridge), and manual invocations (`action: "failover"`, for
//! drills and planned failovers; `params.replica` names the replica to promote, `params.mode` forces
//! `promote` or `reboot`).
//!
//! What it does, by topology:
//! - **Aurora cluster**: `FailoverDBCluster` to the best reader: available, lowest promotion tier,
//!   preferring another AZ than the failed writer's.
//! - **Multi-AZ DB instance** (without read replicas, or `params.mode = "reboot"`): `RebootDBInstance`
//!   with `ForceFailover` (synchronous standby, no data loss).
//! - **Primary with read replicas** (same or another region): the best candidate is promoted: available,
//!   same engine, replica lag within `SELFHEAL_DB_MAX_LAG_SECONDS` (the RPO guard), preferred by the
//!   numeric tag `SELFHEAL_DB_PREFERRED_TAG` (lower first), then another AZ than the primary's, then the
//!   primary's region, then the lowest lag. It is promoted with `PromoteReadReplica`, tagged
//!   `selfheal:promoted-from=<primary>`, waited for (bounded by `SELFHEAL_DB_WAIT_SECONDS` and by the
//!   invocation's deadline), and then, when `SELFHEAL_DB_DNS_ZONE_ID` and `SELFHEAL_DB_DNS_RECORD` are
//!   set and the record names the failed writer (or does not exist yet), the application's CNAME is
//!   repointed at the new writer's endpoint; a record naming another database is left alone, so one
//!   configured record never follows whichever of many databases failed last. A promotion still
//!   converging when the invocation nears its deadline records its progress on its marker and fails;
//!   the retry resumes the wait and the repoint (it never promotes a second replica).
//!
//! Guards, in order: the primary (or cluster) must be opted in by tag; **another recovery must not own
//! it** ([`stand_down`], read at decision time, `force` or not, and shown the same in a dry run): the
//! instance, the cluster or the cluster's writer `failing-over`, `rebooting`, `modifying` (or
//! renaming, configuring...), `upgrading`, in `maintenance`, `promoting`, `backtracking`, `starting`
//! or `stopping`; a Blue/Green deployment `SWITCHOVER_IN_PROGRESS` with it (or a cluster member) as
//! source or target (`DescribeBlueGreenDeployments`); an Aurora global database it is a member of
//! with a `FailoverState` `pending`/`failing-over`/`cancelling` or status `failing-over`/
//! `switching-over` (`DescribeGlobalClusters`) — each a refused decision (warning, details
//! `guard: "another-recovery"`, `recovery: "<kind>"`, `inProgress`) naming what is in progress; it
//! must really be unavailable on a fresh `DescribeDBInstances` (stale or flapping events do nothing)
//! unless a manual invocation sets `force`; the guardrails' claim, per-database lease, cooldown and rate limit
//! ([`crate::guardrails`]); dry-run; and for
//! promotions ONE promotion per primary, ever: the ledger marker `promotion#<primary>` is taken
//! atomically before `PromoteReadReplica` (a second promotion would split the data), and a replica
//! already tagged as promoted from the primary also refuses. To re-arm a rebuilt primary, delete the
//! ledger item `once#promotion#<primary>`. A replica with unknown lag or lag over the RPO guard is
//! never promoted unless forced; with no candidate left nothing is promoted and a critical envelope
//! pages a human.
//!
//! Replica lag comes from a [`LagSource`]: [`CloudWatchLag`] reads `AWS/RDS ReplicaLag` (Maximum over
//! the last five minutes, dimension `DBInstanceIdentifier`) with `GetMetricData` in production;
//! [`StaticLag`] serves fixed values to the emulator tests and the drill.
//!
//! Testing: the decisions (status classification, plan, replica and reader choice, configuration) are
//! pure functions with unit tests here; [`CloudWatchLag`] is unit-tested with `aws-smithy-mocks`
//! (moto does not speak CloudWatch's current rpc-v2-cbor protocol); the handler is tested end to end
//! against moto in `tests/emulator/db.rs` with real-shaped events and [`StaticLag`]. Moto's
//! `PromoteReadReplica` leaves `ReadReplicaSourceDBInstanceIdentifier` set and answers `available` at
//! once, so the wait accepts an instance that reports `available` when the promotion call itself
//! already answered `available`; real RDS answers `modifying` and clears the source on completion.
//! The stand-downs: moto shows a database `rebooting`/`modifying` only in passing, completes a
//! Blue/Green switchover at once (`AVAILABLE` → `SWITCHOVER_COMPLETED`) and has no global database
//! failover state, so `tests/emulator/stand_down.rs` checks against moto that deployments and global
//! databases which are *not* moving are read and let the failover go on, and the moving cases are
//! unit-tested against responses shaped as the RDS API reference shows them (`aws-smithy-mocks`).
//!
//! The database record's repoint stands down too while the suite's last Route 53 change on its zone is
//! still `PENDING` ([`crate::stand_down::pending_change_refusal`]: every change the suite submits records its id per
//! zone in the ledger, [`crate::ledger::zone_change`], and `GetChange` is asked about the last one;
//! Route 53 cannot list changes, so changes made outside the suite are not seen).
//!
//! IAM: `rds:DescribeDBInstances`, `rds:DescribeDBClusters`, `rds:DescribeBlueGreenDeployments`,
//! `rds:DescribeGlobalClusters`, `rds:ListTagsForResource`,
//! `rds:PromoteReadReplica`, `rds:AddTagsToResource`, `rds:RebootDBInstance`, `rds:FailoverDBCluster`,
//! `cloudwatch:GetMetricData`, `route53:ListResourceRecordSets`, `route53:ChangeResourceRecordSets`,
//! `route53:GetChange`, plus the ledger's DynamoDB and the topic's SNS permissions.

// Where each concern lives:
// - config.rs: `DbConfig` and the DNS record setting.
// - intent.rs: what a trigger asks for (`intent_from_trigger`).
// - choice.rs: the pure decisions: plan, replica choice (RPO guard), reader choice.
// - stand_down.rs: the pure decisions on another recovery owning the database (or its record's zone).
// - lag.rs: replica lag sources (CloudWatch, static).
// - rds.rs, dns_record.rs: the AWS layer (RDS descriptions, the Route 53 CNAME).
// - handler.rs: `DbFailover`, trigger dispatch and the guards before a plan runs.
// - reboot.rs, promote.rs, cluster.rs: carrying out each plan.

mod choice;
mod cluster;
mod config;
mod dns_record;
mod handler;
mod intent;
mod lag;
mod promote;
mod rds;
mod reboot;
pub mod stand_down;

pub use choice::{
    choose_instance_plan, choose_reader, choose_replica, is_unavailable, promotion_complete, Candidate, ClusterMember,
    DbInstanceInfo, Plan, Rejection,
};
pub use config::{DbConfig, DnsRecord};
pub use dns_record::{read_cname, upsert_cname, upsert_cname_recorded};
pub use handler::DbFailover;
pub use intent::{intent_from_trigger, FailoverIntent, Intent, TargetKind};
pub use lag::{CloudWatchLag, LagSource, StaticLag};
pub use rds::{
    cluster_stand_down, describe_blue_green_deployments, describe_cluster, describe_global_clusters, describe_instance,
    instance_stand_down, parse_db_ref, ClusterInfo,
};

/// The function's name in envelopes and the ledger.
pub const FUNCTION: &str = "db-failover";
/// The decision name used before a plan is chosen (skips, opt-in refusals).
pub const ACTION_FAILOVER: &str = "failover";
/// Promotion of a read replica.
pub const ACTION_PROMOTE: &str = "promote-replica";
/// Multi-AZ reboot with forced failover.
pub const ACTION_REBOOT: &str = "reboot-failover";
/// Aurora `FailoverDBCluster`.
pub const ACTION_CLUSTER: &str = "failover-cluster";
/// The tag written on a promoted replica, naming the primary it was promoted from.
pub const PROMOTED_FROM_TAG: &str = "selfheal:promoted-from";
/// The tag written on a promoted replica, naming the event that promoted it.
pub const PROMOTED_BY_TAG: &str = "selfheal:promoted-by-event";
/// The rate-limit group every failover shares.
pub const RATE_GROUP: &str = "db-failover";
