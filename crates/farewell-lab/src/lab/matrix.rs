//! The matrix: every policy against every behaviour on every network path,
//! N connections per cell, with bounded concurrency, aggregated into one
//! [`CellReport`] per cell; the vanished peers' column comes from
//! [`vanish`](super::vanish).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::net::Net;
use super::path::{NetPath, PathKind, PathSpec};
use super::peer::{self, Behaviour};
use super::LabError;
use farewell::{census, Policy};
use farewell_testkit::lab::run_on;
use farewell_testkit::lab::Net as _;

// Their home is `cell`; re-exported for the paths `lab::matrix::…` that
// `lab/mod.rs` (and code written against it) uses.
pub use super::cell::{lab_policy, lab_policy_on, CellReport};

/// The default size of the large last message (see [`LabConfig::large_goodbye`]).
pub const DEFAULT_LARGE_GOODBYE: usize = 128 * 1024;

/// What the lab runs.
#[derive(Clone, Debug, PartialEq)]
pub struct LabConfig {
    /// Policy names to run (see [`Policy::NAMES`]), in order.
    pub policies: Vec<&'static str>,
    /// Peer behaviours to run, in order (default [`Behaviour::LAB`], all the
    /// lab plays).
    pub behaviours: Vec<Behaviour>,
    /// The network paths every cell runs on, in order (default
    /// [`default_paths`]: loopback, and a slow path where this process can
    /// make one).
    pub paths: Vec<PathSpec>,
    /// Connections per cell (default 5).
    pub connections: usize,
    /// The lab's time scale G (default 300 ms), from which every deadline derives; see [`lab_policy`].
    pub grace: Duration,
    /// How many cells run at once, over all paths (default 6).
    pub concurrency: usize,
    /// The size of the large last message the server says to the peers
    /// that [take one](Behaviour::takes_last_message) (cooperative, slow
    /// reader), like a last HTTP response before a close: a checkable
    /// pattern, then the goodbye line (default 128 KiB,
    /// [`DEFAULT_LARGE_GOODBYE`]; at most the line's length: the line only).
    pub large_goodbye: usize,
    /// The loopback address to run on (default 127.0.0.1).
    pub ip: IpAddr,
    /// Also run a churn after the matrix (default `None`); see [`run_churn`](super::run_churn).
    pub churn: Option<super::ChurnConfig>,
    /// Also run a heavy client next to a light one after that (default
    /// `None`); see [`run_heavy`](super::run_heavy).
    pub heavy: Option<super::HeavyConfig>,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            policies: Policy::NAMES.to_vec(),
            behaviours: Behaviour::LAB.to_vec(),
            paths: default_paths(),
            connections: 5,
            grace: Duration::from_millis(300),
            concurrency: 6,
            large_goodbye: DEFAULT_LARGE_GOODBYE,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            churn: None,
            heavy: None,
        }
    }
}

/// The paths a default lab runs on: loopback, and the [`slow`](PathKind::Slow)
/// path when this process can make it ([`PathKind::unavailable`]), so that
/// the verdicts speak about a network with a rate limit, not only about
/// loopback (which has no rate limit, delay or loss).
pub fn default_paths() -> Vec<PathSpec> {
    let mut paths = vec![PathSpec::Loopback];
    if PathKind::Slow.unavailable().is_none() {
        paths.push(PathKind::Slow.into());
    }
    paths
}

/// The name a report gives the path `spec`: its kind when it has the
/// kind's default settings (`"slow"`), else the whole spec
/// (`"slow:rate=500000bit,queue=16"`).
pub fn path_name(spec: &PathSpec) -> String {
    if *spec == PathSpec::from(spec.kind()) {
        spec.kind().name().to_owned()
    } else {
        spec.to_string()
    }
}

/// One path of the run, made: its name in the report and the path itself.
#[derive(Debug)]
pub struct LabPath {
    /// See [`path_name`].
    pub name: String,
    /// The path, its namespaces removed when the last reference is dropped.
    pub path: Arc<NetPath>,
}

/// A path as the report describes it (the JSON `paths` array).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PathReport {
    /// The name the cells' `path` field uses (see [`path_name`]).
    pub name: String,
    /// The whole spec, in the syntax `--path` reads (`"slow:rate=4000000bit,queue=32"`).
    pub spec: String,
    /// How the path is made (`"veth + htb 4 Mbit/s each way, 32-frame queue"`).
    pub mechanism: String,
    /// The round-trip time measured when the path was made, in milliseconds
    /// (the fastest of a few TCP connects).
    pub rtt_ms: f64,
}

impl PathReport {
    /// The report's description of `path`.
    pub fn of(path: &LabPath) -> PathReport {
        PathReport {
            name: path.name.clone(),
            spec: path.path.spec().to_string(),
            mechanism: path.path.mechanism(),
            rtt_ms: (path.path.rtt().as_secs_f64() * 1e5).round() / 100.0,
        }
    }
}

