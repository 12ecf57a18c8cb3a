//! dns-failover: moves an application's DNS traffic from its primary target to its standby in Route 53,
//! and back again.
//!
//! Three record shapes are managed (one `name`/`type` in one hosted zone, listed in
//! `SELFHEAL_DNS_RECORDS`):
//! - a **failover pair** (two record sets, `Failover=PRIMARY`/`SECONDARY`): a flip swaps which set is
//!   PRIMARY (DELETE both, CREATE both swapped, in one atomic change batch: Route 53 rejects an UPSERT
//!   that changes the failover role of a set);
//! - a **weighted pair** (two record sets with `Weight`): a failover moves all the weight to the standby
//!   (the total is kept), by UPSERT of both sets;
//! - a **simple record**: a failover UPSERTs the standby value configured for it.
//!
//! A failback restores exactly the record sets a recorded failover replaced (the `before` of the last
//! acted failover in the ledger's audit trail of the record), and only while the record still looks
//! the way that failover left it: the ledger is the memory of what "home" is, and a record changed by
//! hand since is refused rather than guessed at.
//!
//! Triggers: a CloudWatch alarm on a Route 53 health check (`HealthCheckId` dimension; `ALARM` on the
//! active side's check fails over, `OK` on the home side's check fails back once the failover is older
//! than `SELFHEAL_DNS_FAILBACK_AFTER_SECONDS`), a schedule (sweeps pending failbacks with the same
//! hysteresis), and manual invocations (`action: failover|failback`, `target: <record name>`,
//! `params.zone`, `params.type`). Other functions call [`DnsFailover::flip`] directly.
//!
//! Guards, in the spirit of Route 53 ARC safety rules:
//! - opt-in: the record must be listed in `SELFHEAL_DNS_RECORDS` **and** its hosted zone or one of its
//!   health checks must carry the opt-in tag (`selfheal:enabled=true`);
//! - never move traffic to a side whose health check is failing; if both sides fail, change nothing
//!   (fail open) and page a human (critical notification);
//! - an alarm-triggered failover re-checks the primary's health check and stands down if it reports
//!   healthy again;
//! - anti-flap: the ledger cooldown on the record (`SELFHEAL_COOLDOWN_SECONDS`) spans failover and
//!   failback, and automatic failback waits `SELFHEAL_DNS_FAILBACK_AFTER_SECONDS` after a failover;
//! - dry-run reads everything and reports the exact change batch it would submit (`changeBatch`);
//! - idempotent: the ledger claim per event, plus "already failed over" / "nothing to fail back" checks
//!   against the record's real state.
//!
//! Health of a check, as relied on: `GetHealthCheck` (for `Disabled` and `Inverted`) and
//! `GetHealthCheckStatus` (the checkers' observations). A check is healthy when more than 18% of its
//! checkers report `Success` (Route 53's own rule), a disabled check is healthy, and `Inverted` flips the
//! result. A check with no observations is unknown and treated as not healthy for the side that would
//! gain traffic. (moto always reports `Success`, so tests make a side fail by inverting its check, which
//! is also how operators force a Route 53 failover by hand.) Calculated and CloudWatch-metric checks
//! have no checker observations and are therefore refused as standbys.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet,
    ResourceRecordSetFailover, RrType, TagResourceType,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{CommonConfig, Env};
use crate::context::Ctx;
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::{Error, Result};
use crate::guardrails::{effective_dry_run, is_opted_in, ActionReport, ActionRequest};
use crate::ledger::AuditRecord;
use crate::trigger::{Alarm, AlarmState, Manual, Trigger, TriggerKind};

/// The function's name in envelopes and the ledger.
pub const FUNCTION: &str = "dns-failover";
/// The envelope target kind of a managed record.
pub const TARGET_KIND: &str = "route53-record";
/// Route 53 considers an endpoint healthy when more than this share (percent) of checkers say so.
const HEALTHY_PERCENT: usize = 18;

// ---------------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------------

/// One managed record: `zone/name[/TYPE][=standby[|standby...]]` in `SELFHEAL_DNS_RECORDS`.
///
/// `zone` is a hosted zone name (ends with `.`) or a hosted zone id; `TYPE` defaults to `A`; the
/// standby values are only used for simple (non-routing-policy) records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRef {
    pub zone: String,
    pub name: String,
    pub rtype: String,
    #[serde(default)]
    pub standby: Vec<String>,
}

impl RecordRef {
    /// A record reference with no standby values.
    pub fn new(zone: &str, name: &str, rtype: &str) -> Self {
        RecordRef {
            zone: zone.trim().to_string(),
            name: normalise_name(name),
            rtype: rtype.to_uppercase(),
            standby: vec![],
        }
    }

    /// Parses one `SELFHEAL_DNS_RECORDS` entry.
    pub fn parse(entry: &str) -> std::result::Result<Self, String> {
        let entry = entry.trim();
        let (spec, standby) = match entry.split_once('=') {
            Some((s, v)) => (s, v.split('|').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect()),
            None => (entry, vec![]),
        };
        let parts: Vec<&str> = spec.split('/').map(str::trim).collect();
        let (zone, name, rtype) = match parts.as_slice() {
            [z, n] => (*z, *n, "A"),
            [z, n, t] => (*z, *n, *t),
            _ => return Err(format!("entry {entry:?} must be zone/name[/TYPE][=standby|...]")),
        };
        if zone.is_empty() || name.is_empty() || rtype.is_empty() {
            return Err(format!("entry {entry:?} has an empty zone, name or type"));
        }
        let r = RecordRef { standby, ..RecordRef::new(zone, name, rtype) };
        let zone_name = normalise_name(zone);
        if zone.ends_with('.') && !(r.name == zone_name || r.name.ends_with(&format!(".{zone_name}"))) {
            return Err(format!("entry {entry:?}: {} is not inside zone {zone_name}", r.name));
        }
        Ok(r)
    }

