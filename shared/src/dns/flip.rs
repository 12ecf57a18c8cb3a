//! One flip of one record under the guards: opt-in, the failover/failback rules (already failed over,
//! changed by hand, failback hysteresis), health of the side gaining traffic, dry-run, submit and INSYNC.

use std::collections::BTreeMap;

use aws_sdk_route53::types::TagResourceType;

use crate::approval::{with_approval, Approval};
use crate::config::approval::REGION_FAILOVER;
use crate::envelope::{Envelope, Outcome, Severity};
use crate::error::{Error, Result};
use crate::guardrails::{is_opted_in, ActionReport};
use crate::trigger::Trigger;

use super::config::RecordRef;
use super::failover::DnsFailover;
use super::health::{health_word, HealthReading};
use super::history::{last_flip, RecordedFlip};
use super::plan::{change_batch, plan_failover, traffic_shift, Direction, Plan};
use super::records::{same_sets, RecordSet};
use super::route53::{health, list_record, resolve_zone, submit_recorded, tags, wait_insync};
use crate::ledger::zone_change::ChangeBy;

/// Why a flip is being considered, beyond its direction.
#[derive(Debug, Clone, Default)]
pub(super) struct FlipOptions {
    /// The health check whose alarm started this.
    pub(super) health_check: Option<String>,
    /// Stand down if the losing side's health check reports healthy (alarm-triggered failover).
    pub(super) recheck_primary: bool,
    /// Fail back only after `failback_after` (automatic failback).
    pub(super) hysteresis: bool,
    /// Free-text why.
    pub(super) reason: Option<String>,
}

