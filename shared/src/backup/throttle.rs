//! The API rate a sweep keeps to: mutating EC2 and RDS calls in one account and region, at most
//! `SELFHEAL_BACKUP_API_RATE` a second (bursts up to `SELFHEAL_BACKUP_API_BURST`). EC2 throttles
//! each account's mutating calls per region with a token bucket; a sweep that stays under its own
//! bucket is never the one that makes an incident's calls fail with `RequestLimitExceeded`.
//!
//! The bucket is per process and per (account, region). One sweep acts in a place at a time (its
//! lease), so the process sweeping a place is the only one spending that place's rate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Token buckets by place, shared by every clone (a warm container keeps them).
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// May go below zero: each caller reserves its slot, then waits until that slot's time.
    tokens: f64,
    at: Instant,
}

impl Throttle {
    /// The wait before one more call may go in `place` at `rate` a second with `burst`, reserving
    /// its slot (so concurrent callers queue up rather than all going at once).
    pub fn reserve(&self, place: &str, rate: f64, burst: u32) -> Duration {
        let now = Instant::now();
        let burst = f64::from(burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(place.to_string()).or_insert(Bucket { tokens: burst, at: now });
        b.tokens = (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        b.tokens -= 1.0;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / rate)
        }
    }

    /// Waits for one call's turn in `place`; returns how long it waited.
    pub async fn acquire(&self, place: &str, rate: f64, burst: u32) -> Duration {
        let wait = self.reserve(place, rate, burst);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_and_the_rest_at_the_rate() {
        let t = Throttle::default();
        let waits: Vec<Duration> = (0..6).map(|_| t.reserve("111111111111/us-east-1", 10.0, 3)).collect();
        assert!(waits[..3].iter().all(Duration::is_zero), "{waits:?}");
        // Calls 4, 5, 6 wait for the 1st, 2nd and 3rd token refilled at 10 a second.
        for (i, w) in waits[3..].iter().enumerate() {
            let want = 0.1 * (i + 1) as f64;
            assert!((w.as_secs_f64() - want).abs() < 0.01, "call {}: {w:?}", i + 4);
        }
        assert!(t.reserve("222222222222/us-east-1", 10.0, 3).is_zero(), "each place has its own bucket");
    }

    #[tokio::test]
    async fn concurrent_callers_never_exceed_the_rate() {
        let t = Throttle::default();
        let started = Instant::now();
        let calls = futures::future::join_all((0..21).map(|_| t.acquire("p", 100.0, 1))).await;
        // One at once, then 20 more at 100 a second: at least 200 ms.
        assert_eq!(calls.len(), 21);
        assert!(started.elapsed() >= Duration::from_millis(195), "{:?}", started.elapsed());
    }
}
