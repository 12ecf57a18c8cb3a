//! The notifier: fans every selfheal envelope out to people and machines.
//!
//! Input: the suite topic's SNS deliveries (each message an envelope), an envelope invoked directly, or
//! a CloudWatch alarm (through SNS, EventBridge, or an alarm action), which is wrapped as an
//! `observed` envelope. Channels, each optional:
//! - **severity topics**: the envelope JSON, with filter attributes, to the SNS topic configured for
//!   its severity (`SELFHEAL_NOTIFY_TOPIC_{INFO,WARNING,CRITICAL}`);
//! - **chat**: an AWS Chatbot custom-notification message (Slack/Teams) to `SELFHEAL_CHATBOT_TOPIC_ARN`;
//! - **webhook**: an HTTPS POST to `SELFHEAL_WEBHOOK_URL`, as the envelope itself (`generic`) or a
//!   PagerDuty Events v2 event (`pagerduty`), with a timeout and retries with backoff on 429/5xx and
//!   connection errors. In a deployment the URL (and PagerDuty routing key) are secrets: they come from
//!   the Secrets Manager secret `SELFHEAL_WEBHOOK_SECRET_ARN` instead (see [`parse_webhook_secret`]),
//!   read when first needed and again after [`SECRET_TTL`], so a rotated URL is picked up. A secret
//!   that cannot be read or parsed fails the webhook channel only, naming the secret.
//!
//! Anything else (a schedule, an RDS event or an S3 notification published to the alarms topic...) is
//! not for the notifier and not an error to retry: it is audited in the ledger as a `skipped` decision
//! and delivered as a warning through the notifier's own channels (the notifier does not publish to
//! the suite topic it consumes), naming what arrived and what the notifier takes, and the invocation
//! succeeds. Input that does not parse still fails the invocation.
//!
//! A failing channel does not stop the others. Each delivery is marked in the ledger once done, so
//! when the invocation fails (because a channel did) Lambda's retry re-sends only what was not
//! delivered, and once retries are spent the on-failure destination keeps the event: nothing is
//! silently lost.
//!
//! Bursts: more than `SELFHEAL_NOTIFY_BURST_LIMIT` similar envelopes (same function, action, outcome
//! and severity) inside `SELFHEAL_NOTIFY_BURST_WINDOW_SECONDS` are summarised: the first `limit` go out
//! as they are, the next one is replaced by a summary saying a burst is under way, and the rest of the
//! window is held back (each is still in the audit trail of the function that decided it). Critical
//! envelopes are never held back.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::config::Env;
use crate::context::Ctx;
use crate::envelope::{publish_to, Envelope, Outcome, Severity, Target};
use crate::error::{Error, Result};
use crate::trigger::{parse_event, Alarm, AlarmState, Trigger, TriggerKind};

/// The function's name in envelopes and logs.
pub const FUNCTION: &str = "notifier";

/// What the notifier takes, for the message naming an event that is not for it.
pub const HANDLES: &str = "selfheal envelopes and CloudWatch alarms (through SNS, EventBridge or an alarm action)";

/// How webhook payloads are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The envelope JSON as it is.
    Generic,
    /// A PagerDuty Events API v2 event.
    PagerDuty,
}

/// The notifier's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifierConfig {
    pub topic_info: Option<String>,
    pub topic_warning: Option<String>,
    pub topic_critical: Option<String>,
    pub chatbot_topic: Option<String>,
    pub webhook_url: Option<String>,
    /// `SELFHEAL_WEBHOOK_SECRET_ARN`: where the URL (and routing key) live instead of the two variables.
    pub webhook_secret_arn: Option<String>,
    pub webhook_format: WebhookFormat,
    pub webhook_routing_key: Option<String>,
    pub webhook_timeout: Duration,
    pub webhook_attempts: u32,
    pub burst_limit: u64,
    pub burst_window: Duration,
}

