//! The integration tests of `farewell-server`, one binary.

mod server;
