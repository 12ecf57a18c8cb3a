//! The RDS layer: instance and cluster descriptions (with tags) converted to the module's types, and
//! replica references (identifier, or ARN naming another region).

use std::collections::BTreeMap;

use super::choice::DbInstanceInfo;
use crate::error::{Error, Result};

/// A replica reference: an identifier, or an ARN naming another region.
pub fn parse_db_ref(r: &str) -> (Option<String>, String) {
    // arn:aws:rds:eu-west-1:123456789012:db:orders-db-replica
    let parts: Vec<&str> = r.split(':').collect();
    if parts.len() >= 7 && parts[0] == "arn" && parts[2] == "rds" && parts[5] == "db" {
        (Some(parts[3].to_string()), parts[6..].join(":"))
    } else {
        (None, r.to_string())
    }
}

fn tags_map(tags: &[aws_sdk_rds::types::Tag]) -> BTreeMap<String, String> {
    tags.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}

fn instance_info(d: &aws_sdk_rds::types::DbInstance, region: Option<&str>) -> DbInstanceInfo {
    DbInstanceInfo {
        id: d.db_instance_identifier().unwrap_or_default().to_string(),
        arn: d.db_instance_arn().map(str::to_string),
        region: region.map(str::to_string),
        status: d.db_instance_status().unwrap_or("unknown").to_string(),
        engine: d.engine().unwrap_or_default().to_string(),
        az: d.availability_zone().map(str::to_string),
        multi_az: d.multi_az().unwrap_or(false),
        endpoint: d.endpoint().and_then(|e| e.address()).map(str::to_string),
        replica_source: d.read_replica_source_db_instance_identifier().map(str::to_string),
        replicas: d.read_replica_db_instance_identifiers().to_vec(),
        cluster: d.db_cluster_identifier().map(str::to_string),
        promotion_tier: d.promotion_tier(),
        tags: tags_map(d.tag_list()),
    }
}

/// Describes one DB instance; `Ok(None)` when it does not exist. Tags come from `TagList`, or from
/// `ListTagsForResource` when the description carries none.
pub async fn describe_instance(
    rds: &aws_sdk_rds::Client,
    id: &str,
    region: Option<&str>,
) -> Result<Option<DbInstanceInfo>> {
    let out = match rds.describe_db_instances().db_instance_identifier(id).send().await {
        Ok(o) => o,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_db_instance_not_found_fault()) => return Ok(None),
        Err(e) => return Err(Error::aws("rds", "DescribeDBInstances", e)),
    };
    let Some(d) = out.db_instances().first() else { return Ok(None) };
    let mut info = instance_info(d, region);
    if info.tags.is_empty() {
        if let Some(arn) = &info.arn {
            info.tags = list_tags(rds, arn).await?;
        }
    }
    Ok(Some(info))
}

async fn list_tags(rds: &aws_sdk_rds::Client, arn: &str) -> Result<BTreeMap<String, String>> {
    let out = rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(|e| Error::aws("rds", "ListTagsForResource", e))?;
    Ok(tags_map(out.tag_list()))
}

/// An Aurora cluster's identity, status, tags and members.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterInfo {
    pub id: String,
    pub status: String,
    pub tags: BTreeMap<String, String>,
    /// (member id, is writer, promotion tier)
    pub members: Vec<(String, bool, Option<i32>)>,
}

/// Describes one cluster; `Ok(None)` when it does not exist.
pub async fn describe_cluster(rds: &aws_sdk_rds::Client, id: &str) -> Result<Option<ClusterInfo>> {
    let out = match rds.describe_db_clusters().db_cluster_identifier(id).send().await {
        Ok(o) => o,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_db_cluster_not_found_fault()) => return Ok(None),
        Err(e) => return Err(Error::aws("rds", "DescribeDBClusters", e)),
    };
    let Some(c) = out.db_clusters().first() else { return Ok(None) };
    let mut tags = tags_map(c.tag_list());
    if tags.is_empty() {
        if let Some(arn) = c.db_cluster_arn() {
            tags = list_tags(rds, arn).await?;
        }
    }
    Ok(Some(ClusterInfo {
        id: c.db_cluster_identifier().unwrap_or(id).to_string(),
        status: c.status().unwrap_or("unknown").to_string(),
        tags,
        members: c
            .db_cluster_members()
            .iter()
            .filter_map(|m| {
                Some((
                    m.db_instance_identifier()?.to_string(),
                    m.is_cluster_writer().unwrap_or(false),
                    m.promotion_tier(),
                ))
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_name_other_regions() {
        assert_eq!(
            parse_db_ref("arn:aws:rds:eu-west-1:123456789012:db:orders-dr"),
            (Some("eu-west-1".into()), "orders-dr".into())
        );
        assert_eq!(parse_db_ref("orders-r1"), (None, "orders-r1".into()));
    }
}
