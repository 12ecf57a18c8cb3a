//! The Auto Scaling calls the healer makes.

use std::collections::BTreeSet;
use std::sync::Mutex;

use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use aws_sdk_autoscaling::Client;
use serde::Serialize;

use super::stand_down::{InstanceRefresh, ScalingActivity};
use crate::error::{Error, Result};

/// An instance's membership of a group.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    pub group: String,
    pub lifecycle: String,
    pub health: String,
    pub protected: bool,
}

/// One member as the group lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub instance_id: String,
    pub az: Option<String>,
    pub lifecycle: String,
    pub health: String,
}

/// A group's capacity and members.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub name: String,
    pub desired: i32,
    pub azs: Vec<String>,
    pub members: Vec<Member>,
    pub suspended: Vec<String>,
}

/// The group `id` belongs to, or `None` for a standalone instance.
pub async fn membership(asg: &Client, id: &str) -> Result<Option<Membership>> {
    let out = asg
        .describe_auto_scaling_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(|e| Error::aws("autoscaling", "DescribeAutoScalingInstances", e))?;
    Ok(out.auto_scaling_instances().iter().find(|i| i.instance_id() == Some(id)).and_then(|i| {
        Some(Membership {
            group: i.auto_scaling_group_name()?.to_string(),
            lifecycle: i.lifecycle_state().unwrap_or_default().to_string(),
            health: i.health_status().unwrap_or_default().to_string(),
            protected: i.protected_from_scale_in().unwrap_or(false),
        })
    }))
}

pub async fn group(asg: &Client, name: &str) -> Result<Group> {
    let out = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .map_err(|e| Error::aws("autoscaling", "DescribeAutoScalingGroups", e))?;
    let g = out
        .auto_scaling_groups()
        .iter()
        .find(|g| g.auto_scaling_group_name() == Some(name))
        .ok_or_else(|| Error::NotFound { kind: "Auto Scaling group", id: name.to_string() })?;
    Ok(Group {
        name: name.to_string(),
        desired: g.desired_capacity().unwrap_or(0),
        azs: g.availability_zones().to_vec(),
        members: g
            .instances()
            .iter()
            .filter_map(|i| {
                Some(Member {
                    instance_id: i.instance_id()?.to_string(),
                    az: i.availability_zone().map(str::to_string),
                    lifecycle: i.lifecycle_state().map(|l| l.as_str().to_string()).unwrap_or_default(),
                    health: i.health_status().unwrap_or_default().to_string(),
                })
            })
            .collect(),
        suspended: g.suspended_processes().iter().filter_map(|p| p.process_name()).map(str::to_string).collect(),
    })
}

/// Endpoint overrides found not to serve `DescribeInstanceRefreshes` in this process (an emulator).
static REFRESHES_NOT_SERVED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn text(t: Option<&aws_smithy_types::DateTime>) -> Option<String> {
    t.and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
}

/// The group's instance refreshes, newest first (the first page: an active refresh is always among
/// the newest). `Ok(None)` only when `endpoint_override` is set and the endpoint answers the call with
/// something that is not an AWS error at all (moto 5.2.5 does not implement the operation and answers
/// an HTML 500): the check cannot be made there, and the caller says so. Against AWS itself every
/// failure is an error, so the guard fails closed.
pub async fn instance_refreshes(
    asg: &Client,
    group: &str,
    endpoint_override: Option<&str>,
) -> Result<Option<Vec<InstanceRefresh>>> {
    if let Some(e) = endpoint_override {
        if REFRESHES_NOT_SERVED.lock().is_ok_and(|set| set.contains(e)) {
            return Ok(None);
        }
    }
    match asg.describe_instance_refreshes().auto_scaling_group_name(group).max_records(50).send().await {
        Ok(out) => Ok(Some(
            out.instance_refreshes()
                .iter()
                .map(|r| InstanceRefresh {
                    id: r.instance_refresh_id().unwrap_or_default().to_string(),
                    status: r.status().map(|s| s.as_str().to_string()).unwrap_or_default(),
                    percentage_complete: r.percentage_complete(),
                    instances_to_update: r.instances_to_update(),
                    start_time: text(r.start_time()),
                    status_reason: r.status_reason().map(str::to_string),
                })
                .collect(),
        )),
        Err(err) => {
            let status = err.raw_response().map(|r| r.status().as_u16());
            let not_aws = err.code().is_none() && matches!(status, Some(404 | 500 | 501));
            match endpoint_override {
                Some(e) if not_aws => {
                    tracing::warn!(endpoint = e, ?status, "the endpoint does not serve DescribeInstanceRefreshes");
                    if let Ok(mut set) = REFRESHES_NOT_SERVED.lock() {
                        set.insert(e.to_string());
                    }
                    Ok(None)
                }
                _ => Err(Error::aws("autoscaling", "DescribeInstanceRefreshes", err)),
            }
        }
    }
}

