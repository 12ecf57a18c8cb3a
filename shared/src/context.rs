//! The per-function context built once at cold start: validated configuration, the loaded AWS
//! configuration, the ledger and the envelope publisher. Handlers borrow it on every invocation, or a
//! copy of it placed in the trigger's account and region ([`Ctx::for_trigger`], in [`crate::fleet`]).

use crate::clients::Aws;
use crate::config::CommonConfig;
use crate::envelope::Publisher;
use crate::error::Result;
use crate::fleet::{Fleet, Place};
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