    /// `name type` for messages.
    pub fn label(&self) -> String {
        format!("{} {} in zone {}", self.name, self.rtype, self.zone)
    }
}

/// Lower-case with a trailing dot, as Route 53 lists names.
pub fn normalise_name(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    if n.ends_with('.') {
        n
    } else {
        format!("{n}.")
    }
}

/// dns-failover's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    /// `SELFHEAL_DNS_RECORDS`: the managed records (comma-separated entries, see [`RecordRef::parse`]).
    pub records: Vec<RecordRef>,
    /// `SELFHEAL_DNS_FAILBACK_AFTER_SECONDS` (default 1800): automatic failback waits this long after a
    /// failover.
    pub failback_after: Duration,
    /// `SELFHEAL_DNS_AUTO_FAILBACK` (default true): fail back on an OK alarm or a schedule sweep.
    pub auto_failback: bool,
    /// `SELFHEAL_DNS_INSYNC_TIMEOUT_SECONDS` (default 120): how long to wait for `GetChange` INSYNC.
    pub insync_timeout: Duration,
    /// `SELFHEAL_DNS_INSYNC_POLL_SECONDS` (default 5).
    pub insync_poll: Duration,
}

impl DnsConfig {
    /// Reads the settings, recording every problem in `env`.
    pub fn read(env: &mut Env) -> Self {
        let raw = env.required("SELFHEAL_DNS_RECORDS");
        let mut records = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match RecordRef::parse(entry) {
                Ok(r) => records.push(r),
                Err(p) => env.problem("SELFHEAL_DNS_RECORDS", p),
            }
        }
        if records.is_empty() && !raw.is_empty() {
            env.problem("SELFHEAL_DNS_RECORDS", "lists no record");
        }
        DnsConfig {
            records,
            failback_after: env.seconds("SELFHEAL_DNS_FAILBACK_AFTER_SECONDS", 1800, 0, 7 * 86_400),
            auto_failback: env.bool("SELFHEAL_DNS_AUTO_FAILBACK", true),
            insync_timeout: env.seconds("SELFHEAL_DNS_INSYNC_TIMEOUT_SECONDS", 120, 1, 900),
            insync_poll: env.seconds("SELFHEAL_DNS_INSYNC_POLL_SECONDS", 5, 1, 60),
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Decisions (pure)
// ---------------------------------------------------------------------------------------------------

/// Which way traffic moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the primary (home) target to the standby.
    Failover,
    /// Back to where a recorded failover moved traffic from.
    Failback,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Failover => "failover",
            Direction::Failback => "failback",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "failover" => Some(Direction::Failover),
            "failback" => Some(Direction::Failback),
            _ => None,
        }
    }
}

/// An alias target of a record set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alias {
    pub hosted_zone_id: String,
    pub dns_name: String,
    pub evaluate_target_health: bool,
}

/// One Route 53 record set, as far as this function manages it (serialised into envelopes as the
/// before/after values, and read back from the ledger for failback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordSet {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<Alias>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_id: Option<String>,
}

impl RecordSet {
    /// Whether this set currently receives traffic (the PRIMARY of a pair, a weighted set with weight,
    /// any simple record).
    pub fn is_active(&self) -> bool {
        match (&self.failover, self.weight) {
            (Some(f), _) => f == "PRIMARY",
            (None, Some(w)) => w > 0,
            (None, None) => true,
        }
    }

    /// A short description of the target: set id, alias or values.
    pub fn describe(&self) -> String {
        let target = match &self.alias {
            Some(a) => format!("alias {}", a.dns_name),
            None => self.values.join(","),
        };
        match &self.set_identifier {
            Some(id) => format!("{id} ({target})"),
            None => target,
        }
    }
}

/// How a managed record routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    FailoverPair,
    WeightedPair,
    Simple,
}

/// Recognises the routing of a record's sets.
pub fn classify(sets: &[RecordSet]) -> std::result::Result<Routing, String> {
    match sets {
        [] => Err("the record has no record sets".into()),
        [one] if one.set_identifier.is_none() => Ok(Routing::Simple),
        [a, b] if a.failover.is_some() && b.failover.is_some() => {
            let mut roles = [a.failover.as_deref(), b.failover.as_deref()];
            roles.sort();
            if roles == [Some("PRIMARY"), Some("SECONDARY")] {
                Ok(Routing::FailoverPair)
            } else {
                Err(format!("a failover pair needs one PRIMARY and one SECONDARY, found {roles:?}"))
            }
        }
        [a, b] if a.weight.is_some() && b.weight.is_some() => Ok(Routing::WeightedPair),
        _ => Err(format!(
            "unsupported routing: {} record set(s); managed shapes are a failover pair, a weighted pair or one \
             simple record",
            sets.len()
        )),
    }
}

/// What a failover would make of the record.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// The record sets to converge to.
    Change(Vec<RecordSet>),
    /// Nothing to do, and why.
    Noop(String),
}

