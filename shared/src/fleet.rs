//! Acting in the right place: which accounts the hub serves, where a trigger's resource lives, and
//! the credentials to act there (`sts:AssumeRole` on the member role, cached until shortly before
//! they expire).
//!
//! A trigger names its account and region ([`crate::trigger::Scope`]). The hub's own account and
//! region is *home*: the function acts with its own credentials and its ledger keys are the bare
//! resource ids, exactly as a single-account deployment always had them. Anywhere else the function
//! assumes `arn:<partition>:iam::<account>:role/<SELFHEAL_MEMBER_ROLE_NAME>` (with
//! `SELFHEAL_EXTERNAL_ID` when set) under a session name that names the function and the event, so
//! CloudTrail in the member account says who acted and why; its ledger keys become
//! `{account}/{region}/{id}` ([`crate::ledger::Ledger::at`]). An account that is neither home nor in
//! `SELFHEAL_ACCOUNTS` is refused; a role that cannot be assumed is a failed decision that pages.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::clients::Aws;
use crate::context::{Ctx, Place, Session};
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::{Error, Result};
use crate::trigger::{Scope, Trigger};

/// Credentials are renewed when fewer than this many seconds of them are left.
const RENEW_BEFORE_SECONDS: i64 = 300;

/// The action name of a decision about a place rather than a resource.
pub const ACTION_ACT_IN: &str = "act-in-account";

/// What [`Ctx::for_trigger`] found.
#[derive(Debug)]
pub enum Placed {
    /// The context to handle the trigger in.
    Here(Box<Ctx>),
    /// The hub will not or cannot act there; the decision is recorded and published.
    Refused(Box<Envelope>),
}

/// How long the accounts listed under the configured OUs are trusted before they are listed again.
const ORG_LISTING_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The accounts the hub serves, as far as it could tell.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// Account id → its name where known (configured, or the organization's).
    pub accounts: BTreeMap<String, Option<String>>,
    /// Why the configured OUs could not be listed, if they could not (the explicit accounts stand).
    pub problem: Option<String>,
}

/// An STS role session name (2–64 of `[\w+=,.@-]`) naming the function and the event.
pub fn session_name(function: &str, event_id: &str) -> String {
    let raw = format!("selfheal-{function}@{event_id}");
    let clean: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) { c } else { '-' }).collect();
    clean.chars().take(64).collect()
}

