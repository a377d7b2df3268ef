//! `fw_options`: what a closer is made with. An opaque object with one setter
//! per setting, so settings can be added without changing any struct's layout.

use std::ffi::{c_char, c_void, CStr};
use std::os::raw::c_int;
use std::time::Duration;

use farewell::{PeerFirst, PeerTimeWait, Policy};

use crate::error::{
    guard, guard_or, FW_ERR_INVALID_ARGUMENT, FW_ERR_NULL, FW_ERR_UNKNOWN_POLICY, FW_OK,
};
use crate::outcome::fw_outcome;

/// The most threads a closer may run its teardowns on.
pub const FW_MAX_THREADS: u32 = 64;

/// The outcome callback: called once per teardown, on one of the library's
/// threads (never the caller's), after the descriptor was closed. `outcome` is
/// valid only during the call. Keep it short and non-blocking; it may call
/// `fw_close` and `fw_closer_stats`, never `fw_closer_free`.
#[allow(non_camel_case_types)]
pub type fw_outcome_fn =
    Option<unsafe extern "C" fn(outcome: *const fw_outcome, user: *mut c_void)>;

/// Settings for `fw_closer_new`. Made by `fw_options_new`, freed by
/// `fw_options_free`; not shared between threads while being set.
#[allow(non_camel_case_types)]
pub struct fw_options {
    pub(crate) policy: Policy,
    pub(crate) grace: Option<Duration>,
    pub(crate) stall_timeout: Option<Duration>,
    pub(crate) delivery_timeout: Option<Duration>,
    pub(crate) drain_limit: Option<u64>,
    pub(crate) peer_time_wait: Option<PeerTimeWait>,
    pub(crate) heavy_client_threshold: u32,
    pub(crate) threads: u32,
    pub(crate) callback: fw_outcome_fn,
    pub(crate) user: *mut c_void,
}

impl Default for fw_options {
    fn default() -> Self {
        fw_options {
            policy: Policy::default(),
            grace: None,
            stall_timeout: None,
            delivery_timeout: None,
            drain_limit: None,
            peer_time_wait: None,
            heavy_client_threshold: farewell::DEFAULT_HEAVY_CLIENT_THRESHOLD,
            threads: 1,
            callback: None,
            user: std::ptr::null_mut(),
        }
    }
}

impl fw_options {
    /// The policy these options describe, or `FW_ERR_INVALID_ARGUMENT` when
    /// a setting was given for a policy that does not have it (a peer-first
    /// setting for another policy; a stall or delivery timeout for abort or
    /// silent).
    pub(crate) fn policy(&self) -> Result<Policy, c_int> {
        let mut policy = self.policy;
        if let Some(choice) = self.peer_time_wait {
            if !matches!(policy, Policy::PeerFirst(_)) {
                return Err(FW_ERR_INVALID_ARGUMENT);
            }
            policy = policy.with_peer_time_wait(choice);
        }
        if let Some(limit) = self.drain_limit {
            let Policy::PeerFirst(p) = policy else {
                return Err(FW_ERR_INVALID_ARGUMENT);
            };
            policy = Policy::PeerFirst(PeerFirst {
                drain_limit: limit,
                ..p
            });
        }
        if let Some(grace) = self.grace {
            // fw_options_set_grace_ms predates the delivery timeout: for a
            // policy without a grace it sets the delivery timeout, as it
            // always did (abort and silent have neither).
            policy = match policy.grace() {
                Some(_) => policy.with_grace(grace),
                None => policy.with_delivery_timeout(grace),
            };
        }
        if let Some(cap) = self.delivery_timeout {
            if policy.delivery_timeout().is_none() {
                return Err(FW_ERR_INVALID_ARGUMENT);
            }
            policy = policy.with_delivery_timeout(cap);
        }
        if let Some(stall) = self.stall_timeout {
            if policy.stall_timeout().is_none() {
                return Err(FW_ERR_INVALID_ARGUMENT);
            }
            policy = policy.with_stall_timeout(stall);
        }
        Ok(policy)
    }
}

/// New options with the defaults: policy `"peer-first"` (stall timeout 15 s,
/// delivery timeout 60 s, grace 2 s, drain limit 256 KiB), one thread, no
/// callback. NULL only if
/// memory ran out.
#[no_mangle]
pub extern "C" fn fw_options_new() -> *mut fw_options {
    guard_or(std::ptr::null_mut(), || {
        Box::into_raw(Box::<fw_options>::default())
    })
}

/// Frees options made by `fw_options_new`. NULL is allowed (nothing happens).
/// A closer made with them does not need them any more.
///
/// # Safety
///
/// `options` is NULL or came from `fw_options_new` and was not freed yet.
#[no_mangle]
pub unsafe extern "C" fn fw_options_free(options: *mut fw_options) {
    if !options.is_null() {
        // SAFETY: the caller passes a pointer from fw_options_new, once.
        drop(unsafe { Box::from_raw(options) });
    }
}

