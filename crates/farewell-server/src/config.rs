//! How the supervisor runs: policy, deadlines, limits.

use std::time::Duration;

use farewell::policy::Policy;

/// The default maximum line length, `\n` included.
pub const DEFAULT_MAX_LINE: usize = 4096;

/// The default [`ServerConfig::max_connections`]: 10,000, or half of what
/// the descriptor limit (`RLIMIT_NOFILE`, soft) leaves after a reserve of 64,
/// whichever is less (at least 1); see [`farewell::accept::default_max_connections`].
pub fn default_max_connections() -> usize {
    farewell::accept::default_max_connections()
}

/// What happens to a connection accepted beyond [`ServerConfig::max_connections`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusyMode {
    /// Send the protocol's `busy` goodbye, give the peer `grace` to close,
    /// then reset (peer-first with that grace, whatever the server's policy):
    /// the server never keeps TIME-WAIT for a shed connection.
    Goodbye {
        /// Peer-first's grace for the shed peer: how long it has to close
        /// once the goodbye was ACKed. It is also the stall timeout of the
        /// goodbye's delivery, so a shed peer that takes nothing is reset
        /// after the same time rather than the default 15 s: a server over
        /// its limit should not hold descriptors for peers that do not read.
        grace: Duration,
    },
    /// Reset at once (one non-blocking attempt to write the goodbye first).
    Reset,
}

impl BusyMode {
    /// The teardown policy for shed connections.
    pub fn policy(self) -> Policy {
        match self {
            BusyMode::Goodbye { grace } => Policy::default()
                .with_grace(grace)
                .with_stall_timeout(grace),
            BusyMode::Reset => Policy::Abort,
        }
    }
}

impl Default for BusyMode {
    fn default() -> Self {
        BusyMode::Goodbye {
            grace: Duration::from_millis(500),
        }
    }
}

/// The supervisor's settings. `Default` gives `farewell serve`'s defaults.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use farewell_server::ServerConfig;
///
/// let config = ServerConfig {
///     idle_timeout: Duration::from_secs(10),
///     max_connections: 1000,
///     ..ServerConfig::default()
/// };
/// assert_eq!(config.max_line, 4096);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// How connections are torn down after their goodbye (default peer-first, 2 s grace).
    pub policy: Policy,
    /// From accept until the handshake must be complete (default 5 s);
    /// then goodbye [`Reason::HandshakeTimeout`](super::Reason::HandshakeTimeout).
    pub handshake_timeout: Duration,
    /// After the handshake, the longest wait for the next line (default 60 s);
    /// then goodbye [`Reason::Idle`](super::Reason::Idle).
    pub idle_timeout: Duration,
    /// From the first byte of a line until its `\n` (default 10 s); then
    /// goodbye [`Reason::LineTimeout`](super::Reason::LineTimeout). The idle
    /// timer restarts on every byte, so without this a peer that trickles one
    /// byte now and then would hold its connection for `max_line` × that
    /// period (a slowloris).
    pub line_timeout: Duration,
    /// The longest a connection may live, from accept (default none); then
    /// goodbye [`Reason::MaxLifetime`](super::Reason::MaxLifetime).
    pub max_lifetime: Option<Duration>,
    /// The longest line, `\n` included (default 4096); longer: goodbye
    /// [`Reason::LineTooLong`](super::Reason::LineTooLong).
    pub max_line: usize,
    /// Connections served at once. Connections in teardown do not count.
    /// Beyond it, new connections are shed with [`ServerConfig::busy`].
    ///
    /// The default, [`default_max_connections`], fits the process's
    /// descriptor limit: at most 10,000, and at most half of `RLIMIT_NOFILE`
    /// (less a reserve), so that shed connections and teardowns still find a
    /// descriptor. A limit above what the descriptors allow would leave the
    /// surplus waiting in the listen backlog instead of getting the `busy`
    /// goodbye.
    pub max_connections: usize,
    /// How connections beyond the limit are shed.
    pub busy: BusyMode,
    /// How long a reply may wait for a peer that does not read (default 10 s);
    /// then goodbye [`Reason::SendTimeout`](super::Reason::SendTimeout). While a
    /// reply waits, nothing more is read from that peer.
    pub send_timeout: Duration,
    /// After the shutdown signal, the hard deadline for every connection's
    /// goodbye and teardown (default 5 s). Shutdown teardowns get deadlines
    /// that fit inside it (peer-first, plain, fin-then-reset); teardowns still
    /// running when it passes are hurried ([`Closer::hurry`](farewell::Closer::hurry)):
    /// a passive close if the peer's FIN is in, else a reset, reported as
    /// `reset-at-deadline`.
    pub drain_timeout: Duration,
    /// How often a summary is logged at info level (default 60 s; `None`: never).
    pub summary_interval: Option<Duration>,
    /// The longest pause of the accept loop when the process is out of file
    /// descriptors (default 1 s); pauses start at 5 ms and double.
    pub max_accept_backoff: Duration,
    /// Peer-first with [`PeerTimeWait::Auto`](farewell::PeerTimeWait::Auto):
    /// a client address that ended more than this many connections in the
    /// last minute is heavy and is reset after its FIN, so that it keeps no
    /// TIME-WAIT (default [`farewell::DEFAULT_HEAVY_CLIENT_THRESHOLD`]; see
    /// [`CloserBuilder::heavy_client_threshold`](farewell::CloserBuilder::heavy_client_threshold)).
    pub heavy_client_threshold: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            policy: Policy::default(),
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            line_timeout: Duration::from_secs(10),
            max_lifetime: None,
            max_line: DEFAULT_MAX_LINE,
            max_connections: default_max_connections(),
            busy: BusyMode::default(),
            send_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            summary_interval: Some(Duration::from_secs(60)),
            max_accept_backoff: Duration::from_secs(1),
            heavy_client_threshold: farewell::DEFAULT_HEAVY_CLIENT_THRESHOLD,
        }
    }
}

