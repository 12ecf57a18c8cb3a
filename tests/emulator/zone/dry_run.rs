//! Dry-run, global (`SELFHEAL_DRY_RUN`) or asked for by an operator (`dryRun`): every move is decided
//! and shown, and nothing changes — ARC receives no start, update or cancel, moto's groups and databases
//! are as they were, and the only mutating calls are the ledger's and the topic's.

use selfheal::zone::actions;
use selfheal::{Envelope, Outcome};

use super::common::{none_failed, summaries, the, Group, Lb, Rig, BAD, NAMES};
use super::writers::multi_az_writer;

/// Two load balancers, a group ARC can shift (with headroom), one it cannot, and an opted-in Multi-AZ
/// writer in the AZ.
struct Fleet {
    lbs: [Lb; 2],
    shiftable: Group,
    fallback: Group,
    writer: String,
}

async fn fleet(rig: &Rig) -> Fleet {
    let lbs = [rig.ready_lb().await, rig.ready_lb().await];
    let shiftable = rig.ready_group(12).await;
    let fallback = rig.place.group(&[(NAMES[0], 1), (NAMES[1], 1), (NAMES[2], 1)], 6, true).await;
    let writer = multi_az_writer(rig, BAD, true).await;
    Fleet { lbs, shiftable, fallback, writer }
}

/// Every move shown as a dry run, and nothing changed anywhere.
async fn nothing_changed(rig: &Rig, f: &Fleet, ds: &[Envelope], before: &[Option<(i32, String)>]) {
    none_failed(ds);
    let az_id = rig.id(BAD);
    let evacuating = the(ds, actions::EVACUATE, &az_id);
    assert_eq!(evacuating.outcome, Outcome::DryRun, "{}", evacuating.reason);
    assert!(evacuating.dry_run);
    for r in [&f.lbs[0].arn, &f.lbs[1].arn, &f.shiftable.arn] {
        let d = the(ds, actions::SHIFT, r);
        assert_eq!(d.outcome, Outcome::DryRun, "{r}: {}", d.reason);
    }
    assert!(the(ds, actions::SHIFT, &f.shiftable.arn).reason.contains("desired capacity 6 → 8"));
    assert_eq!(the(ds, actions::REMOVE_SUBNETS, &f.fallback.arn).outcome, Outcome::DryRun);
    let writer = ds.iter().find(|d| d.target.id == f.writer).expect("the writer was decided on");
    assert_eq!((writer.action.as_str(), writer.outcome), ("reboot-failover", Outcome::DryRun), "{}", writer.reason);

    assert!(rig.arc_changes().is_empty(), "{:#?}", rig.arc_changes());
    assert!(rig.stand_in.shifts().is_empty());
    let now = [rig.place.group_now(&f.shiftable).await, rig.place.group_now(&f.fallback).await];
    assert_eq!(now.as_slice(), before, "moto's groups unchanged");
    let mutating: Vec<String> = rig
        .ev
        .ctx()
        .aws
        .calls
        .mutating_calls()
        .into_iter()
        .filter(|c| !c.starts_with("dynamodb:") && !c.starts_with("sns:"))
        .collect();
    assert!(mutating.is_empty(), "{mutating:?}");
    assert!(rig.ev.ctx().ledger.evacuations().await.unwrap().is_empty(), "no evacuation recorded");
}

#[tokio::test]
async fn a_global_dry_run_shows_every_move_and_changes_nothing() {
    let rig = Rig::hub(&[("SELFHEAL_DRY_RUN", "true")]).await;
    let f = fleet(&rig).await;
    let before = [rig.place.group_now(&f.shiftable).await, rig.place.group_now(&f.fallback).await];
    let mut ds = Vec::new();
    for lb in &f.lbs {
        ds.extend(rig.deliver(&rig.alarm(BAD, "5xx", lb, "ALARM")).await);
    }
    nothing_changed(&rig, &f, &ds, &before).await;
    // A second alarm shows the same plan again (a dry run claims nothing), still changing nothing.
    let again = rig.deliver(&rig.alarm(BAD, "latency", &f.lbs[0], "ALARM")).await;
    assert_eq!(the(&again, actions::SHIFT, &f.lbs[0].arn).outcome, Outcome::DryRun, "{:#?}", summaries(&again));
    assert!(rig.arc_changes().is_empty());
}

#[tokio::test]
async fn an_operators_dry_run_evacuate_shows_every_move_changes_nothing_and_records_no_signal() {
    let rig = Rig::hub(&[]).await;
    let f = fleet(&rig).await;
    let before = [rig.place.group_now(&f.shiftable).await, rig.place.group_now(&f.fallback).await];
    let mut ask = rig.manual("evacuate", Some(BAD));
    ask["dryRun"] = serde_json::json!(true);
    let ds = rig.deliver(&ask).await;
    nothing_changed(&rig, &f, &ds, &before).await;
    // The request is not left behind as a signal a later live invocation would act on.
    assert!(rig.ev.ctx().ledger.zone_signals().await.unwrap().is_empty());
    let later = rig.deliver(&rig.alarm(BAD, "5xx", &f.lbs[0], "ALARM")).await;
    assert!(later.iter().all(|d| d.action == actions::ASSESS), "{:#?}", summaries(&later));
    assert!(rig.arc_changes().is_empty());
}
