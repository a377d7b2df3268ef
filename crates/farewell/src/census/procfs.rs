//! The /proc/net/tcp{,6} source: slower and less complete than netlink, but
//! readable without any privilege.
//!
//! Format (`net/ipv4/tcp_ipv4.c`, `get_tcp4_sock`), one socket a line after a
//! header line:
//!
//! ```text
//!   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
//!    0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 ...
//! ```
//!
//! Addresses are the raw network-order words printed as host-order hex
//! (`%08X` of a `__be32`), so on a little-endian machine 127.0.0.1 reads
//! `0100007F`; ports are host-order hex. IPv6 addresses are four such words.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use crate::TcpState;

use super::{CensusError, Filter, SocketEntry};

const TCP4: &str = "/proc/net/tcp";
const TCP6: &str = "/proc/net/tcp6";

/// Calls `each` for every socket in /proc/net/tcp{,6} that passes `filter`,
/// once.
///
/// The kernel prints these files a page at a time, walking its hash tables
/// afresh for each `read()`; when sockets come and go between two reads, an
/// entry can be printed twice (or missed). Duplicates are dropped here: a
/// 4-tuple appears once in the table, except listeners sharing a port
/// (`SO_REUSEPORT`), which differ by inode.
pub(super) fn for_each(
    filter: &Filter,
    each: &mut dyn FnMut(SocketEntry),
) -> Result<(), CensusError> {
    if filter.states.is_empty() {
        return Ok(());
    }
    let mut text = String::new();
    let mut seen = HashSet::new();
    for (path, v6) in [(TCP4, false), (TCP6, true)] {
        if !filter.family.covers(v6) {
            continue;
        }
        text.clear();
        match read_into(Path::new(path), &mut text) {
            Ok(()) => {}
            // No tcp6 file: IPv6 is disabled, so there are no IPv6 sockets.
            Err(e) if v6 && e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(CensusError::Procfs {
                    path: path.into(),
                    source,
                })
            }
        }
        // Line 1 is the column header.
        for (n, line) in text.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let entry = parse_line(line, v6).map_err(|reason| CensusError::ProcfsParse {
                path: path.into(),
                line: n + 1,
                reason,
            })?;
            if filter.matches(&entry) && seen.insert((entry.local, entry.remote, entry.inode)) {
                each(entry);
            }
        }
    }
    Ok(())
}

fn read_into(path: &Path, text: &mut String) -> io::Result<()> {
    use std::io::Read;
    std::fs::File::open(path)?.read_to_string(text)?;
    Ok(())
}

/// Parses one data line of /proc/net/tcp (`v6 == false`) or /proc/net/tcp6.
pub(super) fn parse_line(line: &str, v6: bool) -> Result<SocketEntry, String> {
    let mut fields = line.split_whitespace();
    let mut next = |what: &str| {
        fields
            .next()
            .ok_or_else(|| format!("the line ends before the {what} column"))
    };
    let _slot = next("sl")?;
    let local = parse_endpoint(next("local_address")?, v6)?;
    let remote = parse_endpoint(next("rem_address")?, v6)?;
    let st = next("st")?;
    let state = u8::from_str_radix(st, 16)
        .ok()
        .and_then(TcpState::from_kernel)
        .ok_or_else(|| format!("unknown state {st:?}"))?;
    let (tx, rx) = next("tx_queue:rx_queue")?
        .split_once(':')
        .ok_or("tx_queue:rx_queue has no ':'")?;
    let send_queue = hex_u32(tx, "tx_queue")?;
    let recv_queue = hex_u32(rx, "rx_queue")?;
    let _timer = next("tr:tm->when")?;
    let _retransmits = next("retrnsmt")?;
    let uid = next("uid")?;
    let uid = uid
        .parse::<u32>()
        .map_err(|_| format!("uid {uid:?} is not a number"))?;
    let _timeout = next("timeout")?;
    let inode = next("inode")?;
    let inode = inode
        .parse::<u64>()
        .map_err(|_| format!("inode {inode:?} is not a number"))?;
    Ok(SocketEntry {
        local,
        remote,
        state,
        recv_queue,
        send_queue,
        inode,
        uid,
        cookie: 0,
    })
}