/// Plans a failover: away from the active side (or from the side whose health check `failing_hc` is).
pub fn plan_failover(
    current: &[RecordSet],
    failing_hc: Option<&str>,
    standby: &[String],
) -> std::result::Result<Plan, String> {
    let routing = classify(current)?;
    let mut desired = current.to_vec();
    match routing {
        Routing::FailoverPair => {
            let primary = current.iter().position(|s| s.failover.as_deref() == Some("PRIMARY")).unwrap_or(0);
            let secondary = 1 - primary;
            if let Some(hc) = failing_hc {
                if current[primary].health_check_id.as_deref() != Some(hc) {
                    return Ok(Plan::Noop(format!(
                        "health check {hc} is not the PRIMARY's ({}); traffic is already away from it",
                        current[primary].describe()
                    )));
                }
            }
            desired[primary].failover = Some("SECONDARY".into());
            desired[secondary].failover = Some("PRIMARY".into());
        }
        Routing::WeightedPair => {
            let from = match failing_hc {
                Some(hc) => current
                    .iter()
                    .position(|s| s.health_check_id.as_deref() == Some(hc))
                    .ok_or_else(|| format!("no weighted set uses health check {hc}"))?,
                None => {
                    let (w0, w1) = (current[0].weight.unwrap_or(0), current[1].weight.unwrap_or(0));
                    if w0 == w1 {
                        return Err(format!("ambiguous: both weighted sets have weight {w0}; name the failing side"));
                    }
                    if w0 > w1 {
                        0
                    } else {
                        1
                    }
                }
            };
            let to = 1 - from;
            let (wf, wt) = (current[from].weight.unwrap_or(0), current[to].weight.unwrap_or(0));
            if wf == 0 {
                return Ok(Plan::Noop(format!("{} already has weight 0", current[from].describe())));
            }
            desired[from].weight = Some(0);
            desired[to].weight = Some(wf + wt);
        }
        Routing::Simple => {
            if standby.is_empty() {
                return Err("a simple record needs standby values (SELFHEAL_DNS_RECORDS entry =value|...)".into());
            }
            let mut have = current[0].values.clone();
            have.sort();
            let mut want = standby.to_vec();
            want.sort();
            if current[0].alias.is_none() && have == want {
                return Ok(Plan::Noop(format!("{} already points at the standby", current[0].name)));
            }
            desired[0].values = standby.to_vec();
            desired[0].alias = None;
            if desired[0].ttl.is_none() {
                desired[0].ttl = Some(60);
            }
        }
    }
    Ok(Plan::Change(desired))
}

fn identity(s: &RecordSet) -> (String, String, Option<String>) {
    (s.name.clone(), s.rtype.clone(), s.set_identifier.clone())
}

fn canonical(sets: &[RecordSet]) -> Vec<RecordSet> {
    let mut v: Vec<RecordSet> = sets
        .iter()
        .cloned()
        .map(|mut s| {
            s.name = normalise_name(&s.name);
            s.values.sort();
            s
        })
        .collect();
    v.sort_by_key(identity);
    v
}

/// Whether two lists hold the same record sets, in any order.
pub fn same_sets(a: &[RecordSet], b: &[RecordSet]) -> bool {
    canonical(a) == canonical(b)
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    /// `DELETE`, `CREATE` or `UPSERT`.
    pub action: String,
    pub record_set: RecordSet,
}

/// The change batch that turns `current` into `desired`: a set whose failover role changes is DELETEd
/// and CREATEd (Route 53 rejects an UPSERT that swaps roles), anything else that differs is UPSERTed.
/// DELETEs come first.
pub fn change_batch(current: &[RecordSet], desired: &[RecordSet]) -> Vec<PlannedChange> {
    let mut deletes = Vec::new();
    let mut writes = Vec::new();
    for want in desired {
        let have = current.iter().find(|c| identity(c) == identity(want));
        match have {
            Some(h) if same_sets(std::slice::from_ref(h), std::slice::from_ref(want)) => {}
            Some(h) if h.failover != want.failover => {
                deletes.push(PlannedChange { action: "DELETE".into(), record_set: h.clone() });
                writes.push(PlannedChange { action: "CREATE".into(), record_set: want.clone() });
            }
            Some(_) => writes.push(PlannedChange { action: "UPSERT".into(), record_set: want.clone() }),
            None => writes.push(PlannedChange { action: "CREATE".into(), record_set: want.clone() }),
        }
    }
    for have in current {
        if !desired.iter().any(|d| identity(d) == identity(have)) {
            deletes.push(PlannedChange { action: "DELETE".into(), record_set: have.clone() });
        }
    }
    deletes.extend(writes);
    deletes
}

/// The sets that lose traffic and the sets that gain it going from `current` to `desired`.
pub fn traffic_shift(current: &[RecordSet], desired: &[RecordSet]) -> (Vec<RecordSet>, Vec<RecordSet>) {
    let mut losing = Vec::new();
    let mut gaining = Vec::new();
    for want in desired {
        let have = current.iter().find(|c| identity(c) == identity(want));
        let (was, now) = (have.map(weight_of).unwrap_or(0), weight_of(want));
        if now > was {
            gaining.push(want.clone());
        } else if now < was {
            if let Some(h) = have {
                losing.push(h.clone());
            }
        } else if want.set_identifier.is_none()
            && have.is_some_and(|h| !same_sets(std::slice::from_ref(h), std::slice::from_ref(want)))
        {
            // A simple record changing its value: the old value loses, the new one gains.
            if let Some(h) = have {
                losing.push(h.clone());
            }
            gaining.push(want.clone());
        }
    }
    (losing, gaining)
}

