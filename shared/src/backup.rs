//! backup-enforcer: keeps every opted-in EBS volume, RDS instance and Aurora cluster backed up on
//! schedule, prunes the suite's own snapshots by retention, and keeps one AWS Backup plan (and its
//! vault) per policy in line with configuration.
//!
//! A resource is managed when it carries both the policy tag (`selfheal:backup=<policy>`) and the
//! suite's opt-in tag (`selfheal:enabled=true` by default, as for every function, and as the IAM
//! conditions in `infra/template.yaml` require); one with a policy tag only is counted in the report
//! as not opted in and left alone. Aurora cluster members are backed up through their cluster.
//! Policies (`gold`, `silver`, `bronze` built in, overridable with `SELFHEAL_BACKUP_POLICIES`) say how
//! old the newest snapshot may be, how long the suite's snapshots are kept, how many are always kept,
//! which vault the plan targets and which region copies go to.
//!
//! A sweep (EventBridge schedule or `{"source":"selfheal.manual","action":"sweep"}`):
//! 1. lists everything once, paginated: tagged volumes, every self-owned snapshot, every snapshot an
//!    own AMI uses, DB instances and clusters, their snapshots, and the copies already in each DR
//!    region;
//! 2. decides per resource with pure functions ([`is_stale`], [`plan_prune`], [`rds_retention_fix`],
//!    [`copy_candidate`]) that take `now` as a parameter;
//! 3. acts per resource with bounded concurrency (`SELFHEAL_BACKUP_CONCURRENCY`), each resource through
//!    [`Ctx::execute`] with event id `sweep:<policy>:<time bucket>`, so overlapping runs and
//!    redeliveries act once per policy window;
//! 4. ends with one compliance-report envelope (compliant / fixed / failed per resource type) and EMF
//!    metrics. One resource failing never stops the others. A sweep starts on no resource once its
//!    time budget (`SELFHEAL_BACKUP_TIME_BUDGET_SECONDS`) is spent; the report counts those left and
//!    fails the invocation, and Lambda's retry of the same event finds the finished ones done.
//!
//! Deletion guards: only snapshots the suite created (`selfheal:created-by=backup-enforcer`), never the
//! newest `min_keep`, never one an own AMI uses, never a pending one, and never more than
//! `SELFHEAL_BACKUP_MAX_DELETE_PERCENT` of a resource's snapshots in one run. The same retention, with
//! the same guards, applies separately to a resource's copies in its policy's DR region.
//!
//! IAM actions called: ec2:DescribeVolumes, ec2:DescribeSnapshots, ec2:DescribeImages,
//! ec2:CreateSnapshot, ec2:CreateTags (tags on create), ec2:DeleteSnapshot, ec2:CopySnapshot (DR
//! region); rds:DescribeDBInstances, rds:DescribeDBSnapshots, rds:CreateDBSnapshot,
//! rds:AddTagsToResource (tags on create), rds:DeleteDBSnapshot, rds:ModifyDBInstance,
//! rds:DescribeDBClusters, rds:DescribeDBClusterSnapshots, rds:CreateDBClusterSnapshot,
//! rds:DeleteDBClusterSnapshot, rds:ModifyDBCluster, rds:CopyDBSnapshot and rds:CopyDBClusterSnapshot
//! (DR region);
//! backup:ListBackupPlans, backup:GetBackupPlan, backup:CreateBackupPlan, backup:UpdateBackupPlan,
//! backup:DescribeBackupVault, backup:CreateBackupVault.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{CommonConfig, Env};
use crate::context::Ctx;
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::{Error, Result};
use crate::guardrails::{effective_dry_run, ActionReport, ActionRequest};
use crate::telemetry::Metric;
use crate::trigger::{Trigger, TriggerKind};

/// The function's name in envelopes and the ledger.
pub const FUNCTION: &str = "backup-enforcer";
/// The tag value every snapshot the suite creates carries under [`TAG_CREATED_BY`].
pub const CREATED_BY: &str = "backup-enforcer";
pub const TAG_CREATED_BY: &str = "selfheal:created-by";
pub const TAG_POLICY: &str = "selfheal:policy";
/// The resource (volume or DB instance id) a suite snapshot was taken of.
pub const TAG_SOURCE: &str = "selfheal:source";
/// On a DR-region copy: the home-region snapshot it copies.
pub const TAG_COPY_OF: &str = "selfheal:copy-of";

/// Resource kinds in envelopes and the report.
pub const KIND_VOLUME: &str = "ebs-volume";
pub const KIND_DB: &str = "rds-instance";
/// An Aurora cluster: backed up as one (its member instances have no snapshots of their own).
pub const KIND_CLUSTER: &str = "rds-cluster";
pub const KIND_PLAN: &str = "backup-plan";

/// RDS keeps automated backups for at most this many days.
pub const RDS_MAX_RETENTION_DAYS: i32 = 35;

// ---------------------------------------------------------------------------------------------
// Policies and configuration
// ---------------------------------------------------------------------------------------------

/// One backup policy, named by the value of the policy tag.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub name: String,
    /// The newest snapshot may be at most this old.
    pub max_age_hours: u64,
    /// Suite snapshots older than this are pruned (AWS Backup lifecycle: delete after this many days).
    pub retention_days: u32,
    /// The newest this many suite snapshots are always kept.
    pub min_keep: usize,
    /// Where copies go (EBS CopySnapshot, RDS CopyDBSnapshot/CopyDBClusterSnapshot, AWS Backup copy
    /// action), if anywhere.
    pub copy_region: Option<String>,
    /// The AWS Backup vault the policy's plan targets (the same name is used in the copy region).
    pub vault: String,
    /// The AWS Backup plan's schedule expression.
    pub schedule: String,
}

impl Policy {
    fn builtin(name: &str, max_age_hours: u64, retention_days: u32, min_keep: usize, schedule: &str) -> Self {
        Policy {
            name: name.to_string(),
            max_age_hours,
            retention_days,
            min_keep,
            copy_region: None,
            vault: format!("selfheal-{name}"),
            schedule: schedule.to_string(),
        }
    }

    pub fn max_age(&self) -> Duration {
        Duration::hours(self.max_age_hours as i64)
    }

    pub fn retention(&self) -> Duration {
        Duration::days(self.retention_days as i64)
    }

    /// The AWS Backup plan (and rule) name for this policy.
    pub fn plan_name(&self) -> String {
        format!("selfheal-{}", self.name)
    }
}

/// The built-in tiers: gold (daily, 35 days, keep 7), silver (daily, 14 days, keep 3), bronze (weekly,
/// 28 days, keep 2).
pub fn builtin_policies() -> BTreeMap<String, Policy> {
    [
        Policy::builtin("gold", 24, 35, 7, "cron(0 5 ? * * *)"),
        Policy::builtin("silver", 24, 14, 3, "cron(0 5 ? * * *)"),
        Policy::builtin("bronze", 168, 28, 2, "cron(0 5 ? * 1 *)"),
    ]
    .into_iter()
    .map(|p| (p.name.clone(), p))
    .collect()
}

/// One entry of `SELFHEAL_BACKUP_POLICIES`; absent fields come from the built-in tier of the same name
/// (or silver for a new name).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicySpec {
    max_age_hours: Option<u64>,
    retention_days: Option<u32>,
    min_keep: Option<usize>,
    copy_region: Option<String>,
    vault: Option<String>,
    schedule: Option<String>,
}

/// Parses `SELFHEAL_BACKUP_POLICIES` (a JSON object of name -> spec) over the built-in tiers.
pub fn parse_policies(json_text: Option<&str>) -> std::result::Result<BTreeMap<String, Policy>, String> {
    let mut policies = builtin_policies();
    let Some(text) = json_text else { return Ok(policies) };
    let specs: BTreeMap<String, PolicySpec> =
        serde_json::from_str(text).map_err(|e| format!("must be a JSON object of policy name -> settings: {e}"))?;
    let mut problems = Vec::new();
    for (name, spec) in specs {
        let base = policies.get(&name).cloned().or_else(|| builtin_policies().remove("silver"));
        let Some(mut p) = base else { continue };
        p.name = name.clone();
        if !policies.contains_key(&name) {
            p.vault = format!("selfheal-{name}");
        }
        if let Some(v) = spec.max_age_hours {
            p.max_age_hours = v;
        }
        if let Some(v) = spec.retention_days {
            p.retention_days = v;
        }
        if let Some(v) = spec.min_keep {
            p.min_keep = v;
        }
        if let Some(v) = spec.copy_region {
            p.copy_region = Some(v).filter(|r| !r.is_empty());
        }
        if let Some(v) = spec.vault {
            p.vault = v;
        }
        if let Some(v) = spec.schedule {
            p.schedule = v;
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            problems.push(format!("policy name {name:?} must be letters, digits, - or _"));
        }
        if p.max_age_hours == 0 {
            problems.push(format!("{name}.maxAgeHours must be at least 1"));
        }
        if p.retention_days == 0 {
            problems.push(format!("{name}.retentionDays must be at least 1"));
        }
        if p.min_keep == 0 {
            problems.push(format!("{name}.minKeep must be at least 1 (the newest snapshot is never pruned)"));
        }
        if !(p.schedule.starts_with("cron(") || p.schedule.starts_with("rate(")) {
            problems.push(format!("{name}.schedule must be a cron(...) or rate(...) expression"));
        }
        if p.vault.is_empty() {
            problems.push(format!("{name}.vault must not be empty"));
        }
        policies.insert(name, p);
    }
    if problems.is_empty() {
        Ok(policies)
    } else {
        Err(problems.join("; "))
    }
}

/// The function's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupConfig {
    /// `SELFHEAL_BACKUP_POLICY_TAG` (default `selfheal:backup`): the opt-in and policy tag.
    pub policy_tag: String,
    /// `SELFHEAL_BACKUP_POLICIES`: JSON over the built-in tiers.
    pub policies: BTreeMap<String, Policy>,
    /// `SELFHEAL_BACKUP_CONCURRENCY` (default 8, 1..=128): resources worked on at once.
    pub concurrency: usize,
    /// `SELFHEAL_BACKUP_MAX_DELETE_PERCENT` (default 50, 0..=100): most of one resource's snapshots
    /// deleted in one run.
    pub max_delete_percent: u32,
    /// `SELFHEAL_BACKUP_MANAGE_PLANS` (default true): keep the AWS Backup plans and vaults in line.
    pub manage_plans: bool,
    /// `SELFHEAL_BACKUP_RDS` (default true): manage tagged RDS instances.
    pub manage_rds: bool,
    /// `SELFHEAL_BACKUP_TIME_BUDGET_SECONDS` (default 840): no resource is started on after this long
    /// into a sweep, so the run ends with its report inside the function's timeout (Lambda's limit is
    /// 900 s); the rest are left for the retry (the invocation fails) or the next run.
    pub time_budget: std::time::Duration,
}

