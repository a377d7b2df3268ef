//! TEST FIXTURE — a minimal FLP/1 server for the `farewell load` tests (and a
//! helper for a listener on a port nobody else uses). The server is
//! not `farewell serve`: it exists so the load client can be tested against a
//! server that records, per connection, which goodbye it sent. Goodbyes go
//! through `farewell::close` with the peer-first policy (short grace).
//!
//! Shared by the lab crate's `load` tests and the CLI's `load` and `watch` tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

/// The fixture's deadlines: short, so a test runs in about a second.
#[derive(Clone, Copy, Debug)]
pub struct FixtureConfig {
    /// `HELLO` must arrive within this.
    pub handshake_timeout: Duration,
    /// A line must arrive, and an echo must be written, within this.
    pub idle_timeout: Duration,
    /// The longest line, newline included.
    pub max_line: usize,
    /// peer-first's grace (and its ACK wait).
    pub grace: Duration,
}

impl Default for FixtureConfig {
    fn default() -> FixtureConfig {
        FixtureConfig {
            handshake_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(500),
            max_line: 4096,
            grace: Duration::from_millis(200),
        }
    }
}

/// One goodbye the fixture sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentGoodbye {
    /// The id from `HELLO <id>`, if the client said one.
    pub id: Option<String>,
    /// The reason in `BYE <reason>`.
    pub reason: &'static str,
}

impl SentGoodbye {
    /// The behaviour name of a load client's id (`cooperative-12` → `cooperative`).
    pub fn behaviour(&self) -> Option<&str> {
        let id = self.id.as_deref()?;
        Some(id.rsplit_once('-')?.0)
    }
}

/// A running fixture server on 127.0.0.1; stops when dropped.
pub struct Fixture {
    /// Where it listens.
    pub addr: SocketAddr,
    sent: Arc<Mutex<Vec<SentGoodbye>>>,
    accepted: Arc<Mutex<usize>>,
    task: JoinHandle<()>,
}

impl Fixture {
    /// Binds 127.0.0.1:0 and serves on the current runtime.
    pub async fn start(config: FixtureConfig) -> Fixture {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fixture");
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(0));
        let (s, a) = (sent.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *a.lock().unwrap() += 1;
                tokio::spawn(serve(stream, config, s.clone()));
            }
        });
        Fixture {
            addr,
            sent,
            accepted,
            task,
        }
    }

    /// Every goodbye sent so far.
    pub fn sent(&self) -> Vec<SentGoodbye> {
        self.sent.lock().unwrap().clone()
    }

    /// Reason → count of the goodbyes sent to clients whose id names
    /// `behaviour` (`None`: to clients that never said `HELLO`).
    pub fn sent_to(&self, behaviour: Option<&str>) -> BTreeMap<String, u64> {
        let mut by = BTreeMap::new();
        for g in self.sent().iter().filter(|g| g.behaviour() == behaviour) {
            *by.entry(g.reason.to_owned()).or_default() += 1;
        }
        by
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        *self.accepted.lock().unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener on 127.0.0.1 whose port no other socket on the host has as
/// its local or remote port, so census counts by that port see only this
/// test's sockets. (This host may hold tens of thousands of TIME-WAIT
/// entries from other runs; an ephemeral listener port can collide with them.)
pub fn unused_port_listener() -> std::net::TcpListener {
    use farewell::census::{self, Filter};
    for _ in 0..50 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let local = census::count_by_state(&Filter::local_port(port)).expect("census");
        let remote = census::count_by_state(&Filter::remote_port(port)).expect("census");
        if local.total() == 1 && remote.total() == 0 {
            listener.set_nonblocking(true).unwrap();
            return listener;
        }
    }
    panic!("no port without other sockets found in 50 tries");
}

enum Next {
    Line(Vec<u8>),
    TooLong,
    Timeout,
    Eof,
    Failed,
}

async fn next_line(stream: &mut TcpStream, buf: &mut Vec<u8>, max: usize, until: Instant) -> Next {
    loop {
        if let Some(i) = buf.iter().position(|b| *b == b'\n') {
            if i + 1 > max {
                return Next::TooLong;
            }
            let mut line: Vec<u8> = buf.drain(..=i).collect();
            line.pop();
            return Next::Line(line);
        }
        if buf.len() >= max {
            return Next::TooLong;
        }
        let mut chunk = [0u8; 8192];
        match timeout_at(until, stream.read(&mut chunk)).await {
            Err(_) => return Next::Timeout,
            Ok(Ok(0)) => return Next::Eof,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => return Next::Failed,
        }
    }
}

async fn serve(mut stream: TcpStream, config: FixtureConfig, sent: Arc<Mutex<Vec<SentGoodbye>>>) {
    let mut buf = Vec::new();
    let mut id = None;
    let hello = next_line(
        &mut stream,
        &mut buf,
        config.max_line,
        Instant::now() + config.handshake_timeout,
    )
    .await;
    let reason = match hello {
        Next::Line(line) => match line.strip_prefix(b"HELLO ") {
            Some(name) => {
                let name = String::from_utf8_lossy(name).into_owned();
                if stream
                    .write_all(format!("WELCOME {name}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                id = Some(name);
                echo(&mut stream, &mut buf, config).await
            }
            None => Some("bad-handshake"),
        },
        Next::TooLong => Some("line-too-long"),
        Next::Timeout => Some("handshake-timeout"),
        Next::Eof | Next::Failed => None,
    };
    let Some(reason) = reason else {
        return; // the client left (EOF or reset): close quietly
    };
    sent.lock().unwrap().push(SentGoodbye { id, reason });
    let policy = farewell::Policy::PeerFirst(farewell::PeerFirst {
        grace: config.grace,
        stall_timeout: config.grace,
        ..farewell::PeerFirst::default()
    });
    farewell::close(stream, policy, format!("BYE {reason}\n")).await;
}

/// Echoes lines until a goodbye is due (its reason) or the client leaves (`None`).
async fn echo(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    config: FixtureConfig,
) -> Option<&'static str> {
    loop {
        let until = Instant::now() + config.idle_timeout;
        match next_line(stream, buf, config.max_line, until).await {
            Next::Line(line) if line == b"QUIT" => return Some("quit"),
            Next::Line(mut line) => {
                line.push(b'\n');
                match timeout_at(
                    Instant::now() + config.idle_timeout,
                    stream.write_all(&line),
                )
                .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return None,
                    Err(_) => return Some("idle"), // the client does not read
                }
            }
            Next::TooLong => return Some("line-too-long"),
            Next::Timeout => return Some("idle"),
            Next::Eof | Next::Failed => return None,
        }
    }
}
