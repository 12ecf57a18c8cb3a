//! db-failover's own settings (`SELFHEAL_DB_*`) and the DNS record that follows the writer.

use std::time::Duration;

use crate::config::Env;

/// The application's database DNS record that follows the writer.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsRecord {
    pub zone_id: String,
    /// Fully qualified, with the trailing dot.
    pub name: String,
    pub ttl: i64,
}

/// db-failover's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DbConfig {
    /// `SELFHEAL_DB_MAX_LAG_SECONDS` (default 30): the RPO guard.
    pub max_lag_seconds: f64,
    /// `SELFHEAL_DB_DNS_ZONE_ID` + `SELFHEAL_DB_DNS_RECORD` (+ `SELFHEAL_DB_DNS_TTL`, default 60).
    pub dns: Option<DnsRecord>,
    /// `SELFHEAL_DB_WAIT_SECONDS` (default 600, at most 840): bound on waiting for the new writer.
    pub wait: Duration,
    /// `SELFHEAL_DB_POLL_SECONDS` (default 10): poll interval while waiting.
    pub poll: Duration,
    /// `SELFHEAL_DB_PREFERRED_TAG` (default `selfheal:promote-priority`): numeric, lower is preferred.
    pub preferred_tag: String,
}

impl DbConfig {
    /// Reads the settings, recording every problem in `env`.
    pub fn read(env: &mut Env) -> Self {
        let max_lag_seconds = env.number("SELFHEAL_DB_MAX_LAG_SECONDS", 30.0f64, 0.0, 86_400.0);
        let zone = env.optional("SELFHEAL_DB_DNS_ZONE_ID");
        let record = env.optional("SELFHEAL_DB_DNS_RECORD");
        let ttl = env.number("SELFHEAL_DB_DNS_TTL", 60i64, 0, 86_400);
        let dns = match (zone, record) {
            (Some(zone_id), Some(name)) => Some(DnsRecord { zone_id, name: fqdn(&name), ttl }),
            (None, None) => None,
            (Some(_), None) => {
                env.problem("SELFHEAL_DB_DNS_RECORD", "must be set when SELFHEAL_DB_DNS_ZONE_ID is set");
                None
            }
            (None, Some(_)) => {
                env.problem("SELFHEAL_DB_DNS_ZONE_ID", "must be set when SELFHEAL_DB_DNS_RECORD is set");
                None
            }
        };
        DbConfig {
            max_lag_seconds,
            dns,
            wait: env.seconds("SELFHEAL_DB_WAIT_SECONDS", 600, 0, 840),
            poll: env.seconds("SELFHEAL_DB_POLL_SECONDS", 10, 1, 300),
            preferred_tag: env.string("SELFHEAL_DB_PREFERRED_TAG", "selfheal:promote-priority"),
        }
    }
}

pub(super) fn fqdn(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    if n.ends_with('.') {
        n
    } else {
        format!("{n}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_and_validates() {
        let map =
            |pairs: &[(&str, &str)]| Env::from_map(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let mut env = map(&[]);
        let c = DbConfig::read(&mut env);
        env.finish().unwrap();
        assert_eq!(c.max_lag_seconds, 30.0);
        assert_eq!(c.wait, Duration::from_secs(600));
        assert!(c.dns.is_none());

        let mut env = map(&[("SELFHEAL_DB_DNS_ZONE_ID", "Z1"), ("SELFHEAL_DB_DNS_RECORD", "DB.Example.com")]);
        let c = DbConfig::read(&mut env);
        env.finish().unwrap();
        assert_eq!(c.dns.unwrap().name, "db.example.com.");

        let mut env = map(&[("SELFHEAL_DB_DNS_ZONE_ID", "Z1"), ("SELFHEAL_DB_MAX_LAG_SECONDS", "-1")]);
        let _ = DbConfig::read(&mut env);
        let err = env.finish().unwrap_err().to_string();
        assert!(err.contains("SELFHEAL_DB_DNS_RECORD"), "{err}");
        assert!(err.contains("SELFHEAL_DB_MAX_LAG_SECONDS"), "{err}");
    }
}
