//! The drill end to end, in process: the reference architecture provisioned in moto (and checked
//! piece by piece), a scenario run
//! against the real instance-healer handler, and a scenario whose expected outcome is not met (the
//! healer is configured with another opt-in tag, so it refuses) failing the run; the zone scenarios
//! (`gray-az`, `two-az`, live and dry-run) against the real zone-evacuator with ARC at the harness's
//! stand-in; and the whole game day in process, in one account and spread over three (each fault
//! healed in the member account it happened in, read back with that account's credentials; `lose-az`
//! evacuating the AZ the healer short-circuits on).
//! The full game day under the Lambda runtime emulator is `scripts/gameday`.

use std::sync::Arc;
use std::time::Duration;

use harness::arc::ArcStandIn;
use harness::on_big_stack;
use harness::{sdk_config, unique};
use selfheal::clients::Aws;
use selfheal::config::{CommonConfig, Env};
use selfheal::drill::deliver::{BoxFuture, Deliverer};
use selfheal::drill::{self, Architecture, Drill, DrillConfig, DrillRequest, Mode, Scenario};
use selfheal::healer::{Healer, HealerConfig};
use selfheal::zone::{Evacuator, ZoneConfig};
use selfheal::Ctx;
use serde_json::{json, Value};

fn vars(arch: &Architecture, extra: &[(&str, &str)]) -> Env {
    let mut map: std::collections::HashMap<String, String> = gameday::gameday_env(arch).into_iter().collect();
    for (k, v) in extra {
        map.insert(k.to_string(), v.to_string());
    }
    Env::from_map(map)
}

async fn setup() -> (Aws, Architecture) {
    let aws = Aws::from_sdk_config(sdk_config().await);
    let prefix = unique("gd");
    let arch = gameday::provision::provision(&aws, &prefix, &format!("{prefix}-ledger"), ("selfheal:enabled", "true"))
        .await
        .unwrap();
    (aws, arch)
}

fn drill_with_healer(aws: &Aws, arch: &Architecture, healer_vars: &[(&str, &str)]) -> Drill {
    let mut env = vars(arch, healer_vars);
    let common = CommonConfig::read(&mut env, "instance-healer");
    let cfg = HealerConfig::read(&mut env);
    env.finish().unwrap();
    let healer = Arc::new(Healer::new(Ctx::new(common, aws.clone()), cfg));
    let deliverer = Deliverer::InProcess(Arc::new(move |function: String, event: Value| -> BoxFuture {
        let healer = healer.clone();
        Box::pin(async move {
            match function.as_str() {
                "instance-healer" => healer.handle(&event).await,
                other => Err(selfheal::Error::Precondition(format!("no {other} in this test"))),
            }
        })
    }));
    let mut env = vars(arch, &[]);
    let common = CommonConfig::read(&mut env, drill::FUNCTION);
    let mut cfg = DrillConfig::read(&mut env);
    env.finish().unwrap();
    cfg.recovery_timeout = Duration::from_secs(15);
    cfg.poll_interval = Duration::from_millis(200);
    Drill { ctx: Ctx::new(common, aws.clone()), cfg, deliverer }
}

