//! The ARC zonal shift stand-in (moto has no ARC) driven through the real `aws-sdk-arczonalshift` client:
//! start, list, update, cancel; the errors as the SDK types them; ARC's own autoshifts and practice runs
//! as `GetManagedResource`, `ListManagedResources`, `ListZonalShifts` and `ListAutoshifts` show them; an
//! answer lost after the shift was applied; and requests the SDK would never send.

use std::time::Duration;

use aws_sdk_arczonalshift::error::SdkError;
use aws_sdk_arczonalshift::operation::cancel_zonal_shift::CancelZonalShiftError;
use aws_sdk_arczonalshift::operation::get_managed_resource::{GetManagedResourceError, GetManagedResourceOutput};
use aws_sdk_arczonalshift::operation::start_practice_run::StartPracticeRunError;
use aws_sdk_arczonalshift::operation::start_zonal_shift::{StartZonalShiftError, StartZonalShiftOutput};
use aws_sdk_arczonalshift::operation::update_zonal_shift::UpdateZonalShiftError;
use aws_sdk_arczonalshift::types::{AppliedStatus, AutoshiftAppliedStatus, AutoshiftExecutionStatus};
use aws_sdk_arczonalshift::types::{ConflictExceptionReason, PracticeRunOutcome, ShiftType};
use aws_sdk_arczonalshift::types::{ValidationExceptionReason, ZonalAutoshiftStatus, ZonalShiftStatus};
use aws_sdk_arczonalshift::Client;
use harness::arc::ArcStandIn;
use harness::{sdk_config_at, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AZS: &[(&str, &str)] = &[("us-east-1a", "use1-az1"), ("us-east-1b", "use1-az2"), ("us-east-1c", "use1-az4")];

fn alb_arn(name: &str) -> String {
    format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/{name}/50dc6c495c0c9188")
}

/// A stand-in with one load balancer registered in [`AZS`], and an SDK client pointed at it.
async fn rig(zonal_autoshift: bool) -> (ArcStandIn, Client, String) {
    let stand_in = ArcStandIn::start().await;
    let name = unique("alb");
    let arn = alb_arn(&name);
    stand_in.register(&arn, &name, AZS, zonal_autoshift);
    let client = Client::new(&sdk_config_at(&stand_in.endpoint()).await);
    (stand_in, client, arn)
}

async fn start(
    client: &Client,
    arn: &str,
    away_from: &str,
    expires_in: &str,
    comment: &str,
) -> Result<StartZonalShiftOutput, SdkError<StartZonalShiftError>> {
    client
        .start_zonal_shift()
        .resource_identifier(arn)
        .away_from(away_from)
        .expires_in(expires_in)
        .comment(comment)
        .send()
        .await
}

async fn resource(client: &Client, arn: &str) -> GetManagedResourceOutput {
    client.get_managed_resource().resource_identifier(arn).send().await.expect("GetManagedResource")
}

fn weight(r: &GetManagedResourceOutput, az_id: &str) -> Option<f32> {
    r.applied_weights().get(az_id).copied()
}

#[tokio::test]
async fn start_list_update_cancel_round_trip() {
    let (stand_in, client, arn) = rig(false).await;
    let out = start(&client, &arn, "use1-az1", "30m", "az1 impaired").await.expect("StartZonalShift");
    assert_eq!(out.status(), &ZonalShiftStatus::Active);
    assert_eq!((out.resource_identifier(), out.away_from(), out.comment()), (arn.as_str(), "use1-az1", "az1 impaired"));
    assert!((1799..=1801).contains(&(out.expiry_time().secs() - out.start_time().secs())), "{out:?}");
    let id = out.zonal_shift_id().to_string();

    let listed = client.list_zonal_shifts().resource_identifier(&arn).send().await.expect("ListZonalShifts");
    assert_eq!(listed.items().len(), 1);
    let item = &listed.items()[0];
    assert_eq!((item.zonal_shift_id(), item.status()), (id.as_str(), &ZonalShiftStatus::Active));
    assert_eq!(item.shift_type(), Some(&ShiftType::ZonalShift));
    assert_eq!(item.practice_run_outcome(), None);
    let canceled = client.list_zonal_shifts().status(ZonalShiftStatus::Canceled).send().await.expect("list canceled");
    assert!(canceled.items().is_empty());

    let r = resource(&client, &arn).await;
    assert_eq!(r.arn(), Some(arn.as_str()));
    assert_eq!(r.zonal_shifts().len(), 1);
    assert_eq!(r.zonal_shifts()[0].applied_status(), &AppliedStatus::Applied);
    assert_eq!(
        (weight(&r, "use1-az1"), weight(&r, "use1-az2"), weight(&r, "use1-az4")),
        (Some(0.0), Some(1.0), Some(1.0))
    );
    assert_eq!(r.zonal_autoshift_status(), Some(&ZonalAutoshiftStatus::Disabled));
    assert!(r.practice_run_configuration().is_none());

    let up = client
        .update_zonal_shift()
        .zonal_shift_id(&id)
        .expires_in("2h")
        .comment("still impaired")
        .send()
        .await
        .expect("UpdateZonalShift");
    assert_eq!((up.comment(), up.status()), ("still impaired", &ZonalShiftStatus::Active));
    assert!(up.expiry_time().secs() >= out.expiry_time().secs() + 5399, "{up:?}");
    assert_eq!(up.start_time(), out.start_time());

    let cancel = client.cancel_zonal_shift().zonal_shift_id(&id).send().await.expect("CancelZonalShift");
    assert_eq!((cancel.zonal_shift_id(), cancel.status()), (id.as_str(), &ZonalShiftStatus::Canceled));
    let canceled = client.list_zonal_shifts().status(ZonalShiftStatus::Canceled).send().await.expect("list canceled");
    assert_eq!(canceled.items().len(), 1);
    assert_eq!(canceled.items()[0].comment(), "still impaired");
    let r = resource(&client, &arn).await;
    assert!(r.zonal_shifts().is_empty());
    assert_eq!(weight(&r, "use1-az1"), Some(1.0));

    let held = stand_in.shifts();
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].status.as_str(), held[0].comment.as_str()), ("CANCELED", "still impaired"));
    let starts = stand_in.requests_for("StartZonalShift");
    assert_eq!(starts.len(), 1);
    assert_eq!((starts[0].method.as_str(), starts[0].status), ("POST", Some(201)));
    assert_eq!(starts[0].body["expiresIn"], "30m");
    assert_eq!(starts[0].body["resourceIdentifier"], arn.as_str());
    let updates = stand_in.requests_for("UpdateZonalShift");
    assert_eq!(updates.len(), 1);
    assert_eq!((updates[0].method.as_str(), updates[0].path.clone()), ("PATCH", format!("/zonalshifts/{id}")));
    assert_eq!(stand_in.requests_for("CancelZonalShift")[0].method, "DELETE");
    let gets = stand_in.requests_for("GetManagedResource");
    assert_eq!(gets[0].path, format!("/managedresources/{arn}"), "the ARN label arrives whole, decoded");
}

