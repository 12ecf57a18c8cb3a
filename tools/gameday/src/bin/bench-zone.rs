//! bench-zone: how fast zone-evacuator takes a fleet out of one AZ (issue #28, item 6), against the
//! same evacuation of one account alone, measured in the same run (`scripts/bench-zone` builds and
//! runs it against a moto server it starts).
//!
//! ```text
//! bench-zone [--rounds N] [--lbs N] [--groups N] [--signals N] [--json FILE] [--profile DIR]
//! ```
//!
//! Each round makes two runs, in alternating order: **fleet**, the hub and two member accounts, and
//! **one account**, a member alone (a third of the fleet). Before each run moto is reset and each
//! account gets a VPC over three AZs, `--lbs` opted-in ALBs (default 17) with
//! `zonal_shift.config.enabled=true` and `--groups` opted-in Auto Scaling groups (default 17), one
//! in-service instance in each AZ, every one of them registered as a managed resource in a fresh ARC
//! stand-in. Then the first impaired signals of `us-east-1a` are delivered, in every account at once:
//! the per-AZ 5XX alarms (`selfheal-az|us-east-1a|5xx|<lb>`, EventBridge's `CloudWatch Alarm State
//! Change` with the account and the alarm ARN) of the first `--signals` load balancers (default 2,
//! `SELFHEAL_ZONE_MIN_SIGNALS`' default), each one invocation of the evacuator's Lambda entry, all
//! concurrent as Lambda would run them. Times are from the first signal delivered to each resource's
//! `StartZonalShift` as the stand-in recorded it (its start time). A run fails unless every opted-in
//! load balancer and group of each account is shifted away from the AZ's ID exactly once, and no
//! decision failed. The API calls are the evacuator's own (its call log), per evacuation and resource;
//! `--profile DIR` also writes each run's requests with their send times (ms from the first signal).
//!
//! The evacuator runs as deployed but in-process: the hub's context with the members in
//! `SELFHEAL_ACCOUNTS` (reached through `sts:AssumeRole`, which moto honours per account), cooldown 0
//! (the template's for this function), decisions audited in the ledger and published to an SNS topic.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_elasticloadbalancingv2::types::{LoadBalancerAttribute, LoadBalancerSchemeEnum, LoadBalancerTypeEnum};
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use gameday::arc::ArcStandIn;
use gameday::provision::{assume_in, provision_group};
use selfheal::clients::Aws;
use selfheal::config::{CommonConfig, Env};
use selfheal::db::{DbConfig, DbFailover, StaticLag};
use selfheal::drill::architecture::AZS;
use selfheal::zone::{actions, Evacuator, ZoneConfig, FUNCTION};
use selfheal::{Ctx, Envelope, Outcome};
use serde_json::{json, Value};

const USAGE: &str = "usage: bench-zone [--rounds N] [--lbs N] [--groups N] [--signals N] [--json FILE] [--profile DIR]";

/// moto's own account: the hub.
const HUB: &str = "123456789012";
const MEMBERS: [&str; 2] = ["111111111111", "222222222222"];
/// The AZ the signals name.
const AZ: &str = "us-east-1a";
const REGION: &str = "us-east-1";
const OPT_IN: (&str, &str) = ("selfheal:enabled", "true");

struct Opts {
    rounds: usize,
    lbs: usize,
    groups: usize,
    signals: usize,
    json: Option<String>,
    /// A folder for each run's request timeline (`--profile DIR`).
    profile: Option<String>,
}

fn flag(args: &[String], name: &str) -> Result<Option<usize>, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => match args.get(i + 1).and_then(|v| v.parse::<usize>().ok()).filter(|n| *n > 0) {
            Some(n) => Ok(Some(n)),
            None => Err(format!("{name} takes a positive number\n{USAGE}")),
        },
    }
}

