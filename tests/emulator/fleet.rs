//! Many accounts from one hub, against moto's multi-account support: credentials that `AssumeRole`
//! returns for a role in account X act in account X. The hub is moto's default account; members
//! are other twelve-digit ids. Each test builds what it needs in each account through the same
//! `AssumeRole` the functions use, so "it happened there and nowhere else" is read from the emulator.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use harness::{ec2_in, in_account, PLACEHOLDER};
use harness::{event, sdk_config, unique};
use selfheal::db::{DbConfig, DbFailover, StaticLag};
use selfheal::healer::{Healer, HealerConfig};
use selfheal::{Envelope, Outcome, Severity};
use serde_json::{json, Value};

const HUB: &str = "123456789012";
const MEMBER_A: &str = "111111111111";
const MEMBER_B: &str = "222222222222";
const OUTSIDER: &str = "999999999999";

fn decisions(v: &Value) -> Vec<Envelope> {
    serde_json::from_value(v["decisions"].clone()).expect("decisions")
}

/// Every placeholder account id in a sample event replaced by `account`.
fn from_account(mut v: Value, account: &str) -> Value {
    let text = v.to_string().replace(HUB, account);
    v = serde_json::from_str(&text).expect("still JSON");
    v
}

/// A standalone opted-in instance in `account`, stopped (broken by the healer's rule), alone in a VPC of
/// its own: standalone instances in one VPC and AZ are one group for the maxUnhealthy short-circuit,
/// and tests run in parallel in the same accounts.
async fn stopped_instance(sdk: &SdkConfig) -> String {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let vpc = ec2.create_vpc().cidr_block("10.30.0.0/16").send().await.unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let subnet = ec2.create_subnet().vpc_id(&vpc_id).cidr_block("10.30.1.0/24").availability_zone("us-east-1a").send();
    let subnet_id = subnet.await.unwrap().subnet().unwrap().subnet_id().unwrap().to_string();
    let image =
        ec2.describe_images().owners("amazon").send().await.unwrap().images()[0].image_id().unwrap().to_string();
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .tags(Tag::builder().key("selfheal:enabled").value("true").build())
        .build();
    let r = ec2
        .run_instances()
        .image_id(image)
        .instance_type(InstanceType::T3Small)
        .min_count(1)
        .max_count(1)
        .subnet_id(&subnet_id)
        .tag_specifications(tags)
        .send()
        .await
        .unwrap();
    let id = r.instances()[0].instance_id().unwrap().to_string();
    ec2.stop_instances().instance_ids(&id).send().await.unwrap();
    id
}

async fn state(sdk: &SdkConfig, id: &str) -> Option<String> {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let out = ec2.describe_instances().instance_ids(id).send().await.ok()?;
    let i = out.reservations().first()?.instances().first()?;
    i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string())
}

async fn healer(accounts: &str) -> Healer {
    let vars = [
        ("SELFHEAL_ACCOUNTS", accounts),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
        ("SELFHEAL_HEALER_WAIT_SECONDS", "20"),
        ("SELFHEAL_HEALER_POLL_SECONDS", "1"),
    ];
    let ctx = harness::ctx("instance-healer", &vars).await;
    let mut env = harness::env(&vars);
    let cfg = HealerConfig::read(&mut env);
    env.finish().unwrap();
    let h = Healer::new(ctx, cfg);
    crate::iam_conditions::record(&h.ctx().aws.calls);
    h
}

