//! The sandbox README § "Trying one event by hand" points new users at, driven the way it says:
//! `scripts/sandbox up`, then every `cargo lambda invoke` line it printed, each checked against what
//! it says it does, then `scripts/sandbox ledger` and `notifications`, then `down`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Stops the sandbox however the test ends.
struct Running(PathBuf);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = sandbox(&self.0, "down");
    }
}

fn sandbox(state: &Path, command: &str) -> Output {
    let root = harness::root();
    Command::new("bash")
        .arg(root.join("scripts/sandbox"))
        .arg(command)
        .arg("--state")
        .arg(state)
        .current_dir(&root)
        .output()
        .expect("bash runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn the_sandbox_does_what_each_printed_invocation_says() {
    let state = std::env::temp_dir().join(harness::unique("selfheal-sandbox-test"));
    let _running = Running(state.clone());
    let up = sandbox(&state, "up");
    assert!(up.status.success(), "scripts/sandbox up failed:\n{}", text(&up));
    let printed = String::from_utf8_lossy(&up.stdout).to_string();

    let invocations: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(state.join("events/invocations.json")).unwrap()).unwrap();
    let commands = std::fs::read_to_string(state.join("invoke-commands")).unwrap();
    let commands: Vec<&str> = commands.lines().collect();
    assert_eq!(commands.len(), invocations.len());
    assert!(invocations.len() >= 5, "an alarm, a dry run, a promotion, a DNS flip, a backup sweep");
    let path = format!("{}:{}", harness::root().join(".venv/bin").display(), std::env::var("PATH").unwrap_or_default());
    for (command, inv) in commands.iter().zip(&invocations) {
        assert!(printed.contains(command), "the command run is the one printed: {command}");
        let out = Command::new("bash").arg("-c").arg(command).env("PATH", &path).output().expect("bash runs");
        assert!(out.status.success(), "{command}:\n{}", text(&out));
        let answer: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{command} printed no JSON ({e}):\n{}", text(&out)));
        let outcomes: Vec<&str> =
            answer["decisions"].as_array().into_iter().flatten().filter_map(|d| d["outcome"].as_str()).collect();
        assert!(
            outcomes.contains(&inv["expect"].as_str().unwrap()),
            "{}: {} -> {outcomes:?}",
            inv["file"],
            inv["says"]
        );
    }

    let ledger = sandbox(&state, "ledger");
    assert!(ledger.status.success(), "{}", text(&ledger));
    assert!(text(&ledger).contains("promote-replica"), "the ledger shows the promotion:\n{}", text(&ledger));
    let notes = sandbox(&state, "notifications");
    assert!(notes.status.success(), "{}", text(&notes));
    assert!(
        text(&notes).contains("dns-failover failover awaiting-approval"),
        "the parked flip was published:\n{}",
        text(&notes)
    );

    let down = sandbox(&state, "down");
    assert!(down.status.success(), "{}", text(&down));
    let after = sandbox(&state, "ledger");
    assert!(!after.status.success() && text(&after).contains("no sandbox is running"), "{}", text(&after));
}