impl Ctx {
    /// The hub's own account id: configured, or asked of STS once per cold start.
    pub async fn home_account(&self) -> Result<String> {
        if let Some(a) = &self.config.fleet.home_account {
            return Ok(a.clone());
        }
        let aws = self.aws.clone();
        self.fleet
            .home_account
            .get_or_try_init(|| async move {
                let out = aws
                    .sts()
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| Error::aws("sts", "GetCallerIdentity", e))?;
                out.account().map(str::to_string).ok_or_else(|| Error::Precondition("STS named no account".into()))
            })
            .await
            .cloned()
    }

    /// The hub's own region.
    pub fn home_region(&self) -> Option<String> {
        self.aws.sdk.region().map(|r| r.to_string())
    }

    /// The context to handle `t` in. Home (no account, or the hub's own, in the hub's region): this
    /// context unchanged. Another region of the hub's account: its clients there and account-qualified
    /// ledger keys. A member account in `SELFHEAL_ACCOUNTS`: the member role's credentials. Anything
    /// else is refused (critical), and an AssumeRole that fails is a failed decision (critical) that
    /// names the account, the region and AWS's words.
    pub async fn for_trigger(&self, t: &Trigger) -> Result<Placed> {
        self.at(&t.scope, t).await
    }

    /// The member accounts the hub serves: those listed in `SELFHEAL_ACCOUNTS`, and every active
    /// account under the OUs listed there (from AWS Organizations, cached for 15 minutes; a listing
    /// that fails is named in [`Served::problem`] and retried on the next call).
    pub async fn served_accounts(&self) -> Served {
        let fleet = &self.config.fleet;
        let mut served = Served { accounts: fleet.accounts.clone(), problem: None };
        if fleet.org_units.is_empty() {
            return served;
        }
        let mut cache = self.fleet.org_accounts.lock().await;
        let fresh = cache.as_ref().filter(|(at, _)| at.elapsed() < ORG_LISTING_TTL).map(|(_, a)| a.clone());
        let listed = match fresh {
            Some(a) => a,
            None => match self.list_org_accounts(&fleet.org_units).await {
                Ok(a) => {
                    *cache = Some((std::time::Instant::now(), a.clone()));
                    a
                }
                Err(e) => {
                    served.problem =
                        Some(format!("cannot list the accounts under {}: {e}", fleet.org_units.join(", ")));
                    return served;
                }
            },
        };
        for (id, name) in listed {
            served.accounts.entry(id).or_insert(name);
        }
        served
    }

    /// Active accounts under `parents`, recursively through their OUs.
    async fn list_org_accounts(&self, parents: &[String]) -> Result<BTreeMap<String, Option<String>>> {
        let org = self.aws.organizations();
        let mut accounts = BTreeMap::new();
        let mut queue: Vec<String> = parents.to_vec();
        let mut seen = std::collections::BTreeSet::new();
        while let Some(parent) = queue.pop() {
            if !seen.insert(parent.clone()) {
                continue;
            }
            let mut pages = org.list_accounts_for_parent().parent_id(&parent).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| Error::aws("organizations", "ListAccountsForParent", e))?;
                for a in page.accounts() {
                    let active = a.status().map(|s| s.as_str() == "ACTIVE").unwrap_or(true);
                    if let (Some(id), true) = (a.id(), active) {
                        accounts.insert(id.to_string(), a.name().map(str::to_string));
                    }
                }
            }
            let mut pages = org.list_organizational_units_for_parent().parent_id(&parent).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| Error::aws("organizations", "ListOrganizationalUnitsForParent", e))?;
                queue.extend(page.organizational_units().iter().filter_map(|u| u.id().map(str::to_string)));
            }
        }
        Ok(accounts)
    }

    /// Every (account, region) a fleet-wide sweep covers: the hub's own account and each member
    /// account of `SELFHEAL_ACCOUNTS`, in each of `regions` (the hub's region when empty); and why the
    /// configured OUs could not be listed, if they could not (the places named explicitly stand).
    pub async fn fleet_scopes(&self, regions: &[String]) -> Result<(Vec<Scope>, Option<String>)> {
        let regions: Vec<String> =
            if regions.is_empty() { self.home_region().into_iter().collect() } else { regions.to_vec() };
        let home = self.home_account().await?;
        let served = self.served_accounts().await;
        let mut accounts = vec![home.clone()];
        accounts.extend(served.accounts.into_keys().filter(|a| *a != home));
        let scopes = accounts
            .iter()
            .flat_map(|a| regions.iter().map(move |r| Scope { account: Some(a.clone()), region: Some(r.clone()) }))
            .collect();
        Ok((scopes, served.problem))
    }

    /// The context to handle `t` in at `scope` (see [`Ctx::for_trigger`]); a sweep calls it once per
    /// place it covers.
    pub async fn at(&self, scope: &Scope, t: &Trigger) -> Result<Placed> {
        let home_region = self.home_region();
        let region = scope.region.clone().filter(|r| Some(r) != home_region.as_ref());
        let account = match scope.account.clone() {
            Some(a) if a != self.home_account().await? => Some(a),
            _ => None,
        };
        if account.is_none() && region.is_none() {
            return Ok(Placed::Here(Box::new(self.clone())));
        }
        let account_id = match &account {
            Some(a) => a.clone(),
            None => self.home_account().await?,
        };
        let region_name = region.clone().or(home_region).unwrap_or_default();
        let account_name = match &account {
            None => None,
            Some(a) => match self.admit(t, a, &region_name).await? {
                Ok(name) => name,
                Err(refusal) => return Ok(Placed::Refused(Box::new(refusal))),
            },
        };
        let aws = match &account {
            None => self.aws.in_region(&region_name),
            Some(a) => match self.assume(a, &region_name, &session_name(&self.config.function, &t.event_id)).await {
                Ok(aws) => aws,
                Err(e) => {
                    let reason = format!("cannot act in {a}/{region_name}: {e}");
                    tracing::error!(account = %a, region = %region_name, event_id = %t.event_id, "{reason}");
                    let env = self.place_decision(t, a, &region_name, Outcome::Failed, reason);
                    return Ok(Placed::Refused(Box::new(self.record(env).await?)));
                }
            },
        };
        let mut ctx = self.clone();
        ctx.ledger = self.ledger.at(&account_id, &region_name);
        ctx.aws = aws;
        ctx.place = Place { account: Some(account_id), region: Some(region_name), account_name };
        Ok(Placed::Here(Box::new(ctx)))
    }

    /// Whether the hub serves member `account`: its name where known, or the recorded refusal
    /// (refused when it is not served; failed, which pages, when the organization could not be read).
    async fn admit(
        &self,
        t: &Trigger,
        account: &str,
        region: &str,
    ) -> Result<std::result::Result<Option<String>, Envelope>> {
        if let Some(name) = self.config.fleet.accounts.get(account) {
            return Ok(Ok(name.clone()));
        }
        let served = self.served_accounts().await;
        if let Some(name) = served.accounts.get(account) {
            return Ok(Ok(name.clone()));
        }
        let (outcome, reason) = match &served.problem {
            Some(problem) => (
                Outcome::Failed,
                format!(
                    "cannot tell whether this hub serves account {account} ({region}): {problem}; nothing was done"
                ),
            ),
            None => {
                let fleet = &self.config.fleet;
                let listed: Vec<String> = fleet.accounts.keys().chain(fleet.org_units.iter()).cloned().collect();
                let listed = if listed.is_empty() { "no member accounts".to_string() } else { listed.join(", ") };
                (
                    Outcome::Refused,
                    format!(
                        "refused: the event is about account {account} ({region}), which this hub does not serve \
                         (SELFHEAL_ACCOUNTS lists {listed}); nothing was done"
                    ),
                )
            }
        };
        tracing::warn!(account, region, event_id = %t.event_id, "{reason}");
        let env = self.place_decision(t, account, region, outcome, reason);
        Ok(Err(self.record(env).await?))
    }

    /// For a function that acts only in the hub's own account (dns-failover manages the hub's zones):
    /// the recorded refusal of an event about an account the hub does not serve, else `None`.
    pub async fn refuse_unless_served(&self, t: &Trigger) -> Result<Option<Envelope>> {
        let Some(account) = t.scope.account.as_deref() else { return Ok(None) };
        if account == self.home_account().await? {
            return Ok(None);
        }
        let region = t.scope.region.clone().or_else(|| self.home_region()).unwrap_or_default();
        Ok(self.admit(t, account, &region).await?.err())
    }

    /// A decision about a place rather than a resource (critical: a human must look).
    fn place_decision(&self, t: &Trigger, account: &str, region: &str, outcome: Outcome, reason: String) -> Envelope {
        let mut target = Target::new("account", account);
        target.account = Some(account.to_string());
        target.region = Some(region.to_string());
        Envelope::new(&self.config.function, ACTION_ACT_IN, target, outcome, reason)
            .event(&t.event_id, t.kind.name())
            .severity(Severity::Critical)
            .detail("account", account)
            .detail("region", region)
    }

    /// The member role's credentials in `account`, acting in `region`: cached per (account, role,
    /// session) and renewed when under five minutes are left.
    async fn assume(&self, account: &str, region: &str, session: &str) -> Result<Aws> {
        let role = &self.config.fleet.member_role;
        let key = (account.to_string(), role.clone(), session.to_string());
        let cached = {
            let sessions = self.fleet.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.get(&key).cloned()
        };
        if let Some(s) = cached.filter(|s| (s.expires - Utc::now()).num_seconds() > RENEW_BEFORE_SECONDS) {
            return Ok(s.aws.regional(Some(region)));
        }
        let partition = match region {
            r if r.starts_with("cn-") => "aws-cn",
            r if r.starts_with("us-gov-") => "aws-us-gov",
            _ => "aws",
        };
        let role_arn = format!("arn:{partition}:iam::{account}:role/{role}");
        let out = self
            .aws
            .sts()
            .assume_role()
            .role_arn(&role_arn)
            .role_session_name(session)
            .set_external_id(self.config.fleet.external_id.clone())
            .send()
            .await
            .map_err(|e| Error::aws("sts", "AssumeRole", e))?;
        let c = out
            .credentials()
            .ok_or_else(|| Error::Precondition(format!("AssumeRole {role_arn} returned no credentials")))?;
        let expires = DateTime::<Utc>::from_timestamp(c.expiration().secs(), 0).unwrap_or_else(Utc::now);
        let aws = self.aws.with_credentials(
            aws_sdk_sts::config::Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_string()),
                Some(expires.into()),
                "selfheal-assume-role",
            ),
            region,
        );
        tracing::info!(account, role = %role, session, expires = %expires.to_rfc3339(), "assumed member role");
        let mut sessions = self.fleet.sessions.lock().unwrap_or_else(|p| p.into_inner());
        // One session per event: forget the expired ones, so a warm container does not grow with
        // every event it has seen.
        let now = Utc::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(key, Session { aws: aws.clone(), expires });
        Ok(aws)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_name_the_function_and_event_within_sts_rules() {
        let s = session_name("instance-healer", "alarm:web-1:2026-11-25T10:15:31.180Z");
        assert!(s.starts_with("selfheal-instance-healer@alarm-web-1-2026"), "{s}");
        assert!(s.len() <= 64);
        assert!(s.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)));
        assert_eq!(session_name("x", &"e".repeat(200)).len(), 64);
    }
}
