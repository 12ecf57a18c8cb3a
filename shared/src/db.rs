//! db-failover: gets a database writer back after its primary fails.
//!
//! Triggers: RDS DB instance/cluster events through EventBridge (categories `failure`, `availability`,
//! `failover`), CloudWatch alarms on a database (dimension `DBInstanceIdentifier` or
//! `DBClusterIdentifier`, by SNS or EventBridge), and manual invocations (`action: "failover"`, for
//! drills and planned failovers; `params.replica` names the replica to promote, `params.mode` forces
//! `promote` or `reboot`).
//!
//! What it does, by topology:
//! - **Aurora cluster**: `FailoverDBCluster` to the best reader: available, lowest promotion tier,
//!   preferring another AZ than the failed writer's.
//! - **Multi-AZ DB instance** (without read replicas, or `params.mode = "reboot"`): `RebootDBInstance`
//!   with `ForceFailover` (synchronous standby, no data loss).
//! - **Primary with read replicas** (same or another region): the best candidate is promoted: available,
//!   same engine, replica lag within `SELFHEAL_DB_MAX_LAG_SECONDS` (the RPO guard), preferred by the
//!   numeric tag `SELFHEAL_DB_PREFERRED_TAG` (lower first), then another AZ than the primary's, then the
//!   primary's region, then the lowest lag. It is promoted with `PromoteReadReplica`, tagged
//!   `selfheal:promoted-from=<primary>`, waited for (bounded by `SELFHEAL_DB_WAIT_SECONDS`), and then,
//!   when `SELFHEAL_DB_DNS_ZONE_ID` and `SELFHEAL_DB_DNS_RECORD` are set, the application's CNAME is
//!   repointed at the new writer's endpoint.
//!
//! Guards, in order: the primary (or cluster) must be opted in by tag; it must really be unavailable
//! on a fresh `DescribeDBInstances` (stale or flapping events do nothing) unless a manual invocation
//! sets `force`; the guardrails' claim, cooldown and rate limit ([`crate::guardrails`]); dry-run; and for
//! promotions ONE promotion per primary, ever: the ledger marker `promotion#<primary>` is taken
//! atomically before `PromoteReadReplica` (a second promotion would split the data), and a replica
//! already tagged as promoted from the primary also refuses. To re-arm a rebuilt primary, delete the
//! ledger item `once#promotion#<primary>`. A replica with unknown lag or lag over the RPO guard is
//! never promoted unless forced; with no candidate left nothing is promoted and a critical envelope
//! pages a human.
//!
//! Replica lag comes from a [`LagSource`]: [`CloudWatchLag`] reads `AWS/RDS ReplicaLag` (Maximum over
//! the last five minutes, dimension `DBInstanceIdentifier`) with `GetMetricData` in production;
//! [`StaticLag`] serves fixed values to the emulator tests and the drill.
//!
//! Testing: the decisions (status classification, plan, replica and reader choice, configuration) are
//! pure functions with unit tests here; [`CloudWatchLag`] is unit-tested with `aws-smithy-mocks`
//! (moto does not speak CloudWatch's current rpc-v2-cbor protocol); the handler is tested end to end
//! against moto in `tests/emulator/db.rs` with real-shaped events and [`StaticLag`]. Moto's
//! `PromoteReadReplica` leaves `ReadReplicaSourceDBInstanceIdentifier` set and answers `available` at
//! once, so the wait accepts an instance that reports `available` when the promotion call itself
//! already answered `available`; real RDS answers `modifying` and clears the source on completion.
//!
//! IAM: `rds:DescribeDBInstances`, `rds:DescribeDBClusters`, `rds:ListTagsForResource`,
//! `rds:PromoteReadReplica`, `rds:AddTagsToResource`, `rds:RebootDBInstance`, `rds:FailoverDBCluster`,
//! `cloudwatch:GetMetricData`, `route53:ListResourceRecordSets`, `route53:ChangeResourceRecordSets`,
//! `route53:GetChange`, plus the ledger's DynamoDB and the topic's SNS permissions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

use crate::clients::Aws;
use crate::config::{CommonConfig, Env};
use crate::context::Ctx;
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::{Error, Result};
use crate::guardrails::{effective_dry_run, is_opted_in, ActionReport, ActionRequest};
use crate::trigger::{AlarmState, RdsSource, Trigger, TriggerKind};

/// The function's name in envelopes and the ledger.
pub const FUNCTION: &str = "db-failover";
/// The decision name used before a plan is chosen (skips, opt-in refusals).
pub const ACTION_FAILOVER: &str = "failover";
/// Promotion of a read replica.
pub const ACTION_PROMOTE: &str = "promote-replica";
/// Multi-AZ reboot with forced failover.
pub const ACTION_REBOOT: &str = "reboot-failover";
/// Aurora `FailoverDBCluster`.
pub const ACTION_CLUSTER: &str = "failover-cluster";
/// The tag written on a promoted replica, naming the primary it was promoted from.
pub const PROMOTED_FROM_TAG: &str = "selfheal:promoted-from";
/// The tag written on a promoted replica, naming the event that promoted it.
pub const PROMOTED_BY_TAG: &str = "selfheal:promoted-by-event";
/// The rate-limit group every failover shares.
pub const RATE_GROUP: &str = "db-failover";

const RDS_EVENT_CATEGORIES: [&str; 3] = ["failure", "availability", "failover"];

// ---------------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------------

/// The application's database DNS record that follows the writer.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsRecord {
    pub zone_id: String,
    /// Fully qualified, with the trailing dot.
    pub name: String,
    pub ttl: i64,
}

/// db-failover's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DbConfig {
    /// `SELFHEAL_DB_MAX_LAG_SECONDS` (default 30): the RPO guard.
    pub max_lag_seconds: f64,
    /// `SELFHEAL_DB_DNS_ZONE_ID` + `SELFHEAL_DB_DNS_RECORD` (+ `SELFHEAL_DB_DNS_TTL`, default 60).
    pub dns: Option<DnsRecord>,
    /// `SELFHEAL_DB_WAIT_SECONDS` (default 600, at most 840): bound on waiting for the new writer.
    pub wait: Duration,
    /// `SELFHEAL_DB_POLL_SECONDS` (default 10): poll interval while waiting.
    pub poll: Duration,
    /// `SELFHEAL_DB_PREFERRED_TAG` (default `selfheal:promote-priority`): numeric, lower is preferred.
    pub preferred_tag: String,
}

impl DbConfig {
    /// Reads the settings, recording every problem in `env`.
    pub fn read(env: &mut Env) -> Self {
        let max_lag_seconds = env.number("SELFHEAL_DB_MAX_LAG_SECONDS", 30.0f64, 0.0, 86_400.0);
        let zone = env.optional("SELFHEAL_DB_DNS_ZONE_ID");
        let record = env.optional("SELFHEAL_DB_DNS_RECORD");
        let ttl = env.number("SELFHEAL_DB_DNS_TTL", 60i64, 0, 86_400);
        let dns = match (zone, record) {
            (Some(zone_id), Some(name)) => Some(DnsRecord { zone_id, name: fqdn(&name), ttl }),
            (None, None) => None,
            (Some(_), None) => {
                env.problem("SELFHEAL_DB_DNS_RECORD", "must be set when SELFHEAL_DB_DNS_ZONE_ID is set");
                None
            }
            (None, Some(_)) => {
                env.problem("SELFHEAL_DB_DNS_ZONE_ID", "must be set when SELFHEAL_DB_DNS_RECORD is set");
                None
            }
        };
        DbConfig {
            max_lag_seconds,
            dns,
            wait: env.seconds("SELFHEAL_DB_WAIT_SECONDS", 600, 0, 840),
            poll: env.seconds("SELFHEAL_DB_POLL_SECONDS", 10, 1, 300),
            preferred_tag: env.string("SELFHEAL_DB_PREFERRED_TAG", "selfheal:promote-priority"),
        }
    }
}

