//! backup-enforcer Lambda: keeps every resource tagged with a backup policy backed up on schedule,
//! prunes the suite's own snapshots by retention, and keeps the AWS Backup plans in line. All logic
//! lives in `selfheal::backup`.

use selfheal::backup::{BackupEnforcer, FUNCTION};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let enforcer = match BackupEnforcer::from_env().await {
        Ok(e) => e,
        Err(e) => return Err(selfheal::lambda::fatal(FUNCTION, e)),
    };
    let enforcer = &enforcer;
    selfheal::lambda::run(FUNCTION, move |payload| async move { enforcer.handle(&payload).await }).await
}
