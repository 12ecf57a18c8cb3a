//! Readiness: a fleet-wide sweep of what an evacuation needs (zonal shift enabled on every opted-in
//! load balancer and group, headroom to lose one AZ, the per-AZ alarms, the autoshift and practice-run
//! configuration), reported in one decision.

use super::handler::Evacuator;
use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::trigger::Trigger;

/// Runs the readiness sweep in the trigger's place.
pub(super) async fn run(_ev: &Evacuator, _t: &Trigger, _fix: bool) -> Result<Vec<Envelope>> {
    Err(Error::Precondition("the readiness sweep is not built yet".into()))
}