impl BackupConfig {
    pub fn read(env: &mut Env) -> Self {
        let policies = match parse_policies(env.optional("SELFHEAL_BACKUP_POLICIES").as_deref()) {
            Ok(p) => p,
            Err(problem) => {
                env.problem("SELFHEAL_BACKUP_POLICIES", problem);
                builtin_policies()
            }
        };
        BackupConfig {
            policy_tag: env.string("SELFHEAL_BACKUP_POLICY_TAG", "selfheal:backup"),
            policies,
            concurrency: env.number("SELFHEAL_BACKUP_CONCURRENCY", 8usize, 1, 128),
            max_delete_percent: env.number("SELFHEAL_BACKUP_MAX_DELETE_PERCENT", 50u32, 0, 100),
            manage_plans: env.bool("SELFHEAL_BACKUP_MANAGE_PLANS", true),
            manage_rds: env.bool("SELFHEAL_BACKUP_RDS", true),
            time_budget: env.seconds("SELFHEAL_BACKUP_TIME_BUDGET_SECONDS", 840, 0, 86_400),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pure decisions
// ---------------------------------------------------------------------------------------------

/// A snapshot's state, as far as the decisions care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapState {
    Completed,
    Pending,
    Error,
}

/// One snapshot of a resource (EBS snapshot or DB snapshot), typed for the decisions.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snap {
    pub id: String,
    pub started: DateTime<Utc>,
    pub state: SnapState,
    /// Created by this suite (tag `selfheal:created-by=backup-enforcer`) and so prunable.
    pub ours: bool,
}

/// Whether the resource needs a new snapshot: no completed or in-progress snapshot is younger than
/// the policy's max age.
pub fn is_stale(snaps: &[Snap], policy: &Policy, now: DateTime<Utc>) -> bool {
    let newest = snaps.iter().filter(|s| s.state != SnapState::Error).map(|s| s.started).max();
    match newest {
        None => true,
        Some(t) => now - t > policy.max_age(),
    }
}

/// What retention decided for one resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Prune {
    /// Snapshots to delete now, oldest first.
    pub delete: Vec<String>,
    /// Past retention but left for a later run by the per-run delete cap.
    pub deferred: Vec<String>,
    /// Past retention but in use by an own AMI.
    pub spared_ami: Vec<String>,
}

/// Retention for one resource's snapshots: only the suite's own completed snapshots are candidates;
/// the newest `min_keep` of them are kept whatever their age; AMI-backed ones are spared; and at most
/// `max_delete_percent` of all the resource's snapshots (rounded down) go in one run, oldest first.
pub fn plan_prune(
    snaps: &[Snap],
    in_use_by_ami: &HashSet<String>,
    policy: &Policy,
    now: DateTime<Utc>,
    max_delete_percent: u32,
) -> Prune {
    let mut ours: Vec<&Snap> = snaps.iter().filter(|s| s.ours && s.state == SnapState::Completed).collect();
    // Newest first; the id breaks ties so the decision is deterministic.
    ours.sort_by(|a, b| b.started.cmp(&a.started).then_with(|| b.id.cmp(&a.id)));
    let cutoff = now - policy.retention();
    let mut expired: Vec<&Snap> = ours.into_iter().skip(policy.min_keep).filter(|s| s.started < cutoff).collect();
    expired.reverse(); // oldest first
    let mut out = Prune::default();
    let cap = snaps.len() * max_delete_percent as usize / 100;
    for s in expired {
        if in_use_by_ami.contains(&s.id) {
            out.spared_ami.push(s.id.clone());
        } else if out.delete.len() < cap {
            out.delete.push(s.id.clone());
        } else {
            out.deferred.push(s.id.clone());
        }
    }
    out
}

/// The suite snapshot to copy to the DR region: the newest completed one of ours, unless it already
/// has a copy there.
pub fn copy_candidate(snaps: &[Snap], copied: &HashSet<String>) -> Option<String> {
    snaps
        .iter()
        .filter(|s| s.ours && s.state == SnapState::Completed)
        .max_by(|a, b| a.started.cmp(&b.started).then_with(|| a.id.cmp(&b.id)))
        .filter(|s| !copied.contains(&s.id))
        .map(|s| s.id.clone())
}

/// The suite's copies in one DR region: which home-region snapshots have a copy there, and the copies
/// themselves by the resource they back up (for retention, which applies to them as at home).
#[derive(Debug, Clone, Default)]
pub struct DrCopies {
    pub sources: HashSet<String>,
    pub by_resource: HashMap<String, Vec<Snap>>,
}

impl DrCopies {
    fn add(&mut self, source: Option<&str>, resource: Option<&str>, snap: Snap) {
        if let Some(src) = source {
            self.sources.insert(src.to_string());
            if let Some(r) = resource {
                self.by_resource.entry(r.to_string()).or_default().push(snap);
            }
        }
    }
}

/// The automated-backup retention a DB instance should have, when it has less (never lowered).
pub fn rds_retention_fix(current_days: i32, policy: &Policy) -> Option<i32> {
    let want = (policy.retention_days.min(RDS_MAX_RETENTION_DAYS as u32)) as i32;
    (current_days < want).then_some(want)
}

/// The policy window `now` falls in: runs in the same window share ledger claims.
pub fn time_bucket(now: DateTime<Utc>, policy: &Policy) -> i64 {
    let secs = (policy.max_age_hours.max(1) * 3600) as i64;
    now.timestamp().div_euclid(secs)
}

/// The ledger event id for a policy's sweep window.
pub fn sweep_event_id(policy: &Policy, now: DateTime<Utc>) -> String {
    format!("sweep:{}:{}", policy.name, time_bucket(now, policy))
}

/// The AWS Backup rule a policy wants, in comparable form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleSpec {
    pub rule_name: String,
    pub schedule: String,
    pub vault: String,
    pub delete_after_days: Option<i64>,
    /// Destination vault ARNs of the copy actions, sorted.
    pub copy_to: Vec<String>,
}

/// The rule `policy` wants; `account` makes the DR vault's ARN.
pub fn desired_rule(policy: &Policy, account: &str) -> RuleSpec {
    RuleSpec {
        rule_name: policy.plan_name(),
        schedule: policy.schedule.clone(),
        vault: policy.vault.clone(),
        delete_after_days: Some(policy.retention_days as i64),
        copy_to: policy
            .copy_region
            .iter()
            .map(|r| format!("arn:aws:backup:{r}:{account}:backup-vault:{}", policy.vault))
            .collect(),
    }
}

/// What differs between the plan's rules and the wanted rule, one line per difference (empty: no drift).
pub fn plan_drift(existing: &[RuleSpec], want: &RuleSpec) -> Vec<String> {
    let Some(have) = existing.iter().find(|r| r.rule_name == want.rule_name) else {
        let names: Vec<&str> = existing.iter().map(|r| r.rule_name.as_str()).collect();
        return vec![format!("rule {} missing (plan has {names:?})", want.rule_name)];
    };
    let mut drift = Vec::new();
    if have.schedule != want.schedule {
        drift.push(format!("schedule: {} -> {}", have.schedule, want.schedule));
    }
    if have.vault != want.vault {
        drift.push(format!("vault: {} -> {}", have.vault, want.vault));
    }
    if have.delete_after_days != want.delete_after_days {
        drift.push(format!("deleteAfterDays: {:?} -> {:?}", have.delete_after_days, want.delete_after_days));
    }
    if have.copy_to != want.copy_to {
        drift.push(format!("copyTo: {:?} -> {:?}", have.copy_to, want.copy_to));
    }
    if existing.len() > 1 {
        let extra: Vec<&str> =
            existing.iter().filter(|r| r.rule_name != want.rule_name).map(|r| r.rule_name.as_str()).collect();
        drift.push(format!("extra rules: {extra:?}"));
    }
    drift
}

/// A DB snapshot identifier for `db` at `now` (letters, digits, single hyphens, at most 255).
pub fn db_snapshot_id(db: &str, now: DateTime<Utc>) -> String {
    let mut id = format!("selfheal-{}-{}", db, now.format("%Y%m%d%H%M%S"));
    while id.contains("--") {
        id = id.replace("--", "-");
    }
    id.chars().take(255).collect()
}

// ---------------------------------------------------------------------------------------------
// The compliance report
// ---------------------------------------------------------------------------------------------

/// Counts for one resource type.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    pub compliant: u64,
    pub fixed: u64,
    pub failed: u64,
    /// Dry-run: would have been fixed.
    pub would_fix: u64,
    /// Another run holds the window's claim, or a guard refused.
    pub skipped: u64,
    /// Carries a policy tag but not the opt-in tag: left alone.
    pub not_opted_in: u64,
}

/// The sweep's outcome, sent as the details of one envelope.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub dry_run: bool,
    pub by_type: BTreeMap<String, Tally>,
    pub snapshots_created: u64,
    pub snapshots_deleted: u64,
    pub snapshots_copied: u64,
    pub deletes_deferred: u64,
    pub retention_fixed: u64,
    /// Resources not started on because the sweep's time budget ran out.
    pub left_for_next_run: u64,
    /// Aurora members carrying the policy tag whose cluster does not ("member (cluster c)"): members
    /// are backed up through their cluster, so these are not backed up at all. At most
    /// [`REPORT_LIST_LIMIT`].
    pub untagged_clusters: Vec<String>,
    /// Plan drift found, by plan name.
    pub drift: BTreeMap<String, Vec<String>>,
    /// Failures (resource id -> why), at most [`REPORT_LIST_LIMIT`].
    pub failures: BTreeMap<String, String>,
    /// Listing errors: a whole resource type that could not be inventoried.
    pub errors: Vec<String>,
    /// Resources with a policy tag but without the opt-in tag, at most [`REPORT_LIST_LIMIT`].
    pub not_opted_in: Vec<String>,
}

/// The note on a resource the sweep had no time left to start on.
const OUT_OF_TIME: &str = "out-of-time";

/// Most entries kept in the report's failure list.
pub const REPORT_LIST_LIMIT: usize = 100;

/// Most per-resource decisions a sweep's Lambda response carries. A sweep over thousands of
/// resources would otherwise outgrow Lambda's 6 MB response limit, fail the invocation and have it
/// retried whole; every decision is already audited in the ledger and published.
pub const RESPONSE_DECISION_LIMIT: usize = 200;

/// The decisions a sweep answers with: all of them when they are few; otherwise the failed ones (up
/// to [`RESPONSE_DECISION_LIMIT`], so the invocation still fails and is retried) and the compliance
/// report (the last envelope), which is marked with how many were left out.
pub fn response_decisions(mut envelopes: Vec<Envelope>) -> Vec<Envelope> {
    if envelopes.len() <= RESPONSE_DECISION_LIMIT {
        return envelopes;
    }
    let Some(mut report) = envelopes.pop() else { return envelopes };
    let total = envelopes.len();
    let mut kept: Vec<Envelope> =
        envelopes.into_iter().filter(|e| e.outcome == Outcome::Failed).take(RESPONSE_DECISION_LIMIT).collect();
    report.details.insert("decisionsOmittedFromResponse".into(), json!(total - kept.len()));
    kept.push(report);
    kept
}

