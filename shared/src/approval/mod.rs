//! Human approval for large moves: the blast-radius policy, decisions parked as `awaiting-approval`
//! with a one-time token and an expiry, and the manual invocations that settle them.
//!
//! - **Policy** ([`crate::config::approval`], read with the other settings): moves of the kinds in
//!   `SELFHEAL_APPROVAL_ALWAYS` always need a human (default: a region failover of a DNS record and a
//!   cross-region promotion of a replica);
//!   any other action needs one when its group has already had more than `SELFHEAL_APPROVAL_AFTER`
//!   actions in the rate window (0: never), e.g. more than N instances of one Auto Scaling group, more
//!   than N databases of an account and region in an hour.
//! - **Parking** ([`Ctx::approval`], called by an action once it knows exactly what it would do): the
//!   decision is written to the ledger with a token and an expiry (`SELFHEAL_APPROVAL_TTL_SECONDS`), and
//!   its envelope (outcome `awaiting-approval`, critical) says what would be done, why a human must
//!   approve, and the exact invocations that approve or reject it. Dry-run parks nothing and says which
//!   approval would have been asked.
//! - **Settling** ([`settle`], run by every function's entry before its own handling): an approver
//!   POSTs `{"action":"approve","token":…}` (or `"reject"`) to the function's approval Function URL
//!   (`AuthType: AWS_IAM`, [`url`]): AWS verifies the SigV4 signature and hands the caller's ARN to the
//!   function in the request context, the only place the identity is read from (an identity in the body
//!   is ignored). The caller must be listed in `SELFHEAL_APPROVERS` (anyone else is refused, audited
//!   and notified); each approval is recorded in the ledger (the same principal twice counts once), and
//!   once `SELFHEAL_APPROVALS_REQUIRED` distinct approvers approved (two for a region failover by
//!   default) the parked trigger is handled again with a grant naming them all, so everything is
//!   re-checked (still broken? standby still healthy?) before acting. One listed approver's `reject`
//!   closes it. A bare token sent by a direct invocation (`{"source":"selfheal.manual","action":
//!   "approve","token":…}`) is refused unless `SELFHEAL_APPROVAL_BREAK_GLASS=true`, and then settles it
//!   alone, audited as break-glass. `"expire-approvals"` (a schedule) closes every open one past its
//!   expiry. A token settles once, only its own decision, and never after its expiry; every outcome is
//!   audited against the resource and published.

mod settle;
pub mod url;

pub use settle::{settle, settlement, Caller, Settlement};

use chrono::Utc;
use serde_json::{json, Value};
use std::future::Future;

use crate::context::Ctx;
use crate::envelope::{Outcome, Severity};
use crate::error::{Error, Result};
use crate::guardrails::{ActionReport, ActionRequest};
use crate::ledger::{ApprovalRecord, AWAITING};
use crate::trigger::Trigger;

/// The manual actions that settle parked decisions.
pub const APPROVE: &str = "approve";
pub const REJECT: &str = "reject";
pub const EXPIRE: &str = "expire-approvals";

/// What the policy says of one action, asked once the action knows exactly what it would do.
#[derive(Debug, Clone)]
pub enum Approval {
    /// Not a large move: go ahead.
    NotNeeded,
    /// A large move approved: go ahead (the decision names the token and who approved).
    Granted { grant: Grant, why: String },
    /// Dry-run of a large move: this approval would have been asked.
    WouldAsk(String),
    /// Parked: return this report; nothing else may be done.
    Parked(ActionReport),
}

/// `report` with what the approval policy said, for the decision's details: the token that approved
/// it, or the approval a dry-run would have asked for.
pub fn with_approval(report: ActionReport, approval: &Approval) -> ActionReport {
    match approval {
        Approval::Granted { grant, why } => {
            let by: Vec<Value> = grant.approvers.iter().map(|(p, at)| json!({"principal": p, "at": at})).collect();
            let report = report
                .detail("approvedWith", short(&grant.token))
                .detail("approvalWhy", why)
                .detail("guard", "approval");
            if grant.break_glass {
                report.detail("approvedBy", "break-glass (a bare token, no verified caller)").detail("breakGlass", true)
            } else {
                report.detail("approvedBy", by)
            }
        }
        Approval::WouldAsk(why) => report.detail("approvalWouldBeAsked", why),
        Approval::NotNeeded | Approval::Parked(_) => report,
    }
}

