//! The AWS Backup part of a sweep: keeping one policy's plan and vaults (home and DR region) in line
//! with the policy, reporting the drift found.

use super::enforcer::BackupEnforcer;
use super::plans::{self, desired_rule, plan_drift};
use super::policy::Policy;
use super::report::Report;
use super::sweep::Pass;
use super::KIND_PLAN;
use crate::envelope::{Envelope, Target};
use crate::error::Result;
use crate::guardrails::{ActionReport, ActionRequest};

impl BackupEnforcer {
    /// Makes sure the policy's vault (and DR vault) and plan exist with the wanted rule. `None`:
    /// already compliant. The decision is the sweep's (under its lease), audited with the rest.
    pub(super) async fn enforce_plan(
        &self,
        pass: &Pass,
        policy: &Policy,
        report: &mut Report,
    ) -> Result<Option<Envelope>> {
        let (dry_run, now, t) = (pass.dry_run, pass.now, &pass.t);
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
        // The policy's tables, assigned to the plan so that its copy action makes their DR copies.
        let want_selection = match policy.table_dr_copies {
            true => Some(plans::table_selection(
                policy,
                &self.account().await?,
                &self.cfg.policy_tag,
                (&self.ctx.config.opt_in_tag, &self.ctx.config.opt_in_value),
            )),
            false => None,
        };
        let selection = match (&want_selection, &found) {
            (Some(_), Some(p)) => plans::find_selection(&b, &p.id, plans::TABLE_SELECTION).await?,
            _ => None,
        };
        if let Some(w) = &want_selection {
            match &selection {
                None => problems.push(format!(
                    "tables not assigned to plan {name} (selection {} missing): their DR copies are not made",
                    plans::TABLE_SELECTION
                )),
                Some((_, have)) => problems.extend(plans::selection_drift(have, w)),
            }
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
        let started = std::time::Instant::now();
        let work = async {
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
            let (plan_id, mut did) = match &found {
                None => {
                    let id = plans::create_plan(&b, &name, &want).await?;
                    (id.clone(), format!("created plan {id}"))
                }
                Some(p) if plan_drift(&p.rules, &want).is_empty() => (p.id.clone(), "plan already matched".to_string()),
                Some(p) => {
                    plans::update_plan(&b, &p.id, &name, &want).await?;
                    (p.id.clone(), format!("updated plan {}", p.id))
                }
            };
            if let Some(w) = &want_selection {
                if let Some(id) = plans::ensure_selection(&b, &plan_id, selection.as_ref(), w).await? {
                    did.push_str(&format!(
                        "; assigned the policy's tables to it (selection {id}, role {})",
                        w.role_arn
                    ));
                }
            }
            Ok(ActionReport::acted(format!("corrected {name}: {did}"))
                .detail("drift", &problems)
                .detail("want", &want)
                .detail("tableSelection", &want_selection))
        };
        let result = work.await;
        Ok(Some(self.decision(&req, result, started)))
    }
}
