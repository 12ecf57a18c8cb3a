//! Ending an evacuation: per resource, undo exactly what the evacuation recorded — cancel its shift,
//! put back the subnets it removed (only when nobody changed them since), lower the capacity it raised
//! (only when nothing else changed it) — then mark it ended.

use chrono::{DateTime, Utc};

use super::facts::Kind;
use super::handler::Evacuator;
use super::plan::{lower_capacity, restore_subnets, Record};
use super::{actions, arc, groups};
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::Result;
use crate::guardrails::ActionReport;
use crate::ledger::Evacuation;
use crate::trigger::Trigger;

impl Evacuator {
    pub(super) async fn end(
        &self,
        t: &Trigger,
        e: &Evacuation,
        why: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Envelope>> {
        let dry_run = self.dry_run(t);
        let mut out = Vec::new();
        for (arn, json) in &e.resources {
            if arn.starts_with("writer:") {
                continue; // a writer moved out stays where it is: the standby is the writer now
            }
            let rec: Record = match serde_json::from_str(json) {
                Ok(r) => r,
                Err(err) => {
                    tracing::error!(resource = %arn, error = %err, "unreadable evacuation record");
                    continue;
                }
            };
            let kind = rec.kind.unwrap_or(Kind::AutoScalingGroup);
            let action = if rec.subnets.is_some() { actions::RESTORE_SUBNETS } else { actions::CANCEL };
            let req =
                self.request(t, action, Target::new(kind.target_kind(), arn), format!("{}:end", e.id), why.to_string());
            let (arcc, asg, ledger) = (self.ctx.aws.arc(), self.ctx.aws.autoscaling(), self.ctx.ledger.clone());
            let (az, id, arn2) = (e.az.clone(), e.id.clone(), arn.clone());
            let work = async move {
                let name = rec.name.as_str();
                let mut done = Vec::new();
                let mut refused = Vec::new();
                if let Some(shift) = &rec.shift_id {
                    if dry_run {
                        done.push(format!("would cancel shift {shift}"));
                    } else if arc::cancel(&arcc, shift).await? {
                        done.push(format!("cancelled shift {shift}"));
                    } else {
                        done.push(format!("shift {shift} had already ended"));
                    }
                }
                if rec.subnets.is_some() || rec.capacity.is_some() {
                    match groups::current(&asg, name).await? {
                        None => done.push(format!("the group {name} is gone: nothing to restore")),
                        Some((subnets, desired)) => {
                            if let Some(sr) = &rec.subnets {
                                match restore_subnets(&subnets, sr) {
                                    Ok(original) if dry_run => {
                                        done.push(format!("would restore subnets {}", original.join(",")))
                                    }
                                    Ok(original) => {
                                        groups::set_subnets(&asg, name, &original).await?;
                                        done.push(format!("restored subnets {}", original.join(",")));
                                    }
                                    Err(why) => refused.push(why),
                                }
                            }
                            if let Some(raise) = &rec.capacity {
                                match lower_capacity(desired, raise) {
                                    Ok(to) if dry_run => done.push(format!("would set desired capacity back to {to}")),
                                    Ok(to) => {
                                        groups::set_desired(&asg, name, to).await?;
                                        done.push(format!("desired capacity back to {to}"));
                                    }
                                    Err(why) => done.push(why),
                                }
                            }
                        }
                    }
                }
                if !dry_run && refused.is_empty() {
                    ledger.forget_evacuated(&az, &id, &arn2).await?;
                }
                let text =
                    format!("{name}: {}", done.iter().chain(refused.iter()).cloned().collect::<Vec<_>>().join("; "));
                Ok(if !refused.is_empty() {
                    ActionReport::refused(text).severity(Severity::Critical).detail("record", &rec)
                } else if dry_run {
                    ActionReport::would(text)
                } else {
                    ActionReport::acted(text)
                })
            };
            let env = self.ctx.execute(req, work).await?;
            out.push(env.detail("evacuation", &e.id).detail("azId", &e.az_id).detail("azName", &e.az));
        }
        let ended = dry_run || self.ctx.ledger.end_evacuation(&e.az, &e.id, now).await?;
        let req = self.request(t, actions::END, self.az_target(&e.az_id), format!("{}:end", e.id), why.to_string());
        let (outcome, text) = match (dry_run, ended) {
            (true, _) => (
                Outcome::DryRun,
                format!("would end the evacuation of {} ({}) of {}: {why}", e.az, e.az_id, self.place_name()),
            ),
            (false, true) => (
                Outcome::Acted,
                format!("ended the evacuation of {} ({}) of {}: {why}", e.az, e.az_id, self.place_name()),
            ),
            (false, false) => (Outcome::Duplicate, format!("the evacuation of {} had already been ended", e.az)),
        };
        let env = self
            .ctx
            .envelope(&req, outcome, text)
            .detail("evacuation", &e.id)
            .detail("azId", &e.az_id)
            .detail("azName", &e.az);
        tracing::info!(az = %e.az, evacuation = %e.id, "evacuation ended");
        out.push(self.ctx.record(env).await?);
        Ok(out)
    }
}
