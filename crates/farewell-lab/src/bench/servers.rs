//! The servers `farewell bench churn` compares: one FLP/1 handler, three endings.
//!
//! Every server runs on its own one-worker tokio runtime, so its CPU time can
//! be read apart from the clients' ([`ThreadCpu`]). They share the accept loop
//! and the FLP/1 handling (`farewell_server::flp::Session`, the same code `farewell
//! serve` runs); only what happens after the goodbye differs:
//!
//! - `plain-tokio`: write the goodbye, drop the stream — what a tokio server
//!   does today. The server sends the first FIN and keeps TIME-WAIT.
//! - `peer-first`: hand the stream and the goodbye to a [`Closer`]
//!   ([`Closer::close_here`], in the connection's task) with the
//!   default peer-first policy.
//! - `abort`: a [`Closer`] with [`Policy::Abort`] (goodbye, then RST).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use farewell::{Closer, Policy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

use super::cpu::ThreadCpu;

/// Which ending a benchmarked server uses after its goodbye.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// Goodbye, then drop the stream (the baseline).
    PlainTokio,
    /// Goodbye through a peer-first [`Closer`].
    PeerFirst,
    /// Goodbye, then reset, through a [`Closer`].
    Abort,
}

impl ServerKind {
    /// In the order the bench interleaves them.
    pub const ALL: [ServerKind; 3] = [
        ServerKind::PlainTokio,
        ServerKind::PeerFirst,
        ServerKind::Abort,
    ];

    /// The row name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::PlainTokio => "plain-tokio",
            ServerKind::PeerFirst => "farewell-peer-first",
            ServerKind::Abort => "farewell-abort",
        }
    }
}

/// A running benchmark server.
pub struct BenchServer {
    /// Where it listens.
    pub addr: SocketAddr,
    cpu: ThreadCpu,
    closer: Option<Closer>,
    stop: Option<oneshot::Sender<()>>,
    runtime: Option<Runtime>,
}

impl BenchServer {
    /// Starts a server of `kind` on `127.0.0.1:0`.
    pub fn start(kind: ServerKind) -> io::Result<BenchServer> {
        let cpu = ThreadCpu::default();
        let register = cpu.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(kind.name())
            .on_thread_start(move || register.register_current())
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let closer = match kind {
            ServerKind::PlainTokio => None,
            ServerKind::PeerFirst => Some(Policy::default()),
            ServerKind::Abort => Some(Policy::Abort),
        }
        .map(|policy| {
            Closer::builder(policy)
                .runtime(runtime.handle().clone())
                .build()
        });
        let (stop, stopped) = oneshot::channel();
        runtime.spawn(accept_loop(listener, closer.clone(), stopped));
        Ok(BenchServer {
            addr,
            cpu,
            closer,
            stop: Some(stop),
            runtime: Some(runtime),
        })
    }

    /// CPU time the server's threads used so far.
    pub fn cpu_time(&self) -> Duration {
        self.cpu.total().unwrap_or_default()
    }

    /// Stops accepting, waits (bounded) for the closer's teardowns, reads the
    /// CPU time, and shuts the runtime down (closing every socket it still
    /// holds). Returns the CPU time and the teardowns still in flight at the bound.
    pub fn finish(mut self, bound: Duration) -> (Duration, usize) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let runtime = self.runtime.take().expect("running");
        let left = match &self.closer {
            Some(closer) => runtime.block_on(async {
                let _ = tokio::time::timeout(bound, closer.idle()).await;
                closer.in_flight()
            }),
            None => 0,
        };
        let cpu = self.cpu_time();
        runtime.shutdown_timeout(Duration::from_millis(100));
        (cpu, left)
    }
}

async fn accept_loop(
    listener: TcpListener,
    closer: Option<Closer>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(serve_connection(stream, peer, closer.clone()));
                }
                // EMFILE and friends: let the clients' errors show it; do not spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            },
        }
    }
}

/// FLP/1 over one connection, then the server's ending.
async fn serve_connection(mut stream: TcpStream, peer: SocketAddr, closer: Option<Closer>) {
    let mut session = farewell_server::flp::Session::new(farewell_server::flp::DEFAULT_MAX_LINE);
    let mut input = [0u8; 512];
    let mut reply = Vec::new();
    let reason = loop {
        let n = match stream.read(&mut input).await {
            Ok(0) | Err(_) => return, // the client left without a goodbye: just drop
            Ok(n) => n,
        };
        reply.clear();
        let reason = session.feed(&input[..n], &mut reply);
        if !reply.is_empty() && stream.write_all(&reply).await.is_err() {
            return;
        }
        if let Some(reason) = reason {
            break reason;
        }
    };
    let goodbye = farewell_server::flp::goodbye(reason);
    match closer {
        // In this connection's own task, as a server that ends each
        // connection where it served it would: no second task.
        // With the address `accept` gave, as the closer's docs advise.
        Some(closer) => {
            closer
                .close_here((stream, peer), goodbye, closer.policy())
                .await
        }
        None => {
            let _ = stream.write_all(goodbye).await;
            drop(stream);
        }
    }
}
