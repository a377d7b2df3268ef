//! One cell of the lab (one policy against one peer behaviour): the policy
//! with the lab's short deadlines; each connection (connect on loopback, let
//! the peer behave, tear the server side down with the policy, read the
//! verdict from the kernel: a [`Trial`]); and the cell's aggregate of its
//! trials, the [`CellReport`] that the matrix, the vanished peers' column and
//! the report share.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use super::peer::{self, Behaviour};
use super::LabError;
use farewell::{census, Delivery, Outcome, Policy, TcpState};

/// No lab teardown may take longer than this; past it the connection counts as failed.
pub const TEARDOWN_BOUND: Duration = Duration::from_secs(10);

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

/// What one connection produced: the server's outcome, what the peer's
/// application received, and what the kernel's socket table says.
#[derive(Clone, Debug)]
pub struct Trial {
    /// The outcome the library reported for the server side.
    pub outcome: Outcome,
    /// How long the teardown took until the server's descriptor was closed,
    /// timed by the lab around [`close`](farewell::close).
    pub release: Duration,
    /// The kernel holds a TIME-WAIT entry for the server's end after settling.
    pub server_time_wait: bool,
    /// The kernel holds a TIME-WAIT entry for the client's end after settling.
    pub client_time_wait: bool,
    /// The server's end is still in the kernel's table in a state other than
    /// TIME-WAIT after settling (a leaked or stuck socket).
    pub server_leftover: bool,
    /// The server end's state in the kernel's table after settling, if any.
    pub server_state: Option<TcpState>,
    /// The peer's application received the whole goodbye.
    pub peer_got_goodbye: bool,
    /// Bytes of the goodbye the peer's application did not receive.
    pub goodbye_bytes_lost: usize,
}

/// The kernel's state for one 4-tuple, or `None` if it has no such socket.
fn kernel_state(local: SocketAddr, remote: SocketAddr) -> Result<Option<TcpState>, LabError> {
    Ok(census::lookup(local, remote)?.map(|entry| entry.state))
}

/// Waits (bounded, 3 s) until neither end of the connection is in a transient
/// closing state, so the census reads the settled result.
async fn settle(server: SocketAddr, client: SocketAddr) -> Result<(), LabError> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let transient = |s: Option<TcpState>| {
        matches!(
            s,
            Some(TcpState::LastAck | TcpState::FinWait1 | TcpState::Closing)
        )
    };
    loop {
        if !transient(kernel_state(server, client)?) && !transient(kernel_state(client, server)?) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many bytes of `goodbye` the peer did not get: all of it, less the
/// longest prefix of it that `received` ends with (or 0 when it holds it whole).
pub(crate) fn goodbye_bytes_lost(received: &[u8], goodbye: &[u8]) -> usize {
    if peer::contains(received, goodbye) {
        return 0;
    }
    let got = (1..goodbye.len())
        .rev()
        .find(|&n| received.ends_with(&goodbye[..n]))
        .unwrap_or(0);
    goodbye.len() - got
}

/// Runs one connection on `ip` with `policy` against a peer that behaves as `behaviour`.
///
/// # Errors
///
/// [`LabError::Io`] for a behaviour the lab does not play (one outside
/// [`Behaviour::LAB`]) or a socket operation that failed;
/// [`LabError::Census`] when the kernel's table cannot be read;
/// [`LabError::Timeout`] when the teardown or the peer overran its bound.
pub async fn run_connection(
    policy: Policy,
    behaviour: Behaviour,
    ip: IpAddr,
) -> Result<Trial, LabError> {
    let io = |what: &'static str| move |e| LabError::Io(what, e);
    if !Behaviour::LAB.contains(&behaviour) {
        return Err(io("choosing the peer")(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!(
                "the lab does not play the {} peer (farewell load does)",
                behaviour.load_name()
            ),
        )));
    }
    let rcvbuf = (behaviour == Behaviour::NeverReads).then_some(4096);
    let (server, client) = peer::connected_pair(ip, rcvbuf)
        .await
        .map_err(io("connecting on loopback"))?;
    let server_addr = server.local_addr().map_err(io("reading the address"))?;
    let client_addr = client.local_addr().map_err(io("reading the address"))?;

    let (release_tx, release_rx) = oneshot::channel();
    let peer = match behaviour {
        Behaviour::ResetsFirst => {
            // The peer aborts: SO_LINGER 0 + close sends RST.
            let client = client.into_std().map_err(io("preparing the peer"))?;
            farewell::sys::abort(client).map_err(io("resetting from the peer"))?;
            peer::await_state(&server, TcpState::Closed)
                .await
                .map_err(io("waiting for the peer's reset"))?;
            drop(release_rx);
            None
        }
        Behaviour::HalfClosesFirst => {
            let mut client = client;
            client
                .shutdown()
                .await
                .map_err(io("half-closing the peer"))?;
            peer::await_state(&server, TcpState::CloseWait)
                .await
                .map_err(io("waiting for the peer's FIN"))?;
            Some(tokio::spawn(peer::run_peer(client, behaviour, release_rx)))
        }
        Behaviour::NeverReads => {
            peer::fill_until_blocked(&server)
                .await
                .map_err(io("filling the peer's window"))?;
            Some(tokio::spawn(peer::run_peer(client, behaviour, release_rx)))
        }
        _ => Some(tokio::spawn(peer::run_peer(client, behaviour, release_rx))),
    };

    let (outcome, release) = timed_close(server, policy, behaviour.goodbye()).await?;

    // Let the peer see what it sees, then end it (the peers that wait for the run's end close now).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = release_tx.send(());
    let received = match peer {
        Some(task) => tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .map_err(|_| LabError::Timeout {
                what: "the peer",
                bound: Duration::from_secs(5),
            })?
            .map_err(|e| LabError::Peer(e.to_string()))?,
        None => Vec::new(),
    };

    settle(server_addr, client_addr).await?;
    Ok(Trial::judged(
        outcome,
        release,
        kernel_state(server_addr, client_addr)?,
        kernel_state(client_addr, server_addr)?,
        &received,
        behaviour.goodbye(),
    ))
}