/// The share of traffic a set gets, for comparing before and after (failover roles count as 0/1).
fn weight_of(s: &RecordSet) -> i64 {
    match (&s.failover, s.weight) {
        (Some(f), _) => i64::from(f == "PRIMARY"),
        (None, Some(w)) => w,
        (None, None) => 1,
    }
}

/// What the health of one health check was found to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReading {
    pub health_check_id: String,
    /// `Some(true)` healthy, `Some(false)` failing, `None` unknown (no observations).
    pub healthy: Option<bool>,
    pub inverted: bool,
    pub disabled: bool,
    pub checkers: usize,
    pub checkers_ok: usize,
}

/// Route 53's view of a check: >18% of checkers OK, disabled counts as healthy, `Inverted` flips it.
pub fn effective_health(checkers_ok: usize, checkers: usize, inverted: bool, disabled: bool) -> Option<bool> {
    let raw = if disabled {
        Some(true)
    } else if checkers == 0 {
        None
    } else {
        Some(checkers_ok * 100 > checkers * HEALTHY_PERCENT)
    };
    raw.map(|h| h != inverted)
}

/// A flip found in the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedFlip {
    pub direction: Direction,
    pub at: chrono::DateTime<chrono::Utc>,
    pub before: Vec<RecordSet>,
    pub after: Vec<RecordSet>,
    pub event_id: String,
}

/// The last live flip that acted, from a record's audit trail (oldest first).
pub fn last_flip(trail: &[AuditRecord]) -> Option<RecordedFlip> {
    trail.iter().rev().find_map(|r| {
        let e = &r.envelope;
        if e.outcome != Outcome::Acted || e.dry_run {
            return None;
        }
        let direction = Direction::parse(&e.action)?;
        let before: Vec<RecordSet> = serde_json::from_value(e.details.get("before")?.clone()).ok()?;
        let after: Vec<RecordSet> = serde_json::from_value(e.details.get("after")?.clone()).ok()?;
        let at = chrono::DateTime::parse_from_rfc3339(&e.time).ok()?.with_timezone(&chrono::Utc);
        Some(RecordedFlip { direction, at, before, after, event_id: e.event_id.clone() })
    })
}

// ---------------------------------------------------------------------------------------------------
// Route 53 (AWS layer)
// ---------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------
// Handler
// ---------------------------------------------------------------------------------------------------

/// Why a flip is being considered, beyond its direction.
#[derive(Debug, Clone, Default)]
struct FlipOptions {
    /// The health check whose alarm started this.
    health_check: Option<String>,
    /// Stand down if the losing side's health check reports healthy (alarm-triggered failover).
    recheck_primary: bool,
    /// Fail back only after `failback_after` (automatic failback).
    hysteresis: bool,
    /// Free-text why.
    reason: Option<String>,
}

/// The dns-failover handler.
pub struct DnsFailover {
    ctx: Ctx,
    cfg: DnsConfig,
}

impl DnsFailover {
    pub fn new(ctx: Ctx, cfg: DnsConfig) -> Self {
        DnsFailover { ctx, cfg }
    }

