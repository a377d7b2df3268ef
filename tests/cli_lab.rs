//! Integration tests of `farewell lab`: the binary runs the matrix on this
//! kernel and prints it. These check the report's shape and the two claims
//! that do not race on loopback; they never assert timings.

use std::process::Command;

use serde_json::Value;

const POLICIES: [&str; 7] = [
    "plain",
    "lingering",
    "lingering-reset",
    "fin-then-reset",
    "abort",
    "silent",
    "peer-first",
];

const BEHAVIOURS: [&str; 6] = [
    "cooperative",
    "ignores",
    "never-reads",
    "floods",
    "resets-first",
    "half-closes-first",
];

const FIELDS: [&str; 12] = [
    "policy",
    "behaviour",
    "connections",
    "server_time_wait",
    "client_time_wait",
    "goodbye_delivered_pct",
    "goodbye_acked_pct",
    "bytes_lost",
    "release_ms_median",
    "release_ms_max",
    "leftover_sockets",
    "paths",
];

fn farewell(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(args)
        .output()
        .expect("the farewell binary runs")
}

/// Runs `farewell lab --json --connections 2` once and parses its stdout.
fn lab_json() -> Value {
    let out = farewell(&["lab", "--json", "--connections", "2"]);
    assert!(
        out.status.success(),
        "farewell lab failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn cell<'a>(report: &'a Value, policy: &str, behaviour: &str) -> &'a Value {
    report["cells"]
        .as_array()
        .expect("cells is an array")
        .iter()
        .find(|c| c["policy"] == policy && c["behaviour"] == behaviour)
        .unwrap_or_else(|| panic!("no cell for {policy} × {behaviour}"))
}

/// One lab run serves all the checks below: the matrix takes seconds.
#[test]
fn lab_json_reports_the_whole_matrix_as_the_kernel_sees_it() {
    let report = lab_json();

    // The header: the kernel and its TIME-WAIT settings.
    let kernel = &report["kernel"];
    for key in [
        "release",
        "tcp_fin_timeout",
        "tcp_tw_reuse",
        "tcp_max_tw_buckets",
        "ip_local_port_range",
    ] {
        assert!(kernel.get(key).is_some(), "kernel lacks {key}: {kernel}");
    }

    // A cell for every policy × behaviour, each with every field.
    let cells = report["cells"].as_array().expect("cells is an array");
    assert_eq!(cells.len(), POLICIES.len() * BEHAVIOURS.len());
    for policy in POLICIES {
        for behaviour in BEHAVIOURS {
            let c = cell(&report, policy, behaviour);
            for field in FIELDS {
                assert!(
                    c.get(field).is_some(),
                    "{policy} × {behaviour} lacks {field}: {c}"
                );
            }
            assert!(c["paths"].is_object(), "{c}");
            if c["skipped"].is_null() {
                assert_eq!(
                    c["connections"], 2,
                    "{policy} × {behaviour} did not run both connections: {c}"
                );
            }
        }
    }

    // peer-first never leaves TIME-WAIT on the server, whatever the peer does.
    for behaviour in BEHAVIOURS {
        let c = cell(&report, "peer-first", behaviour);
        assert_eq!(c["server_time_wait"], 0, "peer-first × {behaviour}: {c}");
    }

    // plain sends the first FIN; a peer that ignores the goodbye closes only
    // later, after that FIN, so the server keeps TIME-WAIT (F1).
    let c = cell(&report, "plain", "ignores");
    assert!(
        c["server_time_wait"].as_u64().unwrap_or(0) > 0,
        "plain × ignores: {c}"
    );

    // One verdict per policy.
    assert_eq!(
        report["verdicts"].as_array().map(Vec::len),
        Some(POLICIES.len())
    );
}

#[test]
fn lab_help_explains_how_to_read_the_table() {
    let out = farewell(&["lab", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "server TW",
        "delivered",
        "leftover",
        "--connections",
        "--json",
        "--grace",
    ] {
        assert!(help.contains(word), "help lacks {word:?}:\n{help}");
    }
}

#[test]
fn lab_rejects_a_bad_grace_with_a_hint() {
    let out = farewell(&["lab", "--grace", "soon"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("300ms"), "no hint in: {err}");
}
