//! Bulk writes for sweeps: audit records in batches, and the counter of a fanned-out run's shards.
//!
//! A scheduled sweep decides about thousands of resources at once. Its audit records go to DynamoDB
//! 25 at a time ([`Ledger::audit_batch`], `BatchWriteItem`); whatever DynamoDB leaves unprocessed
//! (`UnprocessedItems`: throttling, a partition over its throughput) is sent again with exponential
//! backoff, and what is still left after the last attempt is an error that says how many.
//!
//! A run fanned out over shards (one per account and region) keeps one item with the number of shards
//! still outstanding and the set of those that finished ([`Ledger::start_run`],
//! [`Ledger::finish_shard`]): each shard is counted once however often it is delivered, and the one
//! that brings the count to zero learns so, which is when the run's summary is assembled from the
//! shards' results ([`Ledger::run_results`]).
//!
//! | item          | pk                   | sk              | purpose                              |
//! |---------------|----------------------|-----------------|--------------------------------------|
//! | run           | `run#{run}`          | `run`           | shards outstanding, those finished   |
//! | shard result  | `run#{run}`          | `shard#{shard}` | what one shard found and did         |

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, ReturnValue, WriteRequest};
use chrono::Utc;

use super::{get_n, get_s, is_condition_failed, n, s, Item, Ledger};
use crate::envelope::Envelope;
use crate::error::{Error, Result};

/// Most items one `BatchWriteItem` takes.
pub const BATCH_WRITE_LIMIT: usize = 25;

/// Attempts at one batch (the first and the retries of its unprocessed items).
pub const BATCH_ATTEMPTS: u32 = 8;

/// The wait before the first retry of unprocessed items; it doubles each time, up to [`BATCH_MAX_BACKOFF`].
pub const BATCH_FIRST_BACKOFF: Duration = Duration::from_millis(50);
pub const BATCH_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How one shard's completion was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardCount {
    /// This call counted the shard (`false`: a redelivery of a shard already counted).
    pub counted: bool,
    /// Shards of the run still outstanding after this call.
    pub outstanding: i64,
}

/// A fanned-out run as recorded: its fields and every finished shard's result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunRecord {
    pub shards: i64,
    pub outstanding: i64,
    /// The string fields given to [`Ledger::start_run`].
    pub fields: HashMap<String, String>,
    /// Shard id -> the result stored by [`Ledger::finish_shard`].
    pub results: Vec<(String, String)>,
}

/// The backoff before retry `attempt` (1-based) of unprocessed items.
pub fn batch_backoff(attempt: u32) -> Duration {
    BATCH_FIRST_BACKOFF.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1))).min(BATCH_MAX_BACKOFF)
}

impl Ledger {
    fn run_key(&self, run: &str) -> String {
        format!("run#{}{run}", self.place)
    }

    /// The audit item of one decision, as [`Ledger::audit`] writes it.
    fn audit_item(&self, envelope: &Envelope, expires_at: i64) -> Item {
        let event_id = if envelope.event_id.is_empty() { "-" } else { &envelope.event_id };
        HashMap::from([
            ("pk".to_string(), s(format!("audit#{}{}", self.place, envelope.target.id))),
            ("sk".to_string(), s(format!("{}#{}", envelope.time, envelope.id))),
            ("kind".to_string(), s("audit")),
            ("time".to_string(), s(&envelope.time)),
            ("function".to_string(), s(&envelope.function)),
            ("action".to_string(), s(&envelope.action)),
            ("outcome".to_string(), s(envelope.outcome.as_str())),
            ("event_id".to_string(), s(event_id)),
            ("envelope".to_string(), s(envelope.to_json())),
            ("expires_at".to_string(), n(expires_at)),
        ])
    }

