//! instance-healer: replaces unhealthy EC2 instances, safely.
//!
//! # Triggers
//! - a CloudWatch alarm in `ALARM` on one of the configured status-check metrics (`StatusCheckFailed`,
//!   `StatusCheckFailed_System`, `StatusCheckFailed_Instance`) with an `InstanceId` dimension, via SNS,
//!   EventBridge or a direct alarm action (an alarm back in `OK` is recorded as skipped);
//! - an EC2 state-change event for `stopped` or `terminated` (other states are recorded as skipped);
//! - an AWS Health `AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED` / `AWS_EC2_INSTANCE_STOP_SCHEDULED` event;
//! - a manual invocation `{"source":"selfheal.manual","action":"replace","target":"i-..."}` with
//!   optional `force` (skip the health re-check), `dryRun`, and `params.step`
//!   (`reboot` | `stop-start` | `replace`) to pick the standalone step explicitly.
//!
//! # What it does
//! - **In an Auto Scaling group**: `TerminateInstanceInAutoScalingGroup` with
//!   `ShouldDecrementDesiredCapacity=false` (or `SetInstanceHealth Unhealthy` with
//!   `SELFHEAL_HEALER_ASG_METHOD=set-health`), so the group launches the replacement and keeps its
//!   capacity and AZ balance; then polls the group (bounded by `SELFHEAL_HEALER_WAIT_SECONDS`) until a
//!   new member appears and reports its id. No replacement in time is a failure (critical).
//! - **Standalone**: an escalation ladder, one step per admitted action. Instance-level failures:
//!   reboot → stop/start → replace. System-level failures and scheduled retirement: stop/start (new
//!   hardware) → replace. A stopped instance: start → replace. A terminated instance: replace. The
//!   step is the ladder position equal to the number of this function's `acted` steps on the
//!   instance inside `SELFHEAL_HEALER_ESCALATION_WINDOW_SECONDS` (read from the ledger's audit
//!   trail), clamped to the last step; a manual `params.step` overrides it. Instance-store-backed
//!   instances skip stop/start. *Replace* launches a twin (from its launch template when it was
//!   launched from one, else from its AMI, type, subnet, security groups, IAM profile and key; tags
//!   copied except `aws:*`, plus `selfheal:replaces`), waits for it to run, moves any Elastic IP, and
//!   only then terminates the old instance. The launch carries a client token derived from the event,
//!   so a retry does not launch a second twin.
//!
//! # Guards, in order (each refusal is audited and published)
//! 1. a redelivery of an event already claimed is a `duplicate` (guardrails);
//! 2. the instance must exist (else an error naming it), carry the opt-in tag, and not carry the
//!    maintenance tag (`SELFHEAL_HEALER_MAINTENANCE_TAG`, default `selfheal:maintenance`);
//! 3. refused when already shutting down / terminated / in an Auto Scaling `Terminating*` or other
//!    non-`InService` lifecycle state, protected from scale-in, or (for state-change events) stopped
//!    by a user (`StateTransitionReason` "User initiated": a deploy or maintenance, not a failure);
//! 4. **the health re-check** (alarm, state-change and un-forced manual triggers; Health events and
//!    `force` skip it). The rule: the instance is *still broken* when its state is not `running`, or
//!    DescribeInstanceStatus reports its instance or system status `impaired`, or its Auto Scaling
//!    HealthStatus is `Unhealthy`. Otherwise it is *healthy again* and nothing is done. (An alarm is
//!    not itself evidence: CloudWatch status checks lag, and acting on a stale alarm would replace a
//!    healthy instance.) Status `insufficient-data`/`initializing` is not counted as broken;
//! 5. **the maxUnhealthy short-circuit** (like Kubernetes MachineHealthCheck): over the instance's
//!    group (the Auto Scaling group, or for standalone instances the opted-in standalone instances in
//!    the same VPC and AZ), and over each AZ of that group, when at least
//!    `SELFHEAL_HEALER_MIN_UNHEALTHY` (default 2) members are broken by the rule above (the target
//!    counts as broken) and they are more than `SELFHEAL_HEALER_MAX_UNHEALTHY_PERCENT` (default 40)
//!    of the members, nothing is replaced and a critical envelope with the evidence pages a human:
//!    the cause is likely upstream. `force` does not skip this;
//! 6. cooldown per instance and rate limit per group (the group name, or `standalone`), dry-run
//!    (describe-only plan): the guardrails of [`crate::guardrails`].
//!
//! IAM: `ec2:DescribeInstances`, `ec2:DescribeInstanceStatus`, `ec2:DescribeInstanceAttribute`,
//! `ec2:DescribeAddresses`, `ec2:RebootInstances`, `ec2:StopInstances`, `ec2:StartInstances`,
//! `ec2:RunInstances`, `ec2:CreateTags`, `ec2:AssociateAddress`, `ec2:TerminateInstances`,
//! `iam:PassRole` (replacement's instance profile), `autoscaling:DescribeAutoScalingInstances`,
//! `autoscaling:DescribeAutoScalingGroups`, `autoscaling:TerminateInstanceInAutoScalingGroup`,
//! `autoscaling:SetInstanceHealth`, plus the ledger table and topic.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::config::{CommonConfig, Env};
use crate::context::Ctx;
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::{Error, Result};
use crate::guardrails::{effective_dry_run, is_opted_in, ActionReport, ActionRequest};
use crate::trigger::{AlarmState, Trigger, TriggerKind};

/// The function's name in envelopes and the ledger.
pub const FUNCTION: &str = "instance-healer";

/// The one action name every healing step is claimed under, so a redelivered event is a duplicate
/// whichever step the ladder would pick now.
pub const ACTION: &str = "heal-instance";

/// The group name rate limits use for instances outside any Auto Scaling group.
pub const STANDALONE: &str = "standalone";

/// The tag a replacement carries naming the instance it replaced.
pub const REPLACES_TAG: &str = "selfheal:replaces";

const ASG_TAG: &str = "aws:autoscaling:groupName";
const LT_ID_TAG: &str = "aws:ec2launchtemplate:id";
const LT_VERSION_TAG: &str = "aws:ec2launchtemplate:version";

// ---------------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------------

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
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Decisions (pure)
// ---------------------------------------------------------------------------------------------------

/// What kind of failure a trigger reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// `StatusCheckFailed_System`: the host.
    System,
    /// `StatusCheckFailed_Instance`: the OS/instance.
    Instance,
    /// `StatusCheckFailed` or a manual request: not yet known which.
    Unknown,
    /// An instance stopped.
    Stopped,
    /// An instance was terminated.
    Terminated,
    /// AWS scheduled the instance's retirement (or a stop).
    Retirement,
}

/// One standalone healing step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Reboot,
    StopStart,
    Replace,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Reboot => "reboot",
            Step::StopStart => "stop-start",
            Step::Replace => "replace",
        }
    }

    pub fn parse(s: &str) -> Option<Step> {
        match s {
            "reboot" => Some(Step::Reboot),
            "stop-start" => Some(Step::StopStart),
            "replace" => Some(Step::Replace),
            _ => None,
        }
    }
}

/// A request to heal one instance, derived from a trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct HealRequest {
    pub instance_id: String,
    pub failure: Failure,
    /// Whether to re-check health before acting (alarms, state changes, un-forced manual requests).
    pub recheck: bool,
    /// The invocation's dry-run request (manual only).
    pub dry_run: Option<bool>,
    /// A manual `params.step`.
    pub step: Option<Step>,
    /// Why, for the envelope.
    pub reason: String,
    /// The trigger was an EC2 state-change event (user-initiated stops are left alone).
    pub from_state_change: bool,
}

