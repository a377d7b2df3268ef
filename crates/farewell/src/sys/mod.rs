//! The OS layer: the few socket calls the teardown needs that tokio and socket2 do not offer.
//!
//! Everything here is a thin wrapper over one system call, with the kernel's
//! behaviour written next to it. The functions take a borrowed or owned file
//! descriptor (`AsFd` / [`std::net::TcpStream`]), so they work with tokio,
//! std and socket2 sockets alike.
//!
//! | call | kernel interface | notes |
//! |---|---|---|
//! | [`abort`] | `SO_LINGER {on, 0}` + `close()` | RST, no TIME-WAIT, unsent data discarded ([F3](crate::facts#f3)) |
//! | [`unacked_bytes`] | `ioctl(SIOCOUTQ)` | sent-but-unACKed + unsent bytes; a queued FIN counts 1 ([F5](crate::facts#f5)) |
//! | [`unsent_bytes`] | `ioctl(SIOCOUTQNSD)` | bytes not yet sent at all |
//! | [`unread_bytes`] | `ioctl(SIOCINQ)` | bytes waiting in the receive queue (closing with these sends RST, [F4](crate::facts#f4)) |
//! | [`tcp_state`] | `getsockopt(TCP_INFO)` | the connection's [`TcpState`] |
//! | [`tcp_info`] | `getsockopt(TCP_INFO)` | state, round-trip time, bytes ACKed: delivery progress ([F12](crate::facts#f12)) |
//! | [`tcp_info_and_unacked`] | `getsockopt(TCP_INFO)` | [`tcp_info`], and [`unacked_bytes`] when no segment is in flight (no `ioctl`) |
//! | [`set_user_timeout`] | `TCP_USER_TIMEOUT` via socket2 | bounds how long unACKed data keeps a connection ([F7](crate::facts#f7)) |
//! | [`close_reset_on_fin_ack`] | `TCP_LINGER2` = -1 + `close()` | FIN; the ACK of that FIN destroys the socket and is answered with RST: no TIME-WAIT even if the peer's FIN rides on that ACK |
//! | [`close_silently`] | `TCP_REPAIR` + `close()` | nothing on the wire; needs `CAP_NET_ADMIN` ([F8](crate::facts#f8)) |
//!
//! # Platform support
//!
//! Linux only for now. On other systems every call returns
//! [`io::ErrorKind::Unsupported`]; the layer is kept this narrow so that other
//! systems can follow by adding one file beside `linux.rs`.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as imp;

#[cfg(not(target_os = "linux"))]
mod unsupported;
#[cfg(not(target_os = "linux"))]
use unsupported as imp;

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use crate::TcpState;

/// Closes `stream` with a TCP reset: `SO_LINGER {on, 0}`, then `close()`.
///
/// On the wire: one RST. Nobody keeps a TIME-WAIT entry. Whatever was still
/// unsent or unacknowledged in our send queue is discarded ([F3](crate::facts#f3)), and
/// on systems other than Linux the peer may lose data it had received but not
/// yet read ([F6](crate::facts#f6)).
///
/// The descriptor is always closed, even when setting the linger option fails.
///
/// # Errors
///
/// Returns the `setsockopt` error when `SO_LINGER` could not be set; the socket
/// was then closed normally (a FIN, or an RST if unread data was pending).
pub fn abort(stream: std::net::TcpStream) -> io::Result<()> {
    close_with_reset(stream)
}

/// [`abort`] for any owner of the descriptor (a tokio stream too: the option
/// is set on the descriptor itself, which needs no reactor). Crate-private:
/// `impl AsFd` also takes a borrow, which this would leave open.
pub(crate) fn close_with_reset(stream: impl AsFd) -> io::Result<()> {
    let linger = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
    linger
}

/// Bytes in the send queue that the peer's kernel has not acknowledged yet:
/// sent-but-unACKed plus not-yet-sent (`ioctl(SIOCOUTQ)`).
///
/// 0 means everything written reached the peer's kernel. A FIN that has been
/// queued counts as one byte until it is acknowledged.
///
/// # Notes
///
/// After the connection was reset the value is stale; check [`tcp_state`] too.
///
/// # Errors
///
/// Fails when `socket` is not a TCP socket (`ENOTTY`/`EINVAL`) or on an unsupported system.
pub fn unacked_bytes(socket: &impl AsFd) -> io::Result<u32> {
    imp::unacked_bytes(socket.as_fd())
}

