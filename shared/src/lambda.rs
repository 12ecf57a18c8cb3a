//! The Lambda entry shared by every function binary: JSON logging, the runtime loop, and turning a
//! library error into an invocation failure (so Lambda's retries and on-failure destination keep the
//! event) with the error logged as one structured line.

use std::future::Future;

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

use crate::error::Error;

/// Runs the Lambda runtime loop with `handler`, which receives the raw payload.
pub async fn run<F, Fut>(function: &'static str, handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(Value) -> Fut,
    Fut: Future<Output = Result<Value, Error>>,
{
    crate::telemetry::init_logging();
    tracing::info!(function, "cold start");
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        // Boxed: the handlers' futures are deep enough to overflow rustc's layout query limit inline.
        // Run inside the invocation's deadline, so long waits stop in time to record their progress.
        let deadline = crate::deadline::from_epoch_millis(event.context.deadline);
        let fut = Box::pin(crate::deadline::within(deadline, handler(event.payload)));
        async move {
            match fut.await {
                Ok(v) => Ok(v),
                Err(e) => {
                    tracing::error!(function, error = %e, kind = e.kind(), "invocation failed");
                    Err(e)
                }
            }
        }
    }))
    .await
}

/// Logs a cold-start failure (bad configuration) and returns it for `main` to exit with.
pub fn fatal(function: &'static str, e: Error) -> lambda_runtime::Error {
    crate::telemetry::init_logging();
    tracing::error!(function, error = %e, "cold start failed");
    lambda_runtime::Error::from(e.to_string())
}

/// Ends an invocation: the decisions as the response, or an error when any action failed, so Lambda
/// retries the event (the ledger makes the retry finish only what did not happen) and, once retries
/// are spent, hands it to the on-failure destination.
pub fn conclude(envelopes: Vec<crate::envelope::Envelope>) -> Result<Value, Error> {
    let failed: Vec<String> = envelopes
        .iter()
        .filter(|e| e.outcome == crate::envelope::Outcome::Failed)
        .map(|e| format!("{} {} on {}: {}", e.function, e.action, e.target.id, e.reason))
        .collect();
    if !failed.is_empty() {
        return Err(Error::ActionFailed(failed.join("; ")));
    }
    Ok(serde_json::json!({ "decisions": envelopes }))
}

/// Handles every trigger a payload carries with `handle`, then concludes: the decisions, or an error
/// when an action failed or a trigger could not be handled (each one named; later triggers still run).
pub async fn handle_each<F, Fut>(function: &'static str, payload: &Value, mut handle: F) -> Result<Value, Error>
where
    F: FnMut(crate::trigger::Trigger) -> Fut,
    Fut: Future<Output = Result<Vec<crate::envelope::Envelope>, Error>>,
{
    let triggers = crate::trigger::parse_event(payload)?;
    let mut envelopes = Vec::new();
    let mut errors = Vec::new();
    for t in triggers {
        let event_id = t.event_id.clone();
        match handle(t).await {
            Ok(mut e) => envelopes.append(&mut e),
            Err(e) => {
                tracing::error!(function, event_id = %event_id, error = %e, "trigger not handled");
                errors.push(e);
            }
        }
    }
    match conclude(envelopes) {
        Ok(decisions) if errors.is_empty() => Ok(decisions),
        Ok(_) => Err(if errors.len() == 1 { errors.remove(0) } else { Error::Many(errors) }),
        Err(failed) if errors.is_empty() => Err(failed),
        Err(failed) => {
            errors.insert(0, failed);
            Err(Error::Many(errors))
        }
    }
}
