//! The system calls the addon needs to take a descriptor from Node: check
//! that it is a connected TCP socket, and duplicate it. Every `libc` call of
//! this crate is here.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::raw::c_int;

use crate::error::Refusal;

/// What identifies the socket behind a descriptor while it is open: its
/// inode number (sockfs gives every socket a fresh one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SocketId(pub(crate) u64);

/// Checks that `fd` is an open, connected TCP socket (IPv4 or IPv6) and says
/// which socket it is; otherwise why not.
pub(crate) fn connected_tcp(fd: RawFd) -> Result<SocketId, Refusal> {
    if fd < 0 {
        return Err(Refusal::Closed);
    }
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `stat` is a valid out-pointer of the right type; fstat only
    // reads the descriptor table (an unopened `fd` gives EBADF).
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        let error = io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::EBADF) => Refusal::Closed,
            _ => Refusal::Os(error),
        });
    }
    // SAFETY: fstat succeeded, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(Refusal::NotTcp);
    }
    let domain = int_option(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let kind = int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE)?;
    let protocol = int_option(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
    if !matches!(domain, libc::AF_INET | libc::AF_INET6)
        || kind != libc::SOCK_STREAM
        || protocol != libc::IPPROTO_TCP
    {
        return Err(Refusal::NotTcp);
    }
    if int_option(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? != 0 {
        return Err(Refusal::NotConnected);
    }
    let mut peer = MaybeUninit::<libc::sockaddr_storage>::uninit();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `peer` has room for `len` bytes, and `len` is a valid in/out pointer.
    if unsafe { libc::getpeername(fd, peer.as_mut_ptr().cast(), &mut len) } != 0 {
        let error = io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::ENOTCONN) => Refusal::NotConnected,
            _ => Refusal::Os(error),
        });
    }
    Ok(SocketId(stat.st_ino))
}

/// A duplicate of `fd` (`F_DUPFD_CLOEXEC`): the same socket, under a
/// descriptor of our own, so that Node closing `fd` sends nothing.
pub(crate) fn duplicate(fd: RawFd) -> Result<OwnedFd, Refusal> {
    // SAFETY: fcntl with F_DUPFD_CLOEXEC only reads `fd` and makes a new
    // descriptor; an unopened `fd` gives EBADF.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        let error = io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::EBADF) => Refusal::Closed,
            _ => Refusal::Os(error),
        });
    }
    // SAFETY: fcntl just made `new`, and nothing else knows it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// An `int` socket option.
fn int_option(fd: RawFd, level: c_int, name: c_int) -> Result<c_int, Refusal> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `value` has room for `len` bytes; the options asked for are ints.
    let rc =
        unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut c_int).cast(), &mut len) };
    if rc != 0 {
        return Err(Refusal::Os(io::Error::last_os_error()));
    }
    Ok(value)
}
