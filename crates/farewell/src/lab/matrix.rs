//! The matrix: every policy against every behaviour, N connections per cell,
//! with bounded concurrency, aggregated into one [`CellReport`] per cell.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::cell::{run_connection, Trial};
use super::peer::Behaviour;
use super::LabError;
use crate::{census, Delivery, Policy};

/// What the lab runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabConfig {
    /// Policy names to run (see [`Policy::NAMES`]), in order.
    pub policies: Vec<&'static str>,
    /// Peer behaviours to run, in order.
    pub behaviours: Vec<Behaviour>,
    /// Connections per cell (default 5).
    pub connections: usize,
    /// The lab's main deadline (default 300 ms); see [`lab_policy`].
    pub grace: Duration,
    /// How many cells run at once (default 4).
    pub concurrency: usize,
    /// The loopback address to run on (default 127.0.0.1).
    pub ip: IpAddr,
    /// Also run a churn after the matrix (default `None`); see [`run_churn`](super::run_churn).
    pub churn: Option<super::ChurnConfig>,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            policies: Policy::NAMES.to_vec(),
            behaviours: Behaviour::ALL.to_vec(),
            connections: 5,
            grace: Duration::from_millis(300),
            concurrency: 4,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            churn: None,
        }
    }
}

/// The policy `name` with short lab deadlines derived from `grace` (G):
/// peer-first waits G for the peer's FIN and G for the goodbye's ACK;
/// lingering reads for at most 8G/3 with a 2G/3 idle timeout; plain and
/// fin-then-reset get 5G/3. With the default G = 300 ms these are the
/// deadlines of the integration tests (300/300, 800/200, 500 ms).
pub fn lab_policy(name: &str, grace: Duration) -> Result<Policy, LabError> {
    let policy: Policy = name.parse()?;
    Ok(match policy {
        Policy::Lingering(mut l) => {
            l.idle_timeout = grace * 2 / 3;
            l.max_time = grace * 8 / 3;
            Policy::Lingering(l)
        }
        Policy::PeerFirst(mut p) => {
            p.grace = grace;
            p.stall_timeout = grace;
            Policy::PeerFirst(p)
        }
        other => other.with_grace(grace * 5 / 3),
    })
}

/// The aggregate of one cell: one policy against one behaviour. Serialized as
/// one element of the `cells` array (see the [module docs](super)).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CellReport {
    /// The policy's name.
    pub policy: String,
    /// The behaviour's name.
    pub behaviour: String,
    /// Connections that ran to the end (failed ones are in `errors`).
    pub connections: usize,
    /// Connections whose server end the kernel kept in TIME-WAIT.
    pub server_time_wait: usize,
    /// Connections whose client end the kernel kept in TIME-WAIT.
    pub client_time_wait: usize,
    /// Percentage of connections whose client application received the whole goodbye.
    pub goodbye_delivered_pct: Option<f64>,
    /// Percentage of connections whose outcome confirmed the goodbye ACKed.
    pub goodbye_acked_pct: Option<f64>,
    /// Goodbye bytes the client applications did not receive, summed.
    pub bytes_lost: u64,
    /// Median time until the server released the socket, in milliseconds.
    pub release_ms_median: Option<f64>,
    /// 99th percentile (nearest rank) of the time until the server released
    /// the socket, in milliseconds; equals the max below 100 connections.
    pub release_ms_p99: Option<f64>,
    /// Longest time until the server released the socket, in milliseconds.
    pub release_ms_max: Option<f64>,
    /// Every connection's time until release, in milliseconds, ascending
    /// (the distribution the HTML report draws).
    pub release_ms: Vec<f64>,
    /// Server ends still in the kernel's table, not in TIME-WAIT, after settling.
    pub leftover_sockets: usize,
    /// Those left-over server ends by kernel state (`"FIN-WAIT-1"` -> count).
    pub leftover_states: BTreeMap<String, usize>,
    /// How many connections took each outcome path (by [`Ending::name`](crate::Ending::name)).
    pub paths: BTreeMap<String, usize>,
    /// Why the cell did not run (`"needs CAP_NET_ADMIN"`), or `None`.
    pub skipped: Option<String>,
    /// One message per connection that failed.
    pub errors: Vec<String>,
}

