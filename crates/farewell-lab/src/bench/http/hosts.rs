//! `farewell bench http --hosts N`: the clients are N hosts, each a network
//! namespace of its own joined to the server's namespace by its own veth
//! pair, each running one wrk (`-t1`) in the wrk modes, or in close-spread
//! our own closed-loop client ([`crate::bench::http_clients`]) on one thread
//! of its own, each connection from the next of the host's own source
//! addresses ([`HostSources`]).
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
//! `10.201.i.2`. Host `i` also owns all of `10.(128+i).0.0/16` (an "AnyIP"
//! local route in its namespace: `ip route add local 10.(128+i).0.0/16 dev
//! lo`, so every address in it can be bound without one `ip addr add` each),
//! and the server's namespace routes that /16 back through the host's veth
//! (`via 10.201.i.2`): the close-spread client binds each connection to the
//! next of them, so each source holds a few TIME-WAIT entries, as the
//! loopback close-spread's 127.1.x.y do. Nothing else is routed; no frame
//! leaves these namespaces.
//! Needs `CAP_NET_ADMIN` and `CAP_SYS_ADMIN` and the `ip` tool
//! ([`crate::lab::netns::unavailable`] says what is missing).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use farewell::census::{self, Filter, StateSet};
use farewell::TcpState;