/// Runs `set` on the options behind `options`, or says `FW_ERR_NULL`.
fn with_options(options: *mut fw_options, set: impl FnOnce(&mut fw_options) -> c_int) -> c_int {
    guard(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the caller passes NULL or a live pointer from fw_options_new
        // that no other thread uses meanwhile (documented on each setter).
        match unsafe { options.as_mut() } {
            Some(options) => set(options),
            None => FW_ERR_NULL,
        }
    }))
}

/// Sets the teardown policy by name, with its default settings: `"peer-first"`
/// (the default), `"plain"`, `"lingering"`, `"lingering-reset"`,
/// `"fin-then-reset"`, `"abort"`, `"silent"`. Returns `FW_ERR_UNKNOWN_POLICY`
/// for any other name.
///
/// # Safety
///
/// `options` is NULL or a live pointer from `fw_options_new`; `name` is NULL
/// or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fw_options_set_policy(
    options: *mut fw_options,
    name: *const c_char,
) -> c_int {
    if name.is_null() {
        return FW_ERR_NULL;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(name) };
    with_options(options, |o| {
        match name.to_str().ok().and_then(|n| n.parse::<Policy>().ok()) {
            Some(policy) => {
                o.policy = policy;
                FW_OK
            }
            None => FW_ERR_UNKNOWN_POLICY,
        }
    })
}

/// Peer-first's grace in milliseconds: how long the peer has to close once
/// everything written was ACKed (default 2000). Clamped to 24 hours.
///
/// For compatibility with earlier versions, for the policies that have no
/// grace (plain, lingering, fin-then-reset) it sets their delivery timeout
/// instead, as `fw_options_set_delivery_timeout_ms` does (which wins when
/// both are set); abort and silent ignore it.
///
/// # Safety
///
/// `options` is NULL or a live pointer from `fw_options_new`.
#[no_mangle]
pub unsafe extern "C" fn fw_options_set_grace_ms(options: *mut fw_options, ms: u64) -> c_int {
    with_options(options, |o| {
        o.grace = Some(Duration::from_millis(ms).min(farewell::policy::MAX_WAIT));
        FW_OK
    })
}

/// The stall timeout in milliseconds: how long delivering what was written
/// may go without progress (no byte newly ACKed by the peer's kernel) before
/// the teardown gives up. A peer that keeps taking bytes, however slowly, is
/// never cut by it. Peer-first and fin-then-reset then reset; plain closes
/// with the rest unwritten (default 15000 for these); lingering, after its FIN,
/// counts a read from the peer as progress too, and closes, or resets for
/// `"lingering-reset"` (default 5000). Clamped to 24 hours.
/// `fw_closer_new` returns `FW_ERR_INVALID_ARGUMENT` for abort and silent,
/// which never wait.
///
/// # Safety
///
/// `options` is NULL or a live pointer from `fw_options_new`.
#[no_mangle]
pub unsafe extern "C" fn fw_options_set_stall_timeout_ms(
    options: *mut fw_options,
    ms: u64,
) -> c_int {
    with_options(options, |o| {
        o.stall_timeout = Some(Duration::from_millis(ms).min(farewell::policy::MAX_WAIT));
        FW_OK
    })
}

/// The delivery timeout in milliseconds: the total cap on delivering what
/// was written, from the start of the teardown, even to a peer that is still
/// taking bytes. Peer-first then resets, fin-then-reset resets if its FIN is
/// not ACKed yet, plain closes with the rest unwritten (default 60000 for
/// these); for lingering it caps the whole close, reading for the peer's FIN
/// included (default 30000). Clamped to 24 hours. `fw_closer_new` returns
/// `FW_ERR_INVALID_ARGUMENT` for abort and silent, which never wait.
///
/// # Safety
///
/// `options` is NULL or a live pointer from `fw_options_new`.
#[no_mangle]
pub unsafe extern "C" fn fw_options_set_delivery_timeout_ms(
    options: *mut fw_options,
    ms: u64,
) -> c_int {
    with_options(options, |o| {
        o.delivery_timeout = Some(Duration::from_millis(ms).min(farewell::policy::MAX_WAIT));
        FW_OK
    })
}

/// Peer-first only: the most bytes read and discarded from a peer before it
/// is reset for flooding (default 262144). `fw_closer_new` returns
/// `FW_ERR_INVALID_ARGUMENT` if the policy is not peer-first.
///
/// # Safety
///
/// `options` is NULL or a live pointer from `fw_options_new`.
#[no_mangle]
pub unsafe extern "C" fn fw_options_set_drain_limit(options: *mut fw_options, bytes: u64) -> c_int {
    with_options(options, |o| {
        o.drain_limit = Some(bytes);
        FW_OK
    })
}

