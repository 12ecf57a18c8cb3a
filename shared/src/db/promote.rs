//! Replica promotion: gathering candidates with their lag, the one-promotion-per-primary marker,
//! `PromoteReadReplica`, tagging, waiting for the new writer and repointing the DNS record, and
//! resuming a promotion whose invocation ran out of time while the new writer was still converging.
//!
//! The marker `promotion#{primary}` records the promotion's progress: `phase = promoted` with the new
//! writer once `PromoteReadReplica` has been answered, `phase = done` once the new writer is available
//! and DNS points at it. A retry that finds `promoted` resumes the wait and the repoint; it never
//! promotes a second replica.

use std::time::Duration;

use super::choice::{choose_replica, promotion_complete, Candidate, DbInstanceInfo, Rejection};
use super::config::{fqdn, DnsRecord};
use super::dns_record::{read_cname, upsert_cname_recorded};
use super::handler::{DbFailover, Decision};
use super::rds::{describe_instance, parse_db_ref};
use super::{ACTION_PROMOTE, PROMOTED_BY_TAG, PROMOTED_FROM_TAG};
use crate::approval::{with_approval, Approval};
use crate::config::approval::CROSS_REGION_PROMOTION;
use crate::envelope::{Envelope, Severity};
use crate::error::{Error, Result};
use crate::guardrails::ActionReport;
use crate::ledger::zone_change::ChangeBy;
use crate::stand_down::pending_change_refusal;
use crate::trigger::Trigger;

/// The marker's phase once `PromoteReadReplica` was answered: the new writer may still be converging.
const PHASE_PROMOTED: &str = "promoted";
/// The marker's phase once the new writer is available and DNS repointed.
const PHASE_DONE: &str = "done";

