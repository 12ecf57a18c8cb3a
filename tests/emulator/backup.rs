//! backup-enforcer against moto: stale volumes and databases get snapshots and fresh ones do not;
//! retention prunes exactly the right snapshots (sparing foreign, AMI-backed and the newest
//! `min_keep`); AWS Backup plan drift is detected and corrected; dry-run changes nothing; one failing
//! resource does not stop the rest; overlapping sweeps act once; a policy tag without the opt-in tag
//! changes nothing; Aurora clusters are backed up as a whole.
//!
//! Every test uses its own policy tag key, so parallel tests never see each other's resources.

use std::collections::HashSet;
use std::time::Duration as StdDuration;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use chrono::{Duration, Utc};
use harness::OPT_IN;
use harness::{ctx, env, event, unique};
use selfheal::backup::{db_snapshot_id, BackupConfig, BackupEnforcer, FUNCTION};
use selfheal::{parse_event, Envelope, Outcome, Trigger};
use serde_json::Value;

async fn enforcer(vars: &[(&str, &str)]) -> BackupEnforcer {
    let ctx = ctx(FUNCTION, vars).await;
    let mut e = env(vars);
    let cfg = BackupConfig::read(&mut e);
    e.finish().expect("backup configuration is valid");
    BackupEnforcer::new(ctx, cfg)
}

/// Clients for the DR region the tests' policies copy to.
async fn dr_aws() -> selfheal::clients::Aws {
    selfheal::clients::Aws::from_sdk_config(harness::sdk_config().await).in_region("us-west-2")
}

fn schedule() -> Trigger {
    let id = uuid::Uuid::new_v4().to_string();
    parse_event(&event("schedule-backup-sweep.json", &[("53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", &id)]))
        .unwrap()
        .remove(0)
}

/// A volume with the policy tag and the suite's opt-in tag.
async fn volume(ec2: &aws_sdk_ec2::Client, tag: &str, policy: &str) -> String {
    volume_tagged(ec2, &[(tag, policy), (OPT_IN.0, OPT_IN.1)]).await
}

async fn volume_tagged(ec2: &aws_sdk_ec2::Client, tags: &[(&str, &str)]) -> String {
    let mut spec = TagSpecification::builder().resource_type(ResourceType::Volume);
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(*k).value(*v).build());
    }
    let v = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(8)
        .tag_specifications(spec.build())
        .send()
        .await
        .unwrap();
    v.volume_id().unwrap().to_string()
}

fn suite_tags(volume: &str, policy: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(ResourceType::Snapshot)
        .tags(Tag::builder().key("selfheal:created-by").value("backup-enforcer").build())
        .tags(Tag::builder().key("selfheal:policy").value(policy).build())
        .tags(Tag::builder().key("selfheal:source").value(volume).build())
        .build()
}

async fn snapshot(ec2: &aws_sdk_ec2::Client, volume: &str, tags: Option<TagSpecification>) -> String {
    let s = ec2.create_snapshot().volume_id(volume).set_tag_specifications(tags.map(|t| vec![t])).send().await.unwrap();
    s.snapshot_id().unwrap().to_string()
}

/// Snapshots of a volume: by volume id or by the suite's source tag.
async fn snapshots_of(ec2: &aws_sdk_ec2::Client, volume: &str) -> Vec<aws_sdk_ec2::types::Snapshot> {
    let all = ec2.describe_snapshots().owner_ids("self").send().await.unwrap();
    all.snapshots()
        .iter()
        .filter(|s| {
            s.volume_id() == Some(volume)
                || s.tags().iter().any(|t| t.key() == Some("selfheal:source") && t.value() == Some(volume))
        })
        .cloned()
        .collect()
}

fn ids(snaps: &[aws_sdk_ec2::types::Snapshot]) -> HashSet<String> {
    snaps.iter().filter_map(|s| s.snapshot_id().map(str::to_string)).collect()
}

fn tag_of<'a>(s: &'a aws_sdk_ec2::types::Snapshot, key: &str) -> Option<&'a str> {
    s.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

/// A DB instance with the policy tag and the suite's opt-in tag.
async fn database(rds: &aws_sdk_rds::Client, tag: &str, policy: &str, retention: i32) -> String {
    database_tagged(rds, &[(tag, policy), (OPT_IN.0, OPT_IN.1)], retention).await
}

fn rds_tags(tags: &[(&str, &str)]) -> Vec<aws_sdk_rds::types::Tag> {
    tags.iter().map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(*k).value(*v).build()).collect()
}

async fn database_tagged(rds: &aws_sdk_rds::Client, tags: &[(&str, &str)], retention: i32) -> String {
    let id = unique("db");
    rds.create_db_instance()
        .db_instance_identifier(&id)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .master_username("admin")
        .master_user_password("password123")
        .allocated_storage(20)
        .backup_retention_period(retention)
        .set_tags(Some(rds_tags(tags)))
        .send()
        .await
        .unwrap();
    id
}

/// Manual snapshots of a DB instance (moto also makes an automated one when the instance is created).
async fn db_snapshots(rds: &aws_sdk_rds::Client, db: &str) -> Vec<aws_sdk_rds::types::DbSnapshot> {
    let r = rds.describe_db_snapshots().db_instance_identifier(db).send().await.unwrap();
    r.db_snapshots().iter().filter(|s| s.snapshot_type() == Some("manual")).cloned().collect()
}

async fn db_retention(rds: &aws_sdk_rds::Client, db: &str) -> i32 {
    let r = rds.describe_db_instances().db_instance_identifier(db).send().await.unwrap();
    r.db_instances()[0].backup_retention_period().unwrap()
}

fn for_target<'a>(envs: &'a [Envelope], id: &str) -> Vec<&'a Envelope> {
    envs.iter().filter(|e| e.target.id == id).collect()
}

fn report(envs: &[Envelope]) -> &Envelope {
    let r = envs.last().unwrap();
    assert_eq!(r.action, "compliance-report");
    r
}

