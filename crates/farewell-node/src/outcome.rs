//! The outcome of one teardown as a plain JavaScript object.

use farewell::Outcome;
use napi_derive::napi;

/// What `farewell.close` resolves with: the fields of the core's `Outcome`,
/// names as `Ending::name`, `TimeWait::name`, `Delivery::name` spell them,
/// durations in milliseconds.
#[napi(object)]
pub struct JsOutcome {
    /// The policy that ran (`"peer-first"`, …).
    pub policy: String,
    /// The way the teardown ended (`"peer-closed"`, `"reset-after-grace"`, …).
    pub ending: String,
    /// Who keeps TIME-WAIT: `"peer"`, `"us"`, `"us-if-peer-closes"`, `"nobody"`.
    pub time_wait: String,
    /// Whether the goodbye reached the peer's kernel: `"confirmed"`,
    /// `"unconfirmed"`, `"none-sent"`.
    pub goodbye: String,
    /// Bytes of the goodbye written into the socket.
    pub goodbye_written: f64,
    /// Bytes the peer's kernel ACKed during the teardown.
    pub bytes_delivered: f64,
    /// Bytes read and discarded during the teardown.
    pub bytes_drained: f64,
    /// Data bytes still unacknowledged at close, when the kernel could tell.
    pub unacked_at_close: Option<u32>,
    /// The deliver phase, in milliseconds.
    pub deliver_ms: f64,
    /// The grace phase, in milliseconds.
    pub grace_ms: f64,
    /// The whole teardown, in milliseconds.
    pub elapsed_ms: f64,
    /// Peer-first, when the peer's FIN came: `"half-close"`, `"kept"`,
    /// `"spared"`, `"light"` or `"heavy"`.
    pub peer_fin: Option<String>,
    /// Our address, `host:port`, when known.
    pub local: Option<String>,
    /// The peer's address, `host:port`, when known.
    pub peer: Option<String>,
}

impl From<&Outcome> for JsOutcome {
    fn from(outcome: &Outcome) -> JsOutcome {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        JsOutcome {
            policy: outcome.policy.name().to_owned(),
            ending: outcome.ending.name().to_owned(),
            time_wait: outcome.time_wait.name().to_owned(),
            goodbye: outcome.goodbye.name().to_owned(),
            goodbye_written: outcome.goodbye_written as f64,
            bytes_delivered: outcome.bytes_delivered as f64,
            bytes_drained: outcome.bytes_drained as f64,
            unacked_at_close: outcome.unacked_at_close,
            deliver_ms: ms(outcome.deliver),
            grace_ms: ms(outcome.grace),
            elapsed_ms: ms(outcome.elapsed),
            peer_fin: outcome.peer_fin.map(|choice| choice.name().to_owned()),
            local: outcome.local.map(|a| a.to_string()),
            peer: outcome.peer.map(|a| a.to_string()),
        }
    }
}
