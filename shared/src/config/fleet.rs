//! The fleet settings every function reads: the hub's own account, the member accounts and OUs it
//! serves, the role it assumes there and the external id it presents ([`crate::fleet`] acts on them).

use std::collections::BTreeMap;

use super::Env;
use crate::ids::{is_account_id, is_org_unit};

/// The fleet settings every function reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FleetConfig {
    /// The hub's own account (`SELFHEAL_HOME_ACCOUNT`); asked of STS when unset and first needed.
    pub home_account: Option<String>,
    /// Member accounts the hub may act in, with their names where configured (`SELFHEAL_ACCOUNTS`:
    /// `111111111111` or `111111111111=payments-prod`, comma-separated).
    pub accounts: BTreeMap<String, Option<String>>,
    /// Organizational units (`ou-…`) or the root (`r-…`) in `SELFHEAL_ACCOUNTS`: every active
    /// account under them is a member too, listed through AWS Organizations.
    pub org_units: Vec<String>,
    /// The role assumed in a member account (`SELFHEAL_MEMBER_ROLE_NAME`, default `selfheal-<function>`).
    pub member_role: String,
    /// `sts:ExternalId` presented when assuming it (`SELFHEAL_EXTERNAL_ID`).
    pub external_id: Option<String>,
}

impl FleetConfig {
    pub fn read(env: &mut Env, function: &str) -> Self {
        let home_account = env.optional("SELFHEAL_HOME_ACCOUNT");
        if let Some(a) = home_account.as_deref().filter(|a| !is_account_id(a)) {
            env.problem("SELFHEAL_HOME_ACCOUNT", format!("must be a 12-digit account id, got {a:?}"));
        }
        let mut accounts = BTreeMap::new();
        let mut org_units = Vec::new();
        for entry in env.optional("SELFHEAL_ACCOUNTS").unwrap_or_default().split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let (id, name) = match entry.split_once('=') {
                Some((id, name)) => (id.trim(), Some(name.trim().to_string()).filter(|n| !n.is_empty())),
                None => (entry, None),
            };
            if is_org_unit(id) && name.is_none() {
                org_units.push(id.to_string());
                continue;
            }
            if !is_account_id(id) {
                env.problem(
                    "SELFHEAL_ACCOUNTS",
                    format!("{id:?} is not a 12-digit account id, an OU id (ou-…) or the root id (r-…)"),
                );
                continue;
            }
            accounts.insert(id.to_string(), name);
        }
        let member_role = env.string("SELFHEAL_MEMBER_ROLE_NAME", &format!("selfheal-{function}"));
        FleetConfig {
            home_account,
            accounts,
            org_units,
            member_role,
            external_id: env.optional("SELFHEAL_EXTERNAL_ID"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn read(pairs: &[(&str, &str)]) -> (FleetConfig, std::result::Result<(), Error>) {
        let mut env = Env::from_map(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let c = FleetConfig::read(&mut env, "db-failover");
        (c, env.finish())
    }

    #[test]
    fn accounts_are_read_with_their_names_and_bad_ones_are_named() {
        let (c, ok) = read(&[
            ("SELFHEAL_ACCOUNTS", "111111111111=payments-prod, 222222222222,"),
            ("SELFHEAL_HOME_ACCOUNT", "999999999999"),
        ]);
        assert!(ok.is_ok());
        assert_eq!(c.accounts.get("111111111111"), Some(&Some("payments-prod".to_string())));
        assert_eq!(c.accounts.get("222222222222"), Some(&None));
        assert_eq!(c.member_role, "selfheal-db-failover");
        let (_, err) = read(&[("SELFHEAL_ACCOUNTS", "12345"), ("SELFHEAL_HOME_ACCOUNT", "me")]);
        let err = err.unwrap_err().to_string();
        assert!(err.contains("SELFHEAL_ACCOUNTS: \"12345\" is not a 12-digit account id"), "{err}");
        assert!(err.contains("SELFHEAL_HOME_ACCOUNT: must be a 12-digit account id"), "{err}");
    }

    #[test]
    fn org_units_and_the_root_are_told_from_accounts() {
        let (c, ok) = read(&[
            ("SELFHEAL_ACCOUNTS", "ou-ab12-11111111,r-ab12,111111111111"),
            ("SELFHEAL_HOME_ACCOUNT", "999999999999"),
        ]);
        assert!(ok.is_ok());
        assert_eq!(c.org_units, ["ou-ab12-11111111", "r-ab12"]);
        assert_eq!(c.accounts.len(), 1);
        assert!(!is_org_unit("ou-ab12"));
        assert!(!is_org_unit("ou-AB12-11111111"));
        let (_, err) = read(&[("SELFHEAL_ACCOUNTS", "ou-x")]);
        assert!(err.unwrap_err().to_string().contains("an OU id (ou-…) or the root id (r-…)"));
    }
}