fn tally(report: &Envelope, kind: &str, field: &str) -> u64 {
    report.details["byType"][kind][field].as_u64().unwrap_or(0)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn stale_resources_get_snapshots_fresh_ones_do_not_and_overlapping_sweeps_act_once() {
    let tag = unique("bk");
    let vars = [
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
    ];
    let e = enforcer(&vars).await;
    let ec2 = e.ctx().aws.ec2();
    let rds = e.ctx().aws.rds();
    let stale = volume(&ec2, &tag, "silver").await;
    let fresh = volume(&ec2, &tag, "silver").await;
    let fresh_snap = snapshot(&ec2, &fresh, None).await;
    let untagged = ec2.create_volume().availability_zone("us-east-1a").size(8).send().await.unwrap();
    let untagged = untagged.volume_id().unwrap().to_string();
    let stale_db = database(&rds, &tag, "silver", 1).await;
    let fresh_db = database(&rds, &tag, "silver", 14).await;
    rds.create_db_snapshot()
        .db_instance_identifier(&fresh_db)
        .db_snapshot_identifier(unique("manual"))
        .send()
        .await
        .unwrap();

    // Two overlapping sweeps of the same window: each resource is acted on once.
    let (t1, t2) = (schedule(), schedule());
    let (a, b) = tokio::join!(e.handle_trigger(&t1), e.handle_trigger(&t2));
    let (a, b) = (a.unwrap(), b.unwrap());

    let snaps = snapshots_of(&ec2, &stale).await;
    assert_eq!(snaps.len(), 1, "exactly one snapshot of the stale volume: {snaps:?}");
    assert_eq!(tag_of(&snaps[0], "selfheal:created-by"), Some("backup-enforcer"));
    assert_eq!(tag_of(&snaps[0], "selfheal:policy"), Some("silver"));
    assert_eq!(tag_of(&snaps[0], "selfheal:source"), Some(stale.as_str()));
    assert_eq!(ids(&snapshots_of(&ec2, &fresh).await), HashSet::from([fresh_snap]), "fresh volume untouched");
    assert!(snapshots_of(&ec2, &untagged).await.is_empty(), "a volume without the policy tag is not managed");

    // moto gives every new instance a fresh automated snapshot, which counts as a backup: only the
    // retention is fixed now (staleness of databases is exercised ten days on, below).
    assert!(db_snapshots(&rds, &stale_db).await.is_empty());
    assert_eq!(db_retention(&rds, &stale_db).await, 14, "automated backups raised to the policy's retention");
    assert_eq!(db_snapshots(&rds, &fresh_db).await.len(), 1, "fresh database untouched");
    assert_eq!(db_retention(&rds, &fresh_db).await, 14);

    // One sweep holds the place's sweep leases; the other stood down (or, had the first already
    // finished, listed and found nothing to do): either way each resource was acted on once.
    let all: Vec<Envelope> = a.iter().chain(b.iter()).cloned().collect();
    for id in [&stale, &stale_db] {
        let on = for_target(&all, id);
        assert_eq!(on.iter().filter(|e| e.outcome == Outcome::Acted).count(), 1, "{on:?}");
        assert!(on.iter().all(|e| matches!(e.outcome, Outcome::Acted | Outcome::Duplicate)), "{on:?}");
    }
    assert!(for_target(&all, &fresh).is_empty(), "compliant resources produce no action envelope");
    assert!(for_target(&all, &fresh_db).is_empty());
    let stood_down: Vec<&Envelope> =
        [report(&a), report(&b)].into_iter().filter(|r| r.outcome == Outcome::Duplicate).collect();
    assert!(stood_down.len() <= 1, "at most one of the two stands down: {stood_down:?}");
    for r in &stood_down {
        assert!(r.reason.contains("another sweep holds the") && r.reason.contains("standing down"), "{}", r.reason);
        assert_eq!(r.details["guard"], "lease");
    }
    for r in [report(&a), report(&b)].into_iter().filter(|r| r.outcome != Outcome::Duplicate) {
        for kind in ["ebs-volume", "rds-instance"] {
            let seen = ["compliant", "fixed", "skipped"].iter().map(|f| tally(r, kind, f)).sum::<u64>();
            assert_eq!(seen, 2, "{kind}: {:?}", r.details);
            assert!(tally(r, kind, "compliant") >= 1);
        }
    }
    let total = |k: &str| report(&a).details[k].as_u64().unwrap() + report(&b).details[k].as_u64().unwrap();
    assert_eq!(total("snapshotsCreated"), 1);
    assert_eq!(total("retentionFixed"), 1);

    // A later sweep finds everything compliant and mutates nothing outside the ledger and SNS.
    e.ctx().aws.calls.clear();
    let c = e.handle_trigger(&schedule()).await.unwrap();
    assert_eq!(c.len(), 1, "only the report: {c:?}");
    // The same policy window is the same sweep: the snapshot it took (tagged with its id) counts as
    // fixed by an earlier attempt; nothing is done again.
    assert_eq!(tally(report(&c), "ebs-volume", "compliant"), 1);
    assert_eq!(tally(report(&c), "ebs-volume", "fixed"), 1);
    assert_eq!(report(&c).details["fixedEarlier"], 1);
    assert_eq!(tally(report(&c), "rds-instance", "compliant"), 2);
    assert_eq!(report(&c).outcome, Outcome::Skipped);
    let mutating = e.ctx().aws.calls.mutating_calls();
    assert!(mutating.iter().all(|c| c.starts_with("dynamodb:") || c.starts_with("sns:")), "{mutating:?}");
}

#[tokio::test]
async fn retention_prunes_exactly_the_right_snapshots() {
    let tag = unique("bk");
    let policies = r#"{"ret":{"maxAgeHours":24,"retentionDays":7,"minKeep":2}}"#;
    let vars = [
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_POLICIES", policies),
        ("SELFHEAL_BACKUP_MAX_DELETE_PERCENT", "100"),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
    ];
    let e = enforcer(&vars).await;
    let ec2 = e.ctx().aws.ec2();
    let rds = e.ctx().aws.rds();
    let vol = volume(&ec2, &tag, "ret").await;

    // Oldest: a suite snapshot an AMI uses (moto makes the AMI's snapshot; we tag it as ours).
    let ami = ec2.register_image().name(unique("ami")).root_device_name("/dev/xvda").send().await.unwrap();
    let ami = ami.image_id().unwrap().to_string();
    let img = ec2.describe_images().image_ids(&ami).send().await.unwrap();
    let ami_snap = img.images()[0].block_device_mappings()[0].ebs().unwrap().snapshot_id().unwrap().to_string();
    let t = suite_tags(&vol, "ret");
    ec2.create_tags().resources(&ami_snap).set_tags(t.tags.clone()).send().await.unwrap();
    let foreign = snapshot(&ec2, &vol, None).await;
    let mut ours = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(StdDuration::from_millis(1100)).await; // moto's StartTime has second resolution
        ours.push(snapshot(&ec2, &vol, Some(suite_tags(&vol, "ret"))).await);
    }

    // A database with three suite snapshots and the policy's retention already.
    let db = database(&rds, &tag, "ret", 7).await;
    let mut db_ours = Vec::new();
    for i in 0..3 {
        let id = format!("{db}-s{i}");
        rds.create_db_snapshot()
            .db_instance_identifier(&db)
            .db_snapshot_identifier(&id)
            .tags(aws_sdk_rds::types::Tag::builder().key("selfheal:created-by").value("backup-enforcer").build())
            .send()
            .await
            .unwrap();
        db_ours.push(id);
        tokio::time::sleep(StdDuration::from_millis(1100)).await;
    }

    // Ten days on: everything is past the 7-day retention and stale.
    let now = Utc::now() + Duration::days(10);
    let sweep = e.sweep(&schedule(), false, now).await.unwrap();
    let envs = &sweep.envelopes;

    let left = snapshots_of(&ec2, &vol).await;
    let left_ids = ids(&left);
    for gone in &ours[..3] {
        assert!(!left_ids.contains(gone), "{gone} is past retention and not among the newest 2");
    }
    for kept in [&ours[3], &ours[4], &foreign, &ami_snap] {
        assert!(left_ids.contains(kept), "{kept} must survive: {left_ids:?}");
    }
    assert_eq!(left.len(), 5, "two newest + foreign + AMI-backed + the new one: {left_ids:?}");
    let on_vol = for_target(envs, &vol);
    assert_eq!(on_vol.len(), 1);
    assert_eq!(on_vol[0].outcome, Outcome::Acted, "{:?}", on_vol[0]);
    assert_eq!(strings(&on_vol[0].details["deleted"]), ours[..3].to_vec(), "oldest first");
    assert_eq!(strings(&on_vol[0].details["sparedAmi"]), vec![ami_snap.clone()]);
    assert_eq!(strings(&on_vol[0].details["created"]).len(), 1);

    let made = db_snapshots(&rds, &db).await;
    let ours_made = made.iter().find(|s| s.db_snapshot_identifier() == Some(&db_snapshot_id(&db, now))).unwrap();
    assert!(ours_made.tag_list().iter().any(|t| t.key() == Some("selfheal:created-by")));
    let db_left: HashSet<String> =
        db_snapshots(&rds, &db).await.iter().filter_map(|s| s.db_snapshot_identifier().map(str::to_string)).collect();
    assert!(!db_left.contains(&db_ours[0]), "{db_left:?}");
    assert!(db_left.contains(&db_ours[1]) && db_left.contains(&db_ours[2]), "{db_left:?}");
    assert!(db_left.contains(&db_snapshot_id(&db, now)), "a new DB snapshot was taken: {db_left:?}");
    assert_eq!(sweep.report.snapshots_deleted, 4);
    assert_eq!(sweep.report.snapshots_created, 2);
}

