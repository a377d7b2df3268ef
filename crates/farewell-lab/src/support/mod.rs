//! What the workspace's tests and benches share: one copy of each fixture.

pub mod addr;
pub mod flp_fixture;
pub mod http_baseline;
pub mod http_demo;
pub mod kernel;
pub mod netns;
pub mod peer;
pub mod port;
pub mod tls;
pub mod tools;
