//! The EBS part of a sweep: inventory (tagged volumes, snapshots, AMI-backed snapshots, DR copies),
//! each volume's decisions, and fixing one volume (snapshot, prune, DR copy and DR prune).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};

use super::dr_copy::{copy_candidate, DrCopies};
use super::ec2::{self, Volume};
use super::handler::BackupEnforcer;
use super::policy::Policy;
use super::report::Report;
use super::retention::{is_stale, plan_prune};
use super::sweep::Work;
use super::KIND_VOLUME;
use crate::envelope::Envelope;
use crate::error::Result;
use crate::guardrails::ActionReport;
use crate::trigger::Trigger;

/// The note on a resource the sweep had no time left to start on.
const OUT_OF_TIME: &str = "out-of-time";

impl BackupEnforcer {
    pub(super) async fn sweep_volumes(
        &self,
        t: &Trigger,
        dry_run: bool,
        now: DateTime<Utc>,
        deadline: std::time::Instant,
        report: &mut Report,
    ) -> Result<Vec<Envelope>> {
        let ec2 = self.ctx.aws.ec2();
        let (volumes, snaps, amis) = futures::try_join!(
            ec2::tagged_volumes(&ec2, &self.cfg.policy_tag, &self.ctx.config),
            ec2::snapshots_by_resource(&ec2),
            ec2::ami_snapshots(&ec2),
        )?;
        let home = self.home_region();
        // One listing per DR region in use.
        let mut dr: HashMap<String, (aws_sdk_ec2::Client, DrCopies, HashSet<String>)> = HashMap::new();
        for region in self.dr_regions(volumes.iter().map(|v| v.policy.as_str())) {
            let client = self.ctx.aws.in_region(&region).ec2();
            let (copies, amis) = futures::try_join!(ec2::copied_snapshots(&client), ec2::ami_snapshots(&client))?;
            dr.insert(region, (client, copies, amis));
        }
        tracing::info!(volumes = volumes.len(), "volumes with a backup policy");

        let empty = Vec::new();
        let mut jobs = Vec::new();
        for v in &volumes {
            if !v.opted_in {
                report.not_opted_in(KIND_VOLUME, &v.id);
                continue;
            }
            let Some(policy) = self.policy(&v.policy) else {
                jobs.push(Job::Unknown(v.id.clone(), v.policy.clone()));
                continue;
            };
            let s = snaps.get(&v.id).unwrap_or(&empty);
            let in_dr = policy.copy_region.as_ref().and_then(|r| dr.get(r));
            let work = Work {
                snapshot: is_stale(s, policy, now),
                prune: plan_prune(s, &amis, policy, now, self.cfg.max_delete_percent),
                copy: in_dr.and_then(|(_, copies, _)| copy_candidate(s, &copies.sources)),
                dr_prune: in_dr
                    .map(|(_, copies, dr_amis)| {
                        let copies = copies.by_resource.get(&v.id).unwrap_or(&empty);
                        plan_prune(copies, dr_amis, policy, now, self.cfg.max_delete_percent)
                    })
                    .unwrap_or_default(),
                ..Work::default()
            };
            jobs.push(Job::Volume(Box::new((v.clone(), policy.clone(), work))));
        }

        let results: Vec<(String, String, Result<Option<Envelope>>)> = stream::iter(jobs)
            .map(|job| {
                let ec2 = &ec2;
                let dr = &dr;
                let home = &home;
                async move {
                    match job {
                        Job::Unknown(id, policy) => {
                            let r = self.unknown_policy(t, KIND_VOLUME, &id, &policy, dry_run).await.map(Some);
                            (id, "unknown-policy".to_string(), r)
                        }
                        Job::Volume(job) => {
                            let (v, policy, work) = *job;
                            if work.is_empty() {
                                return (v.id, String::new(), Ok(None));
                            }
                            if std::time::Instant::now() >= deadline {
                                return (v.id, OUT_OF_TIME.to_string(), Ok(None));
                            }
                            let dr_client = policy.copy_region.as_ref().and_then(|r| dr.get(r)).map(|(c, _, _)| c);
                            let r = self.fix_volume(t, &v, &policy, work, dry_run, now, ec2, dr_client, home).await;
                            (v.id, String::new(), r.map(Some))
                        }
                    }
                }
            })
            .buffer_unordered(self.cfg.concurrency)
            .collect()
            .await;

        let mut envelopes = Vec::new();
        for (id, note, r) in results {
            match r {
                Ok(None) if note == OUT_OF_TIME => report.out_of_time(KIND_VOLUME),
                Ok(None) => report.tally(KIND_VOLUME).compliant += 1,
                Ok(Some(e)) if note == "unknown-policy" => {
                    report.fail(KIND_VOLUME, &id, e.reason.clone());
                    envelopes.push(e);
                }
                Ok(Some(e)) => {
                    report.count_envelope(KIND_VOLUME, &e);
                    envelopes.push(e);
                }
                Err(e) => report.fail(KIND_VOLUME, &id, e.to_string()),
            }
        }
        Ok(envelopes)
    }

