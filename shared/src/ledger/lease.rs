//! Per-resource leases: at most one invocation acts on a resource at a time, while different resources
//! are healed in parallel.
//!
//! A lease is one item, `lease#{target}` / `lease`, written with a condition: it is taken when absent,
//! expired, or already held for the same event (a redelivery of an event whose invocation crashed:
//! the claim has already ruled out a live twin). Its owner renews it while a long action runs
//! ([`LeaseKeeper`]), releases it at the end, and a crashed owner's lease is taken over once it
//! expires; the taker learns whom it took over from, so the audit says so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{get_n, get_s, is_condition_failed, n, s, Ledger};
use crate::error::{Error, Result};

/// Proof of holding the lease on one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pk: String,
    owner: String,
    pub target: String,
    pub event_id: String,
    /// The holder this lease was taken over from, when its lease had expired (a crashed invocation).
    pub took_over: Option<LeaseHolder>,
}

/// Who holds a lease, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseHolder {
    pub function: String,
    pub action: String,
    pub event_id: String,
    pub since: String,
    pub until: DateTime<Utc>,
}

impl LeaseHolder {
    /// "db-failover (promote-replica for event e-1, since …, lease until …)".
    pub fn describe(&self) -> String {
        format!(
            "{} ({} for event {}, since {}, lease until {})",
            self.function,
            self.action,
            self.event_id,
            self.since,
            self.until.to_rfc3339()
        )
    }
}

/// The result of trying to take a lease.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseResult {
    Taken(Lease),
    /// Another invocation holds it and its lease has not expired.
    Held(LeaseHolder),
}

fn holder(item: &super::Item) -> Option<LeaseHolder> {
    Some(LeaseHolder {
        function: get_s(item, "function").unwrap_or("unknown").to_string(),
        action: get_s(item, "action").unwrap_or("unknown").to_string(),
        event_id: get_s(item, "event_id").unwrap_or("unknown").to_string(),
        since: get_s(item, "since").unwrap_or_default().to_string(),
        until: DateTime::<Utc>::from_timestamp(get_n(item, "lease_until")?, 0)?,
    })
}

/// Attempts at taking a lease that keeps being released between a refused write and the read of
/// its holder.
const TAKE_ATTEMPTS: usize = 5;

fn until(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ttl).unwrap_or_else(|_| chrono::Duration::minutes(1))
}

impl Ledger {
    fn lease_key(&self, target: &str) -> String {
        format!("lease#{}{target}", self.place)
    }

    /// Takes the lease on `target` for `ttl`, unless another invocation holds an unexpired one. A lease
    /// released between the refused write and the read of its holder is tried again, a few times.
    pub async fn take_lease(
        &self,
        target: &str,
        function: &str,
        action: &str,
        event_id: &str,
        ttl: Duration,
    ) -> Result<LeaseResult> {
        for _ in 0..TAKE_ATTEMPTS {
            if let Some(result) = self.try_take_lease(target, function, action, event_id, ttl).await? {
                return Ok(result);
            }
        }
        Err(Error::ActionFailed(format!(
            "the lease on {target} was taken and released {TAKE_ATTEMPTS} times while this invocation tried to take it"
        )))
    }

    /// One attempt: `None` when the lease was refused but is free again by the time its holder is read.
    async fn try_take_lease(
        &self,
        target: &str,
        function: &str,
        action: &str,
        event_id: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseResult>> {
        let pk = self.lease_key(target);
        let owner = uuid::Uuid::new_v4().to_string();
        let now = Utc::now();
        let res = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&pk))
            .item("sk", s("lease"))
            .item("kind", s("lease"))
            .item("target", s(target))
            .item("function", s(function))
            .item("action", s(action))
            .item("event_id", s(event_id))
            .item("owner", s(&owner))
            .item("since", s(now.to_rfc3339()))
            .item("lease_until", n(until(now, ttl).timestamp()))
            .item("expires_at", n(until(now, ttl).timestamp() + 86_400))
            .condition_expression("attribute_not_exists(pk) OR lease_until < :now OR event_id = :ev")
            .expression_attribute_values(":now", n(now.timestamp()))
            .expression_attribute_values(":ev", s(event_id))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        match res {
            Ok(out) => {
                // An old item that is still there was expired (or our own event's): say whose it was.
                let took_over = out.attributes().and_then(holder).filter(|h| h.event_id != event_id);
                Ok(Some(LeaseResult::Taken(Lease {
                    pk,
                    owner,
                    target: target.to_string(),
                    event_id: event_id.to_string(),
                    took_over,
                })))
            }
            // `None`: released between our write and our read; the caller tries again.
            Err(e) if is_condition_failed(&e) => Ok(self.read_lease(target).await?.map(LeaseResult::Held)),
            Err(e) => Err(self.explain(Error::aws("dynamodb", "PutItem", e))),
        }
    }

    /// The unexpired lease on `target`, if any (a read: used by dry-runs and by a refused taker).
    /// Held by the same rule a taker's conditional write applies (`lease_until < now`, whole seconds),
    /// so a dry run reads exactly what a live attempt at the same moment would meet, and a refused
    /// taker always finds the holder it was refused for (unless it was released in between).
    pub async fn read_lease(&self, target: &str) -> Result<Option<LeaseHolder>> {
        let Some(item) = self.get(&self.lease_key(target), "lease").await? else { return Ok(None) };
        Ok(holder(&item).filter(|h| h.until.timestamp() >= Utc::now().timestamp()))
    }

    /// Extends a held lease by `ttl` from now; `false` when it is no longer ours (it expired and was
    /// taken over: the caller has lost exclusivity and must say so).
    pub async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool> {
        let now = Utc::now();
        let res = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&lease.pk))
            .key("sk", s("lease"))
            .update_expression("SET lease_until = :until, expires_at = :exp")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(&lease.owner))
            .expression_attribute_values(":until", n(until(now, ttl).timestamp()))
            .expression_attribute_values(":exp", n(until(now, ttl).timestamp() + 86_400))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(self.explain(Error::aws("dynamodb", "UpdateItem", e))),
        }
    }

    /// Releases a lease this invocation holds (a no-op when it was already taken over).
    pub async fn release_lease(&self, lease: &Lease) -> Result<()> {
        let res = self
            .ddb
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&lease.pk))
            .key("sk", s("lease"))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(&lease.owner))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(self.explain(Error::aws("dynamodb", "DeleteItem", e))),
        }
    }
}

/// Renews a lease in the background while a long action runs (every third of its time to live), and
/// remembers whether it was ever lost. Dropping the keeper stops the renewals.
#[derive(Debug)]
pub struct LeaseKeeper {
    task: tokio::task::JoinHandle<()>,
    lost: Arc<AtomicBool>,
}

impl LeaseKeeper {
    pub fn start(ledger: Ledger, lease: Lease, ttl: Duration) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        let every = (ttl / 3).max(Duration::from_millis(100));
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match ledger.renew_lease(&lease, ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(target = %lease.target, event_id = %lease.event_id, "lease lost: another invocation took it over");
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                    // A failed renewal is retried at the next tick; the lease is still ours until it expires.
                    Err(e) => tracing::warn!(target = %lease.target, error = %e, "lease renewal failed"),
                }
            }
        });
        LeaseKeeper { task, lost }
    }

    /// Stops renewing; `true` when the lease was lost while the action ran.
    pub fn stop(self) -> bool {
        self.task.abort();
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
