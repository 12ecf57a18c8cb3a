//! Drills through Route 53 ARC zonal autoshift practice runs (issue #28): instead of injecting a
//! fault, a live drill with `params.practiceRun: {"resource": "<load balancer or group ARN>",
//! "awayFrom": "<AZ ID>"}` asks ARC to start a practice run (`StartPracticeRun`: a planned zonal shift
//! of the resource's traffic away from the AZ), follows it (`GetManagedResource`: applied or not;
//! `ListZonalShifts`: its status and `practiceRunOutcome`) within the drill's recovery window, and
//! reads the suite's reaction from the ledger as [`super::fis`] does.
//!
//! What selfheal must do during a practice run is not fight it: zone-evacuator stands down on the
//! resource (decisions with `details.recovery` `arc-practice-run`) and starts no zonal shift of its own
//! there (none with the comment prefix [`COMMENT_PREFIX`] on the resource during the run). The report
//! passes when ARC applied the practice run and selfheal started nothing against it; the outcome ARC
//! reports (`SUCCEEDED`, `FAILED`, `INTERRUPTED`, `PENDING` while it runs) is shown. A practice run
//! checks a guard, not a recovery of the suite's: its report (scenario [`SCENARIO`]) is not scored
//! against the RTO/RPO targets. The drill leaves the run to ARC (it runs its 30 minutes).

use std::time::Instant;

use serde_json::{json, Value};

use super::report::{DrillReport, StepReport};
use super::Drill;
use crate::error::{Error, Result};
use crate::ledger::AuditRecord;
use crate::zone::facts::{ShiftOwner, COMMENT_PREFIX};

/// The report's scenario name.
pub const SCENARIO: &str = "practice-run";

/// The comment ARC keeps on the practice run: it names the drill.
pub const COMMENT: &str = "selfheal drill: game-day practice run";

/// The function whose reaction a practice run checks.
const EVACUATOR: &str = "zone-evacuator";

/// One practice run to start.
#[derive(Debug, Clone, PartialEq)]
pub struct PracticeRun {
    /// The managed resource's ARN (a load balancer or an Auto Scaling group).
    pub resource: String,
    /// The AZ ID its traffic is shifted away from (`use1-az1`).
    pub away_from: String,
}

/// Whether `s` is an ARN: `arn:partition:service:region:account:resource`, partition, service and
/// resource not empty.
fn is_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    s.len() <= 1024
        && parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && !parts[2].is_empty()
        && !parts[5].is_empty()
        && !s.chars().any(char::is_whitespace)
}

/// Whether `s` has an AZ ID's shape: a lowercase region code with digits (`use1`, `apne1`, optionally
/// a local zone's `-lax1`), then `-az` and a number.
fn is_az_id(s: &str) -> bool {
    let Some((place, n)) = s.rsplit_once("-az") else { return false };
    let code_ok = place.split('-').all(|p| {
        p.len() >= 2
            && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && p.chars().any(|c| c.is_ascii_digit())
    });
    code_ok && !n.is_empty() && n.len() <= 3 && n.chars().all(|c| c.is_ascii_digit())
}