impl NotifierConfig {
    pub fn read(env: &mut Env) -> Self {
        let webhook_format = match env.string("SELFHEAL_WEBHOOK_FORMAT", "generic").to_ascii_lowercase().as_str() {
            "generic" => WebhookFormat::Generic,
            "pagerduty" => WebhookFormat::PagerDuty,
            other => {
                env.problem("SELFHEAL_WEBHOOK_FORMAT", format!("must be generic or pagerduty, got {other:?}"));
                WebhookFormat::Generic
            }
        };
        let webhook_url = env.optional("SELFHEAL_WEBHOOK_URL");
        if let Some(url) = &webhook_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                env.problem("SELFHEAL_WEBHOOK_URL", format!("must be an http(s) URL, got {url:?}"));
            }
        }
        let webhook_routing_key = env.optional("SELFHEAL_WEBHOOK_ROUTING_KEY");
        let webhook_secret_arn = env.optional("SELFHEAL_WEBHOOK_SECRET_ARN");
        if webhook_secret_arn.is_some() && webhook_url.is_some() {
            env.problem(
                "SELFHEAL_WEBHOOK_SECRET_ARN",
                "and SELFHEAL_WEBHOOK_URL are both set: name the webhook in one place only",
            );
        }
        if webhook_format == WebhookFormat::PagerDuty && webhook_url.is_some() && webhook_routing_key.is_none() {
            env.problem("SELFHEAL_WEBHOOK_ROUTING_KEY", "is required when SELFHEAL_WEBHOOK_FORMAT=pagerduty");
        }
        NotifierConfig {
            topic_info: env.optional("SELFHEAL_NOTIFY_TOPIC_INFO"),
            topic_warning: env.optional("SELFHEAL_NOTIFY_TOPIC_WARNING"),
            topic_critical: env.optional("SELFHEAL_NOTIFY_TOPIC_CRITICAL"),
            chatbot_topic: env.optional("SELFHEAL_CHATBOT_TOPIC_ARN"),
            webhook_url,
            webhook_secret_arn,
            webhook_format,
            webhook_routing_key,
            webhook_timeout: Duration::from_millis(env.number("SELFHEAL_WEBHOOK_TIMEOUT_MS", 3000u64, 100, 60_000)),
            webhook_attempts: env.number("SELFHEAL_WEBHOOK_ATTEMPTS", 3u32, 1, 10),
            burst_limit: env.number("SELFHEAL_NOTIFY_BURST_LIMIT", 5u64, 1, 100_000),
            burst_window: env.seconds("SELFHEAL_NOTIFY_BURST_WINDOW_SECONDS", 300, 1, 86_400),
        }
    }

    fn severity_topic(&self, severity: Severity) -> Option<&str> {
        match severity {
            Severity::Info => self.topic_info.as_deref(),
            Severity::Warning => self.topic_warning.as_deref(),
            Severity::Critical => self.topic_critical.as_deref(),
        }
    }
}

/// How long a webhook read from Secrets Manager is used before the secret is read again.
pub const SECRET_TTL: Duration = Duration::from_secs(300);

/// Where the webhook goes: its URL and, for PagerDuty, the routing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    pub url: String,
    pub routing_key: Option<String>,
}

/// Parses the webhook secret's value (pure): either the URL itself, or a JSON object
/// `{"url": "...", "routing_key": "..."}` (`routingKey` is accepted too). The error says what is wrong
/// without repeating the value, which is a secret.
pub fn parse_webhook_secret(text: &str) -> std::result::Result<WebhookTarget, String> {
    let text = text.trim();
    let target = if text.starts_with('{') {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| format!("is not valid JSON (line {}, column {})", e.line(), e.column()))?;
        let field = |names: &[&str]| names.iter().find_map(|n| v.get(*n)).cloned();
        let url = match field(&["url"]) {
            Some(Value::String(u)) => u,
            Some(_) => return Err("has a \"url\" that is not a string".into()),
            None => return Err("is a JSON object without \"url\"".into()),
        };
        let routing_key = match field(&["routing_key", "routingKey"]) {
            Some(Value::String(k)) => Some(k).filter(|k| !k.trim().is_empty()),
            Some(Value::Null) | None => None,
            Some(_) => return Err("has a \"routing_key\" that is not a string".into()),
        };
        WebhookTarget { url: url.trim().to_string(), routing_key }
    } else {
        WebhookTarget { url: text.to_string(), routing_key: None }
    };
    if !(target.url.starts_with("https://") || target.url.starts_with("http://")) {
        return Err("does not hold an http(s) URL (a plain URL or {\"url\": ...})".into());
    }
    Ok(target)
}

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    SeverityTopic,
    Chat,
    Webhook,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::SeverityTopic => "severity-topic",
            Channel::Chat => "chat",
            Channel::Webhook => "webhook",
        }
    }
}

