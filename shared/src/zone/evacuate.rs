//! Evacuating one AZ of a place: the evacuation itself (created once, whoever gets there first), then
//! per opted-in load balancer and group the move [`super::plan`] decides, each under the guardrails,
//! and the writers moved through db-failover. One invocation at a time makes that pass over an
//! evacuation (the evacuation's lease): the others stand down and say who is moving it.

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use serde_json::json;

use super::arc::{self, Started};
use super::assess::Verdict;
use super::facts::{Kind, Resource, Shiftable};
use super::handler::Evacuator;
use super::plan::{plan, Move, Record, SubnetRecord};
use super::{actions, groups, lbs, writers};
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::Result;
use crate::guardrails::ActionReport;
use crate::ledger::{Evacuation, LeaseKeeper, LeaseResult};
use crate::stand_down::StandDown;
use crate::trigger::{parse_event, Trigger};

/// How many resources are moved at once: a place of up to 64 in one wave (at 16, the 34 of the
/// benchmark's account went in three, and the last shift waited for the first two). Throttling beyond
/// that is the SDK's adaptive retry's.
const PARALLEL: usize = 64;

/// The lease target of the pass over an evacuation of `az` (the ledger qualifies it by place).
fn pass_lease(az: &str) -> String {
    format!("zone-evacuation/{az}")
}

impl Evacuator {
    /// Every opted-in load balancer and group of the place, with the shifts ARC has in effect on each.
    pub async fn resources(&self) -> Result<Vec<Resource>> {
        let aws = &self.ctx.aws;
        let (elb, asg, ec2, arcc) = (aws.elbv2(), aws.autoscaling(), aws.ec2(), aws.arc());
        let (lbs, groups, managed) = futures::join!(
            lbs::opted_in(&elb, &self.ctx.config),
            groups::opted_in(&asg, &ec2, &self.ctx.config),
            arc::managed_all(&arcc)
        );
        let managed = managed?;
        let mut out = lbs?;
        for g in groups? {
            let mut r = g.resource;
            // The policy is the word on a group; an answer without it (moto) leaves ARC's to decide.
            if g.policy.is_none() && managed.contains_key(&r.arn) {
                r.shiftable = Shiftable::Yes;
            }
            out.push(r);
        }
        for r in &mut out {
            if let Some(m) = managed.get(&r.arn) {
                r.shifts = m.shifts.clone();
            }
        }
        Ok(out)
    }

