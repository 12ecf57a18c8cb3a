//! The Route 53 layer: reading and upserting the application's database CNAME, recording each change
//! the suite submits on the zone, and standing down while the last one is still `PENDING`.

use std::time::{Duration, Instant};

use super::config::{fqdn, DnsRecord};
use crate::error::{Error, Result};
use crate::ledger::zone_change::ChangeBy;
use crate::ledger::Ledger;

/// The current value of a CNAME, if the record exists.
pub async fn read_cname(r53: &aws_sdk_route53::Client, dns: &DnsRecord) -> Result<Option<String>> {
    use aws_sdk_route53::types::RrType;
    let out = r53
        .list_resource_record_sets()
        .hosted_zone_id(&dns.zone_id)
        .start_record_name(&dns.name)
        .start_record_type(RrType::Cname)
        .max_items(1)
        .send()
        .await
        .map_err(|e| Error::aws("route53", "ListResourceRecordSets", e))?;
    Ok(out
        .resource_record_sets()
        .iter()
        .find(|r| fqdn(r.name()) == dns.name && *r.r#type() == RrType::Cname)
        .and_then(|r| r.resource_records().first())
        .map(|v| v.value().to_string()))
}

/// Upserts the CNAME to `value` and waits (bounded) for the change to be INSYNC. Returns the change id.
/// (Unrecorded: [`upsert_cname_recorded`] is the one the suite's own changes go through.)
pub async fn upsert_cname(
    r53: &aws_sdk_route53::Client,
    dns: &DnsRecord,
    value: &str,
    comment: &str,
    wait: Duration,
    poll: Duration,
) -> Result<String> {
    upsert(r53, dns, value, comment, wait, poll, None).await
}

/// [`upsert_cname`], recording the change id on the zone in the ledger as soon as Route 53 accepts
/// it (before the wait for INSYNC), so a later change on the zone can see it pending
/// ([`crate::stand_down::pending_change_refusal`]).
#[allow(clippy::too_many_arguments)]
pub async fn upsert_cname_recorded(
    r53: &aws_sdk_route53::Client,
    dns: &DnsRecord,
    value: &str,
    comment: &str,
    wait: Duration,
    poll: Duration,
    ledger: &Ledger,
    by: &ChangeBy,
) -> Result<String> {
    upsert(r53, dns, value, comment, wait, poll, Some((ledger, by))).await
}

async fn upsert(
    r53: &aws_sdk_route53::Client,
    dns: &DnsRecord,
    value: &str,
    comment: &str,
    wait: Duration,
    poll: Duration,
    record: Option<(&Ledger, &ChangeBy)>,
) -> Result<String> {
    use aws_sdk_route53::types::{
        Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
    };
    let op = "ChangeResourceRecordSets";
    let err = |e: aws_sdk_route53::error::BuildError| Error::aws("route53", op, e);
    let rrs = ResourceRecordSet::builder()
        .name(&dns.name)
        .r#type(RrType::Cname)
        .ttl(dns.ttl)
        .resource_records(ResourceRecord::builder().value(value).build().map_err(err)?)
        .build()
        .map_err(err)?;
    let batch = ChangeBatch::builder()
        .comment(comment)
        .changes(Change::builder().action(ChangeAction::Upsert).resource_record_set(rrs).build().map_err(err)?)
        .build()
        .map_err(err)?;
    let out = r53
        .change_resource_record_sets()
        .hosted_zone_id(&dns.zone_id)
        .change_batch(batch)
        .send()
        .await
        .map_err(|e| Error::aws("route53", op, e))?;
    let Some(info) = out.change_info() else { return Ok(String::new()) };
    let id = info.id().to_string();
    if let Some((ledger, by)) = record {
        ledger.record_zone_change(&dns.zone_id, &id, by).await?;
    }
    let deadline = Instant::now() + wait;
    let mut status = info.status().clone();
    while status != ChangeStatus::Insync {
        if Instant::now() >= deadline {
            return Err(Error::Timeout { what: format!("Route 53 change {id} to be INSYNC"), seconds: wait.as_secs() });
        }
        tokio::time::sleep(poll.min(Duration::from_secs(5))).await;
        let got = r53.get_change().id(&id).send().await.map_err(|e| Error::aws("route53", "GetChange", e))?;
        status = got.change_info().map(|c| c.status().clone()).unwrap_or(ChangeStatus::Insync);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    //! The database record's pending-change stand-down and recorded upsert against Route 53 responses
    //! shaped as its API reference shows them (REST-XML), served by `aws-smithy-mocks`, over a mocked
    //! ledger. (moto 5.2.5 answers every `GetChange` `INSYNC`.)

    use super::*;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn xml(body: &'static str) -> HttpResponse {
        HttpResponse::new(StatusCode::try_from(200).unwrap(), SdkBody::from(body))
    }

    const UPSERTED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ChangeResourceRecordSetsResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">
   <ChangeInfo><Id>/change/C2682N5HXP0BZ4</Id><Status>INSYNC</Status><SubmittedAt>2026-11-25T10:20:00.000Z</SubmittedAt></ChangeInfo>
</ChangeResourceRecordSetsResponse>"#;

    fn dns() -> DnsRecord {
        DnsRecord { zone_id: "Z0123456789ABC".into(), name: "db.example.com.".into(), ttl: 60 }
    }

    #[tokio::test]
    async fn a_recorded_upsert_records_its_change_before_waiting() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.item().and_then(|i| i.get("change_id")) == Some(&AttributeValue::S("/change/C2682N5HXP0BZ4".into()))
            })
            .then_output(|| PutItemOutput::builder().build());
        let ledger = Ledger::new(
            mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put]),
            "ledger",
            Duration::from_secs(86_400),
        );
        let upserted = mock!(aws_sdk_route53::Client::change_resource_record_sets).then_http_response(|| xml(UPSERTED));
        let r53 = mock_client!(aws_sdk_route53, [&upserted]);
        let by = ChangeBy {
            function: "db-failover".into(),
            action: "promote-replica".into(),
            event_id: "e-1".into(),
            target: "db.example.com.".into(),
        };
        let wait = Duration::from_secs(1);
        let id = upsert_cname_recorded(&r53, &dns(), "orders-r1.example", "c", wait, wait, &ledger, &by).await.unwrap();
        assert_eq!(id, "/change/C2682N5HXP0BZ4");
        assert_eq!(put.num_calls(), 1);
    }
}