#[tokio::test]
async fn a_second_start_conflicts_and_a_shift_no_longer_active_cannot_be_updated_or_canceled() {
    let (stand_in, client, arn) = rig(false).await;
    let first = start(&client, &arn, "use1-az1", "1h", "first").await.expect("first start");

    let err = start(&client, &arn, "use1-az2", "1h", "second").await.expect_err("second start");
    match err.into_service_error() {
        StartZonalShiftError::ConflictException(e) => {
            assert_eq!(e.reason(), &ConflictExceptionReason::ZonalShiftAlreadyExists);
            assert_eq!(e.zonal_shift_id(), Some(first.zonal_shift_id()));
        }
        other => panic!("expected ConflictException, got {other:?}"),
    }
    assert_eq!(stand_in.shifts().len(), 1);
    assert_eq!(stand_in.requests_for("StartZonalShift")[1].status, Some(409));

    client.cancel_zonal_shift().zonal_shift_id(first.zonal_shift_id()).send().await.expect("cancel");
    let err = client.cancel_zonal_shift().zonal_shift_id(first.zonal_shift_id()).send().await.expect_err("re-cancel");
    match err.into_service_error() {
        CancelZonalShiftError::ConflictException(e) => {
            assert_eq!(e.reason(), &ConflictExceptionReason::ZonalShiftStatusNotActive)
        }
        other => panic!("expected ConflictException, got {other:?}"),
    }
    let err = client
        .update_zonal_shift()
        .zonal_shift_id(first.zonal_shift_id())
        .comment("too late")
        .send()
        .await
        .expect_err("update of a canceled shift");
    match err.into_service_error() {
        UpdateZonalShiftError::ConflictException(e) => {
            assert_eq!(e.reason(), &ConflictExceptionReason::ZonalShiftStatusNotActive);
            assert_eq!(e.zonal_shift_id(), Some(first.zonal_shift_id()));
        }
        other => panic!("expected ConflictException, got {other:?}"),
    }
    assert_eq!(stand_in.shifts()[0].comment, "first");

    let again = start(&client, &arn, "use1-az2", "1h", "again").await.expect("a new start once the first is canceled");
    assert_ne!(again.zonal_shift_id(), first.zonal_shift_id());
    assert_eq!(stand_in.shifts().len(), 2);
}

