//! Integration tests against a real moto server: one test binary (one link of the SDK), one module per
//! function. Each test creates its own resources with unique names, so tests run in parallel.

mod arc_standin;
mod az_outage;
mod backup;
mod bad_input;
mod cloudwatch_standin;
mod db;
mod dns;
mod drill;
mod encryption;
mod fleet;
mod foundation;
mod healer;
mod iam_conditions;
mod infra;
mod lease;
mod notifier;
mod practice_run;
mod preflight;
mod resilience;
mod restore;
mod routing;
mod sandbox;
mod scorecard;
mod stand_down;
mod standard_alarms;
mod sweep_fanout;
mod zone;
mod zone_readiness;
