//! The drill's reads and faults on the resources themselves: record answers, group members, the
//! drill-tag check before injecting, stopping and starting instances, inverting a health check.

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
