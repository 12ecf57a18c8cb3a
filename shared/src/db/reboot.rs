//! Multi-AZ failover: `RebootDBInstance` with `ForceFailover` to the synchronous standby.

use std::time::Instant;

use super::choice::DbInstanceInfo;
use super::handler::{DbFailover, Decision};
use super::ACTION_REBOOT;
use crate::approval::{with_approval, Approval};
use crate::envelope::{Envelope, Severity};
use crate::error::{Error, Result};
use crate::guardrails::ActionReport;
use crate::trigger::Trigger;

impl DbFailover {
    pub(super) async fn reboot(&self, t: &Trigger, mut d: Decision, primary: DbInstanceInfo) -> Result<Envelope> {
        d.req.action = ACTION_REBOOT.to_string();
        let dry_run = d.req.dry_run;
        let rds = self.ctx.aws.rds();
        let asked = d.req.clone();
        let work = async {
            let what = format!("reboot {} with forced failover to its Multi-AZ standby", primary.id);
            let approval = match self.ctx.approval(&asked, t, None, &what).await? {
                Approval::Parked(report) => return Ok(report.detail("oldAz", &primary.az)),
                other => other,
            };
            if dry_run {
                return Ok(
                    with_approval(ActionReport::would(format!("would {what}")), &approval).detail("oldAz", &primary.az)
                );
            }
            let started = Instant::now();
            tracing::info!(db = %primary.id, "RebootDBInstance ForceFailover");
            rds.reboot_db_instance()
                .db_instance_identifier(&primary.id)
                .force_failover(true)
                .send()
                .await
                .map_err(|e| Error::aws("rds", "RebootDBInstance", e))?;
            let after = self.wait_instance(&rds, &primary.id, None, self.cfg.wait, |i| i.status == "available").await?;
            Ok(with_approval(
                ActionReport::acted(format!("{} failed over to its Multi-AZ standby", primary.id)),
                &approval,
            )
            .severity(Severity::Warning)
            .detail("oldWriter", &primary.id)
            .detail("newWriter", &primary.id)
            .detail("oldAz", &primary.az)
            .detail("newAz", &after.az)
            .detail("tookSeconds", started.elapsed().as_secs_f64()))
        };
        self.ctx.execute(d.req, work).await
    }
}
