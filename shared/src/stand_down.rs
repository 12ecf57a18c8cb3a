//! Standing down for another recovery: the refused decision every function records when something
//! else already owns the resource ([`StandDown`], `guard: "another-recovery"`), and the one stand-down
//! two functions share: the suite's own last Route 53 change on a hosted zone still `PENDING`
//! ([`pending_change`]; read by [`pending_change_refusal`] for db-failover's record repoint and
//! dns-failover's flip). Each function's own stand-downs, pure decisions over what it reads, sit in
//! its `stand_down.rs` (`healer`, `db`).
//!
//! Route 53 has no "list changes" API, so every change the suite submits records its change id per
//! zone in the ledger ([`crate::ledger::zone_change`]); before a change, `GetChange` is asked about
//! the last one. Changes made outside the suite (the console, another tool) are not recorded and
//! cannot be seen.

use serde::Serialize;
use serde_json::{json, Value};

use crate::envelope::{Envelope, Outcome, Severity};
use crate::guardrails::{ActionReport, ActionRequest};
use crate::ledger::zone_change::ZoneChange;
use crate::Ctx;

/// The `guard` detail every stand-down carries.
pub const GUARD: &str = "another-recovery";

/// Another recovery owns the resource: what is in progress, and its evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StandDown {
    /// The kind of recovery (the `recovery` detail), from the tables of each function's module.
    pub recovery: &'static str,
    /// Names what is in progress and ends with "standing down".
    pub reason: String,
    /// What was read (the `inProgress` detail).
    pub in_progress: Value,
}

impl StandDown {
    pub fn new(recovery: &'static str, reason: String, in_progress: Value) -> Self {
        StandDown { recovery, reason, in_progress }
    }

    /// The refused decision (severity warning), for a request not (yet) under the guardrails.
    pub fn envelope(&self, ctx: &Ctx, req: &ActionRequest) -> Envelope {
        ctx.envelope(req, Outcome::Refused, self.reason.clone())
            .severity(Severity::Warning)
            .detail("guard", GUARD)
            .detail("recovery", self.recovery)
            .detail("inProgress", &self.in_progress)
    }

    /// The refused report (severity warning), for work already under the guardrails.
    pub fn report(&self) -> ActionReport {
        ActionReport::refused(self.reason.clone())
            .severity(Severity::Warning)
            .detail("guard", GUARD)
            .detail("recovery", self.recovery)
            .detail("inProgress", &self.in_progress)
    }
}

/// The suite's last change on a hosted zone still `PENDING` (`status` is what `GetChange` says of it
/// now): the stand-down naming the change, who submitted it and when.
pub fn pending_change(last: &ZoneChange, status: &str) -> Option<StandDown> {
    let reason = last.pending_reason(status)?;
    Some(StandDown::new("route53-change", reason, json!({ "change": last, "status": status })))
}

/// Whether the suite's last recorded change on `zone_id` is still `PENDING` (a `GetChange` on it):
/// `Some` stand-down naming the change, who submitted it and when.
#[cfg(any(feature = "db", feature = "dns"))]
pub async fn pending_change_refusal(
    ledger: &crate::ledger::Ledger,
    r53: &aws_sdk_route53::Client,
    zone_id: &str,
) -> crate::error::Result<Option<StandDown>> {
    let Some(last) = ledger.last_zone_change(zone_id).await? else { return Ok(None) };
    let Some(status) = change_status(r53, &last.change_id).await? else { return Ok(None) };
    Ok(pending_change(&last, &status))
}

