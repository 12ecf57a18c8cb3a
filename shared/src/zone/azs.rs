//! AZ names and AZ IDs: ARC names an AZ by its ID (`use1-az1`), everything else by its name
//! (`us-east-1a`), and the same name is a different ID in each account. [`AzMap`] is one account's
//! mapping in one region, read with `ec2:DescribeAvailabilityZones`.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// One account's AZs in one region: name ↔ ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AzMap {
    by_name: BTreeMap<String, String>,
}

impl AzMap {
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        AzMap { by_name: pairs.into_iter().collect() }
    }

    /// Reads the place's AZs.
    pub async fn read(ec2: &aws_sdk_ec2::Client) -> Result<Self> {
        let out = ec2
            .describe_availability_zones()
            .send()
            .await
            .map_err(|e| Error::aws("ec2", "DescribeAvailabilityZones", e))?;
        Ok(AzMap::new(
            out.availability_zones()
                .iter()
                .filter_map(|z| Some((z.zone_name()?.to_string(), z.zone_id()?.to_string()))),
        ))
    }

    pub fn id_of(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(String::as_str)
    }

    pub fn name_of(&self, id: &str) -> Option<&str> {
        self.by_name.iter().find(|(_, i)| *i == id).map(|(n, _)| n.as_str())
    }

    /// `(name, ID)` of an AZ given by either; an error naming the AZs the account has otherwise.
    pub fn resolve(&self, az: &str, place: &str) -> Result<(String, String)> {
        if let Some(id) = self.id_of(az) {
            return Ok((az.to_string(), id.to_string()));
        }
        if let Some(name) = self.name_of(az) {
            return Ok((name.to_string(), az.to_string()));
        }
        Err(Error::NotFound {
            kind: "availability zone",
            id: format!(
                "{az} in {place} (it has {})",
                self.by_name.iter().map(|(n, i)| format!("{n}={i}")).collect::<Vec<_>>().join(", ")
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_resolve_either_way_and_unknown_ones_are_named() {
        let m = AzMap::new([("us-east-1a".into(), "use1-az6".into()), ("us-east-1b".into(), "use1-az1".into())]);
        assert_eq!(m.resolve("us-east-1a", "p").unwrap(), ("us-east-1a".into(), "use1-az6".into()));
        assert_eq!(m.resolve("use1-az1", "p").unwrap(), ("us-east-1b".into(), "use1-az1".into()));
        let err = m.resolve("us-east-1z", "111111111111/us-east-1").unwrap_err().to_string();
        assert!(err.contains("us-east-1z") && err.contains("us-east-1a=use1-az6"), "{err}");
    }
}
