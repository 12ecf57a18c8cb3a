//! The Auto Scaling calls the healer makes.

use aws_sdk_autoscaling::Client;
use serde::Serialize;

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
