//! Route 53 ARC zonal shift events (`source: aws.arc-zonal-shift`): what AWS documents of their shape,
//! where, and how leniently the rest is read.
//!
//! What was found (read 2026):
//! - The detail-types: the EventBridge events reference, "AWS ARC - Zonal Shift events"
//!   (<https://docs.aws.amazon.com/eventbridge/latest/ref/events-ref-arc-zonal-shift.html>), and the
//!   ARC Developer Guide, "Using zonal autoshift with Amazon EventBridge"
//!   (<https://docs.aws.amazon.com/r53recovery/latest/dg/eventbridge-zonal-autoshift.html>), both list
//!   the twelve of [`super::ZONAL_SHIFT_DETAIL_TYPES`]. Delivery is *best effort*. The same source also
//!   reaches EventBridge through CloudTrail ("AWS API Call via CloudTrail"): those stay foreign.
//! - The body: only the Developer Guide's "Example zonal autoshift events" show one, for Autoshift In
//!   Progress (with and without autoshift observer notification), Practice Run Interrupted, FIS
//!   Experiment Autoshift In Progress and Manual Shift Started. All five have this shape:
//!   ```text
//!   "resources": ["TEST-EXAMPLE-2023-11-16-23-28-11-5"],   ([] for an observer notification)
//!   "detail": {
//!     "version": "0.0.1",
//!     "data": "",                       ({"additionalFailureInfo": "..."} for Practice Run Interrupted)
//!     "metadata": {"awayFrom": "use1-az2", "notes": ""}
//!   }
//!   ```
//!   `awayFrom` is an AZ *ID* (`use1-az2`), as in ARC's API. The guide points at
//!   `additionalFailureInfo` for why a practice run was interrupted.
//! - Not documented: any schema or field table for `detail`; examples for the other seven
//!   detail-types (Autoshift Completed, Practice Run Started / Succeeded / Failed, FIS Experiment
//!   Autoshift Completed / Canceled, Manual Shift Updated / Canceled); what `resources` holds for real
//!   (the examples' entry is a placeholder, not an ARN; ARC's API names resources by ARN); any status
//!   field.
//!
//! So: `detail` must be an object and `detail.metadata`, when present, an object, and
//! `metadata.awayFrom`, when present, a string (those are documented, and anything else there is a
//! malformed event, named). Everything else is optional: `awayFrom` is also looked for in `detail` and
//! in an object `data`; resources are the event's `resources` plus any `resourceIdentifier` string in
//! `detail`, `data` or `metadata`; `status` is a `status` string in any of them. The raw `detail` is
//! kept for the audit.

use serde_json::Value;

use super::fields::{json_type, non_empty_str};
use super::ZonalShiftEvent;
use crate::error::{Error, Result};

/// The name the errors give this shape.
const SHAPE: &str = "ARC zonal shift";

