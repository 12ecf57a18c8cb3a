//! What several sources share: lenient readers of JSON fields, the camelCase alarm shape both an
//! EventBridge "CloudWatch Alarm State Change" and a direct alarm action (`alarmData`) carry, and the
//! identity of an alarm state change however it was delivered.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Alarm, AlarmState};
use crate::error::{Error, Result};

pub(super) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The ledger identity of an alarm state change: the same whether it came by SNS, EventBridge or a
/// direct alarm action, so one state change is acted on once.
pub(super) fn alarm_event_id(alarm: &Alarm) -> String {
    format!("alarm:{}:{}", alarm.name, normalise_time(&alarm.changed_at))
}

/// CloudWatch writes `2019-10-02T17:04:40.989+0000`; EventBridge `2019-10-02T17:04:40Z`. Normalise to
/// RFC 3339 in UTC with milliseconds where the text parses, and keep it verbatim otherwise.
fn normalise_time(s: &str) -> String {
    let parsed = chrono::DateTime::parse_from_rfc3339(s)
        .or_else(|_| chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"));
    match parsed {
        Ok(t) => t.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        Err(_) => s.to_string(),
    }
}

pub(super) fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A string field that is present and not empty; anything else (absent, empty, another type) is `None`.
pub(super) fn non_empty_str(v: &Value, key: &str) -> Option<String> {
    str_field(v, key).filter(|s| !s.is_empty()).map(str::to_string)
}

pub(super) fn required_str(v: &Value, key: &str, shape: &'static str) -> Result<String> {
    match v.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(Error::malformed(shape, format!("{key} is empty"))),
        Some(other) => Err(Error::malformed(shape, format!("{key} must be a string, got {}", json_type(other)))),
        None => Err(Error::malformed(shape, format!("missing field {key}"))),
    }
}

pub(super) fn alarm_state(v: &Value, key: &str, shape: &'static str) -> Result<AlarmState> {
    let s = required_str(v, key, shape)?;
    AlarmState::parse(&s)
        .ok_or_else(|| Error::malformed(shape, format!("{key} must be OK, ALARM or INSUFFICIENT_DATA, got {s}")))
}

/// The `detail` of an EventBridge "CloudWatch Alarm State Change" event and the `alarmData` of a
/// direct alarm action share one camelCase shape.
pub(super) fn alarm_from_alarm_data(
    d: &Value,
    arn: Option<String>,
    region: Option<String>,
    shape: &'static str,
) -> Result<Alarm> {
    let name = required_str(d, "alarmName", shape)?;
    let state_obj = d.get("state").ok_or_else(|| Error::malformed(shape, "missing field state"))?;
    let state = alarm_state(state_obj, "value", shape)?;
    let previous_state = d.get("previousState").and_then(|p| str_field(p, "value")).and_then(AlarmState::parse);
    let config = d.get("configuration").cloned().unwrap_or(Value::Null);
    let mut dimensions = BTreeMap::new();
    let mut namespace = None;
    let mut metric_name = None;
    if let Some(metrics) = config.get("metrics").and_then(Value::as_array) {
        for m in metrics {
            if let Some(metric) = m.get("metricStat").and_then(|s| s.get("metric")) {
                namespace = namespace.or_else(|| str_field(metric, "namespace").map(str::to_string));
                metric_name = metric_name.or_else(|| str_field(metric, "name").map(str::to_string));
                if let Some(dims) = metric.get("dimensions").and_then(Value::as_object) {
                    for (k, v) in dims {
                        if let Some(v) = v.as_str() {
                            dimensions.entry(k.clone()).or_insert_with(|| v.to_string());
                        }
                    }
                }
            }
        }
    }
    Ok(Alarm {
        name,
        arn,
        state,
        previous_state,
        reason: str_field(state_obj, "reason").unwrap_or_default().to_string(),
        changed_at: required_str(state_obj, "timestamp", shape)?,
        namespace,
        metric_name,
        dimensions,
        region,
        description: str_field(&config, "description").map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_normalise_across_formats() {
        assert_eq!(normalise_time("2019-10-02T17:04:40.989+0000"), "2019-10-02T17:04:40.989Z");
        assert_eq!(normalise_time("2019-10-02T17:04:40.989Z"), "2019-10-02T17:04:40.989Z");
        assert_eq!(normalise_time("garbage"), "garbage");
    }
}
