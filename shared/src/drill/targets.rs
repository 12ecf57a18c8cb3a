//! Recovery targets: RTO and RPO per disruption type, the way AWS Resilience Hub's resiliency policies
//! keep them (`Software`, `Hardware`, `AZ`, `Region`, each `{rtoInSecs, rpoInSecs}`).
//!
//! Where they come from, first found wins:
//! 1. `SELFHEAL_DRILL_RESILIENCY_POLICY_ARN`: a Resilience Hub resiliency policy, read with
//!    `DescribeResiliencyPolicy`;
//! 2. `SELFHEAL_DRILL_TARGETS`: the same `policy` map as JSON, inline or `@FILE` (a path to read it from),
//!    e.g. `{"Hardware":{"rtoInSecs":300,"rpoInSecs":60}}`; disruption types it leaves out keep the
//!    defaults;
//! 3. [`Targets::defaults`]: the documented defaults (README, "Resilience scorecard").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clients::Aws;
use crate::config::Env;
use crate::error::{Error, Result};

/// Resilience Hub's disruption types, spelled as its API spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Disruption {
    Software,
    Hardware,
    #[serde(rename = "AZ")]
    Az,
    Region,
}

impl Disruption {
    pub const ALL: [Disruption; 4] = [Disruption::Software, Disruption::Hardware, Disruption::Az, Disruption::Region];

    pub fn as_str(self) -> &'static str {
        match self {
            Disruption::Software => "Software",
            Disruption::Hardware => "Hardware",
            Disruption::Az => "AZ",
            Disruption::Region => "Region",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str().eq_ignore_ascii_case(s))
    }
}

/// One disruption type's targets, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub rto_in_secs: u64,
    pub rpo_in_secs: u64,
}

/// The targets per disruption type, and where they came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    pub policy: BTreeMap<Disruption, Target>,
    /// `defaults`, `SELFHEAL_DRILL_TARGETS`, or the policy's ARN.
    pub source: String,
}

impl Targets {
    /// The documented defaults: minutes for what the suite heals alone (an instance, a database, an
    /// AZ), an hour for a region; a minute of data for a replicated database, an hour for backups.
    pub fn defaults() -> Self {
        let t = |rto_in_secs, rpo_in_secs| Target { rto_in_secs, rpo_in_secs };
        Targets {
            policy: BTreeMap::from([
                (Disruption::Software, t(300, 3600)),
                (Disruption::Hardware, t(300, 60)),
                (Disruption::Az, t(600, 60)),
                (Disruption::Region, t(3600, 300)),
            ]),
            source: "defaults".into(),
        }
    }

    pub fn get(&self, d: Disruption) -> Option<Target> {
        self.policy.get(&d).copied()
    }

    /// Reads a `policy` map (`{"AZ":{"rtoInSecs":..,"rpoInSecs":..},..}`, or a whole
    /// `{"policy":{..}}` as `describe-resiliency-policy` prints it) over the defaults.
    pub fn from_json(text: &str, source: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::malformed("drill", format!("{source}: targets are not JSON: {e}")))?;
        let map = v.get("policy").and_then(|p| p.get("policy").or(Some(p))).unwrap_or(&v);
        let map = map
            .as_object()
            .ok_or_else(|| Error::malformed("drill", format!("{source}: targets must be a map of disruption types")))?;
        let mut out = Targets::defaults();
        out.source = source.to_string();
        for (k, t) in map {
            let d = Disruption::parse(k).ok_or_else(|| {
                Error::malformed(
                    "drill",
                    format!("{source}: unknown disruption type {k:?} (Software, Hardware, AZ, Region)"),
                )
            })?;
            let secs = |field: &str| {
                t.get(field).and_then(Value::as_u64).ok_or_else(|| {
                    Error::malformed("drill", format!("{source}: {k}.{field} must be a whole number of seconds"))
                })
            };
            out.policy.insert(d, Target { rto_in_secs: secs("rtoInSecs")?, rpo_in_secs: secs("rpoInSecs")? });
        }
        Ok(out)
    }
}

/// Where the drill's targets come from, as configured.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetSource {
    Policy(String),
    Json { text: String, source: String },
    Defaults,
}

impl TargetSource {
    /// Reads `SELFHEAL_DRILL_RESILIENCY_POLICY_ARN` and `SELFHEAL_DRILL_TARGETS` (inline JSON or `@FILE`).
    pub fn read(env: &mut Env) -> Self {
        if let Some(arn) = env.optional("SELFHEAL_DRILL_RESILIENCY_POLICY_ARN") {
            if !arn.starts_with("arn:") || !arn.contains(":resiliency-policy/") {
                env.problem("SELFHEAL_DRILL_RESILIENCY_POLICY_ARN", "must be a Resilience Hub resiliency-policy ARN");
            }
            return TargetSource::Policy(arn);
        }
        match env.optional("SELFHEAL_DRILL_TARGETS") {
            None => TargetSource::Defaults,
            Some(v) => match v.strip_prefix('@') {
                Some(path) => match std::fs::read_to_string(path) {
                    Ok(text) => TargetSource::Json { text, source: path.to_string() },
                    Err(e) => {
                        env.problem("SELFHEAL_DRILL_TARGETS", format!("cannot read {path}: {e}"));
                        TargetSource::Defaults
                    }
                },
                None => {
                    if let Err(e) = Targets::from_json(&v, "SELFHEAL_DRILL_TARGETS") {
                        env.problem("SELFHEAL_DRILL_TARGETS", e.to_string());
                    }
                    TargetSource::Json { text: v, source: "SELFHEAL_DRILL_TARGETS".into() }
                }
            },
        }
    }

