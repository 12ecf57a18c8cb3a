//! The `restore-test` scenario (issue #29): a backup is proven only by a restore. For one resource of
//! each kind per backup policy, the newest recovery point is restored into a scratch resource tagged as
//! the drill's, verified, timed and deleted; each restore's time is scored against the RTO target and
//! its recovery point's age against the RPO target (disruption type Software: data lost or corrupted).
//!
//! | kind | recovery point | restored into | verified |
//! |---|---|---|---|
//! | `ebs-volume` | the volume's newest completed snapshot | a volume in the source's AZ | available, the snapshot's size |
//! | `rds-instance` | the instance's newest available DB snapshot | a DB instance | available, the snapshot's storage |
//! | `rds-cluster` | the cluster's newest available cluster snapshot | an Aurora cluster | available |
//! | `dynamodb-table` | point-in-time recovery at the latest restorable time | a table | active, the items counted |
//! | `s3-object` | an object's previous version | a scratch key of the same bucket | the content's MD5 equals the version's ETag |
//!
//! Which resources: those the suite backs up (the backup policy tag, `SELFHEAL_BACKUP_POLICY_TAG`, and
//! the opt-in tag), in every account of the drilled architecture (the drill's own account without
//! one), in the drill's region; one of each kind per policy, the next one each day ([`sample`]). Nothing
//! is injected into them: a restore only reads its source, so they need no drill tag. A resource the
//! suite backs up that has no recovery point at all is a failed restore, named.
//!
//! Scratch resources are named `selfheal-restore-…` and tagged `selfheal:drill-scratch=<run>` (the
//! drill role may create and delete only such resources), and are deleted on every path: after the
//! verification, after a failed one, after a restore whose answer was lost (by name). One left behind by
//! a test that was itself cut short (a Lambda timeout) is deleted by the next test once it is
//! `SELFHEAL_DRILL_RESTORE_LEFTOVER_MINUTES` old (both marks required: nothing else is ever deleted).
//! A scratch resource that could not be deleted fails the test, named.
//!
//! A dry run lists what would be restored and restores nothing. Without `SELFHEAL_DRILL_ARCHITECTURE`
//! the deployed drill still runs `restore-test` (the optional `DrillRestoreTestSchedule`).

mod aws;
pub mod sample;

use std::time::Instant;

use chrono::{DateTime, Utc};

use super::report::{DrillReport, StepReport};
pub use super::restores::{Kind, RestoreResult};
use super::steps::aws_in;
use super::{Architecture, Drill, Mode};
use crate::clients::Aws;
use crate::error::Result;
pub use sample::{Candidate, Expect, RecoveryPoint};

/// The tag every scratch resource carries (its value: the test's run id).
pub const SCRATCH_TAG: &str = "selfheal:drill-scratch";

/// The scenario's name.
pub const SCENARIO: &str = "restore-test";

/// The restore test's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreConfig {
    /// The backup policy tag (`SELFHEAL_BACKUP_POLICY_TAG`, as backup-enforcer reads it).
    pub policy_tag: String,
    /// How old an earlier test's scratch resource must be before the next test deletes it.
    pub leftover_minutes: u64,
}

impl RestoreConfig {
    pub fn read(env: &mut crate::config::Env) -> Self {
        RestoreConfig {
            policy_tag: env.string("SELFHEAL_BACKUP_POLICY_TAG", "selfheal:backup"),
            leftover_minutes: env.number("SELFHEAL_DRILL_RESTORE_LEFTOVER_MINUTES", 120u64, 0, 10_080),
        }
    }
}

/// A candidate before anything is done: its recovery point and that point's age at `now`.
fn result_of(c: &Candidate, now: DateTime<Utc>) -> RestoreResult {
    RestoreResult {
        kind: c.kind,
        account: c.account.clone(),
        source: c.source.clone(),
        policy: c.policy.clone(),
        point: c.point.as_ref().map(|p| p.id.clone()),
        point_age_secs: c.point.as_ref().map(|p| age_secs(p.taken, now)),
        scores_rpo: c.kind.scores_rpo(),
        scratch: None,
        restore_ms: None,
        verified: None,
        error: None,
        cleaned: true,
    }
}

