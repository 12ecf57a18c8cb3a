//! The notification envelope: one versioned JSON schema for every decision any function makes, and its
//! publication to the suite's SNS topic with message attributes subscribers can filter on.
//!
//! Schema `selfheal.envelope/v1` (fields are camelCase):
//! `schema, id, time, function, action, target{kind,id,group?}, outcome, severity, reason, eventId,
//! trigger, dryRun, details{...}`. Additive changes keep `v1`; anything else bumps the version.

use std::collections::BTreeMap;

use aws_sdk_sns::types::MessageAttributeValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::telemetry::Metric;

/// The schema tag every envelope carries.
pub const ENVELOPE_SCHEMA: &str = "selfheal.envelope/v1";

/// What came of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The action was carried out.
    Acted,
    /// Nothing needed doing (healthy again, not applicable, nothing stale).
    Skipped,
    /// A guardrail refused the action (opt-in, cooldown, rate limit, short-circuit, precondition).
    Refused,
    /// Dry-run: what would have been done, with no mutating call.
    DryRun,
    /// The same event was already handled; nothing was done again.
    Duplicate,
    /// The action was attempted and failed.
    Failed,
    /// Something was seen and passed on, with no decision of ours (an alarm sent to the notifier).
    Observed,
    /// A large move parked until a human approves it (see [`crate::approval`]); nothing was done yet.
    AwaitingApproval,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Acted => "acted",
            Outcome::Skipped => "skipped",
            Outcome::Refused => "refused",
            Outcome::DryRun => "dry-run",
            Outcome::Duplicate => "duplicate",
            Outcome::Failed => "failed",
            Outcome::Observed => "observed",
            Outcome::AwaitingApproval => "awaiting-approval",
        }
    }
}

/// How urgently a person should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The resource a decision is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// `ec2-instance`, `autoscaling-group`, `rds-instance`, `rds-cluster`, `route53-record`, ...
    pub kind: String,
    pub id: String,
    /// The group the resource belongs to (Auto Scaling group, cluster, zone), for rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The account the resource lives in, when it is not the hub's own (and the region is named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The account's name, where the hub is told it (`SELFHEAL_ACCOUNTS=111111111111=payments-prod`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    /// The region the resource lives in, when it is not the hub's own account and region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl Target {
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Target { kind: kind.into(), id: id.into(), group: None, account: None, account_name: None, region: None }
    }

    /// Where the resource lives, as people read it: `111111111111 (payments-prod)/eu-west-1`, or
    /// nothing at home.
    pub fn place(&self) -> Option<String> {
        let account = self.account.as_deref()?;
        let name = self.account_name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
        Some(format!("{account}{name}/{}", self.region.as_deref().unwrap_or("?")))
    }

    pub fn in_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
}

/// One decision, as every subscriber sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub schema: String,
    pub id: String,
    pub time: String,
    pub function: String,
    pub action: String,
    pub target: Target,
    pub outcome: Outcome,
    pub severity: Severity,
    /// Why, in one sentence a person can act on.
    pub reason: String,
    /// The ledger event id of the trigger.
    pub event_id: String,
    /// What kind of trigger started it (`alarm`, `rds`, `manual`, ...).
    pub trigger: String,
    pub dry_run: bool,
    /// Action-specific facts: before/after values, replacement ids, durations, evidence.
    #[serde(default)]
    pub details: BTreeMap<String, Value>,
}

impl Envelope {
    /// A new envelope; `severity` defaults from the outcome (failed → critical, refused → warning).
    pub fn new(function: &str, action: &str, target: Target, outcome: Outcome, reason: impl Into<String>) -> Self {
        let severity = match outcome {
            Outcome::Failed | Outcome::AwaitingApproval => Severity::Critical,
            Outcome::Refused => Severity::Warning,
            _ => Severity::Info,
        };
        Envelope {
            schema: ENVELOPE_SCHEMA.to_string(),
            id: uuid::Uuid::new_v4().to_string(),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            function: function.to_string(),
            action: action.to_string(),
            target,
            outcome,
            severity,
            reason: reason.into(),
            event_id: String::new(),
            trigger: String::new(),
            dry_run: false,
            details: BTreeMap::new(),
        }
    }

    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    pub fn event(mut self, event_id: &str, trigger: &str) -> Self {
        self.event_id = event_id.to_string();
        self.trigger = trigger.to_string();
        self
    }

    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Adds one detail; values that fail to serialise are recorded as their error text.
    pub fn detail(mut self, key: &str, value: impl Serialize) -> Self {
        let v = serde_json::to_value(value).unwrap_or_else(|e| Value::String(format!("<unserialisable: {e}>")));
        self.details.insert(key.to_string(), v);
        self
    }