/// Peer-first only: who keeps TIME-WAIT when a client closes after everything
/// was delivered: `"auto"` (the default: a light client keeps it; a heavy
/// one, more than the heavy-client threshold of endings from its address in
/// the last minute, is reset and keeps none), `"keep"` (every client keeps
/// it) or `"spare"` (nobody: for a server behind a proxy). A client that
/// half-closed before the goodbye is always closed passively.
/// `FW_ERR_INVALID_ARGUMENT` for another name; `fw_closer_new` returns it too
/// if the policy is not peer-first.
///
/// # Safety
///
/// `options` is NULL or a live pointer from `fw_options_new`; `name` is NULL
/// or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fw_options_set_peer_time_wait(
    options: *mut fw_options,
    name: *const c_char,
) -> c_int {
    if name.is_null() {
        return FW_ERR_NULL;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(name) };
    with_options(options, |o| {
        match name
            .to_str()
            .ok()
            .and_then(|n| n.parse::<PeerTimeWait>().ok())
        {
            Some(choice) => {
                o.peer_time_wait = Some(choice);
                FW_OK
            }
            None => FW_ERR_INVALID_ARGUMENT,
        }
    })
}

/// With `"auto"` (`fw_options_set_peer_time_wait`): a client address that
/// ended more than `endings` connections with this closer in the last minute
/// is heavy (default 500; 0: every client is heavy).
///
/// # Safety
///
/// `options` is NULL or a live pointer from `fw_options_new`.
#[no_mangle]
pub unsafe extern "C" fn fw_options_set_heavy_client_threshold(
    options: *mut fw_options,
    endings: u32,
) -> c_int {
    with_options(options, |o| {
        o.heavy_client_threshold = endings;
        FW_OK
    })
}

/// The number of threads the closer runs its teardowns on, 1 to
/// `FW_MAX_THREADS` (default 1: a teardown costs little CPU).
///
/// # Safety
///
/// `options` is NULL or a live pointer from `fw_options_new`.
#[no_mangle]
pub unsafe extern "C" fn fw_options_set_threads(options: *mut fw_options, threads: u32) -> c_int {
    with_options(options, |o| {
        if !(1..=FW_MAX_THREADS).contains(&threads) {
            return FW_ERR_INVALID_ARGUMENT;
        }
        o.threads = threads;
        FW_OK
    })
}

/// Sets the outcome callback and the pointer passed to it (NULL `callback`:
/// none). See `fw_outcome_fn` for where and when it runs.
///
/// # Safety
///
/// `options` is NULL or a live pointer from `fw_options_new`. `user` must be
/// usable from the library's threads until `fw_closer_free` returns.
#[no_mangle]
pub unsafe extern "C" fn fw_options_set_outcome_callback(
    options: *mut fw_options,
    callback: fw_outcome_fn,
    user: *mut c_void,
) -> c_int {
    with_options(options, |o| {
        o.callback = callback;
        o.user = user;
        FW_OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(policy: &str) -> fw_options {
        fw_options {
            policy: policy.parse().unwrap(),
            ..fw_options::default()
        }
    }

    #[test]
    fn stall_and_delivery_timeouts_reach_every_policy_that_waits() {
        let (stall, cap) = (Duration::from_millis(1234), Duration::from_millis(5678));
        for name in Policy::NAMES {
            let o = fw_options {
                stall_timeout: Some(stall),
                delivery_timeout: Some(cap),
                ..options(name)
            };
            match name {
                "abort" | "silent" => {
                    assert_eq!(o.policy(), Err(FW_ERR_INVALID_ARGUMENT), "{name}")
                }
                _ => {
                    let policy = o.policy().unwrap();
                    assert_eq!(policy.name(), name);
                    assert_eq!(policy.stall_timeout(), Some(stall), "{name}");
                    assert_eq!(policy.delivery_timeout(), Some(cap), "{name}");
                }
            }
        }
    }

    #[test]
    fn grace_ms_is_peer_first_grace_and_the_delivery_timeout_of_the_others() {
        let grace = Duration::from_millis(700);
        for name in Policy::NAMES {
            let policy = fw_options {
                grace: Some(grace),
                ..options(name)
            }
            .policy()
            .unwrap();
            let default: Policy = name.parse().unwrap();
            match name {
                "peer-first" => {
                    assert_eq!(policy.grace(), Some(grace));
                    assert_eq!(policy.delivery_timeout(), default.delivery_timeout());
                }
                "abort" | "silent" => assert_eq!(policy, default),
                _ => assert_eq!(policy.delivery_timeout(), Some(grace), "{name}"),
            }
        }
        // An explicit delivery timeout wins over the legacy meaning.
        let policy = fw_options {
            grace: Some(grace),
            delivery_timeout: Some(Duration::from_secs(9)),
            ..options("plain")
        }
        .policy()
        .unwrap();
        assert_eq!(policy.delivery_timeout(), Some(Duration::from_secs(9)));
    }

    #[test]
    fn peer_first_settings_are_refused_for_other_policies() {
        let o = fw_options {
            drain_limit: Some(10),
            ..options("lingering")
        };
        assert_eq!(o.policy(), Err(FW_ERR_INVALID_ARGUMENT));
        let o = fw_options {
            peer_time_wait: Some(PeerTimeWait::Spare),
            ..options("plain")
        };
        assert_eq!(o.policy(), Err(FW_ERR_INVALID_ARGUMENT));
    }
}
