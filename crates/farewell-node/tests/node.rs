//! The addon's tests, run by `cargo test`: `node --test` on `js/test/*.test.mjs`,
//! with `FAREWELL_NODE_ADDON` pointing at the `libfarewell_node.so` cargo
//! built for this run. The JavaScript tests drive a Node `http.Server` with
//! clients we did not write (`curl`, `ab`, `wrk`, python) and count server TIME-WAIT in the
//! kernel's table (`ss`).
//!
//! Needs `node`, `curl`, `ab`, `wrk`, `python3`, `openssl`, `chromium`, the npm
//! package `ws` (`scripts/test` installs it) and `ss`; skips with the reason when one is
//! missing (and fails under `FAREWELL_REQUIRE_TOOLS`, as `scripts/test` sets it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{addon, crate_dir};
use farewell_testkit::support::tools;

/// The JavaScript test files, sorted.
fn js_tests() -> Vec<PathBuf> {
    let dir = crate_dir().join("js/test");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("js/test")
        .map(|entry| entry.expect("a js/test entry").path())
        .filter(|path| path.to_string_lossy().ends_with(".test.mjs"))
        .collect();
    files.sort();
    files
}

fn node_test(files: &[PathBuf]) {
    let output = Command::new("node")
        .arg("--test")
        .arg("--test-reporter=spec")
        // Each test is bounded, and so the file: a hung test fails, it does not hang cargo.
        .arg("--test-timeout=60000")
        .args(files)
        .env("FAREWELL_NODE_ADDON", addon())
        .current_dir(crate_dir())
        .output()
        .expect("run node --test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "node --test failed: {}",
        output.status
    );
}

fn only(name: &str) -> Vec<PathBuf> {
    let files: Vec<PathBuf> = js_tests()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|f| Path::new(f) == Path::new(name))
        })
        .collect();
    assert_eq!(files.len(), 1, "js/test/{name}");
    files
}

#[test]
fn node_attached_http_server_whole_responses_eof_and_no_server_time_wait() {
    if !tools::require(
        "node_attached_http_server_whole_responses_eof_and_no_server_time_wait",
        &["node", "curl", "ab", "ss"],
    ) {
        return;
    }
    node_test(&only("attach.test.mjs"));
}

#[test]
fn node_attached_http_server_with_wrk_python_a_half_closer_and_an_ignorer() {
    if !tools::require(
        "node_attached_http_server_with_wrk_python_a_half_closer_and_an_ignorer",
        &["node", "wrk", "python3", "ss"],
    ) {
        return;
    }
    node_test(&only("clients.test.mjs"));
}

#[test]
fn node_attached_https_server_sends_close_notify_without_a_fin() {
    if !tools::require(
        "node_attached_https_server_sends_close_notify_without_a_fin",
        &["node", "openssl", "python3", "curl", "ss"],
    ) {
        return;
    }
    node_test(&only("tls.test.mjs"));
}

#[test]
fn node_websocket_through_ws_with_chromium_closes_cleanly_without_server_time_wait() {
    let test = "node_websocket_through_ws_with_chromium_closes_cleanly_without_server_time_wait";
    if !tools::require(test, &["node", "chromium", "ss"]) {
        return;
    }
    let modules = std::env::var_os("FAREWELL_NODE_MODULES").map_or_else(
        || crate_dir().join("../../target/test-clients/node_modules"),
        PathBuf::from,
    );
    if !modules.join("ws/package.json").exists()
        && !tools::skip(
            test,
            &format!(
                "needs the npm package ws in {} (npm install --prefix target/test-clients ws@8, \
                 or run scripts/test)",
                modules.display()
            ),
        )
    {
        return;
    }
    node_test(&only("websocket.test.mjs"));
}

#[test]
fn node_close_bad_input_is_rejected_with_codes_never_a_crash() {
    if !tools::require(
        "node_close_bad_input_is_rejected_with_codes_never_a_crash",
        &["node"],
    ) {
        return;
    }
    node_test(&only("bad_input.test.mjs"));
}

#[test]
fn node_drain_hurries_teardowns_at_its_deadline() {
    if !tools::require(
        "node_drain_hurries_teardowns_at_its_deadline",
        &["node", "ss"],
    ) {
        return;
    }
    node_test(&only("drain.test.mjs"));
}

#[test]
fn node_drain_hurries_a_connection_waiting_on_nodes_loop() {
    if !tools::require(
        "node_drain_hurries_a_connection_waiting_on_nodes_loop",
        &["node", "ss"],
    ) {
        return;
    }
    node_test(&only("drain_fast_path.test.mjs"));
}

#[test]
fn every_js_test_file_is_run_by_a_cargo_test() {
    let names: Vec<String> = js_tests()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "attach.test.mjs",
            "bad_input.test.mjs",
            "clients.test.mjs",
            "drain.test.mjs",
            "drain_fast_path.test.mjs",
            "tls.test.mjs",
            "websocket.test.mjs"
        ]
    );
}
