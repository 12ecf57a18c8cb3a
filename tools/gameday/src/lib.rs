//! gameday: the local game day's tooling, for development only. Nothing deployed depends on it: the
//! `drill` function runs in a real account with `selfheal::drill` alone, and SAM builds only the
//! functions under `functions/`.
//!
//! - [`provision`]: creates the reference architecture in the emulator (one account or several, and on
//!   request the larger fleet `az-outage` drills) and returns its [`selfheal::drill::Architecture`].
//! - [`env`]: the environment every function gets in a local game day against it ([`gameday_env`]).
//! - [`sandbox`]: the sandbox's sample events, one per function (`scripts/sandbox`).
//! - [`arc`]: a stand-in for the Route 53 ARC zonal shift API (moto has none), served over HTTP as
//!   `aws-sdk-arczonalshift` calls it; the tests' harness and the local game day both run it ([`http`]
//!   reads its requests).
//! - [`approve`]: the Function URL request AWS would hand a function for a signed approval, for a
//!   caller the game day names (there is no real Function URL locally).
//! - the `drill-cli` binary (`src/bin/drill-cli.rs`): provisions, runs the scenarios against the Lambda
//!   runtime emulator and writes the sandbox's events, from a terminal (`scripts/gameday`,
//!   `scripts/sandbox`); the `arc-standin` binary (`src/bin/arc-standin.rs`): the ARC stand-in as a
//!   process, for the local game day.
//!
//! What a drill does in a real account (inject, deliver, verify, score, report, FIS) stays in the
//! library, `selfheal::drill`.

pub mod approve;
pub mod arc;
pub mod env;
pub mod http;
pub mod provision;
pub mod sandbox;

pub use env::{function_env, gameday_env, rate_limit};
pub use provision::ProvisionOptions;
