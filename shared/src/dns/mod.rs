//! dns-failover: moves an application's DNS traffic from its primary target to its standby in Route 53,
//! and back again.
//!
//! Three record shapes are managed (one `name`/`type` in one hosted zone, listed in
//! `SELFHEAL_DNS_RECORDS`):
//! - a **failover pair** (two record sets, `Failover=PRIMARY`/`SECONDARY`): a flip swaps which set is
//!   PRIMARY (DELETE both, CREATE both swapped, in one atomic change batch: Route 53 rejects an UPSERT
//!   that changes the failover role of a set);
//! - a **weighted pair** (two record sets with `Weight`): a failover moves all the weight to the standby
//!   (the total is kept), by UPSERT of both sets;
//! - a **simple record**: a failover UPSERTs the standby value configured for it.
//!
//! A failback restores exactly the record sets a recorded failover replaced (the `before` of the last
//! acted failover in the ledger's audit trail of the record), and only while the record still looks
//! the way that failover left it: the ledger is the memory of what "home" is, and a record changed by
//! hand since is refused rather than guessed at.
//!
//! Triggers: a CloudWatch alarm on a Route 53 health check (`HealthCheckId` dimension; `ALARM` on the
//! active side's check fails over, `OK` on the home side's check fails back once the failover is older
//! than `SELFHEAL_DNS_FAILBACK_AFTER_SECONDS`), a schedule (sweeps pending failbacks with the same
//! hysteresis), and manual invocations (`action: failover|failback`, `target: <record name>`,
//! `params.zone`, `params.type`). Other functions call [`DnsFailover::flip`] directly.
//!
//! Guards, in the spirit of Route 53 ARC safety rules:
//! - opt-in: the record must be listed in `SELFHEAL_DNS_RECORDS` **and** its hosted zone or one of its
//!   health checks must carry the opt-in tag (`selfheal:enabled=true`);
//! - never move traffic to a side whose health check is failing; if both sides fail, change nothing
//!   (fail open) and page a human (critical notification);
//! - an alarm-triggered failover re-checks the primary's health check and stands down if it reports
//!   healthy again;
//! - anti-flap: the ledger cooldown on the record (`SELFHEAL_COOLDOWN_SECONDS`) spans failover and
//!   failback, and automatic failback waits `SELFHEAL_DNS_FAILBACK_AFTER_SECONDS` after a failover;
//! - another change owning the zone: while the suite's last Route 53 change on the record's hosted
//!   zone is still `PENDING`, a flip stands down, a refused decision (warning, details
//!   `guard: "another-recovery"`, `recovery: "route53-change"`) naming the change, who submitted it
//!   and when ([`crate::stand_down::pending_change_refusal`]). Route 53 has no "list changes" API: every
//!   change the suite submits records its id per zone in the ledger ([`submit_recorded`], item
//!   `zone-change#{zone}`, [`crate::ledger::zone_change`]) and `GetChange` is asked about the last one,
//!   so changes made outside the suite (the console, another tool) are not seen. A dry run shows the
//!   same refusal;
//! - dry-run reads everything and reports the exact change batch it would submit (`changeBatch`);
//! - idempotent: the ledger claim per event, plus "already failed over" / "nothing to fail back" checks
//!   against the record's real state.
//!
//! Health of a check, as relied on: `GetHealthCheck` (for `Disabled` and `Inverted`) and
//! `GetHealthCheckStatus` (the checkers' observations). A check is healthy when more than 18% of its
//! checkers report `Success` (Route 53's own rule), a disabled check is healthy, and `Inverted` flips the
//! result. A check with no observations is unknown and treated as not healthy for the side that would
//! gain traffic. (moto always reports `Success`, so tests make a side fail by inverting its check, which
//! is also how operators force a Route 53 failover by hand.) Calculated and CloudWatch-metric checks
//! have no checker observations and are therefore refused as standbys.
//!
//! IAM: `route53:ListHostedZones`, `route53:ListHostedZonesByName`, `route53:GetHostedZone`,
//! `route53:ListTagsForResource`, `route53:ListHealthChecks`, `route53:GetHealthCheck`,
//! `route53:GetHealthCheckStatus`, `route53:ListResourceRecordSets`,
//! `route53:ChangeResourceRecordSets`, `route53:GetChange` (the INSYNC wait, and the pending-change
//! stand-down), plus the ledger's DynamoDB and the topic's SNS permissions.

mod config;
mod failover;
mod flip;
mod handler;
mod health;
mod history;
mod plan;
mod records;
mod route53;

pub use config::{normalise_name, DnsConfig, RecordRef};
pub use failover::DnsFailover;
pub use handler::{intake, Intake};
pub use health::{effective_health, HealthReading};
pub use history::{last_flip, RecordedFlip};
pub use plan::{change_batch, plan_failover, traffic_shift, Direction, Plan, PlannedChange};
pub use records::{classify, same_sets, Alias, RecordSet, Routing};
pub use route53::{health, list_record, resolve_zone, submit, submit_recorded, tags, wait_insync};

/// The function's name in envelopes and the ledger.
pub const FUNCTION: &str = "dns-failover";
/// The envelope target kind of a managed record.
pub const TARGET_KIND: &str = "route53-record";

/// Record sets shared by the unit tests of the submodules.
#[cfg(test)]
mod test_support {
    use super::RecordSet;

    pub(super) fn set(
        id: &str,
        failover: Option<&str>,
        weight: Option<i64>,
        value: &str,
        hc: Option<&str>,
    ) -> RecordSet {
        RecordSet {
            name: "app.example.com.".into(),
            rtype: "A".into(),
            set_identifier: Some(id.into()),
            failover: failover.map(str::to_string),
            weight,
            ttl: Some(60),
            values: vec![value.into()],
            alias: None,
            health_check_id: hc.map(str::to_string),
        }
    }

    pub(super) fn pair() -> Vec<RecordSet> {
        vec![
            set("blue", Some("PRIMARY"), None, "10.0.0.1", Some("hc-blue")),
            set("green", Some("SECONDARY"), None, "10.0.0.2", Some("hc-green")),
        ]
    }
}
