//! The healer's settings (`SELFHEAL_HEALER_*`): [`HealerConfig`] and how group members are replaced
//! ([`AsgMethod`]).

use std::time::Duration;

use serde::Serialize;

use crate::config::Env;

/// How an Auto Scaling group member is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AsgMethod {
    /// `TerminateInstanceInAutoScalingGroup` without decrementing desired capacity.
    Terminate,
    /// `SetInstanceHealth Unhealthy`: the group's own replacement.
    SetHealth,
}

/// The healer's own settings (`SELFHEAL_HEALER_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct HealerConfig {
    /// `SELFHEAL_HEALER_MAX_UNHEALTHY_PERCENT` (default 40, 1..=100).
    pub max_unhealthy_percent: u32,
    /// `SELFHEAL_HEALER_MIN_UNHEALTHY` (default 2): the short-circuit never trips below this many.
    pub min_unhealthy: u32,
    /// `SELFHEAL_HEALER_WAIT_SECONDS` (default 120, 0..=840): bounded wait for a replacement/state.
    pub wait: Duration,
    /// `SELFHEAL_HEALER_POLL_SECONDS` (default 5, 1..=60).
    pub poll: Duration,
    /// `SELFHEAL_HEALER_ALARM_METRICS` (comma-separated).
    pub alarm_metrics: Vec<String>,
    /// `SELFHEAL_HEALER_ASG_METHOD`: `terminate` (default) or `set-health`.
    pub asg_method: AsgMethod,
    /// `SELFHEAL_HEALER_ESCALATION_WINDOW_SECONDS` (default 21600).
    pub escalation_window: Duration,
    /// `SELFHEAL_HEALER_MAINTENANCE_TAG` (default `selfheal:maintenance`): any value excludes.
    pub maintenance_tag: String,
    /// `SELFHEAL_HEALER_AUTO_RECOVERY_GRACE_SECONDS` (default 900, 0..=21600; 0 turns the stand-down
    /// off): how long after a standalone instance's system status check became impaired EC2's
    /// simplified automatic recovery is left to work before the healer acts.
    pub auto_recovery_grace: Duration,
}

impl HealerConfig {
    /// Reads and validates the healer's settings; problems are collected in `env`.
    pub fn read(env: &mut Env) -> Self {
        let metrics = env.string(
            "SELFHEAL_HEALER_ALARM_METRICS",
            "StatusCheckFailed,StatusCheckFailed_System,StatusCheckFailed_Instance",
        );
        let alarm_metrics: Vec<String> =
            metrics.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_string).collect();
        if alarm_metrics.is_empty() {
            env.problem("SELFHEAL_HEALER_ALARM_METRICS", "lists no metric");
        }
        let method = env.string("SELFHEAL_HEALER_ASG_METHOD", "terminate");
        let asg_method = match method.as_str() {
            "terminate" => AsgMethod::Terminate,
            "set-health" => AsgMethod::SetHealth,
            other => {
                env.problem("SELFHEAL_HEALER_ASG_METHOD", format!("must be terminate or set-health, got {other:?}"));
                AsgMethod::Terminate
            }
        };
        HealerConfig {
            max_unhealthy_percent: env.number("SELFHEAL_HEALER_MAX_UNHEALTHY_PERCENT", 40u32, 1, 100),
            min_unhealthy: env.number("SELFHEAL_HEALER_MIN_UNHEALTHY", 2u32, 1, 10_000),
            wait: env.seconds("SELFHEAL_HEALER_WAIT_SECONDS", 120, 0, 840),
            poll: env.seconds("SELFHEAL_HEALER_POLL_SECONDS", 5, 1, 60),
            alarm_metrics,
            asg_method,
            escalation_window: env.seconds("SELFHEAL_HEALER_ESCALATION_WINDOW_SECONDS", 21_600, 60, 30 * 86_400),
            maintenance_tag: env.string("SELFHEAL_HEALER_MAINTENANCE_TAG", "selfheal:maintenance"),
            auto_recovery_grace: env.seconds("SELFHEAL_HEALER_AUTO_RECOVERY_GRACE_SECONDS", 900, 0, 21_600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::healer::test_support::cfg;

    #[test]
    fn config_defaults_and_errors() {
        let c = cfg();
        assert_eq!(c.max_unhealthy_percent, 40);
        assert_eq!(c.wait, Duration::from_secs(120));
        assert_eq!(c.alarm_metrics.len(), 3);
        assert_eq!(c.asg_method, AsgMethod::Terminate);
        assert_eq!(c.auto_recovery_grace, Duration::from_secs(900));
        let mut env = Env::from_map(
            [
                ("SELFHEAL_HEALER_MAX_UNHEALTHY_PERCENT".to_string(), "0".to_string()),
                ("SELFHEAL_HEALER_ASG_METHOD".to_string(), "nuke".to_string()),
            ]
            .into(),
        );
        let _ = HealerConfig::read(&mut env);
        let err = env.finish().unwrap_err().to_string();
        assert!(err.contains("SELFHEAL_HEALER_MAX_UNHEALTHY_PERCENT"), "{err}");
        assert!(err.contains("SELFHEAL_HEALER_ASG_METHOD"), "{err}");
    }
}