    /// Starts (or keeps up) the evacuation of `az`.
    pub(super) async fn evacuate(
        &self,
        t: &Trigger,
        az: &str,
        existing: Option<Evacuation>,
        verdict: &Verdict,
        now: DateTime<Utc>,
    ) -> Result<Vec<Envelope>> {
        let dry_run = self.dry_run(t);
        let mut out = Vec::new();
        let map = self.az_map().await?;
        let Some(az_id) = map.id_of(az).map(str::to_string) else {
            let req =
                self.request(t, actions::EVACUATE, self.az_target(az), t.event_id.clone(), format!("evacuate {az}"));
            let why =
                format!("{az} is not an AZ of {}: the signal names an AZ the account does not have", self.place_name());
            return Ok(vec![self.ctx.record(self.ctx.envelope(&req, Outcome::Refused, why)).await?]);
        };
        let evidence = match verdict {
            Verdict::One { impaired } if impaired.az == az => impaired.evidence.join("; "),
            _ => "the evacuation in progress".into(),
        };
        let reason = format!("{az} ({az_id}) is impaired in {}: {evidence}", self.place_name());
        let (evac, created) = match existing {
            Some(e) => (e, false),
            None if dry_run => (
                Evacuation {
                    az: az.to_string(),
                    az_id: az_id.clone(),
                    id: format!("dry-run:{az_id}:{}", t.event_id),
                    active: true,
                    started_at: now,
                    reason: reason.clone(),
                    clear_since: None,
                    resources: Default::default(),
                },
                true,
            ),
            None => self.ctx.ledger.start_evacuation(self.place_keys(), az, &az_id, &reason, now).await?,
        };
        if created {
            let req = self.request(t, actions::EVACUATE, self.az_target(&az_id), evac.id.clone(), reason.clone());
            if !dry_run {
                let cfg = &self.ctx.config;
                let group = format!("zone-evacuations#{}", req.target.group.clone().unwrap_or_default());
                if !self.ctx.ledger.take_rate_slot(&group, cfg.rate_window, cfg.rate_limit).await? {
                    self.ctx.ledger.end_evacuation(az, &evac.id, now).await?;
                    let why = format!(
                        "rate limit: {} evacuations in {} in the last {}s; not evacuating {az} ({az_id}) — a person must look",
                        cfg.rate_limit,
                        self.place_name(),
                        cfg.rate_window.as_secs()
                    );
                    let env = self.ctx.envelope(&req, Outcome::Refused, why).severity(Severity::Critical);
                    return Ok(vec![self.ctx.record(env).await?]);
                }
            }
            let outcome = if dry_run { Outcome::DryRun } else { Outcome::Acted };
            let what = if dry_run { "would evacuate" } else { "evacuating" };
            let env = self
                .ctx
                .envelope(&req, outcome, format!("{what} {az} ({az_id}) of {}: {evidence}", self.place_name()))
                .severity(Severity::Critical)
                .detail("evacuation", &evac.id)
                .detail("azId", &az_id)
                .detail("azName", az)
                .detail("assessment", verdict);
            tracing::error!(az, az_id = %az_id, evacuation = %evac.id, place = %self.place_name(), "evacuating");
            out.push(self.ctx.record(env).await?);
        }

        // One pass at a time over the evacuation. The signals of an impaired AZ come in storms (every
        // per-AZ alarm of every load balancer there, in the same minute), and each invocation would
        // otherwise list the place and plan every resource again, only to find each one claimed by the
        // first pass and record (and publish) a duplicate decision for it. A pass that dies leaves its
        // lease to expire; the next signal or the schedule's re-check takes it over.
        let lease = if dry_run {
            None
        } else {
            // Unique per attempt: a duplicate delivery of the same event must not share the pass.
            let attempt = format!("{} {}", t.event_id, &uuid::Uuid::new_v4().simple().to_string()[..8]);
            let cfg = &self.ctx.config;
            match self
                .ctx
                .ledger
                .take_lease(&pass_lease(az), &cfg.function, actions::EVACUATE, &attempt, cfg.lease)
                .await?
            {
                LeaseResult::Taken(lease) => Some(lease),
                LeaseResult::Held(holder) => {
                    tracing::info!(az, evacuation = %evac.id, holder = %holder.describe(), "evacuation pass in progress elsewhere");
                    let req = self.request(t, actions::EVACUATE, self.az_target(&az_id), t.event_id.clone(), reason);
                    let why = format!(
                        "the evacuation of {az} ({az_id}) of {} is being carried out by {}: this signal is recorded, \
                         the moves are left to that pass",
                        self.place_name(),
                        holder.describe()
                    );
                    let env = self
                        .ctx
                        .envelope(&req, Outcome::Skipped, why)
                        .severity(Severity::Info)
                        .detail("evacuation", &evac.id)
                        .detail("azId", &az_id)
                        .detail("azName", az)
                        .detail("leaseHolder", holder.describe());
                    out.push(self.ctx.record(env).await?);
                    return Ok(out);
                }
            }
        };
        let keeper = lease.clone().map(|l| LeaseKeeper::start(self.ctx.ledger.clone(), l, self.ctx.config.lease));
        let moved = self.pass(t, &evac, dry_run, now).await;
        let lost = keeper.map(LeaseKeeper::stop).unwrap_or(false);
        if let Some(lease) = &lease {
            if lost {
                tracing::warn!(az, evacuation = %evac.id, "the evacuation pass's lease expired mid-pass and was taken over");
            } else if let Err(e) = self.ctx.ledger.release_lease(lease).await {
                tracing::warn!(az, evacuation = %evac.id, error = %e, "evacuation pass lease not released: it expires on its own");
            }
        }
        out.extend(moved?);
        Ok(out)
    }

