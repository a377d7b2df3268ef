//! One connection of the lab, as the lab (`farewell_lab::lab`, which
//! re-exports all of this) and the core's tests run it: the peers that
//! behave their way ([`peer`]), the runner that tears the server side down
//! with a policy and asks the kernel for the verdict ([`run_connection`],
//! [`Trial`]), the policy with the lab's short deadlines ([`lab_policy`]),
//! and the network namespaces ([`netns`]).

pub mod netns;
pub mod peer;
mod trial;

use std::io;
use std::time::Duration;

pub use peer::{
    delivered, last_message, pattern, Behaviour, COOPERATIVE_REACTION, GOODBYE,
    HANDSHAKE_TIMEOUT_GOODBYE,
};
pub use trial::{
    bounded, kernel_state, lab_policy, run_connection, run_on, timed_close, Loopback, Net, Trial,
    PEER_BOUND, PEER_QUIET, TEARDOWN_BOUND,
};

use farewell::census::CensusError;
use farewell::policy::UnknownPolicy;

/// Why the lab (or one of its connections) could not run.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A socket operation of the lab itself failed.
    #[error("{0}: {1}")]
    Io(&'static str, #[source] io::Error),
    /// The kernel's socket table could not be read.
    #[error("cannot read the kernel's socket table: {0}")]
    Census(#[from] CensusError),
    /// The census does not show a live loopback connection, so it cannot judge.
    #[error("the kernel's socket table does not show a live loopback connection")]
    CensusBlind,
    /// A bounded wait ran out.
    #[error("{what} did not end within {bound:?}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// The bound.
        bound: Duration,
    },
    /// A lab task panicked or was cancelled.
    #[error("a lab task failed: {0}")]
    Peer(String),
    /// A policy name the library does not know.
    #[error(transparent)]
    UnknownPolicy(#[from] UnknownPolicy),
}
