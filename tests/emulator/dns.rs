//! dns-failover against moto: real-shaped alarm and manual events through the handler, asserting on the
//! record sets Route 53 holds afterwards, the envelopes, the ledger and the notifications.
//!
//! moto's `GetHealthCheckStatus` always reports `Success`, so a side is made unhealthy by inverting its
//! health check (what `selfheal::dns::health` reads). moto quirks worked around here: records are first
//! written with UPSERT and names without the trailing dot (its DELETE validation compares against the
//! journal of earlier writes, and its CREATE check rejects a CREATE identical to an earlier CREATE).

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HealthCheckConfig, HealthCheckType, ResourceRecord, ResourceRecordSet,
    ResourceRecordSetFailover, RrType, Tag, TagResourceType,
};
use harness::{ctx, drain_notifications, event, sdk_config, topic_with_queue, unique};
use selfheal::dns::{Direction, DnsConfig, DnsFailover, RecordRef, FUNCTION};
use selfheal::trigger::parse_event;
use selfheal::{Envelope, Outcome, Severity};
use serde_json::Value;

const SAMPLE_HC: &str = "abcdef12-3456-7890-abcd-ef1234567890";

struct Fixture {
    r53: aws_sdk_route53::Client,
    zone: String,
    zone_id: String,
    app: String,
    web: String,
    hc_blue: String,
    hc_green: String,
    hc_wblue: String,
}

async fn health_check(r53: &aws_sdk_route53::Client, ip: &str, failing: bool) -> String {
    let cfg = HealthCheckConfig::builder()
        .r#type(HealthCheckType::Http)
        .ip_address(ip)
        .port(80)
        .resource_path("/health")
        .inverted(failing)
        .build()
        .unwrap();
    let out = r53.create_health_check().caller_reference(unique("hc")).health_check_config(cfg).send().await.unwrap();
    out.health_check().unwrap().id().to_string()
}

async fn set_failing(r53: &aws_sdk_route53::Client, hc: &str, failing: bool) {
    r53.update_health_check().health_check_id(hc).inverted(failing).send().await.unwrap();
}

fn rrset(name: &str, id: &str, failover: Option<&str>, weight: Option<i64>, ip: &str, hc: &str) -> ResourceRecordSet {
    ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::A)
        .set_identifier(id)
        .set_failover(failover.map(ResourceRecordSetFailover::from))
        .set_weight(weight)
        .ttl(60)
        .resource_records(ResourceRecord::builder().value(ip).build().unwrap())
        .health_check_id(hc)
        .build()
        .unwrap()
}

/// A zone (opted in when `tagged`) with a failover pair `app.<zone>` (blue PRIMARY, green SECONDARY)
/// and a weighted pair `web.<zone>` (wblue 100, wgreen 0). Primaries' checks fail when `primary_failing`.
async fn fixture(tagged: bool, primary_failing: bool, standby_failing: bool) -> Fixture {
    let sdk = sdk_config().await;
    let r53 = aws_sdk_route53::Client::new(&sdk);
    let zone = format!("{}.example.com.", unique("z"));
    let z = r53.create_hosted_zone().name(&zone).caller_reference(unique("ref")).send().await.unwrap();
    let zone_id = z.hosted_zone().unwrap().id().trim_start_matches("/hostedzone/").to_string();
    if tagged {
        r53.change_tags_for_resource()
            .resource_type(TagResourceType::Hostedzone)
            .resource_id(&zone_id)
            .add_tags(Tag::builder().key("selfheal:enabled").value("true").build())
            .send()
            .await
            .unwrap();
    }
    let hc_blue = health_check(&r53, "10.0.0.1", primary_failing).await;
    let hc_green = health_check(&r53, "10.0.1.1", standby_failing).await;
    let hc_wblue = health_check(&r53, "10.0.0.2", primary_failing).await;
    let hc_wgreen = health_check(&r53, "10.0.1.2", standby_failing).await;
    let app = format!("app.{zone}");
    let web = format!("web.{zone}");
    let bare = |n: &str| n.trim_end_matches('.').to_string();
    let changes = [
        rrset(&bare(&app), "blue", Some("PRIMARY"), None, "10.0.0.1", &hc_blue),
        rrset(&bare(&app), "green", Some("SECONDARY"), None, "10.0.1.1", &hc_green),
        rrset(&bare(&web), "wblue", None, Some(100), "10.0.0.2", &hc_wblue),
        rrset(&bare(&web), "wgreen", None, Some(0), "10.0.1.2", &hc_wgreen),
    ];
    let mut batch = ChangeBatch::builder();
    for s in changes {
        batch = batch.changes(Change::builder().action(ChangeAction::Upsert).resource_record_set(s).build().unwrap());
    }
    r53.change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(batch.build().unwrap())
        .send()
        .await
        .unwrap();
    Fixture { r53, zone, zone_id, app, web, hc_blue, hc_green, hc_wblue }
}

impl Fixture {
    fn records_var(&self) -> String {
        format!("{z}/{},{z}/{}", self.app, self.web, z = self.zone)
    }

