//! The check the boundary makes before taking a descriptor, in libfarewell's
//! codes. The system calls are the core's ([`farewell::sys::connected_tcp`]):
//! this crate calls no `libc` itself.

use std::os::fd::RawFd;
use std::os::raw::c_int;

use farewell::sys::NotConnectedTcp;
pub(crate) use farewell::sys::SocketId;

use crate::error::{
    FW_ERR_BAD_FD, FW_ERR_LISTENING, FW_ERR_NOT_CONNECTED, FW_ERR_NOT_SOCKET, FW_ERR_NOT_TCP,
    FW_ERR_OS,
};

/// Checks that `fd` is an open, connected TCP socket (IPv4 or IPv6) and says
/// which socket it is; otherwise the `FW_ERR_*` code that says why not.
pub(crate) fn connected_tcp(fd: RawFd) -> Result<SocketId, c_int> {
    farewell::sys::connected_tcp(fd).map_err(|why| match why {
        NotConnectedTcp::BadDescriptor => FW_ERR_BAD_FD,
        NotConnectedTcp::NotSocket => FW_ERR_NOT_SOCKET,
        NotConnectedTcp::NotTcp => FW_ERR_NOT_TCP,
        NotConnectedTcp::Listening => FW_ERR_LISTENING,
        NotConnectedTcp::NotConnected => FW_ERR_NOT_CONNECTED,
        _ => FW_ERR_OS,
    })
}