/// What to do with one envelope given how many similar ones the window has seen (pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BurstDecision {
    /// Send it as it is.
    Send,
    /// Send a burst summary in its place.
    Summarise,
    /// Hold it back: a summary for this burst already went out.
    HoldBack,
}

/// Decides burst handling for the `count`th similar envelope of a window (1-based).
pub fn burst_decision(severity: Severity, count: u64, limit: u64) -> BurstDecision {
    if severity == Severity::Critical || count <= limit {
        BurstDecision::Send
    } else if count == limit + 1 {
        BurstDecision::Summarise
    } else {
        BurstDecision::HoldBack
    }
}

/// The burst key: envelopes with the same key are "similar".
pub fn burst_key(e: &Envelope) -> String {
    format!("burst#{}#{}#{}#{}", e.function, e.action, e.outcome.as_str(), e.severity.as_str())
}

/// The summary sent in place of the envelope that starts a burst.
pub fn burst_summary(e: &Envelope, limit: u64, window: Duration) -> Envelope {
    let mut s = Envelope::new(
        &e.function,
        &e.action,
        Target::new("burst", burst_key(e)),
        e.outcome,
        format!(
            "burst: more than {limit} similar notifications ({} {} {}) within {}s; further ones are held back \
             until the window ends — every decision is in the ledger's audit trail",
            e.function,
            e.action,
            e.outcome.as_str(),
            window.as_secs()
        ),
    )
    .severity(e.severity)
    .event(&e.event_id, &e.trigger)
    .dry_run(e.dry_run)
    .detail("firstHeldBack", e);
    s.details.insert("burstLimit".into(), json!(limit));
    s
}

/// Wraps a CloudWatch alarm sent straight to the notifier as an `observed` envelope.
pub fn alarm_envelope(alarm: &Alarm, event_id: &str) -> Envelope {
    let severity = match alarm.state {
        AlarmState::Alarm => Severity::Critical,
        AlarmState::InsufficientData => Severity::Warning,
        AlarmState::Ok => Severity::Info,
    };
    let state = match alarm.state {
        AlarmState::Alarm => "ALARM",
        AlarmState::Ok => "OK",
        AlarmState::InsufficientData => "INSUFFICIENT_DATA",
    };
    Envelope::new(
        "cloudwatch",
        "alarm",
        Target::new("cloudwatch-alarm", &alarm.name),
        Outcome::Observed,
        format!("{} is {state}: {}", alarm.name, alarm.reason),
    )
    .severity(severity)
    .event(event_id, "alarm")
    .detail("dimensions", &alarm.dimensions)
    .detail("metric", &alarm.metric_name)
    .detail("namespace", &alarm.namespace)
}

/// The AWS Chatbot custom-notification message for an envelope.
pub fn chatbot_message(e: &Envelope) -> Value {
    let icon = match e.severity {
        Severity::Critical => ":rotating_light:",
        Severity::Warning => ":warning:",
        Severity::Info => ":information_source:",
    };
    let mut description = format!(
        "*{}* `{}` on `{}` ({}): *{}*\n{}",
        e.function,
        e.action,
        e.target.id,
        e.target.kind,
        e.outcome.as_str(),
        e.reason
    );
    if e.dry_run {
        description.push_str("\n_dry-run: nothing was changed_");
    }
    json!({
        "version": "1.0",
        "source": "custom",
        "id": e.id,
        "content": {
            "textType": "client-markdown",
            "title": format!("{icon} selfheal {} {} {}", e.function, e.action, e.outcome.as_str()),
            "description": description,
            "keywords": [e.function, e.action, e.outcome.as_str(), e.severity.as_str()],
        },
        "metadata": {
            "threadId": format!("{}/{}", e.function, e.target.id),
            "summaryMessage": e.summary(),
            "eventType": format!("{}.{}", e.function, e.action),
            "relatedResources": [e.target.id],
            "additionalContext": { "eventId": e.event_id, "trigger": e.trigger },
        }
    })
}

