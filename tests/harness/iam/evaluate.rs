//! A deployment's recorded calls, evaluated: the [`Deployment`] a function's configuration implies
//! (the hub stack's and member stacks' parameters), and [`evaluate`], which takes each recorded call
//! to the role it ran as (the hub role, or the member role whose credentials an `AssumeRole` in the
//! same log handed out), asks IAM's decision for every authorization it needs, and evaluates the
//! member role's trust for each `AssumeRole` into a member account. The [`Evaluation`] says what was
//! covered and what would be denied.

use std::collections::{BTreeMap, BTreeSet};

use selfheal::clients::CallRecord;
use selfheal::config::CommonConfig;
use serde_json::Value as Json;

use super::calls::{Call, Caller};
use super::conditions::Context;
use super::form::Form;
use super::policy::{decide, hub_role, member_role, role_policy, trust_policy, Decision, Request, Statement};
use super::template::{hub_template, member_template, Stack};
use super::{DEFAULT_HUB, ORG, STACK_NAME, STACK_REGION};

/// What a deployment of the templates looks like for a function's configuration.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub function: String,
    pub hub_account: String,
    pub opt_in_value: String,
    pub ledger_table: String,
    pub topic_arn: Option<String>,
    pub member_accounts: Vec<String>,
    pub member_org_units: Vec<String>,
    /// The hub's `MemberExternalId` (what the functions present) and the member stacks'
    /// `ExternalId` (what the roles require); the same in a correct deployment.
    pub hub_external_id: String,
    pub member_external_id: String,
}

impl Deployment {
    /// The deployment the function's configuration implies: the template sets each variable from a
    /// parameter, so the parameters are read back from the variables.
    pub fn of(config: &CommonConfig) -> Deployment {
        let external = config.fleet.external_id.clone().unwrap_or_default();
        Deployment {
            function: config.function.clone(),
            hub_account: config.fleet.home_account.clone().unwrap_or_else(|| DEFAULT_HUB.to_string()),
            opt_in_value: config.opt_in_value.clone(),
            ledger_table: config.ledger_table.clone(),
            topic_arn: config.topic_arn.clone(),
            member_accounts: config.fleet.accounts.keys().cloned().collect(),
            member_org_units: config.fleet.org_units.clone(),
            hub_external_id: external.clone(),
            member_external_id: external,
        }
    }

    fn serves_members(&self) -> bool {
        !self.member_accounts.is_empty() || !self.member_org_units.is_empty()
    }

    fn hub_stack(&self) -> Stack<'static> {
        let org = if self.serves_members() { ORG } else { "" };
        Stack::new(
            hub_template(),
            &self.hub_account,
            &[
                ("OptInTagValue", self.opt_in_value.clone()),
                ("OrganizationId", org.to_string()),
                ("MemberAccounts", self.member_accounts.join(",")),
                ("MemberOrgUnits", self.member_org_units.join(",")),
                ("MemberExternalId", self.hub_external_id.clone()),
            ],
        )
        .bind(
            "LedgerTable.Arn",
            Some(&format!("arn:aws:dynamodb:{STACK_REGION}:{}:table/{}", self.hub_account, self.ledger_table)),
        )
        .bind("EventsTopic", self.topic_arn.as_deref())
    }

    fn member_stack(&self, account: &str) -> Stack<'static> {
        Stack::new(
            member_template(),
            account,
            &[
                ("HubAccountId", self.hub_account.clone()),
                ("HubStackName", STACK_NAME.to_string()),
                ("OrganizationId", ORG.to_string()),
                ("ExternalId", self.member_external_id.clone()),
                ("OptInTagValue", self.opt_in_value.clone()),
            ],
        )
    }

    fn hub_role_arn(&self) -> String {
        format!("arn:aws:iam::{}:role/{STACK_NAME}-{}", self.hub_account, self.function)
    }
}

/// What an evaluation covered and found.
#[derive(Debug, Default, Clone)]
pub struct Evaluation {
    /// Calls evaluated (GetCallerIdentity aside).
    pub calls: usize,
    /// Authorizations asked of IAM (a call may need several: each resource, an implicit CreateTags).
    pub requests: usize,
    /// Of those, the ones a statement with a Condition allowed (the conditions were evaluated and held).
    pub conditioned: usize,
    /// Trust policies evaluated (one per AssumeRole).
    pub trusts: usize,
    /// Calls made in member accounts, through a member role.
    pub member_calls: usize,
    /// Allowed authorizations by statement: "<role>/<Sid> <action>" -> count.
    pub by_statement: BTreeMap<String, usize>,
    /// One line per authorization IAM would refuse...
    pub denials: Vec<String>,
    /// ...and its (action, resource), in the same order.
    pub denied: Vec<(String, String)>,
    /// The [`KNOWN_MISMATCHES`](super::KNOWN_MISMATCHES) met (by index), which
    /// [`assert_allowed`](super::assert_allowed) let pass.
    pub known: BTreeSet<usize>,
}

