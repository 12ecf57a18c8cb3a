//! notifier Lambda: fans every selfheal envelope (and any alarm sent to it) out to the configured
//! channels. All logic lives in `selfheal::notifier`.

use selfheal::notifier::Notifier;

const FUNCTION: &str = "notifier";

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let notifier = match Notifier::from_env().await {
        Ok(n) => n,
        Err(e) => return Err(selfheal::lambda::fatal(FUNCTION, e)),
    };
    let notifier = &notifier;
    selfheal::lambda::run(FUNCTION, move |payload| async move { notifier.handle(&payload).await }).await
}
