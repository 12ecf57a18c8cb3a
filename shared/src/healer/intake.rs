//! Which triggers the healer accepts and which instance each one names: [`intake`] turns a trigger
//! into [`HealRequest`]s (or an [`Intake::Ignore`]). Pure.

use serde::Serialize;

use super::config::HealerConfig;
use super::{Step, FUNCTION};
use crate::error::{Error, Result};
use crate::trigger::{AlarmState, Trigger, TriggerKind};

/// What kind of failure a trigger reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// `StatusCheckFailed_System`: the host.
    System,
    /// `StatusCheckFailed_Instance`: the OS/instance.
    Instance,
    /// `StatusCheckFailed` or a manual request: not yet known which.
    Unknown,
    /// An instance stopped.
    Stopped,
    /// An instance was terminated.
    Terminated,
    /// AWS scheduled the instance's retirement (or a stop).
    Retirement,
}

/// A request to heal one instance, derived from a trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct HealRequest {
    pub instance_id: String,
    pub failure: Failure,
    /// Whether to re-check health before acting (alarms, state changes, un-forced manual requests).
    pub recheck: bool,
    /// The invocation's dry-run request (manual only).
    pub dry_run: Option<bool>,
    /// A manual `params.step`.
    pub step: Option<Step>,
    /// Why, for the envelope.
    pub reason: String,
    /// The trigger was an EC2 state-change event (user-initiated stops are left alone).
    pub from_state_change: bool,
}

/// What a trigger asks of the healer.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    Heal(HealRequest),
    /// Nothing to do; recorded as skipped against `target` (an instance id or alarm name).
    Ignore {
        target: String,
        reason: String,
    },
}

/// What instance-healer takes, for the message naming an event that is not for it.
pub const HANDLES: &str = "CloudWatch alarms on its status-check metrics (SELFHEAL_HEALER_ALARM_METRICS) with an \
     InstanceId dimension, EC2 instance state-change events, AWS Health EC2 retirement and stop-scheduled events \
     and simplified-automatic-recovery outcomes, and manual \"replace\" invocations";

/// AWS Health's event when EC2's simplified automatic recovery brought an instance back: nothing to do.
pub const AUTO_RECOVERY_SUCCESS: &str = "AWS_EC2_SIMPLIFIED_AUTO_RECOVERY_SUCCESS";
/// AWS Health's event when EC2's simplified automatic recovery gave up on an instance: the healer
/// stops waiting for it (recorded in the ledger) and heals the instance if it is still broken.
pub const AUTO_RECOVERY_FAILURE: &str = "AWS_EC2_SIMPLIFIED_AUTO_RECOVERY_FAILURE";

