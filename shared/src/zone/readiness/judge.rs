//! Readiness judged: what was read of each load balancer and group ([`LbFacts`], [`GroupReadiness`]),
//! the findings ([`judge_lb`], [`judge_group`]), the plan of safe fixes ([`plan_lb`], [`plan_group`]),
//! whether fixes may be made ([`gate`]) and the summary. Pure: no AWS call.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{json, Value};

use super::super::alarms::{self, AlarmSpec, LbAlarms, LbType, Thresholds};
use super::super::arc::Managed;
use super::super::facts::{GroupFacts, Kind, Shiftable};
use super::super::lbs;
use super::super::signals::AlarmName;
use crate::error::Result;

/// The action of a fix that enables zonal shift (a load balancer's attribute, a group's policy).
pub const ENABLE_ZONAL_SHIFT: &str = "enable-zonal-shift";
/// The action of a fix that creates a load balancer's missing per-AZ alarms.
pub const CREATE_ALARMS: &str = "create-az-alarms";

/// What was read, or why it could not be.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen<T> {
    Read(T),
    Unchecked(String),
}

/// ARC's view of a resource it manages.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArcConfig {
    /// `ENABLED` / `DISABLED` (`None`: ARC did not say).
    pub autoshift: Option<String>,
    pub practice_run: bool,
}

impl From<&Managed> for ArcConfig {
    fn from(m: &Managed) -> Self {
        ArcConfig { autoshift: m.autoshift.clone(), practice_run: m.practice_run_configured }
    }
}

/// What the sweep knows of one load balancer.
#[derive(Debug, Clone, PartialEq)]
pub struct LbFacts {
    pub arn: String,
    pub name: String,
    /// AZ names.
    pub azs: Vec<String>,
    pub shiftable: Shiftable,
    /// Its target groups' dimensions (`targetgroup/<name>/<id>`).
    pub target_groups: Seen<Vec<String>>,
    /// The names of the suite's per-AZ alarms in the place.
    pub alarms: Seen<BTreeSet<String>>,
    /// `None`: ARC does not manage it.
    pub arc: Seen<Option<ArcConfig>>,
}

impl LbFacts {
    fn dimension(&self) -> Option<&str> {
        lbs::dimension(&self.arn)
    }
}

/// What the sweep knows of one Auto Scaling group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupReadiness {
    pub arn: String,
    pub name: String,
    /// AZ names.
    pub azs: Vec<String>,
    /// `Some(enabled)` when the answer carried an `AvailabilityZoneImpairmentPolicy`.
    pub policy: Option<bool>,
    pub capacity: GroupFacts,
    pub arc: Seen<Option<ArcConfig>>,
}

/// The state of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    /// Not ready: an evacuation would fall short here.
    Fail,
    /// Could not be read; neither ready nor not.
    Unchecked,
    /// Told, not judged.
    Note,
}

/// One check of one resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numbers: Option<Value>,
}

fn finding(check: &'static str, status: Status, detail: impl Into<String>) -> Finding {
    Finding { check, status, detail: detail.into(), numbers: None }
}

/// Whether findings make a resource ready (no failure).
pub fn is_ready(findings: &[Finding]) -> bool {
    !findings.iter().any(|f| f.status == Status::Fail)
}

/// A safe fix for one resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Fix {
    /// `ModifyLoadBalancerAttributes`: `zonal_shift.config.enabled=true` (that attribute only).
    EnableLbZonalShift,
    /// `PutMetricAlarm` for each missing per-AZ alarm.
    CreateAlarms(Vec<AlarmSpec>),
    /// `UpdateAutoScalingGroup`: `AvailabilityZoneImpairmentPolicy` `ZonalShiftEnabled=true`,
    /// `ImpairedZoneHealthCheckBehavior=IgnoreUnhealthy`.
    EnableGroupZonalShift,
}

