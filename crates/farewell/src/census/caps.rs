//! Whether this process may change the socket table.

/// `CAP_NET_ADMIN` (`include/uapi/linux/capability.h`).
const CAP_NET_ADMIN: u32 = 12;

/// True when the calling thread's effective capability set (the `CapEff:`
/// line of /proc/thread-self/status) has `CAP_NET_ADMIN`.
///
/// Capabilities belong to threads, not processes: /proc/self/status shows the
/// main thread's, which may differ. /proc/self is the fallback for kernels
/// before 3.17, which lack thread-self.
pub(super) fn has_net_admin() -> bool {
    thread_has_cap(CAP_NET_ADMIN)
}

/// True when the calling thread's effective set has capability number `cap`
/// (see `capabilities(7)`), read as in [`has_net_admin`].
pub(super) fn thread_has_cap(cap: u32) -> bool {
    std::fs::read_to_string("/proc/thread-self/status")
        .or_else(|_| std::fs::read_to_string("/proc/self/status"))
        .ok()
        .and_then(|status| cap_eff(&status))
        .is_some_and(|caps| caps & (1 << cap) != 0)
}

fn cap_eff(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cap_eff() {
        let root = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\nCapBnd:\t0\n";
        assert_eq!(cap_eff(root), Some(0x1ff_ffff_ffff));
        assert_ne!(cap_eff(root).unwrap() & (1 << CAP_NET_ADMIN), 0);
        let user = "CapEff:\t0000000000000000\n";
        assert_eq!(cap_eff(user), Some(0));
        assert_eq!(cap_eff("Name:\tx\n"), None);
    }
}
