//! The action ledger: a DynamoDB table that makes every action happen at most once per event, holds the
//! cooldown and rate-limit state, and keeps the audit trail.
//!
//! Table: partition key `pk` (S), sort key `sk` (S), TTL attribute `expires_at` (epoch seconds).
//!
//! | item            | pk                                   | sk              | purpose                       |
//! |-----------------|--------------------------------------|-----------------|-------------------------------|
//! | claim           | `claim#{target}#{action}#{event}#{mode}` | `claim`     | one action per event          |
//! | cooldown lock   | `cooldown#{target}`                  | `lock`          | minimum time between actions  |
//! | rate bucket     | `rate#{group}#{window index}`        | `count`         | actions per group per window  |
//! | lease           | `lease#{target}`                     | `lease`         | one invocation per resource   |
//! | approval        | `approval#{token}` (fleet-wide)      | `approval`      | a decision awaiting a human   |
//! | open approvals  | `approvals-open#{function}`          | `open`          | tokens the expiry sweep reads |
//! | marker          | `once#{key}`                         | `once`          | done once, with its progress  |
//! | audit record    | `audit#{target}`                     | `{time}#{id}`   | what, why, outcome            |
//! | zone evacuation | `zone-signal#`, `zone-evac#`, `zone-active` | see [`zone`] | AZ evidence and evacuations |
//!
//! `{target}` and `{group}` are account-qualified: at the hub's own account and region they are the
//! resource's id as it always was; in a member account or another region they read
//! `{account}/{region}/{id}` ([`Ledger::at`]). One table serves the whole fleet.
//!
//! Every write that decides something is a conditional write, so concurrent invocations (duplicate
//! deliveries, parallel Lambdas) race on DynamoDB and exactly one wins.

mod approvals;
mod batch;
mod lease;
pub mod zone;
pub mod zone_change;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use crate::envelope::{Envelope, Outcome};
use crate::error::{Error, Result};

pub use approvals::{ApprovalRecord, Approve, Settle, APPROVED, AWAITING, EXPIRED, REJECTED};
pub use batch::{batch_backoff, RunRecord, ShardCount, BATCH_ATTEMPTS, BATCH_WRITE_LIMIT};
pub use lease::{Lease, LeaseHolder, LeaseKeeper, LeaseResult};
pub use zone::{ActiveEvacuation, Evacuation, ZoneSignal};

/// How long an in-progress claim blocks redeliveries before it is considered abandoned (a crashed
/// invocation); longer than Lambda's 15-minute maximum run time.
pub const CLAIM_LEASE: Duration = Duration::from_secs(16 * 60);

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n(item: &Item, key: &str) -> Option<i64> {
    item.get(key).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

/// Whether an SDK error is DynamoDB's "the condition did not hold".
fn is_condition_failed<E, R>(err: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    matches!(err, SdkError::ServiceError(se) if se.err().code() == Some("ConditionalCheckFailedException"))
}

/// The result of trying to claim an event for an action.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimResult {
    /// This invocation owns the action.
    Claimed(Claim),
    /// Another delivery already claimed it; its recorded status and reason.
    AlreadyClaimed { status: String, reason: String, at: String },
}

/// Proof of ownership of one (target, action, event, mode).
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub pk: String,
    pub owner: String,
}

/// A held cooldown, as read back when a lock could not be taken.
#[derive(Debug, Clone, PartialEq)]
pub struct CooldownHeld {
    pub until: DateTime<Utc>,
    pub by_event: String,
}

/// An audit record as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub target: String,
    pub time: String,
    pub function: String,
    pub action: String,
    pub outcome: String,
    pub envelope: Envelope,
}

/// The DynamoDB-backed ledger.
#[derive(Debug, Clone)]
pub struct Ledger {
    ddb: aws_sdk_dynamodb::Client,
    table: String,
    ttl: Duration,
    /// Prepended to every target, group and marker key: empty for the hub's own account and region,
    /// `{account}/{region}/` elsewhere, so `prod-db` in one account never shares a claim, cooldown,
    /// rate bucket or audit trail with `prod-db` in another.
    place: String,
}

impl Ledger {
    pub fn new(ddb: aws_sdk_dynamodb::Client, table: impl Into<String>, ttl: Duration) -> Self {
        Ledger { ddb, table: table.into(), ttl, place: String::new() }
    }

    /// The same table, with every key qualified by `account` and `region` (a member account's, or
    /// another region of the hub's).
    pub fn at(&self, account: &str, region: &str) -> Self {
        Ledger { place: format!("{account}/{region}/"), ..self.clone() }
    }

