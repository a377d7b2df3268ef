//! `farewell bench overhead`: a small bounded run under valgrind and wrk (the
//! table's shape, ratios that are numbers > 0), and the error that teaches
//! how to build the example. Speed is reported, never asserted here.

use std::path::Path;
use std::process::{Command, Output};

fn farewell_bench_overhead(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(["bench", "overhead"])
        .args(args)
        .output()
        .expect("run farewell bench overhead")
}

/// Builds the `overhead` example in this test's profile, so it lands next to
/// the `farewell` binary under test, where the bench looks for it.
fn build_overhead_example() {
    let farewell = Path::new(env!("CARGO_BIN_EXE_farewell"));
    let release = farewell
        .parent()
        .is_some_and(|dir| dir.ends_with("release"));
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "-p", "farewell-http", "--example", "overhead"]);
    if release {
        cargo.arg("--release");
    }
    let out = cargo.output().expect("run cargo build");
    assert!(
        out.status.success(),
        "building the overhead example failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bench_overhead_prints_instruction_and_rate_ratios_side_by_side() {
    if !farewell_lab::support::tools::require(
        "bench_overhead_prints_instruction_and_rate_ratios_side_by_side",
        &["valgrind", "wrk"],
    ) {
        return;
    }
    build_overhead_example();
    let out_dir =
        std::env::temp_dir().join(format!("farewell-cli-overhead-{}", std::process::id()));
    let out = farewell_bench_overhead(&[
        "--requests",
        "10,30",
        "--wrk-duration",
        "1s",
        "--rounds",
        "1",
        "--connections",
        "4",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "farewell bench overhead failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].contains("farewell-http") && lines[0].contains("plain hyper"),
        "{stdout}"
    );
    for (row, what) in [
        (1, "Ir per keep-alive request"),
        (2, "  vs hyper with header timeout"),
        (3, "Ir per Connection: close conn"),
        (4, "  the same, heavy clients (reset)"),
        (5, "  light, vs hyper closing after FIN"),
        (6, "wrk keep-alive requests/s"),
        (8, "Ir per keep-alive request"),
        (9, "Ir per Connection: close conn"),
    ] {
        let line = lines
            .get(row)
            .unwrap_or_else(|| panic!("no row {row}: {stdout}"));
        assert!(line.starts_with(what), "row {row} is {what}: {stdout}");
        let numbers: Vec<f64> = line[what.len()..]
            .split_whitespace()
            .take(3)
            .map(|n| n.trim_end_matches('x').parse().expect("a number"))
            .collect();
        assert_eq!(numbers.len(), 3, "{line}");
        assert!(numbers.iter().all(|n| n.is_finite() && *n > 0.0), "{line}");
        let ratio = numbers[0] / numbers[1];
        assert!(
            (ratio - numbers[2]).abs() < 0.01 * ratio,
            "the ratio is farewell ÷ the baseline: {line}"
        );
    }
    // The axum pair: the same Router under farewell_http::serve and axum::serve.
    assert!(
        lines[7].contains("farewell_http") && lines[7].contains("axum::serve"),
        "{stdout}"
    );
    // The passive-close and header-timeout yardsticks ran, and their profiles are there too.
    assert!(
        out_dir.join("cg.hyper-passive.close.30").is_file(),
        "{stdout}"
    );
    assert!(
        out_dir.join("cg.hyper-timeouts.keepalive.30").is_file(),
        "{stdout}"
    );
    // The profiles stay for callgrind_annotate.
    assert!(
        out_dir.join("cg.farewell.keepalive.30").is_file(),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn bench_overhead_without_the_example_says_how_to_build_it() {
    let out = farewell_bench_overhead(&["--binary", "/nonexistent/overhead"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cargo build --release -p farewell-http --example overhead"),
        "{stderr}"
    );
}

#[test]
fn bench_overhead_refuses_request_counts_out_of_order() {
    let out = farewell_bench_overhead(&["--requests", "30,10"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("0 < N1 < N2"), "{stderr}");
}
