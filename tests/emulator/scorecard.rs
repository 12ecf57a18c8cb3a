//! The resilience scorecard (issue #20): targets read from a Resilience Hub resiliency policy in moto,
//! a drill started as an AWS FIS experiment in moto (which records it and injects nothing) and scored
//! from the suite's decisions, the HTML report opened in headless Chromium (DOM and screenshot), the
//! dashboard's metrics checked against the ones the code emits, and the FIS experiment templates of
//! infra/drills.yaml.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use harness::{ctx_with, sdk_config, unique};
use selfheal::clients::Aws;
use selfheal::drill::deliver::{BoxFuture, Deliverer};
use selfheal::drill::fis::{self, sdk as fis_sdk};
use selfheal::drill::report::{DrillReport, StepReport};
use selfheal::drill::scorecard::{self, Evidence, LedgerEvent};
use selfheal::drill::targets::{self, Disruption, Target, TargetSource, Targets};
use selfheal::drill::{html, Drill, DrillConfig, Scenario};
use selfheal::envelope::{Envelope, Outcome, Target as EnvTarget};
use serde_json::Value as Json;
use serde_norway::Value;

fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

#[tokio::test]
async fn the_targets_are_read_from_a_resilience_hub_policy() {
    let aws = Aws::from_sdk_config(sdk_config().await);
    let mut want = Targets::defaults();
    want.policy.insert(Disruption::Hardware, Target { rto_in_secs: 120, rpo_in_secs: 5 });
    want.policy.insert(Disruption::Region, Target { rto_in_secs: 1800, rpo_in_secs: 60 });
    let arn = targets::create_policy(&aws, &unique("policy"), &want).await.unwrap();
    assert!(arn.contains(":resiliency-policy/"), "{arn}");
    let got = TargetSource::Policy(arn.clone()).load(&aws).await.unwrap();
    assert_eq!(got.policy, want.policy);
    assert_eq!(got.source, arn);
    // A policy that does not exist is an error naming the call, not silently the defaults.
    let missing = arn.rsplit_once('/').map(|(a, _)| format!("{a}/no-such-policy")).unwrap();
    let e = TargetSource::Policy(missing).load(&aws).await.unwrap_err().to_string();
    assert!(e.contains("DescribeResiliencyPolicy"), "{e}");
}

/// An experiment template for instance loss, the way infra/drills.yaml declares it.
async fn instance_loss_template(aws: &Aws) -> String {
    use fis_sdk::types::{
        CreateExperimentTemplateActionInput, CreateExperimentTemplateStopConditionInput,
        CreateExperimentTemplateTargetInput,
    };
    let client = fis_sdk::Client::new(&aws.sdk);
    let out = client
        .create_experiment_template()
        .client_token(unique("token"))
        .description("selfheal lose-instance")
        .role_arn("arn:aws:iam::123456789012:role/selfheal-fis")
        .stop_conditions(
            CreateExperimentTemplateStopConditionInput::builder()
                .source("aws:cloudwatch:alarm")
                .value("arn:aws:cloudwatch:us-east-1:123456789012:alarm:app-health")
                .build()
                .unwrap(),
        )
        .targets(
            "Instance",
            CreateExperimentTemplateTargetInput::builder()
                .resource_type("aws:ec2:instance")
                .resource_tags("selfheal:drill", "true")
                .selection_mode("COUNT(1)")
                .build()
                .unwrap(),
        )
        .actions(
            "StopInstance",
            CreateExperimentTemplateActionInput::builder()
                .action_id("aws:ec2:stop-instances")
                .targets("Instances", "Instance")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    out.experiment_template().and_then(|t| t.id()).unwrap().to_string()
}

fn drill(ctx: selfheal::Ctx, timeout: Duration) -> Drill {
    let mut env = harness::env(&[]);
    let mut cfg = DrillConfig::read(&mut env);
    cfg.recovery_timeout = timeout;
    cfg.poll_interval = Duration::from_millis(100);
    let deliverer = Deliverer::InProcess(Arc::new(|_f: String, _e: Json| -> BoxFuture {
        Box::pin(async { Err(selfheal::Error::Precondition("an FIS drill delivers nothing".into())) })
    }));
    Drill { ctx, cfg, deliverer }
}

#[tokio::test]
async fn a_drill_started_as_an_fis_experiment_is_followed_in_the_ledger_and_scored() {
    let aws = Aws::from_sdk_config(sdk_config().await);
    let table = unique("ledger");
    let ctx = ctx_with("drill", &[("SELFHEAL_LEDGER_TABLE", &table)], aws.clone()).await;
    let healer = ctx_with("instance-healer", &[("SELFHEAL_LEDGER_TABLE", &table)], aws.clone()).await;
    let template = instance_loss_template(&aws).await;
    let d = drill(ctx, Duration::from_secs(20));
    // moto injects nothing: the healer's reaction (to the alarm the stopped instance would raise) is
    // recorded by hand, a moment after the experiment starts.
    let react = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let env = Envelope::new(
            "instance-healer",
            "heal-instance",
            EnvTarget::new("instance", "i-0fis"),
            Outcome::Acted,
            "replaced through its group",
        );
        healer.record(env).await.unwrap();
    });
    let report = fis::run(&d, Scenario::LoseInstance, &template).await;
    react.await.unwrap();
    assert!(
        report.injected[0].starts_with("AWS FIS experiment ") && report.injected[0].ends_with(&template),
        "{report:?}"
    );
    assert!(report.passed, "{report:#?}");
    let step = &report.steps[0];
    assert_eq!(step.function, "instance-healer");
    assert!(step.detect_ms.is_some() && step.recover_ms.is_some(), "{step:?}");
    assert_eq!(step.actions.len(), 1, "{step:?}");
    // The experiment is moto's record of it, started from the template.
    let client = fis_sdk::Client::new(&aws.sdk);
    let listed = client.list_experiments().experiment_template_id(&template).send().await.unwrap();
    assert_eq!(listed.experiments().len(), 1, "{listed:?}");
    // Scored: RTO met against the defaults (Hardware, 300 s); a stateless instance's RPO not measured.
    let evidence = scorecard::gather(&d, std::slice::from_ref(&report), None).await;
    let card = scorecard::score_all(std::slice::from_ref(&report), &evidence, &Targets::defaults(), 20.0);
    assert_eq!((card.scores[0].rto.word(), card.scores[0].rpo.word()), ("met", "not-measured"), "{card:#?}");
    assert!(
        card.scores[0].timeline.iter().any(|e| e.label == "instance-healer heal-instance i-0fis: acted"),
        "{card:#?}"
    );

    // Without a reaction the experiment's report fails, saying what it saw.
    let quiet = drill(ctx_with("drill", &[], aws.clone()).await, Duration::from_millis(800));
    let report = fis::run(&quiet, Scenario::LoseInstance, &template).await;
    assert!(!report.passed);
    assert!(report.steps[0].observed.starts_with("no decision by instance-healer"), "{report:?}");
    // A template that does not exist: a failed step naming the call.
    let report = fis::run(&quiet, Scenario::LoseInstance, "EXTnosuchtemplate").await;
    assert!(!report.passed && report.steps[0].observed.contains("StartExperiment"), "{report:?}");
}

