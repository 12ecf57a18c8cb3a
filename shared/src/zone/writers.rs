//! The data tier of an evacuation: the opted-in Multi-AZ RDS instances and Aurora clusters whose writer
//! is in the impaired AZ ([`writers_in`]), and the manual `failover` request each becomes for
//! db-failover's own code and guards ([`failover_request`]): a Multi-AZ instance reboots with forced
//! failover to its standby, a cluster fails over to a reader outside the AZ.

use serde_json::{json, Value};

use crate::config::CommonConfig;
use crate::error::{Error, Result};
use crate::guardrails::is_opted_in;

/// A writer to move out of the AZ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    /// The DB instance or cluster identifier.
    pub id: String,
    pub cluster: bool,
    /// For a cluster: a reader outside the AZ to fail over to (`None`: db-failover chooses).
    pub to: Option<String>,
}

/// The opted-in writers whose AZ is `az`.
pub async fn writers_in(rds: &aws_sdk_rds::Client, az: &str, cfg: &CommonConfig) -> Result<Vec<Writer>> {
    let mut out = Vec::new();
    let mut instances = Vec::new();
    let mut pages = rds.describe_db_instances().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("rds", "DescribeDBInstances", e))?;
        instances.extend(page.db_instances().iter().cloned());
    }
    let opted = |tags: &[aws_sdk_rds::types::Tag]| {
        is_opted_in(tags.iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())), cfg)
    };
    for i in &instances {
        let standalone_writer =
            i.db_cluster_identifier().is_none() && i.read_replica_source_db_instance_identifier().is_none();
        if standalone_writer
            && i.multi_az() == Some(true)
            && i.availability_zone() == Some(az)
            && i.db_instance_status() == Some("available")
            && opted(i.tag_list())
        {
            if let Some(id) = i.db_instance_identifier() {
                out.push(Writer { id: id.to_string(), cluster: false, to: None });
            }
        }
    }
    let az_of = |id: &str| {
        instances.iter().find(|i| i.db_instance_identifier() == Some(id)).and_then(|i| i.availability_zone())
    };
    let mut pages = rds.describe_db_clusters().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("rds", "DescribeDBClusters", e))?;
        for c in page.db_clusters() {
            let members = c.db_cluster_members();
            let writer = members.iter().find(|m| m.is_cluster_writer() == Some(true));
            let writer_az = writer.and_then(|w| w.db_instance_identifier()).and_then(az_of);
            if writer_az != Some(az) || !opted(c.tag_list()) {
                continue;
            }
            let to = members
                .iter()
                .filter(|m| m.is_cluster_writer() != Some(true))
                .filter_map(|m| m.db_instance_identifier())
                .find(|id| az_of(id).is_some_and(|a| a != az))
                .map(str::to_string);
            if let Some(id) = c.db_cluster_identifier() {
                out.push(Writer { id: id.to_string(), cluster: true, to });
            }
        }
    }
    Ok(out)
}

/// The manual invocation that asks db-failover to move `w` out of the AZ, in the place given.
pub fn failover_request(
    w: &Writer,
    evacuation: &str,
    reason: &str,
    place: (Option<&str>, Option<&str>),
    dry_run: bool,
) -> Value {
    let mut params = serde_json::Map::new();
    if w.cluster {
        if let Some(to) = &w.to {
            params.insert("replica".into(), json!(to));
        }
    } else {
        params.insert("mode".into(), json!("reboot"));
    }
    let mut v = json!({
        "source": crate::trigger::MANUAL_SOURCE,
        "action": "failover",
        "target": w.id,
        "force": true,
        "reason": reason,
        "requestId": format!("{evacuation}:{}", w.id),
        "params": params,
    });
    if dry_run {
        v["dryRun"] = json!(true);
    }
    if let Some(a) = place.0 {
        v["account"] = json!(a);
    }
    if let Some(r) = place.1 {
        v["region"] = json!(r);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::{parse_event, TriggerKind};

    #[test]
    fn a_failover_request_is_a_manual_invocation_db_failover_reads() {
        let w = Writer { id: "orders".into(), cluster: false, to: None };
        let v = failover_request(
            &w,
            "evacuation:use1-az6:1",
            "AZ impaired",
            (Some("111111111111"), Some("us-east-1")),
            true,
        );
        let t = parse_event(&v).unwrap().remove(0);
        let TriggerKind::Manual(m) = &t.kind else { panic!("manual") };
        assert_eq!(
            (m.action.as_str(), m.target.as_deref(), m.force, m.dry_run),
            ("failover", Some("orders"), true, Some(true))
        );
        assert_eq!(m.params.get("mode"), Some(&json!("reboot")));
        assert_eq!(t.scope.account.as_deref(), Some("111111111111"));
        let c = Writer { id: "aurora".into(), cluster: true, to: Some("aurora-2".into()) };
        let v = failover_request(&c, "e", "r", (None, None), false);
        assert_eq!(v["params"]["replica"], json!("aurora-2"));
        assert!(v.get("dryRun").is_none() && v.get("account").is_none());
    }
}
