//! External programs the tests drive (clients we did not write, `ip`, `nft`,
//! …): find them, or say why a test is skipped.
//!
//! `scripts/test` installs every one of them when run as root and then sets
//! `FAREWELL_REQUIRE_TOOLS=1`, so that in CI a missing tool fails the test that
//! needs it instead of skipping it quietly. Without that variable (a plain
//! `cargo test` on a machine without, say, `wrk`), the test prints what is
//! missing and how to install it, and passes without running.

use std::env;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The environment variable that turns a missing tool into a failure.
pub const REQUIRE_TOOLS: &str = "FAREWELL_REQUIRE_TOOLS";

/// The Debian package that provides `tool`, for the hint in a skip message.
pub fn debian_package(tool: &str) -> &str {
    match tool {
        "nc" => "netcat-openbsd",
        "ab" => "apache2-utils",
        "ip" | "tc" => "iproute2",
        "nft" => "nftables",
        "python3" => "python3",
        "node" => "nodejs",
        "cc" => "gcc",
        "c++" => "g++",
        "nm" => "binutils",
        other => other,
    }
}

/// The full path of `tool` on `PATH`, if it is there and executable.
pub fn find(tool: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The tools of `tools` that are not on `PATH`.
pub fn missing<'a>(tools: &[&'a str]) -> Vec<&'a str> {
    tools
        .iter()
        .copied()
        .filter(|t| find(t).is_none())
        .collect()
}

/// True when every one of `tools` is installed. Otherwise prints
/// `skipped: TEST needs …` with the packages to install and returns false —
/// or panics with the same message when `FAREWELL_REQUIRE_TOOLS` is set.
///
/// ```
/// if !farewell_lab::support::tools::require("my_test", &["sh"]) {
///     return; // printed why
/// }
/// ```
pub fn require(test: &str, tools: &[&str]) -> bool {
    let missing = missing(tools);
    if missing.is_empty() {
        return true;
    }
    let packages: Vec<&str> = missing.iter().map(|t| debian_package(t)).collect();
    let message = format!(
        "{test} needs {} (not on PATH); install with `apt-get install {}`, or run `scripts/test` as root",
        missing.join(", "),
        packages.join(" ")
    );
    if env::var_os(REQUIRE_TOOLS).is_some_and(|v| v != "0") {
        panic!("{message} ({REQUIRE_TOOLS} is set, so a missing tool is a failure)");
    }
    // Straight to the process's stderr: `eprintln!` would be captured by the
    // test harness and never shown for a test that passes.
    let _ = writeln!(std::io::stderr(), "skipped: {message}");
    false
}
