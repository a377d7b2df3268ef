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
