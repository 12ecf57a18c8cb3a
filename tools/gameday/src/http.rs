//! Reading one HTTP/1.1 request from a socket, for the harness's own local servers (the webhook
//! receiver, the ARC stand-in): the request line, `content-length`, and the body, with limits; a
//! malformed request is a reason to answer 400, never a panic.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// One request as it arrived: its method, its target (path and query, still encoded) and its body.
pub struct RawRequest {
    pub method: String,
    pub target: String,
    pub body: Vec<u8>,
}

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;

/// Reads one request; `Err` answers 400 (`None`: the peer went away, nothing to answer).
pub async fn read_request(sock: &mut TcpStream) -> Result<RawRequest, Option<String>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.map_err(|_| None)?;
        if n == 0 {
            return Err(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(Some("request head too large".into()));
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| Some("request head is not UTF-8".to_string()))?;
    let head = head.to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(_version), None) = (first.next(), first.next(), first.next(), first.next())
    else {
        return Err(Some("malformed request line".into()));
    };
    let mut content_length = 0usize;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else { return Err(Some("malformed header".into())) };
        if k.trim().eq_ignore_ascii_case("content-length") {
            content_length = v.trim().parse().map_err(|_| Some("malformed content-length".to_string()))?;
        } else if k.trim().eq_ignore_ascii_case("transfer-encoding") {
            return Err(Some("chunked bodies are not supported".into()));
        }
    }
    if content_length > MAX_BODY {
        return Err(Some("body too large".into()));
    }
    let body_start = head_end + 4;
    while buf.len() < body_start + content_length {
        let n = sock.read(&mut chunk).await.map_err(|_| None)?;
        if n == 0 {
            return Err(Some("body shorter than content-length".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(RawRequest {
        method: method.to_string(),
        target: target.to_string(),
        body: buf[body_start..body_start + content_length].to_vec(),
    })
}
