//! How a drill's events reach the functions: over HTTP to a Lambda runtime emulator
//! (`cargo lambda watch`, the local game day), through the SNS topic the deployed functions subscribe
//! to (a real account), or to handlers in the same process (tests). [`Deliverer::deliver_all`] sends
//! many at once, each on its own task, the way AWS delivers the events of one outage: in parallel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};

/// A boxed future returned by in-process handlers.
pub type BoxFuture = Pin<Box<dyn Future<Output = Result<Value>> + Send>>;

/// An in-process handler: (function name, Lambda event) to the function's response.
pub type InProcessHandler = Arc<dyn Fn(String, Value) -> BoxFuture + Send + Sync>;

/// Where events go.
#[derive(Clone)]
pub enum Deliverer {
    /// POST to a Lambda runtime emulator's Invoke API.
    Http { base: String, client: reqwest::Client },
    /// Publish the event's message to a topic the functions subscribe to.
    Topic { sns: aws_sdk_sns::Client, topic_arn: String },
    /// Call handlers directly.
    InProcess(InProcessHandler),
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Deliverer::Http { base, .. } => write!(f, "Http({base})"),
            Deliverer::Topic { topic_arn, .. } => write!(f, "Topic({topic_arn})"),
            Deliverer::InProcess(_) => write!(f, "InProcess"),
        }
    }
}

/// What a function answered: its response, or the error it reported (a failed invocation is an
/// observation for the drill, not a delivery failure).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Ok(Value),
    FunctionError(String),
    /// Published to a topic: the answer is not known.
    Published,
}

impl Deliverer {
    /// A deliverer for a Lambda runtime emulator at `base` (e.g. `http://127.0.0.1:9000`).
    pub fn http(base: &str) -> Result<Self> {
        let client = reqwest::Client::builder()
            // The first invocation of each function may wait for it to compile.
            .timeout(Duration::from_secs(900))
            .build()
            .map_err(|e| Error::Config { name: "SELFHEAL_DRILL_LAMBDA_ENDPOINT".into(), problem: e.to_string() })?;
        Ok(Deliverer::Http { base: base.trim_end_matches('/').to_string(), client })
    }

    pub fn topic(sns: &aws_sdk_sns::Client, topic_arn: &str) -> Self {
        Deliverer::Topic { sns: sns.clone(), topic_arn: topic_arn.to_string() }
    }

    /// Whether the suite's own topic carries one function's decisions to the functions subscribed to
    /// them (the healer's AZ short-circuit to zone-evacuator): in a real account, yes; under the
    /// runtime emulator (moto's SNS invokes no local function) and in process, no, and the drill
    /// relays them itself ([`super::steps::Relay`]).
    pub fn topic_delivers_decisions(&self) -> bool {
        matches!(self, Deliverer::Topic { .. })
    }

    /// Delivers every `(function, event)` at once, each on its own task, and waits for all; the
    /// answers come back in the same order. (Over HTTP, how many run at once is the runtime emulator's
    /// concurrency; in process, the handlers run side by side on the runtime's workers.)
    pub async fn deliver_all(&self, deliveries: Vec<(String, Value)>) -> Vec<Result<Answer>> {
        let tasks: Vec<_> = deliveries
            .into_iter()
            .map(|(function, event)| {
                let me = self.clone();
                tokio::spawn(async move { me.deliver(&function, &event).await })
            })
            .collect();
        futures::future::join_all(tasks)
            .await
            .into_iter()
            .map(|joined| {
                joined.unwrap_or_else(|e| {
                    Err(Error::Delivery {
                        channel: "drill task".into(),
                        message: format!("the delivery panicked: {e}"),
                    })
                })
            })
            .collect()
    }

    /// Delivers one Lambda event to `function`.
    pub async fn deliver(&self, function: &str, event: &Value) -> Result<Answer> {
        match self {
            Deliverer::Http { base, client } => {
                let url = format!("{base}/2015-03-31/functions/{function}/invocations");
                let resp = client
                    .post(&url)
                    .json(event)
                    .send()
                    .await
                    .map_err(|e| Error::Delivery { channel: url.clone(), message: e.to_string() })?;
                let failed = resp.headers().contains_key("x-amz-function-error") || !resp.status().is_success();
                let text = resp.text().await.unwrap_or_default();
                let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
                if failed || body.get("errorMessage").is_some() {
                    let msg = body.get("errorMessage").and_then(Value::as_str).map(str::to_string).unwrap_or(text);
                    Ok(Answer::FunctionError(msg))
                } else {
                    Ok(Answer::Ok(body))
                }
            }
            Deliverer::Topic { sns, topic_arn } => {
                // An SNS-shaped event is re-published as its message; anything else as itself.
                let message = event
                    .pointer("/Records/0/Sns/Message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| event.to_string());
                sns.publish()
                    .topic_arn(topic_arn)
                    .message(message)
                    .send()
                    .await
                    .map_err(|e| Error::aws("sns", "Publish", e))?;
                Ok(Answer::Published)
            }
            Deliverer::InProcess(handler) => match handler(function.to_string(), event.clone()).await {
                Ok(v) => Ok(Answer::Ok(v)),
                Err(e) => Ok(Answer::FunctionError(e.to_string())),
            },
        }
    }
}
