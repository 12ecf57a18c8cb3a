//! AWS Backup plans and vaults. (moto has plans and vaults but not UpdateBackupPlan, selections
//! or jobs; selections are left to infrastructure code.) Also the rule a policy wants and how a
//! plan's rules drift from it.

use aws_sdk_backup::types::{
    BackupPlanInput, BackupRuleInput, BackupSelection, ConditionParameter, Conditions, CopyAction, Lifecycle,
};
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

/// The backup selection that assigns a policy's DynamoDB tables to its plan, so that the plan backs
/// them up and its copy action copies each recovery point to the DR vault (the policy's
/// `tableDrCopies`). One per plan; the suite creates and replaces only this one.
pub const TABLE_SELECTION: &str = "selfheal-tables";
/// AWS Backup's own service role, the selection's role when the policy names none.
pub const DEFAULT_BACKUP_ROLE: &str = "service-role/AWSBackupDefaultServiceRole";

/// A backup selection in comparable form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectionSpec {
    pub name: String,
    pub role_arn: String,
    pub resources: Vec<String>,
    /// `StringEquals` conditions (key, value), sorted: every one must hold (AND).
    pub string_equals: Vec<(String, String)>,
}

/// The selection `policy` wants for its tables in `account`: every DynamoDB table there carrying the
/// policy tag with the policy's name AND the opt-in tag, as the sweep selects them.
pub fn table_selection(policy: &Policy, account: &str, policy_tag: &str, opt_in: (&str, &str)) -> SelectionSpec {
    let role = policy.backup_role.clone().unwrap_or_else(|| DEFAULT_BACKUP_ROLE.to_string());
    let role_arn = if role.starts_with("arn:") { role } else { format!("arn:aws:iam::{account}:role/{role}") };
    let mut string_equals = vec![
        (format!("aws:ResourceTag/{policy_tag}"), policy.name.clone()),
        (format!("aws:ResourceTag/{}", opt_in.0), opt_in.1.to_string()),
    ];
    string_equals.sort();
    SelectionSpec {
        name: TABLE_SELECTION.to_string(),
        role_arn,
        resources: vec![format!("arn:aws:dynamodb:*:{account}:table/*")],
        string_equals,
    }
}

/// What differs between a selection and the wanted one (empty: nothing).
pub fn selection_drift(have: &SelectionSpec, want: &SelectionSpec) -> Vec<String> {
    let mut out = Vec::new();
    if have.role_arn != want.role_arn {
        out.push(format!("selection role: {} -> {}", have.role_arn, want.role_arn));
    }
    if have.resources != want.resources {
        out.push(format!("selection resources: {:?} -> {:?}", have.resources, want.resources));
    }
    if have.string_equals != want.string_equals {
        out.push(format!("selection conditions: {:?} -> {:?}", have.string_equals, want.string_equals));
    }
    out
}

