//! Capacity first: a group is shifted only once the other AZs can carry its share. With headroom its
//! desired capacity is raised by its in-service instances in the AZ before the shift (the requests as
//! sent show the order); at its maximum the shift is refused with the numbers and nothing is done to it.

use selfheal::zone::actions;
use selfheal::{Outcome, Severity};

use super::common::{none_failed, summaries, the, Rig, BAD};

#[tokio::test]
async fn a_group_without_headroom_is_refused_with_the_numbers_and_one_with_headroom_is_raised_before_its_shift() {
    let rig = Rig::hub(&[]).await;
    rig.ev.ctx().aws.calls.record_requests(None);
    let (lb1, lb2) = (rig.ready_lb().await, rig.ready_lb().await);
    let tight = rig.ready_group(6).await; // 2 per AZ, desired 6, maximum 6
    let roomy = rig.ready_group(9).await; // 2 per AZ, desired 6, maximum 9

    let mut ds = Vec::new();
    for lb in [&lb1, &lb2] {
        ds.extend(rig.deliver(&rig.alarm(BAD, "5xx", lb, "ALARM")).await);
    }
    none_failed(&ds);

    // The tight group: refused (critical), the numbers in words and in the details; untouched.
    let d = the(&ds, actions::SHIFT, &tight.arn);
    assert_eq!((d.outcome, d.severity), (Outcome::Refused, Severity::Critical), "{}", d.reason);
    assert!(d.reason.contains("needs desired 8") && d.reason.contains("maximum is 6"), "{}", d.reason);
    assert_eq!(
        d.details["capacity"],
        serde_json::json!({"desired": 6, "inServiceInAz": 2, "needs": 8, "max": 6}),
        "{d:#?}"
    );
    assert!(!rig.starts().contains_key(&tight.arn), "no shift for the tight group");
    assert_eq!(rig.place.group_now(&tight).await.unwrap().0, 6);

    // The roomy group: desired 6 → 8 (its 2 in-service in the AZ), then shifted.
    let d = the(&ds, actions::SHIFT, &roomy.arn);
    assert_eq!(d.outcome, Outcome::Acted, "{}", d.reason);
    assert_eq!(d.details["capacity"], serde_json::json!({"from": 6, "to": 8, "lost": 2, "max": 9}), "{d:#?}");
    assert_eq!(rig.place.group_now(&roomy).await.unwrap().0, 8, "desired capacity in moto");
    assert_eq!(rig.starts()[&roomy.arn].len(), 1);
    let records = rig.ev.ctx().aws.calls.records();
    let raise = records
        .iter()
        .position(|r| {
            r.operation == "autoscaling:UpdateAutoScalingGroup"
                && r.body.contains(&format!("AutoScalingGroupName={}", roomy.name))
                && r.body.contains("DesiredCapacity=8")
        })
        .expect("the raise was sent");
    let shift = records
        .iter()
        .position(|r| r.operation == "arc-zonal-shift:StartZonalShift" && r.body.contains(&roomy.arn))
        .expect("the shift was sent");
    assert!(raise < shift, "the capacity is raised before the group is shifted");
    assert_eq!(records[raise].status, Some(200), "moto took the raise before the shift was sent");

    // Once refused is enough: a re-check does not page about the tight group again.
    let again = rig.deliver(&rig.alarm(BAD, "latency", &lb1, "ALARM")).await;
    assert!(again.iter().all(|d| d.target.id != tight.arn), "{:#?}", summaries(&again));
    assert_eq!(rig.place.group_now(&roomy).await.unwrap().0, 8, "not raised twice");
}
