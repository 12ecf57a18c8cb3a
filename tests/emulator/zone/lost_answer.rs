//! A `StartZonalShift` whose answer is lost after ARC applied it: the SDK's retry meets ARC's conflict
//! naming the shift the first attempt made, the evacuator recognises it as its own by the comment and
//! says so (`lostAnswer: true`), exactly one shift exists, and the evacuation's end cancels it.

use selfheal::zone::actions;
use selfheal::Outcome;

use super::common::{none_failed, summaries, the, Rig, BAD};

#[tokio::test]
async fn a_lost_answer_to_start_zonal_shift_is_recognised_and_one_shift_exists() {
    let rig = Rig::hub(&[]).await;
    let (lb1, lb2) = (rig.ready_lb().await, rig.ready_lb().await);
    rig.stand_in.lose_next("StartZonalShift", 1);
    let mut ds = Vec::new();
    for lb in [&lb1, &lb2] {
        ds.extend(rig.deliver(&rig.alarm(BAD, "5xx", lb, "ALARM")).await);
    }
    none_failed(&ds);

    // The first start's answer was dropped (no status) and its retry conflicted; one shift per resource.
    let starts = rig.starts();
    let lost: Vec<&String> = starts.iter().filter(|(_, r)| r.len() == 2).map(|(arn, _)| arn).collect();
    assert_eq!(lost.len(), 1, "{starts:#?}");
    let lost = lost[0].clone();
    let statuses: Vec<Option<u16>> = starts[&lost].iter().map(|r| r.status).collect();
    assert_eq!(statuses, [None, Some(409)]);
    for lb in [&lb1, &lb2] {
        assert_eq!(rig.shifts_of(&lb.arn).len(), 1, "{}", lb.arn);
    }

    let d = the(&ds, actions::SHIFT, &lost);
    assert_eq!(d.outcome, Outcome::Acted, "{}", d.reason);
    assert_eq!(d.details["lostAnswer"], true, "{d:#?}");
    assert_eq!(d.details["shiftId"], rig.shifts_of(&lost)[0].zonal_shift_id.as_str());
    assert!(d.reason.contains("answer was lost"), "{}", d.reason);
    let other = if lost == lb1.arn { &lb2.arn } else { &lb1.arn };
    assert!(!the(&ds, actions::SHIFT, other).details.contains_key("lostAnswer"));

    // The shift is the evacuation's own: ending it cancels both.
    let ds = rig.deliver(&rig.manual("end", Some(BAD))).await;
    none_failed(&ds);
    assert_eq!(rig.stand_in.requests_for("CancelZonalShift").len(), 2, "{:#?}", summaries(&ds));
    assert!(rig.stand_in.shifts().iter().all(|s| s.status == "CANCELED"));
}
