//! The test kit's own OS calls (the library's are in `farewell::sys`):
//! entering a network namespace, dropping a capability (`capget`/`capset`).
//! The only unsafe code of this crate is here, each block with its SAFETY
//! note. (The lab's raw packet sockets are `farewell-lab`'s `sys/packet.rs`.)

use std::io;
use std::os::fd::AsFd;

/// Moves the *calling thread* into the network namespace `ns` refers to
/// (`setns(fd, CLONE_NEWNET)`), e.g. an open `/run/netns/NAME`.
///
/// Sockets the thread creates afterwards belong to that namespace for their
/// whole life, whichever thread uses them later; sock_diag and
/// `/proc/thread-self/net/*` then answer for it too. Other threads are not
/// affected.
///
/// # Errors
///
/// `EPERM` without `CAP_SYS_ADMIN`; `EINVAL` when `ns` is not a network
/// namespace.
pub(crate) fn enter_netns(ns: &impl AsFd) -> io::Result<()> {
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

/// `struct __user_cap_header_struct` (`linux/capability.h`).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`; version 3 uses two (capabilities 0–31, 32–63).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`.
const CAP_VERSION_3: u32 = 0x2008_0522;

/// Removes capability `cap` from the calling thread's effective, permitted
/// and inheritable sets, for good. Only this thread loses it: capabilities
/// are per thread, and the raw `capset` system call (unlike glibc's
/// set*id wrappers) does not broadcast to the other threads.
pub(crate) fn drop_capability_on_this_thread(cap: u32) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0, // the calling thread
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes one header and two data structs (version 3),
    // which are live, correctly laid out locals.
    #[allow(unsafe_code)] // SAFETY note above
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let keep = !(1u32 << cap);
    data[0].effective &= keep;
    data[0].permitted &= keep;
    data[0].inheritable &= keep;
    // SAFETY: capset reads one header and two data structs, as above; it
    // changes only the calling thread's credentials.
    #[allow(unsafe_code)] // SAFETY note above
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
