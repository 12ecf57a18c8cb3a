//! The pure decisions: whether an instance is down, the plan (reboot or promote), which replica is
//! promoted (the RPO guard) and which Aurora reader takes over.

use std::collections::BTreeMap;

use serde::Serialize;

/// What the function knows about one DB instance (converted from the SDK type).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DbInstanceInfo {
    pub id: String,
    pub arn: Option<String>,
    /// The region the instance lives in, when it is not the function's own.
    pub region: Option<String>,
    pub status: String,
    pub engine: String,
    pub az: Option<String>,
    pub multi_az: bool,
    pub endpoint: Option<String>,
    pub replica_source: Option<String>,
    /// Read replicas: identifiers, or ARNs for replicas in other regions.
    pub replicas: Vec<String>,
    pub cluster: Option<String>,
    pub promotion_tier: Option<i32>,
    pub tags: BTreeMap<String, String>,
}

/// Whether an RDS status means the database cannot serve (so a failover is warranted). Statuses that
/// mean a recovery is already under way (`failing-over`, `rebooting`, `modifying`, `upgrading`,
/// `maintenance`...) are not "unavailable" either: they are [`super::stand_down::status`]'s, refused
/// before this is asked, even when forced.
pub fn is_unavailable(status: &str) -> bool {
    let s = status.to_ascii_lowercase();
    matches!(s.as_str(), "stopped" | "failed" | "storage-full" | "restore-error")
        || s.starts_with("inaccessible-")
        || s.starts_with("incompatible-")
}

/// How a failed primary instance gets a writer back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Multi-AZ: reboot with forced failover to the standby.
    RebootWithFailover,
    /// Promote one of the read replicas.
    PromoteReplica,
}

/// Chooses the plan for a primary instance; `Err` says why there is none. `mode` (manual
/// `params.mode`) may force `promote` or `reboot`.
pub fn choose_instance_plan(primary: &DbInstanceInfo, mode: Option<&str>) -> std::result::Result<Plan, String> {
    match mode {
        Some("promote") if !primary.replicas.is_empty() => return Ok(Plan::PromoteReplica),
        Some("promote") => return Err(format!("{} has no read replicas to promote", primary.id)),
        Some("reboot") if primary.multi_az => return Ok(Plan::RebootWithFailover),
        Some("reboot") => return Err(format!("{} is not Multi-AZ: a reboot cannot fail over", primary.id)),
        Some(other) => return Err(format!("unknown mode {other:?} (expected \"promote\" or \"reboot\")")),
        None => {}
    }
    // A Multi-AZ standby is synchronous (no data loss): prefer it unless the instance is in a state a
    // reboot cannot fix (stopped, out of storage), where only a replica helps.
    let reboot_can_help = !matches!(primary.status.as_str(), "stopped" | "storage-full");
    if primary.multi_az && (reboot_can_help || primary.replicas.is_empty()) {
        return Ok(Plan::RebootWithFailover);
    }
    if !primary.replicas.is_empty() {
        return Ok(Plan::PromoteReplica);
    }
    Err(format!("{} is neither Multi-AZ nor has read replicas: no failover path", primary.id))
}

/// A replica considered for promotion, with its lag.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub info: DbInstanceInfo,
    /// Seconds behind the primary; `None` when unknown.
    pub lag_seconds: Option<f64>,
}

/// Why a replica was not chosen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    pub replica: String,
    pub reason: String,
}

/// Parses the preferred-tag value: a number, lower preferred.
fn priority(info: &DbInstanceInfo, tag: &str) -> Option<i64> {
    info.tags.get(tag).and_then(|v| v.trim().parse::<i64>().ok())
}

