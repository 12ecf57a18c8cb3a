//! AWS clients: one `aws_config` load per cold start, reused across invocations.
//!
//! `AWS_ENDPOINT_URL` (and the per-service `AWS_ENDPOINT_URL_<SERVICE>`) are honoured by the SDK itself,
//! which is how everything here runs against moto. Retries use the SDK's adaptive mode (client-side
//! rate limiting on throttling) and every attempt has a timeout, so a hung endpoint cannot eat the
//! Lambda's whole budget.
//!
//! Every client carries a [`CallLog`] interceptor that records each API operation it executes. The
//! log is how dry-run is proven to make no mutating call, and how benchmarks count API calls. Tests can
//! also have it keep each request as sent ([`CallLog::record_requests`]: off unless asked for, so a
//! deployed function pays one atomic load per request), which is how the IAM conditions of the
//! templates are evaluated against the calls the code really makes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

use crate::config::AwsTimeouts;

/// Most operations kept in the call log's ordered list (counts are always complete).
const CALL_LOG_CAPACITY: usize = 50_000;

#[derive(Debug, Default)]
struct CallLogInner {
    calls: Vec<String>,
    executions: BTreeMap<String, u64>,
    attempts: BTreeMap<String, u64>,
}

/// One request as it was sent, kept when [`CallLog::record_requests`] is on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallRecord {
    /// `service:Operation`, as in [`CallLog::calls`].
    pub operation: String,
    pub method: String,
    pub uri: String,
    /// The serialized request body (a query-protocol form, JSON or XML), as UTF-8 (lossy).
    pub body: String,
    /// The access key that signed the request (whose credentials, so which account), and the region
    /// of the signature's scope.
    pub access_key_id: Option<String>,
    pub region: Option<String>,
    /// S3's `x-amz-copy-source` header (a `CopyObject`'s source, `bucket/key?versionId=...`): the one
    /// request header IAM authorizes on (the source's `GetObjectVersion`).
    pub copy_source: Option<String>,
    /// What the observer returned when it saw the request, just before it was first sent.
    pub observed: Option<serde_json::Value>,
    /// The HTTP status and body of the last answer, when one came.
    pub status: Option<u16>,
    pub response: Option<String>,
}

/// Called with each request just before its first attempt is sent (never on retries), when requests
/// are recorded; what it returns is kept as [`CallRecord::observed`]. It runs on the caller's thread
/// and may block: a test uses it to read the tags of what the request is about to touch, before the
/// request changes or removes it.
pub type CallObserver = Arc<dyn Fn(&CallRecord) -> Option<serde_json::Value> + Send + Sync>;

/// Most responses kept per record (bytes); longer ones are cut.
const RECORDED_RESPONSE_LIMIT: usize = 256 * 1024;

