//! Planning a flip (pure): which way traffic moves, what a failover makes of the record, the change
//! batch that gets there, and which sets lose and gain traffic.

use serde::{Deserialize, Serialize};

use super::records::{classify, identity, same_sets, weight_of, RecordSet, Routing};

/// Which way traffic moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the primary (home) target to the standby.
    Failover,
    /// Back to where a recorded failover moved traffic from.
    Failback,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Failover => "failover",
            Direction::Failback => "failback",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "failover" => Some(Direction::Failover),
            "failback" => Some(Direction::Failback),
            _ => None,
        }
    }
}

/// What a failover would make of the record.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// The record sets to converge to.
    Change(Vec<RecordSet>),
    /// Nothing to do, and why.
    Noop(String),
}

/// Plans a failover: away from the active side (or from the side whose health check `failing_hc` is).
pub fn plan_failover(
    current: &[RecordSet],
    failing_hc: Option<&str>,
    standby: &[String],
) -> std::result::Result<Plan, String> {
    let routing = classify(current)?;
    let mut desired = current.to_vec();
    match routing {
        Routing::FailoverPair => {
            let primary = current.iter().position(|s| s.failover.as_deref() == Some("PRIMARY")).unwrap_or(0);
            let secondary = 1 - primary;
            if let Some(hc) = failing_hc {
                if current[primary].health_check_id.as_deref() != Some(hc) {
                    return Ok(Plan::Noop(format!(
                        "health check {hc} is not the PRIMARY's ({}); traffic is already away from it",
                        current[primary].describe()
                    )));
                }
            }
            desired[primary].failover = Some("SECONDARY".into());
            desired[secondary].failover = Some("PRIMARY".into());
        }
        Routing::WeightedPair => {
            let from = match failing_hc {
                Some(hc) => current
                    .iter()
                    .position(|s| s.health_check_id.as_deref() == Some(hc))
                    .ok_or_else(|| format!("no weighted set uses health check {hc}"))?,
                None => {
                    let (w0, w1) = (current[0].weight.unwrap_or(0), current[1].weight.unwrap_or(0));
                    if w0 == w1 {
                        return Err(format!("ambiguous: both weighted sets have weight {w0}; name the failing side"));
                    }
                    if w0 > w1 {
                        0
                    } else {
                        1
                    }
                }
            };
            let to = 1 - from;
            let (wf, wt) = (current[from].weight.unwrap_or(0), current[to].weight.unwrap_or(0));
            if wf == 0 {
                return Ok(Plan::Noop(format!("{} already has weight 0", current[from].describe())));
            }
            desired[from].weight = Some(0);
            desired[to].weight = Some(wf + wt);
        }
        Routing::Simple => {
            if standby.is_empty() {
                return Err("a simple record needs standby values (SELFHEAL_DNS_RECORDS entry =value|...)".into());
            }
            let mut have = current[0].values.clone();
            have.sort();
            let mut want = standby.to_vec();
            want.sort();
            if current[0].alias.is_none() && have == want {
                return Ok(Plan::Noop(format!("{} already points at the standby", current[0].name)));
            }
            desired[0].values = standby.to_vec();
            desired[0].alias = None;
            if desired[0].ttl.is_none() {
                desired[0].ttl = Some(60);
            }
        }
    }
    Ok(Plan::Change(desired))
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    /// `DELETE`, `CREATE` or `UPSERT`.
    pub action: String,
    pub record_set: RecordSet,
}

/// The change batch that turns `current` into `desired`: a set whose failover role changes is DELETEd
/// and CREATEd (Route 53 rejects an UPSERT that swaps roles), anything else that differs is UPSERTed.
/// DELETEs come first.
pub fn change_batch(current: &[RecordSet], desired: &[RecordSet]) -> Vec<PlannedChange> {
    let mut deletes = Vec::new();
    let mut writes = Vec::new();
    for want in desired {
        let have = current.iter().find(|c| identity(c) == identity(want));
        match have {
            Some(h) if same_sets(std::slice::from_ref(h), std::slice::from_ref(want)) => {}
            Some(h) if h.failover != want.failover => {
                deletes.push(PlannedChange { action: "DELETE".into(), record_set: h.clone() });
                writes.push(PlannedChange { action: "CREATE".into(), record_set: want.clone() });
            }
            Some(_) => writes.push(PlannedChange { action: "UPSERT".into(), record_set: want.clone() }),
            None => writes.push(PlannedChange { action: "CREATE".into(), record_set: want.clone() }),
        }
    }
    for have in current {
        if !desired.iter().any(|d| identity(d) == identity(have)) {
            deletes.push(PlannedChange { action: "DELETE".into(), record_set: have.clone() });
        }
    }
    deletes.extend(writes);
    deletes
}

