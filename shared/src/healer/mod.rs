//! instance-healer: replaces unhealthy EC2 instances, safely.
//!
//! # Triggers
//! - a CloudWatch alarm in `ALARM` on one of the configured status-check metrics (`StatusCheckFailed`,
//!   `StatusCheckFailed_System`, `StatusCheckFailed_Instance`) with an `InstanceId` dimension, via SNS,
//!   EventBridge or a direct alarm action (an alarm back in `OK` is recorded as skipped);
//! - an EC2 state-change event for `stopped` or `terminated` (other states are recorded as skipped);
//! - an AWS Health `AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED` / `AWS_EC2_INSTANCE_STOP_SCHEDULED` event;
//! - an AWS Health `AWS_EC2_SIMPLIFIED_AUTO_RECOVERY_FAILURE` event (EC2 gave up recovering the
//!   instance: recorded in the ledger as `once#auto-recovery-failed#<id>`, then the instance is healed
//!   if the re-check finds it still broken); `AWS_EC2_SIMPLIFIED_AUTO_RECOVERY_SUCCESS` is recorded as
//!   skipped (EC2 recovered it, nothing to do);
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
//! 3. refused when protected from scale-in, or (for state-change events) stopped by a user
//!    (`StateTransitionReason` "User initiated": a deploy or maintenance, not a failure);
//! 4. **another recovery owns it** ([`stand_down`], read at decision time; `force` does not skip it, and a
//!    dry run shows the same refusal): refused (warning, details `guard: "another-recovery"`,
//!    `recovery: "<kind>"`, `inProgress`) with a reason naming what is in progress, when the
//!    instance is in the group's warm pool (`Warmed:*`), held by a lifecycle hook (`Pending:Wait`,
//!    `Pending:Proceed`, `Terminating:Wait`, `Terminating:Proceed`), in `Standby`, still `Pending` or
//!    in any other lifecycle but `InService` (those on the way out are step 5's); when the group has
//!    `ReplaceUnhealthy`, `Launch` or `Terminate` suspended (whatever `SELFHEAL_HEALER_ASG_METHOD`:
//!    replacing there would shrink capacity); when an instance refresh is `Pending`, `InProgress`,
//!    `Cancelling`, `RollbackInProgress` or `Baking` on the group; when a scaling activity not yet
//!    `Successful`/`Failed`/`Cancelled` names the instance in its description, cause or details; when
//!    an EC2 scheduled event (`instance-reboot`, `system-reboot`, `system-maintenance`,
//!    `instance-retirement`, `instance-stop`) is acting on it now (its window open, not `[Completed]`
//!    or `[Canceled]`); and, for a standalone instance, while EC2's simplified automatic recovery is
//!    inside its attempt: system status `impaired`, `MaintenanceOptions.AutoRecovery` `default`,
//!    `ImpairedSince` less than `SELFHEAL_HEALER_AUTO_RECOVERY_GRACE_SECONDS` (900) ago, and no
//!    `AWS_EC2_SIMPLIFIED_AUTO_RECOVERY_FAILURE` recorded since. (An endpoint override that does not
//!    serve `DescribeInstanceRefreshes` at all, as moto 5.2.5, is named in the decision's `unchecked`
//!    detail; against AWS a failed read fails the invocation.)
//! 5. refused when already going away: shutting down, terminated, or leaving its group (`Terminating`,
//!    `Detaching`);
//! 6. **the health re-check** (alarm, state-change and un-forced manual triggers; Health events and
//!    `force` skip it). The rule: the instance is *still broken* when its state is not `running`, or
//!    DescribeInstanceStatus reports its instance or system status `impaired`, or its Auto Scaling
//!    HealthStatus is `Unhealthy`. Otherwise it is *healthy again* and nothing is done. (An alarm is
//!    not itself evidence: CloudWatch status checks lag, and acting on a stale alarm would replace a
//!    healthy instance.) Status `insufficient-data`/`initializing` is not counted as broken;
//! 7. **the maxUnhealthy short-circuit** (like Kubernetes MachineHealthCheck): over the instance's
//!    group (the Auto Scaling group, or for standalone instances the opted-in standalone instances in
//!    the same VPC and AZ), and over each AZ of that group, when at least
//!    `SELFHEAL_HEALER_MIN_UNHEALTHY` (default 2) members are broken by the rule above (the target
//!    counts as broken) and they are more than `SELFHEAL_HEALER_MAX_UNHEALTHY_PERCENT` (default 40)
//!    of the members, nothing is replaced and a critical envelope with the evidence pages a human:
//!    the cause is likely upstream. An AZ's short-circuit is zone-evacuator's evidence: the decision's
//!    `evacuation` detail names the evacuation in progress for the AZ, or that it is evidence for one
//!    (see `selfheal::zone`). `force` does not skip this;
//! 8. cooldown per instance and rate limit per group (the group name, or `standalone`), dry-run
//!    (describe-only plan): the guardrails of [`crate::guardrails`].
//!
//! IAM: `ec2:DescribeInstances`, `ec2:DescribeInstanceStatus`, `ec2:DescribeInstanceAttribute`,
//! `ec2:DescribeAddresses`, `ec2:RebootInstances`, `ec2:StopInstances`, `ec2:StartInstances`,
//! `ec2:RunInstances`, `ec2:CreateTags`, `ec2:AssociateAddress`, `ec2:TerminateInstances`,
//! `iam:PassRole` (replacement's instance profile), `autoscaling:DescribeAutoScalingInstances`,
//! `autoscaling:DescribeAutoScalingGroups`, `autoscaling:DescribeInstanceRefreshes`,
//! `autoscaling:DescribeScalingActivities`, `autoscaling:TerminateInstanceInAutoScalingGroup`,
//! `autoscaling:SetInstanceHealth`, plus the ledger table and topic.

use serde::Serialize;

mod config;
mod facts;
mod group;
mod handler;
mod health;
mod intake;
mod standalone;

pub mod asg;
pub mod ec2;
pub mod stand_down;

pub use config::{AsgMethod, HealerConfig};
pub use facts::InstanceFacts;
pub use group::{short_circuit, ShortCircuit};
pub use handler::Healer;
pub use health::{refine, Health};
pub use intake::{intake, Failure, HealRequest, Intake, AUTO_RECOVERY_FAILURE, AUTO_RECOVERY_SUCCESS};
pub use standalone::{choose_step, client_token, ladder};

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

/// One standalone healing step: what the ladder escalates through, and what a manual invocation
/// may name (`params.step`).
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

#[cfg(test)]
mod test_support {
    //! Fixtures shared by the healer's unit tests.

    use super::{HealerConfig, Health};
    use crate::config::Env;

    pub(super) fn cfg() -> HealerConfig {
        let mut env = Env::from_map(Default::default());
        let c = HealerConfig::read(&mut env);
        env.finish().unwrap();
        c
    }

    pub(super) fn health(id: &str, az: &str, state: &str, asg: &str) -> Health {
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
}
