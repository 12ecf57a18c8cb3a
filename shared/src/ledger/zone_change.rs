//! The last Route 53 change the suite submitted on each hosted zone, so a later change can stand down
//! while that one is still `PENDING`.
//!
//! Route 53 has no "list changes" API: `GetChange` answers only for a change id one already holds. So
//! every change the suite submits (dns-failover's flips, db-failover's record repoint) records its id
//! here, per zone, with who submitted it and when; before its next change on the zone, a function asks
//! `GetChange` about the last recorded one. Changes made outside the suite (the console, another tool)
//! are not recorded and cannot be seen.
//!
//! One item per zone, `zone-change#{zone id}` / `last`, overwritten by each change (the newest is the
//! one that matters). The key is **not** qualified by account and region like the ledger's other items:
//! hosted zone ids are global, and the zones are the hub's, whichever account a database that fails
//! over lives in, so every function must find the same item.

use chrono::Utc;
use serde::Serialize;

use super::{get_s, n, s, Ledger};
use crate::error::{Error, Result};

/// Who submitted a change (what the item records besides the change id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeBy {
    pub function: String,
    pub action: String,
    pub event_id: String,
    /// What was changed: a record (`zone/name/TYPE`, or the record's name).
    pub target: String,
}

/// The last change recorded on a zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneChange {
    pub zone_id: String,
    /// As Route 53 answered it (`/change/C…` or `C…`).
    pub change_id: String,
    pub by: ChangeBy,
    /// RFC 3339.
    pub submitted_at: String,
}

impl ZoneChange {
    /// Why a change on the zone must wait, given the recorded change's status as `GetChange` reports
    /// it now: `Some` while it is `PENDING`. Pure.
    pub fn pending_reason(&self, status: &str) -> Option<String> {
        if !status.eq_ignore_ascii_case("PENDING") {
            return None;
        }
        Some(format!(
            "Route 53 change {} on hosted zone {} is still PENDING (submitted by {} {} of {} for event {} at {}): \
             another change is in progress on the zone; standing down until it is INSYNC",
            self.change_id,
            self.zone_id,
            self.by.function,
            self.by.action,
            self.by.target,
            self.by.event_id,
            self.submitted_at
        ))
    }
}

fn key(zone_id: &str) -> String {
    format!("zone-change#{}", zone_id.trim_start_matches("/hostedzone/"))
}

impl Ledger {
    /// Records `change_id` as the last change submitted on `zone_id` (overwriting the previous one).
    pub async fn record_zone_change(&self, zone_id: &str, change_id: &str, by: &ChangeBy) -> Result<()> {
        let now = Utc::now();
        self.ddb
            .put_item()
            .table_name(&self.table)
            .item("pk", s(key(zone_id)))
            .item("sk", s("last"))
            .item("kind", s("zone-change"))
            .item("zone_id", s(zone_id))
            .item("change_id", s(change_id))
            .item("function", s(&by.function))
            .item("action", s(&by.action))
            .item("event_id", s(if by.event_id.is_empty() { "-" } else { &by.event_id }))
            .item("target", s(if by.target.is_empty() { "-" } else { &by.target }))
            .item("submitted_at", s(now.to_rfc3339()))
            .item("expires_at", n(self.expires_at(now)))
            .send()
            .await
            .map_err(|e| self.explain(Error::aws("dynamodb", "PutItem", e)))?;
        Ok(())
    }

    /// The last change the suite recorded on `zone_id`, if any.
    pub async fn last_zone_change(&self, zone_id: &str) -> Result<Option<ZoneChange>> {
        let Some(item) = self.get(&key(zone_id), "last").await? else { return Ok(None) };
        let text = |k: &str| get_s(&item, k).unwrap_or("unknown").to_string();
        let Some(change_id) = get_s(&item, "change_id").filter(|c| !c.is_empty()) else { return Ok(None) };
        Ok(Some(ZoneChange {
            zone_id: zone_id.to_string(),
            change_id: change_id.to_string(),
            by: ChangeBy {
                function: text("function"),
                action: text("action"),
                event_id: text("event_id"),
                target: text("target"),
            },
            submitted_at: text("submitted_at"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change() -> ZoneChange {
        ZoneChange {
            zone_id: "Z0123456789ABC".into(),
            change_id: "/change/C2682N5HXP0BZ4".into(),
            by: ChangeBy {
                function: "dns-failover".into(),
                action: "failover".into(),
                event_id: "alarm:app-primary:2026-11-25T10:15:31.180+0000".into(),
                target: "Z0123456789ABC/app.example.com./A".into(),
            },
            submitted_at: "2026-11-25T10:15:33+00:00".into(),
        }
    }

    #[test]
    fn only_a_pending_change_holds_the_zone() {
        let c = change();
        let why = c.pending_reason("PENDING").expect("pending stands down");
        for part in [
            "Route 53 change /change/C2682N5HXP0BZ4 on hosted zone Z0123456789ABC is still PENDING",
            "submitted by dns-failover failover of Z0123456789ABC/app.example.com./A",
            "for event alarm:app-primary:2026-11-25T10:15:31.180+0000 at 2026-11-25T10:15:33+00:00",
            "standing down",
        ] {
            assert!(why.contains(part), "{part:?} in {why}");
        }
        assert_eq!(c.pending_reason("INSYNC"), None);
        assert_eq!(key("/hostedzone/Z1"), key("Z1"), "one item whichever way the zone id is spelled");
    }
}
