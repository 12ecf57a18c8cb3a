//! Settling parked decisions: who is asking ([`Caller`]: an approver AWS verified, or a bare token),
//! whether they may (`SELFHEAL_APPROVERS`, `SELFHEAL_APPROVAL_BREAK_GLASS`), counting approvals until
//! enough distinct approvers approved, rejections, expiry, and the audited decision of each.

use chrono::Utc;
use serde_json::{json, Value};

use super::{short, Grant, APPROVE, EXPIRE, REJECT};
use crate::context::Ctx;
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::{Error, Result};
use crate::ledger::{ApprovalRecord, Approve, Ledger, Settle, APPROVED, AWAITING, EXPIRED, REJECTED};
use crate::trigger::{Manual, Trigger, TriggerKind};

/// Who asks to settle a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// A principal AWS verified: the caller of the approval Function URL (`AuthType: AWS_IAM`), as its
    /// request context names it. Never read from a payload.
    Verified { arn: String, account: Option<String> },
    /// A direct invocation (or a message on a topic) carrying only the token: nobody AWS verified.
    TokenOnly,
}

impl Caller {
    fn name(&self) -> &str {
        match self {
            Caller::Verified { arn, .. } => arn,
            Caller::TokenOnly => "token-only",
        }
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
    /// Approved: handle this trigger again, with this grant in force ([`super::with_grant`]).
    Rerun { trigger: Box<Trigger>, grant: Grant },
    /// Decided here: the recorded decisions (an approval counted, a rejection, an expiry, a refusal).
    Decided(Vec<Envelope>),
}

/// Settles an approve, reject or expire-approvals request of `caller` for the function of `ctx` (its
/// home context: parked decisions are found by token wherever their resource lives).
pub async fn settle(ctx: &Ctx, action: &str, token: Option<&str>, caller: &Caller) -> Result<Settlement> {
    if action == EXPIRE {
        return expire_overdue(ctx).await.map(Settlement::Decided);
    }
    let token = token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::malformed("manual", format!("{action} needs the token from the approval request")))?;
    let record = ctx.ledger.approval(token).await?.ok_or_else(|| {
        Error::malformed("manual", format!("unknown approval token {token:?}: nothing is parked under it"))
    })?;
    if record.function != ctx.config.function {
        return Err(Error::malformed(
            "manual",
            format!("token {token:?} is for a decision of {}: send it to that function", record.function),
        ));
    }
    let policy = &ctx.config.approval;
    let decided = |e: Envelope| Ok(Settlement::Decided(vec![e]));
    match caller {
        Caller::TokenOnly if !policy.break_glass => {
            let reason = format!(
                "a bare token cannot {action}: nobody AWS verified sent it (a direct invocation). Token-only \
                 approvals are off (SELFHEAL_APPROVAL_BREAK_GLASS): a listed approver {action}s through {}'s \
                 approval URL with a signed request; nothing done, the decision still awaits approval until {}",
                record.function,
                record.expires.to_rfc3339()
            );
            decided(decide(ctx, &record, action, caller, Outcome::Refused, reason, Severity::Warning).await?)
        }
        Caller::Verified { arn, .. } if !policy.approvers.admits(arn) => {
            let listed = if policy.approvers.is_empty() {
                "SELFHEAL_APPROVERS is empty: nobody may approve or reject".to_string()
            } else {
                format!("it is not listed in SELFHEAL_APPROVERS ({})", policy.approvers.0.join(", "))
            };
            let reason = format!(
                "{arn} may not {action} this decision: {listed}; nothing done, the decision still awaits approval"
            );
            tracing::warn!(caller = %arn, action, token = %short(token), "refused: not a listed approver");
            decided(decide(ctx, &record, action, caller, Outcome::Refused, reason, Severity::Warning).await?)
        }
        _ if action == REJECT => reject(ctx, &record, caller).await,
        Caller::TokenOnly => approve_by_break_glass(ctx, record, caller).await,
        Caller::Verified { arn, .. } => approve(ctx, record, arn, caller).await,
    }
}

/// A listed approver's (or break-glass) rejection: closes it.
async fn reject(ctx: &Ctx, record: &ApprovalRecord, caller: &Caller) -> Result<Settlement> {
    let by = settled_by(REJECT, &record.token, caller);
    let env = match ctx.ledger.settle_approval(&record.token, REJECTED, &by).await? {
        Settle::Done => {
            ctx.ledger.close_approval(&record.function, &record.token).await?;
            let who = match caller {
                Caller::Verified { arn, .. } => format!("rejected by {arn}"),
                Caller::TokenOnly => "rejected by break-glass (a bare token, SELFHEAL_APPROVAL_BREAK_GLASS)".into(),
            };
            let reason = format!("{who}: would have {}; nothing done, the incident is closed", record.what);
            decide(ctx, record, REJECT, caller, Outcome::Refused, reason, Severity::Warning).await?
        }
        Settle::Expired => expire(ctx, record, &by).await?,
        Settle::Already(now) => already(ctx, &now, REJECT, caller).await?,
    };
    Ok(Settlement::Decided(vec![env]))
}

