//! The OS calls of the network paths: raw `AF_PACKET` sockets for the
//! forwarder and the `SIOCETHTOOL` switch of a link's TX checksum offload.
//!
//! Used by the lab's network paths ([`crate::lab::path`]). Every call acts in
//! the network namespace of the *calling thread*: run it inside
//! [`Netns::run`](crate::lab::netns::Netns::run).
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// `PACKET_STATISTICS` (`linux/if_packet.h`): frames received and dropped
/// for want of buffer space since the last read.
const PACKET_STATISTICS: libc::c_int = 6;
/// `PACKET_IGNORE_OUTGOING` (`linux/if_packet.h`, Linux 4.20): do not hand
/// the socket the frames sent on its interface, its own among them.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// An offload the legacy ethtool ioctl switches on one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offload {
    /// TX checksum offload (`ethtool -K DEV tx`): on, a frame may leave
    /// with a partial TCP checksum for the "hardware" to complete.
    TxChecksum,
    /// TCP segmentation offload (`tso`): on, TCP hands the device segments
    /// up to 64 KiB; it depends on checksum offload.
    Tso,
    /// Generic segmentation offload (`gso`): on, TCP builds segments larger
    /// than the MTU that the kernel cuts up only after the queueing discipline.
    Gso,
}

impl Offload {
    /// The ethtool (get, set) commands of `linux/ethtool.h`.
    fn commands(self) -> (u32, u32) {
        match self {
            Offload::TxChecksum => (0x16, 0x17), // ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM
            Offload::Tso => (0x1e, 0x1f),        // ETHTOOL_GTSO, ETHTOOL_STSO
            Offload::Gso => (0x23, 0x24),        // ETHTOOL_GGSO, ETHTOOL_SGSO
        }
    }
}

/// `struct ethtool_value` of `linux/ethtool.h`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct tpacket_stats` of `linux/if_packet.h`.
#[repr(C)]
#[derive(Default)]
struct TpacketStats {
    packets: libc::c_uint,
    drops: libc::c_uint,
}

/// Turns a `-1` return into `io::Error::last_os_error()`.
///
/// A copy of the core's (`farewell`'s `sys/linux.rs`), on purpose: exported
/// from the core, even `#[doc(hidden)]`, it would let any crate call any
/// libc function without writing `unsafe`, and the core cannot depend on
/// this crate.
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

/// An `ifreq` naming `name`, the rest zeroed.
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not an interface name: {name:?}"),
        ));
    }
    // SAFETY: `ifreq` is plain old data (a name array and a union of
    // integers, addresses and a pointer): all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// A datagram socket of the calling thread's namespace, for interface ioctls.