#[tokio::test]
async fn an_unhealthy_instance_in_a_member_account_is_healed_there_and_nowhere_else() {
    let (a, b, hub) = (in_account(MEMBER_A).await, in_account(MEMBER_B).await, sdk_config().await);
    let sick = stopped_instance(&a).await;
    let bystander_b = stopped_instance(&b).await;
    let bystander_hub = stopped_instance(&hub).await;
    let h = healer(&format!("{MEMBER_A}=payments-prod,{MEMBER_B}")).await;

    // A direct alarm action from account A about its instance.
    let ev = from_account(event("alarm-lambda-action-ec2-status-check.json", &[(PLACEHOLDER, &sick)]), MEMBER_A);
    let d = decisions(&h.handle(&ev).await.unwrap()).remove(0);
    assert_eq!(d.outcome, Outcome::Acted, "{}", d.reason);
    assert_eq!(d.target.account.as_deref(), Some(MEMBER_A));
    assert_eq!(d.target.account_name.as_deref(), Some("payments-prod"));
    assert_eq!(d.target.region.as_deref(), Some(harness::REGION));
    assert!(d.summary().contains("in 111111111111 (payments-prod)/us-east-1"), "{}", d.summary());

    crate::iam_conditions::assert_allowed(h.ctx());
    assert_eq!(state(&a, &sick).await.as_deref(), Some("running"), "started in account A");
    assert_eq!(state(&hub, &sick).await, None, "account A's instance is not visible from the hub");
    assert_eq!(state(&b, &bystander_b).await.as_deref(), Some("stopped"), "account B untouched");
    assert_eq!(state(&hub, &bystander_hub).await.as_deref(), Some("stopped"), "the hub untouched");

    // The role was assumed once, under a session name that names the function and the event.
    let calls = h.ctx().aws.calls.calls();
    assert_eq!(calls.iter().filter(|c| *c == "sts:AssumeRole").count(), 1, "{calls:?}");
    // The ledger keeps the decision under the account-qualified key, not the bare id.
    let qualified = h.ctx().ledger.at(MEMBER_A, harness::REGION);
    assert!(qualified.audit_trail(&sick).await.unwrap().iter().any(|r| r.outcome == "acted"));
    assert!(h.ctx().ledger.audit_trail(&sick).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_same_db_identifier_in_two_accounts_has_independent_cooldowns() {
    let db = unique("prod-db");
    let h = {
        let vars = [("SELFHEAL_ACCOUNTS", "111111111111,222222222222"), ("SELFHEAL_COOLDOWN_SECONDS", "900")];
        let ctx = harness::ctx("db-failover", &vars).await;
        let mut env = harness::env(&[("SELFHEAL_DB_POLL_SECONDS", "1"), ("SELFHEAL_DB_WAIT_SECONDS", "30")]);
        let cfg = DbConfig::read(&mut env);
        env.finish().unwrap();
        let h = DbFailover::new(ctx, cfg).with_lag_source(Arc::new(StaticLag::default()));
        crate::iam_conditions::record(&h.ctx().aws.calls);
        h
    };
    for account in [MEMBER_A, MEMBER_B] {
        let rds = aws_sdk_rds::Client::new(&in_account(account).await);
        rds.create_db_instance()
            .db_instance_identifier(&db)
            .engine("postgres")
            .db_instance_class("db.t3.micro")
            .master_username("admin_user")
            .master_user_password("secret-password-1")
            .allocated_storage(20)
            .multi_az(true)
            .tags(aws_sdk_rds::types::Tag::builder().key("selfheal:enabled").value("true").build())
            .send()
            .await
            .unwrap();
    }
    let failover = |account: &str, request: &str| {
        json!({"source": "selfheal.manual", "action": "failover", "target": db, "force": true,
               "requestId": request, "account": account, "region": harness::REGION})
    };

    let in_a = decisions(&h.handle(&failover(MEMBER_A, &unique("op"))).await.unwrap()).remove(0);
    assert_eq!(in_a.outcome, Outcome::Acted, "{}", in_a.reason);
    assert_eq!(in_a.action, "reboot-failover");
    assert_eq!(in_a.target.account.as_deref(), Some(MEMBER_A));
    // The same identifier in account B is another database: A's cooldown does not hold it back.
    let in_b = decisions(&h.handle(&failover(MEMBER_B, &unique("op"))).await.unwrap()).remove(0);
    assert_eq!(in_b.outcome, Outcome::Acted, "{}", in_b.reason);
    assert_eq!(in_b.target.account.as_deref(), Some(MEMBER_B));
    // A second request for A's database is inside A's cooldown.
    let again = decisions(&h.handle(&failover(MEMBER_A, &unique("op"))).await.unwrap()).remove(0);
    assert_eq!(again.outcome, Outcome::Refused, "{}", again.reason);
    assert!(again.reason.contains("cooldown"), "{}", again.reason);
    crate::iam_conditions::assert_allowed(h.ctx());

    let reboots = h.ctx().aws.calls.calls().iter().filter(|c| *c == "rds:RebootDBInstance").count();
    assert_eq!(reboots, 2, "one reboot in each account");
    // No such database in the hub: the hub's own identifier space is separate too.
    let hub_rds = aws_sdk_rds::Client::new(&sdk_config().await);
    assert!(hub_rds.describe_db_instances().db_instance_identifier(&db).send().await.is_err());
}

#[tokio::test]
async fn events_from_an_account_the_hub_does_not_serve_are_refused_and_nothing_is_touched() {
    let outsider = in_account(OUTSIDER).await;
    let id = stopped_instance(&outsider).await;
    let h = healer(MEMBER_A).await;
    let ev = from_account(event("ec2-instance-state-change-stopped.json", &[(PLACEHOLDER, &id)]), OUTSIDER);

    let d = decisions(&h.handle(&ev).await.unwrap()).remove(0);
    assert_eq!(d.outcome, Outcome::Refused, "{}", d.reason);
    assert_eq!(d.severity, Severity::Critical);
    assert!(d.reason.contains("account 999999999999"), "{}", d.reason);
    assert!(d.reason.contains("does not serve"), "{}", d.reason);
    let calls = h.ctx().aws.calls.calls();
    assert!(
        calls.iter().all(|c| c.starts_with("dynamodb:") || c.starts_with("sns:") || c == "sts:GetCallerIdentity"),
        "{calls:?}"
    );
    crate::iam_conditions::assert_allowed(h.ctx());
    assert_eq!(state(&outsider, &id).await.as_deref(), Some("stopped"));
    // The refusal is audited like any decision.
    let trail = h.ctx().ledger.audit_trail(OUTSIDER).await.unwrap();
    assert_eq!(trail.len(), 1);
}

#[tokio::test]
async fn a_manual_invocation_naming_a_bad_account_or_region_is_a_clear_error() {
    let h = healer(MEMBER_A).await;
    h.ctx().aws.calls.clear();
    let err = h
        .handle(&json!({"source": "selfheal.manual", "action": "replace", "target": "i-1", "account": "12345"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("account must be a 12-digit AWS account id, got \"12345\""), "{err}");
    let err = h
        .handle(&json!({"source": "selfheal.manual", "action": "replace", "target": "i-1", "region": "Ireland"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("region must be a region code"), "{err}");
    assert!(h.ctx().aws.calls.calls().is_empty(), "no AWS call for bad input");
}

const OTHER_REGION: &str = "eu-west-1";

/// A volume opted in to `policy` under the test's own policy tag; with `fresh`, it already has a
/// recent suite snapshot.
async fn backed_volume(ec2: &aws_sdk_ec2::Client, region: &str, tag: &str, fresh: bool) -> String {
    let spec = TagSpecification::builder()
        .resource_type(ResourceType::Volume)
        .tags(Tag::builder().key(tag).value("silver").build())
        .tags(Tag::builder().key("selfheal:enabled").value("true").build())
        .build();
    let v = ec2.create_volume().availability_zone(format!("{region}a")).size(8).tag_specifications(spec).send().await;
    let id = v.unwrap().volume_id().unwrap().to_string();
    if fresh {
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::Snapshot)
            .tags(Tag::builder().key("selfheal:created-by").value("backup-enforcer").build())
            .tags(Tag::builder().key("selfheal:policy").value("silver").build())
            .tags(Tag::builder().key("selfheal:source").value(&id).build())
            .build();
        ec2.create_snapshot().volume_id(&id).tag_specifications(tags).send().await.unwrap();
    }
    id
}

async fn snapshot_count(ec2: &aws_sdk_ec2::Client, volume: &str) -> usize {
    let all = ec2.describe_snapshots().owner_ids("self").send().await.unwrap();
    all.snapshots().iter().filter(|s| s.volume_id() == Some(volume)).count()
}

async fn backup_enforcer(
    tag: &str,
    accounts: &str,
    aws: Option<selfheal::clients::Aws>,
) -> selfheal::backup::BackupEnforcer {
    let vars = [
        ("SELFHEAL_ACCOUNTS", accounts),
        ("SELFHEAL_BACKUP_REGIONS", "us-east-1,eu-west-1"),
        ("SELFHEAL_BACKUP_POLICY_TAG", tag),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_BACKUP_RDS", "false"),
    ];
    let ctx = match aws {
        Some(aws) => harness::ctx_with("backup-enforcer", &vars, aws).await,
        None => harness::ctx("backup-enforcer", &vars).await,
    };
    let mut env = harness::env(&vars);
    let cfg = selfheal::backup::BackupConfig::read(&mut env);
    env.finish().unwrap();
    let b = selfheal::backup::BackupEnforcer::new(ctx, cfg);
    crate::iam_conditions::record(&b.ctx().aws.calls);
    b
}

fn schedule() -> Value {
    event("schedule-backup-sweep.json", &[("53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", &uuid::Uuid::new_v4().to_string())])
}

/// (account, region, stale volume, fresh volume) in every place of the fleet.
async fn fleet_volumes(tag: &str) -> Vec<(String, String, String, String, SdkConfig)> {
    let mut out = Vec::new();
    for account in [HUB, MEMBER_A, MEMBER_B] {
        let sdk = if account == HUB { sdk_config().await } else { in_account(account).await };
        for region in [harness::REGION, OTHER_REGION] {
            let ec2 = ec2_in(&sdk, region);
            let stale = backed_volume(&ec2, region, tag, false).await;
            let fresh = backed_volume(&ec2, region, tag, true).await;
            out.push((account.to_string(), region.to_string(), stale, fresh, sdk.clone()));
        }
    }
    out
}

#[tokio::test]
async fn a_scheduled_sweep_covers_three_accounts_in_two_regions_and_snapshots_exactly_the_stale_volumes() {
    let tag = unique("fleet-backup");
    let places = fleet_volumes(&tag).await;
    let b = backup_enforcer(&tag, &format!("{MEMBER_A},{MEMBER_B}"), None).await;

    let out = b.handle(&schedule()).await.unwrap();
    let iam = crate::iam_conditions::assert_allowed(b.ctx());
    crate::iam_conditions::assert_still_known(&iam, "backup-enforcer", &["ec2:CreateSnapshot"]);
    let d = decisions(&out);
    let reports: Vec<&Envelope> = d.iter().filter(|e| e.action == "compliance-report").collect();
    assert_eq!(reports.len(), 6, "one report per account and region: {out}");
    for (account, region, stale, fresh, sdk) in &places {
        let ec2 = ec2_in(sdk, region);
        assert_eq!(snapshot_count(&ec2, stale).await, 1, "{account}/{region}: the stale volume got one snapshot");
        assert_eq!(snapshot_count(&ec2, fresh).await, 1, "{account}/{region}: the fresh volume got none");
        let acted: Vec<&Envelope> = d.iter().filter(|e| e.target.id == *stale).collect();
        assert_eq!(acted.len(), 1, "{account}/{region}: {out}");
        assert_eq!(acted[0].outcome, Outcome::Acted);
        let expected_account = (account != HUB || region != harness::REGION).then_some(account.as_str());
        assert_eq!(acted[0].target.account.as_deref(), expected_account, "{account}/{region}");
    }
    let assumed = b.ctx().aws.calls.calls().iter().filter(|c| *c == "sts:AssumeRole").count();
    assert_eq!(assumed, 2, "one session per member account, reused across its regions");

    // A second sweep in the same window finds everything done, everywhere.
    let again = decisions(&b.handle(&schedule()).await.unwrap());
    assert!(again.iter().all(|e| e.outcome != Outcome::Acted), "{again:?}");
    for (_, region, stale, _, sdk) in &places {
        assert_eq!(snapshot_count(&ec2_in(sdk, region), stale).await, 1);
    }
}

#[tokio::test]
async fn an_account_whose_role_cannot_be_assumed_is_reported_and_the_rest_are_swept() {
    let tag = unique("fleet-denied");
    let places = fleet_volumes(&tag).await;
    let proxy = harness::proxy::FaultProxy::start(&harness::moto_endpoint(), 7).await;
    // Account A's role is missing: STS refuses both of its regions' sessions (A is swept before B).
    proxy.add(harness::proxy::Rule::new(
        "AssumeRole",
        harness::proxy::Fault::AccessDenied,
        harness::proxy::Times::First(2),
    ));
    let aws = selfheal::clients::Aws::from_sdk_config(harness::sdk_config_at(&proxy.endpoint).await);
    let b = backup_enforcer(&tag, &format!("{MEMBER_A},{MEMBER_B}"), Some(aws)).await;

    let out = b.handle(&schedule()).await.unwrap_err().to_string();
    assert!(out.contains("cannot act in 111111111111/us-east-1"), "{out}");
    assert!(out.contains("cannot act in 111111111111/eu-west-1"), "{out}");
    assert!(out.contains("AccessDenied"), "the AWS words are kept: {out}");
    for (account, region, stale, _, sdk) in &places {
        let want = if account == MEMBER_A { 0 } else { 1 };
        assert_eq!(snapshot_count(&ec2_in(sdk, region), stale).await, want, "{account}/{region}");
    }
    assert_eq!(proxy.faulted("AssumeRole"), 2);
    crate::iam_conditions::assert_allowed(b.ctx());
}

/// An organization (moto's default account as its management account) with an OU `prod`, a nested
/// OU `prod-eu` holding one new account, and one new account left in the root: (prod OU id, the
/// account under it, its name, the account outside).
async fn organization() -> (String, String, String, String) {
    let org = aws_sdk_organizations::Client::new(&sdk_config().await);
    let _ =
        org.create_organization().feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All).send().await;
    let root = org.list_roots().send().await.unwrap().roots()[0].id().unwrap().to_string();
    let ou = |parent: String, name: String| {
        let org = org.clone();
        async move {
            let out = org.create_organizational_unit().parent_id(parent).name(name).send().await.unwrap();
            out.organizational_unit().unwrap().id().unwrap().to_string()
        }
    };
    let prod = ou(root.clone(), unique("prod")).await;
    let prod_eu = ou(prod.clone(), unique("prod-eu")).await;
    let account = |name: String| {
        let org = org.clone();
        async move {
            let out =
                org.create_account().account_name(&name).email(format!("{name}@example.com")).send().await.unwrap();
            out.create_account_status().unwrap().account_id().unwrap().to_string()
        }
    };
    let name = unique("payments-eu");
    let inside = account(name.clone()).await;
    org.move_account()
        .account_id(&inside)
        .source_parent_id(&root)
        .destination_parent_id(&prod_eu)
        .send()
        .await
        .unwrap();
    let outside = account(unique("sandbox")).await;
    (prod, inside, name, outside)
}

#[tokio::test]
async fn accounts_under_a_configured_ou_are_served_and_swept_and_the_rest_of_the_organization_is_not() {
    let (prod, inside, name, outside) = organization().await;
    let tag = unique("org-backup");
    let mut volumes = Vec::new();
    for account in [inside.as_str(), outside.as_str()] {
        let sdk = in_account(account).await;
        let stale = backed_volume(&ec2_in(&sdk, harness::REGION), harness::REGION, &tag, false).await;
        volumes.push((account.to_string(), stale, sdk));
    }
    let vars = [
        ("SELFHEAL_ACCOUNTS", prod.as_str()),
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_BACKUP_RDS", "false"),
    ];
    let ctx = harness::ctx("backup-enforcer", &vars).await;
    let mut env = harness::env(&vars);
    let cfg = selfheal::backup::BackupConfig::read(&mut env);
    env.finish().unwrap();
    let b = selfheal::backup::BackupEnforcer::new(ctx, cfg);
    crate::iam_conditions::record(&b.ctx().aws.calls);

    let d = decisions(&b.handle(&schedule()).await.unwrap());
    crate::iam_conditions::assert_allowed(b.ctx());
    let acted: Vec<&Envelope> =
        d.iter().filter(|e| e.outcome == Outcome::Acted && e.action == "enforce-backup").collect();
    assert_eq!(acted.len(), 1, "{d:?}");
    assert_eq!(acted[0].target.account.as_deref(), Some(inside.as_str()));
    assert_eq!(acted[0].target.account_name.as_deref(), Some(name.as_str()), "the organization's name for it");
    let (_, stale_inside, sdk_inside) = &volumes[0];
    let (_, stale_outside, sdk_outside) = &volumes[1];
    assert_eq!(snapshot_count(&ec2_in(sdk_inside, harness::REGION), stale_inside).await, 1, "nested OU account swept");
    assert_eq!(
        snapshot_count(&ec2_in(sdk_outside, harness::REGION), stale_outside).await,
        0,
        "outside the OU: untouched"
    );
    let listings = b.ctx().aws.calls.calls().iter().filter(|c| c.starts_with("organizations:")).count();
    assert!(listings >= 2, "listed through Organizations");

    // An event from the account outside the OU is refused.
    let h = healer(&prod).await;
    let ev = from_account(event("ec2-instance-state-change-stopped.json", &[(PLACEHOLDER, "i-0abc")]), &outside);
    let refused = decisions(&h.handle(&ev).await.unwrap()).remove(0);
    assert_eq!(refused.outcome, Outcome::Refused, "{}", refused.reason);
    assert!(refused.reason.contains(&prod), "names what is served: {}", refused.reason);
}

#[tokio::test]
async fn a_member_accounts_failed_primary_is_promoted_there_and_the_hubs_database_record_follows() {
    let a = in_account(MEMBER_A).await;
    let rds = aws_sdk_rds::Client::new(&a);
    let primary = unique("orders");
    let replica = format!("{primary}-r1");
    let opt_in = aws_sdk_rds::types::Tag::builder().key("selfheal:enabled").value("true").build();
    let created = rds
        .create_db_instance()
        .db_instance_identifier(&primary)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .master_username("admin_user")
        .master_user_password("secret-password-1")
        .allocated_storage(20)
        .backup_retention_period(1)
        .availability_zone("us-east-1a")
        .tags(opt_in)
        .send()
        .await
        .unwrap();
    let primary_endpoint = created.db_instance().unwrap().endpoint().unwrap().address().unwrap().to_string();
    let r = rds
        .create_db_instance_read_replica()
        .db_instance_identifier(&replica)
        .source_db_instance_identifier(&primary)
        .availability_zone("us-east-1b")
        .send()
        .await
        .unwrap();
    let replica_endpoint = r.db_instance().unwrap().endpoint().unwrap().address().unwrap().to_string();
    rds.stop_db_instance().db_instance_identifier(&primary).send().await.unwrap();

    // The application's database record lives in the hub's zone.
    let (zone, record) = harness::zone_with_cname(&primary_endpoint).await;

    let vars = [("SELFHEAL_ACCOUNTS", MEMBER_A)];
    let ctx = harness::ctx("db-failover", &vars).await;
    let mut env = harness::env(&[
        ("SELFHEAL_DB_POLL_SECONDS", "1"),
        ("SELFHEAL_DB_WAIT_SECONDS", "30"),
        ("SELFHEAL_DB_DNS_ZONE_ID", zone.as_str()),
        ("SELFHEAL_DB_DNS_RECORD", record.as_str()),
    ]);
    let cfg = DbConfig::read(&mut env);
    env.finish().unwrap();
    let h = DbFailover::new(ctx, cfg).with_lag_source(Arc::new(StaticLag::default().with_default(1.0)));
    crate::iam_conditions::record(&h.ctx().aws.calls);

    let ev = from_account(event("rds-db-instance-event-failure.json", &[("orders-db", &primary)]), MEMBER_A);
    let d = decisions(&h.handle(&ev).await.unwrap()).remove(0);
    assert_eq!(d.outcome, Outcome::Acted, "{}", d.reason);
    assert_eq!(d.action, "promote-replica");
    assert_eq!(d.target.account.as_deref(), Some(MEMBER_A));
    assert_eq!(d.details["newWriter"], replica.as_str());
    crate::iam_conditions::assert_allowed(h.ctx());
    // Promoted in account A (moto refuses StopDBInstance on a read replica: accepting it proves it)...
    assert!(rds.stop_db_instance().db_instance_identifier(&replica).send().await.is_ok(), "standalone in A");
    // ...and the hub's record now points at the new writer.
    assert_eq!(harness::cname(&zone, &record).await, replica_endpoint);
}

#[tokio::test]
async fn a_health_check_alarm_from_an_account_the_hub_does_not_serve_moves_no_traffic() {
    let vars = [("SELFHEAL_ACCOUNTS", MEMBER_A), ("SELFHEAL_DNS_RECORDS", "Z0000000000000000000/app.example.com/A")];
    let ctx = harness::ctx("dns-failover", &vars).await;
    let mut env = harness::env(&vars);
    let cfg = selfheal::dns::DnsConfig::read(&mut env);
    env.finish().unwrap();
    let dns = selfheal::dns::DnsFailover::new(ctx, cfg);
    dns.ctx().aws.calls.clear();

    let ev = from_account(event("alarm-sns-route53-health-check.json", &[]), OUTSIDER);
    let d = decisions(&dns.handle(&ev).await.unwrap()).remove(0);
    assert_eq!(d.outcome, Outcome::Refused, "{}", d.reason);
    assert!(d.reason.contains("account 999999999999"), "{}", d.reason);
    let calls = dns.ctx().aws.calls.calls();
    assert!(calls.iter().all(|c| !c.starts_with("route53:")), "no Route 53 call: {calls:?}");
}

/// Instances in `sdk`'s account carrying `selfheal:replaces = id`.
async fn replacements_of(sdk: &SdkConfig, id: &str) -> Vec<String> {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let filter = aws_sdk_ec2::types::Filter::builder().name("tag:selfheal:replaces").values(id).build();
    let out = ec2.describe_instances().filters(filter).send().await.unwrap();
    out.reservations().iter().flat_map(|r| r.instances()).filter_map(|i| i.instance_id().map(str::to_string)).collect()
}

#[tokio::test]
async fn a_member_accounts_instance_is_replaced_in_that_account_and_no_other() {
    let (a, b, hub) = (in_account(MEMBER_A).await, in_account(MEMBER_B).await, sdk_config().await);
    let old = stopped_instance(&a).await;
    let h = healer(&format!("{MEMBER_A},{MEMBER_B}")).await;
    let manual = json!({"source": "selfheal.manual", "action": "replace", "target": old, "force": true,
        "params": {"step": "replace"}, "requestId": unique("req"), "account": MEMBER_A, "region": harness::REGION});

    let d = decisions(&h.handle(&manual).await.unwrap()).remove(0);
    assert_eq!(d.outcome, Outcome::Acted, "{}", d.reason);
    assert_eq!(d.details["step"], "replace");
    crate::iam_conditions::assert_allowed(h.ctx());
    let new_id = d.details["replacement"].as_str().expect("replacement id").to_string();
    assert_eq!(replacements_of(&a, &old).await, vec![new_id.clone()], "the twin was launched in account A");
    assert_eq!(state(&a, &new_id).await.as_deref(), Some("running"));
    assert!(matches!(state(&a, &old).await.as_deref(), Some("shutting-down" | "terminated")));
    assert!(replacements_of(&b, &old).await.is_empty(), "nothing launched in account B");
    assert!(replacements_of(&hub, &old).await.is_empty(), "nothing launched in the hub");
}

#[tokio::test]
async fn a_dry_run_in_a_member_account_changes_nothing_there() {
    let a = in_account(MEMBER_A).await;
    let id = stopped_instance(&a).await;
    let h = healer(MEMBER_A).await;
    let manual = json!({"source": "selfheal.manual", "action": "replace", "target": id, "force": true, "dryRun": true,
        "params": {"step": "replace"}, "requestId": unique("req"), "account": MEMBER_A, "region": harness::REGION});
    h.ctx().aws.calls.clear();

    let d = decisions(&h.handle(&manual).await.unwrap()).remove(0);
    assert_eq!(d.outcome, Outcome::DryRun, "{}", d.reason);
    assert_eq!(d.target.account.as_deref(), Some(MEMBER_A));
    crate::iam_conditions::assert_allowed(h.ctx());
    let mutations: Vec<String> = h
        .ctx()
        .aws
        .calls
        .mutating_calls()
        .into_iter()
        .filter(|c| !c.starts_with("dynamodb:") && !c.starts_with("sns:"))
        .collect();
    assert!(mutations.is_empty(), "dry-run made mutating calls: {mutations:?}");
    assert!(h.ctx().aws.calls.calls().contains(&"sts:AssumeRole".to_string()), "it did act through the member role");
    assert_eq!(state(&a, &id).await.as_deref(), Some("stopped"));
    assert!(replacements_of(&a, &id).await.is_empty());
}

/// A stopped, opted-in primary with one replica in `sdk`'s account.
async fn failed_primary_with_replica(sdk: &SdkConfig) -> (String, String) {
    let rds = aws_sdk_rds::Client::new(sdk);
    let primary = unique("ledger-db");
    let replica = format!("{primary}-r");
    let opt_in = aws_sdk_rds::types::Tag::builder().key("selfheal:enabled").value("true").build();
    rds.create_db_instance()
        .db_instance_identifier(&primary)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .master_username("admin_user")
        .master_user_password("secret-password-1")
        .allocated_storage(20)
        .backup_retention_period(1)
        .availability_zone("us-east-1a")
        .tags(opt_in)
        .send()
        .await
        .unwrap();
    rds.create_db_instance_read_replica()
        .db_instance_identifier(&replica)
        .source_db_instance_identifier(&primary)
        .availability_zone("us-east-1b")
        .send()
        .await
        .unwrap();
    rds.stop_db_instance().db_instance_identifier(&primary).send().await.unwrap();
    (primary, replica)
}

/// More than N databases of one account and region in the rate window wait for a human; the approval
/// is sent to the hub like any other, and acts in the member account the database lives in.
#[tokio::test]
async fn a_member_accounts_database_over_the_blast_radius_waits_for_approval_sent_to_the_hub() {
    let sdk_a = in_account(MEMBER_A).await;
    let (first, _) = failed_primary_with_replica(&sdk_a).await;
    let (second, second_replica) = failed_primary_with_replica(&sdk_a).await;
    let vars = [
        ("SELFHEAL_ACCOUNTS", MEMBER_A),
        ("SELFHEAL_APPROVAL_AFTER", "1"),
        ("SELFHEAL_APPROVERS", "arn:aws:iam::123456789012:role/Oncall"),
    ];
    let ctx = harness::ctx("db-failover", &vars).await;
    let mut env = harness::env(&[("SELFHEAL_DB_POLL_SECONDS", "1"), ("SELFHEAL_DB_WAIT_SECONDS", "30")]);
    let cfg = DbConfig::read(&mut env);
    env.finish().unwrap();
    let h = DbFailover::new(ctx, cfg).with_lag_source(Arc::new(StaticLag::default().with_default(1.0)));
    let failure = |db: &str| from_account(event("rds-db-instance-event-failure.json", &[("orders-db", db)]), MEMBER_A);

    let d1 = decisions(&h.handle(&failure(&first)).await.unwrap()).remove(0);
    assert_eq!(d1.outcome, Outcome::Acted, "the first database is within the blast radius: {}", d1.reason);
    let d2 = decisions(&h.handle(&failure(&second)).await.unwrap()).remove(0);
    assert_eq!(d2.outcome, Outcome::AwaitingApproval, "{d2:?}");
    assert!(d2.reason.contains("beyond 1 a human approves"), "{}", d2.reason);
    assert_eq!(d2.target.account.as_deref(), Some(MEMBER_A));
    let rds_a = aws_sdk_rds::Client::new(&sdk_a);
    assert!(rds_a.stop_db_instance().db_instance_identifier(&second_replica).send().await.is_err(), "not promoted yet");

    // An approver of the hub approves at the hub's URL; the approval names no account: the token finds
    // the decision, which is handled in account A.
    let token = d2.details["approval"]["token"].as_str().unwrap().to_string();
    let approver = "arn:aws:sts::123456789012:assumed-role/Oncall/alice";
    let approve = gameday::approve::function_url_request(approver, &json!({"action": "approve", "token": token}));
    let answer = h.handle(&approve).await.unwrap();
    let d3 = decisions(&gameday::approve::response_decisions(&answer)).remove(0);
    assert_eq!(d3.outcome, Outcome::Acted, "{}", d3.reason);
    assert_eq!(d3.target.account.as_deref(), Some(MEMBER_A));
    assert_eq!(d3.details["newWriter"], second_replica.as_str());
    assert_eq!(d3.details["approvedWith"], token[..8]);
    assert!(rds_a.stop_db_instance().db_instance_identifier(&second_replica).send().await.is_ok(), "promoted in A");
    // The member's audit trail of the second database tells the whole story.
    let trail = h.ctx().ledger.at(MEMBER_A, "us-east-1").audit_trail(&second).await.unwrap();
    let outcomes: Vec<&str> = trail.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, ["awaiting-approval", "observed", "acted"], "{outcomes:?}");
    assert!(trail[1].envelope.reason.contains(approver), "the approval names its approver: {:?}", trail[1].envelope);
}