fn sample_reports() -> (Vec<DrillReport>, Vec<Evidence>) {
    let step = |function: &str, detect, recover, actions: Vec<String>| StepReport {
        name: format!("{function} reacts"),
        function: function.into(),
        expected: "e".into(),
        observed: "o".into(),
        detect_ms: Some(detect),
        recover_ms: recover,
        actions,
        accounts: vec![],
        passed: recover.is_some(),
    };
    let report = |scenario: &str, steps: Vec<StepReport>| DrillReport {
        scenario: scenario.into(),
        mode: "live".into(),
        started_at: "2026-01-01T00:00:00.000Z".into(),
        injected: vec![format!("{scenario} injected")],
        passed: steps.iter().all(|s| s.passed),
        steps,
        guards_fired: vec![],
        total_ms: 5000,
        resources: vec![],
        restores: vec![],
    };
    let decided = |at_ms, function: &str, action: &str, target: &str, outcome: &str, lag| LedgerEvent {
        at_ms,
        function: function.into(),
        action: action.into(),
        target: target.into(),
        outcome: outcome.into(),
        lag_seconds: lag,
    };
    let event =
        |at_ms, function: &str, action: &str, target: &str, lag| decided(at_ms, function, action, target, "acted", lag);
    let reports = vec![
        report(
            "lose-instance",
            vec![step(
                "instance-healer",
                300,
                Some(2100),
                vec!["instance-healer heal-instance i-1 in hub: acted (r)".into()],
            )],
        ),
        report(
            "lose-primary-db",
            vec![step(
                "db-failover",
                200,
                Some(4000),
                vec!["db-failover promote-replica db-r1 in hub: acted (r)".into()],
            )],
        ),
        // The short-circuit and its page, as the drill expects: no recovery.
        report(
            "lose-az",
            vec![step(
                "instance-healer",
                300,
                Some(1200),
                vec!["instance-healer heal-instance i-2 in hub: refused (a person must look)".into()],
            )],
        ),
    ];
    let evidence = vec![
        Evidence { events: vec![event(500, "instance-healer", "heal-instance", "i-1", None)], backup_age_secs: None },
        // A replica 90 s behind: the Hardware RPO (60 s by default) is missed.
        Evidence {
            events: vec![event(400, "db-failover", "promote-replica", "db-r1", Some(90.0))],
            backup_age_secs: None,
        },
        Evidence {
            events: vec![decided(600, "instance-healer", "heal-instance", "i-2", "refused", None)],
            backup_age_secs: None,
        },
    ];
    (reports, evidence)
}

fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = std::process::Command::new("sh").args(["-c", &format!("command -v {name}")]).output() {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !path.is_empty() {
                return Some(PathBuf::from(path));
            }
        }
    }
    None
}

fn headless(chromium: &PathBuf, args: &[&str]) -> std::process::Output {
    let profile = std::env::temp_dir().join(unique("chromium-profile"));
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    out
}

/// A PNG's width and height, from its IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[test]
fn the_html_report_renders_its_timelines_and_scorecard_in_headless_chromium() {
    let Some(chromium) = chromium() else {
        eprintln!(
            "\n!!!!!!!! SKIPPED: no chromium on this machine (scripts/setup installs Debian's `chromium` where it \
             can: as root or with sudo). The HTML report was NOT checked in a browser. !!!!!!!!\n"
        );
        return;
    };
    let (reports, evidence) = sample_reports();
    let card = scorecard::score_all(&reports, &evidence, &Targets::defaults(), 120.0);
    let page = html::render(&card, &reports);
    let dir = std::env::temp_dir().join(unique("scorecard-html"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("report.html");
    std::fs::write(&path, &page).unwrap();
    let url = format!("file://{}", path.display());

    // The DOM as the browser built it: one scorecard row and one timeline per scenario, with its events.
    let out = headless(&chromium, &["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && dom.contains("id=\"scorecard\""),
        "{}\n{dom}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(dom.matches("<tr class=\"score\"").count(), 3, "{dom}");
    assert!(dom.contains("data-scenario=\"lose-instance\" data-rto=\"met\""), "{dom}");
    assert!(dom.contains("data-scenario=\"lose-primary-db\" data-rto=\"met\" data-rpo=\"missed\""), "{dom}");
    // A page is no recovery: scored as such, and its timeline verifies it without a recovered event.
    assert!(dom.contains("data-scenario=\"lose-az\" data-rto=\"not-recovered\""), "{dom}");
    assert!(dom.contains("not recovered: the outcome was a page (refused ×1), not a recovery"), "{dom}");
    let sections: Vec<&str> = dom.split("<section class=\"timeline\"").skip(1).collect();
    assert_eq!(sections.len(), 3, "{dom}");
    assert!(sections[2].contains("<li data-kind=\"verified\"") && !sections[2].contains("data-kind=\"recovered\""));
    for (section, scenario) in sections.iter().zip(["lose-instance", "lose-primary-db"]) {
        assert!(section.starts_with(&format!(" data-scenario=\"{scenario}\"")), "{section}");
        for kind in ["injected", "detected", "action", "recovered"] {
            assert!(section.contains(&format!("<li data-kind=\"{kind}\"")), "{scenario} lacks {kind}: {section}");
            assert!(
                section.contains(&format!("<g class=\"event\" data-kind=\"{kind}\"")),
                "{scenario}: no {kind} marker"
            );
        }
        assert!(section.contains("RTO target 300s"), "{section}");
    }
    assert!(dom.contains("missed by 30.0s: 90.0s of 60s"), "{dom}");

    // The screenshot: a PNG of the window's size, far from blank (a blank page's screenshot of the same
    // size compresses to a fraction of it).
    let shot = dir.join("report.png");
    let out = headless(&chromium, &[&format!("--screenshot={}", shot.display()), "--window-size=1200,1400", &url]);
    let png = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("no screenshot ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(png_size(&png), (1200, 1400));
    let blank = dir.join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank_shot = dir.join("blank.png");
    headless(
        &chromium,
        &[
            &format!("--screenshot={}", blank_shot.display()),
            "--window-size=1200,1400",
            &format!("file://{}", blank.display()),
        ],
    );
    let blank_png = std::fs::read(&blank_shot).unwrap();
    assert!(
        png.len() > 5 * blank_png.len(),
        "the report's screenshot ({} bytes) is as plain as a blank page's ({} bytes)",
        png.len(),
        blank_png.len()
    );
    eprintln!("HTML report checked in {}: {} ({} bytes screenshot)", chromium.display(), path.display(), png.len());
    // KEEP_SCORECARD_HTML=1 keeps the page and its screenshot, to look at.
    if std::env::var_os("KEEP_SCORECARD_HTML").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn yaml(rel: &str) -> Value {
    serde_norway::from_str(&std::fs::read_to_string(repo_path(rel)).unwrap()).unwrap()
}

fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => untag(&t.value),
        v => v,
    }
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| untag(v).get(*k))
}

