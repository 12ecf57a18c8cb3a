//! Retention: it prunes exactly the right snapshots (sparing foreign, AMI-backed and the newest
//! `min_keep`), the delete cap defers the rest to later runs, and Aurora clusters are backed up as a
//! whole and pruned by the same retention.

use std::collections::HashSet;
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use harness::unique;
use selfheal::backup::db_snapshot_id;
use selfheal::Outcome;

use super::common::{
    aurora, cluster_snapshots, database, db_snapshots, enforcer, for_target, ids, report, schedule, snapshot,
    snapshots_of, strings, suite_tags, tally, volume,
};

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
