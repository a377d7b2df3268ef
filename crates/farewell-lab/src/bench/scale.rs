//! `farewell bench scale`: N idle clients, then one shutdown says goodbye to all at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use farewell::census::{self, Filter, StateSet};
use farewell::{Closer, Policy, TcpState};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};

use super::clients::{hello, SourceAddrs};

/// How a scale bench runs.
#[derive(Clone, Debug)]
pub struct ScaleConfig {
    /// Idle clients to connect (each costs two descriptors in this process).
    pub clients: usize,
    /// The peer-first grace: how long the server waits for each client's FIN.
    pub grace: Duration,
}

/// What the scale bench measured.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleReport {
    /// Clients connected and idle when the shutdown began.
    pub clients: usize,
    /// Clients that were asked for but could not connect (descriptor limit, errors).
    pub failed_to_connect: usize,
    /// The peer-first grace, in milliseconds.
    pub grace_ms: u64,
    /// From the shutdown until the kernel held no server socket on the port
    /// but TIME-WAIT (there should be none of those either), in milliseconds.
    pub release_ms: u64,
    /// Whether every server socket was released within grace + 1 s (the goal).
    pub released_within_goal: bool,
    /// Server TIME-WAIT entries after the shutdown (want 0).
    pub server_time_wait: usize,
    /// Teardowns by outcome path.
    pub paths: Vec<(String, u64)>,
    /// Peak resident memory of the whole process during the shutdown, in bytes.
    pub peak_rss_bytes: u64,
    /// (peak RSS − RSS before the shutdown) / clients: user-space memory per
    /// closing connection, in bytes (goal ≤ 1,024).
    pub bytes_per_closing_connection: u64,
}

/// Runs the scale bench. The clients read the goodbye and keep their sockets
/// open (they ignore it), so every teardown is pending at once — the worst
/// case for memory — and peer-first ends each with a reset once the goodbye
/// is ACKed and the grace is over.
pub fn run(
    config: &ScaleConfig,
    progress: impl Fn(u64) + Send + Sync + 'static,
) -> anyhow::Result<ScaleReport> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(scale(config, Arc::new(progress)))
}

async fn scale(
    config: &ScaleConfig,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> anyhow::Result<ScaleReport> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let accepted = Arc::new(Mutex::new(Vec::with_capacity(config.clients)));

    // Server: accept and answer the handshake; keep the streams.
    let server = {
        let accepted = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let accepted = Arc::clone(&accepted);
                tokio::spawn(async move {
                    let mut session =
                        farewell_server::flp::Session::new(farewell_server::flp::DEFAULT_MAX_LINE);
                    let mut input = [0u8; 64];
                    let mut reply = Vec::new();
                    while !session.is_established() {
                        match stream.read(&mut input).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if session.feed(&input[..n], &mut reply).is_some() {
                                    return;
                                }
                            }
                        }
                    }
                    if tokio::io::AsyncWriteExt::write_all(&mut stream, &reply)
                        .await
                        .is_ok()
                    {
                        accepted.lock().await.push(stream);
                    }
                });
            }
        })
    };

    // Clients: connect with bounded concurrency, handshake, then wait for the goodbye.
    let sources = SourceAddrs::default();
    let gate = Arc::new(Semaphore::new(256));
    let mut clients = Vec::with_capacity(config.clients);
    let mut holders = Vec::with_capacity(config.clients);
    for _ in 0..config.clients {
        let permit = Arc::clone(&gate).acquire_owned().await.expect("open");
        let sources = sources.clone();
        let progress = Arc::clone(&progress);
        clients.push(tokio::spawn(async move {
            let stream = hello(addr, &sources).await;
            drop(permit);
            progress(1);
            stream.ok()
        }));
    }
    for client in clients {
        if let Ok(Some(stream)) = client.await {
            holders.push(stream);
        }
    }
    let connected = holders.len();
    // Every accepted stream is in the server's list once its handshake reply is out.
    let bound = Instant::now() + Duration::from_secs(10);
    while accepted.lock().await.len() < connected && Instant::now() < bound {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.abort();

    // The ignoring peers: read the goodbye, keep the socket until the server lets go.
    let readers: Vec<_> = holders
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let deadline = Duration::from_secs(60);
                let _ = tokio::time::timeout(deadline, async {
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await;
            })
        })
        .collect();

    let policy = Policy::PeerFirst(farewell::PeerFirst {
        grace: config.grace,
        ..farewell::PeerFirst::default()
    });
    let closer = Closer::new(policy);
    let streams = std::mem::take(&mut *accepted.lock().await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rss_before = rss_bytes();
    let started = Instant::now();
    let count = streams.len();
    for stream in streams {
        closer.close(
            stream,
            farewell_server::flp::goodbye(farewell_server::Reason::Shutdown),
        );
    }

    // Watch RSS and the kernel until every server socket is released.
    let server_side = Filter::local(addr).states(StateSet::all().without(TcpState::Listen));
    let mut peak = rss_bytes();
    let release = loop {
        peak = peak.max(rss_bytes());
        let left =
            census::count_by_state(&server_side).context("reading the kernel's socket table")?;
        let busy = left.total() - left.get(TcpState::TimeWait);
        if closer.in_flight() == 0 && busy == 0 {
            break started.elapsed();
        }
        if started.elapsed() > config.grace + Duration::from_secs(30) {
            break started.elapsed(); // bounded: report what we saw
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let time_wait = census::count_by_state(&server_side)?.get(TcpState::TimeWait);
    for reader in readers {
        reader.abort();
    }
    let stats = closer.stats();
    Ok(ScaleReport {
        clients: count,
        failed_to_connect: config.clients - connected,
        grace_ms: config.grace.as_millis() as u64,
        release_ms: release.as_millis() as u64,
        released_within_goal: release <= config.grace + Duration::from_secs(1),
        server_time_wait: time_wait,
        paths: stats
            .by_ending
            .iter()
            .map(|(p, n)| (p.name().to_string(), *n))
            .collect(),
        peak_rss_bytes: peak,
        bytes_per_closing_connection: peak.saturating_sub(rss_before) / count.max(1) as u64,
    })
}

/// Resident set size of this process (`/proc/self/statm`), in bytes.
fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Raises the descriptor limit so `clients` idle clients (two descriptors
/// each, both ends live in this process) fit; returns how many clients fit.
pub fn fit_clients(clients: usize) -> usize {
    let want = (clients as u64) * 2 + 256;
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
    if soft < want {
        // Root may raise the hard limit too (up to fs.nr_open); others up to the hard limit.
        if rlimit::setrlimit(rlimit::Resource::NOFILE, want, want.max(hard)).is_err() {
            let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, hard.min(want), hard);
        }
    }
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
    clients.min((soft.saturating_sub(256) / 2) as usize)
}
