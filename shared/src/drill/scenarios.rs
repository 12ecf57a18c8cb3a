//! The drill scenarios (filled in as the functions land).

use serde::{Deserialize, Serialize};

use super::{Architecture, Drill, DrillReport, Mode};
use crate::error::{Error, Result};

/// A game-day scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    LoseInstance,
}

impl Scenario {
    pub const ALL: [Scenario; 1] = [Scenario::LoseInstance];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::LoseInstance => "lose-instance",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.iter().copied().find(|x| x.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|x| x.name()).collect();
            Error::malformed("drill", format!("unknown scenario {s:?}; known: {}, or all", names.join(", ")))
        })
    }
}

/// Runs one scenario and reports; failures inside a scenario are reported, not raised.
pub async fn run(_drill: &Drill, scenario: Scenario, mode: Mode, _arch: &Architecture) -> DrillReport {
    DrillReport {
        scenario: scenario.name().into(),
        mode: if mode == Mode::Live { "live".into() } else { "dry-run".into() },
        started_at: chrono::Utc::now().to_rfc3339(),
        injected: vec![],
        steps: vec![],
        guards_fired: vec![],
        passed: false,
        total_ms: 0,
    }
}
