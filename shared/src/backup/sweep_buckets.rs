//! The S3 part of a sweep: inventory (the account's buckets of the sweep's region with the policy
//! tag; whether the replication destinations their policies name exist), each bucket's decision
//! ([`plan_bucket`]), and fixing one bucket (versioning, the suite's lifecycle rule merged into the
//! owner's, replication when the policy says so) at the place's API rate. A bucket that refuses the
//! suite (AccessDenied with `ExpectedBucketOwner`) is a named refusal, nothing done; replication
//! that is missing, disabled or points at a bucket that does not exist is a failure in the report.

use std::collections::HashSet;
use std::time::Instant;

use futures::stream::{self, StreamExt};

use super::buckets::{bucket_of, plan_bucket, Bucket, BucketPlan, LIFECYCLE_RULE_ID};
use super::enforcer::BackupEnforcer;
use super::policy::Policy;
use super::report::Report;
use super::s3::{self, Listed};
use super::sweep::Pass;
use super::KIND_BUCKET;
use crate::envelope::{Envelope, Severity};
use crate::error::Result;
use crate::guardrails::{ActionReport, ActionRequest};

impl BackupEnforcer {
    pub(super) async fn sweep_buckets(&self, pass: &Pass, report: &mut Report) -> Result<Vec<Envelope>> {
        let s3c = self.ctx.aws.s3();
        let region = self.home_region();
        let account = self.account().await?;
        let wants_replication = |policy: &str| self.policy(policy).is_some_and(|p| p.replication_destination.is_some());
        let (listed, mut requests) = s3::tagged_buckets(
            &s3c,
            &region,
            &account,
            &self.cfg.policy_tag,
            &self.ctx.config,
            self.cfg.concurrency,
            wants_replication,
        )
        .await?;
        // Each destination a policy in use names, asked once whether it exists.
        let mut destinations = HashSet::new();
        for l in &listed {
            if let Listed::Tagged(b) = l {
                if let Some(rules) = &b.replication {
                    destinations.extend(rules.iter().filter(|r| r.enabled).map(|r| r.destination.clone()));
                }
                if let Some(d) = self.policy(&b.policy).and_then(|p| p.replication_destination.clone()) {
                    destinations.insert(d);
                }
            }
        }
        let mut missing = HashSet::new();
        for d in destinations {
            requests += 1;
            if !s3::bucket_exists(&s3c, bucket_of(&d)).await? {
                tracing::warn!(destination = %d, "replication destination bucket does not exist");
                missing.insert(d);
            }
        }
        *report.inventory_requests.entry(KIND_BUCKET.to_string()).or_default() += requests;
        tracing::info!(buckets = listed.len(), requests, region = %region, "buckets with a backup policy");

        let mut envelopes = Vec::new();
        let mut jobs = Vec::new();
        for l in listed {
            match l {
                Listed::Refused(name, why) => {
                    tracing::warn!(bucket = %name, reason = %why, "bucket refused");
                    let env = self.bucket_refused(pass, &name, why);
                    report.count_envelope(KIND_BUCKET, &env);
                    envelopes.push(env);
                }
                Listed::Tagged(b) if !b.opted_in => report.not_opted_in(KIND_BUCKET, &b.name),
                Listed::Tagged(b) => {
                    let Some(policy) = self.policy(&b.policy) else {
                        let env = self.unknown_policy(pass, KIND_BUCKET, &b.name, &b.policy);
                        report.fail(KIND_BUCKET, &b.name, env.reason.clone());
                        envelopes.push(env);
                        continue;
                    };
                    jobs.push((b, policy.clone()));
                }
            }
        }

        let results: Vec<(String, Option<Envelope>, bool, u64)> = stream::iter(jobs)
            .map(|(b, policy)| {
                let (s3c, account, missing) = (&s3c, &account, &missing);
                async move {
                    let plan = match plan_bucket(&b, &policy, missing) {
                        Ok(plan) => plan,
                        Err(why) => {
                            let req = self.request(pass, KIND_BUCKET, &b.name, &policy);
                            let env = self.decision(&req, Ok(ActionReport::failed(why)), Instant::now());
                            return (b.name.clone(), Some(env), false, 0);
                        }
                    };
                    if plan.work.is_empty() && plan.problems.is_empty() {
                        return (b.name.clone(), None, false, 0);
                    }
                    if !plan.work.is_empty() && Instant::now() >= pass.deadline {
                        return (b.name.clone(), None, true, 0);
                    }
                    let (env, waited) = self.fix_bucket(pass, &b, &policy, plan, s3c, account).await;
                    (b.name.clone(), Some(env), false, waited)
                }
            })
            .buffer_unordered(self.cfg.concurrency)
            .collect()
            .await;
        for (_, env, out_of_time, waited) in results {
            report.throttled_ms += waited;
            match env {
                Some(e) => {
                    report.count_envelope(KIND_BUCKET, &e);
                    envelopes.push(e);
                }
                None if out_of_time => report.out_of_time(KIND_BUCKET),
                None => report.tally(KIND_BUCKET).compliant += 1,
            }
        }
        Ok(envelopes)
    }

