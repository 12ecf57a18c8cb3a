//! arc-standin: the Route 53 ARC zonal shift stand-in (`gameday::arc`) as a process, for the local game
//! day (moto has no ARC). `scripts/gameday` starts it, points the functions and the drill at it with
//! `AWS_ENDPOINT_URL_ARC_ZONAL_SHIFT` (which the SDK honours for this service alone), and provisioning
//! registers the load balancer and groups with it (`POST /_standin/register`, outside ARC's API).
//!
//! ```text
//! arc-standin [--port N]
//!     listens on 127.0.0.1:N (default 0: a free port), prints its endpoint (http://127.0.0.1:PORT) on
//!     one line of standard output, and serves until it is killed
//! ```

use std::io::Write;
use std::process::ExitCode;

const USAGE: &str = "usage: arc-standin [--port N]";

fn port(args: &[String]) -> Result<u16, String> {
    match args {
        [] => Ok(0),
        [flag, n] if flag == "--port" => {
            n.parse().map_err(|_| format!("--port must be 0 to 65535, got {n:?}\n{USAGE}"))
        }
        _ => Err(USAGE.to_string()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = match port(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("arc-standin: {e}");
            return ExitCode::from(2);
        }
    };
    let stand_in = match gameday::arc::ArcStandIn::bind(port).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("arc-standin: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout();
    // The endpoint is the one line a caller reads; a closed stdout leaves the stand-in serving.
    let _ = writeln!(out, "{}", stand_in.endpoint());
    let _ = out.flush();
    // Serves until stopped: the game day kills its process group on the way out.
    std::future::pending::<ExitCode>().await
}

#[cfg(test)]
mod tests {
    use super::port;

    #[test]
    fn the_port_is_optional_and_checked() {
        assert_eq!(port(&[]), Ok(0));
        assert_eq!(port(&["--port".into(), "4566".into()]), Ok(4566));
        assert!(port(&["--port".into(), "70000".into()]).is_err());
        assert!(port(&["--port".into()]).is_err());
        assert!(port(&["--bogus".into(), "1".into()]).is_err());
    }
}
