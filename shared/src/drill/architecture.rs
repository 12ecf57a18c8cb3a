//! The reference architecture as the drill knows it: the ids of everything a game day created
//! ([`Architecture`], which the deployed drill reads from `SELFHEAL_DRILL_ARCHITECTURE`), which account
//! each tier lives in (and the opt-in tag it was provisioned with), the `az-outage` fleet's description ([`Fleet`], [`FLEET_GROUPS`]), the tag live
//! drills require of every target ([`DRILL_TAG`]), the AZs ([`AZS`]) and the hub account a one-account
//! game day names ([`DEFAULT_HOME_ACCOUNT`]).
//!
//! Descriptions and constants only: creating these resources in the emulator for a local game day is
//! the dev-only `gameday` crate's (`tools/gameday`), which the deployed functions do not depend on.

use serde::{Deserialize, Serialize};

/// The tag that marks a resource as fair game for live drills.
pub const DRILL_TAG: &str = "selfheal:drill";

/// The availability zones the game day spreads over.
pub const AZS: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

/// Everything the game day created, by id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Architecture {
    pub prefix: String,
    pub vpc_id: String,
    pub subnet_ids: Vec<String>,
    pub security_group_id: String,
    pub launch_template_id: String,
    pub asg_name: String,
    pub asg_desired: i32,
    pub db_primary: String,
    pub db_replicas: Vec<String>,
    /// A second database whose replica stands in the standby region's place (region failover).
    #[serde(default)]
    pub region_db_primary: Option<String>,
    #[serde(default)]
    pub region_db_replica: Option<String>,
    pub zone_id: String,
    pub zone_name: String,
    pub app_record: String,
    pub db_record: String,
    pub primary_health_check: String,
    pub secondary_health_check: String,
    pub primary_ip: String,
    pub secondary_ip: String,
    pub backup_volumes: Vec<String>,
    pub topic_arn: String,
    pub ledger_table: String,
    /// The Application Load Balancer in front of the web tier, and its target group.
    #[serde(default)]
    pub load_balancer_arn: Option<String>,
    #[serde(default)]
    pub target_group_arn: Option<String>,
    /// The versioned bucket holding the static content.
    #[serde(default)]
    pub static_bucket: Option<String>,
    /// The hub's account, when the architecture spans several accounts (`None`: one account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_account: Option<String>,
    /// The account of the web tier (VPC, group, load balancer, bucket); `None`: the hub's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_account: Option<String>,
    /// The account of the data tier (both databases and their replicas); `None`: the hub's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_account: Option<String>,
    /// The account of each of `backup_volumes`, in the same order; empty: all the hub's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_accounts: Vec<String>,
    /// The larger fleet `az-outage` drills, when provisioned (`None`: the default, small architecture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<Fleet>,
    /// The opt-in tag every resource was provisioned with (`selfheal:enabled`), and its value (`true`,
    /// or a value of its own where several game days share one emulator, so that the functions of one
    /// see none of the others' resources: zone-evacuator acts on every opted-in load balancer and group
    /// of an account). `None`: the functions' defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_in_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_in_value: Option<String>,
}

/// The fleet the `az-outage` scenario drills: Auto Scaling groups over the three AZs (in the web tier's
/// account, in its VPC) and databases with replicas (in the data tier's account).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Fleet {
    pub groups: Vec<FleetGroup>,
    pub databases: Vec<FleetDatabase>,
}

/// One of the fleet's Auto Scaling groups.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FleetGroup {
    pub name: String,
    /// Members launched in each of [`AZS`], in order.
    pub per_az: Vec<i32>,
}

impl FleetGroup {
    pub fn desired(&self) -> i32 {
        self.per_az.iter().sum()
    }
}

/// One of the fleet's databases: a single-AZ writer and its read replicas, one in each other AZ.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FleetDatabase {
    pub primary: String,
    /// The writer's AZ.
    pub az: String,
    pub replicas: Vec<String>,
}

/// The fleet's groups: a name suffix and the members in each of [`AZS`]. Three shapes, so that losing
/// the first AZ shows each outcome of the healer's maxUnhealthy rule (see `scenarios.rs`, `az-outage`):
/// `web` loses 3 of 9 (one AZ whole: the per-AZ rule trips), `api` loses 1 of 3 (below the minimum of
/// 2: replaced), `batch` loses 2 of 4 (half the group: the group rule trips).
pub const FLEET_GROUPS: [(&str, [i32; 3]); 3] = [("web", [3, 3, 3]), ("api", [1, 1, 1]), ("batch", [2, 1, 1])];

/// moto's default account, the hub of a local game day when the architecture does not name one.
pub const DEFAULT_HOME_ACCOUNT: &str = "123456789012";

impl Architecture {
    /// The hub's account id.
    pub fn home(&self) -> &str {
        self.home_account.as_deref().unwrap_or(DEFAULT_HOME_ACCOUNT)
    }

    /// `account` if it is a member account, `None` if it is the hub's (or unnamed).
    pub fn member<'a>(&self, account: Option<&'a String>) -> Option<&'a str> {
        account.map(String::as_str).filter(|a| *a != self.home())
    }

    /// The account id a part lives in (`None`: the hub's).
    pub fn account_id(&self, account: Option<&String>) -> String {
        self.member(account).unwrap_or(self.home()).to_string()
    }

    /// The member account of the web tier, if it is not the hub's.
    pub fn web_member(&self) -> Option<&str> {
        self.member(self.web_account.as_ref())
    }

    /// The member account of the data tier, if it is not the hub's.
    pub fn db_member(&self) -> Option<&str> {
        self.member(self.db_account.as_ref())
    }

    /// The load balancer's ELB dimension (`app/<name>/<id>`), as its per-AZ alarms name it.
    pub fn load_balancer_dimension(&self) -> Option<&str> {
        self.load_balancer_arn.as_deref().and_then(crate::zone::lbs::dimension)
    }

    /// Every Auto Scaling group of the web tier: the reference architecture's and the fleet's.
    pub fn group_names(&self) -> Vec<String> {
        let mut v = vec![self.asg_name.clone()];
        v.extend(self.fleet.iter().flat_map(|f| f.groups.iter().map(|g| g.name.clone())));
        v
    }

    /// The member account of backup volume `i`, if it is not the hub's.
    pub fn volume_member(&self, i: usize) -> Option<&str> {
        self.member(self.volume_accounts.get(i))
    }

    /// Every member account the architecture uses, sorted.
    pub fn member_accounts(&self) -> Vec<String> {
        let mut v: Vec<String> = [self.web_account.as_ref(), self.db_account.as_ref()]
            .into_iter()
            .chain(self.volume_accounts.iter().map(Some))
            .filter_map(|a| self.member(a).map(str::to_string))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}