fn opts() -> Result<Opts, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let known = ["--rounds", "--lbs", "--groups", "--signals", "--json", "--profile"];
    for (i, a) in args.iter().enumerate() {
        if i % 2 == 0 && !known.contains(&a.as_str()) {
            return Err(format!("unknown argument {a:?}\n{USAGE}"));
        }
    }
    let o = Opts {
        rounds: flag(&args, "--rounds")?.unwrap_or(3),
        lbs: flag(&args, "--lbs")?.unwrap_or(17),
        groups: flag(&args, "--groups")?.unwrap_or(17),
        signals: flag(&args, "--signals")?.unwrap_or(2),
        json: args.iter().position(|a| a == "--json").and_then(|i| args.get(i + 1)).cloned(),
        profile: args.iter().position(|a| a == "--profile").and_then(|i| args.get(i + 1)).cloned(),
    };
    if o.signals > o.lbs {
        return Err(format!("--signals ({}) cannot exceed --lbs ({}): one alarm per load balancer", o.signals, o.lbs));
    }
    Ok(o)
}

/// One account's opted-in resources.
struct Account {
    id: String,
    /// `(ARN, ELB dimension)`.
    lbs: Vec<(String, String)>,
    groups: Vec<String>,
    /// The AZ's ID in this account (`use1-az6`).
    az_id: String,
}

impl Account {
    fn arns(&self) -> impl Iterator<Item = &String> {
        self.lbs.iter().map(|(a, _)| a).chain(self.groups.iter())
    }
}

/// What one run measured.
struct Run {
    way: &'static str,
    /// Per account: milliseconds from the first signal to each resource's shift, sorted.
    shifts: BTreeMap<String, Vec<f64>>,
    /// Milliseconds from the first signal until every invocation returned.
    handled_ms: f64,
    resources: usize,
    evacuations: usize,
    calls: BTreeMap<String, u64>,
    /// Decisions returned, by `action outcome`.
    decisions: BTreeMap<String, usize>,
    problems: Vec<String>,
}

impl Run {
    fn all(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.shifts.values().flatten().copied().collect();
        v.sort_by(f64::total_cmp);
        v
    }
}

fn err(what: &str) -> impl Fn(selfheal::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// This process's CPU time (user + system), from `/proc/self/stat`, in milliseconds (10 ms ticks).
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<f64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    // Fields 14 and 15 of the file (utime, stime) are the 12th and 13th after the command's name.
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) * 10.0
}

/// `POST /moto-api/reset`: every account's state gone.
async fn reset_moto(endpoint: &str) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut sock = tokio::net::TcpStream::connect(host).await.map_err(|e| format!("moto at {host}: {e}"))?;
    let req =
        format!("POST /moto-api/reset HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    sock.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut answer = String::new();
    sock.read_to_string(&mut answer).await.map_err(|e| e.to_string())?;
    if !answer.starts_with("HTTP/1.1 200") {
        return Err(format!("moto reset: {}", answer.lines().next().unwrap_or("no answer")));
    }
    Ok(())
}

