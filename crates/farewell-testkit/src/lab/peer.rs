//! The lab's player of the peer behaviours ([`Behaviour::LAB`]; the enum is
//! shared with the load generator, see [`support::peer`](crate::support::peer)),
//! and the loopback plumbing around them.
//!
//! Ported from the core's integration-test harness (which is now a thin
//! adapter over this crate: `crates/farewell/tests/it/common.rs`), whose
//! logic was verified against the kernel; the comments keep its reasons.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;

use farewell::TcpState;

pub use crate::support::peer::{Behaviour, GOODBYE, HANDSHAKE_TIMEOUT_GOODBYE};
use crate::support::peer::{SLOW_READER_RCVBUF, SLOW_READ_CHUNK, SLOW_READ_EVERY};

/// The byte at offset `i` of a large last message's body: a pattern that a
/// lost, repeated or reordered segment breaks, so a peer can check every
/// byte it received.
pub fn pattern(i: usize) -> u8 {
    (i % 251) as u8 ^ (i / 251) as u8
}

/// The goodbye a cell's server sends `behaviour`: a large last message of
/// `large` bytes ([`last_message`]) to a peer that
/// [takes one](Behaviour::takes_last_message) when `large` is above the
/// line's length, the line ([`Behaviour::goodbye`]) otherwise.
pub fn goodbye_for(behaviour: Behaviour, large: usize) -> Bytes {
    if behaviour.takes_last_message() && large > behaviour.goodbye().len() {
        last_message(large)
    } else {
        Bytes::from_static(behaviour.goodbye())
    }
}

/// A last message of `size` bytes, like the last HTTP response before a
/// close: a [`pattern`] body, then the goodbye line [`GOODBYE`] (which it
/// ends with; a `size` below the line's length gives just the line).
pub fn last_message(size: usize) -> Bytes {
    let body = size.saturating_sub(GOODBYE.len());
    let mut message: Vec<u8> = (0..body).map(pattern).collect();
    message.extend_from_slice(GOODBYE);
    Bytes::from(message)
}

/// How many bytes of `goodbye` the peer's application received intact: the
/// length of the longest prefix of `goodbye` that `received` holds, byte for
/// byte, at offset `before` (what the server wrote ahead of the goodbye).
pub fn delivered(received: &[u8], before: usize, goodbye: &[u8]) -> usize {
    let got = received.get(before..).unwrap_or_default();
    got.iter().zip(goodbye).take_while(|(a, b)| a == b).count()
}

/// True once `received` ends with the whole `goodbye`.
fn has_goodbye(received: &[u8], goodbye: &[u8]) -> bool {
    received.len() >= goodbye.len() && received.ends_with(goodbye)
}

/// How long a cooperative peer takes between reading the goodbye and closing.
pub const COOPERATIVE_REACTION: Duration = Duration::from_millis(2);

/// The socket buffers a client asks for before it connects (`None`: the
/// kernel's default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientBuffers {
    /// `SO_RCVBUF`.
    pub rcv: Option<u32>,
    /// `SO_SNDBUF`.
    pub snd: Option<u32>,
}

/// The buffers `behaviour`'s client socket asks for: a tiny receive buffer
/// for a peer that never reads (its window fills at once),
/// [`SLOW_READER_RCVBUF`] for a slow reader, and a 64 KiB send buffer for a
/// flooding peer (it floods as fast as the path takes bytes either way, but
/// when the run ends its FIN does not queue behind megabytes of flood on a
/// slow path, which would outlast the lab's settling).
pub fn client_buffers(behaviour: Behaviour) -> ClientBuffers {
    match behaviour {
        Behaviour::NeverReads => ClientBuffers {
            rcv: Some(4096),
            snd: None,
        },
        Behaviour::SlowReader => ClientBuffers {
            rcv: Some(SLOW_READER_RCVBUF),
            snd: None,
        },
        Behaviour::Floods => ClientBuffers {
            rcv: None,
            snd: Some(64 * 1024),
        },
        _ => ClientBuffers::default(),
    }
}

/// A connected pair on `ip`: (server side, client side). `buffers` sizes
/// the client's socket buffers before it connects.
pub async fn connected_pair(
    ip: IpAddr,
    buffers: ClientBuffers,
) -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
    let socket = if ip.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    if let Some(size) = buffers.rcv {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(size) = buffers.snd {
        socket.set_send_buffer_size(size)?;
    }
    let (client, accepted) =
        tokio::join!(socket.connect(listener.local_addr()?), listener.accept());
    Ok((accepted?.0, client?))
}

/// Fills the peer's receive window and our send buffer (bounded), so nothing
/// more can be sent; returns how many bytes it wrote.
pub async fn fill_until_blocked(server: &TcpStream) -> io::Result<usize> {
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
                    return Ok(total);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Waits (bounded) until the server socket reaches `state`.
pub async fn await_state(server: &TcpStream, state: TcpState) -> io::Result<()> {
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

/// True when `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Runs the peer's side until `release` fires (or the peer ends by itself);
/// returns everything it received. `goodbye` is what the server says (the
/// peers that close on it read until they hold all of it); `progress`
/// counts the bytes received so far, for the lab to see that the peer is
/// still taking bytes.
pub async fn run_peer(
    mut client: TcpStream,
    behaviour: Behaviour,
    goodbye: Bytes,
    release: oneshot::Receiver<()>,
    progress: Arc<AtomicUsize>,
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
                            progress.store(received.len(), Ordering::Relaxed);
                            if until_goodbye && has_goodbye(&received, &goodbye) {
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
        Behaviour::SlowReader => {
            tokio::pin!(release);
            let mut tick = tokio::time::interval(SLOW_READ_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut done = false;
            while !done {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut release => break,
                }
                tokio::select! {
                    r = client.read(&mut buf[..SLOW_READ_CHUNK]) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            received.extend_from_slice(&buf[..n]);
                            progress.store(received.len(), Ordering::Relaxed);
                            done = has_goodbye(&received, &goodbye);
                        }
                    },
                    _ = &mut release => break,
                }
            }
            if done {
                tokio::time::sleep(COOPERATIVE_REACTION).await;
            }
        }
        Behaviour::NeverReads => {
            let _ = release.await;
            // Look at what its kernel had queued without consuming it (reading
            // would open the window and make it a cooperative peer). Linux keeps
            // the queue readable after a reset: farewell::facts F6. Then close with it unread.
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
        // by its namespace: there is nothing left to run. The lab does not
        // play the load generator's FLP/1 scripts (`run_connection` refuses them).
        Behaviour::ResetsFirst
        | Behaviour::Vanishes
        | Behaviour::BadHandshake
        | Behaviour::Overlong => {}
    }
    received
}