#[tokio::test]
async fn an_unknown_resource_or_shift_is_resource_not_found() {
    let (stand_in, client, _arn) = rig(false).await;
    let nowhere = alb_arn("not-registered");
    match start(&client, &nowhere, "use1-az1", "1h", "x").await.expect_err("start").into_service_error() {
        StartZonalShiftError::ResourceNotFoundException(_) => {}
        other => panic!("expected ResourceNotFoundException, got {other:?}"),
    }
    let err = client.get_managed_resource().resource_identifier(&nowhere).send().await.expect_err("get");
    assert!(matches!(err.into_service_error(), GetManagedResourceError::ResourceNotFoundException(_)));
    let ghost = "00000000-0000-4000-8000-000000000000";
    let err = client.cancel_zonal_shift().zonal_shift_id(ghost).send().await.expect_err("cancel");
    assert!(matches!(err.into_service_error(), CancelZonalShiftError::ResourceNotFoundException(_)));
    let err = client.update_zonal_shift().zonal_shift_id(ghost).expires_in("1h").send().await.expect_err("update");
    assert!(matches!(err.into_service_error(), UpdateZonalShiftError::ResourceNotFoundException(_)));
    assert!(stand_in.shifts().is_empty());
    let statuses: Vec<_> = stand_in.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![Some(404u16); 4]);
}

#[tokio::test]
async fn a_bad_az_expiry_or_comment_is_a_validation_exception() {
    let (stand_in, client, arn) = rig(false).await;
    let cases = [
        ("use1-az9", "30m", Some(ValidationExceptionReason::InvalidAz)),
        ("us-east-1a", "30m", Some(ValidationExceptionReason::InvalidAz)),
        ("use1-az1", "0m", Some(ValidationExceptionReason::InvalidExpiresIn)),
        ("use1-az1", "73h", Some(ValidationExceptionReason::InvalidExpiresIn)),
        ("use1-az1", "4321m", Some(ValidationExceptionReason::InvalidExpiresIn)),
        ("use1-az1", "3d", Some(ValidationExceptionReason::InvalidExpiresIn)),
        ("use1-az1", "90", Some(ValidationExceptionReason::InvalidExpiresIn)),
        ("use1-az1", "1h30m", Some(ValidationExceptionReason::InvalidExpiresIn)),
    ];
    for (az, expires, reason) in cases {
        match start(&client, &arn, az, expires, "x").await.expect_err(az).into_service_error() {
            StartZonalShiftError::ValidationException(e) => {
                assert_eq!(Some(e.reason()), reason.as_ref(), "{az} {expires}")
            }
            other => panic!("{az} {expires}: expected ValidationException, got {other:?}"),
        }
    }
    let long = "c".repeat(129);
    let err = start(&client, &arn, "use1-az1", "1h", &long).await.expect_err("129-character comment");
    assert!(matches!(err.into_service_error(), StartZonalShiftError::ValidationException(_)));
    assert!(stand_in.shifts().is_empty());
    assert!(stand_in.requests().iter().all(|r| r.status == Some(400)));

    let ok =
        start(&client, &arn, "use1-az4", "72h", &"c".repeat(128)).await.expect("72h and 128 characters are allowed");
    let err = client.update_zonal_shift().zonal_shift_id(ok.zonal_shift_id()).expires_in("73h").send().await;
    match err.expect_err("update to 73h").into_service_error() {
        UpdateZonalShiftError::ValidationException(e) => {
            assert_eq!(e.reason(), &ValidationExceptionReason::InvalidExpiresIn)
        }
        other => panic!("expected ValidationException, got {other:?}"),
    }
    assert_eq!(stand_in.shifts()[0].expiry_time.timestamp(), ok.expiry_time().secs());
}

