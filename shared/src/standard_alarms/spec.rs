//! What the standard alarms are (pure data): the alarm each opted-in resource should have
//! ([`wanted`]), the alarms that are there ([`Existing`]), and the changes between them ([`diff`],
//! [`cap_deletes`]). No AWS call here: [`super::cloudwatch`] reads and writes.
//!
//! The alarms are the template's example alarms (infra/template.yaml `Ec2StatusCheckAlarm`,
//! `RdsUnavailableAlarm`, `Route53HealthCheckAlarm`), one per resource, named
//! `selfheal-std|<kind>|<id>`, with the stack's alarms topic as alarm and OK action: the shapes the
//! functions' parsers accept (`events/alarm-sns-*.json`) and coverage counts as reaching the suite.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::preflight::coverage::Resource;

/// Every standard alarm's name starts with this (the IAM statements allow changes only under it).
pub const PREFIX: &str = "selfheal-std|";
/// The tag the suite writes on the alarms it creates; only alarms carrying it are ever updated or
/// deleted, whatever their name.
pub const MANAGED_TAG: (&str, &str) = ("selfheal:managed", "standard-alarms");
/// Route 53 publishes health-check metrics in this region only: a health check's alarm lives there.
pub const HEALTH_CHECK_REGION: &str = "us-east-1";

/// One standard alarm, as the suite wants it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Standard {
    pub name: String,
    /// The resource it watches: (coverage kind, id).
    pub resource: (String, String),
    pub description: String,
    pub namespace: String,
    pub metric: String,
    pub dimensions: Vec<(String, String)>,
    pub statistic: String,
    pub period: i32,
    pub evaluation_periods: i32,
    pub datapoints_to_alarm: i32,
    pub threshold: f64,
    pub comparison: String,
    pub treat_missing_data: String,
    /// Alarm and OK actions: the stack's alarms topic.
    pub actions: Vec<String>,
}

/// An alarm named under [`PREFIX`], as CloudWatch describes it.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Existing {
    pub name: String,
    pub arn: String,
    pub namespace: String,
    pub metric: String,
    pub dimensions: Vec<(String, String)>,
    pub statistic: String,
    pub period: i32,
    pub evaluation_periods: i32,
    pub datapoints_to_alarm: i32,
    pub threshold: f64,
    pub comparison: String,
    pub treat_missing_data: String,
    pub alarm_actions: Vec<String>,
    pub ok_actions: Vec<String>,
}

/// An opted-in resource the suite keeps no alarm for, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotKept {
    pub resource: String,
    pub why: String,
}

/// The name of the standard alarm of a resource.
pub fn name_of(kind: &str, id: &str) -> String {
    format!("{PREFIX}{kind}|{id}")
}

