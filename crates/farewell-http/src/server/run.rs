//! The accept loop, each connection's task spawned, then the graceful shutdown.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use farewell::accept::{self, AcceptBackoff};
use farewell::{Closer, PeerFirst, PeerTimeWait, Policy};
use tokio::sync::watch;
use tokio::task::JoinSet;

#[cfg(feature = "rustls")]
use super::connection::serve_tls_connection;
use super::connection::{serve_connection, ConnTask};
use super::maker::Maker;
use super::{ServeReport, Server, CUT_HANDLERS_WAIT, MAX_ACCEPT_BACKOFF, SHED_RESPONSE};
use crate::conn::{Client, ConnState, Delimited, Handover, Shared};
use crate::decide;
use crate::metrics;
use crate::record::{CauseCounts, Connections};
use crate::serve::Listener;
use crate::shutdown::Shutdown;
use crate::upgrade::Upgrades;

impl Server {
    /// The accept loop, then the graceful shutdown.
    pub(super) async fn run<L: Listener, M: Maker>(
        self,
        mut listener: L,
        mut maker: M,
        shutdown: impl Future<Output = ()> + Send,
    ) -> io::Result<ServeReport> {
        let (stop_tx, stop_rx) = watch::channel(false);
        // A new run: the handles taken before it wait for its shutdown.
        self.signal.send_replace(false);
        let (shared, close_notify) = self.shared(stop_rx.clone());
        #[cfg(feature = "rustls")]
        let tls = self.tls.clone().map(|config| {
            (
                farewell::tls::tokio_rustls::TlsAcceptor::from(config),
                self.tls_handshake_timeout,
            )
        });
        let mut builder = self.hyper.clone();
        // A client may send its requests and then its FIN (`shutdown(SHUT_WR)`,
        // `nc -N`) and wait for the answers: RFC 9112 §9.6. Without half-close,
        // hyper takes the EOF for "the client is gone" and drops the request in
        // flight. With it, hyper answers every request read before the FIN,
        // then ends the connection; the teardown finds the FIN already in
        // (peer-closed: the client keeps TIME-WAIT).
        builder.http1().half_close(true);
        let builder = Arc::new(builder);
        let mut tasks = JoinSet::new();

        // A plaintext 503 means nothing to a TLS client: reset it only.
        let shed_response: &[u8] = if self.is_tls() { &[] } else { SHED_RESPONSE };
        let mut backoff = AcceptBackoff::new(MAX_ACCEPT_BACKOFF);
        let mut shed = 0u64;
        let mut accept_errors = 0u64;
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                () = backoff.wait() => continue,
                accepted = listener.accept(), if !backoff.pausing() => match accepted {
                    Ok(accepted) => {
                        backoff.recovered();
                        // Tasks that ended but were not joined yet free their slot now.
                        while tasks.try_join_next().is_some() {}
                        if tasks.len() >= self.max_connections {
                            // Over the limit: a 503 if it fits at once, then
                            // one RST; no task, no TIME-WAIT.
                            accept::shed_with(accepted.0, shed_response);
                            shed += 1;
                            continue;
                        }
                        accepted
                    }
                    Err(e) if accept::is_per_connection(&e) => {
                        tracing::debug!(error = %e, "a connection failed before accept");
                        continue;
                    }
                    Err(e) => {
                        accept_errors += 1;
                        backoff.failed(&e);
                        // Out of descriptors all the same: clients waiting in
                        // the backlog get a reset now, not a wait.
                        if let Some(tcp) = listener.tcp_listener() {
                            shed += backoff.shed_pending(tcp, shed_response);
                        }
                        continue;
                    }
                },
                // Finished connections are not joined here: a `join_next` arm
                // would wake this task at the end of every connection. They
                // are collected at the next accept (`try_join_next` above),
                // so the set holds at most the connections that ended since.
            };
            // On by default: responses are written whole; do not let Nagle hold their tails.
            let _ = stream.set_nodelay(self.nodelay);
            shared.connections.fetch_add(1, Ordering::Relaxed);
            if let Some(handles) = &shared.metrics {
                handles.accepted();
            }
            // The service for this connection: a clone, or what the
            // make-service gives for this client (`ConnectInfo`).
            let service = match maker.make(peer).await {
                Ok(service) => service,
                Err(e) => {
                    tracing::debug!(error = %e, %peer, "the make-service failed; closing the connection");
                    stream.hand_over(&shared.closer, shared.quiet_policy, Client::at(peer));
                    continue;
                }
            };
            let task = ConnTask {
                state: Arc::new(ConnState::new(Arc::clone(&shared), peer)),
                open: shared.metrics.as_ref().map(|handles| handles.open()),
            };
            #[cfg(feature = "rustls")]
            if let Some(tls) = &tls {
                tasks.spawn(serve_tls_connection(
                    tls.clone(),
                    Arc::clone(&builder),
                    stream,
                    service,
                    task,
                    stop_rx.clone(),
                ));
                continue;
            }
            // Spawned as it is: wrapped in another async block, the task's
            // future would be copied once more.
            tasks.spawn(serve_connection(
                Arc::clone(&builder),
                stream,
                service,
                task,
                stop_rx.clone(),
            ));
        }

        drop(listener);
        tracing::debug!(connections = tasks.len(), "shutting down");
        // The flag first: a connection's task looks at its stop signal only
        // once the flag is up.
        shared.stopping.store(true, Ordering::Release);
        let _ = stop_tx.send(true);
        self.signal.send_replace(true);
        let forced = self.drain(tasks, &shared).await;
        Ok(ServeReport {
            connections: shared.connections.load(Ordering::Relaxed),
            requests: shared.requests.load(Ordering::Relaxed),
            forced,
            teardowns: shared.closer.stats(),
            tls: self.is_tls(),
            tls_handshakes_failed: shared.tls_handshakes_failed.load(Ordering::Relaxed),
            peer_close_notify: close_notify.load(Ordering::Relaxed),
            close_delimited: shared.delimited.delivered.load(Ordering::Relaxed),
            close_delimited_undelivered: shared.delimited.reset_undelivered.load(Ordering::Relaxed),
            causes: shared.causes.snapshot(),
            upgrades_closed: shared.upgrades.closed.load(Ordering::Relaxed),
            upgrades_reset_undelivered: shared.upgrades.reset_undelivered.load(Ordering::Relaxed),
            upgrades_idle_cut: shared.upgrades.idle_cut.load(Ordering::Relaxed),
            shed,
            accept_errors,
        })
    }

    /// The closer (its hook counting what the report and the metrics need)
    /// and the state every connection shares; the `close_notify` count.
    fn shared(&self, stop_rx: watch::Receiver<bool>) -> (Arc<Shared>, Arc<AtomicU64>) {
        let record = self.metrics && metrics::ON;
        let handles = record.then(|| {
            metrics::describe();
            Arc::new(metrics::Handles::new())
        });
        let mut closer =
            Closer::builder(self.policy).heavy_client_threshold(self.heavy_client_threshold);
        let close_notify = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(Connections::new(self.on_connection.clone()));
        let tls = self.is_tls();
        let hooked = self.on_outcome.is_some() || self.on_connection.is_some();
        if tls || hooked || record {
            // Counting endings (metrics, TLS `close_notify`) needs no
            // addresses and no last probe: brief outcomes spare those syscalls.
            closer = closer.brief_outcomes(!hooked);
            let hook = self.on_outcome.clone();
            let counted = Arc::clone(&close_notify);
            let joined = Arc::clone(&ended);
            let handles = handles.clone();
            closer = closer.on_outcome(move |outcome| {
                if tls && outcome.peer_close_notify == Some(true) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                joined.teardown_ended(&outcome);
                if let Some(handles) = &handles {
                    handles.teardown(&outcome);
                }
                if let Some(hook) = &hook {
                    hook(outcome);
                }
            });
        }
        let limits = decide::Limits {
            header_read: self.header_read_timeout,
            body_read: self.body_read_timeout,
            send: self.send_timeout,
        };
        let shared = Arc::new(Shared {
            closer: closer.build(),
            policy: self.policy,
            may_reset_after_fin: matches!(
                self.policy,
                Policy::PeerFirst(p) if p.peer_time_wait != PeerTimeWait::Keep
            ),
            quiet_policy: match self.policy {
                Policy::PeerFirst(p) => Policy::PeerFirst(PeerFirst {
                    grace: Duration::ZERO,
                    ..p
                }),
                other => other,
            },
            idle_timeout: self.idle_timeout,
            upgrade_idle_timeout: self.upgrade_idle_timeout,
            limits,
            tick: limits.tick(),
            closing_timeout: match self.policy {
                Policy::PeerFirst(p) => p.grace.max(Duration::from_secs(1)),
                _ => Duration::from_secs(2),
            },
            max_requests: self.max_requests,
            forcing: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            tls_handshakes_failed: AtomicU64::new(0),
            delimited: Delimited::default(),
            causes: CauseCounts::default(),
            ended,
            shutdown: self
                .shutdown_extension
                .then(|| Shutdown::new(stop_rx.clone())),
            upgrades: Upgrades::default(),
            metrics: handles,
        });
        (shared, close_notify)
    }

    /// The graceful shutdown, once the accept loop has stopped and the
    /// connections were told: waits for them, then for the teardowns they
    /// handed over, all within the shutdown timeout; past it, hurries every
    /// teardown and drops the connections still open. Returns how many were.
    async fn drain(&self, mut tasks: JoinSet<()>, shared: &Shared) -> usize {
        let deadline = tokio::time::sleep(self.shutdown_timeout);
        tokio::pin!(deadline);
        let mut forced = 0;
        loop {
            tokio::select! {
                next = tasks.join_next() => if next.is_none() { break },
                () = &mut deadline => {
                    forced = tasks.len();
                    shared.forcing.store(true, Ordering::Relaxed);
                    // Every teardown, from now on too, ends at once.
                    shared.closer.hurry();
                    // Dropping each connection drops its IO, which hands the
                    // socket to the closer with the quiet (confirmed reset) policy.
                    // An upgraded connection's task holds no IO (its handler
                    // does): dropping the task cuts the stream, the handler's
                    // reads and writes fail, and it drops the stream.
                    tasks.shutdown().await;
                    if tokio::time::timeout(CUT_HANDLERS_WAIT, shared.upgrades.all_closed())
                        .await
                        .is_err()
                    {
                        tracing::warn!(
                            held = shared.upgrades.open(),
                            "upgraded connections cut at shutdown are still held by their \
                             handlers; a handler should end when a read or write fails"
                        );
                    }
                    break;
                }
            }
        }
        // Teardowns handed to the closer's own tasks (upgraded streams, clients
        // owed our FIN, connections dropped at the deadline) may outlive their
        // connection: the same deadline bounds them.
        let drained = async {
            shared.delimited.idle().await;
            shared.closer.idle().await;
        };
        tokio::select! {
            () = drained => {}
            () = &mut deadline => shared.closer.hurry(),
        }
        shared.delimited.idle().await;
        shared.closer.idle().await;
        forced
    }
}
