//! What a trigger tells the evacuator ([`Intake`]): a signal about one AZ (a per-AZ load balancer alarm,
//! an AWS Health event naming an AZ, the healer's AZ short-circuit), a reason to re-assess (ARC's own
//! shift events), the scheduled re-check, or an operator's request. Pure: no AWS call.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{ALARM_PREFIX, FUNCTION, HANDLES};
use crate::error::{Error, Result};
use crate::ledger::ZoneSignal;
use crate::trigger::{Alarm, AlarmState, Manual, Trigger, TriggerKind};

/// The signals a per-AZ alarm can carry (the third part of its name).
pub const SIGNALS: [&str; 3] = ["5xx", "latency", "unhealthy"];

/// What one trigger asks of the evacuator.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    /// Evidence about an AZ of the trigger's place: recorded, then the place is assessed.
    Signal(ZoneSignal),
    /// Assess the trigger's place again (ARC started or ended a shift of its own).
    Reassess { why: String },
    /// The schedule: re-check every evacuation in progress, across the fleet.
    Sweep,
    /// An operator asks to evacuate an AZ (a name or an ID) of the trigger's place.
    Evacuate { az: String, reason: String },
    /// An operator asks to end the evacuation of an AZ now (no hysteresis).
    End { az: String, reason: String },
    /// An operator asks what the evacuator sees in the place (no action).
    Assess,
    /// The readiness sweep; `fix` asks for the safe fixes (when the configuration allows them).
    Readiness { fix: bool },
    /// Nothing to do, and why (recorded as skipped).
    Ignore { target: String, reason: String },
}

/// A per-AZ alarm's parts: `selfheal-az|<az name>|<signal>|<load balancer dimension>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmName {
    pub az: String,
    pub signal: String,
    pub load_balancer: String,
}

impl AlarmName {
    /// The name the suite gives the alarm (readiness creates them under it).
    pub fn render(&self) -> String {
        format!("{ALARM_PREFIX}|{}|{}|{}", self.az, self.signal, self.load_balancer)
    }

    /// Reads a per-AZ alarm's name; `None` when it is not one of the suite's.
    pub fn parse(name: &str) -> Option<AlarmName> {
        let mut parts = name.splitn(4, '|');
        if parts.next()? != ALARM_PREFIX {
            return None;
        }
        let (az, signal, lb) = (parts.next()?, parts.next()?, parts.next()?);
        if az.is_empty() || lb.is_empty() || !SIGNALS.contains(&signal) {
            return None;
        }
        Some(AlarmName { az: az.into(), signal: signal.into(), load_balancer: lb.into() })
    }
}

fn unsupported(t: &Trigger) -> Error {
    Error::UnsupportedTrigger { function: FUNCTION, event: t.kind.describe(), handles: HANDLES }
}

