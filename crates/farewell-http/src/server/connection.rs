//! One connection's task: hyper serves it until it ends or the server stops
//! it, then the teardown, then (after an upgrade) the upgraded stream's watch.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
#[cfg(feature = "rustls")]
use std::time::Duration;
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::watch;
use tokio::task::coop::unconstrained;

use crate::conn::{ConnState, Handover};
use crate::decide::{self, AckClock};
use crate::io::TeardownIo;
#[cfg(feature = "rustls")]
use crate::metrics;
use crate::record::Cause;
use crate::service::Counted;

/// A connection's task's own state, made by the accept loop: the
/// connection's shared state and its place in the open-connections gauge.
/// When the task ends or is dropped (an abort at the shutdown deadline too),
/// the requests not yet in the server's count go there
/// ([`ConnState::flush_requests`]) and the gauge goes down.
pub(crate) struct ConnTask {
    pub(crate) state: Arc<ConnState>,
    /// Held, not read: dropped with the task.
    #[allow(dead_code)]
    pub(crate) open: Option<crate::metrics::Open>,
}

impl Drop for ConnTask {
    fn drop(&mut self) {
        self.state.flush_requests();
    }
}

/// Completes the TLS handshake (bounded), then serves the connection as
/// [`serve_connection`] does. A handshake that fails, times out or is
/// dropped (shutdown) hands the TCP stream to the closer.
#[cfg(feature = "rustls")]
pub(super) async fn serve_tls_connection<S, B>(
    (acceptor, timeout): (farewell::tls::tokio_rustls::TlsAcceptor, Duration),
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: tokio::net::TcpStream,
    service: S,
    task: ConnTask,
    stop: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let shared = &task.state.shared;
    let handshake = shared
        .closer
        .accept_tls(&acceptor, stream, timeout, shared.policy)
        .await;
    match handshake {
        Some(stream) => serve_connection(builder, stream, service, task, stop).await,
        None => {
            shared.tls_handshakes_failed.fetch_add(1, Ordering::Relaxed);
            if shared.metrics.is_some() {
                metrics::tls_handshake_failed();
            }
        }
    }
}

