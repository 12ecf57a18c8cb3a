//! db-failover Lambda: fails a database over (Aurora cluster failover, Multi-AZ forced-failover
//! reboot, or read-replica promotion with DNS repointing) when its primary really is down. All logic
//! lives in `selfheal::db`.

use selfheal::db::{DbFailover, FUNCTION};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let handler = match DbFailover::from_env().await {
        Ok(h) => h,
        Err(e) => return Err(selfheal::lambda::fatal(FUNCTION, e)),
    };
    let handler = &handler;
    selfheal::lambda::run(FUNCTION, move |payload| async move { handler.handle(&payload).await }).await
}
