//! Two impaired AZs are a region event: no zonal shift away from either, one critical `region-event`
//! decision (paged once however many signals follow), and the region failover with its approval is
//! left to people.

use chrono::Utc;
use selfheal::ledger::ZoneSignal;
use selfheal::zone::actions;
use selfheal::{Outcome, Severity};

use super::common::{about, none_failed, summaries, Rig, BAD, NAMES};

/// The signal the evacuator records for a per-AZ alarm in ALARM (what `deliver` would have stored).
fn alarmed(az: &str, signal: &str, dim: &str) -> ZoneSignal {
    ZoneSignal {
        az: az.into(),
        source: format!("alarm:selfheal-az|{az}|{signal}|{dim}"),
        impaired: true,
        at: Utc::now(),
        detail: format!("{signal} of {dim}"),
        resource: Some(dim.into()),
    }
}

#[tokio::test]
async fn two_azs_alarming_together_shift_nothing_and_page_one_region_event() {
    let rig = Rig::hub(&[]).await;
    let (lb1, lb2) = (rig.ready_lb().await, rig.ready_lb().await);
    let group = rig.ready_group(12).await;
    let before = rig.place.group_now(&group).await;
    // Alarms delivered one by one cross the threshold in one AZ first (and that AZ is evacuated: see
    // the next test). Alarms of both AZs that are all in the ledger when one more arrives are judged
    // together: the ledger holds three, the fourth is delivered.
    let ledger = &rig.ev.ctx().ledger;
    ledger.record_signal(&alarmed(NAMES[0], "5xx", &lb1.dim)).await.unwrap();
    ledger.record_signal(&alarmed(NAMES[1], "5xx", &lb1.dim)).await.unwrap();
    ledger.record_signal(&alarmed(NAMES[0], "5xx", &lb2.dim)).await.unwrap();
    let ds = rig.deliver(&rig.alarm(NAMES[1], "5xx", &lb2, "ALARM")).await;
    none_failed(&ds);

    let page = about(&ds, actions::REGION_EVENT, harness::REGION);
    assert_eq!(page.len(), 1, "{:#?}", summaries(&ds));
    assert_eq!((page[0].outcome, page[0].severity), (Outcome::Refused, Severity::Critical), "{}", page[0].reason);
    assert_eq!(page[0].details["impairedAzs"], serde_json::json!([NAMES[0], NAMES[1]]));
    assert!(page[0].reason.contains("nothing automatic"), "{}", page[0].reason);
    assert!(rig.arc_changes().is_empty(), "{:#?}", rig.arc_changes());
    assert!(rig.stand_in.shifts().is_empty());
    assert_eq!(rig.place.group_now(&group).await, before, "no capacity raised");
    assert!(ledger.evacuations().await.unwrap().is_empty(), "no evacuation started");
    assert!(ds.iter().all(|d| d.action != actions::EVACUATE && d.action != actions::SHIFT), "{:#?}", summaries(&ds));

    // More signals of the same event page no more (once an hour per set of AZs) and still shift nothing.
    let ds = rig.deliver(&rig.alarm(NAMES[1], "latency", &lb1, "ALARM")).await;
    none_failed(&ds);
    assert!(about(&ds, actions::REGION_EVENT, harness::REGION).is_empty(), "{:#?}", summaries(&ds));
    assert!(rig.arc_changes().is_empty());
}

#[tokio::test]
async fn a_second_az_impaired_during_an_evacuation_is_a_region_event_and_nothing_shifts_away_from_it() {
    let rig = Rig::hub(&[]).await;
    let (lb1, lb2) = (rig.ready_lb().await, rig.ready_lb().await);
    for lb in [&lb1, &lb2] {
        rig.deliver(&rig.alarm(BAD, "5xx", lb, "ALARM")).await;
    }
    assert_eq!(rig.stand_in.shifts().len(), 2, "the first AZ is evacuated");
    let changes = rig.arc_changes().len();

    let second = NAMES[1];
    let mut ds = Vec::new();
    for lb in [&lb1, &lb2] {
        ds.extend(rig.deliver(&rig.alarm(second, "5xx", lb, "ALARM")).await);
    }
    none_failed(&ds);
    let page: Vec<_> = about(&ds, actions::REGION_EVENT, harness::REGION);
    assert_eq!(page.len(), 1, "{:#?}", summaries(&ds));
    assert_eq!(page[0].severity, Severity::Critical);
    assert!(page[0].reason.contains(BAD) && page[0].reason.contains(second), "{}", page[0].reason);
    // Nothing away from the second AZ, and no evacuation of it.
    let second_id = rig.id(second);
    assert!(rig.stand_in.shifts().iter().all(|s| s.away_from != second_id), "{:#?}", rig.stand_in.shifts());
    assert_eq!(rig.arc_changes().len(), changes, "{:#?}", rig.arc_changes());
    let evacs = rig.ev.ctx().ledger.evacuations().await.unwrap();
    assert!(evacs.iter().all(|e| e.az == BAD), "{evacs:?}");
}