/// Break-glass: a bare token approves alone, audited as such.
async fn approve_by_break_glass(ctx: &Ctx, record: ApprovalRecord, caller: &Caller) -> Result<Settlement> {
    let by = settled_by(APPROVE, &record.token, caller);
    match ctx.ledger.settle_approval(&record.token, APPROVED, &by).await? {
        Settle::Done => ctx.ledger.close_approval(&record.function, &record.token).await?,
        Settle::Expired => return Ok(Settlement::Decided(vec![expire(ctx, &record, &by).await?])),
        // A retry of this same approval (its handling failed, so Lambda retried it) may finish the job.
        Settle::Already(now) if now.status == APPROVED && now.settled_by.as_deref() == Some(by.as_str()) => {
            if rerun_done(ctx, &now).await? {
                return Ok(Settlement::Decided(vec![already(ctx, &now, APPROVE, caller).await?]));
            }
        }
        Settle::Already(now) => return Ok(Settlement::Decided(vec![already(ctx, &now, APPROVE, caller).await?])),
    }
    let reason = format!(
        "approved by break-glass: a bare token, nobody AWS verified (SELFHEAL_APPROVAL_BREAK_GLASS is on); would {}",
        record.what
    );
    // Audited and published on its own (the approved handling's decision follows in the answer), so a
    // break-glass approval is on record even when the re-check then finds nothing to do.
    decide(ctx, &record, APPROVE, caller, Outcome::Observed, reason, Severity::Critical).await?;
    tracing::warn!(token = %short(&record.token), "approved by break-glass");
    rerun(record, Vec::new(), true)
}

/// A listed approver's approval: counted once per principal; the one that completes the count hands
/// the parked trigger back.
async fn approve(ctx: &Ctx, record: ApprovalRecord, arn: &str, caller: &Caller) -> Result<Settlement> {
    let at = Utc::now().to_rfc3339();
    let decided = |e: Envelope| Ok(Settlement::Decided(vec![e]));
    let now = match ctx.ledger.add_approver(&record.token, arn, &at).await? {
        Approve::Counted(now) => *now,
        Approve::Repeat(now) => {
            let when = now.approvers.iter().find(|(p, _)| p == arn).map(|(_, at)| at.as_str()).unwrap_or("?");
            let reason =
                format!("{arn} already approved this at {when}: an approver counts once; {}", still_needed(&now));
            return decided(decide(ctx, &now, APPROVE, caller, Outcome::Skipped, reason, Severity::Info).await?);
        }
        // A retry by an approver of an approval whose handling failed may finish the job.
        Approve::Already(now) if now.status == APPROVED && now.approvers.iter().any(|(p, _)| p == arn) => {
            if rerun_done(ctx, &now).await? {
                return decided(already(ctx, &now, APPROVE, caller).await?);
            }
            let approvers = now.approvers.clone();
            return rerun(*now, approvers, false);
        }
        Approve::Already(now) => return decided(already(ctx, &now, APPROVE, caller).await?),
        Approve::Expired => return decided(expire(ctx, &record, &settled_by(APPROVE, &record.token, caller)).await?),
    };
    let count = now.approvers.len();
    if count < now.required as usize {
        let reason = format!("approval {count} of {} recorded from {arn}; {}", now.required, still_needed(&now));
        tracing::info!(caller = %arn, token = %short(&now.token), count, required = now.required, "approval counted");
        return decided(
            decide(ctx, &now, APPROVE, caller, Outcome::AwaitingApproval, reason, Severity::Warning).await?,
        );
    }
    let names: Vec<&str> = now.approvers.iter().map(|(p, _)| p.as_str()).collect();
    let by = format!("approved by {}", names.join(", "));
    match ctx.ledger.settle_approval(&now.token, APPROVED, &by).await? {
        Settle::Done => ctx.ledger.close_approval(&now.function, &now.token).await?,
        Settle::Expired => return decided(expire(ctx, &now, &by).await?),
        // Another approver's request completed the count first and is carrying it out.
        Settle::Already(settled) => return decided(already(ctx, &settled, APPROVE, caller).await?),
    }
    tracing::info!(token = %short(&now.token), approvers = ?names, "approved");
    // On record on its own, naming every approver and when (the approved handling's decision follows).
    let reason =
        format!("approved by {} of {} required: {}; would {}", count, now.required, names.join(", "), now.what);
    decide(ctx, &now, APPROVE, caller, Outcome::Observed, reason, Severity::Warning).await?;
    let approvers = now.approvers.clone();
    rerun(now, approvers, false)
}

/// What is still needed of a decision awaiting approval.
fn still_needed(r: &ApprovalRecord) -> String {
    let left = (r.required as usize).saturating_sub(r.approvers.len());
    format!(
        "{left} more listed approver{} must approve before {}",
        if left == 1 { "" } else { "s" },
        r.expires.to_rfc3339()
    )
}

/// Whether the approved handling of `record` already finished (its claim is done).
async fn rerun_done(ctx: &Ctx, record: &ApprovalRecord) -> Result<bool> {
    let (_, ledger) = placed(ctx, record);
    let rerun = format!("{}#approved", record.event_id);
    Ok(ledger.claim_status(&record.target, &record.action, &rerun, false).await?.as_deref() == Some("done"))
}