impl Fix {
    pub fn action(&self) -> &'static str {
        match self {
            Fix::EnableLbZonalShift | Fix::EnableGroupZonalShift => ENABLE_ZONAL_SHIFT,
            Fix::CreateAlarms(_) => CREATE_ALARMS,
        }
    }

    /// What it does, for a person.
    pub fn describe(&self, name: &str) -> String {
        match self {
            Fix::EnableLbZonalShift => format!("set {} of {name} to true", lbs::ZONAL_SHIFT_ATTRIBUTE),
            Fix::CreateAlarms(specs) => format!(
                "create {} per-AZ alarm(s) of {name}: {}",
                specs.len(),
                specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
            Fix::EnableGroupZonalShift => format!(
                "enable zonal shift on {name} (AvailabilityZoneImpairmentPolicy ZonalShiftEnabled=true, \
                 ImpairedZoneHealthCheckBehavior=IgnoreUnhealthy)"
            ),
        }
    }
}

/// Whether fixes are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixGate {
    /// The invocation did not ask: the report only.
    NotAsked,
    /// Asked, but `SELFHEAL_ZONE_READINESS_FIX` is not true: the report only, saying so.
    NotAllowed,
    /// Asked and allowed, in a dry run: each fix says what it would do, nothing changes.
    DryRun,
    /// Asked and allowed: the fixes are made, each under the guardrails.
    Apply,
}

/// Fixes need both the configuration (`allowed`) and the invocation (`asked`); a dry run never changes.
pub fn gate(asked: bool, allowed: bool, dry_run: bool) -> FixGate {
    match (asked, allowed, dry_run) {
        (false, _, _) => FixGate::NotAsked,
        (true, false, _) => FixGate::NotAllowed,
        (true, true, true) => FixGate::DryRun,
        (true, true, false) => FixGate::Apply,
    }
}

/// The per-AZ alarms a load balancer should have (none when its dimension is not a load balancer's:
/// the error is returned to be reported).
fn expected_alarms(f: &LbFacts, t: &Thresholds) -> std::result::Result<LbAlarms, String> {
    let dim = f.dimension().ok_or_else(|| format!("{} is not a load balancer ARN", f.arn))?;
    let tgs = match &f.target_groups {
        Seen::Read(v) => v.clone(),
        Seen::Unchecked(_) => vec![],
    };
    alarms::for_load_balancer(dim, &f.azs, &tgs, t).map_err(|e| e.to_string())
}

fn arc_finding(arc: &Seen<Option<ArcConfig>>) -> Finding {
    match arc {
        Seen::Read(Some(c)) => finding(
            "autoshift",
            Status::Note,
            format!(
                "ARC zonal autoshift {}; practice runs {}",
                c.autoshift.as_deref().unwrap_or("status not given").to_lowercase(),
                if c.practice_run { "configured" } else { "not configured" }
            ),
        )
        .with(json!({"autoshift": c.autoshift, "practiceRun": c.practice_run})),
        Seen::Read(None) => {
            finding("autoshift", Status::Note, "ARC does not manage it (no zonal autoshift, no practice runs)")
        }
        Seen::Unchecked(e) => finding("autoshift", Status::Unchecked, format!("ARC unchecked: {e}")),
    }
}

impl Finding {
    fn with(mut self, numbers: Value) -> Self {
        self.numbers = Some(numbers);
        self
    }
}

fn azs_finding(azs: &[String], what: &str) -> Finding {
    let n = azs.iter().collect::<BTreeSet<_>>().len();
    if n >= 2 {
        finding("azs", Status::Ok, format!("in {n} AZs ({})", azs.join(", ")))
    } else {
        finding("azs", Status::Fail, format!("in {n} AZ(s): {what} has no other AZ to move to"))
    }
}

