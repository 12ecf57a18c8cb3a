//! A fault-injecting HTTP proxy between the functions and moto, for tests only.
//!
//! It forwards every request to moto unchanged, except those matching a [`Rule`]: for a chosen AWS
//! operation (read from the query protocol's `Action=`, the JSON protocol's `X-Amz-Target`, or the
//! REST path) it can answer with a throttling error (the codes and statuses the SDK retries as
//! throttling), a 5xx, a response slower than the client's timeout, a dropped connection, a response
//! lost *after* moto applied the request, a service error of the test's choosing, or (for a read moto does
//! not serve) an answer of the test's choosing. Rules
//! fire a fixed number of times, or with a probability drawn from a seeded generator, so every run is
//! the same. The proxy records every operation it saw and what it did to it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to do to a matching request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// An error the SDK classifies as throttling (`Throttling` / `ThrottlingException` /
    /// `RequestLimitExceeded` for EC2, HTTP 400).
    Throttle,
    /// A server error with this status (500, 503).
    ServerError(u16),
    /// Wait this long before forwarding (past the client's attempt timeout, the SDK gives up on it).
    Delay(Duration),
    /// Close the connection without answering (the request never reaches moto).
    Drop,
    /// Forward the request to moto, so the server applies it, then close the connection without
    /// relaying moto's answer: a response lost on its way back, after a mutating call took effect. The
    /// client cannot tell whether the call was applied.
    DropResponse,
    /// Answer, without forwarding, with this service error in the AWS query protocol (RDS, STS, SNS):
    /// for what the real service answers where moto differs. (A second `PromoteReadReplica` of an
    /// instance already promoted: RDS refuses it with 400 `InvalidDBInstanceState` "DB Instance is not
    /// a read replica"; moto promotes it again.)
    Reject { status: u16, code: String, message: String },
    /// Answer, without forwarding, with this body (HTTP 200, `text/xml`): a read moto does not serve,
    /// answered as the AWS API reference shows it (`DescribeInstanceRefreshes` with a refresh in
    /// progress), so a handler is driven through the guard that reads it.
    Answer { body: String },
    /// Answer, without forwarding, with this service error in the REST-XML shape S3 uses (`<Error>`
    /// with its `Code` and `Message`): S3's `AccessDenied` for a bucket another account owns, which
    /// moto does not check (it ignores `ExpectedBucketOwner`).
    RejectRest { status: u16, code: String, message: String },
    /// IAM's refusal in the AWS query protocol (HTTP 403 `AccessDenied`, as STS answers an
    /// `AssumeRole` on a role that does not exist or does not trust the caller).
    AccessDenied,
}

/// When a rule fires.
#[derive(Debug, Clone, PartialEq)]
pub enum Times {
    /// The first `n` matching requests.
    First(u32),
    /// Every matching request.
    Always,
    /// Each matching request with this probability, from the proxy's seeded generator.
    Probability(f64),
}

/// A fault on an operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The operation name, e.g. `TerminateInstanceInAutoScalingGroup`, `PutItem`, `ChangeResourceRecordSets`.
    pub operation: String,
    pub fault: Fault,
    pub times: Times,
    /// Only requests whose path or body contains this (one table's `DescribeTable`, one bucket).
    pub when: Option<String>,
}

impl Rule {
    pub fn new(operation: &str, fault: Fault, times: Times) -> Self {
        Rule { operation: operation.to_string(), fault, times, when: None }
    }

    /// The rule fires only on requests whose path or body contains `text`.
    pub fn when(mut self, text: &str) -> Self {
        self.when = Some(text.to_string());
        self
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub operation: String,
    /// `None` when forwarded untouched.
    pub fault: Option<Fault>,
}

#[derive(Debug)]
struct State {
    rules: Vec<(Rule, u32)>,
    seen: Vec<Seen>,
    rng: u64,
}

/// The running proxy.
#[derive(Clone)]
pub struct FaultProxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (moto's endpoint) on a free loopback port, seeded.
    pub async fn start(upstream: &str, seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy addr"));
        let state = Arc::new(Mutex::new(State { rules: Vec::new(), seen: Vec::new(), rng: seed.max(1) }));
        let upstream = upstream.trim_start_matches("http://").to_string();
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let st = st.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, &upstream, st).await;
                });
            }
        });
        FaultProxy { endpoint, state }
    }

    /// Adds a rule (rules are checked in the order added; the first that fires wins).
    pub fn add(&self, rule: Rule) {
        self.state.lock().unwrap().rules.push((rule, 0));
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// Everything seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// How many requests for `operation` were seen (attempts, including faulted ones).
    pub fn count(&self, operation: &str) -> usize {
        self.seen().iter().filter(|s| s.operation == operation).count()
    }

    /// How many requests for `operation` were faulted.
    pub fn faulted(&self, operation: &str) -> usize {
        self.seen().iter().filter(|s| s.operation == operation && s.fault.is_some()).count()
    }
}