/// Every metric name the library emits: the `.count("X"` and `.millis("X"` literals in shared/src.
fn emitted_metrics() -> BTreeSet<String> {
    fn walk(dir: &std::path::Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()) {
            if entry.is_dir() {
                walk(&entry, out);
            } else if entry.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&entry).unwrap();
                for call in [".count(\"", ".millis(\""] {
                    for piece in text.split(call).skip(1) {
                        if let Some(name) = piece.split('"').next() {
                            out.insert(name.to_string());
                        }
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&repo_path("shared/src"), &mut out);
    out
}

#[test]
fn every_metric_the_dashboard_plots_is_one_the_code_emits() {
    let t = yaml("infra/template.yaml");
    let dash = at(&t, &["Resources", "Dashboard"]).expect("a Dashboard resource");
    assert_eq!(at(dash, &["Type"]).and_then(Value::as_str), Some("AWS::CloudWatch::Dashboard"));
    let body = at(dash, &["Properties", "DashboardBody"]).and_then(|v| untag(v).as_str()).unwrap();
    let body: Json = serde_json::from_str(&body.replace("${AWS::Region}", "us-east-1")).expect("the body is JSON");
    let mut plotted = BTreeSet::new();
    for w in body["widgets"].as_array().unwrap().iter().filter(|w| w["type"] == "metric") {
        let title = w["properties"]["title"].as_str().unwrap_or("?").to_string();
        for m in w["properties"]["metrics"].as_array().unwrap() {
            let m = m.as_array().unwrap();
            match m[0].as_str() {
                Some(ns) => {
                    assert_eq!(ns, "selfheal", "{title}");
                    plotted.insert(m[1].as_str().unwrap().to_string());
                }
                None => {
                    let expr = m[0]["expression"].as_str().unwrap();
                    assert!(expr.starts_with("SEARCH('{selfheal,"), "{title}: {expr}");
                    let name = expr.split("MetricName=\"").nth(1).and_then(|s| s.split('"').next()).unwrap();
                    plotted.insert(name.to_string());
                }
            }
        }
    }
    let emitted = emitted_metrics();
    assert!(
        emitted.contains("Decisions") && emitted.contains("ActionDuration"),
        "the scan found too little: {emitted:?}"
    );
    let unknown: Vec<&String> = plotted.iter().filter(|p| !emitted.contains(*p)).collect();
    assert!(unknown.is_empty(), "the dashboard plots metrics nothing emits: {unknown:?} (emitted: {emitted:?})");
    for m in ["Decisions", "ActionDuration", "TimeToRecover", "RecoveryPoint", "TargetsMet", "TargetsMissed"] {
        assert!(plotted.contains(m), "the dashboard does not plot {m}");
    }
    for m in scorecard::METRICS {
        assert!(emitted.contains(m), "{m}");
    }
}

#[test]
fn the_fis_templates_target_drill_tagged_resources_and_stop_on_alarms() {
    let t = yaml("infra/drills.yaml");
    let resources = at(&t, &["Resources"]).and_then(|r| untag(r).as_mapping()).unwrap();
    let mut actions = BTreeSet::new();
    let mut count = 0;
    for (id, res) in resources {
        if at(res, &["Type"]).and_then(Value::as_str) != Some("AWS::FIS::ExperimentTemplate") {
            continue;
        }
        count += 1;
        let id = id.as_str().unwrap();
        let stops = at(res, &["Properties", "StopConditions"]).and_then(|s| untag(s).as_sequence()).unwrap();
        assert!(!stops.is_empty(), "{id}");
        for s in stops {
            assert_eq!(at(s, &["Source"]).and_then(Value::as_str), Some("aws:cloudwatch:alarm"), "{id}");
        }
        let targets = at(res, &["Properties", "Targets"]).and_then(|s| untag(s).as_mapping()).unwrap();
        for (name, target) in targets {
            let tag = at(target, &["ResourceTags", "selfheal:drill"]).and_then(Value::as_str);
            assert_eq!(tag, Some("true"), "{id}: target {name:?} is not selected by the drill tag");
        }
        for (_, a) in at(res, &["Properties", "Actions"]).and_then(|s| untag(s).as_mapping()).unwrap() {
            actions.insert(at(a, &["ActionId"]).and_then(Value::as_str).unwrap().to_string());
        }
    }
    assert_eq!(count, 3);
    for a in ["aws:ec2:stop-instances", "aws:network:disrupt-connectivity", "aws:rds:reboot-db-instances"] {
        assert!(actions.contains(a), "{a}: {actions:?}");
    }
    // The drill's role may start and follow them, and read a resiliency policy.
    let hub = yaml("infra/template.yaml");
    let role =
        serde_json::to_string(&serde_json::to_value(at(&hub, &["Resources", "DrillRole"]).unwrap()).unwrap()).unwrap();
    for a in ["fis:StartExperiment", "fis:GetExperiment", "resiliencehub:DescribeResiliencyPolicy"] {
        assert!(role.contains(a), "the drill role lacks {a}");
    }
}
