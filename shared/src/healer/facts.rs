//! What an instance looks like ([`InstanceFacts`]): the typed input the standalone decisions judge,
//! read from EC2 by `ec2`, enough to judge the instance and to launch its twin.

use serde::Serialize;

use super::REPLACES_TAG;

pub(super) const LT_ID_TAG: &str = "aws:ec2launchtemplate:id";
pub(super) const LT_VERSION_TAG: &str = "aws:ec2launchtemplate:version";

/// What an instance looks like: enough to judge it and to launch its twin.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceFacts {
    pub id: String,
    pub state: String,
    pub state_reason: Option<String>,
    pub az: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub image_id: Option<String>,
    pub instance_type: Option<String>,
    pub security_group_ids: Vec<String>,
    pub iam_profile_arn: Option<String>,
    pub key_name: Option<String>,
    pub tags: Vec<(String, String)>,
    pub ebs_backed: bool,
    /// `MaintenanceOptions.AutoRecovery`: `default` (EC2's simplified automatic recovery is on) or
    /// `disabled`; `None` when EC2 does not say.
    pub auto_recovery: Option<String>,
}

impl InstanceFacts {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The launch template (id, version) the instance was launched from, if any.
    pub fn launch_template(&self) -> Option<(&str, &str)> {
        Some((self.tag(LT_ID_TAG)?, self.tag(LT_VERSION_TAG)?))
    }

    /// Tags a replacement copies: everything but the reserved `aws:` tags, plus [`REPLACES_TAG`].
    pub fn replacement_tags(&self) -> Vec<(String, String)> {
        let mut tags: Vec<(String, String)> =
            self.tags.iter().filter(|(k, _)| !k.starts_with("aws:") && k != REPLACES_TAG).cloned().collect();
        tags.push((REPLACES_TAG.to_string(), self.id.clone()));
        tags
    }
}
