//! The library's error type: one enum, each variant naming what went wrong in words an operator can act on.

use thiserror::Error;

/// Everything that can go wrong inside selfheal, from bad input to an AWS call that failed.
#[derive(Debug, Error)]
pub enum Error {
    /// The invocation payload is not any event shape the suite understands.
    #[error("unrecognised event: {0}")]
    UnknownEvent(String),

    /// The payload has a recognised shape but a field is missing or has the wrong type.
    #[error("malformed {shape} event: {problem}")]
    MalformedEvent { shape: &'static str, problem: String },

    /// A well-formed event that is not for this function: `event` names what arrived (see
    /// [`crate::trigger::Trigger::describe`]), `handles` what the function takes. Not a failure: the
    /// shared entry ([`crate::lambda::handle_each`]) records it as a `skipped` decision published as a
    /// warning, and the invocation succeeds, so Lambda does not retry it for nothing.
    #[error("{function} does not handle {event}: it takes {handles}")]
    UnsupportedTrigger { function: &'static str, event: String, handles: &'static str },

    /// A configuration value (environment variable) is missing or invalid.
    #[error("invalid configuration {name}: {problem}")]
    Config { name: String, problem: String },

    /// A resource named by an event or an invocation does not exist.
    #[error("{kind} {id} does not exist")]
    NotFound { kind: &'static str, id: String },

    /// An AWS API call failed; `operation` names the call, `message` carries the service's words.
    #[error("AWS {service}:{operation} failed: {message}")]
    Aws { service: &'static str, operation: &'static str, message: String },

    /// A bounded wait (for a replacement, a promotion, a DNS change) ran out.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { what: String, seconds: u64 },

    /// An action's own precondition does not hold, so it refuses to go on.
    #[error("precondition failed: {0}")]
    Precondition(String),

    /// A delivery channel of the notifier failed.
    #[error("delivery to {channel} failed: {message}")]
    Delivery { channel: String, message: String },

    /// An action was attempted and failed (the invocation fails so Lambda retries or dead-letters it).
    #[error("action failed: {0}")]
    ActionFailed(String),

    /// Several things failed; each is listed.
    #[error("{} failures: {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Many(Vec<Error>),
}

impl Error {
    /// Builds an [`Error::Aws`] from any SDK error, keeping the service's code and message.
    pub fn aws<E>(service: &'static str, operation: &'static str, err: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let full = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
        let mut message = without_debug_dump(&full);
        if let Some(hint) = unreachable_hint(&message, std::env::var("AWS_ENDPOINT_URL").ok().as_deref()) {
            message.push_str(&hint);
        }
        Error::Aws { service, operation, message }
    }

    /// The variant's name, reported as the Lambda `errorType` (`selfheal.UnknownEvent`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::UnknownEvent(_) => "selfheal.UnknownEvent",
            Error::MalformedEvent { .. } => "selfheal.MalformedEvent",
            Error::UnsupportedTrigger { .. } => "selfheal.UnsupportedTrigger",
            Error::Config { .. } => "selfheal.Config",
            Error::NotFound { .. } => "selfheal.NotFound",
            Error::Aws { .. } => "selfheal.Aws",
            Error::Timeout { .. } => "selfheal.Timeout",
            Error::Precondition(_) => "selfheal.Precondition",
            Error::Delivery { .. } => "selfheal.Delivery",
            Error::ActionFailed(_) => "selfheal.ActionFailed",
            Error::Many(_) => "selfheal.Many",
        }
    }

    /// A shorthand for [`Error::MalformedEvent`].
    pub fn malformed(shape: &'static str, problem: impl Into<String>) -> Self {
        Error::MalformedEvent { shape, problem: problem.into() }
    }
}

/// `DisplayErrorContext` ends with a `Debug` dump of the whole response (headers, body bytes);
/// operators need the chain of messages, not the dump.
fn without_debug_dump(text: &str) -> String {
    const DUMPS: [&str; 5] =
        [" (ServiceError(", " (DispatchFailure(", " (ResponseError(", " (TimeoutError(", " (ConstructionFailure("];
    let cut = DUMPS.iter().filter_map(|m| text.find(m)).min().unwrap_or(text.len());
    text[..cut].to_string()
}

/// What to check when nothing answered: the endpoint override when one is set (a local emulator that
/// is not running), else the network path to AWS.
fn unreachable_hint(message: &str, endpoint: Option<&str>) -> Option<String> {
    let refused = ["Connection refused", "connection refused", "tcp connect error", "dns error"];
    if !message.contains("dispatch failure") || !refused.iter().any(|r| message.contains(r)) {
        return None;
    }
    Some(match endpoint.filter(|e| !e.is_empty()) {
        Some(e) => format!(" (nothing answers at AWS_ENDPOINT_URL={e}: is it running, and is the address right?)"),
        None => " (the AWS endpoint did not answer: check the network path, a proxy, or AWS_REGION)".to_string(),
    })
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(e: Error) -> Self {
        lambda_runtime::Diagnostic { error_type: e.kind().to_string(), error_message: e.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_that_does_not_answer_is_named() {
        let msg = "dispatch failure: io error: error trying to connect: tcp connect error: Connection refused";
        let hint = unreachable_hint(msg, Some("http://127.0.0.1:9")).unwrap_or_default();
        assert!(hint.contains("nothing answers at AWS_ENDPOINT_URL=http://127.0.0.1:9"), "{hint}");
        assert!(unreachable_hint(msg, None).unwrap_or_default().contains("did not answer"));
        assert_eq!(unreachable_hint("service error: ThrottlingException", Some("http://x")), None);
    }
}
