//! Standing down when another change owns the record's hosted zone: the pure decision over the
//! suite's last recorded change on the zone and what `GetChange` says of it now.
//!
//! Route 53 has no "list changes" API, so every change the suite submits records its change id per
//! zone in the ledger ([`crate::ledger::zone_change`], through [`super::route53::submit_recorded`]);
//! before a change, [`super::route53::pending_change_refusal`] asks `GetChange` about the last one,
//! and while it is `PENDING` the flip stands down: a refused decision (warning, details
//! `guard: "another-recovery"`, `recovery: "route53-change"`) naming the change, who submitted it and
//! when. Changes made outside the suite (the console, another tool) are not recorded and cannot be
//! seen.

use serde::Serialize;
use serde_json::{json, Value};

use crate::envelope::{Envelope, Outcome, Severity};
use crate::guardrails::{ActionReport, ActionRequest};
use crate::ledger::zone_change::ZoneChange;
use crate::Ctx;

/// The `guard` detail every stand-down carries.
pub const GUARD: &str = "another-recovery";

/// Another change owns the zone: what is in progress, and its evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StandDown {
    /// The kind of recovery (the `recovery` detail): `route53-change`.
    pub recovery: &'static str,
    /// Names the change in progress and ends with "standing down …".
    pub reason: String,
    /// What was read (the `inProgress` detail).
    pub in_progress: Value,
}

impl StandDown {
    /// The refused decision, for a request not (yet) under the guardrails.
    pub fn envelope(&self, ctx: &Ctx, req: &ActionRequest) -> Envelope {
        ctx.envelope(req, Outcome::Refused, self.reason.clone())
            .severity(Severity::Warning)
            .detail("guard", GUARD)
            .detail("recovery", self.recovery)
            .detail("inProgress", &self.in_progress)
    }

    /// The refused report, for work already under the guardrails.
    pub fn report(&self) -> ActionReport {
        ActionReport::refused(self.reason.clone())
            .severity(Severity::Warning)
            .detail("guard", GUARD)
            .detail("recovery", self.recovery)
            .detail("inProgress", &self.in_progress)
    }
}

/// The suite's last change on the zone still `PENDING` (`status`: what `GetChange` says of it now).
pub fn pending_change(last: &ZoneChange, status: &str) -> Option<StandDown> {
    let reason = last.pending_reason(status)?;
    Some(StandDown { recovery: "route53-change", reason, in_progress: json!({ "change": last, "status": status }) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::zone_change::ChangeBy;

    #[test]
    fn only_a_pending_change_stands_a_flip_down() {
        let last = ZoneChange {
            zone_id: "Z0123456789ABC".into(),
            change_id: "/change/C2682N5HXP0BZ4".into(),
            by: ChangeBy {
                function: "db-failover".into(),
                action: "promote-replica".into(),
                event_id: "rds:orders:RDS-EVENT-0034".into(),
                target: "db.example.com.".into(),
            },
            submitted_at: "2026-11-25T10:15:33+00:00".into(),
        };
        let sd = pending_change(&last, "PENDING").unwrap();
        assert_eq!(sd.recovery, "route53-change");
        assert!(sd.reason.contains("submitted by db-failover promote-replica of db.example.com."), "{}", sd.reason);
        let report = sd.report();
        assert_eq!(report.outcome, Outcome::Refused);
        assert_eq!(report.severity, Some(Severity::Warning));
        assert_eq!(report.details["guard"], GUARD);
        assert_eq!(report.details["recovery"], "route53-change");
        assert_eq!(report.details["inProgress"]["change"]["changeId"], "/change/C2682N5HXP0BZ4");
        assert!(pending_change(&last, "INSYNC").is_none());
    }
}
