//! `farewell load` as a user runs it: against a test-fixture FLP/1 server on
//! loopback, with every behaviour; refusing targets outside loopback; and
//! explaining bad `--mix` strings.

use farewell_lab::support::flp_fixture;

use std::process::Output;

use flp_fixture::{Fixture, FixtureConfig};
use serde_json::Value;

const EVERY_BEHAVIOUR: &str = "cooperative=2,ignore=2,silent=2,flood=2,never-read=2,bad-handshake=2,overlong=2,reset=2,half-close=2";

async fn farewell(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("farewell finished within 60 s")
        .expect("farewell ran")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn reasons(tally: &Value) -> std::collections::BTreeMap<String, u64> {
    tally["goodbyes"]
        .as_object()
        .expect("goodbyes is an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_json_matches_the_goodbyes_the_server_sent_per_behaviour() {
    let fixture = Fixture::start(FixtureConfig::default()).await;
    let target = fixture.addr.to_string();
    let out = farewell(&[
        "load",
        &target,
        "--mix",
        EVERY_BEHAVIOUR,
        "--connections",
        "18",
        "--concurrency",
        "18",
        "--timeout",
        "10s",
        "--json",
    ])
    .await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");

    assert_eq!(report["started"], 18);
    assert_eq!(report["unfinished"], 0);
    assert_eq!(report["interrupted"], false);
    assert_eq!(report["addresses"][0], target.as_str());
    assert_eq!(report["totals"]["connections"], 18);
    // Only a never-reading client may reach its own bound: its window is
    // zero, so the server's reset (sequence number past the client's
    // rcv_nxt) is out of window and dropped (RFC 5961); it learns of the
    // reset only when its next zero-window probe draws a fresh one.
    assert_eq!(
        report["totals"]["ends"]["timeout"],
        report["behaviours"]["never-read"]["ends"]["timeout"]
    );
    assert_eq!(report["totals"]["ends"]["connect-error"], 0);
    assert_eq!(report["totals"]["echo_mismatches"], 0);
    assert_eq!(
        report["errors"].as_array().unwrap().len(),
        0,
        "{}",
        report["errors"]
    );
    assert_eq!(fixture.accepted(), 18);

    let b = &report["behaviours"];
    for name in [
        "cooperative",
        "ignore",
        "flood",
        "overlong",
        "reset",
        "half-close",
    ] {
        assert_eq!(b[name]["connections"], 2, "{name}");
        assert_eq!(
            reasons(&b[name]),
            fixture.sent_to(Some(name)),
            "{name}: seen vs sent"
        );
    }
    assert_eq!(reasons(&b["cooperative"])["quit"], 2);
    assert_eq!(reasons(&b["overlong"])["line-too-long"], 2);
    // Without HELLO there is no id: these two reasons go only to them.
    let anonymous = fixture.sent_to(None);
    assert_eq!(reasons(&b["silent"])["handshake-timeout"], 2);
    assert_eq!(anonymous["handshake-timeout"], 2);
    assert_eq!(reasons(&b["bad-handshake"])["bad-handshake"], 2);
    assert_eq!(anonymous["bad-handshake"], 2);
    // The server said goodbye to every never-reading client; none could read it.
    assert_eq!(fixture.sent_to(Some("never-read")).values().sum::<u64>(), 2);
    assert_eq!(b["never-read"]["no_goodbye"], 2);
    assert_eq!(b["reset"]["ends"]["aborted"], 2);
    assert_eq!(b["half-close"]["eof_without_goodbye"], 2);
    for latency in ["connect", "handshake", "goodbye"] {
        let l = &report["totals"]["latency_ms"][latency];
        assert!(l["count"].as_u64().unwrap() > 0, "{latency}: {l}");
        assert!(l["median"].as_f64().unwrap() <= l["max"].as_f64().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_prints_a_table_by_default() {
    let fixture = Fixture::start(FixtureConfig::default()).await;
    let out = farewell(&[
        "load",
        &fixture.addr.to_string(),
        "--mix",
        "cooperative",
        "--connections",
        "3",
    ])
    .await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let table = text(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with("cooperative"))
        .unwrap_or_else(|| panic!("no cooperative row in:\n{table}"));
    assert!(row.contains("quit 3") && row.contains("closed 3"), "{row}");
    assert!(table.contains("latency ms"), "{table}");
    assert_eq!(fixture.sent_to(Some("cooperative"))["quit"], 3);
}

/// Runs `farewell ARGS` under strace; returns its output and the TCP
/// (`AF_INET`/`AF_INET6` + `SOCK_STREAM`) sockets it created, threads included.
async fn traced(args: &[&str]) -> (Output, Vec<String>) {
    let trace = tempfile_path();
    let out = tokio::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=socket", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_farewell"))
        .args(args)
        .output()
        .await
        .expect("strace is needed for this test (apt-get install strace; .ci/run installs it)");
    let calls = std::fs::read_to_string(&trace).expect("strace wrote its trace");
    let _ = std::fs::remove_file(&trace);
    let tcp = calls
        .lines()
        .filter(|l| l.contains("SOCK_STREAM") && l.contains("AF_INET"))
        .map(String::from)
        .collect();
    (out, tcp)
}

fn tempfile_path() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "farewell-cli-load-{}-{}.trace",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

#[tokio::test]
async fn load_refuses_targets_outside_loopback_and_sends_nothing() {
    if !farewell_lab::support::tools::require(
        "load_refuses_targets_outside_loopback_and_sends_nothing",
        &["strace"],
    ) {
        return;
    }
    // The control: a loopback target does make a TCP socket, and strace sees it.
    let (_, tcp) = traced(&[
        "load",
        "127.0.0.1:9",
        "--connections",
        "1",
        "--timeout",
        "2s",
    ])
    .await;
    assert!(!tcp.is_empty(), "strace did not see the client's socket");

    for target in [
        "192.0.2.1:7878",
        "example.com:80",
        "[2001:db8::1]:80",
        "10.0.0.1:22",
    ] {
        let (out, tcp) = traced(&["load", target, "--connections", "1"]).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{target}: {err}");
        assert!(
            err.starts_with("farewell: refusing target"),
            "{target}: {err}"
        );
        assert!(
            err.contains("only connects to loopback (127.0.0.0/8, ::1)"),
            "{target}: {err}"
        );
        assert!(
            out.stdout.is_empty(),
            "{target}: no report for a refused target"
        );
        // Resolving a name may query the resolver (UDP); no TCP socket is ever made.
        assert!(
            tcp.is_empty(),
            "{target}: TCP sockets were created: {tcp:?}"
        );
    }
}

#[tokio::test]
async fn bad_mix_strings_say_what_is_wrong() {
    let cases = [
        (
            "coop=1",
            "unknown behaviour \"coop\"; known: cooperative, ignore, silent",
        ),
        ("silent=x", "the weight of silent is \"x\""),
        ("silent=-3", "write a whole number"),
        (",", "the mix is empty"),
        ("silent=1,silent=2", "silent appears twice"),
        ("silent=0,flood=0", "every weight in the mix is 0"),
    ];
    for (mix, expected) in cases {
        let out = farewell(&["load", "127.0.0.1:9", "--mix", mix]).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{mix}: {err}");
        assert!(err.contains(expected), "{mix}: {err}");
        assert!(err.contains("--mix"), "{mix}: {err}");
    }
}