/// `GetChange`'s status of a change (`PENDING`, `INSYNC`), `None` when Route 53 no longer knows it.
#[cfg(any(feature = "db", feature = "dns"))]
pub async fn change_status(r53: &aws_sdk_route53::Client, change_id: &str) -> crate::error::Result<Option<String>> {
    match r53.get_change().id(change_id).send().await {
        Ok(out) => Ok(out.change_info().map(|c| c.status().as_str().to_string())),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_change()) => Ok(None),
        Err(e) => Err(crate::error::Error::aws("route53", "GetChange", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::zone_change::ChangeBy;

    #[test]
    fn only_a_pending_change_stands_a_change_down() {
        let last = ZoneChange {
            zone_id: "Z0123456789ABC".into(),
            change_id: "/change/C2682N5HXP0BZ4".into(),
            by: ChangeBy {
                function: "db-failover".into(),
                action: "promote-replica".into(),
                event_id: "rds:orders:RDS-EVENT-0034".into(),
                target: "db.example.com.".into(),
            },
            submitted_at: "2026-11-25T10:15:33+00:00".into(),
        };
        let sd = pending_change(&last, "PENDING").unwrap();
        assert_eq!(sd.recovery, "route53-change");
        assert!(
            sd.reason.contains("Route 53 change /change/C2682N5HXP0BZ4 on hosted zone Z0123456789ABC is still PENDING"),
            "{}",
            sd.reason
        );
        assert!(sd.reason.contains("submitted by db-failover promote-replica of db.example.com."), "{}", sd.reason);
        let report = sd.report();
        assert_eq!(report.outcome, Outcome::Refused);
        assert_eq!(report.severity, Some(Severity::Warning));
        assert_eq!(report.details["guard"], GUARD);
        assert_eq!(report.details["recovery"], "route53-change");
        assert_eq!(report.details["inProgress"]["change"]["changeId"], "/change/C2682N5HXP0BZ4");
        assert!(pending_change(&last, "INSYNC").is_none());
    }
}

#[cfg(all(test, any(feature = "db", feature = "dns")))]
mod route53_tests {
    //! The pending-change read against Route 53 responses shaped as its API reference shows them
    //! (REST-XML), served by `aws-smithy-mocks` (moto 5.2.5 answers every `GetChange` `INSYNC`), over a
    //! mocked ledger.

    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::ledger::Ledger;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn xml(status: u16, body: &'static str) -> HttpResponse {
        HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body))
    }

    const PENDING: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<GetChangeResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">
   <ChangeInfo>
      <Id>/change/C2682N5HXP0BZ4</Id>
      <Status>PENDING</Status>
      <SubmittedAt>2026-11-25T10:15:33.958Z</SubmittedAt>
   </ChangeInfo>
</GetChangeResponse>"#;

    const INSYNC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<GetChangeResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">
   <ChangeInfo>
      <Id>/change/C2682N5HXP0BZ4</Id>
      <Status>INSYNC</Status>
      <SubmittedAt>2026-11-25T10:15:33.958Z</SubmittedAt>
   </ChangeInfo>
</GetChangeResponse>"#;

    fn recorded_item() -> HashMap<String, AttributeValue> {
        let s = |v: &str| AttributeValue::S(v.to_string());
        HashMap::from([
            ("pk".to_string(), s("zone-change#Z0123456789ABC")),
            ("sk".to_string(), s("last")),
            ("change_id".to_string(), s("/change/C2682N5HXP0BZ4")),
            ("function".to_string(), s("db-failover")),
            ("action".to_string(), s("promote-replica")),
            ("event_id".to_string(), s("rds:orders:RDS-EVENT-0034")),
            ("target".to_string(), s("db.example.com.")),
            ("submitted_at".to_string(), s("2026-11-25T10:15:33+00:00")),
        ])
    }

    fn ledger(rules: &[&aws_smithy_mocks::Rule]) -> Ledger {
        let ddb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules);
        Ledger::new(ddb, "ledger", Duration::from_secs(86_400))
    }

    #[tokio::test]
    async fn a_pending_change_on_the_zone_stands_the_flip_down() {
        let item = mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| {
                r.key().and_then(|k| k.get("pk")) == Some(&AttributeValue::S("zone-change#Z0123456789ABC".into()))
            })
            .then_output(|| GetItemOutput::builder().set_item(Some(recorded_item())).build());
        let ledger = ledger(&[&item]);
        let pending = mock!(aws_sdk_route53::Client::get_change)
            .match_requests(|r| r.id().is_some_and(|id| id.ends_with("C2682N5HXP0BZ4")))
            .then_http_response(|| xml(200, PENDING));
        let r53 = mock_client!(aws_sdk_route53, [&pending]);
        let sd = pending_change_refusal(&ledger, &r53, "Z0123456789ABC").await.unwrap().expect("stands down");
        assert_eq!(sd.recovery, "route53-change");
        assert!(
            sd.reason.starts_with(
                "Route 53 change /change/C2682N5HXP0BZ4 on hosted zone Z0123456789ABC is still PENDING (submitted by \
                 db-failover promote-replica of db.example.com. for event rds:orders:RDS-EVENT-0034 at \
                 2026-11-25T10:15:33+00:00)"
            ),
            "{}",
            sd.reason
        );

        let insync = mock!(aws_sdk_route53::Client::get_change).then_http_response(|| xml(200, INSYNC));
        let r53 = mock_client!(aws_sdk_route53, [&insync]);
        assert!(pending_change_refusal(&ledger, &r53, "Z0123456789ABC").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn nothing_recorded_or_a_change_route53_forgot_does_not_hold_the_zone() {
        let none = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| GetItemOutput::builder().build());
        let r53 = mock_client!(
            aws_sdk_route53,
            [&mock!(aws_sdk_route53::Client::get_change).then_http_response(|| xml(200, PENDING))]
        );
        assert!(pending_change_refusal(&ledger(&[&none]), &r53, "Z1").await.unwrap().is_none(), "never recorded");

        let item = mock!(aws_sdk_dynamodb::Client::get_item)
            .then_output(|| GetItemOutput::builder().set_item(Some(recorded_item())).build());
        let forgotten = mock!(aws_sdk_route53::Client::get_change).then_http_response(|| {
            xml(
                404,
                r#"<?xml version="1.0"?>
<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type><Code>NoSuchChange</Code><Message>A change with the specified change ID does not exist.</Message></Error><RequestId>1</RequestId></ErrorResponse>"#,
            )
        });
        let r53 = mock_client!(aws_sdk_route53, [&forgotten]);
        assert!(pending_change_refusal(&ledger(&[&item]), &r53, "Z0123456789ABC").await.unwrap().is_none());
    }

    /// Only `NoSuchChange` means Route 53 forgot the change: any other failure to read it (access
    /// denied here) is an error naming the call, never taken as "nothing pending" (a mutant scripts/mutants
    /// found unheld).
    #[tokio::test]
    async fn a_change_that_cannot_be_read_is_an_error_not_a_forgotten_change() {
        let item = mock!(aws_sdk_dynamodb::Client::get_item)
            .then_output(|| GetItemOutput::builder().set_item(Some(recorded_item())).build());
        let denied = mock!(aws_sdk_route53::Client::get_change).then_http_response(|| {
            xml(
                403,
                r#"<?xml version="1.0"?>
<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User is not authorized to perform: route53:GetChange</Message></Error><RequestId>1</RequestId></ErrorResponse>"#,
            )
        });
        let r53 = mock_client!(aws_sdk_route53, [&denied]);
        let err = pending_change_refusal(&ledger(&[&item]), &r53, "Z0123456789ABC").await.unwrap_err().to_string();
        assert!(err.contains("GetChange") && err.contains("AccessDenied"), "{err}");
    }
}
