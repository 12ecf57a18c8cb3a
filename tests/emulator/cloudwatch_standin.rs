//! A CloudWatch stand-in for the alarm calls the standard alarms make: moto does not speak CloudWatch's
//! current protocol (rpc-v2-cbor), so the SDK client is served by `aws-smithy-mocks` rules over one
//! in-memory store, answering as the API reference says:
//! - `PutMetricAlarm` creates or overwrites the alarm; its `Tags` are applied only when it creates
//!   ("If you are using this operation to update an existing alarm, any tags you specify in this
//!   parameter are ignored");
//! - `DescribeAlarms` filters by `AlarmNamePrefix` / `AlarmNames`, pages by `MaxRecords` (at most 100)
//!   with a `NextToken`, names sorted;
//! - `DeleteAlarms` deletes the named alarms, ignoring names that do not exist;
//! - `ListTagsForResource` answers an alarm's tags by ARN, `ResourceNotFoundException` when it has none.
//!
//! Every mutating call is logged (`"PutMetricAlarm <name>"`, `"DeleteAlarms <names>"`), so a test can
//! assert what was (not) changed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_cloudwatch::operation::delete_alarms::DeleteAlarmsOutput;
use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
use aws_sdk_cloudwatch::operation::list_tags_for_resource::{ListTagsForResourceError, ListTagsForResourceOutput};
use aws_sdk_cloudwatch::operation::put_metric_alarm::PutMetricAlarmOutput;
use aws_sdk_cloudwatch::types::builders::MetricAlarmBuilder;
use aws_sdk_cloudwatch::types::error::ResourceNotFoundException;
use aws_sdk_cloudwatch::types::{MetricAlarm, Tag};
use aws_smithy_mocks::{mock, mock_client, MockResponse, RuleMode};

type Store = Arc<Mutex<BTreeMap<String, (MetricAlarm, Vec<Tag>)>>>;

#[derive(Clone)]
pub struct CloudWatch {
    store: Store,
    log: Arc<Mutex<Vec<String>>>,
    account: String,
    region: String,
}

impl CloudWatch {
    pub fn new(account: &str, region: &str) -> Self {
        CloudWatch { store: Store::default(), log: Arc::default(), account: account.into(), region: region.into() }
    }

    pub fn arn(&self, name: &str) -> String {
        format!("arn:aws:cloudwatch:{}:{}:alarm:{name}", self.region, self.account)
    }

