//! What a restore test reports of each restore (issue #29): the kind of recovery point restored into
//! what, and one restore's result (its recovery point and age, its scratch resource, its time, what was
//! verified, whether the scratch resource is gone). Data only: the drill report and the scorecard read
//! it; the restore test (`super::restore`) makes it.

use serde::{Deserialize, Serialize};

/// What kind of recovery point is restored into what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An EBS snapshot, restored into a volume.
    EbsVolume,
    /// An RDS DB snapshot, restored into a DB instance.
    RdsInstance,
    /// An Aurora DB cluster snapshot, restored into a cluster.
    RdsCluster,
    /// A DynamoDB table's point-in-time recovery, restored at its latest restorable time into a table.
    DynamodbTable,
    /// An S3 object's previous version, restored into a scratch key of its bucket.
    S3Object,
}

impl Kind {
    pub const ALL: [Kind; 5] =
        [Kind::EbsVolume, Kind::RdsInstance, Kind::RdsCluster, Kind::DynamodbTable, Kind::S3Object];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::EbsVolume => "ebs-volume",
            Kind::RdsInstance => "rds-instance",
            Kind::RdsCluster => "rds-cluster",
            Kind::DynamodbTable => "dynamodb-table",
            Kind::S3Object => "s3-object",
        }
    }

    /// Whether the recovery point's age is the data at risk, scored against the RPO target. An S3
    /// version restore is not: versioning keeps every write, so the previous version's age says how
    /// long ago it was overwritten, not how much data a restore loses (shown, not scored).
    pub fn scores_rpo(self) -> bool {
        self != Kind::S3Object
    }
}

/// One restore: what was restored, from which recovery point, into what, how long it took, what was
/// verified, and whether its scratch resource is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreResult {
    pub kind: Kind,
    /// The account it lives in (`None`: the drill's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub source: String,
    pub policy: String,
    /// The recovery point restored (`None`: the resource has none).
    pub point: Option<String>,
    /// The recovery point's age when the restore started, in seconds.
    pub point_age_secs: Option<f64>,
    /// Whether that age is scored against the RPO target ([`Kind::scores_rpo`]).
    pub scores_rpo: bool,
    /// The scratch resource (volume id, DB or table identifier, `bucket/key`).
    pub scratch: Option<String>,
    /// From the restore's request to the restored resource verified.
    pub restore_ms: Option<u64>,
    /// What the verification saw.
    pub verified: Option<String>,
    /// Why the restore failed, when it did (the verification included).
    pub error: Option<String>,
    /// Whether the scratch resource was deleted (true when none was created).
    pub cleaned: bool,
}

impl RestoreResult {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.cleaned && self.restore_ms.is_some()
    }
}
