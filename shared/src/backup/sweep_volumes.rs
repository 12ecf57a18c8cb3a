//! The EBS part of a sweep: inventory (tagged volumes, snapshots, AMI-backed snapshots, DR copies),
//! each volume's decisions, and fixing one volume (snapshot, prune, DR copy and DR prune) at the
//! place's API rate. A volume whose snapshot already carries this sweep's id was fixed by an earlier
//! attempt of the same sweep: it counts as fixed, and nothing is done again.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use futures::stream::{self, StreamExt};

use super::dr_copy::{copy_candidate, DrCopies};
use super::ec2::{self, Volume};
use super::enforcer::BackupEnforcer;
use super::policy::Policy;
use super::report::Report;
use super::retention::{is_stale, plan_prune};
use super::sweep::{Pass, Work};
use super::window::sweep_event_id;
use super::KIND_VOLUME;
use crate::envelope::Envelope;
use crate::error::Result;
use crate::guardrails::ActionReport;

/// What became of one volume.
enum Done {
    /// Nothing to do.
    Compliant,
    /// Nothing to do: an earlier attempt of this sweep fixed it.
    FixedEarlier,
    /// Work to do, but the time budget had run out.
    OutOfTime,
    /// A decision: acted, dry run, failed, or an unknown policy refused.
    Decided(Box<Envelope>),
    Unknown(Box<Envelope>),
}

impl BackupEnforcer {
    pub(super) async fn sweep_volumes(&self, pass: &Pass, report: &mut Report) -> Result<Vec<Envelope>> {
        let ec2 = self.ctx.aws.ec2();
        let (volumes, listed, amis) = futures::try_join!(
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
        let no_sweeps = HashSet::new();
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
            let s = listed.snaps.get(&v.id).unwrap_or(&empty);
            let in_dr = policy.copy_region.as_ref().and_then(|r| dr.get(r));
            let swept_here = listed.swept.get(&v.id).unwrap_or(&no_sweeps).contains(&sweep_event_id(policy, pass.slot));
            // A snapshot this very sweep took (an earlier attempt of it) is the evidence: the volume
            // is done for this sweep, however its age reads.
            let work = Work {
                snapshot: is_stale(s, policy, pass.now) && !swept_here,
                prune: plan_prune(s, &amis, policy, pass.now, self.cfg.max_delete_percent),
                copy: in_dr.and_then(|(_, copies, _)| copy_candidate(s, &copies.sources)),
                dr_prune: in_dr
                    .map(|(_, copies, dr_amis)| {
                        let copies = copies.by_resource.get(&v.id).unwrap_or(&empty);
                        plan_prune(copies, dr_amis, policy, pass.now, self.cfg.max_delete_percent)
                    })
                    .unwrap_or_default(),
                ..Work::default()
            };
            jobs.push(Job::Volume(Box::new((v.clone(), policy.clone(), work, swept_here))));
        }

        let results: Vec<(String, Done, u64)> = stream::iter(jobs)
            .map(|job| {
                let ec2 = &ec2;
                let dr = &dr;
                let home = &home;
                async move {
                    match job {
                        Job::Unknown(id, policy) => {
                            let env = self.unknown_policy(pass, KIND_VOLUME, &id, &policy);
                            (id, Done::Unknown(Box::new(env)), 0)
                        }
                        Job::Volume(job) => {
                            let (v, policy, work, swept_here) = *job;
                            if work.is_empty() {
                                let done = if swept_here { Done::FixedEarlier } else { Done::Compliant };
                                return (v.id, done, 0);
                            }
                            if Instant::now() >= pass.deadline {
                                return (v.id, Done::OutOfTime, 0);
                            }
                            let dr_client = policy.copy_region.as_ref().and_then(|r| dr.get(r)).map(|(c, _, _)| c);
                            let (env, waited) = self.fix_volume(pass, &v, &policy, work, ec2, dr_client, home).await;
                            (v.id, Done::Decided(Box::new(env)), waited)
                        }
                    }
                }
            })
            .buffer_unordered(self.cfg.concurrency)
            .collect()
            .await;

        let mut envelopes = Vec::new();
        for (id, done, waited) in results {
            report.throttled_ms += waited;
            match done {
                Done::Compliant => report.tally(KIND_VOLUME).compliant += 1,
                Done::FixedEarlier => {
                    report.tally(KIND_VOLUME).fixed += 1;
                    report.fixed_earlier += 1;
                }
                Done::OutOfTime => report.out_of_time(KIND_VOLUME),
                Done::Unknown(e) => {
                    report.fail(KIND_VOLUME, &id, e.reason.clone());
                    envelopes.push(*e);
                }
                Done::Decided(e) => {
                    report.count_envelope(KIND_VOLUME, &e);
                    envelopes.push(*e);
                }
            }
        }
        Ok(envelopes)
    }