#[tokio::test]
async fn provisioning_builds_the_whole_reference_architecture() {
    let (aws, arch) = setup().await;
    // Web tier: six instances over three AZs, behind an ALB whose target group has them as targets.
    let group =
        aws.autoscaling().describe_auto_scaling_groups().auto_scaling_group_names(&arch.asg_name).send().await.unwrap();
    let group = &group.auto_scaling_groups()[0];
    let azs: std::collections::HashSet<_> = group.instances().iter().filter_map(|i| i.availability_zone()).collect();
    assert_eq!((group.instances().len(), azs.len()), (6, 3), "{group:?}");
    let tg = arch.target_group_arn.clone().expect("a target group");
    let elb = aws.elbv2();
    let health = elb.describe_target_health().target_group_arn(&tg).send().await.unwrap();
    let mut targets: Vec<&str> =
        health.target_health_descriptions().iter().filter_map(|t| t.target().and_then(|t| t.id())).collect();
    let mut members: Vec<&str> = group.instances().iter().filter_map(|i| i.instance_id()).collect();
    targets.sort();
    members.sort();
    assert_eq!(targets, members);
    let lb = elb.describe_load_balancers().load_balancer_arns(arch.load_balancer_arn.clone().unwrap()).send().await;
    let lb = lb.unwrap();
    assert_eq!(lb.load_balancers()[0].availability_zones().len(), 3);
    let listeners =
        elb.describe_listeners().load_balancer_arn(arch.load_balancer_arn.clone().unwrap()).send().await.unwrap();
    let action = &listeners.listeners()[0].default_actions()[0];
    assert_eq!(action.target_group_arn(), Some(tg.as_str()));
    let tgs = elb.describe_target_groups().target_group_arns(&tg).send().await.unwrap();
    assert_eq!(tgs.target_groups()[0].health_check_path(), Some("/health"));
    // Ready for an AZ evacuation: ARC may shift the load balancer.
    let attrs = elb
        .describe_load_balancer_attributes()
        .load_balancer_arn(arch.load_balancer_arn.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        attrs.attributes().iter().any(|a| a.key() == Some("zonal_shift.config.enabled") && a.value() == Some("true")),
        "{attrs:?}"
    );
    assert_eq!(arch.opt_in_value.as_deref(), Some("true"));

    // Static content: a versioned bucket with the index page.
    let bucket = arch.static_bucket.clone().expect("a bucket");
    let s3 = aws.s3();
    // (moto answers GetBucketVersioning with a root element the SDK rejects; an object's version id is
    // the evidence instead: an unversioned bucket gives none.)
    let index = s3.get_object().bucket(&bucket).key("index.html").send().await.unwrap();
    assert!(index.version_id().is_some_and(|v| !v.is_empty() && v != "null"), "{:?}", index.version_id());
    let tags = s3.get_bucket_tagging().bucket(&bucket).send().await.unwrap();
    assert!(tags.tag_set().iter().any(|t| t.key() == "selfheal:drill" && t.value() == "true"), "{tags:?}");

    // Data tier: Multi-AZ primary with two replicas; front door: the failover pair with health checks.
    let primary = aws.rds().describe_db_instances().db_instance_identifier(&arch.db_primary).send().await.unwrap();
    let primary = &primary.db_instances()[0];
    assert_eq!(primary.multi_az(), Some(true));
    assert_eq!(primary.read_replica_db_instance_identifiers().len(), 2);
    let records = aws.route53().list_resource_record_sets().hosted_zone_id(&arch.zone_id).send().await.unwrap();
    let app: Vec<_> = records.resource_record_sets().iter().filter(|r| r.name() == arch.app_record).collect();
    assert_eq!(app.len(), 2, "{app:?}");
    assert!(app.iter().all(|r| r.failover().is_some() && r.health_check_id().is_some()), "{app:?}");
}

#[tokio::test]
async fn lose_instance_heals_in_process_and_reports_time_to_recover() {
    let (aws, arch) = setup().await;
    let drill = drill_with_healer(&aws, &arch, &[]);
    let req = DrillRequest { scenarios: vec![Scenario::LoseInstance], mode: Mode::Live };
    let reports = drill.run(&req, &arch).await.unwrap();
    let r = &reports[0];
    assert!(r.passed, "{}", r.render());
    assert!(r.recover_ms().is_some());
    assert_eq!(r.injected.len(), 1);
    assert!(r.steps[0].actions[0].contains(": acted"), "{:?}", r.steps[0].actions);
    // The resources agree: the group is at capacity without the stopped instance.
    let group =
        aws.autoscaling().describe_auto_scaling_groups().auto_scaling_group_names(&arch.asg_name).send().await.unwrap();
    assert_eq!(group.auto_scaling_groups()[0].instances().len(), arch.asg_desired as usize);

    // Scored against the defaults, this real recovery meets its Hardware RTO; against a target it
    // cannot meet (1 ms: any real heal takes longer), the same evidence misses it by the difference.
    use drill::scorecard::{assess, Verdict};
    use drill::targets::TargetSource;
    let met = assess(&drill, &reports, &arch, &TargetSource::Defaults, false).await;
    assert_eq!(met.scores[0].rto.word(), "met", "{}", met.render());
    let measured = met.scores[0].rto.measured_secs().expect("a recovery is timed");
    let strict = TargetSource::Json {
        text: r#"{"Hardware":{"rtoInSecs":0,"rpoInSecs":60}}"#.into(),
        source: "a 0 s Hardware RTO".into(),
    };
    let missed = assess(&drill, &reports, &arch, &strict, false).await;
    match &missed.scores[0].rto {
        Verdict::Missed { measured_secs, target_secs: 0, by_secs, lower_bound: false } => {
            assert!(*measured_secs > 0.0 && (*by_secs - *measured_secs).abs() < 1e-9, "{}", missed.render());
            assert!((*measured_secs - measured).abs() < 1e-9, "the same evidence, scored twice");
        }
        other => panic!("expected a missed RTO, got {other:?}: {}", missed.render()),
    }
    assert!(missed.render().contains("missed by"), "{}", missed.render());
    assert!(missed.render().contains("1 missed"), "{}", missed.render());
}

