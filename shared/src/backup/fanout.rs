//! Fan-out on Lambda and SQS: a scheduled sweep of the whole fleet is planned as one shard per
//! account and region, sent to the sweep queue (`SELFHEAL_BACKUP_QUEUE_URL`); the queue invokes this
//! same function with each shard (event source mapping: batch size 1, `MaximumConcurrency` workers
//! at most, partial batch responses), and each worker sweeps its place at the place's API rate.
//!
//! - **Planner** (the schedule): lists the places in scope ([`crate::context::Ctx::fleet_scopes`]),
//!   records the run in the ledger with every shard outstanding, and sends the shards, ten to a
//!   `SendMessageBatch`. A redelivered schedule finds the run recorded and sends the same shards
//!   again (same run, same slot); workers count each shard once.
//! - **Worker** (an SQS record): sweeps one place under its sweep leases ([`super::sweep`]). A
//!   shard already finished is acknowledged; one whose place another sweep is sweeping is retried
//!   later (unless it is a second delivery of itself, which is acknowledged: the first is running
//!   and its own message stays on the queue until it ends). A sweep out of time sends the rest of
//!   its shard on as a new message (the next part lists what this one did), so a place larger than
//!   one invocation is swept by a chain of invocations.
//! - **Failure**: a shard whose sweep failed (a resource, a listing, the place) is reported as a
//!   batch item failure: SQS makes it visible again and it is retried. On its last receive
//!   (`SELFHEAL_BACKUP_SHARD_MAX_RECEIVES`, the queue's `maxReceiveCount`) it is counted as finished,
//!   failed, with its reason, and still reported as failed, so SQS moves it to the dead-letter queue.
//! - **Summary**: the worker that brings the run's count of outstanding shards to zero assembles one
//!   report from every shard's stored result and publishes it, once (a ledger marker): per type,
//!   every failed resource named with its place, and every failed shard with its reason.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::enforcer::BackupEnforcer;
use super::report::Report;
use super::sweep::{report_summary, report_verdict, Pass};
use super::FUNCTION;
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::{Error, Result};
use crate::fleet::Placed;
use crate::trigger::{Scope, ShardMessage, Trigger, SHARD_SCHEMA};

/// The `kind` of a backup sweep shard message.
pub const SHARD_KIND: &str = "backup-sweep";

/// Most entries one `SendMessageBatch` takes.
const SEND_BATCH: usize = 10;

/// What a worker keeps back from the invocation's deadline to store its result and summarise.
const WORKER_MARGIN: std::time::Duration = std::time::Duration::from_secs(30);

/// The body of one shard message: one place of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardBody {
    /// [`SHARD_SCHEMA`].
    pub schema: String,
    /// [`SHARD_KIND`].
    pub kind: String,
    /// The run: the scheduled event's id.
    pub run: String,
    /// This shard's number in the run, zero-padded (`0003`).
    pub shard: String,
    /// How many shards the run has.
    pub of: usize,
    pub account: String,
    pub region: String,
    /// The run's schedule slot: the time every shard's sweep ids are taken at.
    pub at: DateTime<Utc>,
    pub dry_run: bool,
    /// Parts sent on before this one (a place larger than one invocation).
    #[serde(default)]
    pub part: u32,
}

impl ShardBody {
    fn place(&self) -> String {
        format!("{}/{}", self.account, self.region)
    }
}

/// What the planner did.
#[derive(Debug, Clone)]
pub struct SweepPlan {
    pub run: String,
    pub shards: Vec<ShardBody>,
}

/// How one shard ended, for the queue.
#[derive(Debug, Clone, PartialEq)]
pub enum ShardEnd {
    /// Done with (or nothing left to do): delete the message.
    Done(String),
    /// Make it visible again for a retry (or the dead-letter queue), for this reason.
    Retry(String),
}

/// One shard's result as stored in the ledger and read back for the summary.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ShardResult {
    account: String,
    region: String,
    outcome: String,
    reason: String,
    receives: u32,
    part: u32,
    report: Report,
}