/// `policy` with every deadline shortened so its teardown ends within
/// `budget`: peer-first's grace gets up to two thirds of it and delivery
/// (its stall timeout and its cap) the rest; a policy without a grace gets
/// the whole budget for delivery.
///
/// Lingering is left as it is: at its deadline it closes plainly, or resets
/// like the hurry at the drain deadline does, so fitting it would only race
/// that hurry to a worse (or the same) end.
pub(crate) fn fit_policy(policy: Policy, budget: Duration) -> Policy {
    if matches!(policy, Policy::Lingering(_)) {
        return policy;
    }
    let (fitted, delivery_budget) = match policy.grace() {
        Some(grace) => (policy.with_grace(grace.min(budget * 2 / 3)), budget / 3),
        None => (policy, budget),
    };
    let (Some(stall), Some(cap)) = (policy.stall_timeout(), policy.delivery_timeout()) else {
        return fitted;
    };
    fitted
        .with_stall_timeout(stall.min(delivery_budget))
        .with_delivery_timeout(cap.min(delivery_budget))
}

#[cfg(test)]
mod tests {
    use super::*;
    use farewell::policy::{PeerFirst, DEFAULT_STALL_TIMEOUT};

    #[test]
    fn busy_goodbye_is_peer_first_with_its_grace_as_grace_and_stall_timeout() {
        let grace = Duration::from_millis(700);
        let policy = BusyMode::Goodbye { grace }.policy();
        assert_eq!(policy.name(), "peer-first");
        assert_eq!(policy.grace(), Some(grace));
        assert_eq!(policy.stall_timeout(), Some(grace));
        assert_eq!(
            policy.delivery_timeout(),
            Policy::default().delivery_timeout()
        );
        assert_eq!(BusyMode::Reset.policy(), Policy::Abort);
    }

    #[test]
    fn fit_policy_gives_a_policy_without_grace_the_whole_budget() {
        let budget = Duration::from_secs(5);
        for name in ["plain", "fin-then-reset"] {
            let fitted = fit_policy(name.parse().unwrap(), budget);
            assert_eq!(fitted.name(), name);
            assert_eq!(fitted.delivery_timeout(), Some(budget), "{name}");
            assert_eq!(fitted.stall_timeout(), Some(budget), "{name}");
        }
        let lingering: Policy = "lingering-reset".parse().unwrap();
        assert_eq!(fit_policy(lingering, budget), lingering);
        assert_eq!(fit_policy(Policy::Abort, budget), Policy::Abort);
        // Short deadlines stay as they are.
        let short = "plain"
            .parse::<Policy>()
            .unwrap()
            .with_delivery_timeout(Duration::from_secs(1));
        assert_eq!(fit_policy(short, budget), short.with_stall_timeout(budget));
        assert!(DEFAULT_STALL_TIMEOUT > budget);
    }

    #[test]
    fn fit_policy_shortens_long_deadlines_only() {
        let fitted = fit_policy(Policy::default(), Duration::from_millis(600));
        assert_eq!(
            fitted,
            Policy::PeerFirst(PeerFirst {
                grace: Duration::from_millis(400),
                stall_timeout: Duration::from_millis(200),
                delivery_timeout: Duration::from_millis(200),
                ..PeerFirst::default()
            })
        );
        let short = Policy::default().with_grace(Duration::from_millis(100));
        assert_eq!(
            fit_policy(short, Duration::from_secs(60)),
            Policy::PeerFirst(PeerFirst {
                grace: Duration::from_millis(100),
                delivery_timeout: Duration::from_secs(20),
                ..PeerFirst::default()
            })
        );
    }
}
