//! Telemetry: structured JSON logs through `tracing` (the Lambda request id comes from the runtime's
//! span), and CloudWatch Embedded Metric Format lines for counts and durations, so metrics need no
//! CloudWatch API call.

use serde_json::{json, Map, Value};

use crate::envelope::Envelope;

/// The CloudWatch namespace every metric goes to.
pub const METRIC_NAMESPACE: &str = "selfheal";

/// Installs the JSON log subscriber once. `RUST_LOG` or `AWS_LAMBDA_LOG_LEVEL` set the level (default
/// `info`). Safe to call more than once (tests).
pub fn init_logging() {
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL").map(|l| l.to_lowercase()))
        .unwrap_or_else(|_| "info".to_string());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .try_init();
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

/// Counts one decision by function, action and outcome.
pub fn emit_decision_metric(envelope: &Envelope) {
    Metric::new()
        .dimension("Function", &envelope.function)
        .dimension("Action", &envelope.action)
        .dimension("Outcome", envelope.outcome.as_str())
        .count("Decisions", 1.0)
        .emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_names_every_metric_and_dimension() {
        let v = Metric::new().dimension("Function", "drill").count("Decisions", 2.0).millis("Latency", 5.0).to_emf();
        assert_eq!(v["Function"], "drill");
        assert_eq!(v["Decisions"], 2.0);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0], "Function");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Unit"], "Milliseconds");
    }
}