    /// The EMF record that counts this decision by function, action and outcome. The envelope owns
    /// its metric; telemetry only knows how to write one.
    pub fn decision_metric(&self) -> Metric {
        Metric::new()
            .dimension("Function", &self.function)
            .dimension("Action", &self.action)
            .dimension("Outcome", self.outcome.as_str())
            .count("Decisions", 1.0)
    }

    /// The guard that stopped or held this decision, for refusals, duplicates and parked decisions: the
    /// `guard` detail where the decision names it, else read from the guardrails' own reasons.
    pub fn guard(&self) -> Option<String> {
        if !matches!(self.outcome, Outcome::Refused | Outcome::Duplicate | Outcome::AwaitingApproval) {
            return None;
        }
        if let Some(g) = self.details.get("guard").and_then(Value::as_str) {
            return Some(g.to_string());
        }
        let r = self.reason.to_ascii_lowercase();
        let named = [
            ("cooldown", "cooldown"),
            ("rate limit", "rate-limit"),
            ("not opted in", "opt-in"),
            ("short-circuit", "max-unhealthy"),
            ("already promoted", "one-promotion"),
            ("does not serve", "fleet"),
            ("cannot act in", "fleet"),
            ("unhealthy", "target-health"),
        ];
        Some(match self.outcome {
            Outcome::Duplicate => "dedup".to_string(),
            Outcome::AwaitingApproval => "approval".to_string(),
            _ => named.iter().find(|(k, _)| r.contains(k)).map(|(_, g)| *g).unwrap_or("precondition").to_string(),
        })
    }

    /// The metric of a guard firing (`Refusals` by function and guard), when one did.
    pub fn guard_metric(&self) -> Option<Metric> {
        let guard = self.guard()?;
        Some(Metric::new().dimension("Function", &self.function).dimension("Guard", &guard).count("Refusals", 1.0))
    }

    /// A one-line human summary, used by chat and webhook channels.
    pub fn summary(&self) -> String {
        format!(
            "[{}] {} {} {} on {} {}{}: {}",
            self.severity.as_str().to_uppercase(),
            self.function,
            self.action,
            self.outcome.as_str(),
            self.target.kind,
            self.target.id,
            self.target.place().map(|p| format!(" in {p}")).unwrap_or_default(),
            self.reason
        )
    }

    /// SNS message attributes so subscriptions can filter by function, action, severity and outcome.
    pub fn message_attributes(&self) -> Result<BTreeMap<String, MessageAttributeValue>> {
        let mut attrs = BTreeMap::new();
        let place = [("account", self.target.account.as_deref()), ("region", self.target.region.as_deref())];
        for (k, v) in [
            ("function", self.function.as_str()),
            ("action", self.action.as_str()),
            ("severity", self.severity.as_str()),
            ("outcome", self.outcome.as_str()),
        ]
        .into_iter()
        .chain(place.into_iter().filter_map(|(k, v)| Some((k, v?))))
        {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| Error::aws("sns", "Publish", e))?;
            attrs.insert(k.to_string(), value);
        }
        Ok(attrs)
    }

    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail; fall back to a minimal record regardless.
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"schema\":\"{ENVELOPE_SCHEMA}\",\"error\":\"{e}\"}}"))
    }
}

/// Publishes envelopes to the suite's topic. A missing topic (local runs without SNS) logs instead.
#[derive(Clone, Debug)]
pub struct Publisher {
    sns: aws_sdk_sns::Client,
    topic_arn: Option<String>,
}

impl Publisher {
    pub fn new(sns: aws_sdk_sns::Client, topic_arn: Option<String>) -> Self {
        Publisher { sns, topic_arn }
    }