    /// Cold start: reads and validates every setting, loads AWS configuration.
    pub async fn from_env() -> Result<Self> {
        let mut env = Env::from_process();
        let common = CommonConfig::read(&mut env, FUNCTION);
        let cfg = DnsConfig::read(&mut env);
        env.finish()?;
        let aws = crate::clients::Aws::load(&common.aws_timeouts).await;
        Ok(DnsFailover::new(Ctx::new(common, aws), cfg))
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    pub fn config(&self) -> &DnsConfig {
        &self.cfg
    }

    /// Lambda entry: parse, decide, act, record; errors when any action failed.
    pub async fn handle(&self, payload: &Value) -> Result<Value> {
        crate::lambda::handle_each(FUNCTION, payload, |t| async move { self.handle_trigger(&t).await }).await
    }

    /// Handles one trigger (the drill calls this directly).
    pub async fn handle_trigger(&self, t: &Trigger) -> Result<Vec<Envelope>> {
        match &t.kind {
            TriggerKind::Alarm(a) => self.on_alarm(t, a).await,
            TriggerKind::Manual(m) => Ok(vec![self.on_manual(t, m).await?]),
            TriggerKind::Schedule { .. } => self.sweep_failbacks(t).await,
            other => Err(Error::UnsupportedTrigger { function: FUNCTION, trigger: other.name().to_string() }),
        }
    }

    /// Flips `record` in `direction` (for db-failover and the drill): the same guards as any trigger,
    /// without the alarm re-check of the primary and without failback hysteresis.
    pub async fn flip(
        &self,
        record: &RecordRef,
        direction: Direction,
        trigger: &Trigger,
        dry_run: bool,
    ) -> Result<Envelope> {
        let dry_run = effective_dry_run(self.ctx.config.dry_run, Some(dry_run));
        self.run_flip(record, direction, trigger, dry_run, FlipOptions::default()).await
    }

    async fn on_alarm(&self, t: &Trigger, a: &Alarm) -> Result<Vec<Envelope>> {
        let Some(hc) = a.dimension("HealthCheckId") else {
            return Err(Error::UnsupportedTrigger {
                function: FUNCTION,
                trigger: format!("alarm {} without a HealthCheckId dimension", a.name),
            });
        };
        let r53 = self.ctx.aws.route53();
        let mut found = None;
        for r in &self.cfg.records {
            let zone_id = resolve_zone(&r53, &r.zone).await?;
            let sets = list_record(&r53, &zone_id, &r.name, &r.rtype).await?;
            if let Some(s) = sets.iter().find(|s| s.health_check_id.as_deref() == Some(hc)) {
                found = Some((r.clone(), s.clone()));
                break;
            }
        }
        let dry_run = self.ctx.config.dry_run;
        let Some((record, set)) = found else {
            let env = Envelope::new(
                FUNCTION,
                "failover",
                Target::new("route53-health-check", hc),
                Outcome::Skipped,
                format!("alarm {}: no record in SELFHEAL_DNS_RECORDS uses health check {hc}", a.name),
            )
            .event(&t.event_id, t.kind.name())
            .dry_run(dry_run);
            return Ok(vec![self.ctx.record(env).await?]);
        };
        let opts = |recheck, hysteresis| FlipOptions {
            health_check: Some(hc.to_string()),
            recheck_primary: recheck,
            hysteresis,
            reason: Some(format!("alarm {} is {:?}: {}", a.name, a.state, a.reason)),
        };
        let env = match a.state {
            AlarmState::Alarm if set.is_active() => {
                self.run_flip(&record, Direction::Failover, t, dry_run, opts(true, false)).await?
            }
            AlarmState::Alarm => {
                let req = self.request(&record, "-", Direction::Failover, t, dry_run, "");
                let env = self
                    .ctx
                    .envelope(
                        &req,
                        Outcome::Skipped,
                        format!(
                        "health check {hc} of {} is failing but it takes no traffic now: nothing to move, the standby \
                         capacity is lost",
                        set.describe()
                    ),
                    )
                    .severity(Severity::Warning);
                self.ctx.record(env).await?
            }
            AlarmState::Ok if self.cfg.auto_failback => {
                self.run_flip(&record, Direction::Failback, t, dry_run, opts(false, true)).await?
            }
            AlarmState::Ok | AlarmState::InsufficientData => {
                let req = self.request(&record, "-", Direction::Failback, t, dry_run, "");
                let why = if a.state == AlarmState::Ok {
                    "automatic failback is off (SELFHEAL_DNS_AUTO_FAILBACK=false)".to_string()
                } else {
                    format!("alarm {} has insufficient data: no decision", a.name)
                };
                self.ctx.record(self.ctx.envelope(&req, Outcome::Skipped, why)).await?
            }
        };
        Ok(vec![env])
    }

    async fn on_manual(&self, t: &Trigger, m: &Manual) -> Result<Envelope> {
        let direction = Direction::parse(&m.action).ok_or_else(|| {
            Error::malformed("manual", format!("dns-failover actions are failover and failback, got {:?}", m.action))
        })?;
        let name = m
            .target
            .as_deref()
            .map(normalise_name)
            .ok_or_else(|| Error::malformed("manual", "target (the record name) is required"))?;
        let zone = m.params.get("zone").and_then(Value::as_str);
        let rtype = m.params.get("type").and_then(Value::as_str).map(str::to_ascii_uppercase);
        let matches: Vec<&RecordRef> = self
            .cfg
            .records
            .iter()
            .filter(|r| r.name == name)
            .filter(|r| zone.is_none_or(|z| r.zone == z || normalise_name(&r.zone) == normalise_name(z)))
            .filter(|r| rtype.as_deref().is_none_or(|ty| r.rtype == ty))
            .collect();
        let dry_run = effective_dry_run(self.ctx.config.dry_run, m.dry_run);
        let record = match matches.as_slice() {
            [one] => (*one).clone(),
            [] => {
                let env = Envelope::new(
                    FUNCTION,
                    direction.as_str(),
                    Target::new(TARGET_KIND, &name),
                    Outcome::Refused,
                    format!("{name} is not a managed record (not in SELFHEAL_DNS_RECORDS): not opted in"),
                )
                .event(&t.event_id, t.kind.name())
                .dry_run(dry_run);
                return self.ctx.record(env).await;
            }
            many => {
                return Err(Error::malformed(
                    "manual",
                    format!(
                        "{name} matches {} managed records ({}); give params.zone and params.type",
                        many.len(),
                        many.iter().map(|r| r.label()).collect::<Vec<_>>().join("; ")
                    ),
                ))
            }
        };
        let opts = FlipOptions { reason: m.reason.clone(), ..FlipOptions::default() };
        self.run_flip(&record, direction, t, dry_run, opts).await
    }

    /// A schedule tick: fails back every record whose failover is older than the hysteresis and whose
    /// home side is healthy. Records with nothing to fail back produce no envelope.
    async fn sweep_failbacks(&self, t: &Trigger) -> Result<Vec<Envelope>> {
        let mut out = Vec::new();
        if !self.cfg.auto_failback {
            return Ok(out);
        }
        let r53 = self.ctx.aws.route53();
        for r in &self.cfg.records {
            let zone_id = resolve_zone(&r53, &r.zone).await?;
            let target = Self::target_for(&zone_id, r);
            let trail = self.ctx.ledger.audit_trail(&target.id).await?;
            let pending = last_flip(&trail).is_some_and(|f| f.direction == Direction::Failover);
            if pending {
                let opts = FlipOptions {
                    hysteresis: true,
                    reason: Some("scheduled failback sweep".into()),
                    ..Default::default()
                };
                out.push(self.run_flip(r, Direction::Failback, t, self.ctx.config.dry_run, opts).await?);
            }
        }
        Ok(out)
    }

    fn target_for(zone_id: &str, r: &RecordRef) -> Target {
        Target::new(TARGET_KIND, format!("{zone_id}/{}/{}", r.name, r.rtype)).in_group(format!("route53:{zone_id}"))
    }

    fn request(
        &self,
        r: &RecordRef,
        zone_id: &str,
        d: Direction,
        t: &Trigger,
        dry_run: bool,
        reason: &str,
    ) -> ActionRequest {
        ActionRequest {
            action: d.as_str().to_string(),
            target: Self::target_for(zone_id, r),
            event_id: t.event_id.clone(),
            trigger: t.kind.name().to_string(),
            dry_run,
            reason: reason.to_string(),
        }
    }

    async fn run_flip(
        &self,
        record: &RecordRef,
        direction: Direction,
        t: &Trigger,
        dry_run: bool,
        opts: FlipOptions,
    ) -> Result<Envelope> {
        let r53 = self.ctx.aws.route53();
        let zone_id = resolve_zone(&r53, &record.zone).await?;
        let current = list_record(&r53, &zone_id, &record.name, &record.rtype).await?;
        if current.is_empty() {
            return Err(Error::NotFound {
                kind: "route53 record",
                id: format!("{} {} in hosted zone {zone_id}", record.name, record.rtype),
            });
        }
        let reason =
            opts.reason.clone().unwrap_or_else(|| format!("{} requested by {}", direction.as_str(), t.kind.name()));
        let req = self.request(record, &zone_id, direction, t, dry_run, &reason);
        tracing::info!(record = %record.name, zone = %zone_id, direction = direction.as_str(), dry_run, event = %t.event_id, "dns flip considered");

        // Opt-in: the zone's tags, or any of the record's health checks' tags.
        let mut opted_in = is_opted_in(
            tags(&r53, TagResourceType::Hostedzone, &zone_id).await?.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &self.ctx.config,
        );
        for hc in current.iter().filter_map(|s| s.health_check_id.as_deref()) {
            if opted_in {
                break;
            }
            let t = tags(&r53, TagResourceType::Healthcheck, hc).await?;
            opted_in = is_opted_in(t.iter().map(|(k, v)| (k.as_str(), v.as_str())), &self.ctx.config);
        }
        if !opted_in {
            let env = self
                .ctx
                .envelope(
                    &req,
                    Outcome::Refused,
                    format!(
                        "not opted in: neither hosted zone {zone_id} nor a health check of {} carries {}={}",
                        record.name, self.ctx.config.opt_in_tag, self.ctx.config.opt_in_value
                    ),
                )
                .severity(Severity::Warning)
                .detail("current", &current);
            return self.ctx.record(env).await;
        }

        let target_id = req.target.id.clone();
        let work = async {
            // Re-read under the guardrails' lock: the record as it is now.
            let current = list_record(&r53, &zone_id, &record.name, &record.rtype).await?;
            let trail = self.ctx.ledger.audit_trail(&target_id).await?;
            let last = last_flip(&trail);
            let desired = match self.desired(direction, &current, last.as_ref(), &opts) {
                Ok(Plan::Change(d)) => d,
                Ok(Plan::Noop(why)) => return Ok(ActionReport::skipped(why).detail("current", &current)),
                Err(report) => return Ok(report.detail("current", &current)),
            };
            let (losing, gaining) = traffic_shift(&current, &desired);
            let mut readings = BTreeMap::new();
            for s in losing.iter().chain(gaining.iter()) {
                if let Some(hc) = &s.health_check_id {
                    if !readings.contains_key(hc) {
                        readings.insert(hc.clone(), health(&r53, hc).await?);
                    }
                }
            }
            let healthy = |sets: &[RecordSet]| -> Vec<(String, Option<bool>)> {
                sets.iter()
                    .filter_map(|s| {
                        s.health_check_id.as_ref().map(|hc| (s.describe(), readings.get(hc).and_then(|r| r.healthy)))
                    })
                    .collect()
            };
            let (losing_h, gaining_h) = (healthy(&losing), healthy(&gaining));
            let losing_failing = losing_h.iter().any(|(_, h)| *h != Some(true));
            let gaining_bad: Vec<String> = gaining_h
                .iter()
                .filter(|(_, h)| *h != Some(true))
                .map(|(d, h)| format!("{d}: {}", health_word(*h)))
                .collect();
            let health_detail: Vec<&HealthReading> = readings.values().collect();
            if !gaining_bad.is_empty() {
                let report = if losing_failing {
                    ActionReport::refused(format!(
                        "both sides are unhealthy ({}; and the side losing traffic): changing nothing (fail open); a human \
                         must decide",
                        gaining_bad.join(", ")
                    ))
                    .severity(Severity::Critical)
                } else {
                    ActionReport::refused(format!(
                        "will not move traffic to an unhealthy target: {}",
                        gaining_bad.join(", ")
                    ))
                    .severity(if opts.recheck_primary {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    })
                };
                return Ok(report.detail("current", &current).detail("health", &health_detail));
            }
            if opts.recheck_primary && !losing_h.is_empty() && !losing_failing {
                return Ok(ActionReport::skipped(format!(
                    "the primary's health check reports healthy again ({}): not flipping",
                    losing_h.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>().join(", ")
                ))
                .detail("current", &current)
                .detail("health", &health_detail));
            }
            let batch = change_batch(&current, &desired);
            let summary = format!(
                "{} {}: {} -> {}",
                direction.as_str(),
                record.name,
                losing.iter().map(RecordSet::describe).collect::<Vec<_>>().join(", "),
                gaining.iter().map(RecordSet::describe).collect::<Vec<_>>().join(", ")
            );
            if dry_run {
                return Ok(ActionReport::would(format!("would {summary} ({} changes)", batch.len()))
                    .detail("before", &current)
                    .detail("after", &desired)
                    .detail("changeBatch", &batch)
                    .detail("hostedZoneId", &zone_id)
                    .detail("health", &health_detail));
            }
            let change_id = submit(&r53, &zone_id, &batch, &format!("selfheal {summary} ({})", t.event_id)).await?;
            tracing::info!(record = %record.name, zone = %zone_id, change_id = %change_id, "dns change submitted");
            let insync = wait_insync(&r53, &change_id, self.cfg.insync_timeout, self.cfg.insync_poll).await?;
            let report = if insync {
                ActionReport::acted(format!("{summary}; change {change_id} is INSYNC"))
            } else {
                ActionReport::acted(format!(
                    "{summary}; change {change_id} submitted but not INSYNC within {}s",
                    self.cfg.insync_timeout.as_secs()
                ))
                .severity(Severity::Warning)
            };
            Ok(report
                .detail("before", &current)
                .detail("after", &desired)
                .detail("changeBatch", &batch)
                .detail("changeId", &change_id)
                .detail("insync", insync)
                .detail("hostedZoneId", &zone_id)
                .detail("health", &health_detail))
        };
        self.ctx.execute(req, work).await
    }

    /// What the record should become, or a report of why not.
    fn desired(
        &self,
        direction: Direction,
        current: &[RecordSet],
        last: Option<&RecordedFlip>,
        opts: &FlipOptions,
    ) -> std::result::Result<Plan, ActionReport> {
        match direction {
            Direction::Failover => {
                if let Some(f) = last.filter(|f| f.direction == Direction::Failover) {
                    if same_sets(current, &f.after) {
                        return Ok(Plan::Noop(format!(
                            "already failed over at {} (event {})",
                            f.at.to_rfc3339(),
                            f.event_id
                        )));
                    }
                }
                let standby = self
                    .cfg
                    .records
                    .iter()
                    .find(|r| current.first().is_some_and(|c| c.name == r.name && c.rtype == r.rtype))
                    .map(|r| r.standby.clone())
                    .unwrap_or_default();
                plan_failover(current, opts.health_check.as_deref(), &standby)
                    .map_err(|why| ActionReport::refused(why).severity(Severity::Warning))
            }
            Direction::Failback => {
                let Some(f) = last.filter(|f| f.direction == Direction::Failover) else {
                    return Ok(Plan::Noop(
                        "nothing to fail back: no recorded failover of this record is pending".into(),
                    ));
                };
                if !same_sets(current, &f.after) {
                    return Err(ActionReport::refused(format!(
                        "the record changed since the failover at {} (by hand?): failing back would overwrite it; fail \
                         back by hand",
                        f.at.to_rfc3339()
                    ))
                    .severity(Severity::Warning)
                    .detail("expected", &f.after));
                }
                if let Some(hc) = &opts.health_check {
                    let (_, gaining) = traffic_shift(current, &f.before);
                    if !gaining.iter().any(|s| s.health_check_id.as_deref() == Some(hc)) {
                        return Ok(Plan::Noop(format!("health check {hc} is not the home side's: no failback")));
                    }
                }
                if opts.hysteresis {
                    let age = chrono::Utc::now().signed_duration_since(f.at).num_seconds().max(0) as u64;
                    if age < self.cfg.failback_after.as_secs() {
                        return Ok(Plan::Noop(format!(
                            "failed over only {age}s ago; automatic failback waits {}s \
                             (SELFHEAL_DNS_FAILBACK_AFTER_SECONDS) so it does not flap",
                            self.cfg.failback_after.as_secs()
                        )));
                    }
                }
                Ok(Plan::Change(f.before.clone()))
            }
        }
    }
}

fn health_word(h: Option<bool>) -> &'static str {
    match h {
        Some(true) => "healthy",
        Some(false) => "health check failing",
        None => "health unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(id: &str, failover: Option<&str>, weight: Option<i64>, value: &str, hc: Option<&str>) -> RecordSet {
        RecordSet {
            name: "app.example.com.".into(),
            rtype: "A".into(),
            set_identifier: Some(id.into()),
            failover: failover.map(str::to_string),
            weight,
            ttl: Some(60),
            values: vec![value.into()],
            alias: None,
            health_check_id: hc.map(str::to_string),
        }
    }

