//! A gray AZ under a storm of duplicate alarms: the per-AZ alarms of two load balancers in one AZ, each
//! state change delivered five times at once from parallel invocations, start exactly one evacuation and
//! exactly one zonal shift per opted-in load balancer and group in the AZ; everything else is untouched.

use std::collections::BTreeSet;

use selfheal::zone::actions;
use selfheal::{Envelope, Outcome};

use super::common::{about, deliver, none_failed, summaries, the, Rig, BAD, COMMENT, NAMES};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gray_az_is_shifted_once_per_resource_under_a_storm_of_duplicate_alarms() {
    let rig = Rig::hub(&[]).await;
    let (lb1, lb2) = (rig.ready_lb().await, rig.ready_lb().await);
    let group = rig.ready_group(12).await;
    // Bystanders: opted in but not in the AZ; in the AZ but not opted in.
    let lb_elsewhere = rig.place.lb(&NAMES[1..], true, true).await;
    rig.register(&lb_elsewhere.arn, &lb_elsewhere.name, &lb_elsewhere.azs, false);
    let lb_not_opted = rig.place.lb(&NAMES, false, true).await;
    rig.register(&lb_not_opted.arn, &lb_not_opted.name, &lb_not_opted.azs, false);
    let group_elsewhere = rig.place.group(&[(NAMES[1], 2), (NAMES[2], 2)], 8, true).await;
    rig.register(&group_elsewhere.arn, &group_elsewhere.name, &group_elsewhere.azs, false);
    let group_not_opted = rig.place.group(&[(NAMES[0], 2), (NAMES[1], 2), (NAMES[2], 2)], 12, false).await;
    rig.register(&group_not_opted.arn, &group_not_opted.name, &group_not_opted.azs, false);
    let before = [rig.place.group_now(&group_elsewhere).await, rig.place.group_now(&group_not_opted).await];

    // Four state changes (two signals of each load balancer), each delivered five times, all at once.
    let changes = [
        rig.alarm(BAD, "5xx", &lb1, "ALARM"),
        rig.alarm(BAD, "latency", &lb1, "ALARM"),
        rig.alarm(BAD, "5xx", &lb2, "ALARM"),
        rig.alarm(BAD, "unhealthy", &lb2, "ALARM"),
    ];
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (ev, event) = (rig.ev.clone(), changes[i % changes.len()].clone());
            tokio::spawn(async move { deliver(&ev, &event).await })
        })
        .collect();
    let mut ds: Vec<Envelope> = Vec::new();
    for t in futures::future::join_all(tasks).await {
        ds.extend(t.expect("the invocation did not panic"));
    }
    none_failed(&ds);

    // One evacuation, recorded once and announced once.
    let evac = rig.ev.ctx().ledger.evacuation(BAD).await.unwrap().expect("an evacuation of the AZ");
    let az_id = rig.id(BAD);
    assert!(evac.active && evac.az_id == az_id, "{evac:?}");
    let started: Vec<&Envelope> =
        ds.iter().filter(|d| d.action == actions::EVACUATE && d.outcome == Outcome::Acted).collect();
    assert_eq!(started.len(), 1, "{:#?}", summaries(&ds));
    assert_eq!(started[0].details["evacuation"], evac.id.as_str());
    assert_eq!(started[0].target.id, az_id);

    // ARC received exactly one start per opted-in resource in the AZ, away from the AZ's ID, with the
    // evacuation's comment; nothing else was asked of it.
    let starts = rig.starts();
    let shifted: BTreeSet<&str> = starts.keys().map(String::as_str).collect();
    assert_eq!(shifted, BTreeSet::from([lb1.arn.as_str(), lb2.arn.as_str(), group.arn.as_str()]), "{starts:#?}");
    let comment = format!("{COMMENT} {}", evac.id);
    for (arn, reqs) in &starts {
        assert_eq!(reqs.len(), 1, "{arn}: {reqs:#?}");
        assert_eq!(reqs[0].status, Some(201), "{arn}");
        assert_eq!(reqs[0].body["awayFrom"], az_id.as_str(), "{arn}");
        assert_eq!(reqs[0].body["comment"], comment.as_str(), "{arn}");
        assert_eq!(reqs[0].body["expiresIn"], "60m", "{arn}");
    }
    assert!(rig.stand_in.requests_for("UpdateZonalShift").is_empty());
    assert!(rig.stand_in.requests_for("CancelZonalShift").is_empty());
    let shifts = rig.stand_in.shifts();
    assert_eq!(shifts.len(), 3, "{shifts:#?}");
    assert!(shifts.iter().all(|s| s.status == "ACTIVE" && s.away_from == az_id && s.comment == comment), "{shifts:#?}");

    // Each shift decided once (acted, naming the evacuation and ARC's shift id); the rest duplicates.
    for r in [&lb1.arn, &lb2.arn, &group.arn] {
        let d = the(&ds, actions::SHIFT, r);
        assert_eq!(d.outcome, Outcome::Acted, "{r}: {}", d.reason);
        assert_eq!(d.details["evacuation"], evac.id.as_str());
        assert_eq!((d.details["azId"].as_str(), d.details["azName"].as_str()), (Some(az_id.as_str()), Some(BAD)));
        let id = rig.shifts_of(r)[0].zonal_shift_id.clone();
        assert_eq!(d.details["shiftId"], id.as_str(), "{r}");
    }
    // The group carries the AZ's share first: desired 6 + its 2 in-service in the AZ.
    assert_eq!(rig.place.group_now(&group).await.unwrap().0, 8);

    // The bystanders: no decision, no shift, no change in moto.
    for r in [&lb_elsewhere.arn, &lb_not_opted.arn, &group_elsewhere.arn, &group_not_opted.arn] {
        assert!(ds.iter().all(|d| d.target.id != *r), "{r} was decided on: {:#?}", summaries(&ds));
        assert!(rig.shifts_of(r).is_empty(), "{r} was shifted");
    }
    assert_eq!([rig.place.group_now(&group_elsewhere).await, rig.place.group_now(&group_not_opted).await], before);
    // The only mutating AWS calls outside the ledger were the three shifts and the one raise.
    let calls: Vec<String> = rig
        .ev
        .ctx()
        .aws
        .calls
        .mutating_calls()
        .into_iter()
        .filter(|c| !c.starts_with("dynamodb:") && !c.starts_with("sns:"))
        .collect();
    let mut sorted = calls.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "arc-zonal-shift:StartZonalShift",
            "arc-zonal-shift:StartZonalShift",
            "arc-zonal-shift:StartZonalShift",
            "autoscaling:UpdateAutoScalingGroup"
        ],
        "{calls:?}"
    );
    assert!(about(&ds, actions::REGION_EVENT, harness::REGION).is_empty());
}
