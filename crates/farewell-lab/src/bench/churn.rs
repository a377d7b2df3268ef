//! `farewell bench churn`: connections per second and server TIME-WAIT, plain tokio vs farewell.

use std::time::{Duration, Instant};

use anyhow::Context;
use farewell::census::{self, Filter, StateSet};
use farewell::TcpState;
use serde::Serialize;

use super::clients::{closed_loop, SourceAddrs};
use super::servers::{BenchServer, ServerKind};

/// How many servers a churn round runs.
pub const SERVER_COUNT: usize = ServerKind::ALL.len();

/// How a churn bench runs.
#[derive(Clone, Debug)]
pub struct ChurnConfig {
    /// Length of each run.
    pub duration: Duration,
    /// How many times each server runs (interleaved: A B C A B C …).
    pub rounds: usize,
    /// Closed-loop clients per run.
    pub clients: usize,
}

/// One server's figures over all its runs.
#[derive(Clone, Debug, Serialize)]
pub struct ChurnServer {
    /// `plain-tokio`, `farewell-peer-first` or `farewell-abort`.
    pub name: &'static str,
    /// Sessions completed (HELLO … BYE quit) over all runs.
    pub connections: u64,
    /// Sessions that failed.
    pub errors: u64,
    /// Completed sessions per second of run time.
    pub connections_per_sec: f64,
    /// Server threads' CPU time per completed session, in microseconds.
    pub cpu_us_per_connection: f64,
    /// The clients' thread's CPU time per completed session, in microseconds.
    ///
    /// On loopback the kernel does the receiving end's work in the sender's
    /// system call, so each side's CPU includes part of the other's: whoever
    /// closes second runs the first closer's final transitions (a plain
    /// server's TIME-WAIT is made in the client's `close()`; under peer-first
    /// the server's `close()` makes the client's). Compare totals
    /// ([`ChurnServer::total_cpu_us_per_connection`]) as well.
    pub client_cpu_us_per_connection: f64,
    /// Server plus clients CPU per completed session, in microseconds: the
    /// whole machine's work for one connection, whoever was charged for it.
    pub total_cpu_us_per_connection: f64,
    /// Server TIME-WAIT entries the kernel held at the end of each run, summed.
    pub server_time_wait: usize,
    /// Server sockets neither listening nor in TIME-WAIT after the run settled, summed (want 0).
    pub leftover: usize,
    /// `connections_per_sec` / plain tokio's.
    pub ratio_to_plain: f64,
    /// Each run's connections per second, in run order (to see the spread).
    pub runs: Vec<f64>,
}

/// Runs every server `rounds` times, interleaved, and sums up per server.
/// `each_run` is called after every run (for progress).
pub fn run(
    config: &ChurnConfig,
    mut each_run: impl FnMut(&str),
) -> anyhow::Result<Vec<ChurnServer>> {
    let client_threads = super::cpu::ThreadCpu::default();
    let register = client_threads.clone();
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-clients")
        .on_thread_start(move || register.register_current())
        .enable_all()
        .build()
        .context("starting the clients' runtime")?;
    let sources = SourceAddrs::default();
    let mut servers: Vec<ChurnServer> = ServerKind::ALL
        .iter()
        .map(|kind| ChurnServer {
            name: kind.name(),
            connections: 0,
            errors: 0,
            connections_per_sec: 0.0,
            cpu_us_per_connection: 0.0,
            client_cpu_us_per_connection: 0.0,
            total_cpu_us_per_connection: 0.0,
            server_time_wait: 0,
            leftover: 0,
            ratio_to_plain: 0.0,
            runs: Vec::new(),
        })
        .collect();
    let mut run_time = vec![Duration::ZERO; servers.len()];
    let mut cpu = vec![Duration::ZERO; servers.len()];
    let mut client_cpu = vec![Duration::ZERO; servers.len()];
    client_threads.wait_for_threads(1, Duration::from_secs(1));

    for _ in 0..config.rounds {
        for (i, &kind) in ServerKind::ALL.iter().enumerate() {
            let server =
                BenchServer::start(kind).context("starting a bench server on 127.0.0.1")?;
            let server_addr = server.addr;
            let cpu_before = server.cpu_time();
            let client_before = client_threads.total().unwrap_or_default();
            let started = Instant::now();
            let count = clients.block_on(closed_loop(
                server.addr,
                config.clients,
                config.duration,
                sources.clone(),
            ));
            let elapsed = started.elapsed();
            let client_used = client_threads
                .total()
                .unwrap_or_default()
                .saturating_sub(client_before);
            // Teardowns still running belong to the run: wait for them (bounded).
            let (cpu_used, _left) = server.finish(Duration::from_secs(5));
            let cpu_used = cpu_used.saturating_sub(cpu_before);
            let census = settle(server_addr)?;

            let row = &mut servers[i];
            row.connections += count.completed;
            row.errors += count.errors;
            row.server_time_wait += census.get(TcpState::TimeWait);
            row.leftover += census.total() - census.get(TcpState::TimeWait);
            row.runs
                .push(count.completed as f64 / elapsed.as_secs_f64());
            run_time[i] += elapsed;
            cpu[i] += cpu_used;
            client_cpu[i] += client_used;
            clear_time_wait(server_addr);
            each_run(kind.name());
        }
    }

    for (i, row) in servers.iter_mut().enumerate() {
        row.connections_per_sec = row.connections as f64 / run_time[i].as_secs_f64().max(1e-9);
        let per_connection = |d: Duration| d.as_secs_f64() * 1e6 / (row.connections.max(1) as f64);
        row.cpu_us_per_connection = per_connection(cpu[i]);
        row.client_cpu_us_per_connection = per_connection(client_cpu[i]);
        row.total_cpu_us_per_connection = per_connection(cpu[i] + client_cpu[i]);
    }
    let plain = servers[0].connections_per_sec.max(1e-9);
    for row in &mut servers {
        row.ratio_to_plain = row.connections_per_sec / plain;
    }
    Ok(servers)
}

/// Waits (bounded) until the server address holds only TIME-WAIT entries (its
/// listener is closed by then), and returns what the kernel holds there.
fn settle(server: std::net::SocketAddr) -> anyhow::Result<census::StateCounts> {
    // The exact address: a client bound to 127.1.x.y may have the port number too.
    let filter = Filter::local(server);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let counts =
            census::count_by_state(&filter).context("reading the kernel's socket table")?;
        let busy = counts.total() - counts.get(TcpState::TimeWait);
        if busy == 0 || Instant::now() >= deadline {
            return Ok(counts);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// With CAP_NET_ADMIN, removes the run's TIME-WAIT entries on both sides, so
/// one run's entries cannot fill the kernel's TIME-WAIT table
/// (`tcp_max_tw_buckets`) under the next run. They were counted already.
/// Only entries whose local or remote address is exactly the run's server are
/// touched.
pub fn clear_time_wait(server: std::net::SocketAddr) {
    if !census::has_net_admin() {
        return;
    }
    let tw = StateSet::single(TcpState::TimeWait);
    for filter in [Filter::local(server), Filter::remote(server)] {
        if let Ok(entries) = census::dump(&filter.states(tw)) {
            for entry in &entries {
                let _ = census::destroy(entry);
            }
        }
    }
}
