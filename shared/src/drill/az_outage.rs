//! The `az-outage` scenario: one Availability Zone of the larger fleet ([`super::architecture::Fleet`])
//! goes down at once, and the suite heals everything it should, in parallel, each resource once.
//!
//! **Injected** (live): [`LOST_AZ`] is lost. Every fleet instance there is stopped, and every fleet
//! database whose writer is there is stopped (RDS cannot stop a read replica; losing a replica is
//! not something db-failover heals, so replicas in the lost AZ are left running). Then every event AWS
//! would send is delivered at once, each on its own task: for each failed database *two* events, an
//! RDS `failure` event (RDS-EVENT-0031, through EventBridge) and its `<db>-unavailable` alarm (through
//! SNS), as AWS sends both and a retry may repeat either; for each lost instance its status-check
//! alarm. How many run at once is the functions' concurrency (`scripts/gameday --concurrency N`, the
//! local stand-in for Lambda's reserved concurrency; `--serialized` is one at a time).
//!
//! **Expected**, and the scenario fails otherwise:
//! - every failed database is promoted **exactly once**: one `acted` promotion in the ledger's audit
//!   trail (the other delivery is refused or a duplicate), and on the resources exactly one of its
//!   replicas tagged `selfheal:promoted-from=<it>`, by the event of that decision; the databases whose
//!   writers are elsewhere are untouched (no decision acted, no replica promoted, writer available);
//! - **in parallel**: the last failed database recovers within [`MAX_SPREAD`] (1.5×) the time of the
//!   first (times from the events' delivery to the `acted` decision, confirmed on the resource);
//!   serialized, the last waits behind all the others and this fails;
//! - each group as the healer's maxUnhealthy rule says ([`expected_group_outcome`], README § Safety
//!   model and `healer/mod.rs` guard 5: at least `SELFHEAL_HEALER_MIN_UNHEALTHY` (2) members broken and
//!   more than `SELFHEAL_HEALER_MAX_UNHEALTHY_PERCENT` (40 %) of the group, or of the group's members in
//!   one AZ, and nothing is replaced). With the fleet's shapes and those defaults:
//!
//! | group | members (a/b/c) | lost | expected | why |
//! |---|---|---|---|---|
//! | `fleet-web` | 3/3/3 | 3 | short-circuit `az:us-east-1a`: nothing replaced, a person paged | 3 of 9 is 33 %, under 40 %, but it is all 3 of the group's members in us-east-1a (100 %, and 3 ≥ 2): the per-AZ rule trips |
//! | `fleet-api` | 1/1/1 | 1 | the member replaced through its group | 1 of 3 is 33 % (under 40 %) and 1 is below the minimum of 2: nothing trips |
//! | `fleet-batch` | 2/1/1 | 2 | short-circuit `group`: nothing replaced, a person paged | 2 of 4 is 50 %, over 40 %, and 2 ≥ 2: the group rule trips (before the per-AZ rule) |
//!
//! - **the AZ evacuated** (issue #28): the web group's short-circuit is the healer's AZ signal, which the
//!   suite's topic carries to zone-evacuator (the drill relays it, as moto's SNS invokes no local
//!   function): every load balancer and group of the web tier's account (the reference architecture's
//!   and the three fleet groups, whatever the healer did about each) shifted away from the AZ's ID in
//!   ARC, each group's desired capacity raised first by its in-service members there, and the Multi-AZ
//!   writers in the AZ (the reference architecture's, when the data tier shares the account) failed
//!   over. That is what recovers the service of a group the short-circuit holds: each group's step
//!   needs its shift and its capacity, and the AZ's own step the load balancer's and the writers'.
//!
//! The short-circuited groups' instances are started again after the drill. The failed writers stay
//! stopped (their promoted replicas replace them), and the evacuation stays in place: the fleet is
//! drilled once (a second run wants a fresh fleet), and ending it would have moto scale each group
//! back in by its oldest members, the very instances the drill restarted.
//!
//! **Measured**, per resource: time to detect (the delivery to the function's first decision about it)
//! and time to recover (to the decision that healed it, confirmed on the resource); the report shows
//! each resource and the distribution (first, median, last) per kind.
//!
//! The game day raises `SELFHEAL_RATE_LIMIT` for the fleet (`gameday::rate_limit`, in `tools/gameday`): every DB promotion in
//! an account and region shares one rate group, and the production default (3 per hour) would refuse
//! all but three of the 20 promotions. How many databases one outage may promote without a person is
//! issue #18's.
//!
//! **Dry run**: nothing is injected; each database whose writer is in the AZ and each fleet instance
//! there gets a manual dry-run request (all at once) and must answer `dry-run` with nothing changed;
//! and zone-evacuator a dry-run `evacuate` of the AZ, which must shift nothing.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::architecture::{Fleet, AZS, DRILL_TAG};
use super::deliver::Deliverer;
use super::evacuation::{survey, Plan};
use super::events::{alarm_event_in, ec2_alarm, manual_in, rds_event_in};
use super::report::{Distribution, DrillReport, ResourceTiming, StepReport};
use super::resources::require_drill_tag_ec2;
use super::resources::{
    arc_view, capacity, group_members, in_service, in_service_by_az, start_instances, stop_instances,
};
use super::steps::{account_label, aws_in, describe, in_account, problem, relay, run_step, verify, Step, Verify};
use super::{Architecture, Drill, Mode};
use crate::clients::Aws;
use crate::db::{PROMOTED_BY_TAG, PROMOTED_FROM_TAG};
use crate::error::{Error, Result};
use crate::ledger::AuditRecord;

