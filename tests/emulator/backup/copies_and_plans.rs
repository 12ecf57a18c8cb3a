//! AWS Backup plans and DR copies: plan drift is detected and corrected; new EBS, DB and cluster
//! snapshots are copied to the DR region once; the copies there are pruned by the same retention.

use std::collections::HashSet;
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use harness::unique;
use selfheal::Outcome;

use super::common::{
    aurora, database, db_snapshots, dr_aws, enforcer, for_target, ids, report, schedule, snapshots_of, strings, volume,
};

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
