//! selfheal: the library every function is built from.
//!
//! - [`trigger`]: every event shape the suite receives, parsed into one [`trigger::Trigger`].
//! - [`config`]: environment configuration, validated at cold start: the bottom layer, with the fleet
//!   and approval settings every function shares.
//! - [`ids`]: the shapes of AWS identifiers (account ids, regions, OUs).
//! - [`clients`]: the AWS configuration and the clients built from it, in any region.
//! - [`context`]: what a handler borrows on every invocation ([`Ctx`]).
//! - [`fleet`]: which accounts the hub serves, where a trigger's resource lives, and the member role
//!   credentials to act there.
//! - [`guardrails`]: the single path every action takes (dedup, per-resource lease, cooldown, rate
//!   limit, dry-run).
//! - [`ledger`]: the DynamoDB action ledger behind the guardrails and the audit trail; its `lease`
//!   module holds one invocation per resource.
//! - [`approval`]: human approval for large moves: the blast-radius policy, parked decisions, and
//!   the approve / reject / expire invocations that settle them.
//! - [`deadline`]: how long the running invocation has left, so long waits stop in time to record.
//! - [`envelope`]: the notification schema every decision is published in, and its metric.
//! - [`telemetry`]: JSON logs and EMF metrics (depends on nothing else here).
//! - [`lambda`]: the runtime loop every binary runs, and how an invocation concludes.
//! - [`error`]: the one error type, and what Lambda is told of it.
//! - One module per function for its decisions and AWS calls, each behind the cargo feature of the
//!   same purpose: [`notifier`]; and one folder per function, one file per concern, the function's
//!   contract in its `mod.rs`: [`healer`] (`intake`, `health`, `group`, `standalone`, `handler`),
//!   [`db`] (`intent`, `choice`, `lag`, `reboot`, `promote`, `cluster`, `handler`), [`dns`]
//!   (`records`, `plan`, `health`, `history`, `flip`, `handler`), [`backup`] (`policy`, `retention`,
//!   `dr_copy`, `window`, `sweep*`, `report`, `handler`) and [`drill`].

pub mod approval;
pub mod clients;
pub mod config;
pub mod context;
pub mod deadline;
pub mod envelope;
pub mod error;
pub mod fleet;
pub mod guardrails;
pub mod ids;
pub mod lambda;
pub mod ledger;
pub mod stand_down;
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