    async fn handler(&self, vars: &[(&str, &str)]) -> DnsFailover {
        let records = self.records_var();
        // The flip mechanics under test here; the approval policy (on for region failovers by
        // default) has its own tests below, which turn it back on.
        let mut all: Vec<(&str, &str)> =
            vec![("SELFHEAL_DNS_RECORDS", records.as_str()), ("SELFHEAL_APPROVAL_ALWAYS", "none")];
        all.extend_from_slice(vars);
        let ctx = ctx(FUNCTION, &all).await;
        let mut env = harness::env(&all);
        let cfg = DnsConfig::read(&mut env);
        env.finish().unwrap();
        DnsFailover::new(ctx, cfg)
    }

    /// (set id, failover role or weight) of every set of `name`, sorted by set id.
    async fn state(&self, name: &str) -> Vec<(String, String)> {
        let out = self.r53.list_resource_record_sets().hosted_zone_id(&self.zone_id).send().await.unwrap();
        let mut v: Vec<(String, String)> = out
            .resource_record_sets()
            .iter()
            .filter(|s| s.name() == name)
            .map(|s| {
                let role = match (s.failover(), s.weight()) {
                    (Some(f), _) => f.as_str().to_string(),
                    (None, Some(w)) => w.to_string(),
                    _ => "simple".to_string(),
                };
                (s.set_identifier().unwrap_or("-").to_string(), role)
            })
            .collect();
        v.sort();
        v
    }

    async fn app_state(&self) -> Vec<(String, String)> {
        self.state(&self.app).await
    }