/// Tears `server` down with `policy` (bounded by [`TEARDOWN_BOUND`]) and
/// times it: the outcome and how long until the descriptor was closed.
pub(crate) async fn timed_close(
    server: tokio::net::TcpStream,
    policy: Policy,
    goodbye: &'static [u8],
) -> Result<(Outcome, Duration), LabError> {
    let started = Instant::now();
    let outcome = tokio::time::timeout(TEARDOWN_BOUND, farewell::close(server, policy, goodbye))
        .await
        .map_err(|_| LabError::Timeout {
            what: "the teardown",
            bound: TEARDOWN_BOUND,
        })?;
    Ok((outcome, started.elapsed()))
}

impl Trial {
    /// A trial judged by the kernel's states of both ends (`None`: no such
    /// socket) and by what the peer's application `received`.
    pub(crate) fn judged(
        outcome: Outcome,
        release: Duration,
        server_state: Option<TcpState>,
        client_state: Option<TcpState>,
        received: &[u8],
        goodbye: &[u8],
    ) -> Trial {
        Trial {
            server_time_wait: server_state == Some(TcpState::TimeWait),
            server_leftover: server_state.is_some_and(|s| s != TcpState::TimeWait),
            server_state,
            client_time_wait: client_state == Some(TcpState::TimeWait),
            peer_got_goodbye: peer::contains(received, goodbye),
            goodbye_bytes_lost: goodbye_bytes_lost(received, goodbye),
            outcome,
            release,
        }
    }
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
    /// How many connections took each outcome path (by [`Ending::name`](farewell::Ending::name)).
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

#[cfg(test)]
mod tests {
    use super::goodbye_bytes_lost;

    #[test]
    fn whole_goodbye_loses_nothing() {
        assert_eq!(goodbye_bytes_lost(b"xxBYE quit\nyy", b"BYE quit\n"), 0);
    }

    #[test]
    fn partial_goodbye_at_the_end_counts_what_is_missing() {
        assert_eq!(goodbye_bytes_lost(b"xxxBYE q", b"BYE quit\n"), 4);
    }

    #[test]
    fn no_goodbye_loses_all_of_it() {
        assert_eq!(goodbye_bytes_lost(b"xxxx", b"BYE quit\n"), 9);
        assert_eq!(goodbye_bytes_lost(b"", b"BYE quit\n"), 9);
    }
}
