//! Test harness: a real loopback connection, a peer that behaves one way, and
//! the kernel's socket table as the judge.
#![allow(dead_code)] // each test binary uses its own part of the harness

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use farewell::{census, Outcome, Policy, TcpState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;

pub const GOODBYE: &[u8] = b"BYE quit\n";
pub const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// No teardown in these tests may take longer than this; past it the test fails instead of hanging.
pub const TEARDOWN_BOUND: Duration = Duration::from_secs(10);

/// How long a cooperative peer takes between reading the goodbye and closing.
pub const COOPERATIVE_REACTION: Duration = Duration::from_millis(2);

/// How the peer (the client) behaves while the server tears the connection down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Reads until the goodbye, then closes.
    Cooperative,
    /// Reads everything but closes only when the test ends.
    Ignores,
    /// Never reads, with a tiny receive buffer that the server fills first:
    /// the goodbye cannot be delivered.
    NeverReads,
    /// Writes as fast as it can (bounded) while reading.
    Floods,
    /// Resets the connection before the server's teardown starts.
    ResetsFirst,
    /// Half-closes (sends its FIN) before the teardown, then reads until EOF.
    HalfClosesFirst,
}

/// What one cell of the matrix produced: the server's outcome, what the peer
/// saw, and what the kernel's socket table says.
#[derive(Debug)]
pub struct Cell {
    pub outcome: Outcome,
    pub server_time_wait: bool,
    pub client_time_wait: bool,
    pub peer_got_goodbye: bool,
}

/// Short deadlines so the matrix runs quickly; same shape as the defaults.
pub fn test_policy(name: &str) -> Policy {
    let policy: Policy = name.parse().expect("known policy");
    match policy {
        Policy::Lingering(mut l) => {
            l.idle_timeout = Duration::from_millis(200);
            l.max_time = Duration::from_millis(800);
            Policy::Lingering(l)
        }
        Policy::PeerFirst(mut p) => {
            p.grace = Duration::from_millis(300);
            p.confirm_timeout = Duration::from_millis(300);
            Policy::PeerFirst(p)
        }
        other => other.with_grace(Duration::from_millis(500)),
    }
}

/// A connected pair on `ip`: (server side, client side). `client_rcvbuf` shrinks the
/// client's receive buffer before connecting.
pub async fn connected_pair(ip: IpAddr, client_rcvbuf: Option<u32>) -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
    let socket = if ip.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .unwrap();
    if let Some(size) = client_rcvbuf {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let (client, accepted) = tokio::join!(
        socket.connect(listener.local_addr().unwrap()),
        listener.accept()
    );
    (accepted.unwrap().0, client.unwrap())
}

/// The kernel's state for one 4-tuple, or `None` if it has no such socket.
pub fn kernel_state(local: SocketAddr, remote: SocketAddr) -> Option<TcpState> {
    census::lookup(local, remote)
        .expect("census lookup")
        .map(|entry| entry.state)
}

