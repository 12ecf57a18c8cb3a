//! backup-enforcer against moto: stale volumes and databases get snapshots and fresh ones do not;
//! retention prunes exactly the right snapshots (sparing foreign, AMI-backed and the newest
//! `min_keep`); AWS Backup plan drift is detected and corrected; dry-run changes nothing; one failing
//! resource does not stop the rest; overlapping sweeps act once; a policy tag without the opt-in tag
//! changes nothing; Aurora clusters are backed up as a whole.
//!
//! Every test uses its own policy tag key, so parallel tests never see each other's resources.
//!
//! By concern: `sweep.rs` (what a sweep does, and does not), `retention.rs` (what is kept and deleted),
//! `copies_and_plans.rs` (AWS Backup plans and copies to the DR region), `datastores.rs` (DynamoDB
//! tables and S3 buckets); `common.rs` holds what they share.

mod common;
mod copies_and_plans;
mod datastores;
mod retention;
mod sweep;
