//! zone-evacuator: when one Availability Zone goes bad, take the service out of it.
//!
//! # Detection ([`signals`], [`assess`])
//! Signals about an AZ of a place (account + region) are kept in the ledger as they arrive:
//! - the suite's per-AZ load balancer alarms (`selfheal-az|<az>|<5xx|latency|unhealthy>|<lb>`, kept
//!   by the readiness sweep for every opted-in ALB/NLB; each compares the AZ with the others, so all
//!   AZs worse is not one AZ's problem), and any ELB alarm on a per-AZ metric; ALARM impairs, OK clears;
//! - AWS Health issues naming an AZ (open impairs, closed clears; upcoming and other categories are
//!   recorded as skipped);
//! - ARC's own zonal shift events (autoshift, practice run, FIS, manual shifts) re-assess the place, so
//!   the evacuator stands down where ARC has a shift in effect;
//! - the healer's AZ short-circuit (its envelope), and an operator's `evacuate`.
//!
//! One AZ is impaired on a Health issue, the healer's short-circuit or an operator alone, or on
//! alarms of at least `SELFHEAL_ZONE_MIN_SIGNALS` distinct resources. Two or more impaired AZs (or a
//! second while one is evacuated) are a region event: nothing automatic, a critical page — the
//! region failover, with its approval, is the path. An evacuation in progress is then held: no new
//! shift, no extension; its shifts end at their own expiry unless a person extends them.
//!
//! # Evacuation ([`plan`], the `evacuate` and `end` files)
//! Per opted-in ALB/NLB and Auto Scaling group in the AZ, through the guardrails (opt-in, dry-run,
//! one pass at a time over an evacuation (its lease: a storm of signals makes one pass, the others
//! say who is making it), a lease per resource, claims per evacuation so duplicates act once, audit
//! and notification naming account and region):
//! - a `StartZonalShift` away from the AZ's **ID** (mapped from its name in that account, [`azs`])
//!   with `SELFHEAL_ZONE_SHIFT_EXPIRY_MINUTES` and a comment naming the evacuation; extended while the
//!   AZ stays impaired; cancelled once it has been clear for `SELFHEAL_ZONE_HYSTERESIS_SECONDS`;
//! - capacity first: a group's desired capacity is raised by its in-service share of the AZ before it
//!   is shifted (within its maximum), or the shift is refused with the numbers; lowered back at the
//!   end when nothing else changed it;
//! - never against ARC: a resource with a shift ARC has in effect that is not ours (zonal autoshift,
//!   a practice run, an FIS experiment, a customer's shift) is left alone (`another-recovery`);
//! - a group ARC cannot shift loses the AZ's subnets, and gets exactly the recorded set back at the
//!   end; a load balancer ARC cannot shift is named in the decision;
//! - the data tier: opted-in Multi-AZ RDS writers and Aurora cluster writers in the AZ fail over
//!   through db-failover's own code and guards ([`writers`]).
//!
//! # Also
//! `readiness` ([`readiness`]): the sweep of a place's zonal-shift readiness (zonal shift enabled on
//! every opted-in load balancer and group, headroom to lose one AZ, the per-AZ alarms ([`alarms`]:
//! metric-math outlier alarms, 3 min to detect a hard failure, 4 min a gray one), ARC's autoshift and
//! practice-run configuration) in one report, and the safe fixes when `SELFHEAL_ZONE_READINESS_FIX`
//! and the request both ask. Triggers and settings: see [`HANDLES`] and [`ZoneConfig`].
//!
//! IAM: `ec2:DescribeAvailabilityZones`, `ec2:DescribeSubnets`, `elasticloadbalancing:Describe*` (load
//! balancers, tags, attributes), `autoscaling:DescribeAutoScalingGroups`,
//! `autoscaling:UpdateAutoScalingGroup`, `arc-zonal-shift:ListManagedResources`,
//! `arc-zonal-shift:GetManagedResource`, `arc-zonal-shift:StartZonalShift`,
//! `arc-zonal-shift:UpdateZonalShift`, `arc-zonal-shift:CancelZonalShift`, db-failover's RDS calls, the
//! ledger table and topic; readiness adds `elasticloadbalancing:DescribeTargetGroups`,
//! `elasticloadbalancing:ModifyLoadBalancerAttributes`, `cloudwatch:DescribeAlarms` and
//! `cloudwatch:PutMetricAlarm`.

pub mod alarms;
pub mod arc;
pub mod assess;
pub mod azs;
mod config;
mod end;
mod evacuate;
pub mod facts;
pub mod groups;
mod handler;
pub mod lbs;
pub mod plan;
pub mod readiness;
pub mod signals;
pub mod writers;

pub use config::ZoneConfig;
pub use handler::Evacuator;

/// The function's name in envelopes and the ledger.
pub const FUNCTION: &str = "zone-evacuator";

/// The prefix of the suite's per-AZ alarm names.
pub const ALARM_PREFIX: &str = "selfheal-az";

/// What the evacuator takes, for the message naming an event that is not for it.
pub const HANDLES: &str = "per-AZ load balancer alarms (selfheal-az|...), AWS Health issues naming an AZ, ARC zonal \
     shift events, instance-healer's AZ short-circuit decisions, the re-check schedule, and manual \"evacuate\", \
     \"end\", \"assess\" and \"readiness\" invocations";

/// Action names, as envelopes and the ledger carry them.
pub mod actions {
    pub const EVACUATE: &str = "evacuate-az";
    pub const END: &str = "end-evacuation";
    pub const SHIFT: &str = "shift-away";
    pub const EXTEND: &str = "extend-shift";
    pub const CANCEL: &str = "end-shift";
    pub const RAISE: &str = "raise-capacity";
    pub const LOWER: &str = "restore-capacity";
    pub const REMOVE_SUBNETS: &str = "remove-subnets";
    pub const RESTORE_SUBNETS: &str = "restore-subnets";
    pub const REGION_EVENT: &str = "region-event";
    pub const ASSESS: &str = "assess";
    pub const READINESS: &str = "readiness";
}
