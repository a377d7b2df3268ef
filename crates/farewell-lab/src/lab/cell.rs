//! One lab connection: connect on loopback, let the peer behave, tear the
//! server side down with a policy, and read the verdict from the kernel.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use super::peer::{self, Behaviour};
use super::LabError;
use farewell::{census, Outcome, Policy, TcpState};

/// No lab teardown may take longer than this; past it the connection counts as failed.
pub const TEARDOWN_BOUND: Duration = Duration::from_secs(10);

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