/// Chooses the replica to promote. Eligible: available, same engine, lag known and within
/// `max_lag` (unless `force`). `requested` (manual `params.replica`) restricts the choice to one.
/// Preference: preferred-tag priority (lower first, untagged last), another AZ than the primary's,
/// the primary's region, lower lag, identifier.
pub fn choose_replica(
    primary: &DbInstanceInfo,
    candidates: &[Candidate],
    max_lag: f64,
    preferred_tag: &str,
    force: bool,
    requested: Option<&str>,
) -> (Option<Candidate>, Vec<Rejection>) {
    let mut rejected = Vec::new();
    let mut eligible: Vec<&Candidate> = Vec::new();
    for c in candidates {
        let reject = |reason: String| Rejection { replica: c.info.id.clone(), reason };
        if requested.is_some_and(|r| r != c.info.id) {
            rejected.push(reject("not the replica the invocation asked for".into()));
        } else if c.info.status != "available" {
            rejected.push(reject(format!("status is {}, not available", c.info.status)));
        } else if !c.info.engine.eq_ignore_ascii_case(&primary.engine) {
            rejected.push(reject(format!("engine {} differs from the primary's {}", c.info.engine, primary.engine)));
        } else {
            match c.lag_seconds {
                None if !force => rejected.push(reject("replica lag is unknown (RPO guard)".into())),
                Some(l) if l > max_lag && !force => {
                    rejected.push(reject(format!("replica lag {l}s exceeds the {max_lag}s RPO guard")))
                }
                _ => eligible.push(c),
            }
        }
    }
    let key = |c: &&Candidate| {
        let prio = priority(&c.info, preferred_tag).unwrap_or(i64::MAX);
        let same_az = c.info.az.is_some() && c.info.az == primary.az;
        let other_region = c.info.region.is_some() && c.info.region != primary.region;
        let lag_ms = c.lag_seconds.map(|l| (l * 1000.0) as i64).unwrap_or(i64::MAX);
        (prio, same_az, other_region, lag_ms, c.info.id.clone())
    };
    eligible.sort_by_key(key);
    (eligible.first().map(|c| (*c).clone()), rejected)
}

/// Whether a promoted instance has finished promoting. Real RDS answers the promotion with
/// `modifying` and clears the replica source when done; an emulator that answers `available` at once
/// (and keeps the source) is accepted when the promotion call itself said `available`.
pub fn promotion_complete(info: &DbInstanceInfo, promote_answered_available: bool) -> bool {
    info.status == "available" && (info.replica_source.is_none() || promote_answered_available)
}

/// One member of an Aurora cluster, with its instance's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMember {
    pub id: String,
    pub writer: bool,
    pub tier: Option<i32>,
    pub status: String,
    pub az: Option<String>,
}

