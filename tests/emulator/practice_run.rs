//! The ARC practice-run drill (issue #28) in process: the drill starts a zonal autoshift practice run
//! through the real `aws-sdk-arczonalshift` client at the ARC stand-in, while per-AZ alarms for the
//! practiced AZ reach the real zone-evacuator; the report passes because ARC applied the run and the
//! evacuator stood down on the resource (no zonal shift of its own there), and shows ARC's outcome.
//! Bad input (not an ARN, not an AZ ID, a dry run) is refused before anything starts.

use std::sync::Arc;
use std::time::Duration;

use harness::arc::ArcStandIn;
use harness::unique;
use selfheal::clients::Aws;
use selfheal::drill::deliver::{BoxFuture, Deliverer};
use selfheal::drill::practice_run::{self, COMMENT, SCENARIO};
use selfheal::drill::{self, Drill, DrillConfig, CONFIRM_PHRASE};
use selfheal::zone::actions;
use selfheal::Outcome;
use serde_json::{json, Value};

use crate::zone::common::{none_failed, the, Rig, BAD, NAMES};

/// The drill on the ledger `table`, its ARC client at the stand-in, waiting `window` per run; it
/// delivers nothing itself (the test delivers the alarms).
async fn drill_at(stand_in: &ArcStandIn, table: &str, window: Duration) -> Drill {
    let aws = Aws::from_sdk_config(harness::sdk_config().await).with_endpoint("arc-zonal-shift", stand_in.endpoint());
    let ctx = harness::ctx_with(drill::FUNCTION, &[("SELFHEAL_LEDGER_TABLE", table)], aws).await;
    let mut env = harness::env(&[]);
    let mut cfg = DrillConfig::read(&mut env);
    env.finish().expect("valid drill settings");
    cfg.recovery_timeout = window;
    cfg.poll_interval = Duration::from_millis(200);
    let deliverer = Deliverer::InProcess(Arc::new(|function: String, _event: Value| -> BoxFuture {
        Box::pin(async move {
            Err(selfheal::Error::Precondition(format!("the practice run delivers nothing to {function}")))
        })
    }));
    Drill { ctx, cfg, deliverer }
}

fn invocation(practice: Value, mode: &str) -> Value {
    json!({"source": "selfheal.manual", "action": "drill",
           "params": {"practiceRun": practice, "mode": mode, "confirm": CONFIRM_PHRASE}})
}

#[tokio::test]
async fn a_practice_run_is_applied_the_evacuator_stands_down_on_it_and_the_report_passes() {
    let table = unique("ledger");
    let rig = Rig::hub(&[("SELFHEAL_LEDGER_TABLE", &table)]).await;
    // The practiced load balancer has zonal autoshift (so a practice run configuration); a second one
    // makes the AZ's alarms an impairment the evacuator acts on elsewhere.
    let practiced = rig.place.lb(&NAMES, true, true).await;
    rig.register(&practiced.arn, &practiced.name, &practiced.azs, true);
    let other = rig.ready_lb().await;
    let away = rig.id(BAD);
    let drill = drill_at(&rig.stand_in, &table, Duration::from_secs(8)).await;

    let payload = invocation(json!({"resource": practiced.arn, "awayFrom": away}), "live");
    let plan = practice_run::plan(&payload).expect("a valid practice run").expect("a practice run asked for");
    // While the drill follows the run, the AZ's per-AZ alarms fire for both load balancers.
    let alarms = async {
        for _ in 0..100 {
            if rig.shifts_of(&practiced.arn).iter().any(|s| s.shift_type == "PRACTICE_RUN") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut ds = Vec::new();
        for lb in [&practiced, &other] {
            ds.extend(rig.deliver(&rig.alarm(BAD, "5xx", lb, "ALARM")).await);
        }
        ds
    };
    let (reports, ds) = tokio::join!(practice_run::run_all(&drill, &plan), alarms);
    let reports = reports.expect("the drill records its report");
    none_failed(&ds);

    // ARC got the practice run, with the drill's comment, and applied it.
    let starts = rig.stand_in.requests_for("StartPracticeRun");
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].status, Some(200));
    assert_eq!(
        (starts[0].body["resourceIdentifier"].as_str(), starts[0].body["awayFrom"].as_str()),
        (Some(practiced.arn.as_str()), Some(away.as_str()))
    );
    assert_eq!(starts[0].body["comment"], COMMENT);
    let shifts = rig.shifts_of(&practiced.arn);
    assert_eq!(shifts.len(), 1, "the practice run only: {shifts:?}");
    assert_eq!((shifts[0].shift_type.as_str(), shifts[0].status.as_str()), ("PRACTICE_RUN", "ACTIVE"));

    // The evacuator stood down on it and shifted the other load balancer; never the practiced one.
    let d = the(&ds, actions::SHIFT, &practiced.arn);
    assert_eq!(d.outcome, Outcome::Refused, "{}", d.reason);
    assert_eq!(d.details["recovery"], "arc-practice-run");
    assert!(!rig.starts().contains_key(&practiced.arn), "no StartZonalShift on the practiced resource");
    assert_eq!(the(&ds, actions::SHIFT, &other.arn).outcome, Outcome::Acted);

    // The report: passed, ARC's outcome shown, the stand-down as the guard that fired.
    let [report] = reports.as_slice() else { panic!("one report: {reports:#?}") };
    assert_eq!((report.scenario.as_str(), report.mode.as_str()), (SCENARIO, "live"));
    assert!(report.passed, "{}", report.render());
    assert!(report.injected[0].contains(&shifts[0].zonal_shift_id), "{:?}", report.injected);
    assert!(
        report.steps[0].observed.contains("applied; status ACTIVE, practice run outcome PENDING"),
        "{}",
        report.render()
    );
    assert!(report.steps[0].detect_ms.is_some());
    let reaction = &report.steps[1];
    assert_eq!(reaction.function, "zone-evacuator");
    assert!(reaction.passed && reaction.observed.contains("1 stand-down"), "{}", report.render());
    assert!(reaction.observed.contains("no zonal shift of its own"), "{}", reaction.observed);
    assert!(
        report.guards_fired.iter().any(|g| g.contains(&practiced.arn) && g.contains("refused")),
        "{:?}",
        report.guards_fired
    );
    // The drill's own record of it in the ledger.
    let recorded = drill.ctx.ledger.audit_since(&report.started_at).await.unwrap();
    let mine = recorded.iter().find(|r| r.function == drill::FUNCTION).expect("the drill's record");
    assert_eq!((mine.action.as_str(), mine.outcome.as_str()), (SCENARIO, "acted"));
    assert_eq!(mine.envelope.details["practiceRun"]["awayFrom"], away.as_str());
}

