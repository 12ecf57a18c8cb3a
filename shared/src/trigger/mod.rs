//! Parses every event shape the suite receives into one typed [`Trigger`].
//!
//! Shapes understood (samples of each live in `events/`):
//! - a CloudWatch alarm notification delivered through SNS (`Records[].Sns.Message` is the alarm JSON);
//! - a CloudWatch alarm whose action invokes Lambda directly (`source: aws.cloudwatch`, `alarmData`);
//! - EventBridge events: `CloudWatch Alarm State Change`, `EC2 Instance State-change Notification`,
//!   EC2 Auto Scaling instance events, `RDS DB Instance Event` / `RDS DB Cluster Event`,
//!   `AWS Health Event`, Route 53 ARC zonal shift events (`aws.arc-zonal-shift`: autoshifts, practice
//!   runs, FIS experiment autoshifts, manual shifts), and `Scheduled Event`;
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
//!
//! The parsing is split by source, one file each; this module keeps every type a [`Trigger`] can
//! carry and the dispatch ([`parse_event`], [`parse_bytes`]):
//! - `sns`: SNS deliveries (alarm notifications, and EventBridge events, envelopes, manual
//!   invocations and other services' notifications published to a topic);
//! - `eventbridge`: EventBridge events (alarm state change, EC2, Auto Scaling, RDS, Health,
//!   schedule, and the kinds no function handles);
//! - `arc`: the `detail` of Route 53 ARC zonal shift events (what AWS documents of it, and where);
//! - `alarm_action`: a CloudWatch alarm action that invokes a function directly (`alarmData`);
//! - `manual`: `selfheal.manual` invocations;
//! - `records`: `Records` batches of other services, and SQS batches of shard messages;
//! - `fields`: what several of them share: lenient field readers, the camelCase `alarmData` shape,
//!   and an alarm state change's identity.

mod alarm_action;
mod arc;
mod eventbridge;
mod fields;
mod manual;
mod records;
mod sns;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::{Envelope, ENVELOPE_SCHEMA};
use crate::error::{Error, Result};

use alarm_action::parse_alarm_action;
use eventbridge::parse_eventbridge;
use fields::json_type;
use manual::parse_manual;
use records::{foreign_records, shard_records};
use sns::parse_sns;

/// The `source` a manual invocation carries.
pub const MANUAL_SOURCE: &str = "selfheal.manual";

/// Largest payload the parser accepts; Lambda's own limit for asynchronous invocations is 256 KiB,
/// synchronous 6 MiB.
pub const MAX_EVENT_BYTES: usize = 6 * 1024 * 1024;

/// The EventBridge `source` of Route 53 ARC zonal shift events.
pub const ZONAL_SHIFT_SOURCE: &str = "aws.arc-zonal-shift";

/// The `detail-type`s ARC sends for zonal shifts (EventBridge events reference, "AWS ARC - Zonal Shift
/// events"; ARC Developer Guide, "Using zonal autoshift with Amazon EventBridge"). Any other
/// detail-type of [`ZONAL_SHIFT_SOURCE`] (such as CloudTrail's "AWS API Call via CloudTrail") is a
/// [`TriggerKind::Foreign`] event.
pub const ZONAL_SHIFT_DETAIL_TYPES: [&str; 12] = [
    "Autoshift In Progress",
    "Autoshift Completed",
    "Practice Run Started",
    "Practice Run Succeeded",
    "Practice Run Interrupted",
    "Practice Run Failed",
    "FIS Experiment Autoshift In Progress",
    "FIS Experiment Autoshift Completed",
    "FIS Experiment Autoshift Canceled",
    "Manual Shift Started",
    "Manual Shift Updated",
    "Manual Shift Canceled",
];

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
    /// A Route 53 ARC zonal shift event: an autoshift, a practice run, an FIS experiment's autoshift
    /// or a manual shift started, updated or ended.
    ZonalShift(ZonalShiftEvent),
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
            TriggerKind::ZonalShift(_) => "zonal-shift",
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
            TriggerKind::Health(h) => match &h.availability_zone {
                Some(az) => format!("an AWS Health event ({} {} in {az})", h.service, h.event_type_code),
                None => format!("an AWS Health event ({} {})", h.service, h.event_type_code),
            },
            TriggerKind::ZonalShift(z) => z.describe(),
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
///
/// The fields follow AWS Health's EventBridge schema ("Reference: AWS Health events Amazon EventBridge
/// schema", AWS Health User Guide, `aws-health-events-eventbridge-schema`). `availabilityZone` is not
/// in that page's `detail` table: it is the Health API's `Event.availabilityZone` ("The AWS
/// Availability Zone of the event. For example, us-east-1a.", Health API Reference `API_Event`), which
/// events about one AZ carry in `detail`. The three optional fields are read leniently: absent, empty
/// or not a string is `None`, so no Health event that parsed before fails now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthEvent {
    pub service: String,
    pub event_type_code: String,
    pub category: String,
    pub event_arn: String,
    /// The affected resources (instance ids for EC2 events).
    pub affected_entities: Vec<String>,
    /// The Availability Zone *name* the event is about (`detail.availabilityZone`, e.g. `us-east-1a`;
    /// names differ between accounts, the AZ ID does not).
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// `detail.statusCode`: `open`, `closed` or `upcoming`.
    #[serde(default)]
    pub status_code: Option<String>,
    /// The impacted region (`detail.eventRegion`). The event's own `region` (and so the trigger's
    /// [`Scope`]) is where the notification was delivered, which need not be the impacted one.
    #[serde(default)]
    pub region: Option<String>,
}