fn step_of(r: &RestoreResult) -> StepReport {
    let at = r.account.as_deref().map(|a| format!(" in {a}")).unwrap_or_default();
    let observed = match (&r.error, &r.verified) {
        (Some(e), _) => format!("failed: {e}"),
        (None, Some(v)) => format!("restored into {} and verified: {v}", r.scratch.as_deref().unwrap_or("-")),
        (None, None) => "not restored".into(),
    };
    let observed = if r.cleaned {
        observed
    } else {
        format!("{observed}; the scratch resource {} was NOT deleted", r.scratch.as_deref().unwrap_or("-"))
    };
    StepReport {
        name: format!("restore {} {}{at}", r.kind.as_str(), r.source),
        function: super::FUNCTION.into(),
        expected: format!(
            "{} restored into a scratch resource, verified and deleted",
            r.point.as_deref().unwrap_or("its newest recovery point")
        ),
        observed,
        detect_ms: None,
        recover_ms: r.restore_ms,
        actions: vec![],
        accounts: vec![r.account.clone().unwrap_or_else(|| "hub".into())],
        passed: r.passed(),
    }
}

/// The accounts a restore test covers: every account of the architecture (`None`: the drill's own).
fn accounts(arch: Option<&Architecture>) -> Vec<Option<String>> {
    let Some(arch) = arch else { return vec![None] };
    let home = arch.home_account.clone();
    let mut v: Vec<Option<String>> = vec![None];
    for a in [&arch.web_account, &arch.db_account].into_iter().flatten().chain(arch.volume_accounts.iter()) {
        if Some(a) != home.as_ref() {
            v.push(Some(a.clone()));
        }
    }
    v.sort();
    v.dedup();
    v
}

/// Runs the restore test into `report` (its steps: one per restore; its `restores`).
pub async fn run(drill: &Drill, mode: Mode, arch: Option<&Architecture>, report: &mut DrillReport) -> Result<()> {
    let now = Utc::now();
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let cfg = &drill.cfg.restore;
    let mut candidates = Vec::new();
    let mut places: Vec<(Option<String>, Aws)> = Vec::new();
    for account in accounts(arch) {
        let aws = aws_in(drill, account.as_deref()).await?;
        if mode == Mode::Live {
            let gone = aws::delete_leftovers(&aws, now, cfg.leftover_minutes).await;
            if !gone.is_empty() {
                report.injected.push(format!(
                    "deleted {} scratch resource(s) an earlier restore test left behind{}: {}",
                    gone.len(),
                    account.as_deref().map(|a| format!(" in {a}")).unwrap_or_default(),
                    gone.join(", ")
                ));
            }
        }
        candidates.extend(aws::discover(&aws, account.as_deref(), &cfg.policy_tag, &drill.ctx.config).await?);
        places.push((account, aws));
    }
    let chosen = sample::sample(&candidates, sample::day_number(now));
    let missing = sample::without_point(&candidates);
    if chosen.is_empty() && missing.is_empty() {
        report.steps.push(StepReport {
            name: "find resources to restore".into(),
            function: super::FUNCTION.into(),
            expected: format!("a resource with the {} tag and a recovery point", cfg.policy_tag),
            observed: "none: no resource the suite backs up was found".into(),
            detect_ms: None,
            recover_ms: None,
            actions: vec![],
            accounts: vec![],
            passed: false,
        });
        return Ok(());
    }
    for c in missing {
        let mut r = result_of(c, now);
        r.error = Some(format!("no recovery point: {} {} has never been backed up", c.kind.as_str(), c.source));
        report.steps.push(step_of(&r));
        report.restores.push(r);
    }
    for c in chosen {
        let Some(aws) = places.iter().find(|(a, _)| *a == c.account).map(|(_, aws)| aws) else { continue };
        let r = if mode == Mode::Live {
            restore_one(drill, aws, &c, &run_id, now).await
        } else {
            let mut s = result_of(&c, now);
            let mut step = step_of(&s);
            step.observed =
                format!("dry run: would restore {} into a scratch resource", s.point.as_deref().unwrap_or("-"));
            step.passed = true;
            report.steps.push(step);
            s.verified = Some("dry run: nothing restored".into());
            report.restores.push(s);
            continue;
        };
        report.steps.push(step_of(&r));
        report.restores.push(r);
    }
    Ok(())
}