/// The instances an `AWS_EC2_SIMPLIFIED_AUTO_RECOVERY_FAILURE` event names (empty for any other
/// trigger), with the event's ARN: what the handler records before healing them.
pub fn auto_recovery_failures(t: &Trigger) -> Vec<(String, String)> {
    match &t.kind {
        TriggerKind::Health(h) if h.service == "EC2" && h.event_type_code == AUTO_RECOVERY_FAILURE => h
            .affected_entities
            .iter()
            .filter(|e| is_instance_id(e))
            .map(|id| (id.clone(), h.event_arn.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

fn unsupported(event: String) -> Error {
    Error::UnsupportedTrigger { function: FUNCTION, event, handles: HANDLES }
}

fn is_instance_id(s: &str) -> bool {
    s.starts_with("i-") && s.len() > 2 && s[2..].chars().all(|c| c.is_ascii_hexdigit())
}

/// Turns a trigger into what the healer should do. Pure; errors name the problem.
pub fn intake(t: &Trigger, cfg: &HealerConfig) -> Result<Vec<Intake>> {
    match &t.kind {
        TriggerKind::Alarm(a) => {
            let metric = a.metric_name.clone().unwrap_or_default();
            if !cfg.alarm_metrics.contains(&metric) {
                return Err(unsupported(format!(
                    "{}, whose metric {metric:?} is not one it is configured for ({})",
                    t.describe(),
                    cfg.alarm_metrics.join(", ")
                )));
            }
            let Some(id) = a.dimension("InstanceId") else {
                return Err(Error::malformed(
                    "CloudWatch alarm",
                    format!("alarm {} has no InstanceId dimension; the healer acts on one instance per alarm", a.name),
                ));
            };
            if a.state != AlarmState::Alarm {
                return Ok(vec![Intake::Ignore {
                    target: id.to_string(),
                    reason: format!("alarm {} is {:?}, not ALARM: nothing to heal", a.name, a.state),
                }]);
            }
            let failure = match metric.as_str() {
                "StatusCheckFailed_System" => Failure::System,
                "StatusCheckFailed_Instance" => Failure::Instance,
                _ => Failure::Unknown,
            };
            Ok(vec![Intake::Heal(HealRequest {
                instance_id: id.to_string(),
                failure,
                recheck: true,
                dry_run: None,
                step: None,
                reason: format!("alarm {} ({metric}) is in ALARM: {}", a.name, a.reason),
                from_state_change: false,
            })])
        }
        TriggerKind::InstanceStateChange { instance_id, state } => {
            let failure = match state.as_str() {
                "stopped" => Failure::Stopped,
                "terminated" => Failure::Terminated,
                other => {
                    return Ok(vec![Intake::Ignore {
                        target: instance_id.clone(),
                        reason: format!("instance state {other} is not a failure the healer acts on"),
                    }])
                }
            };
            Ok(vec![Intake::Heal(HealRequest {
                instance_id: instance_id.clone(),
                failure,
                recheck: failure == Failure::Stopped,
                dry_run: None,
                step: None,
                reason: format!("instance {instance_id} entered state {state}"),
                from_state_change: true,
            })])
        }
        TriggerKind::Health(h) => {
            const CODES: [&str; 4] = [
                "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
                "AWS_EC2_INSTANCE_STOP_SCHEDULED",
                AUTO_RECOVERY_SUCCESS,
                AUTO_RECOVERY_FAILURE,
            ];
            if h.service != "EC2" || !CODES.contains(&h.event_type_code.as_str()) {
                return Err(unsupported(t.describe()));
            }
            let ids: Vec<&String> = h.affected_entities.iter().filter(|e| is_instance_id(e)).collect();
            if ids.is_empty() {
                return Err(Error::malformed("AWS Health Event", "no affected EC2 instance id in affectedEntities"));
            }
            Ok(ids
                .into_iter()
                .map(|id| match h.event_type_code.as_str() {
                    AUTO_RECOVERY_SUCCESS => Intake::Ignore {
                        target: id.clone(),
                        reason: format!(
                            "EC2 simplified automatic recovery recovered {id} (AWS Health {AUTO_RECOVERY_SUCCESS}, {}): \
                             nothing to do",
                            h.event_arn
                        ),
                    },
                    // EC2 gave up: its host is still bad. Heal it if it is still broken.
                    AUTO_RECOVERY_FAILURE => Intake::Heal(HealRequest {
                        instance_id: id.clone(),
                        failure: Failure::System,
                        recheck: true,
                        dry_run: None,
                        step: None,
                        reason: format!(
                            "EC2 simplified automatic recovery of {id} failed (AWS Health {AUTO_RECOVERY_FAILURE}, {})",
                            h.event_arn
                        ),
                        from_state_change: false,
                    }),
                    _ => Intake::Heal(HealRequest {
                        instance_id: id.clone(),
                        failure: Failure::Retirement,
                        recheck: false,
                        dry_run: None,
                        step: None,
                        reason: format!("AWS Health {} ({})", h.event_type_code, h.event_arn),
                        from_state_change: false,
                    }),
                })
                .collect())
        }
        TriggerKind::Manual(m) => {
            if m.action != "replace" {
                return Err(Error::malformed(
                    "manual",
                    format!("{FUNCTION} understands action \"replace\", got {:?}", m.action),
                ));
            }
            let target = m.target.as_deref().unwrap_or_default().trim();
            if target.is_empty() {
                return Err(Error::malformed("manual", "target (the instance id to replace) is required"));
            }
            if !is_instance_id(target) {
                return Err(Error::malformed("manual", format!("target {target:?} is not an EC2 instance id (i-...)")));
            }
            let mut step = None;
            for (k, v) in &m.params {
                match (k.as_str(), v.as_str()) {
                    ("step", Some(s)) => {
                        step = Some(Step::parse(s).ok_or_else(|| {
                            Error::malformed(
                                "manual",
                                format!("params.step must be reboot, stop-start or replace, got {s:?}"),
                            )
                        })?)
                    }
                    ("step", None) => return Err(Error::malformed("manual", "params.step must be a string")),
                    (other, _) => {
                        return Err(Error::malformed("manual", format!("unknown params.{other} (allowed: step)")))
                    }
                }
            }
            let why = m.reason.clone().unwrap_or_else(|| "no reason given".into());
            Ok(vec![Intake::Heal(HealRequest {
                instance_id: target.to_string(),
                failure: Failure::Unknown,
                recheck: !m.force,
                dry_run: m.dry_run,
                step,
                reason: format!("manual replace{}: {why}", if m.force { " (forced)" } else { "" }),
                from_state_change: false,
            })])
        }
        _ => Err(unsupported(t.describe())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::healer::test_support::cfg;
    use crate::trigger::parse_event;
    use serde_json::{json, Value};

    fn sample(name: &str) -> Trigger {
        let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        parse_event(&v).unwrap().remove(0)
    }
    #[test]
    fn every_sample_shape_becomes_a_request() {
        for name in [
            "alarm-sns-ec2-status-check.json",
            "alarm-eventbridge-ec2-status-check.json",
            "alarm-lambda-action-ec2-status-check.json",
        ] {
            let Intake::Heal(h) = intake(&sample(name), &cfg()).unwrap().remove(0) else { panic!("{name}") };
            assert_eq!(h.instance_id, "i-0123456789abcdef0");
            assert!(h.recheck);
            assert_eq!(h.failure, Failure::Unknown);
        }
        let Intake::Heal(h) = intake(&sample("ec2-instance-state-change-stopped.json"), &cfg()).unwrap().remove(0)
        else {
            panic!()
        };
        assert_eq!(h.failure, Failure::Stopped);
        assert!(h.from_state_change);
        let Intake::Heal(h) = intake(&sample("health-ec2-instance-retirement.json"), &cfg()).unwrap().remove(0) else {
            panic!()
        };
        assert_eq!(h.failure, Failure::Retirement);
        assert!(!h.recheck);
        let Intake::Heal(h) = intake(&sample("manual-replace-instance.json"), &cfg()).unwrap().remove(0) else {
            panic!()
        };
        assert_eq!(h.dry_run, Some(true));
        assert!(h.recheck, "not forced");
    }

    #[test]
    fn unsupported_and_malformed_inputs_are_named() {
        let err = intake(&sample("rds-db-instance-event-failure.json"), &cfg()).unwrap_err().to_string();
        assert!(err.contains("does not handle an RDS DB instance event"), "{err}");
        assert!(err.contains("it takes CloudWatch alarms on its status-check metrics"), "{err}");
        let mut cpu = sample("alarm-sns-ec2-status-check.json");
        if let TriggerKind::Alarm(a) = &mut cpu.kind {
            a.metric_name = Some("CPUUtilization".into());
        }
        let err = intake(&cpu, &cfg()).unwrap_err();
        assert!(matches!(err, Error::UnsupportedTrigger { .. }), "not for the healer, not malformed: {err}");
        assert!(err.to_string().contains("whose metric \"CPUUtilization\" is not one it is configured for"), "{err}");
        let manual = |v: Value| parse_event(&v).unwrap().remove(0);
        let cases = [
            (json!({"source": "selfheal.manual", "action": "replace"}), "target"),
            (json!({"source": "selfheal.manual", "action": "replace", "target": "db-1"}), "not an EC2 instance id"),
            (
                json!({"source": "selfheal.manual", "action": "replace", "target": "i-0abc", "params": {"step": "nuke"}}),
                "params.step must be",
            ),
            (
                json!({"source": "selfheal.manual", "action": "replace", "target": "i-0abc", "params": {"x": 1}}),
                "unknown params.x",
            ),
        ];
        for (v, want) in cases {
            let err = intake(&manual(v.clone()), &cfg()).unwrap_err().to_string();
            assert!(err.contains(want), "{v}: {err}");
        }
    }

    #[test]
    fn auto_recovery_outcomes_are_read() {
        let with_code = |code: &str| {
            let mut t = sample("health-ec2-instance-retirement.json");
            if let TriggerKind::Health(h) = &mut t.kind {
                h.event_type_code = code.to_string();
                h.category = "issue".into();
            }
            t
        };
        let success = with_code(AUTO_RECOVERY_SUCCESS);
        let Intake::Ignore { target, reason } = intake(&success, &cfg()).unwrap().remove(0) else { panic!() };
        assert_eq!(target, "i-0123456789abcdef0");
        assert!(reason.contains("recovered i-0123456789abcdef0") && reason.ends_with("nothing to do"), "{reason}");
        assert!(auto_recovery_failures(&success).is_empty());

        let failure = with_code(AUTO_RECOVERY_FAILURE);
        let Intake::Heal(h) = intake(&failure, &cfg()).unwrap().remove(0) else { panic!() };
        assert_eq!((h.failure, h.recheck), (Failure::System, true), "heal it if it is still broken");
        assert!(h.reason.contains("simplified automatic recovery of i-0123456789abcdef0 failed"), "{}", h.reason);
        let recorded = auto_recovery_failures(&failure);
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].0, "i-0123456789abcdef0");
        assert!(recorded[0].1.starts_with("arn:aws:health:"));
        assert!(auto_recovery_failures(&sample("health-ec2-instance-retirement.json")).is_empty());
    }

    #[test]
    fn an_ok_alarm_is_ignored() {
        let mut t = sample("alarm-sns-ec2-status-check.json");
        if let TriggerKind::Alarm(a) = &mut t.kind {
            a.state = AlarmState::Ok;
        }
        assert!(matches!(intake(&t, &cfg()).unwrap()[0], Intake::Ignore { .. }));
    }
}
