//! What the farewell crates' tests and benches share. **Not published**:
//! nothing here is under semver.
//!
//! It depends on the core (`farewell`), tokio and the OS, and on nothing
//! that speaks HTTP or TLS: the core's tests and benches dev-depend on it,
//! and `cargo test -p farewell` builds no hyper, rustls or tungstenite.
//! `farewell-lab` (the lab's matrix and paths, the load generator, the
//! benches, the HTTP, TLS and FLP/1 fixtures) builds on it and re-exports
//! it, so `farewell_lab::lab::run_connection` and
//! `farewell_lab::support::tools` are these.
//!
//! * [`lab`] — one connection of `farewell lab`: a peer that behaves its
//!   way, the server side torn down with a policy, the verdict read from
//!   the kernel's socket table and from what the peer received
//!   ([`lab::run_connection`]); the core's tests run theirs through it, so
//!   the tests and the lab judge alike. Also the network namespaces.
//! * [`support`] — the peer scripts the lab and the load generator play,
//!   client source addresses (127.1.x.y), the kernel's settings, quiet
//!   ports, the namespace test harness, and the one way a test skips
//!   ([`support::tools`]);
//! * [`cpu`] — CPU time of one runtime's threads, for the benches.
//!
//! Linux only: the namespaces, the census and the CPU readings need it.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod cpu;
pub mod lab;
pub mod support;
mod sys;