/// The practice run an invocation asks for, or `None` when it asks for none. A practice run shifts
/// real traffic: only a live drill (with the confirmation phrase) starts one.
pub fn plan(payload: &Value) -> Result<Option<PracticeRun>> {
    let params = payload.get("params").cloned().unwrap_or(Value::Null);
    let Some(p) = params.get("practiceRun") else { return Ok(None) };
    let bad = |why: String| Error::malformed("drill", format!("params.practiceRun: {why}"));
    let Some(obj) = p.as_object() else {
        return Err(bad("must be {\"resource\": \"<load balancer or group ARN>\", \"awayFrom\": \"<AZ ID>\"}".into()));
    };
    for other in ["scenario", "fis", "fisTemplate"] {
        if params.get(other).is_some() {
            return Err(bad(format!("a practice run is a drill of its own: leave params.{other} out")));
        }
    }
    let field = |k: &str| obj.get(k).and_then(Value::as_str).map(str::trim).unwrap_or("");
    let resource = field("resource");
    if !is_arn(resource) {
        return Err(bad(format!(
            "resource must be the ARN of a load balancer or Auto Scaling group ARC manages, got {resource:?}"
        )));
    }
    let away_from = field("awayFrom");
    if !is_az_id(away_from) {
        return Err(bad(format!(
            "awayFrom must be an AZ ID such as use1-az1 (not an AZ name such as us-east-1a), got {away_from:?}"
        )));
    }
    let mode = super::parse_mode(&super::parse_manual(payload)?)?;
    if mode != super::Mode::Live {
        return Err(Error::Precondition(
            "an ARC practice run shifts real traffic: run it as a live drill (mode live, with the confirmation)".into(),
        ));
    }
    Ok(Some(PracticeRun { resource: resource.to_string(), away_from: away_from.to_string() }))
}

/// Starts the practice run (`StartPracticeRun`); returns its zonal shift id.
pub async fn start(drill: &Drill, run: &PracticeRun) -> Result<String> {
    let out = drill
        .ctx
        .aws
        .arc()
        .start_practice_run()
        .resource_identifier(&run.resource)
        .away_from(&run.away_from)
        .comment(COMMENT)
        .send()
        .await
        .map_err(|e| Error::aws("arc-zonal-shift", "StartPracticeRun", e))?;
    Ok(out.zonal_shift_id().to_string())
}

/// What ARC says of the run and of the resource at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
struct Seen {
    /// `GetManagedResource` lists the run as `APPLIED`.
    applied: bool,
    /// The run's status (`ACTIVE`, `EXPIRED`, `CANCELED`) and `practiceRunOutcome`.
    status: String,
    outcome: String,
    /// selfheal's own zonal shifts on the resource during the run (their ids).
    ours: Vec<String>,
}