#[tokio::test]
async fn a_practice_run_selfheal_shifts_anyway_fails_the_report() {
    let table = unique("ledger");
    let stand_in = ArcStandIn::start().await;
    let arn = format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/{}/1", unique("lb"));
    stand_in.register(&arn, "lb", &[("us-east-1a", "use1-az1"), ("us-east-1b", "use1-az2")], true);
    let drill = drill_at(&stand_in, &table, Duration::from_secs(3)).await;
    let plan = practice_run::PracticeRun { resource: arn.clone(), away_from: "use1-az1".into() };
    // Something shifting the resource with the evacuator's comment while the run is on (a customer
    // shift interrupts the practice run in ARC, as it would in AWS).
    let fight = async {
        for _ in 0..100 {
            if !stand_in.shifts().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let arc = aws_sdk_arczonalshift::Client::new(&harness::sdk_config_at(&stand_in.endpoint()).await);
        arc.start_zonal_shift()
            .resource_identifier(&arn)
            .away_from("use1-az1")
            .expires_in("1h")
            .comment("selfheal zone-evacuator evac-1")
            .send()
            .await
            .expect("the shift starts");
    };
    let (report, ()) = tokio::join!(practice_run::run(&drill, &plan), fight);
    assert!(!report.passed, "{}", report.render());
    assert!(report.steps[0].observed.contains("outcome INTERRUPTED"), "{}", report.render());
    assert!(report.steps[1].observed.contains("its own zonal shift"), "{}", report.render());
}

#[tokio::test]
async fn bad_practice_runs_are_refused_with_the_reason_and_nothing_starts() {
    let stand_in = ArcStandIn::start().await;
    let drill = drill_at(&stand_in, &unique("ledger"), Duration::from_secs(1)).await;
    let alb = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188";
    let cases = [
        (invocation(json!({"resource": "web", "awayFrom": "use1-az1"}), "live"), "resource must be the ARN"),
        (invocation(json!({"resource": alb, "awayFrom": "us-east-1a"}), "live"), "awayFrom must be an AZ ID"),
        (invocation(json!({"resource": alb}), "live"), "awayFrom must be an AZ ID"),
        (invocation(json!({"resource": alb, "awayFrom": "use1-az1"}), "dry-run"), "run it as a live drill"),
    ];
    for (payload, why) in cases {
        let err = drill.handle(&payload).await.expect_err("refused").to_string();
        assert!(err.contains(why), "{err}");
    }
    assert!(stand_in.requests().is_empty(), "nothing reached ARC: {:?}", stand_in.requests());
}