/// A promotion under way: what the wait and the repoint need, whether started now or resumed.
struct Promotion<'a> {
    primary: &'a DbInstanceInfo,
    marker: &'a str,
    new_id: String,
    region: Option<String>,
    lag: Option<f64>,
    answered_available: bool,
    started_at: chrono::DateTime<chrono::Utc>,
    /// The event acting: named on the Route 53 change it makes.
    event_id: &'a str,
}

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

    pub(super) async fn promote(&self, t: &Trigger, mut d: Decision, primary: DbInstanceInfo) -> Result<Envelope> {
        d.req.action = ACTION_PROMOTE.to_string();
        let dry_run = d.req.dry_run;
        let asked = d.req.clone();
        let event_id = d.req.event_id.clone();
        let intent = d.intent;
        let marker = format!("promotion#{}", primary.id);
        let work = async {
            if let Some(progress) = self.ctx.ledger.progress(&marker).await? {
                if progress.get("phase").map(String::as_str) == Some(PHASE_PROMOTED) {
                    let p = Promotion {
                        primary: &primary,
                        marker: &marker,
                        new_id: progress.get("newWriter").cloned().unwrap_or_default(),
                        region: progress.get("region").filter(|r| !r.is_empty()).cloned(),
                        lag: progress.get("lagSeconds").and_then(|l| l.parse().ok()),
                        answered_available: progress.get("answeredAvailable").map(String::as_str) == Some("true"),
                        started_at: progress
                            .get("startedAt")
                            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                            .map(|t| t.with_timezone(&chrono::Utc))
                            .unwrap_or_else(chrono::Utc::now),
                        event_id: &event_id,
                    };
                    if dry_run {
                        return Ok(ActionReport::would(format!(
                            "would resume the promotion of {} (replacing {}): wait for it to become the writer \
                             and repoint DNS",
                            p.new_id, primary.id
                        ))
                        .detail("oldWriter", &primary.id)
                        .detail("newWriter", &p.new_id)
                        .detail("resumed", true));
                    }
                    tracing::info!(primary = %primary.id, replica = %p.new_id, "resuming a promotion still converging");
                    let report = self.finish(&p, Vec::new()).await?;
                    return Ok(report.detail("resumed", true));
                }
            }
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
            let dns = self.cfg.dns.as_ref().map(|d| d.name.clone());
            // A replica in another region than its primary moves the application's writer across regions.
            let cross_region = region.is_some() && region != primary.region;
            let what = format!(
                "promote {new_id}{} (lag {}) to replace {}{}",
                region.as_deref().map(|r| format!(" in {r}")).unwrap_or_default(),
                fmt_lag(lag),
                primary.id,
                dns.as_ref().map(|n| format!(" and repoint {n} if it names {}", primary.id)).unwrap_or_default()
            );
            let kind = cross_region.then_some(CROSS_REGION_PROMOTION);
            let approval = match self.ctx.approval(&asked, t, kind, &what).await? {
                Approval::Parked(report) => {
                    return Ok(report
                        .detail("oldWriter", &primary.id)
                        .detail("newWriter", &new_id)
                        .detail("lagSeconds", lag)
                        .detail("rejected", &rejected))
                }
                other => other,
            };
            if dry_run {
                let asked_first = match &approval {
                    Approval::WouldAsk(why) => format!("; a human's approval would be asked first ({why})"),
                    _ => String::new(),
                };
                return Ok(with_approval(ActionReport::would(format!("would {what}{asked_first}")), &approval)
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
            let started_at = chrono::Utc::now();
            let rds = self.ctx.aws.regional(region.as_deref()).rds();
            tracing::info!(primary = %primary.id, replica = %new_id, lag = ?lag, "PromoteReadReplica");
            let (answered_available, answer_lost) =
                match rds.promote_read_replica().db_instance_identifier(&new_id).send().await {
                    Ok(r) => (r.db_instance().and_then(|i| i.db_instance_status()) == Some("available"), None),
                    // Applied, and only the answer lost: carry on as if RDS had answered standalone.
                    Err(e) => match applied_anyway(&rds, &e, &new_id, region.as_deref()).await {
                        Some(evidence) => {
                            (true, Some(format!("{}; {evidence}", Error::aws("rds", "PromoteReadReplica", e))))
                        }
                        None => {
                            let e = Error::aws("rds", "PromoteReadReplica", e);
                            return Ok(ActionReport::failed(format!(
                                "PromoteReadReplica of {new_id} failed: {e}; ledger marker {marker} is held, so no \
                                 automatic retry will promote another replica: a human must decide"
                            ))
                            .detail("oldWriter", &primary.id)
                            .detail("newWriter", &new_id));
                        }
                    },
                };
            // Before anything else can go wrong: what a retry needs to resume rather than refuse.
            let lag_text = lag.map(|l| l.to_string()).unwrap_or_default();
            let started_text = started_at.to_rfc3339();
            self.ctx
                .ledger
                .note_progress(
                    &marker,
                    &[
                        ("phase", PHASE_PROMOTED),
                        ("newWriter", &new_id),
                        ("region", region.as_deref().unwrap_or_default()),
                        ("lagSeconds", &lag_text),
                        ("answeredAvailable", if answered_available { "true" } else { "false" }),
                        ("startedAt", &started_text),
                        ("event", &event_id),
                    ],
                )
                .await?;
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
            let p = Promotion {
                primary: &primary,
                marker: &marker,
                new_id,
                region,
                lag,
                answered_available,
                started_at,
                event_id: &event_id,
            };
            let report = with_approval(self.finish(&p, rejected).await?, &approval);
            Ok(match answer_lost {
                Some(lost) => noting_lost_answer(report, lost),
                None => report,
            })
        };
        // Boxed: the promotion is a large future.
        self.ctx.execute(d.req, Box::pin(work)).await
    }

    /// Waits for a promoted replica to become a standalone writer (within the invocation's time
    /// budget), repoints the DNS record, and marks the promotion done. Out of time, it records nothing
    /// new (the marker already says `promoted`) and fails, so the retry resumes here.
    async fn finish(&self, p: &Promotion<'_>, rejected: Vec<Rejection>) -> Result<ActionReport> {
        let primary = p.primary;
        let new_id = &p.new_id;
        let rds = self.ctx.aws.regional(p.region.as_deref()).rds();
        let base = |r: ActionReport| {
            r.detail("oldWriter", &primary.id)
                .detail("newWriter", new_id)
                .detail("lagSeconds", p.lag)
                .detail("rejected", &rejected)
        };
        let since = |at: chrono::DateTime<chrono::Utc>| (chrono::Utc::now() - at).num_milliseconds() as f64 / 1000.0;
        let (limit, cut_by_deadline) = crate::deadline::wait_budget(self.cfg.wait);
        let waited = if cut_by_deadline && limit.is_zero() {
            // Not even one poll fits before the deadline: record and let the retry resume.
            Err(Error::Timeout { what: format!("{new_id}: no time left in this invocation to wait"), seconds: 0 })
        } else {
            self.wait_instance(&rds, new_id, p.region.as_deref(), limit, |i| {
                promotion_complete(i, p.answered_available)
            })
            .await
        };
        let promoted = match waited {
            Ok(i) => i,
            Err(Error::Timeout { what, .. }) if cut_by_deadline => {
                return Ok(base(ActionReport::failed(format!(
                    "promoted {new_id} to replace {}, still converging after {:.0}s ({what}) with the invocation \
                     near its deadline: progress is recorded on ledger marker {}, and the retry resumes the \
                     wait and the DNS repoint (it never promotes another replica)",
                    primary.id,
                    since(p.started_at),
                    p.marker
                )))
                .detail("resumable", true));
            }
            Err(e) => {
                return Ok(base(ActionReport::failed(format!(
                    "promoted {new_id} but it did not become a standalone writer: {e}; DNS not repointed"
                ))))
            }
        };
        let Some(endpoint) = promoted.endpoint.clone() else {
            return Ok(base(ActionReport::failed(format!(
                "promoted {new_id} but it reports no endpoint; DNS not repointed"
            ))));
        };
        let took = since(p.started_at);
        let mut report = base(ActionReport::acted(format!(
            "promoted {new_id} (lag {}) to replace failed primary {} in {took:.0}s",
            fmt_lag(p.lag),
            primary.id
        )))
        .severity(Severity::Warning)
        .detail("newEndpoint", &endpoint)
        .detail("tookSeconds", took);
        if let Some(dns) = &self.cfg.dns {
            match self.repoint(dns, &endpoint, primary, new_id, limit, p.event_id).await {
                Ok(Repoint::Done { before, change }) => {
                    report = report
                        .detail("dnsRecord", &dns.name)
                        .detail("dnsBefore", before)
                        .detail("dnsAfter", &endpoint)
                        .detail("dnsChange", change)
                        .detail("tookSeconds", since(p.started_at));
                }
                Ok(Repoint::NotOurs { points_at }) => {
                    report = report.detail("dnsRecord", &dns.name).detail(
                        "dnsLeftAlone",
                        format!("points at {points_at}, not at the failed writer {}", primary.id),
                    );
                }
                Ok(Repoint::Pending(sd)) => {
                    let mut failed = ActionReport::failed(format!(
                        "promoted {new_id}, but the database record {} was not repointed: {}; the retry repoints it \
                         (ledger marker {} says the promotion is under way)",
                        dns.name, sd.reason, p.marker
                    ));
                    failed.details = report.details;
                    return Ok(failed
                        .detail("resumable", true)
                        .detail("guard", "another-recovery")
                        .detail("recovery", sd.recovery)
                        .detail("inProgress", &sd.in_progress));
                }
                Err(e) => {
                    let mut failed = ActionReport::failed(format!(
                        "promoted {new_id} but repointing {} failed: {e}; the retry repoints it (ledger marker {} \
                         says the promotion is under way), or point it at {endpoint} by hand",
                        dns.name, p.marker
                    ));
                    failed.details = report.details;
                    return Ok(failed.detail("resumable", true));
                }
            }
        }
        self.ctx.ledger.note_progress(p.marker, &[("phase", PHASE_DONE)]).await?;
        Ok(report)
    }

    /// Repoints the database record at the new writer, if it is this failover's to move: it names the
    /// failed writer (or does not exist yet). A record pointing at another database is left alone, so
    /// promoting one of many databases never steals another's name.
    async fn repoint(
        &self,
        dns: &DnsRecord,
        endpoint: &str,
        old: &DbInstanceInfo,
        new: &str,
        limit: Duration,
        event_id: &str,
    ) -> Result<Repoint> {
        let r53 = self.dns_aws.route53();
        let before = read_cname(&r53, dns).await?;
        if before.as_deref().map(fqdn) == Some(fqdn(endpoint)) {
            return Ok(Repoint::Done { before, change: None });
        }
        if let (Some(current), Some(old_endpoint)) = (before.as_deref(), old.endpoint.as_deref()) {
            if fqdn(current) != fqdn(old_endpoint) {
                return Ok(Repoint::NotOurs { points_at: current.to_string() });
            }
        }
        // Another change of the suite's still propagating on the zone: not now; the retry repoints.
        if let Some(sd) = pending_change_refusal(&self.ctx.ledger, &r53, &dns.zone_id).await? {
            return Ok(Repoint::Pending(sd));
        }
        let remaining = limit.max(Duration::from_secs(30));
        tracing::info!(record = %dns.name, to = %endpoint, "repointing database DNS record");
        let comment = format!("selfheal db-failover: {} -> {new}", old.id);
        let by = ChangeBy {
            function: super::FUNCTION.into(),
            action: ACTION_PROMOTE.into(),
            event_id: event_id.into(),
            target: dns.name.clone(),
        };
        let change =
            upsert_cname_recorded(&r53, dns, endpoint, &comment, remaining, self.cfg.poll, &self.ctx.ledger, &by)
                .await?;
        Ok(Repoint::Done { before, change: Some(change) })
    }
}

/// What repointing the database record did.
enum Repoint {
    Done {
        before: Option<String>,
        change: Option<String>,
    },
    /// The record names another database: not this failover's to move.
    NotOurs {
        points_at: String,
    },
    /// Another change of the suite's on the zone is still propagating.
    Pending(crate::stand_down::StandDown),
}

/// Whether a `PromoteReadReplica` that came back with an error took effect all the same: its answer
/// was lost on the way back (a dropped connection, a timeout) and the SDK's retry was then refused,
/// because RDS refuses to promote an instance that is no longer a read replica
/// (`InvalidDBInstanceState`, "DB Instance is not a read replica"), or a description of the instance
/// shows no replication source any more. `Some` names the evidence.
async fn applied_anyway(
    rds: &aws_sdk_rds::Client,
    err: &aws_sdk_rds::error::SdkError<aws_sdk_rds::operation::promote_read_replica::PromoteReadReplicaError>,
    id: &str,
    region: Option<&str>,
) -> Option<String> {
    use aws_sdk_rds::error::ProvideErrorMetadata;
    let not_a_replica = err.as_service_error().is_some_and(|s| {
        s.is_invalid_db_instance_state_fault()
            && s.message().is_some_and(|m| m.to_ascii_lowercase().contains("not a read replica"))
    });
    if not_a_replica {
        return Some(format!("RDS refused the retry because {id} is no longer a read replica"));
    }
    match describe_instance(rds, id, region).await {
        Ok(Some(info)) if info.replica_source.is_none() => {
            Some(format!("{id} no longer has a replication source (status {})", info.status))
        }
        _ => None,
    }
}

/// A promotion whose `PromoteReadReplica` answer was lost says so, with the evidence it took effect.
fn noting_lost_answer(mut report: ActionReport, lost: String) -> ActionReport {
    report.reason.push_str(" (PromoteReadReplica's answer was lost, but RDS showed the promotion had been applied)");
    report.detail("promoteAnswerLost", lost)
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
