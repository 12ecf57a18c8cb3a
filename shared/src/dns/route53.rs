//! The AWS layer: every Route 53 call (hosted zones, record sets, tags, health checks, change batches
//! and INSYNC) and the conversion between the SDK's record sets and [`RecordSet`].

use std::time::Duration;

use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet,
    ResourceRecordSetFailover, RrType, TagResourceType,
};

use crate::error::{Error, Result};

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
