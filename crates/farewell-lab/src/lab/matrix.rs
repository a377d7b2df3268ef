//! The matrix: every policy against every behaviour, N connections per cell,
//! with bounded concurrency, aggregated into one [`CellReport`] per cell;
//! the vanished peers' column comes from [`vanish`](super::vanish).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::cell::run_connection;
use super::peer::Behaviour;
use super::LabError;
use farewell::{census, Policy};

// Their home is `cell`; re-exported for the paths `lab::matrix::…` that
// `lab/mod.rs` (and code written against it) uses.
pub use super::cell::{lab_policy, CellReport};

/// What the lab runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabConfig {
    /// Policy names to run (see [`Policy::NAMES`]), in order.
    pub policies: Vec<&'static str>,
    /// Peer behaviours to run, in order (default [`Behaviour::LAB`], all the
    /// lab plays).
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
            behaviours: Behaviour::LAB.to_vec(),
            connections: 5,
            grace: Duration::from_millis(300),
            concurrency: 4,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            churn: None,
        }
    }
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
        let _ = farewell::sys::abort(server);
    }
    if seen {
        Ok(())
    } else {
        Err(LabError::CensusBlind)
    }
}