#[derive(Default)]
struct Recording {
    on: AtomicBool,
    /// Bumped by [`CallLog::clear`], so an execution in flight cannot update another's record.
    generation: AtomicUsize,
    observer: Mutex<Option<CallObserver>>,
    records: Mutex<Vec<CallRecord>>,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording").field("on", &self.on.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

/// The generation and index of an execution's record in [`Recording::records`], kept in its config
/// bag so retries are not recorded twice.
#[derive(Debug, Clone, Copy)]
struct RecordSlot(usize, usize);

impl Storable for RecordSlot {
    type Storer = StoreReplace<Self>;
}

/// Records every AWS operation the clients execute, as `service:Operation` with the IAM service prefix
/// (`ec2:TerminateInstances`, `autoscaling:SetInstanceHealth`, `route53:ChangeResourceRecordSets`).
#[derive(Debug, Clone, Default)]
pub struct CallLog {
    inner: Arc<Mutex<CallLogInner>>,
    recording: Arc<Recording>,
}

impl CallLog {
    fn with<R>(&self, f: impl FnOnce(&mut CallLogInner) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-record; the data is still usable.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// The operations executed so far, in order (first [`CALL_LOG_CAPACITY`]).
    pub fn calls(&self) -> Vec<String> {
        self.with(|i| i.calls.clone())
    }

    /// Executions per operation.
    pub fn executions(&self) -> BTreeMap<String, u64> {
        self.with(|i| i.executions.clone())
    }

    /// Attempts (executions plus retries) per operation.
    pub fn attempts(&self) -> BTreeMap<String, u64> {
        self.with(|i| i.attempts.clone())
    }

    /// Total executions.
    pub fn total(&self) -> u64 {
        self.with(|i| i.executions.values().sum())
    }

    /// Forgets everything recorded (the requests kept too; recording stays as it was).
    pub fn clear(&self) {
        self.with(|i| *i = CallLogInner::default());
        let mut records = self.recording.records.lock().unwrap_or_else(|p| p.into_inner());
        self.recording.generation.fetch_add(1, Ordering::SeqCst);
        records.clear();
    }

    /// From now on, keeps every request as sent ([`CallLog::records`]), showing each to `observer`
    /// (if any) just before it is first sent. For tests: a deployed function never turns this on.
    pub fn record_requests(&self, observer: Option<CallObserver>) {
        *self.recording.observer.lock().unwrap_or_else(|p| p.into_inner()) = observer;
        self.recording.on.store(true, Ordering::SeqCst);
    }

    /// The requests kept since [`CallLog::record_requests`], in the order they were first sent
    /// (first [`CALL_LOG_CAPACITY`]).
    pub fn records(&self) -> Vec<CallRecord> {
        self.recording.records.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The operations that change state, judged by the verb they start with. Reads are
    /// `Describe*`, `Get*`, `List*`, `Query`, `Scan`, `BatchGet*`, and `sts:AssumeRole`.
    pub fn mutating_calls(&self) -> Vec<String> {
        self.calls().into_iter().filter(|c| is_mutating(c)).collect()
    }
}

/// Whether an operation name (`service:Operation` or `Operation`) changes state.
pub fn is_mutating(call: &str) -> bool {
    let op = call.rsplit(':').next().unwrap_or(call);
    // `AssumeRole` changes nothing: it only hands out credentials to act in a member account.
    const READS: [&str; 9] = ["Describe", "Get", "List", "Query", "Scan", "BatchGet", "Head", "Lookup", "AssumeRole"];
    !READS.iter().any(|r| op.starts_with(r))
}

fn operation_key(cfg: &ConfigBag) -> String {
    match cfg.load::<Metadata>() {
        // The SDK's service names ("Auto Scaling", "Route 53") without spaces are the IAM prefixes.
        Some(m) => {
            let service: String = m.service().chars().filter(|c| !c.is_whitespace()).collect();
            format!("{}:{}", iam_prefix(&service.to_lowercase()), m.name())
        }
        None => "unknown:unknown".to_string(),
    }
}

/// The IAM prefix of an SDK service name whose name is not it already.
fn iam_prefix(service: &str) -> &str {
    match service {
        "arczonalshift" => "arc-zonal-shift",
        "elasticloadbalancingv2" => "elasticloadbalancing",
        "resourcegroupstaggingapi" => "tag",
        other => other,
    }
}

/// The access key and region of a SigV4 `Authorization` header
/// (`AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ec2/aws4_request, ...`).
fn signer(authorization: &str) -> (Option<String>, Option<String>) {
    let Some(scope) = authorization.split("Credential=").nth(1) else { return (None, None) };
    let scope = scope.split([',', ' ']).next().unwrap_or_default();
    let mut parts = scope.split('/');
    let key = parts.next().filter(|k| !k.is_empty()).map(str::to_string);
    let region = parts.nth(1).filter(|r| !r.is_empty()).map(str::to_string);
    (key, region)
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "selfheal-call-log"
    }

    // Not `read_before_execution`: client-level interceptors run that hook before the operation's
    // metadata is in the config bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let key = operation_key(cfg);
        self.with(|i| {
            if i.calls.len() < CALL_LOG_CAPACITY {
                i.calls.push(key.clone());
            }
            *i.executions.entry(key).or_default() += 1;
        });
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let key = operation_key(cfg);
        self.with(|i| *i.attempts.entry(key).or_default() += 1);
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.recording.on.load(Ordering::Relaxed) && cfg.load::<RecordSlot>().is_none() {
            self.record_request(context.request(), cfg);
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let (Some(slot), Some(response)) = (cfg.load::<RecordSlot>().copied(), context.response()) {
            self.record_response(slot, response);
        }
        Ok(())
    }
}

// Out of line: the hooks above run at the deepest point of every call, and a deployed function
// (which never records) should not pay for these frames there.
impl CallLog {
    #[inline(never)]
    fn record_request(&self, request: &aws_smithy_runtime_api::http::Request, cfg: &mut ConfigBag) {
        let (access_key_id, region) = signer(request.headers().get("authorization").unwrap_or_default());
        let mut record = CallRecord {
            operation: operation_key(cfg),
            method: request.method().to_string(),
            uri: request.uri().to_string(),
            body: request.body().bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default(),
            access_key_id,
            region,
            copy_source: request.headers().get("x-amz-copy-source").map(str::to_string),
            ..CallRecord::default()
        };
        let observer = self.recording.observer.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(observe) = observer {
            record.observed = observe(&record);
        }
        let mut records = self.recording.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() < CALL_LOG_CAPACITY {
            records.push(record);
            let generation = self.recording.generation.load(Ordering::SeqCst);
            cfg.interceptor_state().store_put(RecordSlot(generation, records.len() - 1));
        }
    }

