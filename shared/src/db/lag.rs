//! Replica lag, the RPO guard's evidence: [`LagSource`], read from CloudWatch in production
//! ([`CloudWatchLag`]) or served fixed ([`StaticLag`]) to emulator tests and drills.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::clients::Aws;
use crate::error::{Error, Result};

/// Where replica lag comes from.
pub trait LagSource: Send + Sync + std::fmt::Debug {
    /// Seconds `replica` is behind its primary (`region`: the replica's, when not the home region);
    /// `None` when there is no recent datapoint.
    fn replica_lag<'a>(&'a self, replica: &'a str, region: Option<&'a str>) -> BoxFuture<'a, Result<Option<f64>>>;

    /// The same source reading where `aws` acts (a member account's CloudWatch).
    fn in_place(&self, aws: &Aws) -> Arc<dyn LagSource>;
}

/// Fixed lags (emulator tests, drills). Replicas not in the map have unknown lag unless a default is set.
#[derive(Debug, Clone, Default)]
pub struct StaticLag {
    pub lags: BTreeMap<String, f64>,
    pub default: Option<f64>,
}

impl StaticLag {
    pub fn new<I, K>(lags: I) -> Self
    where
        I: IntoIterator<Item = (K, f64)>,
        K: Into<String>,
    {
        StaticLag { lags: lags.into_iter().map(|(k, v)| (k.into(), v)).collect(), default: None }
    }

    pub fn with_default(mut self, lag: f64) -> Self {
        self.default = Some(lag);
        self
    }
}

impl LagSource for StaticLag {
    fn replica_lag<'a>(&'a self, replica: &'a str, _region: Option<&'a str>) -> BoxFuture<'a, Result<Option<f64>>> {
        let v = self.lags.get(replica).copied().or(self.default);
        Box::pin(async move { Ok(v) })
    }

    fn in_place(&self, _aws: &Aws) -> Arc<dyn LagSource> {
        Arc::new(self.clone())
    }
}

/// `AWS/RDS ReplicaLag` from CloudWatch `GetMetricData` (Maximum of 1-minute periods over the last
/// five minutes; the newest datapoint wins).
#[derive(Debug, Clone)]
pub struct CloudWatchLag {
    home: aws_sdk_cloudwatch::Client,
    aws: Option<Aws>,
    window: Duration,
}

impl CloudWatchLag {
    /// Uses the function's clients (cross-region replicas get a client for their region).
    pub fn from_aws(aws: &Aws) -> Self {
        CloudWatchLag { home: aws.cloudwatch(), aws: Some(aws.clone()), window: Duration::from_secs(300) }
    }

    /// Uses one given client for every replica (unit tests).
    pub fn with_client(client: aws_sdk_cloudwatch::Client) -> Self {
        CloudWatchLag { home: client, aws: None, window: Duration::from_secs(300) }
    }

    async fn read(&self, replica: &str, region: Option<&str>) -> Result<Option<f64>> {
        use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
        let metric = Metric::builder()
            .namespace("AWS/RDS")
            .metric_name("ReplicaLag")
            .dimensions(Dimension::builder().name("DBInstanceIdentifier").value(replica).build())
            .build();
        let query = MetricDataQuery::builder()
            .id("lag")
            .metric_stat(MetricStat::builder().metric(metric).period(60).stat("Maximum").build())
            .return_data(true)
            .build();
        let now = chrono::Utc::now().timestamp();
        let client = match &self.aws {
            Some(aws) => aws.regional(region).cloudwatch(),
            None => self.home.clone(),
        };
        let out = client
            .get_metric_data()
            .metric_data_queries(query)
            .start_time(aws_smithy_types::DateTime::from_secs(now - self.window.as_secs() as i64))
            .end_time(aws_smithy_types::DateTime::from_secs(now))
            .scan_by(ScanBy::TimestampDescending)
            .send()
            .await
            .map_err(|e| Error::aws("cloudwatch", "GetMetricData", e))?;
        let newest = out
            .metric_data_results()
            .iter()
            .filter(|r| r.id() == Some("lag"))
            .flat_map(|r| r.timestamps().iter().zip(r.values().iter()))
            .max_by_key(|(t, _)| t.secs())
            .map(|(_, v)| *v);
        Ok(newest)
    }
}

impl LagSource for CloudWatchLag {
    fn replica_lag<'a>(&'a self, replica: &'a str, region: Option<&'a str>) -> BoxFuture<'a, Result<Option<f64>>> {
        Box::pin(self.read(replica, region))
    }

    fn in_place(&self, aws: &Aws) -> Arc<dyn LagSource> {
        match self.aws {
            Some(_) => Arc::new(CloudWatchLag { window: self.window, ..CloudWatchLag::from_aws(aws) }),
            None => Arc::new(self.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput;
    use aws_sdk_cloudwatch::types::MetricDataResult;
    use aws_smithy_mocks::{mock, mock_client};

    #[tokio::test]
    async fn newest_replica_lag_datapoint_is_read() {
        let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
            .match_requests(|r| {
                let q = &r.metric_data_queries()[0];
                let m = q.metric_stat().and_then(|s| s.metric());
                m.and_then(|m| m.metric_name()) == Some("ReplicaLag")
                    && m.and_then(|m| m.namespace()) == Some("AWS/RDS")
                    && m.map(|m| m.dimensions()).and_then(|d| d.first()).and_then(|d| d.value()) == Some("orders-r1")
            })
            .then_output(|| {
                GetMetricDataOutput::builder()
                    .metric_data_results(
                        MetricDataResult::builder()
                            .id("lag")
                            .timestamps(aws_smithy_types::DateTime::from_secs(1_000))
                            .values(40.0)
                            .timestamps(aws_smithy_types::DateTime::from_secs(2_000))
                            .values(7.5)
                            .build(),
                    )
                    .build()
            });
        let client = mock_client!(aws_sdk_cloudwatch, [&rule]);
        let lag = CloudWatchLag::with_client(client);
        assert_eq!(lag.replica_lag("orders-r1", None).await.unwrap(), Some(7.5));
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn no_datapoints_means_unknown_and_errors_are_named() {
        let empty =
            mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_output(|| GetMetricDataOutput::builder().build());
        let client = mock_client!(aws_sdk_cloudwatch, [&empty]);
        assert_eq!(CloudWatchLag::with_client(client).replica_lag("r", None).await.unwrap(), None);

        let failing = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
            .then_error(|| aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataError::unhandled("throttled"));
        let client = mock_client!(aws_sdk_cloudwatch, [&failing]);
        let err = CloudWatchLag::with_client(client).replica_lag("r", None).await.unwrap_err().to_string();
        assert!(err.contains("cloudwatch:GetMetricData"), "{err}");
    }
}
