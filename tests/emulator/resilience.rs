//! Survival under faults at the wire, for the foundation (the ledger and publishing every function
//! relies on). The per-function fault tests live with each function's tests.

use std::time::Duration;

use harness::proxy::{Fault, FaultProxy, Rule, Times};
use harness::{ctx_with, moto_endpoint, sdk_config_with};
use selfheal::clients::Aws;
use selfheal::{ActionReport, ActionRequest, Outcome, Target};

fn request(target: &str, event_id: &str) -> ActionRequest {
    ActionRequest {
        action: "probe".into(),
        target: Target::new("test", target),
        event_id: event_id.into(),
        trigger: "manual".into(),
        dry_run: false,
        reason: "resilience".into(),
    }
}

async fn rig(seed: u64, attempt_timeout: Duration) -> (FaultProxy, selfheal::Ctx) {
    rig_with(seed, attempt_timeout, selfheal::clients::resilience().0).await
}

async fn rig_with(
    seed: u64,
    attempt_timeout: Duration,
    retry: aws_config::retry::RetryConfig,
) -> (FaultProxy, selfheal::Ctx) {
    let proxy = FaultProxy::start(&moto_endpoint(), seed).await;
    let timeout = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(attempt_timeout)
        .operation_timeout(Duration::from_secs(30))
        .build();
    let aws = Aws::from_sdk_config(sdk_config_with(&proxy.endpoint, retry, timeout).await);
    let ctx = ctx_with("test", &[], aws).await;
    (proxy, ctx)
}

#[tokio::test]
async fn throttled_ledger_writes_are_retried_and_the_action_happens_once() {
    let (proxy, ctx) = rig(7, Duration::from_secs(5)).await;
    proxy.add(Rule::new("PutItem", Fault::Throttle, Times::First(2)));
    let env = ctx.execute(request("t-1", "e1"), async { Ok(ActionReport::acted("done")) }).await.unwrap();
    assert_eq!(env.outcome, Outcome::Acted);
    assert_eq!(proxy.faulted("PutItem"), 2);
    assert!(proxy.count("PutItem") >= 3, "retried after throttling: {:?}", proxy.seen());
}

#[tokio::test]
async fn a_ledger_that_keeps_failing_stops_the_action_before_it_starts() {
    let (proxy, ctx) = rig(7, Duration::from_secs(5)).await;
    proxy.add(Rule::new("PutItem", Fault::ServerError(500), Times::Always));
    let ran = std::sync::atomic::AtomicBool::new(false);
    let res = ctx
        .execute(request("t-2", "e1"), async {
            ran.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(ActionReport::acted("done"))
        })
        .await;
    let err = res.unwrap_err().to_string();
    assert!(err.contains("dynamodb:PutItem failed"), "{err}");
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst), "no action without a claim");
    assert_eq!(proxy.count("PutItem"), 4, "the SDK tried 4 times: {:?}", proxy.seen());
}

#[tokio::test]
async fn slow_and_dropped_responses_are_retried_within_the_attempt_timeout() {
    let (proxy, ctx) = rig(11, Duration::from_millis(800)).await;
    proxy.add(Rule::new("PutItem", Fault::Delay(Duration::from_secs(3)), Times::First(1)));
    proxy.add(Rule::new("UpdateItem", Fault::Drop, Times::First(1)));
    let env = ctx.execute(request("t-3", "e1"), async { Ok(ActionReport::acted("done")) }).await.unwrap();
    assert_eq!(env.outcome, Outcome::Acted);
    assert_eq!(proxy.faulted("PutItem"), 1);
    assert_eq!(proxy.faulted("UpdateItem"), 1);
}

#[tokio::test]
async fn seeded_random_faults_are_deterministic() {
    async fn run(seed: u64) -> Vec<bool> {
        // Standard (not adaptive) retries: the determinism is the proxy's; adaptive mode's client-side
        // rate limiter would only make the test slow.
        let retry = aws_config::retry::RetryConfig::standard()
            .with_max_attempts(4)
            .with_initial_backoff(Duration::from_millis(10));
        let (proxy, ctx) = rig_with(seed, Duration::from_secs(5), retry).await;
        proxy.add(Rule::new("GetItem", Fault::Throttle, Times::Probability(0.5)));
        for i in 0..8 {
            let _ = ctx.ledger.read_cooldown(&format!("t-{i}")).await;
        }
        proxy.seen().iter().filter(|s| s.operation == "GetItem").map(|s| s.fault.is_some()).collect()
    }
    let a = run(1234).await;
    let b = run(1234).await;
    assert_eq!(a, b);
    assert!(a.iter().any(|x| *x) && a.iter().any(|x| !*x), "a mix of faults and passes: {a:?}");
}
