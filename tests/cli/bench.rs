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
