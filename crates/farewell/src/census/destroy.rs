//! `SOCK_DESTROY`: removing one socket from the kernel's table.

use super::netlink::{DiagSocket, Failure};
use super::{CensusError, SocketEntry};

/// Destroys the socket `entry` names; see [`super::destroy`].
pub(super) fn destroy(entry: &SocketEntry) -> Result<(), CensusError> {
    let no_such_socket = || CensusError::NoSuchSocket {
        local: entry.local,
        remote: entry.remote,
    };
    let mut socket = DiagSocket::open()?;
    // An entry from /proc has no cookie. Destroying by 4-tuple alone would
    // let the kernel's lookup fall back to the *listener* on that port when
    // the connection is gone, so fetch the cookie of the exact 4-tuple
    // first; the kernel then checks it (ESTALE if the socket was replaced).
    let cookie = if entry.cookie != 0 {
        entry.cookie
    } else {
        match socket.lookup(entry.local, entry.remote)? {
            Some(found) => found.cookie,
            None => return Err(no_such_socket()),
        }
    };
    match socket.destroy(entry.local, entry.remote, cookie) {
        Ok(()) => Ok(()),
        Err(Failure::Refused(e)) => Err(match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => CensusError::NeedsNetAdmin,
            Some(libc::EOPNOTSUPP) => CensusError::DestroyUnsupported,
            // ESTALE: the 4-tuple now belongs to a newer socket.
            Some(libc::ENOENT) | Some(libc::ESTALE) => no_such_socket(),
            _ => CensusError::Kernel {
                op: "destroy",
                source: e,
            },
        }),
        Err(failure) => Err(failure.into_census("destroy")),
    }
}
