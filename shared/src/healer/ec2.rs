//! The EC2 calls the healer makes.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    Filter, IamInstanceProfileSpecification, InstanceAttributeName, InstanceType, LaunchTemplateSpecification,
    ResourceType, Tag, TagSpecification,
};
use aws_sdk_ec2::Client;

use chrono::{DateTime, Utc};

use super::facts::InstanceFacts;
use super::stand_down::ScheduledEvent;
use super::{Health, ASG_TAG};
use crate::error::{Error, Result};

fn chrono_time(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()))
}

fn facts(i: &aws_sdk_ec2::types::Instance) -> InstanceFacts {
    InstanceFacts {
        id: i.instance_id().unwrap_or_default().to_string(),
        state: i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default(),
        state_reason: i.state_transition_reason().filter(|s| !s.is_empty()).map(str::to_string),
        az: i.placement().and_then(|p| p.availability_zone()).map(str::to_string),
        vpc_id: i.vpc_id().map(str::to_string),
        subnet_id: i.subnet_id().map(str::to_string),
        image_id: i.image_id().map(str::to_string),
        instance_type: i.instance_type().map(|t| t.as_str().to_string()),
        security_group_ids: i.security_groups().iter().filter_map(|g| g.group_id()).map(str::to_string).collect(),
        iam_profile_arn: i.iam_instance_profile().and_then(|p| p.arn()).map(str::to_string),
        key_name: i.key_name().map(str::to_string),
        tags: i
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
            .collect(),
        ebs_backed: i.root_device_type().map(|d| d.as_str() == "ebs").unwrap_or(true),
        auto_recovery: i.maintenance_options().and_then(|m| m.auto_recovery()).map(|a| a.as_str().to_string()),
    }
}

/// One instance, or `None` when EC2 does not know the id.
pub async fn describe(ec2: &Client, id: &str) -> Result<Option<InstanceFacts>> {
    match ec2.describe_instances().instance_ids(id).send().await {
        Ok(out) => Ok(out.reservations().iter().flat_map(|r| r.instances()).map(facts).find(|f| f.id == id)),
        Err(e) => {
            let code = e.as_service_error().and_then(|se| se.code()).unwrap_or_default().to_string();
            if code.starts_with("InvalidInstanceID") {
                Ok(None)
            } else {
                Err(Error::aws("ec2", "DescribeInstances", e))
            }
        }
    }
}

/// Opted-in standalone instances (no Auto Scaling group) in one VPC and AZ, not terminated.
pub async fn standalone_peers(ec2: &Client, opt_in: (&str, &str), vpc: &str, az: &str) -> Result<Vec<InstanceFacts>> {
    let filters = [
        Filter::builder().name(format!("tag:{}", opt_in.0)).values(opt_in.1).build(),
        Filter::builder().name("vpc-id").values(vpc).build(),
        Filter::builder().name("availability-zone").values(az).build(),
        Filter::builder()
            .name("instance-state-name")
            .values("pending")
            .values("running")
            .values("stopping")
            .values("stopped")
            .build(),
    ];
    let mut pages = ec2.describe_instances().set_filters(Some(filters.to_vec())).into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("ec2", "DescribeInstances", e))?;
        out.extend(page.reservations().iter().flat_map(|r| r.instances()).map(facts));
    }
    out.retain(|f| f.tag(ASG_TAG).is_none());
    Ok(out)
}

/// What DescribeInstanceStatus says of one instance.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusCheck {
    pub state: Option<String>,
    pub instance: Option<String>,
    pub system: Option<String>,
    /// The earliest `ImpairedSince` among the system status check's details.
    pub system_impaired_since: Option<DateTime<Utc>>,
    /// Its scheduled events (`Events`).
    pub events: Vec<ScheduledEvent>,
}