/// When the alarm changed state: CloudWatch writes `2026-12-05T10:00:00.000+0000` (EventBridge's
/// `state.timestamp`, SNS's `StateChangeTime`), which is not RFC 3339; the time of handling only when
/// neither form parses. (Falling back for CloudWatch's own form made a late ALARM look newer than the
/// OK that followed it, and impair the AZ again.)
fn changed_at(a: &Alarm, fallback: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&a.changed_at)
        .or_else(|_| DateTime::parse_from_str(&a.changed_at, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(fallback)
}

/// The AZ and load balancer of an alarm: from the suite's name, or from an ELB per-AZ metric's
/// dimensions (`AvailabilityZone` and `LoadBalancer`) of an alarm someone else made.
fn alarm_parts(a: &Alarm) -> Option<(String, String, String)> {
    if let Some(n) = AlarmName::parse(&a.name) {
        return Some((n.az, n.signal, n.load_balancer));
    }
    let elb = matches!(a.namespace.as_deref(), Some("AWS/ApplicationELB" | "AWS/NetworkELB"));
    match (elb, a.dimension("AvailabilityZone"), a.dimension("LoadBalancer")) {
        (true, Some(az), Some(lb)) => {
            Some((az.to_string(), a.metric_name.clone().unwrap_or_else(|| "metric".into()), lb.to_string()))
        }
        _ => None,
    }
}

/// Reads a trigger into what it asks; `Err` names a trigger the evacuator does not take (recorded as
/// skipped by the shared entry) or a malformed request.
pub fn intake(t: &Trigger, now: DateTime<Utc>) -> Result<Intake> {
    match &t.kind {
        TriggerKind::Alarm(a) => {
            let Some((az, signal, lb)) = alarm_parts(a) else {
                return Err(unsupported(t));
            };
            let impaired = match a.state {
                AlarmState::Alarm => true,
                AlarmState::Ok => false,
                AlarmState::InsufficientData => {
                    return Ok(Intake::Ignore {
                        target: a.name.clone(),
                        reason: format!(
                            "alarm {} has insufficient data: neither evidence of impairment nor of recovery",
                            a.name
                        ),
                    })
                }
            };
            Ok(Intake::Signal(ZoneSignal {
                az,
                source: format!("alarm:{}", a.name),
                impaired,
                at: changed_at(a, now),
                detail: format!("{signal} of {lb}: {}", a.reason),
                resource: Some(lb),
            }))
        }
        TriggerKind::Envelope(env) if env.function == "instance-healer" => {
            let scope = env.details.get("shortCircuit").and_then(|s| s.get("scope")).and_then(Value::as_str);
            match scope.and_then(|s| s.strip_prefix("az:")) {
                Some(az) if !az.is_empty() && az != "unknown" => {
                    let group = env.target.group.clone().unwrap_or_else(|| "standalone".into());
                    Ok(Intake::Signal(ZoneSignal {
                        az: az.to_string(),
                        source: format!("healer:{group}"),
                        impaired: true,
                        at: DateTime::parse_from_rfc3339(&env.time).map(|t| t.with_timezone(&Utc)).unwrap_or(now),
                        detail: env.reason.clone(),
                        resource: Some(group),
                    }))
                }
                _ => Ok(Intake::Ignore {
                    target: env.target.id.clone(),
                    reason: format!(
                        "an instance-healer decision ({} {}) that is not an AZ short-circuit",
                        env.action,
                        env.outcome.as_str()
                    ),
                }),
            }
        }
        TriggerKind::Health(h) => match h.availability_zone.as_deref().filter(|a| !a.is_empty()) {
            Some(az) if h.category.eq_ignore_ascii_case("issue") => {
                let status = h.status_code.as_deref().unwrap_or("open");
                if status.eq_ignore_ascii_case("upcoming") {
                    return Ok(Intake::Ignore {
                        target: h.event_arn.clone(),
                        reason: format!("AWS Health {} for {az} is upcoming, not an impairment yet", h.event_type_code),
                    });
                }
                Ok(Intake::Signal(ZoneSignal {
                    az: az.to_string(),
                    source: format!("health:{}", h.event_arn),
                    impaired: !status.eq_ignore_ascii_case("closed"),
                    at: now,
                    detail: format!("AWS Health {} ({} {status})", h.event_type_code, h.service),
                    resource: None,
                }))
            }
            Some(az) => Ok(Intake::Ignore {
                target: h.event_arn.clone(),
                reason: format!("AWS Health {} names {az} but is a {}, not an issue", h.event_type_code, h.category),
            }),
            None => Err(unsupported(t)),
        },
        TriggerKind::ZonalShift(z) => Ok(Intake::Reassess {
            why: format!(
                "ARC: {}{}{}",
                z.detail_type,
                z.away_from.as_deref().map(|a| format!(" away from {a}")).unwrap_or_default(),
                if z.resources.is_empty() { String::new() } else { format!(" on {}", z.resources.join(", ")) }
            ),
        }),
        TriggerKind::Schedule { .. } => Ok(Intake::Sweep),
        TriggerKind::Manual(m) => manual(m),
        _ => Err(unsupported(t)),
    }
}

fn manual(m: &Manual) -> Result<Intake> {
    let reason = m.reason.clone().unwrap_or_else(|| format!("manual {}", m.action));
    let az = || {
        m.target
            .clone()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| Error::malformed("manual", format!("{} needs a target: an AZ name or ID", m.action)))
    };
    match m.action.as_str() {
        "evacuate" => Ok(Intake::Evacuate { az: az()?, reason }),
        "end" => Ok(Intake::End { az: az()?, reason }),
        "assess" => Ok(Intake::Assess),
        "readiness" => Ok(Intake::Readiness { fix: m.params.get("fix").and_then(Value::as_bool).unwrap_or(false) }),
        other => Err(Error::malformed(
            "manual",
            format!("zone-evacuator's actions are evacuate, end, assess and readiness; got {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::parse_event;
    use serde_json::json;

    fn alarm(name: &str, state: &str, dims: Value) -> Trigger {
        let ev = json!({
            "version": "0", "id": "e1", "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
            "account": "123456789012", "time": "2026-12-05T10:00:00Z", "region": "us-east-1",
            "resources": [format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}")],
            "detail": {
                "alarmName": name,
                "state": {"value": state, "reason": "Threshold Crossed", "timestamp": "2026-12-05T10:00:00.000+0000"},
                "previousState": {"value": "OK", "reason": "", "timestamp": "2026-12-05T09:00:00.000+0000"},
                "configuration": {"metrics": [{"id": "m1", "metricStat": {"metric": {
                    "namespace": "AWS/ApplicationELB", "name": "HTTPCode_Target_5XX_Count", "dimensions": dims}}}]}
            }
        });
        parse_event(&ev).unwrap().remove(0)
    }

    #[test]
    fn alarm_names_round_trip_and_reject_others() {
        let n = AlarmName { az: "us-east-1a".into(), signal: "5xx".into(), load_balancer: "app/web/50dc".into() };
        assert_eq!(n.render(), "selfheal-az|us-east-1a|5xx|app/web/50dc");
        assert_eq!(AlarmName::parse(&n.render()), Some(n));
        assert_eq!(AlarmName::parse("selfheal-az|us-east-1a|cpu|app/web/1"), None, "unknown signal");
        assert_eq!(AlarmName::parse("selfheal-az|us-east-1a|5xx"), None, "no load balancer");
        assert_eq!(AlarmName::parse("web-5xx"), None);
    }

    #[test]
    fn a_per_az_alarm_is_a_signal_and_ok_clears_it() {
        let now = Utc::now();
        let t = alarm("selfheal-az|us-east-1a|5xx|app/web/50dc", "ALARM", json!({}));
        let Intake::Signal(s) = intake(&t, now).unwrap() else { panic!("not a signal") };
        assert_eq!((s.az.as_str(), s.impaired, s.resource.as_deref()), ("us-east-1a", true, Some("app/web/50dc")));
        assert_eq!(s.at.to_rfc3339(), "2026-12-05T10:00:00+00:00", "the state change's own time, not now");
        assert_eq!(s.source, "alarm:selfheal-az|us-east-1a|5xx|app/web/50dc");
        let t = alarm("selfheal-az|us-east-1a|5xx|app/web/50dc", "OK", json!({}));
        let Intake::Signal(s) = intake(&t, now).unwrap() else { panic!("not a signal") };
        assert!(!s.impaired);
        let t = alarm("selfheal-az|us-east-1a|5xx|app/web/50dc", "INSUFFICIENT_DATA", json!({}));
        assert!(matches!(intake(&t, now).unwrap(), Intake::Ignore { .. }));
    }

    #[test]
    fn an_elb_per_az_alarm_of_someone_else_counts_and_other_alarms_are_not_ours() {
        let t = alarm("web-az-errors", "ALARM", json!({"AvailabilityZone": "us-east-1b", "LoadBalancer": "app/web/1"}));
        let Intake::Signal(s) = intake(&t, Utc::now()).unwrap() else { panic!("not a signal") };
        assert_eq!(s.az, "us-east-1b");
        let t = alarm("web-errors", "ALARM", json!({"LoadBalancer": "app/web/1"}));
        assert!(matches!(intake(&t, Utc::now()), Err(Error::UnsupportedTrigger { .. })));
    }

    #[test]
    fn health_issues_naming_an_az_impair_it_until_closed_and_arc_events_reassess() {
        let health = |status: &str, category: &str, az: Option<&str>| {
            let mut detail = json!({
                "eventArn": "arn:aws:health:us-east-1::event/EC2/AWS_EC2_OPERATIONAL_ISSUE/1",
                "service": "EC2", "eventTypeCode": "AWS_EC2_OPERATIONAL_ISSUE", "eventTypeCategory": category,
                "statusCode": status, "startTime": "Sat, 05 Dec 2026 10:00:00 GMT", "eventDescription": [],
                "affectedEntities": []
            });
            if let Some(az) = az {
                detail["availabilityZone"] = json!(az);
            }
            let ev = json!({"version": "0", "id": "h1", "detail-type": "AWS Health Event", "source": "aws.health",
                "account": "123456789012", "time": "2026-12-05T10:00:00Z", "region": "us-east-1", "resources": [],
                "detail": detail});
            intake(&parse_event(&ev).unwrap().remove(0), Utc::now())
        };
        let Intake::Signal(s) = health("open", "issue", Some("us-east-1a")).unwrap() else { panic!("signal") };
        assert!(s.impaired && s.az == "us-east-1a" && s.source.starts_with("health:arn:aws:health"));
        let Intake::Signal(s) = health("closed", "issue", Some("us-east-1a")).unwrap() else { panic!("signal") };
        assert!(!s.impaired);
        assert!(matches!(health("upcoming", "issue", Some("us-east-1a")).unwrap(), Intake::Ignore { .. }));
        assert!(matches!(health("open", "scheduledChange", Some("us-east-1a")).unwrap(), Intake::Ignore { .. }));
        assert!(matches!(health("open", "issue", None), Err(Error::UnsupportedTrigger { .. })));
        let arc = parse_event(
            &serde_json::from_str::<Value>(include_str!("../../../events/arc-autoshift-in-progress.json")).unwrap(),
        )
        .unwrap()
        .remove(0);
        assert!(
            matches!(intake(&arc, Utc::now()).unwrap(), Intake::Reassess { ref why } if why.contains("Autoshift In Progress"))
        );
    }

    #[test]
    fn manual_requests_are_read_and_bad_ones_named() {
        let m = |v: Value| intake(&parse_event(&v).unwrap().remove(0), Utc::now());
        let ev = m(json!({"source": "selfheal.manual", "action": "evacuate", "target": "use1-az6"})).unwrap();
        assert!(matches!(ev, Intake::Evacuate { ref az, .. } if az == "use1-az6"));
        let err = m(json!({"source": "selfheal.manual", "action": "evacuate"})).unwrap_err().to_string();
        assert!(err.contains("needs a target"), "{err}");
        let err = m(json!({"source": "selfheal.manual", "action": "shift"})).unwrap_err().to_string();
        assert!(err.contains("evacuate, end, assess and readiness") && err.contains("\"shift\""), "{err}");
        let r = m(json!({"source": "selfheal.manual", "action": "readiness", "params": {"fix": true}})).unwrap();
        assert_eq!(r, Intake::Readiness { fix: true });
    }
}
