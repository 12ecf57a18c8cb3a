//! A stand-in for the Route 53 ARC zonal shift API (moto has none), served over HTTP/1.1 on loopback
//! in the restJson1 shapes `aws-sdk-arczonalshift` sends and parses (checked against its generated
//! `protocol_serde/` and `operation/` code): `StartZonalShift` (POST /zonalshifts, 201),
//! `UpdateZonalShift` (PATCH /zonalshifts/{id}), `CancelZonalShift` (DELETE /zonalshifts/{id}),
//! `ListZonalShifts` (GET /zonalshifts), `GetManagedResource` (GET /managedresources/{arn}),
//! `ListManagedResources` (GET /managedresources), `ListAutoshifts` (GET /autoshifts) and
//! `StartPracticeRun` (POST /practiceruns, 200). Errors carry
//! the `x-amzn-errortype` header and a JSON body with `message`, `reason` and `zonalShiftId`, as the SDK
//! tells them apart.
//!
//! The test registers managed resources ([`ArcStandIn::register`], or over HTTP with `POST
//! /_standin/register`, a route outside ARC's API that no SDK operation reaches: how the local game
//! day's provisioning tells the `arc-standin` process what ARC would know), can start ARC's own autoshift away from an AZ (it applies to
//! every registered resource in that AZ with zonal autoshift enabled, appears in `autoshifts` on the
//! resource and in `ListAutoshifts`, never in `ListZonalShifts`) or a practice run on a resource (a
//! `PRACTICE_RUN` zonal shift, listed by `ListZonalShifts`), move the stand-in's clock, and have the
//! answer to the next call of an operation lost after the change was applied. Every request is logged.

mod api;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

pub use api::Shift;
use api::{ApiError, State};

/// One request the stand-in received.
#[derive(Debug, Clone, PartialEq)]
pub struct ArcRequest {
    /// `StartZonalShift`, `ListZonalShifts`, ...; `Unknown` for a route the API does not have,
    /// `Malformed` for a request that is not HTTP the stand-in can read.
    pub operation: String,
    pub method: String,
    /// The decoded path, e.g. `/zonalshifts/abc`.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// The JSON body (`Null` when there was none or it was not JSON).
    pub body: Value,
    /// The status answered, `None` when the answer was lost (the change applied, the connection dropped).
    pub status: Option<u16>,
}

/// The running stand-in; clones share its state.
#[derive(Clone)]
pub struct ArcStandIn {
    endpoint: String,
    state: Arc<Mutex<State>>,
}

impl ArcStandIn {
    /// Starts listening on a free loopback port, on the current tokio runtime (tests: a port that
    /// cannot be bound is a broken test machine).
    pub async fn start() -> Self {
        Self::bind(0).await.expect("bind ARC stand-in")
    }

