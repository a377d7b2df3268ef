//! The heavy client next to a light one: who keeps TIME-WAIT when one client
//! address opens connections as fast as it can (a reverse proxy, a load
//! balancer, a load generator) while another opens a few.
//!
//! For each policy (peer-first once per [`PeerTimeWait`] setting) the lab
//! makes one [`Closer`] with the run's
//! [`heavy_client_threshold`](farewell::CloserBuilder::heavy_client_threshold)
//! and a listener on a fresh port of the path's server namespace, then
//! starts two clients in the client namespace:
//!
//! * the **heavy** client: one address ([`CLIENT_IP`], the path's own; on
//!   loopback 127.0.0.1), ephemeral ports from the kernel, [`HEAVY_WORKERS`]
//!   connections in flight, as fast as it can, until `connections` or
//!   `duration`, whichever comes first;
//! * the **light** client: `light` connections from another address
//!   ([`LIGHT_IP`], added to the path; on loopback [`LOOPBACK_LIGHT_IP`]),
//!   spread over `duration` (the rest one after another once the heavy
//!   client is done).
//!
//! Every connection is cooperative: the server says [`GOODBYE`] and is torn
//! down by the closer; the client reads it, checks every byte, and closes
//! ([`COOPERATIVE_REACTION`](super::COOPERATIVE_REACTION) later, as the
//! lab's cooperative peer does). Once both clients are done and the closer is idle, the census of
//! each namespace, by the listener's port, says who holds TIME-WAIT: the
//! server's ends (local address = the listener's) and each client's ends
//! (remote address = the listener's), split by client address. The
//! closer's outcomes say how each teardown ended, per client.
//!
//! Expected under peer-first with [`PeerTimeWait::Auto`]: the first
//! `threshold` endings of the heavy client in the minute are passive closes
//! ([`Ending::PeerClosed`](farewell::Ending::PeerClosed): it keeps their
//! TIME-WAIT), every later one a reset after its FIN
//! ([`Ending::ResetAfterPeerFin`](farewell::Ending::ResetAfterPeerFin):
//! nobody keeps one), so it holds about `threshold` entries; the light
//! client keeps one per connection; the server none. Under `plain` the
//! server keeps one per connection; under `abort` nobody does, and the
//! goodbye may be lost over a slow path.
//!
//! Everything is bounded: the counts, the duration, each connection
//! (each connection's connect and read bounds), the closer's drain ([`DRAIN_BOUND`]) and the wait
//! for the closing states to settle ([`SETTLE_BOUND`]).

mod client;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::cell::lab_policy_on;
use super::matrix::{default_paths, new_path, path_name};
use super::path::{NetPath, PathKind, PathSpec, CLIENT_IP};
use super::peer::GOODBYE;
use super::LabError;
use farewell::census::{self, Filter, StateSet};
use farewell::{Closer, PeerTimeWait, TcpState, DEFAULT_HEAVY_CLIENT_THRESHOLD};

/// The light client's address on a path other than loopback (a /32 added
/// next to [`CLIENT_IP`]: see [`NetPath::add_client_ip`]).
pub const LIGHT_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 2);

/// The light client's address on loopback (the heavy one is 127.0.0.1).
pub const LOOPBACK_LIGHT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Connections the heavy client keeps in flight at once.
pub const HEAVY_WORKERS: usize = 4;

/// The most connections the heavy client opens per policy, whatever the config says.
pub const MAX_HEAVY_CONNECTIONS: usize = 20_000;

/// How long, after the clients are done, the closer may take to finish its teardowns.
pub const DRAIN_BOUND: Duration = Duration::from_secs(10);

/// How long the sockets of a run may stay in a closing state before the census counts.
pub const SETTLE_BOUND: Duration = Duration::from_secs(3);

/// One policy of the heavy-client run: a name of [`Policy::NAMES`](farewell::Policy::NAMES),
/// and for peer-first who keeps TIME-WAIT after the peer's FIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeavyPolicy {
    /// The policy's name.
    pub name: &'static str,
    /// Peer-first's [`PeerTimeWait`]; ignored by the other policies.
    pub peer_time_wait: PeerTimeWait,
}