fn control_socket() -> io::Result<OwnedFd> {
    let fd = syscall!(socket(
        libc::AF_INET,
        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
        0
    ))?;
    // SAFETY: `socket` just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs the ethtool command `cmd` with `data` on interface `name`; returns
/// the value the kernel wrote back.
fn ethtool(name: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let socket = control_socket()?;
    let mut value = EthtoolValue { cmd, data };
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: `socket` is live; `req` names the interface and points
    // `ifr_data` at `value`, a `struct ethtool_value`, which is what the
    // GTXCSUM and STXCSUM commands read and write; both outlive the call.
    syscall!(ioctl(
        socket.as_raw_fd(),
        libc::SIOCETHTOOL,
        &mut req as *mut libc::ifreq
    ))
    .map_err(|e| io::Error::new(e.kind(), format!("SIOCETHTOOL on {name}: {e}")))?;
    Ok(value.data)
}

/// Whether `offload` is on for interface `name` (as `ethtool -k` shows it).
pub fn offload(name: &str, offload: Offload) -> io::Result<bool> {
    ethtool(name, offload.commands().0, 0).map(|on| on != 0)
}

/// Switches `offload` of interface `name` (`ethtool -K`). With TX checksum
/// offload off the kernel completes every checksum before a frame leaves
/// (the forwarder passes frames on as they are, so a partial checksum would
/// reach the receiver and be dropped there); with TSO and GSO off too, no
/// frame and no packet in a queueing discipline is larger than the MTU.
pub fn set_offload(name: &str, offload: Offload, on: bool) -> io::Result<()> {
    ethtool(name, offload.commands().1, u32::from(on)).map(drop)
}

/// A raw `AF_PACKET` socket bound to one interface: it reads every frame
/// that arrives there (whoever it is addressed to) and sends whole
/// Ethernet frames out of it. Frames sent on the interface, by this socket
/// or anyone else, are not read back (`PACKET_IGNORE_OUTGOING`).
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens the socket on interface `name` of the calling thread's namespace.
    pub fn open(name: &str) -> io::Result<PacketSocket> {
        let all = (libc::ETH_P_ALL as u16).to_be();
        let fd = syscall!(socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::c_int::from(all)
        ))?;
        // SAFETY: `socket` just returned this descriptor and nothing else owns it.
        let socket = PacketSocket {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        };
        let index = socket.ifindex(name)?;
        let on: libc::c_int = 1;
        socket.setsockopt(libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &on)?;
        // SAFETY: `sockaddr_ll` is plain old data: all zeroes is valid.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_protocol = all;
        addr.sll_ifindex = index;
        // SAFETY: the descriptor is live; `addr` is a `sockaddr_ll` of the
        // length passed, which bind only reads.
        syscall!(bind(
            socket.fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t
        ))
        .map_err(|e| io::Error::new(e.kind(), format!("binding a packet socket to {name}: {e}")))?;
        Ok(socket)
    }

    /// The index of interface `name` in this socket's namespace (`SIOCGIFINDEX`).
    fn ifindex(&self, name: &str) -> io::Result<libc::c_int> {
        let mut req = ifreq(name)?;
        // SAFETY: the descriptor is live; SIOCGIFINDEX reads the name of
        // `req` and writes `ifr_ifindex`, within the struct.
        syscall!(ioctl(
            self.fd.as_raw_fd(),
            libc::SIOCGIFINDEX,
            &mut req as *mut libc::ifreq
        ))
        .map_err(|e| io::Error::new(e.kind(), format!("no interface {name}: {e}")))?;
        // SAFETY: SIOCGIFINDEX succeeded, so it wrote this member.
        Ok(unsafe { req.ifr_ifru.ifru_ifindex })
    }

    /// `setsockopt(level, name, value)` for a plain value.
    fn setsockopt<T>(&self, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
        // SAFETY: the descriptor is live; `value` points to a `T` of the
        // length passed, which the kernel only reads; each caller passes the
        // type the option takes.
        syscall!(setsockopt(
            self.fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast::<c_void>(),
            size_of::<T>() as libc::socklen_t
        ))?;
        Ok(())
    }

    /// Asks for a receive buffer of `bytes`: with `SO_RCVBUFFORCE`
    /// (`CAP_NET_ADMIN`), which may pass `net.core.rmem_max`, else with
    /// `SO_RCVBUF`, which the kernel caps there. A frame that finds the
    /// buffer full is dropped by the kernel (see [`take_drops`](Self::take_drops)).
    pub fn set_receive_buffer(&self, bytes: usize) -> io::Result<()> {
        let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        self.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &bytes)
            .or_else(|_| self.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUF, &bytes))
    }

    /// Bounds how long [`recv`](Self::recv) waits (`SO_RCVTIMEO`); a zero
    /// duration would mean forever, so it is raised to 1 µs.
    pub fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        let timeout = timeout.max(Duration::from_micros(1));
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
        };
        self.setsockopt(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
    }

    /// Reads one frame into `buf`; returns the frame's whole length, which
    /// is more than `buf.len()` when it was cut (`MSG_TRUNC`). Waits at most
    /// the read timeout (then `WouldBlock`).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the descriptor is live; the kernel writes at most
        // `buf.len()` bytes into `buf`.
        let n = syscall!(recv(
            self.fd.as_raw_fd(),
            buf.as_mut_ptr().cast::<c_void>(),
            buf.len(),
            libc::MSG_TRUNC
        ))?;
        Ok(n as usize)
    }

    /// Sends `frame`, a whole Ethernet frame, out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: the descriptor is live; the kernel reads `frame.len()`
        // bytes from `frame`.
        let n = syscall!(send(
            self.fd.as_raw_fd(),
            frame.as_ptr().cast::<c_void>(),
            frame.len(),
            0
        ))?;
        Ok(n as usize)
    }

    /// Frames the kernel dropped because this socket's receive buffer was
    /// full, since the last call (`PACKET_STATISTICS`, which resets them).
    pub fn take_drops(&self) -> io::Result<u64> {
        let mut stats = TpacketStats::default();
        let mut len = size_of::<TpacketStats>() as libc::socklen_t;
        // SAFETY: the descriptor is live; the kernel writes at most `len`
        // bytes of a `struct tpacket_stats` into `stats`, which has that layout.
        syscall!(getsockopt(
            self.fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_STATISTICS,
            (&mut stats as *mut TpacketStats).cast::<c_void>(),
            &mut len
        ))?;
        Ok(u64::from(stats.drops))
    }
}

#[cfg(test)]
mod tests {
    use super::ifreq;

    #[test]
    fn ifreq_refuses_names_the_kernel_cannot_hold() {
        assert!(ifreq("fw-a").is_ok());
        assert!(ifreq("").is_err());
        assert!(ifreq("a-name-of-16-chr").is_err());
        assert!(ifreq("nul\0").is_err());
    }
}
