//! The AWS layer: every Route 53 call (hosted zones, record sets, tags, health checks, change batches
//! and INSYNC) and the conversion between the SDK's record sets and [`RecordSet`].

use std::time::Duration;

use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet,
    ResourceRecordSetFailover, RrType, TagResourceType,
};

use crate::error::{Error, Result};
use crate::ledger::zone_change::ChangeBy;
use crate::ledger::Ledger;

use super::config::normalise_name;
use super::health::{effective_health, HealthReading};
use super::plan::PlannedChange;
use super::records::{Alias, RecordSet};

fn strip_zone_prefix(id: &str) -> String {
    id.trim_start_matches("/hostedzone/").to_string()
}

/// The hosted zone id of `zone` (a zone name ending in `.`, or an id).
pub async fn resolve_zone(r53: &aws_sdk_route53::Client, zone: &str) -> Result<String> {
    if !zone.ends_with('.') {
        let id = strip_zone_prefix(zone);
        return match r53.get_hosted_zone().id(&id).send().await {
            Ok(_) => Ok(id),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_hosted_zone()) => {
                Err(Error::NotFound { kind: "hosted zone", id })
            }
            Err(e) => Err(Error::aws("route53", "GetHostedZone", e)),
        };
    }
    let want = normalise_name(zone);
    let out = r53
        .list_hosted_zones_by_name()
        .dns_name(&want)
        .max_items(10)
        .send()
        .await
        .map_err(|e| Error::aws("route53", "ListHostedZonesByName", e))?;
    let ids: Vec<String> = out
        .hosted_zones()
        .iter()
        .filter(|z| normalise_name(z.name()) == want)
        .map(|z| strip_zone_prefix(z.id()))
        .collect();
    match ids.as_slice() {
        [] => Err(Error::NotFound { kind: "hosted zone", id: want }),
        [one] => Ok(one.clone()),
        many => Err(Error::Precondition(format!(
            "{} hosted zones are named {want} ({}); configure the zone by id",
            many.len(),
            many.join(", ")
        ))),
    }
}

fn from_sdk(s: &ResourceRecordSet) -> std::result::Result<RecordSet, String> {
    if s.region().is_some()
        || s.geo_location().is_some()
        || s.multi_value_answer().is_some()
        || s.traffic_policy_instance_id().is_some()
        || s.cidr_routing_config().is_some()
        || s.geo_proximity_location().is_some()
    {
        return Err(format!(
            "{} {} uses a routing policy this function does not manage (latency, geo, multivalue, CIDR or traffic \
             policy)",
            s.name(),
            s.r#type().as_str()
        ));
    }
    Ok(RecordSet {
        name: normalise_name(s.name()),
        rtype: s.r#type().as_str().to_string(),
        set_identifier: s.set_identifier().map(str::to_string),
        failover: s.failover().map(|f| f.as_str().to_string()),
        weight: s.weight(),
        ttl: s.ttl(),
        values: s.resource_records().iter().map(|r| r.value().to_string()).collect(),
        alias: s.alias_target().map(|a| Alias {
            hosted_zone_id: a.hosted_zone_id().to_string(),
            dns_name: a.dns_name().to_string(),
            evaluate_target_health: a.evaluate_target_health(),
        }),
        health_check_id: s.health_check_id().map(str::to_string),
    })
}

fn to_sdk(s: &RecordSet) -> Result<ResourceRecordSet> {
    let build = |what: &str, e: &dyn std::fmt::Display| Error::Precondition(format!("cannot build {what}: {e}"));
    let mut b = ResourceRecordSet::builder()
        .name(&s.name)
        .r#type(RrType::from(s.rtype.as_str()))
        .set_set_identifier(s.set_identifier.clone())
        .set_failover(s.failover.as_deref().map(ResourceRecordSetFailover::from))
        .set_weight(s.weight)
        .set_health_check_id(s.health_check_id.clone());
    match &s.alias {
        Some(a) => {
            let alias = AliasTarget::builder()
                .hosted_zone_id(&a.hosted_zone_id)
                .dns_name(&a.dns_name)
                .evaluate_target_health(a.evaluate_target_health)
                .build()
                .map_err(|e| build("alias target", &e))?;
            b = b.alias_target(alias);
        }
        None => {
            b = b.set_ttl(s.ttl);
            for v in &s.values {
                b = b.resource_records(ResourceRecord::builder().value(v).build().map_err(|e| build("record", &e))?);
            }
        }
    }
    b.build().map_err(|e| build("record set", &e))
}