/// Serves one accepted connection until it ends, then lets the IO's drop hand
/// the socket to the closer.
pub(crate) async fn serve_connection<S, B>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: impl Handover,
    service: S,
    task: ConnTask,
    mut stop: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    // Borrowed from the argument, which the future holds anyway (an async
    // fn keeps its arguments for its whole life): no second copy.
    let state = &task.state;
    let idle = state.shared.idle_timeout;
    let limits = state.shared.limits;
    let closing_timeout = state.shared.closing_timeout;
    let tick = state.shared.tick;
    // hyper's connection lives in this block: it is dropped (and with it the
    // IO, unless an upgrade took it) before an upgraded stream is watched.
    let closing = {
        let io = TokioIo::new(TeardownIo::new(stream, Arc::clone(state)));
        // Boxed: hyper's connection (its buffers, its dispatcher) is most of
        // this task's size, and tokio moves a task's future whole when it
        // spawns it and when it ends; one allocation costs less than those
        // copies.
        let mut conn = Box::pin(
            builder.serve_connection_with_upgrades(io, Counted::new(service, Arc::clone(state))),
        );
        // When the client last ACKed a new byte (read only once a write blocked).
        let mut acks = AckClock::default();

        // The three things that can end a connection besides hyper itself, each
        // created once: re-creating them per wakeup would register and deregister a
        // timer and two waiters every time the connection's task runs. One timer
        // serves two clocks (a single entry in tokio's timer wheel, one
        // `Sleep` polled per wakeup): the idle check's and the watchdog's,
        // armed at the earlier of the two.
        let stopped = stop.wait_for(|stop| *stop);
        let limit_reached = state.limit_reached.notified();
        // The clock the connection's state started (one reading less).
        let start = state.started();
        let mut idle_at = start + idle;
        let mut watch_at = tick.map(|tick| start + tick);
        let timer = tokio::time::sleep_until(earlier(idle_at, watch_at).into());
        tokio::pin!(stopped, limit_reached, timer);
        // The timer is polled only when it must be, not at every wakeup of the
        // task: once armed (the poll gives it the task's waker) and once it has
        // elapsed. In between, the waker it holds wakes the task when it
        // fires; every reset is followed by a poll all the same.
        let timer_unpolled = AtomicBool::new(true);
        // So is the server's stop: polled once (its waiter keeps the task's
        // waker), then only once the server says it is stopping.
        let stop_unpolled = AtomicBool::new(true);

        // Told only when there is a request limit: not polled otherwise.
        let limited = state.shared.max_requests.is_some();
        let mut closing = false;
        loop {
            let was_closing = closing;
            tokio::select! {
                biased;
                // The requests' reads, writes and body frames in one poll share
                // one clock reading.
                result = std::future::poll_fn(|cx| state.poll_clocked(conn.as_mut(), cx)) => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                        state.cause.set(Cause::Error);
                    }
                    break;
                }
                _ = std::future::poll_fn(|cx| {
                    if !stop_unpolled.load(Ordering::Relaxed)
                        && !state.shared.stopping.load(Ordering::Acquire)
                    {
                        return std::task::Poll::Pending;
                    }
                    // Unconstrained, as the timer below.
                    let poll = std::pin::pin!(unconstrained(stopped.as_mut())).poll(cx);
                    if poll.is_pending() {
                        stop_unpolled.store(false, Ordering::Relaxed);
                    }
                    poll
                }), if !closing => {
                    state.cause.set(Cause::Shutdown);
                    // Server shutdown: in-flight responses finish with `Connection: close`
                    // (or h2 GOAWAY); idle HTTP/1.1 connections end at once.
                    state.closing_quietly();
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = limit_reached.as_mut(), if limited && !closing => {
                    // HTTP/1.1 responses already carry `Connection: close` (see
                    // `Counted`); for h2 this sends GOAWAY.
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = std::future::poll_fn(|cx| {
                    // While hyper's shutdown waits for the client's FIN
                    // (`ConnState::fin_wait`), this timer bounds the wait,
                    // whatever else re-armed it. (When it fires, the next
                    // poll of hyper's shutdown ends the wait.)
                    if let Some(at) = state.fin_wait_deadline() {
                        if at < timer.deadline().into_std() {
                            timer.as_mut().reset(at.into());
                            timer_unpolled.store(true, Ordering::Relaxed);
                        }
                    }
                    if !timer_unpolled.load(Ordering::Relaxed) && !timer.is_elapsed() {
                        return std::task::Poll::Pending;
                    }
                    // Unconstrained: a poll refused for tokio's cooperative
                    // budget would leave the timer without the waker.
                    let poll = std::pin::pin!(unconstrained(timer.as_mut())).poll(cx);
                    if poll.is_pending() {
                        timer_unpolled.store(false, Ordering::Relaxed);
                    }
                    poll
                }) => {
                    let now = Instant::now();
                    if watch_at.is_some_and(|at| at <= now) {
                        let now_ms = state.now_ms();
                        let acked_at = acks.sample(state.acked(), now_ms);
                        match decide::watchdog(&state.watch(now_ms, acked_at), &limits) {
                            None => watch_at = tick.map(|tick| now + tick),
                            Some(decide::Cut::Read) if state.h2_preface() && !closing => {
                                // An h2 client that sent its preface and no
                                // request: say GOAWAY first (RFC 9113 §6.8), then
                                // the closing bound ends it if it lingers.
                                state.cause.replace(Cause::ReadTimeout);
                                state.closing_quietly();
                                conn.as_mut().graceful_shutdown();
                                closing = true;
                                watch_at = tick.map(|tick| now + tick);
                            }
                            Some(decide::Cut::Read) => {
                                // Nothing is owed: reset once what was written is ACKed.
                                state.cause.replace(Cause::ReadTimeout);
                                state.closing_quietly();
                                break;
                            }
                            Some(decide::Cut::Send) => {
                                // Nothing more can be delivered: reset at once.
                                state.cause.replace(Cause::SendTimeout);
                                state.abort();
                                break;
                            }
                        }
                    }
                    if idle_at <= now {
                        // Before closing: the keep-alive idle timeout. After: how long a
                        // connection asked to end (GOAWAY) may then sit with nothing in
                        // flight and nothing moving, e.g. an h2 client that answers
                        // neither the GOAWAY nor its PING.
                        let bound = if closing { closing_timeout } else { idle };
                        match state.idle_check(bound, now) {
                            decide::Idle::CheckAt(next) => idle_at = next,
                            decide::Idle::Expired if closing => {
                                tracing::debug!("connection asked to end did not; ending it");
                                break;
                            }
                            decide::Idle::Expired => {
                                state.cause.set(Cause::Idle);
                                state.closing_quietly();
                                conn.as_mut().graceful_shutdown();
                                closing = true;
                            }
                        }
                    }
                    timer.as_mut().reset(earlier(idle_at, watch_at).into());
                    timer_unpolled.store(true, Ordering::Relaxed);
                }
            }
            if closing && !was_closing {
                idle_at = Instant::now() + closing_timeout;
                timer.as_mut().reset(earlier(idle_at, watch_at).into());
                timer_unpolled.store(true, Ordering::Relaxed);
            }
        }
        state.teardown_here(conn)
    };
    // The socket's teardown (waiting for the client's FIN, say) goes on in
    // this task, after the connection's timer and waiters are gone: no second
    // task per connection. If this task is aborted (the drain's deadline),
    // dropping the teardown ends it at once.
    if let Some(closing) = closing {
        closing.await;
    }
    // After an upgrade hyper is done, but the handler holds the socket: watch
    // it until the handler drops it (the drain at shutdown waits for this task).
    state.watch_upgraded().await;
}

/// The earlier of the idle check's deadline and the watchdog's (if it runs).
fn earlier(idle_at: Instant, watch_at: Option<Instant>) -> Instant {
    watch_at.map_or(idle_at, |at| at.min(idle_at))
}
