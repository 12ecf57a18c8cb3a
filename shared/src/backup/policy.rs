//! Backup policies: the built-in tiers (gold, silver, bronze) and `SELFHEAL_BACKUP_POLICIES` merged
//! over them and validated.

use std::collections::BTreeMap;

use chrono::Duration;
use serde::{Deserialize, Serialize};

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
}
