//! IAM conditions proven against the code, with moto: the calls a function makes in these tests,
//! with the tags it writes and the tags on what it touches, are evaluated by the harness's IAM
//! evaluator ([`harness::iam`], with its own unit tests) against the role it runs as in
//! `infra/template.yaml` or `infra/member.yaml`; a call the policy would deny fails the test.
//!
//! One file per concern: `replacement.rs` (the healer's replacement of a standalone instance and its
//! Elastic IP), `backups.rs` (backup-enforcer's snapshots, DR copies and expiry), `datastores.rs`
//! (its DynamoDB tables and S3 buckets), `trust.rs` (a member
//! role assumed with its external id), `zone.rs` (zone-evacuator's zonal shifts, capacity and subnet
//! changes and writer moves, in the hub and a member account, with the ARC stand-in). The other tests
//! that record and assert their calls (the game days in `drill.rs`, the fleet tests in `fleet.rs`)
//! reach the evaluator through the names below.

pub(crate) use harness::iam::{assert_all_allowed, assert_allowed, assert_still_known, record};

mod backups;
mod datastores;
mod replacement;
mod trust;
mod zone;
