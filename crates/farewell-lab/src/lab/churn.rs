//! Churn: a sustained rate of short connections per policy, with the
//! kernel's TIME-WAIT count sampled every 100 ms — how TIME-WAIT piles up on
//! a busy server under `plain` or `lingering`, and stays at 0 under
//! `peer-first`.
//!
//! For each policy the lab listens on a fresh port of 127.0.0.1 and opens
//! `rate` connections a second for `duration`. Every client is cooperative
//! (it reads the goodbye, then closes) and binds a source address of its own
//! from 127.1.0.1 on ([`addr`]; at most [`MAX_CONNECTIONS`] of them, fewer
//! than [`addr::COUNT`], so no two share one), so the client side never runs out of ports even though
//! it keeps the TIME-WAIT entries under peer-first (all clients use one port,
//! just below the ephemeral range: see `client_port`). The server side says
//! [`GOODBYE`](super::GOODBYE) and is torn down with the policy. A sampler
//! counts the port's sockets in TIME-WAIT by the census: the server's (local
//! port) and the clients' (remote port). Everything is bounded: at most
//! [`MAX_CONNECTIONS`] per policy, and the run stops at `duration` plus
//! [`DRAIN_BOUND`] whatever is still in flight.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::cell::lab_policy;
use super::peer::{self, COOPERATIVE_REACTION, GOODBYE};
use super::LabError;
use crate::support::{addr, kernel};
use farewell::census::{self, Filter, StateSet};
use farewell::{Policy, TcpState};

/// The most connections one policy's churn opens, whatever rate × duration says.
pub const MAX_CONNECTIONS: usize = 50_000;

// Every client of one policy's churn has a source address of its own: they
// all bind the same port (see `client_port`), so two sharing an address would
// collide on the same 4-tuple.
const _: () = assert!(MAX_CONNECTIONS <= addr::COUNT);

/// How long, after the last connection was opened, the run waits for the
/// teardowns and clients still in flight.
pub const DRAIN_BOUND: Duration = Duration::from_secs(3);

/// How often the census is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// How long one client may take from connect to close.
const CLIENT_BOUND: Duration = Duration::from_secs(2);

/// What a churn run does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChurnConfig {
    /// Policy names to run, one after another (see [`Policy::NAMES`]).
    pub policies: Vec<&'static str>,
    /// New connections per second (default 200).
    pub rate: u32,
    /// How long each policy's churn opens connections (default 3 s).
    pub duration: Duration,
    /// The lab's main deadline, as in [`LabConfig`](super::LabConfig).
    pub grace: Duration,
}

impl Default for ChurnConfig {
    fn default() -> Self {
        ChurnConfig {
            policies: Policy::NAMES.to_vec(),
            rate: 200,
            duration: Duration::from_secs(3),
            grace: Duration::from_millis(300),
        }
    }
}

impl ChurnConfig {
    /// Connections each policy opens: rate × duration, at most [`MAX_CONNECTIONS`].
    pub fn connections_per_policy(&self) -> usize {
        ((f64::from(self.rate) * self.duration.as_secs_f64()).ceil() as usize).min(MAX_CONNECTIONS)
    }
}

/// One census sample of a churn run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ChurnSample {
    /// Milliseconds since the policy's churn started.
    pub t_ms: u64,
    /// Server ends (local port = the listener's) in TIME-WAIT.
    pub server_time_wait: usize,
    /// Client ends (remote port = the listener's) in TIME-WAIT.
    pub client_time_wait: usize,
    /// Connections opened so far.
    pub opened: usize,
}

/// One policy's churn. Serialized as one element of the `churn` array (see
/// the [module docs](super)).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChurnReport {
    /// The policy's name.
    pub policy: String,
    /// Connections whose client read the goodbye and closed.
    pub connections: usize,
    /// Connections whose client did not read the goodbye: reset or EOF
    /// first (abort, silent), a connect or read error, or its 2 s bound ran out.
    pub failed: usize,
    /// The rate asked for, connections per second.
    pub rate_target: u32,
    /// Connections opened per second, measured over the opening phase.
    pub rate_achieved: f64,
    /// Most server TIME-WAIT entries in any sample.
    pub peak_server_time_wait: usize,
    /// Server TIME-WAIT entries in the last sample, after the drain.
    pub final_server_time_wait: usize,
    /// Client TIME-WAIT entries in the last sample.
    pub final_client_time_wait: usize,
    /// The census samples, every 100 ms, then one after the drain.
    pub samples: Vec<ChurnSample>,
    /// Why the policy did not run (`"needs CAP_NET_ADMIN"`), or `None`.
    pub skipped: Option<String>,
}