/// What a trigger asks of the healer.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    Heal(HealRequest),
    /// Nothing to do; recorded as skipped against `target` (an instance id or alarm name).
    Ignore {
        target: String,
        reason: String,
    },
}

fn is_instance_id(s: &str) -> bool {
    s.starts_with("i-") && s.len() > 2 && s[2..].chars().all(|c| c.is_ascii_hexdigit())
}

/// Turns a trigger into what the healer should do. Pure; errors name the problem.
pub fn intake(t: &Trigger, cfg: &HealerConfig) -> Result<Vec<Intake>> {
    match &t.kind {
        TriggerKind::Alarm(a) => {
            let metric = a.metric_name.clone().unwrap_or_default();
            if !cfg.alarm_metrics.contains(&metric) {
                return Err(Error::UnsupportedTrigger {
                    function: FUNCTION,
                    trigger: format!(
                        "alarm {} on metric {metric:?} (configured metrics: {})",
                        a.name,
                        cfg.alarm_metrics.join(", ")
                    ),
                });
            }
            let Some(id) = a.dimension("InstanceId") else {
                return Err(Error::malformed(
                    "CloudWatch alarm",
                    format!("alarm {} has no InstanceId dimension; the healer acts on one instance per alarm", a.name),
                ));
            };
            if a.state != AlarmState::Alarm {
                return Ok(vec![Intake::Ignore {
                    target: id.to_string(),
                    reason: format!("alarm {} is {:?}, not ALARM: nothing to heal", a.name, a.state),
                }]);
            }
            let failure = match metric.as_str() {
                "StatusCheckFailed_System" => Failure::System,
                "StatusCheckFailed_Instance" => Failure::Instance,
                _ => Failure::Unknown,
            };
            Ok(vec![Intake::Heal(HealRequest {
                instance_id: id.to_string(),
                failure,
                recheck: true,
                dry_run: None,
                step: None,
                reason: format!("alarm {} ({metric}) is in ALARM: {}", a.name, a.reason),
                from_state_change: false,
            })])
        }
        TriggerKind::InstanceStateChange { instance_id, state } => {
            let failure = match state.as_str() {
                "stopped" => Failure::Stopped,
                "terminated" => Failure::Terminated,
                other => {
                    return Ok(vec![Intake::Ignore {
                        target: instance_id.clone(),
                        reason: format!("instance state {other} is not a failure the healer acts on"),
                    }])
                }
            };
            Ok(vec![Intake::Heal(HealRequest {
                instance_id: instance_id.clone(),
                failure,
                recheck: failure == Failure::Stopped,
                dry_run: None,
                step: None,
                reason: format!("instance {instance_id} entered state {state}"),
                from_state_change: true,
            })])
        }
        TriggerKind::Health(h) => {
            const CODES: [&str; 2] = ["AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED", "AWS_EC2_INSTANCE_STOP_SCHEDULED"];
            if h.service != "EC2" || !CODES.contains(&h.event_type_code.as_str()) {
                return Err(Error::UnsupportedTrigger {
                    function: FUNCTION,
                    trigger: format!("AWS Health {} {}", h.service, h.event_type_code),
                });
            }
            let ids: Vec<&String> = h.affected_entities.iter().filter(|e| is_instance_id(e)).collect();
            if ids.is_empty() {
                return Err(Error::malformed("AWS Health Event", "no affected EC2 instance id in affectedEntities"));
            }
            Ok(ids
                .into_iter()
                .map(|id| {
                    Intake::Heal(HealRequest {
                        instance_id: id.clone(),
                        failure: Failure::Retirement,
                        recheck: false,
                        dry_run: None,
                        step: None,
                        reason: format!("AWS Health {} ({})", h.event_type_code, h.event_arn),
                        from_state_change: false,
                    })
                })
                .collect())
        }
        TriggerKind::Manual(m) => {
            if m.action != "replace" {
                return Err(Error::malformed(
                    "manual",
                    format!("{FUNCTION} understands action \"replace\", got {:?}", m.action),
                ));
            }
            let target = m.target.as_deref().unwrap_or_default().trim();
            if target.is_empty() {
                return Err(Error::malformed("manual", "target (the instance id to replace) is required"));
            }
            if !is_instance_id(target) {
                return Err(Error::malformed("manual", format!("target {target:?} is not an EC2 instance id (i-...)")));
            }
            let mut step = None;
            for (k, v) in &m.params {
                match (k.as_str(), v.as_str()) {
                    ("step", Some(s)) => {
                        step = Some(Step::parse(s).ok_or_else(|| {
                            Error::malformed(
                                "manual",
                                format!("params.step must be reboot, stop-start or replace, got {s:?}"),
                            )
                        })?)
                    }
                    ("step", None) => return Err(Error::malformed("manual", "params.step must be a string")),
                    (other, _) => {
                        return Err(Error::malformed("manual", format!("unknown params.{other} (allowed: step)")))
                    }
                }
            }
            let why = m.reason.clone().unwrap_or_else(|| "no reason given".into());
            Ok(vec![Intake::Heal(HealRequest {
                instance_id: target.to_string(),
                failure: Failure::Unknown,
                recheck: !m.force,
                dry_run: m.dry_run,
                step,
                reason: format!("manual replace{}: {why}", if m.force { " (forced)" } else { "" }),
                from_state_change: false,
            })])
        }
        other => Err(Error::UnsupportedTrigger { function: FUNCTION, trigger: other.name().to_string() }),
    }
}

/// Health facts about one instance, from EC2 and (when a member) Auto Scaling.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub instance_id: String,
    pub state: String,
    pub az: Option<String>,
    pub instance_status: Option<String>,
    pub system_status: Option<String>,
    pub asg_health: Option<String>,
    pub lifecycle: Option<String>,
}

impl Health {
    /// Why the instance counts as broken under the module's rule; empty when it is healthy.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.state != "running" {
            p.push(format!("state {}", self.state));
        }
        if self.instance_status.as_deref() == Some("impaired") {
            p.push("instance status impaired".into());
        }
        if self.system_status.as_deref() == Some("impaired") {
            p.push("system status impaired".into());
        }
        if self.asg_health.as_deref().is_some_and(|h| h.eq_ignore_ascii_case("unhealthy")) {
            p.push("Auto Scaling health Unhealthy".into());
        }
        p
    }

    /// Shutting down, terminated, or leaving its group.
    pub fn is_going_away(&self) -> bool {
        matches!(self.state.as_str(), "shutting-down" | "terminated")
            || self.lifecycle.as_deref().is_some_and(|l| l.starts_with("Terminating") || l.starts_with("Detach"))
    }
}

/// The evidence of a tripped short-circuit.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShortCircuit {
    /// `group` or `az:<name>`.
    pub scope: String,
    pub unhealthy: usize,
    pub members: usize,
    pub max_percent: u32,
    /// Each broken member and why.
    pub evidence: BTreeMap<String, Vec<String>>,
}

