//! Aurora cluster failover: guards, `FailoverDBCluster` to the chosen reader, and waiting for it to
//! become the writer.

use std::time::Instant;

use super::choice::{choose_reader, is_unavailable, ClusterMember};
use super::handler::DbFailover;
use super::intent::FailoverIntent;
use super::rds::{cluster_stand_down, describe_cluster, describe_instance};
use super::{ACTION_CLUSTER, ACTION_FAILOVER, RATE_GROUP};
use crate::approval::{with_approval, Approval};
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::{Error, Result};
use crate::guardrails::{is_opted_in, ActionReport};
use crate::trigger::Trigger;

impl DbFailover {
    pub(super) async fn cluster(&self, t: &Trigger, intent: FailoverIntent, dry_run: bool) -> Result<Envelope> {
        let rds = self.ctx.aws.rds();
        let target = Target::new("rds-cluster", &intent.id).in_group(RATE_GROUP);
        let mut req = self.request(t, ACTION_FAILOVER, target, dry_run, intent.reason.clone());
        let Some(cluster) = describe_cluster(&rds, &intent.id).await? else {
            let why =
                format!("DB cluster {} does not exist in {}: refused, nothing was done", intent.id, t.scope.describe());
            let env = self
                .ctx
                .envelope(&req, Outcome::Refused, why)
                .severity(Severity::Warning)
                .detail("guard", "not-found")
                .detail("missing", serde_json::json!({ "kind": "DB cluster", "id": intent.id }));
            tracing::warn!(cluster = %intent.id, "DB cluster does not exist: refused");
            return self.ctx.record(env).await;
        };
        if !is_opted_in(cluster.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())), &self.ctx.config) {
            let why = format!(
                "cluster {} is not opted in (tag {}={})",
                cluster.id, self.ctx.config.opt_in_tag, self.ctx.config.opt_in_value
            );
            return self.refuse(&req, why, Severity::Warning).await;
        }
        let mut members = Vec::new();
        let mut member_arns = Vec::new();
        for (id, writer, tier) in &cluster.members {
            let info = describe_instance(&rds, id, None).await?;
            member_arns.extend(info.as_ref().and_then(|i| i.arn.clone()));
            members.push(ClusterMember {
                id: id.clone(),
                writer: *writer,
                tier: *tier,
                status: info.as_ref().map(|i| i.status.clone()).unwrap_or_else(|| "missing".into()),
                az: info.and_then(|i| i.az),
            });
        }
        let writer = members.iter().find(|m| m.writer).cloned();
        // Another recovery owning it (RDS failing it over, rebooting or modifying it or its writer, a
        // Blue/Green switchover, a global database move), read now: `force` does not override this.
        let writer_status = writer.as_ref().map(|w| (w.id.as_str(), w.status.as_str()));
        if let Some(sd) = cluster_stand_down(&rds, &cluster, writer_status, &member_arns).await? {
            tracing::warn!(cluster = %cluster.id, recovery = sd.recovery, "another recovery: standing down");
            return self.ctx.record(sd.envelope(&self.ctx, &req)).await;
        }
        let writer_down = writer.as_ref().is_none_or(|w| is_unavailable(&w.status) || w.status == "missing");
        if !writer_down && !is_unavailable(&cluster.status) && !intent.force {
            let why = format!(
                "cluster {} is {} and its writer {} is {}: the event is stale or flapping, nothing to do",
                cluster.id,
                cluster.status,
                writer.as_ref().map(|w| w.id.as_str()).unwrap_or("?"),
                writer.as_ref().map(|w| w.status.as_str()).unwrap_or("?")
            );
            return self.ctx.record(self.ctx.envelope(&req, Outcome::Skipped, why)).await;
        }
        let reader = match choose_reader(&members, intent.replica.as_deref()) {
            Ok(r) => r,
            Err(why) => {
                return self.refuse(&req, format!("{why}; a human must restore the writer"), Severity::Critical).await
            }
        };
        req.action = ACTION_CLUSTER.to_string();
        let old = writer.map(|w| w.id);
        let cluster_id = cluster.id.clone();
        let asked = req.clone();
        let work = async {
            let what = format!(
                "fail cluster {cluster_id} over to {} (tier {:?}, {})",
                reader.id,
                reader.tier,
                reader.az.as_deref().unwrap_or("?")
            );
            // More than N databases of one account and region in the rate window wait for a human.
            let approval = match self.ctx.approval(&asked, t, None, &what).await? {
                Approval::Parked(r) => return Ok(r.detail("oldWriter", &old).detail("newWriter", &reader.id)),
                other => other,
            };
            if dry_run {
                return Ok(with_approval(ActionReport::would(format!("would {what}")), &approval)
                    .detail("oldWriter", &old)
                    .detail("newWriter", &reader.id));
            }
            let started = Instant::now();
            tracing::info!(cluster = %cluster_id, to = %reader.id, "FailoverDBCluster");
            rds.failover_db_cluster()
                .db_cluster_identifier(&cluster_id)
                .target_db_instance_identifier(&reader.id)
                .send()
                .await
                .map_err(|e| Error::aws("rds", "FailoverDBCluster", e))?;
            self.wait_cluster_writer(&rds, &cluster_id, &reader.id).await?;
            Ok(with_approval(
                ActionReport::acted(format!("cluster {cluster_id} failed over to {}", reader.id)),
                &approval,
            )
            .severity(Severity::Warning)
            .detail("oldWriter", &old)
            .detail("newWriter", &reader.id)
            .detail("newWriterAz", &reader.az)
            .detail("promotionTier", reader.tier)
            .detail("tookSeconds", started.elapsed().as_secs_f64()))
        };
        self.ctx.execute(req, work).await
    }

    async fn wait_cluster_writer(&self, rds: &aws_sdk_rds::Client, cluster: &str, writer: &str) -> Result<()> {
        let deadline = Instant::now() + self.cfg.wait;
        loop {
            let c = describe_cluster(rds, cluster)
                .await?
                .ok_or_else(|| Error::NotFound { kind: "DB cluster", id: cluster.to_string() })?;
            let is_writer = c.members.iter().any(|(id, w, _)| id == writer && *w);
            if is_writer && c.status == "available" {
                return Ok(());
            }
            if Instant::now() + self.cfg.poll > deadline {
                return Err(Error::Timeout {
                    what: format!("{writer} to become the writer of {cluster} (status {})", c.status),
                    seconds: self.cfg.wait.as_secs(),
                });
            }
            tokio::time::sleep(self.cfg.poll).await;
        }
    }
}