#[tokio::test]
async fn an_autoshift_shows_on_the_resource_and_in_list_autoshifts_but_not_in_list_zonal_shifts() {
    let (stand_in, client, arn) = rig(true).await;
    let other_name = unique("alb");
    let other = alb_arn(&other_name);
    stand_in.register(&other, &other_name, AZS, false);
    stand_in.start_autoshift("use1-az2");

    let r = resource(&client, &arn).await;
    assert_eq!(r.autoshifts().len(), 1);
    assert_eq!(r.autoshifts()[0].away_from(), "use1-az2");
    assert_eq!(r.autoshifts()[0].applied_status(), &AutoshiftAppliedStatus::Applied);
    assert!(r.zonal_shifts().is_empty());
    assert_eq!((weight(&r, "use1-az1"), weight(&r, "use1-az2")), (Some(1.0), Some(0.0)));
    assert_eq!(r.zonal_autoshift_status(), Some(&ZonalAutoshiftStatus::Enabled));
    assert!(!r.practice_run_configuration().expect("practice run configuration").outcome_alarms().is_empty());
    let o = resource(&client, &other).await;
    assert!(o.autoshifts().is_empty(), "zonal autoshift is disabled on {other}");
    assert_eq!(weight(&o, "use1-az2"), Some(1.0));

    let shifts = client.list_zonal_shifts().send().await.expect("ListZonalShifts");
    assert!(shifts.items().is_empty(), "ListZonalShifts does not list autoshifts: {shifts:?}");
    let autoshifts = client.list_autoshifts().send().await.expect("ListAutoshifts");
    assert_eq!(autoshifts.items().len(), 1);
    assert_eq!(autoshifts.items()[0].status(), &AutoshiftExecutionStatus::Active);
    assert_eq!(autoshifts.items()[0].away_from(), "use1-az2");

    let listed = client.list_managed_resources().send().await.expect("ListManagedResources");
    assert_eq!(listed.items().len(), 2);
    let summary = listed.items().iter().find(|s| s.arn() == Some(arn.as_str())).expect("listed");
    assert_eq!(summary.availability_zones(), ["use1-az1", "use1-az2", "use1-az4"]);
    assert_eq!(summary.autoshifts().len(), 1);
    assert_eq!(summary.practice_run_status(), Some(&ZonalAutoshiftStatus::Enabled));

    // A customer's zonal shift takes precedence over the autoshift; it is not a conflict.
    let mine = start(&client, &arn, "use1-az1", "1h", "mine").await.expect("start over an autoshift");
    let r = resource(&client, &arn).await;
    assert_eq!(r.zonal_shifts()[0].zonal_shift_id(), mine.zonal_shift_id());
    assert_eq!(r.zonal_shifts()[0].applied_status(), &AppliedStatus::Applied);
    assert_eq!(r.autoshifts()[0].applied_status(), &AutoshiftAppliedStatus::NotApplied);
    assert_eq!((weight(&r, "use1-az1"), weight(&r, "use1-az2")), (Some(0.0), Some(1.0)));

    stand_in.end_autoshift("use1-az2");
    let done = client.list_autoshifts().status(AutoshiftExecutionStatus::Completed).send().await.expect("completed");
    assert_eq!(done.items().len(), 1);
    assert!(done.items()[0].end_time().is_some());
    assert!(resource(&client, &arn).await.autoshifts().is_empty());
}

