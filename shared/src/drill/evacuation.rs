//! The AZ evacuation the zone scenarios (`gray-az`, `lose-az`, `az-outage`) expect of zone-evacuator,
//! worked out from the resources before the fault ([`survey`] → [`Plan`]): every load balancer and
//! Auto Scaling group of the web tier shifted away from the AZ's ID (traffic out of it), each group's
//! desired capacity first raised by its in-service members there (the share the other AZs must carry),
//! and every Multi-AZ writer of the architecture in that AZ and account failed over; its dry-run step;
//! and putting the AZ back after a drill ([`end_after_drill`]), the way an operator would.
//!
//! The evacuation is the service's recovery from losing an AZ: the step whose verification is
//! [`Plan::verify`] is the one the scorecard times.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::events::manual_in;
use super::report::{DrillReport, StepReport};
use super::resources::{arc_view, capacity};
use super::steps::{aws_in, in_account, problem, verify, Raised, Step, Verify};
use super::{Architecture, Drill};
use crate::error::{Error, Result};
use crate::zone::FUNCTION as ZONE;

/// What an evacuation of one AZ of the web tier's account should come to.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    /// The web tier's member account (`None`: the hub's).
    pub account: Option<String>,
    pub az: String,
    pub az_id: String,
    pub load_balancers: Vec<String>,
    pub groups: Vec<Raised>,
    /// The Multi-AZ writers in the AZ, in the same account, that must fail over.
    pub writers: Vec<String>,
}

impl Plan {
    /// Every load balancer and group ARN.
    pub fn resources(&self) -> Vec<String> {
        self.load_balancers.iter().cloned().chain(self.groups.iter().map(|g| g.arn.clone())).collect()
    }

    /// The evacuation holds: traffic shifted away, capacity raised, writers failed over.
    pub fn verify(&self) -> Verify {
        let mut all = vec![Verify::Evacuated {
            account: self.account.clone(),
            az_id: self.az_id.clone(),
            load_balancers: self.load_balancers.clone(),
            groups: self.groups.clone(),
        }];
        if !self.writers.is_empty() {
            all.push(Verify::Decided {
                function: ZONE,
                action: crate::db::ACTION_REBOOT.into(),
                outcome: "acted".into(),
                targets: self.writers.clone(),
            });
        }
        Verify::All(all)
    }

    /// Nothing shifted, every group at the capacity it had before.
    pub fn not_shifted(&self) -> Verify {
        Verify::NotShifted {
            account: self.account.clone(),
            resources: self.resources(),
            groups: self.groups.iter().map(|g| (g.name.clone(), g.from)).collect(),
        }
    }

    /// What the evacuation does, in words.
    pub fn describe(&self) -> String {
        let groups: Vec<String> =
            self.groups.iter().map(|g| format!("{} (desired {} → {})", g.name, g.from, g.to)).collect();
        let mut s = format!(
            "{} load balancer(s) and the groups {} shifted away from {} ({}) with ARC zonal shift, each group's \
             capacity raised first{}",
            self.load_balancers.len(),
            groups.join(", "),
            self.az,
            self.az_id,
            in_account(self.account.as_deref())
        );
        if !self.writers.is_empty() {
            s.push_str(&format!(
                "; the writer(s) {} failed over out of the AZ (moto keeps a Multi-AZ instance's AZ on a forced \
                 failover: the acted decision is the evidence)",
                self.writers.join(", ")
            ));
        }
        s.push_str("; nothing for another AZ");
        s
    }

    /// A manual dry-run `evacuate` of the AZ: a dry-run decision, nothing shifted.
    pub fn dry_run_step(&self, drill: &Drill) -> Step {
        Step {
            name: format!("dry-run evacuate {}", self.az),
            function: ZONE,
            events: vec![manual_in(drill, self.account.as_deref(), "evacuate", &self.az, true, false, json!({}))],
            expected: "a dry-run decision and nothing shifted".into(),
            want: vec!["dry-run"],
            want_count: 1,
            verify: self.not_shifted(),
            ..Step::default()
        }
    }
}

