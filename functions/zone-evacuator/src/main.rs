//! zone-evacuator Lambda: when one Availability Zone is impaired, shifts opted-in load balancers and
//! Auto Scaling groups away from it with Route 53 ARC zonal shift (capacity first, never against ARC's
//! own shifts), moves Multi-AZ writers out through db-failover's guards, and ends the evacuation once
//! the AZ has stayed healthy. All logic lives in `selfheal::zone`.

#![recursion_limit = "256"]

use selfheal::zone::{Evacuator, FUNCTION};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let evacuator = match Evacuator::from_env().await {
        Ok(e) => e,
        Err(e) => return Err(selfheal::lambda::fatal(FUNCTION, e)),
    };
    let evacuator = &evacuator;
    selfheal::lambda::run(FUNCTION, move |payload| async move { evacuator.handle(&payload).await }).await
}
