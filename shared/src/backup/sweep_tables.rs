//! The DynamoDB part of a sweep: inventory (tables with the policy tag, every on-demand backup of
//! the place), each table's decision ([`plan_table`]), and fixing one table (point-in-time recovery,
//! deletion protection, an on-demand backup, the suite's expired backups) at the place's API rate.
//! A global table whose replicas are not all ACTIVE is a failed (critical) decision; a table that is
//! not ACTIVE is refused by name and nothing is done to it.

use std::collections::HashSet;
use std::time::Instant;

use futures::stream::{self, StreamExt};

use super::dynamodb;
use super::enforcer::BackupEnforcer;
use super::policy::Policy;
use super::report::Report;
use super::sweep::Pass;
use super::tables::{backup_name, plan_table, rpo_seconds, Table, TablePlan, TableWork};
use super::window::sweep_event_id;
use super::KIND_TABLE;
use crate::envelope::{Envelope, Severity};
use crate::error::Result;
use crate::guardrails::ActionReport;

/// What became of one table.
enum Done {
    Compliant,
    /// Nothing to do: this sweep's backup is there (an earlier attempt took it).
    FixedEarlier,
    OutOfTime,
    Decided(Box<Envelope>),
    Unknown(Box<Envelope>),
}

impl BackupEnforcer {
    /// The account this context acts in: the place's, or the hub's own.
    pub(super) async fn account(&self) -> Result<String> {
        match &self.ctx.place.account {
            Some(a) => Ok(a.clone()),
            None => self.ctx.home_account().await,
        }
    }

    pub(super) async fn sweep_tables(&self, pass: &Pass, report: &mut Report) -> Result<Vec<Envelope>> {
        let ddb = self.ctx.aws.dynamodb();
        let tagging = self.ctx.aws.tagging();
        let ((tables, listed), backups) = futures::try_join!(
            dynamodb::tagged_tables(&tagging, &ddb, &self.cfg.policy_tag, &self.ctx.config, self.cfg.concurrency),
            dynamodb::backups(&ddb),
        )?;
        *report.inventory_requests.entry(KIND_TABLE.to_string()).or_default() += listed + backups.requests;
        tracing::info!(tables = tables.len(), requests = listed + backups.requests, "tables with a backup policy");

        let empty = Vec::new();
        let no_names = HashSet::new();
        let mut jobs = Vec::new();
        for t in tables {
            if !t.opted_in {
                report.not_opted_in(KIND_TABLE, &t.name);
                continue;
            }
            let Some(policy) = self.policy(&t.policy) else {
                jobs.push(Job::Unknown(t.name.clone(), t.policy.clone()));
                continue;
            };
            if let Some(secs) = rpo_seconds(&t.pitr, pass.now) {
                report.rpo(KIND_TABLE, &t.name, secs);
            }
            let names = backups.names.get(&t.name).unwrap_or(&no_names);
            let snaps = backups.by_table.get(&t.name).unwrap_or(&empty);
            let plan = plan_table(&t, snaps, names, policy, pass.now, pass.slot, self.cfg.max_delete_percent);
            let swept_here = policy.table_backups && names.contains(&backup_name(&t.name, policy, pass.slot));
            jobs.push(Job::Table(Box::new((t, policy.clone(), plan, swept_here))));
        }

        let results: Vec<(String, Done, u64)> = stream::iter(jobs)
            .map(|job| {
                let ddb = &ddb;
                async move {
                    match job {
                        Job::Unknown(name, policy) => {
                            let env = self.unknown_policy(pass, KIND_TABLE, &name, &policy);
                            (name, Done::Unknown(Box::new(env)), 0)
                        }
                        Job::Table(job) => {
                            let (t, policy, plan, swept_here) = *job;
                            match plan {
                                TablePlan::NotActive(why) => {
                                    let env = self.table_not_active(pass, &t, &policy, why);
                                    (t.name, Done::Decided(Box::new(env)), 0)
                                }
                                TablePlan::Work { work, replica_problems } => {
                                    if work.is_empty() && replica_problems.is_empty() {
                                        let done = if swept_here { Done::FixedEarlier } else { Done::Compliant };
                                        return (t.name, done, 0);
                                    }
                                    if !work.is_empty() && Instant::now() >= pass.deadline {
                                        return (t.name, Done::OutOfTime, 0);
                                    }
                                    let (env, waited) =
                                        self.fix_table(pass, &t, &policy, work, replica_problems, ddb).await;
                                    (t.name, Done::Decided(Box::new(env)), waited)
                                }
                            }
                        }
                    }
                }
            })
            .buffer_unordered(self.cfg.concurrency)
            .collect()
            .await;

        let mut envelopes = Vec::new();
        for (name, done, waited) in results {
            report.throttled_ms += waited;
            match done {
                Done::Compliant => report.tally(KIND_TABLE).compliant += 1,
                Done::FixedEarlier => {
                    report.tally(KIND_TABLE).fixed += 1;
                    report.fixed_earlier += 1;
                }
                Done::OutOfTime => report.out_of_time(KIND_TABLE),
                Done::Unknown(e) => {
                    report.fail(KIND_TABLE, &name, e.reason.clone());
                    envelopes.push(*e);
                }
                Done::Decided(e) => {
                    report.count_envelope(KIND_TABLE, &e);
                    envelopes.push(*e);
                }
            }
        }
        Ok(envelopes)
    }