fn fqdn(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    if n.ends_with('.') {
        n
    } else {
        format!("{n}.")
    }
}

// ---------------------------------------------------------------------------------------------------
// Pure decisions
// ---------------------------------------------------------------------------------------------------

/// What the function knows about one DB instance (converted from the SDK type).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DbInstanceInfo {
    pub id: String,
    pub arn: Option<String>,
    /// The region the instance lives in, when it is not the function's own.
    pub region: Option<String>,
    pub status: String,
    pub engine: String,
    pub az: Option<String>,
    pub multi_az: bool,
    pub endpoint: Option<String>,
    pub replica_source: Option<String>,
    /// Read replicas: identifiers, or ARNs for replicas in other regions.
    pub replicas: Vec<String>,
    pub cluster: Option<String>,
    pub promotion_tier: Option<i32>,
    pub tags: BTreeMap<String, String>,
}

/// Whether an RDS status means the database cannot serve (so a failover is warranted).
pub fn is_unavailable(status: &str) -> bool {
    let s = status.to_ascii_lowercase();
    matches!(s.as_str(), "stopped" | "failed" | "storage-full" | "restore-error")
        || s.starts_with("inaccessible-")
        || s.starts_with("incompatible-")
}

/// How a failed primary instance gets a writer back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Multi-AZ: reboot with forced failover to the standby.
    RebootWithFailover,
    /// Promote one of the read replicas.
    PromoteReplica,
}

/// Chooses the plan for a primary instance; `Err` says why there is none. `mode` (manual
/// `params.mode`) may force `promote` or `reboot`.
pub fn choose_instance_plan(primary: &DbInstanceInfo, mode: Option<&str>) -> std::result::Result<Plan, String> {
    match mode {
        Some("promote") if !primary.replicas.is_empty() => return Ok(Plan::PromoteReplica),
        Some("promote") => return Err(format!("{} has no read replicas to promote", primary.id)),
        Some("reboot") if primary.multi_az => return Ok(Plan::RebootWithFailover),
        Some("reboot") => return Err(format!("{} is not Multi-AZ: a reboot cannot fail over", primary.id)),
        Some(other) => return Err(format!("unknown mode {other:?} (expected \"promote\" or \"reboot\")")),
        None => {}
    }
    // A Multi-AZ standby is synchronous (no data loss): prefer it unless the instance is in a state a
    // reboot cannot fix (stopped, out of storage), where only a replica helps.
    let reboot_can_help = !matches!(primary.status.as_str(), "stopped" | "storage-full");
    if primary.multi_az && (reboot_can_help || primary.replicas.is_empty()) {
        return Ok(Plan::RebootWithFailover);
    }
    if !primary.replicas.is_empty() {
        return Ok(Plan::PromoteReplica);
    }
    Err(format!("{} is neither Multi-AZ nor has read replicas: no failover path", primary.id))
}

/// A replica considered for promotion, with its lag.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub info: DbInstanceInfo,
    /// Seconds behind the primary; `None` when unknown.
    pub lag_seconds: Option<f64>,
}

/// Why a replica was not chosen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    pub replica: String,
    pub reason: String,
}

/// Parses the preferred-tag value: a number, lower preferred.
fn priority(info: &DbInstanceInfo, tag: &str) -> Option<i64> {
    info.tags.get(tag).and_then(|v| v.trim().parse::<i64>().ok())
}

/// Chooses the replica to promote. Eligible: available, same engine, lag known and within
/// `max_lag` (unless `force`). `requested` (manual `params.replica`) restricts the choice to one.
/// Preference: preferred-tag priority (lower first, untagged last), another AZ than the primary's,
/// the primary's region, lower lag, identifier.
pub fn choose_replica(
    primary: &DbInstanceInfo,
    candidates: &[Candidate],
    max_lag: f64,
    preferred_tag: &str,
    force: bool,
    requested: Option<&str>,
) -> (Option<Candidate>, Vec<Rejection>) {
    let mut rejected = Vec::new();
    let mut eligible: Vec<&Candidate> = Vec::new();
    for c in candidates {
        let reject = |reason: String| Rejection { replica: c.info.id.clone(), reason };
        if requested.is_some_and(|r| r != c.info.id) {
            rejected.push(reject("not the replica the invocation asked for".into()));
        } else if c.info.status != "available" {
            rejected.push(reject(format!("status is {}, not available", c.info.status)));
        } else if !c.info.engine.eq_ignore_ascii_case(&primary.engine) {
            rejected.push(reject(format!("engine {} differs from the primary's {}", c.info.engine, primary.engine)));
        } else {
            match c.lag_seconds {
                None if !force => rejected.push(reject("replica lag is unknown (RPO guard)".into())),
                Some(l) if l > max_lag && !force => {
                    rejected.push(reject(format!("replica lag {l}s exceeds the {max_lag}s RPO guard")))
                }
                _ => eligible.push(c),
            }
        }
    }
    let key = |c: &&Candidate| {
        let prio = priority(&c.info, preferred_tag).unwrap_or(i64::MAX);
        let same_az = c.info.az.is_some() && c.info.az == primary.az;
        let other_region = c.info.region.is_some() && c.info.region != primary.region;
        let lag_ms = c.lag_seconds.map(|l| (l * 1000.0) as i64).unwrap_or(i64::MAX);
        (prio, same_az, other_region, lag_ms, c.info.id.clone())
    };
    eligible.sort_by_key(key);
    (eligible.first().map(|c| (*c).clone()), rejected)
}

/// Whether a promoted instance has finished promoting. Real RDS answers the promotion with
/// `modifying` and clears the replica source when done; an emulator that answers `available` at once
/// (and keeps the source) is accepted when the promotion call itself said `available`.
pub fn promotion_complete(info: &DbInstanceInfo, promote_answered_available: bool) -> bool {
    info.status == "available" && (info.replica_source.is_none() || promote_answered_available)
}

/// One member of an Aurora cluster, with its instance's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMember {
    pub id: String,
    pub writer: bool,
    pub tier: Option<i32>,
    pub status: String,
    pub az: Option<String>,
}

/// Chooses the reader to fail an Aurora cluster over to: available, lowest promotion tier, another
/// AZ than the writer's, then identifier. `requested` restricts the choice to one reader.
pub fn choose_reader(members: &[ClusterMember], requested: Option<&str>) -> std::result::Result<ClusterMember, String> {
    let writer_az = members.iter().find(|m| m.writer).and_then(|m| m.az.clone());
    let mut readers: Vec<&ClusterMember> = members
        .iter()
        .filter(|m| !m.writer && m.status == "available" && requested.is_none_or(|r| r == m.id))
        .collect();
    readers.sort_by_key(|m| {
        let same_az = m.az.is_some() && m.az == writer_az;
        (m.tier.unwrap_or(15), same_az, m.id.clone())
    });
    match readers.first() {
        Some(m) => Ok((*m).clone()),
        None => {
            let seen: Vec<String> = members.iter().map(|m| format!("{} ({})", m.id, m.status)).collect();
            Err(format!("no available reader to fail over to among [{}]", seen.join(", ")))
        }
    }
}

