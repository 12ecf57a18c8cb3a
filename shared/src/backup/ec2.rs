//! EC2 calls: every listing paginated. Also the tagged [`Volume`] they find and the snapshots they
//! list, for the EBS part of a sweep.

use std::collections::{HashMap, HashSet};

use aws_sdk_ec2::types::{Filter, ResourceType, SnapshotState, Tag, TagSpecification};

use super::dr_copy::DrCopies;
use super::retention::{Snap, SnapState};
use super::{opted_in, to_chrono, CREATED_BY, TAG_COPY_OF, TAG_CREATED_BY, TAG_POLICY, TAG_SOURCE, TAG_SWEEP};
use crate::config::CommonConfig;
use crate::error::{Error, Result};

/// A tagged volume.
#[derive(Debug, Clone)]
pub struct Volume {
    pub id: String,
    pub policy: String,
    /// Also carries the suite's opt-in tag; without it the volume is only reported.
    pub opted_in: bool,
}

/// A self-owned EBS snapshot with the resource it belongs to.
#[derive(Debug, Clone)]
struct Ebs {
    /// `selfheal:source` for ours, else the volume id.
    resource: String,
    snap: Snap,
}

/// Volumes carrying the policy tag. Every volume is listed (500 a page, the same listing Cloud
/// Custodian makes) and those without the tag are dropped here: a `tag-key` filter saves nothing in
/// AWS for a fleet whose volumes are mostly tagged, and costs an emulator twice the work (moto scans
/// the account's tags once to filter a volume and again to answer with it).
pub async fn tagged_volumes(ec2: &aws_sdk_ec2::Client, policy_tag: &str, config: &CommonConfig) -> Result<Vec<Volume>> {
    let mut pages = ec2.describe_volumes().max_results(500).into_paginator().items().send();
    let mut out = Vec::new();
    while let Some(v) = pages.next().await {
        let v = v.map_err(|e| Error::aws("ec2", "DescribeVolumes", e))?;
        let policy = v.tags().iter().find(|t| t.key() == Some(policy_tag)).and_then(|t| t.value());
        if let (Some(id), Some(policy)) = (v.volume_id(), policy) {
            let opted_in = opted_in(v.tags().iter().map(|t| (t.key(), t.value())), config);
            out.push(Volume { id: id.to_string(), policy: policy.trim().to_string(), opted_in });
        }
    }
    Ok(out)
}

fn tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

/// Every self-owned snapshot, grouped by the resource it belongs to (a suite snapshot by its
/// `selfheal:source` tag, any other by its volume); and, by resource, the sweeps (`selfheal:sweep`)
/// that took a snapshot of it: what an earlier attempt of a sweep already did.
pub(super) async fn snapshots_by_resource(ec2: &aws_sdk_ec2::Client) -> Result<Listed> {
    let mut pages = ec2.describe_snapshots().owner_ids("self").max_results(1000).into_paginator().items().send();
    let mut out = Listed::default();
    while let Some(s) = pages.next().await {
        let s = s.map_err(|e| Error::aws("ec2", "DescribeSnapshots", e))?;
        if let Some(e) = to_ebs(&s) {
            if let Some(sweep) = tag(s.tags(), TAG_SWEEP).filter(|_| e.snap.ours) {
                out.swept.entry(e.resource.clone()).or_default().insert(sweep.to_string());
            }
            out.snaps.entry(e.resource).or_default().push(e.snap);
        }
    }
    Ok(out)
}

/// Snapshots listed, by resource, and the sweeps that took them.
#[derive(Debug, Clone, Default)]
pub(super) struct Listed {
    pub(super) snaps: HashMap<String, Vec<Snap>>,
    pub(super) swept: HashMap<String, HashSet<String>>,
}

fn to_ebs(s: &aws_sdk_ec2::types::Snapshot) -> Option<Ebs> {
    let id = s.snapshot_id()?.to_string();
    let ours = tag(s.tags(), TAG_CREATED_BY) == Some(CREATED_BY);
    let resource = if ours { tag(s.tags(), TAG_SOURCE).or(s.volume_id()) } else { s.volume_id() }?.to_string();
    let state = match s.state() {
        Some(SnapshotState::Completed) => SnapState::Completed,
        Some(SnapshotState::Pending) | Some(SnapshotState::Recoverable) | Some(SnapshotState::Recovering) => {
            SnapState::Pending
        }
        _ => SnapState::Error,
    };
    Some(Ebs { resource, snap: Snap { id, started: to_chrono(s.start_time()), state, ours } })
}

