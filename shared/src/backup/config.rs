//! The function's own settings (`SELFHEAL_BACKUP_*`), read and validated at cold start.

use std::collections::BTreeMap;

use super::policy::{builtin_policies, parse_policies, Policy};
use crate::config::Env;

/// The function's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupConfig {
    /// `SELFHEAL_BACKUP_POLICY_TAG` (default `selfheal:backup`): the opt-in and policy tag.
    pub policy_tag: String,
    /// `SELFHEAL_BACKUP_POLICIES`: JSON over the built-in tiers.
    pub policies: BTreeMap<String, Policy>,
    /// `SELFHEAL_BACKUP_CONCURRENCY` (default 8, 1..=128): resources worked on at once.
    pub concurrency: usize,
    /// `SELFHEAL_BACKUP_MAX_DELETE_PERCENT` (default 50, 0..=100): most of one resource's snapshots
    /// deleted in one run.
    pub max_delete_percent: u32,
    /// `SELFHEAL_BACKUP_MANAGE_PLANS` (default true): keep the AWS Backup plans and vaults in line.
    pub manage_plans: bool,
    /// `SELFHEAL_BACKUP_RDS` (default true): manage tagged RDS instances.
    pub manage_rds: bool,
    /// `SELFHEAL_BACKUP_DYNAMODB` (default true): manage tagged DynamoDB tables (point-in-time
    /// recovery, deletion protection, on-demand backups when the policy asks, replicas).
    pub manage_tables: bool,
    /// `SELFHEAL_BACKUP_S3` (default true): manage tagged S3 buckets of the sweep's region
    /// (versioning, noncurrent-version expiration, replication when the policy names a destination).
    pub manage_buckets: bool,
    /// `SELFHEAL_BACKUP_TIME_BUDGET_SECONDS` (default 840): no resource is started on after this long
    /// into a sweep, so the run ends with its report inside the function's timeout (Lambda's limit is
    /// 900 s); the rest are left for the retry (the invocation fails) or the next run.
    pub time_budget: std::time::Duration,
    /// `SELFHEAL_BACKUP_REGIONS` (default: the hub's region): the regions a scheduled sweep covers in
    /// the hub's account and in every member account (`SELFHEAL_ACCOUNTS`).
    pub regions: Vec<String>,
    /// `SELFHEAL_BACKUP_QUEUE_URL` (default unset): the sweep queue. Set, a scheduled sweep is
    /// planned (one shard per account and region, sent to this queue) and swept by workers that the
    /// queue invokes; unset, the scheduled invocation sweeps every place itself, one after another.
    pub queue_url: Option<String>,
    /// `SELFHEAL_BACKUP_API_RATE` (default 5, 0.1..=1000): mutating EC2 and RDS calls per second
    /// in one account and region, at most; a sweep waits for its turn rather than exceed it.
    pub api_rate: f64,
    /// `SELFHEAL_BACKUP_API_BURST` (default 10, 1..=1000): calls that may go at once after a quiet
    /// spell, within the same rate.
    pub api_burst: u32,
    /// `SELFHEAL_BACKUP_SHARD_MAX_RECEIVES` (default 3, 1..=1000): the sweep queue's
    /// `maxReceiveCount`. A shard that fails on its last receive is counted as finished (failed) so
    /// the sweep's summary still goes out, and SQS moves it to the dead-letter queue.
    pub shard_max_receives: u32,
}

fn read_regions(env: &mut Env) -> Vec<String> {
    let mut regions = Vec::new();
    for r in env.optional("SELFHEAL_BACKUP_REGIONS").unwrap_or_default().split(',').map(str::trim) {
        if r.is_empty() || regions.iter().any(|k| k == r) {
            continue;
        }
        if !crate::ids::is_region(r) {
            env.problem("SELFHEAL_BACKUP_REGIONS", format!("{r:?} is not a region code such as us-east-1"));
            continue;
        }
        regions.push(r.to_string());
    }
    regions
}

impl BackupConfig {
    pub fn read(env: &mut Env) -> Self {
        let policies = match parse_policies(env.optional("SELFHEAL_BACKUP_POLICIES").as_deref()) {
            Ok(p) => p,
            Err(problem) => {
                env.problem("SELFHEAL_BACKUP_POLICIES", problem);
                builtin_policies()
            }
        };
        BackupConfig {
            policy_tag: env.string("SELFHEAL_BACKUP_POLICY_TAG", "selfheal:backup"),
            policies,
            concurrency: env.number("SELFHEAL_BACKUP_CONCURRENCY", 8usize, 1, 128),
            max_delete_percent: env.number("SELFHEAL_BACKUP_MAX_DELETE_PERCENT", 50u32, 0, 100),
            manage_plans: env.bool("SELFHEAL_BACKUP_MANAGE_PLANS", true),
            manage_rds: env.bool("SELFHEAL_BACKUP_RDS", true),
            manage_tables: env.bool("SELFHEAL_BACKUP_DYNAMODB", true),
            manage_buckets: env.bool("SELFHEAL_BACKUP_S3", true),
            time_budget: env.seconds("SELFHEAL_BACKUP_TIME_BUDGET_SECONDS", 840, 0, 86_400),
            regions: read_regions(env),
            queue_url: env.optional("SELFHEAL_BACKUP_QUEUE_URL"),
            api_rate: env.number("SELFHEAL_BACKUP_API_RATE", 5.0f64, 0.1, 1000.0),
            api_burst: env.number("SELFHEAL_BACKUP_API_BURST", 10u32, 1, 1000),
            shard_max_receives: env.number("SELFHEAL_BACKUP_SHARD_MAX_RECEIVES", 3u32, 1, 1000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reports_problems_by_name() {
        let mut env = Env::from_map(
            [
                ("SELFHEAL_BACKUP_CONCURRENCY".to_string(), "0".to_string()),
                ("SELFHEAL_BACKUP_POLICIES".to_string(), "{".to_string()),
            ]
            .into(),
        );
        let _ = BackupConfig::read(&mut env);
        let err = env.finish().unwrap_err().to_string();
        assert!(err.contains("SELFHEAL_BACKUP_CONCURRENCY") && err.contains("SELFHEAL_BACKUP_POLICIES"), "{err}");
    }

    #[test]
    fn sweep_regions_are_read_once_each_and_bad_ones_are_named() {
        let mut env = Env::from_map(
            [("SELFHEAL_BACKUP_REGIONS".to_string(), "us-east-1, eu-west-1,us-east-1,,Ireland".to_string())].into(),
        );
        let cfg = BackupConfig::read(&mut env);
        assert_eq!(cfg.regions, ["us-east-1", "eu-west-1"]);
        let err = env.finish().unwrap_err().to_string();
        assert!(err.contains("SELFHEAL_BACKUP_REGIONS: \"Ireland\" is not a region code"), "{err}");
    }
}
