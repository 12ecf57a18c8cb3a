//! Parses every event shape the suite receives into one typed [`Trigger`].
//!
//! Shapes understood (samples of each live in `events/`):
//! - a CloudWatch alarm notification delivered through SNS (`Records[].Sns.Message` is the alarm JSON);
//! - a CloudWatch alarm whose action invokes Lambda directly (`source: aws.cloudwatch`, `alarmData`);
//! - EventBridge events: `CloudWatch Alarm State Change`, `EC2 Instance State-change Notification`,
//!   EC2 Auto Scaling instance events, `RDS DB Instance Event` / `RDS DB Cluster Event`,
//!   `AWS Health Event`, and `Scheduled Event`;
//! - an EventBridge event forwarded through SNS;
//! - a selfheal notification envelope delivered through SNS (what the notifier consumes);
//! - a manual invocation by an operator or a drill (`source: selfheal.manual`).
//!
//! The outer envelopes use `aws_lambda_events` types (`SnsEvent`, `EventBridgeEvent`,
//! `CloudWatchMetricAlarm`, `cloudwatch_events::ec2::InstanceStateChange`). The alarm *message* inside
//! SNS and the Health event detail are read leniently here because the crate's structs require fields
//! that real deliveries leave null or absent (`AlarmDescription: null`, an open Health event's `endTime`).
//!
//! Anything else is an [`Error::UnknownEvent`] that names what was expected and what arrived, and no
//! handler acts on it.

use std::collections::BTreeMap;

use aws_lambda_events::cloudwatch_alarms::CloudWatchMetricAlarm;
use aws_lambda_events::cloudwatch_events::ec2::InstanceStateChange;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sns::SnsEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::{Envelope, ENVELOPE_SCHEMA};
use crate::error::{Error, Result};

/// The `source` a manual invocation carries.
pub const MANUAL_SOURCE: &str = "selfheal.manual";

/// Largest payload the parser accepts; Lambda's own limit for asynchronous invocations is 256 KiB,
/// synchronous 6 MiB.
pub const MAX_EVENT_BYTES: usize = 6 * 1024 * 1024;

/// One thing that happened, normalised from whichever shape delivered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    /// A stable identity for this occurrence, the same on every redelivery: the ledger's event id.
    pub event_id: String,
    /// How the event reached us.
    pub delivery: Delivery,
    /// What happened.
    pub kind: TriggerKind,
    /// The account and region the event is about, as the event says; empty where it says nothing.
    #[serde(default)]
    pub scope: Scope,
}

/// Where an event happened: the account and region of the resource it is about. EventBridge events
/// carry both (`account`, `region`); an alarm names them in its ARN; a manual invocation may name
/// them (`account`, `region`) and otherwise means the hub's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub account: Option<String>,
    pub region: Option<String>,
}

impl Scope {
    /// The account and region of an ARN (`arn:aws:cloudwatch:eu-west-1:111111111111:alarm:web`).
    pub fn of_arn(arn: &str) -> Scope {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let part = |i: usize| parts.get(i).map(|p| p.to_string()).filter(|p| !p.is_empty());
        if parts.first() != Some(&"arn") {
            return Scope::default();
        }
        Scope { account: part(4), region: part(3) }
    }

    fn with(account: Option<String>, region: Option<String>) -> Scope {
        Scope { account: account.filter(|a| !a.is_empty()), region: region.filter(|r| !r.is_empty()) }
    }

    /// `account/region` as far as known, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{}/{}",
            self.account.as_deref().unwrap_or("(hub account)"),
            self.region.as_deref().unwrap_or("(hub region)")
        )
    }
}

/// Whether `s` is an AWS account id: twelve digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `s` looks like a region code (`us-east-1`, `eu-central-2`, `us-gov-west-1`).
pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// The path an event took to reach the function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "kebab-case")]
pub enum Delivery {
    /// An SNS subscription; `message_id` is SNS's id for the message.
    Sns { topic_arn: String, message_id: String },
    /// An EventBridge rule target.
    EventBridge { id: String },
    /// A CloudWatch alarm action that invokes the function directly.
    AlarmAction,
    /// A direct invocation by an operator, a drill, or another function.
    Direct,
}

