//! The standard alarms' CloudWatch calls: list those named under the prefix, tell whether one is the
//! suite's (its tags), put one, delete some.

use aws_sdk_cloudwatch::types::{AlarmType, ComparisonOperator, Dimension, MetricAlarm, Statistic, Tag};

use super::spec::{Existing, Standard, MANAGED_TAG, PREFIX};
use crate::error::{Error, Result};

/// Every metric alarm named under [`PREFIX`] (one `DescribeAlarms` page per 100).
pub async fn existing(cw: &aws_sdk_cloudwatch::Client) -> Result<Vec<Existing>> {
    let mut out = Vec::new();
    let mut pages = cw
        .describe_alarms()
        .alarm_name_prefix(PREFIX)
        .alarm_types(AlarmType::MetricAlarm)
        .max_records(100)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("cloudwatch", "DescribeAlarms", e))?;
        out.extend(page.metric_alarms().iter().map(from_sdk));
    }
    Ok(out)
}

fn from_sdk(a: &MetricAlarm) -> Existing {
    Existing {
        name: a.alarm_name().unwrap_or_default().to_string(),
        arn: a.alarm_arn().unwrap_or_default().to_string(),
        namespace: a.namespace().unwrap_or_default().to_string(),
        metric: a.metric_name().unwrap_or_default().to_string(),
        dimensions: a
            .dimensions()
            .iter()
            .map(|d| (d.name().unwrap_or_default().to_string(), d.value().unwrap_or_default().to_string()))
            .collect(),
        statistic: a.statistic().map(|s| s.as_str().to_string()).unwrap_or_default(),
        period: a.period().unwrap_or_default(),
        evaluation_periods: a.evaluation_periods().unwrap_or_default(),
        // CloudWatch leaves DatapointsToAlarm out when it equals EvaluationPeriods.
        datapoints_to_alarm: a.datapoints_to_alarm().or(a.evaluation_periods()).unwrap_or_default(),
        threshold: a.threshold().unwrap_or_default(),
        comparison: a.comparison_operator().map(|c| c.as_str().to_string()).unwrap_or_default(),
        treat_missing_data: a.treat_missing_data().unwrap_or("missing").to_string(),
        alarm_actions: a.alarm_actions().to_vec(),
        ok_actions: a.ok_actions().to_vec(),
    }
}

/// Whether the alarm carries [`MANAGED_TAG`]: the suite created it.
pub async fn is_managed(cw: &aws_sdk_cloudwatch::Client, arn: &str) -> Result<bool> {
    let out = cw
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(|e| Error::aws("cloudwatch", "ListTagsForResource", e))?;
    Ok(out.tags().iter().any(|t| t.key() == Some(MANAGED_TAG.0) && t.value() == Some(MANAGED_TAG.1)))
}

/// Creates or overwrites the alarm (`PutMetricAlarm`; its tags are set only when it creates).
pub async fn put(cw: &aws_sdk_cloudwatch::Client, s: &Standard) -> Result<()> {
    let mut req = cw
        .put_metric_alarm()
        .alarm_name(&s.name)
        .alarm_description(&s.description)
        .namespace(&s.namespace)
        .metric_name(&s.metric)
        .statistic(Statistic::from(s.statistic.as_str()))
        .period(s.period)
        .evaluation_periods(s.evaluation_periods)
        .datapoints_to_alarm(s.datapoints_to_alarm)
        .threshold(s.threshold)
        .comparison_operator(ComparisonOperator::from(s.comparison.as_str()))
        .treat_missing_data(&s.treat_missing_data)
        .actions_enabled(true)
        .set_alarm_actions(Some(s.actions.clone()))
        .set_ok_actions(Some(s.actions.clone()))
        .tags(Tag::builder().key(MANAGED_TAG.0).value(MANAGED_TAG.1).build());
    for (name, value) in &s.dimensions {
        req = req.dimensions(Dimension::builder().name(name).value(value).build());
    }
    req.send().await.map_err(|e| Error::aws("cloudwatch", "PutMetricAlarm", e))?;
    Ok(())
}

/// Deletes the named alarms (`DeleteAlarms`, 100 names per call).
pub async fn delete(cw: &aws_sdk_cloudwatch::Client, names: &[String]) -> Result<()> {
    for chunk in names.chunks(100) {
        cw.delete_alarms()
            .set_alarm_names(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| Error::aws("cloudwatch", "DeleteAlarms", e))?;
    }
    Ok(())
}