#[tokio::test]
async fn a_practice_run_is_a_listed_zonal_shift_and_a_customer_shift_interrupts_it() {
    let (stand_in, client, arn) = rig(true).await;
    let run = stand_in.start_practice_run(&arn, "use1-az1").expect("practice run starts");

    let listed = client.list_zonal_shifts().resource_identifier(&arn).send().await.expect("ListZonalShifts");
    assert_eq!(listed.items().len(), 1);
    let item = &listed.items()[0];
    assert_eq!((item.zonal_shift_id(), item.status()), (run.as_str(), &ZonalShiftStatus::Active));
    assert_eq!(item.shift_type(), Some(&ShiftType::PracticeRun));
    assert_eq!(item.practice_run_outcome(), Some(&PracticeRunOutcome::Pending));
    assert_eq!(item.expiry_time().secs() - item.start_time().secs(), 1800);
    let r = resource(&client, &arn).await;
    assert_eq!(r.zonal_shifts()[0].shift_type(), Some(&ShiftType::PracticeRun));
    assert_eq!(r.zonal_shifts()[0].applied_status(), &AppliedStatus::Applied);

    let mine = start(&client, &arn, "use1-az2", "1h", "mine").await.expect("a customer shift over a practice run");
    let listed = client.list_zonal_shifts().resource_identifier(&arn).send().await.expect("ListZonalShifts");
    let practice = listed.items().iter().find(|s| s.zonal_shift_id() == run).expect("practice run listed");
    assert_eq!(practice.status(), &ZonalShiftStatus::Canceled);
    assert_eq!(practice.practice_run_outcome(), Some(&PracticeRunOutcome::Interrupted));
    let customer = listed.items().iter().find(|s| s.zonal_shift_id() == mine.zonal_shift_id()).expect("mine listed");
    assert_eq!(customer.status(), &ZonalShiftStatus::Active);
    assert!(stand_in.start_practice_run(&arn, "use1-az4").is_err(), "no practice run over a customer's shift");

    let plain_name = unique("alb");
    let plain = alb_arn(&plain_name);
    stand_in.register(&plain, &plain_name, AZS, false);
    assert!(stand_in.start_practice_run(&plain, "use1-az1").is_err(), "no practice run configuration");
}

#[tokio::test]
async fn start_practice_run_through_the_sdk_applies_a_practice_run_and_refuses_as_arc_does() {
    let (_stand_in, client, arn) = rig(true).await;
    let started = client
        .start_practice_run()
        .resource_identifier(&arn)
        .away_from("use1-az2")
        .comment("game day")
        .send()
        .await
        .expect("StartPracticeRun");
    assert_eq!((started.resource_identifier(), started.away_from()), (arn.as_str(), "use1-az2"));
    assert_eq!((started.status(), started.comment()), (&ZonalShiftStatus::Active, "game day"));
    assert_eq!(started.expiry_time().secs() - started.start_time().secs(), 1800);
    let listed = client.list_zonal_shifts().resource_identifier(&arn).send().await.expect("ListZonalShifts");
    assert_eq!(listed.items().len(), 1);
    let item = &listed.items()[0];
    assert_eq!(item.zonal_shift_id(), started.zonal_shift_id());
    assert_eq!(item.shift_type(), Some(&ShiftType::PracticeRun));
    assert_eq!(item.practice_run_outcome(), Some(&PracticeRunOutcome::Pending));
    let r = resource(&client, &arn).await;
    assert_eq!((weight(&r, "use1-az2"), weight(&r, "use1-az1")), (Some(0.0), Some(1.0)));

    // A second one while the first is in effect: a conflict naming the shift.
    let again = client.start_practice_run().resource_identifier(&arn).away_from("use1-az1").comment("again");
    let err = again.send().await.expect_err("a practice run over another").into_service_error();
    let StartPracticeRunError::ConflictException(c) = err else { panic!("{err:?}") };
    assert_eq!(c.reason(), &ConflictExceptionReason::ZonalShiftAlreadyExists);
    assert_eq!(c.zonal_shift_id(), Some(started.zonal_shift_id()));

    // An AZ the resource is not in: a validation error, nothing started.
    let (_s, client, arn) = rig(true).await;
    let wrong = client.start_practice_run().resource_identifier(&arn).away_from("use1-az9").comment("x");
    let err = wrong.send().await.expect_err("an AZ it is not in").into_service_error();
    let StartPracticeRunError::ValidationException(v) = err else { panic!("{err:?}") };
    assert_eq!(v.reason(), &ValidationExceptionReason::InvalidAz);

    // Autoshift not enabled: no practice run configuration.
    let (stand_in, client, arn) = rig(false).await;
    let plain = client.start_practice_run().resource_identifier(&arn).away_from("use1-az1").comment("x");
    let err = plain.send().await.expect_err("no configuration").into_service_error();
    let StartPracticeRunError::ConflictException(c) = err else { panic!("{err:?}") };
    assert_eq!(c.reason(), &ConflictExceptionReason::PracticeConfigurationDoesNotExist);
    assert!(stand_in.shifts().is_empty(), "nothing started");
    assert_eq!(stand_in.requests_for("StartPracticeRun").len(), 1);
}

