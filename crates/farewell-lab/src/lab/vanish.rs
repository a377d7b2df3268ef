//! The `vanishes` column: every policy against a peer whose host is gone,
//! played in two network namespaces joined by a veth pair (for the loopback
//! column), or on a path of its own made like the column's path (the path's
//! client vanishes, so no other cell can share it).
//!
//! All of the column's connections run at once, so the column costs one
//! grace-bound teardown, not one per connection: every client connects from
//! namespace B to a listener in A, B vanishes (its address is removed), and
//! every server end is torn down concurrently with its policy. Then the
//! census of A says what the server's kernel kept (a FIN-WAIT-1 orphan that
//! retransmits for minutes is *leftover*; the lab reports it and does not
//! wait for it), the census of B and the clients' receive queues say what
//! the peers got. Finally the orphans are destroyed (`SOCK_DESTROY`), the
//! clients reset, and both namespaces deleted.
//!
//! No `ip` command runs between the first teardown and the last census read
//! (see the fork hazard in [`netns`](super::netns)).

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::cell::{CellReport, Trial};
use super::netns::{self, Netns, VethPair};
use super::path::{NetPath, PathSpec};
use super::peer::Behaviour;
use super::LabError;
use farewell::census::{self, Filter, SocketEntry};
use farewell::{Policy, TcpState};
use farewell_testkit::lab::timed_close;

/// How long connecting (and accepting) across the veth pair may take.
const CONNECT_BOUND: Duration = Duration::from_secs(5);

/// One connection across the pair, before the teardown.
struct Pair {
    /// Index into the column's policies.
    policy: usize,
    server: TcpStream,
    client: TcpStream,
    server_addr: SocketAddr,
    client_addr: SocketAddr,
}

/// Where the column runs: a bare veth pair, or a path like the column's.
#[derive(Debug)]
enum Hosts {
    Veth(VethPair),
    Path(NetPath),
}

impl Hosts {
    fn new(spec: PathSpec) -> io::Result<Hosts> {
        match spec {
            PathSpec::Loopback => VethPair::new().map(Hosts::Veth),
            spec => NetPath::new(spec).map(Hosts::Path),
        }
    }

    fn server(&self) -> &Netns {
        match self {
            Hosts::Veth(pair) => &pair.a,
            Hosts::Path(path) => path.server_netns().expect("a path with namespaces"),
        }
    }

    fn client(&self) -> &Netns {
        match self {
            Hosts::Veth(pair) => &pair.b,
            Hosts::Path(path) => path.client_netns().expect("a path with namespaces"),
        }
    }

    fn vanish_client(&self) -> io::Result<()> {
        match self {
            Hosts::Veth(pair) => pair.vanish_b(),
            Hosts::Path(path) => path.vanish_client(),
        }
    }
}

/// The namespaces, the listener and the connections, cleaned up on drop (the
/// namespaces delete themselves).
struct Stage {
    net: Arc<Hosts>,
    _listener: TcpListener,
    pairs: Vec<Pair>,
}

/// Runs `f` on the blocking pool (it forks `ip` or enters namespaces).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, LabError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LabError::Peer(e.to_string()))?
        .map_err(|e| LabError::Io("the vanished-peer namespaces", e))
}

/// Makes the namespaces and `per_policy` connections for each of `policies`.
fn stage(spec: PathSpec, policies: usize, per_policy: usize) -> io::Result<Stage> {
    let net = Hosts::new(spec)?;
    let listener = net
        .server()
        .run(|| TcpListener::bind((netns::ADDR_A, 0)))??;
    listener.set_nonblocking(true)?;
    let to = listener.local_addr()?;
    let pairs = net.client().run(|| {
        let mut pairs = Vec::with_capacity(policies * per_policy);
        for policy in 0..policies {
            for _ in 0..per_policy {
                // SYNs may be lost while the link comes up; connect retries within the bound.
                let client = TcpStream::connect_timeout(&to, CONNECT_BOUND)?;
                let server = accept(&listener)?;
                pairs.push(Pair {
                    policy,
                    server_addr: server.local_addr()?,
                    client_addr: client.local_addr()?,
                    server,
                    client,
                });
            }
        }
        Ok::<_, io::Error>(pairs)
    })??;
    Ok(Stage {
        net: Arc::new(net),
        _listener: listener,
        pairs,
    })
}

