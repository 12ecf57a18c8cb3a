//! The AWS-documented sample events preflight tests each deployed rule with: every `events/*.json`
//! EventBridge event whose `source` is `aws.*` (the suite's own `selfheal.manual` invocations and the
//! SNS / Lambda alarm-action shapes reach no rule). The one list: a sample added to `events/` is
//! added here, and the test below fails until it is.

/// (name, the event as AWS delivers it to EventBridge).
pub const SAMPLES: &[(&str, &str)] = &[
    ("alarm-eventbridge-az-5xx", include_str!("../../../events/alarm-eventbridge-az-5xx.json")),
    ("alarm-eventbridge-composite", include_str!("../../../events/alarm-eventbridge-composite.json")),
    ("alarm-eventbridge-ec2-status-check", include_str!("../../../events/alarm-eventbridge-ec2-status-check.json")),
    (
        "alarm-eventbridge-metric-math-network",
        include_str!("../../../events/alarm-eventbridge-metric-math-network.json"),
    ),
    (
        "alarm-eventbridge-metric-math-status-check",
        include_str!("../../../events/alarm-eventbridge-metric-math-status-check.json"),
    ),
    (
        "alarm-eventbridge-route53-health-check",
        include_str!("../../../events/alarm-eventbridge-route53-health-check.json"),
    ),
    ("arc-autoshift-completed", include_str!("../../../events/arc-autoshift-completed.json")),
    ("arc-autoshift-in-progress", include_str!("../../../events/arc-autoshift-in-progress.json")),
    ("arc-practice-run-started", include_str!("../../../events/arc-practice-run-started.json")),
    ("autoscaling-launch-unsuccessful", include_str!("../../../events/autoscaling-launch-unsuccessful.json")),
    ("ec2-instance-state-change-running", include_str!("../../../events/ec2-instance-state-change-running.json")),
    ("ec2-instance-state-change-stopped", include_str!("../../../events/ec2-instance-state-change-stopped.json")),
    ("ec2-instance-state-change-terminated", include_str!("../../../events/ec2-instance-state-change-terminated.json")),
    ("health-az-operational-issue", include_str!("../../../events/health-az-operational-issue.json")),
    ("health-ec2-instance-retirement", include_str!("../../../events/health-ec2-instance-retirement.json")),
    (
        "health-rds-operational-issue-regional",
        include_str!("../../../events/health-rds-operational-issue-regional.json"),
    ),
    ("rds-db-cluster-event-failover", include_str!("../../../events/rds-db-cluster-event-failover.json")),
    ("rds-db-instance-event-backup", include_str!("../../../events/rds-db-instance-event-backup.json")),
    ("rds-db-instance-event-failure", include_str!("../../../events/rds-db-instance-event-failure.json")),
    ("schedule-backup-sweep", include_str!("../../../events/schedule-backup-sweep.json")),
];

#[cfg(test)]
mod tests {
    use super::SAMPLES;

    #[test]
    fn every_aws_eventbridge_sample_in_events_is_listed_and_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
        let mut on_disk = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                let aws = v["source"].as_str().is_some_and(|s| s.starts_with("aws."));
                if aws && v.get("detail-type").is_some() {
                    on_disk.push(path.file_stem().unwrap().to_string_lossy().into_owned());
                }
            }
        }
        on_disk.sort();
        let mut listed: Vec<String> = SAMPLES.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(listed, on_disk, "shared/src/preflight/samples.rs lists other samples than events/ holds");
        for (name, text) in SAMPLES {
            let v: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(v["id"].is_string() && v["time"].is_string(), "{name}: TestEventPattern needs id and time");
        }
    }
}
