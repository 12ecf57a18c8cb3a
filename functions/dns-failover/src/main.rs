//! dns-failover Lambda: flips Route 53 failover, weighted and simple records to their standby and back.
//! All logic lives in `selfheal::dns`.

use selfheal::dns::{DnsFailover, FUNCTION};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let dns = match DnsFailover::from_env().await {
        Ok(d) => d,
        Err(e) => return Err(selfheal::lambda::fatal(FUNCTION, e)),
    };
    let dns = &dns;
    selfheal::lambda::run(FUNCTION, move |payload| async move { dns.handle(&payload).await }).await
}
