//! Taking a descriptor from Node: the check that it is a connected TCP
//! socket (the core's [`farewell::sys::connected_tcp`]: this crate calls no
//! `libc` itself), and its duplicate.
#![allow(unsafe_code)]

use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use farewell::sys::NotConnectedTcp;
pub(crate) use farewell::sys::SocketId;

use crate::error::Refusal;

/// Checks that `fd` is an open, connected TCP socket (IPv4 or IPv6) and says
/// which socket it is; otherwise why not.
pub(crate) fn connected_tcp(fd: RawFd) -> Result<SocketId, Refusal> {
    farewell::sys::connected_tcp(fd).map_err(|why| match why {
        NotConnectedTcp::BadDescriptor => Refusal::Closed,
        NotConnectedTcp::NotSocket | NotConnectedTcp::NotTcp => Refusal::NotTcp,
        NotConnectedTcp::Listening | NotConnectedTcp::NotConnected => Refusal::NotConnected,
        NotConnectedTcp::Os(error) => Refusal::Os(error),
        other => Refusal::Os(std::io::Error::other(other.to_string())),
    })
}

/// A duplicate of `fd` (`F_DUPFD_CLOEXEC`, by std): the same socket, under a
/// descriptor of our own, so that Node closing `fd` sends nothing.
///
/// `fd` must have passed [`connected_tcp`] just before, on the same thread
/// Node runs on (nothing closes it in between).
pub(crate) fn duplicate(fd: RawFd) -> Result<OwnedFd, Refusal> {
    // SAFETY: `fd` was found open by `connected_tcp` just before on this
    // thread, the JS thread that alone may close it, so it stays open for
    // this borrow.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    borrowed.try_clone_to_owned().map_err(Refusal::Os)
}

/// Runs `f` on `fd` borrowed for this one call. `fd` is the descriptor of
/// a socket Node's JS thread holds open (index.js passes its live handle's
/// fd), and only that thread, which is making this call, may close it.
fn with_fd<T>(
    fd: RawFd,
    f: impl FnOnce(BorrowedFd<'_>) -> Result<T, Refusal>,
) -> Result<T, Refusal> {
    if fd < 0 {
        return Err(Refusal::Closed);
    }
    // SAFETY: as above: `fd` stays open for the whole call, and the borrow
    // does not outlive it (it is `f`'s argument only).
    f(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// `None` if the peer's FIN is already in (`CLOSE-WAIT`), else the bytes
/// `fd` sent that the peer's kernel has not ACKed yet (the core's
/// [`farewell::sys::unacked_bytes`], `SIOCOUTQ`).
pub(crate) fn wait_start(fd: RawFd) -> Result<Option<u32>, Refusal> {
    with_fd(fd, |socket| {
        if farewell::sys::tcp_state(&socket).map_err(Refusal::Os)? == farewell::TcpState::CloseWait
        {
            return Ok(None);
        }
        farewell::sys::unacked_bytes(&socket)
            .map(Some)
            .map_err(Refusal::Os)
    })
}

/// What [`fin_state`] found on a socket the fast path waits on.
pub(crate) enum FinState {
    /// `ESTABLISHED`: the peer's FIN is not in yet.
    NotYet,
    /// The peer's FIN is in (`CLOSE-WAIT`), with this many bytes of ours
    /// still unACKed (`SIOCOUTQ`) and the peer's address.
    In {
        unacked: u32,
        peer: Option<std::net::IpAddr>,
    },
    /// Any other state (reset, closed): not the fast path's to end.
    Gone,
}

/// One look at a socket the fast path waits on: its state, then, once the
/// peer's FIN is in, its unACKed bytes and (when all are ACKed and `ask_peer`)
/// the peer's address; `TCP_INFO` (which tells the unACKed bytes too when no
/// segment is in flight, else `SIOCOUTQ`), `getpeername`.
pub(crate) fn fin_state(fd: RawFd, ask_peer: bool) -> Result<FinState, Refusal> {
    with_fd(fd, |socket| {
        let (info, unacked) = farewell::sys::tcp_info_and_unacked(&socket).map_err(Refusal::Os)?;
        match info.state {
            farewell::TcpState::CloseWait => {}
            farewell::TcpState::Established => return Ok(FinState::NotYet),
            _ => return Ok(FinState::Gone),
        }
        // A segment in flight: TCP_INFO does not tell the bytes, SIOCOUTQ does.
        let unacked = match unacked {
            Some(unacked) => unacked,
            None => farewell::sys::unacked_bytes(&socket).map_err(Refusal::Os)?,
        };
        let peer = if unacked == 0 && ask_peer {
            socket2::SockRef::from(&socket)
                .peer_addr()
                .ok()
                .and_then(|address| address.as_socket())
                .map(|address| address.ip())
        } else {
            None
        };
        Ok(FinState::In { unacked, peer })
    })
}

/// Sets `SO_LINGER {on, 0}` on `fd`, whose owner (Node) closes it next: that
/// close sends a reset, as Node's `resetAndDestroy()` would, without its
/// extra work.
pub(crate) fn set_reset_on_close(fd: RawFd) -> Result<(), Refusal> {
    with_fd(fd, |socket| {
        socket2::SockRef::from(&socket)
            .set_linger(Some(std::time::Duration::ZERO))
            .map_err(Refusal::Os)
    })
}

/// Whether the peer's FIN is already in on `fd` (`CLOSE-WAIT`).
pub(crate) fn peer_fin_in(fd: RawFd) -> Result<bool, Refusal> {
    with_fd(fd, |socket| {
        farewell::sys::tcp_state(&socket)
            .map(|state| state == farewell::TcpState::CloseWait)
            .map_err(Refusal::Os)
    })
}
