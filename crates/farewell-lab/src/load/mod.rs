//! Client populations for any FLP/1 server: a mix of behaviours, bounded in
//! count, rate, concurrency and time, and a report of what the clients saw.
//!
//! FLP/1 is the line protocol of `farewell serve` (specified in
//! [`farewell_server::flp`]): the client says `HELLO <id>`, the server answers
//! `WELCOME <id>`, echoes every line, and ends with `BYE <reason>`. This
//! module drives any server that speaks it; it only ever connects to
//! loopback ([`resolve_loopback`], [`LoadConfig::validate`]).
//!
//! # The behaviours
//!
//! Every client sends `HELLO <behaviour>-<n>` (n counts connections from 0),
//! so a server's logs say which behaviour each connection was. Every client
//! is bounded by [`ClientConfig::timeout`]: when it runs out the client
//! closes and reports `timeout`. "Reads until `BYE`" ignores any other line
//! and notes the reason; a `BYE` that comes earlier than the script expects
//! ends the script there, and the client reacts as after its own `BYE`.
//!
//! | behaviour | script | an FLP/1 server should answer |
//! |---|---|---|
//! | `cooperative` | `HELLO`, reads `WELCOME`; sends [`ClientConfig::echo_lines`] lines and checks each echo; `QUIT`; reads until `BYE`; closes | `BYE quit` |
//! | `ignore` | as cooperative, but after `BYE` keeps the socket open, reading, until the server closes (EOF) or resets it, or the bound | `BYE quit`, then a close or reset |
//! | `silent` | connects, sends nothing; reads until `BYE`; closes | `BYE handshake-timeout` |
//! | `flood` | `HELLO`; writes 64-byte echo lines as fast as it can, reading and discarding the echoes, for at most [`ClientConfig::flood_bytes`] and [`ClientConfig::flood_time`]; `QUIT`; reads until `BYE`; closes | `BYE quit` (or a goodbye of its own) |
//! | `never-read` | receive buffer [`NEVER_READ_RCVBUF`]; `HELLO` and never reads anything; writes lines until no write progresses for [`WRITE_STALL`] (or `flood_bytes`); then watches its socket's TCP state until the server closes (`CLOSE-WAIT`: `eof`) or resets (`CLOSED`: `reset`) it; finally peeks (without reading) for a `BYE` in its receive queue | a goodbye it cannot deliver; the peer-first policy resets once its grace ends |
//! | `bad-handshake` | sends `GET / HTTP/1.0` instead of `HELLO`; reads until `BYE`; closes | `BYE bad-handshake` |
//! | `overlong` | `HELLO`; one line of `max_line` bytes plus its newline (one byte over the limit); reads until `BYE`; closes | `BYE line-too-long` |
//! | `reset` | `HELLO`, one echo, then resets (`SO_LINGER` 0, close) | nothing: it is gone |
//! | `half-close` | `HELLO`, one echo, then `shutdown(SHUT_WR)` without `QUIT`; reads until the server closes or resets | the server's choice |
//!
//! How a connection ends is one [`End`]: `closed` (the client closed it,
//! its script done), `aborted` (the `reset` behaviour), `eof` (the server
//! closed first), `reset` (the server reset it), `timeout`, `connect-error`,
//! `error` (an I/O error, or a server that broke the protocol).
//!
//! # Bounds
//!
//! A run starts at most [`LoadConfig::connections`] clients, at most
//! [`LoadConfig::rate`] per second, at most [`LoadConfig::concurrency`] at
//! once, and none after [`LoadConfig::duration`]; then it waits for the open
//! ones, each bounded by its own timeout. Every value has a hard cap
//! ([`MAX_CONNECTIONS`], [`MAX_RATE`], [`MAX_CONCURRENCY`], [`MAX_DURATION`],
//! [`MAX_CLIENT_TIMEOUT`]).
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use farewell_lab::load::{self, LoadConfig, Mix};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let addresses = load::resolve_loopback("127.0.0.1:7878")?;
//! let mix: Mix = "cooperative=90,silent=10".parse()?;
//! let config = LoadConfig::new(addresses, mix, 200);
//! let report = load::run(&config, Arc::new(|_| {}), std::future::pending()).await?;
//! println!("{}", report.table());
//! assert_eq!(report.behaviours["silent"].goodbyes.get("handshake-timeout"), Some(&20));
//! # Ok(()) }
//! ```
//!
//! # JSON schema
//!
//! [`LoadReport::to_json`] prints one object (times in milliseconds):
//!
//! ```text
//! {
//!   "target": "127.0.0.1:7878",          // as given
//!   "addresses": ["127.0.0.1:7878"],     // what it resolved to (all loopback)
//!   "mix": "cooperative=70,ignore=10,…", // name=weight, as run
//!   "connections_planned": 100,          // --connections, or null
//!   "rate": null,                        // --rate per second, or null
//!   "duration_ms": 30000.0,              // no connection starts after this
//!   "elapsed_ms": 5123.4,
//!   "sources": 1,                        // source addresses used (1: the kernel chose)
//!   "interrupted": false,                // stopped early by Ctrl-C
//!   "started": 100,                      // connections started
//!   "unfinished": 0,                     // started but never reported (interrupt, final bound)
//!   "totals": TALLY,                     // all clients
//!   "behaviours": { "cooperative": TALLY, … },  // every behaviour in the mix
//!   "errors": ["silent: connect to …: Connection refused (×3)"]  // distinct, at most 20
//! }
//! TALLY = {
//!   "connections": 70,                   // finished connections
//!   "goodbyes": { "quit": 70 },          // reason of the BYE each client read -> count
//!   "no_goodbye": 0,                     // clients that read no BYE
//!   "ends": { "aborted": 0, "closed": 70, "connect-error": 0, "eof": 0,
//!             "error": 0, "reset": 0, "timeout": 0 },   // every End, zeros too
//!   "eof_without_goodbye": 0,            // ends "eof" with no BYE read
//!   "echo_mismatches": 0,                // echo lines that came back changed
//!   "latency_ms": {                      // each: { "count", "median", "p99", "max" } (null when count is 0)
//!     "connect": …,                      // connect started -> connected
//!     "handshake": …,                    // HELLO sent -> WELCOME read
//!     "goodbye": …                       // connected -> BYE read
//!   }
//! }
//! ```

mod client;
mod mix;
mod report;
mod run;
mod target;

pub use client::{run_client, ClientConfig, ConnResult, End, NEVER_READ_RCVBUF, WRITE_STALL};
pub use mix::{Behaviour, Mix, MixError, DEFAULT_MIX, MAX_WEIGHT};
pub use report::{Collector, Latencies, Latency, LoadReport, Tally, MAX_ERRORS};
pub use run::{
    run, LoadConfig, Sources, CONNECTIONS_PER_SOURCE, MAX_CLIENT_TIMEOUT, MAX_CONCURRENCY,
    MAX_CONNECTIONS, MAX_DURATION, MAX_RATE, MAX_SOURCES,
};
pub use target::{is_loopback, resolve_loopback};

/// Why a load run was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The target is not `HOST:PORT`, does not resolve, or is not loopback.
    #[error("refusing target {target}: {why}; farewell load only connects to loopback (127.0.0.0/8, ::1)")]
    Target {
        /// The target as given.
        target: String,
        /// Why it was refused.
        why: String,
    },
    /// A setting out of its bounds.
    #[error("{0}")]
    Config(String),
    /// The mix string is wrong.
    #[error(transparent)]
    Mix(#[from] MixError),
}
