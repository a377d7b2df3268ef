//! What the workspace's tests and benches share: one copy of each fixture.
//! The fixtures that need no HTTP or TLS are `farewell_testkit`'s, re-exported
//! here; the HTTP, TLS and FLP/1 ones are this crate's.

pub use farewell_testkit::support::{addr, kernel, netns, peer, port, send, tools};

pub mod flp_fixture;
pub mod http_baseline;
pub mod http_demo;
pub mod table;
pub mod tls;
