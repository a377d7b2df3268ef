//! `farewell bench http --proxy nginx`: a reverse proxy is the server's only
//! client, and a heavy one.
//!
//! nginx with its default upstream settings (no `proxy_http_version`, no
//! `keepalive`) sends each request upstream as HTTP/1.0 on a new connection
//! and closes that connection itself once it has read the response. Behind
//! it, a server whose policy never sends the first FIN (peer-first) leaves
//! every one of those TIME-WAIT entries to the proxy, on one source address
//! toward one server address and port: its `connect()` searches the ~28k
//! ephemeral ports past them for a free one, so the rate falls while the
//! CPU per request rises, and once all are held it fails (nginx logs it and
//! answers 502). A server that closes first (plain hyper, `--policy plain`)
//! keeps them itself.
//!
//! Topology, made fresh for every run by [`Hosts`] with one host: the server
//! listens on port [`PORT`](super::hosts::PORT) in its own namespace
//! (`10.201.0.1`); nginx listens on `127.0.0.1:8080` in the proxy's
//! namespace (`10.201.0.2`), joined to the server's by a veth pair; wrk runs
//! in the proxy's namespace too, into nginx over its loopback (keep-alive or
//! `Connection: close`, as the mode says). The census is read inside each
//! namespace: the proxy's TIME-WAIT toward the server's address and port,
//! wrk's toward nginx's, and the server's. Nothing is routed beyond the two
//! namespaces, and both are deleted when the run ends.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context;

use super::hosts::{time_wait_toward, Hosts, PORT};
use super::in_process::InProcess;
use super::nginx::{self, Nginx, Serves};
use super::{per_request, time_wait_overflows, wrk, Load, Measured, Mode, Run, Server};
use crate::bench::cpu::machine_busy_during;
use crate::lab::netns::Netns;

/// A reverse proxy that `--proxy` puts in front of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Proxy {
    /// nginx with its default upstream settings: HTTP/1.0, one connection per
    /// request, closed by nginx after the response.
    Nginx,
}

impl Proxy {
    /// Every proxy, for `--proxy`'s choices.
    pub const ALL: [Proxy; 1] = [Proxy::Nginx];

    /// The name in the table, the JSON and `--proxy`.
    pub fn name(self) -> &'static str {
        match self {
            Proxy::Nginx => "nginx",
        }
    }
}

impl std::fmt::Display for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Proxy {
    type Err = String;

    fn from_str(s: &str) -> Result<Proxy, String> {
        Proxy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown proxy `{s}`; choose nginx"))
    }
}

/// `None` when the proxy runs can run, or why not: no namespaces
/// (`CAP_NET_ADMIN`, `CAP_SYS_ADMIN`, `ip`), the proxy is not installed, or
/// TLS was asked for (the proxy runs speak plain HTTP on both legs).
pub(super) fn unavailable(proxy: Proxy, tls: bool) -> Option<String> {
    if tls {
        return Some("plain HTTP only (leave out --tls)".to_owned());
    }
    if let Some(why) = crate::lab::netns::unavailable() {
        return Some(why);
    }
    match proxy {
        Proxy::Nginx if !nginx::installed() => {
            Some("nginx is not installed (apt-get install nginx)".to_owned())
        }
        Proxy::Nginx => None,
    }
}

/// Where nginx listens, inside the proxy's namespace, for wrk.
fn proxy_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, PORT))
}

/// One run through the proxy: fresh namespaces, `server` listening in its
/// own, the proxy and wrk in the other; then the census in both. The
/// namespaces are deleted and the proxy stopped when it returns.
pub(super) async fn run_one_proxy(
    proxy: Proxy,
    server: Server,
    mode: Mode,
    round: u32,
    load: &Load,
) -> anyhow::Result<Run> {
    let hosts = Hosts::new(1, "http-proxy").context("making the proxy's namespaces")?;
    let proxy_ns: &Netns = &hosts.clients[0];
    let upstream = Hosts::server_addr(0);
    let overflows = || -> anyhow::Result<Option<u64>> {
        let server = hosts.server.run(time_wait_overflows)?;
        let proxy = proxy_ns.run(time_wait_overflows)?;
        Ok(server.zip(proxy).map(|(s, p)| s + p))
    };
    let overflow_before = overflows()?;
    let cpu_before = load.server_cpu.total();
    let running = InProcess::start_on(server, None, hosts.listen()?).await?;
    let nginx = match proxy {
        Proxy::Nginx => Nginx::start_in(proxy_ns, proxy_listen(), None, Serves::ProxyTo(upstream))?,
    };
    let (measured, busy) = machine_busy_during(drive_proxy(proxy_ns.name(), mode, load)).await;
    running.stop().await;
    let server_cpu = load
        .server_cpu
        .total()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    hosts.settle();
    let upstream_errors = nginx.error_log_lines_with("upstream");
    drop(nginx);
    if let Some(first) = upstream_errors.first() {
        eprintln!(
            "  {} upstream lines in {proxy}'s error log; the first: {first}",
            upstream_errors.len()
        );
    }
    let measured = measured?;
    let time_wait_overflow = overflow_before
        .zip(overflows()?)
        .map(|(before, after)| after.saturating_sub(before));
    Ok(Run {
        server: server.target,
        policy: server.policy_name(),
        mode,
        round,
        hosts: None,
        proxy: Some(proxy),
        requests: measured.requests,
        requests_per_sec: measured.requests_per_sec,
        errors: measured.errors,
        error_kinds: None,
        server_cpu_us_per_request: per_request(server_cpu, measured.requests),
        machine_cpu_us_per_request: per_request(busy, measured.requests),
        server_time_wait: hosts.server_time_wait()?,
        client_time_wait: time_wait_toward(proxy_ns, proxy_listen())?,
        client_time_wait_per_host: None,
        proxy_time_wait: Some(time_wait_toward(proxy_ns, upstream)?),
        proxy_upstream_errors: Some(upstream_errors.len() as u64),
        client_time_wait_per_source_max: None,
        time_wait_overflow,
    })
}

/// wrk in the proxy's namespace, into the proxy (wrk's settings as given).
async fn drive_proxy(ns: &str, mode: Mode, load: &Load) -> anyhow::Result<Measured> {
    let (requests, requests_per_sec, errors) =
        wrk::run(Some(ns), proxy_listen(), mode, load.wrk, false).await?;
    Ok(Measured {
        requests,
        requests_per_sec,
        errors,
        error_kinds: None,
    })
}
