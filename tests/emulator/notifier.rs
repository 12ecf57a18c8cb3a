//! The notifier end to end: an envelope reaches an SQS queue subscribed to its severity topic, a local
//! webhook receiver, and the Chatbot topic; a failing channel is reported without losing the others and
//! a retry re-sends only what failed; bursts are summarised; alarms sent straight to it are passed on.

use harness::{ctx, drain_notifications, env, event, sdk_config, topic_with_queue, unique, WebhookReceiver};
use selfheal::notifier::{Notifier, NotifierConfig};
use serde_json::{json, Value};

struct Rig {
    notifier: Notifier,
    sdk: aws_config::SdkConfig,
    info_q: String,
    critical_q: String,
    chat_q: String,
}

async fn rig(hook: &WebhookReceiver, extra: &[(&str, &str)]) -> Rig {
    let sdk = sdk_config().await;
    let (info, info_q) = topic_with_queue(&sdk, &unique("info")).await;
    let (critical, critical_q) = topic_with_queue(&sdk, &unique("critical")).await;
    let (chat, chat_q) = topic_with_queue(&sdk, &unique("chat")).await;
    let mut vars = vec![
        ("SELFHEAL_NOTIFY_TOPIC_INFO", info.as_str()),
        ("SELFHEAL_NOTIFY_TOPIC_CRITICAL", critical.as_str()),
        ("SELFHEAL_CHATBOT_TOPIC_ARN", chat.as_str()),
        ("SELFHEAL_WEBHOOK_URL", hook.url.as_str()),
        ("SELFHEAL_WEBHOOK_ATTEMPTS", "2"),
        ("SELFHEAL_WEBHOOK_TIMEOUT_MS", "2000"),
    ];
    vars.extend_from_slice(extra);
    let mut e = env(&vars);
    let cfg = NotifierConfig::read(&mut e);
    e.finish().unwrap();
    let notifier = Notifier::new(ctx("notifier", &[]).await, cfg).unwrap();
    Rig { notifier, sdk, info_q, critical_q, chat_q }
}

fn envelope_with(id: &str, severity: &str) -> Value {
    let mut e = event("envelope-sns.json", &[]);
    let message = e["Records"][0]["Sns"]["Message"].as_str().unwrap().to_string();
    let mut m: Value = serde_json::from_str(&message).unwrap();
    m["id"] = json!(id);
    m["severity"] = json!(severity);
    e["Records"][0]["Sns"]["Message"] = json!(m.to_string());
    e
}

#[tokio::test]
async fn an_envelope_reaches_its_severity_topic_the_webhook_and_chat() {
    let hook = WebhookReceiver::start(&[200]).await;
    let r = rig(&hook, &[]).await;
    let out = r.notifier.handle(&event("envelope-sns.json", &[])).await.unwrap();
    assert_eq!(out["notifications"][0]["delivered"].as_array().unwrap().len(), 3, "{out}");

    let info = drain_notifications(&r.sdk, &r.info_q).await;
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].0["schema"], "selfheal.envelope/v1");
    assert_eq!(info[0].0["details"]["replacement"], "i-0fedcba9876543210");
    assert_eq!(info[0].1["severity"]["Value"], "info", "filter attributes travel with it: {}", info[0].1);
    assert_eq!(info[0].1["function"]["Value"], "instance-healer");
    assert!(drain_notifications(&r.sdk, &r.critical_q).await.is_empty(), "info does not page");

    let chat = drain_notifications(&r.sdk, &r.chat_q).await;
    assert_eq!(chat.len(), 1);
    assert_eq!(chat[0].0["version"], "1.0");
    assert_eq!(chat[0].0["source"], "custom");
    assert!(chat[0].0["content"]["description"].as_str().unwrap().contains("i-0123456789abcdef0"));

    let hooks = hook.received();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["id"], "0d9b7c1e-2f3a-4b5c-8d6e-7f8a9b0c1d2e");
}