#[tokio::test]
async fn a_scenario_whose_expected_outcome_is_not_met_fails_the_run() {
    let (aws, arch) = setup().await;
    // Broken on purpose: the healer looks for another opt-in tag, so it refuses to replace anything.
    let drill = drill_with_healer(&aws, &arch, &[("SELFHEAL_OPT_IN_TAG", "selfheal:other")]);
    let mut cfg = drill.cfg.clone();
    cfg.recovery_timeout = Duration::from_secs(2);
    let drill = Drill { cfg, ..drill };
    let req = DrillRequest { scenarios: vec![Scenario::LoseInstance], mode: Mode::Live };
    let reports = drill.run(&req, &arch).await.unwrap();
    assert!(!reports[0].passed, "{}", reports[0].render());
    let text = drill::report::render_all(&reports);
    assert!(text.contains("FAIL"), "{text}");
    assert!(text.contains("0 of 1 scenarios passed"), "{text}");
    assert!(reports[0].steps[0].observed.contains("refused"), "{}", reports[0].steps[0].observed);
}

#[tokio::test]
async fn a_dry_run_drill_injects_nothing_and_changes_nothing() {
    let (aws, arch) = setup().await;
    let drill = drill_with_healer(&aws, &arch, &[]);
    let before =
        aws.autoscaling().describe_auto_scaling_groups().auto_scaling_group_names(&arch.asg_name).send().await.unwrap();
    let req = DrillRequest { scenarios: vec![Scenario::LoseInstance], mode: Mode::DryRun };
    let reports = drill.run(&req, &arch).await.unwrap();
    assert!(reports[0].passed, "{}", reports[0].render());
    assert!(reports[0].injected.is_empty());
    let after =
        aws.autoscaling().describe_auto_scaling_groups().auto_scaling_group_names(&arch.asg_name).send().await.unwrap();
    let ids = |g: &aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput| {
        let mut v: Vec<String> =
            g.auto_scaling_groups()[0].instances().iter().filter_map(|i| i.instance_id()).map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&before), ids(&after));
}

#[test]
fn live_drills_need_the_confirmation_phrase() {
    let payload = json!({"source": "selfheal.manual", "action": "drill", "params": {"scenario": "lose-instance", "mode": "live"}});
    let err = drill::parse_request(&payload).unwrap_err().to_string();
    assert!(err.contains(drill::CONFIRM_PHRASE), "{err}");
    let ok = json!({"source": "selfheal.manual", "action": "drill",
        "params": {"scenario": "all", "mode": "live", "confirm": drill::CONFIRM_PHRASE}});
    let req = drill::parse_request(&ok).unwrap();
    assert_eq!(req.scenarios.len(), Scenario::ALL.len());
    let unknown = json!({"source": "selfheal.manual", "action": "drill", "params": {"scenario": "lose-everything"}});
    assert!(drill::parse_request(&unknown).unwrap_err().to_string().contains("unknown scenario"));
}