impl CellReport {
    fn empty(policy: &str, behaviour: Behaviour) -> CellReport {
        CellReport {
            policy: policy.to_owned(),
            behaviour: behaviour.name().to_owned(),
            connections: 0,
            server_time_wait: 0,
            client_time_wait: 0,
            goodbye_delivered_pct: None,
            goodbye_acked_pct: None,
            bytes_lost: 0,
            release_ms_median: None,
            release_ms_p99: None,
            release_ms_max: None,
            release_ms: Vec::new(),
            leftover_sockets: 0,
            leftover_states: BTreeMap::new(),
            paths: BTreeMap::new(),
            skipped: None,
            errors: Vec::new(),
        }
    }

    /// A cell that did not run, and why (e.g. `"needs CAP_NET_ADMIN"`).
    pub fn skipped(policy: &str, behaviour: Behaviour, why: &str) -> CellReport {
        let mut cell = CellReport::empty(policy, behaviour);
        cell.skipped = Some(why.to_owned());
        cell
    }

    /// Aggregates the trials of one cell.
    pub fn from_trials(
        policy: &str,
        behaviour: Behaviour,
        trials: &[Trial],
        errors: Vec<String>,
    ) -> CellReport {
        let mut cell = CellReport::empty(policy, behaviour);
        cell.errors = errors;
        let n = trials.len();
        cell.connections = n;
        if n == 0 {
            return cell;
        }
        let pct = |count: usize| Some(round1(100.0 * count as f64 / n as f64));
        let count = |f: &dyn Fn(&Trial) -> bool| trials.iter().filter(|t| f(t)).count();
        cell.server_time_wait = count(&|t| t.server_time_wait);
        cell.client_time_wait = count(&|t| t.client_time_wait);
        cell.leftover_sockets = count(&|t| t.server_leftover);
        cell.goodbye_delivered_pct = pct(count(&|t| t.peer_got_goodbye));
        cell.goodbye_acked_pct = pct(count(&|t| t.outcome.goodbye == Delivery::Confirmed));
        cell.bytes_lost = trials.iter().map(|t| t.goodbye_bytes_lost as u64).sum();
        let mut ms: Vec<f64> = trials
            .iter()
            .map(|t| round1(t.release.as_secs_f64() * 1000.0))
            .collect();
        ms.sort_by(f64::total_cmp);
        let median = if n % 2 == 1 {
            ms[n / 2]
        } else {
            (ms[n / 2 - 1] + ms[n / 2]) / 2.0
        };
        cell.release_ms_median = Some(round1(median));
        // Nearest rank: the smallest sample with at least 99% at or below it.
        let p99 = ((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1;
        cell.release_ms_p99 = Some(round1(ms[p99]));
        cell.release_ms_max = ms.last().copied().map(round1);
        cell.release_ms = ms;
        for state in trials.iter().filter(|t| t.server_leftover) {
            if let Some(state) = state.server_state {
                *cell.leftover_states.entry(state.to_string()).or_default() += 1;
            }
        }
        for t in trials {
            *cell
                .paths
                .entry(t.outcome.ending.name().to_owned())
                .or_default() += 1;
        }
        cell
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Runs every cell of `config`, at most `config.concurrency` cells at a time,
/// calling `on_connection` after each connection ends. Cells come back in
/// policy-major order. `silent` cells are skipped without `CAP_NET_ADMIN`.
///
/// # Errors
///
/// [`LabError::Census`] when the kernel's socket table cannot be read (the
/// lab's only judge); an unknown policy name. A connection that fails is
/// recorded in its cell's `errors` and the run goes on.
pub async fn run_matrix(
    config: &LabConfig,
    on_connection: Arc<dyn Fn() + Send + Sync>,
) -> Result<Vec<CellReport>, LabError> {
    preflight(config.ip).await?;
    let net_admin = census::has_net_admin();
    let mut policies = Vec::with_capacity(config.policies.len());
    for &name in &config.policies {
        policies.push((name, lab_policy(name, config.grace)?));
    }
    let slot = |policy: usize, behaviour: usize| policy * config.behaviours.len() + behaviour;
    let mut cells = Vec::new();

    // The vanished peers first, all at once in their namespaces, so that no
    // `ip` command forks while a loopback cell tears sockets down.
    if let Some(column) = config.behaviours.iter().position(|b| b.needs_netns()) {
        let runnable: Vec<(&'static str, Policy)> = policies
            .iter()
            .copied()
            .filter(|(name, _)| *name != "silent" || net_admin)
            .collect();
        let mut ran =
            super::vanish::run_column(&runnable, config.connections, Arc::clone(&on_connection))
                .await?
                .into_iter();
        for (p, (name, _)) in policies.iter().enumerate() {
            let cell = if *name == "silent" && !net_admin {
                CellReport::skipped(name, Behaviour::Vanishes, "needs CAP_NET_ADMIN")
            } else {
                ran.next().expect("one cell per runnable policy")
            };
            cells.push((slot(p, column), cell));
        }
    }

    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for (p, &(name, policy)) in policies.iter().enumerate() {
        for (b, &behaviour) in config.behaviours.iter().enumerate() {
            if behaviour.needs_netns() {
                continue;
            }
            let slot = slot(p, b);
            if name == "silent" && !net_admin {
                cells.push((
                    slot,
                    CellReport::skipped(name, behaviour, "needs CAP_NET_ADMIN"),
                ));
                continue;
            }
            let permits = Arc::clone(&permits);
            let on_connection = Arc::clone(&on_connection);
            let (connections, ip) = (config.connections, config.ip);
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let mut trials = Vec::with_capacity(connections);
                let mut errors = Vec::new();
                for _ in 0..connections {
                    match run_connection(policy, behaviour, ip).await {
                        Ok(trial) => trials.push(trial),
                        Err(e) => errors.push(e.to_string()),
                    }
                    on_connection();
                }
                (
                    slot,
                    CellReport::from_trials(name, behaviour, &trials, errors),
                )
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        cells.push(joined.map_err(|e| LabError::Peer(e.to_string()))?);
    }
    cells.sort_by_key(|(slot, _)| *slot);
    Ok(cells.into_iter().map(|(_, cell)| cell).collect())
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
    let churn = config.churn.as_ref().map_or(0, |c| {
        let policies = c
            .policies
            .iter()
            .filter(|&&p| p != "silent" || net_admin)
            .count();
        policies * c.connections_per_policy()
    });
    (policies * behaviours * config.connections + churn) as u64
}

/// Checks once that the census can read the kernel's table, so a broken judge
/// fails the run with one clear error instead of failing every connection.
async fn preflight(ip: IpAddr) -> Result<(), LabError> {
    let (server, _client) = super::peer::connected_pair(ip, None)
        .await
        .map_err(|e| LabError::Io("connecting on loopback", e))?;
    let local = server
        .local_addr()
        .map_err(|e| LabError::Io("reading the address", e))?;
    let peer = server
        .peer_addr()
        .map_err(|e| LabError::Io("reading the address", e))?;
    let seen = census::lookup(local, peer)?.is_some();
    // Reset the probe so it leaves no TIME-WAIT entry behind.
    if let Ok(server) = server.into_std() {
        let _ = crate::sys::abort(server);
    }
    if seen {
        Ok(())
    } else {
        Err(LabError::CensusBlind)
    }
}