/// Bytes in the send queue that were not sent at all yet (`ioctl(SIOCOUTQNSD)`),
/// e.g. because the peer's receive window is closed.
///
/// # Errors
///
/// As [`unacked_bytes`].
pub fn unsent_bytes(socket: &impl AsFd) -> io::Result<u32> {
    imp::unsent_bytes(socket.as_fd())
}

/// Bytes received but not yet read by the application (`ioctl(SIOCINQ)`).
///
/// Closing a socket while this is non-zero sends RST whatever the linger
/// setting ([F4](crate::facts#f4)).
///
/// # Errors
///
/// As [`unacked_bytes`]; `EINVAL` on a listening socket.
pub fn unread_bytes(socket: &impl AsFd) -> io::Result<u32> {
    imp::unread_bytes(socket.as_fd())
}

/// The connection's TCP state, from `getsockopt(TCP_INFO)`.
///
/// # Notes
///
/// It asks the kernel for the first byte of `struct tcp_info` alone
/// (`tcpi_state`), so nothing else is zeroed, copied or read: cheap enough to
/// ask before every response (farewell-http does, to tell a half-close).
///
/// # Errors
///
/// Fails when `socket` is not a TCP socket or on an unsupported system.
pub fn tcp_state(socket: &impl AsFd) -> io::Result<TcpState> {
    imp::tcp_state(socket.as_fd())
}

/// What `getsockopt(TCP_INFO)` says about a connection: the part of
/// `struct tcp_info` the teardown uses.
///
/// One call gives all of it, so reading the round-trip time and the ACK
/// counter along with the state costs nothing more than [`tcp_state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpInfo {
    /// The connection's state (`tcpi_state`).
    pub state: TcpState,
    /// The smoothed round-trip time (`tcpi_rtt`, microseconds); zero before
    /// the first RTT sample.
    pub rtt: Duration,
    /// Bytes of ours the peer has acknowledged over the connection's life
    /// (`tcpi_bytes_acked`, RFC 4898 `tcpEStatsAppHCThruOctetsAcked`). It only
    /// grows; a rise between two readings is delivery progress even when the
    /// send queue ([`unacked_bytes`]) is refilled meanwhile.
    ///
    /// # Notes
    ///
    /// Linux 4.1 and later; older kernels leave it at 0. The acknowledged FIN
    /// counts one byte, as does the SYN on some kernels: use differences.
    pub bytes_acked: u64,
}

/// The connection's state, round-trip time and acknowledged-bytes counter,
/// from one `getsockopt(TCP_INFO)`.
///
/// # Errors
///
/// Fails when `socket` is not a TCP socket or on an unsupported system.
pub fn tcp_info(socket: &impl AsFd) -> io::Result<TcpInfo> {
    imp::tcp_info(socket.as_fd())
}

/// [`tcp_info`], and the bytes [`unacked_bytes`] would report when the same
/// `TCP_INFO` already tells them: with no segment in flight (`tcpi_unacked`
/// = 0) the send queue is exactly what is not sent yet
/// (`tcpi_notsent_bytes`, Linux 4.6+). `None` when a segment is in flight
/// (or the kernel is older): ask [`unacked_bytes`]. Saves the teardown's
/// `ioctl` in the common case, where everything written was ACKed (the
/// Node addon's too, when the client's FIN comes).
///
/// # Errors
///
/// As [`tcp_info`].
pub fn tcp_info_and_unacked(socket: &impl AsFd) -> io::Result<(TcpInfo, Option<u32>)> {
    imp::tcp_info_and_unacked(socket.as_fd())
}

/// Sets `TCP_USER_TIMEOUT`: how long transmitted data may stay unacknowledged
/// before the kernel gives up on the connection with `ETIMEDOUT` (no RST is
/// sent, [F7](crate::facts#f7)). `None` restores the system default.
///
/// Delegates to socket2.
///
/// # Errors
///
/// Fails when `socket` is not a TCP socket, or the duration does not fit in
/// the option's milliseconds.
pub fn set_user_timeout(socket: &impl AsFd, timeout: Option<Duration>) -> io::Result<()> {
    socket2::SockRef::from(socket).set_tcp_user_timeout(timeout)
}

