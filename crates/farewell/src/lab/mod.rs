//! The lab: every teardown policy against every peer behaviour, on this
//! kernel, judged by the kernel's own socket table.
//!
//! For each cell (one [`Policy`](crate::Policy) × one [`Behaviour`]) the lab
//! opens `connections` real loopback connections one after another. In each,
//! the peer behaves its way, the server side says the goodbye
//! ([`GOODBYE`]) and is torn down with [`close`](crate::close), the peer is
//! then ended, both ends are given time to leave their transient closing
//! states, and the census ([`census::lookup`](crate::census::lookup)) says who
//! holds TIME-WAIT and whether a server socket was left over. Nothing is
//! taken from the library's own bookkeeping except the [`Outcome`](crate::Outcome)
//! columns (path, goodbye ACKed, time to release), which is what they measure.
//!
//! Deadlines are short (see [`lab_policy`]) so the whole matrix runs in
//! seconds; every wait is bounded ([`TEARDOWN_BOUND`] for a teardown).
//!
//! # JSON schema
//!
//! [`LabReport::to_json`] prints one object:
//!
//! ```text
//! {
//!   "kernel": {
//!     "release": "6.8.0-…",            // /proc/sys/kernel/osrelease (null if unreadable)
//!     "tcp_fin_timeout": "60",         // /proc/sys/net/ipv4/… (strings, as the kernel prints them)
//!     "tcp_tw_reuse": "2",
//!     "tcp_max_tw_buckets": "262144",
//!     "ip_local_port_range": "32768 60999",
//!     "net_admin": true                // CAP_NET_ADMIN: silent runs only with it
//!   },
//!   "cells": [ {
//!     "policy": "peer-first",          // a name from Policy::NAMES
//!     "behaviour": "cooperative",      // a name from Behaviour::ALL
//!     "connections": 5,                // connections that ran to the end
//!     "server_time_wait": 0,           // of those, server end in TIME-WAIT (kernel census)
//!     "client_time_wait": 5,           // of those, client end in TIME-WAIT (kernel census)
//!     "goodbye_delivered_pct": 100.0,  // client application received the whole goodbye (null if 0 connections)
//!     "goodbye_acked_pct": 100.0,      // outcome.goodbye == confirmed (null if 0 connections)
//!     "bytes_lost": 0,                 // goodbye bytes the client applications did not receive, summed
//!     "release_ms_median": 2.1,        // Outcome.elapsed: until the server's descriptor was closed (null if 0 connections)
//!     "release_ms_max": 2.6,
//!     "leftover_sockets": 0,           // server ends in the table in a state other than TIME-WAIT after settling
//!     "paths": { "peer-closed": 5 },   // Path::name -> count
//!     "skipped": null,                 // or "needs CAP_NET_ADMIN"
//!     "errors": []                     // one message per connection that failed to run
//!   }, … ],                            // one per policy × behaviour, policy-major
//!   "verdicts": [ "peer-first: no server TIME-WAIT in any cell; …", … ]
//! }
//! ```

mod cell;
mod matrix;
mod peer;
mod report;

use std::io;
use std::sync::Arc;
use std::time::Duration;

pub use cell::{run_connection, Trial, TEARDOWN_BOUND};
pub use matrix::{lab_policy, planned_connections, run_matrix, CellReport, LabConfig};
pub use peer::{Behaviour, COOPERATIVE_REACTION, GOODBYE};
pub use report::{verdicts, KernelInfo, LabReport};

use crate::census::CensusError;
use crate::policy::UnknownPolicy;

/// Why the lab (or one of its connections) could not run.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A socket operation of the lab itself failed.
    #[error("{0}: {1}")]
    Io(&'static str, #[source] io::Error),
    /// The kernel's socket table could not be read.
    #[error("cannot read the kernel's socket table: {0}")]
    Census(#[from] CensusError),
    /// The census does not show a live loopback connection, so it cannot judge.
    #[error("the kernel's socket table does not show a live loopback connection")]
    CensusBlind,
    /// A bounded wait ran out.
    #[error("{what} did not end within {bound:?}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// The bound.
        bound: Duration,
    },
    /// A lab task panicked or was cancelled.
    #[error("a lab task failed: {0}")]
    Peer(String),
    /// A policy name the library does not know.
    #[error(transparent)]
    UnknownPolicy(#[from] UnknownPolicy),
}

/// Runs the whole lab described by `config` and builds its report; calls
/// `on_connection` after each connection (for progress).
///
/// # Errors
///
/// As [`run_matrix`].
pub async fn run(
    config: &LabConfig,
    on_connection: Arc<dyn Fn() + Send + Sync>,
) -> Result<LabReport, LabError> {
    let kernel = KernelInfo::read();
    let cells = run_matrix(config, on_connection).await?;
    Ok(LabReport::new(kernel, cells))
}