/// The readiness of one load balancer.
pub fn judge_lb(f: &LbFacts, t: &Thresholds) -> Vec<Finding> {
    let mut out = Vec::new();
    let ty = f.dimension().and_then(|d| LbType::of(d).ok());
    out.push(match (&f.shiftable, ty) {
        (Shiftable::Yes, _) => finding("zonal-shift", Status::Ok, format!("{} is true", lbs::ZONAL_SHIFT_ATTRIBUTE)),
        (Shiftable::No { why }, Some(LbType::Gateway)) => {
            finding("zonal-shift", Status::Fail, format!("ARC cannot shift it: {why} (no fix: not supported)"))
        }
        (Shiftable::No { why }, _) => finding("zonal-shift", Status::Fail, format!("ARC cannot shift it: {why}")),
    });
    out.push(azs_finding(&f.azs, "a shift"));
    match (&f.alarms, expected_alarms(f, t)) {
        (_, Err(e)) => out.push(finding("per-az-alarms", Status::Fail, e)),
        (Seen::Unchecked(e), Ok(_)) => {
            out.push(finding("per-az-alarms", Status::Unchecked, format!("alarms unchecked: {e}")))
        }
        (Seen::Read(present), Ok(expected)) => {
            let want = expected.names();
            let missing: Vec<&String> = want.iter().filter(|n| !present.contains(*n)).collect();
            let dim = f.dimension().unwrap_or_default();
            let stale: Vec<&String> = present
                .iter()
                .filter(|n| AlarmName::parse(n).is_some_and(|a| a.load_balancer == dim) && !want.contains(*n))
                .collect();
            let detection: BTreeMap<&str, i32> =
                expected.alarms.iter().map(|a| (a.signal, a.detection_seconds())).collect();
            let numbers = json!({"expected": want.len(), "present": want.len() - missing.len(), "missing": missing,
                "detectionSeconds": detection});
            if want.is_empty() {
                out.push(finding(
                    "per-az-alarms",
                    Status::Note,
                    format!("none kept: {}", expected.not_kept.join("; ")),
                ));
            } else if missing.is_empty() {
                out.push(
                    finding("per-az-alarms", Status::Ok, format!("all {} per-AZ alarms present", want.len()))
                        .with(numbers),
                );
            } else {
                let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                out.push(
                    finding(
                        "per-az-alarms",
                        Status::Fail,
                        format!("{} of {} per-AZ alarms missing: {}", missing.len(), want.len(), names.join(", ")),
                    )
                    .with(numbers),
                );
            }
            if !stale.is_empty() {
                out.push(finding(
                    "per-az-alarms",
                    Status::Note,
                    format!(
                        "alarms for an AZ or signal it no longer has (left alone): {}",
                        stale.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if !want.is_empty() && !expected.not_kept.is_empty() {
                out.push(finding("per-az-alarms", Status::Note, format!("not kept: {}", expected.not_kept.join("; "))));
            }
            if !expected.uncovered_target_groups.is_empty() {
                out.push(finding(
                    "per-az-alarms",
                    Status::Note,
                    format!(
                        "the unhealthy alarms read {} target groups; not these: {}",
                        alarms::MAX_TARGET_GROUPS,
                        expected.uncovered_target_groups.join(", ")
                    ),
                ));
            }
        }
    }
    if let Seen::Unchecked(e) = &f.target_groups {
        out.push(finding(
            "per-az-alarms",
            Status::Unchecked,
            format!("target groups unchecked ({e}): no unhealthy alarms judged"),
        ));
    }
    out.push(arc_finding(&f.arc));
    out
}

/// The safe fixes of one load balancer: the attribute (never for a Gateway Load Balancer, which ARC
/// does not support), and the per-AZ alarms known to be missing (none when they could not be read).
pub fn plan_lb(f: &LbFacts, t: &Thresholds) -> Vec<Fix> {
    let mut out = Vec::new();
    let ty = f.dimension().and_then(|d| LbType::of(d).ok());
    if matches!(f.shiftable, Shiftable::No { .. }) && matches!(ty, Some(LbType::Application | LbType::Network)) {
        out.push(Fix::EnableLbZonalShift);
    }
    if let (Seen::Read(present), Ok(expected)) = (&f.alarms, expected_alarms(f, t)) {
        let missing: Vec<AlarmSpec> = expected.alarms.into_iter().filter(|a| !present.contains(&a.name)).collect();
        if !missing.is_empty() {
            out.push(Fix::CreateAlarms(missing));
        }
    }
    out
}

/// A group's room to lose one AZ.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Headroom {
    pub desired: i32,
    pub max: i32,
    /// The AZ with the most in-service instances, and how many.
    pub largest_az: Option<String>,
    pub largest_in_service: i32,
    /// `desired + largest_in_service`: the maximum losing that AZ needs.
    pub needed_max: i32,
    pub ok: bool,
}

/// `max >= desired + the largest in-service count of one AZ`.
pub fn headroom(g: &GroupFacts) -> Headroom {
    let largest = g.in_service.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)));
    let (largest_az, largest_in_service) = largest.map(|(az, n)| (Some(az.clone()), *n)).unwrap_or((None, 0));
    let needed_max = g.desired.saturating_add(largest_in_service);
    Headroom { desired: g.desired, max: g.max, largest_az, largest_in_service, needed_max, ok: g.max >= needed_max }
}

