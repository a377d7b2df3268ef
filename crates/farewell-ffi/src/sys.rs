//! The system calls the boundary needs to check a descriptor before taking it.
//! Every `libc` call of this crate is here.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::RawFd;
use std::os::raw::c_int;

use crate::error::{
    FW_ERR_BAD_FD, FW_ERR_LISTENING, FW_ERR_NOT_CONNECTED, FW_ERR_NOT_SOCKET, FW_ERR_NOT_TCP,
    FW_ERR_OS,
};

/// What identifies the socket behind a descriptor while it is open: its
/// inode number (sockfs gives every socket a fresh one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SocketId(u64);

/// Checks that `fd` is an open, connected TCP socket (IPv4 or IPv6) and says
/// which socket it is; otherwise the `FW_ERR_*` code that says why not.
pub(crate) fn connected_tcp(fd: RawFd) -> Result<SocketId, c_int> {
    if fd < 0 {
        return Err(FW_ERR_BAD_FD);
    }
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `stat` is a valid out-pointer of the right type; fstat only
    // reads the descriptor table (an unopened `fd` gives EBADF).
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return Err(match io::Error::last_os_error().raw_os_error() {
            Some(libc::EBADF) => FW_ERR_BAD_FD,
            _ => FW_ERR_OS,
        });
    }
    // SAFETY: fstat succeeded, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(FW_ERR_NOT_SOCKET);
    }
    let domain = int_option(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let kind = int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE)?;
    let protocol = int_option(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
    if !matches!(domain, libc::AF_INET | libc::AF_INET6)
        || kind != libc::SOCK_STREAM
        || protocol != libc::IPPROTO_TCP
    {
        return Err(FW_ERR_NOT_TCP);
    }
    if int_option(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? != 0 {
        return Err(FW_ERR_LISTENING);
    }
    let mut peer = MaybeUninit::<libc::sockaddr_storage>::uninit();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `peer` has room for `len` bytes, and `len` is a valid in/out pointer.
    if unsafe { libc::getpeername(fd, peer.as_mut_ptr().cast(), &mut len) } != 0 {
        return Err(match io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOTCONN) => FW_ERR_NOT_CONNECTED,
            _ => FW_ERR_OS,
        });
    }
    Ok(SocketId(stat.st_ino))
}

/// An `int` socket option.
fn int_option(fd: RawFd, level: c_int, name: c_int) -> Result<c_int, c_int> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `value` has room for `len` bytes; the options asked for are ints.
    let rc =
        unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut c_int).cast(), &mut len) };
    if rc != 0 {
        return Err(FW_ERR_OS);
    }
    Ok(value)
}