    fn pair() -> Vec<RecordSet> {
        vec![
            set("blue", Some("PRIMARY"), None, "10.0.0.1", Some("hc-blue")),
            set("green", Some("SECONDARY"), None, "10.0.0.2", Some("hc-green")),
        ]
    }

    #[test]
    fn entries_parse_and_bad_ones_are_named() {
        let r = RecordRef::parse("example.com./App.Example.com").unwrap();
        assert_eq!((r.zone.as_str(), r.name.as_str(), r.rtype.as_str()), ("example.com.", "app.example.com.", "A"));
        let r = RecordRef::parse("Z123/db.example.com./cname=standby.example.com.|x").unwrap();
        assert_eq!(r.rtype, "CNAME");
        assert_eq!(r.standby, vec!["standby.example.com.", "x"]);
        assert!(RecordRef::parse("example.com.").unwrap_err().contains("zone/name"));
        assert!(RecordRef::parse("example.com./app.other.org.").unwrap_err().contains("not inside zone"));

        let mut env =
            Env::from_map([("SELFHEAL_DNS_RECORDS".to_string(), "bad, ok.com./a.ok.com.".to_string())].into());
        let c = DnsConfig::read(&mut env);
        assert_eq!(c.records.len(), 1);
        let err = env.finish().unwrap_err().to_string();
        assert!(err.contains("SELFHEAL_DNS_RECORDS") && err.contains("\"bad\""), "{err}");
    }