/// Creates `lbs` load balancers and `groups` groups in `aws`'s account and registers them with ARC.
async fn provision_account(
    aws: &Aws,
    account: &str,
    arc: &ArcStandIn,
    lbs: usize,
    groups: usize,
) -> Result<Account, String> {
    use aws_sdk_ec2::types::RequestLaunchTemplateData;
    let ec2 = aws.ec2();
    let zones =
        ec2.describe_availability_zones().send().await.map_err(|e| format!("DescribeAvailabilityZones: {e}"))?;
    let ids: HashMap<String, String> = zones
        .availability_zones()
        .iter()
        .filter_map(|z| Some((z.zone_name()?.to_string(), z.zone_id()?.to_string())))
        .collect();
    let azs: Vec<(&str, &str)> =
        AZS.iter().map(|n| (*n, ids.get(*n).map(String::as_str).unwrap_or("unknown"))).collect();
    let az_id = ids.get(AZ).cloned().ok_or(format!("{account} has no {AZ}"))?;

    let vpc = ec2.create_vpc().cidr_block("10.40.0.0/16").send().await.map_err(|e| format!("CreateVpc: {e}"))?;
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_string();
    let mut subnets = Vec::new();
    for (i, az) in AZS.iter().enumerate() {
        let s = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(format!("10.40.{i}.0/24"))
            .availability_zone(*az)
            .send()
            .await
            .map_err(|e| format!("CreateSubnet: {e}"))?;
        subnets.push(s.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_string());
    }
    let images = ec2.describe_images().owners("amazon").send().await.map_err(|e| format!("DescribeImages: {e}"))?;
    let image = images.images().iter().find_map(|i| i.image_id()).unwrap_or_default().to_string();
    let lt = ec2
        .create_launch_template()
        .launch_template_name("bench-zone")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(image)
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .build(),
        )
        .send()
        .await
        .map_err(|e| format!("CreateLaunchTemplate: {e}"))?;
    let template = lt.launch_template().and_then(|t| t.launch_template_id()).unwrap_or_default().to_string();

    let elb = aws.elbv2();
    let lbs: Vec<(String, String)> = stream::iter(0..lbs)
        .map(|i| {
            let (elb, subnets) = (elb.clone(), subnets.clone());
            async move {
                let tag = aws_sdk_elasticloadbalancingv2::types::Tag::builder().key(OPT_IN.0).value(OPT_IN.1).build();
                let lb = elb
                    .create_load_balancer()
                    .name(format!("bench-lb-{i:03}"))
                    .r#type(LoadBalancerTypeEnum::Application)
                    .scheme(LoadBalancerSchemeEnum::Internal)
                    .set_subnets(Some(subnets))
                    .tags(tag)
                    .send()
                    .await
                    .map_err(|e| format!("CreateLoadBalancer: {e}"))?;
                let arn = lb.load_balancers().first().and_then(|l| l.load_balancer_arn()).unwrap_or_default();
                elb.modify_load_balancer_attributes()
                    .load_balancer_arn(arn)
                    .attributes(
                        LoadBalancerAttribute::builder().key("zonal_shift.config.enabled").value("true").build(),
                    )
                    .send()
                    .await
                    .map_err(|e| format!("ModifyLoadBalancerAttributes: {e}"))?;
                let dimension = selfheal::zone::lbs::dimension(arn).unwrap_or_default().to_string();
                Ok::<_, String>((arn.to_string(), dimension))
            }
        })
        .buffered(4)
        .try_collect()
        .await?;
    let names: Vec<String> = (0..groups).map(|i| format!("bench-group-{i:03}")).collect();
    stream::iter(names.iter())
        .map(|name| {
            let (template, subnets) = (&template, &subnets);
            async move { provision_group(aws, name, template, subnets, &[1, 1, 1], &[OPT_IN]).await.map_err(err(name)) }
        })
        .buffer_unordered(4)
        .try_collect::<Vec<()>>()
        .await?;
    let mut group_arns = Vec::new();
    let mut pages = aws.autoscaling().describe_auto_scaling_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| format!("DescribeAutoScalingGroups: {e}"))?;
        group_arns
            .extend(page.auto_scaling_groups().iter().filter_map(|g| g.auto_scaling_group_arn()).map(String::from));
    }
    if group_arns.len() != groups {
        return Err(format!("{account}: {} groups listed, {groups} made", group_arns.len()));
    }
    for (arn, _) in &lbs {
        arc.register(arn, arn.rsplit('/').nth(1).unwrap_or("lb"), &azs, false);
    }
    for arn in &group_arns {
        arc.register(arn, arn.rsplit('/').next().unwrap_or("group"), &azs, false);
    }
    Ok(Account { id: account.to_string(), lbs, groups: group_arns, az_id })
}

/// The per-AZ 5XX alarm of `dimension` going to ALARM, as EventBridge delivers it from `account`.
fn alarm_event(account: &str, dimension: &str, now: DateTime<Utc>) -> Value {
    let name = format!("selfheal-az|{AZ}|5xx|{dimension}");
    let stamp = now.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch", "account": account, "time": now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": REGION, "resources": [format!("arn:aws:cloudwatch:{REGION}:{account}:alarm:{name}")],
        "detail": {
            "alarmName": name,
            "state": {"value": "ALARM", "timestamp": stamp,
                      "reason": "Threshold Crossed: 3 out of the last 3 datapoints were greater than the threshold."},
            "previousState": {"value": "OK", "reason": "", "timestamp": stamp},
            "configuration": {"metrics": [{"id": "m1", "returnData": true, "metricStat": {
                "period": 60, "stat": "Sum",
                "metric": {"namespace": "AWS/ApplicationELB", "name": "HTTPCode_Target_5XX_Count",
                           "dimensions": {"LoadBalancer": dimension, "AvailabilityZone": AZ}}}}]}
        }
    })
}