/// A replica reference: an identifier, or an ARN naming another region.
pub fn parse_db_ref(r: &str) -> (Option<String>, String) {
    // arn:aws:rds:eu-west-1:123456789012:db:orders-db-replica
    let parts: Vec<&str> = r.split(':').collect();
    if parts.len() >= 7 && parts[0] == "arn" && parts[2] == "rds" && parts[5] == "db" {
        (Some(parts[3].to_string()), parts[6..].join(":"))
    } else {
        (None, r.to_string())
    }
}

/// What a trigger asks for, or why it asks for nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// Check and, if needed, fail over `id`.
    Failover(FailoverIntent),
    /// Nothing to do (an alarm back to OK, an unrelated RDS event category).
    Ignore { target: Target, reason: String },
}

/// Whether the target is known to be an instance, a cluster, or to be looked up (manual).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Instance,
    Cluster,
    Either,
}

/// A failover request derived from a trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverIntent {
    pub kind: TargetKind,
    pub id: String,
    pub force: bool,
    pub dry_run_requested: Option<bool>,
    pub reason: String,
    pub replica: Option<String>,
    pub mode: Option<String>,
}

/// Reads a trigger into an [`Intent`]; `Err` for triggers this function does not handle.
pub fn intent_from_trigger(t: &Trigger) -> Result<Intent> {
    let plain = |kind, id: &str, reason: String| {
        Intent::Failover(FailoverIntent {
            kind,
            id: id.to_string(),
            force: false,
            dry_run_requested: None,
            reason,
            replica: None,
            mode: None,
        })
    };
    match &t.kind {
        TriggerKind::Rds(e) => {
            let (kind, tkind) = match e.source {
                RdsSource::Instance => (TargetKind::Instance, "rds-instance"),
                RdsSource::Cluster => (TargetKind::Cluster, "rds-cluster"),
            };
            let relevant = e.categories.iter().any(|c| RDS_EVENT_CATEGORIES.contains(&c.to_ascii_lowercase().as_str()));
            if !relevant {
                return Ok(Intent::Ignore {
                    target: Target::new(tkind, &e.identifier),
                    reason: format!(
                        "RDS event categories {:?} are not failure, availability or failover",
                        e.categories
                    ),
                });
            }
            let reason =
                format!("RDS {} {}: {}", e.rds_event_id.as_deref().unwrap_or("event"), e.identifier, e.message);
            Ok(plain(kind, &e.identifier, reason))
        }
        TriggerKind::Alarm(a) => {
            let (kind, tkind, id) = if let Some(id) = a.dimension("DBInstanceIdentifier") {
                (TargetKind::Instance, "rds-instance", id)
            } else if let Some(id) = a.dimension("DBClusterIdentifier") {
                (TargetKind::Cluster, "rds-cluster", id)
            } else {
                return Err(Error::malformed(
                    "CloudWatch alarm",
                    format!("alarm {} has neither a DBInstanceIdentifier nor a DBClusterIdentifier dimension", a.name),
                ));
            };
            if a.state != AlarmState::Alarm {
                return Ok(Intent::Ignore {
                    target: Target::new(tkind, id),
                    reason: format!("alarm {} is {:?}, not ALARM", a.name, a.state),
                });
            }
            Ok(plain(kind, id, format!("alarm {}: {}", a.name, a.reason)))
        }
        TriggerKind::Manual(m) => {
            if !matches!(m.action.as_str(), "failover" | "promote-replica") {
                return Err(Error::malformed(
                    "manual",
                    format!("db-failover understands action \"failover\", got {:?}", m.action),
                ));
            }
            let id = m.target.as_deref().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                Error::malformed("manual", "target (a DB instance or cluster identifier) is required")
            })?;
            let param = |k: &str| -> Result<Option<String>> {
                match m.params.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(other) => Err(Error::malformed("manual", format!("params.{k} must be a string, got {other}"))),
                }
            };
            let mode = if m.action == "promote-replica" { Some("promote".to_string()) } else { param("mode")? };
            Ok(Intent::Failover(FailoverIntent {
                kind: TargetKind::Either,
                id: id.to_string(),
                force: m.force,
                dry_run_requested: m.dry_run,
                reason: format!("manual: {}", m.reason.as_deref().unwrap_or("no reason given")),
                replica: param("replica")?,
                mode,
            }))
        }
        other => Err(Error::UnsupportedTrigger { function: FUNCTION, trigger: other.name().to_string() }),
    }
}

// ---------------------------------------------------------------------------------------------------
// Replica lag
// ---------------------------------------------------------------------------------------------------

/// Where replica lag comes from.
pub trait LagSource: Send + Sync + std::fmt::Debug {
    /// Seconds `replica` is behind its primary (`region`: the replica's, when not the home region);
    /// `None` when there is no recent datapoint.
    fn replica_lag<'a>(&'a self, replica: &'a str, region: Option<&'a str>) -> BoxFuture<'a, Result<Option<f64>>>;
}

/// Fixed lags (emulator tests, drills). Replicas not in the map have unknown lag unless a default is set.
#[derive(Debug, Clone, Default)]
pub struct StaticLag {
    pub lags: BTreeMap<String, f64>,
    pub default: Option<f64>,
}

impl StaticLag {
    pub fn new<I, K>(lags: I) -> Self
    where
        I: IntoIterator<Item = (K, f64)>,
        K: Into<String>,
    {
        StaticLag { lags: lags.into_iter().map(|(k, v)| (k.into(), v)).collect(), default: None }
    }

    pub fn with_default(mut self, lag: f64) -> Self {
        self.default = Some(lag);
        self
    }
}

impl LagSource for StaticLag {
    fn replica_lag<'a>(&'a self, replica: &'a str, _region: Option<&'a str>) -> BoxFuture<'a, Result<Option<f64>>> {
        let v = self.lags.get(replica).copied().or(self.default);
        Box::pin(async move { Ok(v) })
    }
}

/// `AWS/RDS ReplicaLag` from CloudWatch `GetMetricData` (Maximum of 1-minute periods over the last
/// five minutes; the newest datapoint wins).
#[derive(Debug, Clone)]
pub struct CloudWatchLag {
    home: aws_sdk_cloudwatch::Client,
    aws: Option<Aws>,
    window: Duration,
}

impl CloudWatchLag {
    /// Uses the function's clients (cross-region replicas get a client for their region).
    pub fn from_aws(aws: &Aws) -> Self {
        CloudWatchLag { home: aws.cloudwatch(), aws: Some(aws.clone()), window: Duration::from_secs(300) }
    }

    /// Uses one given client for every replica (unit tests).
    pub fn with_client(client: aws_sdk_cloudwatch::Client) -> Self {
        CloudWatchLag { home: client, aws: None, window: Duration::from_secs(300) }
    }

    fn client_for(&self, region: Option<&str>) -> aws_sdk_cloudwatch::Client {
        match (region, &self.aws) {
            (Some(r), Some(aws)) if aws.sdk.region().map(|h| h.as_ref()) != Some(r) => {
                let conf = aws_sdk_cloudwatch::config::Builder::from(&aws.sdk)
                    .region(aws_sdk_cloudwatch::config::Region::new(r.to_string()))
                    .interceptor(aws.calls.clone())
                    .build();
                aws_sdk_cloudwatch::Client::from_conf(conf)
            }
            _ => self.home.clone(),
        }
    }