/// The AZ the scenario takes out.
pub const LOST_AZ: &str = AZS[0];

/// The last failed database must recover within this multiple of the first's time.
pub const MAX_SPREAD: f64 = 1.5;

const DB_FUNCTION: &str = crate::db::FUNCTION;
const HEALER_FUNCTION: &str = crate::healer::FUNCTION;
const ZONE_FUNCTION: &str = crate::zone::FUNCTION;

/// What the maxUnhealthy rule means for a group that loses every member in one AZ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOutcome {
    /// Nothing trips: each lost member is replaced through the group.
    Replaced,
    /// The short-circuit trips over `scope` (`group` or `az:<name>`): nothing is replaced, a person is
    /// paged.
    ShortCircuit { scope: String },
}

/// The healer's documented maxUnhealthy rule, restated for a group of `members` that loses all `lost`
/// of its members in `az` (and nothing else): over the group, then over each AZ's members, it trips
/// when at least `min_unhealthy` are broken and they are more than `max_percent` of the set. Returns
/// the outcome and why, in words.
pub fn expected_group_outcome(
    members: usize,
    lost: usize,
    az: &str,
    max_percent: u32,
    min_unhealthy: u32,
) -> (GroupOutcome, String) {
    let trips = |u: usize, n: usize| {
        u >= min_unhealthy as usize && n > 0 && (u as u64) * 100 > u64::from(max_percent) * n as u64
    };
    let share = |u: usize, n: usize| (u * 100 + n / 2).checked_div(n).unwrap_or(0);
    if trips(lost, members) {
        let why = format!(
            "{lost} of its {members} members lost is {}% of the group, over the {max_percent}% threshold, and at \
             least {min_unhealthy}: the group rule trips; nothing is replaced, a person is paged",
            share(lost, members)
        );
        return (GroupOutcome::ShortCircuit { scope: "group".into() }, why);
    }
    if trips(lost, lost) {
        let why = format!(
            "{lost} of its {members} members lost is {}% of the group, within the {max_percent}% threshold, but it is \
             all {lost} of its members in {az}, at least {min_unhealthy}: the per-AZ rule trips; nothing is replaced, \
             a person is paged",
            share(lost, members)
        );
        return (GroupOutcome::ShortCircuit { scope: format!("az:{az}") }, why);
    }
    let why = if lost < min_unhealthy as usize {
        format!(
            "{lost} of its {members} members lost ({}%) is below the minimum of {min_unhealthy} unhealthy for a \
             short-circuit: the lost member is replaced through the group",
            share(lost, members)
        )
    } else {
        format!(
            "{lost} of its {members} members lost ({}%) is within the {max_percent}% threshold, for the group and for \
             {az}: the lost members are replaced through the group",
            share(lost, members)
        )
    };
    (GroupOutcome::Replaced, why)
}

/// One fleet group as the drill found it, and what it expects.
struct GroupPlan {
    name: String,
    arn: String,
    members: Vec<String>,
    victims: Vec<String>,
    expect: GroupOutcome,
    why: String,
}

/// One fleet database as the drill found it.
struct DbPlan {
    primary: String,
    replicas: Vec<String>,
    affected: bool,
}

/// What DescribeDBInstances says of one instance.
#[derive(Debug, Clone)]
struct DbFacts {
    status: String,
    az: Option<String>,
    tags: BTreeMap<String, String>,
}

/// Every DB instance in the account, by identifier (one paginated listing).
async fn db_facts(aws: &Aws) -> Result<HashMap<String, DbFacts>> {
    let mut out = HashMap::new();
    let mut pages = aws.rds().describe_db_instances().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("rds", "DescribeDBInstances", e))?;
        for i in page.db_instances() {
            let Some(id) = i.db_instance_identifier() else { continue };
            let tags = i
                .tag_list()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
                .collect();
            out.insert(
                id.to_string(),
                DbFacts {
                    status: i.db_instance_status().unwrap_or_default().to_string(),
                    az: i.availability_zone().map(str::to_string),
                    tags,
                },
            );
        }
    }
    Ok(out)
}