fn status_check(s: &aws_sdk_ec2::types::InstanceStatus) -> StatusCheck {
    let system = s.system_status();
    StatusCheck {
        state: s.instance_state().and_then(|x| x.name()).map(|x| x.as_str().to_string()),
        instance: s.instance_status().and_then(|x| x.status()).map(|x| x.as_str().to_string()),
        system: system.and_then(|x| x.status()).map(|x| x.as_str().to_string()),
        system_impaired_since: system
            .map(|x| x.details())
            .unwrap_or_default()
            .iter()
            .filter_map(|d| chrono_time(d.impaired_since()))
            .min(),
        events: s
            .events()
            .iter()
            .map(|e| ScheduledEvent {
                id: e.instance_event_id().map(str::to_string),
                code: e.code().map(|c| c.as_str().to_string()).unwrap_or_default(),
                description: e.description().unwrap_or_default().to_string(),
                not_before: chrono_time(e.not_before()),
                not_after: chrono_time(e.not_after()),
            })
            .collect(),
    }
}

/// Status checks (`ok`/`impaired`/...) and states of instances, by id (all states included).
pub async fn statuses(ec2: &Client, ids: &[String]) -> Result<std::collections::BTreeMap<String, StatusCheck>> {
    let mut out = std::collections::BTreeMap::new();
    for chunk in ids.chunks(100) {
        let res = ec2
            .describe_instance_status()
            .set_instance_ids(Some(chunk.to_vec()))
            .include_all_instances(true)
            .send()
            .await
            .map_err(|e| Error::aws("ec2", "DescribeInstanceStatus", e))?;
        for s in res.instance_statuses() {
            let Some(id) = s.instance_id() else { continue };
            out.insert(id.to_string(), status_check(s));
        }
    }
    Ok(out)
}

/// Health facts for an instance given its EC2 facts and status checks.
pub fn health_of(f: &InstanceFacts, statuses: &std::collections::BTreeMap<String, StatusCheck>) -> Health {
    let s = statuses.get(&f.id).cloned().unwrap_or_default();
    Health {
        instance_id: f.id.clone(),
        state: f.state.clone(),
        az: f.az.clone(),
        instance_status: s.instance,
        system_status: s.system,
        asg_health: None,
        lifecycle: None,
    }
}

/// Whether termination protection is on.
pub async fn termination_protected(ec2: &Client, id: &str) -> Result<bool> {
    let out = ec2
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(InstanceAttributeName::DisableApiTermination)
        .send()
        .await
        .map_err(|e| Error::aws("ec2", "DescribeInstanceAttribute", e))?;
    Ok(out.disable_api_termination().and_then(|v| v.value()).unwrap_or(false))
}

pub async fn reboot(ec2: &Client, id: &str) -> Result<()> {
    ec2.reboot_instances().instance_ids(id).send().await.map_err(|e| Error::aws("ec2", "RebootInstances", e))?;
    Ok(())
}

pub async fn stop(ec2: &Client, id: &str) -> Result<()> {
    ec2.stop_instances().instance_ids(id).send().await.map_err(|e| Error::aws("ec2", "StopInstances", e))?;
    Ok(())
}

pub async fn start(ec2: &Client, id: &str) -> Result<()> {
    ec2.start_instances().instance_ids(id).send().await.map_err(|e| Error::aws("ec2", "StartInstances", e))?;
    Ok(())
}

pub async fn terminate(ec2: &Client, id: &str) -> Result<()> {
    ec2.terminate_instances().instance_ids(id).send().await.map_err(|e| Error::aws("ec2", "TerminateInstances", e))?;
    Ok(())
}