/// The maxUnhealthy rule over `members` (the target counts as broken). `None` when healing may go on.
pub fn short_circuit(members: &[Health], target: &str, max_percent: u32, min_unhealthy: u32) -> Option<ShortCircuit> {
    let live: Vec<&Health> = members.iter().filter(|h| h.instance_id == target || !h.is_going_away()).collect();
    let broken = |h: &Health| -> Vec<String> {
        let mut p = h.problems();
        if h.instance_id == target && p.is_empty() {
            p.push("the instance being healed".into());
        }
        p
    };
    let check = |scope: String, set: Vec<&Health>| -> Option<ShortCircuit> {
        let evidence: BTreeMap<String, Vec<String>> =
            set.iter().map(|h| (h.instance_id.clone(), broken(h))).filter(|(_, p)| !p.is_empty()).collect();
        let (u, n) = (evidence.len(), set.len());
        let trips = u >= min_unhealthy as usize && n > 0 && (u as u64) * 100 > u64::from(max_percent) * n as u64;
        trips.then_some(ShortCircuit { scope, unhealthy: u, members: n, max_percent, evidence })
    };
    let mut scoped: Vec<&Health> = live.clone();
    if !scoped.iter().any(|h| h.instance_id == target) {
        return None; // the caller always includes the target; without it there is nothing to judge
    }
    if let Some(sc) = check("group".into(), std::mem::take(&mut scoped)) {
        return Some(sc);
    }
    let mut by_az: BTreeMap<&str, Vec<&Health>> = BTreeMap::new();
    for h in &live {
        by_az.entry(h.az.as_deref().unwrap_or("unknown")).or_default().push(h);
    }
    by_az.into_iter().find_map(|(az, set)| check(format!("az:{az}"), set))
}

/// The standalone escalation ladder for a failure.
pub fn ladder(failure: Failure, state: &str, ebs_backed: bool) -> Vec<Step> {
    let mut steps = match (failure, state) {
        (Failure::Terminated, _) | (_, "terminated") => vec![Step::Replace],
        (_, "stopped") | (Failure::Stopped, _) => vec![Step::StopStart, Step::Replace],
        (Failure::System | Failure::Retirement, _) => vec![Step::StopStart, Step::Replace],
        (Failure::Instance | Failure::Unknown, _) => vec![Step::Reboot, Step::StopStart, Step::Replace],
    };
    // Instance-store roots cannot stop; a stopped/terminated one has nothing to start either.
    if !ebs_backed {
        steps.retain(|s| *s != Step::StopStart);
    }
    if steps.is_empty() {
        steps.push(Step::Replace);
    }
    steps
}

/// The step to take: a manual choice, else the ladder position after `prior` acted steps.
pub fn choose_step(ladder: &[Step], prior: usize, requested: Option<Step>) -> Step {
    if let Some(s) = requested {
        return s;
    }
    ladder.get(prior).or(ladder.last()).copied().unwrap_or(Step::Replace)
}

/// Refines an unknown failure from the status checks: an impaired system status means the host.
pub fn refine(failure: Failure, health: &Health) -> Failure {
    match failure {
        Failure::Unknown if health.system_status.as_deref() == Some("impaired") => Failure::System,
        Failure::Unknown if health.instance_status.as_deref() == Some("impaired") => Failure::Instance,
        f => f,
    }
}

/// What an instance looks like: enough to judge it and to launch its twin.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceFacts {
    pub id: String,
    pub state: String,
    pub state_reason: Option<String>,
    pub az: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub image_id: Option<String>,
    pub instance_type: Option<String>,
    pub security_group_ids: Vec<String>,
    pub iam_profile_arn: Option<String>,
    pub key_name: Option<String>,
    pub tags: Vec<(String, String)>,
    pub ebs_backed: bool,
}

impl InstanceFacts {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The launch template (id, version) the instance was launched from, if any.
    pub fn launch_template(&self) -> Option<(&str, &str)> {
        Some((self.tag(LT_ID_TAG)?, self.tag(LT_VERSION_TAG)?))
    }

    /// Tags a replacement copies: everything but the reserved `aws:` tags, plus [`REPLACES_TAG`].
    pub fn replacement_tags(&self) -> Vec<(String, String)> {
        let mut tags: Vec<(String, String)> =
            self.tags.iter().filter(|(k, _)| !k.starts_with("aws:") && k != REPLACES_TAG).cloned().collect();
        tags.push((REPLACES_TAG.to_string(), self.id.clone()));
        tags
    }
}

