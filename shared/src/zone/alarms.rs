//! The suite's per-AZ load balancer alarms: for each opted-in ALB/NLB and each of its AZs, up to three
//! metric-math alarms named `selfheal-az|<az>|<5xx|latency|unhealthy>|<lb dimension>`
//! ([`super::signals::AlarmName`]), defined here as pure data ([`for_load_balancer`]) and created or
//! listed with CloudWatch ([`put`], [`existing`]).
//!
//! # Outliers, not thresholds
//! Every alarm asks "is THIS AZ significantly worse than the rest of the load balancer?", so a problem
//! of every AZ at once (a bad deploy everywhere, a dependency down) does not look like one AZ's:
//! - `5xx` (ALB: `HTTPCode_Target_5XX_Count` over `RequestCount`; NLB: `TCP_Target_Reset_Count` over
//!   `NewFlowCount`, all `Sum`): the AZ's error rate is at least [`Thresholds::error_factor`] times the
//!   rate of the rest of the load balancer (its whole-LB count minus the AZ's), with floors on the
//!   AZ's error count and rate so a handful of errors is no signal:
//!   `IF((az_err >= 10) AND ((az_err / az_req) >= 0.01) AND ((az_err / az_req) >= 2 * ((lb_err - az_err) / (lb_req - az_req))), 1, 0)`
//! - `latency` (ALB only; NLB publishes no response time): the AZ's `TargetResponseTime` p99 is at
//!   least [`Thresholds::latency_factor`] times, and [`Thresholds::latency_margin_seconds`] above, the
//!   p99 of EVERY other AZ of the load balancer (each one with data), with a floor on the AZ's
//!   `RequestCount` so a p99 of a few requests is no signal:
//!   `IF((az_req >= 100) AND (p99_o1 > 0) AND (p99_self >= 2 * p99_o1) AND ((p99_self - p99_o1) >= 0.1) AND ..., 1, 0)`.
//!   Compared with each other AZ, not with the load balancer's own p99: with a third of the requests
//!   slow, the whole load balancer's p99 is a slow request too, and the ratio would say nothing.
//! - `unhealthy` (per target group, at most [`MAX_TARGET_GROUPS`] per alarm): at least half of the
//!   AZ's targets are unhealthy and the AZ has at least twice as many unhealthy targets as all the
//!   other AZs together (`UnHealthyHostCount` `Minimum` and `HealthyHostCount` `Maximum`: a target
//!   counts as unhealthy only when every load balancer node says so).
//!
//! Only arithmetic, comparisons, `AND` and `IF` are used: the metric-math guide advises against `MAX`,
//! `MIN`, `SUM` and `AVG` of a series in alarms (they act differently on the extra datapoints an alarm
//! fetches), and `FILL` in an alarm can stick it in one state when the newest minute has no data. None
//! is needed: missing values count as 0 in arithmetic and comparisons, and a division by zero drops the
//! datapoint. Missing datapoints of the whole expression are `notBreaching`. The alarms have no
//! actions: EventBridge delivers their state changes (rule on `selfheal-az|`).
//!
//! # Detection time
//! One-minute periods (ELB sends its metrics in 60-second intervals). Detection is period ×
//! datapoints-to-alarm + a delivery budget of [`DELIVERY_DELAY_SECONDS`] (the minute's datapoints
//! arriving after the minute ends and the alarm's next evaluation; a budget assumed here, not a
//! bound CloudWatch documents):
//! - `5xx` and `unhealthy` (a hard failure): 2 of 3 datapoints, 60 s × 2 + 60 s = **180 s (3 min)**;
//! - `latency` (gray): 3 of 5 datapoints, 60 s × 3 + 60 s = **240 s (4 min)** (≤ 5 min); M of N as
//!   the Advanced Multi-AZ Resilience Patterns paper suggests, so a signal that flickers still counts.
//!
//! ARC zonal autoshift publishes no detection time: its developer guide says only that it uses AWS
//! telemetry to detect an AZ impairment "as early as possible" and shifts immediately when it starts
//! an autoshift (and that it acts on AWS's own signals, never on an application's).
//!
//! Sources: Application and Network Load Balancer CloudWatch metrics (metric names, dimensions,
//! statistics, the 60-second interval); CloudWatch "Using metric math" (IF, missing values, the
//! functions not to use in alarms) and "Using Amazon CloudWatch alarms" (M out of N, at most 10
//! metrics of one period in a math alarm); PutMetricAlarm's MetricDataQuery (up to 10 MetricStat and
//! 10 Expression entries); the Advanced Multi-AZ Resilience Patterns whitepaper (failure detection
//! with composite alarms and with outlier detection); ARC's "When AWS starts and stops autoshifts".
//!
//! Caveat: with cross-zone load balancing on (always for an ALB), the `AvailabilityZone` of a request
//! metric is the load balancer node's, and one AZ's bad targets are spread over every node; the
//! `unhealthy` alarm, per target AZ, still tells them apart.

