//! The place's opted-in load balancers (ALB and NLB) as [`Resource`]s: `DescribeLoadBalancers`,
//! `DescribeTags` (opt-in), `DescribeLoadBalancerAttributes` (`zonal_shift.config.enabled`, without
//! which ARC cannot shift it). A Gateway Load Balancer is named as not shiftable. Readiness's reads and
//! its one change: the target groups (their per-AZ alarms), and enabling zonal shift.

use aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum;

use super::facts::{Kind, Resource, Shiftable};
use crate::config::CommonConfig;
use crate::error::{Error, Result};
use crate::guardrails::is_opted_in;

/// The ELB attribute that lets ARC shift a load balancer.
pub const ZONAL_SHIFT_ATTRIBUTE: &str = "zonal_shift.config.enabled";

/// Every opted-in load balancer of the place (shifts not read yet: see `arc`).
pub async fn opted_in(elb: &aws_sdk_elasticloadbalancingv2::Client, cfg: &CommonConfig) -> Result<Vec<Resource>> {
    let mut all = Vec::new();
    let mut pages = elb.describe_load_balancers().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("elasticloadbalancing", "DescribeLoadBalancers", e))?;
        all.extend(page.load_balancers().iter().cloned());
    }
    let mut out = Vec::new();
    for chunk in all.chunks(20) {
        let arns: Vec<String> = chunk.iter().filter_map(|l| l.load_balancer_arn().map(str::to_string)).collect();
        if arns.is_empty() {
            continue;
        }
        let tags = elb
            .describe_tags()
            .set_resource_arns(Some(arns))
            .send()
            .await
            .map_err(|e| Error::aws("elasticloadbalancing", "DescribeTags", e))?;
        for lb in chunk {
            let Some(arn) = lb.load_balancer_arn() else { continue };
            let opted = tags.tag_descriptions().iter().filter(|d| d.resource_arn() == Some(arn)).any(|d| {
                is_opted_in(d.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())), cfg)
            });
            if !opted {
                continue;
            }
            let shiftable = match lb.r#type() {
                Some(LoadBalancerTypeEnum::Application | LoadBalancerTypeEnum::Network) | None => {
                    if zonal_shift_enabled(elb, arn).await? {
                        Shiftable::Yes
                    } else {
                        Shiftable::No { why: format!("its attribute {ZONAL_SHIFT_ATTRIBUTE} is not true") }
                    }
                }
                Some(other) => {
                    Shiftable::No { why: format!("ARC zonal shift does not support {} load balancers", other.as_str()) }
                }
            };
            out.push(Resource {
                kind: Kind::LoadBalancer,
                arn: arn.to_string(),
                name: lb.load_balancer_name().unwrap_or(arn).to_string(),
                azs: lb.availability_zones().iter().filter_map(|z| z.zone_name().map(str::to_string)).collect(),
                shiftable,
                shifts: vec![],
                group: None,
            });
        }
    }
    Ok(out)
}

/// Whether the load balancer has zonal shift enabled.
pub async fn zonal_shift_enabled(elb: &aws_sdk_elasticloadbalancingv2::Client, arn: &str) -> Result<bool> {
    let attrs = elb
        .describe_load_balancer_attributes()
        .load_balancer_arn(arn)
        .send()
        .await
        .map_err(|e| Error::aws("elasticloadbalancing", "DescribeLoadBalancerAttributes", e))?;
    Ok(attrs.attributes().iter().any(|a| a.key() == Some(ZONAL_SHIFT_ATTRIBUTE) && a.value() == Some("true")))
}

/// The target groups of a load balancer, as dimensions (`DescribeTargetGroups`).
pub async fn target_groups(elb: &aws_sdk_elasticloadbalancingv2::Client, lb_arn: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pages = elb.describe_target_groups().load_balancer_arn(lb_arn).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("elasticloadbalancing", "DescribeTargetGroups", e))?;
        out.extend(
            page.target_groups()
                .iter()
                .filter_map(|g| g.target_group_arn())
                .filter_map(super::alarms::target_group_dimension),
        );
    }
    Ok(out)
}

/// `zonal_shift.config.enabled=true` on the load balancer (that attribute only).
pub async fn enable_zonal_shift(elb: &aws_sdk_elasticloadbalancingv2::Client, arn: &str) -> Result<()> {
    use aws_sdk_elasticloadbalancingv2::types::LoadBalancerAttribute;
    elb.modify_load_balancer_attributes()
        .load_balancer_arn(arn)
        .attributes(LoadBalancerAttribute::builder().key(ZONAL_SHIFT_ATTRIBUTE).value("true").build())
        .send()
        .await
        .map_err(|e| Error::aws("elasticloadbalancing", "ModifyLoadBalancerAttributes", e))?;
    Ok(())
}

/// The load balancer's ELB dimension (`app/web/50dc6c495c0c9188`), as per-AZ alarms name it.
pub fn dimension(arn: &str) -> Option<&str> {
    arn.split_once(":loadbalancer/").map(|(_, d)| d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_dimension_is_the_arn_after_loadbalancer() {
        let arn = "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/web/50dc6c495c0c9188";
        assert_eq!(super::dimension(arn), Some("app/web/50dc6c495c0c9188"));
        assert_eq!(super::dimension("arn:aws:s3:::b"), None);
    }
}