#[tokio::test]
async fn a_failing_channel_is_reported_and_the_retry_sends_only_what_failed() {
    let hook = WebhookReceiver::start(&[500]).await;
    let r = rig(&hook, &[]).await;
    let payload = event("envelope-sns.json", &[]);
    let err = r.notifier.handle(&payload).await.unwrap_err().to_string();
    assert!(err.contains("delivery to webhook failed"), "{err}");
    assert!(err.contains("HTTP 500 after 2 attempt(s)"), "{err}");
    assert_eq!(hook.received().len(), 2, "retried once");
    // The other channels were not lost.
    assert_eq!(drain_notifications(&r.sdk, &r.info_q).await.len(), 1);
    assert_eq!(drain_notifications(&r.sdk, &r.chat_q).await.len(), 1);

    // Lambda retries the event: only the webhook is sent again.
    hook.answer(&[200]);
    let out = r.notifier.handle(&payload).await.unwrap();
    assert_eq!(out["notifications"][0]["delivered"], json!(["webhook"]), "{out}");
    assert_eq!(drain_notifications(&r.sdk, &r.info_q).await.len(), 0);
    assert_eq!(drain_notifications(&r.sdk, &r.chat_q).await.len(), 0);
    assert_eq!(hook.received().len(), 3);
}

#[tokio::test]
async fn an_unreachable_webhook_fails_cleanly() {
    let hook = WebhookReceiver::start(&[200]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = format!("http://127.0.0.1:{port}/hook");
    let r = rig(&hook, &[("SELFHEAL_WEBHOOK_URL", dead.as_str())]).await;
    let err = r.notifier.handle(&event("envelope-sns.json", &[])).await.unwrap_err().to_string();
    assert!(err.contains("delivery to webhook failed"), "{err}");
    assert_eq!(drain_notifications(&r.sdk, &r.info_q).await.len(), 1);
}

#[tokio::test]
async fn pagerduty_format_sends_an_events_v2_trigger() {
    let hook = WebhookReceiver::start(&[202]).await;
    let r =
        rig(&hook, &[("SELFHEAL_WEBHOOK_FORMAT", "pagerduty"), ("SELFHEAL_WEBHOOK_ROUTING_KEY", "R0UT1NGKEY")]).await;
    r.notifier.handle(&envelope_with("pd-1", "critical")).await.unwrap();
    let got = hook.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["routing_key"], "R0UT1NGKEY");
    assert_eq!(got[0]["event_action"], "trigger");
    assert_eq!(got[0]["payload"]["severity"], "critical");
    assert_eq!(drain_notifications(&r.sdk, &r.critical_q).await.len(), 1, "critical goes to the critical topic");
}

#[tokio::test]
async fn a_burst_of_similar_envelopes_is_summarised_but_critical_ones_always_go_out() {
    let hook = WebhookReceiver::start(&[200]).await;
    let r = rig(&hook, &[("SELFHEAL_NOTIFY_BURST_LIMIT", "2")]).await;
    for i in 0..6 {
        r.notifier.handle(&envelope_with(&format!("burst-{i}"), "info")).await.unwrap();
    }
    let info = drain_notifications(&r.sdk, &r.info_q).await;
    assert_eq!(info.len(), 3, "two as they are, then one summary: {info:?}");
    let summary = &info[2].0;
    assert!(summary["reason"].as_str().unwrap().starts_with("burst: more than 2"), "{summary}");
    assert_eq!(summary["details"]["firstHeldBack"]["id"], "burst-2");
    for i in 0..4 {
        r.notifier.handle(&envelope_with(&format!("crit-{i}"), "critical")).await.unwrap();
    }
    assert_eq!(drain_notifications(&r.sdk, &r.critical_q).await.len(), 4);
}

#[tokio::test]
async fn an_alarm_sent_straight_to_the_notifier_is_passed_on() {
    let hook = WebhookReceiver::start(&[200]).await;
    let r = rig(&hook, &[]).await;
    r.notifier.handle(&event("alarm-lambda-action-ec2-status-check.json", &[])).await.unwrap();
    let critical = drain_notifications(&r.sdk, &r.critical_q).await;
    assert_eq!(critical.len(), 1);
    assert_eq!(critical[0].0["outcome"], "observed");
    assert_eq!(critical[0].0["target"]["id"], "web-i-0123456789abcdef0-status-check");
}