impl BackupEnforcer {
    fn sqs(&self) -> aws_sdk_sqs::Client {
        let aws = &self.ctx.aws;
        aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&aws.sdk).interceptor(aws.calls.clone()).build(),
        )
    }

    fn queue_url(&self) -> Result<&str> {
        self.cfg.queue_url.as_deref().ok_or_else(|| Error::Config {
            name: "SELFHEAL_BACKUP_QUEUE_URL".into(),
            problem: "unset: a sweep cannot be fanned out without its queue".into(),
        })
    }

    /// The planner: one shard per place in scope, sent to the sweep queue; the run recorded with
    /// every shard outstanding. Returns the plan's decision (audited, not published: the summary is).
    pub async fn plan_sweep(&self, t: &Trigger, dry_run: bool) -> Result<Vec<Envelope>> {
        let queue = self.queue_url()?.to_string();
        let (scopes, problem) = self.ctx.fleet_scopes(&self.cfg.regions).await?;
        let mut envelopes = Vec::new();
        if let Some(problem) = problem {
            let target = Target::new("organization", self.ctx.config.fleet.org_units.join(","));
            let env = Envelope::new(FUNCTION, "list-accounts", target, Outcome::Failed, problem)
                .event(&t.event_id, t.kind.name())
                .severity(Severity::Critical);
            envelopes.push(self.ctx.record(env).await?);
        }
        let run = t.event_id.clone();
        let now = Utc::now();
        let fields = [("at", now.to_rfc3339()), ("dryRun", dry_run.to_string())];
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let first = self.ctx.ledger.start_run(&run, scopes.len(), &fields).await?;
        // A redelivered schedule: the same run, the same slot and mode as first planned.
        let at = first
            .as_ref()
            .and_then(|f| f.get("at"))
            .and_then(|a| DateTime::parse_from_rfc3339(a).ok())
            .map(|a| a.with_timezone(&Utc))
            .unwrap_or(now);
        let dry_run = first.as_ref().and_then(|f| f.get("dryRun")).map(|d| d == "true").unwrap_or(dry_run);
        let home = self.ctx.home_account().await?;
        let home_region = self.home_region();
        let shards: Vec<ShardBody> = scopes
            .iter()
            .enumerate()
            .map(|(i, s)| ShardBody {
                schema: SHARD_SCHEMA.to_string(),
                kind: SHARD_KIND.to_string(),
                run: run.clone(),
                shard: format!("{i:04}"),
                of: scopes.len(),
                account: s.account.clone().unwrap_or_else(|| home.clone()),
                region: s.region.clone().unwrap_or_else(|| home_region.clone()),
                at,
                dry_run,
                part: 0,
            })
            .collect();
        let sqs = self.sqs();
        for chunk in shards.chunks(SEND_BATCH) {
            let entries = chunk
                .iter()
                .map(|s| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(format!("s{}", s.shard))
                        .message_body(json!(s).to_string())
                        .build()
                        .map_err(|e| Error::aws("sqs", "SendMessageBatch", e))
                })
                .collect::<Result<Vec<_>>>()?;
            let out = sqs
                .send_message_batch()
                .queue_url(&queue)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| Error::aws("sqs", "SendMessageBatch", e))?;
            if !out.failed().is_empty() {
                let why: Vec<String> =
                    out.failed().iter().map(|f| format!("{}: {}", f.id(), f.message().unwrap_or(f.code()))).collect();
                // The schedule's retry plans again: the run is recorded, the shards are sent again and
                // counted once.
                return Err(Error::ActionFailed(format!(
                    "sqs:SendMessageBatch did not take {} shard(s): {}",
                    why.len(),
                    why.join("; ")
                )));
            }
        }
        let places: Vec<String> = shards.iter().map(ShardBody::place).collect();
        tracing::info!(run = %run, shards = shards.len(), "backup sweep planned");
        let env = Envelope::new(
            FUNCTION,
            "plan-sweep",
            Target::new("backup-sweep", &run),
            if dry_run { Outcome::DryRun } else { Outcome::Acted },
            format!(
                "backup sweep planned: {} shard(s), one per account and region, sent to the sweep queue{}",
                shards.len(),
                if first.is_some() { " again (a redelivered schedule: the same run)" } else { "" }
            ),
        )
        .event(&t.event_id, t.kind.name())
        .dry_run(dry_run)
        .detail("places", places)
        .detail("slot", at.to_rfc3339());
        self.ctx.ledger.audit(&env).await?;
        envelopes.push(env);
        Ok(envelopes)
    }

    /// A worker's handling of one shard (see the module docs).
    pub async fn work_shard(&self, t: &Trigger, msg: &ShardMessage) -> Result<ShardEnd> {
        let body: ShardBody = serde_json::from_value(msg.body.clone())
            .map_err(|e| Error::malformed("SQS shard", format!("message {}: {e}", msg.message_id)))?;
        if body.kind != SHARD_KIND {
            return Err(Error::malformed("SQS shard", format!("kind {:?} is not {SHARD_KIND:?}", body.kind)));
        }
        if self.ctx.ledger.shard_finished(&body.run, &body.shard).await? {
            return Ok(ShardEnd::Done(format!("shard {} of run {} had already finished", body.shard, body.run)));
        }
        let scope = Scope { account: Some(body.account.clone()), region: Some(body.region.clone()) };
        let ctx = match self.ctx.at(&scope, t).await? {
            Placed::Here(ctx) => *ctx,
            // Recorded (and published, critical) by the fleet: an account the hub does not serve is
            // final; a role that cannot be assumed may be passing, so the shard is retried.
            Placed::Refused(env) => {
                let last = env.outcome == Outcome::Refused || msg.receive_count >= self.cfg.shard_max_receives;
                return self.shard_failed(&body, msg, &env.reason, Report::default(), last).await;
            }
        };
        let budget = match crate::deadline::time_left() {
            Some(left) => self.cfg.time_budget.min(left.saturating_sub(WORKER_MARGIN)),
            None => self.cfg.time_budget,
        };
        let here = BackupEnforcer { ctx, cfg: self.cfg.clone(), throttle: self.throttle.clone() };
        let pass = Pass {
            t: t.clone(),
            dry_run: body.dry_run,
            now: Utc::now(),
            slot: body.at,
            deadline: std::time::Instant::now() + budget,
            publish: false,
        };
        let sweep = match Box::pin(here.sweep_place(&pass)).await {
            Ok(s) => s,
            Err(e) => {
                let last = msg.receive_count >= self.cfg.shard_max_receives;
                return self.shard_failed(&body, msg, &e.to_string(), Report::default(), last).await;
            }
        };
        if let Some(holder) = &sweep.stood_down {
            // The lease's event names the trigger that holds it: this very shard, delivered twice?
            if holder.event_id.contains(&format!(" {} ", t.event_id)) {
                return Ok(ShardEnd::Done(format!(
                    "a second delivery of a shard being swept by {}",
                    holder.describe()
                )));
            }
            return Ok(ShardEnd::Retry(format!("another sweep of {} is running: {}", body.place(), holder.describe())));
        }
        let report = sweep.report;
        if report.has_failures() {
            let why = report_summary(&report, self.cfg.time_budget.as_secs());
            let last = msg.receive_count >= self.cfg.shard_max_receives;
            return self.shard_failed(&body, msg, &why, report, last).await;
        }
        if report.left_for_next_run > 0 {
            let next = ShardBody { part: body.part + 1, ..body.clone() };
            self.sqs()
                .send_message()
                .queue_url(self.queue_url()?)
                .message_body(json!(next).to_string())
                .send()
                .await
                .map_err(|e| Error::aws("sqs", "SendMessage", e))?;
            tracing::info!(run = %body.run, shard = %body.shard, part = next.part, left = report.left_for_next_run, "shard sent on");
            return Ok(ShardEnd::Done(format!(
                "{} resource(s) left when the time budget ran out: sent on as part {}",
                report.left_for_next_run, next.part
            )));
        }
        let (outcome, _) = report_verdict(&report);
        let result = ShardResult {
            account: body.account.clone(),
            region: body.region.clone(),
            outcome: outcome.as_str().to_string(),
            reason: String::new(),
            receives: msg.receive_count,
            part: body.part,
            report,
        };
        self.finish(&body, &result).await?;
        Ok(ShardEnd::Done(format!("{} swept", body.place())))
    }

    /// A shard that failed: retried, or on its last receive counted as finished (failed) first, so
    /// the summary still goes out; either way SQS sees a failure (and dead-letters the last).
    async fn shard_failed(
        &self,
        body: &ShardBody,
        msg: &ShardMessage,
        why: &str,
        report: Report,
        last: bool,
    ) -> Result<ShardEnd> {
        tracing::error!(run = %body.run, shard = %body.shard, place = %body.place(), receives = msg.receive_count, last, "shard failed: {why}");
        if last {
            let result = ShardResult {
                account: body.account.clone(),
                region: body.region.clone(),
                outcome: Outcome::Failed.as_str().to_string(),
                reason: format!(
                    "failed on receive {} of {}; the message goes to the dead-letter queue: {why}",
                    msg.receive_count, self.cfg.shard_max_receives
                ),
                receives: msg.receive_count,
                part: body.part,
                report,
            };
            self.finish(body, &result).await?;
        }
        Ok(ShardEnd::Retry(format!("{}: {why}", body.place())))
    }

    /// Stores a shard's result, counts it, and summarises the run when it was the last.
    async fn finish(&self, body: &ShardBody, result: &ShardResult) -> Result<()> {
        let count = self.ctx.ledger.finish_shard(&body.run, &body.shard, &json!(result).to_string()).await?;
        tracing::info!(run = %body.run, shard = %body.shard, outstanding = count.outstanding, counted = count.counted, "shard finished");
        if count.outstanding <= 0 {
            self.summarise(&body.run).await?;
        }
        Ok(())
    }

    /// The run's one summary: every shard's report merged, every failed resource named with its
    /// place, every failed shard with its reason. Published once.
    pub async fn summarise(&self, run: &str) -> Result<Option<Envelope>> {
        if !self.ctx.ledger.mark_once(&format!("backup-run-summary/{run}")).await? {
            return Ok(None);
        }
        let Some(record) = self.ctx.ledger.run_results(run).await? else {
            return Err(Error::Precondition(format!("run {run} is not recorded in the ledger")));
        };
        let dry_run = record.fields.get("dryRun").is_some_and(|d| d == "true");
        let mut merged = Report { dry_run, ..Report::default() };
        let mut shards = Vec::new();
        let mut failed_shards = Vec::new();
        for (shard, text) in &record.results {
            let r: ShardResult = serde_json::from_str(text).unwrap_or_default();
            let place = format!("{}/{}", r.account, r.region);
            merged.merge(&r.report, Some(&place));
            if r.outcome == Outcome::Failed.as_str() && !r.reason.is_empty() {
                failed_shards.push(format!("{place} (shard {shard}): {}", r.reason));
            }
            shards.push(json!({"shard": shard, "place": place, "outcome": r.outcome, "reason": r.reason,
                               "receives": r.receives, "parts": r.part + 1}));
        }
        let (mut outcome, mut severity) = report_verdict(&merged);
        let mut summary = report_summary(&merged, self.cfg.time_budget.as_secs());
        if !failed_shards.is_empty() {
            outcome = Outcome::Failed;
            severity = Severity::Critical;
            summary = format!("{summary}; shards failed: {}", failed_shards.join("; "));
        }
        let mut env = Envelope::new(
            FUNCTION,
            "compliance-report",
            Target::new("backup-sweep", run),
            outcome,
            format!("backup sweep of {} place(s): {summary}", record.shards),
        )
        .event(run, "shard")
        .dry_run(dry_run)
        .severity(severity);
        if let Ok(Value::Object(m)) = serde_json::to_value(&merged) {
            env.details.extend(m);
        }
        env.details.insert("shards".into(), json!(shards));
        env.details.insert("failedShards".into(), json!(failed_shards));
        let env = self.ctx.record(env).await?;
        tracing::info!(run, outcome = env.outcome.as_str(), "backup sweep summary published");
        Ok(Some(env))
    }

    /// Lambda's answer to an SQS batch of shards: a partial batch response naming each message to
    /// retry (`batchItemFailures`); an empty list deletes them all.
    pub async fn handle_shard_batch(&self, triggers: &[Trigger]) -> Value {
        let mut failures = Vec::new();
        for t in triggers {
            let crate::trigger::TriggerKind::Shard(msg) = &t.kind else { continue };
            let end = Box::pin(self.work_shard(t, msg)).await;
            match end {
                Ok(ShardEnd::Done(why)) => {
                    tracing::info!(message = %msg.message_id, event_id = %t.event_id, "shard done: {why}")
                }
                Ok(ShardEnd::Retry(why)) => {
                    tracing::warn!(message = %msg.message_id, event_id = %t.event_id, "shard to retry: {why}");
                    failures.push(json!({"itemIdentifier": msg.message_id}));
                }
                Err(e) => {
                    tracing::error!(message = %msg.message_id, event_id = %t.event_id, error = %e, "shard failed");
                    failures.push(json!({"itemIdentifier": msg.message_id}));
                }
            }
        }
        json!({ "batchItemFailures": failures })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::{parse_event, TriggerKind};

    fn record(id: &str, body: &Value, receives: u32) -> Value {
        json!({"messageId": id, "receiptHandle": "AQEB", "body": body.to_string(),
               "attributes": {"ApproximateReceiveCount": receives.to_string(), "SentTimestamp": "1764065731180"},
               "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
               "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:selfheal-sweeps", "awsRegion": "us-east-1"})
    }

    fn body(shard: &str, account: &str) -> ShardBody {
        ShardBody {
            schema: SHARD_SCHEMA.into(),
            kind: SHARD_KIND.into(),
            run: "eb:53dc4d37".into(),
            shard: shard.into(),
            of: 2,
            account: account.into(),
            region: "eu-west-1".into(),
            at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            dry_run: false,
            part: 0,
        }
    }

    #[test]
    fn an_sqs_batch_of_shards_is_one_trigger_per_record_named_by_run_and_shard() {
        let a = json!(body("0000", "111111111111"));
        let b = json!(body("0001", "222222222222"));
        let batch = json!({"Records": [record("m-1", &a, 1), record("m-2", &b, 3)]});
        let triggers = parse_event(&batch).unwrap();
        assert_eq!(triggers.len(), 2);
        assert_eq!(triggers[0].event_id, "shard:eb:53dc4d37/0000");
        assert_eq!(triggers[1].scope, Scope { account: Some("222222222222".into()), region: Some("eu-west-1".into()) });
        let TriggerKind::Shard(m) = &triggers[1].kind else { panic!("{:?}", triggers[1].kind) };
        assert_eq!((m.message_id.as_str(), m.receive_count), ("m-2", 3));
        assert_eq!(serde_json::from_value::<ShardBody>(m.body.clone()).unwrap(), body("0001", "222222222222"));

        // Other SQS messages are still someone else's; a shard batch with a broken record names it.
        let other = json!({"Records": [record("m-3", &json!({"hello": 1}), 1)]});
        assert_eq!(parse_event(&other).unwrap()[0].kind.name(), "foreign");
        let broken = json!({"Records": [record("m-1", &a, 1), record("m-9", &json!({"no": "schema"}), 1)]});
        let err = parse_event(&broken).unwrap_err().to_string();
        assert!(err.contains("message m-9: body is not a selfheal.shard/v1 message"), "{err}");
    }
}
