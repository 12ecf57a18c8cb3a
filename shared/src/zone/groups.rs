//! The place's opted-in Auto Scaling groups as [`Resource`]s (capacity, in-service instances per AZ,
//! subnets and their AZs, whether zonal shift is enabled on them), and the two changes the evacuator
//! makes to a group: its desired capacity and its subnets (`UpdateAutoScalingGroup`); and readiness's
//! one: enabling zonal shift in its `AvailabilityZoneImpairmentPolicy`.

use std::collections::BTreeMap;

use super::facts::{GroupFacts, Kind, Resource, Shiftable};
use crate::config::CommonConfig;
use crate::error::{Error, Result};
use crate::guardrails::is_opted_in;

/// A group as read, with whether its `AvailabilityZoneImpairmentPolicy` was in the answer at all
/// (moto accepts the policy and never returns it).
pub struct ReadGroup {
    pub resource: Resource,
    /// `Some(enabled)` when the answer carried the policy.
    pub policy: Option<bool>,
}

/// Every opted-in group of the place.
pub async fn opted_in(
    asg: &aws_sdk_autoscaling::Client,
    ec2: &aws_sdk_ec2::Client,
    cfg: &CommonConfig,
) -> Result<Vec<ReadGroup>> {
    let mut groups = Vec::new();
    let mut pages = asg.describe_auto_scaling_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("autoscaling", "DescribeAutoScalingGroups", e))?;
        for g in page.auto_scaling_groups() {
            let tags = g.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()));
            if is_opted_in(tags, cfg) {
                groups.push(g.clone());
            }
        }
    }
    let subnets: Vec<String> = groups
        .iter()
        .flat_map(|g| split_subnets(g.vpc_zone_identifier()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let subnet_azs = subnet_azs(ec2, &subnets).await?;
    Ok(groups
        .iter()
        .map(|g| {
            let name = g.auto_scaling_group_name().unwrap_or_default().to_string();
            let mut in_service: BTreeMap<String, i32> = BTreeMap::new();
            for i in g.instances() {
                if i.lifecycle_state().map(|l| l.as_str()) == Some("InService") {
                    *in_service.entry(i.availability_zone().unwrap_or("unknown").to_string()).or_default() += 1;
                }
            }
            let subnets = split_subnets(g.vpc_zone_identifier());
            let azs: Vec<String> = if subnets.is_empty() {
                g.availability_zones().to_vec()
            } else {
                let mut v: Vec<String> = subnets.iter().filter_map(|s| subnet_azs.get(s).cloned()).collect();
                v.sort();
                v.dedup();
                v
            };
            let policy = g.availability_zone_impairment_policy().and_then(|p| p.zonal_shift_enabled());
            let facts = GroupFacts {
                desired: g.desired_capacity().unwrap_or(0),
                min: g.min_size().unwrap_or(0),
                max: g.max_size().unwrap_or(0),
                in_service,
                subnet_azs: subnets.iter().filter_map(|s| Some((s.clone(), subnet_azs.get(s)?.clone()))).collect(),
                subnets,
            };
            ReadGroup {
                resource: Resource {
                    kind: Kind::AutoScalingGroup,
                    arn: g.auto_scaling_group_arn().unwrap_or_default().to_string(),
                    name,
                    azs,
                    shiftable: match policy {
                        Some(true) => Shiftable::Yes,
                        _ => Shiftable::No {
                            why: "zonal shift is not enabled in its AvailabilityZoneImpairmentPolicy".into(),
                        },
                    },
                    shifts: vec![],
                    group: Some(facts),
                },
                policy,
            }
        })
        .collect())
}

fn split_subnets(v: Option<&str>) -> Vec<String> {
    v.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

async fn subnet_azs(ec2: &aws_sdk_ec2::Client, subnets: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for chunk in subnets.chunks(200) {
        let res = ec2
            .describe_subnets()
            .set_subnet_ids(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| Error::aws("ec2", "DescribeSubnets", e))?;
        for s in res.subnets() {
            if let (Some(id), Some(az)) = (s.subnet_id(), s.availability_zone()) {
                out.insert(id.to_string(), az.to_string());
            }
        }
    }
    Ok(out)
}

/// Sets the group's desired capacity.
pub async fn set_desired(asg: &aws_sdk_autoscaling::Client, group: &str, desired: i32) -> Result<()> {
    asg.update_auto_scaling_group()
        .auto_scaling_group_name(group)
        .desired_capacity(desired)
        .send()
        .await
        .map_err(|e| Error::aws("autoscaling", "UpdateAutoScalingGroup", e))?;
    Ok(())
}

/// Sets the group's subnets, in the order given.
pub async fn set_subnets(asg: &aws_sdk_autoscaling::Client, group: &str, subnets: &[String]) -> Result<()> {
    asg.update_auto_scaling_group()
        .auto_scaling_group_name(group)
        .vpc_zone_identifier(subnets.join(","))
        .send()
        .await
        .map_err(|e| Error::aws("autoscaling", "UpdateAutoScalingGroup", e))?;
    Ok(())
}

/// The group's `AvailabilityZoneImpairmentPolicy`: zonal shift enabled, unhealthy instances in the
/// shifted-away AZ left alone.
pub async fn enable_zonal_shift(asg: &aws_sdk_autoscaling::Client, group: &str) -> Result<()> {
    use aws_sdk_autoscaling::types::{AvailabilityZoneImpairmentPolicy, ImpairedZoneHealthCheckBehavior};
    let policy = AvailabilityZoneImpairmentPolicy::builder()
        .zonal_shift_enabled(true)
        .impaired_zone_health_check_behavior(ImpairedZoneHealthCheckBehavior::IgnoreUnhealthy)
        .build();
    asg.update_auto_scaling_group()
        .auto_scaling_group_name(group)
        .availability_zone_impairment_policy(policy)
        .send()
        .await
        .map_err(|e| Error::aws("autoscaling", "UpdateAutoScalingGroup", e))?;
    Ok(())
}

/// The group's current subnets and desired capacity (`None` when the group is gone).
pub async fn current(asg: &aws_sdk_autoscaling::Client, group: &str) -> Result<Option<(Vec<String>, i32)>> {
    let out = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .map_err(|e| Error::aws("autoscaling", "DescribeAutoScalingGroups", e))?;
    Ok(out
        .auto_scaling_groups()
        .first()
        .map(|g| (split_subnets(g.vpc_zone_identifier()), g.desired_capacity().unwrap_or(0))))
}