    async fn read(&self, replica: &str, region: Option<&str>) -> Result<Option<f64>> {
        use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
        let metric = Metric::builder()
            .namespace("AWS/RDS")
            .metric_name("ReplicaLag")
            .dimensions(Dimension::builder().name("DBInstanceIdentifier").value(replica).build())
            .build();
        let query = MetricDataQuery::builder()
            .id("lag")
            .metric_stat(MetricStat::builder().metric(metric).period(60).stat("Maximum").build())
            .return_data(true)
            .build();
        let now = chrono::Utc::now().timestamp();
        let out = self
            .client_for(region)
            .get_metric_data()
            .metric_data_queries(query)
            .start_time(aws_smithy_types::DateTime::from_secs(now - self.window.as_secs() as i64))
            .end_time(aws_smithy_types::DateTime::from_secs(now))
            .scan_by(ScanBy::TimestampDescending)
            .send()
            .await
            .map_err(|e| Error::aws("cloudwatch", "GetMetricData", e))?;
        let newest = out
            .metric_data_results()
            .iter()
            .filter(|r| r.id() == Some("lag"))
            .flat_map(|r| r.timestamps().iter().zip(r.values().iter()))
            .max_by_key(|(t, _)| t.secs())
            .map(|(_, v)| *v);
        Ok(newest)
    }
}

impl LagSource for CloudWatchLag {
    fn replica_lag<'a>(&'a self, replica: &'a str, region: Option<&'a str>) -> BoxFuture<'a, Result<Option<f64>>> {
        Box::pin(self.read(replica, region))
    }
}

// ---------------------------------------------------------------------------------------------------
// AWS layer: RDS
// ---------------------------------------------------------------------------------------------------

fn tags_map(tags: &[aws_sdk_rds::types::Tag]) -> BTreeMap<String, String> {
    tags.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}

fn instance_info(d: &aws_sdk_rds::types::DbInstance, region: Option<&str>) -> DbInstanceInfo {
    DbInstanceInfo {
        id: d.db_instance_identifier().unwrap_or_default().to_string(),
        arn: d.db_instance_arn().map(str::to_string),
        region: region.map(str::to_string),
        status: d.db_instance_status().unwrap_or("unknown").to_string(),
        engine: d.engine().unwrap_or_default().to_string(),
        az: d.availability_zone().map(str::to_string),
        multi_az: d.multi_az().unwrap_or(false),
        endpoint: d.endpoint().and_then(|e| e.address()).map(str::to_string),
        replica_source: d.read_replica_source_db_instance_identifier().map(str::to_string),
        replicas: d.read_replica_db_instance_identifiers().to_vec(),
        cluster: d.db_cluster_identifier().map(str::to_string),
        promotion_tier: d.promotion_tier(),
        tags: tags_map(d.tag_list()),
    }
}

/// An RDS client for `region`, or the home client.
fn rds_for(aws: &Aws, region: Option<&str>) -> aws_sdk_rds::Client {
    match region {
        Some(r) if aws.sdk.region().map(|h| h.as_ref()) != Some(r) => {
            let conf = aws_sdk_rds::config::Builder::from(&aws.sdk)
                .region(aws_sdk_rds::config::Region::new(r.to_string()))
                .interceptor(aws.calls.clone())
                .build();
            aws_sdk_rds::Client::from_conf(conf)
        }
        _ => aws.rds(),
    }
}

/// Describes one DB instance; `Ok(None)` when it does not exist. Tags come from `TagList`, or from
/// `ListTagsForResource` when the description carries none.
pub async fn describe_instance(
    rds: &aws_sdk_rds::Client,
    id: &str,
    region: Option<&str>,
) -> Result<Option<DbInstanceInfo>> {
    let out = match rds.describe_db_instances().db_instance_identifier(id).send().await {
        Ok(o) => o,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_db_instance_not_found_fault()) => return Ok(None),
        Err(e) => return Err(Error::aws("rds", "DescribeDBInstances", e)),
    };
    let Some(d) = out.db_instances().first() else { return Ok(None) };
    let mut info = instance_info(d, region);
    if info.tags.is_empty() {
        if let Some(arn) = &info.arn {
            info.tags = list_tags(rds, arn).await?;
        }
    }
    Ok(Some(info))
}

async fn list_tags(rds: &aws_sdk_rds::Client, arn: &str) -> Result<BTreeMap<String, String>> {
    let out = rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(|e| Error::aws("rds", "ListTagsForResource", e))?;
    Ok(tags_map(out.tag_list()))
}

/// An Aurora cluster's identity, status, tags and members.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterInfo {
    pub id: String,
    pub status: String,
    pub tags: BTreeMap<String, String>,
    /// (member id, is writer, promotion tier)
    pub members: Vec<(String, bool, Option<i32>)>,
}

/// Describes one cluster; `Ok(None)` when it does not exist.
pub async fn describe_cluster(rds: &aws_sdk_rds::Client, id: &str) -> Result<Option<ClusterInfo>> {
    let out = match rds.describe_db_clusters().db_cluster_identifier(id).send().await {
        Ok(o) => o,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_db_cluster_not_found_fault()) => return Ok(None),
        Err(e) => return Err(Error::aws("rds", "DescribeDBClusters", e)),
    };
    let Some(c) = out.db_clusters().first() else { return Ok(None) };
    let mut tags = tags_map(c.tag_list());
    if tags.is_empty() {
        if let Some(arn) = c.db_cluster_arn() {
            tags = list_tags(rds, arn).await?;
        }
    }
    Ok(Some(ClusterInfo {
        id: c.db_cluster_identifier().unwrap_or(id).to_string(),
        status: c.status().unwrap_or("unknown").to_string(),
        tags,
        members: c
            .db_cluster_members()
            .iter()
            .filter_map(|m| {
                Some((
                    m.db_instance_identifier()?.to_string(),
                    m.is_cluster_writer().unwrap_or(false),
                    m.promotion_tier(),
                ))
            })
            .collect(),
    }))
}

// ---------------------------------------------------------------------------------------------------
// AWS layer: Route 53
// ---------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------
// Handler
// ---------------------------------------------------------------------------------------------------

/// The db-failover handler: configuration, context and lag source, built once per cold start.
#[derive(Debug, Clone)]
pub struct DbFailover {
    ctx: Ctx,
    cfg: DbConfig,
    lag: Arc<dyn LagSource>,
}

struct Decision {
    req: ActionRequest,
    intent: FailoverIntent,
}

impl DbFailover {
    /// Reads and validates every setting (common and db-failover's) and loads AWS configuration.
    pub async fn from_env() -> Result<Self> {
        let mut env = Env::from_process();
        let common = CommonConfig::read(&mut env, FUNCTION);
        let cfg = DbConfig::read(&mut env);
        // Emulators only (moto does not speak CloudWatch's current protocol): every replica reports
        // this lag. Never set it against a real account: it replaces the RPO guard's evidence.
        let lag_override = env
            .optional("SELFHEAL_DB_LAG_OVERRIDE_SECONDS")
            .map(|_| env.number("SELFHEAL_DB_LAG_OVERRIDE_SECONDS", 0.0f64, 0.0, 86_400.0));
        env.finish()?;
        let handler = DbFailover::new(Ctx::new(common.clone(), Aws::load(&common.aws_timeouts).await), cfg);
        Ok(match lag_override {
            Some(lag) => {
                tracing::warn!(lag, "SELFHEAL_DB_LAG_OVERRIDE_SECONDS is set: replica lag is not read from CloudWatch");
                handler.with_lag_source(Arc::new(StaticLag::new(Vec::<(String, f64)>::new()).with_default(lag)))
            }
            None => handler,
        })
    }