/// The whole game day in process, every remediation function on its own clients, and then the check
/// that each function called only AWS actions its role in `infra/template.yaml` grants (and, in
/// `game_day_in_process`, that each call passes its statements' conditions).
#[test]
fn the_game_day_in_process_passes_and_every_call_is_granted_by_the_template() {
    on_big_stack(|| async {
        let (_, reports, calls) = game_day_in_process(1).await;
        let text = drill::report::render_all(&reports);
        assert!(reports.iter().all(|r| r.accounts() == ["hub"]), "{text}");
        let mut ungranted = Vec::new();
        for (function, calls) in &calls {
            assert!(!calls.is_empty(), "{function} made no call at all");
            for call in calls {
                if !crate::infra::is_granted(function, call) {
                    ungranted.push(format!("{function}: {call}"));
                }
            }
        }
        ungranted.sort();
        ungranted.dedup();
        assert!(ungranted.is_empty(), "calls the template does not grant:\n{}", ungranted.join("\n"));
    });
}

/// The game day over three accounts: the web tier in 111111111111, the data tier in 222222222222, the
/// backup volumes one in each account, DNS in the hub. Every scenario passes, the table names the
/// accounts, and the resources healed are healed in their member account (read with its credentials;
/// the hub does not even see them).
#[test]
fn the_game_day_over_three_accounts_heals_each_fault_in_the_account_it_happened_in() {
    on_big_stack(|| async {
        const HUB: &str = "123456789012";
        const WEB: &str = "111111111111";
        const DB: &str = "222222222222";
        let (arch, reports, _) = game_day_in_process(3).await;
        let text = drill::report::render_all(&reports);
        assert_eq!(arch.home_account.as_deref(), Some(HUB));
        assert_eq!((arch.web_account.as_deref(), arch.db_account.as_deref()), (Some(WEB), Some(DB)));
        assert_eq!(arch.volume_accounts, [HUB, WEB, DB]);
        assert!(reports.iter().all(|r| r.passed), "{text}");
        let by_name = |n: &str| reports.iter().find(|r| r.scenario == n).unwrap_or_else(|| panic!("{n}: {text}"));
        assert_eq!(by_name("lose-instance").accounts(), [WEB], "{text}");
        assert_eq!(by_name("lose-az").accounts(), [WEB], "{text}");
        assert_eq!(by_name("gray-az").accounts(), [WEB], "{text}");
        assert_eq!(by_name("lose-primary-db").accounts(), [DB], "{text}");
        assert_eq!(by_name("region-failover").accounts(), ["hub", DB], "{text}");
        assert_eq!(by_name("stale-backups").accounts(), ["hub", WEB, DB], "{text}");
        assert!(text.contains(&format!("in {WEB}: acted")), "{text}");

        let hub = Aws::from_sdk_config(sdk_config().await);
        let web = gameday::provision::assume_in(&hub, WEB).await.unwrap();
        let db = gameday::provision::assume_in(&hub, DB).await.unwrap();

        // lose-instance: the replaced instance was A's; A's group is back at capacity without it.
        let replaced = by_name("lose-instance").steps[0]
            .actions
            .iter()
            .find(|a| a.contains(": acted"))
            .and_then(|a| a.split_whitespace().nth(2))
            .unwrap_or_else(|| panic!("no acted decision: {text}"))
            .to_string();
        let group = web
            .autoscaling()
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&arch.asg_name)
            .send()
            .await
            .unwrap();
        let group = &group.auto_scaling_groups()[0];
        let in_service: Vec<&str> = group
            .instances()
            .iter()
            .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
            .filter_map(|i| i.instance_id())
            .collect();
        assert!(in_service.len() >= arch.asg_desired as usize, "{group:?}");
        assert!(!in_service.contains(&replaced.as_str()), "{replaced} is still in service: {group:?}");
        let seen_by_hub =
            hub.autoscaling().describe_auto_scaling_groups().auto_scaling_group_names(&arch.asg_name).send().await;
        assert!(seen_by_hub.unwrap().auto_scaling_groups().is_empty(), "the web tier is not the hub's");

        // lose-primary-db: a replica in B was promoted; the hub's database record points at a database
        // promoted in B (region-failover's promotion of the accounts standby, also in B, repoints it last).
        let promoted_in_b = |ids: Vec<String>| {
            let db = db.clone();
            async move {
                let mut endpoints = Vec::new();
                for r in ids {
                    let out = db.rds().describe_db_instances().db_instance_identifier(&r).send().await.unwrap();
                    let i = &out.db_instances()[0];
                    if i.read_replica_source_db_instance_identifier().is_none()
                        || i.tag_list().iter().any(|t| t.key() == Some("selfheal:promoted-from"))
                    {
                        endpoints.extend(i.endpoint().and_then(|e| e.address()).map(str::to_string));
                    }
                }
                endpoints
            }
        };
        let orders = promoted_in_b(arch.db_replicas.clone()).await;
        assert!(!orders.is_empty(), "no orders replica promoted in {DB}: {text}");
        let mut endpoints = orders;
        endpoints.extend(promoted_in_b(arch.region_db_replica.clone().into_iter().collect()).await);
        assert!(hub.rds().describe_db_instances().db_instance_identifier(&arch.db_primary).send().await.is_err());
        let records = hub.route53().list_resource_record_sets().hosted_zone_id(&arch.zone_id).send().await.unwrap();
        let cname = records
            .resource_record_sets()
            .iter()
            .find(|r| r.name().trim_end_matches('.') == arch.db_record.trim_end_matches('.'))
            .and_then(|r| r.resource_records().first())
            .map(|r| r.value().trim_end_matches('.').to_string())
            .unwrap_or_default();
        assert!(endpoints.iter().any(|e| e.trim_end_matches('.') == cname), "{cname} is not one of {endpoints:?}");

        // stale-backups: each volume snapshotted in its own account.
        for (volume, account) in arch.backup_volumes.iter().zip(&arch.volume_accounts) {
            let aws = match account.as_str() {
                WEB => &web,
                DB => &db,
                _ => &hub,
            };
            let snaps = aws
                .ec2()
                .describe_snapshots()
                .owner_ids("self")
                .filters(aws_sdk_ec2::types::Filter::builder().name("volume-id").values(volume).build())
                .send()
                .await
                .unwrap();
            assert!(!snaps.snapshots().is_empty(), "{volume} in {account} has no snapshot: {text}");
        }
    });
}

