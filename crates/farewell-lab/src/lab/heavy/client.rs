//! The clients of the heavy-client run: blocking sockets on plain threads,
//! made inside the client's namespace (threads spawned by a thread that
//! entered a namespace are in it too). Each connection is cooperative, as
//! the lab's cooperative peer is: it connects, reads until it has the
//! goodbye line (or EOF, a reset, its read bound), checks every byte, and
//! closes after [`COOPERATIVE_REACTION`] (the time a server's FIN sent
//! right after the goodbye takes to arrive on a real network; closing at
//! once would make `plain` a race of two FINs).

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::super::peer::{self, COOPERATIVE_REACTION, GOODBYE};

/// How long one connect may take (a SYN lost to the path's queue is sent
/// again after 1 s).
const CONNECT_BOUND: Duration = Duration::from_secs(3);

/// How long one read may wait for the goodbye.
const READ_BOUND: Duration = Duration::from_secs(2);

/// What one client does.
#[derive(Clone, Copy, Debug)]
pub(super) struct Plan {
    /// The client's address: `None` lets the kernel choose (the path's
    /// client address), `Some` binds it with port 0 (another host).
    pub from: Option<IpAddr>,
    /// The server's listener.
    pub to: SocketAddr,
    /// At most this many connections.
    pub count: usize,
    /// No connection starts after this.
    pub until: Instant,
    /// Connections in flight at once, each on a thread of its own.
    pub workers: usize,
    /// A pause before each connection (zero: as fast as it can), cut short
    /// once the `done` flag given to [`run`] is set.
    pub spacing: Duration,
}

/// What one client saw.
#[derive(Clone, Debug, Default)]
pub(super) struct Tally {
    /// `connect()` calls that succeeded.
    pub opened: usize,
    /// Connections whose application received the whole goodbye, every byte checked.
    pub completed: usize,
    /// `connect()` calls that failed.
    pub connect_failed: usize,
    /// Goodbye bytes the application did not receive, summed over the opened connections.
    pub bytes_lost: u64,
    /// How long each successful `connect()` took.
    pub connects: Vec<Duration>,
    /// From the first connection's start to the last one's end.
    pub elapsed: Duration,
    /// The first error seen, connect or read.
    pub first_error: Option<String>,
}

/// Runs `plan` on `plan.workers` threads of the caller's namespace, calling
/// `tick` after each connection; blocks until every worker is done (each
/// connection is bounded by [`CONNECT_BOUND`] and [`READ_BOUND`]). Once
/// `done` is set, the pauses of [`Plan::spacing`] end early.
pub(super) fn run(plan: &Plan, tick: &(dyn Fn() + Sync), done: &AtomicBool) -> Tally {
    let next = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..plan.workers.max(1) {
            scope.spawn(|| loop {
                pause(plan.spacing, done);
                if Instant::now() >= plan.until
                    || next.fetch_add(1, Ordering::Relaxed) >= plan.count
                {
                    break;
                }
                let result = one(plan.from, plan.to);
                let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
                match result {
                    Ok(conn) => {
                        tally.opened += 1;
                        tally.connects.push(conn.connect);
                        let lost = GOODBYE.len() - conn.delivered;
                        tally.completed += usize::from(lost == 0);
                        tally.bytes_lost += lost as u64;
                        if let (None, Some(e)) = (&tally.first_error, conn.read_error) {
                            tally.first_error = Some(format!("reading the goodbye: {e}"));
                        }
                    }
                    Err(e) => {
                        tally.connect_failed += 1;
                        if tally.first_error.is_none() {
                            tally.first_error = Some(format!("connecting: {e}"));
                        }
                    }
                }
                drop(tally);
                tick();
            });
        }
    });
    let mut tally = tally.into_inner().unwrap_or_else(|p| p.into_inner());
    tally.elapsed = started.elapsed();
    tally
}

/// Sleeps `spacing`, in steps of 10 ms, or until `done` is set.
fn pause(spacing: Duration, done: &AtomicBool) {
    let until = Instant::now() + spacing;
    while !done.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(10)));
    }
}

/// One connection that connected.
struct Connection {
    connect: Duration,
    delivered: usize,
    read_error: Option<io::Error>,
}

/// Connects from `from` (with port 0, or the kernel's choice of address) to
/// `to`, reads until the goodbye line, and closes. `Err` only when the
/// connect failed short of a connection (a reset already in the connect's
/// answer counts as a connection that lost the whole goodbye); what the
/// read got, or did not, is in the result.
fn one(from: Option<IpAddr>, to: SocketAddr) -> io::Result<Connection> {
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(ip) = from {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    let started = Instant::now();
    match socket.connect_timeout(&to.into(), CONNECT_BOUND) {
        Ok(()) => {}
        // Connected and reset before the connect returned (abort on a fast
        // path): the server accepted it, and the whole goodbye was lost.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
            return Ok(Connection {
                connect: started.elapsed(),
                delivered: 0,
                read_error: Some(e),
            });
        }
        Err(e) => return Err(e),
    }
    let connect = started.elapsed();
    socket.set_read_timeout(Some(READ_BOUND))?;
    let mut stream = TcpStream::from(socket);
    let mut received = Vec::with_capacity(GOODBYE.len());
    let mut buf = [0u8; 256];
    let mut read_error = None;
    while !peer::contains(&received, GOODBYE) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => {
                read_error = Some(e);
                break;
            }
        }
    }
    std::thread::sleep(COOPERATIVE_REACTION);
    // Closed here: the client's FIN (or, with bytes left unread, its reset).
    drop(stream);
    Ok(Connection {
        connect,
        delivered: peer::delivered(&received, 0, GOODBYE),
        read_error,
    })
}
