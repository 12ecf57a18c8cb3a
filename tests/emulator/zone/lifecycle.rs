//! An evacuation's life: its shifts extended while the AZ stays impaired and about to expire, kept
//! otherwise; once the alarms clear and the AZ has stayed clear for the hysteresis, the shifts
//! cancelled, the raised capacity lowered back and the evacuation ended. And an alarm state change
//! delivered after a newer one of the same alarm does not undo it.

use std::time::Duration;

use chrono::Utc;
use selfheal::zone::actions;
use selfheal::Outcome;

use super::common::{about, deliver, none_failed, summaries, the, Rig, BAD};

const HYSTERESIS_SECONDS: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shifts_are_extended_while_the_az_is_impaired_and_cancelled_after_the_hysteresis() {
    let hysteresis = HYSTERESIS_SECONDS.to_string();
    let rig = Rig::hub(&[("SELFHEAL_ZONE_HYSTERESIS_SECONDS", &hysteresis)]).await;
    let (lb1, lb2) = (rig.ready_lb().await, rig.ready_lb().await);
    let group = rig.ready_group(12).await;
    // The shifts start 45 minutes ago (ARC's clock set back): 15 of their 60 minutes are left, within
    // the 20 minutes before expiry (SELFHEAL_ZONE_EXTEND_BEFORE_MINUTES) that extend a shift.
    rig.stand_in.rewind(Duration::from_secs(45 * 60));
    for lb in [&lb1, &lb2] {
        none_failed(&rig.deliver(&rig.alarm(BAD, "5xx", lb, "ALARM")).await);
    }
    rig.stand_in.advance(Duration::from_secs(45 * 60));
    let arns = [&lb1.arn, &lb2.arn, &group.arn];
    for r in arns {
        let s = &rig.shifts_of(r)[0];
        let left = s.expiry_time - Utc::now();
        assert!((14..=15).contains(&left.num_minutes()), "{r}: {left}");
    }
    assert_eq!(rig.place.group_now(&group).await.unwrap().0, 8);

    // The re-check schedule: the AZ is still impaired, each shift is extended by a full expiry.
    let ds = rig.deliver(&rig.schedule()).await;
    none_failed(&ds);
    let updates = rig.stand_in.requests_for("UpdateZonalShift");
    assert_eq!(updates.len(), 3, "{updates:#?}");
    for r in arns {
        let s = &rig.shifts_of(r)[0];
        let d = the(&ds, actions::EXTEND, r);
        assert_eq!(d.outcome, Outcome::Acted, "{}", d.reason);
        assert_eq!(d.details["shiftId"], s.zonal_shift_id.as_str());
        assert!(updates
            .iter()
            .any(|u| u.path == format!("/zonalshifts/{}", s.zonal_shift_id) && u.body["expiresIn"] == "60m"));
        let left = s.expiry_time - Utc::now();
        assert!((59..=60).contains(&left.num_minutes()), "{r}: {left}");
    }
    // Far from expiry now: a second re-check keeps them as they are.
    let ds = rig.deliver(&rig.schedule()).await;
    none_failed(&ds);
    assert_eq!(rig.stand_in.requests_for("UpdateZonalShift").len(), 3, "{:#?}", summaries(&ds));

    // The alarms clear; the hysteresis starts, and a re-check within it changes nothing.
    for lb in [&lb1, &lb2] {
        none_failed(&rig.deliver(&rig.alarm(BAD, "5xx", lb, "OK")).await);
    }
    let evac = rig.ev.ctx().ledger.evacuation(BAD).await.unwrap().unwrap();
    assert!(evac.active && evac.clear_since.is_some(), "{evac:?}");
    none_failed(&rig.deliver(&rig.schedule()).await);
    assert!(rig.stand_in.requests_for("CancelZonalShift").is_empty(), "cancelled within the hysteresis");
    assert!(rig.stand_in.shifts().iter().all(|s| s.status == "ACTIVE"));

    // Past the hysteresis: shifts cancelled, capacity lowered back, the evacuation ended — once, though
    // five overlapping re-checks run at the same time.
    tokio::time::sleep(Duration::from_millis(HYSTERESIS_SECONDS * 1000 + 200)).await;
    let runs: Vec<_> = (0..5)
        .map(|_| {
            let (ev, event) = (rig.ev.clone(), rig.schedule());
            tokio::spawn(async move { deliver(&ev, &event).await })
        })
        .collect();
    let mut ds = Vec::new();
    for run in futures::future::join_all(runs).await {
        ds.extend(run.expect("the invocation did not panic"));
    }
    none_failed(&ds);
    assert_eq!(rig.stand_in.requests_for("CancelZonalShift").len(), 3);
    assert!(rig.stand_in.shifts().iter().all(|s| s.status == "CANCELED"), "{:#?}", rig.stand_in.shifts());
    for r in arns {
        assert_eq!(the(&ds, actions::CANCEL, r).outcome, Outcome::Acted, "{:#?}", summaries(&ds));
    }
    assert_eq!(rig.place.group_now(&group).await.unwrap().0, 6, "desired capacity back to what it was");
    let end = the(&ds, actions::END, &rig.id(BAD));
    assert_eq!(end.outcome, Outcome::Acted, "{}", end.reason);
    assert_eq!(end.details["evacuation"], evac.id.as_str());
    let after = rig.ev.ctx().ledger.evacuation(BAD).await.unwrap().unwrap();
    assert!(!after.active && after.resources.is_empty(), "{after:?}");
    assert!(rig.ev.ctx().ledger.active_evacuations().await.unwrap().is_empty());

    // Nothing left to re-check anywhere; nothing more asked of ARC.
    let ds = rig.deliver(&rig.schedule()).await;
    assert!(about(&ds, actions::END, &rig.id(BAD)).is_empty(), "{:#?}", summaries(&ds));
    assert_eq!(rig.arc_changes().len(), 3 + 3 + 3);
}

#[tokio::test]
async fn an_alarm_state_change_delivered_after_a_newer_one_does_not_impair_the_az_again() {
    let rig = Rig::hub(&[]).await;
    let (lb1, lb2) = (rig.ready_lb().await, rig.ready_lb().await);
    none_failed(&rig.deliver(&rig.alarm(BAD, "5xx", &lb2, "ALARM")).await);
    // lb1's alarm went to ALARM two minutes ago and back to OK a minute ago; EventBridge delivers the
    // OK first and the older ALARM late.
    let now = Utc::now();
    let ok = rig.alarm_at(BAD, "5xx", &lb1, "OK", now - chrono::Duration::seconds(60));
    let late = rig.alarm_at(BAD, "5xx", &lb1, "ALARM", now - chrono::Duration::seconds(120));
    none_failed(&rig.deliver(&ok).await);
    let ds = rig.deliver(&late).await;
    none_failed(&ds);
    // Only lb2 alarms in the AZ: below the threshold of two resources, nothing evacuated.
    assert!(rig.ev.ctx().ledger.evacuations().await.unwrap().is_empty(), "{:#?}", summaries(&ds));
    assert!(rig.arc_changes().is_empty());
    let signals = rig.ev.ctx().ledger.zone_signals().await.unwrap();
    let lb1_signal = signals.iter().find(|s| s.resource.as_deref() == Some(lb1.dim.as_str())).unwrap();
    assert!(!lb1_signal.impaired, "the newer OK stands: {lb1_signal:?}");
}