use std::collections::BTreeSet;

use serde::Serialize;

use super::signals::AlarmName;
use super::ALARM_PREFIX;
use crate::error::{Error, Result};

/// Every alarm's period (seconds).
pub const PERIOD_SECONDS: i32 = 60;

/// The delivery budget added to period × datapoints-to-alarm in [`AlarmSpec::detection_seconds`].
pub const DELIVERY_DELAY_SECONDS: i32 = 60;

/// A math alarm takes at most 10 metrics: 3 per target group in the `unhealthy` alarm.
pub const MAX_TARGET_GROUPS: usize = 3;

/// The metric-math id of every alarm's watched expression.
pub const EXPRESSION_ID: &str = "outlier";

/// The kind of load balancer, from its dimension (`app/...`, `net/...`, `gwy/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LbType {
    Application,
    Network,
    Gateway,
}

impl LbType {
    /// The type of the load balancer whose ELB dimension is `dimension`.
    pub fn of(dimension: &str) -> Result<LbType> {
        match dimension.split('/').next() {
            Some("app") => Ok(LbType::Application),
            Some("net") => Ok(LbType::Network),
            Some("gwy") => Ok(LbType::Gateway),
            _ => Err(Error::Precondition(format!(
                "{dimension:?} is not a load balancer dimension (app/<name>/<id>, net/<name>/<id> or gwy/<name>/<id>)"
            ))),
        }
    }

    /// The CloudWatch namespace of its metrics.
    pub fn namespace(self) -> &'static str {
        match self {
            LbType::Application => "AWS/ApplicationELB",
            LbType::Network => "AWS/NetworkELB",
            LbType::Gateway => "AWS/GatewayELB",
        }
    }
}

/// The target group dimension (`targetgroup/<name>/<id>`, the end of its ARN).
pub fn target_group_dimension(arn: &str) -> Option<String> {
    arn.split_once(":targetgroup/").map(|(_, rest)| format!("targetgroup/{rest}")).filter(|d| d.len() > 12)
}

/// How much worse an AZ must be to be an outlier.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Thresholds {
    /// Fewest errors (5XX or target resets) a minute in the AZ to count.
    pub errors_floor: f64,
    /// Lowest error rate (errors per request or per new flow) in the AZ to count.
    pub error_rate_floor: f64,
    /// The AZ's error rate over the rest of the load balancer's.
    pub error_factor: f64,
    /// Fewest requests a minute in the AZ for its p99 to count.
    pub latency_requests_floor: f64,
    /// The AZ's p99 over every other AZ's.
    pub latency_factor: f64,
    /// And at least this many seconds above each.
    pub latency_margin_seconds: f64,
    /// Least share of the AZ's targets unhealthy.
    pub unhealthy_share: f64,
    /// The AZ's unhealthy targets over all the other AZs' together.
    pub unhealthy_factor: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            errors_floor: 10.0,
            error_rate_floor: 0.01,
            error_factor: 2.0,
            latency_requests_floor: 100.0,
            latency_factor: 2.0,
            latency_margin_seconds: 0.1,
            unhealthy_share: 0.5,
            unhealthy_factor: 2.0,
        }
    }
}

/// One metric an alarm reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricSpec {
    /// The metric-math id (lowercase first, letters, digits, `_`).
    pub id: String,
    pub namespace: &'static str,
    pub metric: &'static str,
    pub dimensions: Vec<(&'static str, String)>,
    /// `Sum`, `Minimum`, `Maximum` or a percentile (`p99`).
    pub stat: &'static str,
}

