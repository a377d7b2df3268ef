//! farewell for Node.js: the native half of the `farewell` package.
//!
//! `index.js` takes a `net.Socket`'s descriptor and calls [`close_fd`]: the
//! descriptor is checked (a connected TCP socket) and duplicated, the
//! duplicate goes to a [`farewell::Closer`] on a tokio runtime this addon
//! owns (one per process, one worker thread, made on first use), and
//! `index.js` then destroys the socket. libuv's `close()` of the original
//! descriptor sends nothing, as the duplicate keeps the socket open; the
//! teardown (peer-first by default) decides what goes on the wire, so the
//! server keeps no TIME-WAIT.
//!
//! It calls no `libc` itself: the check of a descriptor is the core's (`farewell::sys::connected_tcp`).
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod options;
mod outcome;
mod runtime;
mod sys;

use std::collections::HashMap;

use bytes::Bytes;
use napi::bindgen_prelude::Buffer;
use napi::{Env, JsObject};
use napi_derive::napi;

use crate::error::Refusal;
use crate::options::CloseOptions;
use crate::outcome::JsOutcome;

/// Checks that `fd` could be handed over now (a connected TCP socket that is
/// not already being torn down), without taking it: `index.js` asks before
/// it waits for Node's own write buffer to empty, so that a Unix socket is
/// refused at once.
#[napi]
pub fn check_fd(fd: i32) -> napi::Result<()> {
    let id = sys::connected_tcp(fd)?;
    if runtime::is_owned(id) {
        return Err(Refusal::Already.into());
    }
    Ok(())
}

/// Duplicates `fd` and tears the duplicate down with the policy `options`
/// ask for, after `goodbye`; the caller then closes `fd` itself (nothing goes
/// on the wire: the duplicate holds the socket). Returns a Promise of the
/// outcome, resolved from the addon's runtime thread; with `report` false,
/// nothing (no Promise, and no outcome object is made: `attach` when nobody
/// listens for it; `stats()` still counts the ending).
///
/// # Errors
///
/// Throws (synchronously) an `Error` whose message starts with its code:
/// `EFAREWELL_NOT_TCP`, `EFAREWELL_CLOSED`, `EFAREWELL_NOT_CONNECTED`,
/// `EFAREWELL_ALREADY`, `EFAREWELL_BAD_OPTION`, `EFAREWELL_OS`.
#[napi]
pub fn close_fd(
    env: Env,
    fd: i32,
    goodbye: Option<Buffer>,
    options: Option<CloseOptions>,
    report: Option<bool>,
) -> napi::Result<Option<JsObject>> {
    let options = options.unwrap_or_default();
    let policy = options.policy()?;
    let goodbye = goodbye.map_or_else(Bytes::new, |b| Bytes::copy_from_slice(&b));
    let started = runtime::hand_over(fd, goodbye, policy, options.heavy_client_threshold)?;
    if report == Some(false) {
        started.then(|_| {});
        return Ok(None);
    }
    // Only now, when nothing can fail: a Promise dropped unsettled would keep
    // Node's event loop alive (its threadsafe function is never released).
    let (deferred, promise) = env.create_deferred()?;
    started.then(|outcome| deferred.resolve(move |_env| Ok(JsOutcome::from(&outcome))));
    Ok(Some(promise))
}

/// Whether the peer's FIN is already in on `fd` (`CLOSE-WAIT`): `attach`
/// asks before each request is answered, so that a client that half-closed
/// after its request (it still reads, and is owed an end of file) keeps the
/// passive close, as farewell-http does.
///
/// # Errors
///
/// `EFAREWELL_CLOSED` for a negative descriptor, `EFAREWELL_OS` when the
/// kernel cannot tell (not a TCP socket).
#[napi]
pub fn peer_fin_in(fd: i32) -> napi::Result<bool> {
    Ok(sys::peer_fin_in(fd)?)
}