/// Snapshot ids that an own AMI's block devices use.
pub async fn ami_snapshots(ec2: &aws_sdk_ec2::Client) -> Result<HashSet<String>> {
    let mut pages = ec2.describe_images().owners("self").into_paginator().items().send();
    let mut out = HashSet::new();
    while let Some(img) = pages.next().await {
        let img = img.map_err(|e| Error::aws("ec2", "DescribeImages", e))?;
        for bdm in img.block_device_mappings() {
            if let Some(id) = bdm.ebs().and_then(|e| e.snapshot_id()) {
                out.insert(id.to_string());
            }
        }
    }
    Ok(out)
}

/// The suite's copies in the client's (DR) region.
pub async fn copied_snapshots(ec2: &aws_sdk_ec2::Client) -> Result<DrCopies> {
    let mut pages = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(Filter::builder().name("tag-key").values(TAG_COPY_OF).build())
        .max_results(1000)
        .into_paginator()
        .items()
        .send();
    let mut out = DrCopies::default();
    while let Some(s) = pages.next().await {
        let s = s.map_err(|e| Error::aws("ec2", "DescribeSnapshots", e))?;
        if let Some(e) = to_ebs(&s) {
            out.add(tag(s.tags(), TAG_COPY_OF), tag(s.tags(), TAG_SOURCE), e.snap);
        }
    }
    Ok(out)
}

fn suite_tags(resource: &str, policy: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(ResourceType::Snapshot)
        .tags(Tag::builder().key(TAG_CREATED_BY).value(CREATED_BY).build())
        .tags(Tag::builder().key(TAG_POLICY).value(policy).build())
        .tags(Tag::builder().key(TAG_SOURCE).value(resource).build())
        .build()
}

/// Takes a tagged snapshot, its tags naming the sweep that took it (`selfheal:sweep`); returns its
/// id and whether it is already complete.
pub async fn create_snapshot(
    ec2: &aws_sdk_ec2::Client,
    volume: &str,
    policy: &str,
    sweep: &str,
) -> Result<(String, bool)> {
    let mut tags = suite_tags(volume, policy);
    tags.tags.get_or_insert_with(Vec::new).push(Tag::builder().key(TAG_SWEEP).value(sweep).build());
    let out = ec2
        .create_snapshot()
        .volume_id(volume)
        .description(format!("selfheal backup-enforcer ({policy}) of {volume}"))
        .tag_specifications(tags)
        .send()
        .await
        .map_err(|e| Error::aws("ec2", "CreateSnapshot", e))?;
    let id = out.snapshot_id().ok_or_else(|| Error::ActionFailed("CreateSnapshot returned no id".into()))?;
    Ok((id.to_string(), out.state() == Some(&SnapshotState::Completed)))
}

pub async fn delete_snapshot(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<()> {
    ec2.delete_snapshot().snapshot_id(id).send().await.map_err(|e| Error::aws("ec2", "DeleteSnapshot", e))?;
    Ok(())
}

/// Copies `snapshot` from `source_region` with the DR-region client; returns the copy's id.
pub async fn copy_snapshot(
    dr: &aws_sdk_ec2::Client,
    source_region: &str,
    snapshot: &str,
    volume: &str,
    policy: &str,
) -> Result<String> {
    let mut tags = suite_tags(volume, policy);
    tags.tags.get_or_insert_with(Vec::new).push(Tag::builder().key(TAG_COPY_OF).value(snapshot).build());
    let out = dr
        .copy_snapshot()
        .source_region(source_region)
        .source_snapshot_id(snapshot)
        .description(format!("selfheal DR copy of {snapshot} ({volume}, {policy})"))
        .tag_specifications(tags)
        .send()
        .await
        .map_err(|e| Error::aws("ec2", "CopySnapshot", e))?;
    Ok(out.snapshot_id().unwrap_or_default().to_string())
}