    /// Appends the audit records of many decisions, [`BATCH_WRITE_LIMIT`] to a request. Items
    /// DynamoDB leaves unprocessed are sent again after [`batch_backoff`], up to [`BATCH_ATTEMPTS`]
    /// attempts per batch; an error names how many could not be written. Returns the requests made.
    pub async fn audit_batch(&self, envelopes: &[Envelope]) -> Result<usize> {
        let expires_at = self.expires_at(Utc::now());
        let mut requests = 0;
        for chunk in envelopes.chunks(BATCH_WRITE_LIMIT) {
            let writes: Vec<WriteRequest> = chunk
                .iter()
                .map(|e| {
                    let put = PutRequest::builder()
                        .set_item(Some(self.audit_item(e, expires_at)))
                        .build()
                        .map_err(|err| Error::aws("dynamodb", "BatchWriteItem", err))?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<_>>()?;
            requests += self.batch_write(writes).await?;
        }
        Ok(requests)
    }

    /// Writes one batch, retrying its unprocessed items with backoff. Returns the requests made.
    async fn batch_write(&self, mut writes: Vec<WriteRequest>) -> Result<usize> {
        let mut attempt = 0;
        while !writes.is_empty() {
            if attempt > 0 {
                if attempt >= BATCH_ATTEMPTS {
                    return Err(Error::ActionFailed(format!(
                        "dynamodb:BatchWriteItem left {} audit record(s) unprocessed after {BATCH_ATTEMPTS} attempts",
                        writes.len()
                    )));
                }
                tokio::time::sleep(batch_backoff(attempt)).await;
            }
            attempt += 1;
            let out = self
                .ddb
                .batch_write_item()
                .request_items(&self.table, writes)
                .send()
                .await
                .map_err(|e| self.explain(Error::aws("dynamodb", "BatchWriteItem", e)))?;
            writes = out.unprocessed_items.and_then(|mut left| left.remove(&self.table)).unwrap_or_default();
            if !writes.is_empty() {
                tracing::warn!(left = writes.len(), attempt, "BatchWriteItem left items unprocessed: retrying");
            }
        }
        Ok(attempt as usize)
    }

    /// Records a run of `shards` shards, all outstanding, with string `fields`. `Ok(None)` when it
    /// was new; when the run was already recorded (a redelivered planning event), its fields as
    /// first recorded.
    pub async fn start_run(
        &self,
        run: &str,
        shards: usize,
        fields: &[(&str, &str)],
    ) -> Result<Option<HashMap<String, String>>> {
        let now = Utc::now();
        let mut put = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .item("pk", s(self.run_key(run)))
            .item("sk", s("run"))
            .item("kind", s("run"))
            .item("shards", n(shards as i64))
            .item("outstanding", n(shards as i64))
            .item("started_at", s(now.to_rfc3339()))
            .item("expires_at", n(self.expires_at(now)))
            .condition_expression("attribute_not_exists(pk)");
        for (k, v) in fields {
            put = put.item(format!("f_{k}"), s(*v));
        }
        match put.send().await {
            Ok(_) => Ok(None),
            Err(e) if is_condition_failed(&e) => {
                let item = self.get(&self.run_key(run), "run").await?.unwrap_or_default();
                Ok(Some(run_fields(&item)))
            }
            Err(e) => Err(self.explain(Error::aws("dynamodb", "PutItem", e))),
        }
    }

    /// Stores one shard's `result` and counts the shard finished, once: a redelivered shard stores
    /// its result again but is not counted twice. The caller that sees `outstanding == 0` knows every
    /// shard has finished.
    pub async fn finish_shard(&self, run: &str, shard: &str, result: &str) -> Result<ShardCount> {
        let now = Utc::now();
        self.ddb
            .put_item()
            .table_name(&self.table)
            .item("pk", s(self.run_key(run)))
            .item("sk", s(format!("shard#{shard}")))
            .item("kind", s("run-shard"))
            .item("shard", s(shard))
            .item("result", s(result))
            .item("finished_at", s(now.to_rfc3339()))
            .item("expires_at", n(self.expires_at(now)))
            .send()
            .await
            .map_err(|e| self.explain(Error::aws("dynamodb", "PutItem", e)))?;
        let res = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(self.run_key(run)))
            .key("sk", s("run"))
            .update_expression("ADD done :ids SET outstanding = outstanding - :one")
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(done) OR NOT contains(done, :id))")
            .expression_attribute_values(":ids", AttributeValue::Ss(vec![shard.to_string()]))
            .expression_attribute_values(":id", s(shard))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match res {
            Ok(out) => Ok(ShardCount {
                counted: true,
                outstanding: out.attributes().and_then(|a| get_n(a, "outstanding")).unwrap_or(0),
            }),
            Err(e) if is_condition_failed(&e) => {
                let item = self.get(&self.run_key(run), "run").await?.ok_or_else(|| {
                    Error::Precondition(format!(
                        "run {run} is not recorded in the ledger: its shard {shard} cannot be counted"
                    ))
                })?;
                Ok(ShardCount { counted: false, outstanding: get_n(&item, "outstanding").unwrap_or(0) })
            }
            Err(e) => Err(self.explain(Error::aws("dynamodb", "UpdateItem", e))),
        }
    }

