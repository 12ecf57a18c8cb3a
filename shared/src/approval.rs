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
//! - **Settling** ([`settle`], run by every function's entry before its own handling):
//!   `{"source":"selfheal.manual","action":"approve","token":…}` handles the parked trigger again with
//!   the token's grant, so everything is re-checked (still broken? standby still healthy?) before
//!   acting; `"reject"` closes it; `"expire-approvals"` (a schedule) closes every open one past its
//!   expiry. A token settles once, only its own decision, and never after its expiry; every outcome is
//!   audited against the resource and published.

use chrono::Utc;
use serde_json::{json, Value};
use std::future::Future;

use crate::context::Ctx;
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::{Error, Result};
use crate::guardrails::{ActionReport, ActionRequest};
use crate::ledger::{ApprovalRecord, Ledger, Settle, APPROVED, AWAITING, EXPIRED, REJECTED};
use crate::trigger::{Manual, Trigger, TriggerKind};

/// The manual actions that settle parked decisions.
pub const APPROVE: &str = "approve";
pub const REJECT: &str = "reject";
pub const EXPIRE: &str = "expire-approvals";

/// What the policy says of one action, asked once the action knows exactly what it would do.
#[derive(Debug, Clone)]
pub enum Approval {
    /// Not a large move: go ahead.
    NotNeeded,
    /// A large move a human approved with this token: go ahead (the decision names the token).
    Granted { token: String, why: String },
    /// Dry-run of a large move: this approval would have been asked.
    WouldAsk(String),
    /// Parked: return this report; nothing else may be done.
    Parked(ActionReport),
}

