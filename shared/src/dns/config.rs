//! Configuration: the managed records (`SELFHEAL_DNS_RECORDS` entries, [`RecordRef`]) and
//! dns-failover's own settings ([`DnsConfig`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Env;

/// One managed record: `zone/name[/TYPE][=standby[|standby...]]` in `SELFHEAL_DNS_RECORDS`.
///
/// `zone` is a hosted zone name (ends with `.`) or a hosted zone id; `TYPE` defaults to `A`; the
/// standby values are only used for simple (non-routing-policy) records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRef {
    pub zone: String,
    pub name: String,
    pub rtype: String,
    #[serde(default)]
    pub standby: Vec<String>,
}

impl RecordRef {
    /// A record reference with no standby values.
    pub fn new(zone: &str, name: &str, rtype: &str) -> Self {
        RecordRef {
            zone: zone.trim().to_string(),
            name: normalise_name(name),
            rtype: rtype.to_uppercase(),
            standby: vec![],
        }
    }

    /// Parses one `SELFHEAL_DNS_RECORDS` entry.
    pub fn parse(entry: &str) -> std::result::Result<Self, String> {
        let entry = entry.trim();
        let (spec, standby) = match entry.split_once('=') {
            Some((s, v)) => (s, v.split('|').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect()),
            None => (entry, vec![]),
        };
        let parts: Vec<&str> = spec.split('/').map(str::trim).collect();
        let (zone, name, rtype) = match parts.as_slice() {
            [z, n] => (*z, *n, "A"),
            [z, n, t] => (*z, *n, *t),
            _ => return Err(format!("entry {entry:?} must be zone/name[/TYPE][=standby|...]")),
        };
        if zone.is_empty() || name.is_empty() || rtype.is_empty() {
            return Err(format!("entry {entry:?} has an empty zone, name or type"));
        }
        let r = RecordRef { standby, ..RecordRef::new(zone, name, rtype) };
        let zone_name = normalise_name(zone);
        if zone.ends_with('.') && !(r.name == zone_name || r.name.ends_with(&format!(".{zone_name}"))) {
            return Err(format!("entry {entry:?}: {} is not inside zone {zone_name}", r.name));
        }
        Ok(r)
    }

    /// `name type` for messages.
    pub fn label(&self) -> String {
        format!("{} {} in zone {}", self.name, self.rtype, self.zone)
    }
}

/// Lower-case with a trailing dot, as Route 53 lists names.
pub fn normalise_name(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    if n.ends_with('.') {
        n
    } else {
        format!("{n}.")
    }
}

/// dns-failover's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    /// `SELFHEAL_DNS_RECORDS`: the managed records (comma-separated entries, see [`RecordRef::parse`]).
    pub records: Vec<RecordRef>,
    /// `SELFHEAL_DNS_FAILBACK_AFTER_SECONDS` (default 1800): automatic failback waits this long after a
    /// failover.
    pub failback_after: Duration,
    /// `SELFHEAL_DNS_AUTO_FAILBACK` (default true): fail back on an OK alarm or a schedule sweep.
    pub auto_failback: bool,
    /// `SELFHEAL_DNS_INSYNC_TIMEOUT_SECONDS` (default 120): how long to wait for `GetChange` INSYNC.
    pub insync_timeout: Duration,
    /// `SELFHEAL_DNS_INSYNC_POLL_SECONDS` (default 5).
    pub insync_poll: Duration,
}

impl DnsConfig {
    /// Reads the settings, recording every problem in `env`.
    pub fn read(env: &mut Env) -> Self {
        let raw = env.required("SELFHEAL_DNS_RECORDS");
        let mut records = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match RecordRef::parse(entry) {
                Ok(r) => records.push(r),
                Err(p) => env.problem("SELFHEAL_DNS_RECORDS", p),
            }
        }
        if records.is_empty() && !raw.is_empty() {
            env.problem("SELFHEAL_DNS_RECORDS", "lists no record");
        }
        DnsConfig {
            records,
            failback_after: env.seconds("SELFHEAL_DNS_FAILBACK_AFTER_SECONDS", 1800, 0, 7 * 86_400),
            auto_failback: env.bool("SELFHEAL_DNS_AUTO_FAILBACK", true),
            insync_timeout: env.seconds("SELFHEAL_DNS_INSYNC_TIMEOUT_SECONDS", 120, 1, 900),
            insync_poll: env.seconds("SELFHEAL_DNS_INSYNC_POLL_SECONDS", 5, 1, 60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_bad_ones_are_named() {
        let r = RecordRef::parse("example.com./App.Example.com").unwrap();
        assert_eq!((r.zone.as_str(), r.name.as_str(), r.rtype.as_str()), ("example.com.", "app.example.com.", "A"));
        let r = RecordRef::parse("Z123/db.example.com./cname=standby.example.com.|x").unwrap();
        assert_eq!(r.rtype, "CNAME");
        assert_eq!(r.standby, vec!["standby.example.com.", "x"]);
        assert!(RecordRef::parse("example.com.").unwrap_err().contains("zone/name"));
        assert!(RecordRef::parse("example.com./app.other.org.").unwrap_err().contains("not inside zone"));

        let mut env =
            Env::from_map([("SELFHEAL_DNS_RECORDS".to_string(), "bad, ok.com./a.ok.com.".to_string())].into());
        let c = DnsConfig::read(&mut env);
        assert_eq!(c.records.len(), 1);
        let err = env.finish().unwrap_err().to_string();
        assert!(err.contains("SELFHEAL_DNS_RECORDS") && err.contains("\"bad\""), "{err}");
    }
}