/// The approval a settled `approve` carries into the handling of its parked trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub token: String,
    pub target: String,
    pub action: String,
    /// Every approver AWS verified, and when each approved (empty for break-glass).
    pub approvers: Vec<(String, String)>,
    /// Settled by a bare token under `SELFHEAL_APPROVAL_BREAK_GLASS`.
    pub break_glass: bool,
}

tokio::task_local! {
    static GRANT: Grant;
}

/// The grant for (`target`, `action`) in the running invocation, if any.
fn granted(target: &str, action: &str) -> Option<Grant> {
    GRANT.try_with(|g| (g.target == target && g.action == action).then(|| g.clone())).ok().flatten()
}

/// Runs `f` (the handling of an approved trigger) with `grant` in force.
pub async fn with_grant<F: Future>(grant: Grant, f: F) -> F::Output {
    GRANT.scope(grant, f).await
}

fn new_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The direct-invocation payload that settles `token` with `action` (approve or reject) by the token
/// alone: refused unless `SELFHEAL_APPROVAL_BREAK_GLASS` is on.
pub fn settle_payload(action: &str, token: &str) -> Value {
    json!({ "source": crate::trigger::MANUAL_SOURCE, "action": action, "token": token })
}

/// The body an approver POSTs to the approval Function URL to settle `token` with `action`.
pub fn url_body(action: &str, token: &str) -> Value {
    json!({ "action": action, "token": token })
}

/// The ready-to-paste command that signs `body` with the caller's credentials (SigV4, service
/// `lambda`) and POSTs it to the approval URL: `url` when known, else looked up by function name.
pub fn signed_command(region: &str, url: Option<&str>, function: &str, body: &Value) -> String {
    let url = match url {
        Some(u) => format!("'{u}'"),
        None => format!(
            "\"$(aws lambda get-function-url-config --function-name {function} --query FunctionUrl --output text)\""
        ),
    };
    format!(
        "curl -sS --aws-sigv4 'aws:amz:{region}:lambda' --user \"$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY\" \
         -H \"x-amz-security-token: $AWS_SESSION_TOKEN\" -H 'content-type: application/json' -d '{body}' {url}"
    )
}

/// The function name to invoke: Lambda's own name for this function when deployed.
fn invocable_name(function: &str) -> String {
    std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| function.to_string())
}

impl Ctx {
    /// Why `req` needs a human under the policy, if it does: its kind of move is always approved, or its
    /// group already had more than the threshold's actions in the rate window.
    async fn approval_needed(&self, req: &ActionRequest, kind: Option<&str>) -> Result<Option<String>> {
        let policy = &self.config.approval;
        if let Some(kind) = kind.filter(|k| policy.always.iter().any(|a| a == k)) {
            return Ok(Some(format!("a {kind} always needs a human's approval (SELFHEAL_APPROVAL_ALWAYS)")));
        }
        if let (Some(group), true) = (&req.target.group, policy.after > 0) {
            let window = self.config.rate_window;
            // Inside the action, its own rate slot is already counted.
            let used = self.ledger.rate_used(group, window).await?;
            if used > policy.after {
                return Ok(Some(format!(
                    "this would be action {used} in {group} within {}s; beyond {} a human approves \
                     (SELFHEAL_APPROVAL_AFTER)",
                    window.as_secs(),
                    policy.after
                )));
            }
        }
        Ok(None)
    }