impl Evaluation {
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} calls ({} in member accounts), {} authorizations ({} allowed by a conditioned statement), {} trust \
             policies; {} denied",
            self.calls,
            self.member_calls,
            self.requests,
            self.conditioned,
            self.trusts,
            self.denials.len()
        );
        for (k, n) in &self.by_statement {
            s.push_str(&format!("\n  {n:>4}  {k}"));
        }
        s
    }

    pub(super) fn add(&mut self, other: &Evaluation) {
        self.calls += other.calls;
        self.requests += other.requests;
        self.conditioned += other.conditioned;
        self.trusts += other.trusts;
        self.member_calls += other.member_calls;
        for (k, n) in &other.by_statement {
            *self.by_statement.entry(k.clone()).or_default() += n;
        }
        self.denials.extend(other.denials.iter().cloned());
        self.denied.extend(other.denied.iter().cloned());
        self.known.extend(other.known.iter().copied());
    }

    fn deny(&mut self, action: &str, resource: &str, text: String) {
        self.denials.push(text);
        self.denied.push((action.to_string(), resource.to_string()));
    }
}

/// The credentials each AssumeRole in the log handed out: access key -> (account, role name).
fn assumed_keys(records: &[CallRecord]) -> BTreeMap<String, (String, String)> {
    let between = |text: &str, tag: &str| -> Option<String> {
        let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
        let end = text[start..].find(&format!("</{tag}>"))? + start;
        Some(text[start..end].trim().to_string())
    };
    let mut out = BTreeMap::new();
    for r in records.iter().filter(|r| r.operation == "sts:AssumeRole" && r.status == Some(200)) {
        let text = r.response.as_deref().unwrap_or_default();
        let (Some(key), Some(arn)) = (between(text, "AccessKeyId"), between(text, "Arn")) else { continue };
        // arn:aws:sts::111111111111:assumed-role/selfheal-instance-healer/session
        let account = arn.split(':').nth(4).unwrap_or_default().to_string();
        let role = arn.split('/').nth(1).unwrap_or_default().to_string();
        out.insert(key, (account, role));
    }
    out
}