fn next_random(state: &mut u64) -> f64 {
    // xorshift64*: small, seeded, deterministic.
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

fn decide(state: &Mutex<State>, operation: &str, path: &str, body: &[u8]) -> Option<Fault> {
    let mut st = state.lock().unwrap();
    let mut chosen = None;
    let State { rules, rng, .. } = &mut *st;
    for (rule, fired) in rules.iter_mut() {
        if rule.operation != operation {
            continue;
        }
        if let Some(text) = &rule.when {
            if !path.contains(text.as_str()) && !String::from_utf8_lossy(body).contains(text.as_str()) {
                continue;
            }
        }
        let fire = match rule.times {
            Times::First(n) => *fired < n,
            Times::Always => true,
            Times::Probability(p) => next_random(rng) < p,
        };
        if fire {
            *fired += 1;
            chosen = Some(rule.fault.clone());
            break;
        }
    }
    st.seen.push(Seen { operation: operation.to_string(), fault: chosen.clone() });
    chosen
}

/// The AWS operation a request is for.
pub fn operation_of(method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> String {
    if let Some((_, target)) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("x-amz-target")) {
        return target.rsplit('.').next().unwrap_or(target).to_string();
    }
    let text = String::from_utf8_lossy(body);
    if let Some(action) = text.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        return action.to_string();
    }
    if let Some(q) = path.split('?').nth(1) {
        if let Some(action) = q.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
            return action.to_string();
        }
    }
    // Route 53 REST paths.
    let p = path.split('?').next().unwrap_or(path);
    let route53 = [
        ("POST", "/rrset", "ChangeResourceRecordSets"),
        ("GET", "/rrset", "ListResourceRecordSets"),
        ("GET", "/change/", "GetChange"),
        ("GET", "/status", "GetHealthCheckStatus"),
    ];
    for (m, frag, op) in route53 {
        if method == m && p.contains(frag) {
            return op.to_string();
        }
    }
    format!("{method} {p}")
}

/// A throttling error in the caller's protocol: JSON, EC2's own query dialect (`RequestLimitExceeded`
/// inside `<Response><Errors>`, which is what EC2 really answers), or the AWS query protocol.
fn throttle_response(headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let json = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"));
    let ec2 = String::from_utf8_lossy(body).contains("Version=2016-11-15");
    let (ctype, body) = if json {
        ("application/x-amz-json-1.0", r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_string())
    } else if ec2 {
        (
            "text/xml",
            "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>\
             </Error></Errors><RequestID>fault-proxy</RequestID></Response>"
                .to_string(),
        )
    } else {
        (
            "text/xml",
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>\
             <RequestId>fault-proxy</RequestId></ErrorResponse>"
                .to_string(),
        )
    };
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nx-amzn-errortype: ThrottlingException\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn access_denied_response() -> Vec<u8> {
    let body = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
                <Code>AccessDenied</Code><Message>User: arn:aws:sts::123456789012:assumed-role/hub/fn is not \
                authorized to perform: sts:AssumeRole on resource: the member role</Message></Error>\
                <RequestId>fault-proxy</RequestId></ErrorResponse>";
    format!("HTTP/1.1 403 Forbidden\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\r\n{body}", body.len())
        .into_bytes()
}

fn reject_response(status: u16, code: &str, message: &str) -> Vec<u8> {
    let body = format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>\
         <RequestId>fault-proxy</RequestId></ErrorResponse>"
    );
    format!("HTTP/1.1 {status} Rejected\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\r\n{body}", body.len())
        .into_bytes()
}

