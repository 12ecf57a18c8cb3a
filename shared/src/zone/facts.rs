//! What the evacuator knows of one resource when it decides: a load balancer or an Auto Scaling group
//! ([`Resource`]), whether ARC can shift it, the shifts ARC has applied to it ([`ArcShift`]), and for a
//! group its capacity and subnets ([`GroupFacts`]). Plain data, read by `lbs`, `groups` and `arc`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The comment prefix of every shift the evacuator starts; the rest names the evacuation.
pub const COMMENT_PREFIX: &str = "selfheal zone-evacuator";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    LoadBalancer,
    AutoScalingGroup,
}

impl Kind {
    /// The envelope target kind.
    pub fn target_kind(self) -> &'static str {
        match self {
            Kind::LoadBalancer => "load-balancer",
            Kind::AutoScalingGroup => "autoscaling-group",
        }
    }
}

/// Who started a shift ARC has applied to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShiftOwner {
    /// This evacuator (a `ZONAL_SHIFT` whose comment starts with [`COMMENT_PREFIX`]).
    Selfheal,
    /// Somebody's own zonal shift (`ZONAL_SHIFT`, another comment).
    Customer,
    /// A zonal autoshift practice run (`PRACTICE_RUN`).
    PracticeRun,
    /// An AWS FIS experiment (`FIS_EXPERIMENT`).
    FisExperiment,
    /// ARC's zonal autoshift (AWS's own detection).
    Autoshift,
}

impl ShiftOwner {
    /// The recovery named in a stand-down.
    pub fn recovery(self) -> &'static str {
        match self {
            ShiftOwner::Selfheal => "selfheal-zonal-shift",
            ShiftOwner::Customer => "customer-zonal-shift",
            ShiftOwner::PracticeRun => "arc-practice-run",
            ShiftOwner::FisExperiment => "fis-experiment",
            ShiftOwner::Autoshift => "arc-zonal-autoshift",
        }
    }
}

/// One shift in effect on a resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArcShift {
    /// The zonal shift id (`None` for an autoshift, which has none).
    pub id: Option<String>,
    pub owner: ShiftOwner,
    /// The AZ ID traffic is shifted away from.
    pub away_from: String,
    pub expiry: Option<DateTime<Utc>>,
    pub comment: String,
}

/// Whether ARC can shift a resource, and if not why.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Shiftable {
    Yes,
    No { why: String },
}

/// A group's capacity and where it launches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupFacts {
    pub desired: i32,
    pub min: i32,
    pub max: i32,
    /// In-service instances per AZ name.
    pub in_service: BTreeMap<String, i32>,
    /// The group's subnets, in `VPCZoneIdentifier` order.
    pub subnets: Vec<String>,
    /// Each subnet's AZ name.
    pub subnet_azs: BTreeMap<String, String>,
}

impl GroupFacts {
    /// The subnets in `az`.
    pub fn subnets_in(&self, az: &str) -> Vec<String> {
        self.subnets.iter().filter(|s| self.subnet_azs.get(*s).map(String::as_str) == Some(az)).cloned().collect()
    }
}

/// A load balancer or group in the place, as the evacuator sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub kind: Kind,
    pub arn: String,
    pub name: String,
    /// The AZ names it is deployed in.
    pub azs: Vec<String>,
    pub shiftable: Shiftable,
    /// The shifts ARC has in effect on it (all owners).
    pub shifts: Vec<ArcShift>,
    pub group: Option<GroupFacts>,
}
