//! The Route 53 layer: reading and upserting the application's database CNAME.

use std::time::{Duration, Instant};

use super::config::{fqdn, DnsRecord};
use crate::error::{Error, Result};

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
pub async fn upsert_cname(
    r53: &aws_sdk_route53::Client,
    dns: &DnsRecord,
    value: &str,
    comment: &str,
    wait: Duration,
    poll: Duration,
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
