//! The subnet fallback: a group ARC cannot shift (ARC does not manage it) loses its subnets in the AZ,
//! and at the end gets exactly the recorded set back, in its order; when somebody changed its subnets
//! in between, the restore is refused (critical) and their change stays.

use selfheal::zone::actions;
use selfheal::{Envelope, Outcome, Severity};

use super::common::{none_failed, summaries, the, Group, Lb, Rig, BAD, NAMES};

/// Two load balancers and a group not managed by ARC, with its subnets in the order c, a, b; the AZ
/// impaired. Returns the decisions.
async fn evacuated(rig: &Rig) -> (Lb, Lb, Group, Vec<Envelope>) {
    let (lb1, lb2) = (rig.ready_lb().await, rig.ready_lb().await);
    let group = rig.place.group(&[(NAMES[2], 2), (NAMES[0], 2), (NAMES[1], 2)], 12, true).await;
    let mut ds = Vec::new();
    for lb in [&lb1, &lb2] {
        ds.extend(rig.deliver(&rig.alarm(BAD, "5xx", lb, "ALARM")).await);
    }
    none_failed(&ds);
    (lb1, lb2, group, ds)
}

#[tokio::test]
async fn a_group_arc_cannot_shift_loses_the_az_subnets_and_gets_exactly_its_original_set_back() {
    let rig = Rig::hub(&[]).await;
    let (_, _, group, ds) = evacuated(&rig).await;
    let [c, a, b] = [group.subnets[0].clone(), group.subnets[1].clone(), group.subnets[2].clone()];
    assert_eq!(
        group.subnets,
        [rig.place.subnets[2].clone(), rig.place.subnets[0].clone(), rig.place.subnets[1].clone()]
    );

    let d = the(&ds, actions::REMOVE_SUBNETS, &group.arn);
    assert_eq!(d.outcome, Outcome::Acted, "{}", d.reason);
    assert_eq!(d.details["removedSubnets"], serde_json::json!([a]));
    assert_eq!(d.details["originalSubnets"], serde_json::json!([c, a, b]));
    let (desired, subnets) = rig.place.group_now(&group).await.unwrap();
    assert_eq!(subnets, format!("{c},{b}"), "the AZ's subnet removed, the others kept in order");
    assert_eq!(desired, 6, "no capacity change for the fallback");
    assert!(!rig.starts().contains_key(&group.arn), "ARC was not asked to shift it");
    assert!(ds.iter().all(|d| d.action != actions::SHIFT || d.target.id != group.arn), "{:#?}", summaries(&ds));

    // An operator ends the evacuation: the recorded set comes back exactly.
    let ds = rig.deliver(&rig.manual("end", Some(BAD))).await;
    none_failed(&ds);
    let d = the(&ds, actions::RESTORE_SUBNETS, &group.arn);
    assert_eq!(d.outcome, Outcome::Acted, "{}", d.reason);
    assert_eq!(rig.place.group_now(&group).await.unwrap(), (6, format!("{c},{a},{b}")));
    assert_eq!(the(&ds, actions::END, &rig.id(BAD)).outcome, Outcome::Acted);
    assert_eq!(rig.stand_in.requests_for("CancelZonalShift").len(), 2, "the load balancers' shifts cancelled");
}

#[tokio::test]
async fn a_restore_over_somebodys_change_of_the_subnets_is_refused_and_their_change_stays() {
    let rig = Rig::hub(&[]).await;
    let (_, _, group, _) = evacuated(&rig).await;
    // Somebody narrows the group to one subnet during the evacuation.
    let theirs = group.subnets[2].clone();
    rig.place
        .aws
        .autoscaling()
        .update_auto_scaling_group()
        .auto_scaling_group_name(&group.name)
        .vpc_zone_identifier(&theirs)
        .send()
        .await
        .unwrap();

    let ds = rig.deliver(&rig.manual("end", Some(BAD))).await;
    none_failed(&ds);
    let d = the(&ds, actions::RESTORE_SUBNETS, &group.arn);
    assert_eq!((d.outcome, d.severity), (Outcome::Refused, Severity::Critical), "{}", d.reason);
    assert!(d.reason.contains("changed since") && d.reason.contains(&theirs), "{}", d.reason);
    assert_eq!(rig.place.group_now(&group).await.unwrap().1, theirs, "their change is not overwritten");
    // The rest of the evacuation still ends.
    assert_eq!(the(&ds, actions::END, &rig.id(BAD)).outcome, Outcome::Acted);
}
