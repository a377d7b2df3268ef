//! `farewell bench http --hosts N`: the clients are N hosts, each a network
//! namespace of its own joined to the server's namespace by its own veth
//! pair, each running one wrk (`-t1`).
//!
//! A single wrk on loopback is one source address to one server address:
//! under peer-first it keeps every TIME-WAIT entry itself, and its
//! `connect()` pays for searching past them (see the CLI's help). Real
//! clients are many hosts, each with its own ports and its own TIME-WAIT
//! table: these namespaces are that. Every run makes them fresh, so every
//! server starts with an empty TIME-WAIT table, and the census read inside
//! the server's namespace counts that server's entries alone.
//!
//! Host `i` (from 0) and the server share the private /30 `10.201.i.0/30`:
//! the server end `fw-s<i>` holds `10.201.i.1`, the host's `fw-c` holds
//! `10.201.i.2`. Nothing else is routed; no frame leaves these namespaces.
//! Needs `CAP_NET_ADMIN` and `CAP_SYS_ADMIN` and the `ip` tool
//! ([`crate::lab::netns::unavailable`] says what is missing).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use farewell::census::{self, Filter, StateSet};
use farewell::TcpState;

use super::in_process::InProcess;
use super::nginx::Nginx;
use super::{
    per_request, time_wait_overflows, wrk, HostsSettings, Load, Measured, Mode, Run, Target,
    WrkSettings,
};
use crate::bench::cpu::machine_busy_during;
use crate::lab::netns::Netns;

/// The port every server listens on inside the server's namespace (which
/// is fresh, so nothing else uses it).
pub(super) const PORT: u16 = 8080;

/// The most hosts: one /30 per host in `10.201.0.0/16`, and a sane number
/// of namespaces for one machine.
pub const MAX_HOSTS: u32 = 64;

/// The server's namespace and the clients' namespaces, joined; all deleted on drop.
pub(super) struct Hosts {
    pub(super) server: Netns,
    pub(super) clients: Vec<Netns>,
}

impl Hosts {
    /// Makes the server's namespace and `n` hosts, each joined to it by a
    /// veth pair, all links up. Blocks (runs `ip`).
    pub(super) fn new(n: u32) -> io::Result<Hosts> {
        let mut hosts = Hosts {
            server: Netns::new("http-srv")?,
            clients: Vec::new(),
        };
        for i in 0..n.min(MAX_HOSTS) {
            let client = Netns::new(&format!("http-c{i}"))?;
            let server_end = format!("fw-s{i}");
            hosts.server.add_veth(&server_end, &client, "fw-c")?;
            let (server_ip, client_ip) = (server_ip(i), Ipv4Addr::new(10, 201, i as u8, 2));
            hosts.server.ip(&[
                "addr",
                "add",
                &format!("{server_ip}/30"),
                "dev",
                &server_end,
            ])?;
            client.ip(&["addr", "add", &format!("{client_ip}/30"), "dev", "fw-c"])?;
            hosts.server.ip(&["link", "set", &server_end, "up"])?;
            client.ip(&["link", "set", "fw-c", "up"])?;
            hosts.clients.push(client);
        }
        Ok(hosts)
    }

    /// Where host `i` reaches the server.
    pub(super) fn server_addr(i: u32) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(server_ip(i)), PORT)
    }

    /// Where the server listens: every address of its namespace.
    pub(super) fn listen_addr() -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT)
    }

    /// A listener on [`Hosts::listen_addr`], made inside the server's
    /// namespace (a socket keeps its namespace, whichever thread serves it).
    pub(super) fn listen(&self) -> anyhow::Result<std::net::TcpListener> {
        let listener = self
            .server
            .run(|| std::net::TcpListener::bind(Hosts::listen_addr()))?
            .context("listening in the server's namespace")?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    }

    /// TIME-WAIT entries in the server's namespace: all the server's, as
    /// nothing else runs there.
    pub(super) fn server_time_wait(&self) -> anyhow::Result<usize> {
        count_in(&self.server, StateSet::single(TcpState::TimeWait))
    }

    /// TIME-WAIT entries in all the hosts' namespaces: the clients'.
    pub(super) fn client_time_wait(&self) -> anyhow::Result<usize> {
        self.clients.iter().try_fold(0, |sum, ns| {
            Ok(sum + count_in(ns, StateSet::single(TcpState::TimeWait))?)
        })
    }

    /// Waits (bounded, 2 s) until no connection in the server's or the
    /// hosts' namespaces is still closing, so the census that follows sees
    /// every TIME-WAIT entry the run made.
    pub(super) fn settle(&self) {
        let closing = StateSet::all()
            .without(TcpState::TimeWait)
            .without(TcpState::Listen);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let busy: usize = std::iter::once(&self.server)
                .chain(&self.clients)
                .map(|ns| count_in(ns, closing).unwrap_or(0))
                .sum();
            if busy == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn server_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 201, i as u8, 1)
}

