//! The integration tests of `farewell-http`, one binary: real clients
//! (hyper, curl, Python) against real servers on loopback.

mod common;
mod curl;
mod hyper_client;
mod python;
