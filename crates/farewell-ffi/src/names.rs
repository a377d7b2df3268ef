//! The outcome's enums as fixed-width C codes, with their names.
//!
//! Each enum is a `uint32_t` typedef with `#define`d values rather than a C
//! `enum`: the width is fixed whatever the compiler, and a value a newer
//! library adds is still a valid `uint32_t` to an older program. Code 0 of each
//! is `OTHER`: what this header does not know yet (the outcome's `*_name`
//! fields still carry its real name).

use std::ffi::{c_char, CStr, CString};
use std::sync::Mutex;

use farewell::{Delivery, Ending, TimeWait};

use crate::error::guard_or;

/// How a teardown ended (`farewell::Ending`); named by `fw_ending_name`.
#[allow(non_camel_case_types)]
pub type fw_ending = u32;
/// An ending this header does not know (a newer library); see `fw_outcome.ending_name`.
pub const FW_ENDING_OTHER: fw_ending = 0;
/// The peer sent its FIN first; we closed after it. The peer keeps TIME-WAIT.
pub const FW_ENDING_PEER_CLOSED: fw_ending = 1;
/// Peer-first: everything written was ACKed, then the grace passed without the peer's FIN; reset.
pub const FW_ENDING_RESET_AFTER_GRACE: fw_ending = 2;
/// Peer-first: the peer sent more than the drain limit; reset.
pub const FW_ENDING_RESET_ON_DRAIN_LIMIT: fw_ending = 3;
/// The peer reset the connection.
pub const FW_ENDING_PEER_RESET: fw_ending = 4;
/// The connection failed for another reason (e.g. `ETIMEDOUT`); closed.
pub const FW_ENDING_CONNECTION_LOST: fw_ending = 5;
/// Lingering: we sent FIN, the peer closed in time.
pub const FW_ENDING_LINGERING_CLOSE: fw_ending = 6;
/// Lingering: a deadline passed; closed anyway.
pub const FW_ENDING_LINGERING_TIMEOUT: fw_ending = 7;
/// Lingering with reset: a deadline passed; reset.
pub const FW_ENDING_RESET_AFTER_LINGER: fw_ending = 8;
/// Fin-then-reset: our FIN was ACKed, then reset.
pub const FW_ENDING_RESET_AFTER_FIN_ACK: fw_ending = 9;
/// Fin-then-reset: our FIN was not ACKed in time; reset.
pub const FW_ENDING_RESET_FIN_UNACKED: fw_ending = 10;
/// Plain: goodbye written (or given up), closed.
pub const FW_ENDING_PLAIN_CLOSE: fw_ending = 11;
/// Abort: reset at once.
pub const FW_ENDING_ABORTED: fw_ending = 12;
/// Silent: closed with nothing on the wire (`TCP_REPAIR`).
pub const FW_ENDING_SILENT: fw_ending = 13;
/// Silent was refused (no `CAP_NET_ADMIN`); reset instead.
pub const FW_ENDING_SILENT_REFUSED_RESET: fw_ending = 14;
/// The socket was not an established connection; reset at once.
pub const FW_ENDING_NOT_ESTABLISHED: fw_ending = 15;
/// The closer was hurried (`fw_closer_free`'s deadline) before the peer's FIN; reset after one probe of the goodbye's ACK.
pub const FW_ENDING_RESET_AT_DEADLINE: fw_ending = 16;
/// Delivery stalled: what we wrote was still unacknowledged and the peer ACKed
/// nothing more for the stall timeout (it stopped reading, or vanished); reset.
pub const FW_ENDING_RESET_DELIVERY_STALLED: fw_ending = 17;
/// Peer-first: the peer was still taking bytes when the delivery timeout
/// (the total cap) passed; reset.
pub const FW_ENDING_RESET_DELIVERY_TIMEOUT: fw_ending = 18;
/// Peer-first: everything was ACKed, then the peer's FIN came, and we reset
/// instead of closing passively, so that a heavy client keeps no TIME-WAIT either.
pub const FW_ENDING_RESET_AFTER_PEER_FIN: fw_ending = 19;
/// Peer-first with the FIN grace end: everything was ACKed, the grace passed,
/// and we sent our FIN, reset by the kernel when it was ACKed; the peer read
/// end of file, nobody keeps TIME-WAIT.
pub const FW_ENDING_FIN_AFTER_GRACE: fw_ending = 20;