fn age_secs(taken: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    (now.signed_duration_since(taken).num_milliseconds().max(0)) as f64 / 1000.0
}

/// Restores one candidate, verifies it, and deletes the scratch resource on every path.
async fn restore_one(drill: &Drill, aws: &Aws, c: &Candidate, run_id: &str, now: DateTime<Utc>) -> RestoreResult {
    let name = sample::scratch_name(c.kind, run_id, &c.source);
    let mut r = result_of(c, now);
    let Some(point) = &c.point else { return r };
    let started = Instant::now();
    tracing::info!(kind = c.kind.as_str(), source = %c.source, point = %point.id, scratch = %name, "restore test: restoring");
    match aws::start(aws, c, point, &name, run_id).await {
        Ok(scratch) => {
            r.scratch = Some(scratch.clone());
            match aws::verify(aws, c.kind, &scratch, &point.expect, drill.cfg.recovery_timeout, drill.cfg.poll_interval)
                .await
            {
                Ok(seen) => {
                    r.restore_ms = Some(started.elapsed().as_millis() as u64);
                    r.verified = Some(seen);
                }
                Err(e) => r.error = Some(format!("verification: {e}")),
            }
        }
        Err(e) => {
            // The answer may have been lost after the restore began: the scratch resource is looked
            // for by name too.
            r.error = Some(format!("restore: {e}"));
            r.scratch = Some(aws::scratch_id_by_name(c.kind, c, &name));
        }
    }
    if let Some(scratch) = r.scratch.clone() {
        match aws::delete(aws, c.kind, &scratch, &name).await {
            Ok(()) => r.cleaned = true,
            Err(e) => {
                r.cleaned = false;
                let why = format!("the scratch resource {scratch} could not be deleted: {e}");
                r.error = Some(match r.error.take() {
                    Some(prev) => format!("{prev}; {why}"),
                    None => why,
                });
            }
        }
    }
    tracing::info!(
        kind = c.kind.as_str(),
        source = %c.source,
        passed = r.passed(),
        restore_ms = ?r.restore_ms,
        error = ?r.error,
        "restore test: restore done"
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_passes_only_restored_verified_and_cleaned() {
        let mut r = RestoreResult {
            kind: Kind::EbsVolume,
            account: None,
            source: "vol-1".into(),
            policy: "gold".into(),
            point: Some("snap-1".into()),
            point_age_secs: Some(60.0),
            scores_rpo: true,
            scratch: Some("vol-2".into()),
            restore_ms: Some(1500),
            verified: Some("available, 8 GiB".into()),
            error: None,
            cleaned: true,
        };
        assert!(r.passed());
        assert!(step_of(&r).passed);
        r.cleaned = false;
        assert!(!r.passed());
        assert!(step_of(&r).observed.contains("vol-2 was NOT deleted"), "{}", step_of(&r).observed);
        r.cleaned = true;
        r.error = Some("verification: size 4 GiB, the snapshot's 8 GiB".into());
        assert!(!r.passed());
        assert!(step_of(&r).observed.starts_with("failed: verification"), "{}", step_of(&r).observed);
    }
}
