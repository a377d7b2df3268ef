//! The bench's HTTP/1.1 clients: closed-loop `Connection: close` requests,
//! every connection from its own source address (127.1.x.y on loopback, or a
//! client host's own addresses in `bench http --hosts`, see [`Sources`]).
//!
//! Why: a peer-first server never sends the first FIN, so the *client* keeps
//! TIME-WAIT (RFC 9293 §3.5.2). One wrk process on one source address
//! (127.0.0.1) to one server address then holds thousands of TIME-WAIT entries
//! on its own ephemeral ports, and each `connect()` searches them for a free
//! port (`__inet_hash_connect`, `__inet_check_established`): the load generator
//! slows down, not the server. Real clients are many hosts, each holding a few
//! entries. These clients model that: each connection binds the next address of
//! [`SourceAddrs`] (127.1.x.y) with `IP_BIND_ADDRESS_NO_PORT`, so the kernel
//! picks the port at `connect()` for that address alone.
//!
//! Per request a client connects, writes
//! `GET / HTTP/1.1\r\nHost: …\r\nConnection: close\r\n\r\n`, reads the whole
//! response (status line, headers, `Content-Length` body), checks it is a 200
//! whose body is [`HELLO`](crate::support::http_demo::HELLO), and drops the
//! stream (sends its FIN) — what wrk does after a `Connection: close` response.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::clients::{SourceAddrs, STEP_BOUND};

/// Where each new connection's source address comes from: the next of a
/// pool, round robin, shared by the clones (all the clients of one load).
pub trait Sources: Clone + Send + Sync + 'static {
    /// The source address of the next connection.
    fn next_source(&self) -> IpAddr;
}

/// Loopback: 127.1.x.y, see [`crate::support::addr`].
impl Sources for SourceAddrs {
    fn next_source(&self) -> IpAddr {
        self.next()
    }
}

/// The largest response head (status line and headers) a client accepts.
const MAX_HEAD: usize = 8 * 1024;

/// How a closed-loop HTTP load runs.
#[derive(Clone, Copy, Debug)]
pub struct HttpLoad {
    /// The server to load.
    pub server: SocketAddr,
    /// Clients running at once, each one request at a time (wrk's `-c`).
    pub connections: usize,
    /// No client starts a request after this much time has passed.
    pub duration: Duration,
    /// Stop after this many requests in all (for short test runs).
    pub max_requests: Option<u64>,
    /// Start at most this many requests per second, in all: request `k`
    /// (counted across the clients) starts at `k / rate` seconds, or later
    /// when no client is free. `None`: each client starts its next request
    /// as soon as the last one ended.
    pub rate: Option<f64>,
}

/// Why requests failed, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HttpErrors {
    /// `connect()` failed (refused, no port free, …).
    pub connect: u64,
    /// A request took longer than [`STEP_BOUND`].
    pub timeout: u64,
    /// The connection was reset or ended before the whole response arrived.
    pub reset: u64,
    /// Not a 200, no `Content-Length`, or not the expected body.
    pub bad_response: u64,
}

impl HttpErrors {
    /// All failed requests.
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.reset + self.bad_response
    }

    pub(crate) fn add(&mut self, other: HttpErrors) {
        self.connect += other.connect;
        self.timeout += other.timeout;
        self.reset += other.reset;
        self.bad_response += other.bad_response;
    }

    fn count(&mut self, failure: &Failure) {
        match failure {
            Failure::Connect(_) => self.connect += 1,
            Failure::Timeout => self.timeout += 1,
            Failure::Io(_) => self.reset += 1,
            Failure::BadResponse(_) => self.bad_response += 1,
        }
    }
}

/// What a closed-loop load did.
#[derive(Clone, Debug, Default)]
pub struct HttpCount {
    /// Requests answered with a 200 and the expected body.
    pub responses: u64,
    /// Requests that failed.
    pub errors: HttpErrors,
    /// From the start until the last client finished.
    pub elapsed: Duration,
    /// The first failure, for the log.
    pub first_error: Option<String>,
}

/// Why one request failed.
#[derive(Debug)]
enum Failure {
    Connect(io::Error),
    Timeout,
    Io(io::Error),
    BadResponse(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Timeout => write!(f, "request took longer than {STEP_BOUND:?}"),
            Failure::Io(e) => write!(f, "reading the response: {e}"),
            Failure::BadResponse(why) => write!(f, "bad response: {why}"),
        }
    }
}

