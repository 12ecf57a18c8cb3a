//! The stack's EventBridge rules, read (`ListRules`, `ListTargetsByRule` on the default bus and the
//! hub bus `<stack>-hub`) and proven with EventBridge's own matcher (`TestEventPattern`) against the
//! sample events AWS sends ([`super::samples`]): each pattern rule matches at least one sample, is
//! enabled and has a target; each sample is routed by at least one rule; the schedules are present.

use serde_json::Value;

use super::samples::SAMPLES;
use super::{Check, Deployment};
use crate::clients::Aws;
use crate::error::Error;

/// One deployed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub bus: String,
    pub name: String,
    pub pattern: Option<String>,
    pub schedule: Option<String>,
    pub enabled: bool,
    /// Its targets' ARNs.
    pub targets: Vec<String>,
}

/// The stack's rules, or why they could not be read.
pub type Routes = std::result::Result<Vec<Rule>, String>;

pub fn client(aws: &Aws) -> aws_sdk_eventbridge::Client {
    aws_sdk_eventbridge::Client::new(&aws.sdk)
}

/// Reads the stack's rules: those named `<stack>-…` on the default bus (SAM names a function's
/// event rules so) and every rule of the hub bus `<stack>-hub` when it exists.
pub async fn deployed(aws: &Aws, d: &Deployment) -> Routes {
    let eb = client(aws);
    let mut out = list(&eb, "default", Some(&d.stack)).await.map_err(|e| e.to_string())?;
    match list(&eb, &format!("{}-hub", d.stack), None).await {
        Ok(hub) => out.extend(hub),
        Err(e) if e.to_string().contains("ResourceNotFound") => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(out)
}

async fn list(eb: &aws_sdk_eventbridge::Client, bus: &str, prefix: Option<&str>) -> crate::Result<Vec<Rule>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = eb
            .list_rules()
            .event_bus_name(bus)
            .set_name_prefix(prefix.map(|p| format!("{p}-")))
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| Error::aws("events", "ListRules", e))?;
        for r in page.rules() {
            let name = r.name().unwrap_or_default().to_string();
            let targets = eb
                .list_targets_by_rule()
                .rule(&name)
                .event_bus_name(bus)
                .send()
                .await
                .map_err(|e| Error::aws("events", "ListTargetsByRule", e))?
                .targets()
                .iter()
                .map(|t| t.arn().to_string())
                .collect();
            out.push(Rule {
                bus: bus.to_string(),
                name,
                pattern: r.event_pattern().map(str::to_string),
                schedule: r.schedule_expression().map(str::to_string),
                enabled: r.state().is_some_and(|s| s.as_str() == "ENABLED"),
                targets,
            });
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// Whether EventBridge's matcher says `pattern` matches `event`.
pub async fn matches(eb: &aws_sdk_eventbridge::Client, pattern: &str, event: &str) -> crate::Result<bool> {
    let out = eb
        .test_event_pattern()
        .event_pattern(pattern)
        .event(event)
        .send()
        .await
        .map_err(|e| Error::aws("events", "TestEventPattern", e))?;
    Ok(out.result())
}

fn is_schedule_sample(text: &str) -> bool {
    serde_json::from_str::<Value>(text).ok().and_then(|v| v["detail-type"].as_str().map(str::to_string)).as_deref()
        == Some("Scheduled Event")
}

/// The rule rows, the sample rows and the schedule rows.
pub async fn check(eb: &aws_sdk_eventbridge::Client, routes: &Routes) -> Vec<Check> {
    let rules = match routes {
        Ok(r) => r,
        Err(e) => {
            return vec![Check::fails(
                "rule",
                "the stack's rules",
                e.clone(),
                "allow the caller events:ListRules and events:ListTargetsByRule",
            )]
        }
    };
    if rules.is_empty() {
        return vec![Check::fails(
            "rule",
            "the stack's rules",
            "no rule named <stack>-… on the default bus",
            "check the stack name and region, or deploy the stack (sam deploy)",
        )];
    }
    let mut out = Vec::new();
    let mut routed: Vec<(&str, Vec<String>)> = SAMPLES.iter().map(|(n, _)| (*n, Vec::new())).collect();
    for rule in rules {
        let subject = if rule.bus == "default" { rule.name.clone() } else { format!("{}/{}", rule.bus, rule.name) };
        if let Some(schedule) = &rule.schedule {
            out.push(Check::holds(
                "schedule",
                subject.clone(),
                format!("{schedule}{}", if rule.enabled { "" } else { " (disabled)" }),
            ));
            continue;
        }
        let Some(pattern) = &rule.pattern else { continue };
        if !rule.enabled {
            out.push(Check::fails("rule", subject.clone(), "disabled", "enable the rule: its events reach nobody"));
        }
        if rule.targets.is_empty() {
            out.push(Check::fails(
                "rule",
                subject.clone(),
                "has no target",
                "redeploy the stack: its events reach nobody",
            ));
        }
        let mut matched = Vec::new();
        let mut failed = None;
        for (i, (name, event)) in SAMPLES.iter().enumerate() {
            match matches(eb, pattern, event).await {
                Ok(true) => {
                    matched.push(*name);
                    routed[i].1.push(subject.clone());
                }
                Ok(false) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        out.push(match (failed, matched.is_empty()) {
            (Some(e), _) => Check::fails(
                "rule",
                subject,
                e.to_string(),
                "fix the pattern EventBridge refuses, or allow events:TestEventPattern",
            ),
            (None, true) => Check::fails(
                "rule",
                subject,
                format!("matches none of the {} AWS sample events", SAMPLES.len()),
                "compare its pattern with the event AWS sends (events/): a rule that matches nothing never heals",
            ),
            (None, false) => Check::holds("rule", subject, format!("matches {}", matched.join(", "))),
        });
    }
    for ((name, event), (_, by)) in SAMPLES.iter().zip(routed) {
        if is_schedule_sample(event) {
            continue;
        }
        out.push(if by.is_empty() {
            Check::fails(
                "sample",
                *name,
                "no deployed rule routes this event",
                "deploy the rule for it (infra/template.yaml) or accept that this kind of failure is not healed",
            )
        } else {
            Check::holds("sample", *name, format!("routed by {}", by.join(", ")))
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_eventbridge::operation::test_event_pattern::{TestEventPatternError, TestEventPatternOutput};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn rule(name: &str, pattern: &str) -> Rule {
        Rule {
            bus: "default".into(),
            name: name.into(),
            pattern: Some(pattern.into()),
            schedule: None,
            enabled: true,
            targets: vec!["arn:aws:lambda:us-east-1:123456789012:function:s-instance-healer".into()],
        }
    }

    // TestEventPattern is a stub in moto (an empty answer): EventBridge's answer is mocked here, shaped
    // from the API reference ({"Result": bool}), matching by source as the real matcher would for these.
    #[tokio::test]
    async fn a_rule_that_matches_no_sample_and_a_sample_no_rule_routes_are_named() {
        let by_source = mock!(aws_sdk_eventbridge::Client::test_event_pattern)
            .then_output(|| TestEventPatternOutput::builder().result(false).build());
        let ec2 = mock!(aws_sdk_eventbridge::Client::test_event_pattern)
            .match_requests(|r| {
                r.event_pattern().is_some_and(|p| p.contains("aws.ec2"))
                    && r.event().is_some_and(|e| e.contains("\"source\": \"aws.ec2\""))
            })
            .then_output(|| TestEventPatternOutput::builder().result(true).build());
        let client = mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, [&ec2, &by_source]);
        let routes: Routes = Ok(vec![
            rule("s-InstanceHealerInstanceStopped-1", r#"{"source":["aws.ec2"]}"#),
            rule("s-InstanceHealerTypo-2", r#"{"source":["aws.ec3"]}"#),
        ]);
        let checks = check(&client, &routes).await;
        let row = |s: &str| checks.iter().find(|c| c.subject == s).unwrap_or_else(|| panic!("{s}: {checks:#?}"));
        assert!(row("s-InstanceHealerInstanceStopped-1").holds);
        assert!(row("s-InstanceHealerInstanceStopped-1").detail.contains("ec2-instance-state-change-stopped"));
        let typo = row("s-InstanceHealerTypo-2");
        assert!(!typo.holds && typo.detail.contains("matches none"), "{typo:?}");
        assert!(row("ec2-instance-state-change-stopped").holds);
        let rds = row("rds-db-instance-event-failure");
        assert!(!rds.holds && rds.detail.contains("no deployed rule"), "{rds:?}");
        assert!(checks.iter().all(|c| c.subject != "schedule-backup-sweep"), "schedules are not routed by patterns");
    }

    #[tokio::test]
    async fn a_pattern_eventbridge_refuses_is_named() {
        let refuse = mock!(aws_sdk_eventbridge::Client::test_event_pattern).then_error(|| {
            TestEventPatternError::unhandled("InvalidEventPatternException: Event pattern is not valid")
        });
        let client = mock_client!(aws_sdk_eventbridge, [&refuse]);
        let checks = check(&client, &Ok(vec![rule("s-Bad-1", "{")])).await;
        let bad = checks.iter().find(|c| c.subject == "s-Bad-1").unwrap();
        assert!(!bad.holds && bad.detail.contains("TestEventPattern"), "{bad:?}");
    }

    #[tokio::test]
    async fn no_rules_and_unreadable_rules_do_not_hold() {
        let unused = mock!(aws_sdk_eventbridge::Client::test_event_pattern)
            .then_output(|| TestEventPatternOutput::builder().result(true).build());
        let client = mock_client!(aws_sdk_eventbridge, [&unused]);
        let none = check(&client, &Ok(vec![])).await;
        assert!(!none[0].holds && none[0].fix.as_deref().unwrap().contains("stack name"));
        let denied = check(&client, &Err("AccessDenied".into())).await;
        assert!(!denied[0].holds && denied[0].detail.contains("AccessDenied"));
        assert_eq!(unused.num_calls(), 0);
    }
}
