//! What the farewell crates' tests and benches share, and the lab engine
//! they run through. **Not published**: nothing here is under semver.
//!
//! It depends on the core (`farewell`), tokio and the OS, and on nothing
//! that speaks HTTP or TLS: the core's tests and benches dev-depend on it,
//! and `cargo test -p farewell` builds no hyper, rustls or tungstenite.
//! `farewell-lab` (the load generator, the benches, the HTTP and FLP/1
//! fixtures) re-exports all of it, so `farewell_lab::lab` and
//! `farewell_lab::support::tools` are these.
//!
//! * [`lab`] — `farewell lab`: every policy against every peer behaviour,
//!   judged by the kernel's socket table and by what the peers received.
//!   The core's tests run their connections through its runner
//!   ([`lab::run_connection`]), so the tests and the lab judge alike;
//! * [`support`] — the peer scripts the lab and the load generator play,
//!   client source addresses (127.1.x.y), the kernel's settings, quiet
//!   ports, the namespace test harness, and the one way a test skips
//!   ([`support::tools`]);
//! * [`cpu`] — CPU time of one runtime's threads, for the benches.
//!
//! Linux only: the lab's namespaces, the census and the CPU readings need it.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod cpu;
pub mod lab;
pub mod support;
mod sys;