    #[inline(never)]
    fn record_response(
        &self,
        RecordSlot(generation, slot): RecordSlot,
        response: &aws_smithy_runtime_api::http::Response,
    ) {
        let body = response.body().bytes().map(|b| {
            let b = &b[..b.len().min(RECORDED_RESPONSE_LIMIT)];
            String::from_utf8_lossy(b).into_owned()
        });
        let mut records = self.recording.records.lock().unwrap_or_else(|p| p.into_inner());
        if generation != self.recording.generation.load(Ordering::SeqCst) {
            return;
        }
        if let Some(r) = records.get_mut(slot) {
            r.status = Some(response.status().as_u16());
            r.response = body;
        }
    }
}

/// The loaded AWS configuration and the call log shared by every client built from it.
#[derive(Debug, Clone)]
pub struct Aws {
    pub sdk: SdkConfig,
    pub calls: CallLog,
    /// Per-service endpoints that win over the configuration's (tests point ARC zonal shift, which
    /// moto does not serve, at the harness's stand-in); deployed, the SDK's own
    /// `AWS_ENDPOINT_URL_<SERVICE>` variables do this.
    endpoints: Arc<BTreeMap<&'static str, String>>,
}

/// The retry and timeout settings every client uses, with the default timeouts.
pub fn resilience() -> (RetryConfig, TimeoutConfig) {
    resilience_with(&AwsTimeouts::default())
}

/// The retry settings every client uses, with the given timeouts.
pub fn resilience_with(t: &AwsTimeouts) -> (RetryConfig, TimeoutConfig) {
    let retry = RetryConfig::adaptive().with_max_attempts(4).with_initial_backoff(Duration::from_millis(200));
    let timeout = TimeoutConfig::builder()
        .connect_timeout(t.connect)
        .operation_attempt_timeout(t.attempt)
        .operation_timeout(t.operation)
        .build();
    (retry, timeout)
}

impl Aws {
    /// Loads configuration from the environment (credentials, region, `AWS_ENDPOINT_URL`) with the
    /// default timeouts.
    pub async fn from_env() -> Self {
        Self::load(&AwsTimeouts::default()).await
    }

