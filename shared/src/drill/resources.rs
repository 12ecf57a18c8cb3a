//! The drill's reads and faults on the resources themselves: record answers, group members and
//! capacity, what ARC zonal shift says of a load balancer or group, the drill-tag check before
//! injecting, stopping and starting instances, inverting a health check.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The answer of a record: the PRIMARY set's value for a failover pair, the heaviest for weighted, the
/// value for a simple record.
pub(super) async fn record_answer(aws: &crate::clients::Aws, zone_id: &str, name: &str) -> Result<String> {
    let out = aws
        .route53()
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .start_record_name(name)
        .send()
        .await
        .map_err(|e| Error::aws("route53", "ListResourceRecordSets", e))?;
    let norm = |s: &str| s.trim_end_matches('.').to_ascii_lowercase();
    let sets: Vec<_> = out.resource_record_sets().iter().filter(|s| norm(s.name()) == norm(name)).collect();
    let value_of = |s: &aws_sdk_route53::types::ResourceRecordSet| {
        s.resource_records().first().map(|r| r.value().to_string()).unwrap_or_default()
    };
    if let Some(p) =
        sets.iter().find(|s| s.failover() == Some(&aws_sdk_route53::types::ResourceRecordSetFailover::Primary))
    {
        return Ok(value_of(p));
    }
    if let Some(w) = sets.iter().filter(|s| s.weight().is_some()).max_by_key(|s| s.weight().unwrap_or(0)) {
        return Ok(value_of(w));
    }
    Ok(sets.first().map(|s| value_of(s)).unwrap_or_default())
}

pub(super) async fn group_members(aws: &crate::clients::Aws, asg: &str) -> Result<Vec<String>> {
    Ok(in_service_by_az_all(aws, asg).await?.into_iter().map(|(i, _, _)| i).collect())
}

pub(super) async fn in_service(aws: &crate::clients::Aws, asg: &str) -> Result<Vec<String>> {
    Ok(in_service_by_az(aws, asg).await?.into_iter().map(|(i, _)| i).collect())
}

pub(super) async fn in_service_by_az(aws: &crate::clients::Aws, asg: &str) -> Result<Vec<(String, String)>> {
    Ok(in_service_by_az_all(aws, asg)
        .await?
        .into_iter()
        .filter(|(_, _, state)| state == "InService")
        .map(|(i, az, _)| (i, az))
        .collect())
}

/// (instance, AZ, lifecycle state) of every member, sorted by instance id.
pub(super) async fn in_service_by_az_all(
    aws: &crate::clients::Aws,
    asg: &str,
) -> Result<Vec<(String, String, String)>> {
    let out = aws
        .autoscaling()
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(asg)
        .send()
        .await
        .map_err(|e| Error::aws("autoscaling", "DescribeAutoScalingGroups", e))?;
    let group = out
        .auto_scaling_groups()
        .first()
        .ok_or_else(|| Error::NotFound { kind: "Auto Scaling group", id: asg.to_string() })?;
    let mut members: Vec<(String, String, String)> = group
        .instances()
        .iter()
        .map(|i| {
            (
                i.instance_id().unwrap_or_default().to_string(),
                i.availability_zone().unwrap_or_default().to_string(),
                i.lifecycle_state().map(|s| s.as_str().to_string()).unwrap_or_default(),
            )
        })
        .collect();
    members.sort();
    Ok(members)
}

pub(super) async fn require_drill_tag_ec2(aws: &crate::clients::Aws, ids: &[String]) -> Result<()> {
    let out = aws
        .ec2()
        .describe_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| Error::aws("ec2", "DescribeInstances", e))?;
    for r in out.reservations() {
        for i in r.instances() {
            let tagged = i.tags().iter().any(|t| t.key() == Some(super::DRILL_TAG) && t.value() == Some("true"));
            if !tagged {
                return Err(Error::Precondition(format!(
                    "{} does not carry {}=true: live drills only touch drill-tagged resources",
                    i.instance_id().unwrap_or("?"),
                    super::DRILL_TAG
                )));
            }
        }
    }
    Ok(())
}

pub(super) async fn require_drill_tag_rds(aws: &crate::clients::Aws, db: &str) -> Result<()> {
    let out = aws
        .rds()
        .describe_db_instances()
        .db_instance_identifier(db)
        .send()
        .await
        .map_err(|e| Error::aws("rds", "DescribeDBInstances", e))?;
    let tagged = out
        .db_instances()
        .first()
        .map(|i| i.tag_list().iter().any(|t| t.key() == Some(super::DRILL_TAG) && t.value() == Some("true")))
        .unwrap_or(false);
    if tagged {
        Ok(())
    } else {
        Err(Error::Precondition(format!(
            "{db} does not carry {}=true: live drills only touch drill-tagged resources",
            super::DRILL_TAG
        )))
    }
}