/// Waits (bounded) until neither end of the connection is in a transient
/// closing state, so the census reads the settled result.
pub async fn settle(server: SocketAddr, client: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let transient = |s: Option<TcpState>| {
            matches!(
                s,
                Some(TcpState::LastAck | TcpState::FinWait1 | TcpState::Closing)
            )
        };
        if !transient(kernel_state(server, client)) && !transient(kernel_state(client, server)) {
            return;
        }
        if Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Fills the peer's receive window and our send buffer (bounded), so nothing more can be sent.
async fn fill_until_blocked(server: &TcpStream) {
    let chunk = vec![b'x'; 64 * 1024];
    let mut total = 0usize;
    let deadline = Instant::now() + Duration::from_secs(5);
    // Keep writing until writes stay blocked for a while (the window is shut).
    while total < 64 * 1024 * 1024 && Instant::now() < deadline {
        match server.try_write(&chunk) {
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if tokio::time::timeout(Duration::from_millis(100), server.writable())
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => panic!("filling the window failed: {e}"),
        }
    }
}

/// Waits (bounded) until the server socket reaches `state`.
async fn await_state(server: &TcpStream, state: TcpState) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while farewell::sys::tcp_state(server).unwrap() != state {
        assert!(Instant::now() < deadline, "server never reached {state}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Runs the peer's side; returns everything it received.
async fn run_peer(
    mut client: TcpStream,
    behaviour: Behaviour,
    release: oneshot::Receiver<()>,
) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    match behaviour {
        Behaviour::Cooperative | Behaviour::HalfClosesFirst | Behaviour::Ignores => {
            let until_goodbye = behaviour == Behaviour::Cooperative;
            tokio::pin!(release);
            let mut released = false;
            loop {
                tokio::select! {
                    r = client.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            received.extend_from_slice(&buf[..n]);
                            if until_goodbye && contains(&received, GOODBYE) {
                                break;
                            }
                        }
                    },
                    _ = &mut release => {
                        released = true;
                        break;
                    }
                }
            }
            if until_goodbye {
                // Reaction time: on a real network the server's FIN (if it sends
                // one) leaves a round trip before the peer could answer. Loopback
                // has no round trip, so without this a peer that closes the
                // instant it reads BYE can beat even a plain server's close().
                tokio::time::sleep(COOPERATIVE_REACTION).await;
            }
            if behaviour == Behaviour::Ignores && !released {
                // It ignores the goodbye: it closes only when the test ends.
                let _ = (&mut release).await;
            }
        }
        Behaviour::NeverReads => {
            let _ = release.await;
            // Look at what its kernel had queued without consuming it (reading
            // would open the window and make it a cooperative peer). Linux keeps
            // the queue readable after a reset (F6). Then close with it unread.
            let client = client.into_std().unwrap();
            if let Ok(n) = client.peek(&mut buf) {
                received.extend_from_slice(&buf[..n]);
            }
        }
        Behaviour::Floods => {
            let (mut rd, mut wr) = client.split();
            let chunk = vec![b'f'; 16 * 1024];
            // Bounded in time and count: until the test ends, at most 5 s and 4 GiB.
            let flood_until = Instant::now() + Duration::from_secs(5);
            let flood = async {
                let mut sent = 0usize;
                while sent < 4 << 30 && Instant::now() < flood_until {
                    match wr.write(&chunk).await {
                        Ok(n) => sent += n,
                        Err(_) => break,
                    }
                }
                // Stop flooding, keep the connection until the test ends.
                std::future::pending::<()>().await;
            };
            let read = async {
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => received.extend_from_slice(&buf[..n]),
                    }
                }
                std::future::pending::<()>().await;
            };
            tokio::select! {
                _ = flood => {},
                _ = read => {},
                _ = release => {},
            }
        }
        Behaviour::ResetsFirst => unreachable!("the reset happens before the teardown"),
    }
    received
}

/// Runs one cell: connects on `ip`, lets the peer behave, tears the server side
/// down with `policy`, and reads the verdict from the kernel.
pub async fn run_cell(policy: Policy, behaviour: Behaviour, ip: IpAddr) -> Cell {
    let rcvbuf = (behaviour == Behaviour::NeverReads).then_some(4096);
    let (server, client) = connected_pair(ip, rcvbuf).await;
    let server_addr = server.local_addr().unwrap();
    let client_addr = client.local_addr().unwrap();

    let (release_tx, release_rx) = oneshot::channel();
    let peer = match behaviour {
        Behaviour::ResetsFirst => {
            // The peer aborts: SO_LINGER 0 + close sends RST.
            farewell::sys::abort(client.into_std().unwrap()).unwrap();
            await_state(&server, TcpState::Closed).await;
            drop(release_rx);
            None
        }
        Behaviour::HalfClosesFirst => {
            let mut client = client;
            client.shutdown().await.unwrap();
            await_state(&server, TcpState::CloseWait).await;
            Some(tokio::spawn(run_peer(client, behaviour, release_rx)))
        }
        Behaviour::NeverReads => {
            fill_until_blocked(&server).await;
            Some(tokio::spawn(run_peer(client, behaviour, release_rx)))
        }
        _ => Some(tokio::spawn(run_peer(client, behaviour, release_rx))),
    };

    let outcome = tokio::time::timeout(TEARDOWN_BOUND, farewell::close(server, policy, GOODBYE))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{policy} teardown of a {behaviour:?} peer did not end within {TEARDOWN_BOUND:?}"
            )
        });

    // Let the peer see what it sees, then end it (the peers that wait for the test end close now).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = release_tx.send(());
    let received = match peer {
        Some(task) => tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("peer task ends")
            .expect("peer task does not panic"),
        None => Vec::new(),
    };

    settle(server_addr, client_addr).await;
    Cell {
        server_time_wait: kernel_state(server_addr, client_addr) == Some(TcpState::TimeWait),
        client_time_wait: kernel_state(client_addr, server_addr) == Some(TcpState::TimeWait),
        peer_got_goodbye: contains(&received, GOODBYE),
        outcome,
    }
}