    /// Loads configuration from the environment with the function's configured timeouts.
    pub async fn load(timeouts: &AwsTimeouts) -> Self {
        let (retry, timeout) = resilience_with(timeouts);
        let sdk =
            aws_config::defaults(BehaviorVersion::latest()).retry_config(retry).timeout_config(timeout).load().await;
        Aws { sdk, calls: CallLog::default(), endpoints: Arc::default() }
    }

    /// The same configuration and call log, in another region (a DR region's clients).
    pub fn in_region(&self, region: &str) -> Aws {
        let sdk = self.sdk.to_builder().region(aws_types::region::Region::new(region.to_string())).build();
        Aws { sdk, calls: self.calls.clone(), endpoints: self.endpoints.clone() }
    }

    /// This configuration in `region` when one is named (a replica's or a DR region), else the home
    /// region's: the one way a function reaches a resource wherever it lives.
    pub fn regional(&self, region: Option<&str>) -> Aws {
        match region {
            Some(r) if self.sdk.region().map(|h| h.as_ref()) != Some(r) => self.in_region(r),
            _ => self.clone(),
        }
    }

    /// Wraps an already-built configuration (tests build one pointing at moto).
    pub fn from_sdk_config(sdk: SdkConfig) -> Self {
        Aws { sdk, calls: CallLog::default(), endpoints: Arc::default() }
    }

    /// The same configuration with `service`'s calls sent to `url` (`"arc-zonal-shift"`).
    pub fn with_endpoint(mut self, service: &'static str, url: impl Into<String>) -> Aws {
        Arc::make_mut(&mut self.endpoints).insert(service, url.into());
        self
    }

    /// The endpoint set for `service` by [`Aws::with_endpoint`].
    pub fn endpoint_for(&self, service: &str) -> Option<&str> {
        self.endpoints.get(service).map(String::as_str)
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::config::Builder::from(&self.sdk).interceptor(self.calls.clone()).build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }

    /// The same configuration and call log with other credentials, in `region` (a member account's
    /// assumed role).
    pub fn with_credentials(&self, credentials: aws_sdk_sts::config::Credentials, region: &str) -> Aws {
        let sdk = self
            .sdk
            .to_builder()
            .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(credentials))
            .region(aws_types::region::Region::new(region.to_string()))
            .build();
        Aws { sdk, calls: self.calls.clone(), endpoints: self.endpoints.clone() }
    }

    pub fn organizations(&self) -> aws_sdk_organizations::Client {
        let conf = aws_sdk_organizations::config::Builder::from(&self.sdk).interceptor(self.calls.clone()).build();
        aws_sdk_organizations::Client::from_conf(conf)
    }

    pub fn sts(&self) -> aws_sdk_sts::Client {
        let conf = aws_sdk_sts::config::Builder::from(&self.sdk).interceptor(self.calls.clone()).build();
        aws_sdk_sts::Client::from_conf(conf)
    }

    pub fn sns(&self) -> aws_sdk_sns::Client {
        let conf = aws_sdk_sns::config::Builder::from(&self.sdk).interceptor(self.calls.clone()).build();
        aws_sdk_sns::Client::from_conf(conf)
    }

    #[cfg(any(feature = "healer", feature = "backup", feature = "zone"))]
    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        let conf = aws_sdk_ec2::config::Builder::from(&self.sdk).interceptor(self.calls.clone()).build();
        aws_sdk_ec2::Client::from_conf(conf)
    }

    #[cfg(any(feature = "healer", feature = "zone"))]
    pub fn autoscaling(&self) -> aws_sdk_autoscaling::Client {
        let conf = aws_sdk_autoscaling::config::Builder::from(&self.sdk).interceptor(self.calls.clone()).build();
        aws_sdk_autoscaling::Client::from_conf(conf)
    }

    #[cfg(any(feature = "db", feature = "backup"))]
    pub fn rds(&self) -> aws_sdk_rds::Client {
        let conf = aws_sdk_rds::config::Builder::from(&self.sdk).interceptor(self.calls.clone()).build();
        aws_sdk_rds::Client::from_conf(conf)
    }