    /// Starts listening on loopback port `port` (0: a free one), on the current tokio runtime.
    pub async fn bind(port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move { serve(sock, st).await });
            }
        });
        Ok(ArcStandIn { endpoint, state })
    }

    /// `http://127.0.0.1:PORT`, for `endpoint_url`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Registers a managed resource deployed in `azs` (`(name, id)`, e.g. `("us-east-1a", "use1-az1")`).
    /// With `zonal_autoshift_enabled` it is `ENABLED` and has a practice run configuration (AWS requires
    /// one), so autoshifts and practice runs apply to it.
    pub fn register(&self, arn: &str, name: &str, azs: &[(&str, &str)], zonal_autoshift_enabled: bool) {
        let azs = azs.iter().map(|(n, i)| (n.to_string(), i.to_string())).collect();
        self.state().register(arn, name, azs, zonal_autoshift_enabled);
    }

    /// ARC starts an autoshift away from the AZ `az_id` (no-op when one is already active there).
    pub fn start_autoshift(&self, az_id: &str) {
        self.state().start_autoshift(az_id);
    }

    /// ARC ends the autoshift away from `az_id` (it reads `COMPLETED` in `ListAutoshifts`).
    pub fn end_autoshift(&self, az_id: &str) {
        self.state().end_autoshift(az_id);
    }

    /// ARC starts a practice run (a 30-minute `PRACTICE_RUN` zonal shift) on `arn` away from `az_id`;
    /// returns its id, or why it could not start (no practice run configuration, another shift in effect).
    pub fn start_practice_run(&self, arn: &str, az_id: &str) -> Result<String, String> {
        self.state().start_practice_run(arn, az_id)
    }

    /// The next `times` requests for `operation` are applied, then their connection is dropped unanswered.
    pub fn lose_next(&self, operation: &str, times: u32) {
        *self.state().lose.entry(operation.to_string()).or_default() += times;
    }

    /// Moves the stand-in's clock forward (shifts past their expiry read `EXPIRED`).
    pub fn advance(&self, by: Duration) {
        self.state().advance(by);
    }

    /// Moves the stand-in's clock back: shifts started now start (and expire) that much earlier, as if
    /// they had been started `by` ago; [`ArcStandIn::advance`] by as much puts the clock right again.
    /// (A client judges a shift's expiry by its own clock, which the stand-in cannot move.)
    pub fn rewind(&self, by: Duration) {
        self.state().rewind(by);
    }

    /// Every zonal shift (customer and practice run), statuses as of now.
    pub fn shifts(&self) -> Vec<Shift> {
        self.state().snapshot()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<ArcRequest> {
        self.state().log.clone()
    }

    /// The requests for `operation` received so far.
    pub fn requests_for(&self, operation: &str) -> Vec<ArcRequest> {
        self.requests().into_iter().filter(|r| r.operation == operation).collect()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A parsed HTTP/1.1 request.
struct Request {
    method: String,
    /// Decoded path segments.
    segments: Vec<String>,
    query: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads one request and decodes its path and query; `Err` answers 400 (`None`: the peer went away,
/// nothing to answer).
async fn read_request(sock: &mut TcpStream) -> Result<Request, Option<String>> {
    let crate::http::RawRequest { method, target, body } = crate::http::read_request(sock).await?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let bad = |what: &str| Some(format!("malformed {what} encoding"));
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s).ok_or_else(|| bad("path")))
        .collect::<Result<Vec<_>, _>>()?;
    let query = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Ok((percent_decode(k).ok_or_else(|| bad("query"))?, percent_decode(v).ok_or_else(|| bad("query"))?))
        })
        .collect::<Result<Vec<_>, Option<String>>>()?;
    Ok(Request { method, segments, query, body })
}

/// Decodes `%XX` escapes; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn serve(mut sock: TcpStream, state: Arc<Mutex<State>>) {
    let (record, answer) = match read_request(&mut sock).await {
        Err(None) => return,
        Err(Some(why)) => {
            let record = ArcRequest {
                operation: "Malformed".into(),
                method: String::new(),
                path: String::new(),
                query: Vec::new(),
                body: Value::Null,
                status: None,
            };
            (record, Err(ApiError::validation(None, &why)))
        }
        Ok(req) => {
            let path = format!("/{}", req.segments.join("/"));
            let body = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let mut st = lock(&state);
            let (operation, answer) = st.handle(&req.method, &req.segments, &req.query, &req.body);
            let lost = match st.lose.get_mut(operation) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            };
            let record = ArcRequest {
                operation: operation.to_string(),
                method: req.method,
                path,
                query: req.query,
                body,
                status: None,
            };
            if lost {
                st.log.push(record);
                drop(st);
                // The change is applied; the answer never leaves.
                drop(sock);
                return;
            }
            (record, answer)
        }
    };
    let (status, headers, body) = match answer {
        Ok((status, body)) => (status, HashMap::new(), body),
        Err(e) => {
            let mut body = json!({"message": e.message});
            if let Some(reason) = e.reason {
                body["reason"] = json!(reason);
            }
            if let Some(id) = &e.zonal_shift_id {
                body["zonalShiftId"] = json!(id);
            }
            (e.status, HashMap::from([("x-amzn-errortype", e.code)]), body)
        }
    };
    lock(&state).log.push(ArcRequest { status: Some(status), ..record });
    let text = body.to_string();
    let mut resp = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         x-amzn-requestid: {}\r\nconnection: close\r\n",
        text.len(),
        uuid::Uuid::new_v4()
    );
    for (k, v) in headers {
        resp.push_str(&format!("{k}: {v}\r\n"));
    }
    resp.push_str("\r\n");
    resp.push_str(&text);
    let _ = sock.write_all(resp.as_bytes()).await;
    let _ = sock.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decoding_takes_what_the_sdk_sends_and_refuses_bad_escapes() {
        assert_eq!(
            percent_decode("arn%3Aaws%3Aelasticloadbalancing%3Aus-east-1%3A1%3Aloadbalancer%2Fapp%2Fx%2F1").as_deref(),
            Some("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/x/1")
        );
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