/// Closes `stream` with a FIN after which the kernel resets the connection
/// as soon as the peer ACKs that FIN: `TCP_LINGER2` set to -1, then
/// `close()`.
///
/// On the wire: whatever is still queued, FIN; then, when the peer's ACK of
/// the FIN arrives, RST. The closed (orphaned) socket in `FIN-WAIT-1` that
/// gets the ACK of its FIN is destroyed there and the segment answered with a
/// reset, before any FIN in the same segment is looked at (Linux
/// `net/ipv4/tcp_input.c`, `tcp_rcv_state_process`, case `TCP_FIN_WAIT1`), so
/// nobody keeps TIME-WAIT — even against a peer that closes at once, whose
/// kernel (in delayed-ACK "pingpong" mode in `CLOSE-WAIT`) sends the ACK of
/// our FIN along with its own FIN. Fin-then-reset from user space (wait for
/// `FIN-WAIT-2`, then RST) loses that race and leaves TIME-WAIT here.
///
/// The peer reads everything queued and then end of file: the reset only
/// fails its later writes (`EPIPE` in `CLOSE-WAIT`).
///
/// # Notes
///
/// Unread input makes `close()` send an RST at once instead
/// ([F4](crate::facts#f4)): read it, or wait until the peer is done, first.
/// Wait until [`unacked_bytes`] is 0 before calling this when what is queued
/// matters: the RST on the FIN's ACK ends the connection, and a peer that
/// stops reading holds the orphan until `tcp_orphan_retries` give up.
///
/// # Errors
///
/// Returns the `setsockopt` error when `TCP_LINGER2` could not be set; the
/// socket was then closed normally (FIN; TIME-WAIT on our side if the peer
/// closes).
pub fn close_reset_on_fin_ack(stream: std::net::TcpStream) -> io::Result<()> {
    let set = set_reset_on_fin_ack(&stream);
    drop(stream);
    set
}

/// What identifies the socket behind a descriptor while it is open: its
/// inode number (sockfs gives every socket a fresh one), so a descriptor
/// number reused for another socket is told apart. See [`connected_tcp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub(crate) u64);

/// Why a descriptor is not a connected TCP socket ([`connected_tcp`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotConnectedTcp {
    /// Not an open descriptor (`EBADF`).
    #[error("not an open descriptor")]
    BadDescriptor,
    /// Open, but not a socket (a file, a pipe).
    #[error("not a socket")]
    NotSocket,
    /// A socket, but not TCP over IPv4 or IPv6 (a Unix socket, UDP).
    #[error("not a TCP socket")]
    NotTcp,
    /// A listening TCP socket.
    #[error("a listening socket, not a connection")]
    Listening,
    /// A TCP socket that is not connected (never was, or is over).
    #[error("the TCP socket is not connected")]
    NotConnected,
    /// A system call failed otherwise.
    #[error("{0}")]
    Os(#[from] io::Error),
}

/// Checks that `fd` is an open, connected TCP socket (IPv4 or IPv6) before
/// a caller takes it over (libfarewell's `fw_close`, the Node addon), and
/// says which socket it is. `fstat`, three `getsockopt`s and `getpeername`;
/// none changes the socket, and an unopened `fd` is only reported.
///
/// # Errors
///
/// [`NotConnectedTcp`] says what `fd` is instead.
pub fn connected_tcp(fd: std::os::fd::RawFd) -> Result<SocketId, NotConnectedTcp> {
    imp::connected_tcp(fd)
}

/// Sets `TCP_LINGER2` = -1 on `socket` (see [`close_reset_on_fin_ack`]), for
/// a caller that closes it itself (a runtime's stream, dropped).
pub(crate) fn set_reset_on_fin_ack(socket: &impl AsFd) -> io::Result<()> {
    imp::reset_on_fin_ack(socket.as_fd())
}

