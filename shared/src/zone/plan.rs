//! What to do with one resource when its AZ is evacuated ([`plan`] → [`Move`]), and how its end
//! restores what the evacuation changed ([`Record`], [`restore_subnets`], [`lower_capacity`]). Pure:
//! over [`Resource`] facts read just before.
//!
//! The order of the rules is the order of the checks: a resource not in the AZ is left alone; a shift
//! ARC has in effect that is not ours (zonal autoshift, a practice run, an FIS experiment, somebody's
//! own shift) makes the evacuator stand down on it; ours away from another AZ refuses (one AZ per
//! resource); ours away from this AZ is kept or extended; then capacity first: a group is shifted only
//! with its desired capacity raised by the AZ's share within its maximum, or refused with the numbers;
//! a group ARC cannot shift has the AZ's subnets removed instead; a load balancer ARC cannot shift is
//! named, never skipped silently.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::config::ZoneConfig;
use super::facts::{Kind, Resource, ShiftOwner, Shiftable};

/// A group's desired capacity before and after the raise that carries the AZ's share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Raise {
    pub from: i32,
    pub to: i32,
    /// In-service instances in the AZ (the share the other AZs must carry).
    pub lost: i32,
    pub max: i32,
}

/// The decision for one resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "move", rename_all = "kebab-case")]
pub enum Move {
    /// Not deployed in the AZ: nothing to do.
    NotInAz,
    /// ARC has a shift of someone else's in effect: never fight it.
    StandDown { owner: ShiftOwner, shift_id: Option<String>, away_from: String },
    /// Our shift already moves it away from another AZ: at most one AZ per resource.
    OtherAz { shift_id: Option<String>, away_from: String },
    /// Our shift is in effect and far from expiring.
    Keep { shift_id: String },
    /// Our shift is in effect and expires soon: extend it.
    Extend { shift_id: String },
    /// Start a zonal shift away from the AZ (after raising the group's capacity, when `raise`).
    Shift { raise: Option<Raise> },
    /// ARC cannot shift this group: remove the AZ's subnets (the rest stay).
    RemoveSubnets { remove: Vec<String>, keep: Vec<String> },
    /// ARC cannot shift this load balancer: named in the decision, nothing done.
    NotShiftable { why: String },
    /// Capacity first, and the group's maximum leaves the other AZs no room for its share: refused
    /// with the numbers (`why` says them in words).
    NoHeadroom { why: String, desired: i32, in_service_in_az: i32, needs: i32, max: i32 },
    /// Refused, with the reason.
    Refuse { why: String },
}

/// Decides the move for `r` when `az` (ID `az_id`) is evacuated, at `now`.
pub fn plan(r: &Resource, az: &str, az_id: &str, cfg: &ZoneConfig, now: DateTime<Utc>) -> Move {
    if !r.azs.iter().any(|a| a == az) {
        return Move::NotInAz;
    }
    if let Some(s) = r.shifts.iter().find(|s| s.owner != ShiftOwner::Selfheal) {
        return Move::StandDown { owner: s.owner, shift_id: s.id.clone(), away_from: s.away_from.clone() };
    }
    if let Some(s) = r.shifts.iter().find(|s| s.away_from != az_id) {
        return Move::OtherAz { shift_id: s.id.clone(), away_from: s.away_from.clone() };
    }
    if let Some(s) = r.shifts.first() {
        let id = s.id.clone().unwrap_or_default();
        let soon = s
            .expiry
            .map(|e| e.signed_duration_since(now).to_std().map(|left| left < cfg.extend_before).unwrap_or(true))
            .unwrap_or(false);
        return if soon { Move::Extend { shift_id: id } } else { Move::Keep { shift_id: id } };
    }
    match (&r.shiftable, r.kind) {
        (Shiftable::No { why }, Kind::LoadBalancer) => Move::NotShiftable { why: why.clone() },
        (Shiftable::No { why }, Kind::AutoScalingGroup) => {
            let Some(g) = &r.group else { return Move::Refuse { why: format!("{}: no group facts", r.name) } };
            if !cfg.subnet_fallback {
                return Move::Refuse {
                    why: format!("{} cannot be shifted ({why}) and the subnet fallback is off", r.name),
                };
            }
            let remove = g.subnets_in(az);
            let keep: Vec<String> = g.subnets.iter().filter(|s| !remove.contains(s)).cloned().collect();
            if keep.is_empty() {
                return Move::Refuse {
                    why: format!("{} cannot be shifted ({why}) and every subnet it has is in {az}", r.name),
                };
            }
            Move::RemoveSubnets { remove, keep }
        }
        (Shiftable::Yes, Kind::LoadBalancer) => Move::Shift { raise: None },
        (Shiftable::Yes, Kind::AutoScalingGroup) => {
            let Some(g) = &r.group else { return Move::Refuse { why: format!("{}: no group facts", r.name) } };
            let lost = g.in_service.get(az).copied().unwrap_or(0);
            if lost == 0 || !cfg.raise_capacity {
                return Move::Shift { raise: None };
            }
            let to = g.desired + lost;
            if to > g.max {
                return Move::NoHeadroom {
                    why: format!(
                        "capacity: {} needs desired {to} ({} + {lost} in-service in {az}) for the other AZs to carry \
                         the load, but its maximum is {}; raise the maximum to at least {to}",
                        r.name, g.desired, g.max
                    ),
                    desired: g.desired,
                    in_service_in_az: lost,
                    needs: to,
                    max: g.max,
                };
            }
            Move::Shift { raise: Some(Raise { from: g.desired, to, lost, max: g.max }) }
        }
    }
}