    /// A handler reading replica lag from CloudWatch.
    pub fn new(ctx: Ctx, cfg: DbConfig) -> Self {
        let lag = Arc::new(CloudWatchLag::from_aws(&ctx.aws));
        DbFailover { ctx, cfg, lag }
    }

    /// Replaces the lag source (tests and drills use [`StaticLag`]).
    pub fn with_lag_source(mut self, lag: Arc<dyn LagSource>) -> Self {
        self.lag = lag;
        self
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    pub fn config(&self) -> &DbConfig {
        &self.cfg
    }

    /// Handles one invocation payload: every trigger it carries, then [`crate::lambda::conclude`].
    pub async fn handle(&self, payload: &Value) -> Result<Value> {
        crate::lambda::handle_each(FUNCTION, payload, |t| async move { self.handle_trigger(&t).await }).await
    }

    /// Handles one trigger and returns the decisions recorded for it.
    pub async fn handle_trigger(&self, t: &Trigger) -> Result<Vec<Envelope>> {
        let intent = match intent_from_trigger(t)? {
            Intent::Ignore { target, reason } => {
                let req = self.request(t, ACTION_FAILOVER, target, self.ctx.config.dry_run, reason.clone());
                let env = self.ctx.envelope(&req, Outcome::Skipped, reason);
                return Ok(vec![self.ctx.record(env).await?]);
            }
            Intent::Failover(i) => i,
        };
        let dry_run = effective_dry_run(self.ctx.config.dry_run, intent.dry_run_requested);
        tracing::info!(event_id = %t.event_id, target = %intent.id, force = intent.force, dry_run, "db-failover trigger");
        let rds = self.ctx.aws.rds();
        match intent.kind {
            TargetKind::Cluster => self.cluster(t, intent, dry_run).await.map(|e| vec![e]),
            TargetKind::Instance | TargetKind::Either => {
                let Some(primary) = describe_instance(&rds, &intent.id, None).await? else {
                    if intent.kind == TargetKind::Either && describe_cluster(&rds, &intent.id).await?.is_some() {
                        return self.cluster(t, intent, dry_run).await.map(|e| vec![e]);
                    }
                    let req = self.request(
                        t,
                        ACTION_FAILOVER,
                        Target::new("rds-instance", &intent.id),
                        dry_run,
                        intent.reason,
                    );
                    let env = self
                        .ctx
                        .envelope(&req, Outcome::Refused, format!("DB instance {} does not exist", req.target.id))
                        .severity(Severity::Warning);
                    return Ok(vec![self.ctx.record(env).await?]);
                };
                if let Some(cluster) = primary.cluster.clone() {
                    let intent = FailoverIntent { kind: TargetKind::Cluster, id: cluster, ..intent };
                    return self.cluster(t, intent, dry_run).await.map(|e| vec![e]);
                }
                self.instance(t, intent, primary, dry_run).await.map(|e| vec![e])
            }
        }
    }

    fn request(&self, t: &Trigger, action: &str, target: Target, dry_run: bool, reason: String) -> ActionRequest {
        ActionRequest {
            action: action.to_string(),
            target,
            event_id: t.event_id.clone(),
            trigger: t.kind.name().to_string(),
            dry_run,
            reason,
        }
    }

    async fn refuse(&self, req: &ActionRequest, reason: String, severity: Severity) -> Result<Envelope> {
        tracing::warn!(target = %req.target.id, reason = %reason, "db-failover refused");
        let env = self.ctx.envelope(req, Outcome::Refused, reason).severity(severity);
        self.ctx.record(env).await
    }

    async fn instance(
        &self,
        t: &Trigger,
        intent: FailoverIntent,
        primary: DbInstanceInfo,
        dry_run: bool,
    ) -> Result<Envelope> {
        let target = Target::new("rds-instance", &primary.id).in_group(RATE_GROUP);
        let req = self.request(t, ACTION_FAILOVER, target, dry_run, intent.reason.clone());
        if primary.replica_source.is_some() && !primary.tags.contains_key(PROMOTED_FROM_TAG) {
            let why = format!(
                "{} is a read replica of {}; failover acts on primaries",
                primary.id,
                primary.replica_source.as_deref().unwrap_or("?")
            );
            return self.ctx.record(self.ctx.envelope(&req, Outcome::Skipped, why)).await;
        }
        if !is_opted_in(primary.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())), &self.ctx.config) {
            let why = format!(
                "{} is not opted in (tag {}={})",
                primary.id, self.ctx.config.opt_in_tag, self.ctx.config.opt_in_value
            );
            return self.refuse(&req, why, Severity::Warning).await;
        }
        if !is_unavailable(&primary.status) && !intent.force {
            let why = format!(
                "{} is {} on a fresh DescribeDBInstances: the event is stale or flapping, nothing to do",
                primary.id, primary.status
            );
            let env = self.ctx.envelope(&req, Outcome::Skipped, why).detail("status", &primary.status);
            return self.ctx.record(env).await;
        }
        let plan = match choose_instance_plan(&primary, intent.mode.as_deref()) {
            Ok(p) => p,
            Err(why) => {
                let why = format!("{why}; a human must restore the writer");
                return self.refuse(&req, why, Severity::Critical).await;
            }
        };
        let d = Decision { req, intent };
        match plan {
            Plan::RebootWithFailover => self.reboot(d, primary).await,
            Plan::PromoteReplica => self.promote(d, primary).await,
        }
    }

    async fn reboot(&self, mut d: Decision, primary: DbInstanceInfo) -> Result<Envelope> {
        d.req.action = ACTION_REBOOT.to_string();
        let dry_run = d.req.dry_run;
        let rds = self.ctx.aws.rds();
        let work = async {
            if dry_run {
                return Ok(ActionReport::would(format!(
                    "would reboot {} with forced failover to its standby",
                    primary.id
                ))
                .detail("oldAz", &primary.az));
            }
            let started = Instant::now();
            tracing::info!(db = %primary.id, "RebootDBInstance ForceFailover");
            rds.reboot_db_instance()
                .db_instance_identifier(&primary.id)
                .force_failover(true)
                .send()
                .await
                .map_err(|e| Error::aws("rds", "RebootDBInstance", e))?;
            let after = self.wait_instance(&rds, &primary.id, None, |i| i.status == "available").await?;
            Ok(ActionReport::acted(format!("{} failed over to its Multi-AZ standby", primary.id))
                .severity(Severity::Warning)
                .detail("oldWriter", &primary.id)
                .detail("newWriter", &primary.id)
                .detail("oldAz", &primary.az)
                .detail("newAz", &after.az)
                .detail("tookSeconds", started.elapsed().as_secs_f64()))
        };
        self.ctx.execute(d.req, work).await
    }

    async fn gather_candidates(&self, primary: &DbInstanceInfo) -> Result<(Vec<Candidate>, Vec<Rejection>)> {
        let mut out = Vec::new();
        let mut missing = Vec::new();
        for r in &primary.replicas {
            let (region, id) = parse_db_ref(r);
            let rds = rds_for(&self.ctx.aws, region.as_deref());
            let Some(info) = describe_instance(&rds, &id, region.as_deref()).await? else {
                missing.push(Rejection { replica: id, reason: "not found".into() });
                continue;
            };
            let lag_seconds = match self.lag.replica_lag(&id, region.as_deref()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(replica = %id, error = %e, "replica lag unavailable");
                    None
                }
            };
            out.push(Candidate { info, lag_seconds });
        }
        Ok((out, missing))
    }

    async fn promote(&self, mut d: Decision, primary: DbInstanceInfo) -> Result<Envelope> {
        d.req.action = ACTION_PROMOTE.to_string();
        let dry_run = d.req.dry_run;
        let event_id = d.req.event_id.clone();
        let intent = d.intent;
        let marker = format!("promotion#{}", primary.id);
        let work = async {
            let (candidates, mut rejected) = self.gather_candidates(&primary).await?;
            if let Some(done) = candidates.iter().find(|c| c.info.tags.get(PROMOTED_FROM_TAG) == Some(&primary.id)) {
                return Ok(ActionReport::refused(format!(
                    "{} was already promoted from {}: refusing a second promotion (it would split the data)",
                    done.info.id, primary.id
                ))
                .severity(Severity::Critical));
            }
            if self.ctx.ledger.is_marked(&marker).await? {
                return Ok(already_promoted(&primary.id, &marker));
            }
            let (chosen, mut why_not) = choose_replica(
                &primary,
                &candidates,
                self.cfg.max_lag_seconds,
                &self.cfg.preferred_tag,
                intent.force,
                intent.replica.as_deref(),
            );
            rejected.append(&mut why_not);
            let Some(chosen) = chosen else {
                return Ok(ActionReport::refused(format!(
                    "no replica of {} can be promoted safely (RPO guard {}s); nothing promoted, a human must decide",
                    primary.id, self.cfg.max_lag_seconds
                ))
                .severity(Severity::Critical)
                .detail("oldWriter", &primary.id)
                .detail("rejected", &rejected));
            };
            let lag = chosen.lag_seconds;
            let new_id = chosen.info.id.clone();
            let region = chosen.info.region.clone();
            if dry_run {
                let dns = self.cfg.dns.as_ref().map(|d| d.name.clone());
                return Ok(ActionReport::would(format!(
                    "would promote {new_id} (lag {}) to replace {}{}",
                    fmt_lag(lag),
                    primary.id,
                    dns.as_ref().map(|n| format!(" and repoint {n}")).unwrap_or_default()
                ))
                .detail("oldWriter", &primary.id)
                .detail("newWriter", &new_id)
                .detail("lagSeconds", lag)
                .detail("dnsRecord", dns)
                .detail("rejected", &rejected));
            }
            // One promotion per primary, ever: taken atomically before the irreversible call.
            if !self.ctx.ledger.mark_once(&marker).await? {
                return Ok(already_promoted(&primary.id, &marker));
            }
            let started = Instant::now();
            let rds = rds_for(&self.ctx.aws, region.as_deref());
            tracing::info!(primary = %primary.id, replica = %new_id, lag = ?lag, "PromoteReadReplica");
            let resp = match rds.promote_read_replica().db_instance_identifier(&new_id).send().await {
                Ok(r) => r,
                Err(e) => {
                    let e = Error::aws("rds", "PromoteReadReplica", e);
                    return Ok(ActionReport::failed(format!(
                        "PromoteReadReplica of {new_id} failed: {e}; ledger marker {marker} is held, so no \
                         automatic retry will promote another replica: a human must decide"
                    ))
                    .detail("oldWriter", &primary.id)
                    .detail("newWriter", &new_id));
                }
            };
            let answered_available = resp.db_instance().and_then(|i| i.db_instance_status()) == Some("available");
            if let Some(arn) = chosen.info.arn.as_deref() {
                let tagged = rds
                    .add_tags_to_resource()
                    .resource_name(arn)
                    .tags(aws_sdk_rds::types::Tag::builder().key(PROMOTED_FROM_TAG).value(&primary.id).build())
                    .tags(aws_sdk_rds::types::Tag::builder().key(PROMOTED_BY_TAG).value(&event_id).build())
                    .send()
                    .await;
                if let Err(e) = tagged {
                    tracing::warn!(replica = %new_id, error = %Error::aws("rds", "AddTagsToResource", e), "could not tag promoted replica");
                }
            }
            let base = |r: ActionReport| {
                r.detail("oldWriter", &primary.id)
                    .detail("newWriter", &new_id)
                    .detail("lagSeconds", lag)
                    .detail("rejected", &rejected)
            };
            let promoted = match self
                .wait_instance(&rds, &new_id, region.as_deref(), |i| promotion_complete(i, answered_available))
                .await
            {
                Ok(i) => i,
                Err(e) => {
                    return Ok(base(ActionReport::failed(format!(
                        "promoted {new_id} but it did not become a standalone writer: {e}; DNS not repointed"
                    ))))
                }
            };
            let took = started.elapsed().as_secs_f64();
            let Some(endpoint) = promoted.endpoint.clone() else {
                return Ok(base(ActionReport::failed(format!(
                    "promoted {new_id} but it reports no endpoint; DNS not repointed"
                ))));
            };
            let mut report = base(ActionReport::acted(format!(
                "promoted {new_id} (lag {}) to replace failed primary {} in {took:.0}s",
                fmt_lag(lag),
                primary.id
            )))
            .severity(Severity::Warning)
            .detail("newEndpoint", &endpoint)
            .detail("tookSeconds", took);
            if let Some(dns) = &self.cfg.dns {
                match self.repoint(dns, &endpoint, &primary.id, &new_id, started).await {
                    Ok((before, change)) => {
                        report = report
                            .detail("dnsRecord", &dns.name)
                            .detail("dnsBefore", before)
                            .detail("dnsAfter", &endpoint)
                            .detail("dnsChange", change)
                            .detail("tookSeconds", started.elapsed().as_secs_f64());
                    }
                    Err(e) => {
                        let mut failed = ActionReport::failed(format!(
                            "promoted {new_id} but repointing {} failed: {e}; point it at {endpoint} by hand",
                            dns.name
                        ));
                        failed.details = report.details;
                        return Ok(failed);
                    }
                }
            }
            Ok(report)
        };
        self.ctx.execute(d.req, work).await
    }

    async fn repoint(
        &self,
        dns: &DnsRecord,
        endpoint: &str,
        old: &str,
        new: &str,
        started: Instant,
    ) -> Result<(Option<String>, Option<String>)> {
        let r53 = self.ctx.aws.route53();
        let before = read_cname(&r53, dns).await?;
        if before.as_deref().map(fqdn) == Some(fqdn(endpoint)) {
            return Ok((before, None));
        }
        let remaining = self.cfg.wait.saturating_sub(started.elapsed()).max(Duration::from_secs(30));
        tracing::info!(record = %dns.name, to = %endpoint, "repointing database DNS record");
        let comment = format!("selfheal db-failover: {old} -> {new}");
        let change = upsert_cname(&r53, dns, endpoint, &comment, remaining, self.cfg.poll).await?;
        Ok((before, Some(change)))
    }

    /// Polls an instance until `done` holds, bounded by the configured wait.
    async fn wait_instance<F>(
        &self,
        rds: &aws_sdk_rds::Client,
        id: &str,
        region: Option<&str>,
        done: F,
    ) -> Result<DbInstanceInfo>
    where
        F: Fn(&DbInstanceInfo) -> bool,
    {
        let deadline = Instant::now() + self.cfg.wait;
        loop {
            let info = describe_instance(rds, id, region)
                .await?
                .ok_or_else(|| Error::NotFound { kind: "DB instance", id: id.to_string() })?;
            if done(&info) {
                return Ok(info);
            }
            if Instant::now() + self.cfg.poll > deadline {
                return Err(Error::Timeout {
                    what: format!("{id} to become available (last status {})", info.status),
                    seconds: self.cfg.wait.as_secs(),
                });
            }
            tokio::time::sleep(self.cfg.poll).await;
        }
    }

    async fn cluster(&self, t: &Trigger, intent: FailoverIntent, dry_run: bool) -> Result<Envelope> {
        let rds = self.ctx.aws.rds();
        let target = Target::new("rds-cluster", &intent.id).in_group(RATE_GROUP);
        let mut req = self.request(t, ACTION_FAILOVER, target, dry_run, intent.reason.clone());
        let Some(cluster) = describe_cluster(&rds, &intent.id).await? else {
            return self.refuse(&req, format!("DB cluster {} does not exist", intent.id), Severity::Warning).await;
        };
        if !is_opted_in(cluster.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())), &self.ctx.config) {
            let why = format!(
                "cluster {} is not opted in (tag {}={})",
                cluster.id, self.ctx.config.opt_in_tag, self.ctx.config.opt_in_value
            );
            return self.refuse(&req, why, Severity::Warning).await;
        }
        let mut members = Vec::new();
        for (id, writer, tier) in &cluster.members {
            let info = describe_instance(&rds, id, None).await?;
            members.push(ClusterMember {
                id: id.clone(),
                writer: *writer,
                tier: *tier,
                status: info.as_ref().map(|i| i.status.clone()).unwrap_or_else(|| "missing".into()),
                az: info.and_then(|i| i.az),
            });
        }
        let writer = members.iter().find(|m| m.writer).cloned();
        if cluster.status == "failing-over" && !intent.force {
            let env =
                self.ctx.envelope(&req, Outcome::Skipped, format!("cluster {} is already failing over", cluster.id));
            return self.ctx.record(env).await;
        }
        let writer_down = writer.as_ref().is_none_or(|w| is_unavailable(&w.status) || w.status == "missing");
        if !writer_down && !is_unavailable(&cluster.status) && !intent.force {
            let why = format!(
                "cluster {} is {} and its writer {} is {}: the event is stale or flapping, nothing to do",
                cluster.id,
                cluster.status,
                writer.as_ref().map(|w| w.id.as_str()).unwrap_or("?"),
                writer.as_ref().map(|w| w.status.as_str()).unwrap_or("?")
            );
            return self.ctx.record(self.ctx.envelope(&req, Outcome::Skipped, why)).await;
        }
        let reader = match choose_reader(&members, intent.replica.as_deref()) {
            Ok(r) => r,
            Err(why) => {
                return self.refuse(&req, format!("{why}; a human must restore the writer"), Severity::Critical).await
            }
        };
        req.action = ACTION_CLUSTER.to_string();
        let old = writer.map(|w| w.id);
        let cluster_id = cluster.id.clone();
        let work = async {
            if dry_run {
                return Ok(ActionReport::would(format!(
                    "would fail cluster {cluster_id} over to {} (tier {:?}, {})",
                    reader.id,
                    reader.tier,
                    reader.az.as_deref().unwrap_or("?")
                ))
                .detail("oldWriter", &old)
                .detail("newWriter", &reader.id));
            }
            let started = Instant::now();
            tracing::info!(cluster = %cluster_id, to = %reader.id, "FailoverDBCluster");
            rds.failover_db_cluster()
                .db_cluster_identifier(&cluster_id)
                .target_db_instance_identifier(&reader.id)
                .send()
                .await
                .map_err(|e| Error::aws("rds", "FailoverDBCluster", e))?;
            self.wait_cluster_writer(&rds, &cluster_id, &reader.id).await?;
            Ok(ActionReport::acted(format!("cluster {cluster_id} failed over to {}", reader.id))
                .severity(Severity::Warning)
                .detail("oldWriter", &old)
                .detail("newWriter", &reader.id)
                .detail("newWriterAz", &reader.az)
                .detail("promotionTier", reader.tier)
                .detail("tookSeconds", started.elapsed().as_secs_f64()))
        };
        self.ctx.execute(req, work).await
    }

    async fn wait_cluster_writer(&self, rds: &aws_sdk_rds::Client, cluster: &str, writer: &str) -> Result<()> {
        let deadline = Instant::now() + self.cfg.wait;
        loop {
            let c = describe_cluster(rds, cluster)
                .await?
                .ok_or_else(|| Error::NotFound { kind: "DB cluster", id: cluster.to_string() })?;
            let is_writer = c.members.iter().any(|(id, w, _)| id == writer && *w);
            if is_writer && c.status == "available" {
                return Ok(());
            }
            if Instant::now() + self.cfg.poll > deadline {
                return Err(Error::Timeout {
                    what: format!("{writer} to become the writer of {cluster} (status {})", c.status),
                    seconds: self.cfg.wait.as_secs(),
                });
            }
            tokio::time::sleep(self.cfg.poll).await;
        }
    }
}