fn hex_u32(s: &str, what: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 16).map_err(|_| format!("{what} {s:?} is not hex"))
}

/// Parses `0100007F:1F90` (or the 32-digit IPv6 form).
fn parse_endpoint(s: &str, v6: bool) -> Result<SocketAddr, String> {
    let (addr, port) = s
        .split_once(':')
        .ok_or_else(|| format!("address {s:?} has no ':'"))?;
    let port = u16::from_str_radix(port, 16).map_err(|_| format!("port in {s:?} is not hex"))?;
    let words = if v6 { 4 } else { 1 };
    if addr.len() != 8 * words || !addr.is_ascii() {
        return Err(format!(
            "address {s:?} should have {} hex digits",
            8 * words
        ));
    }
    let mut octets = [0u8; 16];
    for i in 0..words {
        let word = hex_u32(&addr[8 * i..8 * (i + 1)], "address")?;
        // The kernel printed the network-order word as a native integer;
        // its native bytes are the address bytes in order.
        octets[4 * i..4 * (i + 1)].copy_from_slice(&word.to_ne_bytes());
    }
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::from(octets))
    } else {
        IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]))
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real lines from a little-endian machine; the tests below hold on
    // little-endian hosts only, which is what the kernel text assumes.
    const LISTEN4: &str = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000  1000        0 31337 1 0000000000000000 100 0 0 10 0";
    const ESTAB4: &str = "   1: 0100007F:1F90 0100007F:C350 01 0000000A:00000014 00:00000000 00000000     0        0 42424 1 0000000000000000 20 4 30 10 -1";
    const TIMEWAIT4: &str = "   2: 0100007F:1F90 0100007F:C351 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000";
    const ESTAB6: &str = "   0: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:C350 01 00000000:00000000 00:00000000 00000000     0        0 55555 1 0000000000000000 20 4 30 10 -1";
    const MAPPED6: &str = "   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:C352 01 00000000:00000000 00:00000000 00000000     0        0 55556 1 0000000000000000 20 4 30 10 -1";

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_an_ipv4_listener() {
        let e = parse_line(LISTEN4, false).unwrap();
        assert_eq!(e.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(e.remote, "0.0.0.0:0".parse().unwrap());
        assert_eq!(e.state, TcpState::Listen);
        assert_eq!(e.recv_queue, 2);
        assert_eq!(e.send_queue, 0);
        assert_eq!(e.uid, 1000);
        assert_eq!(e.inode, 31337);
        assert_eq!(e.cookie, 0);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_queues_of_an_established_socket() {
        let e = parse_line(ESTAB4, false).unwrap();
        assert_eq!(e.remote, "127.0.0.1:50000".parse().unwrap());
        assert_eq!(e.state, TcpState::Established);
        assert_eq!(e.send_queue, 10);
        assert_eq!(e.recv_queue, 20);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_a_time_wait_line_with_no_owner() {
        let e = parse_line(TIMEWAIT4, false).unwrap();
        assert_eq!(e.state, TcpState::TimeWait);
        assert_eq!(e.inode, 0);
        assert_eq!(e.uid, 0);
        assert_eq!(e.remote.port(), 50001);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_ipv6_and_v4_mapped_addresses() {
        let e = parse_line(ESTAB6, true).unwrap();
        assert_eq!(e.local, "[::1]:8080".parse().unwrap());
        assert_eq!(e.remote, "[::1]:50000".parse().unwrap());
        assert_eq!(e.inode, 55555);
        let m = parse_line(MAPPED6, true).unwrap();
        assert_eq!(m.local, "[::ffff:127.0.0.1]:8080".parse().unwrap());
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(parse_line("   0: 0100007F:1F90", false).is_err());
        assert!(parse_line(&LISTEN4.replace(" 0A ", " 0D "), false)
            .unwrap_err()
            .contains("unknown state"));
        assert!(parse_line(LISTEN4, true)
            .unwrap_err()
            .contains("32 hex digits"));
        assert!(parse_line(&LISTEN4.replace("0100007F:1F90", "0100007G:1F90"), false).is_err());
    }
}