/// The group's latest scaling activities, newest first (the first page: activities still running are
/// among the newest).
pub async fn scaling_activities(asg: &Client, group: &str) -> Result<Vec<ScalingActivity>> {
    let out = asg
        .describe_scaling_activities()
        .auto_scaling_group_name(group)
        .max_records(100)
        .send()
        .await
        .map_err(|e| Error::aws("autoscaling", "DescribeScalingActivities", e))?;
    Ok(out
        .activities()
        .iter()
        .map(|a| ScalingActivity {
            id: a.activity_id().unwrap_or_default().to_string(),
            status_code: a.status_code().map(|s| s.as_str().to_string()).unwrap_or_default(),
            progress: a.progress(),
            description: a.description().unwrap_or_default().to_string(),
            cause: a.cause().unwrap_or_default().to_string(),
            details: a.details().unwrap_or_default().to_string(),
            start_time: text(a.start_time()),
        })
        .collect())
}

/// Terminates a member without decrementing desired capacity; returns the activity description.
pub async fn terminate_keep_capacity(asg: &Client, id: &str) -> Result<String> {
    let out = asg
        .terminate_instance_in_auto_scaling_group()
        .instance_id(id)
        .should_decrement_desired_capacity(false)
        .send()
        .await
        .map_err(|e| Error::aws("autoscaling", "TerminateInstanceInAutoScalingGroup", e))?;
    Ok(out.activity().and_then(|a| a.description()).unwrap_or_default().to_string())
}

