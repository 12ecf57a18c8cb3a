//! Coverage: every opted-in instance, database, health check and load balancer, with or without an
//! alarm whose signal reaches the suite. The suite heals on alarms: a resource whose alarms reach none
//! of its functions is never healed, however well the rest is wired.
//!
//! Opted in as each function selects: EC2 instances, RDS instances and DB clusters carrying the opt-in
//! tag (the healer, db-failover), Route 53 health checks carrying it (dns-failover), ALBs/NLBs carrying it
//! (zone-evacuator). An alarm covers a resource when one of its metrics has the resource's dimension
//! (`InstanceId`, or the instance's `AutoScalingGroupName`; `DBInstanceIdentifier`; `DBClusterIdentifier`; `HealthCheckId`;
//! `LoadBalancer`), and reaches the suite when its actions publish to the alarms topic or invoke a
//! function of the stack, or when a rule of the stack targeting a function matches its state change
//! (EventBridge's own `TestEventPattern` on the event CloudWatch would send).

use aws_sdk_cloudwatch::types::MetricAlarm;
use serde_json::json;

use super::rules::{matches, Routes};
use super::{Check, Deployment};
use crate::clients::Aws;
use crate::error::Error;

/// An opted-in resource and the metric dimensions that name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub kind: &'static str,
    pub id: String,
    pub dimensions: Vec<(String, String)>,
}

/// One metric an alarm reads: (namespace, metric name, dimensions).
pub type AlarmMetric = (String, String, Vec<(String, String)>);

/// A metric alarm, as far as coverage needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    pub name: String,
    /// Each metric it reads.
    pub metrics: Vec<AlarmMetric>,
    pub actions: Vec<String>,
}

impl Alarm {
    pub fn from_sdk(a: &MetricAlarm) -> Self {
        let dims = |d: &[aws_sdk_cloudwatch::types::Dimension]| {
            d.iter()
                .map(|d| (d.name().unwrap_or_default().to_string(), d.value().unwrap_or_default().to_string()))
                .collect()
        };
        let mut metrics = Vec::new();
        if let Some(name) = a.metric_name() {
            metrics.push((a.namespace().unwrap_or_default().to_string(), name.to_string(), dims(a.dimensions())));
        }
        for q in a.metrics() {
            if let Some(m) = q.metric_stat().and_then(|s| s.metric()) {
                metrics.push((
                    m.namespace().unwrap_or_default().to_string(),
                    m.metric_name().unwrap_or_default().to_string(),
                    dims(m.dimensions()),
                ));
            }
        }
        Alarm { name: a.alarm_name().unwrap_or_default().to_string(), metrics, actions: a.alarm_actions().to_vec() }
    }

    fn covers(&self, r: &Resource) -> bool {
        self.metrics.iter().any(|(_, _, dims)| dims.iter().any(|d| r.dimensions.contains(d)))
    }

    /// The state change CloudWatch sends EventBridge when this alarm goes to ALARM (the shape of
    /// events/alarm-eventbridge-*.json).
    pub fn state_change(&self, d: &Deployment) -> serde_json::Value {
        let metrics: Vec<_> = self
            .metrics
            .iter()
            .enumerate()
            .map(|(i, (ns, name, dims))| {
                let dims: serde_json::Map<String, serde_json::Value> =
                    dims.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                json!({"id": format!("m{}", i + 1), "metricStat": {"metric": {"namespace": ns, "name": name, "dimensions": dims}, "period": 60, "stat": "Maximum"}, "returnData": true})
            })
            .collect();
        json!({
            "version": "0", "id": "00000000-0000-0000-0000-000000000000",
            "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
            "account": d.account, "time": "2026-01-01T00:00:00Z", "region": d.region,
            "resources": [format!("arn:{}:cloudwatch:{}:{}:alarm:{}", d.partition, d.region, d.account, self.name)],
            "detail": {"alarmName": self.name, "state": {"value": "ALARM", "reason": "preflight", "timestamp": "2026-01-01T00:00:00.000+0000"},
                       "previousState": {"value": "OK", "reason": "preflight", "timestamp": "2026-01-01T00:00:00.000+0000"},
                       "configuration": {"metrics": metrics}}
        })
    }
}

