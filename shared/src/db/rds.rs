//! The RDS layer: instance and cluster descriptions (with tags) converted to the module's types, and
//! replica references (identifier, or ARN naming another region).

use std::collections::BTreeMap;

use super::choice::DbInstanceInfo;
use super::stand_down::{self, BlueGreen, GlobalCluster, GlobalFailover};
use crate::error::{Error, Result};
use crate::stand_down::StandDown;

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
    pub arn: Option<String>,
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
        arn: c.db_cluster_arn().map(str::to_string),
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

/// Another recovery owning a DB instance, read now ([`stand_down`]): its status (failing over,
/// rebooting, modifying, upgrading, under maintenance...), then a Blue/Green switchover with it as
/// source or target.
pub async fn instance_stand_down(rds: &aws_sdk_rds::Client, db: &DbInstanceInfo) -> Result<Option<StandDown>> {
    if let Some(sd) = stand_down::status("DB instance", &db.id, &db.status) {
        return Ok(Some(sd));
    }
    let Some(arn) = db.arn.clone() else { return Ok(None) };
    Ok(stand_down::blue_green(&[arn], &describe_blue_green_deployments(rds).await?))
}

/// Another recovery owning an Aurora cluster, read now ([`stand_down`]): the cluster's status, its
/// writer's (`writer`: id and status), a Blue/Green switchover with the cluster or a member as source
/// or target, then a switchover or failover of the global database it is a member of.
pub async fn cluster_stand_down(
    rds: &aws_sdk_rds::Client,
    cluster: &ClusterInfo,
    writer: Option<(&str, &str)>,
    member_arns: &[String],
) -> Result<Option<StandDown>> {
    if let Some(sd) = stand_down::status("DB cluster", &cluster.id, &cluster.status) {
        return Ok(Some(sd));
    }
    if let Some((id, status)) = writer {
        if let Some(sd) = stand_down::status(&format!("the writer of cluster {}, DB instance", cluster.id), id, status)
        {
            return Ok(Some(sd));
        }
    }
    let Some(arn) = cluster.arn.clone() else { return Ok(None) };
    let mut arns = vec![arn.clone()];
    arns.extend(member_arns.iter().cloned());
    if let Some(sd) = stand_down::blue_green(&arns, &describe_blue_green_deployments(rds).await?) {
        return Ok(Some(sd));
    }
    Ok(stand_down::global_cluster(&arn, &describe_global_clusters(rds).await?))
}

/// Every Blue/Green deployment in the account and region (few: each is a planned upgrade).
pub async fn describe_blue_green_deployments(rds: &aws_sdk_rds::Client) -> Result<Vec<BlueGreen>> {
    let mut pages = rds.describe_blue_green_deployments().into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("rds", "DescribeBlueGreenDeployments", e))?;
        out.extend(page.blue_green_deployments().iter().map(|d| {
            BlueGreen {
                id: d.blue_green_deployment_identifier().unwrap_or_default().to_string(),
                name: d.blue_green_deployment_name().unwrap_or_default().to_string(),
                status: d.status().unwrap_or_default().to_string(),
                source: d.source().unwrap_or_default().to_string(),
                target: d.target().unwrap_or_default().to_string(),
                members: d
                    .switchover_details()
                    .iter()
                    .map(|m| {
                        (
                            m.source_member().unwrap_or_default().to_string(),
                            m.target_member().unwrap_or_default().to_string(),
                            m.status().unwrap_or_default().to_string(),
                        )
                    })
                    .collect(),
            }
        }));
    }
    Ok(out)
}

/// Every Aurora global database the account sees.
pub async fn describe_global_clusters(rds: &aws_sdk_rds::Client) -> Result<Vec<GlobalCluster>> {
    let mut pages = rds.describe_global_clusters().into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("rds", "DescribeGlobalClusters", e))?;
        out.extend(page.global_clusters().iter().map(|g| GlobalCluster {
            id: g.global_cluster_identifier().unwrap_or_default().to_string(),
            status: g.status().unwrap_or_default().to_string(),
            failover: g.failover_state().map(|f| GlobalFailover {
                status: f.status().map(|s| s.as_str().to_string()).unwrap_or_default(),
                from: f.from_db_cluster_arn().map(str::to_string),
                to: f.to_db_cluster_arn().map(str::to_string),
                data_loss_allowed: f.is_data_loss_allowed(),
            }),
            members: g.global_cluster_members().iter().filter_map(|m| m.db_cluster_arn()).map(str::to_string).collect(),
        }));
    }
    Ok(out)
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

#[cfg(test)]
mod mocked {
    //! The stand-down reads against responses shaped as the RDS API reference shows them (query
    //! protocol, XML), served by `aws-smithy-mocks`: moto 5.2.5 completes a Blue/Green switchover at
    //! once (never describing `SWITCHOVER_IN_PROGRESS`) and has no global database failover state.

    use super::*;
    use crate::db::stand_down;
    use aws_smithy_mocks::{mock, mock_client};
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn xml(body: &'static str) -> HttpResponse {
        HttpResponse::new(StatusCode::try_from(200).unwrap(), SdkBody::from(body))
    }

