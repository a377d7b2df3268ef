//! The kernel's TCP connection states, with their RFC 9293 names.
//!
//! One enum serves both views of a socket: the state `TCP_INFO` reports for a
//! socket we hold (see [`crate::sys`]) and the state the kernel's socket table
//! reports for any socket (see [`crate::census`]).

use std::fmt;

/// A TCP connection state as the Linux kernel numbers it (`include/net/tcp_states.h`).
///
/// `Display` prints the RFC 9293 spelling (`FIN-WAIT-2`), which is also what
/// `ss` prints, give or take case.
///
/// # Examples
///
/// ```
/// use farewell::TcpState;
///
/// assert_eq!(TcpState::from_kernel(5), Some(TcpState::FinWait2));
/// assert_eq!(TcpState::TimeWait.to_string(), "TIME-WAIT");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    /// Data flows both ways.
    Established = 1,
    /// We sent a SYN and wait for the SYN-ACK.
    SynSent = 2,
    /// We received a SYN and sent a SYN-ACK (a full socket still in the handshake).
    SynReceived = 3,
    /// We sent our FIN; it is not yet acknowledged.
    FinWait1 = 4,
    /// Our FIN was acknowledged; we wait for the peer's FIN.
    FinWait2 = 5,
    /// Both FINs were exchanged and we sent the first: the entry lingers 2×MSL
    /// (60 s on Linux) to absorb stray segments.
    TimeWait = 6,
    /// No connection (after a reset, or before connecting).
    Closed = 7,
    /// The peer sent its FIN first; we may still send.
    CloseWait = 8,
    /// We sent our FIN after the peer's; we wait for its acknowledgement.
    LastAck = 9,
    /// A listening socket.
    Listen = 10,
    /// Both sides sent FIN at once; waiting for the acknowledgement of ours.
    Closing = 11,
    /// A request socket (SYN received, SYN-ACK sent) not yet promoted to a full socket.
    NewSynReceived = 12,
}

impl TcpState {
    /// Every state, in kernel order.
    pub const ALL: [TcpState; 12] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynReceived,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Closed,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynReceived,
    ];

    /// Maps the kernel's number (`TCP_ESTABLISHED` = 1 … `TCP_NEW_SYN_RECV` = 12) to a state.
    ///
    /// Returns `None` for numbers the kernel does not use.
    pub fn from_kernel(n: u8) -> Option<TcpState> {
        TcpState::ALL.get(usize::from(n).checked_sub(1)?).copied()
    }

    /// The kernel's number for this state.
    pub fn to_kernel(self) -> u8 {
        self as u8
    }

    /// The RFC 9293 spelling, e.g. `"FIN-WAIT-2"`.
    pub fn rfc_name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN-SENT",
            TcpState::SynReceived => "SYN-RECEIVED",
            TcpState::FinWait1 => "FIN-WAIT-1",
            TcpState::FinWait2 => "FIN-WAIT-2",
            TcpState::TimeWait => "TIME-WAIT",
            TcpState::Closed => "CLOSED",
            TcpState::CloseWait => "CLOSE-WAIT",
            TcpState::LastAck => "LAST-ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynReceived => "NEW-SYN-RECEIVED",
        }
    }

    /// True when this side has already sent its FIN (so the peer's FIN, when it
    /// comes, leaves the TIME-WAIT entry here — [F2](crate::facts#f2)).
    pub fn we_sent_fin(self) -> bool {
        matches!(
            self,
            TcpState::FinWait1 | TcpState::FinWait2 | TcpState::Closing | TcpState::TimeWait
        )
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.rfc_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_numbers_round_trip() {
        for state in TcpState::ALL {
            assert_eq!(TcpState::from_kernel(state.to_kernel()), Some(state));
        }
        assert_eq!(TcpState::from_kernel(0), None);
        assert_eq!(TcpState::from_kernel(13), None);
    }

    #[test]
    fn display_uses_rfc_spelling() {
        assert_eq!(TcpState::FinWait2.to_string(), "FIN-WAIT-2");
        assert_eq!(TcpState::CloseWait.to_string(), "CLOSE-WAIT");
    }
}
