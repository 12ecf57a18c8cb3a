//! selfheal: the library every function is built from, in layers that only point down (a module
//! imports from its own layer or lower ones; `shared/tests/layers.rs` fails on a cycle or an upward
//! import), bottom first:
//!
//! 1. Foundations: [`error`] (the one error type, and what Lambda is told of it), [`ids`] (the shapes
//!    of AWS identifiers), [`telemetry`] (JSON logs and EMF metrics), [`deadline`] (how long the
//!    running invocation has left, so long waits stop in time to record).
//! 2. [`config`]: environment configuration, validated at cold start, with the fleet and approval
//!    settings every function shares.
//! 3. Vocabulary: [`envelope`] (the notification schema every decision is published in, and its
//!    metric) and [`trigger`] (every event shape the suite receives, parsed into one
//!    [`trigger::Trigger`]).
//! 4. [`clients`] (the AWS configuration and the clients built from it, in any region) and [`ledger`]
//!    (the DynamoDB action ledger behind the guardrails and the audit trail; its `lease` module holds
//!    one invocation per resource).
//! 5. [`context`]: what a handler borrows on every invocation ([`Ctx`]) and where it acts.
//! 6. [`guardrails`] (the single path every action takes: dedup, per-resource lease, cooldown, rate
//!    limit, dry-run) and [`stand_down`] (refusing while another recovery owns a resource).
//! 7. Behaviour the functions share: [`fleet`] (which accounts the hub serves, where a trigger's
//!    resource lives, and the member role credentials to act there) and [`approval`] (parked decisions
//!    and the approve / reject / expire invocations that settle them).
//! 8. [`lambda`]: the runtime loop every binary runs, and how an invocation concludes.
//! 9. One module per function for its decisions and AWS calls, each behind the cargo feature of the
//!    same purpose: [`notifier`]; and one folder per function, one file per concern, the function's
//!    contract in its `mod.rs`: [`healer`], [`db`], [`dns`], [`backup`]; then [`drill`], which drives
//!    them; [`preflight`] (issue #30), which proves a deployed stack and reports its coverage, read-only,
//!    for the drill's manual actions and the `selfheal` CLI.

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

#[cfg(feature = "zone")]
pub mod zone;

#[cfg(feature = "preflight")]
pub mod preflight;

#[cfg(feature = "preflight")]
pub mod standard_alarms;

#[cfg(feature = "drill")]
pub mod drill;

pub use context::Ctx;
pub use envelope::{Envelope, Outcome, Severity, Target};
pub use error::{Error, Result};
pub use guardrails::{ActionReport, ActionRequest};
pub use trigger::{parse_event, Trigger, TriggerKind};
