//! The bench's signals to the processes it starts (nginx), through nix's
//! safe wrappers: no unsafe code here (the lab's OS calls, which have some,
//! are in `farewell_testkit`'s `sys`).

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
