//! Replica promotion: gathering candidates with their lag, the one-promotion-per-primary marker,
//! `PromoteReadReplica`, tagging, waiting for the new writer and repointing the DNS record.

use std::time::{Duration, Instant};

use super::choice::{choose_replica, promotion_complete, Candidate, DbInstanceInfo, Rejection};
use super::config::{fqdn, DnsRecord};
use super::dns_record::{read_cname, upsert_cname};
use super::handler::{DbFailover, Decision};
use super::rds::{describe_instance, parse_db_ref};
use super::{ACTION_PROMOTE, PROMOTED_BY_TAG, PROMOTED_FROM_TAG};
use crate::envelope::{Envelope, Severity};
use crate::error::{Error, Result};
use crate::guardrails::ActionReport;

impl DbFailover {
    async fn gather_candidates(&self, primary: &DbInstanceInfo) -> Result<(Vec<Candidate>, Vec<Rejection>)> {
        let mut out = Vec::new();
        let mut missing = Vec::new();
        for r in &primary.replicas {
            let (region, id) = parse_db_ref(r);
            let rds = self.ctx.aws.regional(region.as_deref()).rds();
            let Some(info) = describe_instance(&rds, &id, region.as_deref()).await? else {
                missing.push(Rejection { replica: id, reason: "not found".into() });
                continue;
            };
            let lag_seconds = match self.lag.replica_lag(&id, region.as_deref()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(replica = %id, error = %e, "replica lag unavailable");
                    None
                }
            };
            out.push(Candidate { info, lag_seconds });
        }
        Ok((out, missing))
    }

    pub(super) async fn promote(&self, mut d: Decision, primary: DbInstanceInfo) -> Result<Envelope> {
        d.req.action = ACTION_PROMOTE.to_string();
        let dry_run = d.req.dry_run;
        let event_id = d.req.event_id.clone();
        let intent = d.intent;
        let marker = format!("promotion#{}", primary.id);
        let work = async {
            let (candidates, mut rejected) = self.gather_candidates(&primary).await?;
            if let Some(done) = candidates.iter().find(|c| c.info.tags.get(PROMOTED_FROM_TAG) == Some(&primary.id)) {
                return Ok(ActionReport::refused(format!(
                    "{} was already promoted from {}: refusing a second promotion (it would split the data)",
                    done.info.id, primary.id
                ))
                .severity(Severity::Critical));
            }
            if self.ctx.ledger.is_marked(&marker).await? {
                return Ok(already_promoted(&primary.id, &marker));
            }
            let (chosen, mut why_not) = choose_replica(
                &primary,
                &candidates,
                self.cfg.max_lag_seconds,
                &self.cfg.preferred_tag,
                intent.force,
                intent.replica.as_deref(),
            );
            rejected.append(&mut why_not);
            let Some(chosen) = chosen else {
                return Ok(ActionReport::refused(format!(
                    "no replica of {} can be promoted safely (RPO guard {}s); nothing promoted, a human must decide",
                    primary.id, self.cfg.max_lag_seconds
                ))
                .severity(Severity::Critical)
                .detail("oldWriter", &primary.id)
                .detail("rejected", &rejected));
            };
            let lag = chosen.lag_seconds;
            let new_id = chosen.info.id.clone();
            let region = chosen.info.region.clone();
            if dry_run {
                let dns = self.cfg.dns.as_ref().map(|d| d.name.clone());
                return Ok(ActionReport::would(format!(
                    "would promote {new_id} (lag {}) to replace {}{}",
                    fmt_lag(lag),
                    primary.id,
                    dns.as_ref().map(|n| format!(" and repoint {n}")).unwrap_or_default()
                ))
                .detail("oldWriter", &primary.id)
                .detail("newWriter", &new_id)
                .detail("lagSeconds", lag)
                .detail("dnsRecord", dns)
                .detail("rejected", &rejected));
            }
            // One promotion per primary, ever: taken atomically before the irreversible call.
            if !self.ctx.ledger.mark_once(&marker).await? {
                return Ok(already_promoted(&primary.id, &marker));
            }
            let started = Instant::now();
            let rds = self.ctx.aws.regional(region.as_deref()).rds();
            tracing::info!(primary = %primary.id, replica = %new_id, lag = ?lag, "PromoteReadReplica");
            let resp = match rds.promote_read_replica().db_instance_identifier(&new_id).send().await {
                Ok(r) => r,
                Err(e) => {
                    let e = Error::aws("rds", "PromoteReadReplica", e);
                    return Ok(ActionReport::failed(format!(
                        "PromoteReadReplica of {new_id} failed: {e}; ledger marker {marker} is held, so no \
                         automatic retry will promote another replica: a human must decide"
                    ))
                    .detail("oldWriter", &primary.id)
                    .detail("newWriter", &new_id));
                }
            };
            let answered_available = resp.db_instance().and_then(|i| i.db_instance_status()) == Some("available");
            if let Some(arn) = chosen.info.arn.as_deref() {
                let tagged = rds
                    .add_tags_to_resource()
                    .resource_name(arn)
                    .tags(aws_sdk_rds::types::Tag::builder().key(PROMOTED_FROM_TAG).value(&primary.id).build())
                    .tags(aws_sdk_rds::types::Tag::builder().key(PROMOTED_BY_TAG).value(&event_id).build())
                    .send()
                    .await;
                if let Err(e) = tagged {
                    tracing::warn!(replica = %new_id, error = %Error::aws("rds", "AddTagsToResource", e), "could not tag promoted replica");
                }
            }
            let base = |r: ActionReport| {
                r.detail("oldWriter", &primary.id)
                    .detail("newWriter", &new_id)
                    .detail("lagSeconds", lag)
                    .detail("rejected", &rejected)
            };
            let promoted = match self
                .wait_instance(&rds, &new_id, region.as_deref(), |i| promotion_complete(i, answered_available))
                .await
            {
                Ok(i) => i,
                Err(e) => {
                    return Ok(base(ActionReport::failed(format!(
                        "promoted {new_id} but it did not become a standalone writer: {e}; DNS not repointed"
                    ))))
                }
            };
            let took = started.elapsed().as_secs_f64();
            let Some(endpoint) = promoted.endpoint.clone() else {
                return Ok(base(ActionReport::failed(format!(
                    "promoted {new_id} but it reports no endpoint; DNS not repointed"
                ))));
            };
            let mut report = base(ActionReport::acted(format!(
                "promoted {new_id} (lag {}) to replace failed primary {} in {took:.0}s",
                fmt_lag(lag),
                primary.id
            )))
            .severity(Severity::Warning)
            .detail("newEndpoint", &endpoint)
            .detail("tookSeconds", took);
            if let Some(dns) = &self.cfg.dns {
                match self.repoint(dns, &endpoint, &primary.id, &new_id, started).await {
                    Ok((before, change)) => {
                        report = report
                            .detail("dnsRecord", &dns.name)
                            .detail("dnsBefore", before)
                            .detail("dnsAfter", &endpoint)
                            .detail("dnsChange", change)
                            .detail("tookSeconds", started.elapsed().as_secs_f64());
                    }
                    Err(e) => {
                        let mut failed = ActionReport::failed(format!(
                            "promoted {new_id} but repointing {} failed: {e}; point it at {endpoint} by hand",
                            dns.name
                        ));
                        failed.details = report.details;
                        return Ok(failed);
                    }
                }
            }
            Ok(report)
        };
        self.ctx.execute(d.req, work).await
    }

    async fn repoint(
        &self,
        dns: &DnsRecord,
        endpoint: &str,
        old: &str,
        new: &str,
        started: Instant,
    ) -> Result<(Option<String>, Option<String>)> {
        let r53 = self.dns_aws.route53();
        let before = read_cname(&r53, dns).await?;
        if before.as_deref().map(fqdn) == Some(fqdn(endpoint)) {
            return Ok((before, None));
        }
        let remaining = self.cfg.wait.saturating_sub(started.elapsed()).max(Duration::from_secs(30));
        tracing::info!(record = %dns.name, to = %endpoint, "repointing database DNS record");
        let comment = format!("selfheal db-failover: {old} -> {new}");
        let change = upsert_cname(&r53, dns, endpoint, &comment, remaining, self.cfg.poll).await?;
        Ok((before, Some(change)))
    }
}

fn already_promoted(primary: &str, marker: &str) -> ActionReport {
    ActionReport::refused(format!(
        "a replica of {primary} was already promoted (ledger marker {marker}): refusing a second promotion, \
         which would split the data"
    ))
    .severity(Severity::Critical)
}

fn fmt_lag(lag: Option<f64>) -> String {
    lag.map(|l| format!("{l}s")).unwrap_or_else(|| "unknown".into())
}
