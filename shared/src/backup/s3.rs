//! S3 calls for the bucket part of a sweep: the account's buckets of the sweep's region
//! (`ListBuckets` filtered by `BucketRegion`, so a bucket is swept once, by its own region's
//! sweep), their tags, versioning, lifecycle and replication, whether a replication destination
//! exists (`HeadBucket`), and the fixes (`PutBucketVersioning`, `PutBucketLifecycleConfiguration`,
//! `PutBucketReplication`). Every call on a bucket of the place carries `ExpectedBucketOwner`.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, DeleteMarkerReplication, DeleteMarkerReplicationStatus,
    Destination, LifecycleRule, ReplicationConfiguration, ReplicationRule, ReplicationRuleFilter,
    ReplicationRuleStatus, VersioningConfiguration,
};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::buckets::{refusal, Bucket, ReplicaRule, Versioning, REPLICATION_RULE_ID};
use super::opted_in;
use crate::config::CommonConfig;
use crate::error::{Error, Result};

/// A bucket as the inventory found it.
#[derive(Debug, Clone)]
pub enum Listed {
    /// Carries the policy tag (opted in or not).
    Tagged(Box<Bucket>),
    /// A bucket the suite may not touch (AccessDenied with `ExpectedBucketOwner`): its name and why.
    Refused(String, String),
}

fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    e.code()
}

/// The region a `ListBuckets` entry (or `GetBucketLocation`) names: none or empty is us-east-1,
/// `EU` is eu-west-1.
pub fn region_of(constraint: Option<&str>) -> String {
    match constraint {
        None | Some("") => "us-east-1".into(),
        Some("EU") => "eu-west-1".into(),
        Some(r) => r.to_string(),
    }
}

