//! The lab: every teardown policy against every peer behaviour, on this
//! kernel, over real network paths, judged by the kernel's own socket table
//! and by what the peers' applications received.
//!
//! For each cell (one [`Policy`](farewell::Policy) × one [`Behaviour`] on
//! one path) the lab opens `connections` real connections. In each, the
//! peer behaves its way, the server side says the goodbye and is torn down
//! with [`close`](farewell::close), the peer is then ended (a peer that
//! reads until the goodbye is given the time to read what the server's
//! kernel still delivers), both ends are given time to leave their
//! transient closing states, and the census
//! ([`census::lookup`](farewell::census::lookup), read in each end's
//! namespace) says who holds TIME-WAIT and whether a server socket was left
//! over. What the peer's application received, checked byte for byte, says
//! whether the goodbye was delivered and how many bytes were lost. The lab
//! times each teardown itself; only the ending and "goodbye ACKed" columns
//! come from the library's [`Outcome`](farewell::Outcome), which is what
//! they describe.
//!
//! # Paths
//!
//! Every cell runs on each of [`LabConfig::paths`] ([`path`]): loopback
//! (127.0.0.1), `slow` (a rate-limited veth pair between two namespaces),
//! `wan` (round-trip time through a user-space forwarder, random loss by
//! nftables). On a path the server sockets live in its server namespace
//! and the clients in its client namespace. The default is loopback and,
//! where this process can make it (`CAP_NET_ADMIN`), `slow`: loopback has
//! no rate limit, round-trip time or loss, and hides what a teardown loses
//! on a network; a run on loopback alone says so in its `warnings`.
//!
//! # Goodbyes
//!
//! The goodbye is the line `BYE quit` ([`GOODBYE`]; `BYE handshake-timeout`
//! to a peer that never handshakes), except for the peers that
//! [take a last message](Behaviour::takes_last_message) (cooperative, slow
//! reader): they get a large one ([`LabConfig::large_goodbye`], 128 KiB by
//! default: a [`pattern`] body, then the line), like the last HTTP response
//! before a close, which a slow link or a slow reader takes seconds to
//! take. Every peer checks each byte it received ([`delivered`]).
//!
//! A peer that *vanishes* is played in namespaces of its own (a veth pair
//! for the loopback column, a path like the column's otherwise; needs
//! `CAP_NET_ADMIN`, its cells are skipped with the reason otherwise); all of
//! a column's connections run at once, before the other cells, so it costs
//! one deadline. A churn ([`run_churn`], `LabConfig::churn`) can follow, on
//! loopback: a sustained connection rate per policy with the TIME-WAIT
//! count sampled every 100 ms. A [`heavy`]-client run can follow too
//! (`LabConfig::heavy`, on a path of its own): one client address churning
//! connections as fast as it can next to a light one, per policy, with
//! who keeps TIME-WAIT counted on both sides. [`html`] draws the result as
//! one page.
//!
//! Deadlines are short (see [`lab_policy`]) so the whole matrix runs in
//! seconds; every wait is bounded ([`TEARDOWN_BOUND`] for a teardown,
//! [`PEER_BOUND`] for a peer still reading).
//!
//! # JSON schema
//!
//! [`LabReport::to_json`] prints one object. Fields are only ever added;
//! none is renamed or removed.
//!
//! ```text
//! {
//!   "kernel": {
//!     "release": "6.8.0-…",            // /proc/sys/kernel/osrelease (null if unreadable)
//!     "tcp_fin_timeout": "60",         // /proc/sys/net/ipv4/… (strings, as the kernel prints them)
//!     "tcp_tw_reuse": "2",
//!     "tcp_max_tw_buckets": "262144",
//!     "ip_local_port_range": "32768 60999",
//!     "net_admin": true                // CAP_NET_ADMIN: silent, vanishes and paths other than loopback need it
//!   },
//!   "paths": [ {                       // every path the cells ran on, in order
//!     "name": "slow",                  // what the cells' "path" says: the kind, or the whole spec when not the default
//!     "spec": "slow:rate=4000000bit,queue=32", // every setting, as --path reads it
//!     "mechanism": "veth + htb 4 Mbit/s each way, 32-frame queue",
//!     "rtt_ms": 0.05                   // measured: the fastest of a few TCP connects
//!   }, … ],
//!   "warnings": [ "only the loopback path ran…" ], // what to know before trusting the verdicts; often empty
//!   "cells": [ {
//!     "policy": "peer-first",          // a name from Policy::NAMES
//!     "behaviour": "cooperative",      // a name from Behaviour::LAB
//!     "path": "loopback",              // the name of one of "paths"
//!     "goodbye_bytes": 131072,         // the goodbye's length: the line (9), or the large last message
//!     "connections": 5,                // connections that ran to the end
//!     "server_time_wait": 0,           // of those, server end in TIME-WAIT (kernel census)
//!     "client_time_wait": 5,           // of those, client end in TIME-WAIT (kernel census)
//!     "goodbye_delivered_pct": 100.0,  // client application received the whole goodbye, every byte checked (null if 0 connections)
//!     "goodbye_acked_pct": 100.0,      // outcome.goodbye == confirmed (null if 0 connections)
//!     "bytes_lost": 0,                 // goodbye bytes the client applications did not receive, summed
//!     "release_ms_median": 2.1,        // until the server's descriptor was closed, timed by the lab (null if 0 connections)
//!     "release_ms_p99": 2.6,           // nearest-rank 99th percentile (the max below 100 connections)
//!     "release_ms_max": 2.6,
//!     "release_ms": [1.9, 2.1, 2.6],   // every connection's release time, ascending
//!     "leftover_sockets": 0,           // server ends in the table in a state other than TIME-WAIT after settling
//!     "leftover_states": {},           // those by state, e.g. { "FIN-WAIT-1": 5 } (orphans retransmitting to a vanished peer)
//!     "paths": { "peer-closed": 5 },   // Ending::name -> count
//!     "skipped": null,                 // or why the cell did not run: "needs CAP_NET_ADMIN"
//!     "errors": []                     // one message per connection that failed to run
//!   }, … ],                            // one per path × policy × behaviour: path-major, then policy-major
//!   "verdicts": [ "[slow] peer-first: no server TIME-WAIT in any cell; …", … ], // one per path × policy ("[path] " when several)
//!   "churn": [ {                       // empty unless a churn ran; one per policy, in order
//!     "policy": "plain",
//!     "connections": 600,              // clients that read the goodbye and closed
//!     "failed": 0,                     // clients that did not (reset/EOF first, error, 2 s bound)
//!     "rate_target": 200,              // connections per second asked for
//!     "rate_achieved": 199.6,          // opened per second over the opening phase
//!     "peak_server_time_wait": 600,    // most server TIME-WAIT entries in one sample (census)
//!     "final_server_time_wait": 600,   // in the last sample, after the drain
//!     "final_client_time_wait": 0,
//!     "samples": [ { "t_ms": 0, "server_time_wait": 0, "client_time_wait": 0, "opened": 0 }, … ],
//!     "skipped": null                  // or "needs CAP_NET_ADMIN" (silent)
//!   }, … ],
//!   "heavy": [ {                       // empty unless a heavy-client run ran; one per policy, in order
//!     "policy": "peer-first",
//!     "peer_time_wait": "auto",        // peer-first's PeerTimeWait; null for the other policies
//!     "path": "slow",                  // the path the run made for itself (its own namespaces)
//!     "threshold": 500,                // the closer's heavy_client_threshold, endings per minute
//!     "heavy": {                       // one address, ephemeral ports, as fast as it can
//!       "address": "10.200.0.2",
//!       "completed": 1500,             // connections whose application got the whole goodbye
//!       "opened": 1500,                // connect() calls that succeeded
//!       "connect_failed": 0,
//!       "connect_per_s": 748.2,        // connect() calls per second over the client's run
//!       "connect_ms_median": 1.1,
//!       "connect_ms_max": 7.9,         // the slowest connect()
//!       "client_time_wait": 500,       // the client's ends in TIME-WAIT (census of its namespace)
//!       "server_time_wait": 0,         // the server's ends toward it in TIME-WAIT
//!       "endings": { "peer-closed": 500, "reset-after-peer-fin": 1000 }, // Ending::name -> count
//!       "peer_fin": { "light": 500, "heavy": 1000 }, // PeerFinChoice::name -> count (peer-first only)
//!       "bytes_lost": 0,               // goodbye bytes the application did not receive, summed
//!       "first_error": null
//!     },
//!     "light": { "address": "10.200.1.2", "completed": 5, … }, // a few connections from another address
//!     "unattributed": {}               // outcomes whose peer address was unknown, by ending
//!   }, … ]
//! }
//! ```