/// How an alarm reaches the suite, if it does: through its own actions, or a rule of the stack.
pub async fn reaches(
    eb: &aws_sdk_eventbridge::Client,
    d: &Deployment,
    routes: &Routes,
    alarm: &Alarm,
) -> Option<String> {
    let function_prefix = format!(":function:{}-", d.stack);
    if let Some(a) =
        alarm.actions.iter().find(|a| Some(a.as_str()) == d.alarms_topic.as_deref() || a.contains(&function_prefix))
    {
        return Some(format!("its action {a}"));
    }
    let event = alarm.state_change(d).to_string();
    for rule in routes.as_ref().ok()?.iter() {
        let to_suite = rule.targets.iter().any(|t| t.contains(&function_prefix));
        let Some(pattern) = rule.pattern.as_deref().filter(|_| rule.enabled && to_suite) else { continue };
        if matches(eb, pattern, &event).await.unwrap_or(false) {
            return Some(format!("rule {}", rule.name));
        }
    }
    None
}

/// The coverage rows: one per opted-in resource.
pub fn assess(resources: &[Resource], alarms: &[(Alarm, Option<String>)]) -> Vec<Check> {
    resources
        .iter()
        .map(|r| {
            let subject = format!("{} {}", r.kind, r.id);
            let on_it: Vec<&(Alarm, Option<String>)> = alarms.iter().filter(|(a, _)| a.covers(r)).collect();
            match on_it.iter().find(|(_, how)| how.is_some()) {
                Some((a, Some(how))) => {
                    Check::holds("coverage", subject, format!("alarm {} reaches the suite by {how}", a.name))
                }
                _ if on_it.is_empty() => {
                    Check::fails("coverage", subject, "no alarm on its metrics: it is never healed", fix_for(r.kind))
                }
                _ => Check::fails(
                    "coverage",
                    subject,
                    format!(
                        "its alarms ({}) reach no function of the suite",
                        on_it.iter().map(|(a, _)| a.name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                    "add the stack's alarms topic (output AlarmsTopicArn) to their alarm actions",
                ),
            }
        })
        .collect()
}

fn fix_for(kind: &str) -> &'static str {
    match kind {
        "instance" => "alarm on AWS/EC2 StatusCheckFailed (InstanceId) with the alarms topic as action",
        "database" => "alarm on its AWS/RDS metrics (DBInstanceIdentifier) with the alarms topic as action",
        "database cluster" => "alarm on its AWS/RDS metrics (DBClusterIdentifier) with the alarms topic as action",
        "health check" => "alarm on AWS/Route53 HealthCheckStatus (HealthCheckId) with the alarms topic as action",
        _ => "let zone-evacuator keep its per-AZ alarms (it creates them for opted-in load balancers)",
    }
}

/// The opted-in resources of the account and region.
pub async fn opted_in(aws: &Aws, d: &Deployment) -> crate::Result<Vec<Resource>> {
    use aws_sdk_ec2::types::Filter;
    let (tag, value) = (d.opt_in_tag.as_str(), d.opt_in_value.as_str());
    let mut out = Vec::new();
    let ec2 = aws_sdk_ec2::Client::new(&aws.sdk);
    let mut pages = ec2
        .describe_instances()
        .filters(Filter::builder().name(format!("tag:{tag}")).values(value).build())
        .filters(
            Filter::builder().name("instance-state-name").values("pending").values("running").values("stopped").build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for i in page
            .map_err(|e| Error::aws("ec2", "DescribeInstances", e))?
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
        {
            let id = i.instance_id().unwrap_or_default().to_string();
            let mut dimensions = vec![("InstanceId".to_string(), id.clone())];
            if let Some(g) =
                i.tags().iter().find(|t| t.key() == Some("aws:autoscaling:groupName")).and_then(|t| t.value())
            {
                dimensions.push(("AutoScalingGroupName".into(), g.to_string()));
            }
            out.push(Resource { kind: "instance", id, dimensions });
        }
    }
    let rds = aws_sdk_rds::Client::new(&aws.sdk);
    let mut pages = rds.describe_db_instances().into_paginator().send();
    while let Some(page) = pages.next().await {
        for db in page.map_err(|e| Error::aws("rds", "DescribeDBInstances", e))?.db_instances() {
            if db.tag_list().iter().any(|t| t.key() == Some(tag) && t.value() == Some(value)) {
                let id = db.db_instance_identifier().unwrap_or_default().to_string();
                out.push(Resource {
                    kind: "database",
                    dimensions: vec![("DBInstanceIdentifier".into(), id.clone())],
                    id,
                });
            }
        }
    }
    // Aurora (and Multi-AZ DB) clusters: db-failover fails them over; their alarms name the cluster.
    let mut pages = rds.describe_db_clusters().into_paginator().send();
    while let Some(page) = pages.next().await {
        for c in page.map_err(|e| Error::aws("rds", "DescribeDBClusters", e))?.db_clusters() {
            if c.tag_list().iter().any(|t| t.key() == Some(tag) && t.value() == Some(value)) {
                let id = c.db_cluster_identifier().unwrap_or_default().to_string();
                out.push(Resource {
                    kind: "database cluster",
                    dimensions: vec![("DBClusterIdentifier".into(), id.clone())],
                    id,
                });
            }
        }
    }
    let r53 = aws_sdk_route53::Client::new(&aws.sdk);
    let checks = r53.list_health_checks().send().await.map_err(|e| Error::aws("route53", "ListHealthChecks", e))?;
    let ids: Vec<String> = checks.health_checks().iter().map(|h| h.id().to_string()).collect();
    for chunk in ids.chunks(10) {
        let tags = r53
            .list_tags_for_resources()
            .resource_type(aws_sdk_route53::types::TagResourceType::Healthcheck)
            .set_resource_ids(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| Error::aws("route53", "ListTagsForResources", e))?;
        for set in tags.resource_tag_sets() {
            if set.tags().iter().any(|t| t.key() == Some(tag) && t.value() == Some(value)) {
                let id = set.resource_id().unwrap_or_default().to_string();
                out.push(Resource { kind: "health check", dimensions: vec![("HealthCheckId".into(), id.clone())], id });
            }
        }
    }
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&aws.sdk);
    let lbs = elb
        .describe_load_balancers()
        .send()
        .await
        .map_err(|e| Error::aws("elasticloadbalancing", "DescribeLoadBalancers", e))?;
    let arns: Vec<String> =
        lbs.load_balancers().iter().filter_map(|l| l.load_balancer_arn().map(str::to_string)).collect();
    for chunk in arns.chunks(20) {
        let tags = elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| Error::aws("elasticloadbalancing", "DescribeTags", e))?;
        for set in tags.tag_descriptions() {
            if set.tags().iter().any(|t| t.key() == Some(tag) && t.value() == Some(value)) {
                let arn = set.resource_arn().unwrap_or_default().to_string();
                let dim = arn.split_once(":loadbalancer/").map(|(_, d)| d.to_string()).unwrap_or_default();
                out.push(Resource {
                    kind: "load balancer",
                    dimensions: vec![("LoadBalancer".into(), dim.clone())],
                    id: dim,
                });
            }
        }
    }
    Ok(out)
}