/// Evaluates every recorded call of `deployment.function` against the templates.
pub fn evaluate(deployment: &Deployment, records: &[CallRecord]) -> Result<Evaluation, String> {
    let hub = deployment.hub_stack();
    let hub_policy =
        role_policy(&hub, hub_role(&deployment.function)?, &format!("hub role of {}", deployment.function))?;
    let assumed = assumed_keys(records);
    // (account, role) -> the member role's statements, `None` when the member stack has no such role.
    let mut member_policies: BTreeMap<(String, String), Option<Vec<Statement>>> = BTreeMap::new();
    let mut eval = Evaluation::default();
    for (n, r) in records.iter().enumerate() {
        if r.operation == "sts:GetCallerIdentity" {
            continue;
        }
        let caller = match r.access_key_id.as_ref().and_then(|k| assumed.get(k)) {
            Some((account, role)) => Caller::Member { account: account.clone(), role: role.clone() },
            None => Caller::Hub,
        };
        let call = Call {
            record: r,
            account: match &caller {
                Caller::Hub => deployment.hub_account.clone(),
                Caller::Member { account, .. } => account.clone(),
            },
            region: r.region.clone().unwrap_or_else(|| STACK_REGION.to_string()),
            form: Form::parse(&r.body),
            json: serde_json::from_str(&r.body).unwrap_or(Json::Null),
        };
        let who = match &caller {
            Caller::Hub => format!("{STACK_NAME}-{} (hub {})", deployment.function, deployment.hub_account),
            Caller::Member { account, role } => format!("{role} (member {account})"),
        };
        let requests = call.requests().map_err(|e| format!("call {n} ({who}): {e}"))?;
        eval.calls += 1;
        let policy = match &caller {
            Caller::Hub => &hub_policy,
            Caller::Member { account, role } => {
                eval.member_calls += 1;
                let key = (account.clone(), role.clone());
                if !member_policies.contains_key(&key) {
                    let stack = deployment.member_stack(account);
                    let loaded = match member_role(&stack, role)? {
                        Some(res) => Some(role_policy(&stack, res, &format!("member role {role}"))?),
                        None => None,
                    };
                    member_policies.insert(key.clone(), loaded);
                }
                match &member_policies[&key] {
                    Some(policy) => policy,
                    None => {
                        let text = format!(
                            "{} in {account}: {} as {role}: infra/member.yaml creates no role {role}",
                            deployment.function, r.operation
                        );
                        eval.deny(&r.operation, &format!("arn:aws:iam::{account}:role/{role}"), text);
                        continue;
                    }
                }
            }
        };
        for req in &requests {
            eval.requests += 1;
            match decide(policy, req, None)? {
                Decision::Allowed { sid, conditioned } => {
                    eval.conditioned += usize::from(conditioned);
                    let role = match &caller {
                        Caller::Hub => "hub",
                        Caller::Member { .. } => "member",
                    };
                    *eval.by_statement.entry(format!("{role}/{sid} {}", req.action)).or_default() += 1;
                }
                Decision::Denied(why) => eval.deny(
                    &req.action,
                    &req.resource,
                    format!(
                        "{}: {} as {who} on {} with {:?}: {why}",
                        deployment.function, req.action, req.resource, req.context
                    ),
                ),
            }
        }
        // Cross-account: the member role's trust policy must let the hub role in too.
        if r.operation == "sts:AssumeRole" && matches!(caller, Caller::Hub) {
            let role_arn = call.form("RoleArn")?;
            let account = role_arn.split(':').nth(4).unwrap_or_default().to_string();
            let role = role_arn.rsplit('/').next().unwrap_or_default().to_string();
            if account == deployment.hub_account {
                continue;
            }
            eval.trusts += 1;
            let stack = deployment.member_stack(&account);
            let Some(res) = member_role(&stack, &role)? else {
                let text = format!(
                    "{}: sts:AssumeRole of {role_arn}: infra/member.yaml creates no role {role}",
                    deployment.function
                );
                eval.deny("sts:AssumeRole", &role_arn, text);
                continue;
            };
            let trust = trust_policy(&stack, res, &format!("trust of member role {role}"))?;
            let mut context = Context::from([
                ("aws:principalarn".to_string(), vec![deployment.hub_role_arn()]),
                ("aws:principalorgid".to_string(), vec![ORG.to_string()]),
            ]);
            if let Some(x) = call.form.get("ExternalId") {
                context.insert("sts:externalid".into(), vec![x.to_string()]);
            }
            let req = Request { action: "sts:AssumeRole".into(), resource: role_arn.clone(), context };
            match decide(&trust, &req, Some(&deployment.hub_role_arn()))? {
                Decision::Allowed { sid, conditioned } => {
                    eval.conditioned += usize::from(conditioned);
                    *eval.by_statement.entry(format!("trust/{sid} sts:AssumeRole")).or_default() += 1;
                }
                Decision::Denied(why) => {
                    let text = format!(
                        "{}: the trust policy of {role_arn} refuses {} with {:?}: {why}",
                        deployment.function,
                        deployment.hub_role_arn(),
                        req.context
                    );
                    eval.deny("sts:AssumeRole", &role_arn, text)
                }
            }
        }
    }
    Ok(eval)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::iam::tests::call;

    #[test]
    fn the_credentials_an_assume_role_returned_are_the_member_role_s() {
        let mut assumed = call("sts:AssumeRole", "RoleArn=arn%3Aaws%3Aiam%3A%3A111111111111%3Arole%2Fr", json!({}));
        assumed.response = Some(
            "<AssumeRoleResult><Credentials><AccessKeyId> ASIA1 </AccessKeyId></Credentials><AssumedRoleUser>\
             <Arn>arn:aws:sts::111111111111:assumed-role/selfheal-db-failover/s</Arn></AssumedRoleUser></AssumeRoleResult>"
                .into(),
        );
        let mut refused = assumed.clone();
        refused.status = Some(403);
        let mut other = assumed.clone();
        other.operation = "sts:GetCallerIdentity".into();
        let keys = assumed_keys(&[refused, other, assumed]);
        assert_eq!(keys.len(), 1, "only a successful AssumeRole hands out credentials: {keys:?}");
        assert_eq!(keys["ASIA1"], ("111111111111".to_string(), "selfheal-db-failover".to_string()));
    }
}