impl HeavyPolicy {
    /// The policies a heavy-client run compares by default: plain,
    /// lingering, fin-then-reset, abort, and peer-first with each of auto,
    /// keep and spare.
    pub fn defaults() -> Vec<HeavyPolicy> {
        let plain = |name| HeavyPolicy {
            name,
            peer_time_wait: PeerTimeWait::Auto,
        };
        let peer_first = |peer_time_wait| HeavyPolicy {
            name: "peer-first",
            peer_time_wait,
        };
        vec![
            plain("plain"),
            plain("lingering"),
            plain("fin-then-reset"),
            plain("abort"),
            peer_first(PeerTimeWait::Auto),
            peer_first(PeerTimeWait::Keep),
            peer_first(PeerTimeWait::Spare),
        ]
    }

    /// `peer-first/auto` for peer-first, the name otherwise.
    pub fn label(&self) -> String {
        match self.name {
            "peer-first" => format!("{}/{}", self.name, self.peer_time_wait),
            name => name.to_owned(),
        }
    }
}

/// What a heavy-client run does.
#[derive(Clone, Debug, PartialEq)]
pub struct HeavyConfig {
    /// The policies, one run each, one after another (default [`HeavyPolicy::defaults`]).
    pub policies: Vec<HeavyPolicy>,
    /// The path the run makes for itself (default: the `slow` path where
    /// this process can make it, else loopback; see [`heavy_path`]).
    pub path: PathSpec,
    /// The heavy client's connections per policy, at most (default 3,000;
    /// capped at [`MAX_HEAVY_CONNECTIONS`]).
    pub connections: usize,
    /// How long the heavy client opens connections per policy, at most (default 2 s).
    pub duration: Duration,
    /// The light client's connections per policy (default 5).
    pub light: usize,
    /// The closer's heavy-client threshold (default
    /// [`DEFAULT_HEAVY_CLIENT_THRESHOLD`], 500 endings a minute).
    pub threshold: u32,
    /// The lab's main deadline, as in [`LabConfig`](super::LabConfig).
    pub grace: Duration,
}

impl Default for HeavyConfig {
    fn default() -> Self {
        HeavyConfig {
            policies: HeavyPolicy::defaults(),
            path: heavy_path(&default_paths()),
            connections: 3_000,
            duration: Duration::from_secs(2),
            light: 5,
            threshold: DEFAULT_HEAVY_CLIENT_THRESHOLD,
            grace: Duration::from_millis(300),
        }
    }
}

impl HeavyConfig {
    /// The most connections the run opens, both clients and every policy (for a progress bar).
    pub fn planned_connections(&self) -> usize {
        self.policies.len() * (self.connections.min(MAX_HEAVY_CONNECTIONS) + self.light)
    }
}

/// The path a heavy-client run takes among `paths`: the first that is not
/// loopback, else `slow` where this process can make it, else loopback
/// (where the run still counts who keeps TIME-WAIT, but no goodbye is lost
/// to a network: the report warns).
pub fn heavy_path(paths: &[PathSpec]) -> PathSpec {
    if let Some(spec) = paths.iter().find(|p| p.kind() != PathKind::Loopback) {
        return *spec;
    }
    if PathKind::Slow.unavailable().is_none() {
        return PathKind::Slow.into();
    }
    PathSpec::Loopback
}