mod cell;
mod churn;
pub mod heavy;
pub mod html;
mod matrix;
mod net;
pub mod path;
mod report;
mod svg;
mod vanish;

use std::sync::Arc;

pub use cell::{run_connection_on, slack};
// One connection, its peers and the namespaces: farewell-testkit's, which
// the core's tests share without building this crate's HTTP and TLS.
pub use churn::{
    run_churn, ChurnConfig, ChurnReport, ChurnSample, DRAIN_BOUND, MAX_CONNECTIONS, SAMPLE_EVERY,
};
use farewell_testkit::lab::peer;
pub use farewell_testkit::lab::{
    netns, run_connection, LabError, Trial, PEER_BOUND, PEER_QUIET, TEARDOWN_BOUND,
};
pub use heavy::{heavy_path, run_heavy, HeavyConfig, HeavyPolicy, HeavyReport};
pub use matrix::{
    default_paths, lab_policy, lab_policy_on, make_paths, path_name, planned_connections,
    run_matrix, run_matrix_on, CellReport, LabConfig, LabPath, PathReport, DEFAULT_LARGE_GOODBYE,
};
pub use peer::{
    delivered, last_message, pattern, Behaviour, COOPERATIVE_REACTION, GOODBYE,
    HANDSHAKE_TIMEOUT_GOODBYE,
};
pub use report::{loopback_only_warning, verdicts, KernelInfo, LabReport};

/// Runs the whole lab described by `config` — makes its paths, runs the
/// vanished peers (in network namespaces) and the matrix on each, removes
/// the paths, then runs the churn and the heavy client if asked — and
/// builds its report; calls `on_connection` after each connection (for
/// progress).
///
/// # Errors
///
/// As [`run_matrix`].
pub async fn run(
    config: &LabConfig,
    on_connection: Arc<dyn Fn() + Send + Sync>,
) -> Result<LabReport, LabError> {
    let kernel = KernelInfo::read();
    let made = matrix::make_paths(config).await?;
    let paths: Vec<PathReport> = made.iter().map(PathReport::of).collect();
    let cells = run_matrix_on(config, &made, Arc::clone(&on_connection)).await;
    // The paths go before the churn starts: deleting them forks `ip`.
    matrix::drop_paths(made).await;
    let cells = cells?;
    let churn = match &config.churn {
        Some(churn) => run_churn(churn, Arc::clone(&on_connection)).await?,
        None => Vec::new(),
    };
    let heavy = match &config.heavy {
        Some(heavy) => run_heavy(heavy, on_connection).await?,
        None => Vec::new(),
    };
    Ok(LabReport::new(kernel, paths, cells, churn).with_heavy(heavy))
}