/// A stable RunInstances client token (≤ 64 ASCII chars) for one (instance, event): FNV-1a.
pub fn client_token(instance_id: &str, event_id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in instance_id.bytes().chain([0u8]).chain(event_id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let id: String = instance_id.chars().take(40).collect();
    format!("selfheal-{id}-{h:016x}")
}

// ---------------------------------------------------------------------------------------------------
// EC2 layer
// ---------------------------------------------------------------------------------------------------

pub mod ec2 {
    //! The EC2 calls the healer makes.

    use aws_sdk_ec2::error::ProvideErrorMetadata;
    use aws_sdk_ec2::types::{
        Filter, IamInstanceProfileSpecification, InstanceAttributeName, InstanceType, LaunchTemplateSpecification,
        ResourceType, Tag, TagSpecification,
    };
    use aws_sdk_ec2::Client;

    use super::{Health, InstanceFacts, ASG_TAG};
    use crate::error::{Error, Result};

    fn facts(i: &aws_sdk_ec2::types::Instance) -> InstanceFacts {
        InstanceFacts {
            id: i.instance_id().unwrap_or_default().to_string(),
            state: i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default(),
            state_reason: i.state_transition_reason().filter(|s| !s.is_empty()).map(str::to_string),
            az: i.placement().and_then(|p| p.availability_zone()).map(str::to_string),
            vpc_id: i.vpc_id().map(str::to_string),
            subnet_id: i.subnet_id().map(str::to_string),
            image_id: i.image_id().map(str::to_string),
            instance_type: i.instance_type().map(|t| t.as_str().to_string()),
            security_group_ids: i.security_groups().iter().filter_map(|g| g.group_id()).map(str::to_string).collect(),
            iam_profile_arn: i.iam_instance_profile().and_then(|p| p.arn()).map(str::to_string),
            key_name: i.key_name().map(str::to_string),
            tags: i
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
                .collect(),
            ebs_backed: i.root_device_type().map(|d| d.as_str() == "ebs").unwrap_or(true),
        }
    }

    /// One instance, or `None` when EC2 does not know the id.
    pub async fn describe(ec2: &Client, id: &str) -> Result<Option<InstanceFacts>> {
        match ec2.describe_instances().instance_ids(id).send().await {
            Ok(out) => Ok(out.reservations().iter().flat_map(|r| r.instances()).map(facts).find(|f| f.id == id)),
            Err(e) => {
                let code = e.as_service_error().and_then(|se| se.code()).unwrap_or_default().to_string();
                if code.starts_with("InvalidInstanceID") {
                    Ok(None)
                } else {
                    Err(Error::aws("ec2", "DescribeInstances", e))
                }
            }
        }
    }

    /// Opted-in standalone instances (no Auto Scaling group) in one VPC and AZ, not terminated.
    pub async fn standalone_peers(
        ec2: &Client,
        opt_in: (&str, &str),
        vpc: &str,
        az: &str,
    ) -> Result<Vec<InstanceFacts>> {
        let filters = [
            Filter::builder().name(format!("tag:{}", opt_in.0)).values(opt_in.1).build(),
            Filter::builder().name("vpc-id").values(vpc).build(),
            Filter::builder().name("availability-zone").values(az).build(),
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build(),
        ];
        let mut pages = ec2.describe_instances().set_filters(Some(filters.to_vec())).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Error::aws("ec2", "DescribeInstances", e))?;
            out.extend(page.reservations().iter().flat_map(|r| r.instances()).map(facts));
        }
        out.retain(|f| f.tag(ASG_TAG).is_none());
        Ok(out)
    }

    /// What DescribeInstanceStatus says of one instance.
    #[derive(Debug, Clone, PartialEq, Default)]
    pub struct StatusCheck {
        pub state: Option<String>,
        pub instance: Option<String>,
        pub system: Option<String>,
    }

    /// Status checks (`ok`/`impaired`/...) and states of instances, by id (all states included).
    pub async fn statuses(ec2: &Client, ids: &[String]) -> Result<std::collections::BTreeMap<String, StatusCheck>> {
        let mut out = std::collections::BTreeMap::new();
        for chunk in ids.chunks(100) {
            let res = ec2
                .describe_instance_status()
                .set_instance_ids(Some(chunk.to_vec()))
                .include_all_instances(true)
                .send()
                .await
                .map_err(|e| Error::aws("ec2", "DescribeInstanceStatus", e))?;
            for s in res.instance_statuses() {
                let Some(id) = s.instance_id() else { continue };
                out.insert(
                    id.to_string(),
                    StatusCheck {
                        state: s.instance_state().and_then(|x| x.name()).map(|x| x.as_str().to_string()),
                        instance: s.instance_status().and_then(|x| x.status()).map(|x| x.as_str().to_string()),
                        system: s.system_status().and_then(|x| x.status()).map(|x| x.as_str().to_string()),
                    },
                );
            }
        }
        Ok(out)
    }

    /// Health facts for an instance given its EC2 facts and status checks.
    pub fn health_of(f: &InstanceFacts, statuses: &std::collections::BTreeMap<String, StatusCheck>) -> Health {
        let s = statuses.get(&f.id).cloned().unwrap_or_default();
        Health {
            instance_id: f.id.clone(),
            state: f.state.clone(),
            az: f.az.clone(),
            instance_status: s.instance,
            system_status: s.system,
            asg_health: None,
            lifecycle: None,
        }
    }

    /// Whether termination protection is on.
    pub async fn termination_protected(ec2: &Client, id: &str) -> Result<bool> {
        let out = ec2
            .describe_instance_attribute()
            .instance_id(id)
            .attribute(InstanceAttributeName::DisableApiTermination)
            .send()
            .await
            .map_err(|e| Error::aws("ec2", "DescribeInstanceAttribute", e))?;
        Ok(out.disable_api_termination().and_then(|v| v.value()).unwrap_or(false))
    }

    pub async fn reboot(ec2: &Client, id: &str) -> Result<()> {
        ec2.reboot_instances().instance_ids(id).send().await.map_err(|e| Error::aws("ec2", "RebootInstances", e))?;
        Ok(())
    }

    pub async fn stop(ec2: &Client, id: &str) -> Result<()> {
        ec2.stop_instances().instance_ids(id).send().await.map_err(|e| Error::aws("ec2", "StopInstances", e))?;
        Ok(())
    }

    pub async fn start(ec2: &Client, id: &str) -> Result<()> {
        ec2.start_instances().instance_ids(id).send().await.map_err(|e| Error::aws("ec2", "StartInstances", e))?;
        Ok(())
    }

    pub async fn terminate(ec2: &Client, id: &str) -> Result<()> {
        ec2.terminate_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| Error::aws("ec2", "TerminateInstances", e))?;
        Ok(())
    }

    /// Launches the twin of `old` and returns its id.
    pub async fn launch_twin(ec2: &Client, old: &InstanceFacts, token: &str) -> Result<String> {
        let mut req = ec2.run_instances().min_count(1).max_count(1).client_token(token);
        if let Some((id, version)) = old.launch_template() {
            req = req.launch_template(
                LaunchTemplateSpecification::builder().launch_template_id(id).version(version).build(),
            );
        }
        // Explicit values win over the template's, so the twin lands where the old one was.
        if let Some(image) = &old.image_id {
            req = req.image_id(image);
        }
        if let Some(t) = &old.instance_type {
            req = req.instance_type(InstanceType::from(t.as_str()));
        }
        if let Some(subnet) = &old.subnet_id {
            req = req.subnet_id(subnet);
        } else if let Some(az) = &old.az {
            req = req.placement(aws_sdk_ec2::types::Placement::builder().availability_zone(az).build());
        }
        if !old.security_group_ids.is_empty() {
            req = req.set_security_group_ids(Some(old.security_group_ids.clone()));
        }
        if let Some(arn) = &old.iam_profile_arn {
            req = req.iam_instance_profile(IamInstanceProfileSpecification::builder().arn(arn).build());
        }
        if let Some(key) = &old.key_name {
            req = req.key_name(key);
        }
        let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
        for (k, v) in old.replacement_tags() {
            spec = spec.tags(Tag::builder().key(k).value(v).build());
        }
        let out =
            req.tag_specifications(spec.build()).send().await.map_err(|e| Error::aws("ec2", "RunInstances", e))?;
        out.instances()
            .first()
            .and_then(|i| i.instance_id())
            .map(str::to_string)
            .ok_or_else(|| Error::ActionFailed("RunInstances returned no instance".into()))
    }

    /// Elastic IPs associated with an instance: (allocation id or public ip, public ip).
    pub async fn elastic_ips(ec2: &Client, id: &str) -> Result<Vec<(Option<String>, String)>> {
        let out = ec2
            .describe_addresses()
            .filters(Filter::builder().name("instance-id").values(id).build())
            .send()
            .await
            .map_err(|e| Error::aws("ec2", "DescribeAddresses", e))?;
        Ok(out
            .addresses()
            .iter()
            .filter_map(|a| Some((a.allocation_id().map(str::to_string), a.public_ip()?.to_string())))
            .collect())
    }

    /// Moves an Elastic IP to `to`.
    pub async fn move_eip(ec2: &Client, allocation_id: Option<&str>, public_ip: &str, to: &str) -> Result<()> {
        let mut req = ec2.associate_address().instance_id(to).allow_reassociation(true);
        req = match allocation_id {
            Some(a) => req.allocation_id(a),
            None => req.public_ip(public_ip),
        };
        req.send().await.map_err(|e| Error::aws("ec2", "AssociateAddress", e))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------
// Auto Scaling layer
// ---------------------------------------------------------------------------------------------------

pub mod asg {
    //! The Auto Scaling calls the healer makes.

    use aws_sdk_autoscaling::Client;
    use serde::Serialize;

    use crate::error::{Error, Result};

    /// An instance's membership of a group.
    #[derive(Debug, Clone, PartialEq, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Membership {
        pub group: String,
        pub lifecycle: String,
        pub health: String,
        pub protected: bool,
    }

    /// One member as the group lists it.
    #[derive(Debug, Clone, PartialEq, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Member {
        pub instance_id: String,
        pub az: Option<String>,
        pub lifecycle: String,
        pub health: String,
    }

    /// A group's capacity and members.
    #[derive(Debug, Clone, PartialEq, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Group {
        pub name: String,
        pub desired: i32,
        pub azs: Vec<String>,
        pub members: Vec<Member>,
        pub suspended: Vec<String>,
    }

    /// The group `id` belongs to, or `None` for a standalone instance.
    pub async fn membership(asg: &Client, id: &str) -> Result<Option<Membership>> {
        let out = asg
            .describe_auto_scaling_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| Error::aws("autoscaling", "DescribeAutoScalingInstances", e))?;
        Ok(out.auto_scaling_instances().iter().find(|i| i.instance_id() == Some(id)).and_then(|i| {
            Some(Membership {
                group: i.auto_scaling_group_name()?.to_string(),
                lifecycle: i.lifecycle_state().unwrap_or_default().to_string(),
                health: i.health_status().unwrap_or_default().to_string(),
                protected: i.protected_from_scale_in().unwrap_or(false),
            })
        }))
    }

    pub async fn group(asg: &Client, name: &str) -> Result<Group> {
        let out = asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(|e| Error::aws("autoscaling", "DescribeAutoScalingGroups", e))?;
        let g = out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(name))
            .ok_or_else(|| Error::NotFound { kind: "Auto Scaling group", id: name.to_string() })?;
        Ok(Group {
            name: name.to_string(),
            desired: g.desired_capacity().unwrap_or(0),
            azs: g.availability_zones().to_vec(),
            members: g
                .instances()
                .iter()
                .filter_map(|i| {
                    Some(Member {
                        instance_id: i.instance_id()?.to_string(),
                        az: i.availability_zone().map(str::to_string),
                        lifecycle: i.lifecycle_state().map(|l| l.as_str().to_string()).unwrap_or_default(),
                        health: i.health_status().unwrap_or_default().to_string(),
                    })
                })
                .collect(),
            suspended: g.suspended_processes().iter().filter_map(|p| p.process_name()).map(str::to_string).collect(),
        })
    }

    /// Terminates a member without decrementing desired capacity; returns the activity description.
    pub async fn terminate_keep_capacity(asg: &Client, id: &str) -> Result<String> {
        let out = asg
            .terminate_instance_in_auto_scaling_group()
            .instance_id(id)
            .should_decrement_desired_capacity(false)
            .send()
            .await
            .map_err(|e| Error::aws("autoscaling", "TerminateInstanceInAutoScalingGroup", e))?;
        Ok(out.activity().and_then(|a| a.description()).unwrap_or_default().to_string())
    }

    /// Marks a member Unhealthy so the group replaces it.
    pub async fn mark_unhealthy(asg: &Client, id: &str) -> Result<()> {
        asg.set_instance_health()
            .instance_id(id)
            .health_status("Unhealthy")
            .should_respect_grace_period(false)
            .send()
            .await
            .map_err(|e| Error::aws("autoscaling", "SetInstanceHealth", e))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------
// Handler
// ---------------------------------------------------------------------------------------------------

/// The instance-healer handler.
pub struct Healer {
    ctx: Ctx,
    cfg: HealerConfig,
}

/// What a pre-check concluded.
enum Verdict {
    Go { health: Health, group: Option<asg::Group> },
    Stop(Envelope),
}

impl Healer {
    /// Cold start: reads and validates all configuration, loads AWS configuration.
    pub async fn from_env() -> Result<Self> {
        let mut env = Env::from_process();
        let common = CommonConfig::read(&mut env, FUNCTION);
        let cfg = HealerConfig::read(&mut env);
        env.finish()?;
        let ctx = Ctx::new(common.clone(), crate::clients::Aws::load(&common.aws_timeouts).await);
        Ok(Healer { ctx, cfg })
    }

    pub fn new(ctx: Ctx, cfg: HealerConfig) -> Self {
        Healer { ctx, cfg }
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    pub fn config(&self) -> &HealerConfig {
        &self.cfg
    }

    /// Lambda entry: every trigger in the payload is handled; the decisions come back, or an error
    /// when an action failed or a trigger could not be handled (each named).
    pub async fn handle(&self, payload: &Value) -> Result<Value> {
        crate::lambda::handle_each(FUNCTION, payload, |t| async move { self.handle_trigger(&t).await }).await
    }

    /// Handles one trigger (the drill calls this directly).
    pub async fn handle_trigger(&self, t: &Trigger) -> Result<Vec<Envelope>> {
        let mut out = Vec::new();
        for item in intake(t, &self.cfg)? {
            match item {
                Intake::Ignore { target, reason } => {
                    let req = self.request(t, &target, None, self.ctx.config.dry_run, &reason);
                    tracing::info!(target = %target, reason = %reason, "ignored");
                    out.push(self.ctx.record(self.ctx.envelope(&req, Outcome::Skipped, reason)).await?);
                }
                // Boxed: the healing future is large, and a binary embedding it inline overflows layout.
                Intake::Heal(h) => out.push(Box::pin(self.heal(t, h)).await?),
            }
        }
        Ok(out)
    }

    fn request(&self, t: &Trigger, id: &str, group: Option<&str>, dry_run: bool, reason: &str) -> ActionRequest {
        ActionRequest {
            action: ACTION.to_string(),
            target: Target::new("ec2-instance", id).in_group(group.unwrap_or(STANDALONE)),
            event_id: t.event_id.clone(),
            trigger: t.kind.name().to_string(),
            dry_run,
            reason: reason.to_string(),
        }
    }

    async fn refuse(&self, req: &ActionRequest, reason: String, severity: Severity) -> Result<Envelope> {
        tracing::warn!(target = %req.target.id, reason = %reason, "refused");
        self.ctx.record(self.ctx.envelope(req, Outcome::Refused, reason).severity(severity)).await
    }

    async fn heal(&self, t: &Trigger, h: HealRequest) -> Result<Envelope> {
        let ctx = &self.ctx;
        let dry_run = effective_dry_run(ctx.config.dry_run, h.dry_run);
        let ec2c = ctx.aws.ec2();
        let asgc = ctx.aws.autoscaling();
        let id = h.instance_id.clone();

        let Some(inst) = ec2::describe(&ec2c, &id).await? else {
            let req = self.request(t, &id, None, dry_run, &h.reason);
            let err = Error::NotFound { kind: "EC2 instance", id: id.clone() };
            self.refuse(&req, err.to_string(), Severity::Warning).await?;
            return Err(err);
        };
        let membership = asg::membership(&asgc, &id).await?;
        let group_name = membership.as_ref().map(|m| m.group.clone()).or_else(|| inst.tag(ASG_TAG).map(str::to_string));
        let req = self.request(t, &id, group_name.as_deref(), dry_run, &h.reason);

        // A redelivery of an event already claimed: let the guardrails record the duplicate.
        if let Some(status) = ctx.ledger.claim_status(&id, ACTION, &t.event_id, dry_run).await? {
            if status != "failed" {
                return ctx.execute(req, async { Ok(ActionReport::skipped("duplicate")) }).await;
            }
        }

        let (health, group) = match self.precheck(&req, &h, &inst, membership.as_ref(), group_name.as_deref()).await? {
            Verdict::Go { health, group } => (health, group),
            Verdict::Stop(env) => return Ok(env),
        };

        match group {
            Some(g) => {
                let method = self.cfg.asg_method;
                let wait = self.cfg.wait;
                let poll = self.cfg.poll;
                let evidence = health.problems();
                let work = async move {
                    if dry_run {
                        return Ok(ActionReport::would(format!(
                            "would replace {id} through Auto Scaling group {} ({method:?}), keeping desired capacity {}",
                            g.name, g.desired
                        ))
                        .detail("group", &g.name)
                        .detail("method", method)
                        .detail("evidence", &evidence));
                    }
                    replace_in_group(&asgc, &id, &g, method, wait, poll).await.map(|r| r.detail("evidence", &evidence))
                };
                ctx.execute(req, work).await
            }
            None => {
                let prior = self.prior_steps(&id).await?;
                let failure = refine(h.failure, &health);
                let steps = ladder(failure, &inst.state, inst.ebs_backed);
                let step = choose_step(&steps, prior, h.step);
                if step == Step::Replace && inst.state != "terminated" && ec2::termination_protected(&ec2c, &id).await?
                {
                    return self
                        .refuse(
                            &req,
                            format!("{id} has termination protection on; not replacing it"),
                            Severity::Warning,
                        )
                        .await;
                }
                if step == Step::StopStart && !inst.ebs_backed {
                    return self
                        .refuse(
                            &req,
                            format!("{id} has an instance-store root and cannot stop/start"),
                            Severity::Warning,
                        )
                        .await;
                }
                tracing::info!(instance = %id, ?failure, step = step.as_str(), prior, "standalone step chosen");
                let token = client_token(&id, &t.event_id);
                let (wait, poll) = (self.cfg.wait, self.cfg.poll);
                let evidence = health.problems();
                let ladder_names: Vec<&str> = steps.iter().map(|s| s.as_str()).collect();
                let work = async move {
                    let report = if dry_run {
                        Ok(ActionReport::would(format!("would {} standalone instance {id}", step.as_str())))
                    } else {
                        standalone_step(&ec2c, &inst, step, &token, wait, poll).await
                    };
                    report.map(|r| {
                        r.detail("step", step.as_str())
                            .detail("failure", failure)
                            .detail("ladder", &ladder_names)
                            .detail("priorSteps", prior)
                            .detail("evidence", &evidence)
                    })
                };
                ctx.execute(req, work).await
            }
        }
    }

    /// Opt-in, maintenance, lifecycle, health re-check and the short-circuit.
    async fn precheck(
        &self,
        req: &ActionRequest,
        h: &HealRequest,
        inst: &InstanceFacts,
        membership: Option<&asg::Membership>,
        group_name: Option<&str>,
    ) -> Result<Verdict> {
        let cfg = &self.ctx.config;
        let id = &inst.id;
        let stop = |env: Envelope| Ok(Verdict::Stop(env));
        if !is_opted_in(inst.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())), cfg) {
            let why = format!("{id} is not opted in (needs tag {}={})", cfg.opt_in_tag, cfg.opt_in_value);
            return stop(self.refuse(req, why, Severity::Warning).await?);
        }
        if let Some(v) = inst.tag(&self.cfg.maintenance_tag) {
            let why = format!("{id} is under maintenance (tag {}={v})", self.cfg.maintenance_tag);
            return stop(self.refuse(req, why, Severity::Warning).await?);
        }
        if let Some(m) = membership {
            if m.protected {
                let why = format!("{id} is protected from scale-in in group {}", m.group);
                return stop(self.refuse(req, why, Severity::Warning).await?);
            }
        }
        if h.from_state_change && inst.state_reason.as_deref().is_some_and(|r| r.starts_with("User initiated")) {
            let why = format!(
                "{id} was {} by a user ({}): a deploy or maintenance, not a failure",
                inst.state,
                inst.state_reason.as_deref().unwrap_or_default()
            );
            return stop(self.refuse(req, why, Severity::Info).await?);
        }
        let ec2c = self.ctx.aws.ec2();
        let group = match group_name {
            Some(g) => Some(asg::group(&self.ctx.aws.autoscaling(), g).await?),
            None => None,
        };

        // Terminated members of a group are the group's to replace.
        if h.failure == Failure::Terminated && group.is_some() {
            let why = format!("{id} was terminated inside an Auto Scaling group, which replaces it itself");
            return stop(self.ctx.record(self.ctx.envelope(req, Outcome::Skipped, why)).await?);
        }

        // Gather the fleet's health: the target and its peers.
        let peers: Vec<Health> = match &group {
            Some(g) => {
                let ids: Vec<String> = g.members.iter().map(|m| m.instance_id.clone()).collect();
                let mut with_target = ids;
                if !with_target.contains(id) {
                    with_target.push(id.clone());
                }
                let statuses = ec2::statuses(&ec2c, &with_target).await?;
                let mut hs: Vec<Health> = g
                    .members
                    .iter()
                    .map(|m| {
                        let st = statuses.get(&m.instance_id).cloned().unwrap_or_default();
                        Health {
                            instance_id: m.instance_id.clone(),
                            // The target's state is the one just described; a member EC2 no longer
                            // reports is gone.
                            state: if m.instance_id == *id {
                                inst.state.clone()
                            } else {
                                st.state.unwrap_or_else(|| "unknown".into())
                            },
                            az: m.az.clone(),
                            instance_status: st.instance,
                            system_status: st.system,
                            asg_health: Some(m.health.clone()),
                            lifecycle: Some(m.lifecycle.clone()),
                        }
                    })
                    .collect();
                if !hs.iter().any(|x| x.instance_id == *id) {
                    let mut me = ec2::health_of(inst, &statuses);
                    me.asg_health = membership.map(|m| m.health.clone());
                    me.lifecycle = membership.map(|m| m.lifecycle.clone());
                    hs.push(me);
                }
                hs
            }
            None => {
                let mut facts = match (&inst.vpc_id, &inst.az) {
                    (Some(vpc), Some(az)) => {
                        ec2::standalone_peers(&ec2c, (&cfg.opt_in_tag, &cfg.opt_in_value), vpc, az).await?
                    }
                    _ => Vec::new(),
                };
                facts.retain(|f| f.id != *id);
                facts.push(inst.clone());
                let ids: Vec<String> = facts.iter().map(|f| f.id.clone()).collect();
                let statuses = ec2::statuses(&ec2c, &ids).await?;
                facts.iter().map(|f| ec2::health_of(f, &statuses)).collect()
            }
        };
        let Some(health) = peers.iter().find(|p| p.instance_id == *id).cloned() else {
            return Err(Error::ActionFailed(format!("{id}: health facts missing")));
        };

        if h.failure != Failure::Terminated && health.is_going_away() {
            let why = format!(
                "{id} is already going away (state {}, lifecycle {})",
                health.state,
                health.lifecycle.as_deref().unwrap_or("-")
            );
            return stop(self.refuse(req, why, Severity::Info).await?);
        }
        if let Some(m) = membership {
            if m.lifecycle != "InService" && !m.lifecycle.is_empty() {
                let why = format!("{id} is {} in group {}, not InService: left to the group", m.lifecycle, m.group);
                return stop(self.refuse(req, why, Severity::Info).await?);
            }
        }
        if let Some(g) = &group {
            for p in ["Launch", "Terminate", "ReplaceUnhealthy"] {
                if g.suspended.iter().any(|s| s == p) && (p == "Launch" || self.cfg.asg_method == AsgMethod::SetHealth)
                {
                    let why = format!("group {} has the {p} process suspended: a replacement would not come", g.name);
                    return stop(self.refuse(req, why, Severity::Warning).await?);
                }
            }
        }
        if h.recheck && health.problems().is_empty() {
            let why = format!(
                "{id} is healthy again (running, status checks {}/{}, group health {}): not acting",
                health.instance_status.as_deref().unwrap_or("-"),
                health.system_status.as_deref().unwrap_or("-"),
                health.asg_health.as_deref().unwrap_or("-")
            );
            let env = self.ctx.envelope(req, Outcome::Refused, why).severity(Severity::Info).detail("health", &health);
            tracing::info!(instance = %id, "healthy again");
            return stop(self.ctx.record(env).await?);
        }
        if let Some(sc) = short_circuit(&peers, id, self.cfg.max_unhealthy_percent, self.cfg.min_unhealthy) {
            let scope_name = group_name.unwrap_or(STANDALONE);
            let why = format!(
                "short-circuit: {} of {} instances in {scope_name} ({}) are unhealthy, above {}%; replacing nothing: \
                 the cause is likely upstream, a person must look",
                sc.unhealthy, sc.members, sc.scope, sc.max_percent
            );
            tracing::error!(instance = %id, group = scope_name, unhealthy = sc.unhealthy, members = sc.members, "short-circuit");
            let env = self
                .ctx
                .envelope(req, Outcome::Refused, why)
                .severity(Severity::Critical)
                .detail("shortCircuit", &sc)
                .detail("health", &health);
            return stop(self.ctx.record(env).await?);
        }
        Ok(Verdict::Go { health, group })
    }

    /// This function's acted standalone steps on `id` inside the escalation window.
    async fn prior_steps(&self, id: &str) -> Result<usize> {
        let since = chrono::Utc::now()
            - chrono::Duration::from_std(self.cfg.escalation_window).unwrap_or_else(|_| chrono::Duration::hours(6));
        let since = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let trail = self.ctx.ledger.audit_trail(id).await?;
        Ok(trail
            .iter()
            .filter(|r| r.function == FUNCTION && r.action == ACTION && r.outcome == Outcome::Acted.as_str())
            .filter(|r| r.time >= since)
            .filter(|r| {
                r.envelope.details.get("step").and_then(Value::as_str).is_some_and(|s| Step::parse(s).is_some())
            })
            .count())
    }
}