    /// Fixes one volume; returns the decision and how long the API rate made it wait (ms).
    #[allow(clippy::too_many_arguments)]
    async fn fix_volume(
        &self,
        pass: &Pass,
        v: &Volume,
        policy: &Policy,
        work: Work,
        ec2: &aws_sdk_ec2::Client,
        dr: Option<&aws_sdk_ec2::Client>,
        home: &str,
    ) -> (Envelope, u64) {
        let started = Instant::now();
        let req = self.request(pass, KIND_VOLUME, &v.id, policy);
        let plan = work.describe();
        if pass.dry_run {
            let report = ActionReport::would(format!("would {plan}"))
                .detail("policy", &policy.name)
                .detail("wouldSnapshot", work.snapshot)
                .detail("wouldDelete", &work.prune.delete)
                .detail("deferred", &work.prune.deferred)
                .detail("sparedAmi", &work.prune.spared_ami)
                .detail("wouldCopy", &work.copy)
                .detail("wouldDeleteDr", &work.dr_prune.delete);
            return (self.decision(&req, Ok(report), started), 0);
        }
        let sweep = sweep_event_id(policy, pass.slot);
        let dr_region = policy.copy_region.as_deref();
        let mut waited = 0;
        let mut created = Vec::new();
        let mut deleted = Vec::new();
        let mut copied = Vec::new();
        let mut errors = Vec::new();
        let mut copy = work.copy.clone();
        if work.snapshot {
            waited += self.pace(None).await;
            match ec2::create_snapshot(ec2, &v.id, &policy.name, &sweep).await {
                Ok((id, complete)) => {
                    tracing::debug!(volume = %v.id, snapshot = %id, policy = %policy.name, "snapshot taken");
                    if complete && dr.is_some() {
                        copy = Some(id.clone());
                    }
                    created.push(id);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        for id in &work.prune.delete {
            waited += self.pace(None).await;
            match ec2::delete_snapshot(ec2, id).await {
                Ok(()) => {
                    tracing::info!(volume = %v.id, snapshot = %id, "expired snapshot deleted");
                    deleted.push(id.clone());
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if let (Some(src), Some(dr)) = (copy, dr) {
            waited += self.pace(dr_region).await;
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
                waited += self.pace(dr_region).await;
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
            ActionReport::acted(plan)
        } else {
            ActionReport::failed(format!("{} of the work failed: {}", errors.len(), errors.join("; ")))
        };
        let report = report
            .detail("policy", &policy.name)
            .detail("sweep", &sweep)
            .detail("created", created)
            .detail("deleted", deleted)
            .detail("copied", copied)
            .detail("drDeleted", dr_deleted)
            .detail("deferred", &work.prune.deferred)
            .detail("drDeferred", &work.dr_prune.deferred)
            .detail("sparedAmi", &work.prune.spared_ami);
        (self.decision(&req, Ok(report), started), waited)
    }
}

/// One unit of per-resource work in a sweep.
enum Job {
    Unknown(String, String),
    /// The volume, its policy, what it needs, and whether this sweep already took a snapshot of it.
    Volume(Box<(Volume, Policy, Work, bool)>),
}
