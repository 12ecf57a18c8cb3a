//! Is one AZ of a place impaired? The pure judgement over the signals recorded for the place
//! ([`assess`]): an AZ counts as impaired on an open AWS Health event naming it, the healer's AZ
//! short-circuit or an operator's request (each alone), or on per-AZ alarms in ALARM for at least
//! `SELFHEAL_ZONE_MIN_SIGNALS` distinct resources. One AZ impaired is an evacuation; two or more is a
//! region event, which is not the evacuator's to act on.
//!
//! The per-AZ alarms themselves carry the outlier test (readiness defines them on the AZ's share of
//! its load balancer's errors and on its latency against the whole), and [`outlier`] is the same test
//! over raw per-AZ values: one AZ significantly worse than the others, never all of them worse.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::config::ZoneConfig;
use crate::ledger::ZoneSignal;

/// The evidence that an AZ is impaired.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Impairment {
    /// The AZ's name in the place's account.
    pub az: String,
    /// Distinct resources whose per-AZ alarms are in ALARM.
    pub alarming: BTreeSet<String>,
    /// Signals that count alone: `health:<arn>`, `healer:<group>`, `manual`.
    pub decisive: Vec<String>,
    /// Each counted signal, in words.
    pub evidence: Vec<String>,
    /// The earliest counted signal.
    pub since: DateTime<Utc>,
}

/// What the signals say about a place.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// No AZ is impaired (signals below the threshold are listed).
    Healthy { below_threshold: Vec<Impairment> },
    /// Exactly one AZ is impaired: evacuate it.
    One { impaired: Impairment },
    /// Two or more: a region event; nothing automatic.
    Many { impaired: Vec<Impairment> },
}

impl Verdict {
    /// The names of the impaired AZs.
    pub fn impaired_azs(&self) -> Vec<&str> {
        match self {
            Verdict::Healthy { .. } => vec![],
            Verdict::One { impaired } => vec![impaired.az.as_str()],
            Verdict::Many { impaired } => impaired.iter().map(|i| i.az.as_str()).collect(),
        }
    }

    pub fn is_impaired(&self, az: &str) -> bool {
        self.impaired_azs().contains(&az)
    }
}

/// Whether a signal still counts at `now`: alarms and Health events until they clear; the healer's
/// short-circuit and an operator's request for `SELFHEAL_ZONE_SIGNAL_TTL_SECONDS`.
fn counts(s: &ZoneSignal, now: DateTime<Utc>, cfg: &ZoneConfig) -> bool {
    if !s.impaired {
        return false;
    }
    let lasting = s.source.starts_with("alarm:") || s.source.starts_with("health:");
    lasting || now.signed_duration_since(s.at).to_std().map(|age| age <= cfg.signal_ttl).unwrap_or(true)
}

/// Judges the place's signals at `now`.
pub fn assess(signals: &[ZoneSignal], now: DateTime<Utc>, cfg: &ZoneConfig) -> Verdict {
    let mut by_az: BTreeMap<&str, Impairment> = BTreeMap::new();
    for s in signals.iter().filter(|s| counts(s, now, cfg)) {
        let e = by_az.entry(s.az.as_str()).or_insert_with(|| Impairment {
            az: s.az.clone(),
            alarming: BTreeSet::new(),
            decisive: vec![],
            evidence: vec![],
            since: s.at,
        });
        e.since = e.since.min(s.at);
        e.evidence.push(format!("{}: {}", s.source, s.detail));
        if s.source.starts_with("alarm:") {
            e.alarming.insert(s.resource.clone().unwrap_or_else(|| s.source.clone()));
        } else {
            e.decisive.push(s.source.clone());
        }
    }
    let (impaired, below): (Vec<Impairment>, Vec<Impairment>) =
        by_az.into_values().partition(|i| !i.decisive.is_empty() || i.alarming.len() >= cfg.min_signals as usize);
    if impaired.len() > 1 {
        return Verdict::Many { impaired };
    }
    match impaired.into_iter().next() {
        Some(one) => Verdict::One { impaired: one },
        None => Verdict::Healthy { below_threshold: below },
    }
}