/// What happened, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TriggerKind {
    /// A CloudWatch alarm changed state.
    Alarm(Alarm),
    /// An EC2 instance changed state.
    InstanceStateChange { instance_id: String, state: String },
    /// An EC2 Auto Scaling instance event.
    AutoScaling(AutoScalingEvent),
    /// An RDS DB instance or cluster event.
    Rds(RdsEvent),
    /// An AWS Health event.
    Health(HealthEvent),
    /// An EventBridge schedule fired.
    Schedule { rule: Option<String> },
    /// An operator or a drill asked for something.
    Manual(Manual),
    /// A selfheal notification envelope (for the notifier).
    Envelope(Box<Envelope>),
}

impl TriggerKind {
    /// A short name for logs and errors: `alarm`, `rds`, `manual`, ...
    pub fn name(&self) -> &'static str {
        match self {
            TriggerKind::Alarm(_) => "alarm",
            TriggerKind::InstanceStateChange { .. } => "ec2-instance-state-change",
            TriggerKind::AutoScaling(_) => "autoscaling",
            TriggerKind::Rds(_) => "rds",
            TriggerKind::Health(_) => "health",
            TriggerKind::Schedule { .. } => "schedule",
            TriggerKind::Manual(_) => "manual",
            TriggerKind::Envelope(_) => "envelope",
        }
    }
}

/// The state of a CloudWatch alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

impl AlarmState {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "OK" => Some(AlarmState::Ok),
            "ALARM" => Some(AlarmState::Alarm),
            "INSUFFICIENT_DATA" => Some(AlarmState::InsufficientData),
            _ => None,
        }
    }
}

/// A CloudWatch alarm state change, whichever way it was delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    pub name: String,
    pub arn: Option<String>,
    pub state: AlarmState,
    pub previous_state: Option<AlarmState>,
    pub reason: String,
    /// When the state changed, as CloudWatch wrote it.
    pub changed_at: String,
    pub namespace: Option<String>,
    pub metric_name: Option<String>,
    /// The metric's dimensions, e.g. `InstanceId`, `AutoScalingGroupName`, `DBInstanceIdentifier`,
    /// `HealthCheckId`.
    pub dimensions: BTreeMap<String, String>,
    pub region: Option<String>,
    pub description: Option<String>,
}

impl Alarm {
    /// The value of one dimension, if the alarm's metric has it.
    pub fn dimension(&self, name: &str) -> Option<&str> {
        self.dimensions.get(name).map(String::as_str)
    }
}

/// An EC2 Auto Scaling instance event (launch/terminate successful or unsuccessful, lifecycle action).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoScalingEvent {
    pub detail_type: String,
    pub group_name: String,
    pub instance_id: Option<String>,
    pub status_code: Option<String>,
    pub cause: Option<String>,
}

/// Whether an RDS event is about a DB instance or an Aurora cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RdsSource {
    Instance,
    Cluster,
}

/// An RDS event from EventBridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdsEvent {
    pub source: RdsSource,
    /// The DB instance or cluster identifier.
    pub identifier: String,
    /// `RDS-EVENT-0006` and the like.
    pub rds_event_id: Option<String>,
    pub categories: Vec<String>,
    pub message: String,
}

/// An AWS Health event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthEvent {
    pub service: String,
    pub event_type_code: String,
    pub category: String,
    pub event_arn: String,
    /// The affected resources (instance ids for EC2 events).
    pub affected_entities: Vec<String>,
}

