//! The local game day's environment: what every function (the drill too) gets when it runs under the
//! Lambda runtime emulator against an architecture provisioned in moto ([`gameday_env`], written to
//! the env file `cargo lambda watch` reads), with the compressed time and raised rate limit a game day
//! needs ([`rate_limit`]).

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
        // Large moves wait for a human (the drill plays one); a short expiry, so approval-expires can
        // see one lapse.
        ("SELFHEAL_APPROVAL_TTL_SECONDS".into(), "8".into()),
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
    ];
    // An architecture over several accounts: every function (the drill too) serves the members and
    // acts there through their member role.
    let members = arch.member_accounts();
    if !members.is_empty() {
        v.push(("SELFHEAL_HOME_ACCOUNT".into(), arch.home().to_string()));
        v.push(("SELFHEAL_ACCOUNTS".into(), members.join(",")));
    }
    for key in ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "RUST_LOG"] {
        if let Ok(val) = std::env::var(key) {
            v.push((key.into(), val));
        }
    }
    v
}
