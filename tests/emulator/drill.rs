//! The drill end to end, in process: the reference architecture provisioned in moto (and checked
//! piece by piece), a scenario run
//! against the real instance-healer handler, and a scenario whose expected outcome is not met (the
//! healer is configured with another opt-in tag, so it refuses) failing the run; and the whole game
//! day in process, in one account and spread over three (each fault healed in the member account it
//! happened in, read back with that account's credentials).
//! The full game day under the Lambda runtime emulator is `scripts/gameday`.

use std::sync::Arc;
use std::time::Duration;

use gameday::ProvisioningClients;
use harness::on_big_stack;
use harness::{sdk_config, unique};
use selfheal::clients::Aws;
use selfheal::config::{CommonConfig, Env};
use selfheal::drill::deliver::{BoxFuture, Deliverer};
use selfheal::drill::{self, Architecture, Drill, DrillConfig, DrillRequest, Mode, Scenario};
use selfheal::healer::{Healer, HealerConfig};
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

async fn game_day_in_process(accounts: usize) -> (Architecture, Vec<drill::DrillReport>, Calls) {
    use selfheal::backup::{BackupConfig, BackupEnforcer};
    use selfheal::db::{DbConfig, DbFailover, StaticLag};
    use selfheal::dns::{DnsConfig, DnsFailover};

    let sdk = sdk_config().await;
    let arch = {
        let aws = Aws::from_sdk_config(sdk.clone());
        let prefix = unique("gd");
        let ledger = format!("{prefix}-ledger");
        gameday::provision::provision_accounts(&aws, &prefix, &ledger, ("selfheal:enabled", "true"), accounts)
            .await
            .unwrap()
    };
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
    // Every request kept, with the tags of what it touches, for the IAM evaluation below.
    for calls in [&healer.ctx().aws.calls, &db.ctx().aws.calls, &dns.ctx().aws.calls, &backup.ctx().aws.calls] {
        crate::iam_conditions::record(calls);
    }

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
    // Each call allowed by its role's statements, conditions included (in member accounts: the member
    // role's, and its trust for the AssumeRole that reached it).
    let iam = crate::iam_conditions::assert_all_allowed([healer.ctx(), db.ctx(), dns.ctx(), backup.ctx()]);
    assert!(iam.conditioned > 0, "no conditioned statement was exercised: {}", iam.summary());
    assert_eq!(iam.trusts > 0, accounts > 1, "{}", iam.summary());

    let calls = vec![
        ("instance-healer", healer.ctx().aws.calls.calls()),
        ("db-failover", db.ctx().aws.calls.calls()),
        ("dns-failover", dns.ctx().aws.calls.calls()),
        ("backup-enforcer", backup.ctx().aws.calls.calls()),
    ];
    (arch, reports, calls)
}