/// The sets that lose traffic and the sets that gain it going from `current` to `desired`.
pub fn traffic_shift(current: &[RecordSet], desired: &[RecordSet]) -> (Vec<RecordSet>, Vec<RecordSet>) {
    let mut losing = Vec::new();
    let mut gaining = Vec::new();
    for want in desired {
        let have = current.iter().find(|c| identity(c) == identity(want));
        let (was, now) = (have.map(weight_of).unwrap_or(0), weight_of(want));
        if now > was {
            gaining.push(want.clone());
        } else if now < was {
            if let Some(h) = have {
                losing.push(h.clone());
            }
        } else if want.set_identifier.is_none()
            && have.is_some_and(|h| !same_sets(std::slice::from_ref(h), std::slice::from_ref(want)))
        {
            // A simple record changing its value: the old value loses, the new one gains.
            if let Some(h) = have {
                losing.push(h.clone());
            }
            gaining.push(want.clone());
        }
    }
    (losing, gaining)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::test_support::{pair, set};

    #[test]
    fn failover_pair_swaps_roles_with_delete_then_create() {
        let cur = pair();
        let Plan::Change(want) = plan_failover(&cur, Some("hc-blue"), &[]).unwrap() else { panic!() };
        assert_eq!(want[0].failover.as_deref(), Some("SECONDARY"));
        assert_eq!(want[1].failover.as_deref(), Some("PRIMARY"));
        let batch = change_batch(&cur, &want);
        let actions: Vec<&str> = batch.iter().map(|c| c.action.as_str()).collect();
        assert_eq!(actions, ["DELETE", "DELETE", "CREATE", "CREATE"]);
        let (losing, gaining) = traffic_shift(&cur, &want);
        assert_eq!(losing[0].set_identifier.as_deref(), Some("blue"));
        assert_eq!(gaining[0].set_identifier.as_deref(), Some("green"));
        // The alarm is on the standby's check: nothing to move.
        assert!(matches!(plan_failover(&cur, Some("hc-green"), &[]).unwrap(), Plan::Noop(_)));
        // Failback to the recorded before is the reverse batch.
        assert_eq!(change_batch(&want, &cur).len(), 4);
        assert!(change_batch(&cur, &cur).is_empty());
    }

    #[test]
    fn weighted_pair_moves_all_weight_and_keeps_the_total() {
        let cur = vec![
            set("w-blue", None, Some(90), "10.0.0.1", Some("a")),
            set("w-green", None, Some(10), "10.0.0.2", None),
        ];
        let Plan::Change(want) = plan_failover(&cur, None, &[]).unwrap() else { panic!() };
        assert_eq!((want[0].weight, want[1].weight), (Some(0), Some(100)));
        assert!(change_batch(&cur, &want).iter().all(|c| c.action == "UPSERT"));
        assert!(matches!(plan_failover(&want, Some("a"), &[]).unwrap(), Plan::Noop(_)));
        let tie = vec![set("x", None, Some(5), "1", None), set("y", None, Some(5), "2", None)];
        assert!(plan_failover(&tie, None, &[]).unwrap_err().contains("ambiguous"));
    }

    #[test]
    fn simple_record_needs_a_standby_and_is_upserted() {
        let mut s = set("x", None, None, "10.0.0.1", None);
        s.set_identifier = None;
        assert!(plan_failover(&[s.clone()], None, &[]).unwrap_err().contains("standby"));
        let Plan::Change(want) = plan_failover(&[s.clone()], None, &["10.0.0.9".into()]).unwrap() else { panic!() };
        assert_eq!(want[0].values, ["10.0.0.9"]);
        assert_eq!(change_batch(&[s.clone()], &want)[0].action, "UPSERT");
        assert!(matches!(plan_failover(&want, None, &["10.0.0.9".into()]).unwrap(), Plan::Noop(_)));
        let (l, g) = traffic_shift(&[s], &want);
        assert_eq!((l.len(), g.len()), (1, 1));
    }
}