/// A manual invocation: an operator or a drill asking a function to act on a named target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manual {
    /// Always [`MANUAL_SOURCE`].
    pub source: String,
    /// What to do, in the function's own words (`replace`, `failover`, `failback`, `sweep`, ...).
    pub action: String,
    /// What to do it to: an instance id, a DB identifier, a record name. Optional for sweeps.
    #[serde(default)]
    pub target: Option<String>,
    /// Asks for a dry run of this invocation. It can only make things safer: `false` does not override
    /// a function configured for dry-run (see [`crate::guardrails::Mode`]).
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// Skip the "is it really broken?" re-check (planned failovers, drills). Never skips opt-in.
    #[serde(default)]
    pub force: bool,
    /// Why, in the operator's words; recorded in the ledger and the notification.
    #[serde(default)]
    pub reason: Option<String>,
    /// Makes retries of the same request idempotent; without it every invocation is a new request.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Function-specific extras.
    #[serde(default)]
    pub params: serde_json::Map<String, Value>,
    /// The account the target lives in (twelve digits); the hub's own when absent.
    #[serde(default)]
    pub account: Option<String>,
    /// The region the target lives in; the hub's own when absent.
    #[serde(default)]
    pub region: Option<String>,
}

/// Parses an invocation payload into the triggers it carries (SNS batches may carry several).
pub fn parse_event(payload: &Value) -> Result<Vec<Trigger>> {
    let obj = payload
        .as_object()
        .ok_or_else(|| Error::UnknownEvent(format!("expected a JSON object, got {}", json_type(payload))))?;

    if obj.contains_key("Records") {
        return parse_sns(payload);
    }
    if obj.contains_key("detail-type") {
        return Ok(vec![parse_eventbridge(payload)?]);
    }
    if obj.contains_key("alarmData") {
        return Ok(vec![parse_alarm_action(payload)?]);
    }
    match obj.get("source").and_then(Value::as_str) {
        Some(MANUAL_SOURCE) => return Ok(vec![parse_manual(payload)?]),
        Some(other) if obj.contains_key("action") => {
            return Err(Error::malformed("manual", format!("source must be \"{MANUAL_SOURCE}\", got \"{other}\"")))
        }
        _ => {}
    }
    if obj.get("schema").and_then(Value::as_str) == Some(ENVELOPE_SCHEMA) {
        let envelope = parse_envelope(payload)?;
        return Ok(vec![Trigger {
            event_id: format!("envelope:{}", envelope.id),
            delivery: Delivery::Direct,
            kind: TriggerKind::Envelope(Box::new(envelope)),
            scope: Scope::default(),
        }]);
    }
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys.truncate(12);
    Err(Error::UnknownEvent(format!(
        "expected an SNS event (Records), an EventBridge event (detail-type), a CloudWatch alarm \
         action (alarmData), a selfheal envelope (schema) or a manual invocation \
         (source: {MANUAL_SOURCE}); got an object with keys [{}]",
        keys.join(", ")
    )))
}

/// Parses bytes (as Lambda hands them over) into triggers, refusing oversized or non-JSON input.
pub fn parse_bytes(bytes: &[u8]) -> Result<Vec<Trigger>> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(Error::UnknownEvent(format!(
            "payload of {} bytes exceeds the {MAX_EVENT_BYTES}-byte limit",
            bytes.len()
        )));
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| Error::UnknownEvent(format!("payload is not valid JSON: {e}")))?;
    parse_event(&value)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_sns(payload: &Value) -> Result<Vec<Trigger>> {
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
    Err(Error::UnknownEvent(format!(
        "SNS message {message_id} is neither a CloudWatch alarm (AlarmName), an EventBridge event \
         (detail-type), a selfheal envelope (schema) nor a manual invocation"
    )))
}

fn parse_envelope(v: &Value) -> Result<Envelope> {
    serde_json::from_value(v.clone()).map_err(|e| Error::malformed("envelope", e.to_string()))
}

/// The ledger identity of an alarm state change: the same whether it came by SNS, EventBridge or a
/// direct alarm action, so one state change is acted on once.
fn alarm_event_id(alarm: &Alarm) -> String {
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

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn required_str(v: &Value, key: &str, shape: &'static str) -> Result<String> {
    match v.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(Error::malformed(shape, format!("{key} is empty"))),
        Some(other) => Err(Error::malformed(shape, format!("{key} must be a string, got {}", json_type(other)))),
        None => Err(Error::malformed(shape, format!("missing field {key}"))),
    }
}

