//! Configuration from environment variables, validated once at cold start.
//!
//! Every value is read through [`Env`], which collects *all* problems and reports them together, each
//! naming the variable and what was wrong, so a bad deploy fails on its first invocation with a message
//! that says what to fix. Functions read their own extra settings through the same [`Env`].
//!
//! The bottom layer of the library: configuration types import nothing above them (errors and the
//! shapes of AWS identifiers). The settings every function shares live here, [`CommonConfig`] with
//! its parts: [`fleet`] (where the hub acts) and [`approval`] (which moves wait for a human).

pub mod approval;
pub mod fleet;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

/// Where variables come from: the process environment or a map.
type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Reads and validates variables, remembering every problem.
pub struct Env {
    lookup: Lookup,
    problems: Vec<Error>,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        Env { lookup: Box::new(|k| std::env::var(k).ok()), problems: Vec::new() }
    }

    /// Reads from a map (tests, the drill's local runner).
    pub fn from_map(map: HashMap<String, String>) -> Self {
        Env { lookup: Box::new(move |k| map.get(k).cloned()), problems: Vec::new() }
    }

    /// The raw value, with empty strings treated as unset.
    pub fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    /// An optional string.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.raw(name)
    }

    /// A string with a default.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_string())
    }

    /// A required string; records a problem when absent.
    pub fn required(&mut self, name: &str) -> String {
        match self.raw(name) {
            Some(v) => v,
            None => {
                self.problems.push(Error::Config { name: name.to_string(), problem: "is required but not set".into() });
                String::new()
            }
        }
    }

    /// A boolean (`true/false/1/0/yes/no`) with a default.
    pub fn bool(&mut self, name: &str, default: bool) -> bool {
        match self.raw(name) {
            None => default,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => {
                    self.problems.push(Error::Config {
                        name: name.to_string(),
                        problem: format!("must be true or false, got {v:?}"),
                    });
                    default
                }
            },
        }
    }

    /// A number parsed with `FromStr`, with a default and an inclusive range.
    pub fn number<T>(&mut self, name: &str, default: T, min: T, max: T) -> T
    where
        T: FromStr + PartialOrd + Copy + std::fmt::Display,
    {
        match self.raw(name) {
            None => default,
            Some(v) => match v.parse::<T>() {
                Ok(n) if n >= min && n <= max => n,
                Ok(n) => {
                    self.problems.push(Error::Config {
                        name: name.to_string(),
                        problem: format!("must be between {min} and {max}, got {n}"),
                    });
                    default
                }
                Err(_) => {
                    self.problems.push(Error::Config {
                        name: name.to_string(),
                        problem: format!("must be a number, got {v:?}"),
                    });
                    default
                }
            },
        }
    }

    /// Seconds as a [`Duration`].
    pub fn seconds(&mut self, name: &str, default: u64, min: u64, max: u64) -> Duration {
        Duration::from_secs(self.number(name, default, min, max))
    }

    /// Records a problem found by the caller's own validation.
    pub fn problem(&mut self, name: &str, problem: impl Into<String>) {
        self.problems.push(Error::Config { name: name.to_string(), problem: problem.into() });
    }

    /// Ends reading: every recorded problem, or none.
    pub fn finish(self) -> Result<()> {
        let mut problems = self.problems;
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(Error::Many(problems)),
        }
    }
}

/// Settings every function shares.
#[derive(Debug, Clone, PartialEq)]
pub struct CommonConfig {
    /// The function's name as it appears in envelopes and the ledger.
    pub function: String,
    /// The tag key a resource must carry to be acted on.
    pub opt_in_tag: String,
    /// The value that tag must have.
    pub opt_in_value: String,
    /// Global dry-run: no mutating call on guarded resources, whatever an invocation asks.
    pub dry_run: bool,
    /// The DynamoDB action ledger.
    pub ledger_table: String,
    /// How long ledger records live.
    pub ledger_ttl: Duration,
    /// The suite's SNS topic for envelopes (optional for local runs).
    pub topic_arn: Option<String>,
    /// Minimum time between two actions on the same resource.
    pub cooldown: Duration,
    /// How long a per-resource lease lives unrenewed: the time a crashed invocation keeps others off
    /// its resource. Renewed every third of it while an action runs.
    pub lease: Duration,
    /// Most actions per group (Auto Scaling group, cluster, zone) inside `rate_window`.
    pub rate_limit: u32,
    pub rate_window: Duration,
    /// Timeouts of every AWS call the function makes.
    pub aws_timeouts: AwsTimeouts,
    /// The accounts the hub serves and how it acts in them.
    pub fleet: fleet::FleetConfig,
    /// Which large moves wait for a human's approval.
    pub approval: approval::ApprovalPolicy,
}

/// How long one AWS request may take (`attempt`) and how long a call may take with all its retries
/// (`operation`). The defaults keep a hung endpoint from eating a Lambda's budget; raise them only for
/// endpoints that answer large listings slowly (an emulator answering 10,000 volumes in one page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    pub connect: Duration,
    pub attempt: Duration,
    pub operation: Duration,
}

impl Default for AwsTimeouts {
    fn default() -> Self {
        AwsTimeouts {
            connect: Duration::from_secs(3),
            attempt: Duration::from_secs(10),
            operation: Duration::from_secs(45),
        }
    }
}

