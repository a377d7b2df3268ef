//! `farewell load` and `farewell watch` against the real `farewell serve`:
//! every client behaviour gets the goodbye FLP/1 gives it, the server's own
//! summary agrees, and the kernel keeps no server TIME-WAIT.

use crate::harness;

use std::process::Command;

use farewell::TcpState;
use harness::*;
use serde_json::Value;

const MIX: &str = "cooperative=3,ignore=2,silent=2,flood=2,never-read=2,bad-handshake=2,overlong=2,reset=2,half-close=2";

fn farewell(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(args)
        .output()
        .expect("run farewell");
    assert!(
        out.status.success(),
        "farewell {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

fn goodbyes(tally: &Value) -> Vec<(String, u64)> {
    tally["goodbyes"]
        .as_object()
        .expect("goodbyes")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .filter(|&(_, n)| n > 0)
        .collect()
}

#[test]
fn load_against_farewell_serve_sees_the_goodbye_of_each_behaviour() {
    let server = Server::start(&[
        "--handshake-timeout",
        "1s",
        "--idle-timeout",
        "2s",
        "--send-timeout",
        "1s",
        "--grace",
        "500ms",
        "--max-line",
        "256",
    ]);
    let addr = server.addr;
    let target = addr.to_string();
    let report = farewell(&[
        "load",
        &target,
        "--mix",
        MIX,
        "--connections",
        "19",
        "--concurrency",
        "19",
        "--timeout",
        "10s",
        "--max-line",
        "256",
        "--json",
    ]);
    assert_eq!(report["totals"]["connections"], 19, "{report}");
    assert_eq!(report["totals"]["echo_mismatches"], 0, "{report}");
    assert_eq!(report["totals"]["ends"]["connect-error"], 0, "{report}");
    // Every client but never-read ended on its own within its bound. A
    // never-reading client gets `BYE idle` after the send timeout, then a
    // reset; with its window at zero that reset can fall out of window and
    // be dropped (RFC 5961), so it may still read ESTABLISHED at its 10 s
    // bound — the server's side is gone, as the census below shows.
    let timeouts = report["totals"]["ends"]["timeout"].as_u64().unwrap();
    let never_read_timeouts = report["behaviours"]["never-read"]["ends"]["timeout"]
        .as_u64()
        .unwrap();
    assert_eq!(timeouts, never_read_timeouts, "{report}");
    let b = &report["behaviours"];
    let expect = |name: &str, reason: &str, n: u64| {
        assert_eq!(
            goodbyes(&b[name]),
            vec![(reason.to_string(), n)],
            "{name}: {}",
            b[name]
        );
    };
    expect("cooperative", "quit", 3);
    expect("ignore", "quit", 2);
    expect("flood", "quit", 2);
    expect("silent", "handshake-timeout", 2);
    expect("bad-handshake", "bad-handshake", 2);
    expect("overlong", "line-too-long", 2);
    // Clients that cannot or will not read a goodbye get none they can see.
    for name in ["never-read", "reset", "half-close"] {
        assert!(goodbyes(&b[name]).is_empty(), "{name}: {}", b[name]);
    }

    // The kernel: only the listener on the server's address, no TIME-WAIT.
    assert_clean(addr, 1);
    let snap = farewell(&[
        "watch",
        "--once",
        "--json",
        "--port",
        &addr.port().to_string(),
    ]);
    assert_eq!(snap["counts"]["LISTEN"], 1, "{snap}");
    assert_eq!(snap["counts"]["ESTABLISHED"], 0, "{snap}");
    assert_eq!(census(addr).get(TcpState::TimeWait), 0);

    // The server's own summary tells the same story.
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{status}\n{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("farewell serve:"))
        .unwrap_or_else(|| panic!("a summary line in {stderr}"));
    for part in [
        "19 connections",
        "quit 7",
        "handshake-timeout 2",
        "bad-handshake 2",
        "line-too-long 2",
    ] {
        assert!(summary.contains(part), "{part:?} in {summary}");
    }
}
