//! Per-resource leases: two invocations never act on one resource at once, different resources
//! proceed in parallel, a long action keeps its lease, and a crashed holder's lease is taken over.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::{ctx, sdk_config, unique};
use selfheal::ledger::LeaseResult;
use selfheal::{ActionReport, ActionRequest, Outcome, Target};

fn request(target: &str, event_id: &str, dry_run: bool) -> ActionRequest {
    ActionRequest {
        action: "send-message".into(),
        target: Target::new("sqs-queue", target).in_group("lease-group"),
        event_id: event_id.into(),
        trigger: "manual".into(),
        dry_run,
        reason: "test".into(),
    }
}

async fn messages(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// The cooldown is off, so only the lease stands between concurrent actions on one resource.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_events_for_one_resource_act_once_while_five_other_resources_are_healed_in_parallel() {
    let ctx = Arc::new(ctx("test", &[("SELFHEAL_COOLDOWN_SECONDS", "0"), ("SELFHEAL_RATE_LIMIT", "100")]).await);
    let sdk = sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut urls = Vec::new();
    for _ in 0..6 {
        urls.push(
            sqs.create_queue().queue_name(unique("lease")).send().await.unwrap().queue_url().unwrap().to_string(),
        );
    }
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most_in_flight = Arc::new(AtomicUsize::new(0));
    // Five different events (an RDS event, an alarm, a redelivered alarm...) for the first resource,
    // and one event for each of the five others, all at once.
    let jobs: Vec<(String, String)> = (0..5)
        .map(|i| (urls[0].clone(), format!("event-{i}")))
        .chain(urls[1..].iter().map(|u| (u.clone(), "event-other".to_string())))
        .collect();
    let mut tasks = Vec::new();
    for (url, event_id) in jobs {
        let (ctx, sqs, in_flight, most) = (ctx.clone(), sqs.clone(), in_flight.clone(), most_in_flight.clone());
        tasks.push(tokio::spawn(async move {
            let work = async {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(400)).await;
                sqs.send_message()
                    .queue_url(&url)
                    .message_body("acted")
                    .send()
                    .await
                    .map_err(|e| selfheal::Error::aws("sqs", "SendMessage", e))?;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(ActionReport::acted("sent"))
            };
            ctx.execute(request(&url, &event_id, false), work).await.unwrap()
        }));
    }
    let mut envelopes = Vec::new();
    for t in tasks {
        envelopes.push(t.await.unwrap());
    }
    let contested: Vec<_> = envelopes.iter().filter(|e| e.target.id == urls[0]).collect();
    assert_eq!(contested.iter().filter(|e| e.outcome == Outcome::Acted).count(), 1, "{contested:#?}");
    let refused: Vec<_> = contested.iter().filter(|e| e.outcome == Outcome::Refused).collect();
    assert_eq!(refused.len(), 4, "{contested:#?}");
    for e in &refused {
        assert_eq!(e.details["guard"], "lease", "{e:#?}");
        assert!(e.reason.contains("is being acted on by test (send-message for event event-"), "{}", e.reason);
    }
    // What happened in the emulator: one message on the contested queue, one on each other queue.
    assert_eq!(messages(&sqs, &urls[0]).await, 1);
    for url in &urls[1..] {
        assert_eq!(messages(&sqs, url).await, 1, "{url}");
    }
    // Different resources were acted on at the same time (each action held its lease for 400 ms).
    assert!(most_in_flight.load(Ordering::SeqCst) >= 2, "actions on different resources ran one at a time");
    // Every lease was released at the end.
    for url in &urls {
        assert!(ctx.ledger.read_lease(url).await.unwrap().is_none(), "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_action_keeps_its_lease_renewed_past_its_life_and_releases_it_at_the_end() {
    let ctx = Arc::new(ctx("test", &[("SELFHEAL_COOLDOWN_SECONDS", "0"), ("SELFHEAL_LEASE_SECONDS", "1")]).await);
    let long = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let work = async {
                tokio::time::sleep(Duration::from_millis(3500)).await;
                Ok(ActionReport::acted("a long promotion"))
            };
            ctx.execute(request("db-long", "event-long", false), work).await.unwrap()
        })
    };
    // Well past the lease's one-second life, the action still holds it: a second event stands down.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second =
        ctx.execute(request("db-long", "event-second", false), async { Ok(ActionReport::acted("x")) }).await.unwrap();
    assert_eq!(second.outcome, Outcome::Refused, "{second:#?}");
    assert!(second.reason.contains("event-long"), "{}", second.reason);
    let first = long.await.unwrap();
    assert_eq!(first.outcome, Outcome::Acted, "{first:#?}");
    assert!(!first.details.contains_key("leaseLost"), "{first:#?}");
    assert!(ctx.ledger.read_lease("db-long").await.unwrap().is_none(), "the lease was not released");
    // Released: the next event acts at once.
    let third =
        ctx.execute(request("db-long", "event-third", false), async { Ok(ActionReport::acted("x")) }).await.unwrap();
    assert_eq!(third.outcome, Outcome::Acted, "{third:#?}");
}