/// The evacuator as deployed, in the hub, with `aws` (ARC pointed at the stand-in).
async fn evacuator(aws: Aws, topic: &str) -> Result<Evacuator, String> {
    let table = format!("bench-zone-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let members = MEMBERS.join(",");
    let vars = [
        ("SELFHEAL_LEDGER_TABLE", table.as_str()),
        ("SELFHEAL_TOPIC_ARN", topic),
        ("SELFHEAL_DRY_RUN", "false"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
        ("SELFHEAL_HOME_ACCOUNT", HUB),
        ("SELFHEAL_ACCOUNTS", members.as_str()),
    ];
    let mut env = Env::from_map(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    let common = CommonConfig::read(&mut env, FUNCTION);
    let zone = ZoneConfig::read(&mut env);
    let db = DbConfig::read(&mut env);
    env.finish().map_err(|e| e.to_string())?;
    let ctx = Ctx::new(common, aws);
    ctx.ledger.ensure_table().await.map_err(err("ledger table"))?;
    let db = DbFailover::new(ctx.clone(), db).with_lag_source(Arc::new(StaticLag::default()));
    Ok(Evacuator::new(ctx, zone, db))
}

async fn run(way: &'static str, accounts: &[&str], o: &Opts, moto: &str) -> Result<Run, String> {
    reset_moto(moto).await?;
    let hub = Aws::from_env().await;
    let arc = ArcStandIn::start().await;
    let mut placed = Vec::new();
    for account in accounts {
        let aws = if *account == HUB { hub.clone() } else { assume_in(&hub, account).await.map_err(err(account))? };
        placed.push(provision_account(&aws, account, &arc, o.lbs, o.groups).await?);
    }
    let topic = hub.sns().create_topic().name("bench-zone").send().await.map_err(|e| format!("CreateTopic: {e}"))?;
    let topic = topic.topic_arn().unwrap_or_default().to_string();
    let aws = Aws::from_sdk_config(hub.sdk.clone()).with_endpoint("arc-zonal-shift", arc.endpoint());
    let ev = evacuator(aws, &topic).await?;
    // The ledger table's creation is the bench's setup, not the evacuation's.
    ev.ctx().aws.calls.clear();
    let clock = Arc::new(std::sync::OnceLock::<Instant>::new());
    if o.profile.is_some() {
        // Each request's send time, from the first signal: where the time between shifts goes.
        let c = clock.clone();
        let observe: selfheal::clients::CallObserver =
            Arc::new(move |_| c.get().map(|t| json!(t.elapsed().as_secs_f64() * 1000.0)));
        ev.ctx().aws.calls.record_requests(Some(observe));
    }
    let resources: usize = placed.iter().map(|a| a.lbs.len() + a.groups.len()).sum();
    eprintln!("   {way}: {} account(s), {resources} resources provisioned; delivering the signals", placed.len());

    // Every account's first signals at once, each its own invocation.
    let t0 = Utc::now();
    let started = Instant::now();
    let _ = clock.set(started);
    let cpu0 = cpu_ms();
    let events: Vec<Value> =
        placed.iter().flat_map(|a| a.lbs.iter().take(o.signals).map(|(_, d)| alarm_event(&a.id, d, t0))).collect();
    let answers = futures::future::join_all(events.iter().map(|e| ev.handle(e))).await;
    let handled_ms = started.elapsed().as_secs_f64() * 1000.0;
    let cpu = cpu_ms() - cpu0;
    eprintln!("   this process's CPU while handling: {cpu:.0} ms (its wall time {handled_ms:.0} ms)");

    let mut problems = Vec::new();
    let mut decisions: Vec<Envelope> = Vec::new();
    for a in answers {
        match a {
            Ok(v) => match serde_json::from_value::<Vec<Envelope>>(v["decisions"].clone()) {
                Ok(mut d) => decisions.append(&mut d),
                Err(e) => problems.push(format!("decisions unreadable: {e}")),
            },
            Err(e) => problems.push(format!("an invocation failed: {e}")),
        }
    }
    for d in decisions.iter().filter(|d| d.outcome == Outcome::Failed) {
        problems.push(format!("{} {} failed: {}", d.action, d.target.id, d.reason));
    }
    let evacuations = decisions.iter().filter(|d| d.action == actions::EVACUATE && d.outcome == Outcome::Acted).count();
    if evacuations != placed.len() {
        problems.push(format!("{evacuations} evacuations started for {} accounts", placed.len()));
    }

    let mut tally = BTreeMap::new();
    for d in &decisions {
        *tally.entry(format!("{} {}", d.action, d.outcome.as_str())).or_insert(0) += 1;
    }
    let shifts = arc.shifts();
    let mut per_account = BTreeMap::new();
    for a in &placed {
        let mut times = Vec::new();
        for arn in a.arns() {
            let mine: Vec<_> = shifts.iter().filter(|s| &s.resource_identifier == arn).collect();
            match mine.as_slice() {
                [s] if s.status == "ACTIVE" && s.away_from == a.az_id => {
                    times.push((s.start_time - t0).num_microseconds().unwrap_or(0) as f64 / 1000.0)
                }
                [] => problems.push(format!("{arn} was not shifted")),
                many => problems.push(format!(
                    "{arn}: {} shifts ({})",
                    many.len(),
                    many.iter()
                        .map(|s| format!("{} away from {}", s.status, s.away_from))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        times.sort_by(f64::total_cmp);
        per_account.insert(a.id.clone(), times);
    }
    if let Some(dir) = &o.profile {
        let lines: String = ev
            .ctx()
            .aws
            .calls
            .records()
            .iter()
            .map(|r| {
                let at = r.observed.as_ref().and_then(Value::as_f64).unwrap_or(f64::NAN);
                format!("{at:.1}\t{}\t{}\t{}\n", r.operation, r.access_key_id.as_deref().unwrap_or("-"), r.uri)
            })
            .collect();
        let path = format!("{dir}/profile-{}-{}.tsv", way.replace(' ', "-"), Utc::now().timestamp_millis());
        std::fs::write(&path, lines).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(Run {
        way,
        shifts: per_account,
        handled_ms,
        resources,
        evacuations: placed.len(),
        calls: ev.ctx().aws.calls.executions(),
        decisions: tally,
        problems,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn s(ms: f64) -> String {
    format!("{:.2} s", ms / 1000.0)
}

/// First, last, last/first and handler time of runs, medians over rounds.
struct Row {
    first: f64,
    last: f64,
    spread: f64,
    handled: f64,
}

fn row(runs: &[&Run], pick: impl Fn(&Run) -> Vec<f64>) -> Row {
    let firsts = runs.iter().map(|r| pick(r).first().copied().unwrap_or(f64::NAN)).collect::<Vec<_>>();
    let lasts = runs.iter().map(|r| pick(r).last().copied().unwrap_or(f64::NAN)).collect::<Vec<_>>();
    let spreads = firsts.iter().zip(&lasts).map(|(f, l)| l / f.max(1.0)).collect();
    Row {
        first: median(firsts),
        last: median(lasts),
        spread: median(spreads),
        handled: median(runs.iter().map(|r| r.handled_ms).collect()),
    }
}

fn report(o: &Opts, runs: &[Run]) {
    let fleet: Vec<&Run> = runs.iter().filter(|r| r.way == "fleet").collect();
    let alone: Vec<&Run> = runs.iter().filter(|r| r.way == "one account").collect();
    let per = o.lbs + o.groups;
    println!();
    println!(
        "zone-evacuator, {AZ} evacuated: fleet = 3 accounts x ({} ALBs + {} groups) = {} resources; one account = {per}; \
         {} signal(s) per account; {} round(s), medians",
        o.lbs,
        o.groups,
        3 * per,
        o.signals,
        o.rounds
    );
    println!();
    println!("| run | first shift | last shift | last / first | every invocation returned |");
    println!("|---|---:|---:|---:|---:|");
    let f = row(&fleet, Run::all);
    let a = row(&alone, Run::all);
    for (name, r) in [(format!("fleet ({} resources)", 3 * per), &f), (format!("one account ({per})"), &a)] {
        println!("| {name} | {} | {} | {:.2}x | {} |", s(r.first), s(r.last), r.spread, s(r.handled));
    }
    for account in [HUB, MEMBERS[0], MEMBERS[1]] {
        let r = row(&fleet, |run| run.shifts.get(account).cloned().unwrap_or_default());
        println!("| fleet: {account} | {} | {} | {:.2}x | |", s(r.first), s(r.last), r.spread);
    }
    println!(
        "| fleet / one account | {:.2}x | {:.2}x | | {:.2}x |",
        f.first / a.first,
        f.last / a.last,
        f.handled / a.handled
    );
    println!();
    println!("API calls of the evacuator (its call log), median over rounds:");
    println!();
    println!("| call | fleet, per evacuation | one account | per resource (fleet) |");
    println!("|---|---:|---:|---:|");
    let mut ops: Vec<String> = runs.iter().flat_map(|r| r.calls.keys().cloned()).collect();
    ops.sort();
    ops.dedup();
    let per_evac = |rs: &[&Run], op: Option<&str>| {
        median(
            rs.iter()
                .map(|r| {
                    let n = match op {
                        Some(op) => r.calls.get(op).copied().unwrap_or(0),
                        None => r.calls.values().sum(),
                    };
                    n as f64 / r.evacuations.max(1) as f64
                })
                .collect(),
        )
    };
    for op in ops.iter().map(|o| Some(o.as_str())).chain([None]) {
        let (fe, ae) = (per_evac(&fleet, op), per_evac(&alone, op));
        println!("| {} | {fe:.1} | {ae:.1} | {:.2} |", op.unwrap_or("**total**"), fe / per as f64);
    }
}

async fn main_inner() -> Result<bool, String> {
    let o = opts()?;
    let moto = std::env::var("AWS_ENDPOINT_URL").map_err(|_| "AWS_ENDPOINT_URL must name the moto server")?;
    let fleet: Vec<&str> = [HUB].into_iter().chain(MEMBERS).collect();
    let alone = [MEMBERS[0]];
    let mut runs = Vec::new();
    for round in 1..=o.rounds {
        let order: [(&'static str, &[&str]); 2] = if round % 2 == 1 {
            [("fleet", &fleet), ("one account", &alone)]
        } else {
            [("one account", &alone), ("fleet", &fleet)]
        };
        for (way, accounts) in order {
            eprintln!("== round {round}: {way}");
            let r = run(way, accounts, &o, &moto).await?;
            let all = r.all();
            eprintln!(
                "   first shift {}, last {}, every invocation returned after {}, {} calls for {} resources{}",
                s(all.first().copied().unwrap_or(f64::NAN)),
                s(all.last().copied().unwrap_or(f64::NAN)),
                s(r.handled_ms),
                r.calls.values().sum::<u64>(),
                r.resources,
                if r.problems.is_empty() { String::new() } else { format!("; {} problem(s)", r.problems.len()) }
            );
            let tally: Vec<String> = r.decisions.iter().map(|(k, n)| format!("{k} {n}")).collect();
            eprintln!("   decisions: {}", tally.join(", "));
            runs.push(r);
        }
    }
    report(&o, &runs);
    if let Some(path) = &o.json {
        let out: Vec<Value> = runs
            .iter()
            .map(|r| {
                json!({"way": r.way, "shiftsMs": r.shifts, "handledMs": r.handled_ms, "resources": r.resources,
                       "evacuations": r.evacuations, "calls": r.calls, "decisions": r.decisions,
                       "problems": r.problems})
            })
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&out).unwrap_or_default())
            .map_err(|e| format!("{path}: {e}"))?;
    }
    let problems: Vec<String> =
        runs.iter().flat_map(|r| r.problems.iter().map(move |p| format!("{}: {p}", r.way))).collect();
    if !problems.is_empty() {
        eprintln!("\nruns with problems:");
        for p in problems.iter().take(40) {
            eprintln!("  {p}");
        }
    }
    Ok(problems.is_empty())
}

#[tokio::main]
async fn main() -> ExitCode {
    match main_inner().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench-zone: {e}");
            ExitCode::from(2)
        }
    }
}
