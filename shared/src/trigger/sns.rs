//! SNS deliveries: a CloudWatch alarm notification (the PascalCase alarm JSON), and an EventBridge
//! event, a selfheal envelope, a manual invocation or another service's notification published to a
//! topic, each keeping the SNS delivery.

use std::collections::BTreeMap;

use aws_lambda_events::sns::SnsEvent;
use serde_json::Value;

use super::eventbridge::parse_eventbridge;
use super::fields::{alarm_event_id, alarm_state, json_type, required_str, str_field};
use super::manual::parse_manual;
use super::records::foreign_records;
use super::{parse_envelope, Alarm, AlarmState, Delivery, Scope, Trigger, TriggerKind, MANUAL_SOURCE};
use crate::envelope::ENVELOPE_SCHEMA;
use crate::error::{Error, Result};

pub(super) fn parse_sns(payload: &Value) -> Result<Vec<Trigger>> {
    let event: SnsEvent =
        serde_json::from_value(payload.clone()).map_err(|e| Error::malformed("SNS", e.to_string()))?;
    if event.records.is_empty() {
        return Err(Error::malformed("SNS", "Records is empty"));
    }
    let mut out = Vec::with_capacity(event.records.len());
    for record in event.records {
        let sns = record.sns;
        let delivery = Delivery::Sns { topic_arn: sns.topic_arn.clone(), message_id: sns.message_id.clone() };
        let message: Value = serde_json::from_str(&sns.message)
            .map_err(|e| Error::malformed("SNS", format!("message {} is not JSON: {e}", sns.message_id)))?;
        let trigger = parse_sns_message(&message, &sns.message_id, delivery)?;
        out.push(trigger);
    }
    Ok(out)
}

fn parse_sns_message(message: &Value, message_id: &str, delivery: Delivery) -> Result<Trigger> {
    let obj = message.as_object().ok_or_else(|| {
        Error::malformed("SNS", format!("message {message_id} is {}, not an object", json_type(message)))
    })?;
    if obj.contains_key("AlarmName") {
        let alarm = alarm_from_sns_message(message)?;
        let mut scope = alarm.arn.as_deref().map(Scope::of_arn).unwrap_or_default();
        scope.account = scope.account.or_else(|| str_field(message, "AWSAccountId").map(str::to_string));
        return Ok(Trigger { event_id: alarm_event_id(&alarm), delivery, kind: TriggerKind::Alarm(alarm), scope });
    }
    if obj.contains_key("detail-type") {
        let mut t = parse_eventbridge(message)?;
        t.delivery = delivery;
        return Ok(t);
    }
    if obj.get("schema").and_then(Value::as_str) == Some(ENVELOPE_SCHEMA) {
        let envelope = parse_envelope(message)?;
        return Ok(Trigger {
            event_id: format!("envelope:{}", envelope.id),
            delivery,
            kind: TriggerKind::Envelope(Box::new(envelope)),
            scope: Scope::default(),
        });
    }
    if obj.get("source").and_then(Value::as_str) == Some(MANUAL_SOURCE) {
        let mut t = parse_manual(message)?;
        t.delivery = delivery;
        return Ok(t);
    }
    // Another service's notification published to the topic (S3 event notifications to SNS, say).
    if let Some(mut t) = foreign_records(message) {
        t.delivery = delivery;
        return Ok(t);
    }
    Err(Error::UnknownEvent(format!(
        "SNS message {message_id} is neither a CloudWatch alarm (AlarmName), an EventBridge event \
         (detail-type), a selfheal envelope (schema) nor a manual invocation"
    )))
}

/// The alarm JSON CloudWatch publishes to SNS (PascalCase: `AlarmName`, `NewStateValue`, `Trigger`).
fn alarm_from_sns_message(m: &Value) -> Result<Alarm> {
    const SHAPE: &str = "CloudWatch alarm (SNS)";
    let name = required_str(m, "AlarmName", SHAPE)?;
    let state = alarm_state(m, "NewStateValue", SHAPE)?;
    let previous_state = str_field(m, "OldStateValue").and_then(AlarmState::parse);
    let trigger = m.get("Trigger").cloned().unwrap_or(Value::Null);
    let mut dimensions = BTreeMap::new();
    if let Some(dims) = trigger.get("Dimensions").and_then(Value::as_array) {
        for d in dims {
            // CloudWatch writes lower-case keys here; accept either.
            let name = str_field(d, "name").or_else(|| str_field(d, "Name"));
            let value = str_field(d, "value").or_else(|| str_field(d, "Value"));
            if let (Some(n), Some(v)) = (name, value) {
                dimensions.insert(n.to_string(), v.to_string());
            }
        }
    }
    // Metric-math alarms list metrics instead of one metric.
    let mut namespace = str_field(&trigger, "Namespace").map(str::to_string);
    let mut metric_name = str_field(&trigger, "MetricName").map(str::to_string);
    if let Some(metrics) = trigger.get("Metrics").and_then(Value::as_array) {
        for q in metrics {
            if let Some(metric) = q.get("MetricStat").and_then(|s| s.get("Metric")) {
                namespace = namespace.or_else(|| str_field(metric, "Namespace").map(str::to_string));
                metric_name = metric_name.or_else(|| str_field(metric, "MetricName").map(str::to_string));
                if let Some(dims) = metric.get("Dimensions").and_then(Value::as_array) {
                    for d in dims {
                        if let (Some(n), Some(v)) = (str_field(d, "name"), str_field(d, "value")) {
                            dimensions.entry(n.to_string()).or_insert_with(|| v.to_string());
                        }
                    }
                }
            }
        }
    }
    Ok(Alarm {
        name,
        arn: str_field(m, "AlarmArn").map(str::to_string),
        state,
        previous_state,
        reason: str_field(m, "NewStateReason").unwrap_or_default().to_string(),
        changed_at: required_str(m, "StateChangeTime", SHAPE)?,
        namespace,
        metric_name,
        dimensions,
        region: str_field(m, "Region").map(str::to_string),
        description: str_field(m, "AlarmDescription").map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::parse_event;
    use crate::trigger::test_support::s3_put;
    use serde_json::json;

    #[test]
    fn an_s3_notification_published_to_sns_is_named_and_keeps_its_delivery() {
        let sns = json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0", "EventSubscriptionArn": "arn",
            "Sns": {"MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:alarms",
                    "Message": s3_put().to_string(), "Timestamp": "2026-01-01T00:00:00Z", "Type": "Notification",
                    "SignatureVersion": "1", "Signature": "", "SigningCertURL": "", "UnsubscribeURL": "",
                    "MessageAttributes": {}}}]});
        let t = parse_event(&sns).unwrap().remove(0);
        assert_eq!(t.describe(), "an S3 event (aws:s3, 1 record)");
        assert_eq!(
            t.delivery,
            Delivery::Sns { topic_arn: "arn:aws:sns:us-east-1:123456789012:alarms".into(), message_id: "m-1".into() }
        );
    }
}