#[tokio::test]
async fn a_shift_past_its_expiry_reads_expired_and_frees_the_resource() {
    let (stand_in, client, arn) = rig(false).await;
    let first = start(&client, &arn, "use1-az1", "30m", "brief").await.expect("start");
    stand_in.advance(Duration::from_secs(31 * 60));
    let expired = client.list_zonal_shifts().status(ZonalShiftStatus::Expired).send().await.expect("list expired");
    assert_eq!(expired.items().len(), 1);
    assert_eq!(expired.items()[0].zonal_shift_id(), first.zonal_shift_id());
    assert!(resource(&client, &arn).await.zonal_shifts().is_empty());
    let err = client.update_zonal_shift().zonal_shift_id(first.zonal_shift_id()).expires_in("1h").send().await;
    assert!(matches!(err.expect_err("update").into_service_error(), UpdateZonalShiftError::ConflictException(_)));
    start(&client, &arn, "use1-az1", "30m", "again").await.expect("the resource is free again");
    assert_eq!(stand_in.shifts().iter().map(|s| s.status.as_str()).collect::<Vec<_>>(), ["EXPIRED", "ACTIVE"]);
}

#[tokio::test]
async fn a_rewound_clock_starts_shifts_earlier_and_advancing_as_much_puts_it_right() {
    let (stand_in, client, arn) = rig(false).await;
    stand_in.rewind(Duration::from_secs(45 * 60));
    let out = start(&client, &arn, "use1-az1", "1h", "started a while ago").await.expect("start");
    let left = |expiry: &aws_sdk_arczonalshift::primitives::DateTime| expiry.secs() - chrono::Utc::now().timestamp();
    assert!((14 * 60..=15 * 60).contains(&left(out.expiry_time())), "{out:?}");
    stand_in.advance(Duration::from_secs(45 * 60));
    let up = client.update_zonal_shift().zonal_shift_id(out.zonal_shift_id()).expires_in("1h").send().await;
    let up = up.expect("still active");
    assert!((59 * 60..=60 * 60).contains(&left(up.expiry_time())), "{up:?}");
}

#[tokio::test]
async fn a_lost_start_answer_is_retried_by_the_sdk_into_a_conflict_naming_the_shift_it_made() {
    let (stand_in, client, arn) = rig(false).await;
    stand_in.lose_next("StartZonalShift", 1);
    let err = start(&client, &arn, "use1-az1", "1h", "lost").await.expect_err("the retry finds its own shift");
    let held = stand_in.shifts();
    assert_eq!(held.len(), 1, "{held:?}");
    match err.into_service_error() {
        StartZonalShiftError::ConflictException(e) => {
            assert_eq!(e.reason(), &ConflictExceptionReason::ZonalShiftAlreadyExists);
            assert_eq!(e.zonal_shift_id(), Some(held[0].zonal_shift_id.as_str()));
        }
        other => panic!("expected the retry's ConflictException, got {other:?}"),
    }
    let starts = stand_in.requests_for("StartZonalShift");
    assert_eq!(starts.iter().map(|r| r.status).collect::<Vec<_>>(), [None, Some(409u16)]);
    assert_eq!(starts[0].body, starts[1].body, "the SDK retried the same request");
    let listed = client.list_zonal_shifts().resource_identifier(&arn).send().await.expect("ListZonalShifts");
    assert_eq!(listed.items().len(), 1);
    assert_eq!(listed.items()[0].status(), &ZonalShiftStatus::Active);
    assert_eq!(listed.items()[0].comment(), "lost");
}

