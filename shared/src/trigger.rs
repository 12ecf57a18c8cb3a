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
//! - a manual invocation by an operator or a drill (`source: selfheal.manual`);
//! - a *foreign* event: well-formed, but from a service no selfheal function handles — a `Records`
//!   batch whose first record names another service in `eventSource` (S3, SQS, DynamoDB Streams,
//!   Kinesis, SES, ...; directly or inside an SNS message), or an EventBridge event of a source and
//!   detail-type the suite has no handler for. It parses into [`TriggerKind::Foreign`] so that each
//!   function can say what arrived and skip it (see [`crate::lambda::handle_each`]) instead of
//!   calling it a "malformed SNS event".
//! - a *shard* of fanned-out work: an SQS batch (as Lambda's event source mapping delivers it) whose
//!   records' bodies are selfheal shard messages (`"schema": "selfheal.shard/v1"`), one
//!   [`TriggerKind::Shard`] per record (backup-enforcer's sweep workers take them).
//!
//! The outer envelopes use `aws_lambda_events` types (`SnsEvent`, `EventBridgeEvent`,
//! `CloudWatchMetricAlarm`, `cloudwatch_events::ec2::InstanceStateChange`). The alarm *message* inside
//! SNS and the Health event detail are read leniently here because the crate's structs require fields
//! that real deliveries leave null or absent (`AlarmDescription: null`, an open Health event's `endTime`).
//!
//! Anything else is an [`Error::UnknownEvent`] (or [`Error::MalformedEvent`] for a recognised shape
//! with a missing or mistyped field) that names what was expected and what arrived, and no handler
//! acts on it. [`Trigger::describe`] names what arrived in the words the skip and error messages use.

use std::collections::BTreeMap;

use aws_lambda_events::cloudwatch_alarms::CloudWatchMetricAlarm;
use aws_lambda_events::cloudwatch_events::ec2::InstanceStateChange;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sns::SnsEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::{Envelope, ENVELOPE_SCHEMA};
use crate::error::{Error, Result};
use crate::ids::{is_account_id, is_region};

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
    /// A well-formed event from a service no selfheal function handles (S3, SQS, DynamoDB Streams,
    /// an EventBridge event of another kind, ...). Every function skips it with a warning.
    Foreign(ForeignEvent),
    /// One shard of fanned-out work, delivered by SQS ([`ShardMessage`]).
    Shard(ShardMessage),
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
            TriggerKind::Foreign(_) => "foreign",
            TriggerKind::Shard(_) => "shard",
        }
    }

    /// What arrived, in words for messages: "an S3 event (aws:s3, 1 record)", "a CloudWatch alarm
    /// web-cpu (AWS/EC2 CPUUtilization)", "a scheduled event (rule arn:...)".
    pub fn describe(&self) -> String {
        match self {
            TriggerKind::Alarm(a) => {
                let metric = match (a.namespace.as_deref(), a.metric_name.as_deref()) {
                    (Some(ns), Some(m)) => format!(" ({ns} {m})"),
                    (None, Some(m)) => format!(" ({m})"),
                    _ => String::new(),
                };
                format!("a CloudWatch alarm {}{metric}", a.name)
            }
            TriggerKind::InstanceStateChange { instance_id, state } => {
                format!("an EC2 instance state-change event ({instance_id} {state})")
            }
            TriggerKind::AutoScaling(e) => {
                format!("an EC2 Auto Scaling event ({:?} in group {})", e.detail_type, e.group_name)
            }
            TriggerKind::Rds(e) => {
                let what = match e.source {
                    RdsSource::Instance => "instance",
                    RdsSource::Cluster => "cluster",
                };
                let id = e.rds_event_id.as_deref().map(|i| format!(" {i}")).unwrap_or_default();
                format!("an RDS DB {what} event ({}{id})", e.identifier)
            }
            TriggerKind::Health(h) => format!("an AWS Health event ({} {})", h.service, h.event_type_code),
            TriggerKind::Schedule { rule } => match rule {
                Some(r) => format!("a scheduled event ({r})"),
                None => "a scheduled event".to_string(),
            },
            TriggerKind::Manual(m) => format!("a manual invocation (action {:?})", m.action),
            TriggerKind::Envelope(e) => {
                format!("a selfheal envelope ({} {} {})", e.function, e.action, e.outcome.as_str())
            }
            TriggerKind::Foreign(f) => f.describe(),
            TriggerKind::Shard(s) => format!("a shard of fanned-out work (SQS message {})", s.message_id),
        }
    }
}

