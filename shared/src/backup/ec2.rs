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

/// Volumes carrying the policy tag, found through their tags alone (`DescribeTags` filtered on
/// `resource-type=volume` and the two keys a decision reads: the policy tag and the opt-in tag), not
/// by listing every volume: a sweep's decision needs nothing else of a volume. Against AWS that is
/// 1,000 tags a page instead of 500 volumes; against moto it also spares the emulator's scan of every
/// tag in the account for each volume it renders. A volume whose state does not allow a snapshot
/// fails at `CreateSnapshot` and is named in the summary, as it was when volumes were listed.
pub async fn tagged_volumes(ec2: &aws_sdk_ec2::Client, policy_tag: &str, config: &CommonConfig) -> Result<Vec<Volume>> {
    let mut pages = ec2
        .describe_tags()
        .filters(Filter::builder().name("resource-type").values("volume").build())
        .filters(Filter::builder().name("key").values(policy_tag).values(&config.opt_in_tag).build())
        .max_results(1000)
        .into_paginator()
        .items()
        .send();
    // Volume id -> its (policy, opt-in) tags, in the order the listing first named each volume.
    let mut tags: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut order = Vec::new();
    while let Some(t) = pages.next().await {
        let t = t.map_err(|e| Error::aws("ec2", "DescribeTags", e))?;
        if t.resource_type() != Some(&ResourceType::Volume) {
            continue;
        }
        if let (Some(id), Some(key)) = (t.resource_id(), t.key()) {
            let entry = tags.entry(id.to_string()).or_insert_with(|| {
                order.push(id.to_string());
                Vec::new()
            });
            entry.push((key.to_string(), t.value().unwrap_or_default().to_string()));
        }
    }
    Ok(order.into_iter().filter_map(|id| volume(id.clone(), tags.get(&id)?, policy_tag, config)).collect())
}

/// The volume its tags describe, if it carries the policy tag.
fn volume(id: String, tags: &[(String, String)], policy_tag: &str, config: &CommonConfig) -> Option<Volume> {
    let policy = tags.iter().find(|(k, _)| k == policy_tag)?.1.trim().to_string();
    let opted_in = opted_in(tags.iter().map(|(k, v)| (Some(k.as_str()), Some(v.as_str()))), config);
    Some(Volume { id, policy, opted_in })
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

#[cfg(test)]
mod tests {
    use super::volume;
    use crate::config::{CommonConfig, Env};

    fn config() -> CommonConfig {
        let mut env = Env::from_map([("SELFHEAL_LEDGER_TABLE".to_string(), "t".to_string())].into());
        CommonConfig::read(&mut env, "test")
    }

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_volume_is_its_policy_tag_and_its_opt_in_tag() {
        let config = config();
        let v = volume(
            "vol-1".into(),
            &tags(&[("selfheal:enabled", "TRUE "), ("selfheal:backup", " gold")]),
            "selfheal:backup",
            &config,
        )
        .expect("a volume with the policy tag");
        assert_eq!((v.id.as_str(), v.policy.as_str(), v.opted_in), ("vol-1", "gold", true));

        let v = volume("vol-2".into(), &tags(&[("selfheal:backup", "gold")]), "selfheal:backup", &config)
            .expect("a volume with the policy tag");
        assert!(!v.opted_in, "without the opt-in tag the volume is only reported");
        let v = volume(
            "vol-3".into(),
            &tags(&[("selfheal:backup", "gold"), ("selfheal:enabled", "no")]),
            "selfheal:backup",
            &config,
        );
        assert!(!v.expect("listed").opted_in);

        assert!(volume("vol-4".into(), &tags(&[("selfheal:enabled", "true")]), "selfheal:backup", &config).is_none());
    }
}