/// The PagerDuty Events API v2 event for an envelope.
pub fn pagerduty_event(e: &Envelope, routing_key: &str) -> Value {
    let severity = match e.severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    };
    let summary: String = e.summary().chars().take(1024).collect();
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": format!("selfheal/{}/{}/{}", e.function, e.action, e.target.id),
        "payload": {
            "summary": summary,
            "source": format!("selfheal/{}", e.function),
            "severity": severity,
            "timestamp": e.time,
            "component": e.target.id,
            "group": e.target.group,
            "class": e.action,
            "custom_details": e,
        }
    })
}

/// Whether a webhook answer is worth retrying.
fn retryable_status(status: u16) -> bool {
    status == 429 || status >= 500
}

/// The notifier handler.
pub struct Notifier {
    ctx: Ctx,
    cfg: NotifierConfig,
    http: reqwest::Client,
    /// The webhook last read from `webhook_secret_arn`, and when.
    secret_cache: Mutex<Option<(Instant, WebhookTarget)>>,
}

impl Notifier {
    /// Builds the notifier from the process environment (cold start).
    pub async fn from_env() -> Result<Self> {
        let mut env = Env::from_process();
        let common = crate::config::CommonConfig::read(&mut env, FUNCTION);
        let cfg = NotifierConfig::read(&mut env);
        env.finish()?;
        let aws = crate::clients::Aws::load(&common.aws_timeouts).await;
        Notifier::new(Ctx::new(common, aws), cfg)
    }