/// Works out the evacuation of `az` from the resources as they are (before any fault): the web tier's
/// load balancer and groups (the reference architecture's and the fleet's), the AZ's ID in that
/// account, each group's raise, the writers to move. Refuses when an earlier drill left a shift in
/// place or a group cannot carry the AZ's share within its maximum.
pub(super) async fn survey(drill: &Drill, arch: &Architecture, az: &str) -> Result<Plan> {
    let account = arch.web_member().map(str::to_string);
    let web = aws_in(drill, account.as_deref()).await?;
    let map = crate::zone::azs::AzMap::read(&web.ec2()).await?;
    let az_id = map
        .id_of(az)
        .ok_or_else(|| Error::Precondition(format!("{az} is not an AZ of the web tier's account")))?
        .to_string();
    let load_balancers: Vec<String> = arch.load_balancer_arn.iter().cloned().collect();
    let mut groups = Vec::new();
    for name in arch.group_names() {
        let c = capacity(&web, &name).await?;
        let to = c.desired + c.in_az(az) as i32;
        if to > c.max {
            return Err(Error::Precondition(format!(
                "{name} cannot carry {az}'s share: desired {} + {} in service there is {to}, over its maximum {}",
                c.desired,
                c.in_az(az),
                c.max
            )));
        }
        groups.push(Raised { name, arn: c.arn, from: c.desired, to });
    }
    for arn in load_balancers.iter().chain(groups.iter().map(|g| &g.arn)) {
        if let Some(view) = arc_view(&web, arn).await? {
            if !view.shifts.is_empty() {
                return Err(Error::Precondition(format!(
                    "{arn} is still shifted away from {:?} (an earlier drill?): end it (zone-evacuator's manual \
                     \"end\") or provision a fresh architecture",
                    view.away_from()
                )));
            }
        }
    }
    let mut writers = Vec::new();
    if arch.db_member() == arch.web_member() {
        let rds = web.rds();
        for db in std::iter::once(&arch.db_primary).chain(arch.region_db_primary.iter()) {
            let out = rds
                .describe_db_instances()
                .db_instance_identifier(db)
                .send()
                .await
                .map_err(|e| Error::aws("rds", "DescribeDBInstances", e))?;
            let Some(i) = out.db_instances().first() else { continue };
            let writer =
                i.read_replica_source_db_instance_identifier().is_none() && i.db_cluster_identifier().is_none();
            if writer
                && i.multi_az() == Some(true)
                && i.availability_zone() == Some(az)
                && i.db_instance_status() == Some("available")
            {
                writers.push(db.clone());
            }
        }
    }
    Ok(Plan { account, az: az.to_string(), az_id, load_balancers, groups, writers })
}

/// After a drill: delivers `clears` (the alarms going back to OK), then, if anything of the plan is
/// still shifted, asks zone-evacuator to end the evacuation of the AZ as an operator would (manual
/// `end`) and checks that every shift ended and every group is back at its capacity. Said in the
/// report's injected lines; a failure is a failed step, so the scenarios after it are not run against
/// an AZ still evacuated unnoticed.
pub(super) async fn end_after_drill(
    drill: &Drill,
    plans: &[&Plan],
    clears: Vec<Value>,
    report: &mut DrillReport,
) -> Result<()> {
    let Some(first) = plans.first() else { return Ok(()) };
    let mut problems: Vec<String> = Vec::new();
    if !clears.is_empty() {
        let n = clears.len();
        let deliveries = clears.into_iter().map(|e| (ZONE.to_string(), e)).collect();
        problems.extend(drill.deliverer.deliver_all(deliveries).await.into_iter().filter_map(problem));
        report.injected.push(format!("after the drill: {n} alarms back to OK"));
    }
    let web = aws_in(drill, first.account.as_deref()).await?;
    let mut shifted: Vec<String> = Vec::new();
    for arn in first.resources() {
        if let Some(view) = arc_view(&web, &arn).await? {
            shifted.extend(view.shifts.iter().filter(|s| s.ours).map(|s| s.away_from.clone()));
        }
    }
    shifted.sort();
    shifted.dedup();
    if shifted.is_empty() && problems.is_empty() {
        return Ok(());
    }
    let t0 = chrono::Utc::now();
    for az_id in &shifted {
        let end = manual_in(drill, first.account.as_deref(), "end", az_id, false, false, json!({}));
        problems.extend(problem(drill.deliverer.deliver(ZONE, &end).await));
    }
    let back = Verify::All(plans.iter().map(|p| p.not_shifted()).collect());
    let deadline = Instant::now() + drill.cfg.recovery_timeout;
    let (ok, seen) = loop {
        let (ok, seen) = verify(drill, &back, &t0).await?;
        if ok || Instant::now() >= deadline {
            break (ok, seen);
        }
        tokio::time::sleep(drill.cfg.poll_interval.min(Duration::from_secs(5))).await;
    };
    if !shifted.is_empty() {
        report.injected.push(format!(
            "after the drill an operator ended the evacuation away from {} (zone-evacuator's manual \"end\"): {seen}",
            shifted.join(", ")
        ));
    }
    if !ok || !problems.is_empty() {
        problems.push(seen);
        report.steps.push(StepReport {
            name: "after the drill: the AZ back in service".into(),
            function: ZONE.into(),
            expected: "no zonal shift left and every group back at its capacity".into(),
            observed: problems.join("; "),
            detect_ms: None,
            recover_ms: None,
            actions: vec![],
            accounts: vec![],
            passed: false,
        });
    }
    Ok(())
}
