//! The one error type of the census.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// What went wrong while reading or changing the kernel's TCP socket table.
///
/// Messages are lowercase and say what to do about the problem where
/// something can be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CensusError {
    /// The sock_diag netlink socket could not be opened (no permission in this
    /// sandbox, or a kernel without netlink sock_diag).
    #[error(
        "cannot open a sock_diag netlink socket ({0}); \
         use `dump_procfs` or let `dump` fall back to /proc/net/tcp"
    )]
    NetlinkUnavailable(#[source] io::Error),

    /// Sending to or receiving from the netlink socket failed.
    #[error("netlink {op} failed: {source}")]
    NetlinkIo {
        /// What was being done (`"send"`, `"recv"`).
        op: &'static str,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },

    /// The kernel answered a request with an error code this module has no
    /// better name for.
    #[error("the kernel refused the sock_diag {op} request: {source}")]
    Kernel {
        /// The request (`"dump"`, `"lookup"`, `"destroy"`).
        op: &'static str,
        /// The kernel's errno.
        #[source]
        source: io::Error,
    },

    /// A reply from the kernel could not be decoded.
    #[error("cannot decode the kernel's sock_diag reply: {0}; please report this with `uname -r`")]
    Decode(String),

    /// A file under /proc/net could not be read.
    #[error("cannot read {path}: {source}; is /proc mounted?")]
    Procfs {
        /// The file.
        path: PathBuf,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },

    /// A line of /proc/net/tcp or /proc/net/tcp6 had an unexpected shape.
    #[error("cannot parse line {line} of {path}: {reason}; please report this with `uname -r`")]
    ProcfsParse {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What was wrong with it.
        reason: String,
    },

    /// `SOCK_DESTROY` was refused with `EPERM`.
    #[error(
        "destroying a socket needs CAP_NET_ADMIN; run as root or grant it \
         (`setcap cap_net_admin+ep <binary>`)"
    )]
    NeedsNetAdmin,

    /// `SOCK_DESTROY` was refused with `EOPNOTSUPP`.
    #[error(
        "kernel built without CONFIG_INET_DIAG_DESTROY; sockets cannot be \
         destroyed on this kernel (use a kernel with that option, or let TIME-WAIT expire)"
    )]
    DestroyUnsupported,

    /// The kernel has no socket with this 4-tuple (or it has one, but it is a
    /// newer connection than the entry named).
    #[error("no such socket: {local} -> {remote} (it closed, or its TIME-WAIT expired)")]
    NoSuchSocket {
        /// Local address of the socket asked for.
        local: SocketAddr,
        /// Remote address of the socket asked for.
        remote: SocketAddr,
    },

    /// The local and remote address of a 4-tuple are of different families.
    #[error(
        "local {local} and remote {remote} are of different address families; \
         write IPv4 peers of an IPv6 socket as v4-mapped addresses ([::ffff:a.b.c.d])"
    )]
    MixedFamilies {
        /// The local address given.
        local: SocketAddr,
        /// The remote address given.
        remote: SocketAddr,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_say_what_to_do() {
        let a: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let cases = [
            (CensusError::NeedsNetAdmin, "needs CAP_NET_ADMIN"),
            (
                CensusError::DestroyUnsupported,
                "kernel built without CONFIG_INET_DIAG_DESTROY",
            ),
            (
                CensusError::NoSuchSocket {
                    local: a,
                    remote: b,
                },
                "no such socket: 127.0.0.1:80 -> 127.0.0.1:5000",
            ),
            (
                CensusError::NetlinkUnavailable(io::Error::from_raw_os_error(libc::EPERM)),
                "dump_procfs",
            ),
        ];
        for (error, needle) in cases {
            let message = error.to_string();
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            assert!(
                message.starts_with(|c: char| !c.is_uppercase()),
                "{message:?}"
            );
        }
    }
}
