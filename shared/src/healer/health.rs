//! The "is it still broken?" rule: an instance's [`Health`] facts, why it counts as broken, and how
//! its status checks [`refine`] an unknown failure.

use serde::Serialize;

use super::intake::Failure;

/// Health facts about one instance, from EC2 and (when a member) Auto Scaling.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub instance_id: String,
    pub state: String,
    pub az: Option<String>,
    pub instance_status: Option<String>,
    pub system_status: Option<String>,
    pub asg_health: Option<String>,
    pub lifecycle: Option<String>,
}

impl Health {
    /// Why the instance counts as broken under the module's rule; empty when it is healthy.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.state != "running" {
            p.push(format!("state {}", self.state));
        }
        if self.instance_status.as_deref() == Some("impaired") {
            p.push("instance status impaired".into());
        }
        if self.system_status.as_deref() == Some("impaired") {
            p.push("system status impaired".into());
        }
        if self.asg_health.as_deref().is_some_and(|h| h.eq_ignore_ascii_case("unhealthy")) {
            p.push("Auto Scaling health Unhealthy".into());
        }
        p
    }

    /// Shutting down, terminated, or leaving its group.
    pub fn is_going_away(&self) -> bool {
        matches!(self.state.as_str(), "shutting-down" | "terminated")
            || self.lifecycle.as_deref().is_some_and(|l| l.starts_with("Terminating") || l.starts_with("Detach"))
    }
}
/// Refines an unknown failure from the status checks: an impaired system status means the host.
pub fn refine(failure: Failure, health: &Health) -> Failure {
    match failure {
        Failure::Unknown if health.system_status.as_deref() == Some("impaired") => Failure::System,
        Failure::Unknown if health.instance_status.as_deref() == Some("impaired") => Failure::Instance,
        f => f,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::healer::test_support::health;

    #[test]
    fn health_rule() {
        assert!(health("i-1", "a", "running", "Healthy").problems().is_empty());
        assert_eq!(health("i-1", "a", "stopped", "Healthy").problems(), vec!["state stopped"]);
        assert_eq!(health("i-1", "a", "running", "Unhealthy").problems(), vec!["Auto Scaling health Unhealthy"]);
        let mut h = health("i-1", "a", "running", "Healthy");
        h.instance_status = Some("insufficient-data".into());
        assert!(h.problems().is_empty(), "insufficient data is not evidence");
        h.system_status = Some("impaired".into());
        assert_eq!(refine(Failure::Unknown, &h), Failure::System);
        assert!(health("i-1", "a", "shutting-down", "Healthy").is_going_away());
    }
}
