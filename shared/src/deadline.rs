//! The invocation's deadline: how long the running Lambda invocation has left, so a long wait stops in
//! time to record where it is (and fail, for the retry to resume) instead of being killed mid-wait.
//!
//! The runtime loop ([`crate::lambda::run`]) runs each invocation inside [`within`] with the deadline
//! Lambda gives it; outside an invocation (tests, the CLI) there is none and [`time_left`] is `None`.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

tokio::task_local! {
    static DEADLINE: Instant;
}

/// What a long wait keeps back from the deadline to record its progress, publish, and return.
pub const RECORD_MARGIN: Duration = Duration::from_secs(20);

/// Runs `f` with `deadline` as the invocation's deadline.
pub async fn within<F: Future>(deadline: Instant, f: F) -> F::Output {
    DEADLINE.scope(deadline, f).await
}

/// Below this, a "deadline" in milliseconds cannot be an instant since the Unix epoch (it would be
/// before September 2001): it is a duration.
const EPOCH_MILLIS_FLOOR: u64 = 1_000_000_000_000;

/// The instant of a deadline given, as Lambda gives it, in milliseconds since the Unix epoch.
/// `cargo lambda watch` (1.9) sends the function's timeout as a duration instead: a value too small to
/// be an epoch instant is read as time from now, so local runs keep their real budget.
pub fn from_epoch_millis(deadline_ms: u64) -> Instant {
    if deadline_ms < EPOCH_MILLIS_FLOOR {
        return Instant::now() + Duration::from_millis(deadline_ms);
    }
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// Time left before the invocation's deadline, if it has one.
pub fn time_left() -> Option<Duration> {
    DEADLINE.try_with(|d| d.saturating_duration_since(Instant::now())).ok()
}

/// How long a wait may run: `configured`, cut short so that [`RECORD_MARGIN`] remains before the
/// deadline. The flag says whether the deadline, not the configuration, set the bound.
pub fn wait_budget(configured: Duration) -> (Duration, bool) {
    match time_left() {
        Some(left) if left.saturating_sub(RECORD_MARGIN) < configured => (left.saturating_sub(RECORD_MARGIN), true),
        _ => (configured, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_an_epoch_instant_or_else_a_duration_from_now() {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let left = |d: Instant| d.saturating_duration_since(Instant::now()).as_secs();
        assert!((598..=600).contains(&left(from_epoch_millis(now_ms + 600_000))));
        // cargo lambda watch's "deadline": the timeout itself.
        assert!((598..=600).contains(&left(from_epoch_millis(600_000))));
        assert_eq!(left(from_epoch_millis(now_ms - 5_000)), 0);
    }

    #[tokio::test]
    async fn a_wait_is_cut_short_only_by_a_near_deadline() {
        assert_eq!(wait_budget(Duration::from_secs(600)), (Duration::from_secs(600), false));
        let far = Instant::now() + Duration::from_secs(3600);
        within(far, async { assert_eq!(wait_budget(Duration::from_secs(600)), (Duration::from_secs(600), false)) })
            .await;
        let near = Instant::now() + Duration::from_secs(100);
        within(near, async {
            let (budget, cut) = wait_budget(Duration::from_secs(600));
            assert!(cut);
            assert!(budget <= Duration::from_secs(80) && budget > Duration::from_secs(70), "{budget:?}");
        })
        .await;
        let past = Instant::now() + Duration::from_secs(5);
        within(past, async { assert_eq!(wait_budget(Duration::from_secs(600)), (Duration::ZERO, true)) }).await;
    }
}