/// Makes every path of `config` (duplicates once), in order. Blocks on the
/// blocking pool (it runs `ip`, `tc` and `nft`).
///
/// # Errors
///
/// [`LabError::Io`] when a path cannot be made, with why
/// ([`PathKind::unavailable`] first).
pub async fn make_paths(config: &LabConfig) -> Result<Vec<LabPath>, LabError> {
    let mut made: Vec<LabPath> = Vec::new();
    for spec in &config.paths {
        let name = path_name(spec);
        if made.iter().any(|p| p.name == name) {
            continue;
        }
        let path = new_path(*spec).await?;
        made.push(LabPath {
            name,
            path: Arc::new(path),
        });
    }
    Ok(made)
}

/// Makes one path on the blocking pool.
pub(crate) async fn new_path(spec: PathSpec) -> Result<NetPath, LabError> {
    if let Some(why) = spec.kind().unavailable() {
        return Err(LabError::Io(
            "making a network path",
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("the {} path {why}", spec.kind()),
            ),
        ));
    }
    tokio::task::spawn_blocking(move || NetPath::new(spec))
        .await
        .map_err(|e| LabError::Peer(e.to_string()))?
        .map_err(|e| LabError::Io("making a network path", e))
}

/// Drops the paths on the blocking pool (deleting namespaces forks `ip`).
pub(crate) async fn drop_paths(paths: Vec<LabPath>) {
    let _ = tokio::task::spawn_blocking(move || drop(paths)).await;
}

/// Runs every cell of `config` on every path of it, as [`run_matrix_on`]
/// does, making the paths first and removing them after.
///
/// # Errors
///
/// As [`make_paths`] and [`run_matrix_on`].
pub async fn run_matrix(
    config: &LabConfig,
    on_connection: Arc<dyn Fn() + Send + Sync>,
) -> Result<Vec<CellReport>, LabError> {
    let paths = make_paths(config).await?;
    let cells = run_matrix_on(config, &paths, on_connection).await;
    drop_paths(paths).await;
    cells
}

/// Runs every cell of `config` on each of `paths`, at most
/// `config.concurrency` cells at a time over all paths, calling
/// `on_connection` after each connection ends. Cells come back path-major,
/// then policy-major. `silent` cells are skipped without `CAP_NET_ADMIN`.
///
/// # Errors
///
/// [`LabError::Census`] when the kernel's socket table cannot be read (the
/// lab's only judge); an unknown policy name. A connection that fails is
/// recorded in its cell's `errors` and the run goes on.
pub async fn run_matrix_on(
    config: &LabConfig,
    paths: &[LabPath],
    on_connection: Arc<dyn Fn() + Send + Sync>,
) -> Result<Vec<CellReport>, LabError> {
    let net_admin = census::has_net_admin();
    // The policies with the lab's deadlines, per path (stall timeouts grow
    // with a path's queue and round trip: see `lab_policy_on`).
    let mut per_path_policies: Vec<Vec<(&'static str, Policy)>> = Vec::new();
    for lab_path in paths {
        let mut policies = Vec::with_capacity(config.policies.len());
        for &name in &config.policies {
            policies.push((
                name,
                lab_policy_on(name, config.grace, lab_path.path.spec())?,
            ));
        }
        per_path_policies.push(policies);
    }
    let names: Vec<&'static str> = config.policies.clone();
    let per_path = config.policies.len() * config.behaviours.len();
    let slot = |path: usize, policy: usize, behaviour: usize| {
        path * per_path + policy * config.behaviours.len() + behaviour
    };
    let nets: Vec<Net> = paths
        .iter()
        .map(|p| match p.path.kind() {
            PathKind::Loopback => Net::Loopback(config.ip),
            _ => Net::Path(Arc::clone(&p.path)),
        })
        .collect();
    for net in &nets {
        preflight(net).await?;
    }
    let mut cells = Vec::new();

    // The vanished peers first, path by path, all of a path's at once in
    // their own namespaces, so that no `ip` command forks while a cell tears
    // sockets down.
    if let Some(column) = config.behaviours.iter().position(|b| b.needs_netns()) {
        for (k, lab_path) in paths.iter().enumerate() {
            let runnable: Vec<(&'static str, Policy)> = per_path_policies[k]
                .iter()
                .copied()
                .filter(|(name, _)| *name != "silent" || net_admin)
                .collect();
            let mut ran = super::vanish::run_column(
                *lab_path.path.spec(),
                &runnable,
                config.connections,
                Arc::clone(&on_connection),
            )
            .await?
            .into_iter();
            for (p, name) in names.iter().enumerate() {
                let cell = if *name == "silent" && !net_admin {
                    CellReport::skipped(name, Behaviour::Vanishes, "needs CAP_NET_ADMIN")
                } else {
                    ran.next().expect("one cell per runnable policy")
                };
                cells.push((slot(k, p, column), cell.on_path(&lab_path.name)));
            }
        }
    }

    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    // The cells that wait longest start first (the permits are handed out
    // in order), each behaviour on every path and with every policy, so
    // that the run ends with short cells instead of waiting on a long one.
    let mut order: Vec<(usize, Behaviour)> =
        config.behaviours.iter().copied().enumerate().collect();
    order.sort_by_key(|(_, b)| expected_wait(*b));
    for (b, behaviour) in order {
        for (p, &name) in names.iter().enumerate() {
            for (k, lab_path) in paths.iter().enumerate() {
                let policy = per_path_policies[k][p].1;
                if behaviour.needs_netns() {
                    continue;
                }
                let slot = slot(k, p, b);
                if name == "silent" && !net_admin {
                    let cell = CellReport::skipped(name, behaviour, "needs CAP_NET_ADMIN");
                    cells.push((slot, cell.on_path(&lab_path.name)));
                    continue;
                }
                let permits = Arc::clone(&permits);
                let on_connection = Arc::clone(&on_connection);
                let net = nets[k].clone();
                let path_name = lab_path.name.clone();
                let connections = config.connections;
                let goodbye: Bytes = peer::goodbye_for(behaviour, config.large_goodbye);
                tasks.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let mut trials = Vec::with_capacity(connections);
                    let mut errors = Vec::new();
                    for _ in 0..connections {
                        match run_on(&net, policy, behaviour, goodbye.clone()).await {
                            Ok(trial) => trials.push(trial),
                            Err(e) => errors.push(e.to_string()),
                        }
                        on_connection();
                    }
                    let cell = CellReport::from_trials(name, behaviour, &trials, errors);
                    (slot, cell.on_path(&path_name))
                });
            }
        }
    }
    while let Some(joined) = tasks.join_next().await {
        cells.push(joined.map_err(|e| LabError::Peer(e.to_string()))?);
    }
    cells.sort_by_key(|(slot, _)| *slot);
    Ok(cells.into_iter().map(|(_, cell)| cell).collect())
}

