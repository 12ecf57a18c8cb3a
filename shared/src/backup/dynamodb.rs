//! DynamoDB calls for the table part of a sweep: the tables carrying the policy tag (the tagging
//! API's `GetResources`, 100 to a request, and only for an opted-in one `DescribeTable` and
//! `DescribeContinuousBackups`), every on-demand backup of the place (`ListBackups`, paginated), and
//! the fixes (`UpdateContinuousBackups`, `UpdateTable`, `CreateBackup`, `DeleteBackup`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{BackupStatus, PointInTimeRecoverySpecification, PointInTimeRecoveryStatus};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::retention::{Snap, SnapState};
use super::tables::{is_suite_backup, Pitr, Table};
use super::{opted_in, to_chrono};
use crate::config::CommonConfig;
use crate::error::{Error, Result};

/// Tables carrying the policy tag, and the requests their listing took: the Resource Groups Tagging
/// API's `GetResources` (type `dynamodb:table`, the policy tag as a filter) answers them with their
/// tags, 100 to a request, so a table without the policy tag costs nothing and one with it but not
/// the opt-in tag nothing more (it is only reported); an opted-in one two more (its status,
/// protection and replicas; its PITR). (Was `ListTables` and one `ListTagsOfResource` per table:
/// five requests per table against Cloud Custodian's two, README § Benchmarks.) The tagging API is
/// eventually consistent: a table tagged seconds before a sweep may wait for the next one.
pub async fn tagged_tables(
    tagging: &aws_sdk_resourcegroupstagging::Client,
    ddb: &aws_sdk_dynamodb::Client,
    policy_tag: &str,
    config: &CommonConfig,
    concurrency: usize,
) -> Result<(Vec<Table>, u64)> {
    use aws_sdk_resourcegroupstagging::types::TagFilter;
    let requests = AtomicU64::new(0);
    let mut found = Vec::new();
    let mut pages = tagging
        .get_resources()
        .resource_type_filters("dynamodb:table")
        .tag_filters(TagFilter::builder().key(policy_tag).build())
        .resources_per_page(100)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        requests.fetch_add(1, Ordering::Relaxed);
        let page = page.map_err(|e| Error::aws("tag", "GetResources", e))?;
        for m in page.resource_tag_mapping_list() {
            let Some(arn) = m.resource_arn() else { continue };
            let Some((_, name)) = arn.split_once(":table/") else { continue };
            let tags: Vec<(String, String)> =
                m.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect();
            found.push((name.to_string(), arn.to_string(), tags));
        }
    }
    let requests = &requests;
    let tables: Vec<Option<Table>> = stream::iter(found)
        .map(|(name, arn, tags)| async move {
            let Some(policy) = tags.iter().find(|(k, _)| k == policy_tag).map(|(_, v)| v.trim().to_string()) else {
                return Ok(None);
            };
            let opted_in = opted_in(tags.iter().map(|(k, v)| (Some(k.as_str()), Some(v.as_str()))), config);
            let mut t = Table { name, arn, policy, opted_in, ..Table::default() };
            // A table deleted since the listing is gone from this sweep, not a failure of it.
            if opted_in && !describe(ddb, &mut t, requests).await? {
                return Ok(None);
            }
            Ok::<_, Error>(Some(t))
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    Ok((tables.into_iter().flatten().collect(), requests.load(Ordering::Relaxed)))
}

fn not_found<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.code() == Some("ResourceNotFoundException")
}

/// Status, deletion protection, replicas (`DescribeTable`) and point-in-time recovery
/// (`DescribeContinuousBackups`) of an opted-in table; `false` when it no longer exists.
async fn describe(ddb: &aws_sdk_dynamodb::Client, t: &mut Table, requests: &AtomicU64) -> Result<bool> {
    requests.fetch_add(2, Ordering::Relaxed);
    let (d, c) = futures::join!(
        ddb.describe_table().table_name(&t.name).send(),
        ddb.describe_continuous_backups().table_name(&t.name).send(),
    );
    let d = match d {
        Ok(d) => d,
        Err(e) if not_found(&e) => return Ok(false),
        Err(e) => return Err(Error::aws("dynamodb", "DescribeTable", e)),
    };
    let c = match c {
        Ok(c) => c,
        // moto and AWS answer TableNotFoundException here.
        Err(e) if not_found(&e) || e.code() == Some("TableNotFoundException") => return Ok(false),
        Err(e) => return Err(Error::aws("dynamodb", "DescribeContinuousBackups", e)),
    };
    if let Some(d) = d.table() {
        t.status = d.table_status().map(|s| s.as_str().to_string()).unwrap_or_default();
        t.deletion_protection = d.deletion_protection_enabled().unwrap_or(false);
        if let Some(arn) = d.table_arn() {
            t.arn = arn.to_string();
        }
        t.replicas = d
            .replicas()
            .iter()
            .map(|r| {
                let status = r.replica_status().map(|s| s.as_str().to_string()).unwrap_or_default();
                (r.region_name().unwrap_or_default().to_string(), status)
            })
            .collect();
    }
    if let Some(p) = c.continuous_backups_description().and_then(|c| c.point_in_time_recovery_description()) {
        t.pitr = Pitr {
            enabled: p.point_in_time_recovery_status() == Some(&PointInTimeRecoveryStatus::Enabled),
            recovery_days: p.recovery_period_in_days(),
            latest_restorable: p.latest_restorable_date_time().map(|d| to_chrono(Some(d))),
        };
    }
    Ok(true)
}