/// The fleet's groups, with their members in the lost AZ and what the rule expects of each.
async fn survey_groups(drill: &Drill, aws: &Aws, fleet: &Fleet) -> Result<Vec<GroupPlan>> {
    let mut out = Vec::new();
    for g in &fleet.groups {
        let by_az = in_service_by_az(aws, &g.name).await?;
        let members: Vec<String> = by_az.iter().map(|(i, _)| i.clone()).collect();
        let victims: Vec<String> = by_az.iter().filter(|(_, az)| az == LOST_AZ).map(|(i, _)| i.clone()).collect();
        if members.len() < g.desired() as usize {
            return Err(Error::Precondition(format!(
                "{} has {} members in service, not its {}: provision a fresh fleet",
                g.name,
                members.len(),
                g.desired()
            )));
        }
        let (expect, why) = expected_group_outcome(
            members.len(),
            victims.len(),
            LOST_AZ,
            drill.cfg.max_unhealthy_percent,
            drill.cfg.min_unhealthy,
        );
        let arn = capacity(aws, &g.name).await?.arn;
        out.push(GroupPlan { name: g.name.clone(), arn, members, victims, expect, why });
    }
    Ok(out)
}

/// The fleet's databases: which have their writer in the lost AZ (as RDS says now). Refuses a fleet an
/// earlier run already failed over.
fn survey_databases(fleet: &Fleet, facts: &HashMap<String, DbFacts>) -> Result<Vec<DbPlan>> {
    let mut out = Vec::new();
    for d in &fleet.databases {
        let f = facts.get(&d.primary).ok_or_else(|| Error::NotFound { kind: "DB instance", id: d.primary.clone() })?;
        if f.status != "available" {
            return Err(Error::Precondition(format!(
                "{} is {}, not available: an earlier drill failed it; provision a fresh fleet",
                d.primary, f.status
            )));
        }
        if let Some(r) =
            d.replicas.iter().find(|r| facts.get(*r).is_some_and(|f| f.tags.contains_key(PROMOTED_FROM_TAG)))
        {
            return Err(Error::Precondition(format!(
                "{r} was already promoted by an earlier drill; provision a fresh fleet"
            )));
        }
        out.push(DbPlan {
            primary: d.primary.clone(),
            replicas: d.replicas.clone(),
            affected: f.az.as_deref() == Some(LOST_AZ),
        });
    }
    if !out.iter().any(|d| d.affected) {
        return Err(Error::Precondition(format!("no fleet database has its writer in {LOST_AZ}")));
    }
    Ok(out)
}

/// The alarm on a database's availability (`<db>-unavailable`, DatabaseConnections), as SNS delivers it.
fn db_alarm(arch: &Architecture, db: &str) -> Value {
    alarm_event_in(
        &arch.account_id(arch.db_account.as_ref()),
        &arch.topic_arn,
        &format!("{db}-unavailable"),
        "ALARM",
        "DatabaseConnections",
        "AWS/RDS",
        &[("DBInstanceIdentifier", db)],
    )
}

/// The RDS event of a failed database, as EventBridge delivers it.
fn db_failure_event(arch: &Architecture, db: &str) -> Value {
    rds_event_in(
        &arch.account_id(arch.db_account.as_ref()),
        db,
        "failure",
        "RDS-EVENT-0031",
        "The DB instance has failed due to an incompatible configuration or an underlying storage issue.",
    )
}

/// Milliseconds from `t0` to a decision.
fn ms_since(t0: &chrono::DateTime<chrono::Utc>, r: &AuditRecord) -> Option<u64> {
    chrono::DateTime::parse_from_rfc3339(&r.time)
        .ok()
        .map(|t| (t.with_timezone(&chrono::Utc) - *t0).num_milliseconds().max(0) as u64)
}

/// `acted ×20, refused ×20`.
fn tally<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records {
        *by.entry(r.outcome.as_str()).or_default() += 1;
    }
    if by.is_empty() {
        return "no decision".into();
    }
    by.iter().map(|(o, n)| format!("{o} ×{n}")).collect::<Vec<_>>().join(", ")
}

/// `its lost member`, `each of its 3 lost members`.
fn members_lost(n: usize) -> String {
    if n == 1 {
        "its lost member".into()
    } else {
        format!("each of its {n} lost members")
    }
}

fn labels(drill: &Drill, records: &[&AuditRecord]) -> Vec<String> {
    let mut a: Vec<String> = records.iter().map(|r| account_label(drill, r)).collect();
    a.sort_by_key(|l| (l != "hub", l.clone()));
    a.dedup();
    a
}