/// Sockets in `states` in namespace `ns` (the census answers for the
/// calling thread's namespace, so it is read on a thread inside it).
fn count_in(ns: &Netns, states: StateSet) -> anyhow::Result<usize> {
    let counts = ns
        .run(|| census::count_by_state(&Filter::all().states(states)))?
        .with_context(|| format!("reading the socket table of {}", ns.name()))?;
    Ok(counts.total())
}

/// One run from many client hosts: fresh namespaces, `target` listening in
/// the server's, one `wrk -t1` in each host's at once; the census read
/// inside the namespaces. The namespaces are deleted when it returns.
pub(super) async fn run_one_hosts(
    target: Target,
    mode: Mode,
    round: u32,
    settings: HostsSettings,
    load: &Load,
) -> anyhow::Result<Run> {
    let hosts = Hosts::new(settings.hosts).context("making the client hosts' namespaces")?;
    let overflow_before = hosts.server.run(time_wait_overflows)?;
    let per_host = WrkSettings {
        threads: 1,
        connections: settings.connections_per_host,
        ..load.wrk
    };
    let (measured, server_cpu, busy) = match target {
        Target::Nginx => {
            let nginx = Nginx::start_in(
                &hosts.server,
                Hosts::listen_addr(),
                load.tls.as_ref().map(|t| &*t.made),
            )?;
            let (measured, busy) =
                machine_busy_during(drive_hosts(&hosts, mode, per_host, load.tls.is_some())).await;
            hosts.settle();
            drop(nginx);
            (measured?, None, busy)
        }
        _ => {
            let cpu_before = load.server_cpu.total();
            let server = InProcess::start_on(
                target,
                load.tls.as_ref().map(|t| Arc::clone(&t.config)),
                hosts.listen()?,
            )
            .await?;
            let (measured, busy) =
                machine_busy_during(drive_hosts(&hosts, mode, per_host, load.tls.is_some())).await;
            server.stop().await;
            let cpu = load
                .server_cpu
                .total()
                .zip(cpu_before)
                .map(|(after, before)| after.saturating_sub(before));
            hosts.settle();
            (measured?, cpu, busy)
        }
    };
    let machine_cpu_us_per_request = per_request(busy, measured.requests);
    let server_cpu_us_per_request = per_request(server_cpu, measured.requests);
    let time_wait_overflow = overflow_before
        .zip(hosts.server.run(time_wait_overflows)?)
        .map(|(before, after)| after.saturating_sub(before));
    Ok(Run {
        server: target,
        mode,
        round,
        hosts: Some(settings.hosts),
        requests: measured.requests,
        requests_per_sec: measured.requests_per_sec,
        errors: measured.errors,
        error_kinds: None,
        server_cpu_us_per_request,
        machine_cpu_us_per_request,
        server_time_wait: hosts.server_time_wait()?,
        client_time_wait: hosts.client_time_wait()?,
        time_wait_overflow,
    })
}

/// One wrk per host, all at once; their counts and rates summed.
async fn drive_hosts(
    hosts: &Hosts,
    mode: Mode,
    per_host: WrkSettings,
    tls: bool,
) -> anyhow::Result<Measured> {
    let mut wrks = tokio::task::JoinSet::new();
    for (i, ns) in hosts.clients.iter().enumerate() {
        let name = ns.name().to_owned();
        let addr = Hosts::server_addr(i as u32);
        wrks.spawn(async move { wrk::run(Some(&name), addr, mode, per_host, tls).await });
    }
    let mut sum = Measured {
        requests: 0,
        requests_per_sec: 0.0,
        errors: 0,
        error_kinds: None,
    };
    while let Some(done) = wrks.join_next().await {
        let (requests, rate, errors) = done.context("a wrk task panicked")??;
        sum.requests += requests;
        sum.requests_per_sec += rate;
        sum.errors += errors;
    }
    Ok(sum)
}
