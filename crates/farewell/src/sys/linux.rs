//! Linux implementations of [`super`]'s calls.
#![allow(unsafe_code)]

use std::io;
use std::mem::{offset_of, size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd};

use std::time::Duration;

use super::{NotConnectedTcp, SocketId, TcpInfo};
use crate::TcpState;

/// `SIOCOUTQNSD` from `linux/sockios.h` (not in the libc crate).
const SIOCOUTQNSD: libc::Ioctl = 0x894B;

/// Turns a `-1` return into `io::Error::last_os_error()`.
///
/// The lab has a copy (`farewell-lab`'s `sys/packet.rs`), on purpose: a
/// public macro here, even `#[doc(hidden)]`, would let any crate call any
/// libc function without writing `unsafe` itself (the block would be the
/// macro's), and the core cannot depend on the lab. Ten lines twice
/// are the lesser cost.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: the caller of the macro upholds the system call's contract;
        // each use below says how.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

/// Runs an `ioctl` that writes one `c_int` count.
fn ioctl_count(fd: BorrowedFd<'_>, request: libc::Ioctl) -> io::Result<u32> {
    let mut count: libc::c_int = 0;
    // SAFETY: `fd` is a live descriptor for the borrow's lifetime; the request
    // numbers used here (SIOCOUTQ, SIOCOUTQNSD, SIOCINQ) write exactly one
    // `int` through the pointer, which points to a local `c_int`.
    syscall!(ioctl(
        fd.as_raw_fd(),
        request,
        &mut count as *mut libc::c_int
    ))?;
    // The kernel never reports a negative queue length.
    Ok(u32::try_from(count).unwrap_or(0))
}

pub(super) fn unacked_bytes(fd: BorrowedFd<'_>) -> io::Result<u32> {
    ioctl_count(fd, libc::TIOCOUTQ) // SIOCOUTQ == TIOCOUTQ
}

pub(super) fn unsent_bytes(fd: BorrowedFd<'_>) -> io::Result<u32> {
    ioctl_count(fd, SIOCOUTQNSD)
}

pub(super) fn unread_bytes(fd: BorrowedFd<'_>) -> io::Result<u32> {
    ioctl_count(fd, libc::FIONREAD) // SIOCINQ == FIONREAD
}

pub(super) fn tcp_state(fd: BorrowedFd<'_>) -> io::Result<TcpState> {
    let mut state: u8 = 0;
    let mut len = size_of::<u8>() as libc::socklen_t;
    // SAFETY: `fd` is live; `state` is a buffer of `len` (1) bytes. The kernel
    // copies at most `len` bytes of its `struct tcp_info`, whose first field
    // is `tcpi_state` (a `__u8`).
    syscall!(getsockopt(
        fd.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_INFO,
        (&mut state as *mut u8).cast(),
        &mut len,
    ))?;
    state_of(state)
}

/// `tcpi_state` as a [`TcpState`], or an error for a number the kernel does not use.
fn state_of(state: u8) -> io::Result<TcpState> {
    TcpState::from_kernel(state).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("kernel reported unknown tcp state {state}"),
        )
    })
}

/// One `getsockopt(TCP_INFO)`: the kernel's struct and how many bytes of it
/// the kernel filled in (an older kernel fills less).
fn raw_tcp_info(fd: BorrowedFd<'_>) -> io::Result<(libc::tcp_info, usize)> {
    let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `fd` is live; `info` is a zeroed buffer of `len` bytes that the
    // kernel fills (possibly partly: it writes at most `len`, and the first
    // field, `tcpi_state`, is always written; an older kernel leaves the later
    // fields, e.g. `tcpi_bytes_acked` before 4.1, at zero).
    syscall!(getsockopt(
        fd.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_INFO,
        info.as_mut_ptr().cast(),
        &mut len,
    ))?;
    // SAFETY: zero-initialised `tcp_info` is a valid value (plain integers),
    // and the kernel only wrote integers over it.
    let info = unsafe { info.assume_init() };
    Ok((info, len as usize))
}