    #[test]
    fn failover_pair_swaps_roles_with_delete_then_create() {
        let cur = pair();
        let Plan::Change(want) = plan_failover(&cur, Some("hc-blue"), &[]).unwrap() else { panic!() };
        assert_eq!(want[0].failover.as_deref(), Some("SECONDARY"));
        assert_eq!(want[1].failover.as_deref(), Some("PRIMARY"));
        let batch = change_batch(&cur, &want);
        let actions: Vec<&str> = batch.iter().map(|c| c.action.as_str()).collect();
        assert_eq!(actions, ["DELETE", "DELETE", "CREATE", "CREATE"]);
        let (losing, gaining) = traffic_shift(&cur, &want);
        assert_eq!(losing[0].set_identifier.as_deref(), Some("blue"));
        assert_eq!(gaining[0].set_identifier.as_deref(), Some("green"));
        // The alarm is on the standby's check: nothing to move.
        assert!(matches!(plan_failover(&cur, Some("hc-green"), &[]).unwrap(), Plan::Noop(_)));
        // Failback to the recorded before is the reverse batch.
        assert_eq!(change_batch(&want, &cur).len(), 4);
        assert!(change_batch(&cur, &cur).is_empty());
    }

    #[test]
    fn weighted_pair_moves_all_weight_and_keeps_the_total() {
        let cur = vec![
            set("w-blue", None, Some(90), "10.0.0.1", Some("a")),
            set("w-green", None, Some(10), "10.0.0.2", None),
        ];
        let Plan::Change(want) = plan_failover(&cur, None, &[]).unwrap() else { panic!() };
        assert_eq!((want[0].weight, want[1].weight), (Some(0), Some(100)));
        assert!(change_batch(&cur, &want).iter().all(|c| c.action == "UPSERT"));
        assert!(matches!(plan_failover(&want, Some("a"), &[]).unwrap(), Plan::Noop(_)));
        let tie = vec![set("x", None, Some(5), "1", None), set("y", None, Some(5), "2", None)];
        assert!(plan_failover(&tie, None, &[]).unwrap_err().contains("ambiguous"));
    }