    /// The targets: the policy read from Resilience Hub, the JSON parsed, or the defaults.
    pub async fn load(&self, aws: &Aws) -> Result<Targets> {
        match self {
            TargetSource::Defaults => Ok(Targets::defaults()),
            TargetSource::Json { text, source } => Targets::from_json(text, source),
            TargetSource::Policy(arn) => read_policy(aws, arn).await,
        }
    }
}

/// A Resilience Hub resiliency policy's targets (`DescribeResiliencyPolicy`); disruption types the
/// policy leaves out keep the defaults.
pub async fn read_policy(aws: &Aws, arn: &str) -> Result<Targets> {
    let client = aws_sdk_resiliencehub::Client::new(&aws.sdk);
    let out = client
        .describe_resiliency_policy()
        .policy_arn(arn)
        .send()
        .await
        .map_err(|e| Error::aws("resiliencehub", "DescribeResiliencyPolicy", e))?;
    let policy = out
        .policy()
        .and_then(|p| p.policy())
        .ok_or_else(|| Error::Precondition(format!("resiliency policy {arn} has no targets")))?;
    let mut targets = Targets::defaults();
    targets.source = arn.to_string();
    for (d, f) in policy {
        if let Some(d) = Disruption::parse(d.as_str()) {
            let secs = |s: i32| s.max(0) as u64;
            targets.policy.insert(d, Target { rto_in_secs: secs(f.rto_in_secs()), rpo_in_secs: secs(f.rpo_in_secs()) });
        }
    }
    Ok(targets)
}

/// Publishes `targets` as a Resilience Hub resiliency policy named `name` (`CreateResiliencyPolicy`)
/// and returns its ARN: how a game day's targets become the conventional kind (and how the tests
/// give moto one to read back).
pub async fn create_policy(aws: &Aws, name: &str, targets: &Targets) -> Result<String> {
    use aws_sdk_resiliencehub::types::{DisruptionType, FailurePolicy, ResiliencyPolicyTier};
    let client = aws_sdk_resiliencehub::Client::new(&aws.sdk);
    let mut req = client.create_resiliency_policy().policy_name(name).tier(ResiliencyPolicyTier::MissionCritical);
    for (d, t) in &targets.policy {
        let clamp = |s: u64| s.min(i32::MAX as u64) as i32;
        req = req.policy(
            DisruptionType::from(d.as_str()),
            FailurePolicy::builder().rto_in_secs(clamp(t.rto_in_secs)).rpo_in_secs(clamp(t.rpo_in_secs)).build(),
        );
    }
    let out = req.send().await.map_err(|e| Error::aws("resiliencehub", "CreateResiliencyPolicy", e))?;
    out.policy()
        .and_then(|p| p.policy_arn())
        .map(str::to_string)
        .ok_or_else(|| Error::Precondition("CreateResiliencyPolicy returned no ARN".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_targets_override_the_defaults_per_disruption_type() {
        let t = Targets::from_json(
            r#"{"Hardware":{"rtoInSecs":120,"rpoInSecs":5},"az":{"rtoInSecs":900,"rpoInSecs":0}}"#,
            "x",
        )
        .unwrap();
        assert_eq!(t.get(Disruption::Hardware), Some(Target { rto_in_secs: 120, rpo_in_secs: 5 }));
        assert_eq!(t.get(Disruption::Az), Some(Target { rto_in_secs: 900, rpo_in_secs: 0 }));
        assert_eq!(t.get(Disruption::Region), Targets::defaults().get(Disruption::Region));
        assert_eq!(t.source, "x");
        // The CLI's whole describe-resiliency-policy output reads the same.
        let whole = r#"{"policy":{"policyArn":"a","policy":{"Region":{"rtoInSecs":7,"rpoInSecs":8}}}}"#;
        assert_eq!(Targets::from_json(whole, "y").unwrap().get(Disruption::Region).unwrap().rto_in_secs, 7);
    }

    #[test]
    fn bad_targets_are_named() {
        let e = Targets::from_json(r#"{"Cosmic":{"rtoInSecs":1,"rpoInSecs":1}}"#, "x").unwrap_err().to_string();
        assert!(e.contains("unknown disruption type \"Cosmic\""), "{e}");
        let e = Targets::from_json(r#"{"AZ":{"rtoInSecs":"soon","rpoInSecs":1}}"#, "x").unwrap_err().to_string();
        assert!(e.contains("AZ.rtoInSecs"), "{e}");
        let mut env = Env::from_map([("SELFHEAL_DRILL_TARGETS".to_string(), "{".to_string())].into());
        TargetSource::read(&mut env);
        assert!(env.finish().is_err());
        let mut env = Env::from_map([("SELFHEAL_DRILL_RESILIENCY_POLICY_ARN".to_string(), "p".to_string())].into());
        TargetSource::read(&mut env);
        assert!(env.finish().is_err());
    }

    #[test]
    fn the_policy_wins_over_json_and_json_over_defaults() {
        let arn = "arn:aws:resiliencehub:us-east-1:123456789012:resiliency-policy/p";
        let mut env = Env::from_map(
            [
                ("SELFHEAL_DRILL_RESILIENCY_POLICY_ARN".to_string(), arn.to_string()),
                ("SELFHEAL_DRILL_TARGETS".to_string(), "{}".to_string()),
            ]
            .into(),
        );
        assert_eq!(TargetSource::read(&mut env), TargetSource::Policy(arn.into()));
        let mut env = Env::from_map([("SELFHEAL_DRILL_TARGETS".to_string(), "{}".to_string())].into());
        assert!(matches!(TargetSource::read(&mut env), TargetSource::Json { .. }));
        assert_eq!(TargetSource::read(&mut Env::from_map(Default::default())), TargetSource::Defaults);
    }
}
