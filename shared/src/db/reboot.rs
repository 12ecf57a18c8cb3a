//! Multi-AZ failover: `RebootDBInstance` with `ForceFailover` to the synchronous standby.

use std::time::Instant;

use super::choice::DbInstanceInfo;
use super::handler::{DbFailover, Decision};
use super::ACTION_REBOOT;
use crate::envelope::{Envelope, Severity};
use crate::error::{Error, Result};
use crate::guardrails::ActionReport;

impl DbFailover {
    pub(super) async fn reboot(&self, mut d: Decision, primary: DbInstanceInfo) -> Result<Envelope> {
        d.req.action = ACTION_REBOOT.to_string();
        let dry_run = d.req.dry_run;
        let rds = self.ctx.aws.rds();
        let work = async {
            if dry_run {
                return Ok(ActionReport::would(format!(
                    "would reboot {} with forced failover to its standby",
                    primary.id
                ))
                .detail("oldAz", &primary.az));
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
            Ok(ActionReport::acted(format!("{} failed over to its Multi-AZ standby", primary.id))
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