type Calls = Vec<(&'static str, Vec<String>)>;

/// Every function in process, each on its own clients configured as the game day configures it, and
/// zone-evacuator's ARC at the stand-in.
struct Functions {
    healer: Arc<Healer>,
    db: Arc<selfheal::db::DbFailover>,
    dns: Arc<selfheal::dns::DnsFailover>,
    backup: Arc<selfheal::backup::BackupEnforcer>,
    zone: Arc<Evacuator>,
}

impl Functions {
    fn new(sdk: &aws_config::SdkConfig, arch: &Architecture, arc: &ArcStandIn) -> Self {
        use selfheal::backup::{BackupConfig, BackupEnforcer};
        use selfheal::db::{DbConfig, DbFailover, StaticLag};
        use selfheal::dns::{DnsConfig, DnsFailover};
        let own = || Aws::from_sdk_config(sdk.clone());
        let lag = || Arc::new(StaticLag::new(Vec::<(String, f64)>::new()).with_default(2.0));
        let build = |function: &str| {
            let mut env = Env::from_map(gameday::function_env(arch, function).into_iter().collect());
            let common = CommonConfig::read(&mut env, function);
            (env, common)
        };
        let (mut e, c) = build("instance-healer");
        let healer = Arc::new(Healer::new(Ctx::new(c, own()), HealerConfig::read(&mut e)));
        let (mut e, c) = build("db-failover");
        let db = Arc::new(DbFailover::new(Ctx::new(c, own()), DbConfig::read(&mut e)).with_lag_source(lag()));
        let (mut e, c) = build("dns-failover");
        let dns = Arc::new(DnsFailover::new(Ctx::new(c, own()), DnsConfig::read(&mut e)));
        e.finish().unwrap();
        let (mut e, c) = build("backup-enforcer");
        let backup = Arc::new(BackupEnforcer::new(Ctx::new(c, own()), BackupConfig::read(&mut e)));
        e.finish().unwrap();
        let (mut e, c) = build(selfheal::zone::FUNCTION);
        assert_eq!(c.cooldown, Duration::ZERO, "the evacuator runs without a cooldown, as the template sets it");
        let ctx = Ctx::new(c, own().with_endpoint("arc-zonal-shift", arc.endpoint()));
        let (zone_cfg, db_cfg) = (ZoneConfig::read(&mut e), DbConfig::read(&mut e));
        e.finish().unwrap();
        let zone = Arc::new(Evacuator::new(ctx.clone(), zone_cfg, DbFailover::new(ctx, db_cfg).with_lag_source(lag())));
        Functions { healer, db, dns, backup, zone }
    }

    fn deliverer(&self) -> Deliverer {
        let (h, d, n, b, z) =
            (self.healer.clone(), self.db.clone(), self.dns.clone(), self.backup.clone(), self.zone.clone());
        Deliverer::InProcess(Arc::new(move |function: String, event: Value| -> BoxFuture {
            let (h, d, n, b, z) = (h.clone(), d.clone(), n.clone(), b.clone(), z.clone());
            Box::pin(async move {
                match function.as_str() {
                    "instance-healer" => h.handle(&event).await,
                    "db-failover" => d.handle(&event).await,
                    "dns-failover" => n.handle(&event).await,
                    "backup-enforcer" => b.handle(&event).await,
                    "zone-evacuator" => z.handle(&event).await,
                    other => Err(selfheal::Error::Precondition(format!("unknown function {other}"))),
                }
            })
        }))
    }
}

/// The reference architecture over `accounts` accounts with an opt-in value of its own (zone-evacuator
/// acts on every opted-in load balancer and group of an account, and other tests share this moto), its
/// load balancer and group registered with a fresh ARC stand-in, every function in process, and the
/// drill (its ARC reads at the stand-in too).
async fn zone_game_day(accounts: usize, timeout: Duration) -> (Architecture, ArcStandIn, Functions, Drill) {
    let sdk = sdk_config().await;
    let aws = Aws::from_sdk_config(sdk.clone());
    let prefix = unique("gd");
    let ledger = format!("{prefix}-ledger");
    let arch = gameday::provision::provision_accounts(&aws, &prefix, &ledger, ("selfheal:enabled", &prefix), accounts)
        .await
        .unwrap();
    let arc = ArcStandIn::start().await;
    let registered = gameday::provision::register_with_arc(&aws, &arch, &arc.endpoint()).await.unwrap();
    assert_eq!(registered.len(), 2, "the load balancer and the group: {registered:?}");
    let functions = Functions::new(&sdk, &arch, &arc);
    let mut e = vars(&arch, &[]);
    let common = CommonConfig::read(&mut e, drill::FUNCTION);
    let mut cfg = DrillConfig::read(&mut e);
    e.finish().unwrap();
    cfg.recovery_timeout = timeout;
    cfg.poll_interval = Duration::from_millis(200);
    let drill = Drill {
        ctx: Ctx::new(common, aws.with_endpoint("arc-zonal-shift", arc.endpoint())),
        cfg,
        deliverer: functions.deliverer(),
    };
    (arch, arc, functions, drill)
}

/// The AZ ID of `az` in moto, as ARC names it.
async fn az_id(az: &str) -> String {
    let aws = Aws::from_sdk_config(sdk_config().await);
    let zones = aws.ec2().describe_availability_zones().send().await.unwrap();
    zones.availability_zones().iter().find(|z| z.zone_name() == Some(az)).and_then(|z| z.zone_id()).unwrap().to_string()
}

/// The zonal shifts the stand-in applied (`StartZonalShift` answered 201): (resource, away from).
fn started(arc: &ArcStandIn) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = arc
        .requests_for("StartZonalShift")
        .into_iter()
        .filter(|r| r.status == Some(201))
        .map(|r| {
            let field = |k: &str| r.body.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            (field("resourceIdentifier"), field("awayFrom"))
        })
        .collect();
    v.sort();
    v
}

