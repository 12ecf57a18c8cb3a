//! EventBridge events: CloudWatch alarm state change, EC2 instance state change, EC2 Auto Scaling,
//! RDS instance and cluster events, AWS Health, Route 53 ARC zonal shifts (their `detail` is read in
//! `arc`), schedules, and (named, as foreign) every other kind.

use aws_lambda_events::cloudwatch_events::ec2::InstanceStateChange;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde_json::Value;

use super::arc::zonal_shift_event;
use super::fields::{alarm_event_id, alarm_from_alarm_data, non_empty_str, required_str, str_field};
use super::{
    AutoScalingEvent, Delivery, ForeignEvent, HealthEvent, RdsEvent, RdsSource, Scope, Trigger, TriggerKind,
    ZONAL_SHIFT_DETAIL_TYPES, ZONAL_SHIFT_SOURCE,
};
use crate::error::{Error, Result};

pub(super) fn parse_eventbridge(payload: &Value) -> Result<Trigger> {
    const SHAPE: &str = "EventBridge";
    let event: EventBridgeEvent<Value> =
        serde_json::from_value(payload.clone()).map_err(|e| Error::malformed(SHAPE, e.to_string()))?;
    let id = event.id.clone().filter(|s| !s.is_empty()).ok_or_else(|| Error::malformed(SHAPE, "missing field id"))?;
    let delivery = Delivery::EventBridge { id: id.clone() };
    let scope = Scope::with(event.account.clone(), event.region.clone());
    let detail = &event.detail;
    let source = event.source.as_str();
    let detail_type = event.detail_type.as_str();
    let kind = match (source, detail_type) {
        ("aws.cloudwatch", "CloudWatch Alarm State Change") => {
            let arn = event.resources.as_ref().and_then(|r| r.first().cloned());
            let alarm = alarm_from_alarm_data(detail, arn, event.region.clone(), "CloudWatch Alarm State Change")?;
            return Ok(Trigger { event_id: alarm_event_id(&alarm), delivery, kind: TriggerKind::Alarm(alarm), scope });
        }
        ("aws.ec2", "EC2 Instance State-change Notification") => {
            let change: InstanceStateChange = serde_json::from_value(detail.clone())
                .map_err(|e| Error::malformed("EC2 Instance State-change Notification", e.to_string()))?;
            if change.instance_id.is_empty() {
                return Err(Error::malformed("EC2 Instance State-change Notification", "instance-id is empty"));
            }
            TriggerKind::InstanceStateChange { instance_id: change.instance_id, state: change.state }
        }
        ("aws.autoscaling", dt) if dt.starts_with("EC2 Instance") => {
            const AS: &str = "EC2 Auto Scaling";
            TriggerKind::AutoScaling(AutoScalingEvent {
                detail_type: dt.to_string(),
                group_name: required_str(detail, "AutoScalingGroupName", AS)?,
                instance_id: str_field(detail, "EC2InstanceId").map(str::to_string),
                status_code: str_field(detail, "StatusCode").map(str::to_string),
                cause: str_field(detail, "Cause").map(str::to_string),
            })
        }
        ("aws.rds", "RDS DB Instance Event") | ("aws.rds", "RDS DB Cluster Event") => {
            let shape: &'static str =
                if detail_type == "RDS DB Instance Event" { "RDS DB Instance Event" } else { "RDS DB Cluster Event" };
            let source = if detail_type == "RDS DB Instance Event" { RdsSource::Instance } else { RdsSource::Cluster };
            // SourceIdentifier is the DB identifier; fall back to the ARN's last segment.
            let identifier = str_field(detail, "SourceIdentifier")
                .map(|s| s.strip_prefix("rds:").unwrap_or(s).to_string())
                .filter(|s| !s.is_empty())
                .or_else(|| str_field(detail, "SourceArn").and_then(|a| a.rsplit(':').next()).map(str::to_string))
                .ok_or_else(|| Error::malformed(shape, "missing field SourceIdentifier"))?;
            let categories = detail
                .get("EventCategories")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            TriggerKind::Rds(RdsEvent {
                source,
                identifier,
                rds_event_id: str_field(detail, "EventID").map(str::to_string),
                categories,
                message: str_field(detail, "Message").unwrap_or_default().to_string(),
            })
        }
        ("aws.health", "AWS Health Event") => {
            const H: &str = "AWS Health Event";
            let mut affected: Vec<String> = detail
                .get("affectedEntities")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|e| str_field(e, "entityValue")).map(str::to_string).collect())
                .unwrap_or_default();
            if affected.is_empty() {
                affected = event.resources.clone().unwrap_or_default();
            }
            TriggerKind::Health(HealthEvent {
                service: required_str(detail, "service", H)?,
                event_type_code: required_str(detail, "eventTypeCode", H)?,
                category: str_field(detail, "eventTypeCategory").unwrap_or_default().to_string(),
                event_arn: required_str(detail, "eventArn", H)?,
                affected_entities: affected,
                availability_zone: non_empty_str(detail, "availabilityZone"),
                status_code: non_empty_str(detail, "statusCode"),
                region: non_empty_str(detail, "eventRegion"),
            })
        }
        (ZONAL_SHIFT_SOURCE, dt) if ZONAL_SHIFT_DETAIL_TYPES.contains(&dt) => {
            TriggerKind::ZonalShift(zonal_shift_event(dt, detail, event.resources.as_deref().unwrap_or_default())?)
        }
        ("aws.events", "Scheduled Event") | ("aws.scheduler", "Scheduled Event") => {
            TriggerKind::Schedule { rule: event.resources.as_ref().and_then(|r| r.first().cloned()) }
        }
        // Well-formed, but of a kind no selfheal function handles: named, and skipped by each function.
        ("", _) => return Err(Error::malformed(SHAPE, "source is empty")),
        (_, "") => return Err(Error::malformed(SHAPE, "detail-type is empty")),
        (s, dt) => {
            TriggerKind::Foreign(ForeignEvent { source: s.to_string(), detail_type: Some(dt.to_string()), records: 1 })
        }
    };
    Ok(Trigger { event_id: format!("eb:{id}"), delivery, kind, scope })
}

