//! Standing down when another recovery owns the database: pure decisions over typed facts, each a
//! [`StandDown`] naming what is in progress, or `None`. The handler reads the facts at decision time
//! ([`super::rds`], [`super::dns_record`]) and records every stand-down as a refused decision
//! (severity warning, details `guard: "another-recovery"` and `recovery: "<kind>"`), `force` or not.
//!
//! | recovery        | owned by                                                                           |
//! |-----------------|------------------------------------------------------------------------------------|
//! | `failover`, `reboot`, `modification`, `upgrade`, `maintenance`, `promotion`, `backtrack`, `start`, `stop` | RDS itself: the instance, cluster or writer in that status |
//! | `blue-green`    | a Blue/Green deployment `SWITCHOVER_IN_PROGRESS` with the database as source or target |
//! | `global-database` | an Aurora global database switchover or failover the cluster is a member of     |
//! | `route53-change`| the suite's last change on the record's hosted zone still `PENDING` ([`crate::stand_down::pending_change`]) |

use serde::Serialize;
use serde_json::json;

use crate::stand_down::StandDown;

/// The recovery an RDS instance or cluster status means is already under way, and its words.
fn recovery_of(status: &str) -> Option<(&'static str, &'static str)> {
    let s = status.to_ascii_lowercase();
    Some(match s.as_str() {
        "failing-over" => ("failover", "RDS is already failing it over"),
        "rebooting" => ("reboot", "RDS is already rebooting it (a reboot, or a Multi-AZ failover)"),
        "modifying"
        | "renaming"
        | "resetting-master-credentials"
        | "storage-config-upgrade"
        | "moving-to-vpc"
        | "converting-to-vpc"
        | "update-iam-db-auth" => ("modification", "a modification of it is in progress"),
        s if s.starts_with("configuring-") => ("modification", "a modification of it is in progress"),
        "upgrading" => ("upgrade", "an engine upgrade of it is in progress"),
        "maintenance" => ("maintenance", "RDS is applying maintenance to it"),
        "promoting" => ("promotion", "a promotion of it is in progress"),
        "backtracking" => ("backtrack", "a backtrack of it is in progress"),
        "starting" => ("start", "it is being started"),
        "stopping" => ("stop", "it is being stopped"),
        _ => return None,
    })
}

/// A DB instance, cluster or cluster writer (`what`: "DB instance", "DB cluster", "writer ... of
/// cluster ...") whose status means RDS or an operator is already acting on it.
pub fn status(what: &str, id: &str, status: &str) -> Option<StandDown> {
    let (kind, words) = recovery_of(status)?;
    Some(StandDown::new(
        kind,
        format!("{what} {id} is {status}: {words}; standing down (force does not override this)"),
        json!({ "id": id, "status": status }),
    ))
}

/// A Blue/Green deployment, as `DescribeBlueGreenDeployments` reports it.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreen {
    pub id: String,
    pub name: String,
    pub status: String,
    /// The blue side's ARN.
    pub source: String,
    /// The green side's ARN.
    pub target: String,
    /// (source member ARN, target member ARN, status) of each pair being switched over.
    pub members: Vec<(String, String, String)>,
}

/// A Blue/Green deployment switching over (`SWITCHOVER_IN_PROGRESS`) with one of `arns` (the
/// database's, and for a cluster its members') as its source or target.
pub fn blue_green(arns: &[String], deployments: &[BlueGreen]) -> Option<StandDown> {
    let ours = |a: &str| !a.is_empty() && arns.iter().any(|x| x == a);
    deployments.iter().filter(|d| d.status == "SWITCHOVER_IN_PROGRESS").find_map(|d| {
        let side = if ours(&d.source) || d.members.iter().any(|(s, _, _)| ours(s)) {
            "source (blue)"
        } else if ours(&d.target) || d.members.iter().any(|(_, t, _)| ours(t)) {
            "target (green)"
        } else {
            return None;
        };
        Some(StandDown::new(
            "blue-green",
            format!(
                "Blue/Green deployment {} ({}) is switching over (SWITCHOVER_IN_PROGRESS), with this database as its \
                 {side}: the switchover owns it; standing down",
                d.name, d.id
            ),
            json!({ "blueGreenDeployment": d }),
        ))
    })
}

/// An Aurora global database's failover state (`FailoverState`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalFailover {
    /// `pending`, `failing-over` or `cancelling`.
    pub status: String,
    pub from: Option<String>,
    pub to: Option<String>,
    /// `true` for a failover (data loss allowed), `false` for a switchover.
    pub data_loss_allowed: Option<bool>,
}

/// An Aurora global database, as `DescribeGlobalClusters` reports it.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalCluster {
    pub id: String,
    pub status: String,
    pub failover: Option<GlobalFailover>,
    /// Its member clusters' ARNs.
    pub members: Vec<String>,
}