async fn look(drill: &Drill, run: &PracticeRun, id: &str, t0_secs: i64) -> Result<Seen> {
    let arc = drill.ctx.aws.arc();
    let r = arc
        .get_managed_resource()
        .resource_identifier(&run.resource)
        .send()
        .await
        .map_err(|e| Error::aws("arc-zonal-shift", "GetManagedResource", e))?;
    let applied = r.zonal_shifts().iter().any(|s| {
        s.zonal_shift_id() == id && *s.applied_status() == aws_sdk_arczonalshift::types::AppliedStatus::Applied
    });
    let mut seen = Seen { applied, status: "unknown".into(), outcome: "unknown".into(), ours: vec![] };
    let mut token: Option<String> = None;
    loop {
        let page = arc
            .list_zonal_shifts()
            .resource_identifier(&run.resource)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| Error::aws("arc-zonal-shift", "ListZonalShifts", e))?;
        for s in page.items() {
            if s.zonal_shift_id() == id {
                seen.status = s.status().as_str().to_string();
                seen.outcome = s.practice_run_outcome().map_or("unknown", |o| o.as_str()).to_string();
            } else if s.comment().starts_with(COMMENT_PREFIX)
                && s.shift_type().is_none_or(|t| *t == aws_sdk_arczonalshift::types::ShiftType::ZonalShift)
                && (s.status() == &aws_sdk_arczonalshift::types::ZonalShiftStatus::Active
                    || s.start_time().secs() >= t0_secs)
            {
                seen.ours.push(s.zonal_shift_id().to_string());
            }
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(seen)
}

/// Runs the practice run and reports it.
pub async fn run(drill: &Drill, run: &PracticeRun) -> DrillReport {
    let started = Instant::now();
    let t0 = chrono::Utc::now();
    let mut report = DrillReport {
        scenario: SCENARIO.into(),
        mode: "live".into(),
        started_at: t0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        injected: vec![],
        steps: vec![],
        guards_fired: vec![],
        passed: false,
        total_ms: 0,
        resources: vec![],
        restores: vec![],
    };
    if let Err(e) = Box::pin(follow(drill, run, t0, &mut report)).await {
        report.steps.push(StepReport {
            name: format!("ARC practice run on {} away from {}", run.resource, run.away_from),
            function: "drill".into(),
            expected: "ARC applies the practice run and selfheal does not fight it".into(),
            observed: format!("drill error: {e}"),
            detect_ms: None,
            recover_ms: None,
            actions: vec![],
            accounts: vec![],
            passed: false,
        });
    }
    report.passed = !report.steps.is_empty() && report.steps.iter().all(|s| s.passed);
    report.total_ms = started.elapsed().as_millis() as u64;
    report
}

async fn follow(
    drill: &Drill,
    run: &PracticeRun,
    t0: chrono::DateTime<chrono::Utc>,
    report: &mut DrillReport,
) -> Result<()> {
    let clock = Instant::now();
    let id = start(drill, run).await?;
    report.injected.push(format!("ARC practice run {id} on {} away from {}", run.resource, run.away_from));
    let ms = |t: chrono::DateTime<chrono::Utc>| (t - t0).num_milliseconds().max(0) as u64;
    let at = |time: &str| chrono::DateTime::parse_from_rfc3339(time).ok().map(|t| ms(t.with_timezone(&chrono::Utc)));
    let deadline = clock + drill.cfg.recovery_timeout;
    let mut applied_ms = None;
    let mut seen;
    let mut records: Vec<AuditRecord>;
    loop {
        seen = look(drill, run, &id, t0.timestamp()).await?;
        if seen.applied && applied_ms.is_none() {
            applied_ms = Some(ms(chrono::Utc::now()));
        }
        records = drill
            .ctx
            .ledger
            .audit_since(&report.started_at)
            .await?
            .into_iter()
            .filter(|r| r.function == EVACUATOR && r.envelope.target.id == run.resource)
            .collect();
        let over = seen.status != "ACTIVE" && seen.status != "unknown";
        if over || !seen.ours.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(drill.cfg.poll_interval).await;
    }
    let stood_down: Vec<&AuditRecord> = records
        .iter()
        .filter(|r| {
            r.envelope.details.get("recovery").and_then(Value::as_str) == Some(ShiftOwner::PracticeRun.recovery())
        })
        .collect();
    let acted: Vec<&AuditRecord> = records.iter().filter(|r| r.outcome == "acted").collect();
    for r in &stood_down {
        report.guards_fired.push(super::steps::describe(drill, r));
    }
    let window = drill.cfg.recovery_timeout.as_secs();
    report.steps.push(StepReport {
        name: format!("ARC practice run {id} on {} away from {}", run.resource, run.away_from),
        function: "arc-zonal-shift".into(),
        expected: "ARC applies the practice run (the resource's traffic shifted away from the AZ)".into(),
        observed: format!(
            "{}; status {}, practice run outcome {}",
            if applied_ms.is_some() { "applied" } else { "never seen applied" },
            seen.status,
            seen.outcome
        ),
        detect_ms: applied_ms,
        recover_ms: None,
        actions: vec![],
        accounts: vec![],
        passed: applied_ms.is_some(),
    });
    let decisions = if records.is_empty() {
        format!("no decision on the resource within {window}s")
    } else {
        let o: Vec<&str> = records.iter().map(|r| r.outcome.as_str()).collect();
        format!("decisions on the resource: {} ({} stand-down)", o.join(", "), stood_down.len())
    };
    let shifts = if seen.ours.is_empty() {
        "no zonal shift of its own".to_string()
    } else {
        format!("its own zonal shift(s) {} on the resource", seen.ours.join(", "))
    };
    report.steps.push(StepReport {
        name: format!("selfheal during the practice run on {}", run.resource),
        function: EVACUATOR.into(),
        expected: format!(
            "no fight with ARC: a stand-down on the resource (recovery {}) and no zonal shift of its own there",
            ShiftOwner::PracticeRun.recovery()
        ),
        observed: format!("{decisions}; {shifts}"),
        detect_ms: stood_down.first().and_then(|r| at(&r.time)),
        recover_ms: None,
        actions: records.iter().map(|r| super::steps::describe(drill, r)).collect(),
        accounts: {
            let mut a: Vec<String> = records.iter().map(|r| super::steps::account_label(drill, r)).collect();
            a.sort_by_key(|l| (l != "hub", l.clone()));
            a.dedup();
            a
        },
        passed: seen.ours.is_empty() && acted.is_empty(),
    });
    Ok(())
}

/// Runs the practice run, recording its report in the ledger as the drill does.
pub async fn run_all(drill: &Drill, practice: &PracticeRun) -> Result<Vec<DrillReport>> {
    let report = run(drill, practice).await;
    let envelope = crate::envelope::Envelope::new(
        super::FUNCTION,
        SCENARIO,
        crate::envelope::Target::new("scenario", SCENARIO),
        if report.passed { crate::envelope::Outcome::Acted } else { crate::envelope::Outcome::Failed },
        report.headline(),
    )
    .detail("report", &report)
    .detail("practiceRun", json!({"resource": practice.resource, "awayFrom": practice.away_from}));
    drill.ctx.record(envelope).await?;
    Ok(vec![report])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(params: Value) -> Value {
        json!({"source": "selfheal.manual", "action": "drill", "params": params})
    }

    const ALB: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188";

    #[test]
    fn az_ids_and_arns_are_told_apart_from_names_and_words() {
        for ok in ["use1-az1", "euw2-az3", "apne1-az4", "usw2-lax1-az1"] {
            assert!(is_az_id(ok), "{ok}");
        }
        for bad in ["us-east-1a", "use1", "az1", "use1-az", "use1-azx", "USE1-AZ1", "-az1", "use-az1", ""] {
            assert!(!is_az_id(bad), "{bad}");
        }
        assert!(is_arn(ALB));
        for bad in
            ["web", "arn:aws", "arn::elasticloadbalancing:us-east-1:1:x", "arn:aws:elb:r:a:", "arn:aws:s:r:a:x y"]
        {
            assert!(!is_arn(bad), "{bad}");
        }
    }

    #[test]
    fn a_plan_needs_an_arn_an_az_id_and_a_live_confirmed_drill() {
        let live =
            |pr: Value| payload(json!({"practiceRun": pr, "mode": "live", "confirm": super::super::CONFIRM_PHRASE}));
        assert_eq!(plan(&payload(json!({"scenario": "lose-az"}))).unwrap(), None);
        assert_eq!(
            plan(&live(json!({"resource": ALB, "awayFrom": "use1-az2"}))).unwrap(),
            Some(PracticeRun { resource: ALB.into(), away_from: "use1-az2".into() })
        );
        let err = |p: Value| plan(&p).unwrap_err().to_string();
        assert!(err(live(json!({"resource": "web", "awayFrom": "use1-az2"}))).contains("resource must be the ARN"));
        assert!(err(live(json!({"resource": ALB, "awayFrom": "us-east-1b"}))).contains("awayFrom must be an AZ ID"));
        assert!(err(live(json!("web"))).contains("params.practiceRun"));
        let dry = payload(json!({"practiceRun": {"resource": ALB, "awayFrom": "use1-az2"}, "mode": "dry-run"}));
        assert!(err(dry).contains("live drill"));
        let unconfirmed = payload(json!({"practiceRun": {"resource": ALB, "awayFrom": "use1-az2"}, "mode": "live"}));
        assert!(err(unconfirmed).contains("confirm"));
        let both = payload(json!({"practiceRun": {"resource": ALB, "awayFrom": "use1-az2"}, "scenario": "lose-az"}));
        assert!(err(both).contains("leave params.scenario out"));
    }
}
