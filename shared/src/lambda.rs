//! The Lambda entry shared by every function binary: JSON logging, the runtime loop, and turning a
//! library error into an invocation failure (so Lambda's retries and on-failure destination keep the
//! event) with the error logged as one structured line. Two kinds of event are the exception, recorded
//! and published as a decision while the invocation succeeds ([`handle_each`]): one that is well-formed
//! but not for the function (`skipped`), and one about a resource that does not exist (`refused`).

use std::future::Future;

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

use crate::approval::{Caller, Settlement};
use crate::context::Ctx;
use crate::envelope::{Envelope, Outcome, Severity, Target};
use crate::error::Error;
use crate::trigger::Trigger;

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

/// The action named by the decision recorded for an event a function does not handle.
pub const UNSUPPORTED_ACTION: &str = "handle-event";

/// The decision recorded for a well-formed event that is not for this function (`err` is the
/// [`Error::UnsupportedTrigger`] its handler returned): `skipped`, published as a **warning** so a
/// wiring mistake (a rule or subscription pointing at the wrong function) is still seen, about the
/// event itself (target kind `event`, id the trigger's ledger id), its reason naming what arrived and
/// what the function takes.
pub fn unsupported_envelope(function: &str, t: &Trigger, err: &Error, dry_run: bool) -> Envelope {
    let mut env = Envelope::new(
        function,
        UNSUPPORTED_ACTION,
        Target::new("event", &t.event_id),
        Outcome::Skipped,
        err.to_string(),
    )
    .severity(Severity::Warning)
    .event(&t.event_id, t.kind.name())
    .dry_run(dry_run)
    .detail("delivery", &t.delivery);
    if let Error::UnsupportedTrigger { event, handles, .. } = err {
        env = env.detail("event", event).detail("handles", handles);
    }
    if let Some(account) = &t.scope.account {
        env = env.detail("eventAccount", account);
    }
    if let Some(region) = &t.scope.region {
        env = env.detail("eventRegion", region);
    }
    env
}

/// The action named by the decision recorded for an event whose resource does not exist.
pub const NOT_FOUND_ACTION: &str = "handle-event";

/// The decision recorded for an event about a resource that does not exist in the account and region
/// it names (the [`Error::NotFound`] a handler returned before acting): `refused`, a warning, about the
/// missing resource (target kind from `kind`: "EC2 instance" is `ec2-instance`), in the event's account
/// and region; its reason names the resource and where it was looked for, and its details say
/// `guard: "not-found"` and `missing: {kind, id}`. Nothing was done, so there is nothing for a retry to
/// finish: the invocation succeeds (it used to fail with `selfheal.NotFound`, and Lambda retried it twice
/// for nothing before dead-lettering it).
pub fn not_found_envelope(function: &str, t: &Trigger, kind: &str, id: &str, dry_run: bool) -> Envelope {
    let mut target = Target::new(kind.to_ascii_lowercase().replace(' ', "-"), id);
    target.account = t.scope.account.clone();
    target.region = t.scope.region.clone();
    let reason = format!(
        "{kind} {id} does not exist in {}: refused, nothing was done ({} names it)",
        t.scope.describe(),
        t.describe()
    );
    Envelope::new(function, NOT_FOUND_ACTION, target, Outcome::Refused, reason)
        .severity(Severity::Warning)
        .event(&t.event_id, t.kind.name())
        .dry_run(dry_run)
        .detail("guard", "not-found")
        .detail("missing", serde_json::json!({ "kind": kind, "id": id }))
        .detail("delivery", &t.delivery)
}

