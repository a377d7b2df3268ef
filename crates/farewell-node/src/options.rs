//! The options of `farewell.close`, as JavaScript gives them, and the
//! [`Policy`] they make.

use std::str::FromStr;
use std::time::Duration;

use farewell::{GraceEnd, PeerTimeWait, Policy};
use napi_derive::napi;

use crate::error::Refusal;

/// `farewell.close(socket, goodbye, options)`'s options. Every field is
/// optional; the defaults are the core's (peer-first, 2 s grace, heavy
/// clients spared).
#[napi(object)]
#[derive(Default)]
pub struct CloseOptions {
    /// A policy name, as `Policy::from_str` takes it (`"peer-first"`, `"abort"`, …).
    pub policy: Option<String>,
    /// Peer-first's grace in milliseconds (other policies have none and ignore it).
    pub grace: Option<f64>,
    /// Peer-first: `"auto"`, `"keep"` or `"spare"`.
    pub peer_time_wait: Option<String>,
    /// Peer-first: `"reset"` (the default) or `"fin"`, for a peer that reads
    /// until end of file (HTTP/1.0).
    pub grace_end: Option<String>,
    /// Endings per client address and minute above which a client is heavy.
    pub heavy_client_threshold: Option<u32>,
}

impl CloseOptions {
    /// The policy these options ask for.
    pub(crate) fn policy(&self) -> Result<Policy, Refusal> {
        let name = self.policy.as_deref().unwrap_or("peer-first");
        let mut policy =
            Policy::from_str(name).map_err(|error| Refusal::BadOption(error.to_string()))?;
        if let Some(ms) = self.grace {
            if !(ms.is_finite() && ms >= 0.0) {
                return Err(Refusal::BadOption(format!(
                    "grace must be a number of milliseconds >= 0, not {ms}"
                )));
            }
            policy = policy.with_grace(Duration::from_secs_f64(ms.min(1e12) / 1000.0));
        }
        if let Some(choice) = &self.peer_time_wait {
            let choice = PeerTimeWait::from_str(choice)
                .map_err(|error| Refusal::BadOption(error.to_string()))?;
            policy = policy.with_peer_time_wait(choice);
        }
        if let Some(end) = &self.grace_end {
            let end = match end.as_str() {
                "reset" => GraceEnd::Reset,
                "fin" => GraceEnd::Fin,
                other => {
                    return Err(Refusal::BadOption(format!(
                        "unknown graceEnd {other:?}; expected one of: reset, fin"
                    )))
                }
            };
            if let Policy::PeerFirst(mut peer_first) = policy {
                peer_first.grace_end = end;
                policy = Policy::PeerFirst(peer_first);
            }
        }
        Ok(policy)
    }
}