impl ChurnReport {
    fn skipped(policy: &str, rate: u32, why: &str) -> ChurnReport {
        ChurnReport {
            policy: policy.to_owned(),
            connections: 0,
            failed: 0,
            rate_target: rate,
            rate_achieved: 0.0,
            peak_server_time_wait: 0,
            final_server_time_wait: 0,
            final_client_time_wait: 0,
            samples: Vec::new(),
            skipped: Some(why.to_owned()),
        }
    }
}

/// Runs the churn of every policy in `config`, one after another, calling
/// `on_connection` after each connection ends.
///
/// # Errors
///
/// When the listener cannot be made or the census cannot be read. A
/// connection that fails is counted in `failed` and the run goes on.
pub async fn run_churn(
    config: &ChurnConfig,
    on_connection: Arc<dyn Fn() + Send + Sync>,
) -> Result<Vec<ChurnReport>, LabError> {
    let net_admin = census::has_net_admin();
    let mut reports = Vec::with_capacity(config.policies.len());
    for &name in &config.policies {
        if name == "silent" && !net_admin {
            reports.push(ChurnReport::skipped(
                name,
                config.rate,
                "needs CAP_NET_ADMIN",
            ));
            continue;
        }
        let policy = lab_policy(name, config.grace)?;
        reports.push(churn_one(name, policy, config, Arc::clone(&on_connection)).await?);
    }
    Ok(reports)
}

/// Counts the churn's TIME-WAIT entries on both sides of `port`, on the
/// blocking pool. Only connections with a churn client (a source address of
/// [`addr`], in 127.1.0.0/16) count: some other connection's *client* end may
/// have had the same local port earlier.
async fn sample(port: u16) -> Result<(usize, usize), LabError> {
    tokio::task::spawn_blocking(move || {
        let tw = StateSet::single(TcpState::TimeWait);
        let churn_client = |end: SocketAddr| addr::is_source(end.ip());
        let server = census::dump(&Filter::local_port(port).states(tw))?
            .iter()
            .filter(|e| churn_client(e.remote))
            .count();
        let client = census::dump(&Filter::remote_port(port).states(tw))?
            .iter()
            .filter(|e| churn_client(e.local))
            .count();
        Ok((server, client))
    })
    .await
    .map_err(|e| LabError::Peer(e.to_string()))?
}

/// A listener on a fresh port of 127.0.0.1. No `SO_REUSEADDR`, so the kernel
/// does not pick a port that still has TIME-WAIT entries from earlier runs.
fn listen() -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))?;
    socket.listen(1024)
}

/// The port every churn client binds: the one just below the kernel's
/// ephemeral range, so the many client TIME-WAIT entries that peer-first
/// leaves never share a port number with a listener bound to port 0 (which
/// would then count strangers). 0 (the kernel picks) when the range starts
/// too low. Each client has its own source address, so one port serves all.
fn client_port() -> u16 {
    kernel::ephemeral_port_range()
        .map(|range| *range.start())
        .filter(|&low| low > 1025)
        .map_or(0, |low| low - 1)
}

/// One cooperative client from `source:port` to `to`: reads the goodbye, then closes.
async fn client(source: Ipv4Addr, port: u16, to: SocketAddr) -> io::Result<()> {
    let socket = TcpSocket::new_v4()?;
    // The same address and port may still be in TIME-WAIT from an earlier
    // run, towards another listener port: a different 4-tuple, so reuse it.
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), port))?;
    let mut stream = socket.connect(to).await?;
    let mut received = Vec::new();
    let mut buf = [0u8; 256];
    while !peer::contains(&received, GOODBYE) {
        match stream.read(&mut buf).await? {
            0 => break,
            n => received.extend_from_slice(&buf[..n]),
        }
    }
    tokio::time::sleep(COOPERATIVE_REACTION).await;
    if peer::contains(&received, GOODBYE) {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no goodbye"))
    }
}