impl Trigger {
    /// What arrived, in words for messages (see [`TriggerKind::describe`]).
    pub fn describe(&self) -> String {
        self.kind.describe()
    }
}

/// A well-formed event from a service the suite has no handler for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForeignEvent {
    /// The first record's `eventSource` (`aws:s3`, `aws:sqs`, ...), or the EventBridge `source`.
    pub source: String,
    /// The EventBridge `detail-type`; `None` for a `Records` batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail_type: Option<String>,
    /// How many records the batch carried (1 for an EventBridge event).
    pub records: usize,
}

impl ForeignEvent {
    /// "an S3 event (aws:s3, 1 record)", "an EventBridge event from aws.s3 (\"Object Created\")".
    pub fn describe(&self) -> String {
        if let Some(dt) = &self.detail_type {
            return format!("an EventBridge event from {} ({dt:?})", self.source);
        }
        let records = if self.records == 1 { "1 record".to_string() } else { format!("{} records", self.records) };
        match records_service(&self.source) {
            Some(service) => format!("{service} ({}, {records})", self.source),
            None => format!("a Records event from {} ({records})", self.source),
        }
    }
}

/// The service behind a `Records` batch's `eventSource`, as people name its events.
fn records_service(source: &str) -> Option<&'static str> {
    Some(match source {
        "aws:s3" => "an S3 event",
        "aws:sqs" => "an SQS message batch",
        "aws:dynamodb" => "a DynamoDB stream event",
        "aws:kinesis" => "a Kinesis stream event",
        "aws:ses" => "an SES event",
        "aws:codecommit" => "a CodeCommit event",
        "aws:mq" => "an Amazon MQ event",
        _ => return None,
    })
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
    /// The one-time token of a decision awaiting approval (`approve` / `reject`, see
    /// [`crate::approval`]).
    #[serde(default)]
    pub token: Option<String>,
}