#[tokio::test]
async fn the_delete_cap_defers_the_rest_to_later_runs() {
    let tag = unique("bk");
    let policies = r#"{"ret":{"maxAgeHours":24,"retentionDays":7,"minKeep":1}}"#;
    let vars = [
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_POLICIES", policies),
        ("SELFHEAL_BACKUP_MAX_DELETE_PERCENT", "50"),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_BACKUP_RDS", "false"),
    ];
    let e = enforcer(&vars).await;
    let ec2 = e.ctx().aws.ec2();
    let vol = volume(&ec2, &tag, "ret").await;
    for _ in 0..5 {
        snapshot(&ec2, &vol, Some(suite_tags(&vol, "ret"))).await;
    }
    let sweep = e.sweep(&schedule(), false, Utc::now() + Duration::days(10)).await.unwrap();
    let env = for_target(&sweep.envelopes, &vol)[0];
    // 5 snapshots at 50% -> 2 deleted; 4 were eligible (min_keep 1), so 2 wait for a later run.
    assert_eq!(strings(&env.details["deleted"]).len(), 2, "{env:?}");
    assert_eq!(strings(&env.details["deferred"]).len(), 2, "{env:?}");
    assert_eq!(snapshots_of(&ec2, &vol).await.len(), 5 - 2 + 1);
}