/// Runs `az-outage` (see the module documentation).
pub(super) async fn run(drill: &Drill, mode: Mode, arch: &Architecture, report: &mut DrillReport) -> Result<()> {
    let fleet = arch.fleet.as_ref().ok_or_else(|| {
        Error::Precondition(
            "az-outage drills the larger fleet, which this architecture lacks: provision it with `drill-cli \
             provision --fleet` (`scripts/gameday --scenario az-outage` does)"
                .into(),
        )
    })?;
    let web_account = arch.web_member();
    let db_account = arch.db_member();
    let web = aws_in(drill, web_account).await?;
    let db = aws_in(drill, db_account).await?;
    let groups = survey_groups(drill, &web, fleet).await?;
    let before = db_facts(&db).await?;
    let dbs = survey_databases(fleet, &before)?;
    let affected: Vec<&DbPlan> = dbs.iter().filter(|d| d.affected).collect();
    let victims: Vec<String> = groups.iter().flat_map(|g| g.victims.iter().cloned()).collect();
    let plan = survey(drill, arch, LOST_AZ).await?;

    if mode == Mode::DryRun {
        return dry_run(drill, arch, &groups, &affected, &plan, report).await;
    }

    // Inject: the AZ goes down.
    if !victims.is_empty() {
        require_drill_tag_ec2(&web, &victims).await?;
    }
    for d in &affected {
        let tagged = before.get(&d.primary).is_some_and(|f| f.tags.get(DRILL_TAG).map(String::as_str) == Some("true"));
        if !tagged {
            return Err(Error::Precondition(format!(
                "{} does not carry {DRILL_TAG}=true: live drills only touch drill-tagged resources",
                d.primary
            )));
        }
    }
    if !victims.is_empty() {
        stop_instances(&web, &victims).await?;
    }
    let stops = affected.iter().map(|d| {
        let rds = db.rds();
        let id = d.primary.clone();
        async move {
            rds.stop_db_instance()
                .db_instance_identifier(&id)
                .send()
                .await
                .map_err(|e| Error::aws("rds", "StopDBInstance", e))
        }
    });
    for r in futures::future::join_all(stops).await {
        r?;
    }
    report.injected.push(format!(
        "lost {LOST_AZ}: stopped its {} fleet instances{} ({})",
        victims.len(),
        in_account(web_account),
        groups
            .iter()
            .map(|g| format!("{} of {} in {}", g.victims.len(), g.members.len(), g.name))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    report.injected.push(format!(
        "lost {LOST_AZ}: stopped the writers of the {} fleet databases there{} (of {}): {}",
        affected.len(),
        in_account(db_account),
        dbs.len(),
        affected.iter().map(|d| d.primary.as_str()).collect::<Vec<_>>().join(", ")
    ));

    // Every event AWS would send, all at once: two per database, one per instance.
    let mut deliveries: Vec<(String, Value)> = Vec::new();
    let mut about: Vec<&str> = Vec::new();
    for d in &affected {
        deliveries.push((DB_FUNCTION.into(), db_failure_event(arch, &d.primary)));
        deliveries.push((DB_FUNCTION.into(), db_alarm(arch, &d.primary)));
        about.extend([d.primary.as_str(), d.primary.as_str()]);
    }
    for v in &victims {
        deliveries.push((HEALER_FUNCTION.into(), ec2_alarm(arch, v)));
        about.push(v);
    }
    report.injected.push(format!(
        "delivered {} events at once: an RDS failure event and an unavailable alarm for each failed database, a \
         status-check alarm for each lost instance",
        deliveries.len()
    ));
    let t0 = chrono::Utc::now();
    let since = t0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let clock = Instant::now();
    // The healer's decisions reach zone-evacuator through the suite's topic, as they are made.
    let relaying = relay(drill, HEALER_FUNCTION, ZONE_FUNCTION, &since);
    // (what the event was about, the problem its delivery had)
    let answers: Vec<(&str, String)> = drill
        .deliverer
        .deliver_all(deliveries)
        .await
        .into_iter()
        .zip(about)
        .filter_map(|(a, id)| problem(a).map(|p| (id, format!("event about {id}: {p}"))))
        .collect();
    let relay_problems = match relaying {
        Some(r) => r.finish().await,
        None => vec![],
    };
    let answers_about = |ids: &[&str]| -> Vec<String> {
        answers.iter().filter(|(id, _)| ids.contains(id)).map(|(_, p)| p.clone()).collect()
    };

    // Follow the ledger until every resource has its decision. Over HTTP and in process the answers
    // come after the decisions, so one reading is enough; through a topic, poll, then let stragglers
    // (a late duplicate) land before judging.
    let synchronous = !matches!(drill.deliverer, Deliverer::Topic { .. });
    let deadline = clock + drill.cfg.recovery_timeout;
    let mut settled_at: Option<Instant> = None;
    let records: Vec<AuditRecord> = loop {
        let records: Vec<AuditRecord> = drill
            .ctx
            .ledger
            .audit_since(&since)
            .await?
            .into_iter()
            .filter(|r| [DB_FUNCTION, HEALER_FUNCTION, ZONE_FUNCTION].contains(&r.function.as_str()))
            .collect();
        let decided = |function: &str, id: &str, outcome: Option<&str>| {
            records.iter().any(|r| r.function == function && r.target == id && outcome.is_none_or(|o| r.outcome == o))
        };
        let done = affected.iter().all(|d| decided(DB_FUNCTION, &d.primary, Some("acted")))
            && victims.iter().all(|v| decided(HEALER_FUNCTION, v, None))
            && plan.resources().iter().all(|arn| decided(ZONE_FUNCTION, arn, Some("acted")));
        if synchronous || Instant::now() >= deadline {
            break records;
        }
        match settled_at {
            Some(at) if at.elapsed() >= drill.cfg.poll_interval * 4 => break records,
            None if done => settled_at = Some(Instant::now()),
            _ => {}
        }
        tokio::time::sleep(drill.cfg.poll_interval.min(Duration::from_secs(5))).await;
    };
    let wait_ms = clock.elapsed().as_millis() as u64;

    for r in &records {
        if matches!(r.outcome.as_str(), "refused" | "duplicate") {
            report.guards_fired.push(describe(drill, r));
        }
    }

    // The AZ evacuated: confirmed on ARC and the groups (within the window: through a topic the
    // evacuation lands after the healer's decisions).
    let zone_records: Vec<&AuditRecord> = records.iter().filter(|r| r.function == ZONE_FUNCTION).collect();
    let evacuation = plan.verify();
    let (evacuated, evacuation_seen) = loop {
        let (ok, seen) = verify(drill, &evacuation, &t0).await?;
        if ok || Instant::now() >= deadline {
            break (ok, seen);
        }
        tokio::time::sleep(drill.cfg.poll_interval.min(Duration::from_secs(5))).await;
    };
    // A resource's evacuation time: its acted decision (its shift, or the writer's failover).
    let evacuated_at = |target: &str| {
        zone_records
            .iter()
            .filter(|r| r.target == target && r.outcome == "acted")
            .filter_map(|r| ms_since(&t0, r))
            .max()
    };
    let az_targets: Vec<String> = plan.load_balancers.iter().chain(&plan.writers).cloned().collect();
    let mut observed = format!("decisions {}; {evacuation_seen}", tally(zone_records.iter().copied()));
    if !relay_problems.is_empty() {
        observed.push_str(&format!("; {}", relay_problems.join("; ")));
    }
    report.steps.push(StepReport {
        name: format!("evacuate {LOST_AZ}: traffic shifted away, capacity raised, writers moved"),
        function: ZONE_FUNCTION.into(),
        expected: format!(
            "the web group's short-circuit on {LOST_AZ} reaches zone-evacuator through the suite's topic: {}",
            plan.describe()
        ),
        observed,
        detect_ms: zone_records.iter().filter_map(|r| ms_since(&t0, r)).min(),
        recover_ms: if evacuated {
            az_targets.iter().map(|t| evacuated_at(t)).chain([evacuated_at(&plan.az_id)]).flatten().max()
        } else {
            None
        },
        actions: zone_records
            .iter()
            .filter(|r| !groups.iter().any(|g| g.arn == r.target))
            .map(|r| describe(drill, r))
            .collect(),
        accounts: labels(drill, &zone_records),
        passed: evacuated && relay_problems.is_empty(),
    });

    // The databases: each failed one promoted exactly once, the others untouched.
    let after = db_facts(&db).await?;
    let mut db_problems = Vec::new();
    let mut db_timings = Vec::new();
    let db_records: Vec<&AuditRecord> = records.iter().filter(|r| r.function == DB_FUNCTION).collect();
    for d in &dbs {
        let mine: Vec<&AuditRecord> = db_records.iter().copied().filter(|r| r.target == d.primary).collect();
        let acted: Vec<&AuditRecord> = mine.iter().copied().filter(|r| r.outcome == "acted").collect();
        let promoted: Vec<&String> = d
            .replicas
            .iter()
            .filter(|r| after.get(*r).and_then(|f| f.tags.get(PROMOTED_FROM_TAG)) == Some(&d.primary))
            .collect();
        if !d.affected {
            let writer = after.get(&d.primary).map(|f| f.status.as_str()).unwrap_or("missing");
            if !acted.is_empty() || !promoted.is_empty() || writer != "available" {
                db_problems.push(format!(
                    "{} (writer outside {LOST_AZ}) was touched: {} acted, replicas promoted {promoted:?}, writer {writer}",
                    d.primary,
                    acted.len()
                ));
            }
            continue;
        }
        let mut why_not = Vec::new();
        if acted.len() != 1 {
            why_not.push(format!("{} acted decisions, not 1", acted.len()));
        }
        if promoted.len() != 1 {
            why_not.push(format!("{} replicas promoted from it, not 1", promoted.len()));
        }
        if let (Some(a), Some(p)) = (acted.first(), promoted.first()) {
            let f = &after[*p];
            if f.tags.get(PROMOTED_BY_TAG) != Some(&a.envelope.event_id) {
                why_not.push(format!(
                    "{p} was promoted by event {:?}, not by the acted decision's {}",
                    f.tags.get(PROMOTED_BY_TAG),
                    a.envelope.event_id
                ));
            }
            if f.status != "available" {
                why_not.push(format!("{p} is {}, not available", f.status));
            }
        }
        let passed = why_not.is_empty();
        let outcome = if passed {
            format!("promoted {} once; decisions {}", promoted[0], tally(mine.iter().copied()))
        } else {
            format!("{}; decisions {}", why_not.join("; "), tally(mine.iter().copied()))
        };
        if !passed {
            db_problems.push(format!("{}: {}", d.primary, why_not.join("; ")));
        }
        db_timings.push(ResourceTiming {
            kind: "database".into(),
            id: d.primary.clone(),
            group: None,
            detect_ms: mine.iter().filter_map(|r| ms_since(&t0, r)).min(),
            recover_ms: if passed { acted.first().and_then(|r| ms_since(&t0, r)) } else { None },
            outcome,
            passed,
        });
    }
    let detect = Distribution::of(db_timings.iter().filter_map(|t| t.detect_ms));
    let recover = Distribution::of(db_timings.iter().filter_map(|t| t.recover_ms));
    let all_recovered = recover.is_some_and(|r| r.count == affected.len());
    let untouched = dbs.len() - affected.len();
    let mut observed = format!(
        "{} of {} failed databases promoted exactly once; {} deliveries, decisions {}; the {untouched} others {}",
        db_timings.iter().filter(|t| t.passed).count(),
        affected.len(),
        2 * affected.len(),
        tally(db_records.iter().copied()),
        if db_problems.iter().any(|p| p.contains("outside")) { "NOT all untouched" } else { "untouched" }
    );
    if !db_problems.is_empty() {
        observed.push_str(&format!("; {}", db_problems.join("; ")));
    }
    let db_answers = answers_about(&affected.iter().map(|d| d.primary.as_str()).collect::<Vec<_>>());
    if !db_answers.is_empty() {
        observed.push_str(&format!("; {}", db_answers.join("; ")));
    }
    report.steps.push(StepReport {
        name: format!("promote each database whose writer was in {LOST_AZ}, exactly once"),
        function: DB_FUNCTION.into(),
        expected: format!(
            "each of the {} failed databases: one acted promotion of the two deliveries (the other refused or a \
             duplicate) and one replica tagged promoted from it by that decision's event; the {untouched} databases \
             elsewhere untouched",
            affected.len()
        ),
        observed,
        detect_ms: detect.map(|d| d.last),
        recover_ms: if all_recovered { recover.map(|d| d.last) } else { None },
        actions: db_records.iter().map(|r| describe(drill, r)).collect(),
        accounts: labels(drill, &db_records),
        passed: db_problems.is_empty(),
    });
    report.steps.push(StepReport {
        name: format!("heal in parallel: the last database within {MAX_SPREAD}x the first's time"),
        function: DB_FUNCTION.into(),
        expected: format!("last recovery ≤ {MAX_SPREAD} × first recovery"),
        observed: match recover {
            Some(r) if all_recovered => format!(
                "recovered first {:.2}s, median {:.2}s, last {:.2}s: the last took {:.2}x the first",
                r.first as f64 / 1000.0,
                r.median as f64 / 1000.0,
                r.last as f64 / 1000.0,
                r.spread()
            ),
            Some(r) => format!("only {} of {} databases recovered", r.count, affected.len()),
            None => "no database recovered".into(),
        },
        detect_ms: detect.map(|d| d.first),
        recover_ms: recover.filter(|_| all_recovered).map(|d| d.last),
        actions: vec![],
        accounts: vec![],
        passed: all_recovered && recover.is_some_and(|r| r.spread() <= MAX_SPREAD),
    });

    // The groups: each as the maxUnhealthy rule says, and shifted away with its capacity raised.
    let healer_records: Vec<&AuditRecord> = records.iter().filter(|r| r.function == HEALER_FUNCTION).collect();
    let mut held = Vec::new();
    let mut instance_timings = Vec::new();
    for g in &groups {
        let mut mine: Vec<&AuditRecord> =
            healer_records.iter().copied().filter(|r| g.victims.contains(&r.target)).collect();
        let now_members = group_members(&web, &g.name).await?;
        let now_in_service = in_service(&web, &g.name).await?;
        let mut problems = Vec::new();
        let (shifted, raised) = group_evacuated(&web, &plan, &g.name, &g.arn).await?;
        if !shifted.is_empty() {
            problems.push(shifted);
        }
        let evacuated_ms = if problems.is_empty() { evacuated_at(&g.arn) } else { None };
        mine.extend(zone_records.iter().copied().filter(|r| r.target == g.arn));
        let mut last_ms = None;
        let mut first_ms = None;
        for v in &g.victims {
            let decisions: Vec<&AuditRecord> = mine.iter().copied().filter(|r| &r.target == v).collect();
            let detect_ms = decisions.iter().filter_map(|r| ms_since(&t0, r)).min();
            let (ok, outcome, recover_ms) = match &g.expect {
                GroupOutcome::ShortCircuit { scope } => {
                    let tripped = decisions.iter().any(|r| {
                        r.outcome == "refused"
                            && r.envelope
                                .details
                                .get("shortCircuit")
                                .and_then(|s| s.get("scope"))
                                .and_then(Value::as_str)
                                == Some(scope.as_str())
                    });
                    let acted = decisions.iter().any(|r| r.outcome == "acted");
                    let kept = now_members.contains(v);
                    let ok = tripped && !acted && kept;
                    let outcome = if ok {
                        format!("held by the short-circuit ({scope}), as expected; {raised}")
                    } else {
                        format!(
                            "expected the short-circuit ({scope}): decisions {}, still in the group: {kept}",
                            tally(decisions.iter().copied())
                        )
                    };
                    // Its share carried by the group's other AZs once the group is evacuated.
                    (ok, outcome, if ok { evacuated_ms } else { None })
                }
                GroupOutcome::Replaced => {
                    let acted = decisions.iter().find(|r| r.outcome == "acted");
                    let gone = !now_in_service.contains(v);
                    let ok = acted.is_some() && gone && decisions.iter().filter(|r| r.outcome == "acted").count() == 1;
                    let replacement = acted
                        .and_then(|r| r.envelope.details.get("replacement"))
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string();
                    let outcome = if ok {
                        format!("replaced by {replacement}")
                    } else {
                        format!(
                            "expected a replacement: decisions {}, still in service: {}",
                            tally(decisions.iter().copied()),
                            !gone
                        )
                    };
                    let replaced = acted.and_then(|r| ms_since(&t0, r));
                    (ok, outcome, if ok { replaced.max(evacuated_ms).filter(|_| evacuated_ms.is_some()) } else { None })
                }
            };
            if !ok {
                problems.push(format!("{v}: {outcome}"));
            }
            let reaction = decisions.iter().filter_map(|r| ms_since(&t0, r)).max();
            last_ms = last_ms.max(reaction);
            first_ms = match (first_ms, detect_ms) {
                (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
                (a, b) => a.or(b),
            };
            instance_timings.push(ResourceTiming {
                kind: "instance".into(),
                id: v.clone(),
                group: Some(g.name.clone()),
                detect_ms,
                recover_ms,
                outcome,
                passed: ok,
            });
        }
        let (expected, capacity_ok) = match &g.expect {
            GroupOutcome::ShortCircuit { scope } => {
                held.extend(g.victims.iter().cloned());
                let missing: Vec<&String> = g.members.iter().filter(|m| !now_members.contains(m)).collect();
                if !missing.is_empty() {
                    problems.push(format!("members replaced: {missing:?}"));
                }
                (format!("short-circuit ({scope}) for {}: {}", members_lost(g.victims.len()), g.why), true)
            }
            GroupOutcome::Replaced => {
                let ok = now_in_service.len() >= g.members.len();
                if !ok {
                    problems.push(format!("{} in service, want {}", now_in_service.len(), g.members.len()));
                }
                (format!("{} replaced: {}", members_lost(g.victims.len()), g.why), ok)
            }
        };
        let expected = format!(
            "{expected}; and, {LOST_AZ} evacuated, the group shifted away from {} with its desired capacity raised \
             first ({})",
            plan.az_id,
            plan.groups.iter().find(|r| r.name == g.name).map(|r| format!("{} → {}", r.from, r.to)).unwrap_or_default()
        );
        let passed = problems.is_empty() && capacity_ok;
        let group_answers = answers_about(&g.victims.iter().map(String::as_str).collect::<Vec<_>>());
        let mut observed = format!(
            "{} of {} members lost; decisions {}; {} in service now; {raised}",
            g.victims.len(),
            g.members.len(),
            tally(mine.iter().copied()),
            now_in_service.len()
        );
        for p in problems.iter().chain(&group_answers) {
            observed.push_str(&format!("; {p}"));
        }
        report.steps.push(StepReport {
            name: format!("{}: maxUnhealthy as documented", g.name),
            function: HEALER_FUNCTION.into(),
            expected,
            observed,
            detect_ms: first_ms,
            // The group's service is back when it is evacuated (its lost share carried elsewhere), and
            // its own reaction (the replacement, the page) is in.
            recover_ms: if passed { evacuated_ms.max(last_ms).or(Some(wait_ms)) } else { None },
            actions: mine.iter().map(|r| describe(drill, r)).collect(),
            accounts: labels(drill, &mine),
            passed,
        });
    }
    report.resources.extend(db_timings);
    report.resources.extend(instance_timings);
    if !held.is_empty() {
        start_instances(&web, &held).await?;
        report.injected.push(format!("restarted the {} instances the short-circuit held, after the drill", held.len()));
    }
    Ok(())
}

/// Whether a group of the evacuation is shifted away from the AZ in ARC with its capacity raised:
/// `("", what)` when it is, `(the problem, what)` otherwise.
async fn group_evacuated(web: &Aws, plan: &Plan, name: &str, arn: &str) -> Result<(String, String)> {
    let Some(raise) = plan.groups.iter().find(|r| r.name == name) else {
        return Ok((format!("{name} is not in the evacuation's plan"), String::new()));
    };
    let shifted = arc_view(web, arn).await?.is_some_and(|v| v.shifted_away_from(&plan.az_id));
    let c = capacity(web, name).await?;
    let what = format!(
        "{} away from {} in ARC, desired {} → {} ({} in service)",
        if shifted { "shifted" } else { "NOT shifted" },
        plan.az_id,
        raise.from,
        c.desired,
        c.total()
    );
    let ok = shifted && c.desired >= raise.to && c.total() >= raise.to as usize;
    Ok((if ok { String::new() } else { format!("not evacuated as planned (want desired {}): {what}", raise.to) }, what))
}

/// Dry run: a manual dry-run request for each failed-to-be database and each instance in the AZ, all at
/// once; each must answer `dry-run`, and nothing changes.
async fn dry_run(
    drill: &Drill,
    arch: &Architecture,
    groups: &[GroupPlan],
    affected: &[&DbPlan],
    plan: &Plan,
    report: &mut DrillReport,
) -> Result<()> {
    let web_account = arch.web_member();
    let db_account = arch.db_member();
    let owned = |a: Option<&str>| a.map(str::to_string);
    run_step(
        drill,
        Step {
            name: format!("dry-run failover of the {} databases whose writer is in {LOST_AZ}", affected.len()),
            function: DB_FUNCTION,
            events: affected
                .iter()
                .map(|d| manual_in(drill, db_account, "failover", &d.primary, true, true, json!({})))
                .collect(),
            expected: "a dry-run decision for each, nothing changed".into(),
            want: vec!["dry-run"],
            want_count: affected.len(),
            verify: Verify::StillReplicas {
                account: owned(db_account),
                replicas: affected.iter().flat_map(|d| d.replicas.iter().cloned()).collect(),
            },
            ..Step::default()
        },
        report,
    )
    .await?;
    let victims: Vec<&String> = groups.iter().flat_map(|g| g.victims.iter()).collect();
    run_step(
        drill,
        Step {
            name: format!("dry-run replacement of the {} fleet instances in {LOST_AZ}", victims.len()),
            function: HEALER_FUNCTION,
            events: victims
                .iter()
                .map(|v| manual_in(drill, web_account, "replace", v, true, true, json!({})))
                .collect(),
            expected: "a dry-run decision for each, nothing changed".into(),
            want: vec!["dry-run"],
            want_count: victims.len(),
            verify: Verify::All(
                groups
                    .iter()
                    .map(|g| Verify::GroupUntouched {
                        account: owned(web_account),
                        asg: g.name.clone(),
                        members: g.members.clone(),
                    })
                    .collect(),
            ),
            ..Step::default()
        },
        report,
    )
    .await?;
    run_step(drill, plan.dry_run_step(drill), report).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::healer::{short_circuit, Health};

    fn health(id: String, az: &str, state: &str) -> Health {
        Health {
            instance_id: id,
            state: state.into(),
            az: Some(az.into()),
            instance_status: Some("ok".into()),
            system_status: Some("ok".into()),
            asg_health: Some("Healthy".into()),
            lifecycle: Some("InService".into()),
        }
    }

    /// The scenario's expectation for each fleet shape is what the healer's own rule decides, under
    /// the healer's default thresholds (the game day's), and what the module documentation says.
    #[test]
    fn each_fleet_shape_expects_what_the_healer_rule_decides() {
        let mut env = crate::config::Env::from_map(Default::default());
        let cfg = crate::healer::HealerConfig::read(&mut env);
        let (max, min) = (cfg.max_unhealthy_percent, cfg.min_unhealthy);
        let mut seen = Vec::new();
        for (name, per_az) in super::super::architecture::FLEET_GROUPS {
            let mut members = Vec::new();
            for (az, n) in AZS.iter().zip(per_az) {
                for i in 0..n {
                    let state = if *az == LOST_AZ { "stopped" } else { "running" };
                    members.push(health(format!("i-{name}-{az}-{i}"), az, state));
                }
            }
            let lost: Vec<&Health> = members.iter().filter(|h| h.state == "stopped").collect();
            let (expect, why) = expected_group_outcome(members.len(), lost.len(), LOST_AZ, max, min);
            for victim in &lost {
                let rule = short_circuit(&members, &victim.instance_id, max, min).map(|sc| sc.scope);
                let want = match &expect {
                    GroupOutcome::Replaced => None,
                    GroupOutcome::ShortCircuit { scope } => Some(scope.clone()),
                };
                assert_eq!(rule, want, "{name}: {why}");
            }
            seen.push((name, expect));
        }
        assert_eq!(
            seen,
            [
                ("web", GroupOutcome::ShortCircuit { scope: "az:us-east-1a".into() }),
                ("api", GroupOutcome::Replaced),
                ("batch", GroupOutcome::ShortCircuit { scope: "group".into() }),
            ]
        );
    }

    #[test]
    fn the_rule_restated_explains_itself() {
        let (o, why) = expected_group_outcome(9, 3, "us-east-1a", 40, 2);
        assert_eq!(o, GroupOutcome::ShortCircuit { scope: "az:us-east-1a".into() });
        assert!(why.contains("33% of the group, within the 40% threshold") && why.contains("per-AZ rule"), "{why}");
        let (o, why) = expected_group_outcome(3, 1, "us-east-1a", 40, 2);
        assert_eq!(o, GroupOutcome::Replaced);
        assert!(why.contains("below the minimum of 2"), "{why}");
        let (o, why) = expected_group_outcome(4, 2, "us-east-1a", 40, 2);
        assert_eq!(o, GroupOutcome::ShortCircuit { scope: "group".into() });
        assert!(why.contains("50% of the group, over the 40% threshold"), "{why}");
        // At 100% the per-AZ rule never trips: a large lost AZ is replaced member by member.
        assert_eq!(expected_group_outcome(9, 3, "us-east-1a", 100, 2).0, GroupOutcome::Replaced);
    }
}
