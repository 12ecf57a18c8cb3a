//! The local game day's environment: what every function (the drill too) gets when it runs under the
//! Lambda runtime emulator against an architecture provisioned in moto ([`gameday_env`], written to
//! the env file `cargo lambda watch` reads), with the compressed time and raised rate limit a game day
//! needs ([`rate_limit`]); and what one function gets differently, as the template sets it for that
//! function alone ([`function_overrides`], [`function_env`]).

use selfheal::drill::Architecture;

/// The game day's `SELFHEAL_RATE_LIMIT`: 10 actions per group per window, and with the `az-outage` fleet
/// two more per fleet database. All DB promotions in an account and region share one rate group, so an
/// AZ outage that fails a third of the fleet's writers at once needs a slot for each promotion, and one
/// for each duplicate delivery (an alarm after the RDS event) that arrives after the 15 s cooldown and
/// takes a slot before the one-promotion marker refuses it. The production default (3 per hour) would
/// refuse all but three: how many databases one outage may promote without a person is issue #18's
/// (blast radius and approval), not the game day's.
pub fn rate_limit(arch: &Architecture) -> usize {
    10 + arch.fleet.as_ref().map(|f| 2 * f.databases.len()).unwrap_or(0)
}

/// The environment every function gets in a local game day against `arch` (written to the env file
/// `cargo lambda watch` reads). Endpoint and credentials come from the caller's environment.
pub fn gameday_env(arch: &Architecture) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vec![
        ("SELFHEAL_LEDGER_TABLE".into(), arch.ledger_table.clone()),
        ("SELFHEAL_TOPIC_ARN".into(), arch.topic_arn.clone()),
        ("SELFHEAL_DRY_RUN".into(), "false".into()),
        // A game day compresses time: a short cooldown, so anti-flap can be seen firing and expiring.
        ("SELFHEAL_COOLDOWN_SECONDS".into(), "15".into()),
        ("SELFHEAL_RATE_LIMIT".into(), rate_limit(arch).to_string()),
        ("SELFHEAL_DRILL_RECOVERY_TIMEOUT_SECONDS".into(), "120".into()),
        // Large moves wait for a human; a short expiry, so approval-expires can see one lapse. The
        // drill (deployed code, which never builds a verified caller) plays the humans of
        // region-failover with the bare token: break-glass, audited as such. The sandbox's own
        // settings are a person's ([`sandbox_env`]).
        ("SELFHEAL_APPROVAL_TTL_SECONDS".into(), "8".into()),
        ("SELFHEAL_APPROVAL_BREAK_GLASS".into(), "true".into()),
        ("SELFHEAL_APPROVERS".into(), approvers(arch)),
        ("SELFHEAL_DRILL_ARCHITECTURE".into(), serde_json::to_string(arch).unwrap_or_default()),
        ("SELFHEAL_HEALER_WAIT_SECONDS".into(), "60".into()),
        ("SELFHEAL_HEALER_POLL_SECONDS".into(), "1".into()),
        ("SELFHEAL_DB_DNS_ZONE_ID".into(), arch.zone_id.clone()),
        ("SELFHEAL_DB_DNS_RECORD".into(), arch.db_record.clone()),
        ("SELFHEAL_DB_WAIT_SECONDS".into(), "60".into()),
        ("SELFHEAL_DB_POLL_SECONDS".into(), "1".into()),
        // moto cannot serve CloudWatch's current protocol: replicas report a fixed, healthy lag.
        ("SELFHEAL_DB_LAG_OVERRIDE_SECONDS".into(), "2".into()),
        ("SELFHEAL_DNS_RECORDS".into(), format!("{}/{}/A", arch.zone_id, arch.app_record)),
        ("SELFHEAL_DNS_INSYNC_POLL_SECONDS".into(), "1".into()),
        ("SELFHEAL_DNS_INSYNC_TIMEOUT_SECONDS".into(), "30".into()),
        // zone-evacuator (the drill reads the same to know what to expect). The reference architecture
        // has one load balancer, so its per-AZ alarms are one resource's: one is enough to call an AZ
        // impaired here (the default, 2, wants two load balancers' alarms). A short hysteresis, so the
        // end of an evacuation is seen; the healer's AZ signal counts for the least the setting allows.
        ("SELFHEAL_ZONE_MIN_SIGNALS".into(), "1".into()),
        ("SELFHEAL_ZONE_HYSTERESIS_SECONDS".into(), "3".into()),
        ("SELFHEAL_ZONE_SIGNAL_TTL_SECONDS".into(), "60".into()),
        // The drill delivers both AZs' alarms of `two-az` at once: judged again after 2 s, they are one
        // region event, never whichever AZ's alarm landed first.
        ("SELFHEAL_ZONE_SETTLE_SECONDS".into(), "2".into()),
    ];
    if let (Some(tag), Some(value)) = (&arch.opt_in_tag, &arch.opt_in_value) {
        v.push(("SELFHEAL_OPT_IN_TAG".into(), tag.clone()));
        v.push(("SELFHEAL_OPT_IN_VALUE".into(), value.clone()));
    }
    // An architecture over several accounts: every function (the drill too) serves the members and
    // acts there through their member role.
    let members = arch.member_accounts();
    if !members.is_empty() {
        v.push(("SELFHEAL_HOME_ACCOUNT".into(), arch.home().to_string()));
        v.push(("SELFHEAL_ACCOUNTS".into(), members.join(",")));
    }
    // AWS_ENDPOINT_URL_ARC_ZONAL_SHIFT: the ARC stand-in (moto has no ARC); the SDK sends only that
    // service's calls there.
    for key in [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_ARC_ZONAL_SHIFT",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "RUST_LOG",
    ] {
        if let Ok(val) = std::env::var(key) {
            v.push((key.into(), val));
        }
    }
    v
}

