//! One connection of the lab (one policy against one peer behaviour), as
//! the lab and the core's tests run it: connect, let the peer behave, tear
//! the server side down with the policy, read the verdict from the kernel
//! (a [`Trial`]); and the policy with the lab's short deadlines
//! ([`lab_policy`]). Where the connection runs is a [`Net`]: loopback here
//! ([`Loopback`]); `farewell-lab` adds its network paths.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::peer::{self, Behaviour, ClientBuffers};
use super::LabError;
use farewell::{census, Outcome, Policy, TcpState};

/// No lab teardown may take longer than this; past it the connection counts as failed.
pub const TEARDOWN_BOUND: Duration = Duration::from_secs(10);

/// The policy `name` with short lab deadlines derived from `grace` (G), so
/// the whole matrix runs in seconds. The three deadlines of
/// [`farewell::policy`] (see its table), each where the policy has it:
///
/// * `grace`, peer-first's wait for the peer's FIN after delivery: G;
/// * `stall_timeout`, how long delivery may go without progress (no byte
///   ACKed; for lingering, none read either) before the teardown gives up:
///   2G for every policy that waits;
/// * `delivery_timeout`, the total cap that cuts even a peer still taking
///   bytes: 30G (at most 8 s, under [`TEARDOWN_BOUND`]) for plain,
///   fin-then-reset and peer-first (only a peer that keeps taking bytes
///   ever reaches it, so it costs no other cell any time); 5G for
///   lingering, whose cap covers its whole close and so also bounds how long
///   it reads a flooding peer: it must end while the peer still floods (the
///   lab's flood stops after 4 GiB, under 3 s on a fast loopback), or the
///   cell would show a peer that stopped, not one that floods.
///
/// Every one of them is at most 8 s, within [`TEARDOWN_BOUND`]. With the
/// default G = 300 ms: grace 300 ms, stall 600 ms, caps 8 s and 1.5 s. A slow reader's large last message (128 KiB at 200 KiB/s) fits
/// in every cap, so a policy that cuts it does so by its nature, not by the
/// lab's haste; when the cells that share a slow path make it slower than
/// 1.5 s, lingering's cap (which counts the goodbye's delivery, unlike
/// nginx's `lingering_time`) cuts it, and the lab shows that. A stall of 2G rides
/// out a retransmission timeout (200 ms at least on Linux) after a loss on
/// a slow or lossy path; a shorter one would make any policy that watches
/// delivery cut live peers there.
pub fn lab_policy(name: &str, grace: Duration) -> Result<Policy, LabError> {
    let policy: Policy = name.parse()?;
    let cap = match policy {
        Policy::Lingering(_) => bounded(grace.saturating_mul(5)),
        _ => bounded(grace.saturating_mul(30)),
    };
    Ok(policy
        .with_grace(grace)
        .with_stall_timeout(bounded(grace.saturating_mul(2)))
        .with_delivery_timeout(cap))
}

/// `wait`, at most 8 s: every lab deadline ends well within [`TEARDOWN_BOUND`].
pub fn bounded(wait: Duration) -> Duration {
    wait.min(TEARDOWN_BOUND - Duration::from_secs(2))
}

/// Where a connection runs: makes a connected pair and reads the kernel's
/// verdict for both ends, whichever namespace each lives in.
pub trait Net: Sync {
    /// A connected pair: (server side, client side). `buffers` sizes the
    /// client's socket buffers before it connects.
    fn connected_pair(
        &self,
        buffers: ClientBuffers,
    ) -> impl Future<Output = io::Result<(TcpStream, TcpStream)>> + Send;

    /// The kernel's state of the server's end `server` → `client` and of the
    /// client's end (`None`: no such socket).
    fn states(
        &self,
        server: SocketAddr,
        client: SocketAddr,
    ) -> impl Future<Output = Result<(Option<TcpState>, Option<TcpState>), LabError>> + Send;
}

/// Both ends on this address of this process's namespace.
#[derive(Clone, Copy, Debug)]
pub struct Loopback(pub IpAddr);

impl Net for Loopback {
    async fn connected_pair(&self, buffers: ClientBuffers) -> io::Result<(TcpStream, TcpStream)> {
        peer::connected_pair(self.0, buffers).await
    }

    async fn states(
        &self,
        server: SocketAddr,
        client: SocketAddr,
    ) -> Result<(Option<TcpState>, Option<TcpState>), LabError> {
        Ok((kernel_state(server, client)?, kernel_state(client, server)?))
    }
}