/// Replaces a group member through the group and waits for its replacement.
async fn replace_in_group(
    asgc: &aws_sdk_autoscaling::Client,
    id: &str,
    g: &asg::Group,
    method: AsgMethod,
    wait: Duration,
    poll: Duration,
) -> Result<ActionReport> {
    let before: BTreeSet<String> = g.members.iter().map(|m| m.instance_id.clone()).collect();
    let activity = match method {
        AsgMethod::Terminate => asg::terminate_keep_capacity(asgc, id).await?,
        AsgMethod::SetHealth => {
            asg::mark_unhealthy(asgc, id).await?;
            format!("marked {id} Unhealthy")
        }
    };
    tracing::info!(instance = %id, group = %g.name, ?method, activity = %activity, "replacement requested");
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let now = asg::group(asgc, &g.name).await?;
        let fresh: Vec<&asg::Member> = now
            .members
            .iter()
            .filter(|m| !before.contains(&m.instance_id) && !m.lifecycle.starts_with("Terminat"))
            .collect();
        if let Some(new) = fresh.first() {
            tracing::info!(instance = %id, replacement = %new.instance_id, "replacement launching");
            return Ok(ActionReport::acted(format!(
                "replaced {id} through Auto Scaling group {}: replacement {} is {}",
                g.name, new.instance_id, new.lifecycle
            ))
            .detail("group", &g.name)
            .detail("method", method)
            .detail("replacement", &new.instance_id)
            .detail("replacementAz", &new.az)
            .detail("desiredCapacity", now.desired)
            .detail("activity", activity));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(ActionReport::failed(format!(
                "{id} was handed to Auto Scaling group {} but no replacement appeared within {}s",
                g.name,
                wait.as_secs()
            ))
            .severity(Severity::Critical)
            .detail("group", &g.name)
            .detail("method", method)
            .detail("activity", activity));
        }
        tokio::time::sleep(poll).await;
    }
}