/// Marks a member Unhealthy so the group replaces it.
pub async fn mark_unhealthy(asg: &Client, id: &str) -> Result<()> {
    asg.set_instance_health()
        .instance_id(id)
        .health_status("Unhealthy")
        .should_respect_grace_period(false)
        .send()
        .await
        .map_err(|e| Error::aws("autoscaling", "SetInstanceHealth", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The reads against responses shaped as the Auto Scaling API reference shows them (query protocol,
    //! XML), served by `aws-smithy-mocks`: moto 5.2.5 does not implement `DescribeInstanceRefreshes` and
    //! answers `DescribeScalingActivities` with an empty list.

    use super::*;
    use crate::healer::stand_down;
    use aws_smithy_mocks::{mock, mock_client};
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn xml(status: u16, body: &'static str) -> HttpResponse {
        HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body))
    }

    const REFRESHES: &str = r#"<DescribeInstanceRefreshesResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">
  <DescribeInstanceRefreshesResult>
    <InstanceRefreshes>
      <member>
        <InstanceRefreshId>08b91cf7-8fa6-48af-b6a6-d227f40f1b9b</InstanceRefreshId>
        <AutoScalingGroupName>web</AutoScalingGroupName>
        <Status>InProgress</Status>
        <StatusReason>Waiting for instances to warm up before continuing. For example: i-0645704820a8e83ff is warming up.</StatusReason>
        <StartTime>2026-11-25T10:11:27Z</StartTime>
        <PercentageComplete>35</PercentageComplete>
        <InstancesToUpdate>4</InstancesToUpdate>
      </member>
      <member>
        <InstanceRefreshId>dd7728d0-5bc4-4575-96a3-1b2c52bf8bb1</InstanceRefreshId>
        <AutoScalingGroupName>web</AutoScalingGroupName>
        <Status>Successful</Status>
        <StartTime>2026-11-20T18:11:27Z</StartTime>
        <EndTime>2026-11-20T18:59:37Z</EndTime>
        <PercentageComplete>100</PercentageComplete>
        <InstancesToUpdate>0</InstancesToUpdate>
      </member>
    </InstanceRefreshes>
  </DescribeInstanceRefreshesResult>
  <ResponseMetadata><RequestId>d61fe4ff-0f5c-4f4a-9b1e-1b0f0c5f3b7a</RequestId></ResponseMetadata>
</DescribeInstanceRefreshesResponse>"#;

    const ACTIVITIES: &str = r#"<DescribeScalingActivitiesResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">
  <DescribeScalingActivitiesResult>
    <Activities>
      <member>
        <ActivityId>f9f2d65b-f1f2-43e7-b46d-d86756459699</ActivityId>
        <AutoScalingGroupName>web</AutoScalingGroupName>
        <Description>Terminating EC2 instance: i-0a1b2c3d4e5f60718</Description>
        <Cause>At 2026-11-25T10:14:44Z an instance was taken out of service in response to an EC2 health check indicating it has been terminated or stopped.</Cause>
        <StartTime>2026-11-25T10:14:44.930Z</StartTime>
        <StatusCode>WaitingForELBConnectionDraining</StatusCode>
        <Progress>50</Progress>
        <Details>{"Subnet ID":"subnet-0b1a2c3d","Availability Zone":"us-east-1a"}</Details>
      </member>
      <member>
        <ActivityId>2e0a1c6d-0a62-4f3b-9b5b-3c1f8a7e9d10</ActivityId>
        <AutoScalingGroupName>web</AutoScalingGroupName>
        <Description>Launching a new EC2 instance: i-0fedcba987654321f</Description>
        <Cause>At 2026-11-24T08:00:00Z a user request update of AutoScalingGroup constraints to min: 3, max: 6, desired: 3 changing the desired capacity from 2 to 3.</Cause>
        <StartTime>2026-11-24T08:00:01.120Z</StartTime>
        <EndTime>2026-11-24T08:01:02Z</EndTime>
        <StatusCode>Successful</StatusCode>
        <Progress>100</Progress>
        <Details>{"Subnet ID":"subnet-0b1a2c3d","Availability Zone":"us-east-1b"}</Details>
      </member>
    </Activities>
  </DescribeScalingActivitiesResult>
  <ResponseMetadata><RequestId>5d7b4c8e-3f2a-4e1b-9c6d-8a0b1c2d3e4f</RequestId></ResponseMetadata>
</DescribeScalingActivitiesResponse>"#;

    #[tokio::test]
    async fn an_instance_refresh_in_progress_is_read_and_stands_down() {
        let rule = mock!(Client::describe_instance_refreshes)
            .match_requests(|r| r.auto_scaling_group_name() == Some("web"))
            .then_http_response(|| xml(200, REFRESHES));
        let client = mock_client!(aws_sdk_autoscaling, [&rule]);
        let refreshes = instance_refreshes(&client, "web", None).await.unwrap().expect("served");
        assert_eq!(refreshes.len(), 2);
        assert_eq!(refreshes[0].status, "InProgress");
        assert_eq!(refreshes[0].percentage_complete, Some(35));
        assert_eq!(refreshes[0].start_time.as_deref(), Some("2026-11-25T10:11:27Z"));
        let sd = stand_down::instance_refresh("web", &refreshes).unwrap();
        assert_eq!(
            sd.reason,
            "instance refresh 08b91cf7-8fa6-48af-b6a6-d227f40f1b9b is InProgress (35%) on group web: it owns the \
             group's instances; standing down"
        );
    }

    #[tokio::test]
    async fn a_scaling_activity_replacing_the_instance_is_read_and_stands_down() {
        let rule = mock!(Client::describe_scaling_activities)
            .match_requests(|r| r.auto_scaling_group_name() == Some("web"))
            .then_http_response(|| xml(200, ACTIVITIES));
        let client = mock_client!(aws_sdk_autoscaling, [&rule]);
        let acts = scaling_activities(&client, "web").await.unwrap();
        assert_eq!(acts.len(), 2);
        assert_eq!(acts[0].status_code, "WaitingForELBConnectionDraining");
        let sd = stand_down::scaling_activity("i-0a1b2c3d4e5f60718", "web", &acts).unwrap();
        assert_eq!(sd.recovery, "scaling-activity");
        assert!(sd.reason.contains("is WaitingForELBConnectionDraining (50%) on group web"), "{}", sd.reason);
        assert!(stand_down::scaling_activity("i-0fedcba987654321f", "web", &acts).is_none(), "that one is over");
    }

    #[tokio::test]
    async fn an_endpoint_without_instance_refreshes_is_named_only_under_an_override() {
        let html = || xml(500, "<!doctype html><title>500 Internal Server Error</title>");
        let rule = mock!(Client::describe_instance_refreshes).sequence().http_response(html).repeatedly().build();
        let client = mock_client!(aws_sdk_autoscaling, [&rule]);
        // Against AWS itself (no override) a failed read is an error: the guard fails closed.
        let err = instance_refreshes(&client, "web", None).await.unwrap_err().to_string();
        assert!(err.contains("autoscaling:DescribeInstanceRefreshes"), "{err}");
        // Under an endpoint override, an answer that is no AWS error at all means "not served", and is
        // remembered for that endpoint.
        let endpoint = "http://127.0.0.1:1/refreshes-not-served";
        assert_eq!(instance_refreshes(&client, "web", Some(endpoint)).await.unwrap(), None);
        let calls = rule.num_calls();
        assert_eq!(instance_refreshes(&client, "web", Some(endpoint)).await.unwrap(), None);
        assert_eq!(rule.num_calls(), calls, "not asked again");
        // A real AWS error under an override is still an error.
        let throttled = mock!(Client::describe_instance_refreshes)
            .sequence()
            .http_response(|| {
                xml(
                    400,
                    r#"<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized</Message></Error><RequestId>1</RequestId></ErrorResponse>"#,
                )
            })
            .repeatedly()
            .build();
        let client = mock_client!(aws_sdk_autoscaling, [&throttled]);
        let err = instance_refreshes(&client, "web", Some("http://127.0.0.1:1/other")).await.unwrap_err();
        assert!(err.to_string().contains("AccessDenied"), "{err}");
    }
}
