//! Standard alarms (issue #30, optional): the suite keeps, for each opted-in resource, the alarm that
//! reaches it, so that a resource opted in is a resource healed. Off unless `SELFHEAL_STANDARD_ALARMS`
//! is true; run by the drill's `keep-alarms` action (the stack's `KeepStandardAlarms` schedule).
//!
//! - Standalone instances: `StatusCheckFailed` (instance-healer); databases: no CPU sample for three
//!   minutes, per instance or per cluster writer (db-failover); Route 53 health checks:
//!   `HealthCheckStatus` (dns-failover, only where Route 53 publishes it: us-east-1). Instances of an
//!   Auto Scaling group and load balancers get none (their group's alarm, zone-evacuator's per-AZ
//!   alarms): told, not judged. The definitions are in [`spec`].
//! - Created when a resource is opted in, put again when someone changed it, deleted when its
//!   resource is no longer opted in or gone. Only alarms named `selfheal-std|…` AND tagged
//!   `selfheal:managed=standard-alarms` (which the suite writes on create) are ever changed: an alarm
//!   of that name without the tag is left alone and named, and no other alarm is read for changing.
//! - Nothing is deleted when the opted-in resources cannot be read, and no deletion at all when more
//!   than `SELFHEAL_STANDARD_ALARMS_MAX_DELETES` (default 10) would go at once.
//! - Each change goes through the guardrails (dry run, claim, the per-alarm cooldown: an alarm someone
//!   edits right after the suite wrote it is put back once per cooldown, never in a loop against a
//!   person) and is audited and published as its own decision (`create-alarm`, `update-alarm`, `delete-alarm`); the run ends with one
//!   `standard-alarms` decision that sums it up.

pub mod cloudwatch;
pub mod spec;

use serde::Serialize;
use serde_json::{json, Value};

use crate::clients::Aws;
use crate::config::Env;
use crate::context::Ctx;
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::Result;
use crate::guardrails::{effective_dry_run, ActionReport, ActionRequest};
use crate::preflight::{coverage, Deployment};
use crate::trigger::{Trigger, TriggerKind};
use spec::Change;

/// The action name of the run's summary decision.
pub const ACTION: &str = "standard-alarms";

/// The keeper's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `SELFHEAL_STANDARD_ALARMS` (default false): keep them at all.
    pub enabled: bool,
    /// `SELFHEAL_STANDARD_ALARMS_MAX_DELETES` (default 10, 0–1000): more deletions than this in one run
    /// and none is made.
    pub max_deletes: usize,
}

impl Settings {
    pub fn read(env: &mut Env) -> Self {
        Settings {
            enabled: env.bool("SELFHEAL_STANDARD_ALARMS", false),
            max_deletes: env.number("SELFHEAL_STANDARD_ALARMS_MAX_DELETES", 10, 0, 1000),
        }
    }
}

/// An alarm named like the suite's that the suite did not create, or could not tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftAlone {
    pub alarm: String,
    pub why: String,
}