/// The one AZ whose value is at least `ratio` times the median of the others and above `floor`;
/// `None` when none is, or when more than one is (not one AZ: all of them worse is not an AZ event).
pub fn outlier(values: &BTreeMap<String, f64>, ratio: f64, floor: f64) -> Option<String> {
    if values.len() < 2 {
        return None;
    }
    let worse: Vec<&String> = values
        .iter()
        .filter(|(az, v)| {
            let mut others: Vec<f64> = values.iter().filter(|(o, _)| o != az).map(|(_, v)| *v).collect();
            others.sort_by(|a, b| a.total_cmp(b));
            let median = if others.len() % 2 == 1 {
                others[others.len() / 2]
            } else {
                (others[others.len() / 2 - 1] + others[others.len() / 2]) / 2.0
            };
            **v > floor && **v >= ratio * median.max(f64::MIN_POSITIVE)
        })
        .map(|(az, _)| az)
        .collect();
    match worse.as_slice() {
        [one] => Some((*one).clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    fn cfg() -> ZoneConfig {
        ZoneConfig::read(&mut Env::from_map(Default::default()))
    }

    fn sig(az: &str, source: &str, resource: &str, impaired: bool, age_secs: i64) -> ZoneSignal {
        ZoneSignal {
            az: az.into(),
            source: source.into(),
            impaired,
            at: Utc::now() - chrono::Duration::seconds(age_secs),
            detail: "d".into(),
            resource: Some(resource.into()),
        }
    }

    #[test]
    fn one_alarming_resource_is_below_threshold_two_are_an_impaired_az() {
        let one = vec![sig("a", "alarm:x|a|5xx|lb1", "lb1", true, 10)];
        assert!(
            matches!(assess(&one, Utc::now(), &cfg()), Verdict::Healthy { ref below_threshold } if below_threshold.len() == 1)
        );
        let mut two = one.clone();
        two.push(sig("a", "alarm:x|a|latency|lb2", "lb2", true, 5));
        let Verdict::One { impaired } = assess(&two, Utc::now(), &cfg()) else { panic!("one AZ") };
        assert_eq!(impaired.az, "a");
        assert_eq!(impaired.alarming.len(), 2);
        // Two alarms of the same load balancer are one resource.
        let same =
            vec![sig("a", "alarm:x|a|5xx|lb1", "lb1", true, 10), sig("a", "alarm:x|a|latency|lb1", "lb1", true, 10)];
        assert!(matches!(assess(&same, Utc::now(), &cfg()), Verdict::Healthy { .. }));
    }

    #[test]
    fn cleared_alarms_do_not_count_and_decisive_signals_count_alone_until_their_ttl() {
        let cleared = vec![sig("a", "alarm:1", "lb1", false, 1), sig("a", "alarm:2", "lb2", false, 1)];
        assert!(matches!(assess(&cleared, Utc::now(), &cfg()), Verdict::Healthy { .. }));
        let healer = vec![sig("b", "healer:web", "web", true, 60)];
        assert!(matches!(assess(&healer, Utc::now(), &cfg()), Verdict::One { ref impaired } if impaired.az == "b"));
        let stale = vec![sig("b", "healer:web", "web", true, 3600)];
        assert!(matches!(assess(&stale, Utc::now(), &cfg()), Verdict::Healthy { .. }), "past the TTL");
        let health = vec![sig("c", "health:arn:1", "-", true, 86_400)];
        assert!(
            matches!(assess(&health, Utc::now(), &cfg()), Verdict::One { .. }),
            "a Health event lasts until it closes"
        );
    }

    #[test]
    fn two_impaired_azs_are_a_region_event() {
        let s = vec![sig("a", "health:1", "-", true, 1), sig("b", "healer:web", "web", true, 1)];
        let v = assess(&s, Utc::now(), &cfg());
        assert!(matches!(v, Verdict::Many { ref impaired } if impaired.len() == 2));
        assert_eq!(v.impaired_azs(), vec!["a", "b"]);
    }

    #[test]
    fn the_outlier_is_one_az_worse_than_the_others_never_all() {
        let v = |xs: &[(&str, f64)]| xs.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>();
        assert_eq!(outlier(&v(&[("a", 50.0), ("b", 2.0), ("c", 3.0)]), 3.0, 5.0), Some("a".into()));
        assert_eq!(outlier(&v(&[("a", 50.0), ("b", 48.0), ("c", 55.0)]), 3.0, 5.0), None, "all worse");
        assert_eq!(outlier(&v(&[("a", 4.0), ("b", 0.0), ("c", 0.0)]), 3.0, 5.0), None, "under the floor");
        assert_eq!(outlier(&v(&[("a", 50.0), ("b", 60.0), ("c", 1.0)]), 3.0, 5.0), None, "two AZs worse");
        assert_eq!(outlier(&v(&[("a", 50.0)]), 3.0, 5.0), None);
    }
}
