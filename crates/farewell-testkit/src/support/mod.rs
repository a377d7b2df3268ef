//! What the workspace's tests and benches share: one copy of each fixture.
//! (The HTTP, TLS and FLP/1 fixtures are `farewell_lab::support`'s.)

pub mod addr;
pub mod kernel;
pub mod netns;
pub mod peer;
pub mod port;
pub mod send;
pub mod tools;