/// Every metric alarm of the account and region.
pub async fn alarms(cw: &aws_sdk_cloudwatch::Client) -> crate::Result<Vec<Alarm>> {
    let mut out = Vec::new();
    let mut pages = cw.describe_alarms().into_paginator().send();
    while let Some(page) = pages.next().await {
        out.extend(
            page.map_err(|e| Error::aws("cloudwatch", "DescribeAlarms", e))?
                .metric_alarms()
                .iter()
                .map(Alarm::from_sdk),
        );
    }
    Ok(out)
}

/// The coverage rows, with the account's own clients.
pub async fn check(aws: &Aws, d: &Deployment, routes: &Routes) -> Vec<Check> {
    let cw = aws_sdk_cloudwatch::Client::new(&aws.sdk);
    check_with(aws, &cw, &super::rules::client(aws), d, routes).await
}

/// The coverage rows, reading alarms with `cw` and testing rules with `eb`.
pub async fn check_with(
    aws: &Aws,
    cw: &aws_sdk_cloudwatch::Client,
    eb: &aws_sdk_eventbridge::Client,
    d: &Deployment,
    routes: &Routes,
) -> Vec<Check> {
    let resources = match opted_in(aws, d).await {
        Ok(r) => r,
        Err(e) => return vec![Check::unreadable("coverage", "opted-in resources", &e)],
    };
    if resources.is_empty() {
        return vec![Check::holds(
            "coverage",
            "opted-in resources",
            format!("none tagged {}={}", d.opt_in_tag, d.opt_in_value),
        )];
    }
    let alarms = match alarms(cw).await {
        Ok(a) => a,
        Err(e) => return vec![Check::unreadable("coverage", "alarms", &e)],
    };
    let mut judged = Vec::new();
    for a in alarms {
        let relevant = resources.iter().any(|r| a.covers(r));
        let how = if relevant { reaches(eb, d, routes, &a).await } else { None };
        judged.push((a, how));
    }
    assess(&resources, &judged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
    use aws_sdk_cloudwatch::types::Dimension;
    use aws_smithy_mocks::{mock, mock_client};

    fn instance(id: &str, group: Option<&str>) -> Resource {
        let mut dimensions = vec![("InstanceId".to_string(), id.to_string())];
        if let Some(g) = group {
            dimensions.push(("AutoScalingGroupName".into(), g.into()));
        }
        Resource { kind: "instance", id: id.into(), dimensions }
    }

    fn alarm(name: &str, dim: (&str, &str), actions: &[&str]) -> Alarm {
        Alarm {
            name: name.into(),
            metrics: vec![("AWS/EC2".into(), "StatusCheckFailed".into(), vec![(dim.0.into(), dim.1.into())])],
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn each_resource_is_covered_uncovered_or_alarmed_without_reaching_the_suite() {
        let resources =
            [instance("i-1", None), instance("i-2", Some("web")), instance("i-3", None), instance("i-4", None)];
        let alarms = vec![
            (alarm("a1", ("InstanceId", "i-1"), &["arn:topic"]), Some("its action arn:topic".to_string())),
            (alarm("web", ("AutoScalingGroupName", "web"), &[]), Some("rule r".to_string())),
            (alarm("a3", ("InstanceId", "i-3"), &["arn:other"]), None),
        ];
        let rows = assess(&resources, &alarms);
        assert!(rows[0].holds && rows[0].detail.contains("a1"));
        assert!(rows[1].holds && rows[1].detail.contains("rule r"), "a group's alarm covers its instances");
        assert!(
            !rows[2].holds
                && rows[2].detail.contains("a3")
                && rows[2].fix.as_deref().unwrap().contains("AlarmsTopicArn")
        );
        assert!(!rows[3].holds && rows[3].detail.contains("no alarm"));
    }

    // CloudWatch's current protocol is not served by moto: DescribeAlarms is mocked, shaped from the
    // API reference (MetricAlarms with their Metrics and AlarmActions).
    #[tokio::test]
    async fn alarms_are_read_with_the_dimensions_of_every_metric_and_an_action_to_the_topic_reaches() {
        let read = mock!(aws_sdk_cloudwatch::Client::describe_alarms).then_output(|| {
            DescribeAlarmsOutput::builder()
                .metric_alarms(
                    MetricAlarm::builder()
                        .alarm_name("web-status")
                        .namespace("AWS/EC2")
                        .metric_name("StatusCheckFailed")
                        .dimensions(Dimension::builder().name("InstanceId").value("i-1").build())
                        .alarm_actions("arn:aws:sns:us-east-1:123456789012:s-alarms")
                        .build(),
                )
                .build()
        });
        let cw = mock_client!(aws_sdk_cloudwatch, [&read]);
        let got = alarms(&cw).await.unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].covers(&instance("i-1", None)));
        let mut d = Deployment::named("s", "123456789012", "us-east-1");
        d.alarms_topic = Some("arn:aws:sns:us-east-1:123456789012:s-alarms".into());
        let eb = aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::Config::builder()
                .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
                .build(),
        );
        let how = reaches(&eb, &d, &Ok(vec![]), &got[0]).await;
        assert_eq!(how.as_deref(), Some("its action arn:aws:sns:us-east-1:123456789012:s-alarms"));
        let event = got[0].state_change(&d);
        assert_eq!(
            event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"]["InstanceId"],
            "i-1"
        );
    }
}
