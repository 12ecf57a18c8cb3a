//! Standing down when another recovery owns the instance: pure decisions over typed facts, each a
//! [`StandDown`] naming what is in progress, or `None`. The handler reads the facts at decision time
//! (Auto Scaling in [`super::asg`], EC2 in [`super::ec2`]) and records every stand-down as a refused
//! decision (severity warning, details `guard: "another-recovery"` and `recovery: "<kind>"`).
//!
//! | recovery              | owned by                                                                 |
//! |-----------------------|--------------------------------------------------------------------------|
//! | `instance-refresh`    | an instance refresh `Pending`/`InProgress`/`Cancelling`/`RollbackInProgress`/`Baking` on the group |
//! | `suspended-processes` | `ReplaceUnhealthy`, `Launch` or `Terminate` suspended on the group       |
//! | `warm-pool`           | the instance in the group's warm pool (lifecycle `Warmed:*`)             |
//! | `lifecycle-hook`      | a lifecycle hook holding it (`Pending:Wait`/`:Proceed`, `Terminating:Wait`/`:Proceed`) |
//! | `standby`             | an operator's `EnterStandby` (`EnteringStandby`, `Standby`)              |
//! | `launch`              | the group still launching it (`Pending`)                                 |
//! | `lifecycle`           | any other lifecycle but `InService` (e.g. `Quarantined`)                 |
//! | `scaling-activity`    | a scaling activity not yet `Successful`/`Failed`/`Cancelled` that names the instance |
//! | `scheduled-event`     | an EC2 scheduled event acting on it now                                  |
//! | `auto-recovery`       | EC2 simplified automatic recovery still inside its attempt               |

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::stand_down::StandDown;

/// Instance refresh statuses during which the refresh owns the group's instances.
pub const REFRESH_ACTIVE: [&str; 5] = ["Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking"];

/// Scaling processes whose suspension means a replacement would not come (or the group would not
/// let go of the instance): terminating there would shrink capacity.
pub const REPLACEMENT_PROCESSES: [&str; 3] = ["ReplaceUnhealthy", "Launch", "Terminate"];

/// Scaling activity status codes after which the activity no longer acts.
pub const ACTIVITY_DONE: [&str; 3] = ["Successful", "Failed", "Cancelled"];

/// EC2 scheduled event codes that act on the instance itself.
pub const EVENT_CODES: [&str; 5] =
    ["instance-reboot", "system-reboot", "system-maintenance", "instance-retirement", "instance-stop"];

/// An instance refresh, as `DescribeInstanceRefreshes` reports it.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRefresh {
    pub id: String,
    pub status: String,
    pub percentage_complete: Option<i32>,
    pub instances_to_update: Option<i32>,
    pub start_time: Option<String>,
    pub status_reason: Option<String>,
}

/// A scaling activity, as `DescribeScalingActivities` reports it.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingActivity {
    pub id: String,
    pub status_code: String,
    pub progress: Option<i32>,
    pub description: String,
    pub cause: String,
    pub details: String,
    pub start_time: Option<String>,
}

/// A scheduled event, as `DescribeInstanceStatus` reports it (`Events`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledEvent {
    pub id: Option<String>,
    pub code: String,
    pub description: String,
    pub not_before: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
}

/// What simplified automatic recovery needs known about an instance.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoRecovery {
    /// `MaintenanceOptions.AutoRecovery` (`default` or `disabled`; absent when EC2 does not say).
    pub setting: Option<String>,
    /// The system status check (`ok`, `impaired`, ...).
    pub system_status: Option<String>,
    /// The earliest `ImpairedSince` of the system status check's details.
    pub impaired_since: Option<DateTime<Utc>>,
    /// When an `AWS_EC2_SIMPLIFIED_AUTO_RECOVERY_FAILURE` for the instance was recorded, if ever.
    pub failure_reported_at: Option<DateTime<Utc>>,
}

