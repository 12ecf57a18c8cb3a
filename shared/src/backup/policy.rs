//! Backup policies: the built-in tiers (gold, silver, bronze) and `SELFHEAL_BACKUP_POLICIES` merged
//! over them and validated.

use std::collections::BTreeMap;

use chrono::Duration;
use serde::{Deserialize, Serialize};

/// DynamoDB keeps point-in-time recovery for 1 to 35 days.
pub const PITR_MAX_DAYS: u32 = 35;

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
    /// DynamoDB point-in-time recovery period (`pitrRecoveryDays`, 1..=35); `None`: the retention,
    /// capped at 35 ([`Policy::pitr_days`]).
    pub pitr_recovery_days: Option<u32>,
    /// DynamoDB on-demand backups (`tableBackups`) on the policy's schedule (`maxAgeHours`), kept
    /// for `retentionDays` with the newest `minKeep` always kept.
    pub table_backups: bool,
    /// S3: noncurrent object versions expire after this many days (`noncurrentVersionDays`;
    /// default: the retention).
    pub noncurrent_version_days: Option<u32>,
    /// S3 cross-region replication's destination bucket ARN (`replicationDestination`), in the DR
    /// region: replication is checked only when a policy names one.
    pub replication_destination: Option<String>,
    /// The IAM role S3 replicates as (`replicationRole`), when the suite creates replication: an ARN,
    /// or a role name, taken in the bucket's own account (one policy serves every account). The
    /// templates let the function pass only roles named `selfheal-replication*`.
    pub replication_role: Option<String>,
    /// Create the replication rule when a bucket has none (`createReplication`; needs the
    /// destination and the role); otherwise a missing rule is only reported.
    pub create_replication: bool,
    /// DR copies of the policy's DynamoDB tables through its AWS Backup plan (`tableDrCopies`; needs
    /// `copyRegion`): the suite assigns the tables carrying the policy and opt-in tags to the plan with
    /// a backup selection ([`super::plans::TABLE_SELECTION`]), and the plan's copy action copies each
    /// recovery point to the DR vault.
    pub table_dr_copies: bool,
    /// The IAM role AWS Backup uses for that selection (`backupRole`): a role name starting
    /// `selfheal-backup` (the templates pass no other) or its ARN; default AWS Backup's own
    /// `service-role/AWSBackupDefaultServiceRole`.
    pub backup_role: Option<String>,
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
            pitr_recovery_days: None,
            table_backups: false,
            noncurrent_version_days: None,
            replication_destination: None,
            replication_role: None,
            create_replication: false,
            table_dr_copies: false,
            backup_role: None,
        }
    }

    /// DynamoDB's point-in-time recovery period: `pitrRecoveryDays`, else the retention capped at 35.
    pub fn pitr_days(&self) -> i32 {
        self.pitr_recovery_days.unwrap_or(self.retention_days).clamp(1, PITR_MAX_DAYS) as i32
    }

    /// S3 noncurrent-version expiration: `noncurrentVersionDays`, else the retention.
    pub fn noncurrent_days(&self) -> i32 {
        self.noncurrent_version_days.unwrap_or(self.retention_days).clamp(1, i32::MAX as u32) as i32
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
    pitr_recovery_days: Option<u32>,
    table_backups: Option<bool>,
    noncurrent_version_days: Option<u32>,
    replication_destination: Option<String>,
    replication_role: Option<String>,
    create_replication: Option<bool>,
    table_dr_copies: Option<bool>,
    backup_role: Option<String>,
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
        if let Some(v) = spec.pitr_recovery_days {
            p.pitr_recovery_days = Some(v);
        }
        if let Some(v) = spec.table_backups {
            p.table_backups = v;
        }
        if let Some(v) = spec.noncurrent_version_days {
            p.noncurrent_version_days = Some(v);
        }
        if let Some(v) = spec.replication_destination {
            p.replication_destination = Some(v).filter(|d| !d.is_empty());
        }
        if let Some(v) = spec.replication_role {
            p.replication_role = Some(v).filter(|r| !r.is_empty());
        }
        if let Some(v) = spec.create_replication {
            p.create_replication = v;
        }
        if let Some(v) = spec.table_dr_copies {
            p.table_dr_copies = v;
        }
        if let Some(v) = spec.backup_role {
            p.backup_role = Some(v).filter(|r| !r.is_empty());
        }
        problems.extend(datastore_problems(&name, &p));
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

/// What is wrong with a policy's DynamoDB and S3 settings.
fn datastore_problems(name: &str, p: &Policy) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(d) = p.pitr_recovery_days.filter(|d| !(1..=PITR_MAX_DAYS).contains(d)) {
        problems.push(format!("{name}.pitrRecoveryDays must be 1 to {PITR_MAX_DAYS} (DynamoDB's range), got {d}"));
    }
    if p.noncurrent_version_days == Some(0) {
        problems.push(format!("{name}.noncurrentVersionDays must be at least 1"));
    }
    if let Some(d) = &p.replication_destination {
        let bucket = d.strip_prefix("arn:aws:s3:::").unwrap_or_default();
        if bucket.is_empty() || bucket.contains('/') {
            problems
                .push(format!("{name}.replicationDestination must be a bucket ARN (arn:aws:s3:::<bucket>), got {d:?}"));
        }
    }
    if let Some(r) = &p.replication_role {
        let arn_ok = r.starts_with("arn:aws:iam::") && r.split(':').nth(5).is_some_and(|res| res.starts_with("role/"));
        let name_ok = !r.starts_with("arn:")
            && r.len() <= 64
            && r.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
        if !arn_ok && !name_ok {
            problems.push(format!(
                "{name}.replicationRole must be an IAM role ARN (arn:aws:iam::<account>:role/<name>) or a role name, got {r:?}"
            ));
        }
    }
    if p.create_replication && (p.replication_destination.is_none() || p.replication_role.is_none()) {
        problems.push(format!("{name}.createReplication needs replicationDestination and replicationRole"));
    }
    if p.table_dr_copies && p.copy_region.is_none() {
        problems.push(format!("{name}.tableDrCopies needs copyRegion (the DR region its plan copies to)"));
    }
    if let Some(r) = &p.backup_role {
        let role_name = match r.strip_prefix("arn:aws:iam::") {
            Some(rest) => rest.split_once(":role/").map(|(_, n)| n).unwrap_or_default(),
            None => r.as_str(),
        };
        if !role_name.starts_with("selfheal-backup") || role_name.contains('/') {
            problems.push(format!(
                "{name}.backupRole must be a role named selfheal-backup* (the only roles the templates let \
                 backup-enforcer pass to AWS Backup besides its default role), or its ARN, got {r:?}"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn datastore_settings_default_from_the_retention_and_are_validated() {
        let p = parse_policies(Some(
            r#"{"t":{"retentionDays":90,"tableBackups":true,"replicationDestination":"arn:aws:s3:::dr-bucket",
                "replicationRole":"arn:aws:iam::111111111111:role/replicate","createReplication":true},
                "u":{"pitrRecoveryDays":7,"noncurrentVersionDays":3}}"#,
        ))
        .unwrap();
        assert_eq!(p["t"].pitr_days(), 35, "the retention, capped at DynamoDB's 35 days");
        assert_eq!(p["silver"].pitr_days(), 14);
        assert_eq!(p["u"].pitr_days(), 7);
        assert!(p["t"].table_backups && !p["gold"].table_backups);
        assert_eq!((p["t"].noncurrent_days(), p["u"].noncurrent_days()), (90, 3));
        assert!(p["t"].create_replication);
        let err = parse_policies(Some(
            r#"{"x":{"pitrRecoveryDays":36,"noncurrentVersionDays":0,"replicationDestination":"dr-bucket",
                "replicationRole":"arn:aws:s3:::x","createReplication":true},"y":{"createReplication":true}}"#,
        ))
        .unwrap_err();
        for want in [
            "x.pitrRecoveryDays must be 1 to 35",
            "x.noncurrentVersionDays must be at least 1",
            "x.replicationDestination must be a bucket ARN",
            "x.replicationRole must be an IAM role ARN",
            "y.createReplication needs replicationDestination and replicationRole",
        ] {
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn table_dr_copies_need_a_dr_region_and_a_passable_backup_role() {
        let p = parse_policies(Some(
            r#"{"t":{"copyRegion":"us-west-2","tableDrCopies":true,"backupRole":"selfheal-backup-tables"},
                "a":{"copyRegion":"us-west-2","tableDrCopies":true,
                     "backupRole":"arn:aws:iam::111111111111:role/selfheal-backup"}}"#,
        ))
        .unwrap();
        assert!(p["t"].table_dr_copies && p["t"].backup_role.as_deref() == Some("selfheal-backup-tables"));
        assert!(!p["gold"].table_dr_copies && p["gold"].backup_role.is_none());
        let err = parse_policies(Some(
            r#"{"x":{"tableDrCopies":true},"y":{"copyRegion":"us-west-2","backupRole":"admin"},
                "z":{"backupRole":"arn:aws:iam::111111111111:role/ops/selfheal-backup"}}"#,
        ))
        .unwrap_err();
        for want in [
            "x.tableDrCopies needs copyRegion",
            "y.backupRole must be a role named selfheal-backup*",
            "z.backupRole must be a role named selfheal-backup*",
        ] {
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