/// Who keeps the connection's TIME-WAIT entry (`farewell::TimeWait`).
#[allow(non_camel_case_types)]
pub type fw_time_wait = u32;
/// A value this header does not know (a newer library); see `fw_outcome.time_wait_name`.
pub const FW_TIME_WAIT_OTHER: fw_time_wait = 0;
/// The peer closed first: it keeps TIME-WAIT, we keep nothing.
pub const FW_TIME_WAIT_PEER: fw_time_wait = 1;
/// We sent the first FIN and the peer's came: our kernel keeps the entry.
pub const FW_TIME_WAIT_US: fw_time_wait = 2;
/// We sent the first FIN, the peer has not closed yet: ours if it does.
pub const FW_TIME_WAIT_US_IF_PEER_CLOSES: fw_time_wait = 3;
/// Ended by a reset (or silently): no entry anywhere.
pub const FW_TIME_WAIT_NOBODY: fw_time_wait = 4;

/// Whether the goodbye reached the peer's kernel (`farewell::Delivery`).
#[allow(non_camel_case_types)]
pub type fw_delivery = u32;
/// A value this header does not know (a newer library); see `fw_outcome.goodbye_name`.
pub const FW_DELIVERY_OTHER: fw_delivery = 0;
/// Written in full and ACKed by the peer's kernel.
pub const FW_DELIVERY_CONFIRMED: fw_delivery = 1;
/// May or may not have arrived.
pub const FW_DELIVERY_UNCONFIRMED: fw_delivery = 2;
/// There was no goodbye to send.
pub const FW_DELIVERY_NONE_SENT: fw_delivery = 3;

/// The C code of an ending; endings a newer core adds map to `FW_ENDING_OTHER`
/// until this crate gives them a code.
pub(crate) fn ending_code(ending: Ending) -> fw_ending {
    match ending {
        Ending::PeerClosed => FW_ENDING_PEER_CLOSED,
        Ending::ResetAfterGrace => FW_ENDING_RESET_AFTER_GRACE,
        Ending::ResetOnDrainLimit => FW_ENDING_RESET_ON_DRAIN_LIMIT,
        Ending::PeerReset => FW_ENDING_PEER_RESET,
        Ending::ConnectionLost => FW_ENDING_CONNECTION_LOST,
        Ending::LingeringClose => FW_ENDING_LINGERING_CLOSE,
        Ending::LingeringTimeout => FW_ENDING_LINGERING_TIMEOUT,
        Ending::ResetAfterLinger => FW_ENDING_RESET_AFTER_LINGER,
        Ending::ResetAfterFinAck => FW_ENDING_RESET_AFTER_FIN_ACK,
        Ending::ResetFinUnacked => FW_ENDING_RESET_FIN_UNACKED,
        Ending::PlainClose => FW_ENDING_PLAIN_CLOSE,
        Ending::Aborted => FW_ENDING_ABORTED,
        Ending::Silent => FW_ENDING_SILENT,
        Ending::SilentRefusedReset => FW_ENDING_SILENT_REFUSED_RESET,
        Ending::NotEstablished => FW_ENDING_NOT_ESTABLISHED,
        Ending::ResetAtDeadline => FW_ENDING_RESET_AT_DEADLINE,
        Ending::ResetDeliveryStalled => FW_ENDING_RESET_DELIVERY_STALLED,
        Ending::ResetDeliveryTimeout => FW_ENDING_RESET_DELIVERY_TIMEOUT,
        Ending::ResetAfterPeerFin => FW_ENDING_RESET_AFTER_PEER_FIN,
        Ending::FinAfterGrace => FW_ENDING_FIN_AFTER_GRACE,
        #[allow(unreachable_patterns)] // Ending is #[non_exhaustive]: a newer core has more
        _ => FW_ENDING_OTHER,
    }
}

/// The C code of a TIME-WAIT holder.
pub(crate) fn time_wait_code(time_wait: TimeWait) -> fw_time_wait {
    match time_wait {
        TimeWait::Peer => FW_TIME_WAIT_PEER,
        TimeWait::Us => FW_TIME_WAIT_US,
        TimeWait::UsIfPeerCloses => FW_TIME_WAIT_US_IF_PEER_CLOSES,
        TimeWait::Nobody => FW_TIME_WAIT_NOBODY,
        #[allow(unreachable_patterns)] // #[non_exhaustive]
        _ => FW_TIME_WAIT_OTHER,
    }
}

/// The C code of a delivery.
pub(crate) fn delivery_code(delivery: Delivery) -> fw_delivery {
    match delivery {
        Delivery::Confirmed => FW_DELIVERY_CONFIRMED,
        Delivery::Unconfirmed => FW_DELIVERY_UNCONFIRMED,
        Delivery::NoneSent => FW_DELIVERY_NONE_SENT,
        #[allow(unreachable_patterns)] // #[non_exhaustive]
        _ => FW_DELIVERY_OTHER,
    }
}