/// The kernel's state of the socket `local` → `remote` in the calling
/// thread's namespace (`None`: no such socket).
///
/// # Errors
///
/// [`LabError::Census`] when the kernel's table cannot be read.
pub fn kernel_state(local: SocketAddr, remote: SocketAddr) -> Result<Option<TcpState>, LabError> {
    Ok(census::lookup(local, remote)?.map(|entry| entry.state))
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
    /// Bytes of the goodbye the peer's application did not receive (every
    /// byte is checked: a wrong one counts as lost, with all after it).
    pub goodbye_bytes_lost: usize,
    /// The goodbye's length: the line, or a large last message.
    pub goodbye_bytes: usize,
}

/// Waits (bounded, 6 s) until neither end of the connection is in a transient
/// closing state, so the census reads the settled result; returns the
/// settled states (server end, client end). The bound is generous because a
/// FIN on a slow path shared with flooding cells may be dropped by the full
/// queue and sent again after a backed-off retransmission timeout (0.2, 0.4,
/// 0.8, 1.6 s...); it costs nothing to a connection that settles at once.
async fn settle(
    net: &impl Net,
    server: SocketAddr,
    client: SocketAddr,
) -> Result<(Option<TcpState>, Option<TcpState>), LabError> {
    let deadline = Instant::now() + Duration::from_secs(6);
    let transient = |s: Option<TcpState>| {
        matches!(
            s,
            Some(TcpState::LastAck | TcpState::FinWait1 | TcpState::Closing)
        )
    };
    loop {
        let (s, c) = net.states(server, client).await?;
        if !transient(s) && !transient(c) || Instant::now() > deadline {
            return Ok((s, c));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (bounded, 3 s) until the server's end has nothing more in flight
/// to the peer: it is gone from the table or in a state in which all it
/// sent was ACKed (not FIN-WAIT-1, CLOSING or LAST-ACK). On loopback that is
/// at once; over a slow path an orphan may still be sending the goodbye.
async fn in_flight_landed(
    net: &impl Net,
    server: SocketAddr,
    client: SocketAddr,
) -> Result<(), LabError> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (s, _) = net.states(server, client).await?;
        let sending = matches!(
            s,
            Some(TcpState::FinWait1 | TcpState::Closing | TcpState::LastAck)
        );
        if !sending || Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Returns once a peer that reads until the goodbye has stopped taking
/// bytes: the server's end has nothing more in flight ([`in_flight_landed`])
/// and the peer's application received nothing new for [`PEER_QUIET`]; or
/// at the latest after [`PEER_BOUND`]. (A peer that got the whole goodbye
/// ends by itself before that.)
async fn still_taking(
    net: &impl Net,
    server: SocketAddr,
    client: SocketAddr,
    progress: &AtomicUsize,
) -> Result<(), LabError> {
    let deadline = Instant::now() + PEER_BOUND;
    let mut seen = progress.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = progress.load(Ordering::Relaxed);
        if now != seen {
            (seen, quiet_since) = (now, Instant::now());
            continue;
        }
        if quiet_since.elapsed() >= PEER_QUIET {
            let (s, _) = net.states(server, client).await?;
            let sending = matches!(
                s,
                Some(TcpState::FinWait1 | TcpState::Closing | TcpState::LastAck)
            );
            if !sending {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// How long a peer's application must receive nothing, with nothing in
/// flight to it, before the lab stops waiting for the rest of a goodbye.
pub const PEER_QUIET: Duration = Duration::from_millis(300);

/// How long a peer that reads until the goodbye may take to read it all
/// after the server's teardown ended (a slow reader over a slow path); past
/// it the peer is stopped and what it lacks counts as lost.
pub const PEER_BOUND: Duration = Duration::from_secs(10);

/// Runs one connection on `ip` with `policy` against a peer that behaves
/// as `behaviour`, saying the short goodbye ([`Behaviour::goodbye`]).
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
    let goodbye = Bytes::from_static(behaviour.goodbye());
    run_on(&Loopback(ip), policy, behaviour, goodbye).await
}

/// Runs one connection on `net` with `policy` against a peer that behaves
/// as `behaviour`; the server says `goodbye`. Errors as [`run_connection`].
pub async fn run_on(
    net: &impl Net,
    policy: Policy,
    behaviour: Behaviour,
    goodbye: Bytes,
) -> Result<Trial, LabError> {
    let io = |what: &'static str| move |e| LabError::Io(what, e);
    if !Behaviour::LAB.contains(&behaviour) || behaviour.needs_netns() {
        return Err(io("choosing the peer")(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!(
                "the lab does not play the {} peer on one connection",
                behaviour.load_name()
            ),
        )));
    }
    let (server, client) = net
        .connected_pair(peer::client_buffers(behaviour))
        .await
        .map_err(io("connecting"))?;
    let server_addr = server.local_addr().map_err(io("reading the address"))?;
    let client_addr = client.local_addr().map_err(io("reading the address"))?;

    let (release_tx, release_rx) = oneshot::channel();
    let mut before = 0;
    let progress = Arc::new(AtomicUsize::new(0));
    let spawn_peer = |client, release_rx| {
        let progress = Arc::clone(&progress);
        tokio::spawn(peer::run_peer(
            client,
            behaviour,
            goodbye.clone(),
            release_rx,
            progress,
        ))
    };
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
            Some(spawn_peer(client, release_rx))
        }
        Behaviour::NeverReads => {
            before = peer::fill_until_blocked(&server)
                .await
                .map_err(io("filling the peer's window"))?;
            Some(spawn_peer(client, release_rx))
        }
        _ => Some(spawn_peer(client, release_rx)),
    };

    let (outcome, release) = timed_close(server, policy, goodbye.clone()).await?;

    let received = match peer {
        Some(mut task) => {
            // A peer that reads until the goodbye ends by itself once it
            // has it (or is cut off): give it the time to read the rest the
            // kernel still delivers. The others see what they see, then end.
            let finished = if behaviour.takes_last_message() {
                let taking = still_taking(net, server_addr, client_addr, &progress);
                tokio::select! {
                    joined = &mut task => Some(joined),
                    ended = taking => { ended?; None }
                }
            } else {
                if behaviour.reads() {
                    // What the server's kernel still sends after close()
                    // (plain's FIN-WAIT-1) may take a while over a slow path.
                    in_flight_landed(net, server_addr, client_addr).await?;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                None
            };
            let _ = release_tx.send(());
            let joined = match finished {
                Some(joined) => joined,
                None => tokio::time::timeout(Duration::from_secs(5), task)
                    .await
                    .map_err(|_| LabError::Timeout {
                        what: "the peer",
                        bound: Duration::from_secs(5),
                    })?,
            };
            joined.map_err(|e| LabError::Peer(e.to_string()))?
        }
        None => Vec::new(),
    };

    let (server_state, client_state) = settle(net, server_addr, client_addr).await?;
    Ok(Trial::judged(
        outcome,
        release,
        server_state,
        client_state,
        &received,
        before,
        &goodbye,
    ))
}

/// Tears `server` down with `policy` (bounded by [`TEARDOWN_BOUND`]) and
/// times it: the outcome and how long until the descriptor was closed.
pub async fn timed_close(
    server: tokio::net::TcpStream,
    policy: Policy,
    goodbye: Bytes,
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
    /// socket) and by what the peer's application `received`: the goodbye
    /// was written after `before` other bytes.
    pub fn judged(
        outcome: Outcome,
        release: Duration,
        server_state: Option<TcpState>,
        client_state: Option<TcpState>,
        received: &[u8],
        before: usize,
        goodbye: &[u8],
    ) -> Trial {
        let delivered = peer::delivered(received, before, goodbye);
        Trial {
            server_time_wait: server_state == Some(TcpState::TimeWait),
            server_leftover: server_state.is_some_and(|s| s != TcpState::TimeWait),
            server_state,
            client_time_wait: client_state == Some(TcpState::TimeWait),
            peer_got_goodbye: delivered == goodbye.len(),
            goodbye_bytes_lost: goodbye.len() - delivered,
            goodbye_bytes: goodbye.len(),
            outcome,
            release,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::peer::{delivered, last_message, pattern, GOODBYE};

    #[test]
    fn whole_goodbye_is_delivered() {
        assert_eq!(delivered(b"BYE quit\n", 0, GOODBYE), GOODBYE.len());
        assert_eq!(delivered(b"xxBYE quit\n", 2, GOODBYE), GOODBYE.len());
    }

    #[test]
    fn a_cut_goodbye_counts_what_arrived() {
        assert_eq!(delivered(b"xxxBYE q", 3, GOODBYE), 5);
        assert_eq!(delivered(b"xxxx", 4, GOODBYE), 0);
        assert_eq!(delivered(b"", 0, GOODBYE), 0);
        // The filler ahead of the goodbye never arrived whole.
        assert_eq!(delivered(b"xx", 4, GOODBYE), 0);
    }

    #[test]
    fn a_wrong_byte_ends_what_counts_as_delivered() {
        let message = last_message(1000);
        let mut got = message.to_vec();
        got[500] ^= 1;
        assert_eq!(delivered(&got, 0, &message), 500);
    }

    #[test]
    fn a_last_message_is_a_pattern_then_the_goodbye_line() {
        let message = last_message(1000);
        assert_eq!(message.len(), 1000);
        assert!(message.ends_with(GOODBYE));
        assert_eq!(message[300], pattern(300));
        assert_eq!(&last_message(3)[..], GOODBYE);
    }
}