/// Chooses the reader to fail an Aurora cluster over to: available, lowest promotion tier, another
/// AZ than the writer's, then identifier. `requested` restricts the choice to one reader.
pub fn choose_reader(members: &[ClusterMember], requested: Option<&str>) -> std::result::Result<ClusterMember, String> {
    let writer_az = members.iter().find(|m| m.writer).and_then(|m| m.az.clone());
    let mut readers: Vec<&ClusterMember> = members
        .iter()
        .filter(|m| !m.writer && m.status == "available" && requested.is_none_or(|r| r == m.id))
        .collect();
    readers.sort_by_key(|m| {
        let same_az = m.az.is_some() && m.az == writer_az;
        (m.tier.unwrap_or(15), same_az, m.id.clone())
    });
    match readers.first() {
        Some(m) => Ok((*m).clone()),
        None => {
            let seen: Vec<String> = members.iter().map(|m| format!("{} ({})", m.id, m.status)).collect();
            Err(format!("no available reader to fail over to among [{}]", seen.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, az: &str) -> DbInstanceInfo {
        DbInstanceInfo {
            id: id.into(),
            status: "available".into(),
            engine: "postgres".into(),
            az: Some(az.into()),
            ..Default::default()
        }
    }

    fn cand(id: &str, az: &str, lag: Option<f64>) -> Candidate {
        Candidate { info: inst(id, az), lag_seconds: lag }
    }

    const TAG: &str = "selfheal:promote-priority";

    #[test]
    fn unavailable_statuses() {
        for s in ["stopped", "failed", "storage-full", "inaccessible-encryption-credentials", "incompatible-network"] {
            assert!(is_unavailable(s), "{s}");
        }
        for s in ["available", "rebooting", "modifying", "backing-up", "starting"] {
            assert!(!is_unavailable(s), "{s}");
        }
    }

    #[test]
    fn replica_choice_prefers_tag_then_other_az_then_lag() {
        let p = inst("p", "a");
        let cs =
            vec![cand("same-az", "a", Some(1.0)), cand("other-az", "b", Some(5.0)), cand("other-az-2", "c", Some(3.0))];
        let (c, _) = choose_replica(&p, &cs, 30.0, TAG, false, None);
        assert_eq!(c.unwrap().info.id, "other-az-2");
        let mut cs2 = cs.clone();
        cs2[0].info.tags.insert(TAG.into(), "1".into());
        let (c, _) = choose_replica(&p, &cs2, 30.0, TAG, false, None);
        assert_eq!(c.unwrap().info.id, "same-az");
    }

    #[test]
    fn rpo_guard_rejects_lagging_and_unknown_unless_forced() {
        let p = inst("p", "a");
        let cs = vec![cand("slow", "b", Some(100.0)), cand("unknown", "c", None)];
        let (c, rej) = choose_replica(&p, &cs, 30.0, TAG, false, None);
        assert!(c.is_none());
        assert_eq!(rej.len(), 2);
        assert!(rej[0].reason.contains("exceeds"), "{:?}", rej);
        assert!(rej[1].reason.contains("unknown"), "{:?}", rej);
        let (c, _) = choose_replica(&p, &cs, 30.0, TAG, true, None);
        assert_eq!(c.unwrap().info.id, "slow");
    }

    #[test]
    fn replica_must_be_available_same_engine_and_requested() {
        let p = inst("p", "a");
        let mut down = cand("down", "b", Some(1.0));
        down.info.status = "stopped".into();
        let mut mysql = cand("mysql", "b", Some(1.0));
        mysql.info.engine = "mysql".into();
        let ok = cand("ok", "b", Some(2.0));
        let ok2 = cand("ok2", "c", Some(1.0));
        let (c, rej) = choose_replica(&p, &[down, mysql, ok, ok2], 30.0, TAG, false, Some("ok"));
        assert_eq!(c.unwrap().info.id, "ok");
        assert_eq!(rej.len(), 3);
    }

    #[test]
    fn plans() {
        let mut p = inst("p", "a");
        assert!(choose_instance_plan(&p, None).is_err());
        p.replicas = vec!["r".into()];
        assert_eq!(choose_instance_plan(&p, None), Ok(Plan::PromoteReplica));
        p.multi_az = true;
        p.status = "failed".into();
        assert_eq!(choose_instance_plan(&p, None), Ok(Plan::RebootWithFailover));
        p.status = "stopped".into();
        assert_eq!(choose_instance_plan(&p, None), Ok(Plan::PromoteReplica));
        assert_eq!(choose_instance_plan(&p, Some("reboot")), Ok(Plan::RebootWithFailover));
        assert!(choose_instance_plan(&p, Some("sideways")).is_err());
    }

    #[test]
    fn reader_choice_respects_tier_then_other_az() {
        let m = |id: &str, writer, tier, az: &str, status: &str| ClusterMember {
            id: id.into(),
            writer,
            tier: Some(tier),
            status: status.into(),
            az: Some(az.into()),
        };
        let members = vec![
            m("w", true, 1, "a", "stopped"),
            m("t2", false, 2, "b", "available"),
            m("t0-same", false, 0, "a", "available"),
            m("t0-other", false, 0, "c", "available"),
            m("t0-down", false, 0, "b", "failed"),
        ];
        assert_eq!(choose_reader(&members, None).unwrap().id, "t0-other");
        assert_eq!(choose_reader(&members, Some("t2")).unwrap().id, "t2");
        assert!(choose_reader(&members[..1], None).is_err());
    }

    #[test]
    fn promotion_completes_when_standalone_or_emulated() {
        let mut i = inst("r", "b");
        i.replica_source = Some("p".into());
        assert!(!promotion_complete(&i, false));
        assert!(promotion_complete(&i, true));
        i.replica_source = None;
        assert!(promotion_complete(&i, false));
        i.status = "modifying".into();
        assert!(!promotion_complete(&i, false));
    }
}