/// The standard alarm each opted-in resource should have, in the region the keeper runs in, with
/// `topic` (the stack's alarms topic) as action; and the resources it keeps none for, with why.
pub fn wanted(resources: &[Resource], topic: &str, region: &str) -> (Vec<Standard>, Vec<NotKept>) {
    let mut out = Vec::new();
    let mut not_kept = Vec::new();
    for r in resources {
        let subject = format!("{} {}", r.kind, r.id);
        let dim = |name: &str| r.dimensions.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let base = |kind: &str, ns: &str, metric: &str, dims: Vec<(String, String)>, description: String| Standard {
            name: name_of(kind, &r.id),
            resource: (r.kind.to_string(), r.id.clone()),
            description: format!("{description} (kept by selfheal standard alarms: changes are overwritten)"),
            namespace: ns.into(),
            metric: metric.into(),
            dimensions: dims,
            statistic: String::new(),
            period: 60,
            evaluation_periods: 2,
            datapoints_to_alarm: 2,
            threshold: 1.0,
            comparison: String::new(),
            treat_missing_data: String::new(),
            actions: vec![topic.to_string()],
        };
        match r.kind {
            "instance" => {
                if let Some(group) = dim("AutoScalingGroupName") {
                    not_kept.push(NotKept {
                        resource: subject,
                        why: format!(
                            "in Auto Scaling group {group}: standard alarms are for standalone instances (alarm on the \
                             group's StatusCheckFailed, AutoScalingGroupName)"
                        ),
                    });
                    continue;
                }
                out.push(Standard {
                    statistic: "Maximum".into(),
                    comparison: "GreaterThanOrEqualToThreshold".into(),
                    treat_missing_data: "notBreaching".into(),
                    ..base(
                        "instance",
                        "AWS/EC2",
                        "StatusCheckFailed",
                        vec![("InstanceId".into(), r.id.clone())],
                        format!("instance {} failed its status checks", r.id),
                    )
                });
            }
            "database" => out.push(Standard {
                statistic: "SampleCount".into(),
                evaluation_periods: 3,
                datapoints_to_alarm: 3,
                comparison: "LessThanThreshold".into(),
                treat_missing_data: "breaching".into(),
                ..base(
                    "database",
                    "AWS/RDS",
                    "CPUUtilization",
                    vec![("DBInstanceIdentifier".into(), r.id.clone())],
                    format!("database {} stopped reporting metrics", r.id),
                )
            }),
            // A cluster's writer reports under (DBClusterIdentifier, Role=WRITER): no sample from it
            // for three minutes is a cluster without a writer.
            "database cluster" => out.push(Standard {
                statistic: "SampleCount".into(),
                evaluation_periods: 3,
                datapoints_to_alarm: 3,
                comparison: "LessThanThreshold".into(),
                treat_missing_data: "breaching".into(),
                ..base(
                    "cluster",
                    "AWS/RDS",
                    "CPUUtilization",
                    vec![("DBClusterIdentifier".into(), r.id.clone()), ("Role".into(), "WRITER".into())],
                    format!("database cluster {} has no writer reporting metrics", r.id),
                )
            }),
            "health check" if region != HEALTH_CHECK_REGION => not_kept.push(NotKept {
                resource: subject,
                why: format!(
                    "Route 53 publishes health-check metrics in {HEALTH_CHECK_REGION} only, and this stack runs in \
                     {region}: alarm on HealthCheckStatus there"
                ),
            }),
            "health check" => out.push(Standard {
                statistic: "Minimum".into(),
                comparison: "LessThanThreshold".into(),
                treat_missing_data: "breaching".into(),
                ..base(
                    "health-check",
                    "AWS/Route53",
                    "HealthCheckStatus",
                    vec![("HealthCheckId".into(), r.id.clone())],
                    format!("Route 53 health check {} is failing", r.id),
                )
            }),
            _ => not_kept.push(NotKept {
                resource: subject,
                why: "zone-evacuator keeps the per-AZ alarms of load balancers (its readiness sweep)".into(),
            }),
        }
    }
    (out, not_kept)
}

/// What differs between what the suite wants and what is there (field names), empty when nothing.
pub fn drift(want: &Standard, got: &Existing) -> Vec<&'static str> {
    let sorted = |d: &[(String, String)]| d.iter().cloned().collect::<BTreeSet<_>>();
    let mut out = Vec::new();
    if want.namespace != got.namespace || want.metric != got.metric {
        out.push("metric");
    }
    if sorted(&want.dimensions) != sorted(&got.dimensions) {
        out.push("dimensions");
    }
    if want.statistic != got.statistic {
        out.push("statistic");
    }
    if want.period != got.period
        || want.evaluation_periods != got.evaluation_periods
        || want.datapoints_to_alarm != got.datapoints_to_alarm
    {
        out.push("periods");
    }
    if want.threshold != got.threshold || want.comparison != got.comparison {
        out.push("threshold");
    }
    if want.treat_missing_data != got.treat_missing_data {
        out.push("missing data");
    }
    if want.actions != got.alarm_actions || want.actions != got.ok_actions {
        out.push("actions");
    }
    out
}

/// One change the keeper would make.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "camelCase")]
pub enum Change {
    /// No alarm of that name: create it (tagged [`MANAGED_TAG`]).
    Create { alarm: Standard },
    /// The alarm is there but differs: put it again (only when it carries [`MANAGED_TAG`]).
    Update { alarm: Standard, arn: String, drifted: Vec<String> },
    /// The alarm's resource is no longer opted in (or is gone): delete it (only when it carries
    /// [`MANAGED_TAG`]).
    Delete { name: String, arn: String, why: String },
}

impl Change {
    pub fn name(&self) -> &str {
        match self {
            Change::Create { alarm } | Change::Update { alarm, .. } => &alarm.name,
            Change::Delete { name, .. } => name,
        }
    }