    #[test]
    fn simple_record_needs_a_standby_and_is_upserted() {
        let mut s = set("x", None, None, "10.0.0.1", None);
        s.set_identifier = None;
        assert!(plan_failover(&[s.clone()], None, &[]).unwrap_err().contains("standby"));
        let Plan::Change(want) = plan_failover(&[s.clone()], None, &["10.0.0.9".into()]).unwrap() else { panic!() };
        assert_eq!(want[0].values, ["10.0.0.9"]);
        assert_eq!(change_batch(&[s.clone()], &want)[0].action, "UPSERT");
        assert!(matches!(plan_failover(&want, None, &["10.0.0.9".into()]).unwrap(), Plan::Noop(_)));
        let (l, g) = traffic_shift(&[s], &want);
        assert_eq!((l.len(), g.len()), (1, 1));
    }

    #[test]
    fn unsupported_shapes_are_named() {
        assert!(classify(&[]).is_err());
        let three = vec![pair()[0].clone(), pair()[1].clone(), pair()[1].clone()];
        assert!(classify(&three).unwrap_err().contains("3 record set"));
        let two_primaries = vec![pair()[0].clone(), pair()[0].clone()];
        assert!(classify(&two_primaries).unwrap_err().contains("PRIMARY"));
    }

    #[test]
    fn health_follows_route53_rules() {
        assert_eq!(effective_health(3, 16, false, false), Some(true)); // 18.75% > 18%
        assert_eq!(effective_health(2, 16, false, false), Some(false));
        assert_eq!(effective_health(1, 1, true, false), Some(false));
        assert_eq!(effective_health(0, 1, true, false), Some(true));
        assert_eq!(effective_health(0, 0, false, true), Some(true));
        assert_eq!(effective_health(0, 0, false, false), None);
    }

    #[test]
    fn last_flip_reads_the_latest_acted_live_flip() {
        let before = pair();
        let Plan::Change(after) = plan_failover(&before, None, &[]).unwrap() else { panic!() };
        let rec = |outcome, dry, action: &str| {
            let e = Envelope::new(FUNCTION, action, Target::new(TARGET_KIND, "t"), outcome, "x")
                .dry_run(dry)
                .detail("before", &before)
                .detail("after", &after);
            AuditRecord {
                target: "t".into(),
                time: e.time.clone(),
                function: FUNCTION.into(),
                action: action.into(),
                outcome: outcome.as_str().into(),
                envelope: e,
            }
        };
        assert!(last_flip(&[]).is_none());
        let trail = vec![
            rec(Outcome::Acted, false, "failover"),
            rec(Outcome::DryRun, true, "failback"),
            rec(Outcome::Refused, false, "failback"),
        ];
        let f = last_flip(&trail).unwrap();
        assert_eq!(f.direction, Direction::Failover);
        assert!(same_sets(&f.before, &before));
        assert!(same_sets(&f.after, &after));
    }
}