/// Polls until `id` reaches `want`; the state reached last otherwise.
async fn wait_state(ec2c: &aws_sdk_ec2::Client, id: &str, want: &str, wait: Duration, poll: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let state = ec2::describe(ec2c, id).await?.map(|f| f.state).unwrap_or_else(|| "unknown".into());
        if state == want {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout { what: format!("{id} to be {want} (it is {state})"), seconds: wait.as_secs() });
        }
        tokio::time::sleep(poll).await;
    }
}

/// Carries out one standalone step (live).
async fn standalone_step(
    ec2c: &aws_sdk_ec2::Client,
    inst: &InstanceFacts,
    step: Step,
    token: &str,
    wait: Duration,
    poll: Duration,
) -> Result<ActionReport> {
    let id = inst.id.as_str();
    match step {
        Step::Reboot => {
            ec2::reboot(ec2c, id).await?;
            tracing::info!(instance = %id, "rebooted");
            Ok(ActionReport::acted(format!("rebooted {id}")))
        }
        Step::StopStart => {
            if inst.state != "stopped" {
                ec2::stop(ec2c, id).await?;
                wait_state(ec2c, id, "stopped", wait, poll).await?;
            }
            ec2::start(ec2c, id).await?;
            wait_state(ec2c, id, "running", wait, poll).await?;
            tracing::info!(instance = %id, "stopped and started on new hardware");
            Ok(ActionReport::acted(format!("stopped and started {id} (moves it to new hardware); it is running")))
        }
        Step::Replace => {
            let eips = if inst.state == "terminated" { Vec::new() } else { ec2::elastic_ips(ec2c, id).await? };
            let new_id = ec2::launch_twin(ec2c, inst, token).await?;
            tracing::info!(instance = %id, replacement = %new_id, "replacement launched");
            if let Err(e) = wait_state(ec2c, &new_id, "running", wait, poll).await {
                return Ok(ActionReport::failed(format!(
                    "replacement {new_id} for {id} did not come up ({e}); {id} was NOT terminated"
                ))
                .detail("replacement", &new_id));
            }
            let mut moved = Vec::new();
            for (alloc, ip) in &eips {
                ec2::move_eip(ec2c, alloc.as_deref(), ip, &new_id).await?;
                tracing::info!(instance = %id, replacement = %new_id, eip = %ip, "elastic ip moved");
                moved.push(ip.clone());
            }
            if inst.state != "terminated" {
                ec2::terminate(ec2c, id).await?;
            }
            Ok(ActionReport::acted(format!(
                "replaced standalone {id} with {new_id}{}; {id} terminated",
                if moved.is_empty() { String::new() } else { format!(", moved Elastic IP {}", moved.join(", ")) }
            ))
            .detail("replacement", &new_id)
            .detail("elasticIps", &moved)
            .detail("launchTemplate", inst.launch_template().map(|(i, v)| format!("{i}:{v}")))
            .detail("imageId", &inst.image_id)
            .detail("instanceType", &inst.instance_type)
            .detail("subnetId", &inst.subnet_id)
            .detail("securityGroups", &inst.security_group_ids))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::parse_event;
    use serde_json::json;

    fn cfg() -> HealerConfig {
        let mut env = Env::from_map(Default::default());
        let c = HealerConfig::read(&mut env);
        env.finish().unwrap();
        c
    }

    fn health(id: &str, az: &str, state: &str, asg: &str) -> Health {
        Health {
            instance_id: id.into(),
            state: state.into(),
            az: Some(az.into()),
            instance_status: Some("ok".into()),
            system_status: Some("ok".into()),
            asg_health: Some(asg.into()),
            lifecycle: Some("InService".into()),
        }
    }

    fn sample(name: &str) -> Trigger {
        let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        parse_event(&v).unwrap().remove(0)
    }

    #[test]
    fn config_defaults_and_errors() {
        let c = cfg();
        assert_eq!(c.max_unhealthy_percent, 40);
        assert_eq!(c.wait, Duration::from_secs(120));
        assert_eq!(c.alarm_metrics.len(), 3);
        assert_eq!(c.asg_method, AsgMethod::Terminate);
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

    #[test]
    fn every_sample_shape_becomes_a_request() {
        for name in [
            "alarm-sns-ec2-status-check.json",
            "alarm-eventbridge-ec2-status-check.json",
            "alarm-lambda-action-ec2-status-check.json",
        ] {
            let Intake::Heal(h) = intake(&sample(name), &cfg()).unwrap().remove(0) else { panic!("{name}") };
            assert_eq!(h.instance_id, "i-0123456789abcdef0");
            assert!(h.recheck);
            assert_eq!(h.failure, Failure::Unknown);
        }
        let Intake::Heal(h) = intake(&sample("ec2-instance-state-change-stopped.json"), &cfg()).unwrap().remove(0)
        else {
            panic!()
        };
        assert_eq!(h.failure, Failure::Stopped);
        assert!(h.from_state_change);
        let Intake::Heal(h) = intake(&sample("health-ec2-instance-retirement.json"), &cfg()).unwrap().remove(0) else {
            panic!()
        };
        assert_eq!(h.failure, Failure::Retirement);
        assert!(!h.recheck);
        let Intake::Heal(h) = intake(&sample("manual-replace-instance.json"), &cfg()).unwrap().remove(0) else {
            panic!()
        };
        assert_eq!(h.dry_run, Some(true));
        assert!(h.recheck, "not forced");
    }

    #[test]
    fn unsupported_and_malformed_inputs_are_named() {
        let err = intake(&sample("rds-db-instance-event-failure.json"), &cfg()).unwrap_err().to_string();
        assert!(err.contains("does not handle rds"), "{err}");
        let manual = |v: Value| parse_event(&v).unwrap().remove(0);
        let cases = [
            (json!({"source": "selfheal.manual", "action": "replace"}), "target"),
            (json!({"source": "selfheal.manual", "action": "replace", "target": "db-1"}), "not an EC2 instance id"),
            (
                json!({"source": "selfheal.manual", "action": "replace", "target": "i-0abc", "params": {"step": "nuke"}}),
                "params.step must be",
            ),
            (
                json!({"source": "selfheal.manual", "action": "replace", "target": "i-0abc", "params": {"x": 1}}),
                "unknown params.x",
            ),
        ];
        for (v, want) in cases {
            let err = intake(&manual(v.clone()), &cfg()).unwrap_err().to_string();
            assert!(err.contains(want), "{v}: {err}");
        }
    }

    #[test]
    fn an_ok_alarm_is_ignored() {
        let mut t = sample("alarm-sns-ec2-status-check.json");
        if let TriggerKind::Alarm(a) = &mut t.kind {
            a.state = AlarmState::Ok;
        }
        assert!(matches!(intake(&t, &cfg()).unwrap()[0], Intake::Ignore { .. }));
    }

    #[test]
    fn health_rule() {
        assert!(health("i-1", "a", "running", "Healthy").problems().is_empty());
        assert_eq!(health("i-1", "a", "stopped", "Healthy").problems(), vec!["state stopped"]);
        assert_eq!(health("i-1", "a", "running", "Unhealthy").problems(), vec!["Auto Scaling health Unhealthy"]);
        let mut h = health("i-1", "a", "running", "Healthy");
        h.instance_status = Some("insufficient-data".into());
        assert!(h.problems().is_empty(), "insufficient data is not evidence");
        h.system_status = Some("impaired".into());
        assert_eq!(refine(Failure::Unknown, &h), Failure::System);
        assert!(health("i-1", "a", "shutting-down", "Healthy").is_going_away());
    }

    #[test]
    fn short_circuit_needs_a_share_and_a_count() {
        let group = vec![
            health("i-1", "a", "running", "Unhealthy"),
            health("i-2", "b", "running", "Healthy"),
            health("i-3", "c", "running", "Healthy"),
        ];
        assert!(short_circuit(&group, "i-1", 40, 2).is_none(), "one of three");
        let mut two = group.clone();
        two[1].asg_health = Some("Unhealthy".into());
        let sc = short_circuit(&two, "i-1", 40, 2).unwrap();
        assert_eq!((sc.unhealthy, sc.members, sc.scope.as_str()), (2, 3, "group"));
        assert!(short_circuit(&two, "i-1", 70, 2).is_none(), "under a higher threshold");
        // A single standalone instance is never short-circuited by itself.
        assert!(short_circuit(&[health("i-9", "a", "running", "")], "i-9", 40, 2).is_none());
        // One AZ of a large group going down trips on the AZ.
        let mut big: Vec<Health> =
            (0..9).map(|i| health(&format!("i-{i}"), ["a", "b", "c"][i % 3], "running", "Healthy")).collect();
        for h in big.iter_mut().filter(|h| h.az.as_deref() == Some("a")).take(2) {
            h.state = "stopped".into();
        }
        let sc = short_circuit(&big, "i-0", 40, 2).unwrap();
        assert_eq!(sc.scope, "az:a");
        // Members already going away do not count.
        let mut leaving = two.clone();
        leaving[1].state = "shutting-down".into();
        assert!(short_circuit(&leaving, "i-1", 40, 2).is_none());
    }

    #[test]
    fn ladder_escalates_and_clamps() {
        let l = ladder(Failure::Instance, "running", true);
        assert_eq!(l, vec![Step::Reboot, Step::StopStart, Step::Replace]);
        assert_eq!(choose_step(&l, 0, None), Step::Reboot);
        assert_eq!(choose_step(&l, 1, None), Step::StopStart);
        assert_eq!(choose_step(&l, 7, None), Step::Replace);
        assert_eq!(choose_step(&l, 0, Some(Step::Replace)), Step::Replace);
        assert_eq!(ladder(Failure::System, "running", true), vec![Step::StopStart, Step::Replace]);
        assert_eq!(ladder(Failure::Unknown, "stopped", true), vec![Step::StopStart, Step::Replace]);
        assert_eq!(ladder(Failure::Terminated, "terminated", true), vec![Step::Replace]);
        assert_eq!(ladder(Failure::System, "running", false), vec![Step::Replace]);
    }

    #[test]
    fn replacement_tags_and_client_token() {
        let f = InstanceFacts {
            id: "i-0abc".into(),
            tags: vec![
                ("Name".into(), "web".into()),
                (LT_ID_TAG.into(), "lt-1".into()),
                (LT_VERSION_TAG.into(), "3".into()),
            ],
            ..Default::default()
        };
        assert_eq!(f.launch_template(), Some(("lt-1", "3")));
        assert_eq!(
            f.replacement_tags(),
            vec![("Name".to_string(), "web".to_string()), (REPLACES_TAG.to_string(), "i-0abc".to_string())]
        );
        let t = client_token("i-0123456789abcdef0", "alarm:x:2026");
        assert_eq!(t, client_token("i-0123456789abcdef0", "alarm:x:2026"));
        assert_ne!(t, client_token("i-0123456789abcdef0", "alarm:x:2027"));
        assert!(t.len() <= 64 && t.is_ascii());
    }
}