#[tokio::test]
async fn events_the_notifier_does_not_handle_are_skipped_with_a_warning() {
    let hook = WebhookReceiver::start(&[200]).await;
    let r = rig(&hook, &[]).await;
    let out = r.notifier.handle(&event("schedule-backup-sweep.json", &[])).await.unwrap();
    let reason = out["notifications"][0]["skipped"].as_str().unwrap_or_default();
    assert!(reason.starts_with("notifier does not handle a scheduled event"), "{out}");
    // Not passed on as if it were news: the warning about it goes out, nothing at info.
    let sent = hook.received();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0]["outcome"].as_str(), sent[0]["severity"].as_str()), (Some("skipped"), Some("warning")));
    assert!(drain_notifications(&r.sdk, &r.info_q).await.is_empty());
}

async fn put_secret(sdk: &aws_config::SdkConfig, name: &str, value: &str) -> String {
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    let out = sm.create_secret().name(name).secret_string(value).send().await.unwrap();
    out.arn().unwrap().to_string()
}

#[tokio::test]
async fn the_webhook_and_routing_key_can_come_from_a_secret() {
    let hook = WebhookReceiver::start(&[202]).await;
    let sdk = harness::sdk_config().await;
    let secret = format!(r#"{{"url": "{}", "routing_key": "FROM-SECRET"}}"#, hook.url);
    let arn = put_secret(&sdk, &unique("pagerduty"), &secret).await;
    // As deployed: the URL variable is empty and the secret names the webhook.
    let r = rig(
        &hook,
        &[
            ("SELFHEAL_WEBHOOK_URL", ""),
            ("SELFHEAL_WEBHOOK_SECRET_ARN", &arn),
            ("SELFHEAL_WEBHOOK_FORMAT", "pagerduty"),
        ],
    )
    .await;
    r.notifier.handle(&envelope_with("pd-secret-1", "critical")).await.unwrap();
    r.notifier.handle(&envelope_with("pd-secret-2", "critical")).await.unwrap();
    let got = hook.received();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["routing_key"], "FROM-SECRET");
    assert_eq!(got[1]["routing_key"], "FROM-SECRET", "{}", got[1]);
    let reads = r.notifier.ctx().aws.calls.executions();
    assert_eq!(reads.get("secretsmanager:GetSecretValue"), Some(&1), "read once, then cached: {reads:?}");
}

#[tokio::test]
async fn an_unreadable_webhook_secret_fails_only_the_webhook_and_the_retry_reads_it_again() {
    let hook = WebhookReceiver::start(&[200]).await;
    let name = unique("hook");
    let r = rig(&hook, &[("SELFHEAL_WEBHOOK_URL", ""), ("SELFHEAL_WEBHOOK_SECRET_ARN", &name)]).await;
    let payload = event("envelope-sns.json", &[]);
    let err = r.notifier.handle(&payload).await.unwrap_err().to_string();
    assert!(err.contains(&format!("webhook secret {name} (SELFHEAL_WEBHOOK_SECRET_ARN) could not be read")), "{err}");
    assert!(hook.received().is_empty());
    assert_eq!(drain_notifications(&r.sdk, &r.info_q).await.len(), 1, "the other channels still deliver");
    assert_eq!(drain_notifications(&r.sdk, &r.chat_q).await.len(), 1);

    // Someone creates the secret; Lambda retries the event: the secret is read again, only the webhook goes.
    put_secret(&r.sdk, &name, &hook.url).await;
    let out = r.notifier.handle(&payload).await.unwrap();
    assert_eq!(out["notifications"][0]["delivered"], json!(["webhook"]), "{out}");
    assert_eq!(hook.received().len(), 1);
    assert_eq!(hook.received()[0]["id"], "0d9b7c1e-2f3a-4b5c-8d6e-7f8a9b0c1d2e");
}

#[tokio::test]
async fn a_webhook_secret_without_a_url_is_named_and_not_repeated() {
    let hook = WebhookReceiver::start(&[200]).await;
    let sdk = harness::sdk_config().await;
    let arn = put_secret(&sdk, &unique("bad-hook"), r#"{"routing_key": "s3cr3t"}"#).await;
    let r = rig(&hook, &[("SELFHEAL_WEBHOOK_URL", ""), ("SELFHEAL_WEBHOOK_SECRET_ARN", &arn)]).await;
    let err = r.notifier.handle(&event("envelope-sns.json", &[])).await.unwrap_err().to_string();
    assert!(err.contains(&arn) && err.contains("without \"url\""), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
    assert!(hook.received().is_empty());
}
