//! Parked decisions awaiting a human's approval: one item per one-time token, and per function the set
//! of tokens still open (what the periodic expiry reads). Each approver's approval is one attribute of
//! the token's item (`approver#<ARN>`: when), added by a conditional write, so the same principal twice
//! counts once and the count a write returns is exact whoever else approves at the same time.
//!
//! Keys are not qualified by account or region: a token is unique across the fleet, and an approval
//! sent to the hub finds its decision wherever the resource lives (the item records the place).

use chrono::{DateTime, Utc};

use super::{get_n, get_s, is_condition_failed, n, s, Item, Ledger};
use crate::error::{Error, Result};

/// The status of a parked decision.
pub const AWAITING: &str = "awaiting-approval";
pub const APPROVED: &str = "approved";
pub const REJECTED: &str = "rejected";
pub const EXPIRED: &str = "expired";

/// A decision parked until a human approves it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRecord {
    pub token: String,
    pub status: String,
    pub function: String,
    pub action: String,
    pub target: String,
    pub target_kind: String,
    pub group: Option<String>,
    /// Where the resource lives; `None` for the hub's own account and region.
    pub account: Option<String>,
    pub region: Option<String>,
    /// The event the decision was about.
    pub event_id: String,
    /// Why a human must approve.
    pub why: String,
    /// Exactly what would be done.
    pub what: String,
    /// The trigger, as JSON, to handle again once approved.
    pub trigger: String,
    pub created_at: String,
    pub expires: DateTime<Utc>,
    /// When and by which invocation it was settled.
    pub settled_at: Option<String>,
    pub settled_by: Option<String>,
    /// How many distinct approvers it needs.
    pub required: u32,
    /// Who approved it so far, as AWS verified them, and when (RFC 3339), oldest first.
    pub approvers: Vec<(String, String)>,
}

/// What trying to add an approver found.
#[derive(Debug, Clone, PartialEq)]
pub enum Approve {
    /// Counted now: the record with every approver so far.
    Counted(Box<ApprovalRecord>),
    /// This principal had approved before: counted once (the record as it is).
    Repeat(Box<ApprovalRecord>),
    /// It was no longer awaiting (the record as it is).
    Already(Box<ApprovalRecord>),
    /// It came after the expiry.
    Expired,
}

const APPROVER_PREFIX: &str = "approver#";

/// What trying to settle a parked decision found.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// Settled now, by this call.
    Done,
    /// It was no longer awaiting: settled before (its record as it is).
    Already(Box<ApprovalRecord>),
    /// Approve or reject came after the expiry.
    Expired,
}

fn record(item: &Item) -> Option<ApprovalRecord> {
    let opt = |k: &str| get_s(item, k).filter(|v| !v.is_empty() && *v != "-").map(str::to_string);
    Some(ApprovalRecord {
        token: get_s(item, "token")?.to_string(),
        status: get_s(item, "status")?.to_string(),
        function: get_s(item, "function")?.to_string(),
        action: get_s(item, "action")?.to_string(),
        target: get_s(item, "target")?.to_string(),
        target_kind: get_s(item, "target_kind").unwrap_or("resource").to_string(),
        group: opt("group"),
        account: opt("account"),
        region: opt("region"),
        event_id: get_s(item, "event_id").unwrap_or_default().to_string(),
        why: get_s(item, "why").unwrap_or_default().to_string(),
        what: get_s(item, "what").unwrap_or_default().to_string(),
        trigger: get_s(item, "trigger").unwrap_or_default().to_string(),
        created_at: get_s(item, "created_at").unwrap_or_default().to_string(),
        expires: DateTime::<Utc>::from_timestamp(get_n(item, "expires")?, 0)?,
        settled_at: opt("settled_at"),
        settled_by: opt("settled_by"),
        required: get_n(item, "required").and_then(|n| u32::try_from(n).ok()).unwrap_or(1),
        approvers: {
            let mut v: Vec<(String, String)> = item
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(APPROVER_PREFIX)?.to_string(), v.as_s().ok()?.clone())))
                .collect();
            v.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
            v
        },
    })
}

fn key(token: &str) -> String {
    format!("approval#{token}")
}

fn open_key(function: &str) -> String {
    format!("approvals-open#{function}")
}

