//! Auto Scaling groups and fleets: the maxUnhealthy [`short_circuit`] over a group's members, and
//! replacing a member through its group.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use super::asg;
use super::config::AsgMethod;
use super::health::Health;
use crate::envelope::Severity;
use crate::error::Result;
use crate::guardrails::ActionReport;

/// The evidence of a tripped short-circuit.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShortCircuit {
    /// `group` or `az:<name>`.
    pub scope: String,
    pub unhealthy: usize,
    pub members: usize,
    pub max_percent: u32,
    /// Each broken member and why.
    pub evidence: BTreeMap<String, Vec<String>>,
}

/// The maxUnhealthy rule over `members` (the target counts as broken). `None` when healing may go on.
pub fn short_circuit(members: &[Health], target: &str, max_percent: u32, min_unhealthy: u32) -> Option<ShortCircuit> {
    let live: Vec<&Health> = members.iter().filter(|h| h.instance_id == target || !h.is_going_away()).collect();
    let broken = |h: &Health| -> Vec<String> {
        let mut p = h.problems();
        if h.instance_id == target && p.is_empty() {
            p.push("the instance being healed".into());
        }
        p
    };
    let check = |scope: String, set: Vec<&Health>| -> Option<ShortCircuit> {
        let evidence: BTreeMap<String, Vec<String>> =
            set.iter().map(|h| (h.instance_id.clone(), broken(h))).filter(|(_, p)| !p.is_empty()).collect();
        let (u, n) = (evidence.len(), set.len());
        let trips = u >= min_unhealthy as usize && n > 0 && (u as u64) * 100 > u64::from(max_percent) * n as u64;
        trips.then_some(ShortCircuit { scope, unhealthy: u, members: n, max_percent, evidence })
    };
    let mut scoped: Vec<&Health> = live.clone();
    if !scoped.iter().any(|h| h.instance_id == target) {
        return None; // the caller always includes the target; without it there is nothing to judge
    }
    if let Some(sc) = check("group".into(), std::mem::take(&mut scoped)) {
        return Some(sc);
    }
    let mut by_az: BTreeMap<&str, Vec<&Health>> = BTreeMap::new();
    for h in &live {
        by_az.entry(h.az.as_deref().unwrap_or("unknown")).or_default().push(h);
    }
    by_az.into_iter().find_map(|(az, set)| check(format!("az:{az}"), set))
}
/// Replaces a group member through the group and waits for its replacement.
pub(super) async fn replace_in_group(
    asgc: &aws_sdk_autoscaling::Client,
    id: &str,
    g: &asg::Group,
    method: AsgMethod,
    wait: Duration,
    poll: Duration,
) -> Result<ActionReport> {
    let before: BTreeSet<String> = g.members.iter().map(|m| m.instance_id.clone()).collect();
    let activity = match method {
        AsgMethod::Terminate => asg::terminate_keep_capacity(asgc, id).await?,
        AsgMethod::SetHealth => {
            asg::mark_unhealthy(asgc, id).await?;
            format!("marked {id} Unhealthy")
        }
    };
    tracing::info!(instance = %id, group = %g.name, ?method, activity = %activity, "replacement requested");
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let now = asg::group(asgc, &g.name).await?;
        let fresh: Vec<&asg::Member> = now
            .members
            .iter()
            .filter(|m| !before.contains(&m.instance_id) && !m.lifecycle.starts_with("Terminat"))
            .collect();
        if let Some(new) = fresh.first() {
            tracing::info!(instance = %id, replacement = %new.instance_id, "replacement launching");
            return Ok(ActionReport::acted(format!(
                "replaced {id} through Auto Scaling group {}: replacement {} is {}",
                g.name, new.instance_id, new.lifecycle
            ))
            .detail("group", &g.name)
            .detail("method", method)
            .detail("replacement", &new.instance_id)
            .detail("replacementAz", &new.az)
            .detail("desiredCapacity", now.desired)
            .detail("activity", activity));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(ActionReport::failed(format!(
                "{id} was handed to Auto Scaling group {} but no replacement appeared within {}s",
                g.name,
                wait.as_secs()
            ))
            .severity(Severity::Critical)
            .detail("group", &g.name)
            .detail("method", method)
            .detail("activity", activity));
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::healer::test_support::health;

    #[test]
    fn short_circuit_needs_a_share_and_a_count() {
        let group = vec![
            health("i-1", "a", "running", "Unhealthy"),
            health("i-2", "b", "running", "Healthy"),
            health("i-3", "c", "running", "Healthy"),
        ];
        assert!(short_circuit(&group, "i-1", 40, 2).is_none(), "one of three");
        let mut two = group.clone();
        two[1].asg_health = Some("Unhealthy".into());
        let sc = short_circuit(&two, "i-1", 40, 2).unwrap();
        assert_eq!((sc.unhealthy, sc.members, sc.scope.as_str()), (2, 3, "group"));
        assert!(short_circuit(&two, "i-1", 70, 2).is_none(), "under a higher threshold");
        // A single standalone instance is never short-circuited by itself.
        assert!(short_circuit(&[health("i-9", "a", "running", "")], "i-9", 40, 2).is_none());
        // One AZ of a large group going down trips on the AZ.
        let mut big: Vec<Health> =
            (0..9).map(|i| health(&format!("i-{i}"), ["a", "b", "c"][i % 3], "running", "Healthy")).collect();
        for h in big.iter_mut().filter(|h| h.az.as_deref() == Some("a")).take(2) {
            h.state = "stopped".into();
        }
        let sc = short_circuit(&big, "i-0", 40, 2).unwrap();
        assert_eq!(sc.scope, "az:a");
        // Members already going away do not count.
        let mut leaving = two.clone();
        leaving[1].state = "shutting-down".into();
        assert!(short_circuit(&leaving, "i-1", 40, 2).is_none());
    }
}
