//! `farewell bench --quick --json`: the schema, and what the kernel's table says
//! about each server's TIME-WAIT. Speed is reported, never asserted here.

use std::process::Command;

use serde_json::Value;

fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run farewell bench");
    assert!(
        out.status.success(),
        "farewell bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bench --json prints one JSON object")
}

#[test]
fn quick_bench_json_has_the_documented_schema_and_kernel_truths() {
    let report = bench(&["--quick", "--json"]);
    assert!(report["kernel"]["release"].is_string(), "{report}");

    let servers = report["servers"].as_array().expect("servers array");
    let names: Vec<&str> = servers
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["plain-tokio", "farewell-peer-first", "farewell-abort"]
    );
    for s in servers {
        for field in [
            "connections_per_sec",
            "ratio_to_plain",
            "cpu_us_per_connection",
        ] {
            assert!(s[field].is_f64(), "{field} in {s}");
        }
        for field in ["connections", "errors", "server_time_wait", "leftover"] {
            assert!(s[field].is_u64(), "{field} in {s}");
        }
        assert!(
            s["connections"].as_u64().unwrap() > 0,
            "every server completed sessions: {s}"
        );
        assert_eq!(s["leftover"], 0, "no server socket left open: {s}");
    }
    assert_eq!(servers[0]["ratio_to_plain"], 1.0);
    // The kernel's table, not our code: plain tokio closes first and keeps
    // TIME-WAIT; peer-first and abort keep none.
    assert!(
        servers[0]["server_time_wait"].as_u64().unwrap() > 0,
        "{}",
        servers[0]
    );
    assert_eq!(servers[1]["server_time_wait"], 0, "{}", servers[1]);
    assert_eq!(servers[2]["server_time_wait"], 0, "{}", servers[2]);

    let scale = &report["scale"];
    assert!(scale["clients"].as_u64().unwrap() > 0, "{scale}");
    assert_eq!(scale["server_time_wait"], 0, "{scale}");
    for field in [
        "release_ms",
        "peak_rss_bytes",
        "bytes_per_closing_connection",
        "grace_ms",
    ] {
        assert!(scale[field].is_u64(), "{field} in {scale}");
    }
    assert!(scale["released_within_goal"].is_boolean());
}

#[test]
fn bench_rejects_absurd_flags_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(["bench", "--rounds", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--rounds"), "{err}");
}

/// `bench http --hosts 2 --modes close-spread` (issue 16): our own client
/// from two client namespaces over their veth pairs, each connection from
/// the next of its host's own source addresses. Every response was checked
/// (errors 0), the census inside the server's namespace says peer-first
/// kept no TIME-WAIT while plain hyper kept its own, and the hosts kept
/// farewell-http's, spread over many sources.
#[test]
fn bench_http_hosts_close_spread_quick_peer_first_keeps_no_time_wait() {
    let name = "bench_http_hosts_close_spread_quick_peer_first_keeps_no_time_wait";
    if let Some(why) = farewell_lab::lab::netns::unavailable() {
        farewell_lab::support::tools::skip(name, &why);
        return;
    }
    let report = bench(&[
        "http",
        "--quick",
        "--json",
        "--no-nginx",
        "--hosts",
        "2",
        "--modes",
        "close-spread",
    ]);
    assert_eq!(report["hosts"]["hosts"], 2, "{report}");
    assert!(report["hosts_skipped"].is_null(), "{report}");
    assert!(
        report["hosts"]["source_addresses_per_host"]
            .as_u64()
            .unwrap()
            > 1_000,
        "{report}"
    );
    let rows = report["rows"].as_array().expect("rows");
    for server in ["farewell-http", "hyper"] {
        for hosts in [Value::Null, Value::from(2)] {
            let row = rows
                .iter()
                .find(|r| {
                    r["server"] == server && r["mode"] == "close-spread" && r["hosts"] == hosts
                })
                .unwrap_or_else(|| panic!("no close-spread row for {server}, hosts {hosts}"));
            assert!(row["requests_per_sec"].as_f64().unwrap() > 0.0, "{row}");
            assert!(row["ratio_to_hyper"].is_number(), "{row}");
            assert_eq!(row["errors"], 0, "every response checked: {row}");
        }
    }
    let many: Vec<&Value> = report["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|r| r["hosts"] == 2)
        .collect();
    assert_eq!(many.len(), 2, "one many-host run per server: {report}");
    for run in many {
        assert_eq!(run["mode"], "close-spread", "{run}");
        assert!(run["requests"].as_u64().unwrap() > 0, "{run}");
        assert_eq!(run["errors"], 0, "{run}");
        assert_eq!(run["error_kinds"]["bad_response"], 0, "{run}");
        if run["server"] == "farewell-http" {
            assert_eq!(
                run["server_time_wait"], 0,
                "peer-first from many hosts: {run}"
            );
            assert!(
                run["client_time_wait"].as_u64().unwrap() > 0,
                "the hosts keep TIME-WAIT: {run}"
            );
            // Spread: each connection came from the next of its host's
            // addresses, so no source keeps more than a few entries (a
            // quick run makes at most 150 connections per host).
            let most = run["client_time_wait_per_source_max"].as_u64().unwrap();
            assert!(
                (1..=2).contains(&most),
                "each source holds one or two entries: {run}"
            );
        } else {
            assert!(
                run["server_time_wait"].as_u64().unwrap() > 0,
                "plain hyper keeps TIME-WAIT: {run}"
            );
        }
    }
}