/// A rank of how long a cell of `behaviour` takes, longest first: a flood
/// lasts until a cap, a slow reader reads for a second, a never-reading or
/// ignoring peer waits out a deadline; the others end at once.
fn expected_wait(behaviour: Behaviour) -> u8 {
    match behaviour {
        Behaviour::Floods => 0,
        Behaviour::SlowReader => 1,
        Behaviour::NeverReads => 2,
        Behaviour::Ignores | Behaviour::NeverHandshakes => 3,
        Behaviour::Cooperative => 4,
        _ => 5,
    }
}

/// The number of connections [`run_matrix`] will run (for a progress bar).
pub fn planned_connections(config: &LabConfig) -> u64 {
    let net_admin = census::has_net_admin();
    let netns = super::netns::unavailable().is_none();
    let policies = config
        .policies
        .iter()
        .filter(|&&p| p != "silent" || net_admin)
        .count();
    let behaviours = config
        .behaviours
        .iter()
        .filter(|b| !b.needs_netns() || netns)
        .count();
    let mut paths: Vec<String> = config.paths.iter().map(path_name).collect();
    paths.dedup();
    let churn = config.churn.as_ref().map_or(0, |c| {
        let policies = c
            .policies
            .iter()
            .filter(|&&p| p != "silent" || net_admin)
            .count();
        policies * c.connections_per_policy()
    });
    let heavy = config
        .heavy
        .as_ref()
        .map_or(0, super::HeavyConfig::planned_connections);
    (paths.len() * policies * behaviours * config.connections + churn + heavy) as u64
}

/// Checks once per path that the census can read the kernel's table there,
/// so a broken judge fails the run with one clear error instead of failing
/// every connection.
async fn preflight(net: &Net) -> Result<(), LabError> {
    let (server, _client) = net
        .connected_pair(peer::ClientBuffers::default())
        .await
        .map_err(|e| LabError::Io("connecting", e))?;
    let local = server
        .local_addr()
        .map_err(|e| LabError::Io("reading the address", e))?;
    let peer = server
        .peer_addr()
        .map_err(|e| LabError::Io("reading the address", e))?;
    let (seen, _) = net.states(local, peer).await?;
    // Reset the probe so it leaves no TIME-WAIT entry behind.
    if let Ok(server) = server.into_std() {
        let _ = farewell::sys::abort(server);
    }
    if seen.is_some() {
        Ok(())
    } else {
        Err(LabError::CensusBlind)
    }
}
