//! selfheal: the library every function is built from.
//!
//! - [`trigger`]: every event shape the suite receives, parsed into one [`trigger::Trigger`].
//! - [`config`]: environment configuration, validated at cold start.
//! - [`clients`]: the AWS configuration and the clients built from it.
//! - [`guardrails`]: the single path every action takes (dedup, cooldown, rate limit, dry-run).
//! - [`ledger`]: the DynamoDB action ledger behind the guardrails and the audit trail.
//! - [`envelope`]: the notification schema every decision is published in.
//! - [`telemetry`]: JSON logs and EMF metrics.
//! - One module per function for its decisions and AWS calls: [`notifier`], [`healer`], [`db`],
//!   [`dns`], [`backup`], [`drill`], each behind the cargo feature of the same purpose.

pub mod clients;
pub mod config;
pub mod context;
pub mod envelope;
pub mod error;
pub mod guardrails;
pub mod lambda;
pub mod ledger;
pub mod telemetry;
pub mod trigger;

#[cfg(feature = "notifier")]
pub mod notifier;

#[cfg(feature = "healer")]
pub mod healer;

#[cfg(feature = "db")]
pub mod db;

#[cfg(feature = "dns")]
pub mod dns;

#[cfg(feature = "backup")]
pub mod backup;

#[cfg(feature = "drill")]
pub mod drill;

pub use context::Ctx;
pub use envelope::{Envelope, Outcome, Severity, Target};
pub use error::{Error, Result};
pub use guardrails::{ActionReport, ActionRequest};
pub use trigger::{parse_event, Trigger, TriggerKind};