fn alarm_state(v: &Value, key: &str, shape: &'static str) -> Result<AlarmState> {
    let s = required_str(v, key, shape)?;
    AlarmState::parse(&s)
        .ok_or_else(|| Error::malformed(shape, format!("{key} must be OK, ALARM or INSUFFICIENT_DATA, got {s}")))
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

/// The `detail` of an EventBridge "CloudWatch Alarm State Change" event and the `alarmData` of a
/// direct alarm action share one camelCase shape.
fn alarm_from_alarm_data(d: &Value, arn: Option<String>, region: Option<String>, shape: &'static str) -> Result<Alarm> {
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

fn parse_alarm_action(payload: &Value) -> Result<Trigger> {
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

fn parse_eventbridge(payload: &Value) -> Result<Trigger> {
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
            })
        }
        ("aws.events", "Scheduled Event") | ("aws.scheduler", "Scheduled Event") => {
            TriggerKind::Schedule { rule: event.resources.as_ref().and_then(|r| r.first().cloned()) }
        }
        (s, dt) => {
            return Err(Error::UnknownEvent(format!(
                "EventBridge event source={s} detail-type={dt:?} is not one the suite handles (alarm state \
                 changes, EC2 state changes, Auto Scaling, RDS instance/cluster, AWS Health, schedules)"
            )))
        }
    };
    Ok(Trigger { event_id: format!("eb:{id}"), delivery, kind, scope })
}

fn parse_manual(payload: &Value) -> Result<Trigger> {
    let manual: Manual =
        serde_json::from_value(payload.clone()).map_err(|e| Error::malformed("manual", e.to_string()))?;
    if manual.action.trim().is_empty() {
        return Err(Error::malformed("manual", "action is empty"));
    }
    if let Some(a) = manual.account.as_deref().filter(|a| !is_account_id(a)) {
        return Err(Error::malformed("manual", format!("account must be a 12-digit AWS account id, got {a:?}")));
    }
    if let Some(r) = manual.region.as_deref().filter(|r| !is_region(r)) {
        return Err(Error::malformed("manual", format!("region must be a region code such as us-east-1, got {r:?}")));
    }
    let scope = Scope::with(manual.account.clone(), manual.region.clone());
    let event_id = match &manual.request_id {
        Some(id) if !id.is_empty() => format!("manual:{id}"),
        _ => format!("manual:{}", uuid::Uuid::new_v4()),
    };
    Ok(Trigger { event_id, delivery: Delivery::Direct, kind: TriggerKind::Manual(manual), scope })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn non_object_is_rejected_with_its_type() {
        let err = parse_event(&json!([1, 2])).unwrap_err().to_string();
        assert!(err.contains("expected a JSON object, got an array"), "{err}");
    }

    #[test]
    fn unknown_object_lists_its_keys() {
        let err = parse_event(&json!({"hello": 1})).unwrap_err().to_string();
        assert!(err.contains("keys [hello]"), "{err}");
    }

    #[test]
    fn times_normalise_across_formats() {
        assert_eq!(normalise_time("2019-10-02T17:04:40.989+0000"), "2019-10-02T17:04:40.989Z");
        assert_eq!(normalise_time("2019-10-02T17:04:40.989Z"), "2019-10-02T17:04:40.989Z");
        assert_eq!(normalise_time("garbage"), "garbage");
    }

    #[test]
    fn manual_rejects_unknown_fields() {
        let err =
            parse_event(&json!({"source": MANUAL_SOURCE, "action": "x", "dryrun": true})).unwrap_err().to_string();
        assert!(err.contains("unknown field `dryrun`"), "{err}");
    }

    #[test]
    fn eventbridge_without_id_is_malformed() {
        let err = parse_event(&json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field id"), "{err}");
    }
}
