//! Ports for measuring: a listener whose port no other socket on the machine uses.

use std::io;
use std::net::{IpAddr, TcpListener};
use std::time::{SystemTime, UNIX_EPOCH};

use farewell::census::{self, Filter};

use super::kernel;

/// The lowest port [`bind_quiet_port`] tries.
const FLOOR: u16 = 10_000;

/// Binds a listener on `ip` at a port below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`) on which the kernel's socket table holds no
/// socket at all, not even TIME-WAIT.
///
/// A server bound to port 0 gets an ephemeral port, and client sockets of
/// *other* connections (a load generator's, say) may have used that same port
/// number as their local port and sit in TIME-WAIT there: a census filtered on
/// the server's port would count them as the server's. Below the ephemeral
/// range no client gets a port by chance, so [`Filter::local_port`] on this
/// port sees this server's sockets only.
///
/// # Errors
///
/// When every candidate port is taken (or the census cannot be read on all of them).
pub fn bind_quiet_port(ip: IpAddr) -> io::Result<TcpListener> {
    let low = kernel::ephemeral_port_range()
        .map_or(32_768, |r| *r.start())
        .max(FLOOR + 1);
    let span = u32::from(low - FLOOR);
    // Start somewhere different in each process and call, so parallel callers spread out.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let start = nanos ^ std::process::id().wrapping_mul(2_654_435_761);
    for i in 0..span {
        let port = FLOOR + ((start.wrapping_add(i.wrapping_mul(7_919))) % span) as u16;
        let empty = census::count_by_state(&Filter::local_port(port)).is_ok_and(|c| c.total() == 0);
        if !empty {
            continue;
        }
        // std's bind sets no SO_REUSEADDR: it fails if any socket holds the port.
        if let Ok(listener) = TcpListener::bind((ip, port)) {
            return Ok(listener);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free port with no sockets between {FLOOR} and {low}"),
    ))
}
