//! The lab's own OS calls (the library's are in `farewell::sys`, the test
//! kit's namespaces and capabilities in `farewell_testkit`'s): [`packet`]
//! (raw `AF_PACKET` sockets and the `SIOCETHTOOL` offload switch of the
//! network paths), the only unsafe code of this crate, each block with its
//! SAFETY note; and the bench's signals to the processes it starts (nginx),
//! through nix's safe wrappers.

pub(crate) mod packet;

use std::io;

/// Sends `signal` to process `pid` (`kill(2)`).
///
/// # Errors
///
/// `ESRCH` when the process is gone (reaped); `EPERM` without the right to signal it.
pub(crate) fn signal_process(pid: u32, signal: nix::sys::signal::Signal) -> io::Result<()> {
    nix::sys::signal::kill(as_pid(pid)?, signal).map_err(io::Error::from)
}

/// Sends `signal` to every process of process group `pgid` (`killpg(3)`).
///
/// # Errors
///
/// When the kernel refuses the signal. A group with no process left is not
/// an error: what the signal was for has happened.
pub(crate) fn signal_group(pgid: u32, signal: nix::sys::signal::Signal) -> io::Result<()> {
    match nix::sys::signal::killpg(as_pid(pgid)?, signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// A positive pid (0 and negative ones mean groups or "everyone" to `kill(2)`).
fn as_pid(pid: u32) -> io::Result<nix::unistd::Pid> {
    match i32::try_from(pid) {
        Ok(raw) if raw > 0 => Ok(nix::unistd::Pid::from_raw(raw)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a process id: {pid}"),
        )),
    }
}