/// Keeps the standard alarms of `d`'s account and region, reading and writing alarms with `cw` (the
/// region's CloudWatch), for the invocation `t`. Records each change and a summary; answers the
/// summary's details as JSON.
pub async fn keep(
    ctx: &Ctx,
    aws: &Aws,
    cw: &aws_sdk_cloudwatch::Client,
    d: &Deployment,
    settings: &Settings,
    t: &Trigger,
) -> Result<Value> {
    let dry_run = effective_dry_run(
        ctx.config.dry_run,
        match &t.kind {
            TriggerKind::Manual(m) => m.dry_run,
            _ => None,
        },
    );
    let summary = |outcome: Outcome, severity: Severity, reason: String| {
        Envelope::new(&ctx.config.function, ACTION, Target::new("stack", &d.stack), outcome, reason)
            .event(&t.event_id, t.kind.name())
            .dry_run(dry_run)
            .severity(severity)
    };
    if !settings.enabled {
        let env = summary(
            Outcome::Skipped,
            Severity::Info,
            "standard alarms are off (SELFHEAL_STANDARD_ALARMS is not true): nothing read, nothing changed".into(),
        );
        let env = ctx.record(env).await?;
        return Ok(json!({"outcome": env.outcome.as_str(), "reason": env.reason}));
    }
    let Some(topic) = d.alarms_topic.clone() else {
        let env = summary(
            Outcome::Failed,
            Severity::Warning,
            "the stack's alarms topic is unknown (SELFHEAL_DRILL_EVENTS_TOPIC_ARN): nothing changed".into(),
        );
        let env = ctx.record(env).await?;
        return Ok(json!({"outcome": env.outcome.as_str(), "reason": env.reason}));
    };
    // Read everything first: a resource list or alarm list that cannot be read changes nothing (an
    // empty answer would otherwise read as "every resource left").
    let read = async {
        let resources = coverage::opted_in(aws, d).await?;
        let existing = cloudwatch::existing(cw).await?;
        Ok::<_, crate::Error>((resources, existing))
    };
    let (resources, existing) = match read.await {
        Ok(r) => r,
        Err(e) => {
            let env = summary(Outcome::Failed, Severity::Warning, format!("cannot read, nothing changed: {e}"));
            let env = ctx.record(env).await?;
            return Ok(json!({"outcome": env.outcome.as_str(), "reason": env.reason}));
        }
    };
    let (wanted, not_kept) = spec::wanted(&resources, &topic, &d.region);
    let planned = spec::diff(&wanted, &existing);

    // Only the suite's own alarms are changed: check the tag of each one a change would touch.
    let mut changes = Vec::new();
    let mut left_alone = Vec::new();
    for c in planned {
        match c.existing_arn() {
            None => changes.push(c),
            Some(arn) => match cloudwatch::is_managed(cw, arn).await {
                Ok(true) => changes.push(c),
                Ok(false) => left_alone.push(LeftAlone {
                    alarm: c.name().to_string(),
                    why: format!(
                        "named like a standard alarm but not tagged {}={}: the suite did not create it (would {})",
                        spec::MANAGED_TAG.0,
                        spec::MANAGED_TAG.1,
                        c.action()
                    ),
                }),
                Err(e) => left_alone.push(LeftAlone {
                    alarm: c.name().to_string(),
                    why: format!("its tags cannot be read, so it is not known to be the suite's: {e}"),
                }),
            },
        }
    }
    let (changes, held_back) = spec::cap_deletes(changes, settings.max_deletes);

    let mut made = Vec::new();
    for c in &changes {
        let req = ActionRequest {
            action: c.action().to_string(),
            target: Target::new("cloudwatch-alarm", c.name()),
            event_id: format!("{}:{}", t.event_id, c.name()),
            trigger: t.kind.name().to_string(),
            dry_run,
            reason: c.why(),
        };
        let env = ctx.execute(req, apply(cw, c, dry_run)).await?;
        made.push(json!({"alarm": c.name(), "change": c.action(), "why": c.why(), "outcome": env.outcome.as_str(), "reason": env.reason}));
    }

    let count = |o: Outcome| made.iter().filter(|m| m["outcome"] == o.as_str()).count();
    let (acted, failed, refused) = (count(Outcome::Acted), count(Outcome::Failed), count(Outcome::Refused));
    let unchanged = wanted.len().saturating_sub(changes.iter().filter(|c| !matches!(c, Change::Delete { .. })).count());
    let mut reason = format!(
        "standard alarms of {} opted-in resource(s) in {}: {} in place, {} change(s){}",
        wanted.len(),
        d.region,
        unchanged,
        changes.len(),
        if dry_run {
            " (dry run: none made)".to_string()
        } else {
            format!(": {acted} made, {failed} failed, {refused} refused by the guardrails")
        }
    );
    if !left_alone.is_empty() {
        reason.push_str(&format!("; {} alarm(s) named like the suite's left alone", left_alone.len()));
    }
    if let Some(h) = &held_back {
        reason.push_str(&format!("; {h}"));
    }
    let severity = if failed > 0 || refused > 0 || held_back.is_some() || !left_alone.is_empty() {
        Severity::Warning
    } else {
        Severity::Info
    };
    let outcome = if failed > 0 {
        Outcome::Failed
    } else if acted > 0 {
        Outcome::Acted
    } else {
        Outcome::Skipped
    };
    let details = json!({
        "wanted": wanted.len(),
        "inPlace": unchanged,
        "changes": made,
        "leftAlone": left_alone,
        "notKept": not_kept,
        "heldBack": held_back,
    });
    tracing::info!(acted, failed, planned = changes.len(), dry_run, "standard alarms kept");
    let env = summary(outcome, severity, reason)
        .detail("changes", &details["changes"])
        .detail("leftAlone", &details["leftAlone"])
        .detail("notKept", &details["notKept"])
        .detail("heldBack", &details["heldBack"]);
    let env = ctx.record(env).await?;
    let mut answer = details;
    answer["outcome"] = json!(env.outcome.as_str());
    answer["reason"] = json!(env.reason);
    Ok(answer)
}

/// Makes one change, or says what it would do.
async fn apply(cw: &aws_sdk_cloudwatch::Client, c: &Change, dry_run: bool) -> Result<ActionReport> {
    if dry_run {
        return Ok(ActionReport::would(format!("would {}: {}", c.action(), c.why())));
    }
    match c {
        Change::Create { alarm } | Change::Update { alarm, .. } => {
            cloudwatch::put(cw, alarm).await?;
            Ok(ActionReport::acted(format!("{} {}: {}", c.action(), alarm.name, c.why())).detail("alarm", alarm))
        }
        Change::Delete { name, .. } => {
            cloudwatch::delete(cw, std::slice::from_ref(name)).await?;
            Ok(ActionReport::acted(format!("deleted {name}: {}", c.why())))
        }
    }
}