#[tokio::test]
async fn backup_plan_drift_is_detected_and_corrected() {
    let tag = unique("bk");
    let good = unique("pa").replace('-', "");
    let drifted = unique("pb").replace('-', "");
    let policies = format!(
        r#"{{"{good}":{{"retentionDays":10,"copyRegion":"us-west-2"}},"{drifted}":{{"retentionDays":20,"schedule":"cron(0 3 ? * * *)"}}}}"#
    );
    let vars = [
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_POLICIES", policies.as_str()),
        ("SELFHEAL_BACKUP_RDS", "false"),
    ];
    let e = enforcer(&vars).await;
    let backup = e.ctx().aws.backup();
    // A plan for `drifted` exists already, with the wrong lifecycle.
    let vault = format!("selfheal-{drifted}");
    backup.create_backup_vault().backup_vault_name(&vault).send().await.unwrap();
    let wrong = aws_sdk_backup::types::BackupRuleInput::builder()
        .rule_name(format!("selfheal-{drifted}"))
        .target_backup_vault_name(&vault)
        .schedule_expression("cron(0 3 ? * * *)")
        .lifecycle(aws_sdk_backup::types::Lifecycle::builder().delete_after_days(3).build())
        .build()
        .unwrap();
    let plan = aws_sdk_backup::types::BackupPlanInput::builder()
        .backup_plan_name(format!("selfheal-{drifted}"))
        .rules(wrong)
        .build()
        .unwrap();
    let drifted_id = backup.create_backup_plan().backup_plan(plan).send().await.unwrap();
    let drifted_id = drifted_id.backup_plan_id().unwrap().to_string();

    let sweep = e.sweep(&schedule(), false, Utc::now()).await.unwrap();
    let drift = &sweep.report.drift;
    let d = &drift[&format!("selfheal-{drifted}")];
    assert_eq!(d, &vec!["deleteAfterDays: Some(3) -> Some(20)".to_string()], "{drift:?}");
    let g = &drift[&format!("selfheal-{good}")];
    assert!(g.iter().any(|p| p.contains("vault")) && g.iter().any(|p| p.contains("plan")), "{g:?}");

    // The missing vaults (home and DR) and plan were created with the policy's rule.
    let home = backup.describe_backup_vault().backup_vault_name(format!("selfheal-{good}")).send().await.unwrap();
    let account = home.backup_vault_arn().unwrap().split(':').nth(4).unwrap().to_string();
    let dr = dr_aws().await.backup();
    dr.describe_backup_vault().backup_vault_name(format!("selfheal-{good}")).send().await.expect("DR vault");
    let plans = backup.list_backup_plans().send().await.unwrap();
    let id = plans
        .backup_plans_list()
        .iter()
        .find(|p| p.backup_plan_name() == Some(&format!("selfheal-{good}")))
        .and_then(|p| p.backup_plan_id())
        .expect("plan created")
        .to_string();
    let got = backup.get_backup_plan().backup_plan_id(id).send().await.unwrap();
    let rule = &got.backup_plan().unwrap().rules()[0];
    assert_eq!(rule.target_backup_vault_name(), format!("selfheal-{good}"));
    assert_eq!(rule.schedule_expression(), Some("cron(0 5 ? * * *)"));
    assert_eq!(rule.lifecycle().and_then(|l| l.delete_after_days()), Some(10));
    assert_eq!(
        rule.copy_actions()[0].destination_backup_vault_arn(),
        format!("arn:aws:backup:us-west-2:{account}:backup-vault:selfheal-{good}")
    );

    // The drifted plan is corrected in place with UpdateBackupPlan. moto does not implement that
    // operation, so here the attempt is proven by the call log and the failure is reported as such.
    let calls = e.ctx().aws.calls.calls();
    assert!(calls.iter().any(|c| c == "backup:UpdateBackupPlan"), "{calls:?}");
    assert!(!calls.iter().any(|c| c == "backup:DeleteBackupPlan"), "drift is never fixed by deleting the plan");
    let env = for_target(&sweep.envelopes, &format!("selfheal-{drifted}"));
    assert_eq!(env.len(), 1);
    match env[0].outcome {
        Outcome::Acted => {
            let got = backup.get_backup_plan().backup_plan_id(&drifted_id).send().await.unwrap();
            let l = got.backup_plan().unwrap().rules()[0].lifecycle().and_then(|l| l.delete_after_days());
            assert_eq!(l, Some(20));
        }
        Outcome::Failed => assert!(env[0].reason.contains("UpdateBackupPlan"), "{:?}", env[0]),
        other => panic!("unexpected outcome {other:?}: {:?}", env[0]),
    }
    assert_eq!(
        for_target(&sweep.envelopes, &format!("selfheal-{good}"))[0].outcome,
        Outcome::Acted,
        "{:?}",
        sweep.envelopes
    );

    // Once corrected, the good plan is compliant on the next sweep (no envelope, no mutation).
    let again = e.sweep(&schedule(), false, Utc::now()).await.unwrap();
    assert!(!again.report.drift.contains_key(&format!("selfheal-{good}")), "{:?}", again.report.drift);
}