    /// An AWS failure, said plainly where the cause is the setup rather than AWS: a ledger table that
    /// does not exist names the table, the region and what to do.
    fn explain(&self, e: Error) -> Error {
        match &e {
            Error::Aws { message, .. } if message.contains("ResourceNotFoundException") => Error::Config {
                name: "SELFHEAL_LEDGER_TABLE".into(),
                problem: format!(
                    "ledger table `{}` not found in {}: deploy infra/template.yaml or point SELFHEAL_LEDGER_TABLE at it",
                    self.table,
                    self.ddb.config().region().map(|r| r.to_string()).unwrap_or_else(|| "the configured region".into())
                ),
            },
            _ => e,
        }
    }

    /// The key prefix in force: empty at home, `{account}/{region}/` elsewhere.
    pub fn place(&self) -> &str {
        &self.place
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn expires_at(&self, now: DateTime<Utc>) -> i64 {
        now.timestamp() + self.ttl.as_secs() as i64
    }

    /// Claims (target, action, event, mode). Exactly one of any number of concurrent callers gets
    /// [`ClaimResult::Claimed`]. A claim whose action failed, or whose owner vanished past
    /// [`CLAIM_LEASE`], can be claimed again so a retry of a failed event can finish the job.
    pub async fn claim(&self, target: &str, action: &str, event_id: &str, dry_run: bool) -> Result<ClaimResult> {
        let mode = if dry_run { "dry-run" } else { "live" };
        let pk = format!("claim#{}{target}#{action}#{event_id}#{mode}", self.place);
        let owner = uuid::Uuid::new_v4().to_string();
        let now = Utc::now();
        let lease_until =
            now + chrono::Duration::from_std(CLAIM_LEASE).unwrap_or_else(|_| chrono::Duration::minutes(16));
        let res = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&pk))
            .item("sk", s("claim"))
            .item("kind", s("claim"))
            .item("target", s(target))
            .item("action", s(action))
            .item("event_id", s(event_id))
            .item("status", s("in-progress"))
            .item("owner", s(&owner))
            .item("claimed_at", s(now.to_rfc3339()))
            .item("lease_until", n(lease_until.timestamp()))
            .item("expires_at", n(self.expires_at(now)))
            .condition_expression("attribute_not_exists(pk) OR #st = :failed OR (#st = :inprog AND lease_until < :now)")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":failed", s("failed"))
            .expression_attribute_values(":inprog", s("in-progress"))
            .expression_attribute_values(":now", n(now.timestamp()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(ClaimResult::Claimed(Claim { pk, owner })),
            Err(e) if is_condition_failed(&e) => {
                let item = self.get(&pk, "claim").await?.unwrap_or_default();
                Ok(ClaimResult::AlreadyClaimed {
                    status: get_s(&item, "status").unwrap_or("unknown").to_string(),
                    reason: get_s(&item, "reason").unwrap_or_default().to_string(),
                    at: get_s(&item, "claimed_at").unwrap_or_default().to_string(),
                })
            }
            Err(e) => Err(self.explain(Error::aws("dynamodb", "PutItem", e))),
        }
    }

    /// The recorded status (`in-progress`, `done`, `failed`) of a claim on (target, action, event, mode),
    /// if one exists: a read, so callers can recognise a redelivery before doing their own pre-checks.
    pub async fn claim_status(
        &self,
        target: &str,
        action: &str,
        event_id: &str,
        dry_run: bool,
    ) -> Result<Option<String>> {
        let mode = if dry_run { "dry-run" } else { "live" };
        let pk = format!("claim#{}{target}#{action}#{event_id}#{mode}", self.place);
        Ok(self.get(&pk, "claim").await?.map(|item| get_s(&item, "status").unwrap_or("unknown").to_string()))
    }

    /// Records how a claimed action ended. `failed` lets a redelivery claim it again.
    pub async fn complete(&self, claim: &Claim, outcome: Outcome, reason: &str) -> Result<()> {
        let status = if outcome == Outcome::Failed { "failed" } else { "done" };
        self.ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&claim.pk))
            .key("sk", s("claim"))
            .update_expression("SET #st = :st, outcome = :out, reason = :reason, completed_at = :at")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":st", s(status))
            .expression_attribute_values(":out", s(outcome.as_str()))
            .expression_attribute_values(":reason", s(if reason.is_empty() { "-" } else { reason }))
            .expression_attribute_values(":at", s(Utc::now().to_rfc3339()))
            .expression_attribute_values(":owner", s(&claim.owner))
            .send()
            .await
            .map_err(|e| self.explain(Error::aws("dynamodb", "UpdateItem", e)))?;
        Ok(())
    }

    /// Takes the cooldown lock on `target` for `cooldown`, unless another action holds it.
    pub async fn take_cooldown(
        &self,
        target: &str,
        event_id: &str,
        cooldown: Duration,
    ) -> Result<Option<CooldownHeld>> {
        if cooldown.is_zero() {
            return Ok(None);
        }
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(cooldown).unwrap_or_else(|_| chrono::Duration::days(7));
        let pk = format!("cooldown#{}{target}", self.place);
        let res = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&pk))
            .item("sk", s("lock"))
            .item("kind", s("cooldown"))
            .item("until", n(until.timestamp()))
            .item("until_text", s(until.to_rfc3339()))
            .item("event_id", s(event_id))
            .item("expires_at", n(until.timestamp() + 86_400))
            .condition_expression("attribute_not_exists(pk) OR #until < :now")
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":now", n(now.timestamp()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(None),
            Err(e) if is_condition_failed(&e) => Ok(Some(
                self.read_cooldown(target).await?.unwrap_or(CooldownHeld { until, by_event: "unknown".into() }),
            )),
            Err(e) => Err(self.explain(Error::aws("dynamodb", "PutItem", e))),
        }
    }

    /// The cooldown currently held on `target`, if any (a read: used by dry-runs).
    pub async fn read_cooldown(&self, target: &str) -> Result<Option<CooldownHeld>> {
        let Some(item) = self.get(&format!("cooldown#{}{target}", self.place), "lock").await? else { return Ok(None) };
        let until = get_n(&item, "until").and_then(|t| DateTime::<Utc>::from_timestamp(t, 0));
        match until {
            Some(until) if until > Utc::now() => {
                Ok(Some(CooldownHeld { until, by_event: get_s(&item, "event_id").unwrap_or("unknown").to_string() }))
            }
            _ => Ok(None),
        }
    }

    /// Releases a cooldown this event took (when a later guard refused the action).
    pub async fn release_cooldown(&self, target: &str, event_id: &str) -> Result<()> {
        let res = self
            .ddb
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("cooldown#{}{target}", self.place)))
            .key("sk", s("lock"))
            .condition_expression("event_id = :e")
            .expression_attribute_values(":e", s(event_id))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(self.explain(Error::aws("dynamodb", "DeleteItem", e))),
        }
    }

    fn rate_key(&self, group: &str, window: Duration, now: DateTime<Utc>) -> String {
        let w = window.as_secs().max(1) as i64;
        format!("rate#{}{group}#{}", self.place, now.timestamp().div_euclid(w))
    }

    /// Takes one slot in `group`'s current window; `false` when `limit` slots are already taken.
    pub async fn take_rate_slot(&self, group: &str, window: Duration, limit: u32) -> Result<bool> {
        let now = Utc::now();
        let res = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(self.rate_key(group, window, now)))
            .key("sk", s("count"))
            .update_expression("ADD actions :one SET expires_at = :exp, kind = :kind")
            .condition_expression("attribute_not_exists(actions) OR actions < :limit")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(i64::from(limit)))
            .expression_attribute_values(":exp", n(now.timestamp() + window.as_secs() as i64 + 86_400))
            .expression_attribute_values(":kind", s("rate"))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(self.explain(Error::aws("dynamodb", "UpdateItem", e))),
        }
    }

    /// Slots already taken in `group`'s current window (a read: used by dry-runs and reports).
    pub async fn rate_used(&self, group: &str, window: Duration) -> Result<u32> {
        let item = self.get(&self.rate_key(group, window, Utc::now()), "count").await?;
        Ok(item.and_then(|i| get_n(&i, "actions")).unwrap_or(0).max(0) as u32)
    }

    /// Atomically counts one occurrence of `key` in a window; returns the count after this one.
    /// (The notifier uses it to notice bursts.)
    pub async fn count_in_window(&self, key: &str, window: Duration) -> Result<u64> {
        let now = Utc::now();
        let out = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(self.rate_key(key, window, now)))
            .key("sk", s("count"))
            .update_expression("ADD actions :one SET expires_at = :exp, kind = :kind")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":exp", n(now.timestamp() + window.as_secs() as i64 + 86_400))
            .expression_attribute_values(":kind", s("counter"))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| self.explain(Error::aws("dynamodb", "UpdateItem", e)))?;
        Ok(out.attributes().and_then(|a| get_n(a, "actions")).unwrap_or(1).max(0) as u64)
    }

    /// Marks `key` done once; `false` if it was already marked (per-channel delivery records).
    pub async fn mark_once(&self, key: &str) -> Result<bool> {
        let now = Utc::now();
        let res = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("once#{}{key}", self.place)))
            .item("sk", s("once"))
            .item("kind", s("once"))
            .item("at", s(now.to_rfc3339()))
            .item("expires_at", n(self.expires_at(now)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(self.explain(Error::aws("dynamodb", "PutItem", e))),
        }
    }

    /// Whether `key` was marked by [`Ledger::mark_once`].
    pub async fn is_marked(&self, key: &str) -> Result<bool> {
        Ok(self.get(&format!("once#{}{key}", self.place), "once").await?.is_some())
    }

    /// Records progress on a marker taken by [`Ledger::mark_once`] (string fields, e.g. the phase of a
    /// promotion and its new writer), so an invocation that ran out of time leaves its retry enough to
    /// resume from.
    pub async fn note_progress(&self, key: &str, fields: &[(&str, &str)]) -> Result<()> {
        let mut update = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("once#{}{key}", self.place)))
            .key("sk", s("once"))
            .condition_expression("attribute_exists(pk)");
        let mut sets = Vec::new();
        for (i, (name, value)) in fields.iter().enumerate() {
            sets.push(format!("#f{i} = :v{i}"));
            update = update
                .expression_attribute_names(format!("#f{i}"), format!("p_{name}"))
                .expression_attribute_values(format!(":v{i}"), s(*value));
        }
        if sets.is_empty() {
            return Ok(());
        }
        update
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await
            .map_err(|e| self.explain(Error::aws("dynamodb", "UpdateItem", e)))?;
        Ok(())
    }

    /// A marker's recorded progress ([`Ledger::note_progress`]): `None` when `key` is not marked, an
    /// empty map when it is marked with no progress noted.
    pub async fn progress(&self, key: &str) -> Result<Option<HashMap<String, String>>> {
        let Some(item) = self.get(&format!("once#{}{key}", self.place), "once").await? else { return Ok(None) };
        Ok(Some(
            item.iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("p_")?.to_string(), v.as_s().ok()?.clone())))
                .collect(),
        ))
    }

    /// Appends the audit record of one decision.
    pub async fn audit(&self, envelope: &Envelope) -> Result<()> {
        let now = Utc::now();
        self.ddb
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("audit#{}{}", self.place, envelope.target.id)))
            .item("sk", s(format!("{}#{}", envelope.time, envelope.id)))
            .item("kind", s("audit"))
            .item("time", s(&envelope.time))
            .item("function", s(&envelope.function))
            .item("action", s(&envelope.action))
            .item("outcome", s(envelope.outcome.as_str()))
            .item("event_id", s(if envelope.event_id.is_empty() { "-" } else { &envelope.event_id }))
            .item("envelope", s(envelope.to_json()))
            .item("expires_at", n(self.expires_at(now)))
            .send()
            .await
            .map_err(|e| self.explain(Error::aws("dynamodb", "PutItem", e)))?;
        Ok(())
    }

    /// The audit trail of one target, oldest first.
    pub async fn audit_trail(&self, target: &str) -> Result<Vec<AuditRecord>> {
        let mut out = Vec::new();
        let mut pages = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(format!("audit#{}{target}", self.place)))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| self.explain(Error::aws("dynamodb", "Query", e)))?;
            if let Some(r) = Self::audit_record(&item) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Every audit record written at or after `since` (RFC 3339), oldest first. A scan: for drills and
    /// reports on small tables, not for hot paths.
    pub async fn audit_since(&self, since: &str) -> Result<Vec<AuditRecord>> {
        let mut out = Vec::new();
        let mut pages = self
            .ddb
            .scan()
            .table_name(&self.table)
            .filter_expression("kind = :k AND #t >= :since")
            .expression_attribute_names("#t", "time")
            .expression_attribute_values(":k", s("audit"))
            .expression_attribute_values(":since", s(since))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| self.explain(Error::aws("dynamodb", "Scan", e)))?;
            if let Some(r) = Self::audit_record(&item) {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(out)
    }

    fn audit_record(item: &Item) -> Option<AuditRecord> {
        let envelope: Envelope = serde_json::from_str(get_s(item, "envelope")?).ok()?;
        Some(AuditRecord {
            target: envelope.target.id.clone(),
            time: get_s(item, "time")?.to_string(),
            function: get_s(item, "function")?.to_string(),
            action: get_s(item, "action")?.to_string(),
            outcome: get_s(item, "outcome")?.to_string(),
            envelope,
        })
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.explain(Error::aws("dynamodb", "GetItem", e)))?;
        Ok(out.item)
    }

    /// Creates the ledger table (on-demand, TTL on `expires_at`) if it does not exist. For local runs
    /// and tests; production creates it from the SAM template.
    pub async fn ensure_table(&self) -> Result<()> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification,
        };
        let exists = self.ddb.describe_table().table_name(&self.table).send().await.is_ok();
        if exists {
            return Ok(());
        }
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| Error::aws("dynamodb", "CreateTable", e))
        };
        let key = |name: &str, kt: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kt)
                .build()
                .map_err(|e| Error::aws("dynamodb", "CreateTable", e))
        };
        self.ddb
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .send()
            .await
            .map_err(|e| Error::aws("dynamodb", "CreateTable", e))?;
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name("expires_at")
            .build()
            .map_err(|e| Error::aws("dynamodb", "UpdateTimeToLive", e))?;
        self.ddb
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(|e| Error::aws("dynamodb", "UpdateTimeToLive", e))?;
        Ok(())
    }
}