    /// The refusal of a bucket the suite may not touch (audited with the rest; nothing done).
    fn bucket_refused(&self, pass: &Pass, name: &str, why: String) -> Envelope {
        let req = ActionRequest {
            action: "enforce-backup".into(),
            target: crate::envelope::Target::new(KIND_BUCKET, name),
            event_id: pass.t.event_id.clone(),
            trigger: pass.t.kind.name().into(),
            dry_run: pass.dry_run,
            reason: String::new(),
        };
        let report = ActionReport::refused(why).severity(Severity::Warning).detail("guard", "bucket-owner");
        self.decision(&req, Ok(report), Instant::now())
    }

    /// Fixes one bucket; returns the decision and how long the API rate made it wait (ms). Versioning
    /// goes first: S3 expires noncurrent versions and replicates only on a versioned bucket.
    async fn fix_bucket(
        &self,
        pass: &Pass,
        b: &Bucket,
        policy: &Policy,
        plan: BucketPlan,
        s3c: &aws_sdk_s3::Client,
        account: &str,
    ) -> (Envelope, u64) {
        let started = Instant::now();
        let req = self.request(pass, KIND_BUCKET, &b.name, policy);
        let days = policy.noncurrent_days();
        let what = plan.work.describe(days);
        let problems = plan.problems.join("; ");
        let replication = plan.work.create_replication.as_ref().map(|(d, _)| d.clone());
        if pass.dry_run {
            let report = if plan.problems.is_empty() {
                ActionReport::would(format!("would {what}"))
            } else if plan.work.is_empty() {
                ActionReport::failed(problems.clone())
            } else {
                ActionReport::failed(format!("{problems} (dry run: would {what})"))
            };
            let report = report
                .detail("policy", &policy.name)
                .detail("problems", &plan.problems)
                .detail("wouldEnableVersioning", plan.work.enable_versioning)
                .detail("wouldPutLifecycleRule", plan.work.lifecycle.is_some())
                .detail("wouldCreateReplication", &replication);
            return (self.decision(&req, Ok(report), started), 0);
        }
        let mut waited = 0;
        let mut errors = Vec::new();
        let mut versioned = false;
        let mut lifecycle = false;
        let mut replicated = None;
        if plan.work.enable_versioning {
            waited += self.pace(None).await;
            match s3::enable_versioning(s3c, &b.name, account).await {
                Ok(()) => {
                    tracing::info!(bucket = %b.name, policy = %policy.name, "versioning enabled");
                    versioned = true;
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        let versioning_ok = !plan.work.enable_versioning || versioned;
        if let Some(rules) = plan.work.lifecycle.clone() {
            waited += self.pace(None).await;
            let kept = rules.len() - 1;
            match s3::put_lifecycle(s3c, &b.name, account, rules).await {
                Ok(()) => {
                    tracing::info!(bucket = %b.name, rule = LIFECYCLE_RULE_ID, days, owners_rules_kept = kept, "lifecycle rule set");
                    lifecycle = true;
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if let Some((dest, role)) = &plan.work.create_replication {
            // A role name is the bucket's own account's role.
            let role =
                if role.starts_with("arn:") { role.clone() } else { format!("arn:aws:iam::{account}:role/{role}") };
            if versioning_ok {
                waited += self.pace(None).await;
                match s3::put_replication(s3c, &b.name, account, dest, &role).await {
                    Ok(()) => {
                        tracing::info!(bucket = %b.name, destination = %dest, "replication created");
                        replicated = Some(dest.clone());
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            } else {
                errors.push("replication not created: versioning could not be enabled".into());
            }
        }
        let report = match (errors.is_empty(), plan.problems.is_empty()) {
            (true, true) => ActionReport::acted(what),
            (true, false) if plan.work.is_empty() => ActionReport::failed(problems),
            (true, false) => ActionReport::failed(format!("{problems} (done: {what})")),
            (false, _) => {
                let mut why = format!("{} of the work failed: {}", errors.len(), errors.join("; "));
                if !problems.is_empty() {
                    why = format!("{problems}; {why}");
                }
                ActionReport::failed(why)
            }
        };
        let report = report
            .detail("policy", &policy.name)
            .detail("problems", &plan.problems)
            .detail("versioningEnabled", versioned)
            .detail("lifecycleRuleSet", lifecycle)
            .detail("noncurrentDays", days)
            .detail("replicationCreated", replicated);
        (self.decision(&req, Ok(report), started), waited)
    }
}