/// The plan's selection named `name` (its id and spec), if any.
pub async fn find_selection(
    b: &aws_sdk_backup::Client,
    plan_id: &str,
    name: &str,
) -> Result<Option<(String, SelectionSpec)>> {
    let mut pages = b.list_backup_selections().backup_plan_id(plan_id).into_paginator().items().send();
    let mut id = None;
    while let Some(m) = pages.next().await {
        let m = m.map_err(|e| Error::aws("backup", "ListBackupSelections", e))?;
        if m.selection_name() == Some(name) {
            id = m.selection_id().map(str::to_string);
            break;
        }
    }
    let Some(id) = id else { return Ok(None) };
    let got = b
        .get_backup_selection()
        .backup_plan_id(plan_id)
        .selection_id(&id)
        .send()
        .await
        .map_err(|e| Error::aws("backup", "GetBackupSelection", e))?;
    let Some(sel) = got.backup_selection() else { return Ok(None) };
    let mut resources = sel.resources().to_vec();
    resources.sort();
    let mut string_equals: Vec<(String, String)> = sel
        .conditions()
        .map(|c| {
            c.string_equals()
                .iter()
                .map(|p| {
                    (
                        p.condition_key().unwrap_or_default().to_string(),
                        p.condition_value().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    string_equals.sort();
    let spec = SelectionSpec {
        name: sel.selection_name().to_string(),
        role_arn: sel.iam_role_arn().to_string(),
        resources,
        string_equals,
    };
    Ok(Some((id, spec)))
}

/// Creates the selection on the plan; answers its id.
pub async fn create_selection(b: &aws_sdk_backup::Client, plan_id: &str, spec: &SelectionSpec) -> Result<String> {
    let mut conditions = Conditions::builder();
    for (k, v) in &spec.string_equals {
        conditions =
            conditions.string_equals(ConditionParameter::builder().condition_key(k).condition_value(v).build());
    }
    let selection = BackupSelection::builder()
        .selection_name(&spec.name)
        .iam_role_arn(&spec.role_arn)
        .set_resources(Some(spec.resources.clone()))
        .conditions(conditions.build())
        .build()
        .map_err(backup_err("CreateBackupSelection"))?;
    let out = b
        .create_backup_selection()
        .backup_plan_id(plan_id)
        .backup_selection(selection)
        .send()
        .await
        .map_err(|e| Error::aws("backup", "CreateBackupSelection", e))?;
    Ok(out.selection_id().unwrap_or_default().to_string())
}

/// Deletes a selection of the plan (selections cannot be updated: a drifted one is replaced).
pub async fn delete_selection(b: &aws_sdk_backup::Client, plan_id: &str, selection_id: &str) -> Result<()> {
    b.delete_backup_selection()
        .backup_plan_id(plan_id)
        .selection_id(selection_id)
        .send()
        .await
        .map_err(|e| Error::aws("backup", "DeleteBackupSelection", e))?;
    Ok(())
}

/// Makes the plan's selection `want`: creates it when `found` is none, replaces it (delete, then
/// create: selections cannot be updated) when it drifted, leaves it otherwise. Answers the id of the
/// selection it created, if it did.
pub async fn ensure_selection(
    b: &aws_sdk_backup::Client,
    plan_id: &str,
    found: Option<&(String, SelectionSpec)>,
    want: &SelectionSpec,
) -> Result<Option<String>> {
    match found {
        Some((_, have)) if selection_drift(have, want).is_empty() => Ok(None),
        Some((id, _)) => {
            delete_selection(b, plan_id, id).await?;
            Ok(Some(create_selection(b, plan_id, want).await?))
        }
        None => Ok(Some(create_selection(b, plan_id, want).await?)),
    }
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

    fn dr_policy() -> Policy {
        let mut p = policy();
        p.copy_region = Some("us-west-2".into());
        p.table_dr_copies = true;
        p
    }

    #[test]
    fn the_table_selection_picks_the_policys_opted_in_tables_and_names_its_drift() {
        let mut p = dr_policy();
        let want = table_selection(&p, "123456789012", "selfheal:backup", ("selfheal:enabled", "true"));
        assert_eq!(want.name, TABLE_SELECTION);
        assert_eq!(want.role_arn, "arn:aws:iam::123456789012:role/service-role/AWSBackupDefaultServiceRole");
        assert_eq!(want.resources, ["arn:aws:dynamodb:*:123456789012:table/*"]);
        assert_eq!(
            want.string_equals,
            [
                ("aws:ResourceTag/selfheal:backup".to_string(), p.name.clone()),
                ("aws:ResourceTag/selfheal:enabled".to_string(), "true".to_string())
            ]
        );
        assert!(selection_drift(&want, &want).is_empty());
        p.backup_role = Some("selfheal-backup-tables".into());
        let other = table_selection(&p, "123456789012", "selfheal:backup", ("selfheal:enabled", "yes"));
        assert_eq!(other.role_arn, "arn:aws:iam::123456789012:role/selfheal-backup-tables");
        let d = selection_drift(&want, &other);
        assert!(
            d.len() == 2 && d[0].starts_with("selection role") && d[1].starts_with("selection conditions"),
            "{d:?}"
        );
    }

    // AWS Backup selections are not served by moto: the calls are mocked, shaped from the API
    // reference (ListBackupSelections' BackupSelectionsList, GetBackupSelection's BackupSelection with
    // its Conditions.StringEquals, CreateBackupSelection's SelectionId).
    mod selections {
        use super::*;
        use aws_sdk_backup::operation::create_backup_selection::CreateBackupSelectionOutput;
        use aws_sdk_backup::operation::delete_backup_selection::DeleteBackupSelectionOutput;
        use aws_sdk_backup::operation::get_backup_selection::GetBackupSelectionOutput;
        use aws_sdk_backup::operation::list_backup_selections::ListBackupSelectionsOutput;
        use aws_sdk_backup::types::BackupSelectionsListMember;
        use aws_smithy_mocks::{mock, mock_client, RuleMode};

        fn want() -> SelectionSpec {
            table_selection(&dr_policy(), "123456789012", "selfheal:backup", ("selfheal:enabled", "true"))
        }

        #[tokio::test]
        async fn a_selection_is_read_back_in_comparable_form() {
            let w = want();
            let list = mock!(aws_sdk_backup::Client::list_backup_selections)
                .match_requests(|r| r.backup_plan_id() == Some("plan-1"))
                .then_output(|| {
                    ListBackupSelectionsOutput::builder()
                        .backup_selections_list(
                            BackupSelectionsListMember::builder()
                                .selection_name("someone-elses")
                                .selection_id("s-0")
                                .build(),
                        )
                        .backup_selections_list(
                            BackupSelectionsListMember::builder()
                                .selection_name(TABLE_SELECTION)
                                .selection_id("s-1")
                                .build(),
                        )
                        .build()
                });
            let wc = w.clone();
            let get = mock!(aws_sdk_backup::Client::get_backup_selection)
                .match_requests(|r| r.selection_id() == Some("s-1"))
                .then_output(move || {
                    let mut c = Conditions::builder();
                    // Answered in another order than asked: compared sorted.
                    for (k, v) in wc.string_equals.iter().rev() {
                        c = c.string_equals(ConditionParameter::builder().condition_key(k).condition_value(v).build());
                    }
                    GetBackupSelectionOutput::builder()
                        .backup_selection(
                            BackupSelection::builder()
                                .selection_name(TABLE_SELECTION)
                                .iam_role_arn(&wc.role_arn)
                                .set_resources(Some(wc.resources.clone()))
                                .conditions(c.build())
                                .build()
                                .unwrap(),
                        )
                        .build()
                });
            let b = mock_client!(aws_sdk_backup, RuleMode::MatchAny, [&list, &get]);
            let (id, found) = find_selection(&b, "plan-1", TABLE_SELECTION).await.unwrap().unwrap();
            assert_eq!((id.as_str(), &found), ("s-1", &w));
            assert_eq!(ensure_selection(&b, "plan-1", Some(&(id, found)), &w).await.unwrap(), None, "no change");
        }

        #[tokio::test]
        async fn a_missing_selection_is_created_and_a_drifted_one_replaced() {
            let w = want();
            let create = mock!(aws_sdk_backup::Client::create_backup_selection)
                .match_requests(|r| {
                    let s = r.backup_selection().unwrap();
                    r.backup_plan_id() == Some("plan-1")
                        && s.selection_name() == TABLE_SELECTION
                        && s.conditions().unwrap().string_equals().len() == 2
                        && s.resources() == ["arn:aws:dynamodb:*:123456789012:table/*"]
                })
                .then_output(|| CreateBackupSelectionOutput::builder().selection_id("s-new").build());
            let delete = mock!(aws_sdk_backup::Client::delete_backup_selection)
                .match_requests(|r| r.selection_id() == Some("s-old"))
                .then_output(|| DeleteBackupSelectionOutput::builder().build());
            let b = mock_client!(aws_sdk_backup, RuleMode::MatchAny, [&create, &delete]);
            assert_eq!(ensure_selection(&b, "plan-1", None, &w).await.unwrap().as_deref(), Some("s-new"));
            assert_eq!((create.num_calls(), delete.num_calls()), (1, 0));
            let mut drifted = w.clone();
            drifted.role_arn = "arn:aws:iam::123456789012:role/old".into();
            let found = ("s-old".to_string(), drifted);
            assert_eq!(ensure_selection(&b, "plan-1", Some(&found), &w).await.unwrap().as_deref(), Some("s-new"));
            assert_eq!((create.num_calls(), delete.num_calls()), (2, 1), "deleted, then created again");
        }
    }
}