    #[allow(clippy::too_many_arguments)]
    async fn fix_volume(
        &self,
        t: &Trigger,
        v: &Volume,
        policy: &Policy,
        work: Work,
        dry_run: bool,
        now: DateTime<Utc>,
        ec2: &aws_sdk_ec2::Client,
        dr: Option<&aws_sdk_ec2::Client>,
        home: &str,
    ) -> Result<Envelope> {
        let req = self.request(t, KIND_VOLUME, &v.id, policy, dry_run, now);
        let plan = work.describe();
        self.ctx
            .execute(req, async {
                if dry_run {
                    return Ok(ActionReport::would(format!("would {plan}"))
                        .detail("policy", &policy.name)
                        .detail("wouldSnapshot", work.snapshot)
                        .detail("wouldDelete", &work.prune.delete)
                        .detail("deferred", &work.prune.deferred)
                        .detail("sparedAmi", &work.prune.spared_ami)
                        .detail("wouldCopy", &work.copy)
                        .detail("wouldDeleteDr", &work.dr_prune.delete));
                }
                let mut created = Vec::new();
                let mut deleted = Vec::new();
                let mut copied = Vec::new();
                let mut errors = Vec::new();
                let mut copy = work.copy.clone();
                if work.snapshot {
                    match ec2::create_snapshot(ec2, &v.id, &policy.name).await {
                        Ok((id, complete)) => {
                            tracing::info!(volume = %v.id, snapshot = %id, policy = %policy.name, "snapshot taken");
                            if complete && dr.is_some() {
                                copy = Some(id.clone());
                            }
                            created.push(id);
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                for id in &work.prune.delete {
                    match ec2::delete_snapshot(ec2, id).await {
                        Ok(()) => {
                            tracing::info!(volume = %v.id, snapshot = %id, "expired snapshot deleted");
                            deleted.push(id.clone());
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                if let (Some(src), Some(dr)) = (copy, dr) {
                    match ec2::copy_snapshot(dr, home, &src, &v.id, &policy.name).await {
                        Ok(id) => {
                            tracing::info!(volume = %v.id, snapshot = %src, copy = %id, "snapshot copied to DR region");
                            copied.push(id);
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                let mut dr_deleted = Vec::new();
                if let Some(dr) = dr {
                    for id in &work.dr_prune.delete {
                        match ec2::delete_snapshot(dr, id).await {
                            Ok(()) => {
                                tracing::info!(volume = %v.id, snapshot = %id, "expired DR-region copy deleted");
                                dr_deleted.push(id.clone());
                            }
                            Err(e) => errors.push(e.to_string()),
                        }
                    }
                }
                let report = if errors.is_empty() {
                    ActionReport::acted(plan.clone())
                } else {
                    ActionReport::failed(format!("{} of the work failed: {}", errors.len(), errors.join("; ")))
                };
                Ok(report
                    .detail("policy", &policy.name)
                    .detail("created", created)
                    .detail("deleted", deleted)
                    .detail("copied", copied)
                    .detail("drDeleted", dr_deleted)
                    .detail("deferred", &work.prune.deferred)
                    .detail("drDeferred", &work.dr_prune.deferred)
                    .detail("sparedAmi", &work.prune.spared_ami))
            })
            .await
    }
}

/// One unit of per-resource work in a sweep.
enum Job {
    Unknown(String, String),
    Volume(Box<(Volume, Policy, Work)>),
}