    pub fn new(ctx: Ctx, cfg: NotifierConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(cfg.webhook_timeout)
            .connect_timeout(cfg.webhook_timeout)
            .user_agent("selfheal-notifier/1")
            .build()
            .map_err(|e| Error::Config { name: "webhook client".into(), problem: e.to_string() })?;
        Ok(Notifier { ctx, cfg, http, secret_cache: Mutex::new(None) })
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// Handles one invocation payload.
    pub async fn handle(&self, payload: &Value) -> Result<Value> {
        let triggers = parse_event(payload)?;
        let mut reports = Vec::new();
        let mut failures = Vec::new();
        for t in &triggers {
            match self.handle_trigger(t).await {
                Ok(r) => reports.push(r),
                Err(e) => failures.push(e),
            }
        }
        if !failures.is_empty() {
            return Err(if failures.len() == 1 { failures.remove(0) } else { Error::Many(failures) });
        }
        Ok(json!({ "notifications": reports }))
    }

    /// Delivers the envelope one trigger carries (or the alarm it reports); skips, with a warning, a
    /// trigger that is neither.
    pub async fn handle_trigger(&self, t: &Trigger) -> Result<Value> {
        let envelope = match &t.kind {
            TriggerKind::Envelope(e) => (**e).clone(),
            TriggerKind::Alarm(a) => alarm_envelope(a, &t.event_id),
            _ => return self.skip_unsupported(t).await,
        };
        self.deliver(&envelope).await
    }

    /// An event that is not for the notifier: audited as `skipped` and delivered as a warning through
    /// the notifier's own channels (see the module docs); the invocation succeeds.
    async fn skip_unsupported(&self, t: &Trigger) -> Result<Value> {
        let err = Error::UnsupportedTrigger { function: FUNCTION, event: t.describe(), handles: HANDLES };
        tracing::warn!(event_id = %t.event_id, error = %err, "event not for the notifier: skipped");
        let mut env = crate::lambda::unsupported_envelope(FUNCTION, t, &err, self.ctx.config.dry_run);
        // One id per event, so a retry after a failed channel re-sends only what was not delivered.
        env.id = format!("skip-{}", t.event_id);
        self.ctx.ledger.audit(&env).await?;
        let mut out = self.deliver(&env).await?;
        out["skipped"] = json!(env.reason);
        Ok(out)
    }

    /// Applies burst handling, then delivers to every configured channel.
    pub async fn deliver(&self, envelope: &Envelope) -> Result<Value> {
        let count = self.ctx.ledger.count_in_window(&burst_key(envelope), self.cfg.burst_window).await?;
        let to_send = match burst_decision(envelope.severity, count, self.cfg.burst_limit) {
            BurstDecision::Send => envelope.clone(),
            BurstDecision::Summarise => burst_summary(envelope, self.cfg.burst_limit, self.cfg.burst_window),
            BurstDecision::HoldBack => {
                tracing::info!(envelope_id = %envelope.id, count, "held back: part of a burst already summarised");
                crate::telemetry::Metric::new().dimension("Function", FUNCTION).count("HeldBack", 1.0).emit();
                return Ok(json!({"envelope": envelope.id, "heldBack": true, "burstCount": count}));
            }
        };
        // Deliveries are keyed on the incoming envelope id so retries of this event find them.
        let mut channels = Vec::new();
        if self.cfg.severity_topic(to_send.severity).is_some() {
            channels.push(Channel::SeverityTopic);
        }
        if self.cfg.chatbot_topic.is_some() {
            channels.push(Channel::Chat);
        }
        if self.cfg.webhook_url.is_some() || self.cfg.webhook_secret_arn.is_some() {
            channels.push(Channel::Webhook);
        }
        let results =
            futures::future::join_all(channels.iter().map(|c| self.deliver_once(*c, &envelope.id, &to_send))).await;
        let mut delivered = Vec::new();
        let mut skipped = Vec::new();
        let mut failures = Vec::new();
        for (channel, result) in channels.iter().zip(results) {
            match result {
                Ok(true) => delivered.push(channel.name()),
                Ok(false) => skipped.push(channel.name()),
                Err(e) => {
                    tracing::error!(channel = channel.name(), envelope_id = %envelope.id, error = %e, "delivery failed");
                    failures.push(e);
                }
            }
        }
        crate::telemetry::Metric::new()
            .dimension("Function", FUNCTION)
            .count("Delivered", delivered.len() as f64)
            .count("DeliveryFailures", failures.len() as f64)
            .emit();
        if !failures.is_empty() {
            return Err(Error::Many(failures));
        }
        tracing::info!(envelope_id = %envelope.id, ?delivered, ?skipped, "delivered");
        Ok(json!({
            "envelope": envelope.id,
            "summarised": to_send.id != envelope.id,
            "delivered": delivered,
            "alreadyDelivered": skipped,
        }))
    }

    /// Delivers to one channel unless a previous attempt already did; `Ok(false)` when it had.
    async fn deliver_once(&self, channel: Channel, envelope_id: &str, e: &Envelope) -> Result<bool> {
        let key = format!("delivered#{envelope_id}#{}", channel.name());
        if self.ctx.ledger.is_marked(&key).await? {
            return Ok(false);
        }
        let sns = self.ctx.publisher.sns();
        match channel {
            Channel::SeverityTopic => {
                let topic = self.cfg.severity_topic(e.severity).unwrap_or_default();
                publish_to(sns, topic, e).await.map_err(|err| delivery_error(channel, err))?;
            }
            Channel::Chat => {
                let topic = self.cfg.chatbot_topic.as_deref().unwrap_or_default();
                sns.publish()
                    .topic_arn(topic)
                    .message(chatbot_message(e).to_string())
                    .send()
                    .await
                    .map_err(|err| delivery_error(channel, Error::aws("sns", "Publish", err)))?;
            }
            Channel::Webhook => self.post_webhook(e).await?,
        }
        self.ctx.ledger.mark_once(&key).await?;
        Ok(true)
    }

    /// The webhook to post to: from the variables, or from the secret (cached for [`SECRET_TTL`]).
    async fn webhook_target(&self) -> Result<WebhookTarget> {
        let env_key = self.cfg.webhook_routing_key.clone();
        let target = match (&self.cfg.webhook_url, &self.cfg.webhook_secret_arn) {
            (Some(url), _) => WebhookTarget { url: url.clone(), routing_key: env_key },
            (None, Some(arn)) => {
                let cached = self.secret_cache.lock().ok().and_then(|c| c.clone());
                match cached {
                    Some((read_at, t)) if read_at.elapsed() < SECRET_TTL => t,
                    _ => {
                        let mut t = self.read_webhook_secret(arn).await?;
                        t.routing_key = t.routing_key.or(env_key);
                        if let Ok(mut c) = self.secret_cache.lock() {
                            *c = Some((Instant::now(), t.clone()));
                        }
                        t
                    }
                }
            }
            (None, None) => {
                return Err(Error::Delivery { channel: "webhook".into(), message: "no webhook is configured".into() })
            }
        };
        if self.cfg.webhook_format == WebhookFormat::PagerDuty && target.routing_key.is_none() {
            return Err(Error::Delivery {
                channel: "webhook".into(),
                message: "SELFHEAL_WEBHOOK_FORMAT=pagerduty needs a routing key (the secret's \"routing_key\" or \
                          SELFHEAL_WEBHOOK_ROUTING_KEY)"
                    .into(),
            });
        }
        Ok(target)
    }

    async fn read_webhook_secret(&self, arn: &str) -> Result<WebhookTarget> {
        let failed = |message: String| Error::Delivery {
            channel: "webhook".into(),
            message: format!("webhook secret {arn} (SELFHEAL_WEBHOOK_SECRET_ARN) {message}"),
        };
        let out =
            self.ctx.aws.secretsmanager().get_secret_value().secret_id(arn).send().await.map_err(|e| {
                failed(format!("could not be read: {}", Error::aws("secretsmanager", "GetSecretValue", e)))
            })?;
        let text = out.secret_string().ok_or_else(|| failed("has no string value".into()))?;
        let target = parse_webhook_secret(text).map_err(failed)?;
        tracing::info!(secret = arn, "webhook read from its secret");
        Ok(target)
    }

    async fn post_webhook(&self, e: &Envelope) -> Result<()> {
        let target = self.webhook_target().await?;
        let url = target.url.as_str();
        // A URL that came from a secret is not repeated in errors and logs.
        let shown = match (&self.cfg.webhook_url, &self.cfg.webhook_secret_arn) {
            (None, Some(arn)) => format!("the webhook in secret {arn}"),
            _ => url.to_string(),
        };
        let body = match self.cfg.webhook_format {
            WebhookFormat::Generic => serde_json::to_value(e).unwrap_or(Value::Null),
            WebhookFormat::PagerDuty => pagerduty_event(e, target.routing_key.as_deref().unwrap_or_default()),
        };
        let mut last = String::new();
        for attempt in 1..=self.cfg.webhook_attempts {
            match self.http.post(url).json(&body).send().await {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    last = format!("HTTP {status}");
                    if !retryable_status(status) {
                        break;
                    }
                }
                Err(err) => last = if err.is_timeout() { format!("timed out: {err}") } else { err.to_string() },
            }
            if attempt < self.cfg.webhook_attempts {
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 1))).await;
            }
        }
        Err(Error::Delivery {
            channel: "webhook".into(),
            message: format!("{shown}: {last} after {} attempt(s)", self.cfg.webhook_attempts),
        })
    }
}