use super::in_process::InProcess;
use super::nginx::{Nginx, Serves};
use super::node;
use super::{
    per_request, time_wait_overflows, wrk, HostsSettings, Load, Measured, Mode, Run, Server,
    Target, WrkSettings,
};
use crate::bench::cpu::machine_busy_during;
use crate::bench::http_clients::{self, HttpCount, HttpLoad, Sources};
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
    /// veth pair, all links up; host `i`'s namespace is named for
    /// `<role><i>` (`http-c0`, or `http-proxy0` for the proxy of
    /// [`super::proxy`]). Blocks (runs `ip`).
    pub(super) fn new(n: u32, role: &str) -> io::Result<Hosts> {
        let mut hosts = Hosts {
            server: Netns::new("http-srv")?,
            clients: Vec::new(),
        };
        for i in 0..n.min(MAX_HOSTS) {
            let client = Netns::new(&format!("{role}{i}"))?;
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
            // The host's own source addresses, and the server's way back to them.
            let sources = HostSources::network(i);
            client.ip(&["route", "add", "local", &sources, "dev", "lo"])?;
            #[rustfmt::skip]
            hosts.server.ip(&["route", "add", &sources, "via", &client_ip.to_string(), "dev", &server_end])?;
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

    /// Each host's TIME-WAIT entries toward the server (census inside the
    /// host's namespace), host 0 first.
    pub(super) fn client_time_wait_per_host(&self) -> anyhow::Result<Vec<usize>> {
        (0..self.clients.len())
            .map(|i| self.time_wait_toward_server(i))
            .collect()
    }

    /// Host `i`'s TIME-WAIT entries whose remote end is the server
    /// ([`Hosts::server_addr`]).
    pub(super) fn time_wait_toward_server(&self, i: usize) -> anyhow::Result<usize> {
        time_wait_toward(&self.clients[i], Hosts::server_addr(i as u32))
    }

    /// The most TIME-WAIT entries one client source address holds, over all
    /// the hosts: one wrk holds all its host's on one address; the
    /// close-spread clients a few per address.
    pub(super) fn client_time_wait_per_source_max(&self) -> anyhow::Result<usize> {
        let mut most = 0;
        for ns in &self.clients {
            let entries = ns
                .run(|| census::dump(&Filter::all().states(StateSet::single(TcpState::TimeWait))))?
                .with_context(|| format!("reading the socket table of {}", ns.name()))?;
            let mut per_source: std::collections::HashMap<IpAddr, usize> = Default::default();
            for entry in entries {
                *per_source.entry(entry.local.ip()).or_default() += 1;
            }
            most = most.max(per_source.into_values().max().unwrap_or(0));
        }
        Ok(most)
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

/// Host `i`'s own source addresses, round robin, shared by clones:
/// `10.(128+i).0.1`, … `10.(128+i).0.254`, `10.(128+i).1.1`, … up to
/// `10.(128+i).255.254` ([`HostSources::COUNT`]), then over again. The last
/// octet is never 0 or 255, as with loopback's 127.1.x.y.
#[derive(Clone, Debug)]
pub(super) struct HostSources {
    second_octet: u8,
    next: Arc<AtomicU64>,
}

impl HostSources {
    /// Distinct source addresses of one host.
    pub(super) const COUNT: u64 = 254 * 256;

    /// Host `i`'s addresses, from the first.
    pub(super) fn new(i: u32) -> HostSources {
        HostSources {
            second_octet: Self::second_octet(i),
            next: Arc::default(),
        }
    }

    /// Host `i`'s /16, as `ip route` takes it.
    fn network(i: u32) -> String {
        format!("10.{}.0.0/16", Self::second_octet(i))
    }

    fn second_octet(i: u32) -> u8 {
        128 + i.min(MAX_HOSTS - 1) as u8
    }

    /// The `n`-th address (modulo [`HostSources::COUNT`]).
    fn nth(&self, n: u64) -> Ipv4Addr {
        let n = n % Self::COUNT;
        Ipv4Addr::new(10, self.second_octet, (n / 254) as u8, (n % 254 + 1) as u8)
    }
}

impl Sources for HostSources {
    fn next_source(&self) -> IpAddr {
        IpAddr::V4(self.nth(self.next.fetch_add(1, Ordering::Relaxed)))
    }
}

fn server_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 201, i as u8, 1)
}

/// Sockets in `states` in namespace `ns` (the census answers for the
/// calling thread's namespace, so it is read on a thread inside it).
fn count_in(ns: &Netns, states: StateSet) -> anyhow::Result<usize> {
    count_matching(ns, Filter::all().states(states))
}

/// TIME-WAIT entries in namespace `ns` whose remote end is `remote`.
pub(super) fn time_wait_toward(ns: &Netns, remote: SocketAddr) -> anyhow::Result<usize> {
    count_matching(
        ns,
        Filter::remote(remote).states(StateSet::single(TcpState::TimeWait)),
    )
}

/// Sockets in namespace `ns` that `filter` lets through.
fn count_matching(ns: &Netns, filter: Filter) -> anyhow::Result<usize> {
    let counts = ns
        .run(|| census::count_by_state(&filter))?
        .with_context(|| format!("reading the socket table of {}", ns.name()))?;
    Ok(counts.total())
}

/// One run from many client hosts: fresh namespaces, `server` listening in
/// the server's, one `wrk -t1` (or, in close-spread, one client thread) in
/// each host's at once; the census read inside the namespaces. The
/// namespaces are deleted when it returns.
pub(super) async fn run_one_hosts(
    server: Server,
    mode: Mode,
    round: u32,
    settings: HostsSettings,
    load: &Load,
) -> anyhow::Result<Run> {
    let hosts = Arc::new(
        Hosts::new(settings.hosts, "http-c").context("making the client hosts' namespaces")?,
    );
    let overflow_before = hosts.server.run(time_wait_overflows)?;
    let per_host = WrkSettings {
        threads: 1,
        connections: settings.connections_per_host,
        ..load.wrk
    };
    let (measured, server_cpu, busy) = match server.target {
        Target::Nginx => {
            let nginx = Nginx::start_in(
                &hosts.server,
                Hosts::listen_addr(),
                load.tls.as_ref().map(|t| &*t.made),
                Serves::Hello,
            )?;
            let (measured, busy) =
                machine_busy_during(drive_hosts(&hosts, mode, per_host, load)).await;
            hosts.settle();
            drop(nginx);
            (measured?, None, busy)
        }
        Target::Node | Target::NodeFarewell => {
            let attached = server.target == Target::NodeFarewell;
            let within = Arc::clone(&hosts);
            let node = tokio::task::spawn_blocking(move || {
                let listen = Hosts::listen_addr();
                node::NodeServer::start(attached, listen, listen.ip(), Some(&within.server))
            })
            .await??;
            let cpu_before = node.cpu();
            let (measured, busy) =
                machine_busy_during(drive_hosts(&hosts, mode, per_host, load)).await;
            let cpu = node
                .cpu()
                .zip(cpu_before)
                .map(|(after, before)| after.saturating_sub(before));
            tokio::task::spawn_blocking(move || node.stop()).await?;
            hosts.settle();
            (measured?, cpu, busy)
        }
        _ => {
            let cpu_before = load.server_cpu.total();
            let running = InProcess::start_on(
                server,
                load.tls.as_ref().map(|t| Arc::clone(&t.config)),
                hosts.listen()?,
            )
            .await?;
            let (measured, busy) =
                machine_busy_during(drive_hosts(&hosts, mode, per_host, load)).await;
            running.stop().await;
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
    let client_time_wait_per_host = hosts.client_time_wait_per_host()?;
    Ok(Run {
        server: server.target,
        policy: server.policy_name(),
        mode,
        round,
        hosts: Some(settings.hosts),
        proxy: None,
        requests: measured.requests,
        requests_per_sec: measured.requests_per_sec,
        errors: measured.errors,
        error_kinds: measured.error_kinds,
        server_cpu_us_per_request,
        machine_cpu_us_per_request,
        server_time_wait: hosts.server_time_wait()?,
        client_time_wait: client_time_wait_per_host.iter().sum(),
        client_time_wait_per_host: Some(client_time_wait_per_host),
        proxy_time_wait: None,
        proxy_upstream_errors: None,
        client_time_wait_per_source_max: Some(hosts.client_time_wait_per_source_max()?),
        time_wait_overflow,
    })
}

/// One wrk per host (close-spread: [`drive_spread`]), all at once; their
/// counts and rates summed.
async fn drive_hosts(
    hosts: &Arc<Hosts>,
    mode: Mode,
    per_host: WrkSettings,
    load: &Load,
) -> anyhow::Result<Measured> {
    if !mode.uses_wrk() {
        return drive_spread(hosts, per_host.connections, load).await;
    }
    let tls = load.tls.is_some();
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

/// close-spread from every host at once: in each host's namespace a thread
/// of its own runs a current-thread runtime with `connections` closed-loop
/// clients (as one `wrk -t1` per host), each connection from the next of
/// the host's [`HostSources`]. Every response is checked
/// ([`http_clients::closed_loop`]); the hosts' counts and rates summed.
/// The run's request budget ([`super::SpreadSettings::max_requests`]) is
/// shared out among the hosts.
async fn drive_spread(
    hosts: &Arc<Hosts>,
    connections: u32,
    load: &Load,
) -> anyhow::Result<Measured> {
    let n = hosts.clients.len().max(1) as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..hosts.clients.len() {
        let hosts = Arc::clone(hosts);
        let http = HttpLoad {
            server: Hosts::server_addr(i as u32),
            connections: connections as usize,
            duration: Duration::from_secs_f64(load.spread.duration_s),
            max_requests: load.spread.max_requests.map(|max| (max / n).max(1)),
            rate: load.spread.rate.map(|rate| rate / n as f64),
        };
        // Netns::run blocks until the clients are done; on the clients'
        // runtime's blocking pool, never on a server thread.
        tasks.spawn_blocking_on(
            move || -> anyhow::Result<HttpCount> {
                let ns = &hosts.clients[i];
                let count = ns.run(move || -> io::Result<HttpCount> {
                    // This thread is in the host's namespace: so is every socket it makes.
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    Ok(runtime
                        .block_on(http_clients::closed_loop(http, HostSources::new(i as u32))))
                });
                count
                    .and_then(|made| made)
                    .with_context(|| format!("running the clients in {}", ns.name()))
            },
            &load.clients,
        );
    }
    let mut sum = Measured {
        requests: 0,
        requests_per_sec: 0.0,
        errors: 0,
        error_kinds: Some(Default::default()),
    };
    while let Some(done) = tasks.join_next().await {
        let count = done.context("a host's clients panicked")??;
        if let Some(first) = &count.first_error {
            eprintln!(
                "  {} failed requests from one host; the first: {first}",
                count.errors.total()
            );
        }
        sum.requests += count.responses;
        sum.requests_per_sec += count.responses as f64 / count.elapsed.as_secs_f64().max(1e-9);
        sum.errors += count.errors.total();
        if let Some(kinds) = sum.error_kinds.as_mut() {
            kinds.add(count.errors);
        }
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_sources_are_the_hosts_own_slash_16_round_robin() {
        let host = HostSources::new(3);
        assert_eq!(HostSources::network(3), "10.131.0.0/16");
        assert_eq!(host.next_source(), IpAddr::from([10, 131, 0, 1]));
        assert_eq!(host.clone().next_source(), IpAddr::from([10, 131, 0, 2]));
        assert_eq!(host.nth(253), Ipv4Addr::new(10, 131, 0, 254));
        assert_eq!(host.nth(254), Ipv4Addr::new(10, 131, 1, 1));
        assert_eq!(
            host.nth(HostSources::COUNT - 1),
            Ipv4Addr::new(10, 131, 255, 254)
        );
        assert_eq!(host.nth(HostSources::COUNT), host.nth(0));
        assert_eq!(HostSources::network(MAX_HOSTS - 1), "10.191.0.0/16");
    }
}