/// The role whose sessions approve locally (`arn:aws:iam::HOME:role/selfheal-approver`).
pub const APPROVER_ROLE: &str = "selfheal-approver";

/// `SELFHEAL_APPROVERS` of a local game day or sandbox: the sessions of [`APPROVER_ROLE`] in the hub.
pub fn approvers(arch: &Architecture) -> String {
    approvers_in(arch.home())
}

fn approvers_in(home: &str) -> String {
    format!("arn:aws:iam::{home}:role/{APPROVER_ROLE}")
}

/// A listed approver's session (`arn:aws:sts::HOME:assumed-role/selfheal-approver/NAME`).
pub fn approver(arch: &Architecture, name: &str) -> String {
    approver_in(arch.home(), name)
}

fn approver_in(home: &str, name: &str) -> String {
    format!("arn:aws:sts::{home}:assumed-role/{APPROVER_ROLE}/{name}")
}

/// What the sandbox sets differently from the game day: a person's approval settings.
pub const SANDBOX_OVERRIDES: [(&str, &str); 2] =
    [("SELFHEAL_APPROVAL_TTL_SECONDS", "900"), ("SELFHEAL_APPROVAL_BREAK_GLASS", "false")];

/// What the local sandbox's functions get: [`gameday_env`] with a person's approval settings: a
/// parked decision waits 15 minutes, and only a listed approver's verified request settles it
/// (break-glass off), as deployed by default.
pub fn sandbox_env(arch: &Architecture) -> Vec<(String, String)> {
    let mut v = gameday_env(arch);
    for (k, val) in SANDBOX_OVERRIDES {
        v.retain(|(key, _)| key != k);
        v.push((k.into(), val.into()));
    }
    v
}

/// What `function` gets besides [`gameday_env`], as the template sets it for that function alone:
/// zone-evacuator runs with no cooldown (its flap guard is the hysteresis; a cooldown would hold the
/// end of an evacuation on the resources its start just acted on).
pub fn function_overrides(function: &str) -> Vec<(String, String)> {
    match function {
        "zone-evacuator" => vec![("SELFHEAL_COOLDOWN_SECONDS".into(), "0".into())],
        _ => vec![],
    }
}

/// The functions that have [`function_overrides`].
pub const OVERRIDDEN: [&str; 1] = ["zone-evacuator"];

/// Everything `function` gets in a local game day against `arch`: [`gameday_env`] with its overrides.
pub fn function_env(arch: &Architecture, function: &str) -> Vec<(String, String)> {
    let mut v = gameday_env(arch);
    for (k, val) in function_overrides(function) {
        v.retain(|(key, _)| *key != k);
        v.push((k, val));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_waits_for_a_person_and_its_approvers_are_listed() {
        let get = |k: &str| SANDBOX_OVERRIDES.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let ttl: u64 = get("SELFHEAL_APPROVAL_TTL_SECONDS").unwrap().parse().unwrap();
        assert!(ttl >= 600, "{ttl}");
        assert_eq!(get("SELFHEAL_APPROVAL_BREAK_GLASS"), Some("false"));
        let listed = selfheal::config::approval::Approvers(vec![approvers_in("123456789012")]);
        assert!(listed.admits(&approver_in("123456789012", "alice")));
        assert!(!listed.admits(&approver_in("111111111111", "alice")));
    }

    #[test]
    fn the_evacuator_alone_has_no_cooldown() {
        assert_eq!(function_overrides("zone-evacuator"), [("SELFHEAL_COOLDOWN_SECONDS".to_string(), "0".to_string())]);
        assert!(function_overrides("instance-healer").is_empty());
        for f in OVERRIDDEN {
            assert!(!function_overrides(f).is_empty(), "{f}");
        }
    }
}
