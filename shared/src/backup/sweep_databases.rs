//! The RDS part of a sweep: inventory (tagged instances and Aurora clusters, their snapshots, DR
//! copies), each database's decisions, and fixing one (snapshot, prune, DR copy, retention).

use std::collections::{HashMap, HashSet};

use futures::stream::{self, StreamExt};

use super::dr_copy::{copy_candidate, DrCopies};
use super::enforcer::BackupEnforcer;
use super::policy::Policy;
use super::rds::{self, db_snapshot_id, Database};
use super::report::{Report, REPORT_LIST_LIMIT};
use super::retention::{is_stale, plan_prune, rds_retention_fix};
use super::sweep::{Pass, Work};
use super::window::sweep_event_id;
use crate::envelope::{Envelope, Outcome};
use crate::error::Result;
use crate::guardrails::ActionReport;

impl BackupEnforcer {
    pub(super) async fn sweep_databases(&self, pass: &Pass, report: &mut Report) -> Result<Vec<Envelope>> {
        let (now, deadline) = (pass.now, pass.deadline);
        let rds = self.ctx.aws.rds();
        let ((instances, members), clusters, snaps, cluster_snaps) = futures::try_join!(
            rds::tagged_databases(&rds, &self.cfg.policy_tag, &self.ctx.config),
            rds::tagged_clusters(&rds, &self.cfg.policy_tag, &self.ctx.config),
            rds::snapshots_by_db(&rds),
            rds::snapshots_by_cluster(&rds),
        )?;
        tracing::info!(instances = instances.len(), clusters = clusters.len(), "databases with a backup policy");
        // A tagged Aurora member is backed up through its cluster only: if the cluster is not tagged,
        // nothing backs it up, and whoever tagged it should hear so.
        let tagged_clusters: HashSet<&str> = clusters.iter().map(|c| c.id.as_str()).collect();
        for (member, cluster) in &members {
            if !tagged_clusters.contains(cluster.as_str()) && report.untagged_clusters.len() < REPORT_LIST_LIMIT {
                tracing::warn!(db = %member, cluster = %cluster, "cluster member tagged, its cluster is not");
                report.untagged_clusters.push(format!("{member} (cluster {cluster})"));
            }
        }
        let mut dbs = Vec::new();
        for db in instances.into_iter().chain(clusters) {
            if db.opted_in {
                dbs.push(db);
            } else {
                report.not_opted_in(db.kind(), &db.id);
            }
        }
        // One listing of suite copies per DR region in use.
        let mut dr: HashMap<String, (aws_sdk_rds::Client, DrCopies)> = HashMap::new();
        for region in self.dr_regions(dbs.iter().map(|d| d.policy.as_str())) {
            let client = self.ctx.aws.in_region(&region).rds();
            let copies = rds::copied_snapshots(&client).await?;
            dr.insert(region, (client, copies));
        }
        let no_amis = HashSet::new();
        let empty = Vec::new();
        // (kind, id, what became of it when no decision was made, decision)
        let results: Vec<(&'static str, String, Quiet, Result<Option<Envelope>>)> = stream::iter(dbs)
            .map(|db| {
                let rds = &rds;
                let snaps = if db.cluster { &cluster_snaps } else { &snaps };
                let no_amis = &no_amis;
                let empty = &empty;
                let dr = &dr;
                async move {
                    let kind = db.kind();
                    let Some(policy) = self.policy(&db.policy) else {
                        let env = self.unknown_policy(pass, kind, &db.id, &db.policy);
                        return (kind, db.id.clone(), Quiet::Compliant, Ok(Some(env)));
                    };
                    let s = snaps.snaps.get(&db.id).unwrap_or(empty);
                    // A snapshot this very sweep took (an earlier attempt of it) is the evidence: the
                    // database is done for this sweep, however its age reads.
                    let swept_here =
                        snaps.swept.get(&db.id).is_some_and(|s| s.contains(&sweep_event_id(policy, pass.slot)));
                    let dr = policy.copy_region.as_ref().and_then(|r| dr.get(r));
                    let work = Work {
                        snapshot: is_stale(s, policy, now) && !swept_here,
                        prune: plan_prune(s, no_amis, policy, now, self.cfg.max_delete_percent),
                        copy: dr.and_then(|(_, copies)| copy_candidate(s, &copies.sources)),
                        dr_prune: dr
                            .map(|(_, copies)| {
                                let copies = copies.by_resource.get(&db.id).unwrap_or(empty);
                                plan_prune(copies, no_amis, policy, now, self.cfg.max_delete_percent)
                            })
                            .unwrap_or_default(),
                        retention: rds_retention_fix(db.retention_days, policy),
                        current_retention: db.retention_days,
                    };
                    if work.is_empty() {
                        let quiet = if swept_here { Quiet::FixedEarlier } else { Quiet::Compliant };
                        return (kind, db.id.clone(), quiet, Ok(None));
                    }
                    if std::time::Instant::now() >= deadline {
                        return (kind, db.id.clone(), Quiet::OutOfTime, Ok(None));
                    }
                    let dr_client = dr.map(|(c, _)| c);
                    let env = self.fix_database(pass, &db, policy, work, rds, dr_client).await;
                    (kind, db.id.clone(), Quiet::Compliant, Ok(Some(env)))
                }
            })
            .buffer_unordered(self.cfg.concurrency)
            .collect()
            .await;
        let mut envelopes = Vec::new();
        for (kind, id, quiet, r) in results {
            match r {
                Ok(None) if quiet == Quiet::OutOfTime => report.out_of_time(kind),
                Ok(None) if quiet == Quiet::FixedEarlier => {
                    report.tally(kind).fixed += 1;
                    report.fixed_earlier += 1;
                }
                Ok(None) => report.tally(kind).compliant += 1,
                Ok(Some(e)) if e.outcome == Outcome::Refused && e.event_id == pass.t.event_id => {
                    report.fail(kind, &id, e.reason.clone());
                    envelopes.push(e);
                }
                Ok(Some(e)) => {
                    report.count_envelope(kind, &e);
                    envelopes.push(e);
                }
                Err(e) => report.fail(kind, &id, e.to_string()),
            }
        }
        Ok(envelopes)
    }

    async fn fix_database(
        &self,
        pass: &Pass,
        db: &Database,
        policy: &Policy,
        work: Work,
        rds: &aws_sdk_rds::Client,
        dr: Option<&aws_sdk_rds::Client>,
    ) -> Envelope {
        let started = std::time::Instant::now();
        let (dry_run, now) = (pass.dry_run, pass.now);
        let req = self.request(pass, db.kind(), &db.id, policy);
        let plan = work.describe();
        let sweep = sweep_event_id(policy, pass.slot);
        let dr_region = policy.copy_region.as_deref();
        let work_done = async {
            if dry_run {
                return Ok(ActionReport::would(format!("would {plan}"))
                    .detail("policy", &policy.name)
                    .detail("wouldSnapshot", work.snapshot)
                    .detail("wouldDelete", &work.prune.delete)
                    .detail("deferred", &work.prune.deferred)
                    .detail("wouldCopy", &work.copy)
                    .detail("wouldDeleteDr", &work.dr_prune.delete)
                    .detail("wouldSetRetention", work.retention));
            }
            let mut created = Vec::new();
            let mut deleted = Vec::new();
            let mut copied = Vec::new();
            let mut errors = Vec::new();
            let mut retention_set = None;
            let mut copy = work.copy.clone();
            if work.snapshot {
                let id = db_snapshot_id(&db.id, now);
                self.pace(None).await;
                match rds::create_snapshot(rds, db, &id, &policy.name, &sweep).await {
                    Ok(available) => {
                        tracing::info!(db = %db.id, snapshot = %id, policy = %policy.name, "DB snapshot taken");
                        // A snapshot still being created is copied by a later run.
                        if available && dr.is_some() {
                            copy = Some(id.clone());
                        }
                        created.push(id);
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            for id in &work.prune.delete {
                self.pace(None).await;
                match rds::delete_snapshot(rds, db, id).await {
                    Ok(()) => {
                        tracing::info!(db = %db.id, snapshot = %id, "expired DB snapshot deleted");
                        deleted.push(id.clone());
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            if let (Some(src), Some(dr)) = (copy, dr) {
                self.pace(dr_region).await;
                match rds::copy_snapshot(dr, db, &src, &policy.name).await {
                    Ok(id) => {
                        tracing::info!(db = %db.id, snapshot = %src, copy = %id, "DB snapshot copied to DR region");
                        copied.push(id);
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            let mut dr_deleted = Vec::new();
            if let Some(dr) = dr {
                for id in &work.dr_prune.delete {
                    self.pace(dr_region).await;
                    match rds::delete_snapshot(dr, db, id).await {
                        Ok(()) => {
                            tracing::info!(db = %db.id, snapshot = %id, "expired DR-region copy deleted");
                            dr_deleted.push(id.clone());
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
            }
            if let Some(days) = work.retention {
                self.pace(None).await;
                match rds::set_retention(rds, db, days).await {
                    Ok(()) => {
                        tracing::info!(db = %db.id, from = db.retention_days, to = days, "backup retention set");
                        retention_set = Some(days);
                    }
                    Err(e) => errors.push(e.to_string()),
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
                .detail("sweep", &sweep)
                .detail("retentionSetTo", retention_set))
        };
        let result = work_done.await;
        self.decision(&req, result, started)
    }
}

/// What became of a database no decision was made about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quiet {
    Compliant,
    /// An earlier attempt of this sweep snapshotted it.
    FixedEarlier,
    /// Work to do, but the time budget had run out.
    OutOfTime,
}