    /// Puts an alarm in place (someone else's, or an earlier run's) with these tags.
    pub fn seed(&self, alarm: MetricAlarm, tags: &[(&str, &str)]) {
        let name = alarm.alarm_name().unwrap_or_default().to_string();
        let alarm = builder_of(&alarm).alarm_arn(self.arn(&name)).build();
        let tags = tags.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build()).collect();
        self.store.lock().unwrap().insert(name, (alarm, tags));
    }

    pub fn get(&self, name: &str) -> Option<(MetricAlarm, Vec<Tag>)> {
        self.store.lock().unwrap().get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.store.lock().unwrap().keys().cloned().collect()
    }

    /// The mutating calls made so far.
    pub fn changes(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// An SDK client served by this stand-in.
    pub fn client(&self) -> aws_sdk_cloudwatch::Client {
        let (store, log, me) = (self.store.clone(), self.log.clone(), self.clone());
        let put = mock!(aws_sdk_cloudwatch::Client::put_metric_alarm).then_compute_output(move |i| {
            let name = i.alarm_name().unwrap_or_default().to_string();
            log.lock().unwrap().push(format!("PutMetricAlarm {name}"));
            let alarm = MetricAlarm::builder()
                .alarm_name(&name)
                .alarm_arn(me.arn(&name))
                .set_alarm_description(i.alarm_description().map(str::to_string))
                .set_namespace(i.namespace().map(str::to_string))
                .set_metric_name(i.metric_name().map(str::to_string))
                .set_dimensions(Some(i.dimensions().to_vec()))
                .set_statistic(i.statistic().cloned())
                .set_period(i.period())
                .set_evaluation_periods(i.evaluation_periods())
                .set_datapoints_to_alarm(i.datapoints_to_alarm())
                .set_threshold(i.threshold())
                .set_comparison_operator(i.comparison_operator().cloned())
                .set_treat_missing_data(i.treat_missing_data().map(str::to_string))
                .set_actions_enabled(i.actions_enabled())
                .set_alarm_actions(Some(i.alarm_actions().to_vec()))
                .set_ok_actions(Some(i.ok_actions().to_vec()))
                .build();
            let mut s = store.lock().unwrap();
            let tags = match s.get(&name) {
                Some((_, kept)) => kept.clone(),
                None => i.tags().to_vec(),
            };
            s.insert(name, (alarm, tags));
            PutMetricAlarmOutput::builder().build()
        });
        let store = self.store.clone();
        let describe = mock!(aws_sdk_cloudwatch::Client::describe_alarms).then_compute_output(move |i| {
            let s = store.lock().unwrap();
            let names = i.alarm_names();
            let matching: Vec<&MetricAlarm> = s
                .iter()
                .filter(|(n, _)| i.alarm_name_prefix().is_none_or(|p| n.starts_with(p)))
                .filter(|(n, _)| names.is_empty() || names.contains(n))
                .map(|(_, (a, _))| a)
                .collect();
            let size = i.max_records().unwrap_or(50).clamp(1, 100) as usize;
            let from: usize = i.next_token().and_then(|t| t.parse().ok()).unwrap_or(0);
            let page: Vec<MetricAlarm> = matching.iter().skip(from).take(size).map(|a| (*a).clone()).collect();
            let next = (from + size < matching.len()).then(|| (from + size).to_string());
            DescribeAlarmsOutput::builder().set_metric_alarms(Some(page)).set_next_token(next).build()
        });
        let (store, log) = (self.store.clone(), self.log.clone());
        let delete = mock!(aws_sdk_cloudwatch::Client::delete_alarms).then_compute_output(move |i| {
            log.lock().unwrap().push(format!("DeleteAlarms {}", i.alarm_names().join(",")));
            let mut s = store.lock().unwrap();
            for n in i.alarm_names() {
                s.remove(n);
            }
            DeleteAlarmsOutput::builder().build()
        });
        let store = self.store.clone();
        let tags = mock!(aws_sdk_cloudwatch::Client::list_tags_for_resource).then_compute_response(move |i| {
            let s = store.lock().unwrap();
            let arn = i.resource_arn().unwrap_or_default();
            match s.values().find(|(a, _)| a.alarm_arn() == Some(arn)) {
                Some((_, tags)) => {
                    MockResponse::Output(ListTagsForResourceOutput::builder().set_tags(Some(tags.clone())).build())
                }
                None => MockResponse::Error(ListTagsForResourceError::ResourceNotFoundException(
                    ResourceNotFoundException::builder().message(format!("{arn} not found")).build(),
                )),
            }
        });
        mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&put, &describe, &delete, &tags])
    }
}

/// A builder holding every field of `a` the stand-in stores (the SDK's types have no `to_builder`).
pub fn builder_of(a: &MetricAlarm) -> MetricAlarmBuilder {
    MetricAlarm::builder()
        .set_alarm_name(a.alarm_name().map(str::to_string))
        .set_alarm_arn(a.alarm_arn().map(str::to_string))
        .set_alarm_description(a.alarm_description().map(str::to_string))
        .set_namespace(a.namespace().map(str::to_string))
        .set_metric_name(a.metric_name().map(str::to_string))
        .set_dimensions(Some(a.dimensions().to_vec()))
        .set_statistic(a.statistic().cloned())
        .set_period(a.period())
        .set_evaluation_periods(a.evaluation_periods())
        .set_datapoints_to_alarm(a.datapoints_to_alarm())
        .set_threshold(a.threshold())
        .set_comparison_operator(a.comparison_operator().cloned())
        .set_treat_missing_data(a.treat_missing_data().map(str::to_string))
        .set_actions_enabled(a.actions_enabled())
        .set_alarm_actions(Some(a.alarm_actions().to_vec()))
        .set_ok_actions(Some(a.ok_actions().to_vec()))
}
