//! drill Lambda: runs game-day scenarios on demand (manual invocation with a scenario and a mode;
//! live mode needs the confirmation phrase and drill-tagged targets). Logic: `selfheal::drill`.

use selfheal::drill::Drill;

const FUNCTION: &str = "drill";

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let drill = match Drill::from_env().await {
        Ok(d) => d,
        Err(e) => return Err(selfheal::lambda::fatal(FUNCTION, e)),
    };
    let drill = &drill;
    selfheal::lambda::run(FUNCTION, move |payload| async move { drill.handle(&payload).await }).await
}
