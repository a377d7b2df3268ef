//! What this kernel says about TCP: the ephemeral port range, and the
//! settings that shape TIME-WAIT, read from `/proc` in one place.

use std::ops::RangeInclusive;

use serde::Serialize;

/// Where the kernel keeps its ephemeral port range (`net.ipv4.ip_local_port_range`).
const PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// The kernel's ephemeral port range: the ports `connect()` and `bind(port 0)`
/// pick from (`net.ipv4.ip_local_port_range`, `32768..=60999` by default), or
/// `None` when it cannot be read or parsed.
///
/// Below it no socket gets a port by chance, which is why
/// [`bind_quiet_port`](super::port::bind_quiet_port) and the lab's churn
/// clients take their ports there.
///
/// # Examples
///
/// ```
/// use farewell_testkit::support::kernel;
///
/// if let Some(range) = kernel::ephemeral_port_range() {
///     assert!(range.start() <= range.end());
/// }
/// ```
pub fn ephemeral_port_range() -> Option<RangeInclusive<u16>> {
    parse_port_range(&std::fs::read_to_string(PORT_RANGE).ok()?)
}

/// `"32768\t60999\n"` (as `/proc` prints it) → `32768..=60999`.
fn parse_port_range(text: &str) -> Option<RangeInclusive<u16>> {
    let mut ports = text.split_whitespace().map(str::parse::<u16>);
    let (low, high) = (ports.next()?.ok()?, ports.next()?.ok()?);
    (low <= high).then_some(low..=high)
}

/// The kernel release and the TCP settings that shape TIME-WAIT, read from `/proc`.
/// Each value is the file's trimmed content, or `None` when it could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KernelInfo {
    /// `/proc/sys/kernel/osrelease`.
    pub release: Option<String>,
    /// `/proc/sys/net/ipv4/tcp_fin_timeout` (seconds an orphaned FIN-WAIT-2 lives).
    pub tcp_fin_timeout: Option<String>,
    /// `/proc/sys/net/ipv4/tcp_tw_reuse`.
    pub tcp_tw_reuse: Option<String>,
    /// `/proc/sys/net/ipv4/tcp_max_tw_buckets`.
    pub tcp_max_tw_buckets: Option<String>,
    /// `/proc/sys/net/ipv4/ip_local_port_range` as `"LOW HIGH"` ([`ephemeral_port_range`]).
    pub ip_local_port_range: Option<String>,
    /// Whether this process has `CAP_NET_ADMIN` (needed by `silent`).
    pub net_admin: bool,
}

impl KernelInfo {
    /// Reads the values from `/proc` of this machine.
    pub fn read() -> KernelInfo {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        };
        KernelInfo {
            release: read("/proc/sys/kernel/osrelease"),
            tcp_fin_timeout: read("/proc/sys/net/ipv4/tcp_fin_timeout"),
            tcp_tw_reuse: read("/proc/sys/net/ipv4/tcp_tw_reuse"),
            tcp_max_tw_buckets: read("/proc/sys/net/ipv4/tcp_max_tw_buckets"),
            ip_local_port_range: ephemeral_port_range()
                .map(|r| format!("{} {}", r.start(), r.end())),
            net_admin: farewell::census::has_net_admin(),
        }
    }

    /// One line for a header, e.g. `kernel 6.8.0; tcp_fin_timeout 60; …`.
    pub fn header(&self) -> String {
        let v = |o: &Option<String>| o.clone().unwrap_or_else(|| "?".to_owned());
        format!(
            "kernel {}; tcp_fin_timeout {}; tcp_tw_reuse {}; tcp_max_tw_buckets {}; ip_local_port_range {}; CAP_NET_ADMIN {}",
            v(&self.release),
            v(&self.tcp_fin_timeout),
            v(&self.tcp_tw_reuse),
            v(&self.tcp_max_tw_buckets),
            v(&self.ip_local_port_range),
            if self.net_admin { "yes" } else { "no" },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_range_parses_as_proc_prints_it() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some(32768..=60999));
        assert_eq!(parse_port_range("1024 1024"), Some(1024..=1024));
    }

    #[test]
    fn port_range_rejects_what_is_not_a_range() {
        for text in ["", "32768", "60999 32768", "a b", "70000 80000"] {
            assert_eq!(parse_port_range(text), None, "{text:?}");
        }
    }

    #[test]
    fn this_kernel_has_a_port_range_and_the_report_prints_it() {
        let range =
            ephemeral_port_range().expect("Linux has /proc/sys/net/ipv4/ip_local_port_range");
        let info = KernelInfo::read();
        assert_eq!(
            info.ip_local_port_range,
            Some(format!("{} {}", range.start(), range.end()))
        );
    }
}