/// A switchover or failover of the global database `cluster_arn` is a member of: its `FailoverState`
/// `pending`, `failing-over` or `cancelling`, or its status `failing-over` or `switching-over`.
pub fn global_cluster(cluster_arn: &str, globals: &[GlobalCluster]) -> Option<StandDown> {
    let g = globals.iter().find(|g| g.members.iter().any(|m| m == cluster_arn))?;
    let moving = g.failover.as_ref().filter(|f| ["pending", "failing-over", "cancelling"].contains(&f.status.as_str()));
    if moving.is_none() && !["failing-over", "switching-over"].contains(&g.status.as_str()) {
        return None;
    }
    let what = match (g.status.as_str(), moving.and_then(|f| f.data_loss_allowed)) {
        ("switching-over", _) | (_, Some(false)) => "a switchover",
        ("failing-over", _) | (_, Some(true)) => "a failover",
        _ => "a switchover or failover",
    };
    let state = moving
        .map(|f| {
            format!(
                "FailoverState {} from {} to {}",
                f.status,
                f.from.as_deref().unwrap_or("?"),
                f.to.as_deref().unwrap_or("?")
            )
        })
        .unwrap_or_else(|| "no FailoverState".into());
    Some(StandDown::new(
        "global-database",
        format!(
            "Aurora global database {} is in {what} (status {}, {state}), and this cluster is one of its members: \
             the global database's move owns it; standing down",
            g.id, g.status
        ),
        json!({ "globalCluster": g, "member": cluster_arn }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_of_recovery_in_progress_stands_down() {
        for (s, kind) in [
            ("failing-over", "failover"),
            ("rebooting", "reboot"),
            ("modifying", "modification"),
            ("renaming", "modification"),
            ("configuring-enhanced-monitoring", "modification"),
            ("upgrading", "upgrade"),
            ("maintenance", "maintenance"),
            ("promoting", "promotion"),
            ("backtracking", "backtrack"),
            ("starting", "start"),
            ("stopping", "stop"),
        ] {
            assert_eq!(status("DB instance", "orders", s).map(|d| d.recovery), Some(kind), "{s}");
        }
        for s in ["available", "stopped", "failed", "storage-full", "incompatible-network", "backing-up", "deleting"] {
            assert!(status("DB instance", "orders", s).is_none(), "{s}");
        }
        let sd = status("DB instance", "orders", "rebooting").unwrap();
        assert_eq!(
            sd.reason,
            "DB instance orders is rebooting: RDS is already rebooting it (a reboot, or a Multi-AZ failover); \
             standing down (force does not override this)"
        );
    }

    fn bg(status: &str) -> BlueGreen {
        BlueGreen {
            id: "bgd-v53303651eexfake".into(),
            name: "orders-upgrade".into(),
            status: status.into(),
            source: "arn:aws:rds:us-east-1:123456789012:db:orders".into(),
            target: "arn:aws:rds:us-east-1:123456789012:db:orders-green-abcdef".into(),
            members: vec![],
        }
    }

    #[test]
    fn a_blue_green_switchover_with_the_database_on_either_side_stands_down() {
        let blue = vec!["arn:aws:rds:us-east-1:123456789012:db:orders".to_string()];
        let green = vec!["arn:aws:rds:us-east-1:123456789012:db:orders-green-abcdef".to_string()];
        let sd = blue_green(&blue, &[bg("SWITCHOVER_IN_PROGRESS")]).unwrap();
        assert_eq!(sd.recovery, "blue-green");
        assert!(sd.reason.starts_with("Blue/Green deployment orders-upgrade (bgd-v53303651eexfake) is switching over"));
        assert!(sd.reason.contains("as its source (blue)"), "{}", sd.reason);
        assert!(blue_green(&green, &[bg("SWITCHOVER_IN_PROGRESS")]).unwrap().reason.contains("target (green)"));
        for s in ["PROVISIONING", "AVAILABLE", "SWITCHOVER_COMPLETED", "SWITCHOVER_FAILED", "DELETING"] {
            assert!(blue_green(&blue, &[bg(s)]).is_none(), "{s}");
        }
        let other = vec!["arn:aws:rds:us-east-1:123456789012:db:billing".to_string()];
        assert!(blue_green(&other, &[bg("SWITCHOVER_IN_PROGRESS")]).is_none());
        // A cluster deployment names the members being switched too.
        let mut c = bg("SWITCHOVER_IN_PROGRESS");
        c.source = "arn:aws:rds:us-east-1:123456789012:cluster:orders".into();
        c.members = vec![(
            "arn:aws:rds:us-east-1:123456789012:db:orders-1".into(),
            "arn:aws:rds:us-east-1:123456789012:db:orders-1-green".into(),
            "SWITCHOVER_IN_PROGRESS".into(),
        )];
        assert!(blue_green(&["arn:aws:rds:us-east-1:123456789012:db:orders-1".into()], &[c]).is_some());
    }

    #[test]
    fn a_global_database_move_stands_its_members_down() {
        let arn = "arn:aws:rds:us-east-1:123456789012:cluster:orders-east";
        let g = |status: &str, failover: Option<(&str, Option<bool>)>| GlobalCluster {
            id: "orders-global".into(),
            status: status.into(),
            failover: failover.map(|(s, loss)| GlobalFailover {
                status: s.into(),
                from: Some(arn.into()),
                to: Some("arn:aws:rds:us-west-2:123456789012:cluster:orders-west".into()),
                data_loss_allowed: loss,
            }),
            members: vec![arn.into(), "arn:aws:rds:us-west-2:123456789012:cluster:orders-west".into()],
        };
        let sd = global_cluster(arn, &[g("available", Some(("pending", Some(false))))]).unwrap();
        assert_eq!(sd.recovery, "global-database");
        assert!(sd.reason.contains("orders-global is in a switchover (status available, FailoverState pending"));
        for s in ["failing-over", "cancelling"] {
            assert!(global_cluster(arn, &[g("available", Some((s, Some(true))))]).is_some(), "{s}");
        }
        assert!(global_cluster(arn, &[g("failing-over", None)]).unwrap().reason.contains("in a failover"));
        assert!(global_cluster(arn, &[g("switching-over", None)]).unwrap().reason.contains("in a switchover"));
        assert!(global_cluster(arn, &[g("available", None)]).is_none());
        assert!(
            global_cluster("arn:aws:rds:us-east-1:123456789012:cluster:other", &[g("failing-over", None)]).is_none()
        );
    }
}