    /// The refusal of a table that is not ACTIVE: named, audited, nothing done.
    fn table_not_active(&self, pass: &Pass, t: &Table, policy: &Policy, why: String) -> Envelope {
        let started = Instant::now();
        let req = self.request(pass, KIND_TABLE, &t.name, policy);
        tracing::warn!(table = %t.name, status = %t.status, "table not ACTIVE: nothing done");
        let report = ActionReport::refused(why)
            .severity(Severity::Warning)
            .detail("policy", &policy.name)
            .detail("tableStatus", &t.status)
            .detail("guard", "table-status");
        self.decision(&req, Ok(report), started)
    }

    /// Fixes one table; returns the decision and how long the API rate made it wait (ms). Replica
    /// problems make the decision failed and critical, whatever the fixes did.
    async fn fix_table(
        &self,
        pass: &Pass,
        t: &Table,
        policy: &Policy,
        work: TableWork,
        replica_problems: Vec<String>,
        ddb: &aws_sdk_dynamodb::Client,
    ) -> (Envelope, u64) {
        let started = Instant::now();
        let req = self.request(pass, KIND_TABLE, &t.name, policy);
        let plan = work.describe(&t.pitr);
        let rpo = rpo_seconds(&t.pitr, pass.now);
        let replicas = if replica_problems.is_empty() {
            String::new()
        } else {
            format!("global table replicas not healthy: {}", replica_problems.join("; "))
        };
        let with_replicas = |report: ActionReport| {
            report
                .detail("policy", &policy.name)
                .detail("replicaProblems", &replica_problems)
                .detail("replicas", &t.replicas)
                .detail("rpoSeconds", rpo)
                .detail("latestRestorable", t.pitr.latest_restorable)
        };
        if pass.dry_run {
            let report = if work.is_empty() {
                ActionReport::failed(replicas.clone()).severity(Severity::Critical)
            } else if replica_problems.is_empty() {
                ActionReport::would(format!("would {plan}"))
            } else {
                ActionReport::failed(format!("{replicas} (dry run: would {plan})")).severity(Severity::Critical)
            };
            let report = with_replicas(report)
                .detail("wouldSetPitrDays", work.pitr_days)
                .detail("wouldProtect", work.deletion_protection)
                .detail("wouldBackup", &work.backup)
                .detail("wouldDelete", &work.prune.delete)
                .detail("deferred", &work.prune.deferred);
            return (self.decision(&req, Ok(report), started), 0);
        }
        let mut waited = 0;
        let mut errors = Vec::new();
        let mut pitr_set = None;
        let mut protected = false;
        let mut created = Vec::new();
        let mut deleted = Vec::new();
        if let Some(days) = work.pitr_days {
            waited += self.pace(None).await;
            match dynamodb::enable_pitr(ddb, &t.name, days).await {
                Ok(()) => {
                    tracing::info!(table = %t.name, days, policy = %policy.name, "point-in-time recovery on");
                    pitr_set = Some(days);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if work.deletion_protection {
            waited += self.pace(None).await;
            match dynamodb::protect(ddb, &t.name).await {
                Ok(()) => {
                    tracing::info!(table = %t.name, "deletion protection on");
                    protected = true;
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if let Some(name) = &work.backup {
            waited += self.pace(None).await;
            match dynamodb::create_backup(ddb, &t.name, name).await {
                Ok(arn) => {
                    tracing::info!(table = %t.name, backup = %name, arn = %arn, "on-demand backup taken");
                    created.push(name.clone());
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        for arn in &work.prune.delete {
            waited += self.pace(None).await;
            match dynamodb::delete_backup(ddb, arn).await {
                Ok(()) => {
                    tracing::info!(table = %t.name, backup = %arn, "expired suite backup deleted");
                    deleted.push(arn.clone());
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        let report = match (errors.is_empty(), replica_problems.is_empty()) {
            (true, true) => ActionReport::acted(plan),
            (true, false) if work.is_empty() => ActionReport::failed(replicas).severity(Severity::Critical),
            (true, false) => ActionReport::failed(format!("{replicas} (done: {plan})")).severity(Severity::Critical),
            (false, _) => {
                let mut why = format!("{} of the work failed: {}", errors.len(), errors.join("; "));
                if !replicas.is_empty() {
                    why = format!("{replicas}; {why}");
                }
                ActionReport::failed(why)
            }
        };
        let report = with_replicas(report)
            .detail("sweep", sweep_event_id(policy, pass.slot))
            .detail("pitrSetTo", pitr_set)
            .detail("protected", protected)
            .detail("backupsCreated", created)
            .detail("backupsDeleted", deleted)
            .detail("deferred", &work.prune.deferred);
        (self.decision(&req, Ok(report), started), waited)
    }
}

/// One unit of per-table work in a sweep.
enum Job {
    Unknown(String, String),
    /// The table, its policy, its decision, and whether this sweep's backup is already there.
    Table(Box<(Table, Policy, TablePlan, bool)>),
}