/// What an evacuation did to one resource, kept in the ledger so its end undoes exactly that.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub kind: Option<Kind>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnets: Option<SubnetRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Raise>,
}

/// The group's subnets before the evacuation, and the ones it removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetRecord {
    pub original: Vec<String>,
    pub removed: Vec<String>,
}

/// The subnets to restore: exactly the recorded original set, when the group's subnets are still
/// what the evacuation left; otherwise somebody changed them since and restoring would undo that
/// change (`Err` says what differs).
pub fn restore_subnets(current: &[String], rec: &SubnetRecord) -> Result<Vec<String>, String> {
    let left: Vec<&String> = rec.original.iter().filter(|s| !rec.removed.contains(s)).collect();
    let mut a: Vec<&String> = current.iter().collect();
    let mut b = left.clone();
    a.sort();
    b.sort();
    if a == b {
        return Ok(rec.original.clone());
    }
    Err(format!(
        "the group's subnets changed since the evacuation (now {}, the evacuation left {}): not restoring {} over \
         somebody's change",
        current.join(","),
        left.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
        rec.removed.join(",")
    ))
}

/// The desired capacity to go back to: the recorded one when the raise is still what the group has;
/// otherwise its scaling changed it since (`Err` says so, and nothing is lowered).
pub fn lower_capacity(current_desired: i32, raise: &Raise) -> Result<i32, String> {
    if current_desired == raise.to {
        Ok(raise.from)
    } else {
        Err(format!(
            "desired capacity is {current_desired}, not the {} the evacuation set: its scaling changed it since, so it \
             stays",
            raise.to
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::facts::{ArcShift, GroupFacts};
    use super::*;
    use crate::config::Env;
    use std::collections::BTreeMap;

    fn cfg() -> ZoneConfig {
        ZoneConfig::read(&mut Env::from_map(Default::default()))
    }

    fn group(desired: i32, max: i32, shiftable: bool) -> Resource {
        let subnets = vec!["subnet-a".to_string(), "subnet-b".into(), "subnet-c".into()];
        let subnet_azs: BTreeMap<String, String> =
            subnets.iter().zip(["az-a", "az-b", "az-c"]).map(|(s, a)| (s.clone(), a.to_string())).collect();
        Resource {
            kind: Kind::AutoScalingGroup,
            arn: "arn:aws:autoscaling:us-east-1:1:autoScalingGroup:x:autoScalingGroupName/web".into(),
            name: "web".into(),
            azs: vec!["az-a".into(), "az-b".into(), "az-c".into()],
            shiftable: if shiftable { Shiftable::Yes } else { Shiftable::No { why: "zonal shift not enabled".into() } },
            shifts: vec![],
            group: Some(GroupFacts {
                desired,
                min: 1,
                max,
                in_service: [("az-a".to_string(), 2), ("az-b".to_string(), 2), ("az-c".to_string(), 2)].into(),
                subnets,
                subnet_azs,
            }),
        }
    }

    fn shift(owner: ShiftOwner, away: &str, expires_in_min: i64) -> ArcShift {
        ArcShift {
            id: Some("s-1".into()),
            owner,
            away_from: away.into(),
            expiry: Some(Utc::now() + chrono::Duration::minutes(expires_in_min)),
            comment: "c".into(),
        }
    }

    #[test]
    fn capacity_first_raise_within_max_or_refuse_with_numbers() {
        let now = Utc::now();
        assert_eq!(
            plan(&group(6, 9, true), "az-a", "id-a", &cfg(), now),
            Move::Shift { raise: Some(Raise { from: 6, to: 8, lost: 2, max: 9 }) }
        );
        let Move::NoHeadroom { why, desired, in_service_in_az, needs, max } =
            plan(&group(6, 7, true), "az-a", "id-a", &cfg(), now)
        else {
            panic!("refuse")
        };
        assert!(why.contains("needs desired 8") && why.contains("maximum is 7"), "{why}");
        assert_eq!((desired, in_service_in_az, needs, max), (6, 2, 8, 7));
    }

    #[test]
    fn never_fight_arc_and_one_az_per_resource() {
        let now = Utc::now();
        for owner in [ShiftOwner::Autoshift, ShiftOwner::PracticeRun, ShiftOwner::FisExperiment, ShiftOwner::Customer] {
            let mut r = group(6, 9, true);
            r.shifts.push(shift(owner, "id-b", 30));
            assert!(matches!(plan(&r, "az-a", "id-a", &cfg(), now), Move::StandDown { owner: o, .. } if o == owner));
        }
        let mut r = group(6, 9, true);
        r.shifts.push(shift(ShiftOwner::Selfheal, "id-b", 30));
        assert!(
            matches!(plan(&r, "az-a", "id-a", &cfg(), now), Move::OtherAz { ref away_from, .. } if away_from == "id-b")
        );
    }

    #[test]
    fn our_shift_is_kept_or_extended_when_it_expires_soon() {
        let now = Utc::now();
        let mut r = group(6, 9, true);
        r.shifts.push(shift(ShiftOwner::Selfheal, "id-a", 50));
        assert!(matches!(plan(&r, "az-a", "id-a", &cfg(), now), Move::Keep { .. }));
        r.shifts[0] = shift(ShiftOwner::Selfheal, "id-a", 5);
        assert!(matches!(plan(&r, "az-a", "id-a", &cfg(), now), Move::Extend { .. }));
    }

    #[test]
    fn unshiftable_groups_lose_the_az_subnets_and_load_balancers_are_named() {
        let now = Utc::now();
        let m = plan(&group(6, 9, false), "az-a", "id-a", &cfg(), now);
        assert_eq!(
            m,
            Move::RemoveSubnets { remove: vec!["subnet-a".into()], keep: vec!["subnet-b".into(), "subnet-c".into()] }
        );
        let mut lb = group(6, 9, false);
        lb.kind = Kind::LoadBalancer;
        assert!(matches!(plan(&lb, "az-a", "id-a", &cfg(), now), Move::NotShiftable { .. }));
        assert_eq!(plan(&group(6, 9, true), "az-x", "id-x", &cfg(), now), Move::NotInAz);
    }

    #[test]
    fn the_end_restores_exactly_what_was_recorded_or_names_the_change() {
        let rec =
            SubnetRecord { original: vec!["s-c".into(), "s-a".into(), "s-b".into()], removed: vec!["s-a".into()] };
        assert_eq!(restore_subnets(&["s-b".into(), "s-c".into()], &rec), Ok(rec.original.clone()));
        let err = restore_subnets(&["s-b".into()], &rec).unwrap_err();
        assert!(err.contains("changed since"), "{err}");
        let raise = Raise { from: 6, to: 8, lost: 2, max: 9 };
        assert_eq!(lower_capacity(8, &raise), Ok(6));
        assert!(lower_capacity(10, &raise).is_err());
    }
}