/// The instance's Auto Scaling lifecycle state, when something other than the healer holds it.
/// States on the way out (`Terminating`, `Terminated`, `Detaching`, `Detached`) are the "already going
/// away" refusal's, not this one's.
pub fn lifecycle(instance: &str, group: &str, lifecycle: &str) -> Option<StandDown> {
    let evidence = json!({ "group": group, "lifecycleState": lifecycle });
    let (kind, why) = match lifecycle {
        "" | "InService" => return None,
        l if l.starts_with("Warmed:") => {
            ("warm-pool", format!("{instance} is in the warm pool of group {group} ({l}): the warm pool owns it"))
        }
        "Pending:Wait" | "Pending:Proceed" | "Terminating:Wait" | "Terminating:Proceed" => (
            "lifecycle-hook",
            format!(
                "{instance} is held by a lifecycle hook of group {group} ({lifecycle}): the hook's action on it is \
                 in progress"
            ),
        ),
        "EnteringStandby" | "Standby" => (
            "standby",
            format!("{instance} is {lifecycle} in group {group}: someone took it out of service on purpose"),
        ),
        "Pending" => ("launch", format!("{instance} is Pending in group {group}: the group is still launching it")),
        l if l.starts_with("Terminat") || l.starts_with("Detach") => return None,
        other => ("lifecycle", format!("{instance} is {other} in group {group}, not InService: the group owns it")),
    };
    Some(StandDown::new(kind, format!("{why}; standing down"), evidence))
}

/// An instance refresh in progress on the group (the newest active one).
pub fn instance_refresh(group: &str, refreshes: &[InstanceRefresh]) -> Option<StandDown> {
    let r = refreshes.iter().find(|r| REFRESH_ACTIVE.contains(&r.status.as_str()))?;
    let pct = r.percentage_complete.map(|p| format!(" ({p}%)")).unwrap_or_default();
    Some(StandDown::new(
        "instance-refresh",
        format!(
            "instance refresh {} is {}{pct} on group {group}: it owns the group's instances; standing down",
            r.id, r.status
        ),
        json!({ "group": group, "instanceRefresh": r }),
    ))
}

/// `ReplaceUnhealthy`, `Launch` or `Terminate` suspended on the group, whichever replacement method
/// is configured.
pub fn suspended_processes(group: &str, suspended: &[String]) -> Option<StandDown> {
    let held: Vec<&str> = REPLACEMENT_PROCESSES.into_iter().filter(|p| suspended.iter().any(|s| s == p)).collect();
    if held.is_empty() {
        return None;
    }
    Some(StandDown::new(
        "suspended-processes",
        format!(
            "group {group} has {} suspended: whoever suspended {} holds the group's capacity, and replacing an \
             instance there would shrink it (a replacement would not come); standing down",
            held.join(", "),
            if held.len() == 1 { "it" } else { "them" }
        ),
        json!({ "group": group, "suspendedProcesses": suspended }),
    ))
}

/// A scaling activity, not yet over, that names the instance (already replacing or terminating it).
pub fn scaling_activity(instance: &str, group: &str, activities: &[ScalingActivity]) -> Option<StandDown> {
    let a = activities.iter().find(|a| {
        !ACTIVITY_DONE.contains(&a.status_code.as_str())
            && [&a.description, &a.details, &a.cause].iter().any(|t| t.contains(instance))
    })?;
    let pct = a.progress.map(|p| format!(" ({p}%)")).unwrap_or_default();
    Some(StandDown::new(
        "scaling-activity",
        format!(
            "scaling activity {} is {}{pct} on group {group} and already acting on {instance} ({:?}); standing down",
            a.id, a.status_code, a.description
        ),
        json!({ "group": group, "activity": a }),
    ))
}