#[tokio::test]
async fn dry_run_reports_what_it_would_do_and_changes_nothing() {
    let tag = unique("bk");
    let policy = unique("dry").replace('-', "");
    let policies = format!(r#"{{"{policy}":{{"retentionDays":7,"minKeep":1}}}}"#);
    let vars = [
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_POLICIES", policies.as_str()),
        ("SELFHEAL_BACKUP_MAX_DELETE_PERCENT", "100"),
    ];
    let e = enforcer(&vars).await;
    let ec2 = e.ctx().aws.ec2();
    let rds = e.ctx().aws.rds();
    let stale = volume(&ec2, &tag, &policy).await;
    let expiring = volume(&ec2, &tag, &policy).await;
    let mut old = Vec::new();
    for _ in 0..3 {
        old.push(snapshot(&ec2, &expiring, Some(suite_tags(&expiring, &policy))).await);
    }
    let db = database(&rds, &tag, &policy, 1).await;
    e.ctx().aws.calls.clear();

    // The operator's manual dry run (events/manual-backup-sweep.json).
    let out = e.handle(&event("manual-backup-sweep.json", &[])).await.unwrap();
    let decisions: Vec<Envelope> = serde_json::from_value(out["decisions"].clone()).unwrap();
    let on_stale = for_target(&decisions, &stale);
    assert_eq!(on_stale[0].outcome, Outcome::DryRun);
    assert!(on_stale[0].reason.contains("would take a snapshot"), "{:?}", on_stale[0]);
    assert_eq!(on_stale[0].details["wouldSnapshot"], true);
    let on_db = for_target(&decisions, &db);
    assert_eq!(on_db[0].outcome, Outcome::DryRun);
    assert_eq!(on_db[0].details["wouldSetRetention"], 7);
    let plan = for_target(&decisions, &format!("selfheal-{policy}"));
    assert_eq!(plan[0].outcome, Outcome::DryRun, "{plan:?}");
    assert!(report(&decisions).dry_run && report(&decisions).outcome == Outcome::DryRun);

    // Ten days on, the expiring snapshots would be deleted, but only reported.
    let later = e.sweep(&schedule(), true, Utc::now() + Duration::days(10)).await.unwrap();
    let on_exp = for_target(&later.envelopes, &expiring);
    assert_eq!(on_exp[0].outcome, Outcome::DryRun);
    assert_eq!(strings(&on_exp[0].details["wouldDelete"]).len(), 2, "{:?}", on_exp[0]);

    let mutating = e.ctx().aws.calls.mutating_calls();
    assert!(mutating.iter().all(|c| c.starts_with("dynamodb:") || c.starts_with("sns:")), "{mutating:?}");
    assert!(snapshots_of(&ec2, &stale).await.is_empty());
    assert_eq!(ids(&snapshots_of(&ec2, &expiring).await), old.into_iter().collect::<HashSet<_>>());
    assert!(db_snapshots(&rds, &db).await.is_empty());
    assert_eq!(db_retention(&rds, &db).await, 1);
    let b = e.ctx().aws.backup();
    assert!(b.describe_backup_vault().backup_vault_name(format!("selfheal-{policy}")).send().await.is_err());
}

#[tokio::test]
async fn one_failing_resource_does_not_stop_the_rest() {
    let tag = unique("bk");
    let vars = [
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_BACKUP_CONCURRENCY", "2"),
    ];
    let e = enforcer(&vars).await;
    let ec2 = e.ctx().aws.ec2();
    let rds = e.ctx().aws.rds();
    let vols = [volume(&ec2, &tag, "gold").await, volume(&ec2, &tag, "gold").await];
    let broken = database(&rds, &tag, "gold", 35).await;
    let healthy = database(&rds, &tag, "gold", 35).await;
    let unknown = volume(&ec2, &tag, "platinum").await;
    let now = Utc::now() + Duration::days(10);
    // Something already holds the snapshot id the sweep will use for `broken`: CreateDBSnapshot fails.
    rds.create_db_snapshot()
        .db_instance_identifier(&broken)
        .db_snapshot_identifier(db_snapshot_id(&broken, now))
        .send()
        .await
        .unwrap();

    let sweep = e.sweep(&schedule(), false, now).await.unwrap();
    let envs = &sweep.envelopes;
    let b = for_target(envs, &broken);
    assert_eq!(b[0].outcome, Outcome::Failed, "{b:?}");
    assert!(b[0].reason.contains("CreateDBSnapshot"), "{b:?}");
    assert_eq!(for_target(envs, &healthy)[0].outcome, Outcome::Acted);
    assert_eq!(db_snapshots(&rds, &healthy).await.len(), 1);
    for v in &vols {
        assert_eq!(for_target(envs, v)[0].outcome, Outcome::Acted);
        assert_eq!(snapshots_of(&ec2, v).await.len(), 1);
    }
    let u = for_target(envs, &unknown);
    assert_eq!(u[0].outcome, Outcome::Refused);
    assert!(u[0].reason.contains("unknown policy \"platinum\""), "{u:?}");
    assert!(snapshots_of(&ec2, &unknown).await.is_empty());

    let r = report(envs);
    assert_eq!(tally(r, "rds-instance", "failed"), 1);
    assert_eq!(tally(r, "rds-instance", "fixed"), 1);
    assert_eq!(tally(r, "ebs-volume", "fixed"), 2);
    assert_eq!(tally(r, "ebs-volume", "failed"), 1, "the unknown policy counts as not compliant");
    assert!(r.details["failures"][&broken].as_str().unwrap().contains("CreateDBSnapshot"));
    assert_eq!(r.severity, selfheal::Severity::Critical);
    // The invocation fails, so Lambda retries; the ledger makes the retry redo only the failure.
    assert!(selfheal::lambda::conclude(envs.clone()).is_err());
}

#[tokio::test]
async fn new_snapshots_are_copied_to_the_dr_region_once() {
    let tag = unique("bk");
    let vars = [
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_POLICIES", r#"{"dr":{"copyRegion":"us-west-2"}}"#),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_BACKUP_RDS", "false"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
    ];
    let e = enforcer(&vars).await;
    let ec2 = e.ctx().aws.ec2();
    let vol = volume(&ec2, &tag, "dr").await;
    let sweep = e.sweep(&schedule(), false, Utc::now()).await.unwrap();
    let env = for_target(&sweep.envelopes, &vol)[0];
    let created = strings(&env.details["created"]);
    let copied = strings(&env.details["copied"]);
    assert_eq!((created.len(), copied.len()), (1, 1), "{env:?}");

    let dr = dr_aws().await.ec2();
    let copies = dr
        .describe_snapshots()
        .owner_ids("self")
        .filters(aws_sdk_ec2::types::Filter::builder().name("tag:selfheal:copy-of").values(&created[0]).build())
        .send()
        .await
        .unwrap();
    assert_eq!(copies.snapshots().len(), 1);
    assert_eq!(copies.snapshots()[0].snapshot_id(), Some(copied[0].as_str()));

    // The next sweep finds a fresh snapshot with its copy: nothing to do.
    let again = e.sweep(&schedule(), false, Utc::now()).await.unwrap();
    assert!(for_target(&again.envelopes, &vol).is_empty(), "{:?}", again.envelopes);
    assert_eq!(again.report.snapshots_copied, 0);
}

#[tokio::test]
async fn a_policy_tag_without_the_opt_in_tag_is_reported_and_left_alone() {
    let tag = unique("bk");
    let vars = [("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()), ("SELFHEAL_BACKUP_MANAGE_PLANS", "false")];
    let e = enforcer(&vars).await;
    let ec2 = e.ctx().aws.ec2();
    let rds = e.ctx().aws.rds();
    let managed = volume(&ec2, &tag, "gold").await;
    let policy_only = volume_tagged(&ec2, &[(&tag, "gold")]).await;
    let opted_out = volume_tagged(&ec2, &[(&tag, "gold"), (OPT_IN.0, "false")]).await;
    let db_policy_only = database_tagged(&rds, &[(&tag, "gold")], 1).await;

    let sweep = e.sweep(&schedule(), false, Utc::now()).await.unwrap();
    assert_eq!(snapshots_of(&ec2, &managed).await.len(), 1);
    for v in [&policy_only, &opted_out] {
        assert!(snapshots_of(&ec2, v).await.is_empty(), "{v} is not opted in");
        assert!(for_target(&sweep.envelopes, v).is_empty(), "no action envelope for {v}");
    }
    assert_eq!(db_retention(&rds, &db_policy_only).await, 1, "retention untouched");
    let r = report(&sweep.envelopes);
    assert_eq!(tally(r, "ebs-volume", "notOptedIn"), 2, "{:?}", r.details);
    assert_eq!(tally(r, "rds-instance", "notOptedIn"), 1, "{:?}", r.details);
    let listed = strings(&r.details["notOptedIn"]);
    for id in [&policy_only, &opted_out, &db_policy_only] {
        assert!(listed.contains(id), "{id} listed in {listed:?}");
    }
    assert!(r.reason.contains("2 not opted in"), "{}", r.reason);
}

/// An Aurora cluster with the policy and opt-in tags, and one member instance that carries them too.
async fn aurora(rds: &aws_sdk_rds::Client, tag: &str, policy: &str) -> (String, String) {
    let cluster = unique("aurora");
    let tags = [(tag, policy), OPT_IN];
    rds.create_db_cluster()
        .db_cluster_identifier(&cluster)
        .engine("aurora-postgresql")
        .master_username("admin")
        .master_user_password("password123")
        .backup_retention_period(1)
        .set_tags(Some(rds_tags(&tags)))
        .send()
        .await
        .unwrap();
    let member = format!("{cluster}-1");
    rds.create_db_instance()
        .db_instance_identifier(&member)
        .db_cluster_identifier(&cluster)
        .engine("aurora-postgresql")
        .db_instance_class("db.r6g.large")
        .set_tags(Some(rds_tags(&tags)))
        .send()
        .await
        .unwrap();
    (cluster, member)
}

/// Manual snapshots of a DB cluster.
async fn cluster_snapshots(rds: &aws_sdk_rds::Client, cluster: &str) -> Vec<aws_sdk_rds::types::DbClusterSnapshot> {
    let r = rds.describe_db_cluster_snapshots().db_cluster_identifier(cluster).send().await.unwrap();
    r.db_cluster_snapshots().iter().filter(|s| s.snapshot_type() == Some("manual")).cloned().collect()
}

#[tokio::test]
async fn aurora_clusters_are_backed_up_as_a_whole_and_pruned_by_retention() {
    let tag = unique("bk");
    let policy = unique("au").replace('-', "");
    let policies = format!(r#"{{"{policy}":{{"maxAgeHours":24,"retentionDays":7,"minKeep":1}}}}"#);
    let vars = [
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_POLICIES", policies.as_str()),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_BACKUP_MAX_DELETE_PERCENT", "100"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
    ];
    let e = enforcer(&vars).await;
    let rds = e.ctx().aws.rds();
    let (cluster, member) = aurora(&rds, &tag, &policy).await;
    let cluster_retention = |rds: aws_sdk_rds::Client, id: String| async move {
        let r = rds.describe_db_clusters().db_cluster_identifier(id).send().await.unwrap();
        r.db_clusters()[0].backup_retention_period().unwrap()
    };

    // Ten days on (moto's automated cluster snapshot is then stale too): one cluster snapshot, the
    // cluster's retention raised, and nothing taken of the member instance on its own.
    let t0 = Utc::now() + Duration::days(10);
    let first = e.sweep(&schedule(), false, t0).await.unwrap();
    let snaps = cluster_snapshots(&rds, &cluster).await;
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let first_id = snaps[0].db_cluster_snapshot_identifier().unwrap().to_string();
    let tags: Vec<_> = snaps[0].tag_list().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
    assert!(tags.contains(&("selfheal:created-by", "backup-enforcer")), "{tags:?}");
    assert!(tags.contains(&("selfheal:source", cluster.as_str())), "{tags:?}");
    assert_eq!(cluster_retention(rds.clone(), cluster.clone()).await, 7);
    assert!(db_snapshots(&rds, &member).await.is_empty(), "members are backed up through the cluster");
    let on = for_target(&first.envelopes, &cluster);
    assert_eq!((on[0].outcome, on[0].target.kind.as_str()), (Outcome::Acted, "rds-cluster"), "{on:?}");
    assert!(for_target(&first.envelopes, &member).is_empty());
    assert_eq!(tally(report(&first.envelopes), "rds-cluster", "fixed"), 1);

    // Ten more days: the first snapshot is the newest (min_keep 1), so a new one is taken and the
    // first kept; ten more: the first has expired and is deleted, the newer ones kept.
    // (Snapshots carry the emulator's real creation times: a pause keeps their order unambiguous.)
    tokio::time::sleep(StdDuration::from_millis(1100)).await;
    e.sweep(&schedule(), false, t0 + Duration::days(10)).await.unwrap();
    assert_eq!(cluster_snapshots(&rds, &cluster).await.len(), 2);
    tokio::time::sleep(StdDuration::from_millis(1100)).await;
    let third = e.sweep(&schedule(), false, t0 + Duration::days(20)).await.unwrap();
    let left: HashSet<String> = cluster_snapshots(&rds, &cluster)
        .await
        .iter()
        .filter_map(|s| s.db_cluster_snapshot_identifier().map(str::to_string))
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(!left.contains(&first_id), "the expired snapshot is deleted: {left:?}");
    assert_eq!(strings(&for_target(&third.envelopes, &cluster)[0].details["deleted"]), vec![first_id]);
}

#[tokio::test]
async fn new_db_and_cluster_snapshots_are_copied_to_the_dr_region_once() {
    let tag = unique("bk");
    let vars = [
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_POLICIES", r#"{"dr":{"copyRegion":"us-west-2"}}"#),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
    ];
    let e = enforcer(&vars).await;
    let rds = e.ctx().aws.rds();
    let db = database(&rds, &tag, "dr", 14).await;
    let (cluster, _member) = aurora(&rds, &tag, "dr").await;
    // Two days on, moto's automated snapshots are stale: each database gets one, copied at once.
    let t0 = Utc::now() + Duration::days(2);
    let sweep = e.sweep(&schedule(), false, t0).await.unwrap();
    let mut copies = Vec::new();
    for id in [&db, &cluster] {
        let found = for_target(&sweep.envelopes, id);
        let Some(env) = found.first() else { panic!("no decision on {id}: {:?}", report(&sweep.envelopes).details) };
        let created = strings(&env.details["created"]);
        let copied = strings(&env.details["copied"]);
        assert_eq!((created.len(), copied.len()), (1, 1), "{env:?}");
        copies.push((created[0].clone(), copied[0].clone()));
    }
    assert_eq!(report(&sweep.envelopes).details["snapshotsCopied"], 2);

    let dr = dr_aws().await.rds();
    let tag_of = |list: &[aws_sdk_rds::types::Tag], key: &str| {
        list.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).map(str::to_string)
    };
    let dr_copies_of = |source: String| {
        let dr = dr.clone();
        async move {
            let mut n = 0;
            let out = dr.describe_db_snapshots().snapshot_type("manual").send().await.unwrap();
            n += out
                .db_snapshots()
                .iter()
                .filter(|s| tag_of(s.tag_list(), "selfheal:copy-of") == Some(source.clone()))
                .count();
            let out = dr.describe_db_cluster_snapshots().snapshot_type("manual").send().await.unwrap();
            n += out
                .db_cluster_snapshots()
                .iter()
                .filter(|s| tag_of(s.tag_list(), "selfheal:copy-of") == Some(source.clone()))
                .count();
            n
        }
    };
    let (db_source, db_copy) = &copies[0];
    let out = dr.describe_db_snapshots().db_snapshot_identifier(db_copy).send().await.unwrap();
    let copy = &out.db_snapshots()[0];
    assert_eq!(copy.db_instance_identifier(), Some(db.as_str()));
    assert_eq!(tag_of(copy.tag_list(), "selfheal:copy-of").as_deref(), Some(db_source.as_str()));
    assert_eq!(tag_of(copy.tag_list(), "selfheal:created-by").as_deref(), Some("backup-enforcer"));
    let (cluster_source, cluster_copy) = &copies[1];
    let out = dr.describe_db_cluster_snapshots().db_cluster_snapshot_identifier(cluster_copy).send().await.unwrap();
    let copy = &out.db_cluster_snapshots()[0];
    assert_eq!(copy.db_cluster_identifier(), Some(cluster.as_str()));
    assert_eq!(tag_of(copy.tag_list(), "selfheal:copy-of").as_deref(), Some(cluster_source.as_str()));
    assert_eq!(db_snapshots(&rds, &db).await.len(), 1, "the home-region snapshot stays where it is");

    // A second sweep finds the copies in the DR region and copies nothing again.
    let again = e.sweep(&schedule(), false, t0).await.unwrap();
    assert_eq!(again.report.snapshots_copied, 0, "{:?}", again.envelopes);
    assert!(
        !again.report.has_failures(),
        "no copy was tried again (it would fail as a duplicate): {:?}",
        again.envelopes
    );
    for source in [db_source, cluster_source] {
        assert_eq!(dr_copies_of(source.clone()).await, 1, "one copy of {source}");
    }
}

#[tokio::test]
async fn copies_in_the_dr_region_are_pruned_by_the_same_retention() {
    let tag = unique("bk");
    let vars = [
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_POLICIES", r#"{"drp":{"copyRegion":"us-west-2","retentionDays":1,"minKeep":1}}"#),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_BACKUP_RDS", "false"),
        ("SELFHEAL_BACKUP_MAX_DELETE_PERCENT", "100"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
    ];
    let e = enforcer(&vars).await;
    let ec2 = e.ctx().aws.ec2();
    let vol = volume(&ec2, &tag, "drp").await;
    let dr = dr_aws().await.ec2();
    let dr_copies = || async {
        let out = dr
            .describe_snapshots()
            .owner_ids("self")
            .filters(aws_sdk_ec2::types::Filter::builder().name("tag:selfheal:source").values(&vol).build())
            .send()
            .await
            .unwrap();
        ids(out.snapshots())
    };
    let copied = |s: &selfheal::backup::Sweep| strings(&for_target(&s.envelopes, &vol)[0].details["copied"]);

    // Day 0: snapshot A, copied as A'. Day 2: A is stale, so B, copied as B'; A and A' are the newest
    // of their kind (min_keep 1) and stay. Day 4: C and C'; A and A' have expired and go, B and B' stay.
    // (Snapshots carry the emulator's real creation times: a pause keeps their order unambiguous.)
    let t0 = Utc::now();
    let first = e.sweep(&schedule(), false, t0).await.unwrap();
    let a_copy = copied(&first);
    tokio::time::sleep(StdDuration::from_millis(1100)).await;
    let second = e.sweep(&schedule(), false, t0 + Duration::days(2)).await.unwrap();
    let b_copy = copied(&second);
    assert_eq!(dr_copies().await.len(), 2, "nothing pruned while each copy is the newest one listed");
    tokio::time::sleep(StdDuration::from_millis(1100)).await;
    let third = e.sweep(&schedule(), false, t0 + Duration::days(4)).await.unwrap();
    let c_copy = copied(&third);
    let on = for_target(&third.envelopes, &vol)[0];
    assert_eq!(strings(&on.details["drDeleted"]), a_copy, "{on:?}");
    let left = dr_copies().await;
    let want: HashSet<String> = b_copy.into_iter().chain(c_copy).collect();
    assert_eq!(left, want, "the expired copy is gone, the newer ones stay");
    assert_eq!(snapshots_of(&ec2, &vol).await.len(), 2, "at home too: A deleted, B and C kept");
    assert!(third.report.snapshots_deleted >= 2, "{:?}", third.report);
}

#[tokio::test]
async fn a_sweep_out_of_time_starts_nothing_more_and_its_retry_finishes_the_rest() {
    let tag = unique("bk");
    let vars = |budget: &'static str| {
        [
            ("SELFHEAL_BACKUP_POLICY_TAG", tag.clone()),
            ("SELFHEAL_BACKUP_MANAGE_PLANS", "false".to_string()),
            ("SELFHEAL_BACKUP_RDS", "false".to_string()),
            ("SELFHEAL_COOLDOWN_SECONDS", "0".to_string()),
            ("SELFHEAL_BACKUP_TIME_BUDGET_SECONDS", budget.to_string()),
        ]
    };
    let spent = vars("0");
    let spent: Vec<(&str, &str)> = spent.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let e = enforcer(&spent).await;
    let ec2 = e.ctx().aws.ec2();
    let vols = [volume(&ec2, &tag, "gold").await, volume(&ec2, &tag, "gold").await];
    let t = schedule();
    let now = Utc::now();

    let first = e.sweep(&t, false, now).await.unwrap();
    for v in &vols {
        assert!(snapshots_of(&ec2, v).await.is_empty(), "{v}: nothing started after the budget ran out");
    }
    assert_eq!(first.report.left_for_next_run, 2);
    let r = report(&first.envelopes);
    assert_eq!((r.outcome, r.severity), (Outcome::Failed, selfheal::Severity::Warning), "{r:?}");
    assert!(r.reason.contains("2 left for the retry: the 0 s time budget ran out"), "{}", r.reason);
    assert!(selfheal::lambda::conclude(first.envelopes.clone()).is_err(), "the invocation fails, so Lambda retries it");

    // The retry (same event) has time: it does the rest.
    let ample = vars("600");
    let ample: Vec<(&str, &str)> = ample.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let retry = enforcer(&ample).await.sweep(&t, false, now).await.unwrap();
    for v in &vols {
        assert_eq!(snapshots_of(&ec2, v).await.len(), 1, "{v}");
    }
    assert_eq!(retry.report.left_for_next_run, 0);
    assert_eq!(report(&retry.envelopes).outcome, Outcome::Acted);
}

#[tokio::test]
async fn an_aurora_member_tagged_without_its_cluster_is_reported_as_not_backed_up() {
    let tag = unique("bk");
    let vars = [
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
    ];
    let e = enforcer(&vars).await;
    let rds = e.ctx().aws.rds();
    let cluster = unique("aurora");
    rds.create_db_cluster()
        .db_cluster_identifier(&cluster)
        .engine("aurora-postgresql")
        .master_username("admin")
        .master_user_password("password123")
        .send()
        .await
        .unwrap();
    let member = format!("{cluster}-1");
    rds.create_db_instance()
        .db_instance_identifier(&member)
        .db_cluster_identifier(&cluster)
        .engine("aurora-postgresql")
        .db_instance_class("db.r6g.large")
        .set_tags(Some(rds_tags(&[(&tag, "gold"), OPT_IN])))
        .send()
        .await
        .unwrap();

    let sweep = e.sweep(&schedule(), false, Utc::now() + Duration::days(10)).await.unwrap();
    assert_eq!(sweep.report.untagged_clusters, vec![format!("{member} (cluster {cluster})")]);
    let r = report(&sweep.envelopes);
    assert_eq!(r.severity, selfheal::Severity::Warning, "{r:?}");
    assert!(r.reason.contains("not backed up: 1 Aurora member(s) tagged but not their cluster"), "{}", r.reason);
    assert!(cluster_snapshots(&rds, &cluster).await.is_empty(), "an untagged cluster is not backed up");
    assert!(db_snapshots(&rds, &member).await.is_empty(), "nor is the member on its own");
}

#[tokio::test]
async fn db_snapshot_copies_in_the_dr_region_are_pruned_by_the_same_retention() {
    let tag = unique("bk");
    let vars = [
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_POLICIES", r#"{"drq":{"copyRegion":"us-west-2","retentionDays":1,"minKeep":1}}"#),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_BACKUP_MAX_DELETE_PERCENT", "100"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
    ];
    let e = enforcer(&vars).await;
    let rds = e.ctx().aws.rds();
    let db = database(&rds, &tag, "drq", 14).await;
    let dr = dr_aws().await.rds();
    let dr_copies = || async {
        let out = dr.describe_db_snapshots().db_instance_identifier(&db).snapshot_type("manual").send().await.unwrap();
        out.db_snapshots().iter().filter_map(|s| s.db_snapshot_identifier().map(str::to_string)).collect::<HashSet<_>>()
    };
    let copied = |s: &selfheal::backup::Sweep| strings(&for_target(&s.envelopes, &db)[0].details["copied"]);

    // Two days on (moto's automated snapshot is then stale): A, copied. Two more: B, copied; A' is
    // the newest copy listed and stays. Two more: C, copied; A' has expired and goes, B' stays.
    let t0 = Utc::now() + Duration::days(2);
    let a = copied(&e.sweep(&schedule(), false, t0).await.unwrap());
    tokio::time::sleep(StdDuration::from_millis(1100)).await;
    let b = copied(&e.sweep(&schedule(), false, t0 + Duration::days(2)).await.unwrap());
    assert_eq!(dr_copies().await.len(), 2);
    tokio::time::sleep(StdDuration::from_millis(1100)).await;
    let third = e.sweep(&schedule(), false, t0 + Duration::days(4)).await.unwrap();
    let c = copied(&third);
    assert_eq!(strings(&for_target(&third.envelopes, &db)[0].details["drDeleted"]), a);
    let want: HashSet<String> = b.into_iter().chain(c).collect();
    assert_eq!(dr_copies().await, want);
}