/// Launches the twin of `old` and returns its id.
pub async fn launch_twin(ec2: &Client, old: &InstanceFacts, token: &str) -> Result<String> {
    let mut req = ec2.run_instances().min_count(1).max_count(1).client_token(token);
    if let Some((id, version)) = old.launch_template() {
        req =
            req.launch_template(LaunchTemplateSpecification::builder().launch_template_id(id).version(version).build());
    }
    // Explicit values win over the template's, so the twin lands where the old one was.
    if let Some(image) = &old.image_id {
        req = req.image_id(image);
    }
    if let Some(t) = &old.instance_type {
        req = req.instance_type(InstanceType::from(t.as_str()));
    }
    if let Some(subnet) = &old.subnet_id {
        req = req.subnet_id(subnet);
    } else if let Some(az) = &old.az {
        req = req.placement(aws_sdk_ec2::types::Placement::builder().availability_zone(az).build());
    }
    if !old.security_group_ids.is_empty() {
        req = req.set_security_group_ids(Some(old.security_group_ids.clone()));
    }
    if let Some(arn) = &old.iam_profile_arn {
        req = req.iam_instance_profile(IamInstanceProfileSpecification::builder().arn(arn).build());
    }
    if let Some(key) = &old.key_name {
        req = req.key_name(key);
    }
    let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
    for (k, v) in old.replacement_tags() {
        spec = spec.tags(Tag::builder().key(k).value(v).build());
    }
    let out = req.tag_specifications(spec.build()).send().await.map_err(|e| Error::aws("ec2", "RunInstances", e))?;
    out.instances()
        .first()
        .and_then(|i| i.instance_id())
        .map(str::to_string)
        .ok_or_else(|| Error::ActionFailed("RunInstances returned no instance".into()))
}

/// Elastic IPs associated with an instance: (allocation id or public ip, public ip).
pub async fn elastic_ips(ec2: &Client, id: &str) -> Result<Vec<ElasticIp>> {
    let out = ec2
        .describe_addresses()
        .filters(Filter::builder().name("instance-id").values(id).build())
        .send()
        .await
        .map_err(|e| Error::aws("ec2", "DescribeAddresses", e))?;
    Ok(out
        .addresses()
        .iter()
        .filter_map(|a| {
            Some(ElasticIp {
                allocation_id: a.allocation_id().map(str::to_string),
                public_ip: a.public_ip()?.to_string(),
                tags: a.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string()))).collect(),
            })
        })
        .collect())
}

/// An Elastic IP associated with an instance, with its tags (the replacement may take it over only
/// when it is opted in, as the role's `aws:ResourceTag` condition on `AssociateAddress` requires).
#[derive(Debug, Clone, PartialEq)]
pub struct ElasticIp {
    pub allocation_id: Option<String>,
    pub public_ip: String,
    pub tags: Vec<(String, String)>,
}

impl ElasticIp {
    /// `203.0.113.10 (eipalloc-…)`, or the address alone (EC2-Classic).
    pub fn name(&self) -> String {
        match &self.allocation_id {
            Some(a) => format!("{} ({a})", self.public_ip),
            None => self.public_ip.clone(),
        }
    }
}

