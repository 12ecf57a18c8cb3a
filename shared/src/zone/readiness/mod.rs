//! Readiness: a sweep of what an evacuation needs in the trigger's place (the hub's for the schedule
//! or a manual request without an account; the fleet fan-out is the caller's), reported in one
//! decision (action `readiness`):
//! - every opted-in load balancer: zonal shift enabled (`zonal_shift.config.enabled`), in two AZs or
//!   more, its per-AZ alarms present ([`super::alarms`], `DescribeAlarms` with the `selfheal-az|`
//!   prefix), ARC's zonal autoshift status and practice-run configuration (told, never judged);
//! - every opted-in Auto Scaling group: zonal shift enabled (its `AvailabilityZoneImpairmentPolicy`,
//!   or ARC manages it when the answer has no policy), in two AZs or more, and the headroom to lose
//!   one AZ: `max >= desired + the largest in-service count of one AZ` (the numbers reported).
//!
//! The judgement of each resource is a pure function over what was read ([`judge_lb`],
//! [`judge_group`]), and so is the plan of safe fixes ([`plan_lb`], [`plan_group`]): set
//! `zonal_shift.config.enabled=true`, create the missing per-AZ alarms, enable the group's
//! `AvailabilityZoneImpairmentPolicy` (`ZonalShiftEnabled`, `IgnoreUnhealthy`). A group's maximum is
//! never raised (a cost decision: reported). Fixes are made only when `SELFHEAL_ZONE_READINESS_FIX`
//! is true AND the invocation asks (`params.fix: true`) ([`gate`]); each goes through the guardrails
//! and is audited, and a dry run only says what it would do.
//!
//! A part that cannot be read (CloudWatch in an emulator, ARC unreachable) is reported as unchecked
//!
//! `judge`: the pure part (findings, fix plan, gate, summary); this file: reading, fixing, reporting.

mod judge;

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};
use serde_json::json;

pub use judge::*;

use super::alarms::{self, Thresholds};
use super::arc;
use super::facts::{GroupFacts, Kind, Resource};
use super::handler::Evacuator;
use super::{actions, groups, lbs};
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::Result;
use crate::guardrails::ActionReport;
use crate::trigger::Trigger;

/// How many resources are read or fixed at once.
const PARALLEL: usize = 8;

impl Evacuator {
    /// Runs the readiness sweep in this evacuator's place (already placed where the trigger is about);
    /// `fix` is the invocation's `params.fix`.
    pub(super) async fn readiness(&self, t: &Trigger, fix: bool) -> Result<Vec<Envelope>> {
        sweep(self, t, fix).await
    }
}