/// A socket that [`close_silently`] could not close; it is handed back so the
/// caller can close it another way.
#[derive(Debug)]
pub struct NotClosed {
    /// Why the silent close failed (`EPERM` without `CAP_NET_ADMIN`).
    pub error: io::Error,
    /// The socket, still open and unchanged.
    pub stream: std::net::TcpStream,
}

/// Closes `stream` without sending anything: no FIN, no RST (`TCP_REPAIR`, then `close()`).
///
/// The peer learns nothing; its side stays open until its own timers give up.
/// Meant for abusive peers only (HAProxy's *silent-drop*). Nobody keeps a
/// TIME-WAIT entry.
///
/// # Errors
///
/// Needs `CAP_NET_ADMIN`; without it `TCP_REPAIR` fails with `EPERM` and the
/// socket comes back untouched in [`NotClosed`].
pub fn close_silently(stream: std::net::TcpStream) -> Result<(), Box<NotClosed>> {
    match imp::enter_repair_mode(stream.as_fd()) {
        Ok(()) => {
            drop(stream);
            Ok(())
        }
        Err(error) => Err(Box::new(NotClosed { error, stream })),
    }
}

/// True when `error` says the process (`EMFILE`) or the whole system
/// (`ENFILE`) is out of file descriptors, e.g. from `accept()`.
pub fn is_fd_exhaustion(error: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
    }
    #[cfg(not(unix))]
    {
        let _ = error;
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Instant;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    #[test]
    fn connected_tcp_tells_what_a_descriptor_is() {
        use std::os::fd::AsRawFd;
        let (server, client) = pair();
        let a = connected_tcp(server.as_raw_fd()).unwrap();
        let b = connected_tcp(client.as_raw_fd()).unwrap();
        assert_ne!(a, b, "two sockets, two ids");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(matches!(
            connected_tcp(listener.as_raw_fd()),
            Err(NotConnectedTcp::Listening)
        ));
        let (unix, _other) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(matches!(
            connected_tcp(unix.as_raw_fd()),
            Err(NotConnectedTcp::NotTcp)
        ));
        let file = std::fs::File::open("/proc/self/status").unwrap();
        assert!(matches!(
            connected_tcp(file.as_raw_fd()),
            Err(NotConnectedTcp::NotSocket)
        ));
        assert!(matches!(
            connected_tcp(-1),
            Err(NotConnectedTcp::BadDescriptor)
        ));
        let unconnected =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        assert!(matches!(
            connected_tcp(unconnected.as_raw_fd()),
            Err(NotConnectedTcp::NotConnected)
        ));
    }

    /// Polls (bounded, 3 s) until `done` holds; returns whether it did.
    fn eventually(mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn tcp_info_and_unacked_says_zero_once_everything_written_was_acked() {
        let (mut server, mut client) = pair();
        server.write_all(&[7; 100]).unwrap();
        let mut got = [0; 100];
        client.read_exact(&mut got).unwrap();
        assert!(eventually(|| unacked_bytes(&server).unwrap() == 0));
        let (info, unacked) = tcp_info_and_unacked(&server).unwrap();
        assert_eq!(info.state, TcpState::Established);
        assert_eq!(unacked, Some(0), "nothing in flight: TCP_INFO tells");
    }

    #[test]
    fn tcp_info_and_unacked_matches_siocoutq_with_bytes_stuck_behind_a_closed_window() {
        let (server, client) = pair();
        // The client never reads: its window closes and our bytes stay unsent.
        server.set_nonblocking(true).unwrap();
        let chunk = [1u8; 64 * 1024];
        let mut written = 0usize;
        for _ in 0..1024 {
            match (&server).write(&chunk) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        assert!(written > 0);
        // Once the window is closed nothing is in flight and the queue is all
        // unsent: TCP_INFO must then give exactly what SIOCOUTQ gives.
        let agreed = eventually(|| {
            let (_, from_info) = tcp_info_and_unacked(&server).unwrap();
            let outq = unacked_bytes(&server).unwrap();
            from_info.is_some_and(|n| n == outq && n > 0)
        });
        assert!(
            agreed,
            "TCP_INFO's answer never matched SIOCOUTQ ({} queued)",
            unacked_bytes(&server).unwrap()
        );
        drop(client);
    }
}