/// One per-AZ alarm, as `PutMetricAlarm` gets it: a math expression over [`MetricSpec`]s, watched for
/// `>= 1` ([`EXPRESSION_ID`] is 1 when the AZ is an outlier, 0 when not).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmSpec {
    pub name: String,
    pub az: String,
    pub signal: &'static str,
    pub load_balancer: String,
    pub description: String,
    pub metrics: Vec<MetricSpec>,
    pub expression: String,
    pub evaluation_periods: i32,
    pub datapoints_to_alarm: i32,
}

impl AlarmSpec {
    /// Seconds from the failure to the alarm: period × datapoints-to-alarm + the delivery budget.
    pub fn detection_seconds(&self) -> i32 {
        PERIOD_SECONDS * self.datapoints_to_alarm + DELIVERY_DELAY_SECONDS
    }
}

/// The alarms a load balancer should have, and what they leave out.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LbAlarms {
    pub alarms: Vec<AlarmSpec>,
    /// Target groups past [`MAX_TARGET_GROUPS`], which the `unhealthy` alarms do not read.
    pub uncovered_target_groups: Vec<String>,
    /// Signals not kept, each with why.
    pub not_kept: Vec<String>,
}

impl LbAlarms {
    pub fn names(&self) -> BTreeSet<String> {
        self.alarms.iter().map(|a| a.name.clone()).collect()
    }
}