/// Moves an Elastic IP to `to`.
pub async fn move_eip(ec2: &Client, allocation_id: Option<&str>, public_ip: &str, to: &str) -> Result<()> {
    let mut req = ec2.associate_address().instance_id(to).allow_reassociation(true);
    req = match allocation_id {
        Some(a) => req.allocation_id(a),
        None => req.public_ip(public_ip),
    };
    req.send().await.map_err(|e| Error::aws("ec2", "AssociateAddress", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The reads against responses shaped as the EC2 API reference shows them (XML), served by
    //! `aws-smithy-mocks`: moto 5.2.5 reports every status check `ok`, no scheduled events and no
    //! `MaintenanceOptions`.

    use std::time::Duration;

    use super::*;
    use crate::healer::stand_down::{self, AutoRecovery};
    use aws_smithy_mocks::{mock, mock_client};
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn xml(body: &'static str) -> HttpResponse {
        HttpResponse::new(StatusCode::try_from(200).unwrap(), SdkBody::from(body))
    }

    const STATUS: &str = r#"<DescribeInstanceStatusResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>3be1508e-c444-4fef-89cc-0b1223c4f02f</requestId>
  <instanceStatusSet>
    <item>
      <instanceId>i-1234567890abcdef0</instanceId>
      <availabilityZone>us-east-1d</availabilityZone>
      <instanceState><code>16</code><name>running</name></instanceState>
      <systemStatus>
        <status>impaired</status>
        <details>
          <item><name>reachability</name><status>failed</status><impairedSince>2026-11-25T10:05:00.000Z</impairedSince></item>
        </details>
      </systemStatus>
      <instanceStatus>
        <status>ok</status>
        <details><item><name>reachability</name><status>passed</status></item></details>
      </instanceStatus>
      <eventsSet>
        <item>
          <instanceEventId>instance-event-0d59937288b749b32</instanceEventId>
          <code>system-maintenance</code>
          <description>The instance is scheduled for maintenance of the underlying host</description>
          <notBefore>2026-11-25T10:00:00.000Z</notBefore>
          <notAfter>2026-11-25T12:00:00.000Z</notAfter>
        </item>
        <item>
          <instanceEventId>instance-event-0e5a8a8f3f4b1a2c3</instanceEventId>
          <code>system-reboot</code>
          <description>[Completed] The instance is scheduled for a reboot</description>
          <notBefore>2026-11-20T10:00:00.000Z</notBefore>
        </item>
      </eventsSet>
    </item>
  </instanceStatusSet>
</DescribeInstanceStatusResponse>"#;

    const INSTANCES: &str = r#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
  <reservationSet>
    <item>
      <reservationId>r-1234567890abcdef0</reservationId>
      <ownerId>123456789012</ownerId>
      <groupSet/>
      <instancesSet>
        <item>
          <instanceId>i-1234567890abcdef0</instanceId>
          <imageId>ami-0abcdef1234567890</imageId>
          <instanceState><code>16</code><name>running</name></instanceState>
          <instanceType>t3.small</instanceType>
          <placement><availabilityZone>us-east-1d</availabilityZone><tenancy>default</tenancy></placement>
          <rootDeviceType>ebs</rootDeviceType>
          <maintenanceOptions><autoRecovery>default</autoRecovery></maintenanceOptions>
        </item>
      </instancesSet>
    </item>
  </reservationSet>
</DescribeInstancesResponse>"#;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[tokio::test]
    async fn impairment_start_and_scheduled_events_are_read_and_stand_down() {
        let rule = mock!(Client::describe_instance_status).then_http_response(|| xml(STATUS));
        let client = mock_client!(aws_sdk_ec2, [&rule]);
        let id = "i-1234567890abcdef0".to_string();
        let statuses = statuses(&client, std::slice::from_ref(&id)).await.unwrap();
        let s = &statuses[&id];
        assert_eq!(s.system.as_deref(), Some("impaired"));
        assert_eq!(s.system_impaired_since, Some(at("2026-11-25T10:05:00Z")));
        assert_eq!(s.events.len(), 2);
        assert_eq!(s.events[0].code, "system-maintenance");
        assert_eq!(s.events[0].not_after, Some(at("2026-11-25T12:00:00Z")));
        let sd = stand_down::scheduled_event(&id, &s.events, at("2026-11-25T10:30:00Z")).unwrap();
        assert!(
            sd.reason.starts_with(
                "scheduled event system-maintenance instance-event-0d59937288b749b32 is acting on i-1234567890abcdef0"
            ),
            "{}",
            sd.reason
        );
    }

    #[tokio::test]
    async fn auto_recovery_setting_is_read_and_stands_down_within_the_grace() {
        let described = mock!(Client::describe_instances).then_http_response(|| xml(INSTANCES));
        let status = mock!(Client::describe_instance_status).then_http_response(|| xml(STATUS));
        let client = mock_client!(aws_sdk_ec2, aws_smithy_mocks::RuleMode::MatchAny, [&described, &status]);
        let inst = describe(&client, "i-1234567890abcdef0").await.unwrap().unwrap();
        assert_eq!(inst.auto_recovery.as_deref(), Some("default"));
        let s = statuses(&client, std::slice::from_ref(&inst.id)).await.unwrap().remove(&inst.id).unwrap();
        let facts = AutoRecovery {
            setting: inst.auto_recovery.clone(),
            system_status: s.system.clone(),
            impaired_since: s.system_impaired_since,
            failure_reported_at: None,
        };
        let sd = stand_down::auto_recovery(&inst.id, &facts, at("2026-11-25T10:09:00Z"), Duration::from_secs(900));
        assert_eq!(sd.map(|s| s.recovery), Some("auto-recovery"));
    }
}