impl Report {
    fn tally(&mut self, kind: &str) -> &mut Tally {
        self.by_type.entry(kind.to_string()).or_default()
    }

    fn not_opted_in(&mut self, kind: &str, id: &str) {
        self.tally(kind).not_opted_in += 1;
        if self.not_opted_in.len() < REPORT_LIST_LIMIT {
            self.not_opted_in.push(id.to_string());
        }
    }

    /// A resource with work to do that the sweep did not start on: its time budget had run out.
    fn out_of_time(&mut self, kind: &str) {
        self.tally(kind).skipped += 1;
        self.left_for_next_run += 1;
    }

    fn fail(&mut self, kind: &str, id: &str, why: impl Into<String>) {
        self.tally(kind).failed += 1;
        if self.failures.len() < REPORT_LIST_LIMIT {
            self.failures.insert(id.to_string(), why.into());
        }
    }

    fn count_envelope(&mut self, kind: &str, env: &Envelope) {
        match env.outcome {
            Outcome::Acted => self.tally(kind).fixed += 1,
            Outcome::DryRun => self.tally(kind).would_fix += 1,
            Outcome::Failed => self.fail(kind, &env.target.id, env.reason.clone()),
            Outcome::Skipped => self.tally(kind).compliant += 1,
            Outcome::Duplicate | Outcome::Refused | Outcome::Observed => self.tally(kind).skipped += 1,
        }
        let n = |k: &str| env.details.get(k).and_then(Value::as_array).map(|a| a.len() as u64).unwrap_or(0);
        if env.outcome == Outcome::Acted || env.outcome == Outcome::Failed {
            self.snapshots_created += n("created");
            self.snapshots_deleted += n("deleted") + n("drDeleted");
            self.snapshots_copied += n("copied");
            if env.details.get("retentionSetTo").is_some_and(|v| !v.is_null()) {
                self.retention_fixed += 1;
            }
        }
        self.deletes_deferred += n("deferred") + n("drDeferred");
    }

    /// Whether anything failed.
    pub fn has_failures(&self) -> bool {
        !self.errors.is_empty() || self.by_type.values().any(|t| t.failed > 0)
    }
}

// ---------------------------------------------------------------------------------------------
// AWS layer: EC2
// ---------------------------------------------------------------------------------------------

fn to_chrono(t: Option<&aws_smithy_types::DateTime>) -> DateTime<Utc> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos())).unwrap_or(DateTime::UNIX_EPOCH)
}

/// A tagged volume.
#[derive(Debug, Clone)]
pub struct Volume {
    pub id: String,
    pub policy: String,
    /// Also carries the suite's opt-in tag; without it the volume is only reported.
    pub opted_in: bool,
}

/// Whether AWS tags (as `(key, value)` options) opt a resource in.
fn opted_in<'a>(tags: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>, config: &CommonConfig) -> bool {
    crate::guardrails::is_opted_in(tags.filter_map(|(k, v)| Some((k?, v.unwrap_or("")))), config)
}

/// A self-owned EBS snapshot with the resource it belongs to.
#[derive(Debug, Clone)]
struct Ebs {
    /// `selfheal:source` for ours, else the volume id.
    resource: String,
    snap: Snap,
}

pub mod ec2 {
    //! EC2 calls: every listing paginated.
    use super::*;
    use aws_sdk_ec2::types::{Filter, ResourceType, SnapshotState, Tag, TagSpecification};

    /// Volumes carrying the policy tag.
    pub async fn tagged_volumes(
        ec2: &aws_sdk_ec2::Client,
        policy_tag: &str,
        config: &CommonConfig,
    ) -> Result<Vec<Volume>> {
        let mut pages = ec2
            .describe_volumes()
            .filters(Filter::builder().name("tag-key").values(policy_tag).build())
            .max_results(500)
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(v) = pages.next().await {
            let v = v.map_err(|e| Error::aws("ec2", "DescribeVolumes", e))?;
            let policy = v.tags().iter().find(|t| t.key() == Some(policy_tag)).and_then(|t| t.value());
            if let (Some(id), Some(policy)) = (v.volume_id(), policy) {
                let opted_in = opted_in(v.tags().iter().map(|t| (t.key(), t.value())), config);
                out.push(Volume { id: id.to_string(), policy: policy.trim().to_string(), opted_in });
            }
        }
        Ok(out)
    }