/// The name of an ending code, as farewell spells it (`"peer-closed"`,
/// `"reset-after-grace"`, ...); `"other"` for `FW_ENDING_OTHER` and for codes
/// this library does not know. Static and NUL-terminated, never NULL.
#[no_mangle]
pub extern "C" fn fw_ending_name(ending: fw_ending) -> *const c_char {
    guard_or(c"other".as_ptr(), || {
        Ending::ALL
            .into_iter()
            .find(|&e| ending_code(e) == ending && ending != FW_ENDING_OTHER)
            .map_or(c"other".as_ptr(), |e| c_name(e.name()))
    })
}

/// The name of a TIME-WAIT code: `"peer"`, `"us"`, `"us-if-peer-closes"`,
/// `"nobody"`, or `"other"`. Static and NUL-terminated, never NULL.
#[no_mangle]
pub extern "C" fn fw_time_wait_name(time_wait: fw_time_wait) -> *const c_char {
    let name = match time_wait {
        FW_TIME_WAIT_PEER => c"peer",
        FW_TIME_WAIT_US => c"us",
        FW_TIME_WAIT_US_IF_PEER_CLOSES => c"us-if-peer-closes",
        FW_TIME_WAIT_NOBODY => c"nobody",
        _ => c"other",
    };
    name.as_ptr()
}

/// The name of a delivery code: `"confirmed"`, `"unconfirmed"`,
/// `"none-sent"`, or `"other"`. Static and NUL-terminated, never NULL.
#[no_mangle]
pub extern "C" fn fw_delivery_name(delivery: fw_delivery) -> *const c_char {
    let name = match delivery {
        FW_DELIVERY_CONFIRMED => c"confirmed",
        FW_DELIVERY_UNCONFIRMED => c"unconfirmed",
        FW_DELIVERY_NONE_SENT => c"none-sent",
        _ => c"other",
    };
    name.as_ptr()
}

/// A static NUL-terminated copy of one of farewell's static names (endings,
/// policies, TCP states). Each distinct name is copied once and kept for the
/// life of the process: a bounded set, so an outcome can carry the real name
/// of an ending this crate has no code for yet. (A `Vec`, not a `HashMap`:
/// a few dozen names, and valgrind sees every copy as reachable.)
pub(crate) fn c_name(name: &'static str) -> *const c_char {
    static NAMES: Mutex<Vec<(&'static str, &'static CStr)>> = Mutex::new(Vec::new());
    let mut names = NAMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(&(_, copy)) = names.iter().find(|&&(n, _)| n == name) {
        return copy.as_ptr();
    }
    let owned = CString::new(name).unwrap_or_else(|_| CString::from(c"?"));
    let copy: &'static CStr = Box::leak(owned.into_boxed_c_str());
    names.push((name, copy));
    copy.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(p: *const c_char) -> &'static str {
        // SAFETY: every name function returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(p) }.to_str().unwrap()
    }

    #[test]
    fn every_ending_has_its_own_code_and_farewells_name() {
        let mut codes = std::collections::HashSet::new();
        for ending in Ending::ALL {
            let code = ending_code(ending);
            assert_ne!(code, FW_ENDING_OTHER, "{ending} has no C code");
            assert!(codes.insert(code), "{ending} shares code {code}");
            assert_eq!(text(fw_ending_name(code)), ending.name());
        }
        assert_eq!(text(fw_ending_name(FW_ENDING_OTHER)), "other");
        assert_eq!(text(fw_ending_name(9999)), "other");
    }

    #[test]
    fn time_wait_and_delivery_names_are_farewells() {
        for tw in [
            TimeWait::Peer,
            TimeWait::Us,
            TimeWait::UsIfPeerCloses,
            TimeWait::Nobody,
        ] {
            assert_eq!(text(fw_time_wait_name(time_wait_code(tw))), tw.name());
        }
        for d in [
            Delivery::Confirmed,
            Delivery::Unconfirmed,
            Delivery::NoneSent,
        ] {
            assert_eq!(text(fw_delivery_name(delivery_code(d))), d.name());
        }
        assert_eq!(text(fw_time_wait_name(77)), "other");
        assert_eq!(text(fw_delivery_name(77)), "other");
    }

    #[test]
    fn c_name_copies_each_name_once() {
        assert_eq!(c_name("peer-first"), c_name("peer-first"));
        assert_eq!(text(c_name("LAST-ACK")), "LAST-ACK");
    }
}