    #[cfg(any(feature = "db", feature = "dns"))]
    pub fn route53(&self) -> aws_sdk_route53::Client {
        let conf = aws_sdk_route53::config::Builder::from(&self.sdk).interceptor(self.calls.clone()).build();
        aws_sdk_route53::Client::from_conf(conf)
    }

    #[cfg(feature = "backup")]
    pub fn backup(&self) -> aws_sdk_backup::Client {
        let conf = aws_sdk_backup::config::Builder::from(&self.sdk).interceptor(self.calls.clone()).build();
        aws_sdk_backup::Client::from_conf(conf)
    }

    /// The Resource Groups Tagging API: the resources of a type carrying a tag, 100 to a request.
    #[cfg(feature = "backup")]
    pub fn tagging(&self) -> aws_sdk_resourcegroupstagging::Client {
        let conf =
            aws_sdk_resourcegroupstagging::config::Builder::from(&self.sdk).interceptor(self.calls.clone()).build();
        aws_sdk_resourcegroupstagging::Client::from_conf(conf)
    }

    /// S3, path-style when an endpoint override is set (an emulator on an IP address), virtual-hosted
    /// otherwise (as AWS wants it).
    #[cfg(feature = "backup")]
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let path_style = self.sdk.endpoint_url().is_some();
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk)
            .force_path_style(path_style)
            .interceptor(self.calls.clone())
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    #[cfg(feature = "notifier")]
    pub fn secretsmanager(&self) -> aws_sdk_secretsmanager::Client {
        let conf = aws_sdk_secretsmanager::config::Builder::from(&self.sdk).interceptor(self.calls.clone()).build();
        aws_sdk_secretsmanager::Client::from_conf(conf)
    }

    #[cfg(feature = "db")]
    pub fn cloudwatch(&self) -> aws_sdk_cloudwatch::Client {
        let conf = aws_sdk_cloudwatch::config::Builder::from(&self.sdk).interceptor(self.calls.clone()).build();
        aws_sdk_cloudwatch::Client::from_conf(conf)
    }

    #[cfg(feature = "zone")]
    pub fn elbv2(&self) -> aws_sdk_elasticloadbalancingv2::Client {
        let conf =
            aws_sdk_elasticloadbalancingv2::config::Builder::from(&self.sdk).interceptor(self.calls.clone()).build();
        aws_sdk_elasticloadbalancingv2::Client::from_conf(conf)
    }

    /// Route 53 ARC zonal shift (`arc-zonal-shift`); its endpoint may be set apart ([`Aws::with_endpoint`]).
    #[cfg(feature = "zone")]
    pub fn arc(&self) -> aws_sdk_arczonalshift::Client {
        let mut conf = aws_sdk_arczonalshift::config::Builder::from(&self.sdk).interceptor(self.calls.clone());
        if let Some(url) = self.endpoint_for("arc-zonal-shift") {
            conf = conf.endpoint_url(url);
        }
        aws_sdk_arczonalshift::Client::from_conf(conf.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_not_mutating() {
        assert!(!is_mutating("ec2:DescribeInstances"));
        assert!(!is_mutating("dynamodb:Query"));
        assert!(is_mutating("ec2:TerminateInstances"));
        assert!(is_mutating("autoscaling:TerminateInstanceInAutoScalingGroup"));
        assert!(is_mutating("dynamodb:PutItem"));
        assert!(!is_mutating("sts:AssumeRole"));
        assert!(!is_mutating("sts:GetCallerIdentity"));
    }

    #[test]
    fn the_signer_is_read_from_the_authorization_header() {
        let h = "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20260101/eu-west-1/ec2/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(signer(h), (Some("ASIAEXAMPLE".into()), Some("eu-west-1".into())));
        assert_eq!(signer("Bearer x"), (None, None));
    }
}
