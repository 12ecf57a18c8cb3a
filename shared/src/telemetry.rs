//! Telemetry: structured JSON logs through `tracing` (the Lambda request id comes from the runtime's
//! span), and CloudWatch Embedded Metric Format lines for counts and durations, so metrics need no
//! CloudWatch API call.

use serde_json::{json, Map, Value};

/// The CloudWatch namespace every metric goes to.
pub const METRIC_NAMESPACE: &str = "selfheal";

/// Installs the JSON log subscriber once. `RUST_LOG` or `AWS_LAMBDA_LOG_LEVEL` set the level (default
/// `info`). Safe to call more than once (tests).
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL").map(|l| l.to_lowercase()))
        .unwrap_or_else(|_| "info".to_string());
    let _ = tracing_subscriber::registry().with(json_logs(std::io::stdout, &filter)).try_init();
}

/// The JSON log layer at `level`, without the runtime's duplicate of a failed invocation.
fn json_logs<S, W>(writer: W, level: &str) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer;
    tracing_subscriber::fmt::layer()
        .json()
        .with_writer(writer)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_filter(tracing_subscriber::EnvFilter::new(level))
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| !is_runtime_error_dump(meta)))
}

/// Whether a log event is the Lambda runtime's own line for a handler error. `lambda_runtime` logs
/// every `Err` a handler returns as a bare `Debug` dump, after [`crate::lambda::run`] has logged the
/// same error once as a structured `invocation failed` line; that dump is dropped. The runtime's
/// panic lines carry an `error` field and are kept.
pub fn is_runtime_error_dump(meta: &tracing::Metadata<'_>) -> bool {
    meta.target() == "lambda_runtime::layers::panic" && meta.fields().field("error").is_none()
}

/// One EMF record: a set of dimensions and named values.
#[derive(Debug, Clone)]
pub struct Metric {
    dimensions: Vec<(String, String)>,
    values: Vec<(String, f64, &'static str)>,
}

impl Metric {
    pub fn new() -> Self {
        Metric { dimensions: Vec::new(), values: Vec::new() }
    }

    pub fn dimension(mut self, name: &str, value: &str) -> Self {
        self.dimensions.push((name.to_string(), value.to_string()));
        self
    }

    pub fn count(mut self, name: &str, value: f64) -> Self {
        self.values.push((name.to_string(), value, "Count"));
        self
    }

    pub fn millis(mut self, name: &str, value: f64) -> Self {
        self.values.push((name.to_string(), value, "Milliseconds"));
        self
    }

    /// The EMF JSON line for this record.
    pub fn to_emf(&self) -> Value {
        let mut root = Map::new();
        let dims: Vec<&str> = self.dimensions.iter().map(|(k, _)| k.as_str()).collect();
        let metrics: Vec<Value> = self.values.iter().map(|(n, _, u)| json!({"Name": n, "Unit": u})).collect();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": chrono::Utc::now().timestamp_millis(),
                "CloudWatchMetrics": [{"Namespace": METRIC_NAMESPACE, "Dimensions": [dims], "Metrics": metrics}]
            }),
        );
        for (k, v) in &self.dimensions {
            root.insert(k.clone(), Value::String(v.clone()));
        }
        for (n, v, _) in &self.values {
            root.insert(n.clone(), json!(v));
        }
        Value::Object(root)
    }

    /// Writes the record to stdout, where the Lambda log agent picks EMF lines up (and where the test
    /// harness captures it).
    pub fn emit(&self) {
        println!("{}", self.to_emf());
    }
}

impl Default for Metric {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log sink the test can read back.
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_invocation_is_logged_once_and_a_panic_still_is() {
        use tracing_subscriber::layer::SubscriberExt;
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::registry().with(json_logs(move || writer.clone(), "info"));
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(function = "db-failover", error = "no replica", "invocation failed");
            // What lambda_runtime 1.5's panic layer logs for a handler's Err, and for a panic.
            tracing::error!(target: "lambda_runtime::layers::panic", "{:?}", "ActionFailed(\"no replica\")");
            tracing::error!(target: "lambda_runtime::layers::panic", error = ?"boom", "user handler panicked");
        });
        let out = String::from_utf8(sink.0.lock().unwrap_or_else(|p| p.into_inner()).clone()).unwrap_or_default();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].contains("invocation failed"), "{out}");
        assert!(lines[1].contains("user handler panicked"), "{out}");
        assert!(!out.contains("ActionFailed"), "{out}");
    }

    #[test]
    fn emf_names_every_metric_and_dimension() {
        let v = Metric::new().dimension("Function", "drill").count("Decisions", 2.0).millis("Latency", 5.0).to_emf();
        assert_eq!(v["Function"], "drill");
        assert_eq!(v["Decisions"], 2.0);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0], "Function");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Unit"], "Milliseconds");
    }
}