/// One client's side of one policy's run. Serialized inside each element
/// of the `heavy` array (see the [module docs](super)).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClientReport {
    /// The client's address.
    pub address: String,
    /// Connections whose client application received the whole goodbye, every byte checked.
    pub completed: usize,
    /// `connect()` calls that succeeded.
    pub opened: usize,
    /// `connect()` calls that failed (within their 3 s bound).
    pub connect_failed: usize,
    /// Connections opened per second, over the client's whole run.
    pub connect_per_s: f64,
    /// The median `connect()`, in milliseconds (`None` if none succeeded).
    pub connect_ms_median: Option<f64>,
    /// The slowest `connect()`, in milliseconds.
    pub connect_ms_max: Option<f64>,
    /// The client's ends in TIME-WAIT after the run (census of its namespace).
    pub client_time_wait: usize,
    /// The server's ends toward this client in TIME-WAIT after the run.
    pub server_time_wait: usize,
    /// How the server's teardowns toward this client ended (by [`Ending::name`](farewell::Ending::name)).
    pub endings: BTreeMap<String, usize>,
    /// Peer-first's choice at the client's FIN, by [`PeerFinChoice::name`](farewell::PeerFinChoice::name)
    /// (`light`, `heavy` under auto; `kept`, `spared`; `half-close`); empty
    /// for the other policies.
    pub peer_fin: BTreeMap<String, usize>,
    /// Goodbye bytes the client application did not receive, summed.
    pub bytes_lost: u64,
    /// The first error the client met (a reset while reading, under abort), if any.
    pub first_error: Option<String>,
}

/// One policy's heavy-client run. Serialized as one element of the `heavy`
/// array (see the [module docs](super)).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeavyReport {
    /// The policy's name (see [`Policy::NAMES`](farewell::Policy::NAMES)).
    pub policy: String,
    /// Peer-first's [`PeerTimeWait`] setting, `None` for the other policies.
    pub peer_time_wait: Option<String>,
    /// The name of the path the run took (as the lab's `paths` name them).
    pub path: String,
    /// The closer's heavy-client threshold, endings per minute.
    pub threshold: u32,
    /// The heavy client.
    pub heavy: ClientReport,
    /// The light client.
    pub light: ClientReport,
    /// Outcomes whose peer address the closer could not tell (a reset at
    /// that moment), by ending; usually empty.
    pub unattributed: BTreeMap<String, usize>,
}

impl HeavyReport {
    /// `peer-first/auto` for peer-first, the policy's name otherwise.
    pub fn label(&self) -> String {
        match &self.peer_time_wait {
            Some(choice) => format!("{}/{choice}", self.policy),
            None => self.policy.clone(),
        }
    }
}