impl Ledger {
    /// Parks a decision: writes its record (a token is written once) and lists it as open.
    pub async fn park_approval(&self, r: &ApprovalRecord) -> Result<()> {
        let dash = |v: &Option<String>| s(v.clone().unwrap_or_else(|| "-".into()));
        self.ddb
            .put_item()
            .table_name(&self.table)
            .item("pk", s(key(&r.token)))
            .item("sk", s("approval"))
            .item("kind", s("approval"))
            .item("token", s(&r.token))
            .item("status", s(&r.status))
            .item("function", s(&r.function))
            .item("action", s(&r.action))
            .item("target", s(&r.target))
            .item("target_kind", s(&r.target_kind))
            .item("group", dash(&r.group))
            .item("account", dash(&r.account))
            .item("region", dash(&r.region))
            .item("event_id", s(&r.event_id))
            .item("why", s(&r.why))
            .item("what", s(&r.what))
            .item("trigger", s(&r.trigger))
            .item("created_at", s(&r.created_at))
            .item("expires", n(r.expires.timestamp()))
            .item("required", n(i64::from(r.required)))
            .item("expires_at", n(self.expires_at(Utc::now())))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| self.explain(Error::aws("dynamodb", "PutItem", e)))?;
        self.ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(open_key(&r.function)))
            .key("sk", s("open"))
            .update_expression("ADD tokens :t SET kind = :kind")
            .expression_attribute_values(":t", aws_sdk_dynamodb::types::AttributeValue::Ss(vec![r.token.clone()]))
            .expression_attribute_values(":kind", s("approvals-open"))
            .send()
            .await
            .map_err(|e| self.explain(Error::aws("dynamodb", "UpdateItem", e)))?;
        Ok(())
    }

    /// The parked decision behind `token`, if there is one.
    pub async fn approval(&self, token: &str) -> Result<Option<ApprovalRecord>> {
        Ok(self.get(&key(token), "approval").await?.as_ref().and_then(record))
    }

    /// Moves a decision from awaiting to `to` (approved, rejected: only before its expiry; expired: only
    /// after it), atomically, so one token is settled once. `by` names the settling invocation.
    pub async fn settle_approval(&self, token: &str, to: &str, by: &str) -> Result<Settle> {
        let now = Utc::now();
        let when = if to == EXPIRED { "expires <= :now" } else { "expires > :now" };
        let res = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key(token)))
            .key("sk", s("approval"))
            .update_expression("SET #st = :to, settled_at = :at, settled_by = :by")
            .condition_expression(format!("#st = :awaiting AND {when}"))
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":to", s(to))
            .expression_attribute_values(":at", s(now.to_rfc3339()))
            .expression_attribute_values(":by", s(by))
            .expression_attribute_values(":awaiting", s(AWAITING))
            .expression_attribute_values(":now", n(now.timestamp()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(Settle::Done),
            Err(e) if is_condition_failed(&e) => {
                let current = self
                    .approval(token)
                    .await?
                    .ok_or_else(|| Error::NotFound { kind: "approval token", id: token.to_string() })?;
                if current.status == AWAITING {
                    Ok(Settle::Expired)
                } else {
                    Ok(Settle::Already(Box::new(current)))
                }
            }
            Err(e) => Err(self.explain(Error::aws("dynamodb", "UpdateItem", e))),
        }
    }

    /// Counts `principal` (as AWS verified it) among the approvers of `token`, at `at`, while it awaits
    /// approval and before its expiry; a principal is counted once.
    pub async fn add_approver(&self, token: &str, principal: &str, at: &str) -> Result<Approve> {
        let now = Utc::now();
        let res = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key(token)))
            .key("sk", s("approval"))
            .update_expression("SET #p = :at")
            .condition_expression("#st = :awaiting AND expires > :now AND attribute_not_exists(#p)")
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#p", format!("{APPROVER_PREFIX}{principal}"))
            .expression_attribute_values(":at", s(at))
            .expression_attribute_values(":awaiting", s(AWAITING))
            .expression_attribute_values(":now", n(now.timestamp()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        let unreadable = || Error::ActionFailed(format!("the approval record of token {token} cannot be read"));
        match res {
            Ok(out) => {
                let item = out.attributes.ok_or_else(unreadable)?;
                Ok(Approve::Counted(Box::new(record(&item).ok_or_else(unreadable)?)))
            }
            Err(e) if is_condition_failed(&e) => {
                let current = self
                    .approval(token)
                    .await?
                    .ok_or_else(|| Error::NotFound { kind: "approval token", id: token.to_string() })?;
                if current.status != AWAITING {
                    Ok(Approve::Already(Box::new(current)))
                } else if current.approvers.iter().any(|(p, _)| p == principal) {
                    Ok(Approve::Repeat(Box::new(current)))
                } else {
                    Ok(Approve::Expired)
                }
            }
            Err(e) => Err(self.explain(Error::aws("dynamodb", "UpdateItem", e))),
        }
    }

    /// The tokens `function` has parked and not yet seen settled.
    pub async fn open_approvals(&self, function: &str) -> Result<Vec<String>> {
        let item = self.get(&open_key(function), "open").await?;
        Ok(item.and_then(|i| i.get("tokens").and_then(|v| v.as_ss().ok()).cloned()).unwrap_or_default())
    }

    /// Takes `token` off `function`'s open list.
    pub async fn close_approval(&self, function: &str, token: &str) -> Result<()> {
        self.ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(open_key(function)))
            .key("sk", s("open"))
            .update_expression("DELETE tokens :t")
            .expression_attribute_values(":t", aws_sdk_dynamodb::types::AttributeValue::Ss(vec![token.to_string()]))
            .send()
            .await
            .map_err(|e| self.explain(Error::aws("dynamodb", "UpdateItem", e)))?;
        Ok(())
    }
}
