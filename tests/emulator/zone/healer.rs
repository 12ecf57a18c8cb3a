//! The healer's AZ short-circuit as evidence: instance-healer's refused decision with
//! `details.shortCircuit.scope = "az:<name>"`, delivered by SNS from the suite's topic, counts alone and
//! evacuates that AZ (the evacuation's decision carries it as evidence); a group-wide short-circuit is
//! not about an AZ and evacuates nothing.

use selfheal::zone::actions;
use selfheal::{Envelope, Outcome, Severity, Target};
use serde_json::json;

use super::common::{none_failed, summaries, the, Rig, BAD};

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:selfheal-events";

/// instance-healer's short-circuit decision about a member of `group`, as it publishes it.
fn short_circuit(group: &str, scope: &str) -> serde_json::Value {
    let env = Envelope::new(
        "instance-healer",
        "replace-instance",
        Target::new("ec2-instance", "i-0123456789abcdef0").in_group(group),
        Outcome::Refused,
        format!("short-circuit: 2 of 2 instances in {group} ({scope}) are unhealthy, above 30%; replacing nothing"),
    )
    .severity(Severity::Critical)
    .event("alarm:web-i-0123456789abcdef0-status-check:2026-11-25T10:15:31.180Z", "alarm")
    .detail("shortCircuit", json!({"scope": scope, "unhealthy": 2, "members": 2, "maxPercent": 30, "evidence": {}}));
    serde_json::to_value(&env).unwrap()
}

#[tokio::test]
async fn the_healers_az_short_circuit_counts_alone_and_evacuates_that_az() {
    let rig = Rig::hub(&[]).await;
    let (lb1, lb2) = (rig.ready_lb().await, rig.ready_lb().await);
    let group = rig.ready_group(12).await;

    // A group-wide short-circuit names no AZ: recorded as skipped, nothing evacuated.
    let ds = rig.deliver(&harness::sns_event(TOPIC, &short_circuit(&group.name, "group"))).await;
    assert_eq!(ds.len(), 1, "{:#?}", summaries(&ds));
    assert_eq!(ds[0].outcome, Outcome::Skipped, "{}", ds[0].reason);
    assert!(rig.arc_changes().is_empty());

    // The AZ short-circuit alone (no alarm at all) evacuates the AZ.
    let ds = rig.deliver(&harness::sns_event(TOPIC, &short_circuit(&group.name, &format!("az:{BAD}")))).await;
    none_failed(&ds);
    let az_id = rig.id(BAD);
    let evacuating = the(&ds, actions::EVACUATE, &az_id);
    assert_eq!(evacuating.outcome, Outcome::Acted, "{}", evacuating.reason);
    let evidence = evacuating.details["assessment"]["impaired"]["evidence"].to_string();
    assert!(evidence.contains(&format!("healer:{}", group.name)), "{evidence}");
    assert!(evacuating.reason.contains(&format!("healer:{}", group.name)), "{}", evacuating.reason);
    for r in [&lb1.arn, &lb2.arn, &group.arn] {
        assert_eq!(the(&ds, actions::SHIFT, r).outcome, Outcome::Acted, "{:#?}", summaries(&ds));
        assert_eq!(rig.shifts_of(r)[0].away_from, az_id);
    }
    let signals = rig.ev.ctx().ledger.zone_signals().await.unwrap();
    assert_eq!(signals.len(), 1);
    assert_eq!((signals[0].az.as_str(), signals[0].source.clone()), (BAD, format!("healer:{}", group.name)));
}