async fn sweep(ev: &Evacuator, t: &Trigger, fix: bool) -> Result<Vec<Envelope>> {
    let aws = &ev.ctx.aws;
    let (elb, asg, ec2, arcc, cw) = (aws.elbv2(), aws.autoscaling(), aws.ec2(), aws.arc(), aws.cloudwatch());
    let thresholds = Thresholds::default();
    let (lbs_read, groups_read, managed, present) = futures::join!(
        lbs::opted_in(&elb, &ev.ctx.config),
        groups::opted_in(&asg, &ec2, &ev.ctx.config),
        arc::managed_all(&arcc),
        alarms::existing(&cw)
    );
    let (lbs_read, groups_read) = (lbs_read?, groups_read?);
    let managed = seen(managed);
    let present = seen(present);
    if let Seen::Unchecked(e) = &present {
        tracing::warn!(place = %ev.place_name(), error = %e, "per-AZ alarms unchecked");
    }
    let arc_of = |arn: &str| match &managed {
        Seen::Read(m) => Seen::Read(m.get(arn).map(ArcConfig::from)),
        Seen::Unchecked(e) => Seen::Unchecked(e.clone()),
    };

    let lb_facts: Vec<LbFacts> = stream::iter(lbs_read)
        .map(|r: Resource| {
            let (elb, present, arc) = (&elb, present.clone(), arc_of(&r.arn));
            async move {
                let tgs = seen(lbs::target_groups(elb, &r.arn).await);
                LbFacts {
                    arn: r.arn,
                    name: r.name,
                    azs: r.azs,
                    shiftable: r.shiftable,
                    target_groups: tgs,
                    alarms: present,
                    arc,
                }
            }
        })
        .buffered(PARALLEL)
        .collect()
        .await;
    let group_facts: Vec<GroupReadiness> = groups_read
        .into_iter()
        .map(|g| GroupReadiness {
            arc: arc_of(&g.resource.arn),
            arn: g.resource.arn,
            name: g.resource.name,
            azs: g.resource.azs,
            policy: g.policy,
            capacity: g.resource.group.unwrap_or_else(|| GroupFacts {
                desired: 0,
                min: 0,
                max: 0,
                in_service: BTreeMap::new(),
                subnets: vec![],
                subnet_azs: BTreeMap::new(),
            }),
        })
        .collect();

    let mut reports = Vec::new();
    let mut planned: Vec<(usize, Kind, Fix)> = Vec::new();
    for f in &lb_facts {
        let findings = judge_lb(f, &thresholds);
        planned.extend(plan_lb(f, &thresholds).into_iter().map(|x| (reports.len(), Kind::LoadBalancer, x)));
        reports.push(ResourceReport {
            kind: Kind::LoadBalancer,
            name: f.name.clone(),
            arn: f.arn.clone(),
            ready: is_ready(&findings),
            findings,
            fixes: vec![],
        });
    }
    for g in &group_facts {
        let findings = judge_group(g);
        planned.extend(plan_group(g).into_iter().map(|x| (reports.len(), Kind::AutoScalingGroup, x)));
        reports.push(ResourceReport {
            kind: Kind::AutoScalingGroup,
            name: g.name.clone(),
            arn: g.arn.clone(),
            ready: is_ready(&findings),
            findings,
            fixes: vec![],
        });
    }

    let dry_run = ev.dry_run(t);
    let gate = gate(fix, ev.cfg.readiness_fix, dry_run);
    let mut out = Vec::new();
    if matches!(gate, FixGate::Apply | FixGate::DryRun) {
        let done: Vec<Result<(usize, Fix, Envelope)>> = stream::iter(planned.iter().cloned())
            .map(|(i, kind, x)| {
                let r = &reports[i];
                let (arn, name) = (r.arn.clone(), r.name.clone());
                let (elb, asg, cw) = (elb.clone(), asg.clone(), cw.clone());
                async move {
                    let what = x.describe(&name);
                    let req = ev.request(
                        t,
                        x.action(),
                        Target::new(kind.target_kind(), &arn),
                        t.event_id.clone(),
                        format!("readiness: {what}"),
                    );
                    let work = {
                        let x = x.clone();
                        async move {
                            if dry_run {
                                return Ok(ActionReport::would(format!("would {what}")));
                            }
                            apply(&x, &elb, &asg, &cw, &arn, &name, what).await
                        }
                    };
                    let env = ev.ctx.execute(req, work).await?;
                    Ok((i, x, env.detail("readiness", true)))
                }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for d in done {
            let (i, x, env) = d?;
            reports[i].fixes.push(json!({"fix": x.action(), "outcome": env.outcome.as_str(), "reason": env.reason}));
            out.push(env);
        }
    }

    let summary = summarize(&reports);
    let acted = out.iter().any(|e| e.outcome == Outcome::Acted);
    let not_ready: Vec<String> = reports
        .iter()
        .filter(|r| !r.ready)
        .map(|r| {
            let why: Vec<&str> = r.findings.iter().filter(|f| f.status == Status::Fail).map(|f| f.check).collect();
            format!("{} ({})", r.name, why.join(", "))
        })
        .collect();
    let fixes_text = match gate {
        FixGate::NotAsked if planned.is_empty() => String::new(),
        FixGate::NotAsked => format!("; {} safe fix(es) available (params.fix: true)", planned.len()),
        FixGate::NotAllowed => {
            format!("; {} safe fix(es) asked for but not made: SELFHEAL_ZONE_READINESS_FIX is not true", planned.len())
        }
        FixGate::DryRun => format!("; dry run: {} fix(es) would be made", planned.len()),
        FixGate::Apply => format!("; fixes: {} made, {} failed", summary.fixes_made, summary.fixes_failed),
    };
    let reason = format!(
        "readiness of {}: {} of {} ready{}{}{}",
        ev.place_name(),
        summary.ready,
        reports.len(),
        if not_ready.is_empty() { String::new() } else { format!("; not ready: {}", not_ready.join("; ")) },
        if summary.unchecked > 0 { format!("; {} with a part unchecked", summary.unchecked) } else { String::new() },
        fixes_text
    );
    let region = ev.ctx.place.region.clone().or_else(|| ev.ctx.home_region()).unwrap_or_else(|| "home".into());
    let req = ev.request(t, actions::READINESS, Target::new("region", region), t.event_id.clone(), "readiness".into());
    let severity = if summary.not_ready > 0 || summary.fixes_failed > 0 || summary.unchecked > 0 {
        Severity::Warning
    } else {
        Severity::Info
    };
    let env = ev
        .ctx
        .envelope(&req, if acted { Outcome::Acted } else { Outcome::Skipped }, reason)
        .severity(severity)
        .detail("summary", summary)
        .detail("resources", &reports)
        .detail(
            "fix",
            json!({"asked": fix, "allowed": ev.cfg.readiness_fix, "dryRun": dry_run, "planned": planned.len()}),
        )
        .detail("thresholds", &thresholds);
    tracing::info!(place = %ev.place_name(), ready = summary.ready, not_ready = summary.not_ready, "readiness");
    out.push(ev.ctx.record(env).await?);
    Ok(out)
}

/// Makes one fix (live).
async fn apply(
    x: &Fix,
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    asg: &aws_sdk_autoscaling::Client,
    cw: &aws_sdk_cloudwatch::Client,
    arn: &str,
    name: &str,
    what: String,
) -> Result<ActionReport> {
    match x {
        Fix::EnableLbZonalShift => {
            lbs::enable_zonal_shift(elb, arn).await?;
            Ok(ActionReport::acted(format!("{what}: ARC can now shift it")))
        }
        Fix::EnableGroupZonalShift => {
            groups::enable_zonal_shift(asg, name).await?;
            Ok(ActionReport::acted(what))
        }
        Fix::CreateAlarms(specs) => {
            let mut created = Vec::new();
            let mut failed = Vec::new();
            for s in specs {
                match alarms::put(cw, s).await {
                    Ok(()) => created.push(s.name.clone()),
                    Err(e) => failed.push(format!("{}: {e}", s.name)),
                }
            }
            let report = if failed.is_empty() {
                ActionReport::acted(format!("created {} per-AZ alarm(s) of {name}", created.len()))
            } else {
                ActionReport::failed(format!(
                    "created {} of {} per-AZ alarm(s) of {name}; failed: {}",
                    created.len(),
                    specs.len(),
                    failed.join("; ")
                ))
            };
            Ok(report.detail("created", &created).detail("failedAlarms", &failed))
        }
    }
}
