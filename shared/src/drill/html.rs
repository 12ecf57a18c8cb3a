//! The drill's HTML report: one self-contained page (inline CSS and SVG, nothing fetched when it is
//! viewed) with the summary scorecard and, per scenario, a timeline — fault injected, detected, each
//! action, recovered — drawn against the scenario's RTO target.
//!
//! The page is built for people and for tests alike: the scorecard is `table#scorecard`, one
//! `tr.score[data-scenario][data-rto][data-rpo]` per scenario (`met`, `missed`, `not-recovered`,
//! `not-measured`); each timeline is `section.timeline[data-scenario]` holding an SVG and `ol.events`
//! with one `li[data-kind]` per event. The `recover` column is the scorecard's: the time until the
//! service recovered, or `not recovered` when the outcome was a page, a refusal or a park.

use super::report::DrillReport;
use super::scorecard::{Score, Scorecard, Verdict};

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1d2733;background:#f6f8fa}
h1{font-size:22px;margin:0 0 4px}
.sub{color:#5b6773;margin:0 0 18px}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002;margin-bottom:24px}
th,td{padding:7px 12px;border-bottom:1px solid #e3e8ee;text-align:left;font-size:14px}
th{background:#24313f;color:#fff}
.met{background:#d8f5df;color:#13622b;font-weight:600}
.missed,.not-recovered{background:#fde0de;color:#9b1c14;font-weight:600}
.not-measured{background:#eef1f4;color:#5b6773}
.pass{color:#13622b;font-weight:700}.fail{color:#9b1c14;font-weight:700}
section.timeline{background:#fff;box-shadow:0 1px 2px #0002;padding:12px 16px;margin-bottom:18px}
section.timeline h2{font-size:17px;margin:0 0 6px}
ol.events{font-size:13px;color:#33404d;margin:6px 0 0;padding-left:22px}
ol.events li span.t{display:inline-block;min-width:70px;font-variant-numeric:tabular-nums;color:#5b6773}
.budget{height:10px;background:#e3e8ee;border-radius:5px;overflow:hidden;width:420px;margin:4px 0 8px}
.budget div{height:100%}
";

/// The RTO's cell: its verdict, and the approval wait when there was one.
fn rto_cell(s: &Score) -> String {
    format!("<td class=\"{}\">{}</td>", s.rto.word(), escape(&s.rto_text()))
}

fn cell(v: &Verdict) -> String {
    format!("<td class=\"{}\">{}</td>", v.word(), escape(&v.describe()))
}

fn color(kind: &str) -> &'static str {
    match kind {
        "injected" => "#d9480f",
        "detected" => "#f59f00",
        "action" => "#1c7ed6",
        "verified" => "#5b6773",
        _ => "#2b8a3e",
    }
}

fn secs(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

/// One scenario's timeline: an SVG axis from the scenario's start to its last event (or its RTO
/// target, when that is near enough to draw), each event a marker, and the list of events.
fn timeline(score: &Score) -> String {
    const W: f64 = 900.0;
    const LEFT: f64 = 20.0;
    const RIGHT: f64 = 20.0;
    let last = score.timeline.iter().map(|e| e.at_ms).max().unwrap_or(0).max(1);
    let target_ms = score.target.map(|t| t.rto_in_secs * 1000);
    // The target is drawn on the axis when it is within 4x the last event; else an arrow points to it.
    let span = match target_ms {
        Some(t) if t <= last * 4 => last.max(t),
        _ => last,
    } as f64
        * 1.08;
    let x = |ms: u64| LEFT + (W - LEFT - RIGHT) * (ms as f64 / span);
    let rows = score.timeline.len().max(1);
    let height = 70.0 + 16.0 * rows as f64;
    let mut svg = format!(
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{height}\" \
         viewBox=\"0 0 {W} {height}\" role=\"img\" aria-label=\"timeline of {}\">",
        escape(&score.scenario)
    );
    let axis_y = 40.0;
    svg.push_str(&format!(
        "<line x1=\"{LEFT}\" y1=\"{axis_y}\" x2=\"{}\" y2=\"{axis_y}\" stroke=\"#24313f\" stroke-width=\"2\"/>",
        W - RIGHT
    ));
    for i in 0..=4 {
        let ms = (span * i as f64 / 4.0) as u64;
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" fill=\"#5b6773\" text-anchor=\"middle\">{}</text>",
            x(ms).clamp(LEFT + 10.0, W - RIGHT - 10.0),
            axis_y + 14.0,
            secs(ms)
        ));
    }
    match target_ms {
        Some(t) if (t as f64) <= span => {
            let tx = x(t);
            svg.push_str(&format!(
                "<line class=\"target\" x1=\"{tx:.1}\" y1=\"8\" x2=\"{tx:.1}\" y2=\"{}\" stroke=\"#9b1c14\" \
                 stroke-dasharray=\"5,4\" stroke-width=\"2\"/><text x=\"{:.1}\" y=\"12\" font-size=\"11\" fill=\"#9b1c14\" \
                 text-anchor=\"end\">RTO target {}s</text>",
                height - 6.0,
                tx - 4.0,
                t / 1000
            ));
        }
        Some(t) => svg.push_str(&format!(
            "<text class=\"target\" x=\"{}\" y=\"12\" font-size=\"11\" fill=\"#9b1c14\" text-anchor=\"end\">RTO target {}s →</text>",
            W - RIGHT,
            t / 1000
        )),
        None => {}
    }
    for (i, e) in score.timeline.iter().enumerate() {
        let ex = x(e.at_ms);
        let ly = 66.0 + 16.0 * i as f64;
        let c = color(e.kind.as_str());
        svg.push_str(&format!(
            "<g class=\"event\" data-kind=\"{}\"><circle cx=\"{ex:.1}\" cy=\"{axis_y}\" r=\"6\" fill=\"{c}\"/>\
             <line x1=\"{ex:.1}\" y1=\"{axis_y}\" x2=\"{ex:.1}\" y2=\"{}\" stroke=\"{c}\" stroke-width=\"1\" opacity=\"0.5\"/>\
             <text x=\"{:.1}\" y=\"{ly}\" font-size=\"11\" fill=\"{c}\" text-anchor=\"{}\">{} {}</text></g>",
            e.kind.as_str(),
            ly - 4.0,
            // Labels of events on the right half run leftwards, so none is cut at the edge.
            if ex > W * 0.5 { ex - 4.0 } else { ex + 4.0 },
            if ex > W * 0.5 { "end" } else { "start" },
            secs(e.at_ms),
            escape(&truncate(&e.label, 70))
        ));
    }
    svg.push_str("</svg>");
    let budget = match (&score.rto, score.target) {
        (Verdict::Met { measured_secs, target_secs } | Verdict::Missed { measured_secs, target_secs, .. }, _) => {
            let pct = (measured_secs / (*target_secs).max(1) as f64 * 100.0).min(100.0);
            let c = if score.rto.word() == "met" { "#2b8a3e" } else { "#c92a2a" };
            format!(
                "<div class=\"budget\" title=\"RTO budget used\"><div style=\"width:{pct:.1}%;background:{c}\"></div></div>"
            )
        }
        _ => String::new(),
    };
    let items: String = score
        .timeline
        .iter()
        .map(|e| {
            format!(
                "<li data-kind=\"{}\"><span class=\"t\">{}</span> <b>{}</b> {}</li>",
                e.kind.as_str(),
                secs(e.at_ms),
                e.kind.as_str(),
                escape(&e.label)
            )
        })
        .collect();
    format!(
        "<section class=\"timeline\" data-scenario=\"{s}\"><h2>{s} <span class=\"{pc}\">{pw}</span></h2>\
         <p class=\"sub\">{d} — RTO {rto}; RPO {rpo}</p>{budget}{svg}{restores}<ol class=\"events\">{items}</ol></section>\n",
        restores = restores_table(score),
        s = escape(&score.scenario),
        pc = if score.passed { "pass" } else { "fail" },
        pw = if score.passed { "PASS" } else { "FAIL" },
        d = score.disruption.map(|d| d.as_str()).unwrap_or("-"),
        rto = escape(&score.rto_text()),
        rpo = escape(&score.rpo.describe()),
    )
}

/// A restore test's restores: each one's time and recovery point against the targets
/// (`tr.restore[data-kind][data-rto][data-rpo]`).
fn restores_table(score: &Score) -> String {
    if score.restores.is_empty() {
        return String::new();
    }
    let rows: String = score
        .restores
        .iter()
        .map(|r| {
            format!(
                "<tr class=\"restore\" data-kind=\"{k}\" data-rto=\"{rv}\" data-rpo=\"{pv}\"><td>{k}</td><td>{src}</td>\
                 <td>{pt}</td>{rto}{rpo}</tr>",
                k = escape(&r.kind),
                rv = r.rto.word(),
                pv = r.rpo.word(),
                src = escape(&match &r.account {
                    Some(a) => format!("{} ({a})", r.source),
                    None => r.source.clone(),
                }),
                pt = escape(r.point.as_deref().unwrap_or("none")),
                rto = cell(&r.rto),
                rpo = cell(&r.rpo),
            )
        })
        .collect();
    format!(
        "<table class=\"restores\"><thead><tr><th>restored</th><th>from</th><th>recovery point</th>\
         <th>restore time (RTO)</th><th>recovery point age (RPO)</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// The whole page.
pub fn render(card: &Scorecard, reports: &[DrillReport]) -> String {
    let mut rows = String::new();
    for (i, s) in card.scores.iter().enumerate() {
        let r = reports.get(i);
        let fmt = |ms: Option<u64>| ms.map(secs).unwrap_or_else(|| "-".into());
        rows.push_str(&format!(
            "<tr class=\"score\" data-scenario=\"{sc}\" data-rto=\"{rv}\" data-rpo=\"{pv}\"><td>{sc}</td><td>{m}</td>\
             <td>{d}</td><td class=\"{pc}\">{pw}</td><td>{det}</td><td>{rec}</td>{rto}{rpo}</tr>\n",
            sc = escape(&s.scenario),
            rv = s.rto.word(),
            pv = s.rpo.word(),
            m = escape(&s.mode),
            d = s.disruption.map(|d| d.as_str()).unwrap_or("-"),
            pc = if s.passed { "pass" } else { "fail" },
            pw = if s.passed { "PASS" } else { "FAIL" },
            det = fmt(r.and_then(|r| r.detect_ms())),
            rec = match &s.rto {
                Verdict::NotRecovered { .. } => "not recovered".to_string(),
                Verdict::Met { measured_secs, .. } | Verdict::Missed { measured_secs, lower_bound: false, .. } => {
                    secs((measured_secs * 1000.0).round() as u64)
                }
                Verdict::Missed { lower_bound: true, .. } | Verdict::NotMeasured { .. } => "-".to_string(),
            },
            rto = rto_cell(s),
            rpo = cell(&s.rpo),
        ));
    }
    let targets: String = card
        .targets
        .policy
        .iter()
        .map(|(d, t)| format!("{} RTO {}s / RPO {}s", d.as_str(), t.rto_in_secs, t.rpo_in_secs))
        .collect::<Vec<_>>()
        .join(" · ");
    let timelines: String = card.scores.iter().map(timeline).collect();
    let passed = card.scores.iter().filter(|s| s.passed).count();
    let started = reports.first().map(|r| r.started_at.as_str()).unwrap_or("-");
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>selfheal game day scorecard</title>\
         <style>{STYLE}</style></head><body>\n<h1>selfheal game day: resilience scorecard</h1>\
         <p class=\"sub\">started {}; {passed} of {} scenarios passed; targets from {}: {}</p>\n\
         <table id=\"scorecard\"><thead><tr><th>scenario</th><th>mode</th><th>disruption</th><th>result</th>\
         <th>detect</th><th>recover</th><th>RTO</th><th>RPO</th></tr></thead><tbody>\n{rows}</tbody></table>\n\
         {timelines}</body></html>\n",
        escape(started),
        card.scores.len(),
        escape(&card.targets.source),
        escape(&targets),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::scorecard::{EventKind, TimelineEvent};
    use crate::drill::targets::{Disruption, Targets};

    #[test]
    fn the_page_has_a_scorecard_row_and_a_timeline_per_scenario_and_nothing_remote() {
        let t = Targets::defaults();
        let score = |name: &str, rto: Verdict| Score {
            scenario: name.into(),
            mode: "live".into(),
            disruption: Some(Disruption::Hardware),
            target: t.get(Disruption::Hardware),
            rto,
            approval_wait_secs: None,
            rpo: Verdict::NotMeasured { why: "<stateless>".into() },
            passed: true,
            timeline: vec![
                TimelineEvent { at_ms: 0, kind: EventKind::Injected, label: "stopped i-1".into() },
                TimelineEvent {
                    at_ms: 900,
                    kind: EventKind::Action,
                    label: "instance-healer replace i-1: acted".into(),
                },
                TimelineEvent { at_ms: 2100, kind: EventKind::Recovered, label: "recovered".into() },
            ],
            restores: vec![],
        };
        let card = Scorecard {
            targets: t.clone(),
            scores: vec![
                score("lose-instance", Verdict::Met { measured_secs: 2.1, target_secs: 300 }),
                score(
                    "lose-primary-db",
                    Verdict::Missed { measured_secs: 400.0, target_secs: 300, by_secs: 100.0, lower_bound: false },
                ),
            ],
        };
        let html = render(&card, &[]);
        assert!(html.contains("<td>2.10s</td><td class=\"met\">met: 2.1s of 300s</td>"), "{html}");
        assert_eq!(html.matches("<tr class=\"score\"").count(), 2);
        assert_eq!(html.matches("<section class=\"timeline\"").count(), 2);
        assert!(html.contains("data-scenario=\"lose-instance\" data-rto=\"met\" data-rpo=\"not-measured\""), "{html}");
        assert!(html.contains("missed by 100.0s"));
        assert!(html.contains("&lt;stateless&gt;") && !html.contains("<stateless>"));
        assert_eq!(html.matches("<li data-kind=").count(), 6);
        for remote in ["http://", "https://", "<script", "<link", "@import", "src="] {
            assert!(!html.replace("http://www.w3.org/2000/svg", "").contains(remote), "{remote} in the page");
        }
    }

    #[test]
    fn a_restore_test_lists_each_restore_with_its_time_and_recovery_point() {
        let t = Targets::defaults();
        let restore = |kind: &str, source: &str, rto: Verdict, rpo: Verdict| crate::drill::scorecard::RestoreScore {
            kind: kind.into(),
            source: source.into(),
            account: None,
            point: Some("snap-1".into()),
            rto,
            rpo,
        };
        let score = Score {
            scenario: "restore-test".into(),
            mode: "live".into(),
            disruption: Some(Disruption::Software),
            target: t.get(Disruption::Software),
            rto: Verdict::NotRecovered { why: "the restore of orders failed: <boom>".into() },
            approval_wait_secs: None,
            rpo: Verdict::Met { measured_secs: 60.0, target_secs: 3600 },
            passed: false,
            timeline: vec![],
            restores: vec![
                restore(
                    "ebs-volume",
                    "vol-1",
                    Verdict::Met { measured_secs: 1.5, target_secs: 300 },
                    Verdict::Met { measured_secs: 60.0, target_secs: 3600 },
                ),
                restore(
                    "rds-instance",
                    "orders",
                    Verdict::NotRecovered { why: "the restore of orders failed: <boom>".into() },
                    Verdict::Met { measured_secs: 30.0, target_secs: 3600 },
                ),
            ],
        };
        let html = render(&Scorecard { targets: t, scores: vec![score] }, &[]);
        assert_eq!(html.matches("<tr class=\"restore\"").count(), 2, "{html}");
        assert!(html.contains("data-kind=\"ebs-volume\" data-rto=\"met\" data-rpo=\"met\""), "{html}");
        assert!(html.contains("data-kind=\"rds-instance\" data-rto=\"not-recovered\""), "{html}");
        assert!(html.contains("&lt;boom&gt;") && !html.contains("<boom>"), "escaped");
    }

    #[test]
    fn a_page_is_shown_as_not_recovered_and_an_approval_wait_beside_the_rto() {
        let t = Targets::defaults();
        let page = Score {
            scenario: "lose-az".into(),
            mode: "live".into(),
            disruption: Some(Disruption::Az),
            target: t.get(Disruption::Az),
            rto: Verdict::NotRecovered { why: "the outcome was a page (refused ×2), not a recovery".into() },
            approval_wait_secs: None,
            rpo: Verdict::NotMeasured { why: "stateless".into() },
            passed: true,
            timeline: vec![
                TimelineEvent { at_ms: 0, kind: EventKind::Injected, label: "stopped i-1, i-2".into() },
                TimelineEvent { at_ms: 1200, kind: EventKind::Verified, label: "a page (refused ×2)".into() },
            ],
            restores: vec![],
        };
        let flip = Score {
            scenario: "region-failover".into(),
            disruption: Some(Disruption::Region),
            target: t.get(Disruption::Region),
            rto: Verdict::Met { measured_secs: 45.0, target_secs: 3600 },
            approval_wait_secs: Some(42.0),
            ..page.clone()
        };
        let html = render(&Scorecard { targets: t.clone(), scores: vec![page, flip] }, &[]);
        assert!(
            html.contains(
                "<td>not recovered</td><td class=\"not-recovered\">not recovered: the outcome was a page (refused ×2), \
                 not a recovery</td>"
            ),
            "{html}"
        );
        assert!(html.contains("data-scenario=\"lose-az\" data-rto=\"not-recovered\""), "{html}");
        assert!(html.contains(".missed,.not-recovered{"), "the verdict is styled as a failure");
        assert!(
            html.contains(
                "<td>45.00s</td><td class=\"met\">met: 45.0s of 3600s, of which 42.0s waiting for approval</td>"
            ),
            "{html}"
        );
        assert!(html.contains("<li data-kind=\"verified\">"), "{html}");
        // Nothing claims the page recovered anything.
        assert!(!html.contains("data-kind=\"recovered\""), "{html}");
    }
}