/// Runs every policy of `config` on a path made for the run (removed after),
/// calling `on_connection` after each client connection.
///
/// # Errors
///
/// When the path, the light client's address or a listener cannot be made,
/// or the census cannot be read. A connection that fails is counted and the
/// run goes on.
pub async fn run_heavy(
    config: &HeavyConfig,
    on_connection: Arc<dyn Fn() + Send + Sync>,
) -> Result<Vec<HeavyReport>, LabError> {
    let path = Arc::new(new_path(config.path).await?);
    let light_ip: IpAddr = match path.kind() {
        PathKind::Loopback => LOOPBACK_LIGHT_IP.into(),
        _ => {
            let p = Arc::clone(&path);
            tokio::task::spawn_blocking(move || p.add_client_ip(LIGHT_IP))
                .await
                .map_err(|e| LabError::Peer(e.to_string()))?
                .map_err(|e| LabError::Io("adding the light client's address", e))?;
            LIGHT_IP.into()
        }
    };
    let mut reports = Vec::with_capacity(config.policies.len());
    let mut result = Ok(());
    for policy in &config.policies {
        match run_one(config, *policy, &path, light_ip, Arc::clone(&on_connection)).await {
            Ok(report) => reports.push(report),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    // Deleting the namespaces forks `ip`: only once every socket is closed.
    let _ = tokio::task::spawn_blocking(move || drop(path)).await;
    result.map(|()| reports)
}

/// Counts by name: of endings, or of peer-first's choices at the peer's FIN.
type Counts = BTreeMap<String, usize>;

/// The outcomes of one run, per client address: by ending, by peer-first's choice.
#[derive(Default)]
struct Endings {
    by_peer: BTreeMap<IpAddr, (Counts, Counts)>,
    unattributed: BTreeMap<String, usize>,
}

async fn run_one(
    config: &HeavyConfig,
    policy: HeavyPolicy,
    path: &Arc<NetPath>,
    light_ip: IpAddr,
    on_connection: Arc<dyn Fn() + Send + Sync>,
) -> Result<HeavyReport, LabError> {
    let farewell_policy = lab_policy_on(policy.name, config.grace, path.spec())?
        .with_peer_time_wait(policy.peer_time_wait);
    let endings = Arc::new(Mutex::new(Endings::default()));
    let closer = Closer::builder(farewell_policy)
        .heavy_client_threshold(config.threshold)
        .on_outcome({
            let endings = Arc::clone(&endings);
            move |outcome| {
                let mut endings = endings.lock().unwrap_or_else(|p| p.into_inner());
                let ending = outcome.ending.name().to_owned();
                match outcome.peer {
                    Some(peer) => {
                        let (by_ending, by_choice) = endings.by_peer.entry(peer.ip()).or_default();
                        *by_ending.entry(ending).or_default() += 1;
                        if let Some(choice) = outcome.peer_fin {
                            *by_choice.entry(choice.name().to_owned()).or_default() += 1;
                        }
                    }
                    None => *endings.unattributed.entry(ending).or_default() += 1,
                }
            }
        })
        .build();

    // A fresh port in the server's namespace, without SO_REUSEADDR: the
    // kernel picks none that still has TIME-WAIT entries of earlier runs.
    let listener = {
        let p = Arc::clone(path);
        tokio::task::spawn_blocking(move || {
            p.server(|| {
                let listener = std::net::TcpListener::bind((p.server_ip(), 0))?;
                listener.set_nonblocking(true)?;
                Ok::<_, std::io::Error>(listener)
            })?
        })
        .await
        .map_err(|e| LabError::Peer(e.to_string()))?
        .map_err(|e| LabError::Io("listening in the server's namespace", e))?
    };
    let listener =
        TcpListener::from_std(listener).map_err(|e| LabError::Io("registering the listener", e))?;
    let to = listener
        .local_addr()
        .map_err(|e| LabError::Io("reading the address", e))?;

    let (stop_tx, mut stop) = watch::channel(false);
    let server = tokio::spawn({
        let closer = closer.clone();
        async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => closer.close(stream, GOODBYE),
                        Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                    },
                    _ = stop.changed() => break,
                }
            }
        }
    });

    let start = Instant::now();
    let heavy_plan = client::Plan {
        // The path's own address, chosen by the kernel with the port.
        from: None,
        to,
        count: config.connections.min(MAX_HEAVY_CONNECTIONS),
        until: start + config.duration,
        workers: HEAVY_WORKERS,
        spacing: Duration::ZERO,
    };
    let light_plan = client::Plan {
        from: Some(light_ip),
        to,
        count: config.light,
        // Spread over the heavy client's time (the rest at once if it ends
        // early); never cut by it.
        until: start + config.duration + Duration::from_secs(60),
        workers: 1,
        spacing: config.duration / (config.light as u32 + 1),
    };
    let (heavy, light) = {
        let p = Arc::clone(path);
        let tick = Arc::clone(&on_connection);
        tokio::task::spawn_blocking(move || {
            p.client(|| {
                let heavy_done = AtomicBool::new(false);
                std::thread::scope(|scope| {
                    let light = scope.spawn(|| client::run(&light_plan, &*tick, &heavy_done));
                    let heavy = client::run(&heavy_plan, &*tick, &AtomicBool::new(false));
                    heavy_done.store(true, Ordering::Relaxed);
                    (heavy, light.join().unwrap_or_default())
                })
            })
        })
        .await
        .map_err(|e| LabError::Peer(e.to_string()))?
        .map_err(|e| LabError::Io("entering the client's namespace", e))?
    };
    let heavy_ip = match path.kind() {
        PathKind::Loopback => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => IpAddr::V4(CLIENT_IP),
    };

    let _ = stop_tx.send(true);
    let _ = server.await;
    let _ = tokio::time::timeout(DRAIN_BOUND, closer.idle()).await;
    closer.hurry();
    settle(path, to).await?;
    let census = census_of(path, to).await?;
    drop(closer);

    let mut endings = std::mem::take(&mut *endings.lock().unwrap_or_else(|p| p.into_inner()));
    let mut report_of = |tally: client::Tally, ip: IpAddr| {
        let (by_ending, by_choice) = endings.by_peer.remove(&ip).unwrap_or_default();
        client_report(tally, ip, &census, by_ending, by_choice)
    };
    let heavy = report_of(heavy, heavy_ip);
    let light = report_of(light, light_ip);
    // Outcomes from an address of neither client cannot happen on the run's
    // own port; were there any, they are shown rather than lost.
    for (_, (by_ending, _)) in std::mem::take(&mut endings.by_peer) {
        for (ending, n) in by_ending {
            *endings.unattributed.entry(ending).or_default() += n;
        }
    }
    Ok(HeavyReport {
        policy: policy.name.to_owned(),
        peer_time_wait: (policy.name == "peer-first").then(|| policy.peer_time_wait.to_string()),
        path: path_name(path.spec()),
        threshold: config.threshold,
        heavy,
        light,
        unattributed: endings.unattributed,
    })
}