fn to_tcp_info(info: &libc::tcp_info) -> io::Result<TcpInfo> {
    let state = state_of(info.tcpi_state)?;
    Ok(TcpInfo {
        state,
        rtt: Duration::from_micros(u64::from(info.tcpi_rtt)),
        bytes_acked: info.tcpi_bytes_acked,
    })
}

pub(super) fn tcp_info(fd: BorrowedFd<'_>) -> io::Result<TcpInfo> {
    to_tcp_info(&raw_tcp_info(fd)?.0)
}

pub(super) fn tcp_info_and_unacked(fd: BorrowedFd<'_>) -> io::Result<(TcpInfo, Option<u32>)> {
    let (raw, len) = raw_tcp_info(fd)?;
    let info = to_tcp_info(&raw)?;
    // `tcpi_unacked` is `packets_out` (segments sent and not ACKed) outside
    // LISTEN; with none in flight `snd_una == snd_nxt`, so SIOCOUTQ
    // (`write_seq - snd_una`) equals `tcpi_notsent_bytes` (`write_seq -
    // snd_nxt`, Linux 4.6+), a queued FIN included. Both come from one
    // snapshot taken under the socket lock (`tcp_get_info`).
    let has_notsent = len >= offset_of!(libc::tcp_info, tcpi_notsent_bytes) + size_of::<u32>();
    let unacked = (has_notsent && raw.tcpi_unacked == 0 && info.state != TcpState::Listen)
        .then_some(raw.tcpi_notsent_bytes);
    Ok((info, unacked))
}

pub(super) fn reset_on_fin_ack(fd: BorrowedFd<'_>) -> io::Result<()> {
    let negative: libc::c_int = -1;
    // SAFETY: `fd` is live; the option value is one `c_int` and we pass its size.
    syscall!(setsockopt(
        fd.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_LINGER2,
        (&negative as *const libc::c_int).cast(),
        size_of::<libc::c_int>() as libc::socklen_t,
    ))?;
    Ok(())
}

pub(super) fn enter_repair_mode(fd: BorrowedFd<'_>) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `fd` is live; the option value is one `c_int` and we pass its size.
    syscall!(setsockopt(
        fd.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_REPAIR,
        (&on as *const libc::c_int).cast(),
        size_of::<libc::c_int>() as libc::socklen_t,
    ))?;
    Ok(())
}

pub(super) fn connected_tcp(fd: std::os::fd::RawFd) -> Result<SocketId, NotConnectedTcp> {
    if fd < 0 {
        return Err(NotConnectedTcp::BadDescriptor);
    }
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `stat` is a valid out-pointer of the right type; fstat only
    // reads the descriptor table (an unopened `fd` gives EBADF).
    if let Err(error) = syscall!(fstat(fd, stat.as_mut_ptr())) {
        return Err(match error.raw_os_error() {
            Some(libc::EBADF) => NotConnectedTcp::BadDescriptor,
            _ => NotConnectedTcp::Os(error),
        });
    }
    // SAFETY: fstat succeeded, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(NotConnectedTcp::NotSocket);
    }
    let domain = int_option(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let kind = int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE)?;
    let protocol = int_option(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
    if !matches!(domain, libc::AF_INET | libc::AF_INET6)
        || kind != libc::SOCK_STREAM
        || protocol != libc::IPPROTO_TCP
    {
        return Err(NotConnectedTcp::NotTcp);
    }
    if int_option(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? != 0 {
        return Err(NotConnectedTcp::Listening);
    }
    let mut peer = MaybeUninit::<libc::sockaddr_storage>::uninit();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `peer` has room for `len` bytes, and `len` is a valid in/out pointer.
    if let Err(error) = syscall!(getpeername(fd, peer.as_mut_ptr().cast(), &mut len)) {
        return Err(match error.raw_os_error() {
            Some(libc::ENOTCONN) => NotConnectedTcp::NotConnected,
            _ => NotConnectedTcp::Os(error),
        });
    }
    Ok(SocketId(stat.st_ino))
}

/// An `int` socket option of `fd`.
fn int_option(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` has room for `len` bytes; the options asked for are ints.
    syscall!(getsockopt(
        fd,
        level,
        name,
        (&mut value as *mut libc::c_int).cast(),
        &mut len
    ))?;
    Ok(value)
}
