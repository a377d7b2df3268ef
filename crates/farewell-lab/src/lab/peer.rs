//! The peer (client) behaviours the lab meets, and the loopback plumbing around them.
//!
//! Ported from the integration-test harness (`tests/common/mod.rs`), whose
//! logic was verified against the kernel; the comments keep its reasons.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;

use farewell::TcpState;

/// The goodbye the server sends in a lab connection (FLP/1's `BYE quit`);
/// see [`Behaviour::goodbye`] for the one exception.
pub const GOODBYE: &[u8] = b"BYE quit\n";

/// The goodbye to a peer that never handshakes (FLP/1's `BYE handshake-timeout`).
pub const HANDSHAKE_TIMEOUT_GOODBYE: &[u8] = b"BYE handshake-timeout\n";

/// How long a cooperative peer takes between reading the goodbye and closing.
pub const COOPERATIVE_REACTION: Duration = Duration::from_millis(2);

/// How the peer (the client) behaves while the server tears the connection down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Behaviour {
    /// Reads until the goodbye, then closes.
    Cooperative,
    /// Reads everything but closes only when the connection's run ends.
    Ignores,
    /// Connects and never sends a byte (a scanner, a stuck or slow-loris
    /// client): the server's goodbye is `BYE handshake-timeout`. It *reads*,
    /// as a client of a server-speaks-first protocol waits for the server's
    /// first line, does not understand the goodbye, and closes only when it
    /// reads EOF (or the run ends): the goodbye alone does not make it leave.
    NeverHandshakes,
    /// Never reads, with a tiny receive buffer that the server fills first:
    /// the goodbye cannot be delivered.
    NeverReads,
    /// Writes as fast as it can (bounded in time) while reading.
    Floods,
    /// Resets the connection before the server's teardown starts.
    ResetsFirst,
    /// Half-closes (sends its FIN) before the teardown, then reads until EOF.
    HalfClosesFirst,
    /// Vanishes before the teardown: its host is gone, nothing it could send
    /// or answer arrives (not even a reset). Played in two network namespaces
    /// ([`netns`](super::netns)); needs `CAP_NET_ADMIN`.
    Vanishes,
}

impl Behaviour {
    /// Every behaviour, in the order the lab runs and prints them.
    pub const ALL: [Behaviour; 8] = [
        Behaviour::Cooperative,
        Behaviour::Ignores,
        Behaviour::NeverHandshakes,
        Behaviour::NeverReads,
        Behaviour::Floods,
        Behaviour::ResetsFirst,
        Behaviour::HalfClosesFirst,
        Behaviour::Vanishes,
    ];

    /// A short kebab-case name for tables and JSON (`"never-reads"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Cooperative => "cooperative",
            Behaviour::Ignores => "ignores",
            Behaviour::NeverHandshakes => "never-handshakes",
            Behaviour::NeverReads => "never-reads",
            Behaviour::Floods => "floods",
            Behaviour::ResetsFirst => "resets-first",
            Behaviour::HalfClosesFirst => "half-closes-first",
            Behaviour::Vanishes => "vanishes",
        }
    }

    /// The behaviour named `name` (as [`name`](Behaviour::name) prints it).
    pub fn from_name(name: &str) -> Option<Behaviour> {
        Behaviour::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The goodbye the server sends this peer: [`HANDSHAKE_TIMEOUT_GOODBYE`]
    /// to a peer that never handshakes, [`GOODBYE`] to every other.
    pub fn goodbye(self) -> &'static [u8] {
        match self {
            Behaviour::NeverHandshakes => HANDSHAKE_TIMEOUT_GOODBYE,
            _ => GOODBYE,
        }
    }

    /// True when the lab can play this peer only in network namespaces.
    pub fn needs_netns(self) -> bool {
        self == Behaviour::Vanishes
    }

    /// True for a peer whose application reads while the server tears down,
    /// so it can receive the goodbye if the policy lets it through.
    pub fn reads(self) -> bool {
        !matches!(
            self,
            Behaviour::NeverReads | Behaviour::ResetsFirst | Behaviour::Vanishes
        )
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A connected pair on `ip`: (server side, client side). `client_rcvbuf` shrinks the
/// client's receive buffer before connecting.
pub(crate) async fn connected_pair(
    ip: IpAddr,
    client_rcvbuf: Option<u32>,
) -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
    let socket = if ip.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    if let Some(size) = client_rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    let (client, accepted) =
        tokio::join!(socket.connect(listener.local_addr()?), listener.accept());
    Ok((accepted?.0, client?))
}

/// Fills the peer's receive window and our send buffer (bounded), so nothing more can be sent.
pub(crate) async fn fill_until_blocked(server: &TcpStream) -> io::Result<()> {
    let chunk = vec![b'x'; 64 * 1024];
    let mut total = 0usize;
    let deadline = Instant::now() + Duration::from_secs(5);
    // Keep writing until writes stay blocked for a while (the window is shut).
    while total < 64 * 1024 * 1024 && Instant::now() < deadline {
        match server.try_write(&chunk) {
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if tokio::time::timeout(Duration::from_millis(100), server.writable())
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits (bounded) until the server socket reaches `state`.
pub(crate) async fn await_state(server: &TcpStream, state: TcpState) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while farewell::sys::tcp_state(server)? != state {
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the server socket never reached {state} within 2 s"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Runs the peer's side until `release` fires (or the peer ends by itself);
/// returns everything it received.
pub(crate) async fn run_peer(
    mut client: TcpStream,
    behaviour: Behaviour,
    release: oneshot::Receiver<()>,
) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    match behaviour {
        Behaviour::Cooperative
        | Behaviour::HalfClosesFirst
        | Behaviour::Ignores
        | Behaviour::NeverHandshakes => {
            let until_goodbye = behaviour == Behaviour::Cooperative;
            tokio::pin!(release);
            // A oneshot receiver must not be polled again once it has completed.
            let mut released = false;
            loop {
                tokio::select! {
                    r = client.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            received.extend_from_slice(&buf[..n]);
                            if until_goodbye && contains(&received, behaviour.goodbye()) {
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
                // It ignores the goodbye: it closes only when the run ends.
                let _ = (&mut release).await;
            }
        }
        Behaviour::NeverReads => {
            let _ = release.await;
            // Look at what its kernel had queued without consuming it (reading
            // would open the window and make it a cooperative peer). Linux keeps
            // the queue readable after a reset (F6). Then close with it unread.
            if let Ok(client) = client.into_std() {
                if let Ok(n) = client.peek(&mut buf) {
                    received.extend_from_slice(&buf[..n]);
                }
            }
        }
        Behaviour::Floods => {
            let (mut rd, mut wr) = client.split();
            let chunk = vec![b'f'; 16 * 1024];
            // Bounded in time and count: until the run ends, at most 5 s and 4 GiB.
            let flood_until = Instant::now() + Duration::from_secs(5);
            let flood = async {
                let mut sent = 0usize;
                while sent < 4 << 30 && Instant::now() < flood_until {
                    match wr.write(&chunk).await {
                        Ok(n) => sent += n,
                        Err(_) => break,
                    }
                }
                // Stop flooding, keep the connection until the run ends.
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
        // The reset happens before the teardown, and a vanished peer is played
        // by its namespace: there is nothing left to run.
        Behaviour::ResetsFirst | Behaviour::Vanishes => {}
    }
    received
}
