//! Stand-ins for systems other than Linux: every call says it is unsupported.

use std::io;
use std::os::fd::BorrowedFd;

use super::{NotConnectedTcp, SocketId, TcpInfo};

fn unsupported<T>() -> io::Result<T> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "farewell's socket probes are implemented for linux only",
    ))
}

pub(super) fn unacked_bytes(_: BorrowedFd<'_>) -> io::Result<u32> {
    unsupported()
}

pub(super) fn unsent_bytes(_: BorrowedFd<'_>) -> io::Result<u32> {
    unsupported()
}

pub(super) fn unread_bytes(_: BorrowedFd<'_>) -> io::Result<u32> {
    unsupported()
}

pub(super) fn tcp_state(_: BorrowedFd<'_>) -> io::Result<crate::TcpState> {
    unsupported()
}

pub(super) fn tcp_info(_: BorrowedFd<'_>) -> io::Result<TcpInfo> {
    unsupported()
}

pub(super) fn tcp_info_and_unacked(_: BorrowedFd<'_>) -> io::Result<(TcpInfo, Option<u32>)> {
    unsupported()
}

pub(super) fn reset_on_fin_ack(_: BorrowedFd<'_>) -> io::Result<()> {
    unsupported()
}

pub(super) fn enter_repair_mode(_: BorrowedFd<'_>) -> io::Result<()> {
    unsupported()
}

pub(super) fn connected_tcp(_: std::os::fd::RawFd) -> Result<SocketId, NotConnectedTcp> {
    Err(NotConnectedTcp::Os(unsupported::<()>().unwrap_err()))
}
