//! AWS Backup plans and vaults. (moto has plans and vaults but not UpdateBackupPlan, selections
//! or jobs; selections are left to infrastructure code.) Also the rule a policy wants and how a
//! plan's rules drift from it.

use aws_sdk_backup::types::{BackupPlanInput, BackupRuleInput, CopyAction, Lifecycle};
use serde::Serialize;

use super::policy::Policy;
use super::{CREATED_BY, TAG_CREATED_BY};
use crate::error::{Error, Result};

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
    let got =
        b.get_backup_plan().backup_plan_id(&id).send().await.map_err(|e| Error::aws("backup", "GetBackupPlan", e))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::plans;
    use crate::backup::test_support::policy;

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
}