/// Where the fast path's wait starts, once Node flushed a response: `-1`
/// if the peer's FIN is already in (`CLOSE-WAIT`: a half-close, which gets
/// the hand-over's passive close), else the bytes `fd` sent that the peer's
/// kernel has not ACKed yet (`SIOCOUTQ`).
///
/// # Errors
///
/// `EFAREWELL_CLOSED` for a negative descriptor, `EFAREWELL_OS` when the
/// kernel cannot tell (not a TCP socket).
#[napi]
pub fn wait_start(fd: i32) -> napi::Result<i64> {
    Ok(match sys::wait_start(fd)? {
        None => -1,
        Some(unacked) => i64::from(unacked),
    })
}

/// The fast path's end, in one call: once Node flushed a response (is the
/// client's FIN in already?) and when Node reads end of file on the socket.
/// Returns what the caller does: `-1` wait on (the FIN is not in yet), `-2`
/// not ours (the connection is neither open nor half-closed: reset, say),
/// `0` hand the socket over (the FIN is in but bytes are still unACKed),
/// else `destroy()` it: `1` the passive close of a light client, `2` a
/// heavy client (the core's heavy-client choice for the peer's address, one
/// ending recorded in the closers' table), for which `SO_LINGER {on, 0}` is
/// already set on `fd`, so that Node's close resets, `3` the passive close
/// of a half-close (`half_closed`: the FIN came before the server began to
/// end the connection; the client may still read, and is owed an end of
/// file whatever its weight). `1` to `3` are counted in [`stats`] as
/// `peer-closed` or `reset-after-peer-fin`.
///
/// # Errors
///
/// `EFAREWELL_CLOSED` for a negative descriptor, `EFAREWELL_OS` when the
/// kernel cannot tell (not a TCP socket).
///
/// `unchecked`: the request was answered without that look at the kernel
/// ([`check_fins`] said no): a heavy client gets `3`, the passive close, as
/// its FIN may have come before the response. `address`: the client's
/// address if known (`socket.remoteAddress`, which Node caches), sparing the
/// addon a `getpeername`.
#[napi]
pub fn fin_end(
    fd: i32,
    half_closed: bool,
    threshold: Option<u32>,
    unchecked: Option<bool>,
    address: Option<String>,
) -> napi::Result<i32> {
    let known_peer = address.and_then(|address| address.parse().ok());
    let unchecked = unchecked.unwrap_or(false);
    Ok(
        match runtime::fin_end(fd, threshold, half_closed, unchecked, known_peer)? {
            runtime::FinEnd::NotYet => -1,
            runtime::FinEnd::Gone => -2,
            runtime::FinEnd::Unacked => 0,
            runtime::FinEnd::Light => 1,
            runtime::FinEnd::Heavy => 2,
            runtime::FinEnd::HalfClose => 3,
        },
    )
}

/// Whether to look, before each request of a connection from `address`
/// (Node's `socket.remoteAddress`) is answered, at whether the client's FIN
/// came first ([`peer_fin_in`]): only for a client at least half-way to the
/// heavy-client threshold (`threshold`, default 500 endings per minute).
/// Asked once per connection; a request answered without the look is
/// passed to [`fin_end`] as `unchecked`.
///
/// # Errors
///
/// `EFAREWELL_OS` if the addon's runtime (its thread) could not start.
#[napi]
pub fn check_fins(address: String, threshold: Option<u32>) -> napi::Result<bool> {
    Ok(runtime::check_fins(&address, threshold)?)
}

/// Hurries every teardown of the process: those in flight end now
/// (`reset-at-deadline`), and so does every later one. `drain()` in
/// `index.js` calls it at its deadline, before the process exits.
#[napi]
pub fn hurry() {
    runtime::hurry();
}

/// The addon's counts: teardowns started, in flight, finished, and finished
/// by ending (names as `Ending::name`).
#[napi(object)]
pub struct Stats {
    /// Teardowns started since the addon was loaded.
    pub started: f64,
    /// Teardowns not finished yet.
    pub in_flight: f64,
    /// Teardowns finished.
    pub finished: f64,
    /// Finished teardowns by ending, e.g. `{ "peer-closed": 20 }`.
    pub by_ending: HashMap<String, f64>,
}

/// The addon's counts, across every closer of the process.
#[napi]
pub fn stats() -> Stats {
    runtime::stats()
}
