//! DR-region copies: which suite snapshot to copy next, and the copies already in a DR region
//! (which retention then applies to as at home).

use std::collections::{HashMap, HashSet};

use super::retention::{Snap, SnapState};

/// The suite snapshot to copy to the DR region: the newest completed one of ours, unless it already
/// has a copy there.
pub fn copy_candidate(snaps: &[Snap], copied: &HashSet<String>) -> Option<String> {
    snaps
        .iter()
        .filter(|s| s.ours && s.state == SnapState::Completed)
        .max_by(|a, b| a.started.cmp(&b.started).then_with(|| a.id.cmp(&b.id)))
        .filter(|s| !copied.contains(&s.id))
        .map(|s| s.id.clone())
}

/// The suite's copies in one DR region: which home-region snapshots have a copy there, and the copies
/// themselves by the resource they back up (for retention, which applies to them as at home).
#[derive(Debug, Clone, Default)]
pub struct DrCopies {
    pub sources: HashSet<String>,
    pub by_resource: HashMap<String, Vec<Snap>>,
}

impl DrCopies {
    pub(super) fn add(&mut self, source: Option<&str>, resource: Option<&str>, snap: Snap) {
        if let Some(src) = source {
            self.sources.insert(src.to_string());
            if let Some(r) = resource {
                self.by_resource.entry(r.to_string()).or_default().push(snap);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::test_support::snap;

    #[test]
    fn copy_candidate_is_the_newest_uncopied_suite_snapshot() {
        let s = vec![snap("o1", 0, true), snap("o2", 1, true), snap("f", 2, false)];
        assert_eq!(copy_candidate(&s, &HashSet::new()).as_deref(), Some("o2"));
        assert_eq!(copy_candidate(&s, &["o2".to_string()].into()), None);
    }
}