async fn desired(arch: &Architecture) -> i32 {
    let aws = Aws::from_sdk_config(sdk_config().await);
    let out =
        aws.autoscaling().describe_auto_scaling_groups().auto_scaling_group_names(&arch.asg_name).send().await.unwrap();
    out.auto_scaling_groups()[0].desired_capacity().unwrap()
}

/// `gray-az` live, in process: one AZ's per-AZ alarms (two, at once) make zone-evacuator shift the
/// load balancer and the group away from that AZ's ID — once each — with the group's capacity raised
/// first and the database writers there failed over; the alarms clear and, after the hysteresis, the
/// re-check ends it all: both shifts cancelled, the capacity back. Read back from the stand-in, Auto
/// Scaling and the ledger, not only from the report.
#[test]
fn gray_az_in_process_evacuates_the_az_once_and_ends_it_after_the_hysteresis() {
    on_big_stack(|| async {
        let (arch, arc, _f, drill) = zone_game_day(1, Duration::from_secs(30)).await;
        let reports =
            drill.run(&DrillRequest { scenarios: vec![Scenario::GrayAz], mode: Mode::Live }, &arch).await.unwrap();
        let r = &reports[0];
        let text = r.render();
        assert!(r.passed, "{text}");
        assert_eq!(r.steps.len(), 2, "{text}");
        let id = az_id("us-east-1a").await;
        assert_eq!(id, "use1-az6", "moto's us-east-1a");
        let group_arn = arc_arns(&arc).into_iter().find(|a| a.contains("autoScalingGroup")).unwrap();
        let lb = arch.load_balancer_arn.clone().unwrap();
        // Shifted once each, away from us-east-1a's ID, under two alarms.
        let mut want = vec![(group_arn.clone(), id.clone()), (lb.clone(), id.clone())];
        want.sort();
        assert_eq!(started(&arc), want, "{text}");
        // The evacuation step is the recovery: acted shifts, timed.
        let evac = &r.steps[0];
        assert!(evac.recover_ms.is_some(), "{text}");
        for what in
            ["zone-evacuator evacuate-az use1-az6", "zone-evacuator shift-away", "zone-evacuator reboot-failover"]
        {
            assert!(evac.actions.iter().any(|a| a.starts_with(what) && a.contains(": acted")), "{what}: {text}");
        }
        // The writers in us-east-1a failed over, through db-failover's code.
        let trail = drill.ctx.ledger.audit_trail(&arch.db_primary).await.unwrap();
        assert!(trail.iter().any(|t| t.action == "reboot-failover" && t.outcome == "acted"), "{text}");
        // The way back: both shifts cancelled, desired capacity 6 again.
        assert_eq!(arc.requests_for("CancelZonalShift").iter().filter(|q| q.status == Some(200)).count(), 2, "{text}");
        assert!(arc.shifts().iter().all(|s| s.status == "CANCELED"), "{:?}", arc.shifts());
        assert_eq!(desired(&arch).await, arch.asg_desired);
        assert!(r.steps[1].actions.iter().any(|a| a.contains("end-evacuation") && a.contains(": acted")), "{text}");
    });
}