/// Runs `load.connections` clients, each doing `request_hello` back to back
/// from a fresh source address until `load.duration` has passed or
/// `load.max_requests` were started. A request in progress then finishes,
/// bounded by [`STEP_BOUND`].
///
/// The sockets are made in the calling thread's network namespace: run it on
/// a runtime whose threads are in the namespace the clients belong to.
pub async fn closed_loop(load: HttpLoad, sources: impl Sources) -> HttpCount {
    let started = Instant::now();
    let deadline = started + load.duration;
    let budget = Arc::new(AtomicU64::new(0));
    let request = Arc::<[u8]>::from(request_bytes(load.server));
    let mut tasks = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        let (sources, budget, request) = (sources.clone(), budget.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut count = HttpCount::default();
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let ticket = budget.fetch_add(1, Ordering::Relaxed);
                if load.max_requests.is_some_and(|max| ticket >= max) {
                    break;
                }
                if let Some(rate) = load.rate {
                    // Past the run (or beyond any Duration, for a tiny rate): done.
                    let Some(due) = Duration::try_from_secs_f64(ticket as f64 / rate)
                        .ok()
                        .and_then(|after| started.checked_add(after))
                        .filter(|&due| due < deadline)
                    else {
                        break;
                    };
                    tokio::time::sleep_until(due.into()).await;
                }
                match request_hello(load.server, &request, &sources).await {
                    Ok(()) => count.responses += 1,
                    Err(failure) => {
                        count.errors.count(&failure);
                        count.first_error.get_or_insert_with(|| failure.to_string());
                    }
                }
            }
            count
        }));
    }
    let mut total = HttpCount::default();
    for task in tasks {
        if let Ok(count) = task.await {
            total.responses += count.responses;
            total.errors.add(count.errors);
            if total.first_error.is_none() {
                total.first_error = count.first_error;
            }
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// `GET / HTTP/1.1` with `Connection: close`, for `server`.
fn request_bytes(server: SocketAddr) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// One request on a new connection from the next source address; `Ok` when
/// the answer is a 200 with [`farewell_lab::support::http_demo::HELLO`] as its body. The
/// stream is dropped at the end: the client sends its FIN then.
async fn request_hello(
    server: SocketAddr,
    request: &[u8],
    sources: &impl Sources,
) -> Result<(), Failure> {
    let exchange = async {
        let mut stream = connect(server, sources.next_source())
            .await
            .map_err(Failure::Connect)?;
        stream.write_all(request).await.map_err(Failure::Io)?;
        let body = read_response(&mut stream).await?;
        if body != crate::support::http_demo::HELLO.as_bytes() {
            return Err(Failure::BadResponse(format!(
                "body {:?}",
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(())
    };
    tokio::time::timeout(STEP_BOUND, exchange)
        .await
        .unwrap_or(Err(Failure::Timeout))
}

/// Connects to `server` from `source`, the port left for `connect()` to pick
/// (`IP_BIND_ADDRESS_NO_PORT`): the search for a free port then sees only
/// this address's connections, not every client's TIME-WAIT. Unbounded: the
/// caller bounds the whole exchange.
async fn connect(server: SocketAddr, source: IpAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    setsockopt(&socket, IpBindAddressNoPort, &true)?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(server).await
}

/// Reads one response whose body has a `Content-Length`; returns the body
/// once exactly that many bytes arrived. A 200 is required.
async fn read_response(stream: &mut TcpStream) -> Result<Vec<u8>, Failure> {
    let mut seen = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    let mut body_len: Option<(usize, usize)> = None; // (head length, content length)
    loop {
        if let Some((head, length)) = body_len {
            if seen.len() >= head + length {
                if seen.len() > head + length {
                    return Err(Failure::BadResponse("bytes after the body".into()));
                }
                return Ok(seen.split_off(head));
            }
        } else if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let length = parse_head(&seen[..end + 4]).map_err(Failure::BadResponse)?;
            body_len = Some((end + 4, length));
            continue;
        } else if seen.len() > MAX_HEAD {
            return Err(Failure::BadResponse("head longer than 8 KiB".into()));
        }
        let n = stream.read(&mut buf).await.map_err(Failure::Io)?;
        if n == 0 {
            return Err(Failure::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection ended after {} bytes", seen.len()),
            )));
        }
        seen.extend_from_slice(&buf[..n]);
    }
}

/// Checks the status line says 200 and returns the `Content-Length`.
fn parse_head(head: &[u8]) -> Result<usize, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("head cut short".to_owned()),
        Err(e) => return Err(format!("bad head: {e}")),
    }
    if response.code != Some(200) {
        return Err(format!("status {:?}", response.code));
    }
    response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .ok_or_else(|| "no Content-Length".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_head_reads_content_length_of_a_200() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 25\r\nconnection: close\r\n\r\n";
        assert_eq!(parse_head(head), Ok(25));
    }

    #[test]
    fn parse_head_refuses_other_statuses_and_missing_length() {
        assert!(parse_head(b"HTTP/1.1 404 Not Found\r\ncontent-length: 10\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 10").is_err(),
            "cut short"
        );
    }

    #[test]
    fn request_names_the_host_and_asks_for_close() {
        let request = request_bytes("127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            request,
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n"
        );
    }
}