pub(super) async fn stop_instances(aws: &crate::clients::Aws, ids: &[String]) -> Result<()> {
    aws.ec2()
        .stop_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| Error::aws("ec2", "StopInstances", e))?;
    Ok(())
}

pub(super) async fn start_instances(aws: &crate::clients::Aws, ids: &[String]) -> Result<()> {
    aws.ec2()
        .start_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| Error::aws("ec2", "StartInstances", e))?;
    Ok(())
}

pub(super) async fn set_health_check_inverted(aws: &crate::clients::Aws, id: &str, inverted: bool) -> Result<()> {
    aws.route53()
        .update_health_check()
        .health_check_id(id)
        .inverted(inverted)
        .send()
        .await
        .map_err(|e| Error::aws("route53", "UpdateHealthCheck", e))?;
    Ok(())
}

/// One active zonal shift on a resource, as ARC reports it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ShiftSeen {
    pub id: String,
    /// The AZ ID traffic is shifted away from.
    pub away_from: String,
    /// Started by zone-evacuator (its comment).
    pub ours: bool,
    /// ARC applies it (no other shift wins over it).
    pub applied: bool,
}

/// What ARC zonal shift says of a managed resource: its active zonal shifts, the traffic weight it
/// applies to each AZ ID, and the AZs its autoshifts move traffic away from.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct ArcView {
    pub shifts: Vec<ShiftSeen>,
    pub weights: BTreeMap<String, f32>,
    pub autoshifts: Vec<String>,
}

impl ArcView {
    /// Whether traffic is out of `az_id`: a zone-evacuator shift away from it applied, and its weight 0
    /// (when ARC reports weights).
    pub fn shifted_away_from(&self, az_id: &str) -> bool {
        self.shifts.iter().any(|s| s.ours && s.applied && s.away_from == az_id)
            && self.weights.get(az_id).is_none_or(|w| *w == 0.0)
    }

    /// The AZ IDs of the active zonal shifts, whoever started them.
    pub fn away_from(&self) -> Vec<String> {
        self.shifts.iter().map(|s| s.away_from.clone()).collect()
    }
}

/// What ARC says of `arn` (`GetManagedResource`); `None` when ARC does not manage it.
pub(super) async fn arc_view(aws: &crate::clients::Aws, arn: &str) -> Result<Option<ArcView>> {
    use aws_sdk_arczonalshift::operation::get_managed_resource::GetManagedResourceError;
    let out = match aws.arc().get_managed_resource().resource_identifier(arn).send().await {
        Ok(o) => o,
        Err(aws_sdk_arczonalshift::error::SdkError::ServiceError(e))
            if matches!(e.err(), GetManagedResourceError::ResourceNotFoundException(_)) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(Error::aws("arc-zonal-shift", "GetManagedResource", e)),
    };
    let prefix = crate::zone::facts::COMMENT_PREFIX;
    Ok(Some(ArcView {
        shifts: out
            .zonal_shifts()
            .iter()
            .map(|s| ShiftSeen {
                id: s.zonal_shift_id().to_string(),
                away_from: s.away_from().to_string(),
                ours: s.comment().starts_with(prefix),
                applied: *s.applied_status() == aws_sdk_arczonalshift::types::AppliedStatus::Applied,
            })
            .collect(),
        weights: out.applied_weights().iter().map(|(k, v)| (k.clone(), *v)).collect(),
        autoshifts: out.autoshifts().iter().map(|a| a.away_from().to_string()).collect(),
    }))
}

/// A group's desired capacity and its members in service, by AZ name.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Capacity {
    pub desired: i32,
    pub max: i32,
    pub arn: String,
    pub in_service: BTreeMap<String, usize>,
}

impl Capacity {
    pub fn total(&self) -> usize {
        self.in_service.values().sum()
    }

    pub fn in_az(&self, az: &str) -> usize {
        self.in_service.get(az).copied().unwrap_or(0)
    }
}

pub(super) async fn capacity(aws: &crate::clients::Aws, asg: &str) -> Result<Capacity> {
    let out = aws
        .autoscaling()
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(asg)
        .send()
        .await
        .map_err(|e| Error::aws("autoscaling", "DescribeAutoScalingGroups", e))?;
    let group = out
        .auto_scaling_groups()
        .first()
        .ok_or_else(|| Error::NotFound { kind: "Auto Scaling group", id: asg.to_string() })?;
    let mut in_service = BTreeMap::new();
    for i in group.instances() {
        if i.lifecycle_state().map(|s| s.as_str()) == Some("InService") {
            *in_service.entry(i.availability_zone().unwrap_or_default().to_string()).or_default() += 1;
        }
    }
    Ok(Capacity {
        desired: group.desired_capacity().unwrap_or(0),
        max: group.max_size().unwrap_or(0),
        arn: group.auto_scaling_group_arn().unwrap_or_default().to_string(),
        in_service,
    })
}
