//! A manual invocation by an operator or a drill (`source: selfheal.manual`).

use serde_json::Value;

use super::{Delivery, Manual, Scope, Trigger, TriggerKind};
use crate::error::{Error, Result};
use crate::ids::{is_account_id, is_region};

pub(super) fn parse_manual(payload: &Value) -> Result<Trigger> {
    let manual: Manual =
        serde_json::from_value(payload.clone()).map_err(|e| Error::malformed("manual", e.to_string()))?;
    if manual.action.trim().is_empty() {
        return Err(Error::malformed("manual", "action is empty"));
    }
    if let Some(a) = manual.account.as_deref().filter(|a| !is_account_id(a)) {
        return Err(Error::malformed("manual", format!("account must be a 12-digit AWS account id, got {a:?}")));
    }
    if let Some(r) = manual.region.as_deref().filter(|r| !is_region(r)) {
        return Err(Error::malformed("manual", format!("region must be a region code such as us-east-1, got {r:?}")));
    }
    let scope = Scope::with(manual.account.clone(), manual.region.clone());
    let event_id = match &manual.request_id {
        Some(id) if !id.is_empty() => format!("manual:{id}"),
        _ => format!("manual:{}", uuid::Uuid::new_v4()),
    };
    Ok(Trigger { event_id, delivery: Delivery::Direct, kind: TriggerKind::Manual(manual), scope })
}

#[cfg(test)]
mod tests {
    use crate::trigger::{parse_event, MANUAL_SOURCE};
    use serde_json::json;

    #[test]
    fn manual_rejects_unknown_fields() {
        let err =
            parse_event(&json!({"source": MANUAL_SOURCE, "action": "x", "dryrun": true})).unwrap_err().to_string();
        assert!(err.contains("unknown field `dryrun`"), "{err}");
    }
}
