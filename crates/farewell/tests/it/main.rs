//! The integration tests of the `farewell` crate, one binary (ripgrep's
//! `tests/tests.rs` shape): real sockets on loopback, judged by the kernel's
//! socket table. `closer_memory` (RSS) and `privileged` (network namespaces,
//! whose `ip` forks would hold copies of other tests' sockets) are binaries
//! of their own.

mod census;
mod closer;
mod closer_here;
mod closer_hurry;
mod common;
mod delivery;
mod edge_cases;
mod heavy_client;
mod policy_matrix;
#[cfg(feature = "rustls")]
mod tls;

/// Without the `rustls` feature the TLS tests ([`tls`]) are not compiled:
/// this says so, as a skip (a failure under `FAREWELL_REQUIRE_TOOLS`, which
/// `scripts/test` sets as root; it runs `--features farewell/rustls`), so
/// that they cannot go missing silently.
#[cfg(not(feature = "rustls"))]
#[test]
fn tls_tests_need_the_rustls_feature() {
    farewell_testkit::support::tools::skip(
        "tls",
        "the TLS tests need the rustls feature (cargo test -p farewell --features rustls)",
    );
}