impl AwsTimeouts {
    /// Reads `SELFHEAL_AWS_ATTEMPT_TIMEOUT_SECONDS` and `SELFHEAL_AWS_OPERATION_TIMEOUT_SECONDS`; the
    /// operation timeout must leave room for at least one whole attempt.
    pub fn read(env: &mut Env) -> Self {
        let d = AwsTimeouts::default();
        let attempt = env.seconds("SELFHEAL_AWS_ATTEMPT_TIMEOUT_SECONDS", d.attempt.as_secs(), 1, 900);
        let operation = env.seconds("SELFHEAL_AWS_OPERATION_TIMEOUT_SECONDS", d.operation.as_secs(), 1, 900);
        if operation < attempt {
            env.problem(
                "SELFHEAL_AWS_OPERATION_TIMEOUT_SECONDS",
                format!(
                    "must be at least SELFHEAL_AWS_ATTEMPT_TIMEOUT_SECONDS ({}s), got {}s",
                    attempt.as_secs(),
                    operation.as_secs()
                ),
            );
        }
        AwsTimeouts { attempt, operation, ..d }
    }
}

impl CommonConfig {
    /// Reads the shared settings for `function`.
    pub fn read(env: &mut Env, function: &str) -> Self {
        CommonConfig {
            function: function.to_string(),
            opt_in_tag: env.string("SELFHEAL_OPT_IN_TAG", "selfheal:enabled"),
            opt_in_value: env.string("SELFHEAL_OPT_IN_VALUE", "true"),
            dry_run: env.bool("SELFHEAL_DRY_RUN", false),
            ledger_table: env.required("SELFHEAL_LEDGER_TABLE"),
            ledger_ttl: Duration::from_secs(env.number("SELFHEAL_LEDGER_TTL_DAYS", 90u64, 1, 3650) * 86_400),
            topic_arn: env.optional("SELFHEAL_TOPIC_ARN"),
            cooldown: env.seconds("SELFHEAL_COOLDOWN_SECONDS", 900, 0, 7 * 86_400),
            lease: env.seconds("SELFHEAL_LEASE_SECONDS", 60, 1, 900),
            rate_limit: env.number("SELFHEAL_RATE_LIMIT", 3u32, 1, 10_000),
            rate_window: env.seconds("SELFHEAL_RATE_WINDOW_SECONDS", 3600, 1, 7 * 86_400),
            aws_timeouts: AwsTimeouts::read(env),
            fleet: fleet::FleetConfig::read(env, function),
            approval: approval::ApprovalPolicy::read(env),
        }
    }

    /// Reads and validates the shared settings from the process environment.
    pub fn from_env(function: &str) -> Result<Self> {
        let mut env = Env::from_process();
        let c = Self::read(&mut env, function);
        env.finish()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_map(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn every_problem_is_reported_by_name() {
        let mut e = env(&[("SELFHEAL_DRY_RUN", "maybe"), ("SELFHEAL_RATE_LIMIT", "0")]);
        let _ = CommonConfig::read(&mut e, "x");
        let err = e.finish().unwrap_err().to_string();
        assert!(err.contains("SELFHEAL_DRY_RUN: must be true or false"), "{err}");
        assert!(err.contains("SELFHEAL_RATE_LIMIT: must be between 1 and 10000, got 0"), "{err}");
        assert!(err.contains("SELFHEAL_LEDGER_TABLE: is required"), "{err}");
    }

    #[test]
    fn defaults_apply() {
        let mut e = env(&[("SELFHEAL_LEDGER_TABLE", "t")]);
        let c = CommonConfig::read(&mut e, "x");
        e.finish().unwrap();
        assert_eq!(c.opt_in_tag, "selfheal:enabled");
        assert!(!c.dry_run);
        assert_eq!(c.cooldown, Duration::from_secs(900));
        assert_eq!(c.aws_timeouts, AwsTimeouts::default());
    }

    #[test]
    fn aws_timeouts_are_configurable_and_checked_against_each_other() {
        let mut e = env(&[("SELFHEAL_LEDGER_TABLE", "t"), ("SELFHEAL_AWS_ATTEMPT_TIMEOUT_SECONDS", "120")]);
        let _ = CommonConfig::read(&mut e, "x");
        let err = e.finish().unwrap_err().to_string();
        assert!(
            err.contains("SELFHEAL_AWS_OPERATION_TIMEOUT_SECONDS: must be at least SELFHEAL_AWS_ATTEMPT_TIMEOUT_SECONDS (120s), got 45s"),
            "{err}"
        );
        let mut e = env(&[
            ("SELFHEAL_LEDGER_TABLE", "t"),
            ("SELFHEAL_AWS_ATTEMPT_TIMEOUT_SECONDS", "120"),
            ("SELFHEAL_AWS_OPERATION_TIMEOUT_SECONDS", "600"),
        ]);
        let c = CommonConfig::read(&mut e, "x");
        e.finish().unwrap();
        assert_eq!(c.aws_timeouts.attempt, Duration::from_secs(120));
        assert_eq!(c.aws_timeouts.operation, Duration::from_secs(600));
        assert_eq!(c.aws_timeouts.connect, Duration::from_secs(3));
    }
}
