//! The local AWS harness for integration tests: starts one moto server per test process on a free
//! loopback port (and stops it when the process exits), builds SDK configuration pointing at it, and
//! creates the fixtures tests share (a fresh ledger table, SQS queues subscribed to topics, sample events
//! with real resource ids substituted in). [`iam`] evaluates the AWS calls a test recorded against
//! the roles in the templates, as IAM would. [`arc`] stands in for the Route 53 ARC zonal shift API,
//! which moto lacks, over HTTP as `aws-sdk-arczonalshift` calls it (it lives in the dev-only `gameday`
//! crate, so the local game day can run it as a process too; [`http`] with it).
//!
//! Set `SELFHEAL_MOTO_ENDPOINT` to use a server that is already running instead.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use selfheal::clients::Aws;
use selfheal::config::{CommonConfig, Env};
use selfheal::Ctx;
use serde_json::Value;

pub use gameday::{arc, http};

pub mod fixtures;
pub mod iam;
pub mod proxy;

pub use fixtures::{ami, ec2_in, healer, in_account, on_big_stack, OPT_IN, PLACEHOLDER};

/// The region every test uses.
pub const REGION: &str = "us-east-1";

static MOTO: OnceLock<Result<String, String>> = OnceLock::new();

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn moto_server_binary() -> PathBuf {
    if let Ok(p) = std::env::var("SELFHEAL_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv = root().join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("moto_server")
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn start_moto() -> Result<String, String> {
    if let Ok(ep) = std::env::var("SELFHEAL_MOTO_ENDPOINT") {
        return Ok(ep);
    }
    let port = free_port()?;
    let bin = moto_server_binary();
    let log_dir = std::env::temp_dir().join("selfheal-test-logs");
    let _ = std::fs::create_dir_all(&log_dir);
    let log = log_dir.join(format!("moto-{port}.log"));
    // A watchdog shell stops moto when this test process exits, however it exits.
    let script = r#"bin="$1"; port="$2"; parent="$3"; log="$4"
"$bin" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
m=$!
while kill -0 "$parent" 2>/dev/null && kill -0 "$m" 2>/dev/null; do sleep 0.5; done
kill "$m" 2>/dev/null; wait "$m" 2>/dev/null"#;
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("moto-watchdog")
        .arg(&bin)
        .arg(port.to_string())
        .arg(std::process::id().to_string())
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not start {}: {e} (run scripts/setup first)", bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = format!("127.0.0.1:{port}");
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return Ok(format!("http://{addr}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let tail = std::fs::read_to_string(&log).unwrap_or_default();
    Err(format!("moto server ({}) did not listen on {addr} within 60s; its log:\n{tail}", bin.display()))
}

/// The endpoint of this process's moto server, starting it on first use.
pub fn moto_endpoint() -> String {
    match MOTO.get_or_init(start_moto) {
        Ok(ep) => ep.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// SDK configuration pointing at moto (built per test: HTTP clients belong to one tokio runtime).
pub async fn sdk_config() -> SdkConfig {
    sdk_config_at(&moto_endpoint()).await
}

/// SDK configuration pointing at any endpoint (the fault-injection proxy uses it).
pub async fn sdk_config_at(endpoint: &str) -> SdkConfig {
    let (retry, timeout) = selfheal::clients::resilience();
    sdk_config_with(endpoint, retry, timeout).await
}

/// [`sdk_config_at`] with other retry and timeout settings (tests of slow responses use short timeouts).
pub async fn sdk_config_with(
    endpoint: &str,
    retry: aws_config::retry::RetryConfig,
    timeout: aws_config::timeout::TimeoutConfig,
) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "selfheal-tests"))
        .retry_config(retry)
        .timeout_config(timeout)
        .load()
        .await
}

/// A name unique to this test run, for tables, topics, groups.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// A context for `function` against moto with a fresh ledger table. `vars` override settings
/// (`SELFHEAL_DRY_RUN`, `SELFHEAL_COOLDOWN_SECONDS`, ...).
pub async fn ctx(function: &str, vars: &[(&str, &str)]) -> Ctx {
    let aws = Aws::from_sdk_config(sdk_config().await);
    ctx_with(function, vars, aws).await
}

/// [`ctx`] with the AWS configuration given (a proxy endpoint, say).
pub async fn ctx_with(function: &str, vars: &[(&str, &str)], aws: Aws) -> Ctx {
    let mut map = std::collections::HashMap::new();
    map.insert("SELFHEAL_LEDGER_TABLE".to_string(), unique("ledger"));
    for (k, v) in vars {
        map.insert(k.to_string(), v.to_string());
    }
    let mut env = Env::from_map(map);
    let config = CommonConfig::read(&mut env, function);
    env.finish().expect("test configuration is valid");
    let ctx = Ctx::new(config, aws);
    ctx.ledger.ensure_table().await.expect("ledger table created in moto");
    ctx
}

/// An `Env` over the given variables (for function-specific settings).
pub fn env(vars: &[(&str, &str)]) -> Env {
    Env::from_map(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// A sample event from `events/`, with each `(from, to)` replaced throughout.
pub fn event(name: &str, replace: &[(&str, &str)]) -> Value {
    let path = root().join("events").join(name);
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `events/routing.json`: which function(s) each EventBridge sample must reach (the routing test's
/// table, for preflight's `TestEventPattern` too). Not a sample itself.
pub const ROUTING_TABLE: &str = "routing.json";

/// Every sample event file name in `events/`.
pub fn event_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("events"))
        .expect("events/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".json") && n != ROUTING_TABLE)
        .collect();
    names.sort();
    names
}

/// Wraps an SNS-style message body in a Lambda SNS event (what a subscribed function receives).
pub fn sns_event(topic_arn: &str, message: &Value) -> Value {
    serde_json::json!({"Records": [{
        "EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{topic_arn}:sub"),
        "Sns": {
            "Type": "Notification", "MessageId": uuid::Uuid::new_v4().to_string(),
            "TopicArn": topic_arn, "Subject": "test", "Message": message.to_string(),
            "Timestamp": chrono::Utc::now().to_rfc3339(), "SignatureVersion": "1",
            "Signature": "EXAMPLE", "SigningCertURL": "EXAMPLE", "UnsubscribeURL": "EXAMPLE",
            "MessageAttributes": {}
        }
    }]})
}

/// Creates an SNS topic and an SQS queue subscribed to it (raw delivery off, as Lambda-less
/// subscribers see it); returns (topic ARN, queue URL).
pub async fn topic_with_queue(sdk: &SdkConfig, name: &str) -> (String, String) {
    let sns = aws_sdk_sns::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let topic = sns.create_topic().name(name).send().await.expect("create topic");
    let topic_arn = topic.topic_arn().expect("topic arn").to_string();
    let q = sqs.create_queue().queue_name(format!("{name}-q")).send().await.expect("create queue");
    let queue_url = q.queue_url().expect("queue url").to_string();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes");
    let queue_arn = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("queue arn")
        .clone();
    sns.subscribe().topic_arn(&topic_arn).protocol("sqs").endpoint(queue_arn).send().await.expect("subscribe");
    (topic_arn, queue_url)
}

/// Drains an SQS queue fed by SNS; returns each notification's `Message` parsed as JSON (or as a
/// JSON string when it is not JSON) together with its message attributes.
pub async fn drain_notifications(sdk: &SdkConfig, queue_url: &str) -> Vec<(Value, Value)> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut out = Vec::new();
    loop {
        let r = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive");
        let msgs = r.messages();
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            let body: Value = serde_json::from_str(m.body().unwrap_or("{}")).unwrap_or(Value::Null);
            let message = body.get("Message").and_then(Value::as_str).unwrap_or("");
            let parsed = serde_json::from_str(message).unwrap_or_else(|_| Value::String(message.to_string()));
            let attrs = body.get("MessageAttributes").cloned().unwrap_or(Value::Null);
            out.push((parsed, attrs));
            if let Some(h) = m.receipt_handle() {
                let _ = sqs.delete_message().queue_url(queue_url).receipt_handle(h).send().await;
            }
        }
    }
    out
}

/// A local HTTP endpoint standing in for a webhook receiver (PagerDuty, a chat relay): it records every
/// request body and answers with the configured statuses in turn (the last one repeats).
pub struct WebhookReceiver {
    pub url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    statuses: std::sync::Arc<std::sync::Mutex<Vec<u16>>>,
}

impl WebhookReceiver {
    /// Starts listening on a free loopback port, on the current tokio runtime.
    pub async fn start(statuses: &[u16]) -> Self {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind webhook receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let statuses = std::sync::Arc::new(std::sync::Mutex::new(statuses.to_vec()));
        let (b, st) = (bodies.clone(), statuses.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (b, st) = (b.clone(), st.clone());
                tokio::spawn(async move {
                    let Ok(request) = http::read_request(&mut sock).await else { return };
                    let body = request.body.as_slice();
                    b.lock().unwrap().push(serde_json::from_slice(body).unwrap_or(Value::Null));
                    let status = {
                        let mut s = st.lock().unwrap();
                        if s.len() > 1 {
                            s.remove(0)
                        } else {
                            s.first().copied().unwrap_or(200)
                        }
                    };
                    let resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        WebhookReceiver { url, bodies, statuses }
    }

    /// Every request body received so far.
    pub fn received(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Replaces the statuses answered from now on.
    pub fn answer(&self, statuses: &[u16]) {
        *self.statuses.lock().unwrap() = statuses.to_vec();
    }
}

/// A hosted zone holding `db.<zone>` CNAME -> `value`; returns (zone id, record name).
pub async fn zone_with_cname(value: &str) -> (String, String) {
    let r53 = aws_sdk_route53::Client::new(&sdk_config().await);
    let zone_name = format!("{}.example.com", unique("z"));
    let z = r53.create_hosted_zone().name(&zone_name).caller_reference(unique("ref")).send().await.unwrap();
    let zone_id = z.hosted_zone().unwrap().id().trim_start_matches("/hostedzone/").to_string();
    let record = format!("db.{zone_name}.");
    let rrs = aws_sdk_route53::types::ResourceRecordSet::builder()
        .name(&record)
        .r#type(aws_sdk_route53::types::RrType::Cname)
        .ttl(60)
        .resource_records(aws_sdk_route53::types::ResourceRecord::builder().value(value).build().unwrap())
        .build()
        .unwrap();
    let batch = aws_sdk_route53::types::ChangeBatch::builder()
        .changes(
            aws_sdk_route53::types::Change::builder()
                .action(aws_sdk_route53::types::ChangeAction::Create)
                .resource_record_set(rrs)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    r53.change_resource_record_sets().hosted_zone_id(&zone_id).change_batch(batch).send().await.unwrap();
    (zone_id, record)
}

pub async fn cname(zone_id: &str, record: &str) -> String {
    let r53 = aws_sdk_route53::Client::new(&sdk_config().await);
    let out = r53.list_resource_record_sets().hosted_zone_id(zone_id).send().await.unwrap();
    let rrs = out
        .resource_record_sets()
        .iter()
        .find(|r| r.name() == record && *r.r#type() == aws_sdk_route53::types::RrType::Cname)
        .unwrap();
    rrs.resource_records()[0].value().to_string()
}
