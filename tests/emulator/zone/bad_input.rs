//! Bad input, each a named decision and never a crash or a half-done change: an AZ the account does not
//! have, a load balancer without zonal shift enabled or unknown to ARC, a group deleted after it opted
//! in (before the evacuation, and during it).

use selfheal::zone::actions;
use selfheal::{Outcome, Severity};

use super::common::{none_failed, summaries, the, Rig, BAD, NAMES};

#[tokio::test]
async fn an_az_the_account_does_not_have_is_refused_naming_the_azs_it_has() {
    let rig = Rig::hub(&[]).await;
    let lb = rig.ready_lb().await;
    for bad in ["us-east-1z", "use1-az99"] {
        let ds = rig.deliver(&rig.manual("evacuate", Some(bad))).await;
        assert_eq!(ds.len(), 1, "{:#?}", summaries(&ds));
        assert_eq!((ds[0].action.as_str(), ds[0].outcome), (actions::EVACUATE, Outcome::Refused), "{}", ds[0].reason);
        let listed = format!("{BAD}={}", rig.id(BAD));
        assert!(ds[0].reason.contains(bad) && ds[0].reason.contains(&listed), "{}", ds[0].reason);
        let missing = serde_json::json!({"kind": "availability zone", "id": bad});
        assert_eq!((&ds[0].details["guard"], &ds[0].details["missing"]), (&serde_json::json!("not-found"), &missing));
    }
    assert!(rig.stand_in.requests().is_empty(), "ARC was not even asked");
    assert!(rig.ev.ctx().ledger.zone_signals().await.unwrap().is_empty());
    // The same request naming a real AZ by its ID evacuates it (the operator's request counts alone).
    let ds = rig.deliver(&rig.manual("evacuate", Some(&rig.id(BAD)))).await;
    none_failed(&ds);
    assert_eq!(the(&ds, actions::SHIFT, &lb.arn).outcome, Outcome::Acted, "{:#?}", summaries(&ds));
    assert_eq!(rig.shifts_of(&lb.arn)[0].away_from, rig.id(BAD));
}

#[tokio::test]
async fn load_balancers_arc_cannot_shift_are_named_in_refused_decisions_not_skipped() {
    let rig = Rig::hub(&[]).await;
    let ok = rig.ready_lb().await;
    // Zonal shift not enabled on it (ARC would refuse it), though ARC manages it.
    let off = rig.place.lb(&NAMES, true, false).await;
    rig.register(&off.arn, &off.name, &off.azs, false);
    // Zonal shift enabled, but ARC does not know it (not a managed resource).
    let unknown = rig.place.lb(&NAMES, true, true).await;
    let mut ds = Vec::new();
    for lb in [&ok, &off] {
        ds.extend(rig.deliver(&rig.alarm(BAD, "5xx", lb, "ALARM")).await);
    }
    none_failed(&ds);

    assert_eq!(the(&ds, actions::SHIFT, &ok.arn).outcome, Outcome::Acted);
    let d = the(&ds, actions::SHIFT, &off.arn);
    assert_eq!((d.outcome, d.severity), (Outcome::Refused, Severity::Critical), "{}", d.reason);
    assert!(d.reason.contains(&off.name) && d.reason.contains("zonal_shift.config.enabled"), "{}", d.reason);
    assert!(!rig.starts().contains_key(&off.arn), "not attempted");
    let d = the(&ds, actions::SHIFT, &unknown.arn);
    assert_eq!((d.outcome, d.severity), (Outcome::Refused, Severity::Critical), "{}", d.reason);
    assert!(d.reason.contains(&unknown.name) && d.reason.contains("not a managed resource"), "{}", d.reason);
    assert!(rig.shifts_of(&unknown.arn).is_empty());
}

#[tokio::test]
async fn a_group_deleted_after_it_opted_in_crashes_nothing() {
    let rig = Rig::hub(&[]).await;
    let (lb1, lb2) = (rig.ready_lb().await, rig.ready_lb().await);
    let asg = rig.place.aws.autoscaling();
    let delete = |name: String| {
        let asg = asg.clone();
        async move {
            asg.delete_auto_scaling_group().auto_scaling_group_name(name).force_delete(true).send().await.unwrap();
        }
    };
    // Gone before the evacuation (ARC still lists it): not a resource of the place any more.
    let before = rig.ready_group(12).await;
    delete(before.name.clone()).await;
    // Gone during it, after its capacity was raised and it was shifted.
    let during = rig.ready_group(12).await;
    let mut ds = Vec::new();
    for lb in [&lb1, &lb2] {
        ds.extend(rig.deliver(&rig.alarm(BAD, "5xx", lb, "ALARM")).await);
    }
    none_failed(&ds);
    assert!(ds.iter().all(|d| d.target.id != before.arn), "{:#?}", summaries(&ds));
    assert!(!rig.starts().contains_key(&before.arn));
    assert_eq!(the(&ds, actions::SHIFT, &during.arn).outcome, Outcome::Acted);
    delete(during.name.clone()).await;

    let ds = rig.deliver(&rig.manual("end", Some(BAD))).await;
    none_failed(&ds);
    let d = the(&ds, actions::CANCEL, &during.arn);
    assert!(d.reason.contains("is gone"), "{}", d.reason);
    assert_eq!(d.outcome, Outcome::Acted, "nothing left to restore is not a refusal: {}", d.reason);
    assert_eq!(rig.shifts_of(&during.arn)[0].status, "CANCELED", "its shift still cancelled");
    for lb in [&lb1, &lb2] {
        assert_eq!(the(&ds, actions::CANCEL, &lb.arn).outcome, Outcome::Acted);
    }
    assert_eq!(the(&ds, actions::END, &rig.id(BAD)).outcome, Outcome::Acted);
}

#[tokio::test]
async fn a_group_whose_shift_arc_refuses_gets_its_raised_capacity_back_and_nothing_is_left_recorded() {
    let rig = Rig::hub(&[]).await;
    let (lb1, lb2) = (rig.ready_lb().await, rig.ready_lb().await);
    let group = rig.place.group(&[(NAMES[0], 2), (NAMES[1], 2), (NAMES[2], 2)], 12, true).await;
    // ARC manages the group, but knows it in the two other AZs only: it refuses a shift away from this one.
    rig.register(&group.arn, &group.name, &[NAMES[1].to_string(), NAMES[2].to_string()], false);
    let mut ds = Vec::new();
    for lb in [&lb1, &lb2] {
        ds.extend(rig.deliver(&rig.alarm(BAD, "5xx", lb, "ALARM")).await);
    }
    none_failed(&ds);

    let d = the(&ds, actions::SHIFT, &group.arn);
    assert_eq!((d.outcome, d.severity), (Outcome::Refused, Severity::Critical), "{}", d.reason);
    assert!(d.reason.contains("InvalidAz") && d.reason.contains("desired capacity put back to 6"), "{}", d.reason);
    let starts = rig.starts();
    assert_eq!(starts[&group.arn].iter().map(|r| r.status).collect::<Vec<_>>(), [Some(400)]);
    assert!(rig.shifts_of(&group.arn).is_empty());
    assert_eq!(rig.place.group_now(&group).await.unwrap().0, 6, "the raise is undone");
    let evac = rig.ev.ctx().ledger.evacuation(BAD).await.unwrap().unwrap();
    assert!(!evac.resources.contains_key(&group.arn), "nothing for the end to undo: {evac:?}");
    assert_eq!(evac.resources.len(), 2, "the load balancers' shifts: {evac:?}");
}
