//! The EC2 calls the healer makes.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    Filter, IamInstanceProfileSpecification, InstanceAttributeName, InstanceType, LaunchTemplateSpecification,
    ResourceType, Tag, TagSpecification,
};
use aws_sdk_ec2::Client;

use super::{Health, InstanceFacts, ASG_TAG};
use crate::error::{Error, Result};

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
            out.insert(
                id.to_string(),
                StatusCheck {
                    state: s.instance_state().and_then(|x| x.name()).map(|x| x.as_str().to_string()),
                    instance: s.instance_status().and_then(|x| x.status()).map(|x| x.as_str().to_string()),
                    system: s.system_status().and_then(|x| x.status()).map(|x| x.as_str().to_string()),
                },
            );
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
pub async fn elastic_ips(ec2: &Client, id: &str) -> Result<Vec<(Option<String>, String)>> {
    let out = ec2
        .describe_addresses()
        .filters(Filter::builder().name("instance-id").values(id).build())
        .send()
        .await
        .map_err(|e| Error::aws("ec2", "DescribeAddresses", e))?;
    Ok(out
        .addresses()
        .iter()
        .filter_map(|a| Some((a.allocation_id().map(str::to_string), a.public_ip()?.to_string())))
        .collect())
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
