//! The approval Function URL: a request AWS delivered through a Lambda Function URL with
//! `AuthType: AWS_IAM` (the `LambdaFunctionUrlRequest` shape), the caller AWS verified read from its
//! request context (`requestContext.authorizer.iam.userArn`, never from the body), the body's
//! `{"action":"approve"|"reject","token":…}` settled as that caller, and the HTTP answer.
//!
//! Only AWS builds this shape for a URL caller; a direct invocation could imitate it, which is why
//! nobody but the deployers may hold `lambda:InvokeFunction` on a function without the
//! `lambda:InvokedViaFunctionUrl` condition (README § Safety model).

use std::future::Future;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{settle, with_grant, Caller, Settlement, APPROVE, REJECT};
use crate::context::Ctx;
use crate::envelope::{Envelope, Outcome};
use crate::error::{Error, Result};
use crate::trigger::Trigger;

/// Whether `payload` has the shape of a Function URL request (`requestContext.http`), rather than of
/// an event or a direct invocation.
pub fn is_function_url_request(payload: &Value) -> bool {
    payload.get("requestContext").and_then(|c| c.get("http")).is_some_and(Value::is_object)
}

/// The fields read of a Function URL request (`aws_lambda_events`' `LambdaFunctionUrlRequest`, payload
/// format 2.0; its feature is not compiled in: it would turn on `bytes/serde` and rebuild the whole SDK).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionUrlRequest {
    request_context: RequestContext,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: bool,
}

#[derive(Debug, Deserialize)]
struct RequestContext {
    #[serde(default)]
    authorizer: Option<Authorizer>,
    http: Http,
}

#[derive(Debug, Deserialize)]
struct Authorizer {
    #[serde(default)]
    iam: Option<Iam>,
}

/// `requestContext.authorizer.iam`: the caller AWS verified (`AuthType: AWS_IAM`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Iam {
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    user_arn: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Http {
    #[serde(default)]
    method: Option<String>,
}

/// What an approver's request asks, and who AWS says sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlApproval {
    pub action: String,
    pub token: Option<String>,
    pub caller: Caller,
}

/// The body an approver sends: what to do and to which token. Any other field (an identity claimed in
/// the body included) is ignored: the identity is AWS's.
#[derive(Debug, Deserialize)]
struct Body {
    action: String,
    #[serde(default)]
    token: Option<String>,
}

/// Reads a Function URL request: the caller from its request context, the action from its body.
pub fn parse(payload: &Value) -> Result<UrlApproval> {
    let req: FunctionUrlRequest =
        serde_json::from_value(payload.clone()).map_err(|e| Error::malformed("function URL request", e.to_string()))?;
    let method = req.request_context.http.method.as_deref().unwrap_or("?");
    if !method.eq_ignore_ascii_case("POST") {
        return Err(Error::malformed("function URL request", format!("approvals are POSTed, got {method}")));
    }
    let iam = req.request_context.authorizer.as_ref().and_then(|a| a.iam.as_ref());
    let arn = iam.and_then(|i| i.user_arn.clone()).filter(|a| !a.is_empty()).ok_or_else(|| {
        Error::Precondition(
            "no caller verified by AWS in the request context: the approval URL must use AuthType AWS_IAM".into(),
        )
    })?;
    let caller = Caller::Verified { arn, account: iam.and_then(|i| i.account_id.clone()) };
    let raw = req.body.unwrap_or_default();
    let text = if req.is_base64_encoded {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .map_err(|e| Error::malformed("approval request", format!("body is not base64: {e}")))?;
        String::from_utf8(bytes).map_err(|e| Error::malformed("approval request", format!("body is not UTF-8: {e}")))?
    } else {
        raw
    };
    let body: Body = serde_json::from_str(&text).map_err(|e| {
        Error::malformed("approval request", format!("expected {{\"action\":\"approve\",\"token\":\"…\"}}: {e}"))
    })?;
    if ![APPROVE, REJECT].contains(&body.action.as_str()) {
        return Err(Error::malformed(
            "approval request",
            format!("action must be {APPROVE} or {REJECT}, got {:?}", body.action),
        ));
    }
    Ok(UrlApproval { action: body.action, token: body.token, caller })
}

