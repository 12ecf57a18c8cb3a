//! instance-healer Lambda: replaces unhealthy EC2 instances (through their Auto Scaling group, or by
//! reboot → stop/start → replace when standalone), under every selfheal guardrail. All logic lives in
//! `selfheal::healer`.

#![recursion_limit = "256"]

use selfheal::healer::{Healer, FUNCTION};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let healer = match Healer::from_env().await {
        Ok(h) => h,
        Err(e) => return Err(selfheal::lambda::fatal(FUNCTION, e)),
    };
    let healer = &healer;
    selfheal::lambda::run(FUNCTION, move |payload| async move { healer.handle(&payload).await }).await
}