/// The account's buckets in `region` carrying the policy tag (or refusing the suite), and the
/// requests the listing took: `ListBuckets` pages, one `GetBucketTagging` per bucket; an opted-in
/// bucket also `GetBucketVersioning`, `GetBucketLifecycleConfiguration`, and
/// `GetBucketReplication` when `replication` (its policy names a destination) says so.
#[allow(clippy::too_many_arguments)]
pub async fn tagged_buckets(
    s3: &aws_sdk_s3::Client,
    region: &str,
    account: &str,
    policy_tag: &str,
    config: &CommonConfig,
    concurrency: usize,
    replication: impl Fn(&str) -> bool + Sync,
) -> Result<(Vec<Listed>, u64)> {
    let requests = AtomicU64::new(0);
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        requests.fetch_add(1, Ordering::Relaxed);
        let page = s3
            .list_buckets()
            .bucket_region(region)
            .max_buckets(1000)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| Error::aws("s3", "ListBuckets", e))?;
        for b in page.buckets() {
            // The filter is the request's; a bucket that names another region is still left to it.
            let here = b.bucket_region().is_none_or(|r| region_of(Some(r)) == region);
            if let Some(name) = b.name().filter(|_| here) {
                names.push(name.to_string());
            }
        }
        match page.continuation_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    let requests = &requests;
    let replication = &replication;
    let listed: Vec<Option<Listed>> = stream::iter(names)
        .map(|name| async move {
            requests.fetch_add(1, Ordering::Relaxed);
            let tags = match s3.get_bucket_tagging().bucket(&name).expected_bucket_owner(account).send().await {
                Ok(out) => out.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect(),
                Err(e) if code(&e) == Some("NoSuchTagSet") => Vec::new(),
                // Deleted since the listing: gone from this sweep, not a failure of it.
                Err(e) if code(&e) == Some("NoSuchBucket") => return Ok(None),
                Err(e) => {
                    if let Some(why) = refusal(code(&e), &name, account) {
                        return Ok(Some(Listed::Refused(name, why)));
                    }
                    return Err(Error::aws("s3", "GetBucketTagging", e));
                }
            };
            let Some(policy) = tags.iter().find(|(k, _)| k == policy_tag).map(|(_, v)| v.trim().to_string()) else {
                return Ok(None);
            };
            let opted_in = opted_in(tags.iter().map(|(k, v)| (Some(k.as_str()), Some(v.as_str()))), config);
            let mut b = Bucket { name: name.clone(), policy, opted_in, ..Bucket::default() };
            if opted_in {
                let wants_replication = replication(&b.policy);
                requests.fetch_add(2 + u64::from(wants_replication), Ordering::Relaxed);
                let read = async {
                    let (v, l, r) =
                        futures::try_join!(versioning(s3, &name, account), lifecycle(s3, &name, account), async {
                            if wants_replication {
                                replication_rules(s3, &name, account).await
                            } else {
                                Ok(None)
                            }
                        })?;
                    Ok::<_, (Option<String>, Error)>((v, l, r))
                };
                match read.await {
                    Ok((v, l, r)) => {
                        b.versioning = v;
                        b.lifecycle = l;
                        b.replication = r;
                    }
                    Err((c, _)) if c.as_deref() == Some("NoSuchBucket") => return Ok(None),
                    Err((c, e)) => {
                        if let Some(why) = refusal(c.as_deref(), &name, account) {
                            return Ok(Some(Listed::Refused(name, why)));
                        }
                        return Err(e);
                    }
                }
            }
            Ok::<_, Error>(Some(Listed::Tagged(Box::new(b))))
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    Ok((listed.into_iter().flatten().collect(), requests.load(Ordering::Relaxed)))
}

/// An error with its S3 code, so the caller can tell a refusal from a failure.
type Coded = (Option<String>, Error);

fn coded<E, R>(op: &'static str, e: SdkError<E, R>) -> Coded
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    (code(&e).map(str::to_string), Error::aws("s3", op, e))
}

/// Versioning. moto answers `GetBucketVersioning` with a body whose root is
/// `GetBucketVersioningResponse` (AWS's is `VersioningConfiguration`), which the SDK refuses to read,
/// whatever the status: a response that does not parse is read for its `<Status>` instead, and
/// without one it is a bucket whose versioning was never enabled (as AWS's empty
/// `VersioningConfiguration` says). An error S3 names (AccessDenied, ...) stays an error.
async fn versioning(s3: &aws_sdk_s3::Client, bucket: &str, account: &str) -> std::result::Result<Versioning, Coded> {
    match s3.get_bucket_versioning().bucket(bucket).expected_bucket_owner(account).send().await {
        Ok(out) => Ok(match out.status() {
            Some(BucketVersioningStatus::Enabled) => Versioning::Enabled,
            Some(BucketVersioningStatus::Suspended) => Versioning::Suspended,
            _ => Versioning::Never,
        }),
        Err(SdkError::ResponseError(e)) => Ok(status_in(e.raw().body().bytes())),
        Err(SdkError::ServiceError(e)) if e.raw().status().is_success() && e.err().code().is_none() => {
            Ok(status_in(e.raw().body().bytes()))
        }
        Err(e) => Err(coded("GetBucketVersioning", e)),
    }
}

/// The versioning status a `GetBucketVersioning` body names, however its root is spelled.
pub fn status_in(body: Option<&[u8]>) -> Versioning {
    let text = body.map(String::from_utf8_lossy).unwrap_or_default();
    if text.contains("<Status>Enabled</Status>") {
        Versioning::Enabled
    } else if text.contains("<Status>Suspended</Status>") {
        Versioning::Suspended
    } else {
        Versioning::Never
    }
}

async fn lifecycle(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    account: &str,
) -> std::result::Result<Vec<LifecycleRule>, Coded> {
    match s3.get_bucket_lifecycle_configuration().bucket(bucket).expected_bucket_owner(account).send().await {
        Ok(out) => Ok(out.rules().to_vec()),
        Err(e) if code(&e) == Some("NoSuchLifecycleConfiguration") => Ok(Vec::new()),
        Err(e) => Err(coded("GetBucketLifecycleConfiguration", e)),
    }
}

async fn replication_rules(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    account: &str,
) -> std::result::Result<Option<Vec<ReplicaRule>>, Coded> {
    match s3.get_bucket_replication().bucket(bucket).expected_bucket_owner(account).send().await {
        Ok(out) => Ok(Some(
            out.replication_configuration()
                .map(|c| c.rules())
                .unwrap_or_default()
                .iter()
                .map(|r| ReplicaRule {
                    id: r.id().unwrap_or_default().to_string(),
                    enabled: r.status() == &ReplicationRuleStatus::Enabled,
                    destination: r.destination().map(|d| d.bucket().to_string()).unwrap_or_default(),
                })
                .collect(),
        )),
        Err(e) if code(&e) == Some("ReplicationConfigurationNotFoundError") => Ok(None),
        Err(e) => Err(coded("GetBucketReplication", e)),
    }
}

/// Whether a (destination) bucket exists: `HeadBucket` answers 404 for one that does not. A 403 is
/// a bucket that exists and this role may not read: it exists.
pub async fn bucket_exists(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<bool> {
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => Ok(false),
        Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 403 => Ok(true),
        Err(e) => Err(Error::aws("s3", "HeadBucket", e)),
    }
}

/// Versioning enabled (the suite never suspends it).
pub async fn enable_versioning(s3: &aws_sdk_s3::Client, bucket: &str, account: &str) -> Result<()> {
    s3.put_bucket_versioning()
        .bucket(bucket)
        .expected_bucket_owner(account)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .map_err(|e| Error::aws("s3", "PutBucketVersioning", e))?;
    Ok(())
}

/// Writes the whole lifecycle configuration (the owner's rules as read, and the suite's).
pub async fn put_lifecycle(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    account: &str,
    rules: Vec<LifecycleRule>,
) -> Result<()> {
    let conf = BucketLifecycleConfiguration::builder()
        .set_rules(Some(rules))
        .build()
        .map_err(|e| Error::ActionFailed(format!("lifecycle configuration of {bucket}: {e}")))?;
    s3.put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .expected_bucket_owner(account)
        .lifecycle_configuration(conf)
        .send()
        .await
        .map_err(|e| Error::aws("s3", "PutBucketLifecycleConfiguration", e))?;
    Ok(())
}

/// Replication of every object to `destination` (a bucket ARN) as `role`, on a bucket that has none.
pub async fn put_replication(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    account: &str,
    destination: &str,
    role: &str,
) -> Result<()> {
    let build = |what: &str, e: aws_sdk_s3::error::BuildError| Error::ActionFailed(format!("{what} of {bucket}: {e}"));
    let rule = ReplicationRule::builder()
        .id(REPLICATION_RULE_ID)
        .priority(1)
        .status(ReplicationRuleStatus::Enabled)
        .filter(ReplicationRuleFilter::builder().prefix("").build())
        .delete_marker_replication(
            DeleteMarkerReplication::builder().status(DeleteMarkerReplicationStatus::Disabled).build(),
        )
        .destination(Destination::builder().bucket(destination).build().map_err(|e| build("destination", e))?)
        .build()
        .map_err(|e| build("replication rule", e))?;
    let conf = ReplicationConfiguration::builder()
        .role(role)
        .rules(rule)
        .build()
        .map_err(|e| build("replication configuration", e))?;
    s3.put_bucket_replication()
        .bucket(bucket)
        .expected_bucket_owner(account)
        .replication_configuration(conf)
        .send()
        .await
        .map_err(|e| Error::aws("s3", "PutBucketReplication", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{region_of, status_in, Versioning};

    #[test]
    fn a_versioning_body_moto_spells_its_own_way_is_read_for_its_status() {
        let moto = |s: &str| {
            format!(
                r#"<?xml version="1.0" encoding="utf-8"?><GetBucketVersioningResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{s}</GetBucketVersioningResponse>"#
            )
        };
        assert_eq!(status_in(Some(moto("<Status>Enabled</Status>").as_bytes())), Versioning::Enabled);
        assert_eq!(status_in(Some(moto("<Status>Suspended</Status>").as_bytes())), Versioning::Suspended);
        assert_eq!(status_in(Some(moto("").as_bytes())), Versioning::Never);
        assert_eq!(status_in(None), Versioning::Never);
    }

    #[test]
    fn a_location_constraint_names_its_region() {
        assert_eq!(region_of(None), "us-east-1");
        assert_eq!(region_of(Some("")), "us-east-1");
        assert_eq!(region_of(Some("EU")), "eu-west-1");
        assert_eq!(region_of(Some("us-west-2")), "us-west-2");
    }
}
