//! The audit trail as memory: the last acted flip of a record, i.e. what "home" was before a failover
//! and when it was left (what failback restores, and what its hysteresis is measured from).

use crate::envelope::Outcome;
use crate::ledger::AuditRecord;

use super::plan::Direction;
use super::records::RecordSet;

/// A flip found in the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedFlip {
    pub direction: Direction,
    pub at: chrono::DateTime<chrono::Utc>,
    pub before: Vec<RecordSet>,
    pub after: Vec<RecordSet>,
    pub event_id: String,
}

/// The last live flip that acted, from a record's audit trail (oldest first).
pub fn last_flip(trail: &[AuditRecord]) -> Option<RecordedFlip> {
    trail.iter().rev().find_map(|r| {
        let e = &r.envelope;
        if e.outcome != Outcome::Acted || e.dry_run {
            return None;
        }
        let direction = Direction::parse(&e.action)?;
        let before: Vec<RecordSet> = serde_json::from_value(e.details.get("before")?.clone()).ok()?;
        let after: Vec<RecordSet> = serde_json::from_value(e.details.get("after")?.clone()).ok()?;
        let at = chrono::DateTime::parse_from_rfc3339(&e.time).ok()?.with_timezone(&chrono::Utc);
        Some(RecordedFlip { direction, at, before, after, event_id: e.event_id.clone() })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::plan::{plan_failover, Plan};
    use crate::dns::records::same_sets;
    use crate::dns::test_support::pair;
    use crate::dns::{FUNCTION, TARGET_KIND};
    use crate::envelope::{Envelope, Target};

    #[test]
    fn last_flip_reads_the_latest_acted_live_flip() {
        let before = pair();
        let Plan::Change(after) = plan_failover(&before, None, &[]).unwrap() else { panic!() };
        let rec = |outcome, dry, action: &str| {
            let e = Envelope::new(FUNCTION, action, Target::new(TARGET_KIND, "t"), outcome, "x")
                .dry_run(dry)
                .detail("before", &before)
                .detail("after", &after);
            AuditRecord {
                target: "t".into(),
                time: e.time.clone(),
                function: FUNCTION.into(),
                action: action.into(),
                outcome: outcome.as_str().into(),
                envelope: e,
            }
        };
        assert!(last_flip(&[]).is_none());
        let trail = vec![
            rec(Outcome::Acted, false, "failover"),
            rec(Outcome::DryRun, true, "failback"),
            rec(Outcome::Refused, false, "failback"),
        ];
        let f = last_flip(&trail).unwrap();
        assert_eq!(f.direction, Direction::Failover);
        assert!(same_sets(&f.before, &before));
        assert!(same_sets(&f.after, &after));
    }
}