fn delivery_error(channel: Channel, err: Error) -> Error {
    Error::Delivery { channel: channel.name().to_string(), message: err.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(sev: Severity) -> Envelope {
        Envelope::new("instance-healer", "replace", Target::new("ec2-instance", "i-1"), Outcome::Acted, "why")
            .severity(sev)
    }

    #[test]
    fn webhook_secrets_are_a_url_or_an_object_and_errors_do_not_repeat_them() {
        let plain = parse_webhook_secret(" https://hooks.slack.com/services/T/B/X\n").unwrap();
        assert_eq!(plain, WebhookTarget { url: "https://hooks.slack.com/services/T/B/X".into(), routing_key: None });
        let pd =
            parse_webhook_secret(r#"{"url": "https://events.pagerduty.com/v2/enqueue", "routing_key": "RK"}"#).unwrap();
        assert_eq!(pd.routing_key.as_deref(), Some("RK"));
        let camel = parse_webhook_secret(r#"{"url": "http://h/x", "routingKey": "K2"}"#).unwrap();
        assert_eq!(camel.routing_key.as_deref(), Some("K2"));
        for (bad, why) in [
            ("s3cr3t-token", "http(s) URL"),
            (r#"{"routing_key": "s3cr3t"}"#, "without \"url\""),
            (r#"{"url": 7}"#, "not a string"),
            (r#"{"url": "ftp://s3cr3t"}"#, "http(s) URL"),
            (r#"{"url": "https://x", "routing_key": 5}"#, "routing_key"),
            ("{s3cr3t", "not valid JSON"),
        ] {
            let err = parse_webhook_secret(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains("s3cr3t"), "the error repeats the secret: {err}");
        }
    }

    #[test]
    fn the_webhook_is_named_in_one_place_only() {
        let mut env = crate::config::Env::from_map(
            [
                ("SELFHEAL_WEBHOOK_URL".to_string(), "https://h/x".to_string()),
                (
                    "SELFHEAL_WEBHOOK_SECRET_ARN".to_string(),
                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:hook".to_string(),
                ),
            ]
            .into(),
        );
        NotifierConfig::read(&mut env);
        let err = env.finish().unwrap_err().to_string();
        assert!(err.contains("SELFHEAL_WEBHOOK_SECRET_ARN") && err.contains("SELFHEAL_WEBHOOK_URL"), "{err}");
        // With the secret alone, PagerDuty's routing key may come from the secret: no problem at cold start.
        let mut env = crate::config::Env::from_map(
            [
                ("SELFHEAL_WEBHOOK_FORMAT".to_string(), "pagerduty".to_string()),
                (
                    "SELFHEAL_WEBHOOK_SECRET_ARN".to_string(),
                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:hook".to_string(),
                ),
            ]
            .into(),
        );
        let cfg = NotifierConfig::read(&mut env);
        env.finish().unwrap();
        assert!(cfg.webhook_secret_arn.is_some() && cfg.webhook_url.is_none());
    }

    #[test]
    fn bursts_send_then_summarise_then_hold_back_but_never_critical() {
        assert_eq!(burst_decision(Severity::Info, 3, 3), BurstDecision::Send);
        assert_eq!(burst_decision(Severity::Info, 4, 3), BurstDecision::Summarise);
        assert_eq!(burst_decision(Severity::Warning, 5, 3), BurstDecision::HoldBack);
        assert_eq!(burst_decision(Severity::Critical, 500, 3), BurstDecision::Send);
    }

    #[test]
    fn pagerduty_event_has_the_v2_shape() {
        let v = pagerduty_event(&envelope(Severity::Critical), "rk");
        assert_eq!(v["routing_key"], "rk");
        assert_eq!(v["event_action"], "trigger");
        assert_eq!(v["payload"]["severity"], "critical");
        assert_eq!(v["dedup_key"], "selfheal/instance-healer/replace/i-1");
        assert_eq!(v["payload"]["custom_details"]["target"]["id"], "i-1");
    }

    #[test]
    fn chatbot_message_is_a_custom_notification() {
        let v = chatbot_message(&envelope(Severity::Warning));
        assert_eq!(v["version"], "1.0");
        assert_eq!(v["source"], "custom");
        assert_eq!(v["content"]["textType"], "client-markdown");
        assert!(v["content"]["title"].as_str().unwrap().contains(":warning:"));
    }

    #[test]
    fn pagerduty_needs_a_routing_key() {
        let mut env = Env::from_map(
            [
                ("SELFHEAL_WEBHOOK_URL", "https://events.pagerduty.com/v2/enqueue"),
                ("SELFHEAL_WEBHOOK_FORMAT", "pagerduty"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let _ = NotifierConfig::read(&mut env);
        let err = env.finish().unwrap_err().to_string();
        assert!(err.contains("SELFHEAL_WEBHOOK_ROUTING_KEY"), "{err}");
    }
}
