//! The local sandbox's sample invocations (`scripts/sandbox`): one event per function, shaped the
//! way AWS delivers it and naming the sandbox's real resources, with what each should come to.

use serde::Serialize;
use serde_json::{json, Value};

use selfheal::drill::events::{ec2_alarm, manual, schedule_event};
use selfheal::drill::Architecture;

/// One event to try by hand, and what it should come to.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Invocation {
    /// The file name the event is written to.
    pub file: String,
    pub function: String,
    /// What it shows, for people.
    pub says: String,
    /// The outcome at least one of its decisions has (`acted`, `refused`, `dry-run`, ...).
    pub expect: String,
    pub event: Value,
}

fn invocation(file: &str, function: &str, says: &str, expect: &str, event: Value) -> Invocation {
    Invocation { file: file.into(), function: function.into(), says: says.into(), expect: expect.into(), event }
}

/// The sandbox's invocations for `arch`; `instance` is one of its web group's in-service instances.
pub fn invocations(arch: &Architecture, instance: &str) -> Vec<Invocation> {
    let dns_params = json!({"zone": arch.zone_id, "type": "A"});
    vec![
        invocation(
            "instance-healer-alarm.json",
            "instance-healer",
            "a status-check alarm on a web instance that is in fact healthy: the healer re-checks it and refuses \
             (an alarm alone is not evidence)",
            "refused",
            ec2_alarm(arch, instance),
        ),
        invocation(
            "instance-healer-dry-run.json",
            "instance-healer",
            "a manual dry run: what replacing that instance would do, with nothing changed",
            "dry-run",
            manual("replace", instance, true, true, json!({})),
        ),
        invocation(
            "db-failover-promote.json",
            "db-failover",
            "a planned promotion of the best read replica of the primary, and the database record repointed",
            "acted",
            manual("promote-replica", &arch.db_primary, false, true, json!({})),
        ),
        invocation(
            "dns-failover-flip.json",
            "dns-failover",
            "a planned failover of the application record to its standby region: a large move, parked for two \
             listed approvers (15 minutes; the decision carries its token and the signed approve and reject \
             commands; here, scripts/sandbox approve TOKEN --as alice, then --as bob)",
            "awaiting-approval",
            manual("failover", &arch.app_record, false, true, dns_params),
        ),
        invocation(
            "backup-enforcer-sweep.json",
            "backup-enforcer",
            "the scheduled backup sweep: every tagged volume snapshotted, the compliance report",
            "acted",
            schedule_event("selfheal-backup-sweep"),
        ),
    ]
}