/// Accepts one connection on the non-blocking `listener`, bounded.
fn accept(listener: &TcpListener) -> io::Result<TcpStream> {
    let deadline = Instant::now() + CONNECT_BOUND;
    loop {
        match listener.accept() {
            Ok((stream, _)) => return Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Every non-listening socket in `ns`, by (local, remote).
fn table(ns: &netns::Netns) -> io::Result<HashMap<(SocketAddr, SocketAddr), SocketEntry>> {
    let entries = ns
        .run(|| census::dump(&Filter::all()))?
        .map_err(io::Error::other)?;
    Ok(entries
        .into_iter()
        .filter(|e| e.state != TcpState::Listen)
        .map(|e| ((e.local, e.remote), e))
        .collect())
}

/// Runs the `vanishes` cell of every policy in `policies`, `connections`
/// each, on a path like `spec` made for the column, calling `on_connection`
/// after each teardown. Without the privileges every cell is skipped with
/// the reason ([`netns::unavailable`]).
pub(crate) async fn run_column(
    spec: PathSpec,
    policies: &[(&'static str, Policy)],
    connections: usize,
    on_connection: Arc<dyn Fn() + Send + Sync>,
) -> Result<Vec<CellReport>, LabError> {
    let behaviour = Behaviour::Vanishes;
    if let Some(why) = netns::unavailable() {
        return Ok(policies
            .iter()
            .map(|(name, _)| CellReport::skipped(name, behaviour, &why))
            .collect());
    }
    let count = policies.len();
    let mut stage = blocking(move || stage(spec, count, connections)).await?;
    let net = Arc::clone(&stage.net);

    // The census must see namespace A's connections, or it cannot judge.
    let before = blocking({
        let net = Arc::clone(&net);
        move || table(net.server())
    })
    .await?;
    let seen = stage
        .pairs
        .iter()
        .filter(|p| {
            before
                .get(&(p.server_addr, p.client_addr))
                .is_some_and(|e| e.state == TcpState::Established)
        })
        .count();
    if seen != stage.pairs.len() {
        return Err(LabError::CensusBlind);
    }

    // Vanish, then tear every server end down at once.
    blocking({
        let net = Arc::clone(&net);
        move || net.vanish_client()
    })
    .await?;
    let mut teardowns = JoinSet::new();
    let mut clients = Vec::with_capacity(stage.pairs.len());
    for (i, pair) in stage.pairs.drain(..).enumerate() {
        let (_, policy) = policies[pair.policy];
        let server = into_tokio(pair.server)?;
        let on_connection = Arc::clone(&on_connection);
        teardowns.spawn(async move {
            let goodbye = bytes::Bytes::from_static(behaviour.goodbye());
            let result = timed_close(server, policy, goodbye).await;
            on_connection();
            (i, result)
        });
        clients.push((pair.policy, pair.client, pair.server_addr, pair.client_addr));
    }
    let mut results: Vec<Option<Result<_, LabError>>> = (0..clients.len()).map(|_| None).collect();
    while let Some(joined) = teardowns.join_next().await {
        let (i, result) = joined.map_err(|e| LabError::Peer(e.to_string()))?;
        results[i] = Some(result);
    }

    // The verdict: both namespaces' tables and what each client can read.
    let (in_a, in_b) = blocking({
        let net = Arc::clone(&net);
        move || Ok((table(net.server())?, table(net.client())?))
    })
    .await?;
    let mut trials: Vec<Vec<Trial>> = (0..count).map(|_| Vec::new()).collect();
    let mut errors: Vec<Vec<String>> = (0..count).map(|_| Vec::new()).collect();
    let mut orphans = Vec::new();
    for ((policy, client, server_addr, client_addr), result) in clients.iter().zip(results) {
        match result.expect("every teardown was joined") {
            Ok((outcome, release)) => {
                let server = in_a.get(&(*server_addr, *client_addr));
                trials[*policy].push(Trial::judged(
                    outcome,
                    release,
                    server.map(|e| e.state),
                    in_b.get(&(*client_addr, *server_addr)).map(|e| e.state),
                    &queued(client),
                    0,
                    behaviour.goodbye(),
                ));
                orphans.extend(server.cloned());
            }
            Err(e) => errors[*policy].push(e.to_string()),
        }
    }
    let cells = policies
        .iter()
        .zip(trials.iter().zip(errors))
        .map(|((name, _), (trials, errors))| {
            CellReport::from_trials(name, behaviour, trials, errors)
        })
        .collect();

    // Clean up: the orphans would retransmit for minutes; the clients are
    // reset (the RST goes nowhere); then the namespaces are deleted.
    drop(net);
    blocking(move || {
        for entry in &orphans {
            if let Ok(Err(e)) = stage.net.server().run(|| census::destroy(entry)) {
                tracing::warn!(
                    "destroying the orphan {} -> {}: {e}",
                    entry.local,
                    entry.remote
                );
            }
        }
        for (_, client, _, _) in clients {
            let _ = farewell::sys::abort(client);
        }
        drop(stage);
        Ok(())
    })
    .await?;
    Ok(cells)
}

fn into_tokio(server: TcpStream) -> Result<tokio::net::TcpStream, LabError> {
    let io = |e| LabError::Io("preparing the server socket", e);
    server.set_nonblocking(true).map_err(io)?;
    tokio::net::TcpStream::from_std(server).map_err(io)
}

/// What the client's application could read now, without consuming it.
fn queued(client: &TcpStream) -> Vec<u8> {
    let mut buf = vec![0u8; 64 * 1024];
    if client.set_nonblocking(true).is_err() {
        return Vec::new();
    }
    match client.peek(&mut buf) {
        Ok(n) => buf[..n].to_vec(),
        Err(_) => Vec::new(),
    }
}
