//! The dns-failover handler: each trigger (health-check alarm, manual invocation,
//! schedule sweep of pending failbacks) turned into a flip of a managed record.

use serde_json::Value;

use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::{Error, Result};
use crate::guardrails::{effective_dry_run, ActionRequest};
use crate::trigger::{Alarm, AlarmState, Manual, Trigger, TriggerKind};

use super::config::{normalise_name, RecordRef};
use super::failover::DnsFailover;
use super::flip::FlipOptions;
use super::history::last_flip;
use super::plan::Direction;
use super::route53::{list_record, resolve_zone};
use super::{FUNCTION, TARGET_KIND};

/// What dns-failover takes, for the message naming an event that is not for it.
pub const HANDLES: &str = "CloudWatch alarms on Route 53 health checks (a HealthCheckId dimension), schedules (the \
     failback sweep), and manual \"failover\" / \"failback\" invocations";

/// What a trigger asks of dns-failover, read without a call: the health check an alarm is about, a
/// manual request, or the failback sweep (a schedule).
#[derive(Debug)]
pub enum Intake<'a> {
    Alarm { alarm: &'a Alarm, health_check: &'a str },
    Manual(&'a Manual),
    Sweep,
}

/// Reads a trigger into what it asks; `Err` ([`Error::UnsupportedTrigger`]) for one dns-failover does
/// not take, such as an alarm without a `HealthCheckId` dimension. Pure.
pub fn intake(t: &Trigger) -> Result<Intake<'_>> {
    match &t.kind {
        TriggerKind::Alarm(a) => match a.dimension("HealthCheckId") {
            Some(hc) => Ok(Intake::Alarm { alarm: a, health_check: hc }),
            None => Err(Error::UnsupportedTrigger {
                function: FUNCTION,
                event: format!("{}, which has no HealthCheckId dimension", t.describe()),
                handles: HANDLES,
            }),
        },
        TriggerKind::Manual(m) => Ok(Intake::Manual(m)),
        TriggerKind::Schedule { .. } => Ok(Intake::Sweep),
        _ => Err(Error::UnsupportedTrigger { function: FUNCTION, event: t.describe(), handles: HANDLES }),
    }
}

impl DnsFailover {
    /// Lambda entry: parse, decide, act, record; errors when any action failed.
    pub async fn handle(&self, payload: &Value) -> Result<Value> {
        crate::lambda::handle_each(&self.ctx, payload, |t| async move { self.handle_trigger(&t).await }).await
    }

    /// Handles one trigger (the drill calls this directly).
    pub async fn handle_trigger(&self, t: &Trigger) -> Result<Vec<Envelope>> {
        // The managed records are the hub's own; an event from an account the hub does not serve is
        // still refused, so a stray or forged event cannot move traffic.
        if let Some(refusal) = self.ctx.refuse_unless_served(t).await? {
            return Ok(vec![refusal]);
        }
        match intake(t)? {
            Intake::Alarm { alarm, health_check } => self.on_alarm(t, alarm, health_check).await,
            Intake::Manual(m) => Ok(vec![self.on_manual(t, m).await?]),
            Intake::Sweep => self.sweep_failbacks(t).await,
        }
    }

    /// Flips `record` in `direction` (for db-failover and the drill): the same guards as any trigger,
    /// without the alarm re-check of the primary and without failback hysteresis.
    pub async fn flip(
        &self,
        record: &RecordRef,
        direction: Direction,
        trigger: &Trigger,
        dry_run: bool,
    ) -> Result<Envelope> {
        let dry_run = effective_dry_run(self.ctx.config.dry_run, Some(dry_run));
        self.run_flip(record, direction, trigger, dry_run, FlipOptions::default()).await
    }

    async fn on_alarm(&self, t: &Trigger, a: &Alarm, hc: &str) -> Result<Vec<Envelope>> {
        let r53 = self.ctx.aws.route53();
        let mut found = None;
        for r in &self.cfg.records {
            let zone_id = resolve_zone(&r53, &r.zone).await?;
            let sets = list_record(&r53, &zone_id, &r.name, &r.rtype).await?;
            if let Some(s) = sets.iter().find(|s| s.health_check_id.as_deref() == Some(hc)) {
                found = Some((r.clone(), s.clone()));
                break;
            }
        }
        let dry_run = self.ctx.config.dry_run;
        let Some((record, set)) = found else {
            let env = Envelope::new(
                FUNCTION,
                "failover",
                Target::new("route53-health-check", hc),
                Outcome::Skipped,
                format!("alarm {}: no record in SELFHEAL_DNS_RECORDS uses health check {hc}", a.name),
            )
            .event(&t.event_id, t.kind.name())
            .dry_run(dry_run);
            return Ok(vec![self.ctx.record(env).await?]);
        };
        let opts = |recheck, hysteresis| FlipOptions {
            health_check: Some(hc.to_string()),
            recheck_primary: recheck,
            hysteresis,
            reason: Some(format!("alarm {} is {:?}: {}", a.name, a.state, a.reason)),
        };
        let env = match a.state {
            AlarmState::Alarm if set.is_active() => {
                self.run_flip(&record, Direction::Failover, t, dry_run, opts(true, false)).await?
            }
            AlarmState::Alarm => {
                let req = self.request(&record, "-", Direction::Failover, t, dry_run, "");
                let env = self
                    .ctx
                    .envelope(
                        &req,
                        Outcome::Skipped,
                        format!(
                        "health check {hc} of {} is failing but it takes no traffic now: nothing to move, the standby \
                         capacity is lost",
                        set.describe()
                    ),
                    )
                    .severity(Severity::Warning);
                self.ctx.record(env).await?
            }
            AlarmState::Ok if self.cfg.auto_failback => {
                self.run_flip(&record, Direction::Failback, t, dry_run, opts(false, true)).await?
            }
            AlarmState::Ok | AlarmState::InsufficientData => {
                let req = self.request(&record, "-", Direction::Failback, t, dry_run, "");
                let why = if a.state == AlarmState::Ok {
                    "automatic failback is off (SELFHEAL_DNS_AUTO_FAILBACK=false)".to_string()
                } else {
                    format!("alarm {} has insufficient data: no decision", a.name)
                };
                self.ctx.record(self.ctx.envelope(&req, Outcome::Skipped, why)).await?
            }
        };
        Ok(vec![env])
    }