impl DnsFailover {
    pub(super) async fn run_flip(
        &self,
        record: &RecordRef,
        direction: Direction,
        t: &Trigger,
        dry_run: bool,
        opts: FlipOptions,
    ) -> Result<Envelope> {
        let r53 = self.ctx.aws.route53();
        let zone_id = resolve_zone(&r53, &record.zone).await?;
        let current = list_record(&r53, &zone_id, &record.name, &record.rtype).await?;
        if current.is_empty() {
            return Err(Error::NotFound {
                kind: "route53 record",
                id: format!("{} {} in hosted zone {zone_id}", record.name, record.rtype),
            });
        }
        let reason =
            opts.reason.clone().unwrap_or_else(|| format!("{} requested by {}", direction.as_str(), t.kind.name()));
        let req = self.request(record, &zone_id, direction, t, dry_run, &reason);
        tracing::info!(record = %record.name, zone = %zone_id, direction = direction.as_str(), dry_run, event = %t.event_id, "dns flip considered");

        // Opt-in: the zone's tags, or any of the record's health checks' tags.
        let mut opted_in = is_opted_in(
            tags(&r53, TagResourceType::Hostedzone, &zone_id).await?.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &self.ctx.config,
        );
        for hc in current.iter().filter_map(|s| s.health_check_id.as_deref()) {
            if opted_in {
                break;
            }
            let t = tags(&r53, TagResourceType::Healthcheck, hc).await?;
            opted_in = is_opted_in(t.iter().map(|(k, v)| (k.as_str(), v.as_str())), &self.ctx.config);
        }
        if !opted_in {
            let env = self
                .ctx
                .envelope(
                    &req,
                    Outcome::Refused,
                    format!(
                        "not opted in: neither hosted zone {zone_id} nor a health check of {} carries {}={}",
                        record.name, self.ctx.config.opt_in_tag, self.ctx.config.opt_in_value
                    ),
                )
                .severity(Severity::Warning)
                .detail("current", &current);
            return self.ctx.record(env).await;
        }

        // Another change of the suite's still propagating on this zone: stand down before taking anything.
        if let Some(sd) = crate::stand_down::pending_change_refusal(&self.ctx.ledger, &r53, &zone_id).await? {
            return self.ctx.record(sd.envelope(&self.ctx, &req).detail("current", &current)).await;
        }

        let target_id = req.target.id.clone();
        let asked = req.clone();
        let work = async {
            // Re-read under the guardrails' lock: the record as it is now.
            let current = list_record(&r53, &zone_id, &record.name, &record.rtype).await?;
            let trail = self.ctx.ledger.audit_trail(&target_id).await?;
            let last = last_flip(&trail);
            let desired = match self.desired(direction, &current, last.as_ref(), &opts) {
                Ok(Plan::Change(d)) => d,
                Ok(Plan::Noop(why)) => return Ok(ActionReport::skipped(why).detail("current", &current)),
                Err(report) => return Ok(report.detail("current", &current)),
            };
            let (losing, gaining) = traffic_shift(&current, &desired);
            let mut readings = BTreeMap::new();
            for s in losing.iter().chain(gaining.iter()) {
                if let Some(hc) = &s.health_check_id {
                    if !readings.contains_key(hc) {
                        readings.insert(hc.clone(), health(&r53, hc).await?);
                    }
                }
            }
            let healthy = |sets: &[RecordSet]| -> Vec<(String, Option<bool>)> {
                sets.iter()
                    .filter_map(|s| {
                        s.health_check_id.as_ref().map(|hc| (s.describe(), readings.get(hc).and_then(|r| r.healthy)))
                    })
                    .collect()
            };
            let (losing_h, gaining_h) = (healthy(&losing), healthy(&gaining));
            let losing_failing = losing_h.iter().any(|(_, h)| *h != Some(true));
            let gaining_bad: Vec<String> = gaining_h
                .iter()
                .filter(|(_, h)| *h != Some(true))
                .map(|(d, h)| format!("{d}: {}", health_word(*h)))
                .collect();
            let health_detail: Vec<&HealthReading> = readings.values().collect();
            if !gaining_bad.is_empty() {
                let report = if losing_failing {
                    ActionReport::refused(format!(
                        "both sides are unhealthy ({}; and the side losing traffic): changing nothing (fail open); a human \
                         must decide",
                        gaining_bad.join(", ")
                    ))
                    .severity(Severity::Critical)
                } else {
                    ActionReport::refused(format!(
                        "will not move traffic to an unhealthy target: {}",
                        gaining_bad.join(", ")
                    ))
                    .severity(if opts.recheck_primary {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    })
                };
                return Ok(report.detail("current", &current).detail("health", &health_detail));
            }
            if opts.recheck_primary && !losing_h.is_empty() && !losing_failing {
                return Ok(ActionReport::skipped(format!(
                    "the primary's health check reports healthy again ({}): not flipping",
                    losing_h.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>().join(", ")
                ))
                .detail("current", &current)
                .detail("health", &health_detail));
            }
            let batch = change_batch(&current, &desired);
            let summary = format!(
                "{} {}: {} -> {}",
                direction.as_str(),
                record.name,
                losing.iter().map(RecordSet::describe).collect::<Vec<_>>().join(", "),
                gaining.iter().map(RecordSet::describe).collect::<Vec<_>>().join(", ")
            );
            // A failover moves the application to its standby region: a large move the approval policy
            // may want a human for (a failback is the way home).
            let kind = (direction == Direction::Failover).then_some(REGION_FAILOVER);
            let what = format!("{summary} ({} changes to hosted zone {zone_id})", batch.len());
            let approval = match self.ctx.approval(&asked, t, kind, &what).await? {
                Approval::Parked(report) => {
                    return Ok(report
                        .detail("before", &current)
                        .detail("after", &desired)
                        .detail("changeBatch", &batch)
                        .detail("hostedZoneId", &zone_id)
                        .detail("health", &health_detail))
                }
                other => other,
            };
            if dry_run {
                let asked_first = match &approval {
                    Approval::WouldAsk(why) => format!("; a human's approval would be asked first ({why})"),
                    _ => String::new(),
                };
                let report = ActionReport::would(format!("would {summary} ({} changes){asked_first}", batch.len()));
                return Ok(with_approval(report, &approval)
                    .detail("before", &current)
                    .detail("after", &desired)
                    .detail("changeBatch", &batch)
                    .detail("hostedZoneId", &zone_id)
                    .detail("health", &health_detail));
            }
            let by = ChangeBy {
                function: super::FUNCTION.into(),
                action: direction.as_str().into(),
                event_id: t.event_id.clone(),
                target: target_id.clone(),
            };
            let comment = format!("selfheal {summary} ({})", t.event_id);
            let change_id = submit_recorded(&r53, &self.ctx.ledger, &zone_id, &batch, &comment, &by).await?;
            tracing::info!(record = %record.name, zone = %zone_id, change_id = %change_id, "dns change submitted");
            let insync = wait_insync(&r53, &change_id, self.cfg.insync_timeout, self.cfg.insync_poll).await?;
            let report = if insync {
                ActionReport::acted(format!("{summary}; change {change_id} is INSYNC"))
            } else {
                ActionReport::acted(format!(
                    "{summary}; change {change_id} submitted but not INSYNC within {}s",
                    self.cfg.insync_timeout.as_secs()
                ))
                .severity(Severity::Warning)
            };
            Ok(with_approval(report, &approval)
                .detail("before", &current)
                .detail("after", &desired)
                .detail("changeBatch", &batch)
                .detail("changeId", &change_id)
                .detail("insync", insync)
                .detail("hostedZoneId", &zone_id)
                .detail("health", &health_detail))
        };
        // Boxed: the flip is a large future, and inline it overflows a test thread's stack.
        self.ctx.execute(req, Box::pin(work)).await
    }