    const BLUE_GREEN: &str = r#"<DescribeBlueGreenDeploymentsResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/">
  <DescribeBlueGreenDeploymentsResult>
    <BlueGreenDeployments>
      <member>
        <BlueGreenDeploymentIdentifier>bgd-v53303651eexfake</BlueGreenDeploymentIdentifier>
        <BlueGreenDeploymentName>orders-upgrade</BlueGreenDeploymentName>
        <Source>arn:aws:rds:us-east-1:123456789012:db:orders</Source>
        <Target>arn:aws:rds:us-east-1:123456789012:db:orders-green-abcdef</Target>
        <SwitchoverDetails>
          <member>
            <SourceMember>arn:aws:rds:us-east-1:123456789012:db:orders</SourceMember>
            <TargetMember>arn:aws:rds:us-east-1:123456789012:db:orders-green-abcdef</TargetMember>
            <Status>SWITCHOVER_IN_PROGRESS</Status>
          </member>
        </SwitchoverDetails>
        <Tasks>
          <member><Name>CREATING_READ_REPLICA_OF_SOURCE</Name><Status>COMPLETED</Status></member>
        </Tasks>
        <Status>SWITCHOVER_IN_PROGRESS</Status>
        <CreateTime>2026-11-25T09:00:00.000Z</CreateTime>
      </member>
    </BlueGreenDeployments>
  </DescribeBlueGreenDeploymentsResult>
  <ResponseMetadata><RequestId>6f8e3c1a-1a2b-4c3d-8e9f-0a1b2c3d4e5f</RequestId></ResponseMetadata>
</DescribeBlueGreenDeploymentsResponse>"#;

    const GLOBAL: &str = r#"<DescribeGlobalClustersResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/">
  <DescribeGlobalClustersResult>
    <GlobalClusters>
      <GlobalClusterMember>
        <GlobalClusterIdentifier>orders-global</GlobalClusterIdentifier>
        <GlobalClusterResourceId>cluster-f5a3a3a8e1b2c3d4</GlobalClusterResourceId>
        <GlobalClusterArn>arn:aws:rds::123456789012:global-cluster:orders-global</GlobalClusterArn>
        <Status>available</Status>
        <Engine>aurora-postgresql</Engine>
        <EngineVersion>15.4</EngineVersion>
        <StorageEncrypted>true</StorageEncrypted>
        <DeletionProtection>false</DeletionProtection>
        <GlobalClusterMembers>
          <GlobalClusterMember>
            <DBClusterArn>arn:aws:rds:us-east-1:123456789012:cluster:orders-east</DBClusterArn>
            <Readers><member>arn:aws:rds:us-west-2:123456789012:cluster:orders-west</member></Readers>
            <IsWriter>true</IsWriter>
          </GlobalClusterMember>
          <GlobalClusterMember>
            <DBClusterArn>arn:aws:rds:us-west-2:123456789012:cluster:orders-west</DBClusterArn>
            <Readers/>
            <IsWriter>false</IsWriter>
            <SynchronizationStatus>connected</SynchronizationStatus>
          </GlobalClusterMember>
        </GlobalClusterMembers>
        <FailoverState>
          <Status>failing-over</Status>
          <FromDbClusterArn>arn:aws:rds:us-east-1:123456789012:cluster:orders-east</FromDbClusterArn>
          <ToDbClusterArn>arn:aws:rds:us-west-2:123456789012:cluster:orders-west</ToDbClusterArn>
          <IsDataLossAllowed>false</IsDataLossAllowed>
        </FailoverState>
      </GlobalClusterMember>
    </GlobalClusters>
  </DescribeGlobalClustersResult>
  <ResponseMetadata><RequestId>7a9b0c1d-2e3f-4a5b-6c7d-8e9f0a1b2c3d</RequestId></ResponseMetadata>
</DescribeGlobalClustersResponse>"#;

    #[tokio::test]
    async fn a_blue_green_switchover_is_read_and_stands_down() {
        let rule = mock!(aws_sdk_rds::Client::describe_blue_green_deployments).then_http_response(|| xml(BLUE_GREEN));
        let client = mock_client!(aws_sdk_rds, [&rule]);
        let deployments = describe_blue_green_deployments(&client).await.unwrap();
        assert_eq!(deployments.len(), 1);
        assert_eq!(deployments[0].status, "SWITCHOVER_IN_PROGRESS");
        assert_eq!(deployments[0].members[0].2, "SWITCHOVER_IN_PROGRESS");
        let arns = vec!["arn:aws:rds:us-east-1:123456789012:db:orders".to_string()];
        let sd = stand_down::blue_green(&arns, &deployments).unwrap();
        assert!(sd.reason.contains("orders-upgrade (bgd-v53303651eexfake) is switching over"), "{}", sd.reason);
    }

    #[tokio::test]
    async fn a_global_database_failover_is_read_and_stands_down() {
        let rule = mock!(aws_sdk_rds::Client::describe_global_clusters).then_http_response(|| xml(GLOBAL));
        let client = mock_client!(aws_sdk_rds, [&rule]);
        let globals = describe_global_clusters(&client).await.unwrap();
        assert_eq!(globals.len(), 1);
        assert_eq!(globals[0].members.len(), 2);
        let f = globals[0].failover.as_ref().unwrap();
        assert_eq!((f.status.as_str(), f.data_loss_allowed), ("failing-over", Some(false)));
        let sd = stand_down::global_cluster("arn:aws:rds:us-west-2:123456789012:cluster:orders-west", &globals);
        let sd = sd.unwrap();
        assert_eq!(sd.recovery, "global-database");
        assert!(sd.reason.contains("orders-global is in a switchover (status available, FailoverState failing-over"));
    }
}