    fn tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
        tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
    }

    /// Every self-owned snapshot, grouped by the resource it belongs to (a suite snapshot by its
    /// `selfheal:source` tag, any other by its volume).
    pub(super) async fn snapshots_by_resource(ec2: &aws_sdk_ec2::Client) -> Result<HashMap<String, Vec<Snap>>> {
        let mut pages = ec2.describe_snapshots().owner_ids("self").max_results(1000).into_paginator().items().send();
        let mut out: HashMap<String, Vec<Snap>> = HashMap::new();
        while let Some(s) = pages.next().await {
            let s = s.map_err(|e| Error::aws("ec2", "DescribeSnapshots", e))?;
            if let Some(e) = to_ebs(&s) {
                out.entry(e.resource).or_default().push(e.snap);
            }
        }
        Ok(out)
    }

    fn to_ebs(s: &aws_sdk_ec2::types::Snapshot) -> Option<Ebs> {
        let id = s.snapshot_id()?.to_string();
        let ours = tag(s.tags(), TAG_CREATED_BY) == Some(CREATED_BY);
        let resource = if ours { tag(s.tags(), TAG_SOURCE).or(s.volume_id()) } else { s.volume_id() }?.to_string();
        let state = match s.state() {
            Some(SnapshotState::Completed) => SnapState::Completed,
            Some(SnapshotState::Pending) | Some(SnapshotState::Recoverable) | Some(SnapshotState::Recovering) => {
                SnapState::Pending
            }
            _ => SnapState::Error,
        };
        Some(Ebs { resource, snap: Snap { id, started: to_chrono(s.start_time()), state, ours } })
    }

    /// Snapshot ids that an own AMI's block devices use.
    pub async fn ami_snapshots(ec2: &aws_sdk_ec2::Client) -> Result<HashSet<String>> {
        let mut pages = ec2.describe_images().owners("self").into_paginator().items().send();
        let mut out = HashSet::new();
        while let Some(img) = pages.next().await {
            let img = img.map_err(|e| Error::aws("ec2", "DescribeImages", e))?;
            for bdm in img.block_device_mappings() {
                if let Some(id) = bdm.ebs().and_then(|e| e.snapshot_id()) {
                    out.insert(id.to_string());
                }
            }
        }
        Ok(out)
    }

    /// The suite's copies in the client's (DR) region.
    pub async fn copied_snapshots(ec2: &aws_sdk_ec2::Client) -> Result<DrCopies> {
        let mut pages = ec2
            .describe_snapshots()
            .owner_ids("self")
            .filters(Filter::builder().name("tag-key").values(TAG_COPY_OF).build())
            .max_results(1000)
            .into_paginator()
            .items()
            .send();
        let mut out = DrCopies::default();
        while let Some(s) = pages.next().await {
            let s = s.map_err(|e| Error::aws("ec2", "DescribeSnapshots", e))?;
            if let Some(e) = to_ebs(&s) {
                out.add(tag(s.tags(), TAG_COPY_OF), tag(s.tags(), TAG_SOURCE), e.snap);
            }
        }
        Ok(out)
    }

    fn suite_tags(resource: &str, policy: &str) -> TagSpecification {
        TagSpecification::builder()
            .resource_type(ResourceType::Snapshot)
            .tags(Tag::builder().key(TAG_CREATED_BY).value(CREATED_BY).build())
            .tags(Tag::builder().key(TAG_POLICY).value(policy).build())
            .tags(Tag::builder().key(TAG_SOURCE).value(resource).build())
            .build()
    }

    /// Takes a tagged snapshot; returns its id and whether it is already complete.
    pub async fn create_snapshot(ec2: &aws_sdk_ec2::Client, volume: &str, policy: &str) -> Result<(String, bool)> {
        let out = ec2
            .create_snapshot()
            .volume_id(volume)
            .description(format!("selfheal backup-enforcer ({policy}) of {volume}"))
            .tag_specifications(suite_tags(volume, policy))
            .send()
            .await
            .map_err(|e| Error::aws("ec2", "CreateSnapshot", e))?;
        let id = out.snapshot_id().ok_or_else(|| Error::ActionFailed("CreateSnapshot returned no id".into()))?;
        Ok((id.to_string(), out.state() == Some(&SnapshotState::Completed)))
    }

    pub async fn delete_snapshot(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<()> {
        ec2.delete_snapshot().snapshot_id(id).send().await.map_err(|e| Error::aws("ec2", "DeleteSnapshot", e))?;
        Ok(())
    }

    /// Copies `snapshot` from `source_region` with the DR-region client; returns the copy's id.
    pub async fn copy_snapshot(
        dr: &aws_sdk_ec2::Client,
        source_region: &str,
        snapshot: &str,
        volume: &str,
        policy: &str,
    ) -> Result<String> {
        let mut tags = suite_tags(volume, policy);
        tags.tags.get_or_insert_with(Vec::new).push(Tag::builder().key(TAG_COPY_OF).value(snapshot).build());
        let out = dr
            .copy_snapshot()
            .source_region(source_region)
            .source_snapshot_id(snapshot)
            .description(format!("selfheal DR copy of {snapshot} ({volume}, {policy})"))
            .tag_specifications(tags)
            .send()
            .await
            .map_err(|e| Error::aws("ec2", "CopySnapshot", e))?;
        Ok(out.snapshot_id().unwrap_or_default().to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// AWS layer: RDS
// ---------------------------------------------------------------------------------------------

/// A tagged database: a DB instance, or an Aurora cluster (backed up as a whole).
#[derive(Debug, Clone)]
pub struct Database {
    pub id: String,
    pub arn: String,
    pub policy: String,
    pub retention_days: i32,
    /// An Aurora (or Multi-AZ DB) cluster rather than an instance.
    pub cluster: bool,
    /// Also carries the suite's opt-in tag; without it the database is only reported.
    pub opted_in: bool,
}

impl Database {
    /// The report's resource kind.
    pub fn kind(&self) -> &'static str {
        if self.cluster {
            KIND_CLUSTER
        } else {
            KIND_DB
        }
    }
}

pub mod rds {
    //! RDS calls: every listing paginated.
    use super::*;
    use aws_sdk_rds::types::Tag;

    fn tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
        tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
    }

    fn opted_in(tags: &[Tag], config: &CommonConfig) -> bool {
        super::opted_in(tags.iter().map(|t| (t.key(), t.value())), config)
    }

    /// DB instances carrying the policy tag, and the tagged members of clusters as (member, cluster):
    /// those are left out, as their backups are the cluster's ([`tagged_clusters`]).
    pub async fn tagged_databases(
        rds: &aws_sdk_rds::Client,
        policy_tag: &str,
        config: &CommonConfig,
    ) -> Result<(Vec<Database>, Vec<(String, String)>)> {
        let mut pages = rds.describe_db_instances().max_records(100).into_paginator().items().send();
        let mut out = Vec::new();
        let mut members = Vec::new();
        while let Some(db) = pages.next().await {
            let db = db.map_err(|e| Error::aws("rds", "DescribeDBInstances", e))?;
            let (Some(id), Some(policy)) = (db.db_instance_identifier(), tag(db.tag_list(), policy_tag)) else {
                continue;
            };
            if let Some(cluster) = db.db_cluster_identifier() {
                tracing::debug!(db = id, cluster, "cluster member: backed up through its cluster");
                members.push((id.to_string(), cluster.to_string()));
                continue;
            }
            out.push(Database {
                id: id.to_string(),
                arn: db.db_instance_arn().unwrap_or_default().to_string(),
                policy: policy.trim().to_string(),
                retention_days: db.backup_retention_period().unwrap_or(0),
                cluster: false,
                opted_in: opted_in(db.tag_list(), config),
            });
        }
        Ok((out, members))
    }

    /// DB clusters (Aurora) carrying the policy tag.
    pub async fn tagged_clusters(
        rds: &aws_sdk_rds::Client,
        policy_tag: &str,
        config: &CommonConfig,
    ) -> Result<Vec<Database>> {
        let mut pages = rds.describe_db_clusters().max_records(100).into_paginator().items().send();
        let mut out = Vec::new();
        while let Some(c) = pages.next().await {
            let c = c.map_err(|e| Error::aws("rds", "DescribeDBClusters", e))?;
            let (Some(id), Some(policy)) = (c.db_cluster_identifier(), tag(c.tag_list(), policy_tag)) else {
                continue;
            };
            out.push(Database {
                id: id.to_string(),
                arn: c.db_cluster_arn().unwrap_or_default().to_string(),
                policy: policy.trim().to_string(),
                retention_days: c.backup_retention_period().unwrap_or(0),
                cluster: true,
                opted_in: opted_in(c.tag_list(), config),
            });
        }
        Ok(out)
    }

    fn snap_state(status: Option<&str>) -> SnapState {
        match status {
            Some("available") => SnapState::Completed,
            Some("creating") | Some("copying") | Some("pending") => SnapState::Pending,
            _ => SnapState::Error,
        }
    }

    /// Every DB snapshot (manual and automated), grouped by DB instance.
    pub async fn snapshots_by_db(rds: &aws_sdk_rds::Client) -> Result<HashMap<String, Vec<Snap>>> {
        let mut pages = rds.describe_db_snapshots().max_records(100).into_paginator().items().send();
        let mut out: HashMap<String, Vec<Snap>> = HashMap::new();
        while let Some(s) = pages.next().await {
            let s = s.map_err(|e| Error::aws("rds", "DescribeDBSnapshots", e))?;
            let (Some(id), Some(db)) = (s.db_snapshot_identifier(), s.db_instance_identifier()) else { continue };
            let state = snap_state(s.status());
            let ours = s.snapshot_type() == Some("manual") && tag(s.tag_list(), TAG_CREATED_BY) == Some(CREATED_BY);
            let started = to_chrono(s.snapshot_create_time().or(s.original_snapshot_create_time()));
            out.entry(db.to_string()).or_default().push(Snap { id: id.to_string(), started, state, ours });
        }
        Ok(out)
    }

    /// Every DB cluster snapshot (manual and automated), grouped by cluster.
    pub async fn snapshots_by_cluster(rds: &aws_sdk_rds::Client) -> Result<HashMap<String, Vec<Snap>>> {
        let mut pages = rds.describe_db_cluster_snapshots().max_records(100).into_paginator().items().send();
        let mut out: HashMap<String, Vec<Snap>> = HashMap::new();
        while let Some(s) = pages.next().await {
            let s = s.map_err(|e| Error::aws("rds", "DescribeDBClusterSnapshots", e))?;
            let (Some(id), Some(cluster)) = (s.db_cluster_snapshot_identifier(), s.db_cluster_identifier()) else {
                continue;
            };
            let ours = s.snapshot_type() == Some("manual") && tag(s.tag_list(), TAG_CREATED_BY) == Some(CREATED_BY);
            let started = to_chrono(s.snapshot_create_time().or(s.cluster_create_time()));
            out.entry(cluster.to_string()).or_default().push(Snap {
                id: id.to_string(),
                started,
                state: snap_state(s.status()),
                ours,
            });
        }
        Ok(out)
    }

    fn suite_tags(db: &str, policy: &str) -> Vec<Tag> {
        vec![
            Tag::builder().key(TAG_CREATED_BY).value(CREATED_BY).build(),
            Tag::builder().key(TAG_POLICY).value(policy).build(),
            Tag::builder().key(TAG_SOURCE).value(db).build(),
        ]
    }

    /// Takes a tagged snapshot of the instance or cluster; whether it is already available (and so
    /// can be copied in the same run).
    pub async fn create_snapshot(
        rds: &aws_sdk_rds::Client,
        db: &Database,
        snapshot: &str,
        policy: &str,
    ) -> Result<bool> {
        let status = if db.cluster {
            rds.create_db_cluster_snapshot()
                .db_cluster_identifier(&db.id)
                .db_cluster_snapshot_identifier(snapshot)
                .set_tags(Some(suite_tags(&db.id, policy)))
                .send()
                .await
                .map_err(|e| Error::aws("rds", "CreateDBClusterSnapshot", e))?
                .db_cluster_snapshot()
                .and_then(|s| s.status().map(str::to_string))
        } else {
            rds.create_db_snapshot()
                .db_instance_identifier(&db.id)
                .db_snapshot_identifier(snapshot)
                .set_tags(Some(suite_tags(&db.id, policy)))
                .send()
                .await
                .map_err(|e| Error::aws("rds", "CreateDBSnapshot", e))?
                .db_snapshot()
                .and_then(|s| s.status().map(str::to_string))
        };
        Ok(status.as_deref() == Some("available"))
    }

    /// The ARN of snapshot `snapshot` of `db`, built from the database's own ARN (pure):
    /// `arn:<partition>:rds:<region>:<account>:snapshot:<id>` (`cluster-snapshot` for a cluster).
    pub fn snapshot_arn(db_arn: &str, cluster: bool, snapshot: &str) -> Option<String> {
        let parts: Vec<&str> = db_arn.splitn(7, ':').collect();
        let [arn, partition, service, region, account, _kind, _name] = parts.as_slice() else { return None };
        if *arn != "arn" || *service != "rds" || region.is_empty() || account.is_empty() {
            return None;
        }
        let kind = if cluster { "cluster-snapshot" } else { "snapshot" };
        Some(format!("arn:{partition}:rds:{region}:{account}:{kind}:{snapshot}"))
    }

    /// The suite's copies in the client's (DR) region, DB and cluster snapshots alike (copies carry
    /// [`TAG_COPY_OF`]).
    pub async fn copied_snapshots(rds: &aws_sdk_rds::Client) -> Result<DrCopies> {
        let mut out = DrCopies::default();
        let mut pages =
            rds.describe_db_snapshots().snapshot_type("manual").max_records(100).into_paginator().items().send();
        while let Some(s) = pages.next().await {
            let s = s.map_err(|e| Error::aws("rds", "DescribeDBSnapshots", e))?;
            let Some(id) = s.db_snapshot_identifier() else { continue };
            let snap = Snap {
                id: id.to_string(),
                started: to_chrono(s.snapshot_create_time().or(s.original_snapshot_create_time())),
                state: snap_state(s.status()),
                ours: tag(s.tag_list(), TAG_CREATED_BY) == Some(CREATED_BY),
            };
            out.add(tag(s.tag_list(), TAG_COPY_OF), tag(s.tag_list(), TAG_SOURCE), snap);
        }
        let mut pages = rds
            .describe_db_cluster_snapshots()
            .snapshot_type("manual")
            .max_records(100)
            .into_paginator()
            .items()
            .send();
        while let Some(s) = pages.next().await {
            let s = s.map_err(|e| Error::aws("rds", "DescribeDBClusterSnapshots", e))?;
            let Some(id) = s.db_cluster_snapshot_identifier() else { continue };
            let snap = Snap {
                id: id.to_string(),
                started: to_chrono(s.snapshot_create_time().or(s.cluster_create_time())),
                state: snap_state(s.status()),
                ours: tag(s.tag_list(), TAG_CREATED_BY) == Some(CREATED_BY),
            };
            out.add(tag(s.tag_list(), TAG_COPY_OF), tag(s.tag_list(), TAG_SOURCE), snap);
        }
        Ok(out)
    }

    /// Copies `snapshot` of `db` into the DR client's region under the same identifier, tagged as a
    /// suite copy. (Outside GovCloud a cross-region copy needs no pre-signed URL; an encrypted source
    /// would need a KMS key in the DR region, which policies do not name yet.)
    pub async fn copy_snapshot(
        dr: &aws_sdk_rds::Client,
        db: &Database,
        snapshot: &str,
        policy: &str,
    ) -> Result<String> {
        let source = snapshot_arn(&db.arn, db.cluster, snapshot)
            .ok_or_else(|| Error::Precondition(format!("{} has no usable ARN ({:?})", db.id, db.arn)))?;
        let mut tags = suite_tags(&db.id, policy);
        tags.push(Tag::builder().key(TAG_COPY_OF).value(snapshot).build());
        if db.cluster {
            dr.copy_db_cluster_snapshot()
                .source_db_cluster_snapshot_identifier(&source)
                .target_db_cluster_snapshot_identifier(snapshot)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|e| Error::aws("rds", "CopyDBClusterSnapshot", e))?;
        } else {
            dr.copy_db_snapshot()
                .source_db_snapshot_identifier(&source)
                .target_db_snapshot_identifier(snapshot)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|e| Error::aws("rds", "CopyDBSnapshot", e))?;
        }
        Ok(snapshot.to_string())
    }

    pub async fn delete_snapshot(rds: &aws_sdk_rds::Client, db: &Database, snapshot: &str) -> Result<()> {
        if db.cluster {
            rds.delete_db_cluster_snapshot()
                .db_cluster_snapshot_identifier(snapshot)
                .send()
                .await
                .map_err(|e| Error::aws("rds", "DeleteDBClusterSnapshot", e))?;
        } else {
            rds.delete_db_snapshot()
                .db_snapshot_identifier(snapshot)
                .send()
                .await
                .map_err(|e| Error::aws("rds", "DeleteDBSnapshot", e))?;
        }
        Ok(())
    }

    /// Sets automated-backup retention. On an instance, turning backups on from 0 causes a brief I/O
    /// suspension, so that change waits for the maintenance window; raising a non-zero retention
    /// applies now. A cluster always has backups on (at least 1 day), so its change applies now.
    pub async fn set_retention(rds: &aws_sdk_rds::Client, db: &Database, days: i32) -> Result<()> {
        if db.cluster {
            rds.modify_db_cluster()
                .db_cluster_identifier(&db.id)
                .backup_retention_period(days)
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| Error::aws("rds", "ModifyDBCluster", e))?;
        } else {
            rds.modify_db_instance()
                .db_instance_identifier(&db.id)
                .backup_retention_period(days)
                .apply_immediately(db.retention_days > 0)
                .send()
                .await
                .map_err(|e| Error::aws("rds", "ModifyDBInstance", e))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// AWS layer: AWS Backup
// ---------------------------------------------------------------------------------------------

pub mod plans {
    //! AWS Backup plans and vaults. (moto has plans and vaults but not UpdateBackupPlan, selections
    //! or jobs; selections are left to infrastructure code.)
    use super::*;
    use aws_sdk_backup::types::{BackupPlanInput, BackupRuleInput, CopyAction, Lifecycle};

    /// A plan found by name: its id and its rules.
    #[derive(Debug, Clone)]
    pub struct FoundPlan {
        pub id: String,
        pub rules: Vec<RuleSpec>,
    }

    fn backup_err(op: &'static str) -> impl Fn(aws_smithy_types::error::operation::BuildError) -> Error {
        move |e| Error::aws("backup", op, e)
    }

    /// The vault's ARN, creating the vault when it does not exist (`create` false: only look).
    pub async fn ensure_vault(b: &aws_sdk_backup::Client, name: &str, create: bool) -> Result<Option<String>> {
        match b.describe_backup_vault().backup_vault_name(name).send().await {
            Ok(v) => return Ok(v.backup_vault_arn().map(str::to_string)),
            Err(e) => {
                let not_found = e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception());
                if !not_found {
                    return Err(Error::aws("backup", "DescribeBackupVault", e));
                }
            }
        }
        if !create {
            return Ok(None);
        }
        let v = b
            .create_backup_vault()
            .backup_vault_name(name)
            .backup_vault_tags(TAG_CREATED_BY, CREATED_BY)
            .send()
            .await
            .map_err(|e| Error::aws("backup", "CreateBackupVault", e))?;
        Ok(v.backup_vault_arn().map(str::to_string))
    }

    /// The plan named `name`, if any.
    pub async fn find_plan(b: &aws_sdk_backup::Client, name: &str) -> Result<Option<FoundPlan>> {
        let mut pages = b.list_backup_plans().into_paginator().items().send();
        let mut id = None;
        while let Some(p) = pages.next().await {
            let p = p.map_err(|e| Error::aws("backup", "ListBackupPlans", e))?;
            if p.backup_plan_name() == Some(name) && p.deletion_date().is_none() {
                id = p.backup_plan_id().map(str::to_string);
                break;
            }
        }
        let Some(id) = id else { return Ok(None) };
        let got = b
            .get_backup_plan()
            .backup_plan_id(&id)
            .send()
            .await
            .map_err(|e| Error::aws("backup", "GetBackupPlan", e))?;
        let rules = got
            .backup_plan()
            .map(|p| {
                p.rules()
                    .iter()
                    .map(|r| {
                        let mut copy_to: Vec<String> =
                            r.copy_actions().iter().map(|c| c.destination_backup_vault_arn().to_string()).collect();
                        copy_to.sort();
                        RuleSpec {
                            rule_name: r.rule_name().to_string(),
                            schedule: r.schedule_expression().unwrap_or_default().to_string(),
                            vault: r.target_backup_vault_name().to_string(),
                            delete_after_days: r.lifecycle().and_then(|l| l.delete_after_days()),
                            copy_to,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(FoundPlan { id, rules }))
    }

    /// The plan document for `rule`.
    pub fn plan_input(name: &str, rule: &RuleSpec) -> Result<BackupPlanInput> {
        let mut r = BackupRuleInput::builder()
            .rule_name(&rule.rule_name)
            .target_backup_vault_name(&rule.vault)
            .schedule_expression(&rule.schedule)
            .recovery_point_tags(TAG_CREATED_BY, CREATED_BY);
        if let Some(days) = rule.delete_after_days {
            r = r.lifecycle(Lifecycle::builder().delete_after_days(days).build());
        }
        for dest in &rule.copy_to {
            let mut c = CopyAction::builder().destination_backup_vault_arn(dest);
            if let Some(days) = rule.delete_after_days {
                c = c.lifecycle(Lifecycle::builder().delete_after_days(days).build());
            }
            r = r.copy_actions(c.build().map_err(backup_err("CreateBackupPlan"))?);
        }
        BackupPlanInput::builder()
            .backup_plan_name(name)
            .rules(r.build().map_err(backup_err("CreateBackupPlan"))?)
            .build()
            .map_err(backup_err("CreateBackupPlan"))
    }

    pub async fn create_plan(b: &aws_sdk_backup::Client, name: &str, rule: &RuleSpec) -> Result<String> {
        let out = b
            .create_backup_plan()
            .backup_plan(plan_input(name, rule)?)
            .backup_plan_tags(TAG_CREATED_BY, CREATED_BY)
            .send()
            .await
            .map_err(|e| Error::aws("backup", "CreateBackupPlan", e))?;
        Ok(out.backup_plan_id().unwrap_or_default().to_string())
    }

    pub async fn update_plan(b: &aws_sdk_backup::Client, id: &str, name: &str, rule: &RuleSpec) -> Result<()> {
        b.update_backup_plan()
            .backup_plan_id(id)
            .backup_plan(plan_input(name, rule)?)
            .send()
            .await
            .map_err(|e| Error::aws("backup", "UpdateBackupPlan", e))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The handler
// ---------------------------------------------------------------------------------------------

/// The backup-enforcer handler.
pub struct BackupEnforcer {
    ctx: Ctx,
    cfg: BackupConfig,
}

/// What the sweep found for one resource before acting.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Work {
    snapshot: bool,
    prune: Prune,
    copy: Option<String>,
    /// Retention applied to the resource's copies in the DR region.
    dr_prune: Prune,
    retention: Option<i32>,
    current_retention: i32,
}

impl Work {
    fn is_empty(&self) -> bool {
        !self.snapshot
            && self.prune.delete.is_empty()
            && self.copy.is_none()
            && self.dr_prune.delete.is_empty()
            && self.retention.is_none()
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.snapshot {
            parts.push("take a snapshot".to_string());
        }
        if !self.prune.delete.is_empty() {
            parts.push(format!("delete {} expired snapshot(s)", self.prune.delete.len()));
        }
        if let Some(c) = &self.copy {
            parts.push(format!("copy {c} to the DR region"));
        }
        if !self.dr_prune.delete.is_empty() {
            parts.push(format!("delete {} expired DR-region copy(ies)", self.dr_prune.delete.len()));
        }
        if let Some(d) = self.retention {
            parts.push(format!("set automated backup retention {} -> {d} days", self.current_retention));
        }
        parts.join(", ")
    }
}

/// What one sweep returns: every decision envelope (the report's last) and the report.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub envelopes: Vec<Envelope>,
    pub report: Report,
}

impl BackupEnforcer {
    pub async fn from_env() -> Result<Self> {
        let mut env = Env::from_process();
        let common = CommonConfig::read(&mut env, FUNCTION);
        let cfg = BackupConfig::read(&mut env);
        env.finish()?;
        let ctx = Ctx::new(common.clone(), crate::clients::Aws::load(&common.aws_timeouts).await);
        Ok(BackupEnforcer { ctx, cfg })
    }

    pub fn new(ctx: Ctx, cfg: BackupConfig) -> Self {
        BackupEnforcer { ctx, cfg }
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// The Lambda entry: parse, sweep, conclude (an error when any action failed).
    pub async fn handle(&self, payload: &Value) -> Result<Value> {
        crate::lambda::handle_each(FUNCTION, payload, |t| async move { self.handle_trigger(&t).await }).await
    }

    /// One trigger: a schedule or a manual `sweep` runs a sweep now.
    pub async fn handle_trigger(&self, t: &Trigger) -> Result<Vec<Envelope>> {
        let dry_run = match &t.kind {
            TriggerKind::Schedule { .. } => effective_dry_run(self.ctx.config.dry_run, None),
            TriggerKind::Manual(m) if m.action == "sweep" => effective_dry_run(self.ctx.config.dry_run, m.dry_run),
            TriggerKind::Manual(m) => {
                return Err(Error::malformed(
                    "manual",
                    format!("{FUNCTION} understands action \"sweep\", got {:?}", m.action),
                ))
            }
            other => return Err(Error::UnsupportedTrigger { function: FUNCTION, trigger: other.name().to_string() }),
        };
        Ok(response_decisions(self.sweep(t, dry_run, Utc::now()).await?.envelopes))
    }

    fn policy(&self, name: &str) -> Option<&Policy> {
        self.cfg.policies.get(name)
    }

    /// A full sweep at `now` (injectable so staleness and retention can be tested).
    pub async fn sweep(&self, t: &Trigger, dry_run: bool, now: DateTime<Utc>) -> Result<Sweep> {
        let started = std::time::Instant::now();
        let deadline = started + self.cfg.time_budget;
        tracing::info!(event_id = %t.event_id, dry_run, "backup sweep starting");
        let mut report = Report { dry_run, ..Report::default() };
        let mut envelopes = Vec::new();

        if self.cfg.manage_plans {
            let used = self.cfg.policies.values().cloned().collect::<Vec<_>>();
            for p in used {
                let env = self.enforce_plan(t, &p, dry_run, now, &mut report).await;
                match env {
                    Ok(Some(e)) => {
                        report.count_envelope(KIND_PLAN, &e);
                        envelopes.push(e);
                    }
                    Ok(None) => report.tally(KIND_PLAN).compliant += 1,
                    Err(e) => report.fail(KIND_PLAN, &p.plan_name(), e.to_string()),
                }
            }
        }

        match self.sweep_volumes(t, dry_run, now, deadline, &mut report).await {
            Ok(mut envs) => envelopes.append(&mut envs),
            Err(e) => report.errors.push(format!("{KIND_VOLUME}: {e}")),
        }
        if self.cfg.manage_rds {
            match self.sweep_databases(t, dry_run, now, deadline, &mut report).await {
                Ok(mut envs) => envelopes.append(&mut envs),
                Err(e) => report.errors.push(format!("{KIND_DB}/{KIND_CLUSTER}: {e}")),
            }
        }

        for (kind, tally) in &report.by_type {
            Metric::new()
                .dimension("Function", FUNCTION)
                .dimension("ResourceType", kind)
                .count("Compliant", tally.compliant as f64)
                .count("Fixed", tally.fixed as f64)
                .count("Failed", tally.failed as f64)
                .count("WouldFix", tally.would_fix as f64)
                .emit();
        }
        Metric::new()
            .dimension("Function", FUNCTION)
            .count("SnapshotsCreated", report.snapshots_created as f64)
            .count("SnapshotsDeleted", report.snapshots_deleted as f64)
            .count("SnapshotsCopied", report.snapshots_copied as f64)
            .millis("SweepDuration", started.elapsed().as_millis() as f64)
            .emit();

        let fixed: u64 = report.by_type.values().map(|t| t.fixed + t.would_fix).sum();
        // Out of time: failing the invocation has Lambda retry the sweep, which finds the finished
        // resources done (same claims) and goes on with the rest.
        let outcome = if !report.errors.is_empty() || report.left_for_next_run > 0 {
            Outcome::Failed
        } else if dry_run {
            Outcome::DryRun
        } else if fixed > 0 {
            Outcome::Acted
        } else {
            Outcome::Skipped
        };
        let severity = if report.has_failures() {
            Severity::Critical
        } else if report.left_for_next_run > 0 || !report.untagged_clusters.is_empty() {
            Severity::Warning
        } else {
            Severity::Info
        };
        let summary = report
            .by_type
            .iter()
            .map(|(k, t)| {
                let mut line =
                    format!("{k}: {} compliant, {} fixed, {} failed", t.compliant, t.fixed + t.would_fix, t.failed);
                if t.not_opted_in > 0 {
                    line.push_str(&format!(", {} not opted in", t.not_opted_in));
                }
                line
            })
            .chain(report.errors.iter().map(|e| format!("not inventoried: {e}")))
            .chain((!report.untagged_clusters.is_empty()).then(|| {
                format!(
                    "not backed up: {} Aurora member(s) tagged but not their cluster, which is what is backed up: {}",
                    report.untagged_clusters.len(),
                    report.untagged_clusters.join(", ")
                )
            }))
            .chain((report.left_for_next_run > 0).then(|| {
                format!(
                    "{} left for the retry: the {} s time budget ran out",
                    report.left_for_next_run,
                    self.cfg.time_budget.as_secs()
                )
            }))
            .collect::<Vec<_>>()
            .join("; ");
        let req = ActionRequest {
            action: "compliance-report".into(),
            target: Target::new("backup-sweep", t.event_id.clone()),
            event_id: t.event_id.clone(),
            trigger: t.kind.name().into(),
            dry_run,
            reason: "backup sweep finished".into(),
        };
        let mut env = self.ctx.envelope(&req, outcome, format!("backup sweep: {summary}")).severity(severity);
        if let Ok(Value::Object(m)) = serde_json::to_value(&report) {
            env.details.extend(m);
        }
        env.details.insert("durationMs".into(), json!(started.elapsed().as_millis() as u64));
        let env = self.ctx.record(env).await?;
        tracing::info!(event_id = %t.event_id, dry_run, report = %json!(report), "backup sweep finished");
        envelopes.push(env);
        Ok(Sweep { envelopes, report })
    }

    fn request(
        &self,
        t: &Trigger,
        kind: &str,
        id: &str,
        policy: &Policy,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> ActionRequest {
        ActionRequest {
            action: "enforce-backup".into(),
            target: Target::new(kind, id),
            event_id: sweep_event_id(policy, now),
            trigger: t.kind.name().into(),
            dry_run,
            reason: format!("policy {}", policy.name),
        }
    }

    async fn unknown_policy(&self, t: &Trigger, kind: &str, id: &str, policy: &str, dry_run: bool) -> Result<Envelope> {
        let req = ActionRequest {
            action: "enforce-backup".into(),
            target: Target::new(kind, id),
            event_id: t.event_id.clone(),
            trigger: t.kind.name().into(),
            dry_run,
            reason: String::new(),
        };
        let known: Vec<&String> = self.cfg.policies.keys().collect();
        let why = format!("{} names unknown policy {policy:?} (known: {known:?}); nothing done", self.cfg.policy_tag);
        self.ctx.record(self.ctx.envelope(&req, Outcome::Refused, why).severity(Severity::Warning)).await
    }

    // --- EBS ---------------------------------------------------------------------------------

    async fn sweep_volumes(
        &self,
        t: &Trigger,
        dry_run: bool,
        now: DateTime<Utc>,
        deadline: std::time::Instant,
        report: &mut Report,
    ) -> Result<Vec<Envelope>> {
        let ec2 = self.ctx.aws.ec2();
        let (volumes, snaps, amis) = futures::try_join!(
            ec2::tagged_volumes(&ec2, &self.cfg.policy_tag, &self.ctx.config),
            ec2::snapshots_by_resource(&ec2),
            ec2::ami_snapshots(&ec2),
        )?;
        let home = self.home_region();
        // One listing per DR region in use.
        let mut dr: HashMap<String, (aws_sdk_ec2::Client, DrCopies, HashSet<String>)> = HashMap::new();
        for region in self.dr_regions(volumes.iter().map(|v| v.policy.as_str())) {
            let client = self.ctx.aws.in_region(&region).ec2();
            let (copies, amis) = futures::try_join!(ec2::copied_snapshots(&client), ec2::ami_snapshots(&client))?;
            dr.insert(region, (client, copies, amis));
        }
        tracing::info!(volumes = volumes.len(), "volumes with a backup policy");

        let empty = Vec::new();
        let mut jobs = Vec::new();
        for v in &volumes {
            if !v.opted_in {
                report.not_opted_in(KIND_VOLUME, &v.id);
                continue;
            }
            let Some(policy) = self.policy(&v.policy) else {
                jobs.push(Job::Unknown(v.id.clone(), v.policy.clone()));
                continue;
            };
            let s = snaps.get(&v.id).unwrap_or(&empty);
            let in_dr = policy.copy_region.as_ref().and_then(|r| dr.get(r));
            let work = Work {
                snapshot: is_stale(s, policy, now),
                prune: plan_prune(s, &amis, policy, now, self.cfg.max_delete_percent),
                copy: in_dr.and_then(|(_, copies, _)| copy_candidate(s, &copies.sources)),
                dr_prune: in_dr
                    .map(|(_, copies, dr_amis)| {
                        let copies = copies.by_resource.get(&v.id).unwrap_or(&empty);
                        plan_prune(copies, dr_amis, policy, now, self.cfg.max_delete_percent)
                    })
                    .unwrap_or_default(),
                ..Work::default()
            };
            jobs.push(Job::Volume(Box::new((v.clone(), policy.clone(), work))));
        }

        let results: Vec<(String, String, Result<Option<Envelope>>)> = stream::iter(jobs)
            .map(|job| {
                let ec2 = &ec2;
                let dr = &dr;
                let home = &home;
                async move {
                    match job {
                        Job::Unknown(id, policy) => {
                            let r = self.unknown_policy(t, KIND_VOLUME, &id, &policy, dry_run).await.map(Some);
                            (id, "unknown-policy".to_string(), r)
                        }
                        Job::Volume(job) => {
                            let (v, policy, work) = *job;
                            if work.is_empty() {
                                return (v.id, String::new(), Ok(None));
                            }
                            if std::time::Instant::now() >= deadline {
                                return (v.id, OUT_OF_TIME.to_string(), Ok(None));
                            }
                            let dr_client = policy.copy_region.as_ref().and_then(|r| dr.get(r)).map(|(c, _, _)| c);
                            let r = self.fix_volume(t, &v, &policy, work, dry_run, now, ec2, dr_client, home).await;
                            (v.id, String::new(), r.map(Some))
                        }
                    }
                }
            })
            .buffer_unordered(self.cfg.concurrency)
            .collect()
            .await;

        let mut envelopes = Vec::new();
        for (id, note, r) in results {
            match r {
                Ok(None) if note == OUT_OF_TIME => report.out_of_time(KIND_VOLUME),
                Ok(None) => report.tally(KIND_VOLUME).compliant += 1,
                Ok(Some(e)) if note == "unknown-policy" => {
                    report.fail(KIND_VOLUME, &id, e.reason.clone());
                    envelopes.push(e);
                }
                Ok(Some(e)) => {
                    report.count_envelope(KIND_VOLUME, &e);
                    envelopes.push(e);
                }
                Err(e) => report.fail(KIND_VOLUME, &id, e.to_string()),
            }
        }
        Ok(envelopes)
    }

    /// The DR regions (other than this one) the policies named by `policies` copy to, each once.
    fn dr_regions<'a>(&self, policies: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
        let home = self.home_region();
        policies
            .filter_map(|name| self.policy(name).and_then(|p| p.copy_region.clone()))
            .filter(|region| *region != home)
            .collect()
    }

    fn home_region(&self) -> String {
        self.ctx.aws.sdk.region().map(|r| r.to_string()).unwrap_or_default()
    }

    #[allow(clippy::too_many_arguments)]
    async fn fix_volume(
        &self,
        t: &Trigger,
        v: &Volume,
        policy: &Policy,
        work: Work,
        dry_run: bool,
        now: DateTime<Utc>,
        ec2: &aws_sdk_ec2::Client,
        dr: Option<&aws_sdk_ec2::Client>,
        home: &str,
    ) -> Result<Envelope> {
        let req = self.request(t, KIND_VOLUME, &v.id, policy, dry_run, now);
        let plan = work.describe();
        self.ctx
            .execute(req, async {
                if dry_run {
                    return Ok(ActionReport::would(format!("would {plan}"))
                        .detail("policy", &policy.name)
                        .detail("wouldSnapshot", work.snapshot)
                        .detail("wouldDelete", &work.prune.delete)
                        .detail("deferred", &work.prune.deferred)
                        .detail("sparedAmi", &work.prune.spared_ami)
                        .detail("wouldCopy", &work.copy)
                        .detail("wouldDeleteDr", &work.dr_prune.delete));
                }
                let mut created = Vec::new();
                let mut deleted = Vec::new();
                let mut copied = Vec::new();
                let mut errors = Vec::new();
                let mut copy = work.copy.clone();
                if work.snapshot {
                    match ec2::create_snapshot(ec2, &v.id, &policy.name).await {
                        Ok((id, complete)) => {
                            tracing::info!(volume = %v.id, snapshot = %id, policy = %policy.name, "snapshot taken");
                            if complete && dr.is_some() {
                                copy = Some(id.clone());
                            }
                            created.push(id);
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                for id in &work.prune.delete {
                    match ec2::delete_snapshot(ec2, id).await {
                        Ok(()) => {
                            tracing::info!(volume = %v.id, snapshot = %id, "expired snapshot deleted");
                            deleted.push(id.clone());
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                if let (Some(src), Some(dr)) = (copy, dr) {
                    match ec2::copy_snapshot(dr, home, &src, &v.id, &policy.name).await {
                        Ok(id) => {
                            tracing::info!(volume = %v.id, snapshot = %src, copy = %id, "snapshot copied to DR region");
                            copied.push(id);
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                let mut dr_deleted = Vec::new();
                if let Some(dr) = dr {
                    for id in &work.dr_prune.delete {
                        match ec2::delete_snapshot(dr, id).await {
                            Ok(()) => {
                                tracing::info!(volume = %v.id, snapshot = %id, "expired DR-region copy deleted");
                                dr_deleted.push(id.clone());
                            }
                            Err(e) => errors.push(e.to_string()),
                        }
                    }
                }
                let report = if errors.is_empty() {
                    ActionReport::acted(plan.clone())
                } else {
                    ActionReport::failed(format!("{} of the work failed: {}", errors.len(), errors.join("; ")))
                };
                Ok(report
                    .detail("policy", &policy.name)
                    .detail("created", created)
                    .detail("deleted", deleted)
                    .detail("copied", copied)
                    .detail("drDeleted", dr_deleted)
                    .detail("deferred", &work.prune.deferred)
                    .detail("drDeferred", &work.dr_prune.deferred)
                    .detail("sparedAmi", &work.prune.spared_ami))
            })
            .await
    }

    // --- RDS ---------------------------------------------------------------------------------

    async fn sweep_databases(
        &self,
        t: &Trigger,
        dry_run: bool,
        now: DateTime<Utc>,
        deadline: std::time::Instant,
        report: &mut Report,
    ) -> Result<Vec<Envelope>> {
        let rds = self.ctx.aws.rds();
        let ((instances, members), clusters, snaps, cluster_snaps) = futures::try_join!(
            rds::tagged_databases(&rds, &self.cfg.policy_tag, &self.ctx.config),
            rds::tagged_clusters(&rds, &self.cfg.policy_tag, &self.ctx.config),
            rds::snapshots_by_db(&rds),
            rds::snapshots_by_cluster(&rds),
        )?;
        tracing::info!(instances = instances.len(), clusters = clusters.len(), "databases with a backup policy");
        // A tagged Aurora member is backed up through its cluster only: if the cluster is not tagged,
        // nothing backs it up, and whoever tagged it should hear so.
        let tagged_clusters: HashSet<&str> = clusters.iter().map(|c| c.id.as_str()).collect();
        for (member, cluster) in &members {
            if !tagged_clusters.contains(cluster.as_str()) && report.untagged_clusters.len() < REPORT_LIST_LIMIT {
                tracing::warn!(db = %member, cluster = %cluster, "cluster member tagged, its cluster is not");
                report.untagged_clusters.push(format!("{member} (cluster {cluster})"));
            }
        }
        let mut dbs = Vec::new();
        for db in instances.into_iter().chain(clusters) {
            if db.opted_in {
                dbs.push(db);
            } else {
                report.not_opted_in(db.kind(), &db.id);
            }
        }
        // One listing of suite copies per DR region in use.
        let mut dr: HashMap<String, (aws_sdk_rds::Client, DrCopies)> = HashMap::new();
        for region in self.dr_regions(dbs.iter().map(|d| d.policy.as_str())) {
            let client = self.ctx.aws.in_region(&region).rds();
            let copies = rds::copied_snapshots(&client).await?;
            dr.insert(region, (client, copies));
        }
        let no_amis = HashSet::new();
        let empty = Vec::new();
        // (kind, id, left for the next run, decision)
        let results: Vec<(&'static str, String, bool, Result<Option<Envelope>>)> = stream::iter(dbs)
            .map(|db| {
                let rds = &rds;
                let snaps = if db.cluster { &cluster_snaps } else { &snaps };
                let no_amis = &no_amis;
                let empty = &empty;
                let dr = &dr;
                async move {
                    let kind = db.kind();
                    let Some(policy) = self.policy(&db.policy) else {
                        let r = self.unknown_policy(t, kind, &db.id, &db.policy, dry_run).await;
                        return (kind, db.id.clone(), false, r.map(Some));
                    };
                    let s = snaps.get(&db.id).unwrap_or(empty);
                    let dr = policy.copy_region.as_ref().and_then(|r| dr.get(r));
                    let work = Work {
                        snapshot: is_stale(s, policy, now),
                        prune: plan_prune(s, no_amis, policy, now, self.cfg.max_delete_percent),
                        copy: dr.and_then(|(_, copies)| copy_candidate(s, &copies.sources)),
                        dr_prune: dr
                            .map(|(_, copies)| {
                                let copies = copies.by_resource.get(&db.id).unwrap_or(empty);
                                plan_prune(copies, no_amis, policy, now, self.cfg.max_delete_percent)
                            })
                            .unwrap_or_default(),
                        retention: rds_retention_fix(db.retention_days, policy),
                        current_retention: db.retention_days,
                    };
                    if work.is_empty() {
                        return (kind, db.id.clone(), false, Ok(None));
                    }
                    if std::time::Instant::now() >= deadline {
                        return (kind, db.id.clone(), true, Ok(None));
                    }
                    let dr_client = dr.map(|(c, _)| c);
                    let r = self.fix_database(t, &db, policy, work, dry_run, now, rds, dr_client).await;
                    (kind, db.id.clone(), false, r.map(Some))
                }
            })
            .buffer_unordered(self.cfg.concurrency)
            .collect()
            .await;
        let mut envelopes = Vec::new();
        for (kind, id, late, r) in results {
            match r {
                Ok(None) if late => report.out_of_time(kind),
                Ok(None) => report.tally(kind).compliant += 1,
                Ok(Some(e)) if e.outcome == Outcome::Refused && e.event_id == t.event_id => {
                    report.fail(kind, &id, e.reason.clone());
                    envelopes.push(e);
                }
                Ok(Some(e)) => {
                    report.count_envelope(kind, &e);
                    envelopes.push(e);
                }
                Err(e) => report.fail(kind, &id, e.to_string()),
            }
        }
        Ok(envelopes)
    }

    #[allow(clippy::too_many_arguments)]
    async fn fix_database(
        &self,
        t: &Trigger,
        db: &Database,
        policy: &Policy,
        work: Work,
        dry_run: bool,
        now: DateTime<Utc>,
        rds: &aws_sdk_rds::Client,
        dr: Option<&aws_sdk_rds::Client>,
    ) -> Result<Envelope> {
        let req = self.request(t, db.kind(), &db.id, policy, dry_run, now);
        let plan = work.describe();
        self.ctx
            .execute(req, async {
                if dry_run {
                    return Ok(ActionReport::would(format!("would {plan}"))
                        .detail("policy", &policy.name)
                        .detail("wouldSnapshot", work.snapshot)
                        .detail("wouldDelete", &work.prune.delete)
                        .detail("deferred", &work.prune.deferred)
                        .detail("wouldCopy", &work.copy)
                        .detail("wouldDeleteDr", &work.dr_prune.delete)
                        .detail("wouldSetRetention", work.retention));
                }
                let mut created = Vec::new();
                let mut deleted = Vec::new();
                let mut copied = Vec::new();
                let mut errors = Vec::new();
                let mut retention_set = None;
                let mut copy = work.copy.clone();
                if work.snapshot {
                    let id = db_snapshot_id(&db.id, now);
                    match rds::create_snapshot(rds, db, &id, &policy.name).await {
                        Ok(available) => {
                            tracing::info!(db = %db.id, snapshot = %id, policy = %policy.name, "DB snapshot taken");
                            // A snapshot still being created is copied by a later run.
                            if available && dr.is_some() {
                                copy = Some(id.clone());
                            }
                            created.push(id);
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                for id in &work.prune.delete {
                    match rds::delete_snapshot(rds, db, id).await {
                        Ok(()) => {
                            tracing::info!(db = %db.id, snapshot = %id, "expired DB snapshot deleted");
                            deleted.push(id.clone());
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                if let (Some(src), Some(dr)) = (copy, dr) {
                    match rds::copy_snapshot(dr, db, &src, &policy.name).await {
                        Ok(id) => {
                            tracing::info!(db = %db.id, snapshot = %src, copy = %id, "DB snapshot copied to DR region");
                            copied.push(id);
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                let mut dr_deleted = Vec::new();
                if let Some(dr) = dr {
                    for id in &work.dr_prune.delete {
                        match rds::delete_snapshot(dr, db, id).await {
                            Ok(()) => {
                                tracing::info!(db = %db.id, snapshot = %id, "expired DR-region copy deleted");
                                dr_deleted.push(id.clone());
                            }
                            Err(e) => errors.push(e.to_string()),
                        }
                    }
                }
                if let Some(days) = work.retention {
                    match rds::set_retention(rds, db, days).await {
                        Ok(()) => {
                            tracing::info!(db = %db.id, from = db.retention_days, to = days, "backup retention set");
                            retention_set = Some(days);
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                let report = if errors.is_empty() {
                    ActionReport::acted(plan.clone())
                } else {
                    ActionReport::failed(format!("{} of the work failed: {}", errors.len(), errors.join("; ")))
                };
                Ok(report
                    .detail("policy", &policy.name)
                    .detail("created", created)
                    .detail("deleted", deleted)
                    .detail("copied", copied)
                    .detail("drDeleted", dr_deleted)
                    .detail("deferred", &work.prune.deferred)
                    .detail("drDeferred", &work.dr_prune.deferred)
                    .detail("retentionSetTo", retention_set))
            })
            .await
    }

    // --- AWS Backup plans --------------------------------------------------------------------

    /// Makes sure the policy's vault (and DR vault) and plan exist with the wanted rule. `None`:
    /// already compliant.
    async fn enforce_plan(
        &self,
        t: &Trigger,
        policy: &Policy,
        dry_run: bool,
        now: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<Option<Envelope>> {
        let b = self.ctx.aws.backup();
        let name = policy.plan_name();
        let vault_arn = plans::ensure_vault(&b, &policy.vault, false).await?;
        let dr_backup = policy.copy_region.as_ref().map(|r| self.ctx.aws.in_region(r).backup());
        let dr_vault = match &dr_backup {
            Some(c) => plans::ensure_vault(c, &policy.vault, false).await?,
            None => None,
        };
        let found = plans::find_plan(&b, &name).await?;
        // The account comes from the vault's ARN; before the vault exists, from the plan rules' copy
        // targets, else it is filled in once the vault is created.
        let account = vault_arn.as_deref().and_then(|a| a.split(':').nth(4)).map(str::to_string);
        let want = desired_rule(policy, account.as_deref().unwrap_or("{account}"));
        let mut problems = Vec::new();
        if vault_arn.is_none() {
            problems.push(format!("vault {} missing", policy.vault));
        }
        if dr_backup.is_some() && dr_vault.is_none() {
            problems.push(format!(
                "DR vault {} missing in {}",
                policy.vault,
                policy.copy_region.clone().unwrap_or_default()
            ));
        }
        match &found {
            None => problems.push(format!("plan {name} missing")),
            Some(p) => problems.extend(plan_drift(&p.rules, &want)),
        }
        if problems.is_empty() {
            return Ok(None);
        }
        report.drift.insert(name.clone(), problems.clone());
        tracing::warn!(plan = %name, drift = ?problems, "backup plan drift");
        let req = ActionRequest {
            action: "enforce-backup-plan".into(),
            target: Target::new(KIND_PLAN, name.clone()),
            event_id: format!("sweep:plans:{}", now.timestamp().div_euclid(3600)),
            trigger: t.kind.name().into(),
            dry_run,
            reason: format!("policy {}", policy.name),
        };
        let env = self
            .ctx
            .execute(req, async {
                if dry_run {
                    return Ok(ActionReport::would(format!("would correct {name}: {}", problems.join("; ")))
                        .detail("drift", &problems)
                        .detail("want", &want));
                }
                let arn = match vault_arn.clone() {
                    Some(a) => a,
                    None => plans::ensure_vault(&b, &policy.vault, true).await?.unwrap_or_default(),
                };
                if let (Some(c), None) = (&dr_backup, &dr_vault) {
                    plans::ensure_vault(c, &policy.vault, true).await?;
                }
                let account = arn.split(':').nth(4).unwrap_or_default();
                let want = desired_rule(policy, account);
                let did = match &found {
                    None => format!("created plan {}", plans::create_plan(&b, &name, &want).await?),
                    Some(p) if plan_drift(&p.rules, &want).is_empty() => "plan already matched".to_string(),
                    Some(p) => {
                        plans::update_plan(&b, &p.id, &name, &want).await?;
                        format!("updated plan {}", p.id)
                    }
                };
                Ok(ActionReport::acted(format!("corrected {name}: {did}"))
                    .detail("drift", &problems)
                    .detail("want", &want))
            })
            .await?;
        Ok(Some(env))
    }
}

/// One unit of per-resource work in a sweep.
enum Job {
    Unknown(String, String),
    Volume(Box<(Volume, Policy, Work)>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + h * 3600, 0).unwrap()
    }

    fn snap(id: &str, hours: i64, ours: bool) -> Snap {
        Snap { id: id.into(), started: t(hours), state: SnapState::Completed, ours }
    }

    fn policy() -> Policy {
        Policy { retention_days: 7, min_keep: 2, max_age_hours: 24, ..builtin_policies()["silver"].clone() }
    }

    #[test]
    fn db_snapshot_arns_come_from_the_database_arn() {
        assert_eq!(
            rds::snapshot_arn("arn:aws:rds:us-east-1:123456789012:db:orders", false, "selfheal-orders-1").as_deref(),
            Some("arn:aws:rds:us-east-1:123456789012:snapshot:selfheal-orders-1")
        );
        assert_eq!(
            rds::snapshot_arn("arn:aws-cn:rds:cn-north-1:123456789012:cluster:au", true, "s1").as_deref(),
            Some("arn:aws-cn:rds:cn-north-1:123456789012:cluster-snapshot:s1")
        );
        for bad in ["", "orders", "arn:aws:ec2:us-east-1:123456789012:volume/v", "arn:aws:rds:::db:x"] {
            assert_eq!(rds::snapshot_arn(bad, false, "s"), None, "{bad}");
        }
    }

    #[test]
    fn staleness_uses_the_newest_usable_snapshot() {
        let p = policy();
        assert!(is_stale(&[], &p, t(0)));
        assert!(!is_stale(&[snap("a", 0, false)], &p, t(24)));
        assert!(is_stale(&[snap("a", 0, false)], &p, t(25)));
        let mut pending = snap("b", 20, true);
        pending.state = SnapState::Pending;
        assert!(!is_stale(&[snap("a", 0, false), pending.clone()], &p, t(25)), "a pending snapshot counts");
        pending.state = SnapState::Error;
        assert!(is_stale(&[snap("a", 0, false), pending], &p, t(25)), "a failed snapshot does not");
    }

    #[test]
    fn prune_spares_foreign_ami_newest_and_respects_cap() {
        let p = policy();
        let now = t(24 * 30);
        // ours: o1..o5 (oldest first), all past retention; f foreign; a ours but AMI-backed.
        let snaps = vec![
            snap("o1", 0, true),
            snap("o2", 1, true),
            snap("a", 2, true),
            snap("o3", 3, true),
            snap("f", 4, false),
            snap("o4", 5, true),
            snap("o5", 6, true),
        ];
        let amis: HashSet<String> = ["a".to_string()].into();
        let pr = plan_prune(&snaps, &amis, &p, now, 100);
        assert_eq!(pr.delete, vec!["o1", "o2", "o3"]);
        assert_eq!(pr.spared_ami, vec!["a"]);
        assert!(pr.deferred.is_empty());
        // 7 snapshots at 30% -> at most 2 deletions.
        let pr = plan_prune(&snaps, &amis, &p, now, 30);
        assert_eq!(pr.delete, vec!["o1", "o2"]);
        assert_eq!(pr.deferred, vec!["o3"]);
        assert!(plan_prune(&snaps, &amis, &p, now, 0).delete.is_empty());
        // Inside retention nothing goes.
        assert!(plan_prune(&snaps, &amis, &p, t(24 * 6), 100).delete.is_empty());
        // Only foreign snapshots: nothing goes.
        let foreign: Vec<Snap> = (0..5).map(|i| snap(&format!("f{i}"), i, false)).collect();
        assert!(plan_prune(&foreign, &amis, &p, now, 100).delete.is_empty());
    }

    #[test]
    fn pending_snapshots_are_never_pruned() {
        let p = policy();
        let mut s = vec![snap("o1", 0, true), snap("o2", 1, true), snap("o3", 2, true)];
        s[0].state = SnapState::Pending;
        let pr = plan_prune(&s, &HashSet::new(), &p, t(24 * 30), 100);
        assert!(pr.delete.is_empty(), "{pr:?}");
    }

    #[test]
    fn copy_candidate_is_the_newest_uncopied_suite_snapshot() {
        let s = vec![snap("o1", 0, true), snap("o2", 1, true), snap("f", 2, false)];
        assert_eq!(copy_candidate(&s, &HashSet::new()).as_deref(), Some("o2"));
        assert_eq!(copy_candidate(&s, &["o2".to_string()].into()), None);
    }

    #[test]
    fn rds_retention_only_rises_and_caps_at_35() {
        let mut p = policy();
        assert_eq!(rds_retention_fix(0, &p), Some(7));
        assert_eq!(rds_retention_fix(7, &p), None);
        assert_eq!(rds_retention_fix(14, &p), None);
        p.retention_days = 90;
        assert_eq!(rds_retention_fix(30, &p), Some(35));
    }

    #[test]
    fn buckets_follow_the_policy_window() {
        let p = policy();
        assert_eq!(sweep_event_id(&p, t(0)), sweep_event_id(&p, t(0) + Duration::minutes(1)));
        assert_ne!(time_bucket(t(0), &p), time_bucket(t(24), &p));
    }

    #[test]
    fn policies_merge_over_builtins_and_are_validated() {
        let p = parse_policies(Some(r#"{"gold":{"copyRegion":"us-west-2"},"tiny":{"maxAgeHours":1}}"#)).unwrap();
        assert_eq!(p["gold"].copy_region.as_deref(), Some("us-west-2"));
        assert_eq!(p["gold"].retention_days, 35);
        assert_eq!(p["tiny"].max_age_hours, 1);
        assert_eq!(p["tiny"].vault, "selfheal-tiny");
        assert_eq!(p["bronze"].max_age_hours, 168);
        let err = parse_policies(Some(r#"{"x":{"minKeep":0,"schedule":"daily"}}"#)).unwrap_err();
        assert!(err.contains("x.minKeep") && err.contains("x.schedule"), "{err}");
        assert!(parse_policies(Some(r#"{"x":{"bogus":1}}"#)).is_err());
        assert!(parse_policies(Some("[]")).is_err());
    }

    #[test]
    fn config_reports_problems_by_name() {
        let mut env = Env::from_map(
            [
                ("SELFHEAL_BACKUP_CONCURRENCY".to_string(), "0".to_string()),
                ("SELFHEAL_BACKUP_POLICIES".to_string(), "{".to_string()),
            ]
            .into(),
        );
        let _ = BackupConfig::read(&mut env);
        let err = env.finish().unwrap_err().to_string();
        assert!(err.contains("SELFHEAL_BACKUP_CONCURRENCY") && err.contains("SELFHEAL_BACKUP_POLICIES"), "{err}");
    }

    #[test]
    fn drift_names_each_difference() {
        let mut p = policy();
        p.copy_region = Some("us-west-2".into());
        let want = desired_rule(&p, "123456789012");
        assert_eq!(want.copy_to, vec!["arn:aws:backup:us-west-2:123456789012:backup-vault:selfheal-silver"]);
        assert!(plan_drift(std::slice::from_ref(&want), &want).is_empty());
        let mut have = want.clone();
        have.delete_after_days = Some(3);
        have.schedule = "cron(0 1 ? * * *)".into();
        let d = plan_drift(&[have], &want);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("schedule") && d[1].starts_with("deleteAfterDays"), "{d:?}");
        assert!(plan_drift(&[], &want)[0].contains("missing"));
        let input = plans::plan_input("selfheal-silver", &want).unwrap();
        assert_eq!(input.rules()[0].lifecycle().and_then(|l| l.delete_after_days()), Some(7));
        assert_eq!(input.rules()[0].copy_actions().len(), 1);
    }

    #[test]
    fn large_sweeps_answer_with_failures_and_the_report_only() {
        let env =
            |id: &str, outcome| Envelope::new(FUNCTION, "enforce-backup", Target::new(KIND_VOLUME, id), outcome, "");
        let small: Vec<Envelope> = (0..3).map(|i| env(&format!("vol-{i}"), Outcome::Acted)).collect();
        assert_eq!(response_decisions(small.clone()), small);

        let mut big: Vec<Envelope> = (0..5000).map(|i| env(&format!("vol-{i}"), Outcome::Acted)).collect();
        big[17].outcome = Outcome::Failed;
        big.push(Envelope::new(FUNCTION, "compliance-report", Target::new("backup-sweep", "e"), Outcome::Failed, ""));
        let out = response_decisions(big);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].target.id, "vol-17");
        assert_eq!(out[1].action, "compliance-report");
        assert_eq!(out[1].details["decisionsOmittedFromResponse"], 4999);

        let all_failed: Vec<Envelope> =
            (0..=RESPONSE_DECISION_LIMIT * 2).map(|i| env(&format!("v{i}"), Outcome::Failed)).collect();
        assert_eq!(response_decisions(all_failed).len(), RESPONSE_DECISION_LIMIT + 1);
    }

    #[test]
    fn db_snapshot_ids_are_valid() {
        let id = db_snapshot_id("orders-db", t(0));
        assert!(id.starts_with("selfheal-orders-db-2027"), "{id}");
        assert!(!id.contains("--"));
    }
}