/// Handles every trigger a payload carries with `handle`, then concludes: the decisions, or an error
/// when an action failed or a trigger could not be handled (each one named; later triggers still run).
///
/// A payload that does not parse fails the invocation before anything is done. A trigger the
/// function does not handle ([`Error::UnsupportedTrigger`]: a well-formed event that is not for it)
/// is not a failure: it is recorded through `ctx` (audited and published) as a `skipped` warning, see
/// [`unsupported_envelope`], and does not fail the invocation, so Lambda does not retry it for nothing
/// nor hand it to the dead-letter queue beside real failures. Likewise an event about a resource
/// that does not exist ([`Error::NotFound`] from `handle`): a `refused` decision naming it, see
/// [`not_found_envelope`], and the invocation succeeds.
pub async fn handle_each<F, Fut>(ctx: &Ctx, payload: &Value, mut handle: F) -> Result<Value, Error>
where
    F: FnMut(Trigger) -> Fut,
    Fut: Future<Output = Result<Vec<Envelope>, Error>>,
{
    let function = ctx.config.function.as_str();
    // A request to the approval Function URL: settled as the caller AWS verified, answered over HTTP.
    if crate::approval::url::is_function_url_request(payload) {
        return Ok(crate::approval::url::answer(ctx, payload, handle).await);
    }
    let triggers = crate::trigger::parse_event(payload)?;
    let mut envelopes = Vec::new();
    let mut errors = Vec::new();
    for t in triggers {
        let about = t.clone();
        // An approve, reject or expire-approvals invocation settles parked decisions first; an approval
        // hands the parked trigger back to the function, with its grant in force.
        let settling = crate::approval::settlement(&t).cloned();
        // `handled`: the result is the function's own handling of the event (not a settlement's error,
        // such as an unknown approval token, which stays an error).
        let (result, handled) = match settling {
            None => (handle(t).await, true),
            // Boxed: settling and the handling it leads to are large futures.
            // A bare token: nobody AWS verified sent it (break-glass only).
            Some(m) => {
                match Box::pin(crate::approval::settle(ctx, &m.action, m.token.as_deref(), &Caller::TokenOnly)).await {
                    Ok(Settlement::Decided(decided)) => (Ok(decided), false),
                    Ok(Settlement::Rerun { trigger, grant }) => {
                        (Box::pin(crate::approval::with_grant(grant, handle(*trigger))).await, true)
                    }
                    Err(e) => (Err(e), false),
                }
            }
        };
        match result {
            Ok(mut e) => envelopes.append(&mut e),
            Err(Error::NotFound { kind, id }) if handled => {
                tracing::warn!(function, event_id = %about.event_id, kind, id = %id, "the event's resource does not exist: refused");
                match ctx.record(not_found_envelope(function, &about, kind, &id, ctx.config.dry_run)).await {
                    Ok(env) => envelopes.push(env),
                    Err(e) => {
                        tracing::error!(function, event_id = %about.event_id, error = %e, "refusal not recorded");
                        errors.push(e);
                    }
                }
            }
            Err(e @ Error::UnsupportedTrigger { .. }) => {
                tracing::warn!(function, event_id = %about.event_id, error = %e, "event not for this function: skipped");
                match ctx.record(unsupported_envelope(function, &about, &e, ctx.config.dry_run)).await {
                    Ok(env) => envelopes.push(env),
                    Err(e) => {
                        tracing::error!(function, event_id = %about.event_id, error = %e, "skip not recorded");
                        errors.push(e);
                    }
                }
            }
            Err(e) => {
                tracing::error!(function, event_id = %about.event_id, error = %e, "trigger not handled");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_not_for_the_function_is_a_skipped_warning_naming_it_and_what_is_taken() {
        let payload = serde_json::json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]});
        let t = crate::trigger::parse_event(&payload).unwrap().remove(0);
        let err = Error::UnsupportedTrigger { function: "backup-enforcer", event: t.describe(), handles: "schedules" };
        let env = unsupported_envelope("backup-enforcer", &t, &err, true);
        assert_eq!((env.outcome, env.severity), (Outcome::Skipped, Severity::Warning));
        assert_eq!(env.reason, "backup-enforcer does not handle an S3 event (aws:s3, 1 record): it takes schedules");
        assert_eq!((env.action.as_str(), env.target.kind.as_str()), (UNSUPPORTED_ACTION, "event"));
        assert_eq!(env.target.id, t.event_id);
        assert_eq!((env.event_id.as_str(), env.trigger.as_str()), (t.event_id.as_str(), "foreign"));
        assert!(env.dry_run);
        assert_eq!(env.details["event"], "an S3 event (aws:s3, 1 record)");
        assert_eq!(env.details["handles"], "schedules");
    }
}
