//! Approving locally, where no real Function URL exists: the request AWS hands a function for a
//! signed POST to its approval Function URL (`AuthType: AWS_IAM`), with the caller it verified in
//! `requestContext.authorizer.iam`, built here for a caller the game day names. Dev only: deployed
//! code never builds this shape (a function believes the identity in it because only AWS makes it).

use serde_json::{json, Value};

/// The Function URL request (the `LambdaFunctionUrlRequest` shape) that POSTs `body` to the approval
/// URL of a function, as AWS delivers it when `caller_arn` (an IAM user, or an assumed-role session
/// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`) signed it.
pub fn function_url_request(caller_arn: &str, body: &Value) -> Value {
    let account = caller_arn.split(':').nth(4).unwrap_or_default();
    let now = chrono::Utc::now();
    let id = uuid::Uuid::new_v4().to_string();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "local.lambda-url.us-east-1.on.aws"},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "authorizer": {"iam": {
                "accessKey": "ASIALOCALGAMEDAY",
                "accountId": account,
                "callerId": format!("AROALOCAL:{}", caller_arn.rsplit('/').next().unwrap_or_default()),
                "cognitoIdentity": null,
                "principalOrgId": null,
                "userArn": caller_arn,
                "userId": "AROALOCAL",
            }},
            "domainName": "local.lambda-url.us-east-1.on.aws",
            "domainPrefix": "local",
            "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "gameday"},
            "requestId": id,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "body": body.to_string(),
        "isBase64Encoded": false,
    })
}

/// The answer's decisions: the Function URL response's body, parsed.
pub fn response_decisions(response: &Value) -> Value {
    response["body"].as_str().and_then(|b| serde_json::from_str::<Value>(b).ok()).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_what_the_function_reads_as_a_verified_caller() {
        let arn = "arn:aws:sts::123456789012:assumed-role/sandbox-approver/alice";
        let req = function_url_request(arn, &json!({"action": "approve", "token": "t"}));
        assert!(selfheal::approval::url::is_function_url_request(&req));
        let got = selfheal::approval::url::parse(&req).unwrap();
        assert_eq!(
            got.caller,
            selfheal::approval::Caller::Verified { arn: arn.into(), account: Some("123456789012".into()) }
        );
    }
}
