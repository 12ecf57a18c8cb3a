//! Health of a Route 53 health check as relied on: the reading, Route 53's own ">18% of checkers"
//! rule (with `Disabled` and `Inverted`), and how a reading is worded in messages.

use serde::{Deserialize, Serialize};

/// Route 53 considers an endpoint healthy when more than this share (percent) of checkers say so.
const HEALTHY_PERCENT: usize = 18;

/// What the health of one health check was found to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReading {
    pub health_check_id: String,
    /// `Some(true)` healthy, `Some(false)` failing, `None` unknown (no observations).
    pub healthy: Option<bool>,
    pub inverted: bool,
    pub disabled: bool,
    pub checkers: usize,
    pub checkers_ok: usize,
}

/// Route 53's view of a check: >18% of checkers OK, disabled counts as healthy, `Inverted` flips it.
pub fn effective_health(checkers_ok: usize, checkers: usize, inverted: bool, disabled: bool) -> Option<bool> {
    let raw = if disabled {
        Some(true)
    } else if checkers == 0 {
        None
    } else {
        Some(checkers_ok * 100 > checkers * HEALTHY_PERCENT)
    };
    raw.map(|h| h != inverted)
}

pub(super) fn health_word(h: Option<bool>) -> &'static str {
    match h {
        Some(true) => "healthy",
        Some(false) => "health check failing",
        None => "health unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_route53_rules() {
        assert_eq!(effective_health(3, 16, false, false), Some(true)); // 18.75% > 18%
        assert_eq!(effective_health(2, 16, false, false), Some(false));
        assert_eq!(effective_health(1, 1, true, false), Some(false));
        assert_eq!(effective_health(0, 1, true, false), Some(true));
        assert_eq!(effective_health(0, 0, false, true), Some(true));
        assert_eq!(effective_health(0, 0, false, false), None);
    }
}