    /// Asks the policy about an action that knows exactly `what` it would do; `kind` names a kind of
    /// move the policy may always want approved. A large move without its grant is parked here.
    pub async fn approval(
        &self,
        req: &ActionRequest,
        trigger: &Trigger,
        kind: Option<&str>,
        what: &str,
    ) -> Result<Approval> {
        let Some(why) = self.approval_needed(req, kind).await? else { return Ok(Approval::NotNeeded) };
        if let Some(grant) = granted(&req.target.id, &req.action) {
            return Ok(Approval::Granted { grant, why });
        }
        if req.dry_run {
            return Ok(Approval::WouldAsk(why));
        }
        let token = new_token();
        let expires = Utc::now()
            + chrono::Duration::from_std(self.config.approval.ttl).unwrap_or_else(|_| chrono::Duration::hours(1));
        let record = ApprovalRecord {
            token: token.clone(),
            status: AWAITING.into(),
            function: self.config.function.clone(),
            action: req.action.clone(),
            target: req.target.id.clone(),
            target_kind: req.target.kind.clone(),
            group: req.target.group.clone(),
            account: self.place.account.clone(),
            region: self.place.account.as_ref().and(self.place.region.clone()),
            event_id: req.event_id.clone(),
            why: why.clone(),
            what: what.to_string(),
            trigger: serde_json::to_string(trigger).map_err(|e| Error::ActionFailed(format!("trigger: {e}")))?,
            created_at: Utc::now().to_rfc3339(),
            expires,
            settled_at: None,
            settled_by: None,
            required: self.config.approval.required_for(kind),
            approvers: Vec::new(),
        };
        self.ledger.park_approval(&record).await?;
        let name = invocable_name(&self.config.function);
        let policy = &self.config.approval;
        let region = self.aws.sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
        let command = |action: &str| signed_command(&region, policy.url.as_deref(), &name, &url_body(action, &token));
        let (approve_command, reject_command) = (command(APPROVE), command(REJECT));
        let who = if policy.approvers.is_empty() {
            "nobody may approve it: SELFHEAL_APPROVERS is empty, so it expires unless settled by break-glass"
                .to_string()
        } else {
            format!(
                "{} distinct approver{} listed in SELFHEAL_APPROVERS must approve it",
                record.required,
                if record.required == 1 { "" } else { "s" }
            )
        };
        tracing::warn!(target = %req.target.id, action = %req.action, why = %why, required = record.required, expires = %expires.to_rfc3339(), "parked for approval");
        let report = ActionReport {
            outcome: Outcome::AwaitingApproval,
            reason: format!(
                "awaiting approval: would {what}. Why: {why}. {who}, before {}, each with a request to {name}'s \
                 approval URL signed by their own AWS credentials: {approve_command} (reject: the same with \
                 \"action\":\"reject\"); after that nothing is done. Approval re-checks everything first.",
                expires.to_rfc3339()
            ),
            severity: Some(Severity::Critical),
            details: Default::default(),
        };
        let mut approval = json!({
            "token": token,
            "expiresAt": expires.to_rfc3339(),
            "why": why,
            "what": what,
            "function": name,
            "approvalsRequired": record.required,
            "approvers": policy.approvers.0,
            "approve": url_body(APPROVE, &token),
            "reject": url_body(REJECT, &token),
            "approveCommand": approve_command,
            "rejectCommand": reject_command,
        });
        if policy.break_glass {
            let cli = |p: &Value| {
                format!(
                    "aws lambda invoke --function-name {name} --cli-binary-format raw-in-base64-out --payload '{p}' out.json"
                )
            };
            approval["breakGlassCommand"] = json!(cli(&settle_payload(APPROVE, &token)));
        }
        Ok(Approval::Parked(report.detail("guard", "approval").detail("approval", approval)))
    }
}

/// The first characters of a token, enough to tell tokens apart in a decision.
fn short(token: &str) -> String {
    token.chars().take(8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_grant_covers_only_its_own_target_and_action() {
        assert_eq!(granted("db-1", "promote-replica"), None);
        let grant = Grant {
            token: "t1".into(),
            target: "db-1".into(),
            action: "promote-replica".into(),
            approvers: vec![],
            break_glass: false,
        };
        with_grant(grant, async {
            assert_eq!(granted("db-1", "promote-replica").map(|g| g.token).as_deref(), Some("t1"));
            assert_eq!(granted("db-2", "promote-replica"), None);
            assert_eq!(granted("db-1", "reboot-failover"), None);
        })
        .await;
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