    /// One pass over the evacuation: every resource's move, then the writers.
    async fn pass(&self, t: &Trigger, evac: &Evacuation, dry_run: bool, now: DateTime<Utc>) -> Result<Vec<Envelope>> {
        let mut out = Vec::new();
        let mut resources = self.resources().await?;
        // Groups first: theirs is the longer way to a shift (the capacity raise comes before it), and
        // the instances the raise launches take minutes, so they start as early as possible.
        resources.sort_by_key(|r| r.kind != Kind::AutoScalingGroup);
        let moved: Vec<Result<Option<Envelope>>> = stream::iter(resources)
            .map(|r| async move { Box::pin(self.move_resource(t, evac, r, dry_run, now)).await })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for m in moved {
            if let Some(env) = m? {
                out.push(env);
            }
        }
        if self.cfg.move_writers {
            out.extend(self.move_writers(t, evac, dry_run).await?);
        }
        Ok(out)
    }

    /// Records a refusal once per evacuation, resource and reason (a storm of signals re-plans each
    /// time; the page is sent once).
    async fn once(&self, evac: &Evacuation, arn: &str, key: &str, dry_run: bool) -> Result<bool> {
        if dry_run {
            return Ok(true);
        }
        self.ctx.ledger.mark_once(&format!("zone-once#{}#{arn}#{key}", evac.id)).await
    }