/// The record sets of `name`/`rtype` in the zone (empty when the record does not exist).
pub async fn list_record(
    r53: &aws_sdk_route53::Client,
    zone_id: &str,
    name: &str,
    rtype: &str,
) -> Result<Vec<RecordSet>> {
    let want = normalise_name(name);
    let out = r53
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .start_record_name(&want)
        .start_record_type(RrType::from(rtype))
        .max_items(100)
        .send()
        .await
        .map_err(|e| Error::aws("route53", "ListResourceRecordSets", e))?;
    out.resource_record_sets()
        .iter()
        .filter(|s| normalise_name(s.name()) == want && s.r#type().as_str().eq_ignore_ascii_case(rtype))
        .map(|s| from_sdk(s).map_err(Error::Precondition))
        .collect()
}

/// The tags of a hosted zone or a health check.
pub async fn tags(r53: &aws_sdk_route53::Client, kind: TagResourceType, id: &str) -> Result<Vec<(String, String)>> {
    let out = r53
        .list_tags_for_resource()
        .resource_type(kind)
        .resource_id(id)
        .send()
        .await
        .map_err(|e| Error::aws("route53", "ListTagsForResource", e))?;
    Ok(out
        .resource_tag_set()
        .map(|s| {
            s.tags()
                .iter()
                .map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default())
}

/// Reads one health check's effective health.
pub async fn health(r53: &aws_sdk_route53::Client, health_check_id: &str) -> Result<HealthReading> {
    let hc = r53
        .get_health_check()
        .health_check_id(health_check_id)
        .send()
        .await
        .map_err(|e| Error::aws("route53", "GetHealthCheck", e))?;
    let config = hc.health_check().and_then(|h| h.health_check_config());
    let inverted = config.and_then(|c| c.inverted()).unwrap_or(false);
    let disabled = config.and_then(|c| c.disabled()).unwrap_or(false);
    let status = r53
        .get_health_check_status()
        .health_check_id(health_check_id)
        .send()
        .await
        .map_err(|e| Error::aws("route53", "GetHealthCheckStatus", e))?;
    let observations = status.health_check_observations();
    let checkers = observations.len();
    let checkers_ok = observations
        .iter()
        .filter(|o| o.status_report().and_then(|r| r.status()).is_some_and(|s| s.starts_with("Success")))
        .count();
    Ok(HealthReading {
        health_check_id: health_check_id.to_string(),
        healthy: effective_health(checkers_ok, checkers, inverted, disabled),
        inverted,
        disabled,
        checkers,
        checkers_ok,
    })
}

/// Submits one atomic change batch; returns the change id.
pub async fn submit(
    r53: &aws_sdk_route53::Client,
    zone_id: &str,
    changes: &[PlannedChange],
    comment: &str,
) -> Result<String> {
    let mut batch = ChangeBatch::builder().comment(comment.chars().take(256).collect::<String>());
    for c in changes {
        let change = Change::builder()
            .action(ChangeAction::from(c.action.as_str()))
            .resource_record_set(to_sdk(&c.record_set)?)
            .build()
            .map_err(|e| Error::Precondition(format!("cannot build change: {e}")))?;
        batch = batch.changes(change);
    }
    let batch = batch.build().map_err(|e| Error::Precondition(format!("cannot build change batch: {e}")))?;
    let out = r53
        .change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(batch)
        .send()
        .await
        .map_err(|e| Error::aws("route53", "ChangeResourceRecordSets", e))?;
    Ok(out.change_info().map(|c| c.id().to_string()).unwrap_or_default())
}

/// [`submit`], recording the change id as the last change on the zone in the ledger as soon as Route 53
/// accepts it, so a later change on the zone can see it pending ([`pending_change_refusal`]).
pub async fn submit_recorded(
    r53: &aws_sdk_route53::Client,
    ledger: &Ledger,
    zone_id: &str,
    changes: &[PlannedChange],
    comment: &str,
    by: &ChangeBy,
) -> Result<String> {
    let id = submit(r53, zone_id, changes, comment).await?;
    if !id.is_empty() {
        ledger.record_zone_change(zone_id, &id, by).await?;
    }
    Ok(id)
}

/// Polls `GetChange` until INSYNC or `timeout`; returns whether it got there.
pub async fn wait_insync(
    r53: &aws_sdk_route53::Client,
    change_id: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let out = r53.get_change().id(change_id).send().await.map_err(|e| Error::aws("route53", "GetChange", e))?;
        if out.change_info().is_some_and(|c| *c.status() == ChangeStatus::Insync) {
            return Ok(true);
        }
        if tokio::time::Instant::now() + poll > deadline {
            return Ok(false);
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    //! The recorded change batch against a Route 53 response shaped as its API reference shows it
    //! (REST-XML), served by `aws-smithy-mocks`, over a mocked ledger. The pending-change stand-down
    //! it feeds is tested in [`crate::stand_down`].

    use std::time::Duration;

    use super::*;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn xml(status: u16, body: &'static str) -> HttpResponse {
        HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body))
    }

    const SUBMITTED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ChangeResourceRecordSetsResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">
   <ChangeInfo>
      <Id>/change/C0987654321XYZ</Id>
      <Status>PENDING</Status>
      <SubmittedAt>2026-11-25T10:20:00.000Z</SubmittedAt>
      <Comment>selfheal failover</Comment>
   </ChangeInfo>
</ChangeResourceRecordSetsResponse>"#;

    fn ledger(rules: &[&aws_smithy_mocks::Rule]) -> Ledger {
        let ddb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules);
        Ledger::new(ddb, "ledger", Duration::from_secs(86_400))
    }

    #[tokio::test]
    async fn a_submitted_change_is_recorded_on_its_zone() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                let item = r.item().cloned().unwrap_or_default();
                let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                s("pk") == "zone-change#Z0123456789ABC"
                    && s("sk") == "last"
                    && s("change_id") == "/change/C0987654321XYZ"
                    && s("function") == "dns-failover"
                    && s("event_id") == "e-1"
            })
            .then_output(|| PutItemOutput::builder().build());
        let ledger = ledger(&[&put]);
        let submitted =
            mock!(aws_sdk_route53::Client::change_resource_record_sets).then_http_response(|| xml(200, SUBMITTED));
        let r53 = mock_client!(aws_sdk_route53, [&submitted]);
        let set = RecordSet {
            name: "app.example.com.".into(),
            rtype: "A".into(),
            set_identifier: None,
            failover: None,
            weight: None,
            ttl: Some(60),
            values: vec!["10.0.0.9".into()],
            alias: None,
            health_check_id: None,
        };
        let by = ChangeBy {
            function: "dns-failover".into(),
            action: "failover".into(),
            event_id: "e-1".into(),
            target: "Z0123456789ABC/app.example.com./A".into(),
        };
        let batch = [PlannedChange { action: "UPSERT".into(), record_set: set }];
        let id = submit_recorded(&r53, &ledger, "Z0123456789ABC", &batch, "selfheal failover", &by).await.unwrap();
        assert_eq!(id, "/change/C0987654321XYZ");
        assert_eq!(put.num_calls(), 1, "recorded, with who and what");
    }
}