fn metric(
    id: &str,
    ty: LbType,
    name: &'static str,
    dims: Vec<(&'static str, String)>,
    stat: &'static str,
) -> MetricSpec {
    MetricSpec { id: id.to_string(), namespace: ty.namespace(), metric: name, dimensions: dims, stat }
}

fn lb_dims(lb: &str) -> Vec<(&'static str, String)> {
    vec![("LoadBalancer", lb.to_string())]
}

fn az_dims(lb: &str, az: &str) -> Vec<(&'static str, String)> {
    vec![("LoadBalancer", lb.to_string()), ("AvailabilityZone", az.to_string())]
}

fn name(az: &str, signal: &'static str, lb: &str) -> String {
    AlarmName { az: az.to_string(), signal: signal.to_string(), load_balancer: lb.to_string() }.render()
}

/// The error-rate outlier expression over `az_err`, `az_req`, `lb_err`, `lb_req`.
pub fn error_expression(t: &Thresholds) -> String {
    format!(
        "IF((az_err >= {}) AND ((az_err / az_req) >= {}) AND ((az_err / az_req) >= {} * ((lb_err - az_err) / (lb_req - az_req))), 1, 0)",
        t.errors_floor, t.error_rate_floor, t.error_factor
    )
}

/// The latency outlier expression over `az_req`, `p99_self` and `p99_o1`..`p99_o<others>`.
pub fn latency_expression(t: &Thresholds, others: usize) -> String {
    let mut terms = vec![format!("(az_req >= {})", t.latency_requests_floor)];
    for i in 1..=others {
        terms.push(format!("(p99_o{i} > 0)"));
        terms.push(format!("(p99_self >= {} * p99_o{i})", t.latency_factor));
        terms.push(format!("((p99_self - p99_o{i}) >= {})", t.latency_margin_seconds));
    }
    format!("IF({}, 1, 0)", terms.join(" AND "))
}

/// The unhealthy-targets outlier expression over `un_az_<i>`, `ok_az_<i>`, `un_all_<i>` for `groups`
/// target groups.
pub fn unhealthy_expression(t: &Thresholds, groups: usize) -> String {
    let sum = |p: &str| format!("({})", (1..=groups).map(|i| format!("{p}_{i}")).collect::<Vec<_>>().join(" + "));
    let (un, ok, all) = (sum("un_az"), sum("ok_az"), sum("un_all"));
    format!(
        "IF(({un} >= 1) AND (({un} / ({un} + {ok})) >= {}) AND ({un} >= {} * ({all} - {un})), 1, 0)",
        t.unhealthy_share, t.unhealthy_factor
    )
}

/// The per-AZ alarms of the load balancer whose ELB dimension is `dimension`, in `azs` (names), with
/// `target_groups` (their dimensions, `targetgroup/<name>/<id>`). An error names a dimension that is no
/// load balancer's. A load balancer in fewer than two AZs gets none (an outlier needs another AZ).
pub fn for_load_balancer(
    dimension: &str,
    azs: &[String],
    target_groups: &[String],
    t: &Thresholds,
) -> Result<LbAlarms> {
    let ty = LbType::of(dimension)?;
    let mut out = LbAlarms::default();
    if ty == LbType::Gateway {
        out.not_kept.push("ARC zonal shift does not support Gateway Load Balancers: no per-AZ alarms".into());
        return Ok(out);
    }
    let azs: Vec<String> = azs.iter().filter(|a| !a.is_empty()).cloned().collect::<BTreeSet<_>>().into_iter().collect();
    if azs.len() < 2 {
        out.not_kept
            .push(format!("the load balancer is in {} AZ(s): an outlier needs another AZ to compare with", azs.len()));
        return Ok(out);
    }
    let mut groups: Vec<String> = target_groups.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    out.uncovered_target_groups = groups.split_off(groups.len().min(MAX_TARGET_GROUPS));
    if groups.is_empty() {
        out.not_kept.push("unhealthy: the load balancer has no target group".into());
    }
    if ty == LbType::Network {
        out.not_kept.push("latency: a Network Load Balancer publishes no response time".into());
    }
    let (err_metric, req_metric) = match ty {
        LbType::Network => ("TCP_Target_Reset_Count", "NewFlowCount"),
        _ => ("HTTPCode_Target_5XX_Count", "RequestCount"),
    };
    for az in &azs {
        out.alarms.push(AlarmSpec {
            name: name(az, "5xx", dimension),
            az: az.clone(),
            signal: "5xx",
            load_balancer: dimension.to_string(),
            description: format!(
                "selfheal zone-evacuator: {az}'s {err_metric} rate is at least {}x the rest of {dimension}'s (at least {} a \
                 minute and {} of {req_metric}); 2 of 3 one-minute datapoints",
                t.error_factor, t.errors_floor, t.error_rate_floor
            ),
            metrics: vec![
                metric("az_err", ty, err_metric, az_dims(dimension, az), "Sum"),
                metric("az_req", ty, req_metric, az_dims(dimension, az), "Sum"),
                metric("lb_err", ty, err_metric, lb_dims(dimension), "Sum"),
                metric("lb_req", ty, req_metric, lb_dims(dimension), "Sum"),
            ],
            expression: error_expression(t),
            evaluation_periods: 3,
            datapoints_to_alarm: 2,
        });
        if ty == LbType::Application {
            let others: Vec<&String> = azs.iter().filter(|o| *o != az).collect();
            let mut metrics = vec![
                metric("az_req", ty, "RequestCount", az_dims(dimension, az), "Sum"),
                metric("p99_self", ty, "TargetResponseTime", az_dims(dimension, az), "p99"),
            ];
            for (i, o) in others.iter().enumerate() {
                metrics.push(metric(
                    &format!("p99_o{}", i + 1),
                    ty,
                    "TargetResponseTime",
                    az_dims(dimension, o),
                    "p99",
                ));
            }
            if metrics.len() <= 10 {
                out.alarms.push(AlarmSpec {
                    name: name(az, "latency", dimension),
                    az: az.clone(),
                    signal: "latency",
                    load_balancer: dimension.to_string(),
                    description: format!(
                        "selfheal zone-evacuator: {az}'s TargetResponseTime p99 is at least {}x and {}s above every other \
                         AZ's of {dimension} (at least {} requests a minute); 3 of 5 one-minute datapoints",
                        t.latency_factor, t.latency_margin_seconds, t.latency_requests_floor
                    ),
                    metrics,
                    expression: latency_expression(t, others.len()),
                    evaluation_periods: 5,
                    datapoints_to_alarm: 3,
                });
            } else if az == &azs[0] {
                out.not_kept.push(format!("latency: {} AZs are more than a math alarm's 10 metrics", azs.len()));
            }
        }
        if !groups.is_empty() {
            let mut metrics = Vec::new();
            for (i, tg) in groups.iter().enumerate() {
                let n = i + 1;
                let tg_az = vec![
                    ("LoadBalancer", dimension.to_string()),
                    ("TargetGroup", tg.clone()),
                    ("AvailabilityZone", az.clone()),
                ];
                let tg_all = vec![("LoadBalancer", dimension.to_string()), ("TargetGroup", tg.clone())];
                metrics.push(metric(&format!("un_az_{n}"), ty, "UnHealthyHostCount", tg_az.clone(), "Minimum"));
                metrics.push(metric(&format!("ok_az_{n}"), ty, "HealthyHostCount", tg_az, "Maximum"));
                metrics.push(metric(&format!("un_all_{n}"), ty, "UnHealthyHostCount", tg_all, "Minimum"));
            }
            out.alarms.push(AlarmSpec {
                name: name(az, "unhealthy", dimension),
                az: az.clone(),
                signal: "unhealthy",
                load_balancer: dimension.to_string(),
                description: format!(
                    "selfheal zone-evacuator: at least {} of {az}'s targets of {dimension} are unhealthy and at least {}x as \
                     many as in all its other AZs ({} target group(s)); 2 of 3 one-minute datapoints",
                    t.unhealthy_share,
                    t.unhealthy_factor,
                    groups.len()
                ),
                metrics,
                expression: unhealthy_expression(t, groups.len()),
                evaluation_periods: 3,
                datapoints_to_alarm: 2,
            });
        }
    }
    Ok(out)
}

/// The names of the suite's per-AZ alarms in the place (`DescribeAlarms` with the `selfheal-az|`
/// prefix, every page).
pub async fn existing(cw: &aws_sdk_cloudwatch::Client) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut pages = cw.describe_alarms().alarm_name_prefix(format!("{ALARM_PREFIX}|")).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("cloudwatch", "DescribeAlarms", e))?;
        out.extend(page.metric_alarms().iter().filter_map(|a| a.alarm_name().map(str::to_string)));
    }
    Ok(out)
}