/// The readiness of one Auto Scaling group.
pub fn judge_group(g: &GroupReadiness) -> Vec<Finding> {
    let mut out = Vec::new();
    let knows = |arc: &Seen<Option<ArcConfig>>| match arc {
        Seen::Read(Some(_)) => Some(true),
        Seen::Read(None) => Some(false),
        Seen::Unchecked(_) => None,
    };
    out.push(match (g.policy, knows(&g.arc)) {
        (Some(true), _) => {
            finding("zonal-shift", Status::Ok, "its AvailabilityZoneImpairmentPolicy has ZonalShiftEnabled=true")
        }
        (Some(false), _) => {
            finding("zonal-shift", Status::Fail, "its AvailabilityZoneImpairmentPolicy has ZonalShiftEnabled=false")
        }
        (None, Some(true)) => finding(
            "zonal-shift",
            Status::Ok,
            "ARC manages it (the Auto Scaling answer carried no AvailabilityZoneImpairmentPolicy)",
        ),
        (None, Some(false)) => finding(
            "zonal-shift",
            Status::Fail,
            "no AvailabilityZoneImpairmentPolicy in the Auto Scaling answer and ARC does not manage it",
        ),
        (None, None) => finding(
            "zonal-shift",
            Status::Unchecked,
            "no AvailabilityZoneImpairmentPolicy in the Auto Scaling answer, and ARC could not be asked",
        ),
    });
    out.push(azs_finding(&g.azs, "an evacuation"));
    let h = headroom(&g.capacity);
    let numbers = serde_json::to_value(&h).unwrap_or(Value::Null);
    out.push(if h.ok {
        finding(
            "headroom",
            Status::Ok,
            format!(
                "max {} covers desired {} + {} in-service in {}",
                h.max,
                h.desired,
                h.largest_in_service,
                h.largest_az.as_deref().unwrap_or("any AZ")
            ),
        )
        .with(numbers)
    } else {
        finding(
            "headroom",
            Status::Fail,
            format!(
                "max {} is below desired {} + {} in-service in {} = {}: losing that AZ cannot be made up (raising the \
                 maximum is a cost decision, not made here)",
                h.max,
                h.desired,
                h.largest_in_service,
                h.largest_az.as_deref().unwrap_or("-"),
                h.needed_max
            ),
        )
        .with(numbers)
    });
    out.push(arc_finding(&g.arc));
    out
}

/// The safe fixes of one group: its policy, when zonal shift is known not to be enabled. Never the
/// maximum.
pub fn plan_group(g: &GroupReadiness) -> Vec<Fix> {
    let off = match (g.policy, &g.arc) {
        (Some(enabled), _) => !enabled,
        (None, Seen::Read(known)) => known.is_none(),
        (None, Seen::Unchecked(_)) => false,
    };
    if off {
        vec![Fix::EnableGroupZonalShift]
    } else {
        vec![]
    }
}

/// One resource's place in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceReport {
    pub kind: Kind,
    pub name: String,
    pub arn: String,
    pub ready: bool,
    pub findings: Vec<Finding>,
    /// What came of each planned fix (empty when no fix was made or asked for).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fixes: Vec<Value>,
}

