//! zone-evacuator (issue #28) against moto and the ARC zonal shift stand-in, through the real
//! `aws-sdk-arczonalshift` client: per-AZ alarm storms, region events, ARC's own shifts, capacity,
//! extension and hysteresis, the subnet fallback, member accounts, dry-run, lost answers, bad input,
//! the healer's AZ short-circuit and the writers. Assertions read moto, the stand-in and the ledger.

mod arc_owned;
mod bad_input;
mod capacity;
pub(crate) mod common;
mod dry_run;
mod healer;
mod lifecycle;
mod lost_answer;
mod member;
mod region;
mod storm;
mod subnets;
mod writers;
