//! Integration tests against a real moto server: one test binary (one link of the SDK), one module per
//! function. Each test creates its own resources with unique names, so tests run in parallel.

mod backup;
mod bad_input;
mod db;
mod dns;
mod drill;
mod fleet;
mod foundation;
mod healer;
mod infra;
mod notifier;
mod resilience;
mod lease;
mod sandbox;
