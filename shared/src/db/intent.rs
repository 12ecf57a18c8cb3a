//! What a trigger asks for: an RDS event, a CloudWatch alarm or a manual invocation read into an
//! [`Intent`] (fail over a target, or ignore the trigger and why).

use serde_json::Value;

use super::FUNCTION;
use crate::envelope::Target;
use crate::error::{Error, Result};
use crate::trigger::{AlarmState, RdsSource, Trigger, TriggerKind};

const RDS_EVENT_CATEGORIES: [&str; 3] = ["failure", "availability", "failover"];

/// What db-failover takes, for the message naming an event that is not for it.
pub const HANDLES: &str = "RDS DB instance and cluster events, CloudWatch alarms with a DBInstanceIdentifier or \
     DBClusterIdentifier dimension, and manual \"failover\" / \"promote-replica\" invocations";

/// What a trigger asks for, or why it asks for nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// Check and, if needed, fail over `id`.
    Failover(FailoverIntent),
    /// Nothing to do (an alarm back to OK, an unrelated RDS event category).
    Ignore { target: Target, reason: String },
}

/// Whether the target is known to be an instance, a cluster, or to be looked up (manual).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Instance,
    Cluster,
    Either,
}

/// A failover request derived from a trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverIntent {
    pub kind: TargetKind,
    pub id: String,
    pub force: bool,
    pub dry_run_requested: Option<bool>,
    pub reason: String,
    pub replica: Option<String>,
    pub mode: Option<String>,
}

/// Reads a trigger into an [`Intent`]; `Err` for triggers this function does not handle
/// ([`Error::UnsupportedTrigger`], recorded as skipped) or cannot read.
pub fn intent_from_trigger(t: &Trigger) -> Result<Intent> {
    let plain = |kind, id: &str, reason: String| {
        Intent::Failover(FailoverIntent {
            kind,
            id: id.to_string(),
            force: false,
            dry_run_requested: None,
            reason,
            replica: None,
            mode: None,
        })
    };
    match &t.kind {
        TriggerKind::Rds(e) => {
            let (kind, tkind) = match e.source {
                RdsSource::Instance => (TargetKind::Instance, "rds-instance"),
                RdsSource::Cluster => (TargetKind::Cluster, "rds-cluster"),
            };
            let relevant = e.categories.iter().any(|c| RDS_EVENT_CATEGORIES.contains(&c.to_ascii_lowercase().as_str()));
            if !relevant {
                return Ok(Intent::Ignore {
                    target: Target::new(tkind, &e.identifier),
                    reason: format!(
                        "RDS event categories {:?} are not failure, availability or failover",
                        e.categories
                    ),
                });
            }
            let reason =
                format!("RDS {} {}: {}", e.rds_event_id.as_deref().unwrap_or("event"), e.identifier, e.message);
            Ok(plain(kind, &e.identifier, reason))
        }
        TriggerKind::Alarm(a) => {
            let (kind, tkind, id) = if let Some(id) = a.dimension("DBInstanceIdentifier") {
                (TargetKind::Instance, "rds-instance", id)
            } else if let Some(id) = a.dimension("DBClusterIdentifier") {
                (TargetKind::Cluster, "rds-cluster", id)
            } else {
                return Err(Error::malformed(
                    "CloudWatch alarm",
                    format!("alarm {} has neither a DBInstanceIdentifier nor a DBClusterIdentifier dimension", a.name),
                ));
            };
            if a.state != AlarmState::Alarm {
                return Ok(Intent::Ignore {
                    target: Target::new(tkind, id),
                    reason: format!("alarm {} is {:?}, not ALARM", a.name, a.state),
                });
            }
            Ok(plain(kind, id, format!("alarm {}: {}", a.name, a.reason)))
        }
        TriggerKind::Manual(m) => {
            if !matches!(m.action.as_str(), "failover" | "promote-replica") {
                return Err(Error::malformed(
                    "manual",
                    format!("db-failover understands action \"failover\", got {:?}", m.action),
                ));
            }
            let id = m.target.as_deref().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                Error::malformed("manual", "target (a DB instance or cluster identifier) is required")
            })?;
            let param = |k: &str| -> Result<Option<String>> {
                match m.params.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(other) => Err(Error::malformed("manual", format!("params.{k} must be a string, got {other}"))),
                }
            };
            let mode = if m.action == "promote-replica" { Some("promote".to_string()) } else { param("mode")? };
            Ok(Intent::Failover(FailoverIntent {
                kind: TargetKind::Either,
                id: id.to_string(),
                force: m.force,
                dry_run_requested: m.dry_run,
                reason: format!("manual: {}", m.reason.as_deref().unwrap_or("no reason given")),
                replica: param("replica")?,
                mode,
            }))
        }
        _ => Err(Error::UnsupportedTrigger { function: FUNCTION, event: t.describe(), handles: HANDLES }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::parse_event;

    #[test]
    fn triggers_become_intents() {
        let t = |v: serde_json::Value| parse_event(&v).unwrap().remove(0);
        let manual = t(serde_json::json!({"source": "selfheal.manual", "action": "failover", "target": "db1",
            "force": true, "params": {"replica": "r2"}}));
        let Intent::Failover(i) = intent_from_trigger(&manual).unwrap() else { panic!("ignored") };
        assert!(i.force);
        assert_eq!(i.replica.as_deref(), Some("r2"));
        assert_eq!(i.kind, TargetKind::Either);

        let bad = t(serde_json::json!({"source": "selfheal.manual", "action": "replace", "target": "db1"}));
        assert!(intent_from_trigger(&bad).unwrap_err().to_string().contains("failover"));
        let no_target = t(serde_json::json!({"source": "selfheal.manual", "action": "failover"}));
        assert!(intent_from_trigger(&no_target).unwrap_err().to_string().contains("target"));

        let backup = t(serde_json::json!({"id": "1", "detail-type": "RDS DB Instance Event", "source": "aws.rds",
            "detail": {"SourceIdentifier": "db1", "EventCategories": ["backup"], "Message": "Backing up"}}));
        assert!(matches!(intent_from_trigger(&backup).unwrap(), Intent::Ignore { .. }));
    }
}
