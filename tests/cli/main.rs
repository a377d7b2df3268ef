//! The tests of the `farewell` command, one binary: each runs the real
//! binary as a child process and checks what it printed, what its clients
//! received, and the kernel's socket table.

mod abuse;
mod bench;
mod bench_overhead;
mod harness;
mod http;
mod lab;
mod limits;
mod load;
mod load_serve;
mod serve;
mod serve_hurry;
mod serve_load;
mod tls;
mod watch;
mod websocket;
