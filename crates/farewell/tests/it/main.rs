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