    async fn on_manual(&self, t: &Trigger, m: &Manual) -> Result<Envelope> {
        let direction = Direction::parse(&m.action).ok_or_else(|| {
            Error::malformed("manual", format!("dns-failover actions are failover and failback, got {:?}", m.action))
        })?;
        let name = m
            .target
            .as_deref()
            .map(normalise_name)
            .ok_or_else(|| Error::malformed("manual", "target (the record name) is required"))?;
        let zone = m.params.get("zone").and_then(Value::as_str);
        let rtype = m.params.get("type").and_then(Value::as_str).map(str::to_ascii_uppercase);
        let matches: Vec<&RecordRef> = self
            .cfg
            .records
            .iter()
            .filter(|r| r.name == name)
            .filter(|r| zone.is_none_or(|z| r.zone == z || normalise_name(&r.zone) == normalise_name(z)))
            .filter(|r| rtype.as_deref().is_none_or(|ty| r.rtype == ty))
            .collect();
        let dry_run = effective_dry_run(self.ctx.config.dry_run, m.dry_run);
        let record = match matches.as_slice() {
            [one] => (*one).clone(),
            [] => {
                let env = Envelope::new(
                    FUNCTION,
                    direction.as_str(),
                    Target::new(TARGET_KIND, &name),
                    Outcome::Refused,
                    format!("{name} is not a managed record (not in SELFHEAL_DNS_RECORDS): not opted in"),
                )
                .event(&t.event_id, t.kind.name())
                .dry_run(dry_run);
                return self.ctx.record(env).await;
            }
            many => {
                return Err(Error::malformed(
                    "manual",
                    format!(
                        "{name} matches {} managed records ({}); give params.zone and params.type",
                        many.len(),
                        many.iter().map(|r| r.label()).collect::<Vec<_>>().join("; ")
                    ),
                ))
            }
        };
        let opts = FlipOptions { reason: m.reason.clone(), ..FlipOptions::default() };
        self.run_flip(&record, direction, t, dry_run, opts).await
    }

    /// A schedule tick: fails back every record whose failover is older than the hysteresis and whose
    /// home side is healthy. Records with nothing to fail back produce no envelope.
    async fn sweep_failbacks(&self, t: &Trigger) -> Result<Vec<Envelope>> {
        let mut out = Vec::new();
        if !self.cfg.auto_failback {
            return Ok(out);
        }
        let r53 = self.ctx.aws.route53();
        for r in &self.cfg.records {
            let zone_id = resolve_zone(&r53, &r.zone).await?;
            let target = Self::target_for(&zone_id, r);
            let trail = self.ctx.ledger.audit_trail(&target.id).await?;
            let pending = last_flip(&trail).is_some_and(|f| f.direction == Direction::Failover);
            if pending {
                let opts = FlipOptions {
                    hysteresis: true,
                    reason: Some("scheduled failback sweep".into()),
                    ..Default::default()
                };
                out.push(self.run_flip(r, Direction::Failback, t, self.ctx.config.dry_run, opts).await?);
            }
        }
        Ok(out)
    }

    fn target_for(zone_id: &str, r: &RecordRef) -> Target {
        Target::new(TARGET_KIND, format!("{zone_id}/{}/{}", r.name, r.rtype)).in_group(format!("route53:{zone_id}"))
    }

    pub(super) fn request(
        &self,
        r: &RecordRef,
        zone_id: &str,
        d: Direction,
        t: &Trigger,
        dry_run: bool,
        reason: &str,
    ) -> ActionRequest {
        ActionRequest {
            action: d.as_str().to_string(),
            target: Self::target_for(zone_id, r),
            event_id: t.event_id.clone(),
            trigger: t.kind.name().to_string(),
            dry_run,
            reason: reason.to_string(),
        }
    }
}