/// A scheduled event acting on the instance now: one of [`EVENT_CODES`], not `[Completed]` or
/// `[Canceled]`, its window open (`NotBefore` passed, `NotAfter` not yet).
pub fn scheduled_event(instance: &str, events: &[ScheduledEvent], now: DateTime<Utc>) -> Option<StandDown> {
    let e = events.iter().find(|e| {
        let settled = ["[Completed]", "[Canceled]"].iter().any(|p| e.description.trim_start().starts_with(p));
        EVENT_CODES.contains(&e.code.as_str())
            && !settled
            && e.not_before.is_none_or(|t| t <= now)
            && e.not_after.is_none_or(|t| now <= t)
    })?;
    let at = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_else(|| "?".into());
    Some(StandDown::new(
        "scheduled-event",
        format!(
            "scheduled event {}{} is acting on {instance} now (window {} to {}: {:?}); standing down",
            e.code,
            e.id.as_deref().map(|i| format!(" {i}")).unwrap_or_default(),
            at(e.not_before),
            at(e.not_after),
            e.description
        ),
        json!({ "event": e }),
    ))
}

/// EC2 simplified automatic recovery still inside its attempt: the system status check impaired, the
/// instance's auto-recovery `default`, `ImpairedSince` within `grace` of `now`, and no
/// `AWS_EC2_SIMPLIFIED_AUTO_RECOVERY_FAILURE` recorded since the impairment began. A zero `grace`
/// turns the stand-down off; an impairment EC2 reports no start for is not waited on.
pub fn auto_recovery(instance: &str, f: &AutoRecovery, now: DateTime<Utc>, grace: Duration) -> Option<StandDown> {
    if grace.is_zero() || f.setting.as_deref() != Some("default") || f.system_status.as_deref() != Some("impaired") {
        return None;
    }
    let since = f.impaired_since?;
    if f.failure_reported_at.is_some_and(|at| at >= since) {
        return None;
    }
    let age = (now - since).num_seconds().max(0);
    if age as u64 > grace.as_secs() {
        return None;
    }
    Some(StandDown::new(
        "auto-recovery",
        format!(
            "EC2 simplified automatic recovery owns {instance}: its system status check has been impaired since {} \
             ({age}s, within the {}s grace of SELFHEAL_HEALER_AUTO_RECOVERY_GRACE_SECONDS) and its auto-recovery is \
             on; standing down until EC2 recovers it or reports AWS_EC2_SIMPLIFIED_AUTO_RECOVERY_FAILURE",
            since.to_rfc3339(),
            grace.as_secs()
        ),
        json!({ "autoRecovery": f, "impairedSeconds": age, "graceSeconds": grace.as_secs() }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn lifecycle_names_what_holds_the_instance() {
        let kind = |l: &str| lifecycle("i-1", "web", l).map(|s| s.recovery);
        assert_eq!(kind("InService"), None);
        assert_eq!(kind(""), None);
        for l in ["Warmed:Pending", "Warmed:Running", "Warmed:Stopped", "Warmed:Hibernated", "Warmed:Pending:Wait"] {
            assert_eq!(kind(l), Some("warm-pool"), "{l}");
        }
        for l in ["Pending:Wait", "Pending:Proceed", "Terminating:Wait", "Terminating:Proceed"] {
            assert_eq!(kind(l), Some("lifecycle-hook"), "{l}");
        }
        assert_eq!(kind("Standby"), Some("standby"));
        assert_eq!(kind("EnteringStandby"), Some("standby"));
        assert_eq!(kind("Pending"), Some("launch"));
        assert_eq!(kind("Quarantined"), Some("lifecycle"));
        for l in ["Terminating", "Terminated", "Detaching", "Detached"] {
            assert_eq!(kind(l), None, "{l} is the going-away refusal's");
        }
        let sd = lifecycle("i-1", "web", "Terminating:Wait").unwrap();
        assert_eq!(
            sd.reason,
            "i-1 is held by a lifecycle hook of group web (Terminating:Wait): the hook's action on it is in progress; \
             standing down"
        );
        assert_eq!(sd.in_progress["lifecycleState"], "Terminating:Wait");
    }

    #[test]
    fn an_active_instance_refresh_owns_the_group() {
        let r = |status: &str| InstanceRefresh {
            id: "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d".into(),
            status: status.into(),
            percentage_complete: Some(35),
            ..Default::default()
        };
        for s in REFRESH_ACTIVE {
            assert!(instance_refresh("web", &[r(s)]).is_some(), "{s}");
        }
        for s in ["Successful", "Failed", "Cancelled", "RollbackSuccessful", "RollbackFailed"] {
            assert!(instance_refresh("web", &[r(s)]).is_none(), "{s}");
        }
        let sd = instance_refresh("web", &[r("Successful"), r("InProgress")]).unwrap();
        assert_eq!(sd.recovery, "instance-refresh");
        assert_eq!(
            sd.reason,
            "instance refresh 0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d is InProgress (35%) on group web: it owns the \
             group's instances; standing down"
        );
        assert!(instance_refresh("web", &[]).is_none());
    }

    #[test]
    fn any_of_the_replacement_processes_suspended_stands_down() {
        let s = |ps: &[&str]| ps.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        for p in REPLACEMENT_PROCESSES {
            let sd = suspended_processes("web", &s(&[p])).unwrap_or_else(|| panic!("{p}"));
            assert_eq!(sd.recovery, "suspended-processes");
            assert!(sd.reason.starts_with(&format!("group web has {p} suspended")), "{}", sd.reason);
        }
        let sd = suspended_processes("web", &s(&["AZRebalance", "Terminate", "Launch"])).unwrap();
        assert!(sd.reason.starts_with("group web has Launch, Terminate suspended: whoever suspended them"), "{sd:?}");
        assert!(suspended_processes("web", &s(&["AZRebalance", "AlarmNotification", "HealthCheck"])).is_none());
    }

    #[test]
    fn a_running_scaling_activity_naming_the_instance_stands_down() {
        let a = |status: &str, description: &str| ScalingActivity {
            id: "f9f2d65b-f1f2-43e7-b46d-d86756459699".into(),
            status_code: status.into(),
            progress: Some(50),
            description: description.into(),
            cause: "At 2026-11-25T10:15:00Z an instance was taken out of service in response to an EC2 health check"
                .into(),
            details: "{\"Subnet ID\":\"subnet-1\"}".into(),
            start_time: None,
        };
        let acts = [a("Successful", "Terminating EC2 instance: i-0aaa"), a("InProgress", "Launching: i-0bbb")];
        assert!(scaling_activity("i-0aaa", "web", &acts).is_none(), "its activity is over");
        let acts = [a("InProgress", "Terminating EC2 instance: i-0aaa")];
        let sd = scaling_activity("i-0aaa", "web", &acts).unwrap();
        assert_eq!(sd.recovery, "scaling-activity");
        assert!(sd.reason.starts_with("scaling activity f9f2d65b-f1f2-43e7-b46d-d86756459699 is InProgress (50%)"));
        assert!(sd.reason.contains("already acting on i-0aaa"), "{}", sd.reason);
        for s in ["PreInService", "WaitingForELBConnectionDraining", "MidLifecycleAction", "Pending"] {
            assert!(scaling_activity("i-0aaa", "web", &[a(s, "Terminating EC2 instance: i-0aaa")]).is_some(), "{s}");
        }
        assert!(scaling_activity("i-0ccc", "web", &acts).is_none(), "another instance's activity");
    }

    #[test]
    fn a_scheduled_event_acts_only_inside_its_window_and_until_settled() {
        let now = t("2026-11-25T10:30:00Z");
        let e = |code: &str, desc: &str, nb: &str, na: Option<&str>| ScheduledEvent {
            id: Some("instance-event-0d59937288b749b32".into()),
            code: code.into(),
            description: desc.into(),
            not_before: Some(t(nb)),
            not_after: na.map(t),
        };
        let open = e("system-reboot", "scheduled reboot", "2026-11-25T10:00:00Z", Some("2026-11-25T12:00:00Z"));
        let sd = scheduled_event("i-1", std::slice::from_ref(&open), now).unwrap();
        assert_eq!(sd.recovery, "scheduled-event");
        assert!(sd
            .reason
            .starts_with("scheduled event system-reboot instance-event-0d59937288b749b32 is acting on i-1"));
        for code in EVENT_CODES {
            let ev = e(code, "x", "2026-11-25T10:00:00Z", None);
            assert!(scheduled_event("i-1", &[ev], now).is_some(), "{code}");
        }
        let later = e("instance-retirement", "retire", "2026-12-02T10:00:00Z", None);
        assert!(scheduled_event("i-1", &[later], now).is_none(), "not yet: the retirement trigger acts ahead of it");
        let past = e("system-maintenance", "x", "2026-11-24T10:00:00Z", Some("2026-11-24T12:00:00Z"));
        assert!(scheduled_event("i-1", &[past], now).is_none());
        for desc in ["[Completed] scheduled reboot", "[Canceled] scheduled reboot"] {
            let done = e("system-reboot", desc, "2026-11-25T10:00:00Z", None);
            assert!(scheduled_event("i-1", &[done], now).is_none(), "{desc}");
        }
        let other = e("instance-stop-unknown", "x", "2026-11-25T10:00:00Z", None);
        assert!(scheduled_event("i-1", &[other], now).is_none());
    }

    #[test]
    fn auto_recovery_is_waited_for_within_its_grace_unless_it_failed() {
        let now = t("2026-11-25T10:10:00Z");
        let grace = Duration::from_secs(900);
        let f = AutoRecovery {
            setting: Some("default".into()),
            system_status: Some("impaired".into()),
            impaired_since: Some(t("2026-11-25T10:05:00Z")),
            failure_reported_at: None,
        };
        let sd = auto_recovery("i-1", &f, now, grace).unwrap();
        assert_eq!(sd.recovery, "auto-recovery");
        assert!(sd.reason.contains("impaired since 2026-11-25T10:05:00+00:00 (300s, within the 900s grace"));
        assert_eq!(sd.in_progress["impairedSeconds"], 300);
        // At the grace's last second EC2 still owns it (a mutant scripts/mutants found unheld); past
        // it, EC2 has had its chance.
        assert!(auto_recovery("i-1", &f, t("2026-11-25T10:20:00Z"), grace).is_some(), "exactly the grace");
        assert!(auto_recovery("i-1", &f, t("2026-11-25T10:20:01Z"), grace).is_none(), "a second past it");
        assert!(auto_recovery("i-1", &f, t("2026-11-25T10:25:01Z"), grace).is_none());
        // EC2 said it failed after this impairment began.
        let failed = AutoRecovery { failure_reported_at: Some(t("2026-11-25T10:07:00Z")), ..f.clone() };
        assert!(auto_recovery("i-1", &failed, now, grace).is_none());
        // A failure reported for an earlier impairment does not count.
        let old = AutoRecovery { failure_reported_at: Some(t("2026-11-20T10:00:00Z")), ..f.clone() };
        assert!(auto_recovery("i-1", &old, now, grace).is_some());
        for g in [
            AutoRecovery { setting: Some("disabled".into()), ..f.clone() },
            AutoRecovery { setting: None, ..f.clone() },
            AutoRecovery { system_status: Some("ok".into()), ..f.clone() },
            AutoRecovery { impaired_since: None, ..f.clone() },
        ] {
            assert!(auto_recovery("i-1", &g, now, grace).is_none(), "{g:?}");
        }
        assert!(auto_recovery("i-1", &f, now, Duration::ZERO).is_none(), "a zero grace turns it off");
    }
}