/// Reads an ARC zonal shift event's `detail` (and the event's top-level `resources`).
pub(super) fn zonal_shift_event(detail_type: &str, detail: &Value, resources: &[String]) -> Result<ZonalShiftEvent> {
    if !detail.is_object() {
        return Err(Error::malformed(SHAPE, format!("detail must be an object, got {}", json_type(detail))));
    }
    let metadata = match detail.get("metadata") {
        None | Some(Value::Null) => None,
        Some(m @ Value::Object(_)) => Some(m),
        Some(other) => {
            return Err(Error::malformed(SHAPE, format!("detail.metadata must be an object, got {}", json_type(other))))
        }
    };
    // `data` is "" in most examples and an object in Practice Run Interrupted's: only an object is read.
    let data = detail.get("data").filter(|d| d.is_object());
    let away_from = match metadata.and_then(|m| m.get("awayFrom")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()).filter(|s| !s.is_empty()),
        Some(other) => {
            return Err(Error::malformed(
                SHAPE,
                format!(
                    "detail.metadata.awayFrom must be a string (an AZ ID such as use1-az1), got {}",
                    json_type(other)
                ),
            ))
        }
    }
    .or_else(|| non_empty_str(detail, "awayFrom"))
    .or_else(|| data.and_then(|d| non_empty_str(d, "awayFrom")));

    let places = [Some(detail), data, metadata];
    let mut all: Vec<String> = resources.iter().filter(|r| !r.is_empty()).cloned().collect();
    for place in places.iter().flatten() {
        if let Some(id) = non_empty_str(place, "resourceIdentifier") {
            all.push(id);
        }
    }
    let mut seen = std::collections::HashSet::new();
    all.retain(|r| seen.insert(r.clone()));
    let status = [metadata, data, Some(detail)].iter().flatten().find_map(|p| non_empty_str(p, "status"));

    Ok(ZonalShiftEvent {
        detail_type: detail_type.to_string(),
        away_from,
        resources: all,
        status,
        notes: metadata.and_then(|m| non_empty_str(m, "notes")),
        failure_info: data.and_then(|d| non_empty_str(d, "additionalFailureInfo")),
        detail: detail.clone(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::trigger::{
        parse_event, Delivery, TriggerKind, ZonalShiftEvent, ZonalShiftOrigin, ZonalShiftPhase,
        ZONAL_SHIFT_DETAIL_TYPES,
    };

    const LB: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188";

    fn sample(name: &str) -> Value {
        let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn event(detail_type: &str, resources: Value, detail: Value) -> Value {
        json!({"version": "0", "id": "e-1", "detail-type": detail_type, "source": "aws.arc-zonal-shift",
               "account": "123456789012", "time": "2026-11-25T10:15:31Z", "region": "us-east-1",
               "resources": resources, "detail": detail})
    }

    fn zonal(v: &Value) -> ZonalShiftEvent {
        match parse_event(v).unwrap_or_else(|e| panic!("{v}: {e}")).remove(0).kind {
            TriggerKind::ZonalShift(z) => z,
            other => panic!("not a zonal shift: {other:?}"),
        }
    }

    fn error(v: &Value) -> String {
        parse_event(v).expect_err(&v.to_string()).to_string()
    }

    #[test]
    fn an_autoshift_in_progress_is_read() {
        let v = sample("arc-autoshift-in-progress.json");
        let t = parse_event(&v).unwrap().remove(0);
        assert_eq!(t.kind.name(), "zonal-shift");
        assert_eq!(t.event_id, "eb:05d4d2d5-9c76-4fea-82d2-d4614802adb4");
        assert_eq!(t.delivery, Delivery::EventBridge { id: "05d4d2d5-9c76-4fea-82d2-d4614802adb4".into() });
        assert_eq!((t.scope.account.as_deref(), t.scope.region.as_deref()), (Some("123456789012"), Some("us-east-1")));
        assert_eq!(
            t.describe(),
            format!("an ARC zonal shift event (\"Autoshift In Progress\" away from use1-az1, 1 resource)")
        );
        let TriggerKind::ZonalShift(z) = t.kind else { panic!() };
        assert_eq!(z.detail_type, "Autoshift In Progress");
        assert_eq!(z.away_from.as_deref(), Some("use1-az1"));
        assert_eq!(z.resources, vec![LB]);
        assert_eq!((&z.status, &z.notes, &z.failure_info), (&None, &None, &None), "empty notes are no notes");
        assert_eq!(z.detail, v["detail"], "the raw detail is kept for the audit");
        assert_eq!((z.origin(), z.phase()), (Some(ZonalShiftOrigin::Autoshift), Some(ZonalShiftPhase::Started)));
    }

    #[test]
    fn a_practice_run_started_is_read() {
        let z = zonal(&sample("arc-practice-run-started.json"));
        assert_eq!(z.detail_type, "Practice Run Started");
        assert_eq!(z.away_from.as_deref(), Some("use1-az1"));
        assert_eq!(z.resources, vec![LB]);
        assert_eq!((z.origin(), z.phase()), (Some(ZonalShiftOrigin::PracticeRun), Some(ZonalShiftPhase::Started)));
    }

    #[test]
    fn the_documented_shapes_are_read() {
        // Autoshift observer notification: no resources, the notes say what it is.
        let z = zonal(&event(
            "Autoshift In Progress",
            json!([]),
            json!({"version": "0.0.1", "data": "",
                   "metadata": {"awayFrom": "use1-az2", "notes": "AWS has started an autoshift for an impaired AZ."}}),
        ));
        assert!(z.resources.is_empty());
        assert_eq!(z.away_from.as_deref(), Some("use1-az2"));
        assert_eq!(z.notes.as_deref(), Some("AWS has started an autoshift for an impaired AZ."));
        assert_eq!(
            z.describe(),
            "an ARC zonal shift event (\"Autoshift In Progress\" away from use1-az2, 0 resources)"
        );
        // Practice Run Interrupted: `data` is an object naming why.
        let z = zonal(&event(
            "Practice Run Interrupted",
            json!([LB]),
            json!({"version": "0.0.1", "data": {"additionalFailureInfo": "The blocking alarm entered ALARM state."},
                   "metadata": {"awayFrom": "use1-az2"}}),
        ));
        assert_eq!(z.failure_info.as_deref(), Some("The blocking alarm entered ALARM state."));
        assert_eq!((z.origin(), z.phase()), (Some(ZonalShiftOrigin::PracticeRun), Some(ZonalShiftPhase::Ended)));
    }

    #[test]
    fn missing_fields_are_read_leniently() {
        // Nothing but the detail-type: every field absent, still a zonal shift event.
        let mut bare = event("Autoshift Completed", json!(null), json!({}));
        bare.as_object_mut().unwrap().remove("resources");
        let z = zonal(&bare);
        assert_eq!(z.detail_type, "Autoshift Completed");
        assert_eq!((z.away_from, z.status, z.notes, z.failure_info), (None, None, None, None));
        assert!(z.resources.is_empty());
        assert_eq!(z.detail, json!({}));
        // Null metadata and awayFrom are absent, an empty awayFrom is no AZ.
        let z = zonal(&event("Manual Shift Canceled", json!([]), json!({"metadata": null})));
        assert_eq!(z.away_from, None);
        let z = zonal(&event("Manual Shift Canceled", json!([]), json!({"metadata": {"awayFrom": ""}})));
        assert_eq!(z.away_from, None);
        // Undocumented places are looked in too: awayFrom in data or detail, resourceIdentifier, status.
        let z = zonal(&event(
            "Manual Shift Updated",
            json!([LB]),
            json!({"data": {"awayFrom": "use1-az3", "resourceIdentifier": LB, "status": "ACTIVE"},
                   "resourceIdentifier": "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:1:autoScalingGroupName/web"}),
        ));
        assert_eq!(z.away_from.as_deref(), Some("use1-az3"));
        assert_eq!(
            z.resources,
            vec![LB, "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:1:autoScalingGroupName/web"],
            "the event's resources first, without duplicates"
        );
        assert_eq!(z.status.as_deref(), Some("ACTIVE"));
        let z = zonal(&event("Manual Shift Started", json!([]), json!({"awayFrom": "use1-az4"})));
        assert_eq!(z.away_from.as_deref(), Some("use1-az4"));
        // metadata's awayFrom wins over the undocumented places.
        let z = zonal(&event(
            "Manual Shift Started",
            json!([]),
            json!({"awayFrom": "use1-az4", "metadata": {"awayFrom": "use1-az1"}}),
        ));
        assert_eq!(z.away_from.as_deref(), Some("use1-az1"));
    }

    #[test]
    fn a_malformed_detail_is_named() {
        let err = error(&event("Autoshift In Progress", json!([]), json!("use1-az1")));
        assert_eq!(err, "malformed ARC zonal shift event: detail must be an object, got a string");
        let err = error(&event("Autoshift In Progress", json!([]), json!([1])));
        assert!(err.contains("detail must be an object, got an array"), "{err}");
        let mut no_detail = event("Autoshift In Progress", json!([]), json!({}));
        no_detail.as_object_mut().unwrap().remove("detail");
        let err = error(&no_detail);
        assert_eq!(err, "malformed EventBridge event: missing field `detail`");
        let err = error(&event("Practice Run Failed", json!([]), json!({"metadata": "use1-az1"})));
        assert_eq!(err, "malformed ARC zonal shift event: detail.metadata must be an object, got a string");
        let err = error(&event("Practice Run Failed", json!([]), json!({"metadata": {"awayFrom": 1}})));
        assert!(
            err.contains("detail.metadata.awayFrom must be a string (an AZ ID such as use1-az1), got a number"),
            "{err}"
        );
    }

    #[test]
    fn every_documented_detail_type_is_a_zonal_shift_and_nothing_else_is() {
        use ZonalShiftOrigin::*;
        use ZonalShiftPhase::*;
        let expected = [
            ("Autoshift In Progress", Autoshift, Started),
            ("Autoshift Completed", Autoshift, Ended),
            ("Practice Run Started", PracticeRun, Started),
            ("Practice Run Succeeded", PracticeRun, Ended),
            ("Practice Run Interrupted", PracticeRun, Ended),
            ("Practice Run Failed", PracticeRun, Ended),
            ("FIS Experiment Autoshift In Progress", FisExperiment, Started),
            ("FIS Experiment Autoshift Completed", FisExperiment, Ended),
            ("FIS Experiment Autoshift Canceled", FisExperiment, Ended),
            ("Manual Shift Started", Manual, Started),
            ("Manual Shift Updated", Manual, Updated),
            ("Manual Shift Canceled", Manual, Ended),
        ];
        assert_eq!(expected.map(|e| e.0), ZONAL_SHIFT_DETAIL_TYPES);
        for (dt, origin, phase) in expected {
            let z = zonal(&event(
                dt,
                json!([LB]),
                json!({"version": "0.0.1", "data": "", "metadata": {"awayFrom": "use1-az1"}}),
            ));
            assert_eq!((z.detail_type.as_str(), z.origin(), z.phase()), (dt, Some(origin), Some(phase)));
        }
        // The same source through CloudTrail, or a detail-type ARC may add later: foreign, as before.
        for dt in ["AWS API Call via CloudTrail", "Practice Run Canceled"] {
            let t = parse_event(&event(dt, json!([]), json!({}))).unwrap().remove(0);
            assert_eq!(t.kind.name(), "foreign", "{dt}");
        }
        // A detail-type from another source is not ARC's.
        let mut other = event("Autoshift In Progress", json!([]), json!({}));
        other["source"] = json!("aws.ec2");
        assert_eq!(parse_event(&other).unwrap()[0].kind.name(), "foreign");
        // A deserialized event with a detail-type outside the list has no origin or phase.
        let odd = ZonalShiftEvent {
            detail_type: "Something Else".into(),
            ..zonal(&sample("arc-autoshift-in-progress.json"))
        };
        assert_eq!((odd.origin(), odd.phase()), (None, None));
    }

    #[test]
    fn an_arc_event_forwarded_through_sns_is_a_zonal_shift() {
        let sns = json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0", "EventSubscriptionArn": "arn",
            "Sns": {"MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:events",
                    "Message": sample("arc-practice-run-started.json").to_string(), "Timestamp": "2026-01-01T00:00:00Z",
                    "Type": "Notification", "SignatureVersion": "1", "Signature": "", "SigningCertURL": "",
                    "UnsubscribeURL": "", "MessageAttributes": {}}}]});
        let t = parse_event(&sns).unwrap().remove(0);
        assert_eq!(t.kind.name(), "zonal-shift");
        assert!(matches!(t.delivery, Delivery::Sns { .. }));
    }

    #[test]
    fn a_zonal_shift_trigger_round_trips_through_json() {
        // Parked decisions store their trigger; it must come back the same.
        let t = parse_event(&sample("arc-autoshift-in-progress.json")).unwrap().remove(0);
        let back: crate::trigger::Trigger = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }
}