#[tokio::test]
async fn every_lost_answer_fails_the_call_without_a_service_error_and_one_shift_exists() {
    let (stand_in, client, arn) = rig(false).await;
    let attempts = 4; // selfheal::clients::resilience(): at most 4 attempts.
    stand_in.lose_next("StartZonalShift", attempts);
    let err = start(&client, &arn, "use1-az1", "1h", "lost").await.expect_err("no answer ever arrives");
    assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");
    let starts = stand_in.requests_for("StartZonalShift");
    assert_eq!(starts.len(), attempts as usize);
    assert!(starts.iter().all(|r| r.status.is_none()));
    let listed = client.list_zonal_shifts().resource_identifier(&arn).send().await.expect("ListZonalShifts");
    assert_eq!(listed.items().len(), 1, "the first attempt applied, the rest conflicted: {listed:?}");
}

/// Sends raw bytes (closing the write half) and returns the answer's text.
async fn raw(endpoint: &str, request: &str) -> String {
    let mut sock = tokio::net::TcpStream::connect(endpoint.trim_start_matches("http://")).await.expect("connect");
    sock.write_all(request.as_bytes()).await.expect("write");
    sock.shutdown().await.expect("shutdown write");
    let mut out = String::new();
    let _ = sock.read_to_string(&mut out).await;
    out
}

#[tokio::test]
async fn malformed_requests_get_a_400_validation_exception_and_the_stand_in_keeps_serving() {
    let (stand_in, client, arn) = rig(false).await;
    let ep = stand_in.endpoint();
    let post = |body: &str| format!("POST /zonalshifts HTTP/1.1\r\ncontent-length: {}\r\n\r\n{body}", body.len());
    let bad = [
        post("{not json"),
        post("[1, 2]"),
        post(r#"{"resourceIdentifier": 5, "awayFrom": "use1-az1", "expiresIn": "1h", "comment": "x"}"#),
        post(r#"{"awayFrom": "use1-az1", "expiresIn": "1h", "comment": "x"}"#),
        "GET /managedresources/%zz HTTP/1.1\r\n\r\n".to_string(),
        "GET /zonalshifts?maxResults=0 HTTP/1.1\r\n\r\n".to_string(),
        "GET /zonalshifts?status=BOGUS HTTP/1.1\r\n\r\n".to_string(),
        "GET /zonalshifts?nextToken=zz HTTP/1.1\r\n\r\n".to_string(),
        "PATCH /zonalshifts/x HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}".to_string(),
        "GARBAGE\r\n\r\n".to_string(),
        "POST /zonalshifts HTTP/1.1\r\ncontent-length: abc\r\n\r\n".to_string(),
        "POST /zonalshifts HTTP/1.1\r\ncontent-length: 50\r\n\r\n{\"a\"".to_string(),
        "POST /zonalshifts HTTP/1.1\r\ncontent-length: 99999999999\r\n\r\n".to_string(),
    ];
    for request in &bad {
        let answer = raw(&ep, request).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{request:?} -> {answer}");
        assert!(answer.contains("x-amzn-errortype: ValidationException"), "{request:?} -> {answer}");
    }
    let answer = raw(&ep, "GET /zonalshifts?status=BOGUS HTTP/1.1\r\n\r\n").await;
    assert!(answer.contains(r#""reason":"InvalidStatus""#), "{answer}");
    let answer = raw(&ep, "GET /nowhere HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404") && answer.contains("UnknownOperationException"), "{answer}");

    start(&client, &arn, "use1-az1", "1h", "still serving").await.expect("a good request after the bad ones");
    assert_eq!(stand_in.shifts().len(), 1);
    assert_eq!(stand_in.requests_for("Malformed").len(), 5);
}