#[cfg(test)]
mod tests {
    use crate::trigger::{parse_event, TriggerKind};
    use serde_json::json;

    #[test]
    fn eventbridge_events_of_other_kinds_are_named() {
        let t = parse_event(&json!({"id": "1", "detail-type": "Object Created", "source": "aws.s3",
            "account": "123456789012", "region": "us-east-1", "detail": {}}))
        .unwrap()
        .remove(0);
        assert_eq!(t.kind.name(), "foreign");
        assert_eq!(t.describe(), "an EventBridge event from aws.s3 (\"Object Created\")");
        assert_eq!(t.event_id, "eb:1");
        assert_eq!(t.scope.account.as_deref(), Some("123456789012"));
        // A known source with a detail-type the suite does not read is foreign too.
        let spot = json!({"id": "2", "detail-type": "EC2 Spot Instance Interruption Warning", "source": "aws.ec2",
            "detail": {"instance-id": "i-1"}});
        assert_eq!(parse_event(&spot).unwrap()[0].kind.name(), "foreign");
        let err = parse_event(&json!({"id": "3", "detail-type": "x", "source": "", "detail": {}})).unwrap_err();
        assert!(err.to_string().contains("source is empty"), "{err}");
    }

    fn sample(name: &str) -> serde_json::Value {
        let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn a_health_event_naming_an_az_carries_it() {
        let t = parse_event(&sample("health-az-operational-issue.json")).unwrap().remove(0);
        let TriggerKind::Health(h) = &t.kind else { panic!("not health: {t:?}") };
        assert_eq!(h.availability_zone.as_deref(), Some("us-east-1a"));
        assert_eq!(h.status_code.as_deref(), Some("open"));
        assert_eq!(h.region.as_deref(), Some("us-east-1"));
        assert_eq!((h.service.as_str(), h.event_type_code.as_str()), ("EC2", "AWS_EC2_OPERATIONAL_ISSUE"));
        assert_eq!(h.category, "issue");
        assert!(h.affected_entities.is_empty());
        assert_eq!(t.describe(), "an AWS Health event (EC2 AWS_EC2_OPERATIONAL_ISSUE in us-east-1a)");
    }

    #[test]
    fn a_health_event_without_an_az_parses_as_before() {
        let t = parse_event(&sample("health-ec2-instance-retirement.json")).unwrap().remove(0);
        let TriggerKind::Health(h) = &t.kind else { panic!("not health: {t:?}") };
        assert_eq!(h.availability_zone, None);
        assert_eq!(h.status_code, None, "the sample has no statusCode");
        assert_eq!(h.region, None, "the sample has no eventRegion");
        assert_eq!(h.affected_entities, vec!["i-0123456789abcdef0"]);
        assert_eq!(h.category, "scheduledChange");
        assert_eq!(t.describe(), "an AWS Health event (EC2 AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED)");
        // Empty or mistyped optional fields are absent, not errors: nothing that parsed before fails now.
        let mut v = sample("health-az-operational-issue.json");
        v["detail"]["availabilityZone"] = json!("");
        v["detail"]["statusCode"] = json!(7);
        v["detail"]["eventRegion"] = json!(null);
        let TriggerKind::Health(h) = parse_event(&v).unwrap().remove(0).kind else { panic!("not health") };
        assert_eq!((h.availability_zone, h.status_code, h.region), (None, None, None));
        // The required fields are still required.
        let mut v = sample("health-az-operational-issue.json");
        v["detail"].as_object_mut().unwrap().remove("eventArn");
        let err = parse_event(&v).unwrap_err().to_string();
        assert!(err.contains("malformed AWS Health Event event: missing field eventArn"), "{err}");
    }

    #[test]
    fn eventbridge_without_id_is_malformed() {
        let err = parse_event(&json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field id"), "{err}");
    }
}