fn already_promoted(primary: &str, marker: &str) -> ActionReport {
    ActionReport::refused(format!(
        "a replica of {primary} was already promoted (ledger marker {marker}): refusing a second promotion, \
         which would split the data"
    ))
    .severity(Severity::Critical)
}

fn fmt_lag(lag: Option<f64>) -> String {
    lag.map(|l| format!("{l}s")).unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::parse_event;

    fn inst(id: &str, az: &str) -> DbInstanceInfo {
        DbInstanceInfo {
            id: id.into(),
            status: "available".into(),
            engine: "postgres".into(),
            az: Some(az.into()),
            ..Default::default()
        }
    }

    fn cand(id: &str, az: &str, lag: Option<f64>) -> Candidate {
        Candidate { info: inst(id, az), lag_seconds: lag }
    }

    const TAG: &str = "selfheal:promote-priority";

    #[test]
    fn unavailable_statuses() {
        for s in ["stopped", "failed", "storage-full", "inaccessible-encryption-credentials", "incompatible-network"] {
            assert!(is_unavailable(s), "{s}");
        }
        for s in ["available", "rebooting", "modifying", "backing-up", "starting"] {
            assert!(!is_unavailable(s), "{s}");
        }
    }

    #[test]
    fn replica_choice_prefers_tag_then_other_az_then_lag() {
        let p = inst("p", "a");
        let cs =
            vec![cand("same-az", "a", Some(1.0)), cand("other-az", "b", Some(5.0)), cand("other-az-2", "c", Some(3.0))];
        let (c, _) = choose_replica(&p, &cs, 30.0, TAG, false, None);
        assert_eq!(c.unwrap().info.id, "other-az-2");
        let mut cs2 = cs.clone();
        cs2[0].info.tags.insert(TAG.into(), "1".into());
        let (c, _) = choose_replica(&p, &cs2, 30.0, TAG, false, None);
        assert_eq!(c.unwrap().info.id, "same-az");
    }

    #[test]
    fn rpo_guard_rejects_lagging_and_unknown_unless_forced() {
        let p = inst("p", "a");
        let cs = vec![cand("slow", "b", Some(100.0)), cand("unknown", "c", None)];
        let (c, rej) = choose_replica(&p, &cs, 30.0, TAG, false, None);
        assert!(c.is_none());
        assert_eq!(rej.len(), 2);
        assert!(rej[0].reason.contains("exceeds"), "{:?}", rej);
        assert!(rej[1].reason.contains("unknown"), "{:?}", rej);
        let (c, _) = choose_replica(&p, &cs, 30.0, TAG, true, None);
        assert_eq!(c.unwrap().info.id, "slow");
    }

    #[test]
    fn replica_must_be_available_same_engine_and_requested() {
        let p = inst("p", "a");
        let mut down = cand("down", "b", Some(1.0));
        down.info.status = "stopped".into();
        let mut mysql = cand("mysql", "b", Some(1.0));
        mysql.info.engine = "mysql".into();
        let ok = cand("ok", "b", Some(2.0));
        let ok2 = cand("ok2", "c", Some(1.0));
        let (c, rej) = choose_replica(&p, &[down, mysql, ok, ok2], 30.0, TAG, false, Some("ok"));
        assert_eq!(c.unwrap().info.id, "ok");
        assert_eq!(rej.len(), 3);
    }

    #[test]
    fn plans() {
        let mut p = inst("p", "a");
        assert!(choose_instance_plan(&p, None).is_err());
        p.replicas = vec!["r".into()];
        assert_eq!(choose_instance_plan(&p, None), Ok(Plan::PromoteReplica));
        p.multi_az = true;
        p.status = "failed".into();
        assert_eq!(choose_instance_plan(&p, None), Ok(Plan::RebootWithFailover));
        p.status = "stopped".into();
        assert_eq!(choose_instance_plan(&p, None), Ok(Plan::PromoteReplica));
        assert_eq!(choose_instance_plan(&p, Some("reboot")), Ok(Plan::RebootWithFailover));
        assert!(choose_instance_plan(&p, Some("sideways")).is_err());
    }

    #[test]
    fn reader_choice_respects_tier_then_other_az() {
        let m = |id: &str, writer, tier, az: &str, status: &str| ClusterMember {
            id: id.into(),
            writer,
            tier: Some(tier),
            status: status.into(),
            az: Some(az.into()),
        };
        let members = vec![
            m("w", true, 1, "a", "stopped"),
            m("t2", false, 2, "b", "available"),
            m("t0-same", false, 0, "a", "available"),
            m("t0-other", false, 0, "c", "available"),
            m("t0-down", false, 0, "b", "failed"),
        ];
        assert_eq!(choose_reader(&members, None).unwrap().id, "t0-other");
        assert_eq!(choose_reader(&members, Some("t2")).unwrap().id, "t2");
        assert!(choose_reader(&members[..1], None).is_err());
    }

    #[test]
    fn arns_name_other_regions() {
        assert_eq!(
            parse_db_ref("arn:aws:rds:eu-west-1:123456789012:db:orders-dr"),
            (Some("eu-west-1".into()), "orders-dr".into())
        );
        assert_eq!(parse_db_ref("orders-r1"), (None, "orders-r1".into()));
    }

    #[test]
    fn promotion_completes_when_standalone_or_emulated() {
        let mut i = inst("r", "b");
        i.replica_source = Some("p".into());
        assert!(!promotion_complete(&i, false));
        assert!(promotion_complete(&i, true));
        i.replica_source = None;
        assert!(promotion_complete(&i, false));
        i.status = "modifying".into();
        assert!(!promotion_complete(&i, false));
    }

    #[test]
    fn config_reads_and_validates() {
        let map =
            |pairs: &[(&str, &str)]| Env::from_map(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let mut env = map(&[]);
        let c = DbConfig::read(&mut env);
        env.finish().unwrap();
        assert_eq!(c.max_lag_seconds, 30.0);
        assert_eq!(c.wait, Duration::from_secs(600));
        assert!(c.dns.is_none());

        let mut env = map(&[("SELFHEAL_DB_DNS_ZONE_ID", "Z1"), ("SELFHEAL_DB_DNS_RECORD", "DB.Example.com")]);
        let c = DbConfig::read(&mut env);
        env.finish().unwrap();
        assert_eq!(c.dns.unwrap().name, "db.example.com.");

        let mut env = map(&[("SELFHEAL_DB_DNS_ZONE_ID", "Z1"), ("SELFHEAL_DB_MAX_LAG_SECONDS", "-1")]);
        let _ = DbConfig::read(&mut env);
        let err = env.finish().unwrap_err().to_string();
        assert!(err.contains("SELFHEAL_DB_DNS_RECORD"), "{err}");
        assert!(err.contains("SELFHEAL_DB_MAX_LAG_SECONDS"), "{err}");
    }

    #[test]
    fn triggers_become_intents() {
        let t = |v: serde_json::Value| parse_event(&v).unwrap().remove(0);
        let manual = t(serde_json::json!({"source": "selfheal.manual", "action": "failover", "target": "db1",
            "force": true, "params": {"replica": "r2"}}));
        let Intent::Failover(i) = intent_from_trigger(&manual).unwrap() else { panic!("ignored") };
        assert!(i.force);
        assert_eq!(i.replica.as_deref(), Some("r2"));
        assert_eq!(i.kind, TargetKind::Either);

        let bad = t(serde_json::json!({"source": "selfheal.manual", "action": "replace", "target": "db1"}));
        assert!(intent_from_trigger(&bad).unwrap_err().to_string().contains("failover"));
        let no_target = t(serde_json::json!({"source": "selfheal.manual", "action": "failover"}));
        assert!(intent_from_trigger(&no_target).unwrap_err().to_string().contains("target"));

        let backup = t(serde_json::json!({"id": "1", "detail-type": "RDS DB Instance Event", "source": "aws.rds",
            "detail": {"SourceIdentifier": "db1", "EventCategories": ["backup"], "Message": "Backing up"}}));
        assert!(matches!(intent_from_trigger(&backup).unwrap(), Intent::Ignore { .. }));
    }

    mod cloudwatch {
        use super::super::*;
        use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput;
        use aws_sdk_cloudwatch::types::MetricDataResult;
        use aws_smithy_mocks::{mock, mock_client};

        #[tokio::test]
        async fn newest_replica_lag_datapoint_is_read() {
            let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
                .match_requests(|r| {
                    let q = &r.metric_data_queries()[0];
                    let m = q.metric_stat().and_then(|s| s.metric());
                    m.and_then(|m| m.metric_name()) == Some("ReplicaLag")
                        && m.and_then(|m| m.namespace()) == Some("AWS/RDS")
                        && m.map(|m| m.dimensions()).and_then(|d| d.first()).and_then(|d| d.value())
                            == Some("orders-r1")
                })
                .then_output(|| {
                    GetMetricDataOutput::builder()
                        .metric_data_results(
                            MetricDataResult::builder()
                                .id("lag")
                                .timestamps(aws_smithy_types::DateTime::from_secs(1_000))
                                .values(40.0)
                                .timestamps(aws_smithy_types::DateTime::from_secs(2_000))
                                .values(7.5)
                                .build(),
                        )
                        .build()
                });
            let client = mock_client!(aws_sdk_cloudwatch, [&rule]);
            let lag = CloudWatchLag::with_client(client);
            assert_eq!(lag.replica_lag("orders-r1", None).await.unwrap(), Some(7.5));
            assert_eq!(rule.num_calls(), 1);
        }

        #[tokio::test]
        async fn no_datapoints_means_unknown_and_errors_are_named() {
            let empty = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
                .then_output(|| GetMetricDataOutput::builder().build());
            let client = mock_client!(aws_sdk_cloudwatch, [&empty]);
            assert_eq!(CloudWatchLag::with_client(client).replica_lag("r", None).await.unwrap(), None);

            let failing = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_error(|| {
                aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataError::unhandled("throttled")
            });
            let client = mock_client!(aws_sdk_cloudwatch, [&failing]);
            let err = CloudWatchLag::with_client(client).replica_lag("r", None).await.unwrap_err().to_string();
            assert!(err.contains("cloudwatch:GetMetricData"), "{err}");
        }
    }
}