    async fn move_resource(
        &self,
        t: &Trigger,
        evac: &Evacuation,
        r: Resource,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<Envelope>> {
        let m = plan(&r, &evac.az, &evac.az_id, &self.cfg, now);
        let target = Target::new(r.kind.target_kind(), &r.arn);
        let (az, az_id, name) = (evac.az.as_str(), evac.az_id.as_str(), r.name.as_str());
        let req = |action: &str, event: String, reason: String| self.request(t, action, target.clone(), event, reason);
        let stamp = |env: Envelope| {
            env.detail("evacuation", &evac.id)
                .detail("azId", az_id)
                .detail("azName", az)
                .detail("resource", name)
                .detail("move", &m)
        };
        match &m {
            Move::NotInAz | Move::Keep { .. } => Ok(None),
            Move::StandDown { owner, shift_id, away_from } => {
                if !self.once(evac, &r.arn, owner.recovery(), dry_run).await? {
                    return Ok(None);
                }
                let sd = StandDown::new(
                    owner.recovery(),
                    format!(
                        "{name}: ARC has a {} in effect away from {away_from}{}: standing down, never fighting ARC",
                        owner.recovery(),
                        shift_id.as_deref().map(|i| format!(" (shift {i})")).unwrap_or_default()
                    ),
                    json!({"owner": owner, "shiftId": shift_id, "awayFrom": away_from}),
                );
                let rq = req(actions::SHIFT, evac.id.clone(), format!("evacuate {az}"));
                Ok(Some(self.ctx.record(stamp(sd.envelope(&self.ctx, &rq))).await?))
            }
            Move::OtherAz { away_from, .. } => {
                if !self.once(evac, &r.arn, "other-az", dry_run).await? {
                    return Ok(None);
                }
                let why = format!(
                    "{name} is already shifted away from {away_from} by selfheal; at most one AZ per resource, so not also \
                     from {az_id}"
                );
                let rq = req(actions::SHIFT, evac.id.clone(), format!("evacuate {az}"));
                let env = self.ctx.envelope(&rq, Outcome::Refused, why).severity(Severity::Critical);
                Ok(Some(self.ctx.record(stamp(env)).await?))
            }
            Move::NotShiftable { why } | Move::Refuse { why } | Move::NoHeadroom { why, .. } => {
                let key =
                    if matches!(m, Move::NotShiftable { .. }) { "not-shiftable".to_string() } else { why.clone() };
                if !self.once(evac, &r.arn, &key, dry_run).await? {
                    return Ok(None);
                }
                let text = match &m {
                    Move::NotShiftable { .. } => format!(
                        "{name} cannot be shifted away from {az} ({az_id}): {why}; it keeps sending traffic there (the \
                         readiness sweep can enable zonal shift)"
                    ),
                    _ => format!("not shifting {name} away from {az} ({az_id}): {why}"),
                };
                let rq = req(actions::SHIFT, evac.id.clone(), format!("evacuate {az}"));
                let mut env = self.ctx.envelope(&rq, Outcome::Refused, text).severity(Severity::Critical);
                if let Move::NoHeadroom { desired, in_service_in_az, needs, max, .. } = &m {
                    let numbers =
                        json!({"desired": desired, "inServiceInAz": in_service_in_az, "needs": needs, "max": max});
                    env = env.detail("capacity", numbers);
                }
                Ok(Some(self.ctx.record(stamp(env)).await?))
            }
            Move::Extend { shift_id } => {
                let bucket = now.timestamp() / (self.cfg.extend_before.as_secs().max(60) as i64);
                let rq =
                    req(actions::EXTEND, format!("{}:extend:{bucket}", evac.id), format!("{az} is still impaired"));
                let (arcc, id, expires_in) = (self.ctx.aws.arc(), shift_id.clone(), self.cfg.expires_in());
                let work = async move {
                    if dry_run {
                        return Ok(ActionReport::would(format!("would extend shift {id} of {name} by {expires_in}")));
                    }
                    let expiry = arc::extend(&arcc, &id, &expires_in).await?;
                    Ok(ActionReport::acted(format!(
                        "extended shift {id} of {name} away from {az_id}: {az} is still impaired; it now expires {}",
                        expiry.map(|e| e.to_rfc3339()).unwrap_or_else(|| "-".into())
                    ))
                    .detail("shiftId", &id))
                };
                Ok(Some(stamp(self.ctx.execute(rq, work).await?)))
            }
            Move::Shift { raise } => {
                let rq = req(actions::SHIFT, evac.id.clone(), format!("{az} ({az_id}) is impaired"));
                let (arcc, asg) = (self.ctx.aws.arc(), self.ctx.aws.autoscaling());
                let (expires_in, comment) = (self.cfg.expires_in(), arc::comment(&evac.id));
                let ledger = self.ctx.ledger.clone();
                let (arn, kind, raise) = (r.arn.clone(), r.kind, *raise);
                let work = async move {
                    let capacity = raise.map(|x| {
                        format!(
                            "; desired capacity {} → {} first ({} in-service in {az}, max {})",
                            x.from, x.to, x.lost, x.max
                        )
                    });
                    if dry_run {
                        return Ok(ActionReport::would(format!(
                            "would shift {name} away from {az} ({az_id}) for {expires_in}{}",
                            capacity.clone().unwrap_or_default()
                        ))
                        .detail("capacity", raise));
                    }
                    let mut rec = Record { kind: Some(kind), name: name.to_string(), ..Record::default() };
                    if let Some(x) = raise {
                        // The raise and its record at once (one wait fewer before the shift): a record
                        // of a raise that did not happen lowers nothing at the end, as the group's
                        // desired capacity is not the raised one; it is forgotten all the same.
                        rec.capacity = Some(x);
                        let record = to_json(&rec);
                        let (raised, noted) = futures::join!(
                            groups::set_desired(&asg, name, x.to),
                            ledger.note_evacuated(az, &evac.id, &arn, &record)
                        );
                        if let Err(e) = raised {
                            if noted.is_ok() {
                                ledger.forget_evacuated(az, &evac.id, &arn).await?;
                            }
                            return Err(e);
                        }
                        noted?;
                    }
                    match arc::start(&arcc, &arn, az_id, &expires_in, &comment).await? {
                        Started::New { id, expiry } => {
                            rec.shift_id = Some(id.clone());
                            ledger.note_evacuated(az, &evac.id, &arn, &to_json(&rec)).await?;
                            Ok(ActionReport::acted(format!(
                                "shifted {name} away from {az} ({az_id}) until {}{}",
                                expiry.map(|e| e.to_rfc3339()).unwrap_or_else(|| "-".into()),
                                capacity.unwrap_or_default()
                            ))
                            .detail("shiftId", id)
                            .detail("capacity", raise))
                        }
                        Started::Ours { id } => {
                            rec.shift_id = Some(id.clone());
                            ledger.note_evacuated(az, &evac.id, &arn, &to_json(&rec)).await?;
                            Ok(ActionReport::acted(format!(
                                "{name} is shifted away from {az} ({az_id}) by this evacuation's shift {id} (ARC had it \
                                 already: an earlier answer was lost){}",
                                capacity.unwrap_or_default()
                            ))
                            .detail("shiftId", id)
                            .detail("lostAnswer", true)
                            .detail("capacity", raise))
                        }
                        Started::Refused { why } => {
                            let mut undone = String::new();
                            if let Some(x) = raise {
                                groups::set_desired(&asg, name, x.from).await?;
                                ledger.forget_evacuated(az, &evac.id, &arn).await?;
                                undone = format!("; desired capacity put back to {}", x.from);
                            }
                            Ok(ActionReport::refused(format!(
                                "ARC did not shift {name} away from {az_id}: {why}{undone}"
                            ))
                            .severity(Severity::Critical))
                        }
                    }
                };
                Ok(Some(stamp(self.ctx.execute(rq, work).await?)))
            }
            Move::RemoveSubnets { remove, keep } => {
                let rq = req(actions::REMOVE_SUBNETS, evac.id.clone(), format!("{az} ({az_id}) is impaired"));
                let asg = self.ctx.aws.autoscaling();
                let ledger = self.ctx.ledger.clone();
                let original = r.group.as_ref().map(|g| g.subnets.clone()).unwrap_or_default();
                let (arn, remove, keep) = (r.arn.clone(), remove.clone(), keep.clone());
                let work = async move {
                    let what = format!(
                        "{name} cannot be shifted by ARC: its subnets in {az} ({}) removed, {} kept",
                        remove.join(","),
                        keep.join(",")
                    );
                    if dry_run {
                        return Ok(ActionReport::would(format!("would have {what}")));
                    }
                    // Recorded first: an invocation that dies after the change still leaves the way back.
                    let rec = Record {
                        kind: Some(Kind::AutoScalingGroup),
                        name: name.to_string(),
                        subnets: Some(SubnetRecord { original: original.clone(), removed: remove.clone() }),
                        ..Record::default()
                    };
                    ledger.note_evacuated(az, &evac.id, &arn, &to_json(&rec)).await?;
                    groups::set_subnets(&asg, name, &keep).await?;
                    Ok(ActionReport::acted(what).detail("originalSubnets", &original).detail("removedSubnets", &remove))
                };
                Ok(Some(stamp(self.ctx.execute(rq, work).await?)))
            }
        }
    }

    /// The writers in the AZ, each through db-failover's own handler (once per evacuation).
    async fn move_writers(&self, t: &Trigger, evac: &Evacuation, dry_run: bool) -> Result<Vec<Envelope>> {
        let found = writers::writers_in(&self.ctx.aws.rds(), &evac.az, &self.ctx.config).await?;
        let mut out = Vec::new();
        for w in found {
            let key = format!("writer:{}", w.id);
            if evac.resources.contains_key(&key) {
                continue;
            }
            let reason = format!(
                "zone-evacuator: {} ({}) is impaired; moving the writer out (evacuation {})",
                evac.az, evac.az_id, evac.id
            );
            let request = writers::failover_request(&w, &evac.id, &reason, self.place_keys(), dry_run);
            let trigger = match parse_event(&request) {
                Ok(mut v) if !v.is_empty() => v.remove(0),
                Ok(_) | Err(_) => continue,
            };
            let envs = Box::pin(self.db.handle_trigger(&trigger)).await?;
            if !dry_run {
                let rec = json!({"writer": w.id, "cluster": w.cluster, "outcomes": envs.iter().map(|e| e.outcome.as_str()).collect::<Vec<_>>()});
                self.ctx.ledger.note_evacuated(&evac.az, &evac.id, &key, &rec.to_string()).await?;
            }
            tracing::info!(writer = %w.id, evacuation = %evac.id, via = %t.event_id, "writer moved through db-failover");
            out.extend(envs);
        }
        Ok(out)
    }
}

pub(super) fn to_json(rec: &Record) -> String {
    serde_json::to_string(rec).unwrap_or_else(|_| "{}".into())
}
