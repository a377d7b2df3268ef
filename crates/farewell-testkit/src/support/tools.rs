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

/// The environment variable naming a file to which every skip appends one
/// line, so that a run (`scripts/test`) can list them at its end.
pub const SKIP_LOG: &str = "FAREWELL_SKIP_LOG";

/// The one way a test skips: `test` cannot run here because of `reason` (a
/// tool, a capability, a path, an address family). Prints `skipped: TEST:
/// REASON` on stderr and appends it to [`SKIP_LOG`], then returns false —
/// or panics with the same message when [`REQUIRE_TOOLS`] is set (CI, and
/// `scripts/test` as root): there a skip is a failure.
///
/// ```
/// # fn ipv6_here() -> bool { true }
/// if !ipv6_here() && !farewell_testkit::support::tools::skip("my_test", "no ::1 here") {
///     return; // printed why
/// }
/// ```
pub fn skip(test: &str, reason: &str) -> bool {
    let message = format!("{test}: {reason}");
    if env::var_os(REQUIRE_TOOLS).is_some_and(|v| v != "0") {
        panic!("{message} ({REQUIRE_TOOLS} is set, so a skip is a failure)");
    }
    // Straight to the process's stderr: `eprintln!` would be captured by the
    // test harness and never shown for a test that passes.
    let _ = writeln!(std::io::stderr(), "skipped: {message}");
    if let Some(log) = env::var_os(SKIP_LOG) {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            // One write of the whole line: O_APPEND keeps concurrent skips apart.
            let _ = std::io::Write::write_all(&mut file, format!("{message}\n").as_bytes());
        }
    }
    false
}

/// True when this process has `CAP_NET_ADMIN` (`TCP_REPAIR`, `SOCK_DESTROY`);
/// otherwise [`skip`]s `test` (a failure under [`REQUIRE_TOOLS`]).
pub fn require_net_admin(test: &str) -> bool {
    farewell::census::has_net_admin()
        || skip(
            test,
            "needs CAP_NET_ADMIN, which this process lacks (run the tests as root)",
        )
}

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
/// if !farewell_testkit::support::tools::require("my_test", &["sh"]) {
///     return; // printed why
/// }
/// ```
pub fn require(test: &str, tools: &[&str]) -> bool {
    let missing = missing(tools);
    if missing.is_empty() {
        return true;
    }
    let packages: Vec<&str> = missing.iter().map(|t| debian_package(t)).collect();
    skip(
        test,
        &format!(
            "needs {} (not on PATH); install with `apt-get install {}`, or run `scripts/test` as root",
            missing.join(", "),
            packages.join(" ")
        ),
    )
}
