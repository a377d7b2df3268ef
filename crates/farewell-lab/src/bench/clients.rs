//! The bench's FLP/1 clients: closed-loop churners and idle holders.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long one client step (connect, one reply) may take before the client
/// counts an error and moves on: nothing in the bench can hang.
pub const STEP_BOUND: Duration = Duration::from_secs(5);

/// The clients' source addresses, 127.1.x.y round robin (see
/// [`support::addr`](crate::support::addr) for why).
pub use crate::support::addr::SourceAddrs;

/// Connects to `server` from the next source address, the port left for
/// `connect()` to pick (`IP_BIND_ADDRESS_NO_PORT`): the search for a free port
/// then sees only this address's connections, not every client's TIME-WAIT.
pub async fn connect(server: SocketAddr, sources: &SourceAddrs) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    setsockopt(&socket, IpBindAddressNoPort, &true)?;
    socket.bind(SocketAddr::new(sources.next(), 0))?;
    bounded(socket.connect(server)).await
}

async fn bounded<T>(step: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(STEP_BOUND, step)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "bench step timed out",
            ))
        })
}

/// Reads until the input so far ends with `\n` and contains `want`.
async fn expect_line(stream: &mut TcpStream, want: &[u8]) -> io::Result<()> {
    let mut seen = Vec::with_capacity(32);
    let mut buf = [0u8; 64];
    loop {
        let n = bounded(stream.read(&mut buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        seen.extend_from_slice(&buf[..n]);
        if seen.ends_with(b"\n") && seen.windows(want.len()).any(|w| w == want) {
            return Ok(());
        }
        if seen.len() > 4096 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected reply",
            ));
        }
    }
}

/// Connects and completes the FLP/1 handshake.
pub async fn hello(server: SocketAddr, sources: &SourceAddrs) -> io::Result<TcpStream> {
    let mut stream = connect(server, sources).await?;
    stream.write_all(b"HELLO bench\n").await?;
    expect_line(&mut stream, b"WELCOME bench").await?;
    Ok(stream)
}

/// One whole session: connect, `HELLO`, `QUIT`, read `BYE quit`, close.
pub async fn one_session(server: SocketAddr, sources: &SourceAddrs) -> io::Result<()> {
    let mut stream = hello(server, sources).await?;
    stream.write_all(b"QUIT\n").await?;
    expect_line(&mut stream, b"BYE quit").await?;
    Ok(()) // dropping the stream closes it: a cooperative client
}

/// Sessions completed and failed by a closed loop.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoopCount {
    /// Sessions that got their `BYE quit`.
    pub completed: u64,
    /// Sessions that failed (connect refused, reset, timed out, …).
    pub errors: u64,
}

/// `clients` closed-loop clients doing [`one_session`] back to back until
/// `duration` has passed (a session in progress then finishes, bounded by
/// [`STEP_BOUND`]).
pub async fn closed_loop(
    server: SocketAddr,
    clients: usize,
    duration: Duration,
    sources: SourceAddrs,
) -> LoopCount {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let sources = sources.clone();
        tasks.push(tokio::spawn(async move {
            let mut count = LoopCount::default();
            while Instant::now() < deadline {
                match one_session(server, &sources).await {
                    Ok(()) => count.completed += 1,
                    Err(_) => count.errors += 1,
                }
            }
            count
        }));
    }
    let mut total = LoopCount::default();
    for task in tasks {
        if let Ok(count) = task.await {
            total.completed += count.completed;
            total.errors += count.errors;
        }
    }
    total
}