    /// The action name it is audited under.
    pub fn action(&self) -> &'static str {
        match self {
            Change::Create { .. } => "create-alarm",
            Change::Update { .. } => "update-alarm",
            Change::Delete { .. } => "delete-alarm",
        }
    }

    /// Why, in a sentence.
    pub fn why(&self) -> String {
        match self {
            Change::Create { alarm } => {
                format!("{} {} is opted in and has no standard alarm", alarm.resource.0, alarm.resource.1)
            }
            Change::Update { alarm, drifted, .. } => format!(
                "the standard alarm of {} {} differs from the suite's ({})",
                alarm.resource.0,
                alarm.resource.1,
                drifted.join(", ")
            ),
            Change::Delete { why, .. } => why.clone(),
        }
    }

    /// The ARN of the alarm it changes, when the alarm exists.
    pub fn existing_arn(&self) -> Option<&str> {
        match self {
            Change::Create { .. } => None,
            Change::Update { arn, .. } | Change::Delete { arn, .. } => Some(arn),
        }
    }
}

/// The changes from what is there to what is wanted, in name order. An alarm under [`PREFIX`] whose
/// resource is not wanted is to delete; whether it is the suite's own is checked before acting.
pub fn diff(wanted: &[Standard], existing: &[Existing]) -> Vec<Change> {
    let there: BTreeMap<&str, &Existing> = existing.iter().map(|e| (e.name.as_str(), e)).collect();
    let wanted_names: BTreeSet<&str> = wanted.iter().map(|w| w.name.as_str()).collect();
    let mut out = Vec::new();
    for w in wanted {
        match there.get(w.name.as_str()) {
            None => out.push(Change::Create { alarm: w.clone() }),
            Some(e) => {
                let drifted = drift(w, e);
                if !drifted.is_empty() {
                    out.push(Change::Update {
                        alarm: w.clone(),
                        arn: e.arn.clone(),
                        drifted: drifted.into_iter().map(str::to_string).collect(),
                    });
                }
            }
        }
    }
    for e in existing {
        if e.name.starts_with(PREFIX) && !wanted_names.contains(e.name.as_str()) {
            out.push(Change::Delete {
                name: e.name.clone(),
                arn: e.arn.clone(),
                why: format!(
                    "its resource ({}) is no longer opted in, is no longer standalone, or is gone",
                    e.name.trim_start_matches(PREFIX).replace('|', " ")
                ),
            });
        }
    }
    out.sort_by(|a, b| a.name().cmp(b.name()));
    out
}