    async fn web_state(&self) -> Vec<(String, String)> {
        self.state(&self.web).await
    }
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn original_app() -> Vec<(String, String)> {
    pairs(&[("blue", "PRIMARY"), ("green", "SECONDARY")])
}

fn flipped_app() -> Vec<(String, String)> {
    pairs(&[("blue", "SECONDARY"), ("green", "PRIMARY")])
}

fn original_web() -> Vec<(String, String)> {
    pairs(&[("wblue", "100"), ("wgreen", "0")])
}

fn flipped_web() -> Vec<(String, String)> {
    pairs(&[("wblue", "0"), ("wgreen", "100")])
}

/// The SNS alarm sample for health check `hc`, as alarm `name`, in `state`, changed at `time`.
fn sns_alarm(hc: &str, name: &str, state: &str, time: &str) -> Value {
    let mut v = event(
        "alarm-sns-route53-health-check.json",
        &[(SAMPLE_HC, hc), ("app-primary-health", name), ("2026-11-25T10:15:31.180+0000", time)],
    );
    if state != "ALARM" {
        let msg = v["Records"][0]["Sns"]["Message"].as_str().unwrap().to_string();
        let mut m: Value = serde_json::from_str(&msg).unwrap();
        m["NewStateValue"] = Value::String(state.into());
        m["OldStateValue"] = Value::String("ALARM".into());
        v["Records"][0]["Sns"]["Message"] = Value::String(m.to_string());
    }
    v
}

/// The EventBridge alarm sample for `hc`.
fn eventbridge_alarm(hc: &str, name: &str, state: &str) -> Value {
    let mut v = event("alarm-eventbridge-route53-health-check.json", &[(SAMPLE_HC, hc), ("app-primary-health", name)]);
    v["detail"]["state"]["value"] = Value::String(state.into());
    v
}

/// The manual sample (`failback`, dry run) rewritten for `zone`, `action`, `dry_run` and `request`.
fn manual(zone: &str, action: &str, dry_run: bool, request: &str) -> Value {
    let mut v = event("manual-dns-failback.json", &[("example.com.", zone)]);
    v["action"] = Value::String(action.into());
    v["dryRun"] = Value::Bool(dry_run);
    v["requestId"] = Value::String(request.into());
    v
}

fn decisions(out: &Value) -> Vec<Envelope> {
    serde_json::from_value(out["decisions"].clone()).unwrap()
}

async fn run(h: &DnsFailover, payload: &Value) -> Vec<Envelope> {
    decisions(&h.handle(payload).await.unwrap())
}

#[tokio::test]
async fn a_failing_primary_flips_a_failover_pair_and_a_weighted_pair_to_the_standby() {
    let f = fixture(true, true, false).await;
    let h = f.handler(&[]).await;

    // Failover pair via SNS.
    let alarm = sns_alarm(&f.hc_blue, &unique("app-health"), "ALARM", "2026-11-25T10:15:31.180+0000");
    let out = run(&h, &alarm).await;
    assert_eq!(out.len(), 1);
    let e = &out[0];
    assert_eq!(e.outcome, Outcome::Acted, "{e:?}");
    assert_eq!(e.action, "failover");
    assert_eq!(e.details["insync"], Value::Bool(true), "{e:?}");
    assert!(e.reason.contains("INSYNC"), "{}", e.reason);
    assert_eq!(e.details["changeBatch"].as_array().unwrap().len(), 4);
    assert_eq!(e.details["before"][0]["failover"], "PRIMARY");
    assert_eq!(f.app_state().await, flipped_app());
    assert_eq!(f.web_state().await, original_web(), "the other record is untouched");

    // Weighted pair via EventBridge.
    let out = run(&h, &eventbridge_alarm(&f.hc_wblue, &unique("web-health"), "ALARM")).await;
    assert_eq!(out[0].outcome, Outcome::Acted, "{:?}", out[0]);
    assert_eq!(out[0].details["insync"], Value::Bool(true));
    assert_eq!(f.web_state().await, flipped_web());

    // Redelivery of the same alarm changes nothing: the record's real state already shows the failing
    // side takes no traffic (skipped), or the ledger claim catches it (duplicate).
    let out = run(&h, &alarm).await;
    assert!(matches!(out[0].outcome, Outcome::Duplicate | Outcome::Skipped), "{:?}", out[0]);
    assert_eq!(f.app_state().await, flipped_app());

    // The ledger holds the before and after values.
    let trail = h.ctx().ledger.audit_trail(&e.target.id).await.unwrap();
    let acted: Vec<_> = trail.iter().filter(|r| r.outcome == "acted").collect();
    assert_eq!(acted.len(), 1);
    assert_eq!(acted[0].envelope.details["after"], e.details["after"]);
    let r53_calls = h.ctx().aws.calls.mutating_calls();
    assert_eq!(r53_calls.iter().filter(|c| c.starts_with("route53:")).count(), 2, "{r53_calls:?}");
}

#[tokio::test]
async fn failback_restores_the_original_by_hand_and_after_the_hysteresis() {
    let f = fixture(true, true, false).await;
    let patient = f
        .handler(&[
            ("SELFHEAL_COOLDOWN_SECONDS", "0"),
            ("SELFHEAL_RATE_LIMIT", "50"),
            ("SELFHEAL_DNS_FAILBACK_AFTER_SECONDS", "3600"),
        ])
        .await;
    let eager = DnsFailover::new(patient.ctx().clone(), {
        let mut env =
            harness::env(&[("SELFHEAL_DNS_RECORDS", &f.records_var()), ("SELFHEAL_DNS_FAILBACK_AFTER_SECONDS", "0")]);
        let c = DnsConfig::read(&mut env);
        env.finish().unwrap();
        c
    });
    let name = unique("app-health");
    run(&patient, &sns_alarm(&f.hc_blue, &name, "ALARM", "2026-11-25T10:15:31.180+0000")).await;
    let wname = unique("web-health");
    run(&patient, &eventbridge_alarm(&f.hc_wblue, &wname, "ALARM")).await;
    assert_eq!(f.app_state().await, flipped_app());
    assert_eq!(f.web_state().await, flipped_web());

    // The primary recovers; its OK alarm comes too soon for automatic failback.
    set_failing(&f.r53, &f.hc_blue, false).await;
    set_failing(&f.r53, &f.hc_wblue, false).await;
    let out = run(&patient, &sns_alarm(&f.hc_blue, &name, "OK", "2026-11-25T10:20:00.000+0000")).await;
    assert_eq!(out[0].outcome, Outcome::Skipped, "{:?}", out[0]);
    assert!(out[0].reason.contains("SELFHEAL_DNS_FAILBACK_AFTER_SECONDS"), "{}", out[0].reason);
    assert_eq!(f.app_state().await, flipped_app());

    // The standby's OK is not a reason to fail back.
    let out = run(&eager, &sns_alarm(&f.hc_green, &unique("green"), "OK", "2026-11-25T10:21:00.000+0000")).await;
    assert_eq!(out[0].outcome, Outcome::Skipped, "{:?}", out[0]);
    assert_eq!(f.app_state().await, flipped_app());

    // By hand (the sample manual event): restores the original pair.
    let out = run(&patient, &manual(&f.zone, "failback", false, &unique("op"))).await;
    assert_eq!(out[0].outcome, Outcome::Acted, "{:?}", out[0]);
    assert_eq!(out[0].action, "failback");
    assert_eq!(f.app_state().await, original_app());
    // A second failback has nothing to do.
    let out = run(&patient, &manual(&f.zone, "failback", false, &unique("op"))).await;
    assert_eq!(out[0].outcome, Outcome::Skipped, "{:?}", out[0]);
    assert!(out[0].reason.contains("nothing to fail back"), "{}", out[0].reason);

    // Automatically, once the hysteresis has passed: the weighted pair's OK alarm restores its weights.
    let mut ok = eventbridge_alarm(&f.hc_wblue, &wname, "OK");
    ok["detail"]["state"]["timestamp"] = Value::String("2026-11-25T11:00:00.000+0000".into());
    let out = run(&eager, &ok).await;
    assert_eq!(out[0].outcome, Outcome::Acted, "{:?}", out[0]);
    assert_eq!(f.web_state().await, original_web());
}

#[tokio::test]
async fn an_unhealthy_standby_blocks_the_flip_and_notifies() {
    let f = fixture(true, true, true).await;
    let sdk = sdk_config().await;
    let (topic, queue) = topic_with_queue(&sdk, &unique("dns-topic")).await;
    let h = f.handler(&[("SELFHEAL_TOPIC_ARN", &topic)]).await;

    // Both sides failing: nothing changes (fail open), a human is paged.
    let out = run(&h, &sns_alarm(&f.hc_blue, &unique("app"), "ALARM", "2026-11-25T10:15:31.180+0000")).await;
    assert_eq!(out[0].outcome, Outcome::Refused, "{:?}", out[0]);
    assert_eq!(out[0].severity, Severity::Critical);
    assert!(out[0].reason.contains("both sides are unhealthy"), "{}", out[0].reason);
    assert_eq!(f.app_state().await, original_app());

    // A planned failover (healthy primary) to a failing standby is refused too.
    set_failing(&f.r53, &f.hc_wblue, false).await;
    let mut m = manual(&f.zone, "failover", false, &unique("op"));
    m["target"] = Value::String(f.web.clone());
    let out = run(&h, &m).await;
    assert_eq!(out[0].outcome, Outcome::Refused, "{:?}", out[0]);
    assert!(out[0].reason.contains("will not move traffic to an unhealthy target"), "{}", out[0].reason);
    assert_eq!(f.web_state().await, original_web());

    let mutating: Vec<String> =
        h.ctx().aws.calls.mutating_calls().into_iter().filter(|c| c.starts_with("route53:")).collect();
    assert!(mutating.is_empty(), "{mutating:?}");
    let notes = drain_notifications(&sdk, &queue).await;
    let refused: Vec<&Value> = notes.iter().map(|(m, _)| m).filter(|m| m["outcome"] == "refused").collect();
    assert_eq!(refused.len(), 2, "{notes:?}");
    assert!(refused.iter().any(|m| m["severity"] == "critical"));
}

#[tokio::test]
async fn two_flips_inside_the_anti_flap_window_do_one() {
    let f = fixture(true, true, false).await;
    let h = f.handler(&[("SELFHEAL_COOLDOWN_SECONDS", "900")]).await;
    let out = run(&h, &sns_alarm(&f.hc_blue, &unique("app"), "ALARM", "2026-11-25T10:15:31.180+0000")).await;
    assert_eq!(out[0].outcome, Outcome::Acted, "{:?}", out[0]);

    set_failing(&f.r53, &f.hc_blue, false).await;
    let out = run(&h, &manual(&f.zone, "failback", false, &unique("op"))).await;
    assert_eq!(out[0].outcome, Outcome::Refused, "{:?}", out[0]);
    assert!(out[0].reason.contains("cooldown"), "{}", out[0].reason);
    assert_eq!(f.app_state().await, flipped_app());

    // The direct API (db-failover, drill) is held by the same window.
    let t = parse_event(&manual(&f.zone, "failback", false, &unique("drill"))).unwrap().remove(0);
    let rec = RecordRef::new(&f.zone, &f.app, "A");
    let e = h.flip(&rec, Direction::Failback, &t, false).await.unwrap();
    assert_eq!(e.outcome, Outcome::Refused, "{e:?}");
    assert_eq!(f.app_state().await, flipped_app());
}

#[tokio::test]
async fn dry_run_shows_the_change_batch_and_changes_nothing() {
    let f = fixture(true, true, false).await;
    let h = f.handler(&[("SELFHEAL_DRY_RUN", "true")]).await;
    let out = run(&h, &sns_alarm(&f.hc_blue, &unique("app"), "ALARM", "2026-11-25T10:15:31.180+0000")).await;
    let e = &out[0];
    assert_eq!(e.outcome, Outcome::DryRun, "{e:?}");
    assert!(e.dry_run);
    let batch = e.details["changeBatch"].as_array().unwrap();
    let actions: Vec<&str> = batch.iter().map(|c| c["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["DELETE", "DELETE", "CREATE", "CREATE"]);
    let created_primary = batch.iter().find(|c| c["action"] == "CREATE" && c["recordSet"]["failover"] == "PRIMARY");
    assert_eq!(created_primary.unwrap()["recordSet"]["setIdentifier"], "green");
    assert_eq!(f.app_state().await, original_app());

    // An invocation asking for a dry run on a live function gets one too (the sample manual event).
    let live = f.handler(&[]).await;
    let out = run(&live, &event("manual-dns-failback.json", &[("example.com.", &f.zone)])).await;
    assert_eq!(out[0].outcome, Outcome::Skipped, "nothing to fail back yet: {:?}", out[0]);
    let mut m = manual(&f.zone, "failover", true, &unique("op"));
    m["target"] = Value::String(f.web.clone());
    let out = run(&live, &m).await;
    assert_eq!(out[0].outcome, Outcome::DryRun, "{:?}", out[0]);
    assert_eq!(out[0].details["after"][0]["weight"], 0);
    assert_eq!(f.web_state().await, original_web());

    for c in [h.ctx(), live.ctx()].iter().flat_map(|c| c.aws.calls.mutating_calls()) {
        assert!(c.starts_with("dynamodb:") || c.starts_with("sns:"), "dry-run made a mutating call: {c}");
    }
}

#[tokio::test]
async fn a_record_that_does_not_exist_is_refused_naming_it() {
    let f = fixture(true, true, false).await;
    let ghost = format!("ghost.{}", f.zone);
    let records = format!("{}/{ghost},nosuch-{}.example.com./x.nosuch-{}.example.com.", f.zone, f.zone_id, f.zone_id);
    let ctx = ctx(FUNCTION, &[]).await;
    let mut env = harness::env(&[("SELFHEAL_DNS_RECORDS", &records)]);
    let cfg = DnsConfig::read(&mut env);
    env.finish().unwrap();
    let h = DnsFailover::new(ctx, cfg);

    let mut m = manual(&f.zone, "failover", false, &unique("op"));
    m["target"] = Value::String(ghost.clone());
    let out = run(&h, &m).await;
    assert_eq!(out[0].outcome, Outcome::Refused, "{}", out[0].reason);
    assert!(out[0].reason.contains("route53 record") && out[0].reason.contains(&ghost), "{}", out[0].reason);
    assert!(out[0].reason.contains("does not exist in"), "{}", out[0].reason);
    assert_eq!(out[0].details["missing"]["kind"], "route53 record");

    let mut m = manual(&format!("nosuch-{}.example.com.", f.zone_id), "failover", false, &unique("op"));
    m["target"] = Value::String(format!("x.nosuch-{}.example.com.", f.zone_id));
    let out = run(&h, &m).await;
    assert_eq!(out[0].outcome, Outcome::Refused, "{}", out[0].reason);
    assert!(out[0].reason.contains("hosted zone") && out[0].reason.contains("does not exist in"), "{}", out[0].reason);

    // A record that is not managed at all is refused, not guessed at.
    let mut m = manual(&f.zone, "failover", false, &unique("op"));
    m["target"] = Value::String(f.web.clone());
    let out = run(&h, &m).await;
    assert_eq!(out[0].outcome, Outcome::Refused);
    assert!(out[0].reason.contains("not a managed record"), "{}", out[0].reason);

    let bad = serde_json::json!({"source": "selfheal.manual", "action": "explode", "target": ghost});
    let err = h.handle(&bad).await.unwrap_err().to_string();
    assert!(err.contains("failover and failback"), "{err}");
    assert!(h.ctx().aws.calls.mutating_calls().iter().all(|c| !c.starts_with("route53:")));
    assert_eq!(f.app_state().await, original_app());
}

#[tokio::test]
async fn a_zone_without_the_opt_in_tag_is_refused() {
    let f = fixture(false, true, false).await;
    let h = f.handler(&[]).await;
    let out = run(&h, &sns_alarm(&f.hc_blue, &unique("app"), "ALARM", "2026-11-25T10:15:31.180+0000")).await;
    assert_eq!(out[0].outcome, Outcome::Refused, "{:?}", out[0]);
    assert!(out[0].reason.contains("not opted in"), "{}", out[0].reason);
    assert_eq!(f.app_state().await, original_app());

    // Tagging one of the record's health checks opts it in.
    f.r53
        .change_tags_for_resource()
        .resource_type(TagResourceType::Healthcheck)
        .resource_id(&f.hc_blue)
        .add_tags(Tag::builder().key("selfheal:enabled").value("true").build())
        .send()
        .await
        .unwrap();
    let out = run(&h, &sns_alarm(&f.hc_blue, &unique("app"), "ALARM", "2026-11-25T10:16:31.180+0000")).await;
    assert_eq!(out[0].outcome, Outcome::Acted, "{:?}", out[0]);
    assert_eq!(f.app_state().await, flipped_app());
}

/// The approval token of a parked decision, from its envelope.
fn token(e: &Envelope) -> String {
    e.details["approval"]["token"].as_str().unwrap_or_else(|| panic!("no approval token in {e:?}")).to_string()
}

/// A bare token by direct invocation (break-glass only).
fn settle(action: &str, token: &str) -> Value {
    selfheal::approval::settle_payload(action, token)
}

/// The approvers of these tests: anyone who assumed the `Approver` role of the home account.
const APPROVERS: &str = "arn:aws:iam::123456789012:role/ops/Approver";
const ALICE: &str = "arn:aws:sts::123456789012:assumed-role/Approver/alice";
const BOB: &str = "arn:aws:sts::123456789012:assumed-role/Approver/bob";
const MALLORY: &str = "arn:aws:sts::123456789012:assumed-role/Developer/mallory";

/// `caller` POSTs `action` of `token` to the approval Function URL (the request AWS hands over, built
/// by the dev-only game day tooling): the HTTP status and the decisions.
async fn by_url(h: &DnsFailover, caller: &str, action: &str, token: &str) -> (u64, Vec<Envelope>) {
    by_url_body(h, caller, &selfheal::approval::url_body(action, token)).await
}

async fn by_url_body(h: &DnsFailover, caller: &str, body: &Value) -> (u64, Vec<Envelope>) {
    let answer = h.handle(&gameday::approve::function_url_request(caller, body)).await.unwrap();
    let status = answer["statusCode"].as_u64().unwrap();
    let body = gameday::approve::response_decisions(&answer);
    let decisions = serde_json::from_value(body["decisions"].clone()).unwrap_or_default();
    (status, decisions)
}

fn changes(h: &DnsFailover) -> u64 {
    h.ctx().aws.calls.executions().get("route53:ChangeResourceRecordSets").copied().unwrap_or(0)
}

#[tokio::test]
async fn a_region_failover_waits_for_two_listed_approvers_then_rechecks_and_flips_once() {
    let f = fixture(true, true, false).await;
    let sdk = sdk_config().await;
    let (topic, queue) = topic_with_queue(&sdk, &unique("dns-approval")).await;
    let vars: [(&str, &str); 3] = [
        ("SELFHEAL_APPROVAL_ALWAYS", "region-failover"),
        ("SELFHEAL_TOPIC_ARN", &topic),
        ("SELFHEAL_APPROVERS", APPROVERS),
    ];
    let h = f.handler(&vars).await;

    let out = run(&h, &sns_alarm(&f.hc_blue, &unique("app-health"), "ALARM", "2026-11-25T10:15:31.180+0000")).await;
    let parked = &out[0];
    assert_eq!(parked.outcome, Outcome::AwaitingApproval, "{parked:?}");
    assert_eq!(parked.severity, Severity::Critical);
    assert!(parked.reason.contains("region-failover always needs a human's approval"), "{}", parked.reason);
    assert!(parked.reason.contains("2 distinct approvers"), "{}", parked.reason);
    assert!(
        parked.reason.contains("blue") && parked.reason.contains("green"),
        "says what would be done: {}",
        parked.reason
    );
    assert_eq!(parked.details["changeBatch"].as_array().map(Vec::len), Some(4), "{parked:?}");
    let t = token(parked);
    assert_eq!(parked.details["approval"]["approve"], selfheal::approval::url_body("approve", &t));
    assert_eq!(parked.details["approval"]["approvalsRequired"], 2);
    assert!(parked.details["approval"].get("breakGlassCommand").is_none(), "break-glass is off");
    // Nothing moved; the ledger holds the parked decision; the notification carries the signed command.
    assert_eq!(f.app_state().await, original_app());
    assert_eq!(h.ctx().ledger.approval(&t).await.unwrap().unwrap().status, "awaiting-approval");
    let notes = drain_notifications(&sdk, &queue).await;
    assert!(
        notes.iter().any(|(m, _)| m["outcome"] == "awaiting-approval"
            && m["severity"] == "critical"
            && m["details"]["approval"]["approveCommand"].as_str().is_some_and(|c| c.contains(&t)
                && c.contains("--aws-sigv4 'aws:amz:us-east-1:lambda'")
                && c.contains("get-function-url-config --function-name dns-failover"))),
        "{notes:?}"
    );

    // The first approval is recorded, and is not enough: nothing moves. The same person twice counts once.
    let (status, first) = by_url(&h, ALICE, "approve", &t).await;
    assert_eq!((status, first[0].outcome), (200, Outcome::AwaitingApproval), "{first:?}");
    assert!(
        first[0].reason.contains("approval 1 of 2 recorded from") && first[0].reason.contains("1 more"),
        "{}",
        first[0].reason
    );
    let (_, again) = by_url(&h, ALICE, "approve", &t).await;
    assert_eq!(again[0].outcome, Outcome::Skipped, "{again:?}");
    assert!(again[0].reason.contains("counts once"), "{}", again[0].reason);
    let record = h.ctx().ledger.approval(&t).await.unwrap().unwrap();
    assert_eq!((record.status.as_str(), record.approvers.len()), ("awaiting-approval", 1), "{record:?}");
    assert_eq!(f.app_state().await, original_app(), "one approver is not enough");
    assert_eq!(changes(&h), 0);

    // The second person's approval handles the alarm again, re-checking everything, and flips.
    let (status, approved) = by_url(&h, BOB, "approve", &t).await;
    assert_eq!(status, 200);
    assert_eq!(approved.len(), 1, "{approved:?}");
    assert_eq!(approved[0].outcome, Outcome::Acted, "{:?}", approved[0]);
    assert_eq!(approved[0].details["approvedWith"], t[..8]);
    let by: Vec<&str> =
        approved[0].details["approvedBy"].as_array().unwrap().iter().filter_map(|a| a["principal"].as_str()).collect();
    assert_eq!(by, [ALICE, BOB], "the decision names every approver");
    assert!(approved[0].details["approvedBy"][1]["at"].as_str().is_some());
    assert_eq!(f.app_state().await, flipped_app());
    assert_eq!(f.web_state().await, original_web(), "only the approved record moved");

    // Settled once.
    let (status, late) = by_url(&h, BOB, "approve", &t).await;
    assert_eq!((status, late[0].outcome), (403, Outcome::Refused), "{late:?}");
    assert!(late[0].reason.contains("already used"), "{}", late[0].reason);
    assert_eq!(changes(&h), 1, "one change batch in all");
    let trail = h.ctx().ledger.audit_trail(&parked.target.id).await.unwrap();
    let outcomes: Vec<&str> = trail.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        ["awaiting-approval", "awaiting-approval", "skipped", "observed", "acted", "refused"],
        "{outcomes:?}"
    );
    // An unknown token is bad input: a clear answer, nothing done.
    let answer = h
        .handle(&gameday::approve::function_url_request(ALICE, &selfheal::approval::url_body("approve", "nope")))
        .await
        .unwrap();
    assert_eq!(answer["statusCode"], 400, "{answer}");
    assert!(answer["body"].as_str().unwrap().contains("unknown approval token"), "{answer}");
}

#[tokio::test]
async fn only_a_listed_principal_verified_by_aws_approves_and_a_bare_token_only_by_break_glass() {
    let f = fixture(true, true, false).await;
    let sdk = sdk_config().await;
    let (topic, queue) = topic_with_queue(&sdk, &unique("dns-approvers")).await;
    // One ledger for both handlers below: break-glass settles the decision the first one parked.
    let ledger = unique("ledger");
    let vars: [(&str, &str); 5] = [
        ("SELFHEAL_LEDGER_TABLE", &ledger),
        ("SELFHEAL_APPROVAL_ALWAYS", "region-failover"),
        ("SELFHEAL_APPROVALS_REQUIRED", "region-failover=1"),
        ("SELFHEAL_TOPIC_ARN", &topic),
        ("SELFHEAL_APPROVERS", APPROVERS),
    ];
    let h = f.handler(&vars).await;
    let out = run(&h, &sns_alarm(&f.hc_blue, &unique("app-health"), "ALARM", "2026-11-25T10:15:31.180+0000")).await;
    let t = token(&out[0]);
    drain_notifications(&sdk, &queue).await;

    // An unlisted principal is refused, audited and notified, even claiming a listed identity in the body.
    let claim = serde_json::json!({"action": "approve", "token": t, "userArn": ALICE, "principal": ALICE,
                                   "requestContext": {"authorizer": {"iam": {"userArn": ALICE}}}});
    let (status, refused) = by_url_body(&h, MALLORY, &claim).await;
    assert_eq!((status, refused[0].outcome), (403, Outcome::Refused), "{refused:?}");
    assert!(
        refused[0].reason.contains(MALLORY) && refused[0].reason.contains("not listed in SELFHEAL_APPROVERS"),
        "{}",
        refused[0].reason
    );
    assert_eq!(refused[0].details["caller"], MALLORY);
    let notes = drain_notifications(&sdk, &queue).await;
    assert!(notes.iter().any(|(m, _)| m["outcome"] == "refused" && m["details"]["caller"] == MALLORY), "{notes:?}");
    // A bare token by direct invocation is refused while break-glass is off.
    let bare = run(&h, &settle("approve", &t)).await;
    assert_eq!(bare[0].outcome, Outcome::Refused, "{bare:?}");
    assert!(bare[0].reason.contains("SELFHEAL_APPROVAL_BREAK_GLASS"), "{}", bare[0].reason);
    let rejected = run(&h, &settle("reject", &t)).await;
    assert_eq!(rejected[0].outcome, Outcome::Refused, "{rejected:?}");
    let record = h.ctx().ledger.approval(&t).await.unwrap().unwrap();
    assert_eq!((record.status.as_str(), record.approvers.len()), ("awaiting-approval", 0), "{record:?}");
    assert_eq!(f.app_state().await, original_app());
    assert_eq!(changes(&h), 0);
    let trail = h.ctx().ledger.audit_trail(&out[0].target.id).await.unwrap();
    assert_eq!(trail.iter().filter(|r| r.outcome == "refused").count(), 3, "every refusal is audited");

    // Break-glass on: the bare token approves alone, audited as break-glass.
    let mut glass = vars.to_vec();
    glass.push(("SELFHEAL_APPROVAL_BREAK_GLASS", "true"));
    let h = f.handler(&glass).await;
    let approved = run(&h, &settle("approve", &t)).await;
    assert_eq!(approved.len(), 1, "{approved:?}");
    assert_eq!(approved[0].outcome, Outcome::Acted, "{approved:?}");
    assert_eq!(approved[0].details["breakGlass"], true);
    assert_eq!(f.app_state().await, flipped_app());
    let trail = h.ctx().ledger.audit_trail(&out[0].target.id).await.unwrap();
    assert!(
        trail.iter().any(|r| r.outcome == "observed"
            && r.envelope.reason.contains("approved by break-glass")
            && r.envelope.severity == Severity::Critical),
        "{trail:?}"
    );
}

#[tokio::test]
async fn two_approvers_at_once_flip_the_record_exactly_once() {
    let f = fixture(true, true, false).await;
    let vars = [("SELFHEAL_APPROVAL_ALWAYS", "region-failover"), ("SELFHEAL_APPROVERS", APPROVERS)];
    let h = f.handler(&vars).await;
    let out = run(&h, &sns_alarm(&f.hc_blue, &unique("app-health"), "ALARM", "2026-11-25T10:15:31.180+0000")).await;
    let t = token(&out[0]);
    let carol = "arn:aws:sts::123456789012:assumed-role/Approver/carol";
    let ((_, a), (_, b), (_, c)) = tokio::join!(
        by_url(&h, ALICE, "approve", &t),
        by_url(&h, BOB, "approve", &t),
        by_url(&h, carol, "approve", &t)
    );
    let all: Vec<&Envelope> = a.iter().chain(&b).chain(&c).collect();
    assert_eq!(all.iter().filter(|e| e.outcome == Outcome::Acted).count(), 1, "{all:?}");
    assert_eq!(changes(&h), 1, "one change batch");
    assert_eq!(f.app_state().await, flipped_app());
    let record = h.ctx().ledger.approval(&t).await.unwrap().unwrap();
    assert_eq!(record.status, "approved");
    assert!(record.approvers.len() >= 2, "{record:?}");
}

#[tokio::test]
async fn an_approval_rechecks_the_primary_and_a_listed_approvers_rejection_closes_the_incident() {
    let f = fixture(true, true, false).await;
    let vars = [
        ("SELFHEAL_APPROVAL_ALWAYS", "region-failover"),
        ("SELFHEAL_APPROVALS_REQUIRED", "region-failover=1"),
        ("SELFHEAL_APPROVERS", APPROVERS),
    ];
    let h = f.handler(&vars).await;
    let app = run(&h, &sns_alarm(&f.hc_blue, &unique("app-health"), "ALARM", "2026-11-25T10:15:31.180+0000")).await;
    let web = run(&h, &eventbridge_alarm(&f.hc_wblue, &unique("web-health"), "ALARM")).await;
    let (app_token, web_token) = (token(&app[0]), token(&web[0]));

    // The primary recovered while the approval was pending: approving re-checks it and moves nothing.
    set_failing(&f.r53, &f.hc_blue, false).await;
    let (_, approved) = by_url(&h, ALICE, "approve", &app_token).await;
    assert_eq!(approved[0].outcome, Outcome::Skipped, "{:?}", approved[0]);
    assert!(approved[0].reason.contains("healthy again"), "{}", approved[0].reason);
    assert_eq!(f.app_state().await, original_app());

    // An unlisted principal cannot reject; a listed one's rejection is audited and closes it.
    let (status, _) = by_url(&h, MALLORY, "reject", &web_token).await;
    assert_eq!(status, 403);
    let (_, rejected) = by_url(&h, BOB, "reject", &web_token).await;
    assert_eq!(rejected[0].outcome, Outcome::Refused, "{:?}", rejected[0]);
    assert!(rejected[0].reason.contains(&format!("rejected by {BOB}")), "{}", rejected[0].reason);
    let (_, late) = by_url(&h, ALICE, "approve", &web_token).await;
    assert!(late[0].reason.contains("already used") && late[0].reason.contains("rejected"), "{}", late[0].reason);
    assert_eq!(f.web_state().await, original_web());
    let trail = h.ctx().ledger.audit_trail(&web[0].target.id).await.unwrap();
    let outcomes: Vec<&str> = trail.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, ["awaiting-approval", "refused", "refused", "refused"], "{outcomes:?}");
    assert_eq!(changes(&h), 0);
}

#[tokio::test]
async fn an_unanswered_approval_expires_and_nothing_is_done() {
    let f = fixture(true, true, false).await;
    let vars = [
        ("SELFHEAL_APPROVAL_ALWAYS", "region-failover"),
        ("SELFHEAL_APPROVAL_TTL_SECONDS", "1"),
        ("SELFHEAL_APPROVERS", APPROVERS),
    ];
    let h = f.handler(&vars).await;
    let app = run(&h, &sns_alarm(&f.hc_blue, &unique("app-health"), "ALARM", "2026-11-25T10:15:31.180+0000")).await;
    let web = run(&h, &eventbridge_alarm(&f.hc_wblue, &unique("web-health"), "ALARM")).await;
    let (app_token, web_token) = (token(&app[0]), token(&web[0]));
    // Expiry times are whole seconds.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;

    // The periodic sweep closes both, audited.
    let swept = run(&h, &serde_json::json!({"source": "selfheal.manual", "action": "expire-approvals"})).await;
    assert_eq!(swept.len(), 2, "{swept:?}");
    assert!(swept.iter().all(|e| e.outcome == Outcome::Refused && e.reason.contains("expired")), "{swept:?}");
    assert!(h.ctx().ledger.open_approvals(FUNCTION).await.unwrap().is_empty());
    // A listed approver's approval after the expiry does nothing.
    let (_, late) = by_url(&h, ALICE, "approve", &app_token).await;
    assert_eq!(late[0].outcome, Outcome::Refused, "{:?}", late[0]);
    assert!(late[0].reason.contains("expired"), "{}", late[0].reason);
    assert_eq!(h.ctx().ledger.approval(&web_token).await.unwrap().unwrap().status, "expired");
    assert_eq!(f.app_state().await, original_app());
    assert_eq!(f.web_state().await, original_web());
    assert_eq!(changes(&h), 0);
}

#[tokio::test]
async fn a_dry_run_shows_the_approval_it_would_ask_for_and_parks_nothing() {
    let f = fixture(true, true, false).await;
    let h = f.handler(&[("SELFHEAL_APPROVAL_ALWAYS", "region-failover"), ("SELFHEAL_DRY_RUN", "true")]).await;
    let out = run(&h, &sns_alarm(&f.hc_blue, &unique("app-health"), "ALARM", "2026-11-25T10:15:31.180+0000")).await;
    assert_eq!(out[0].outcome, Outcome::DryRun, "{:?}", out[0]);
    assert!(out[0].reason.contains("a human's approval would be asked first"), "{}", out[0].reason);
    assert!(out[0].details["approvalWouldBeAsked"].as_str().is_some_and(|w| w.contains("region-failover")));
    assert!(h.ctx().ledger.open_approvals(FUNCTION).await.unwrap().is_empty());
    assert_eq!(f.app_state().await, original_app());
}
