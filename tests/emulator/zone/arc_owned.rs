//! Never against ARC: a resource on which ARC already has a shift that is not the evacuator's (zonal
//! autoshift, a practice run, a customer's own zonal shift) is left alone with a stand-down decision
//! (`guard: another-recovery`, the recovery named), and the rest of the AZ is shifted as usual.

use selfheal::zone::actions;
use selfheal::{Envelope, Outcome, Severity};

use super::common::{none_failed, summaries, the, Lb, Rig, BAD, NAMES};

/// Alarms of both load balancers in the bad AZ; every decision they led to.
async fn impair(rig: &Rig, lbs: [&Lb; 2]) -> Vec<Envelope> {
    let mut ds = Vec::new();
    for lb in lbs {
        ds.extend(rig.deliver(&rig.alarm(BAD, "5xx", lb, "ALARM")).await);
    }
    none_failed(&ds);
    ds
}

fn stood_down(d: &Envelope, recovery: &str) {
    assert_eq!((d.outcome, d.severity), (Outcome::Refused, Severity::Warning), "{}", d.reason);
    assert_eq!(d.details["guard"], "another-recovery", "{d:#?}");
    assert_eq!(d.details["recovery"], recovery, "{d:#?}");
    assert!(d.reason.contains("never fighting ARC"), "{}", d.reason);
}

#[tokio::test]
async fn an_autoshift_in_effect_makes_the_evacuator_stand_down_on_that_resource_and_shift_the_others() {
    let rig = Rig::hub(&[]).await;
    // ARC autoshifts the first load balancer (zonal autoshift enabled on it) away from the AZ.
    let auto = rig.place.lb(&NAMES, true, true).await;
    rig.register(&auto.arn, &auto.name, &auto.azs, true);
    let other = rig.ready_lb().await;
    let group = rig.ready_group(12).await;
    rig.stand_in.start_autoshift(&rig.id(BAD));

    let ds = impair(&rig, [&auto, &other]).await;
    stood_down(the(&ds, actions::SHIFT, &auto.arn), "arc-zonal-autoshift");
    assert!(!rig.starts().contains_key(&auto.arn), "no StartZonalShift on the autoshifted resource");
    for r in [&other.arn, &group.arn] {
        assert_eq!(the(&ds, actions::SHIFT, r).outcome, Outcome::Acted, "{:#?}", summaries(&ds));
        assert_eq!(rig.starts()[r].len(), 1);
    }
    // A re-check does not page again.
    let again = rig.deliver(&rig.alarm(BAD, "latency", &auto, "ALARM")).await;
    assert!(again.iter().all(|d| d.target.id != auto.arn), "{:#?}", summaries(&again));
}

#[tokio::test]
async fn a_practice_run_in_effect_makes_the_evacuator_stand_down_on_that_resource_and_shift_the_others() {
    let rig = Rig::hub(&[]).await;
    let practiced = rig.place.lb(&NAMES, true, true).await;
    rig.register(&practiced.arn, &practiced.name, &practiced.azs, true);
    let other = rig.ready_lb().await;
    // The practice run is away from another AZ: whatever its AZ, ARC owns the resource's traffic now.
    let run = rig.stand_in.start_practice_run(&practiced.arn, &rig.id(NAMES[2])).expect("practice run");

    let ds = impair(&rig, [&practiced, &other]).await;
    let d = the(&ds, actions::SHIFT, &practiced.arn);
    stood_down(d, "arc-practice-run");
    assert_eq!(d.details["inProgress"]["shiftId"], run.as_str());
    assert!(!rig.starts().contains_key(&practiced.arn));
    assert_eq!(the(&ds, actions::SHIFT, &other.arn).outcome, Outcome::Acted);
    // The practice run goes on, untouched.
    let shifts = rig.shifts_of(&practiced.arn);
    assert_eq!(shifts.len(), 1);
    assert_eq!((shifts[0].status.as_str(), shifts[0].shift_type.as_str()), ("ACTIVE", "PRACTICE_RUN"));
}

#[tokio::test]
async fn a_customers_own_zonal_shift_makes_the_evacuator_stand_down_and_it_is_left_as_it_was() {
    let rig = Rig::hub(&[]).await;
    let (theirs, other) = (rig.ready_lb().await, rig.ready_lb().await);
    // An operator shifted the load balancer themselves, through the SDK, with their own comment.
    let arc = aws_sdk_arczonalshift::Client::new(&harness::sdk_config_at(&rig.stand_in.endpoint()).await);
    let own = arc
        .start_zonal_shift()
        .resource_identifier(&theirs.arn)
        .away_from(rig.id(BAD))
        .expires_in("2h")
        .comment("ops: database maintenance")
        .send()
        .await
        .unwrap();

    let ds = impair(&rig, [&theirs, &other]).await;
    let d = the(&ds, actions::SHIFT, &theirs.arn);
    stood_down(d, "customer-zonal-shift");
    assert_eq!(d.details["inProgress"]["shiftId"], own.zonal_shift_id());
    assert_eq!(the(&ds, actions::SHIFT, &other.arn).outcome, Outcome::Acted);
    // Their shift is exactly as they made it, and ours was never attempted on it.
    assert_eq!(rig.starts()[&theirs.arn].len(), 1, "only the operator's own start");
    let shifts = rig.shifts_of(&theirs.arn);
    assert_eq!(shifts.len(), 1);
    assert_eq!((shifts[0].status.as_str(), shifts[0].comment.as_str()), ("ACTIVE", "ops: database maintenance"));
    assert!(rig.stand_in.requests_for("UpdateZonalShift").is_empty());
    assert!(rig.stand_in.requests_for("CancelZonalShift").is_empty());
}