/// Holds back every deletion when there are more than `max` at once (all or none): many alarms to
/// delete in one run is more likely a tag removed by mistake, or a partial read, than many resources
/// leaving the suite together (Kubernetes MachineHealthCheck's `maxUnhealthy` reasoning). Answers
/// the changes to make and, when held back, why.
pub fn cap_deletes(changes: Vec<Change>, max: usize) -> (Vec<Change>, Option<String>) {
    let deletes = changes.iter().filter(|c| matches!(c, Change::Delete { .. })).count();
    if deletes <= max {
        return (changes, None);
    }
    let kept = changes.into_iter().filter(|c| !matches!(c, Change::Delete { .. })).collect();
    (
        kept,
        Some(format!(
            "{deletes} standard alarms would be deleted at once, more than SELFHEAL_STANDARD_ALARMS_MAX_DELETES \
             ({max}): none deleted. Check the opt-in tags; delete them by hand, or raise the limit for one run"
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:s-alarms";

    fn res(kind: &'static str, id: &str, dims: &[(&str, &str)]) -> Resource {
        Resource { kind, id: id.into(), dimensions: dims.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    fn existing_of(s: &Standard) -> Existing {
        Existing {
            name: s.name.clone(),
            arn: format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{}", s.name),
            namespace: s.namespace.clone(),
            metric: s.metric.clone(),
            dimensions: s.dimensions.iter().rev().cloned().collect(),
            statistic: s.statistic.clone(),
            period: s.period,
            evaluation_periods: s.evaluation_periods,
            datapoints_to_alarm: s.datapoints_to_alarm,
            threshold: s.threshold,
            comparison: s.comparison.clone(),
            treat_missing_data: s.treat_missing_data.clone(),
            alarm_actions: s.actions.clone(),
            ok_actions: s.actions.clone(),
        }
    }

    fn everything() -> Vec<Resource> {
        vec![
            res("instance", "i-1", &[("InstanceId", "i-1")]),
            res("instance", "i-2", &[("InstanceId", "i-2"), ("AutoScalingGroupName", "web")]),
            res("database", "orders", &[("DBInstanceIdentifier", "orders")]),
            res("database cluster", "ledger", &[("DBClusterIdentifier", "ledger")]),
            res("health check", "hc-1", &[("HealthCheckId", "hc-1")]),
            res("load balancer", "app/web/1", &[("LoadBalancer", "app/web/1")]),
        ]
    }

    #[test]
    fn each_kind_gets_the_templates_alarm_and_groups_load_balancers_and_far_health_checks_none() {
        let (w, not_kept) = wanted(&everything(), TOPIC, "us-east-1");
        let names: Vec<&str> = w.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "selfheal-std|instance|i-1",
                "selfheal-std|database|orders",
                "selfheal-std|cluster|ledger",
                "selfheal-std|health-check|hc-1"
            ]
        );
        let i = &w[0];
        assert_eq!(
            (i.metric.as_str(), i.statistic.as_str(), i.comparison.as_str(), i.threshold),
            ("StatusCheckFailed", "Maximum", "GreaterThanOrEqualToThreshold", 1.0)
        );
        assert_eq!(i.dimensions, [("InstanceId".to_string(), "i-1".to_string())]);
        assert_eq!(i.actions, [TOPIC]);
        assert_eq!((w[1].statistic.as_str(), w[1].treat_missing_data.as_str()), ("SampleCount", "breaching"));
        assert!(w[2].dimensions.contains(&("Role".into(), "WRITER".into())));
        assert_eq!((w[3].metric.as_str(), w[3].comparison.as_str()), ("HealthCheckStatus", "LessThanThreshold"));
        assert_eq!(not_kept.len(), 2, "{not_kept:?}");
        assert!(not_kept[0].resource == "instance i-2" && not_kept[0].why.contains("group web"));
        assert!(not_kept[1].why.contains("zone-evacuator"));

        let (w, not_kept) = wanted(&everything(), TOPIC, "eu-west-1");
        assert!(!w.iter().any(|s| s.metric == "HealthCheckStatus"));
        assert!(not_kept.iter().any(|n| n.resource == "health check hc-1" && n.why.contains("us-east-1 only")));
    }

    #[test]
    fn missing_alarms_are_created_drifted_ones_updated_and_those_of_departed_resources_deleted() {
        let (w, _) = wanted(&everything(), TOPIC, "us-east-1");
        let mut drifted = existing_of(&w[1]);
        drifted.threshold = 5.0;
        drifted.ok_actions.clear();
        let same = existing_of(&w[0]);
        let departed = Existing { name: "selfheal-std|instance|i-9".into(), arn: "arn:x".into(), ..Default::default() };
        let foreign = Existing { name: "someone-elses".into(), ..Default::default() };
        let changes = diff(&w, &[same, drifted, departed, foreign]);
        let summary: Vec<(&str, &str)> = changes.iter().map(|c| (c.action(), c.name())).collect();
        assert_eq!(
            summary,
            [
                ("create-alarm", "selfheal-std|cluster|ledger"),
                ("update-alarm", "selfheal-std|database|orders"),
                ("create-alarm", "selfheal-std|health-check|hc-1"),
                ("delete-alarm", "selfheal-std|instance|i-9"),
            ]
        );
        let Change::Update { drifted, .. } = &changes[1] else { panic!("{changes:?}") };
        assert_eq!(drifted, &["threshold", "actions"]);
        assert!(changes[3].why().contains("instance i-9"), "{}", changes[3].why());
    }

    #[test]
    fn dimensions_in_another_order_are_no_drift_and_each_field_is_told() {
        let (w, _) = wanted(&everything(), TOPIC, "us-east-1");
        let cluster = &w[2];
        assert!(drift(cluster, &existing_of(cluster)).is_empty(), "same dimensions, reversed");
        let mut e = existing_of(cluster);
        e.metric = "FreeableMemory".into();
        e.statistic = "Average".into();
        e.period = 300;
        e.treat_missing_data = "missing".into();
        e.dimensions.pop();
        assert_eq!(drift(cluster, &e), ["metric", "dimensions", "statistic", "periods", "missing data"]);
    }

    #[test]
    fn more_deletions_than_the_limit_hold_back_every_deletion_but_not_the_rest() {
        let (w, _) = wanted(&everything(), TOPIC, "us-east-1");
        let gone: Vec<Existing> = (0..3)
            .map(|i| Existing { name: format!("selfheal-std|instance|i-gone{i}"), ..Default::default() })
            .collect();
        let changes = diff(&w, &gone);
        assert_eq!(changes.len(), 7);
        let (kept, why) = cap_deletes(changes.clone(), 3);
        assert_eq!((kept.len(), why), (7, None), "three deletions within a limit of three");
        let (kept, why) = cap_deletes(changes, 2);
        assert_eq!(kept.len(), 4);
        assert!(kept.iter().all(|c| c.action() == "create-alarm"));
        assert!(why.unwrap().starts_with("3 standard alarms would be deleted at once"));
    }
}
