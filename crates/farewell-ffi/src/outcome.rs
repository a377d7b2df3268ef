//! The report of one teardown as C sees it, and the closer's counters.

use std::ffi::c_char;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::raw::c_int;

use farewell::Outcome;

use crate::names::{
    c_name, delivery_code, ending_code, fw_delivery, fw_ending, fw_time_wait, time_wait_code,
};

/// Bytes of `fw_outcome.local` and `fw_outcome.peer`, the NUL included.
pub const FW_ADDR_LEN: usize = 80;

/// The report of one teardown, passed to the outcome callback.
///
/// Valid only during the callback: copy what you keep. The library fills
/// `size` with `sizeof(fw_outcome)` as *it* was built; fields are only ever
/// added at the end, so a program built against a newer header checks
/// `FW_HAS_FIELD(outcome, fw_outcome, field)` before reading a field the
/// running library may not have.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct fw_outcome {
    /// `sizeof(fw_outcome)` in the library that filled it.
    pub size: usize,
    /// The descriptor number that was handed over. It is already closed (and
    /// may already be reused): for the caller's bookkeeping only.
    pub fd: c_int,
    /// How the teardown ended (`FW_ENDING_*`; `FW_ENDING_OTHER` for an ending
    /// this header does not know: `ending_name` names it).
    pub ending: fw_ending,
    /// Who keeps TIME-WAIT (`FW_TIME_WAIT_*`).
    pub time_wait: fw_time_wait,
    /// Whether the goodbye was confirmed delivered (`FW_DELIVERY_*`).
    pub goodbye: fw_delivery,
    /// The policy that ran, e.g. `"peer-first"` (static).
    pub policy: *const c_char,
    /// The ending's name, e.g. `"peer-closed"` (static), also for endings
    /// newer than this header.
    pub ending_name: *const c_char,
    /// The TIME-WAIT holder's name, e.g. `"peer"` (static).
    pub time_wait_name: *const c_char,
    /// The delivery's name, e.g. `"confirmed"` (static).
    pub goodbye_name: *const c_char,
    /// Bytes of the goodbye written into the socket.
    pub goodbye_written: u64,
    /// Bytes read and discarded during the teardown.
    pub bytes_drained: u64,
    /// Data bytes still unacknowledged when the socket was closed; -1 when
    /// the kernel could no longer tell (already reset).
    pub unacked_at_close: i64,
    /// The kernel's TCP state just before the close (`TCP_ESTABLISHED` = 1 ...
    /// `TCP_CLOSING` = 11); 0 when unknown.
    pub state_at_close: c_int,
    /// That state's RFC 9293 name, e.g. `"LAST-ACK"` (static); `""` when unknown.
    pub state_at_close_name: *const c_char,
    /// Microseconds from the hand-over until the descriptor was closed.
    pub elapsed_us: u64,
    /// Our address, e.g. `"127.0.0.1:7000"` or `"[::1]:7000"`; `""` when unknown.
    pub local: [c_char; FW_ADDR_LEN],
    /// The peer's address, same format; `""` when unknown.
    pub peer: [c_char; FW_ADDR_LEN],
    /// Bytes the peer's kernel ACKed during the teardown (`tcpi_bytes_acked`;
    /// what the application wrote just before the hand-over counts too, our
    /// FIN does not). Added in 0.1.0 with the delivery phase: check
    /// `FW_HAS_FIELD(o, fw_outcome, bytes_delivered)`.
    pub bytes_delivered: u64,
    /// Microseconds spent delivering what was written (until all of it was
    /// ACKed, or the teardown gave up on it).
    pub deliver_us: u64,
    /// Microseconds of grace after delivery, waiting for the peer's FIN.
    pub grace_us: u64,
}

impl fw_outcome {
    /// The C view of `outcome`, for the descriptor `fd`.
    pub(crate) fn new(fd: c_int, outcome: &Outcome) -> fw_outcome {
        fw_outcome {
            size: std::mem::size_of::<fw_outcome>(),
            fd,
            ending: ending_code(outcome.ending),
            time_wait: time_wait_code(outcome.time_wait),
            goodbye: delivery_code(outcome.goodbye),
            policy: c_name(outcome.policy.name()),
            ending_name: c_name(outcome.ending.name()),
            time_wait_name: c_name(outcome.time_wait.name()),
            goodbye_name: c_name(outcome.goodbye.name()),
            goodbye_written: outcome.goodbye_written as u64,
            bytes_drained: outcome.bytes_drained,
            unacked_at_close: outcome.unacked_at_close.map_or(-1, i64::from),
            state_at_close: outcome
                .state_at_close
                .map_or(0, |s| c_int::from(s.to_kernel())),
            state_at_close_name: outcome
                .state_at_close
                .map_or(c"".as_ptr(), |s| c_name(s.rfc_name())),
            elapsed_us: micros(outcome.elapsed),
            local: address(outcome.local),
            peer: address(outcome.peer),
            bytes_delivered: outcome.bytes_delivered,
            deliver_us: micros(outcome.deliver),
            grace_us: micros(outcome.grace),
        }
    }
}

/// `d` in whole microseconds, saturating.
fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// `addr` as NUL-terminated text, cut to fit (it always fits: the longest
/// IPv6 form with a scope and port is 64 bytes).
fn address(addr: Option<SocketAddr>) -> [c_char; FW_ADDR_LEN] {
    let mut text = String::new();
    if let Some(addr) = addr {
        let _ = write!(text, "{addr}");
    }
    let mut out = [0 as c_char; FW_ADDR_LEN];
    for (slot, byte) in out.iter_mut().zip(text.bytes().take(FW_ADDR_LEN - 1)) {
        *slot = byte as c_char;
    }
    out
}

/// The running counts of a closer, filled by `fw_closer_stats`.
///
/// Set `size` to `sizeof(fw_stats)` before the call: the library fills at most
/// that many bytes (fields are only ever added at the end) and sets `size` to
/// what it filled.
#[repr(C)]
#[derive(Clone, Copy, Default)]
#[allow(non_camel_case_types)]
pub struct fw_stats {
    /// In: the caller's `sizeof(fw_stats)`. Out: the bytes the library filled.
    pub size: usize,
    /// Teardowns handed over and not finished.
    pub in_flight: u64,
    /// Teardowns handed over since the closer was made.
    pub started: u64,
    /// Teardowns finished (their outcome was reported).
    pub finished: u64,
    /// Finished with the peer closing first (the peer keeps TIME-WAIT).
    pub peer_closed: u64,
    /// Finished with our reset (no TIME-WAIT anywhere).
    pub we_reset: u64,
    /// Finished leaving TIME-WAIT on our side (only policies that send the
    /// first FIN do: never peer-first).
    pub time_wait_us: u64,
    /// Finished with the goodbye confirmed delivered.
    pub goodbye_confirmed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_address_fits() {
        let addr: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%4294967295]:65535"
            .parse()
            .unwrap();
        let text = address(Some(addr));
        let len = text.iter().position(|&c| c == 0).unwrap();
        assert_eq!(len, addr.to_string().len());
        assert_eq!(address(None)[0], 0);
    }
}