/// Answers a Function URL request: settles it as its verified caller and, once approved, runs the
/// parked trigger with `handle`; the decisions (or the error) as an HTTP response. Never an invocation
/// error: a URL caller gets the reason, and a synchronous call is not retried anyway.
pub async fn answer<F, Fut>(ctx: &Ctx, payload: &Value, handle: F) -> Value
where
    F: FnOnce(Trigger) -> Fut,
    Fut: Future<Output = Result<Vec<Envelope>>>,
{
    let result = async {
        let request = parse(payload)?;
        match Box::pin(settle(ctx, &request.action, request.token.as_deref(), &request.caller)).await? {
            Settlement::Decided(d) => Ok(d),
            Settlement::Rerun { trigger, grant } => Box::pin(with_grant(grant, handle(*trigger))).await,
        }
    }
    .await;
    match result {
        Ok(decisions) => {
            let status = if decisions.iter().any(|e| e.outcome == Outcome::Failed) {
                500
            } else if decisions.first().is_some_and(|e| e.outcome == Outcome::Refused) {
                403
            } else {
                200
            };
            response(status, json!({ "decisions": decisions }))
        }
        Err(e) => {
            let status = match &e {
                Error::MalformedEvent { .. } | Error::UnknownEvent(_) => 400,
                Error::Precondition(_) => 403,
                Error::NotFound { .. } => 404,
                _ => 500,
            };
            tracing::warn!(error = %e, status, "approval request not settled");
            response(status, json!({ "error": e.to_string() }))
        }
    }
}

/// A Function URL response (Lambda turns it into the HTTP answer).
fn response(status: u16, body: Value) -> Value {
    json!({
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": body.to_string(),
        "isBase64Encoded": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(iam: Value, body: &str, base64: bool) -> Value {
        json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
            "headers": {"content-type": "application/json"},
            "requestContext": {
                "accountId": "123456789012", "apiId": "abc", "domainName": "abc.lambda-url.us-east-1.on.aws",
                "domainPrefix": "abc", "requestId": "r1", "routeKey": "$default", "stage": "$default",
                "time": "05/Dec/2026:19:00:00 +0000", "timeEpoch": 1_796_410_800_000_i64,
                "authorizer": {"iam": iam},
                "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4", "userAgent": "curl"}
            },
            "body": body, "isBase64Encoded": base64
        })
    }

    #[test]
    fn the_caller_comes_from_the_request_context_never_the_body() {
        let iam = json!({"accessKey": "AKIA", "accountId": "111111111111", "callerId": "AROA:bob",
                         "userArn": "arn:aws:sts::111111111111:assumed-role/Oncall/bob", "userId": "AROA:bob"});
        let body =
            r#"{"action":"approve","token":"t","userArn":"arn:aws:iam::111111111111:user/boss","principal":"boss"}"#;
        let p = request(iam.clone(), body, false);
        assert!(is_function_url_request(&p));
        let got = parse(&p).unwrap();
        assert_eq!(
            got.caller,
            Caller::Verified {
                arn: "arn:aws:sts::111111111111:assumed-role/Oncall/bob".into(),
                account: Some("111111111111".into())
            }
        );
        assert_eq!((got.action.as_str(), got.token.as_deref()), ("approve", Some("t")));
        let encoded = base64::engine::general_purpose::STANDARD.encode(r#"{"action":"reject","token":"t"}"#);
        assert_eq!(parse(&request(iam, &encoded, true)).unwrap().action, "reject");
    }

    #[test]
    fn a_request_without_a_verified_caller_or_a_known_action_is_refused_by_name() {
        let err = parse(&request(Value::Null, r#"{"action":"approve","token":"t"}"#, false)).unwrap_err();
        assert!(err.to_string().contains("AuthType AWS_IAM"), "{err}");
        let iam = json!({"userArn": "arn:aws:iam::111111111111:user/alice", "accountId": "111111111111"});
        let err = parse(&request(iam.clone(), r#"{"action":"failover","token":"t"}"#, false)).unwrap_err();
        assert!(err.to_string().contains("approve or reject"), "{err}");
        let err = parse(&request(iam, "approve please", false)).unwrap_err();
        assert!(err.to_string().contains("expected {\"action\""), "{err}");
        assert!(!is_function_url_request(&json!({"source": "selfheal.manual", "action": "approve"})));
    }
}
