//! The drill end to end, in process: the reference architecture provisioned in moto (and checked
//! piece by piece), a scenario run
//! against the real instance-healer handler, and a scenario whose expected outcome is not met (the
//! healer is configured with another opt-in tag, so it refuses) failing the run.
//! The full game day under the Lambda runtime emulator is `scripts/gameday`.

use std::sync::Arc;
use std::time::Duration;

use harness::{sdk_config, unique};
use selfheal::clients::Aws;
use selfheal::config::{CommonConfig, Env};
use selfheal::drill::deliver::{BoxFuture, Deliverer};
use selfheal::drill::{self, Architecture, Drill, DrillConfig, DrillRequest, Mode, Scenario};
use selfheal::healer::{Healer, HealerConfig};
use selfheal::Ctx;
use serde_json::{json, Value};

fn vars(arch: &Architecture, extra: &[(&str, &str)]) -> Env {
    let mut map: std::collections::HashMap<String, String> = drill::gameday_env(arch).into_iter().collect();
    for (k, v) in extra {
        map.insert(k.to_string(), v.to_string());
    }
    Env::from_map(map)
}

async fn setup() -> (Aws, Architecture) {
    let aws = Aws::from_sdk_config(sdk_config().await);
    let prefix = unique("gd");
    let arch = drill::provision::provision(&aws, &prefix, &format!("{prefix}-ledger"), ("selfheal:enabled", "true"))
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
    // Web tier: six instances over three AZs, behind an ALB whose target group the ASG registers into.
    let group =
        aws.autoscaling().describe_auto_scaling_groups().auto_scaling_group_names(&arch.asg_name).send().await.unwrap();
    let group = &group.auto_scaling_groups()[0];
    let azs: std::collections::HashSet<_> = group.instances().iter().filter_map(|i| i.availability_zone()).collect();
    assert_eq!((group.instances().len(), azs.len()), (6, 3), "{group:?}");
    let tg = arch.target_group_arn.clone().expect("a target group");
    assert_eq!(group.target_group_arns(), std::slice::from_ref(&tg));
    let elb = aws.elbv2();
    let lb = elb.describe_load_balancers().load_balancer_arns(arch.load_balancer_arn.clone().unwrap()).send().await;
    let lb = lb.unwrap();
    assert_eq!(lb.load_balancers()[0].availability_zones().len(), 3);
    let listeners =
        elb.describe_listeners().load_balancer_arn(arch.load_balancer_arn.clone().unwrap()).send().await.unwrap();
    let action = &listeners.listeners()[0].default_actions()[0];
    assert_eq!(action.target_group_arn(), Some(tg.as_str()));
    let tgs = elb.describe_target_groups().target_group_arns(&tg).send().await.unwrap();
    assert_eq!(tgs.target_groups()[0].health_check_path(), Some("/health"));

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
/// that each function called only AWS actions its role in `infra/template.yaml` grants.
#[test]
fn the_game_day_in_process_passes_and_every_call_is_granted_by_the_template() {
    // Every handler's future runs inside the drill's: more stack than a test thread's default in a
    // debug build.
    let worker = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_stack_size(64 << 20)
                .enable_all()
                .build()
                .unwrap()
                .block_on(game_day_in_process())
        })
        .unwrap();
    worker.join().unwrap();
}

async fn game_day_in_process() {
    use selfheal::backup::{BackupConfig, BackupEnforcer};
    use selfheal::db::{DbConfig, DbFailover, StaticLag};
    use selfheal::dns::{DnsConfig, DnsFailover};

    let sdk = sdk_config().await;
    let (_, arch) = setup().await;
    let own = || Aws::from_sdk_config(sdk.clone());
    let build = |function: &str| {
        let mut env = vars(&arch, &[]);
        let common = CommonConfig::read(&mut env, function);
        (env, common)
    };
    let (mut e, c) = build("instance-healer");
    let healer = Arc::new(Healer::new(Ctx::new(c, own()), HealerConfig::read(&mut e)));
    let (mut e, c) = build("db-failover");
    let db = Arc::new(
        DbFailover::new(Ctx::new(c, own()), DbConfig::read(&mut e))
            .with_lag_source(Arc::new(StaticLag::new(Vec::<(String, f64)>::new()).with_default(2.0))),
    );
    let (mut e, c) = build("dns-failover");
    let dns = Arc::new(DnsFailover::new(Ctx::new(c, own()), DnsConfig::read(&mut e)));
    e.finish().unwrap();
    let (mut e, c) = build("backup-enforcer");
    let backup = Arc::new(BackupEnforcer::new(Ctx::new(c, own()), BackupConfig::read(&mut e)));
    e.finish().unwrap();

    let (h, d, n, b) = (healer.clone(), db.clone(), dns.clone(), backup.clone());
    let deliverer = Deliverer::InProcess(Arc::new(move |function: String, event: Value| -> BoxFuture {
        let (h, d, n, b) = (h.clone(), d.clone(), n.clone(), b.clone());
        Box::pin(async move {
            match function.as_str() {
                "instance-healer" => h.handle(&event).await,
                "db-failover" => d.handle(&event).await,
                "dns-failover" => n.handle(&event).await,
                "backup-enforcer" => b.handle(&event).await,
                other => Err(selfheal::Error::Precondition(format!("unknown function {other}"))),
            }
        })
    }));
    let (mut e, c) = build(drill::FUNCTION);
    let mut cfg = DrillConfig::read(&mut e);
    cfg.recovery_timeout = Duration::from_secs(30);
    cfg.poll_interval = Duration::from_millis(200);
    let drill = Drill { ctx: Ctx::new(c, own()), cfg, deliverer };
    let reports =
        drill.run(&DrillRequest { scenarios: Scenario::ALL.to_vec(), mode: Mode::Live }, &arch).await.unwrap();
    let text = drill::report::render_all(&reports);
    assert!(reports.iter().all(|r| r.passed), "{text}");

    let calls = [
        ("instance-healer", healer.ctx().aws.calls.calls()),
        ("db-failover", db.ctx().aws.calls.calls()),
        ("dns-failover", dns.ctx().aws.calls.calls()),
        ("backup-enforcer", backup.ctx().aws.calls.calls()),
    ];
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
}
