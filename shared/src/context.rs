//! The per-function context built once at cold start: validated configuration, the loaded AWS
//! configuration, the ledger and the envelope publisher, where it acts ([`Place`]) and the
//! cross-account state its clones share ([`Fleet`]). Handlers borrow it on every invocation, or a copy
//! of it placed in the trigger's account and region ([`Ctx::for_trigger`], in [`crate::fleet`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;

use crate::clients::Aws;
use crate::config::CommonConfig;
use crate::envelope::Publisher;
use crate::error::Result;
use crate::ledger::Ledger;

/// Everything a handler needs besides its own settings.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub config: CommonConfig,
    pub aws: Aws,
    pub ledger: Ledger,
    pub publisher: Publisher,
    /// Where this context acts: home, or a member account / another region ([`Ctx::for_trigger`]).
    pub place: Place,
    /// Cross-account state shared by every clone: the hub's account id, assumed sessions.
    pub fleet: Fleet,
}

impl Ctx {
    /// Builds the context from validated configuration and loaded AWS configuration.
    pub fn new(config: CommonConfig, aws: Aws) -> Self {
        let ledger = Ledger::new(aws.dynamodb(), config.ledger_table.clone(), config.ledger_ttl);
        let publisher = Publisher::new(aws.sns(), config.topic_arn.clone());
        Ctx { config, aws, ledger, publisher, place: Place::default(), fleet: Fleet::default() }
    }

    /// Reads the environment and loads AWS configuration: the cold-start path of every function.
    pub async fn from_env(function: &str) -> Result<Self> {
        let config = CommonConfig::from_env(function)?;
        let aws = Aws::load(&config.aws_timeouts).await;
        Ok(Ctx::new(config, aws))
    }
}

/// Where a context acts: `None` fields mean home.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Place {
    pub account: Option<String>,
    pub region: Option<String>,
    /// The account's configured name, for people reading notifications.
    pub account_name: Option<String>,
}

/// The accounts listed under the configured OUs (id → name) and when they were listed.
pub(crate) type OrgListing = (std::time::Instant, BTreeMap<String, Option<String>>);

/// (account, role name, session name).
pub(crate) type SessionKey = (String, String, String);

/// Temporary credentials for one member role and session, and when they stop working.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) aws: Aws,
    pub(crate) expires: DateTime<Utc>,
}

/// The hub's runtime state for acting across accounts: its own account id once known, and the
/// assumed sessions. Shared by every clone of a [`Ctx`] (warm invocations reuse it); [`crate::fleet`] fills it.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    pub(crate) home_account: Arc<OnceCell<String>>,
    pub(crate) org_accounts: Arc<tokio::sync::Mutex<Option<OrgListing>>>,
    pub(crate) sessions: Arc<Mutex<HashMap<SessionKey, Session>>>,
}
