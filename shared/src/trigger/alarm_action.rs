//! A CloudWatch alarm action that invokes a function directly (`source: aws.cloudwatch`,
//! `alarmData`).

use aws_lambda_events::cloudwatch_alarms::CloudWatchMetricAlarm;
use serde_json::Value;

use super::fields::{alarm_event_id, alarm_from_alarm_data};
use super::{Delivery, Scope, Trigger, TriggerKind};
use crate::error::{Error, Result};

pub(super) fn parse_alarm_action(payload: &Value) -> Result<Trigger> {
    const SHAPE: &str = "CloudWatch alarm action";
    // Validate the outer shape with the crate's type, then read the alarm leniently.
    let typed: CloudWatchMetricAlarm =
        serde_json::from_value(payload.clone()).map_err(|e| Error::malformed(SHAPE, e.to_string()))?;
    let data = payload.get("alarmData").ok_or_else(|| Error::malformed(SHAPE, "missing field alarmData"))?;
    let alarm = alarm_from_alarm_data(data, typed.alarm_arn.clone(), typed.region.clone(), SHAPE)?;
    let arn_scope = alarm.arn.as_deref().map(Scope::of_arn).unwrap_or_default();
    let scope = Scope::with(typed.account_id.clone().or(arn_scope.account), typed.region.clone().or(arn_scope.region));
    Ok(Trigger {
        event_id: alarm_event_id(&alarm),
        delivery: Delivery::AlarmAction,
        kind: TriggerKind::Alarm(alarm),
        scope,
    })
}
