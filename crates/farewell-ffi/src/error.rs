//! Status codes: every function that can fail returns one, `FW_OK` (0) or a
//! negative `FW_ERR_*`; [`fw_strerror`] describes each.

use std::ffi::c_char;
use std::os::raw::c_int;
use std::panic::{catch_unwind, UnwindSafe};

/// Success.
pub const FW_OK: c_int = 0;
/// A pointer argument that must not be NULL was NULL (or a goodbye pointer
/// was NULL with a non-zero length).
pub const FW_ERR_NULL: c_int = -1;
/// The descriptor is not open (negative, or `EBADF`).
pub const FW_ERR_BAD_FD: c_int = -2;
/// The descriptor is open but is not a socket (a file, a pipe, ...).
pub const FW_ERR_NOT_SOCKET: c_int = -3;
/// The socket is not TCP over IPv4 or IPv6 (UDP, a Unix socket, ...).
pub const FW_ERR_NOT_TCP: c_int = -4;
/// The socket is listening: only connections can be handed over.
pub const FW_ERR_LISTENING: c_int = -5;
/// The socket is not connected: it never was, or the connection is already
/// over (reset by the peer). Close it yourself: it has nothing left to send
/// and leaves no TIME-WAIT.
pub const FW_ERR_NOT_CONNECTED: c_int = -6;
/// The library already owns this descriptor: it was handed over twice (to
/// this closer or to another one of the process).
pub const FW_ERR_ALREADY_OWNED: c_int = -7;
/// The goodbye is longer than `FW_GOODBYE_MAX` bytes.
pub const FW_ERR_GOODBYE_TOO_LONG: c_int = -8;
/// The policy name is not one the library knows (see `fw_options_set_policy`).
pub const FW_ERR_UNKNOWN_POLICY: c_int = -9;
/// A setting or a size is out of range, or does not apply to the policy.
pub const FW_ERR_INVALID_ARGUMENT: c_int = -10;
/// `fw_closer_free` was called from the library's own thread (an outcome
/// callback); nothing was freed.
pub const FW_ERR_IN_CALLBACK: c_int = -11;
/// `fw_closer_free`: some teardowns had not ended after the deadline and the
/// hurry; their sockets were closed without an outcome. Everything was freed.
pub const FW_ERR_TIMED_OUT: c_int = -12;
/// The library could not start its thread.
pub const FW_ERR_RUNTIME: c_int = -13;
/// The library could not watch the descriptor (the epoll limits); it had
/// taken the descriptor and closed it.
pub const FW_ERR_REGISTER: c_int = -14;
/// An unexpected system call error; the descriptor stays with the caller.
pub const FW_ERR_OS: c_int = -15;
/// A bug in the library (a Rust panic, caught at the boundary).
pub const FW_ERR_PANIC: c_int = -16;
/// The pointer is not a live closer: freed already (a second
/// `fw_closer_free`, `fw_close` after it), or never made by `fw_closer_new`.
/// A best-effort check of a magic word: using a freed closer is still
/// undefined behaviour, this only turns its common forms into an error.
pub const FW_ERR_NOT_A_CLOSER: c_int = -17;

/// A static, NUL-terminated English description of a status code (an
/// `FW_ERR_*` or `FW_OK`), never NULL; unknown codes get "unknown status code".
#[no_mangle]
pub extern "C" fn fw_strerror(code: c_int) -> *const c_char {
    let text = match code {
        FW_OK => c"success",
        FW_ERR_NULL => c"a required pointer argument is NULL",
        FW_ERR_BAD_FD => c"not an open file descriptor",
        FW_ERR_NOT_SOCKET => c"the descriptor is not a socket",
        FW_ERR_NOT_TCP => c"the socket is not a TCP socket (IPv4 or IPv6)",
        FW_ERR_LISTENING => c"the socket is listening, not connected",
        FW_ERR_NOT_CONNECTED => {
            c"the socket is not connected (never was, or the connection is already over)"
        }
        FW_ERR_ALREADY_OWNED => c"the library already owns this descriptor (handed over twice)",
        FW_ERR_GOODBYE_TOO_LONG => c"the goodbye is longer than FW_GOODBYE_MAX bytes",
        FW_ERR_UNKNOWN_POLICY => c"unknown teardown policy name",
        FW_ERR_INVALID_ARGUMENT => c"a setting or size is out of range or does not apply",
        FW_ERR_IN_CALLBACK => c"fw_closer_free called from an outcome callback",
        FW_ERR_TIMED_OUT => {
            c"some teardowns had not ended at shutdown; their sockets were closed without a report"
        }
        FW_ERR_RUNTIME => c"could not start the library's thread",
        FW_ERR_REGISTER => c"could not watch the descriptor (epoll limits); the library closed it",
        FW_ERR_OS => c"unexpected system call error",
        FW_ERR_PANIC => c"internal error in libfarewell (a bug: please report it)",
        FW_ERR_NOT_A_CLOSER => c"not a live closer (freed already, or never made by fw_closer_new)",
        _ => c"unknown status code",
    };
    text.as_ptr()
}

/// Runs one entry point's body, turning a panic into `FW_ERR_PANIC`: no
/// unwinding ever crosses into C.
pub(crate) fn guard(body: impl FnOnce() -> c_int + UnwindSafe) -> c_int {
    catch_unwind(body).unwrap_or(FW_ERR_PANIC)
}

/// [`guard`] for entry points that return something else: `fallback` on a panic.
pub(crate) fn guard_or<T>(fallback: T, body: impl FnOnce() -> T + UnwindSafe) -> T {
    catch_unwind(body).unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn every_code_has_its_own_description() {
        let mut seen = std::collections::HashSet::new();
        for code in FW_ERR_PANIC..=FW_OK {
            // SAFETY: fw_strerror returns a static NUL-terminated string.
            let text = unsafe { CStr::from_ptr(fw_strerror(code)) }
                .to_str()
                .unwrap();
            assert_ne!(text, "unknown status code", "code {code}");
            assert!(seen.insert(text), "code {code} repeats {text:?}");
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(fw_strerror(1234)) };
        assert_eq!(unknown.to_str().unwrap(), "unknown status code");
    }

    #[test]
    fn guard_turns_a_panic_into_a_code() {
        assert_eq!(guard(|| panic!("boom")), FW_ERR_PANIC);
        assert_eq!(guard(|| FW_OK), FW_OK);
    }
}