/// `report` with what the approval policy said, for the decision's details: the token that approved
/// it, or the approval a dry-run would have asked for.
pub fn with_approval(report: ActionReport, approval: &Approval) -> ActionReport {
    match approval {
        Approval::Granted { token, why } => {
            report.detail("approvedWith", short(token)).detail("approvalWhy", why).detail("guard", "approval")
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
}

tokio::task_local! {
    static GRANT: Grant;
}

/// The token granted for (`target`, `action`) in the running invocation, if any.
fn granted(target: &str, action: &str) -> Option<String> {
    GRANT.try_with(|g| (g.target == target && g.action == action).then(|| g.token.clone())).ok().flatten()
}

/// Runs `f` (the handling of an approved trigger) with `grant` in force.
pub async fn with_grant<F: Future>(grant: Grant, f: F) -> F::Output {
    GRANT.scope(grant, f).await
}

fn new_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The payload that settles `token` with `action` (approve or reject).
pub fn settle_payload(action: &str, token: &str) -> Value {
    json!({ "source": crate::trigger::MANUAL_SOURCE, "action": action, "token": token })
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
        if let Some(token) = granted(&req.target.id, &req.action) {
            return Ok(Approval::Granted { token, why });
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
        };
        self.ledger.park_approval(&record).await?;
        let name = invocable_name(&self.config.function);
        let approve = settle_payload(APPROVE, &token);
        let reject = settle_payload(REJECT, &token);
        let cli = |p: &Value| {
            format!(
                "aws lambda invoke --function-name {name} --cli-binary-format raw-in-base64-out --payload '{p}' out.json"
            )
        };
        tracing::warn!(target = %req.target.id, action = %req.action, why = %why, expires = %expires.to_rfc3339(), "parked for approval");
        let report = ActionReport {
            outcome: Outcome::AwaitingApproval,
            reason: format!(
                "awaiting a human's approval: would {what}. Why: {why}. Approve before {} by invoking {name} with \
                 {approve}, or reject it with {reject}; after that nothing is done. Approval re-checks \
                 everything first.",
                expires.to_rfc3339()
            ),
            severity: Some(Severity::Critical),
            details: Default::default(),
        };
        Ok(Approval::Parked(report.detail("guard", "approval").detail(
            "approval",
            json!({
                "token": token,
                "expiresAt": expires.to_rfc3339(),
                "why": why,
                "what": what,
                "approve": approve,
                "reject": reject,
                "approveCommand": cli(&approve),
                "rejectCommand": cli(&reject),
            }),
        )))
    }
}

/// What a settling invocation asks for, when a trigger is one.
pub fn settlement(t: &Trigger) -> Option<&Manual> {
    match &t.kind {
        TriggerKind::Manual(m) if [APPROVE, REJECT, EXPIRE].contains(&m.action.as_str()) => Some(m),
        _ => None,
    }
}

/// What settling came to.
#[derive(Debug)]
pub enum Settlement {
    /// Approved: handle this trigger again, with this grant in force ([`with_grant`]).
    Rerun { trigger: Box<Trigger>, grant: Grant },
    /// Decided here: the recorded decisions (a rejection, an expiry, a token refused).
    Decided(Vec<Envelope>),
}

/// Settles an approve, reject or expire-approvals invocation for the function of `ctx` (its home
/// context: parked decisions are found by token wherever their resource lives).
pub async fn settle(ctx: &Ctx, m: &Manual) -> Result<Settlement> {
    if m.action == EXPIRE {
        return expire_overdue(ctx).await.map(Settlement::Decided);
    }
    let token =
        m.token.as_deref().map(str::trim).filter(|t| !t.is_empty()).ok_or_else(|| {
            Error::malformed("manual", format!("{} needs the token from the approval request", m.action))
        })?;
    let record = ctx.ledger.approval(token).await?.ok_or_else(|| {
        Error::malformed("manual", format!("unknown approval token {token:?}: nothing is parked under it"))
    })?;
    if record.function != ctx.config.function {
        return Err(Error::malformed(
            "manual",
            format!("token {token:?} is for a decision of {}: send it to that function", record.function),
        ));
    }
    let by = format!("{}:{token}", m.action);
    if m.action == REJECT {
        return match ctx.ledger.settle_approval(token, REJECTED, &by).await? {
            Settle::Done => {
                ctx.ledger.close_approval(&record.function, token).await?;
                let reason = format!(
                    "rejected by a human (token {}): would have {}; nothing done, the incident is closed",
                    short(token),
                    record.what
                );
                Ok(Settlement::Decided(vec![
                    decide(ctx, &record, &by, Outcome::Refused, reason, Severity::Warning).await?,
                ]))
            }
            Settle::Expired => Ok(Settlement::Decided(vec![expire(ctx, &record, &by).await?])),
            Settle::Already(now) => Ok(Settlement::Decided(vec![already(ctx, &now, &by).await?])),
        };
    }
    // Approve.
    match ctx.ledger.settle_approval(token, APPROVED, &by).await? {
        Settle::Done => ctx.ledger.close_approval(&record.function, token).await?,
        Settle::Expired => return Ok(Settlement::Decided(vec![expire(ctx, &record, &by).await?])),
        // A retry of this same approval (its handling failed, so Lambda retried it) may finish the job:
        // the claims of the approved handling make it act at most once.
        Settle::Already(now) if now.status == APPROVED && now.settled_by.as_deref() == Some(by.as_str()) => {
            let (_, ledger) = placed(ctx, &now);
            let rerun = format!("{}#approved", now.event_id);
            if ledger.claim_status(&now.target, &now.action, &rerun, false).await?.as_deref() == Some("done") {
                return Ok(Settlement::Decided(vec![already(ctx, &now, &by).await?]));
            }
        }
        Settle::Already(now) => return Ok(Settlement::Decided(vec![already(ctx, &now, &by).await?])),
    }
    let mut trigger: Trigger = serde_json::from_str(&record.trigger).map_err(|e| {
        Error::ActionFailed(format!("the parked trigger of token {} cannot be read: {e}", short(token)))
    })?;
    trigger.event_id = format!("{}#approved", trigger.event_id);
    let grant = Grant { token: token.to_string(), target: record.target.clone(), action: record.action.clone() };
    Ok(Settlement::Rerun { trigger: Box::new(trigger), grant })
}

/// Closes every open decision of this function past its expiry.
async fn expire_overdue(ctx: &Ctx) -> Result<Vec<Envelope>> {
    let function = &ctx.config.function;
    let mut out = Vec::new();
    for token in ctx.ledger.open_approvals(function).await? {
        let Some(record) = ctx.ledger.approval(&token).await? else {
            ctx.ledger.close_approval(function, &token).await?;
            continue;
        };
        if record.status != AWAITING {
            ctx.ledger.close_approval(function, &token).await?;
        } else if record.expires <= Utc::now() {
            out.push(expire(ctx, &record, &format!("{EXPIRE}:{}", Utc::now().to_rfc3339())).await?);
        }
    }
    Ok(out)
}

/// Settles an overdue decision as expired (if nobody else has) and records it.
async fn expire(ctx: &Ctx, record: &ApprovalRecord, by: &str) -> Result<Envelope> {
    match ctx.ledger.settle_approval(&record.token, EXPIRED, by).await? {
        Settle::Done | Settle::Expired => {}
        Settle::Already(now) => return already(ctx, &now, by).await,
    }
    ctx.ledger.close_approval(&record.function, &record.token).await?;
    let reason = format!(
        "approval expired at {} unanswered: would have {}; nothing done, the incident is closed",
        record.expires.to_rfc3339(),
        record.what
    );
    decide(ctx, record, by, Outcome::Refused, reason, Severity::Warning).await
}

/// A token that was settled before: refused, naming how.
async fn already(ctx: &Ctx, record: &ApprovalRecord, by: &str) -> Result<Envelope> {
    let reason = format!(
        "token {} was already used: the decision was {} at {}; a token settles once",
        short(&record.token),
        record.status,
        record.settled_at.as_deref().unwrap_or("?")
    );
    decide(ctx, record, by, Outcome::Refused, reason, Severity::Warning).await
}

/// Audits (against the resource's own trail) and publishes a settling decision.
async fn decide(
    ctx: &Ctx,
    record: &ApprovalRecord,
    by: &str,
    outcome: Outcome,
    reason: String,
    severity: Severity,
) -> Result<Envelope> {
    let (target, ledger) = placed(ctx, record);
    let env = Envelope::new(&record.function, &record.action, target, outcome, reason)
        .severity(severity)
        .event(by, "manual")
        .detail("approvalToken", short(&record.token))
        .detail("parkedFor", &record.event_id)
        .detail("guard", "approval");
    ledger.audit(&env).await?;
    ctx.publisher.publish(&env).await?;
    Ok(env)
}

/// The decision's target, and the ledger of the place it lives in (its claims and audit trail).
fn placed(ctx: &Ctx, record: &ApprovalRecord) -> (Target, Ledger) {
    let mut target = Target::new(&record.target_kind, &record.target);
    target.group = record.group.clone();
    match (&record.account, &record.region) {
        (Some(a), Some(r)) => {
            target.account = Some(a.clone());
            target.region = Some(r.clone());
            (target, ctx.ledger.at(a, r))
        }
        _ => (target, ctx.ledger.clone()),
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
        let grant = Grant { token: "t1".into(), target: "db-1".into(), action: "promote-replica".into() };
        with_grant(grant, async {
            assert_eq!(granted("db-1", "promote-replica").as_deref(), Some("t1"));
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