/// The counts of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub load_balancers: usize,
    pub groups: usize,
    pub ready: usize,
    pub not_ready: usize,
    /// Resources with a part that could not be read.
    pub unchecked: usize,
    pub fixes_made: usize,
    pub fixes_failed: usize,
}

/// Counts ready and not-ready resources (and the fixes' outcomes).
pub fn summarize(reports: &[ResourceReport]) -> Summary {
    let mut s = Summary::default();
    for r in reports {
        match r.kind {
            Kind::LoadBalancer => s.load_balancers += 1,
            Kind::AutoScalingGroup => s.groups += 1,
        }
        if r.ready {
            s.ready += 1;
        } else {
            s.not_ready += 1;
        }
        if r.findings.iter().any(|f| f.status == Status::Unchecked) {
            s.unchecked += 1;
        }
        for f in &r.fixes {
            match f.get("outcome").and_then(Value::as_str) {
                Some("acted") => s.fixes_made += 1,
                Some("failed") => s.fixes_failed += 1,
                _ => {}
            }
        }
    }
    s
}

pub(super) fn seen<T>(r: Result<T>) -> Seen<T> {
    match r {
        Ok(v) => Seen::Read(v),
        Err(e) => Seen::Unchecked(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188";
    const DIM: &str = "app/web/50dc6c495c0c9188";

    fn azs() -> Vec<String> {
        vec!["us-east-1a".into(), "us-east-1b".into()]
    }

    fn lb(shiftable: Shiftable, present: Seen<BTreeSet<String>>) -> LbFacts {
        LbFacts {
            arn: ARN.into(),
            name: "web".into(),
            azs: azs(),
            shiftable,
            target_groups: Seen::Read(vec!["targetgroup/web/73e2d6bc24d8a067".into()]),
            alarms: present,
            arc: Seen::Read(Some(ArcConfig { autoshift: Some("DISABLED".into()), practice_run: false })),
        }
    }

    fn all_alarms() -> BTreeSet<String> {
        alarms::for_load_balancer(DIM, &azs(), &["targetgroup/web/73e2d6bc24d8a067".into()], &Thresholds::default())
            .unwrap()
            .names()
    }

    fn status(f: &[Finding], check: &str) -> Vec<Status> {
        f.iter().filter(|x| x.check == check).map(|x| x.status).collect()
    }

    #[test]
    fn a_load_balancer_with_everything_is_ready_and_needs_no_fix() {
        let f = lb(Shiftable::Yes, Seen::Read(all_alarms()));
        let t = Thresholds::default();
        let j = judge_lb(&f, &t);
        assert!(is_ready(&j), "{j:?}");
        assert_eq!(status(&j, "per-az-alarms"), vec![Status::Ok]);
        assert_eq!(status(&j, "autoshift"), vec![Status::Note]);
        assert!(j.iter().any(|x| x.detail.contains("autoshift disabled; practice runs not configured")), "{j:?}");
        assert!(plan_lb(&f, &t).is_empty());
    }

    #[test]
    fn zonal_shift_off_and_missing_alarms_are_not_ready_and_planned() {
        let t = Thresholds::default();
        let mut some = all_alarms();
        let gone = "selfheal-az|us-east-1b|latency|app/web/50dc6c495c0c9188".to_string();
        some.remove(&gone);
        some.insert("selfheal-az|us-east-1c|5xx|app/web/50dc6c495c0c9188".into());
        some.insert("selfheal-az|us-east-1c|5xx|app/other/1".into());
        let f =
            lb(Shiftable::No { why: "its attribute zonal_shift.config.enabled is not true".into() }, Seen::Read(some));
        let j = judge_lb(&f, &t);
        assert!(!is_ready(&j));
        assert_eq!(status(&j, "zonal-shift"), vec![Status::Fail]);
        let missing = j.iter().find(|x| x.check == "per-az-alarms" && x.status == Status::Fail).unwrap();
        assert!(missing.detail.contains("1 of 6") && missing.detail.contains(&gone), "{}", missing.detail);
        let stale = j.iter().find(|x| x.detail.contains("no longer has")).unwrap();
        assert!(
            stale.detail.contains("us-east-1c|5xx|app/web") && !stale.detail.contains("app/other"),
            "{}",
            stale.detail
        );
        let plan = plan_lb(&f, &t);
        assert_eq!(plan.len(), 2, "{plan:?}");
        assert_eq!(plan[0], Fix::EnableLbZonalShift);
        let Fix::CreateAlarms(specs) = &plan[1] else { panic!("{plan:?}") };
        assert_eq!(specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>(), vec![gone]);
        assert_eq!((plan[0].action(), plan[1].action()), (ENABLE_ZONAL_SHIFT, CREATE_ALARMS));
    }

    #[test]
    fn unread_alarms_are_unchecked_not_missing_and_never_created_blind() {
        let t = Thresholds::default();
        let f = lb(Shiftable::Yes, Seen::Unchecked("cloudwatch:DescribeAlarms failed: not supported".into()));
        let j = judge_lb(&f, &t);
        assert!(is_ready(&j), "unchecked is not a failure: {j:?}");
        let u = j.iter().find(|x| x.status == Status::Unchecked).unwrap();
        assert_eq!(u.detail, "alarms unchecked: cloudwatch:DescribeAlarms failed: not supported");
        assert!(plan_lb(&f, &t).is_empty());
        let mut g = lb(Shiftable::Yes, Seen::Read(all_alarms()));
        g.arc = Seen::Unchecked("arc-zonal-shift:ListManagedResources failed".into());
        assert_eq!(status(&judge_lb(&g, &t), "autoshift"), vec![Status::Unchecked]);
    }

    #[test]
    fn a_gateway_or_one_az_load_balancer_is_named_and_not_fixed() {
        let t = Thresholds::default();
        let mut f = lb(
            Shiftable::No { why: "ARC zonal shift does not support gateway load balancers".into() },
            Seen::Read(BTreeSet::new()),
        );
        f.arn = "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/gwy/fw/1234".into();
        let j = judge_lb(&f, &t);
        assert!(j.iter().any(|x| x.check == "zonal-shift" && x.detail.contains("no fix")), "{j:?}");
        assert!(plan_lb(&f, &t).is_empty());
        let mut one = lb(Shiftable::Yes, Seen::Read(BTreeSet::new()));
        one.azs = vec!["us-east-1a".into()];
        let j = judge_lb(&one, &t);
        assert_eq!(status(&j, "azs"), vec![Status::Fail]);
        assert!(plan_lb(&one, &t).is_empty(), "no alarms for a one-AZ load balancer");
    }

    fn group(
        policy: Option<bool>,
        arc: Seen<Option<ArcConfig>>,
        desired: i32,
        max: i32,
        per_az: &[(&str, i32)],
    ) -> GroupReadiness {
        GroupReadiness {
            arn: "arn:aws:autoscaling:us-east-1:1:autoScalingGroup:x:autoScalingGroupName/web".into(),
            name: "web".into(),
            azs: per_az.iter().map(|(a, _)| a.to_string()).collect(),
            policy,
            capacity: GroupFacts {
                desired,
                min: 0,
                max,
                in_service: per_az.iter().map(|(a, n)| (a.to_string(), *n)).collect(),
                subnets: vec![],
                subnet_azs: BTreeMap::new(),
            },
            arc,
        }
    }

    #[test]
    fn headroom_is_max_against_desired_plus_the_largest_az() {
        let g = group(Some(true), Seen::Read(None), 6, 9, &[("us-east-1a", 3), ("us-east-1b", 2), ("us-east-1c", 1)]);
        let h = headroom(&g.capacity);
        assert_eq!(
            (h.largest_az.as_deref(), h.largest_in_service, h.needed_max, h.ok),
            (Some("us-east-1a"), 3, 9, true)
        );
        let g = group(Some(true), Seen::Read(None), 6, 8, &[("us-east-1a", 3), ("us-east-1b", 3)]);
        let j = judge_group(&g);
        assert!(!is_ready(&j));
        let f = j.iter().find(|x| x.check == "headroom").unwrap();
        assert!(f.detail.contains("max 8 is below desired 6 + 3 in-service in us-east-1a = 9"), "{}", f.detail);
        assert_eq!(f.numbers.as_ref().unwrap()["neededMax"], 9);
        assert!(plan_group(&g).is_empty(), "the maximum is never raised");
        let empty = group(Some(true), Seen::Read(None), 0, 0, &[]);
        assert_eq!(headroom(&empty.capacity).needed_max, 0);
    }

    #[test]
    fn a_groups_zonal_shift_is_its_policy_or_arcs_word() {
        let per = &[("us-east-1a", 1), ("us-east-1b", 1)];
        let on = group(Some(true), Seen::Read(None), 2, 4, per);
        assert_eq!(status(&judge_group(&on), "zonal-shift"), vec![Status::Ok]);
        assert!(plan_group(&on).is_empty());
        let off = group(Some(false), Seen::Read(Some(ArcConfig { autoshift: None, practice_run: false })), 2, 4, per);
        assert_eq!(status(&judge_group(&off), "zonal-shift"), vec![Status::Fail]);
        assert_eq!(plan_group(&off), vec![Fix::EnableGroupZonalShift]);
        let arc_knows = group(None, Seen::Read(Some(ArcConfig { autoshift: None, practice_run: false })), 2, 4, per);
        assert_eq!(status(&judge_group(&arc_knows), "zonal-shift"), vec![Status::Ok]);
        assert!(plan_group(&arc_knows).is_empty());
        let unknown = group(None, Seen::Read(None), 2, 4, per);
        assert_eq!(status(&judge_group(&unknown), "zonal-shift"), vec![Status::Fail]);
        assert_eq!(plan_group(&unknown), vec![Fix::EnableGroupZonalShift]);
        let unchecked = group(None, Seen::Unchecked("down".into()), 2, 4, per);
        assert_eq!(status(&judge_group(&unchecked), "zonal-shift"), vec![Status::Unchecked]);
        assert!(plan_group(&unchecked).is_empty(), "nothing is changed on a guess");
        let one_az = group(Some(true), Seen::Read(None), 1, 4, &[("us-east-1a", 1)]);
        assert_eq!(status(&judge_group(&one_az), "azs"), vec![Status::Fail]);
    }

    #[test]
    fn fixes_need_the_setting_and_the_request_and_never_in_a_dry_run() {
        assert_eq!(gate(false, true, false), FixGate::NotAsked);
        assert_eq!(gate(true, false, false), FixGate::NotAllowed);
        assert_eq!(gate(true, false, true), FixGate::NotAllowed);
        assert_eq!(gate(true, true, true), FixGate::DryRun);
        assert_eq!(gate(true, true, false), FixGate::Apply);
    }

    #[test]
    fn the_summary_counts_ready_not_ready_unchecked_and_fixes() {
        let ok = finding("zonal-shift", Status::Ok, "");
        let bad = finding("headroom", Status::Fail, "");
        let unk = finding("per-az-alarms", Status::Unchecked, "");
        let r = |kind, findings: Vec<Finding>, fixes: Vec<Value>| ResourceReport {
            kind,
            name: "x".into(),
            arn: "a".into(),
            ready: is_ready(&findings),
            findings,
            fixes,
        };
        let s = summarize(&[
            r(Kind::LoadBalancer, vec![ok.clone(), unk], vec![json!({"outcome": "acted"})]),
            r(Kind::AutoScalingGroup, vec![ok, bad], vec![json!({"outcome": "failed"}), json!({"outcome": "dry-run"})]),
        ]);
        assert_eq!(
            s,
            Summary {
                load_balancers: 1,
                groups: 1,
                ready: 1,
                not_ready: 1,
                unchecked: 1,
                fixes_made: 1,
                fixes_failed: 1
            }
        );
        let fix = Fix::EnableGroupZonalShift.describe("web");
        assert!(fix.contains("ZonalShiftEnabled=true") && fix.contains("IgnoreUnhealthy"), "{fix}");
    }
}