    /// Whether `shard` of `run` has finished (its result is stored): a redelivered shard is done.
    pub async fn shard_finished(&self, run: &str, shard: &str) -> Result<bool> {
        Ok(self.get(&self.run_key(run), &format!("shard#{shard}")).await?.is_some())
    }

    /// The run as recorded, with every finished shard's result (`None`: no such run).
    pub async fn run_results(&self, run: &str) -> Result<Option<RunRecord>> {
        let mut record: Option<RunRecord> = None;
        let mut results = Vec::new();
        let mut pages = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(self.run_key(run)))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| self.explain(Error::aws("dynamodb", "Query", e)))?;
            match get_s(&item, "sk") {
                Some("run") => {
                    record = Some(RunRecord {
                        shards: get_n(&item, "shards").unwrap_or(0),
                        outstanding: get_n(&item, "outstanding").unwrap_or(0),
                        fields: run_fields(&item),
                        results: Vec::new(),
                    })
                }
                Some(_) => {
                    if let (Some(shard), Some(result)) = (get_s(&item, "shard"), get_s(&item, "result")) {
                        results.push((shard.to_string(), result.to_string()));
                    }
                }
                None => {}
            }
        }
        Ok(record.map(|r| RunRecord { results, ..r }))
    }
}

fn run_fields(item: &Item) -> HashMap<String, String> {
    item.iter().filter_map(|(k, v)| Some((k.strip_prefix("f_")?.to_string(), v.as_s().ok()?.clone()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Outcome, Target};
    use aws_sdk_dynamodb::operation::batch_write_item::{BatchWriteItemError, BatchWriteItemOutput};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn envelopes(n: usize) -> Vec<Envelope> {
        (0..n)
            .map(|i| {
                Envelope::new(
                    "backup-enforcer",
                    "enforce-backup",
                    Target::new("ebs-volume", format!("vol-{i}")),
                    Outcome::Acted,
                    "",
                )
            })
            .collect()
    }

    fn ledger(client: aws_sdk_dynamodb::Client) -> Ledger {
        Ledger::new(client, "ledger", Duration::from_secs(86_400))
    }

    /// `BatchWriteItem`'s answer leaving `writes` unprocessed, shaped as the DynamoDB API reference
    /// gives it: `UnprocessedItems` maps the table name to the same `WriteRequest`s, to be sent again.
    fn leaving(writes: Vec<WriteRequest>) -> BatchWriteItemOutput {
        BatchWriteItemOutput::builder().unprocessed_items("ledger", writes).build()
    }

    #[test]
    fn the_backoff_doubles_up_to_its_ceiling() {
        assert_eq!(batch_backoff(1), Duration::from_millis(50));
        assert_eq!(batch_backoff(2), Duration::from_millis(100));
        assert_eq!(batch_backoff(5), Duration::from_millis(800));
        assert_eq!(batch_backoff(30), BATCH_MAX_BACKOFF);
    }

    fn sent(r: &aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput) -> Vec<WriteRequest> {
        r.request_items().and_then(|m| m.get("ledger")).cloned().unwrap_or_default()
    }

    #[tokio::test]
    async fn unprocessed_items_are_sent_again_until_none_are_left() {
        let first: std::sync::Arc<std::sync::Mutex<Vec<WriteRequest>>> = Default::default();
        let seen = first.clone();
        // The first answer leaves the last 3 of the 25 unprocessed; the second leaves 1 of those 3;
        // the third processes everything.
        let leave_three = mock!(aws_sdk_dynamodb::Client::batch_write_item)
            .match_requests(move |r| {
                let writes = sent(r);
                let full = writes.len() == BATCH_WRITE_LIMIT;
                if full {
                    *seen.lock().unwrap() = writes;
                }
                full
            })
            .then_compute_output(|r| leaving(sent(r)[22..].to_vec()));
        let leave_one = mock!(aws_sdk_dynamodb::Client::batch_write_item)
            .match_requests(|r| sent(r).len() == 3)
            .then_compute_output(|r| leaving(sent(r)[2..].to_vec()));
        let all_done = mock!(aws_sdk_dynamodb::Client::batch_write_item)
            .match_requests(|r| sent(r).len() == 1)
            .then_compute_output(|r| {
                assert_eq!(sent(r)[0].put_request().unwrap().item()["pk"].as_s().unwrap(), "audit#vol-24");
                BatchWriteItemOutput::builder().build()
            });
        let rest = mock!(aws_sdk_dynamodb::Client::batch_write_item)
            .match_requests(|r| sent(r).len() == 5)
            .then_output(|| BatchWriteItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&leave_three, &leave_one, &all_done, &rest]);
        let requests = ledger(client).audit_batch(&envelopes(30)).await.unwrap();
        assert_eq!(requests, 4, "25 in three attempts (25, 3, 1), then the other 5 in one");
        let calls = (leave_three.num_calls(), leave_one.num_calls(), all_done.num_calls(), rest.num_calls());
        assert_eq!(calls, (1, 1, 1, 1));
        // The items are keyed and shaped as single audit records are.
        let sent = first.lock().unwrap().clone();
        let item = sent[22].put_request().unwrap().item();
        assert_eq!(item["pk"].as_s().unwrap(), "audit#vol-22");
        assert_eq!(item["kind"].as_s().unwrap(), "audit");
        assert_eq!(item["outcome"].as_s().unwrap(), "acted");
        let env: Envelope = serde_json::from_str(item["envelope"].as_s().unwrap()).unwrap();
        assert_eq!(env.target.id, "vol-22");
    }

    #[tokio::test]
    async fn items_still_unprocessed_after_the_last_attempt_are_an_error_that_counts_them() {
        let stuck =
            mock!(aws_sdk_dynamodb::Client::batch_write_item).then_compute_output(|r| leaving(sent(r)[..2].to_vec()));
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&stuck]);
        let started = std::time::Instant::now();
        let err = ledger(client).audit_batch(&envelopes(4)).await.unwrap_err().to_string();
        assert!(err.contains("left 2 audit record(s) unprocessed after 8 attempts"), "{err}");
        assert_eq!(stuck.num_calls(), BATCH_ATTEMPTS as usize);
        let waited: Duration = (1..BATCH_ATTEMPTS).map(batch_backoff).sum();
        assert!(started.elapsed() >= waited, "backed off between attempts: {:?}", started.elapsed());

        let failing = mock!(aws_sdk_dynamodb::Client::batch_write_item)
            .then_error(|| BatchWriteItemError::unhandled("ProvisionedThroughputExceededException"));
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&failing]);
        let err = ledger(client).audit_batch(&envelopes(1)).await.unwrap_err().to_string();
        assert!(err.contains("dynamodb:BatchWriteItem"), "{err}");
    }
}