/// The `Metrics` of `PutMetricAlarm` for `spec`: its metrics (not returned) and the expression.
pub fn queries(spec: &AlarmSpec) -> Vec<aws_sdk_cloudwatch::types::MetricDataQuery> {
    use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
    let mut out: Vec<MetricDataQuery> = spec
        .metrics
        .iter()
        .map(|m| {
            let mut metric = Metric::builder().namespace(m.namespace).metric_name(m.metric);
            for (k, v) in &m.dimensions {
                metric = metric.dimensions(Dimension::builder().name(*k).value(v).build());
            }
            MetricDataQuery::builder()
                .id(&m.id)
                .metric_stat(MetricStat::builder().metric(metric.build()).period(PERIOD_SECONDS).stat(m.stat).build())
                .return_data(false)
                .build()
        })
        .collect();
    out.push(
        MetricDataQuery::builder()
            .id(EXPRESSION_ID)
            .expression(&spec.expression)
            .label(format!("{} {} outlier", spec.az, spec.signal))
            .return_data(true)
            .build(),
    );
    out
}

/// Creates (or overwrites) the alarm `spec` (`PutMetricAlarm`). No actions: EventBridge delivers its
/// state changes.
pub async fn put(cw: &aws_sdk_cloudwatch::Client, spec: &AlarmSpec) -> Result<()> {
    use aws_sdk_cloudwatch::types::ComparisonOperator;
    cw.put_metric_alarm()
        .alarm_name(&spec.name)
        .alarm_description(&spec.description)
        .set_metrics(Some(queries(spec)))
        .evaluation_periods(spec.evaluation_periods)
        .datapoints_to_alarm(spec.datapoints_to_alarm)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .treat_missing_data("notBreaching")
        .send()
        .await
        .map_err(|e| Error::aws("cloudwatch", "PutMetricAlarm", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALB: &str = "app/web/50dc6c495c0c9188";
    const NLB: &str = "net/edge/abcdef0123456789";

    fn azs(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn tgs(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("targetgroup/web{i}/73e2d6bc24d8a06{i}")).collect()
    }

    #[test]
    fn every_alarm_name_round_trips_through_the_evacuators_reader() {
        let d =
            for_load_balancer(ALB, &azs(&["us-east-1a", "us-east-1b", "us-east-1c"]), &tgs(1), &Thresholds::default())
                .unwrap();
        assert_eq!(d.alarms.len(), 9, "{:?}", d.names());
        for a in &d.alarms {
            let parsed = AlarmName::parse(&a.name).unwrap_or_else(|| panic!("{} is not one of the suite's", a.name));
            assert_eq!((parsed.az.as_str(), parsed.signal.as_str()), (a.az.as_str(), a.signal));
            assert_eq!(parsed.load_balancer, ALB);
            assert!(a.name.len() <= 255 && a.name.is_ascii());
        }
        assert!(d.names().contains("selfheal-az|us-east-1b|latency|app/web/50dc6c495c0c9188"));
    }

    #[test]
    fn the_error_alarm_compares_the_az_with_the_rest_of_the_load_balancer() {
        let d = for_load_balancer(ALB, &azs(&["us-east-1a", "us-east-1b"]), &[], &Thresholds::default()).unwrap();
        let a = d.alarms.iter().find(|a| a.signal == "5xx" && a.az == "us-east-1a").unwrap();
        assert_eq!(
            a.expression,
            "IF((az_err >= 10) AND ((az_err / az_req) >= 0.01) AND ((az_err / az_req) >= 2 * ((lb_err - az_err) / (lb_req \
             - az_req))), 1, 0)"
        );
        let m: Vec<(&str, &str, usize, &str)> =
            a.metrics.iter().map(|m| (m.id.as_str(), m.metric, m.dimensions.len(), m.stat)).collect();
        assert_eq!(
            m,
            vec![
                ("az_err", "HTTPCode_Target_5XX_Count", 2, "Sum"),
                ("az_req", "RequestCount", 2, "Sum"),
                ("lb_err", "HTTPCode_Target_5XX_Count", 1, "Sum"),
                ("lb_req", "RequestCount", 1, "Sum"),
            ]
        );
        assert!(a.metrics.iter().all(|m| m.namespace == "AWS/ApplicationELB"));
        assert_eq!(a.metrics[0].dimensions[1], ("AvailabilityZone", "us-east-1a".to_string()));
        assert!(d.not_kept.iter().any(|n| n.contains("no target group")), "{:?}", d.not_kept);
    }

    /// The expression's arithmetic, evaluated here as CloudWatch does for one datapoint (missing counts
    /// as 0): one AZ failing is an outlier, every AZ failing alike is not.
    #[test]
    fn one_bad_az_is_an_outlier_and_a_fleet_wide_problem_is_not() {
        let t = Thresholds::default();
        let fires = |az_err: f64, az_req: f64, lb_err: f64, lb_req: f64| {
            let rate = az_err / az_req;
            let rest = if lb_req - az_req > 0.0 { (lb_err - az_err) / (lb_req - az_req) } else { 0.0 };
            az_err >= t.errors_floor && rate >= t.error_rate_floor && rate >= t.error_factor * rest
        };
        assert!(fires(300.0, 1000.0, 310.0, 3000.0), "one AZ failing 30%, the others 0.5%");
        assert!(!fires(300.0, 1000.0, 900.0, 3000.0), "all three AZs failing 30%: a bad deploy");
        assert!(!fires(5.0, 1000.0, 5.0, 3000.0), "five errors: below the floor");
        assert!(!fires(20.0, 10_000.0, 20.0, 30_000.0), "0.2%: below the rate floor");
        assert!(fires(300.0, 1000.0, 600.0, 3000.0), "two of three AZs failing: each is twice the rest");
        assert!(error_expression(&t).contains(">= 2 * ((lb_err - az_err) / (lb_req - az_req))"));
    }

    #[test]
    fn latency_compares_with_every_other_az_and_only_for_albs() {
        let t = Thresholds::default();
        let d = for_load_balancer(ALB, &azs(&["us-east-1c", "us-east-1a", "us-east-1b"]), &[], &t).unwrap();
        let a = d.alarms.iter().find(|a| a.signal == "latency" && a.az == "us-east-1b").unwrap();
        let p99: Vec<(&str, &str)> =
            a.metrics.iter().filter(|m| m.stat == "p99").map(|m| (m.id.as_str(), m.dimensions[1].1.as_str())).collect();
        assert_eq!(p99, vec![("p99_self", "us-east-1b"), ("p99_o1", "us-east-1a"), ("p99_o2", "us-east-1c")]);
        assert_eq!(
            a.expression,
            "IF((az_req >= 100) AND (p99_o1 > 0) AND (p99_self >= 2 * p99_o1) AND ((p99_self - p99_o1) >= 0.1) AND (p99_o2 \
             > 0) AND (p99_self >= 2 * p99_o2) AND ((p99_self - p99_o2) >= 0.1), 1, 0)"
        );
        let n = for_load_balancer(NLB, &azs(&["us-east-1a", "us-east-1b"]), &tgs(1), &t).unwrap();
        assert!(n.alarms.iter().all(|a| a.signal != "latency"));
        assert!(n.not_kept.iter().any(|w| w.contains("no response time")));
        let e = n.alarms.iter().find(|a| a.signal == "5xx").unwrap();
        assert_eq!((e.metrics[0].namespace, e.metrics[0].metric), ("AWS/NetworkELB", "TCP_Target_Reset_Count"));
        assert_eq!(e.metrics[1].metric, "NewFlowCount");
    }

    #[test]
    fn unhealthy_reads_each_target_group_within_the_ten_metric_limit() {
        let t = Thresholds::default();
        let d = for_load_balancer(ALB, &azs(&["us-east-1a", "us-east-1b"]), &tgs(5), &t).unwrap();
        assert_eq!(d.uncovered_target_groups, tgs(5)[3..].to_vec());
        let u = d.alarms.iter().find(|a| a.signal == "unhealthy").unwrap();
        assert_eq!(u.metrics.len(), 9);
        assert!(d.alarms.iter().all(|a| a.metrics.len() <= 10), "a math alarm reads at most 10 metrics");
        assert_eq!(
            unhealthy_expression(&t, 2),
            "IF(((un_az_1 + un_az_2) >= 1) AND (((un_az_1 + un_az_2) / ((un_az_1 + un_az_2) + (ok_az_1 + ok_az_2))) >= \
             0.5) AND ((un_az_1 + un_az_2) >= 2 * ((un_all_1 + un_all_2) - (un_az_1 + un_az_2))), 1, 0)"
        );
        let stats: BTreeSet<(&str, &str)> = u.metrics.iter().map(|m| (m.metric, m.stat)).collect();
        assert_eq!(
            stats,
            [("HealthyHostCount", "Maximum"), ("UnHealthyHostCount", "Minimum")].into_iter().collect::<BTreeSet<_>>()
        );
        assert!(u.metrics.iter().any(|m| m.dimensions.len() == 2 && m.id == "un_all_3"));
    }

    #[test]
    fn detection_is_within_three_minutes_hard_and_five_gray() {
        let d = for_load_balancer(ALB, &azs(&["us-east-1a", "us-east-1b"]), &tgs(1), &Thresholds::default()).unwrap();
        for a in &d.alarms {
            assert!(a.datapoints_to_alarm <= a.evaluation_periods);
            let limit = if a.signal == "latency" { 300 } else { 180 };
            assert!(a.detection_seconds() <= limit, "{} detects in {}s", a.name, a.detection_seconds());
        }
        let secs: BTreeSet<(&str, i32)> = d.alarms.iter().map(|a| (a.signal, a.detection_seconds())).collect();
        assert_eq!(secs, [("5xx", 180), ("latency", 240), ("unhealthy", 180)].into_iter().collect::<BTreeSet<_>>());
    }

    #[test]
    fn bad_and_unsupported_load_balancers_are_named() {
        let t = Thresholds::default();
        let err = for_load_balancer("web-alb", &azs(&["a", "b"]), &[], &t).unwrap_err().to_string();
        assert!(err.contains("\"web-alb\"") && err.contains("not a load balancer dimension"), "{err}");
        let g = for_load_balancer("gwy/fw/1234", &azs(&["a", "b"]), &[], &t).unwrap();
        assert!(g.alarms.is_empty() && g.not_kept[0].contains("Gateway"));
        let one = for_load_balancer(ALB, &azs(&["us-east-1a", "us-east-1a"]), &[], &t).unwrap();
        assert!(one.alarms.is_empty() && one.not_kept[0].contains("1 AZ(s)"), "{:?}", one.not_kept);
        assert_eq!(
            target_group_dimension("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/web/73e2d6bc24d8a067")
                .as_deref(),
            Some("targetgroup/web/73e2d6bc24d8a067")
        );
        assert_eq!(target_group_dimension("arn:aws:s3:::b"), None);
    }

    #[test]
    fn the_put_request_carries_the_metrics_and_one_returned_expression() {
        let d = for_load_balancer(ALB, &azs(&["us-east-1a", "us-east-1b"]), &[], &Thresholds::default()).unwrap();
        let q = queries(&d.alarms[0]);
        assert_eq!(q.len(), 5);
        assert_eq!(q.iter().filter(|q| q.return_data() == Some(true)).count(), 1);
        let e = q.last().unwrap();
        assert_eq!((e.id(), e.expression()), (Some(EXPRESSION_ID), Some(d.alarms[0].expression.as_str())));
        let s = q[0].metric_stat().unwrap();
        assert_eq!((s.period(), s.stat()), (Some(60), Some("Sum")));
    }

    // CloudWatch is mocked (aws-smithy-mocks): moto does not speak CloudWatch's current protocol
    // (rpc-v2-cbor), so these read and create against the SDK's own typed requests and answers.
    mod cloudwatch {
        use super::*;
        use aws_sdk_cloudwatch::operation::describe_alarms::{DescribeAlarmsError, DescribeAlarmsOutput};
        use aws_sdk_cloudwatch::operation::put_metric_alarm::PutMetricAlarmOutput;
        use aws_sdk_cloudwatch::types::{ComparisonOperator, MetricAlarm};
        use aws_smithy_mocks::{mock, mock_client};

        #[tokio::test]
        async fn existing_reads_every_page_of_the_prefix() {
            let first = mock!(aws_sdk_cloudwatch::Client::describe_alarms)
                .match_requests(|r| r.alarm_name_prefix() == Some("selfheal-az|") && r.next_token().is_none())
                .then_output(|| {
                    DescribeAlarmsOutput::builder()
                        .metric_alarms(
                            MetricAlarm::builder().alarm_name("selfheal-az|us-east-1a|5xx|app/web/1").build(),
                        )
                        .next_token("page-2")
                        .build()
                });
            let second = mock!(aws_sdk_cloudwatch::Client::describe_alarms)
                .match_requests(|r| r.next_token() == Some("page-2"))
                .then_output(|| {
                    DescribeAlarmsOutput::builder()
                        .metric_alarms(
                            MetricAlarm::builder().alarm_name("selfheal-az|us-east-1b|5xx|app/web/1").build(),
                        )
                        .build()
                });
            let client = mock_client!(aws_sdk_cloudwatch, [&first, &second]);
            let names = existing(&client).await.unwrap();
            assert_eq!(names.len(), 2, "{names:?}");
            assert!(names.contains("selfheal-az|us-east-1b|5xx|app/web/1"));
            assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
        }

        #[tokio::test]
        async fn a_failed_read_is_named() {
            let failing = mock!(aws_sdk_cloudwatch::Client::describe_alarms)
                .then_error(|| DescribeAlarmsError::unhandled("the emulator does not speak this protocol"));
            let client = mock_client!(aws_sdk_cloudwatch, [&failing]);
            let err = existing(&client).await.unwrap_err().to_string();
            assert!(err.contains("cloudwatch:DescribeAlarms"), "{err}");
        }

        #[tokio::test]
        async fn put_sends_the_outlier_alarm_without_actions() {
            let d =
                for_load_balancer(ALB, &azs(&["us-east-1a", "us-east-1b"]), &tgs(1), &Thresholds::default()).unwrap();
            let spec = d.alarms.iter().find(|a| a.signal == "latency").unwrap().clone();
            let expected = spec.clone();
            let rule = mock!(aws_sdk_cloudwatch::Client::put_metric_alarm)
                .match_requests(move |r| {
                    r.alarm_name() == Some(expected.name.as_str())
                        && r.metrics().len() == expected.metrics.len() + 1
                        && r.metrics().iter().any(|q| q.expression() == Some(expected.expression.as_str()))
                        && r.threshold() == Some(1.0)
                        && r.comparison_operator() == Some(&ComparisonOperator::GreaterThanOrEqualToThreshold)
                        && (r.evaluation_periods(), r.datapoints_to_alarm()) == (Some(5), Some(3))
                        && r.treat_missing_data() == Some("notBreaching")
                        && r.alarm_actions().is_empty()
                        && r.metric_name().is_none()
                })
                .then_output(|| PutMetricAlarmOutput::builder().build());
            let client = mock_client!(aws_sdk_cloudwatch, [&rule]);
            put(&client, &spec).await.unwrap();
            assert_eq!(rule.num_calls(), 1);
        }
    }
}
