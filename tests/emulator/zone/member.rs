//! A member account's AZ evacuated from the hub: the alarms come from the member, the evacuator acts
//! there through the member role (the ARC requests signed by the member's credentials, the shifted ARNs
//! the member's), records the evacuation under the member's place, and the hub's own load balancer in
//! the same AZ is not touched. The schedule finds the member's evacuation through the fleet-wide index.

use selfheal::clients::Aws;
use selfheal::zone::actions;
use selfheal::Outcome;

use super::common::{none_failed, summaries, the, Place, Rig, BAD, HUB, NAMES};

const MEMBER: &str = "444455556666";

#[tokio::test]
async fn a_member_accounts_load_balancers_are_shifted_in_that_account_and_the_hubs_are_not() {
    let rig = Rig::member(MEMBER, &[]).await;
    rig.ev.ctx().aws.calls.record_requests(None);
    let (lb1, lb2) = (rig.ready_lb().await, rig.ready_lb().await);
    for lb in [&lb1, &lb2] {
        assert!(lb.arn.contains(&format!(":{MEMBER}:loadbalancer/")), "{}", lb.arn);
    }
    // The hub has an opted-in, shiftable load balancer in the same AZ.
    let hub = Place::build(HUB, Aws::from_sdk_config(harness::sdk_config().await), &rig.place.opt_in).await;
    let hub_lb = hub.lb(&NAMES, true, true).await;
    rig.register(&hub_lb.arn, &hub_lb.name, &hub_lb.azs, false);

    let mut ds = Vec::new();
    for lb in [&lb1, &lb2] {
        ds.extend(rig.deliver(&rig.alarm(BAD, "5xx", lb, "ALARM")).await);
    }
    none_failed(&ds);
    let az_id = rig.id(BAD);
    for lb in [&lb1, &lb2] {
        let d = the(&ds, actions::SHIFT, &lb.arn);
        assert_eq!(d.outcome, Outcome::Acted, "{}", d.reason);
        assert_eq!(d.target.account.as_deref(), Some(MEMBER));
        assert_eq!(d.target.region.as_deref(), Some(harness::REGION));
        assert_eq!(rig.starts()[&lb.arn].len(), 1);
        assert_eq!(rig.shifts_of(&lb.arn)[0].away_from, az_id);
    }
    let evacuating = the(&ds, actions::EVACUATE, &az_id);
    assert!(evacuating.reason.contains(MEMBER), "the decision names the account: {}", evacuating.reason);
    assert!(rig.shifts_of(&hub_lb.arn).is_empty(), "the hub's load balancer is not shifted");
    assert!(ds.iter().all(|d| d.target.id != hub_lb.arn), "{:#?}", summaries(&ds));

    // The ARC requests were signed by the member role's credentials: those that listed the member's load
    // balancers, not the hub's.
    let records = rig.ev.ctx().aws.calls.records();
    let key_of = |op: &str| -> Vec<Option<String>> {
        records.iter().filter(|r| r.operation == op).map(|r| r.access_key_id.clone()).collect()
    };
    let listing = key_of("elasticloadbalancing:DescribeLoadBalancers");
    let starts = key_of("arc-zonal-shift:StartZonalShift");
    assert_eq!(starts.len(), 2);
    assert!(starts.iter().all(|k| k.is_some() && k.as_deref() != Some("testing")), "{starts:?}");
    assert!(starts.iter().all(|k| listing.contains(k)), "{starts:?} vs {listing:?}");
    assert!(key_of("dynamodb:PutItem").iter().all(|k| k.as_deref() == Some("testing")), "the ledger is the hub's");

    // The evacuation is the member's place's, and the schedule re-checks it there.
    let ledger = &rig.ev.ctx().ledger;
    let evac = ledger.at(MEMBER, harness::REGION).evacuation(BAD).await.unwrap().expect("the member's evacuation");
    assert!(evac.active && evac.az_id == az_id);
    assert!(ledger.evacuation(BAD).await.unwrap().is_none(), "nothing evacuated in the hub's place");
    let active = ledger.active_evacuations().await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!((active[0].account.as_deref(), active[0].region.as_deref()), (Some(MEMBER), Some(harness::REGION)));
    let ds = rig.deliver(&rig.schedule()).await;
    none_failed(&ds);
    assert!(!ds.is_empty() && ds.iter().all(|d| d.target.account.as_deref() == Some(MEMBER)), "{:#?}", summaries(&ds));
    assert_eq!(rig.stand_in.requests_for("StartZonalShift").len(), 2, "kept, not shifted again");
}