/// A Route 53 ARC zonal shift event (`source: aws.arc-zonal-shift`, one of
/// [`ZONAL_SHIFT_DETAIL_TYPES`]).
///
/// AWS publishes no schema for these events' `detail`, only examples (see the `arc` parser's module
/// docs for what they show and where they are): `detail.metadata.awayFrom` names the AZ ID, the top
/// level `resources` the resources, `detail.data` is `""` or an object. Every field here but the
/// detail-type is therefore optional and read leniently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZonalShiftEvent {
    /// The EventBridge `detail-type` ("Autoshift In Progress", "Practice Run Started", ...).
    pub detail_type: String,
    /// The AZ ID traffic is shifted away from (`use1-az1`: an ID, not a name), as the event names it
    /// (`detail.metadata.awayFrom`).
    pub away_from: Option<String>,
    /// The resources the event is about: the event's `resources`, then any `resourceIdentifier` in
    /// `detail` (not documented; the name ARC's API gives a resource's ARN), without duplicates. Empty
    /// for an autoshift observer notification.
    pub resources: Vec<String>,
    /// A `status` the event states (`detail.metadata.status`, `detail.data.status` or
    /// `detail.status`). No documented example carries one: `None` unless ARC adds it. What happened
    /// is in the detail-type ([`ZonalShiftEvent::origin`], [`ZonalShiftEvent::phase`]).
    pub status: Option<String>,
    /// `detail.metadata.notes`, when not empty.
    #[serde(default)]
    pub notes: Option<String>,
    /// `detail.data.additionalFailureInfo`: why a practice run was interrupted or failed.
    #[serde(default)]
    pub failure_info: Option<String>,
    /// The event's `detail` as it arrived, kept for the audit.
    pub detail: Value,
}

/// Who started a zonal shift, from an ARC event's detail-type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ZonalShiftOrigin {
    /// AWS, for an AZ impairment it detected (zonal autoshift).
    Autoshift,
    /// ARC's practice run of zonal autoshift (weekly, or on demand).
    PracticeRun,
    /// An AWS FIS experiment's simulated autoshift.
    FisExperiment,
    /// Someone's `StartZonalShift` (including this suite's own).
    Manual,
}

/// Where in its life a zonal shift is, from an ARC event's detail-type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ZonalShiftPhase {
    /// Started: traffic is moving away from the AZ (`... In Progress`, `... Started`).
    Started,
    /// A manual shift's expiry or comment changed (`Manual Shift Updated`).
    Updated,
    /// Over, however it ended: completed, canceled, or a practice run's outcome (succeeded,
    /// interrupted, failed).
    Ended,
}

impl ZonalShiftEvent {
    /// Who started the shift; `None` for a detail-type outside [`ZONAL_SHIFT_DETAIL_TYPES`].
    pub fn origin(&self) -> Option<ZonalShiftOrigin> {
        let dt = self.detail_type.as_str();
        if !ZONAL_SHIFT_DETAIL_TYPES.contains(&dt) {
            return None;
        }
        Some(if dt.starts_with("FIS Experiment ") {
            ZonalShiftOrigin::FisExperiment
        } else if dt.starts_with("Autoshift ") {
            ZonalShiftOrigin::Autoshift
        } else if dt.starts_with("Practice Run ") {
            ZonalShiftOrigin::PracticeRun
        } else {
            ZonalShiftOrigin::Manual
        })
    }

    /// Whether the shift started, changed or ended; `None` for a detail-type outside
    /// [`ZONAL_SHIFT_DETAIL_TYPES`].
    pub fn phase(&self) -> Option<ZonalShiftPhase> {
        let dt = self.detail_type.as_str();
        if !ZONAL_SHIFT_DETAIL_TYPES.contains(&dt) {
            return None;
        }
        Some(if dt.ends_with(" In Progress") || dt.ends_with(" Started") {
            ZonalShiftPhase::Started
        } else if dt.ends_with(" Updated") {
            ZonalShiftPhase::Updated
        } else {
            ZonalShiftPhase::Ended
        })
    }

    /// "an ARC zonal shift event (\"Autoshift In Progress\" away from use1-az1, 1 resource)".
    pub fn describe(&self) -> String {
        let away = self.away_from.as_deref().map(|az| format!(" away from {az}")).unwrap_or_default();
        let resources = match self.resources.len() {
            1 => "1 resource".to_string(),
            n => format!("{n} resources"),
        };
        format!("an ARC zonal shift event ({:?}{away}, {resources})", self.detail_type)
    }
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

/// A selfheal envelope, delivered directly or through SNS.
fn parse_envelope(v: &Value) -> Result<Envelope> {
    serde_json::from_value(v.clone()).map_err(|e| Error::malformed("envelope", e.to_string()))
}

#[cfg(test)]
mod test_support {
    use serde_json::{json, Value};

    pub(super) fn s3_put() -> Value {
        json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-25T10:15:31.180Z", "eventName": "ObjectCreated:Put",
            "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810"},
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "static", "arn": "arn:aws:s3:::static"},
                   "object": {"key": "index.html", "size": 1024, "sequencer": "0A1B2C3D4E5F678901"}}
        }]})
    }
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
}
