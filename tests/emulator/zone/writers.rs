//! The data tier of an evacuation: an opted-in Multi-AZ RDS writer in the AZ is failed over to its
//! standby through db-failover's own code and guards (a `reboot-failover` decision, one
//! `RebootDBInstance` with `ForceFailover`), once per evacuation; writers elsewhere, not opted in or not
//! Multi-AZ are left alone.
//!
//! moto serves `RebootDBInstance` with `ForceFailover` (the instance goes back to `available`) but
//! keeps the instance's `AvailabilityZone` where it was: "moved out of the AZ" is read from the decision
//! db-failover's code recorded and the request sent, not from the instance's AZ afterwards.

use aws_sdk_rds::types::Tag;
use selfheal::Outcome;

use super::common::{none_failed, summaries, Rig, BAD, NAMES};

/// A Multi-AZ PostgreSQL writer in `az`, opted in (the rig's value) when `opted_in`; its identifier.
pub async fn multi_az_writer(rig: &Rig, az: &str, opted_in: bool) -> String {
    writer(rig, az, opted_in, true).await
}

async fn writer(rig: &Rig, az: &str, opted_in: bool, multi_az: bool) -> String {
    let id = harness::unique("zdb");
    let value = if opted_in { rig.place.opt_in.as_str() } else { "false" };
    rig.place
        .aws
        .rds()
        .create_db_instance()
        .db_instance_identifier(&id)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .master_username("admin_user")
        .master_user_password("secret-password-1")
        .allocated_storage(20)
        .availability_zone(az)
        .multi_az(multi_az)
        .tags(Tag::builder().key(harness::OPT_IN.0).value(value).build())
        .send()
        .await
        .unwrap();
    id
}

#[test]
fn a_multi_az_writer_in_the_az_is_failed_over_through_db_failover_once() {
    // db-failover's handler runs inside the evacuator's: deeper than a test thread's stack in a debug build.
    harness::on_big_stack(|| async {
        let rig = Rig::hub(&[]).await;
        rig.ev.ctx().aws.calls.record_requests(None);
        let (lb1, lb2) = (rig.ready_lb().await, rig.ready_lb().await);
        let moved = multi_az_writer(&rig, BAD, true).await;
        let elsewhere = multi_az_writer(&rig, NAMES[1], true).await;
        let not_opted = multi_az_writer(&rig, BAD, false).await;
        let single_az = writer(&rig, BAD, true, false).await;

        let mut ds = Vec::new();
        for lb in [&lb1, &lb2] {
            ds.extend(rig.deliver(&rig.alarm(BAD, "5xx", lb, "ALARM")).await);
        }
        none_failed(&ds);
        let d: Vec<_> = ds.iter().filter(|d| d.target.id == moved).collect();
        assert_eq!(d.len(), 1, "{:#?}", summaries(&ds));
        assert_eq!((d[0].action.as_str(), d[0].outcome), ("reboot-failover", Outcome::Acted), "{}", d[0].reason);
        assert_eq!(d[0].details["oldAz"], BAD);
        let evac = rig.ev.ctx().ledger.evacuation(BAD).await.unwrap().unwrap();
        assert!(d[0].reason.contains("failed over to its Multi-AZ standby"), "{}", d[0].reason);
        assert!(evac.resources.contains_key(&format!("writer:{moved}")), "{evac:?}");

        let reboots: Vec<_> =
            rig.ev.ctx().aws.calls.records().into_iter().filter(|r| r.operation == "rds:RebootDBInstance").collect();
        assert_eq!(reboots.len(), 1, "{reboots:#?}");
        assert!(
            reboots[0].body.contains(&format!("DBInstanceIdentifier={moved}"))
                && reboots[0].body.contains("ForceFailover=true")
        );
        for other in [&elsewhere, &not_opted, &single_az] {
            assert!(ds.iter().all(|d| d.target.id != *other), "{other} was decided on: {:#?}", summaries(&ds));
        }

        // The evacuation's re-checks do not fail it over again.
        let again = rig.deliver(&rig.alarm(BAD, "latency", &lb1, "ALARM")).await;
        none_failed(&again);
        assert!(again.iter().all(|d| d.target.id != moved), "{:#?}", summaries(&again));
        let calls = rig.ev.ctx().aws.calls.calls();
        assert_eq!(calls.iter().filter(|c| *c == "rds:RebootDBInstance").count(), 1);
    });
}