    /// What the record should become, or a report of why not.
    fn desired(
        &self,
        direction: Direction,
        current: &[RecordSet],
        last: Option<&RecordedFlip>,
        opts: &FlipOptions,
    ) -> std::result::Result<Plan, ActionReport> {
        match direction {
            Direction::Failover => {
                if let Some(f) = last.filter(|f| f.direction == Direction::Failover) {
                    if same_sets(current, &f.after) {
                        return Ok(Plan::Noop(format!(
                            "already failed over at {} (event {})",
                            f.at.to_rfc3339(),
                            f.event_id
                        )));
                    }
                }
                let standby = self
                    .cfg
                    .records
                    .iter()
                    .find(|r| current.first().is_some_and(|c| c.name == r.name && c.rtype == r.rtype))
                    .map(|r| r.standby.clone())
                    .unwrap_or_default();
                plan_failover(current, opts.health_check.as_deref(), &standby)
                    .map_err(|why| ActionReport::refused(why).severity(Severity::Warning))
            }
            Direction::Failback => {
                let Some(f) = last.filter(|f| f.direction == Direction::Failover) else {
                    return Ok(Plan::Noop(
                        "nothing to fail back: no recorded failover of this record is pending".into(),
                    ));
                };
                if !same_sets(current, &f.after) {
                    return Err(ActionReport::refused(format!(
                        "the record changed since the failover at {} (by hand?): failing back would overwrite it; fail \
                         back by hand",
                        f.at.to_rfc3339()
                    ))
                    .severity(Severity::Warning)
                    .detail("expected", &f.after));
                }
                if let Some(hc) = &opts.health_check {
                    let (_, gaining) = traffic_shift(current, &f.before);
                    if !gaining.iter().any(|s| s.health_check_id.as_deref() == Some(hc)) {
                        return Ok(Plan::Noop(format!("health check {hc} is not the home side's: no failback")));
                    }
                }
                if opts.hysteresis {
                    let age = chrono::Utc::now().signed_duration_since(f.at).num_seconds().max(0) as u64;
                    if age < self.cfg.failback_after.as_secs() {
                        return Ok(Plan::Noop(format!(
                            "failed over only {age}s ago; automatic failback waits {}s \
                             (SELFHEAL_DNS_FAILBACK_AFTER_SECONDS) so it does not flap",
                            self.cfg.failback_after.as_secs()
                        )));
                    }
                }
                Ok(Plan::Change(f.before.clone()))
            }
        }
    }
}