/// The parked trigger, handed back with its grant.
fn rerun(record: ApprovalRecord, approvers: Vec<(String, String)>, break_glass: bool) -> Result<Settlement> {
    let mut trigger: Trigger = serde_json::from_str(&record.trigger).map_err(|e| {
        Error::ActionFailed(format!("the parked trigger of token {} cannot be read: {e}", short(&record.token)))
    })?;
    trigger.event_id = format!("{}#approved", trigger.event_id);
    let grant = Grant { token: record.token, target: record.target, action: record.action, approvers, break_glass };
    Ok(Settlement::Rerun { trigger: Box::new(trigger), grant })
}

/// How a settled decision names what settled it (a retry of the same break-glass request is known by it).
fn settled_by(action: &str, token: &str, caller: &Caller) -> String {
    match caller {
        Caller::Verified { arn, .. } => format!("{action} by {arn}"),
        Caller::TokenOnly => format!("break-glass {action}:{token}"),
    }
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
        Settle::Already(now) => return already(ctx, &now, EXPIRE, &Caller::TokenOnly).await,
    }
    ctx.ledger.close_approval(&record.function, &record.token).await?;
    let approved = match record.approvers.len() {
        0 => String::new(),
        n => format!(" with {n} of {} approvals", record.required),
    };
    let reason = format!(
        "approval expired at {}{approved}: would have {}; nothing done, the incident is closed",
        record.expires.to_rfc3339(),
        record.what
    );
    let env = Envelope::new(&record.function, &record.action, placed(ctx, record).0, Outcome::Refused, reason)
        .severity(Severity::Warning)
        .event(by, "manual");
    record_decision(ctx, record, env).await
}

/// A token that was settled before: refused, naming how.
async fn already(ctx: &Ctx, record: &ApprovalRecord, action: &str, caller: &Caller) -> Result<Envelope> {
    let reason = format!(
        "token {} was already used: the decision was {} at {}{}; a token settles once",
        short(&record.token),
        record.status,
        record.settled_at.as_deref().unwrap_or("?"),
        record.settled_by.as_deref().map(|b| format!(" ({b})")).unwrap_or_default()
    );
    decide(ctx, record, action, caller, Outcome::Refused, reason, Severity::Warning).await
}

/// Audits and publishes a decision on a request of `caller` to `action` `record`, naming every approval
/// so far.
async fn decide(
    ctx: &Ctx,
    record: &ApprovalRecord,
    action: &str,
    caller: &Caller,
    outcome: Outcome,
    reason: String,
    severity: Severity,
) -> Result<Envelope> {
    let event = format!("{action}:{}:{}", short(&record.token), Utc::now().timestamp_millis());
    let approvals: Vec<Value> = record.approvers.iter().map(|(p, at)| json!({"principal": p, "at": at})).collect();
    let mut env = Envelope::new(&record.function, &record.action, placed(ctx, record).0, outcome, reason)
        .severity(severity)
        .event(&event, "manual")
        .detail("settle", action)
        .detail("caller", caller.name())
        .detail("approvals", approvals)
        .detail("approvalsRequired", record.required);
    if let Caller::Verified { account: Some(a), .. } = caller {
        env = env.detail("callerAccount", a);
    }
    if *caller == Caller::TokenOnly {
        env = env.detail("breakGlass", ctx.config.approval.break_glass);
    }
    record_decision(ctx, record, env).await
}

/// Audits (against the resource's own trail) and publishes a settling decision.
async fn record_decision(ctx: &Ctx, record: &ApprovalRecord, env: Envelope) -> Result<Envelope> {
    let (_, ledger) = placed(ctx, record);
    let env = env
        .detail("approvalToken", short(&record.token))
        .detail("parkedFor", &record.event_id)
        .detail("guard", "approval");
    tracing::info!(target = %env.target.id, outcome = env.outcome.as_str(), reason = %env.reason, "approval decision");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::parse_event;

    fn manual(action: &str) -> Trigger {
        parse_event(&serde_json::json!({"source": "selfheal.manual", "action": action, "target": "i-1"}))
            .expect("a manual invocation")
            .remove(0)
    }

    /// Only approve, reject and expire-approvals settle; any other manual action is the function's own
    /// (a mutant taking every manual invocation as a settlement passed the approval tests through the
    /// handlers, scripts/mutants' second pass: this holds it).
    #[test]
    fn only_the_three_settling_actions_are_settlements() {
        for action in [APPROVE, REJECT, EXPIRE] {
            assert_eq!(settlement(&manual(action)).map(|m| m.action.as_str()), Some(action));
        }
        for action in ["replace", "failover", "sweep", "approved", "APPROVE"] {
            assert!(settlement(&manual(action)).is_none(), "{action:?}");
        }
        assert_eq!(Caller::TokenOnly.name(), "token-only");
        let who = Caller::Verified { arn: "arn:aws:iam::1:role/alice".into(), account: None };
        assert_eq!(who.name(), "arn:aws:iam::1:role/alice");
    }
}
