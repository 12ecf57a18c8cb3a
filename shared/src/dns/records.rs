//! The record model: one Route 53 record set as this function manages it, the routing shape of a
//! record (failover pair, weighted pair, simple), and comparing lists of sets.

use serde::{Deserialize, Serialize};

use super::config::normalise_name;

/// An alias target of a record set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alias {
    pub hosted_zone_id: String,
    pub dns_name: String,
    pub evaluate_target_health: bool,
}

/// One Route 53 record set, as far as this function manages it (serialised into envelopes as the
/// before/after values, and read back from the ledger for failback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordSet {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<Alias>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_id: Option<String>,
}

impl RecordSet {
    /// Whether this set currently receives traffic (the PRIMARY of a pair, a weighted set with weight,
    /// any simple record).
    pub fn is_active(&self) -> bool {
        match (&self.failover, self.weight) {
            (Some(f), _) => f == "PRIMARY",
            (None, Some(w)) => w > 0,
            (None, None) => true,
        }
    }

    /// A short description of the target: set id, alias or values.
    pub fn describe(&self) -> String {
        let target = match &self.alias {
            Some(a) => format!("alias {}", a.dns_name),
            None => self.values.join(","),
        };
        match &self.set_identifier {
            Some(id) => format!("{id} ({target})"),
            None => target,
        }
    }
}

/// How a managed record routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    FailoverPair,
    WeightedPair,
    Simple,
}

/// Recognises the routing of a record's sets.
pub fn classify(sets: &[RecordSet]) -> std::result::Result<Routing, String> {
    match sets {
        [] => Err("the record has no record sets".into()),
        [one] if one.set_identifier.is_none() => Ok(Routing::Simple),
        [a, b] if a.failover.is_some() && b.failover.is_some() => {
            let mut roles = [a.failover.as_deref(), b.failover.as_deref()];
            roles.sort();
            if roles == [Some("PRIMARY"), Some("SECONDARY")] {
                Ok(Routing::FailoverPair)
            } else {
                Err(format!("a failover pair needs one PRIMARY and one SECONDARY, found {roles:?}"))
            }
        }
        [a, b] if a.weight.is_some() && b.weight.is_some() => Ok(Routing::WeightedPair),
        _ => Err(format!(
            "unsupported routing: {} record set(s); managed shapes are a failover pair, a weighted pair or one \
             simple record",
            sets.len()
        )),
    }
}

pub(super) fn identity(s: &RecordSet) -> (String, String, Option<String>) {
    (s.name.clone(), s.rtype.clone(), s.set_identifier.clone())
}

fn canonical(sets: &[RecordSet]) -> Vec<RecordSet> {
    let mut v: Vec<RecordSet> = sets
        .iter()
        .cloned()
        .map(|mut s| {
            s.name = normalise_name(&s.name);
            s.values.sort();
            s
        })
        .collect();
    v.sort_by_key(identity);
    v
}

/// Whether two lists hold the same record sets, in any order.
pub fn same_sets(a: &[RecordSet], b: &[RecordSet]) -> bool {
    canonical(a) == canonical(b)
}

/// The share of traffic a set gets, for comparing before and after (failover roles count as 0/1).
pub(super) fn weight_of(s: &RecordSet) -> i64 {
    match (&s.failover, s.weight) {
        (Some(f), _) => i64::from(f == "PRIMARY"),
        (None, Some(w)) => w,
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::test_support::pair;

    #[test]
    fn unsupported_shapes_are_named() {
        assert!(classify(&[]).is_err());
        let three = vec![pair()[0].clone(), pair()[1].clone(), pair()[1].clone()];
        assert!(classify(&three).unwrap_err().contains("3 record set"));
        let two_primaries = vec![pair()[0].clone(), pair()[0].clone()];
        assert!(classify(&two_primaries).unwrap_err().contains("PRIMARY"));
    }
}