/// Parses an invocation payload into the triggers it carries (SNS batches may carry several).
pub fn parse_event(payload: &Value) -> Result<Vec<Trigger>> {
    let obj = payload
        .as_object()
        .ok_or_else(|| Error::UnknownEvent(format!("expected a JSON object, got {}", json_type(payload))))?;

    if obj.contains_key("Records") {
        if let Some(shards) = shard_records(payload) {
            return shards;
        }
        if let Some(foreign) = foreign_records(payload) {
            return Ok(vec![foreign]);
        }
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

/// The `schema` of a selfheal shard message: the body of an SQS message carrying one unit of
/// fanned-out work (`run` and `shard` name it; `account` and `region`, where present, are its scope).
pub const SHARD_SCHEMA: &str = "selfheal.shard/v1";

/// One SQS record whose body is a selfheal shard message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardMessage {
    /// SQS's id for the message: what a partial batch response names (`itemIdentifier`).
    pub message_id: String,
    /// `attributes.ApproximateReceiveCount`: 1 on the first delivery.
    pub receive_count: u32,
    /// The queue it came from (`eventSourceARN`).
    pub queue_arn: String,
    /// The body, parsed: an object whose `schema` is [`SHARD_SCHEMA`].
    pub body: Value,
}

/// An SQS batch whose first record's body is a shard message: one trigger per record, identified by
/// the body's `run` and `shard` (the same however often it is delivered or sent). `None` when the
/// batch is not one (it goes on to the other parsers); an error names a record that breaks the shape.
fn shard_records(payload: &Value) -> Option<Result<Vec<Trigger>>> {
    const SHAPE: &str = "SQS shard";
    let records = payload.get("Records")?.as_array()?;
    let body = |r: &Value| str_field(r, "body").and_then(|b| serde_json::from_str::<Value>(b).ok());
    let first = records.first()?;
    if str_field(first, "eventSource") != Some("aws:sqs") || body(first)?.get("schema")?.as_str()? != SHARD_SCHEMA {
        return None;
    }
    let parse = |r: &Value| -> Result<Trigger> {
        let message_id = required_str(r, "messageId", SHAPE)?;
        let b = body(r).filter(|b| str_field(b, "schema") == Some(SHARD_SCHEMA)).ok_or_else(|| {
            Error::malformed(SHAPE, format!("message {message_id}: body is not a {SHARD_SCHEMA} message"))
        })?;
        let run = required_str(&b, "run", SHAPE)?;
        let shard = required_str(&b, "shard", SHAPE)?;
        let receive_count = r
            .pointer("/attributes/ApproximateReceiveCount")
            .and_then(Value::as_str)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let scope =
            Scope::with(str_field(&b, "account").map(str::to_string), str_field(&b, "region").map(str::to_string));
        Ok(Trigger {
            event_id: format!("shard:{run}/{shard}"),
            delivery: Delivery::Direct,
            kind: TriggerKind::Shard(ShardMessage {
                message_id,
                receive_count,
                queue_arn: str_field(r, "eventSourceARN").unwrap_or_default().to_string(),
                body: b,
            }),
            scope,
        })
    };
    Some(records.iter().map(parse).collect())
}

/// A `Records` batch from another AWS service, named by its first record's `eventSource` (or
/// `EventSource`): S3, SQS, DynamoDB Streams, Kinesis, SES... `None` for SNS (`aws:sns`, or a record
/// with an `Sns` object) and for records naming no `aws:` source, which go on to the SNS parser.
fn foreign_records(payload: &Value) -> Option<Trigger> {
    let records = payload.get("Records")?.as_array()?;
    let first = records.first()?;
    if first.get("Sns").is_some() {
        return None;
    }
    let source = str_field(first, "eventSource").or_else(|| str_field(first, "EventSource"))?;
    if source == "aws:sns" || !source.starts_with("aws:") || source.len() <= "aws:".len() {
        return None;
    }
    // The same batch redelivered keeps its identity: the record's own id where it has one, else a
    // digest of the payload.
    let own_id = ["messageId", "eventID", "eventId"]
        .iter()
        .find_map(|k| str_field(first, k))
        .or_else(|| first.pointer("/ses/mail/messageId").and_then(Value::as_str))
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    let id = own_id.unwrap_or_else(|| format!("{:016x}", fnv1a(payload.to_string().as_bytes())));
    Some(Trigger {
        event_id: format!("foreign:{source}:{id}"),
        delivery: Delivery::Direct,
        kind: TriggerKind::Foreign(ForeignEvent {
            source: source.to_string(),
            detail_type: None,
            records: records.len(),
        }),
        scope: Scope::default(),
    })
}

/// FNV-1a, 64 bits: a stable digest (unlike `DefaultHasher`, the same in every build).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
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
        // Well-formed, but of a kind no selfheal function handles: named, and skipped by each function.
        ("", _) => return Err(Error::malformed(SHAPE, "source is empty")),
        (_, "") => return Err(Error::malformed(SHAPE, "detail-type is empty")),
        (s, dt) => {
            TriggerKind::Foreign(ForeignEvent { source: s.to_string(), detail_type: Some(dt.to_string()), records: 1 })
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

    fn s3_put() -> Value {
        json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-25T10:15:31.180Z", "eventName": "ObjectCreated:Put",
            "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810"},
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "static", "arn": "arn:aws:s3:::static"},
                   "object": {"key": "index.html", "size": 1024, "sequencer": "0A1B2C3D4E5F678901"}}
        }]})
    }

    #[test]
    fn records_from_other_services_are_named_not_called_malformed_sns() {
        let t = parse_event(&s3_put()).unwrap().remove(0);
        assert_eq!(t.kind.name(), "foreign");
        assert_eq!(t.describe(), "an S3 event (aws:s3, 1 record)");
        assert!(t.event_id.starts_with("foreign:aws:s3:"), "{}", t.event_id);
        assert_eq!(parse_event(&s3_put()).unwrap().remove(0).event_id, t.event_id, "a redelivery keeps its identity");
        assert_eq!(t.scope, Scope::default());

        let sqs = json!({"Records": [
            {"messageId": "059f36b4-87a3-44ab-83d2-661975830a7d", "body": "hi", "eventSource": "aws:sqs",
             "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"},
            {"messageId": "2e1424d4-f796-459a-8184-9c92662be6da", "body": "there", "eventSource": "aws:sqs"}
        ]});
        let t = parse_event(&sqs).unwrap().remove(0);
        assert_eq!(t.describe(), "an SQS message batch (aws:sqs, 2 records)");
        assert_eq!(t.event_id, "foreign:aws:sqs:059f36b4-87a3-44ab-83d2-661975830a7d");

        let ddb = json!({"Records": [{"eventID": "c4ca4238a0b923820dcc509a6f75849b", "eventName": "INSERT",
            "eventSource": "aws:dynamodb", "dynamodb": {"Keys": {"Id": {"N": "101"}}}}]});
        let t = parse_event(&ddb).unwrap().remove(0);
        assert_eq!(t.describe(), "a DynamoDB stream event (aws:dynamodb, 1 record)");
        assert_eq!(t.event_id, "foreign:aws:dynamodb:c4ca4238a0b923820dcc509a6f75849b");

        let kinesis = json!({"Records": [{"eventSource": "aws:kinesis", "eventID": "shardId-000:4959",
            "kinesis": {"data": "SGVsbG8="}}]});
        assert_eq!(parse_event(&kinesis).unwrap()[0].describe(), "a Kinesis stream event (aws:kinesis, 1 record)");
        let ses = json!({"Records": [{"eventSource": "aws:ses", "eventVersion": "1.0",
            "ses": {"mail": {"messageId": "o3vrnil0e2ic28tr"}}}]});
        let t = parse_event(&ses).unwrap().remove(0);
        assert_eq!(
            (t.describe().as_str(), t.event_id.as_str()),
            ("an SES event (aws:ses, 1 record)", "foreign:aws:ses:o3vrnil0e2ic28tr")
        );
        // A service not in the list is still named by its source.
        let other = json!({"Records": [{"EventSource": "aws:newservice", "id": 1}]});
        assert_eq!(parse_event(&other).unwrap()[0].describe(), "a Records event from aws:newservice (1 record)");
    }

    #[test]
    fn sns_and_records_without_a_service_still_go_to_the_sns_parser() {
        // What the SNS parser cannot read stays malformed: the records name no other service.
        for bad in [
            json!({"Records": [{"Sns": {"Message": 5}}]}),
            json!({"Records": [{"EventSource": "aws:sns"}]}),
            json!({"Records": [{"eventSource": "my-app"}]}),
            json!({"Records": [{"eventSource": "aws:"}]}),
            json!({"Records": ["aws:s3"]}),
            json!({"Records": {"eventSource": "aws:s3"}}),
        ] {
            let err = parse_event(&bad).unwrap_err().to_string();
            assert!(err.contains("malformed SNS event"), "{bad}: {err}");
        }
        let err = parse_event(&json!({"Records": []})).unwrap_err().to_string();
        assert!(err.contains("Records is empty"), "{err}");
    }

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

    #[test]
    fn every_kind_describes_itself() {
        let alarm = json!({"source": "aws.cloudwatch", "alarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-cpu",
            "accountId": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
            "alarmData": {"alarmName": "web-cpu", "state": {"value": "ALARM", "reason": "r", "timestamp": "2026-01-01T00:00:00Z"},
            "configuration": {"metrics": [{"id": "m", "metricStat": {"metric": {"namespace": "AWS/EC2", "name": "CPUUtilization",
            "dimensions": {"InstanceId": "i-1"}}, "period": 60, "stat": "Average"}, "returnData": true}]}}});
        assert_eq!(parse_event(&alarm).unwrap()[0].describe(), "a CloudWatch alarm web-cpu (AWS/EC2 CPUUtilization)");
        let schedule = json!({"id": "s", "detail-type": "Scheduled Event", "source": "aws.events",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/sweep"], "detail": {}});
        assert_eq!(
            parse_event(&schedule).unwrap()[0].describe(),
            "a scheduled event (arn:aws:events:us-east-1:123456789012:rule/sweep)"
        );
        let rds = json!({"id": "r", "detail-type": "RDS DB Instance Event", "source": "aws.rds",
            "detail": {"SourceIdentifier": "orders-db", "EventID": "RDS-EVENT-0031", "EventCategories": ["failure"]}});
        assert_eq!(parse_event(&rds).unwrap()[0].describe(), "an RDS DB instance event (orders-db RDS-EVENT-0031)");
        let manual = json!({"source": MANUAL_SOURCE, "action": "sweep"});
        assert_eq!(parse_event(&manual).unwrap()[0].describe(), "a manual invocation (action \"sweep\")");
    }

    #[test]
    fn eventbridge_without_id_is_malformed() {
        let err = parse_event(&json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field id"), "{err}");
    }
}