fn client_report(
    tally: client::Tally,
    ip: IpAddr,
    census: &Census,
    endings: BTreeMap<String, usize>,
    peer_fin: BTreeMap<String, usize>,
) -> ClientReport {
    let mut ms: Vec<f64> = tally
        .connects
        .iter()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    ms.sort_by(f64::total_cmp);
    let round = |x: f64| (x * 100.0).round() / 100.0;
    ClientReport {
        address: ip.to_string(),
        completed: tally.completed,
        opened: tally.opened,
        connect_failed: tally.connect_failed,
        connect_per_s: round(
            (tally.opened + tally.connect_failed) as f64 / tally.elapsed.as_secs_f64().max(1e-9),
        ),
        connect_ms_median: ms.get(ms.len() / 2).copied().map(round),
        connect_ms_max: ms.last().copied().map(round),
        client_time_wait: census.client.get(&ip).copied().unwrap_or(0),
        server_time_wait: census.server.get(&ip).copied().unwrap_or(0),
        endings,
        peer_fin,
        bytes_lost: tally.bytes_lost,
        first_error: tally.first_error,
    }
}

/// TIME-WAIT entries of one run, by client address.
struct Census {
    /// Server ends (local address = the listener's), by remote address.
    server: BTreeMap<IpAddr, usize>,
    /// Client ends (remote address = the listener's), by local address.
    client: BTreeMap<IpAddr, usize>,
}

/// The run's sockets in each namespace: the server's (local = `to`) and the
/// clients' (remote = `to`), in `states`.
async fn sockets(
    path: &Arc<NetPath>,
    to: SocketAddr,
    states: StateSet,
) -> Result<(Vec<census::SocketEntry>, Vec<census::SocketEntry>), LabError> {
    let p = Arc::clone(path);
    tokio::task::spawn_blocking(move || {
        let io = |e| LabError::Io("entering the path's namespace", e);
        let server = p
            .server(|| census::dump(&Filter::local(to).states(states)))
            .map_err(io)??;
        let client = p
            .client(|| census::dump(&Filter::remote(to).states(states)))
            .map_err(io)??;
        Ok((server, client))
    })
    .await
    .map_err(|e| LabError::Peer(e.to_string()))?
}

/// Waits (at most [`SETTLE_BOUND`]) until no socket of the run is still
/// closing or open, so that the census counts what stays.
async fn settle(path: &Arc<NetPath>, to: SocketAddr) -> Result<(), LabError> {
    let closing = StateSet::only(&[
        TcpState::Established,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::CloseWait,
        TcpState::Closing,
        TcpState::LastAck,
    ]);
    let deadline = Instant::now() + SETTLE_BOUND;
    loop {
        let (server, client) = sockets(path, to, closing).await?;
        if server.is_empty() && client.is_empty() || Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn census_of(path: &Arc<NetPath>, to: SocketAddr) -> Result<Census, LabError> {
    let (server, client) = sockets(path, to, StateSet::single(TcpState::TimeWait)).await?;
    let mut census = Census {
        server: BTreeMap::new(),
        client: BTreeMap::new(),
    };
    for entry in server {
        *census.server.entry(entry.remote.ip()).or_default() += 1;
    }
    for entry in client {
        *census.client.entry(entry.local.ip()).or_default() += 1;
    }
    Ok(census)
}