/// Every on-demand backup in the place, by table: as [`Snap`]s (the ARN as id; the suite's own
/// known by name) and their names. One paginated listing for all tables.
#[derive(Debug, Clone, Default)]
pub struct TableBackups {
    pub by_table: HashMap<String, Vec<Snap>>,
    pub names: HashMap<String, HashSet<String>>,
    pub requests: u64,
}

pub async fn backups(ddb: &aws_sdk_dynamodb::Client) -> Result<TableBackups> {
    let mut out = TableBackups::default();
    let mut start: Option<String> = None;
    loop {
        out.requests += 1;
        let page = ddb
            .list_backups()
            .set_exclusive_start_backup_arn(start.take())
            .send()
            .await
            .map_err(|e| Error::aws("dynamodb", "ListBackups", e))?;
        for b in page.backup_summaries() {
            let (Some(table), Some(arn)) = (b.table_name(), b.backup_arn()) else { continue };
            let name = b.backup_name().unwrap_or_default();
            let state = match b.backup_status() {
                Some(BackupStatus::Available) => SnapState::Completed,
                Some(BackupStatus::Creating) => SnapState::Pending,
                _ => SnapState::Error,
            };
            let snap = Snap {
                id: arn.to_string(),
                started: to_chrono(b.backup_creation_date_time()),
                state,
                ours: is_suite_backup(name, table),
            };
            out.by_table.entry(table.to_string()).or_default().push(snap);
            out.names.entry(table.to_string()).or_default().insert(name.to_string());
        }
        match page.last_evaluated_backup_arn() {
            Some(a) if !a.is_empty() => start = Some(a.to_string()),
            _ => return Ok(out),
        }
    }
}

/// Point-in-time recovery on, with `days` of recovery.
pub async fn enable_pitr(ddb: &aws_sdk_dynamodb::Client, table: &str, days: i32) -> Result<()> {
    let spec = PointInTimeRecoverySpecification::builder()
        .point_in_time_recovery_enabled(true)
        .recovery_period_in_days(days)
        .build()
        .map_err(|e| Error::ActionFailed(format!("PointInTimeRecoverySpecification: {e}")))?;
    ddb.update_continuous_backups()
        .table_name(table)
        .point_in_time_recovery_specification(spec)
        .send()
        .await
        .map_err(|e| Error::aws("dynamodb", "UpdateContinuousBackups", e))?;
    Ok(())
}

/// Deletion protection on (the suite never turns it off).
pub async fn protect(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Result<()> {
    ddb.update_table()
        .table_name(table)
        .deletion_protection_enabled(true)
        .send()
        .await
        .map_err(|e| Error::aws("dynamodb", "UpdateTable", e))?;
    Ok(())
}

/// An on-demand backup named `name`; returns its ARN.
pub async fn create_backup(ddb: &aws_sdk_dynamodb::Client, table: &str, name: &str) -> Result<String> {
    let out = ddb
        .create_backup()
        .table_name(table)
        .backup_name(name)
        .send()
        .await
        .map_err(|e| Error::aws("dynamodb", "CreateBackup", e))?;
    Ok(out.backup_details().map(|d| d.backup_arn().to_string()).unwrap_or_default())
}

pub async fn delete_backup(ddb: &aws_sdk_dynamodb::Client, arn: &str) -> Result<()> {
    ddb.delete_backup().backup_arn(arn).send().await.map_err(|e| Error::aws("dynamodb", "DeleteBackup", e))?;
    Ok(())
}