fn rest_reject_response(status: u16, code: &str, message: &str) -> Vec<u8> {
    let body =
        format!("<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>");
    format!(
        "HTTP/1.1 {status} Rejected\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An answer in the caller's protocol: JSON where the request named its target (DynamoDB, ...), XML
/// otherwise.
fn answer_response(headers: &[(String, String)], body: &str) -> Vec<u8> {
    let json = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"));
    let ctype = if json { "application/x-amz-json-1.0" } else { "text/xml" };
    format!("HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

fn server_error_response(status: u16) -> Vec<u8> {
    let body = "<ErrorResponse><Error><Code>InternalError</Code><Message>injected</Message></Error></ErrorResponse>";
    format!("HTTP/1.1 {status} Injected\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\r\n{body}", body.len())
        .into_bytes()
}

/// Reads one HTTP/1.1 request: (head lines, body). `None` at end of stream.
async fn read_request(sock: &mut TcpStream, buf: &mut VecDeque<u8>) -> Option<(Vec<String>, Vec<u8>)> {
    let mut chunk = [0u8; 16384];
    loop {
        let contiguous: Vec<u8> = buf.iter().copied().collect();
        if let Some(pos) = contiguous.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&contiguous[..pos]).to_string();
            let lines: Vec<String> = head.split("\r\n").map(str::to_string).collect();
            let len = lines
                .iter()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
                })
                .unwrap_or(0);
            while buf.len() < pos + 4 + len {
                let n = sock.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend(&chunk[..n]);
            }
            let all: Vec<u8> = buf.drain(..pos + 4 + len).collect();
            return Some((lines, all[pos + 4..].to_vec()));
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend(&chunk[..n]);
    }
}

async fn serve(mut sock: TcpStream, upstream: &str, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut buf = VecDeque::new();
    while let Some((lines, body)) = read_request(&mut sock, &mut buf).await {
        let mut parts = lines.first().map(|l| l.split(' ')).into_iter().flatten();
        let method = parts.next().unwrap_or("GET").to_string();
        let path = parts.next().unwrap_or("/").to_string();
        let headers: Vec<(String, String)> = lines
            .iter()
            .skip(1)
            .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
            .collect();
        let op = operation_of(&method, &path, &headers, &body);
        match decide(&state, &op, &path, &body) {
            Some(Fault::Throttle) => sock.write_all(&throttle_response(&headers, &body)).await?,
            Some(Fault::ServerError(status)) => sock.write_all(&server_error_response(status)).await?,
            Some(Fault::Drop) => return Ok(()),
            Some(Fault::DropResponse) => {
                // Applied upstream; the answer is read and thrown away, and the client's connection
                // closed before any byte of it.
                let _ = send_upstream(upstream, &lines, &body).await;
                return Ok(());
            }
            Some(Fault::Reject { status, code, message }) => {
                sock.write_all(&reject_response(status, &code, &message)).await?
            }
            Some(Fault::AccessDenied) => sock.write_all(&access_denied_response()).await?,
            Some(Fault::RejectRest { status, code, message }) => {
                sock.write_all(&rest_reject_response(status, &code, &message)).await?
            }
            Some(Fault::Answer { body }) => sock.write_all(&answer_response(&headers, &body)).await?,
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                forward(&mut sock, upstream, &lines, &body).await?;
            }
            None => forward(&mut sock, upstream, &lines, &body).await?,
        }
    }
    Ok(())
}

/// Forwards one request to moto on a fresh connection and relays the answer.
async fn forward(sock: &mut TcpStream, upstream: &str, lines: &[String], body: &[u8]) -> std::io::Result<()> {
    let resp = send_upstream(upstream, lines, body).await?;
    relay(sock, resp).await
}

/// Sends one request to moto on a fresh connection and reads its whole answer.
async fn send_upstream(upstream: &str, lines: &[String], body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await?;
    let mut req = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if i > 0 && l.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        req.extend_from_slice(l.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"connection: close\r\n\r\n");
    req.extend_from_slice(body);
    up.write_all(&req).await?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).await?;
    Ok(resp)
}

/// Relays moto's answer to the client.
async fn relay(sock: &mut TcpStream, resp: Vec<u8>) -> std::io::Result<()> {
    // Keep the client's connection usable: answer with an explicit length and no close.
    let Some(pos) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return sock.write_all(&resp).await;
    };
    let head = String::from_utf8_lossy(&resp[..pos]).to_string();
    let mut raw_body = resp[pos + 4..].to_vec();
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    if chunked {
        raw_body = dechunk(&raw_body);
    }
    let mut out = String::new();
    for (i, l) in head.split("\r\n").enumerate() {
        let lower = l.to_ascii_lowercase();
        if i > 0
            && (lower.starts_with("content-length:")
                || lower.starts_with("transfer-encoding:")
                || lower.starts_with("connection:"))
        {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", raw_body.len()));
    sock.write_all(out.as_bytes()).await?;
    sock.write_all(&raw_body).await
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size_line = String::from_utf8_lossy(&data[..pos]).to_string();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = pos + 2;
        let end = (start + size).min(data.len());
        out.extend_from_slice(&data[start..end]);
        data = data.get(end + 2..).unwrap_or(&[]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_read_from_every_protocol() {
        let h = vec![("X-Amz-Target".to_string(), "DynamoDB_20120810.PutItem".to_string())];
        assert_eq!(operation_of("POST", "/", &h, b""), "PutItem");
        assert_eq!(
            operation_of("POST", "/", &[], b"Action=TerminateInstances&Version=2016-11-15"),
            "TerminateInstances"
        );
        assert_eq!(operation_of("POST", "/2013-04-01/hostedzone/Z1/rrset", &[], b"<x/>"), "ChangeResourceRecordSets");
        assert_eq!(operation_of("GET", "/2013-04-01/change/C1", &[], b""), "GetChange");
    }

    #[test]
    fn the_generator_is_seeded() {
        let (mut a, mut b) = (42u64, 42u64);
        let xs: Vec<f64> = (0..5).map(|_| next_random(&mut a)).collect();
        let ys: Vec<f64> = (0..5).map(|_| next_random(&mut b)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
    }
}