    /// The SNS client (the notifier publishes to its channel topics with it).
    pub fn sns(&self) -> &aws_sdk_sns::Client {
        &self.sns
    }

    /// Publishes one envelope to the suite topic and logs it.
    pub async fn publish(&self, envelope: &Envelope) -> Result<()> {
        tracing::info!(
            envelope_id = %envelope.id,
            function = %envelope.function,
            action = %envelope.action,
            target = %envelope.target.id,
            outcome = envelope.outcome.as_str(),
            severity = envelope.severity.as_str(),
            reason = %envelope.reason,
            "decision"
        );
        envelope.decision_metric().emit();
        if let Some(m) = envelope.guard_metric() {
            m.emit();
        }
        let Some(topic) = &self.topic_arn else { return Ok(()) };
        publish_to(&self.sns, topic, envelope).await.map_err(|e| match e {
            Error::Aws { message, .. } if message.contains("NotFound") => Error::Config {
                name: "SELFHEAL_TOPIC_ARN".into(),
                problem: format!(
                    "topic `{topic}` not found: deploy infra/template.yaml or point SELFHEAL_TOPIC_ARN at it"
                ),
            },
            e => e,
        })
    }
}

/// Publishes an envelope to one topic, with its filter attributes.
pub async fn publish_to(sns: &aws_sdk_sns::Client, topic_arn: &str, envelope: &Envelope) -> Result<()> {
    let subject: String = envelope.summary().chars().take(99).collect();
    sns.publish()
        .topic_arn(topic_arn)
        .message(envelope.to_json())
        .subject(sanitize_subject(&subject))
        .set_message_attributes(Some(envelope.message_attributes()?.into_iter().collect()))
        .send()
        .await
        .map_err(|e| Error::aws("sns", "Publish", e))?;
    Ok(())
}

/// SNS subjects must be ASCII without control characters and under 100 characters.
fn sanitize_subject(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_that_fired_is_counted_by_name() {
        let refused = |reason: &str| {
            Envelope::new("instance-healer", "replace", Target::new("ec2-instance", "i-1"), Outcome::Refused, reason)
        };
        let guard = |e: &Envelope| e.guard_metric().map(|m| m.to_emf()["Guard"].clone());
        assert_eq!(guard(&refused("cooldown: i-1 was acted on")), Some("cooldown".into()));
        assert_eq!(guard(&refused("rate limit: web already had 3 actions")), Some("rate-limit".into()));
        assert_eq!(guard(&refused("x").detail("guard", "lease")), Some("lease".into()));
        assert_eq!(guard(&refused("something else")), Some("precondition".into()));
        let acted =
            Envelope::new("instance-healer", "replace", Target::new("ec2-instance", "i-1"), Outcome::Acted, "ok");
        assert!(acted.guard_metric().is_none());
        let emf = refused("cooldown").guard_metric().map(|m| m.to_emf()).unwrap_or_default();
        assert_eq!(emf["Refusals"], 1.0);
        assert_eq!(emf["Function"], "instance-healer");
    }

    #[test]
    fn the_decision_metric_counts_by_function_action_and_outcome() {
        let e =
            Envelope::new("db-failover", "promote-replica", Target::new("rds-instance", "db"), Outcome::Refused, "x");
        let emf = e.decision_metric().to_emf();
        assert_eq!(emf["Function"], "db-failover");
        assert_eq!(emf["Action"], "promote-replica");
        assert_eq!(emf["Outcome"], "refused");
        assert_eq!(emf["Decisions"], 1.0);
    }

    #[test]
    fn envelope_round_trips_and_defaults_severity() {
        let e =
            Envelope::new("instance-healer", "replace", Target::new("ec2-instance", "i-1"), Outcome::Failed, "boom")
                .detail("replacement", "i-2");
        assert_eq!(e.severity, Severity::Critical);
        let back: Envelope = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(back, e);
        assert!(e.to_json().contains("\"schema\":\"selfheal.envelope/v1\""));
    }

    #[test]
    fn subject_is_ascii() {
        assert_eq!(sanitize_subject("a→b\n"), "a?b?");
    }
}