async fn churn_one(
    name: &str,
    policy: Policy,
    config: &ChurnConfig,
    on_connection: Arc<dyn Fn() + Send + Sync>,
) -> Result<ChurnReport, LabError> {
    let listener = listen().map_err(|e| LabError::Io("listening on 127.0.0.1", e))?;
    let to = listener
        .local_addr()
        .map_err(|e| LabError::Io("reading the address", e))?;
    let total = config.connections_per_policy();
    let started = Instant::now();
    let drain_deadline = tokio::time::Instant::now() + config.duration + DRAIN_BOUND;
    let opened = Arc::new(AtomicUsize::new(0));

    // The server: accept, and hand each connection to a teardown of its own.
    let (stop_tx, mut stop) = watch::channel(false);
    let server = tokio::spawn(async move {
        let mut teardowns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        teardowns.spawn(farewell::close(stream, policy, GOODBYE));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                },
                _ = stop.changed() => break,
            }
            while teardowns.try_join_next().is_some() {}
        }
        // Let the teardowns in flight finish (each is bounded by its policy).
        let _ = tokio::time::timeout_at(drain_deadline, async {
            while teardowns.join_next().await.is_some() {}
        })
        .await;
    });

    // The sampler: every 100 ms until told to stop.
    let (done_tx, mut done) = watch::channel(false);
    let sampler = tokio::spawn({
        let opened = Arc::clone(&opened);
        async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = done.changed() => break,
                }
                let (server_time_wait, client_time_wait) = sample(to.port()).await?;
                samples.push(ChurnSample {
                    t_ms: started.elapsed().as_millis() as u64,
                    server_time_wait,
                    client_time_wait,
                    opened: opened.load(Ordering::Relaxed),
                });
            }
            Ok::<_, LabError>(samples)
        }
    });

    // The clients: one every 1/rate seconds, bounded in count and time.
    let mut clients = JoinSet::new();
    let every = Duration::from_secs_f64(1.0 / f64::from(config.rate.max(1)));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let open_until = started + config.duration;
    let port = client_port();
    let mut ok = 0usize;
    for i in 0..total {
        tick.tick().await;
        if Instant::now() >= open_until && i > 0 {
            break;
        }
        opened.fetch_add(1, Ordering::Relaxed);
        let on_connection = Arc::clone(&on_connection);
        clients.spawn(async move {
            let ok = matches!(
                tokio::time::timeout(CLIENT_BOUND, client(addr::source(i), port, to)).await,
                Ok(Ok(()))
            );
            on_connection();
            ok
        });
        while let Some(r) = clients.try_join_next() {
            ok += usize::from(r.unwrap_or(false));
        }
    }
    let opening = started.elapsed();
    let count = opened.load(Ordering::Relaxed);

    // Drain: the clients (each bounded), then the server's teardowns.
    let _ = tokio::time::timeout_at(drain_deadline, async {
        while let Some(r) = clients.join_next().await {
            ok += usize::from(r.unwrap_or(false));
        }
    })
    .await;
    clients.abort_all();
    let _ = stop_tx.send(true);
    let _ = server.await;
    let _ = done_tx.send(true);
    let mut samples = sampler.await.map_err(|e| LabError::Peer(e.to_string()))??;
    // The final sample, after the drain: what the churn left behind.
    let (server_time_wait, client_time_wait) = sample(to.port()).await?;
    samples.push(ChurnSample {
        t_ms: started.elapsed().as_millis() as u64,
        server_time_wait,
        client_time_wait,
        opened: count,
    });
    Ok(ChurnReport {
        policy: name.to_owned(),
        connections: ok,
        failed: count - ok,
        rate_target: config.rate,
        rate_achieved: (count as f64 / opening.as_secs_f64() * 10.0).round() / 10.0,
        peak_server_time_wait: samples
            .iter()
            .map(|s| s.server_time_wait)
            .max()
            .unwrap_or(0),
        final_server_time_wait: server_time_wait,
        final_client_time_wait: client_time_wait,
        samples,
        skipped: None,
    })
}