/// Every ARN registered with the stand-in, from its log of registrations.
fn arc_arns(arc: &ArcStandIn) -> Vec<String> {
    arc.requests_for("StandInRegister")
        .into_iter()
        .filter_map(|r| r.body.get("arn").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// `two-az` live, in process: both AZs' alarms at once are a region event: zone-evacuator pages
/// (`region-event`, refused, critical). When it asked ARC for nothing, the scenario passes and the
/// capacity is untouched. zone-evacuator judges each signal as it records it, so one invocation can
/// still see one AZ impaired and evacuate it (why `two-az` is not in `all`): then the drill must fail
/// the scenario naming the shift, and end that evacuation after it. Either way the report agrees with
/// the stand-in, and nothing is left shifted.
#[test]
fn two_az_in_process_pages_a_region_event_and_fails_the_scenario_on_any_shift() {
    on_big_stack(|| async {
        let (arch, arc, _f, drill) = zone_game_day(1, Duration::from_secs(15)).await;
        let reports =
            drill.run(&DrillRequest { scenarios: vec![Scenario::TwoAz], mode: Mode::Live }, &arch).await.unwrap();
        let r = &reports[0];
        let text = r.render();
        let page = r.steps[0].actions.iter().find(|a| a.contains("region-event")).unwrap_or_else(|| panic!("{text}"));
        assert!(page.contains(": refused") && page.contains("us-east-1a, us-east-1b"), "{page}");
        let shifted = started(&arc);
        if shifted.is_empty() {
            assert!(r.passed, "{text}");
            assert!(!r.steps[0].actions.iter().any(|a| a.contains(": acted")), "{text}");
        } else {
            assert!(!r.passed, "shifted {shifted:?} yet passed: {text}");
            assert!(r.steps[0].observed.contains("shifted away from"), "{text}");
        }
        assert!(arc.shifts().iter().all(|s| s.status == "CANCELED"), "{:?}", arc.shifts());
        assert_eq!(desired(&arch).await, arch.asg_desired);
    });
}

/// `gray-az` and `two-az` as dry runs: zone-evacuator answers each dry-run `evacuate` with a dry-run
/// decision, and ARC is asked for no shift, the group keeps its capacity.
#[test]
fn gray_az_and_two_az_dry_runs_shift_nothing() {
    on_big_stack(|| async {
        let (arch, arc, _f, drill) = zone_game_day(1, Duration::from_secs(15)).await;
        let req = DrillRequest { scenarios: vec![Scenario::GrayAz, Scenario::TwoAz], mode: Mode::DryRun };
        let reports = drill.run(&req, &arch).await.unwrap();
        let text = drill::report::render_all(&reports);
        assert!(reports.iter().all(|r| r.passed && r.injected.is_empty()), "{text}");
        assert!(
            reports
                .iter()
                .all(|r| r.steps[0].actions.iter().any(|a| a.contains("evacuate-az") && a.contains(": dry-run"))),
            "{text}"
        );
        assert!(arc.requests_for("StartZonalShift").is_empty(), "{:?}", arc.requests());
        assert!(!arc.requests_for("ListManagedResources").is_empty(), "the dry runs read ARC");
        assert_eq!(desired(&arch).await, arch.asg_desired);
    });
}

async fn game_day_in_process(accounts: usize) -> (Architecture, Vec<drill::DrillReport>, Calls) {
    let (arch, arc, f, drill) = zone_game_day(accounts, Duration::from_secs(30)).await;
    // Every request kept, with the tags of what it touches, for the IAM evaluation below.
    // (zone-evacuator's role is the infra branch's: its calls join these once the template has it.)
    for calls in [&f.healer.ctx().aws.calls, &f.db.ctx().aws.calls, &f.dns.ctx().aws.calls, &f.backup.ctx().aws.calls] {
        crate::iam_conditions::record(calls);
    }
    let reports =
        drill.run(&DrillRequest { scenarios: Scenario::ALL.to_vec(), mode: Mode::Live }, &arch).await.unwrap();
    let text = drill::report::render_all(&reports);
    assert!(reports.iter().all(|r| r.passed), "{text}");
    // lose-az: the healer short-circuited on the AZ, and its decision, relayed as the topic would,
    // had zone-evacuator shift the load balancer and the group away from that AZ; after the drill an
    // operator's end cancelled both.
    let lose_az = reports.iter().find(|r| r.scenario == "lose-az").unwrap();
    let step = &lose_az.steps[0];
    assert!(
        step.actions.iter().any(|a| a.starts_with("instance-healer heal-instance") && a.contains(": refused")),
        "{text}"
    );
    let evacuated = step
        .actions
        .iter()
        .find(|a| a.starts_with("zone-evacuator evacuate-az") && a.contains(": acted"))
        .unwrap_or_else(|| panic!("no evacuation in lose-az: {text}"));
    let lost_az_id = evacuated.split_whitespace().nth(2).unwrap().to_string();
    let lb = arch.load_balancer_arn.clone().unwrap();
    let lb_shifts: Vec<(String, String)> = started(&arc).into_iter().filter(|(r, _)| *r == lb).collect();
    assert!(lb_shifts.iter().any(|(_, away)| *away == lost_az_id), "{lb_shifts:?}: {text}");
    assert!(arc.shifts().iter().all(|s| s.status == "CANCELED"), "{:?}", arc.shifts());
    // Each call allowed by its role's statements, conditions included (in member accounts: the member
    // role's, and its trust for the AssumeRole that reached it).
    let iam = crate::iam_conditions::assert_all_allowed([f.healer.ctx(), f.db.ctx(), f.dns.ctx(), f.backup.ctx()]);
    assert!(iam.conditioned > 0, "no conditioned statement was exercised: {}", iam.summary());
    assert_eq!(iam.trusts > 0, accounts > 1, "{}", iam.summary());

    let calls = vec![
        ("instance-healer", f.healer.ctx().aws.calls.calls()),
        ("db-failover", f.db.ctx().aws.calls.calls()),
        ("dns-failover", f.dns.ctx().aws.calls.calls()),
        ("backup-enforcer", f.backup.ctx().aws.calls.calls()),
    ];
    (arch, reports, calls)
}
