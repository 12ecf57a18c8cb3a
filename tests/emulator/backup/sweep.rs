//! What a backup sweep does and does not do: stale volumes and databases get snapshots and fresh
//! ones do not; overlapping sweeps act once; dry-run changes nothing; one failing resource does not
//! stop the rest; a policy tag without the opt-in tag changes nothing; a sweep out of time starts
//! nothing more and its retry finishes; an Aurora member tagged without its cluster is reported.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use harness::OPT_IN;
use harness::{event, unique};
use selfheal::backup::db_snapshot_id;
use selfheal::{Envelope, Outcome};

use super::common::{
    cluster_snapshots, database, database_tagged, db_retention, db_snapshots, enforcer, for_target, ids, rds_tags,
    report, schedule, snapshot, snapshots_of, strings, suite_tags, tag_of, tally, volume, volume_tagged,
};

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

/// The case the sweep tag exists for: a snapshot this sweep already took (a first attempt whose
/// invocation died, say) that reads as stale by its age (here: the sweep runs a hundred days on, in
/// its own policy window). It carries the sweep's id, so the sweep counts it as done — fixed by an
/// earlier attempt — and takes no second one; the same old snapshot carrying another sweep's id does
/// not count, and that volume gets a fresh one.
#[tokio::test]
async fn a_snapshot_of_this_sweep_that_looks_stale_counts_as_done_and_no_second_is_taken() {
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
    let tag = unique("bk");
    let policy = unique("sw").replace('-', "");
    let policies = format!(r#"{{"{policy}":{{"maxAgeHours":1}}}}"#);
    let vars = [
        ("SELFHEAL_BACKUP_POLICY_TAG", tag.as_str()),
        ("SELFHEAL_BACKUP_POLICIES", policies.as_str()),
        ("SELFHEAL_BACKUP_MANAGE_PLANS", "false"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
    ];
    let e = enforcer(&vars).await;
    let ec2 = e.ctx().aws.ec2();
    let later = Utc::now() + Duration::days(100);
    let p = selfheal::backup::parse_policies(Some(&policies)).unwrap()[&policy].clone();
    let this_sweep = selfheal::backup::sweep_event_id(&p, later);
    let other_sweep = selfheal::backup::sweep_event_id(&p, later - Duration::hours(2));
    assert_ne!(this_sweep, other_sweep);
    let ours = |vol: &str, sweep: &str| {
        TagSpecification::builder()
            .resource_type(ResourceType::Snapshot)
            .tags(Tag::builder().key("selfheal:created-by").value("backup-enforcer").build())
            .tags(Tag::builder().key("selfheal:policy").value(&policy).build())
            .tags(Tag::builder().key("selfheal:source").value(vol).build())
            .tags(Tag::builder().key("selfheal:sweep").value(sweep).build())
            .build()
    };
    let done = volume(&ec2, &tag, &policy).await;
    snapshot(&ec2, &done, Some(ours(&done, &this_sweep))).await;
    let not_done = volume(&ec2, &tag, &policy).await;
    snapshot(&ec2, &not_done, Some(ours(&not_done, &other_sweep))).await;

    let s = e.sweep(&schedule(), false, later).await.unwrap();
    let r = report(&s.envelopes);
    assert_eq!(snapshots_of(&ec2, &done).await.len(), 1, "this sweep's snapshot is not taken again: {:?}", r.details);
    assert_eq!(snapshots_of(&ec2, &not_done).await.len(), 2, "another sweep's old snapshot does not count");
    assert_eq!(r.details["fixedEarlier"], 1, "{:?}", r.details);
    assert_eq!(tally(r, "ebs-volume", "fixed"), 2, "{:?}", r.details);
    let acted: Vec<&Envelope> = for_target(&s.envelopes, &not_done);
    assert!(acted.iter().any(|e| e.outcome == Outcome::Acted), "{acted:?}");
    assert!(
        for_target(&s.envelopes, &done).iter().all(|e| e.outcome != Outcome::Acted),
        "nothing acted on the volume whose snapshot this sweep already took"
    );
}