#[tokio::test]
async fn a_crashed_holders_lease_is_taken_over_once_it_expires_and_the_decision_says_whose_it_was() {
    let ctx = ctx("test", &[("SELFHEAL_COOLDOWN_SECONDS", "0"), ("SELFHEAL_LEASE_SECONDS", "1")]).await;
    // An invocation took the lease and died without releasing it.
    let taken = ctx
        .ledger
        .take_lease("db-crash", "db-failover", "promote-replica", "event-crashed", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(matches!(taken, LeaseResult::Taken(_)), "{taken:?}");
    let early =
        ctx.execute(request("db-crash", "event-early", false), async { Ok(ActionReport::acted("x")) }).await.unwrap();
    assert_eq!(early.outcome, Outcome::Refused, "{early:#?}");
    assert!(early.reason.contains("db-failover (promote-replica for event event-crashed"), "{}", early.reason);
    // Dry-run reads the lease and says what it would do.
    let dry =
        ctx.execute(request("db-crash", "event-dry", true), async { Ok(ActionReport::would("x")) }).await.unwrap();
    assert_eq!(dry.outcome, Outcome::Refused, "{dry:#?}");
    assert!(dry.reason.starts_with("would stand down"), "{}", dry.reason);
    // Lease times are whole seconds: past the expiry, the lease is taken over.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let late =
        ctx.execute(request("db-crash", "event-late", false), async { Ok(ActionReport::acted("x")) }).await.unwrap();
    assert_eq!(late.outcome, Outcome::Acted, "{late:#?}");
    let from = late.details["leaseTakenOverFrom"].as_str().unwrap_or_default();
    assert!(from.contains("event-crashed"), "{late:#?}");
    // The audit trail holds all four decisions.
    let trail = ctx.ledger.audit_trail("db-crash").await.unwrap();
    let outcomes: Vec<&str> = trail.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "refused").count(), 2, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == "acted").count(), 1, "{outcomes:?}");
}

/// Lease expiries are whole seconds. Just past the second a lease's expiry names, a live taker's
/// conditional write (`lease_until < now`, in whole seconds) still meets it: so must a dry run.
#[tokio::test]
async fn a_dry_run_reads_a_lease_in_its_last_second_as_a_live_taker_meets_it() {
    use chrono::Timelike;
    let ctx = ctx("test", &[("SELFHEAL_COOLDOWN_SECONDS", "0")]).await;
    let ttl = Duration::from_secs(1);
    // Take the lease late in a second, so its expiry (floored to the second) is the next one.
    let wait = (1_900_000_000u32.saturating_sub(chrono::Utc::now().nanosecond() % 1_000_000_000)) % 1_000_000_000;
    tokio::time::sleep(Duration::from_nanos(u64::from(wait))).await;
    let taken = ctx.ledger.take_lease("db-edge", "db-failover", "promote-replica", "event-holder", ttl).await.unwrap();
    let LeaseResult::Taken(_) = taken else { panic!("a free lease was not taken: {taken:?}") };
    let expiry_second = chrono::Utc::now().timestamp() + 1;
    // Into the second the expiry names.
    while chrono::Utc::now().timestamp() < expiry_second {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dry = ctx.execute(request("db-edge", "event-dry", true), async { Ok(ActionReport::would("x")) }).await.unwrap();
    let live =
        ctx.execute(request("db-edge", "event-live", false), async { Ok(ActionReport::acted("x")) }).await.unwrap();
    if chrono::Utc::now().timestamp() == expiry_second {
        assert_eq!(live.outcome, Outcome::Refused, "{live:#?}");
        assert_eq!(dry.outcome, Outcome::Refused, "the dry run must read what the live taker met: {dry:#?}");
        assert!(dry.reason.starts_with("would stand down"), "{}", dry.reason);
    }
}

#[tokio::test]
async fn only_the_owner_renews_or_releases_a_lease_and_a_redelivery_of_the_holding_event_retakes_it() {
    let ctx = ctx("test", &[]).await;
    let ttl = Duration::from_secs(60);
    let LeaseResult::Taken(mine) = ctx.ledger.take_lease("i-1", "instance-healer", "replace", "e1", ttl).await.unwrap()
    else {
        panic!("a free lease was not taken")
    };
    let other = ctx.ledger.take_lease("i-1", "instance-healer", "replace", "e2", ttl).await.unwrap();
    let LeaseResult::Held(holder) = other else { panic!("a held lease was taken: {other:?}") };
    assert_eq!(holder.event_id, "e1");
    // The same event redelivered after its invocation crashed (its claim has ruled out a live twin).
    let LeaseResult::Taken(again) =
        ctx.ledger.take_lease("i-1", "instance-healer", "replace", "e1", ttl).await.unwrap()
    else {
        panic!("the holding event could not retake its lease")
    };
    assert!(again.took_over.is_none());
    // The first owner lost it to the redelivery: it can neither renew nor release it.
    assert!(!ctx.ledger.renew_lease(&mine, ttl).await.unwrap());
    ctx.ledger.release_lease(&mine).await.unwrap();
    assert!(ctx.ledger.read_lease("i-1").await.unwrap().is_some());
    assert!(ctx.ledger.renew_lease(&again, ttl).await.unwrap());
    ctx.ledger.release_lease(&again).await.unwrap();
    assert!(ctx.ledger.read_lease("i-1").await.unwrap().is_none());
}
