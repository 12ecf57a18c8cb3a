//! The zone evacuator's settings (`SELFHEAL_ZONE_*`): [`ZoneConfig`].

use std::time::Duration;

use crate::config::Env;

/// The evacuator's own settings, read and validated at cold start.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneConfig {
    /// `SELFHEAL_ZONE_SHIFT_EXPIRY_MINUTES` (default 60, 5..=4320, ARC's most is three days): each
    /// zonal shift's `expiresIn`. A shift the evacuator forgets (it stopped running) ends by itself.
    pub shift_expiry_minutes: u32,
    /// `SELFHEAL_ZONE_EXTEND_BEFORE_MINUTES` (default 20, 1..=1440): a shift expiring sooner than this
    /// while the AZ is still impaired is extended by another full expiry.
    pub extend_before: Duration,
    /// `SELFHEAL_ZONE_HYSTERESIS_SECONDS` (default 900, 0..=86400): how long the AZ must stay clear
    /// before the evacuation ends (shifts cancelled, subnets and capacity restored).
    pub hysteresis: Duration,
    /// `SELFHEAL_ZONE_SIGNAL_TTL_SECONDS` (default 900, 60..=86400): how long a signal without a
    /// "clear" of its own (the healer's short-circuit, a manual evacuate) counts.
    pub signal_ttl: Duration,
    /// `SELFHEAL_ZONE_MIN_SIGNALS` (default 2, 1..=1000): distinct resources whose per-AZ alarms
    /// must be in ALARM for an AZ to count as impaired on alarms alone.
    pub min_signals: u32,
    /// `SELFHEAL_ZONE_RAISE_CAPACITY` (default true): raise a group's desired capacity by the AZ's
    /// share before shifting it (within its maximum); false: refuse a group without that headroom.
    pub raise_capacity: bool,
    /// `SELFHEAL_ZONE_SUBNET_FALLBACK` (default true): a group ARC cannot shift has the AZ's subnets
    /// removed, and exactly the recorded set restored at the end.
    pub subnet_fallback: bool,
    /// `SELFHEAL_ZONE_MOVE_WRITERS` (default true): Multi-AZ RDS and Aurora writers in the AZ fail
    /// over through db-failover's guards.
    pub move_writers: bool,
    /// `SELFHEAL_ZONE_READINESS_FIX` (default false): the readiness sweep may make its safe fixes.
    pub readiness_fix: bool,
    /// `SELFHEAL_ZONE_SETTLE_SECONDS` (default 0, 0..=60): before a new evacuation starts, wait this
    /// long and judge again, so the signals of a region event delivered together (every AZ's alarms in
    /// the same breath) are all seen first and page instead of evacuating whichever AZ came first.
    pub settle: Duration,
}

impl ZoneConfig {
    /// Reads and validates the settings; problems are collected in `env`.
    pub fn read(env: &mut Env) -> Self {
        let cfg = ZoneConfig {
            shift_expiry_minutes: env.number("SELFHEAL_ZONE_SHIFT_EXPIRY_MINUTES", 60u32, 5, 4320),
            extend_before: Duration::from_secs(
                60 * u64::from(env.number("SELFHEAL_ZONE_EXTEND_BEFORE_MINUTES", 20u32, 1, 1440)),
            ),
            hysteresis: env.seconds("SELFHEAL_ZONE_HYSTERESIS_SECONDS", 900, 0, 86_400),
            signal_ttl: env.seconds("SELFHEAL_ZONE_SIGNAL_TTL_SECONDS", 900, 60, 86_400),
            min_signals: env.number("SELFHEAL_ZONE_MIN_SIGNALS", 2u32, 1, 1000),
            raise_capacity: env.bool("SELFHEAL_ZONE_RAISE_CAPACITY", true),
            subnet_fallback: env.bool("SELFHEAL_ZONE_SUBNET_FALLBACK", true),
            move_writers: env.bool("SELFHEAL_ZONE_MOVE_WRITERS", true),
            readiness_fix: env.bool("SELFHEAL_ZONE_READINESS_FIX", false),
            settle: env.seconds("SELFHEAL_ZONE_SETTLE_SECONDS", 0, 0, 60),
        };
        if cfg.extend_before.as_secs() >= u64::from(cfg.shift_expiry_minutes) * 60 {
            env.problem(
                "SELFHEAL_ZONE_EXTEND_BEFORE_MINUTES",
                format!(
                    "must be shorter than SELFHEAL_ZONE_SHIFT_EXPIRY_MINUTES ({}): every re-check would extend again",
                    cfg.shift_expiry_minutes
                ),
            );
        }
        cfg
    }

    /// ARC's `expiresIn` for a new or extended shift (`60m`).
    pub fn expires_in(&self) -> String {
        format!("{}m", self.shift_expiry_minutes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> (ZoneConfig, crate::error::Result<()>) {
        let mut env = Env::from_map(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let c = ZoneConfig::read(&mut env);
        (c, env.finish())
    }

    #[test]
    fn defaults_are_valid_and_named() {
        let (c, ok) = read(&[]);
        ok.unwrap();
        assert_eq!(c.expires_in(), "60m");
        assert_eq!(c.hysteresis, Duration::from_secs(900));
        assert_eq!(c.min_signals, 2);
        assert!(c.raise_capacity && c.subnet_fallback && c.move_writers && !c.readiness_fix);
    }

    #[test]
    fn bad_settings_are_named() {
        let (_, err) = read(&[("SELFHEAL_ZONE_SHIFT_EXPIRY_MINUTES", "5000"), ("SELFHEAL_ZONE_MIN_SIGNALS", "x")]);
        let msg = err.unwrap_err().to_string();
        assert!(
            msg.contains("SELFHEAL_ZONE_SHIFT_EXPIRY_MINUTES") && msg.contains("SELFHEAL_ZONE_MIN_SIGNALS"),
            "{msg}"
        );
        let (_, err) =
            read(&[("SELFHEAL_ZONE_SHIFT_EXPIRY_MINUTES", "10"), ("SELFHEAL_ZONE_EXTEND_BEFORE_MINUTES", "10")]);
        assert!(err.unwrap_err().to_string().contains("shorter than"));
    }
}
