//! The integration tests of `farewell-http`, one binary: real clients
//! (hyper, curl, Python, openssl, ab, lynx, nc) against real servers on loopback, over
//! TCP and TLS.

mod abuse;
mod close_delimited;
mod common;
mod curl;
mod drain_deadline;
mod dropin;
mod half_close;
mod heavy_clients;
mod hyper_client;
mod limits;
mod outcomes;
mod python;
mod read_to_close;
mod statuses;
mod teardown_task;
mod tls;
mod websocket;
