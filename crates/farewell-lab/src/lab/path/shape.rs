//! What the kernel does to a path's frames: a rate limit (htb, `tc` of
//! iproute2) and random loss (nftables `numgen random`, the `nft` tool).
//!
//! Both act on the egress of one veth end, in the namespace that holds it,
//! and are deleted with that namespace. Every function here forks (`ip netns
//! exec`): see the fork hazard in [`netns`](super::super::netns).

use std::io;

use super::super::netns::Netns;

/// The nftables table of the random loss, one per namespace.
const LOSS_TABLE: &str = "farewell_loss";

/// Limits the egress of `dev` in `ns` to `rate` bit/s: an htb root with one
/// class, `ceil` = `rate` (nothing to borrow), a burst of two full frames,
/// and a pfifo of `queue` packets under it (a full queue drops, as a small
/// router buffer does).
///
/// htb counts whole frames (Ethernet and IP headers included), so TCP's
/// payload flows a little slower than `rate`, never faster.
pub(super) fn limit_rate(ns: &Netns, dev: &str, rate: u64, queue: u32) -> io::Result<()> {
    let rate = format!("{rate}bit");
    let queue = queue.to_string();
    #[rustfmt::skip]
    let commands: [&[&str]; 3] = [
        &["qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1"],
        &["class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
          "rate", &rate, "ceil", &rate, "burst", "3028", "cburst", "3028"],
        &["qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:", "pfifo", "limit", &queue],
    ];
    for args in commands {
        ns.exec("tc", args)?;
    }
    Ok(())
}

/// The nftables script that drops `per_10000` of every 10,000 IPv4 frames
/// leaving by each of `devs` (a netdev `egress` chain per device; the
/// `counter` is what [`dropped`] reads).
fn loss_script(devs: &[&str], per_10000: u32) -> String {
    let mut script = format!("add table netdev {LOSS_TABLE}\n");
    for dev in devs {
        let chain = format!("egress_{}", dev.replace('-', "_"));
        script.push_str(&format!(
            "add chain netdev {LOSS_TABLE} {chain} \
             {{ type filter hook egress device \"{dev}\" priority 0; policy accept; }}\n\
             add rule netdev {LOSS_TABLE} {chain} \
             meta protocol ip numgen random mod 10000 < {per_10000} counter drop\n"
        ));
    }
    script
}

/// Drops `per_10000` of every 10,000 IPv4 frames leaving `ns` by each of
/// `devs`, chosen at random by the kernel (`numgen random`). Only IPv4 is
/// dropped: a lost ARP exchange would stall a connection for a second
/// without telling TCP anything.
pub(super) fn drop_at_random(ns: &Netns, devs: &[&str], per_10000: u32) -> io::Result<()> {
    ns.exec("nft", &[&loss_script(devs, per_10000)]).map(drop)
}

/// How many frames [`drop_at_random`] has dropped in `ns` so far (the sum of
/// its counters, from `nft list table`).
pub(super) fn dropped(ns: &Netns) -> io::Result<u64> {
    let listing = ns.exec("nft", &["list", "table", "netdev", LOSS_TABLE])?;
    Ok(sum_counters(&listing))
}

/// The sum of every `counter packets N` in an `nft list` output.
fn sum_counters(listing: &str) -> u64 {
    let words: Vec<&str> = listing.split_whitespace().collect();
    words
        .windows(3)
        .filter(|w| w[0] == "counter" && w[1] == "packets")
        .filter_map(|w| w[2].parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::{loss_script, sum_counters};

    #[test]
    fn loss_script_has_one_counted_egress_chain_per_device() {
        let script = loss_script(&["fw-ma", "fw-mb"], 100);
        assert_eq!(script.matches("hook egress").count(), 2);
        assert!(script.contains("device \"fw-mb\""));
        assert!(script.contains("chain netdev farewell_loss egress_fw_ma"));
        assert!(script.contains("numgen random mod 10000 < 100 counter drop"));
    }

    #[test]
    fn sum_counters_adds_every_chain() {
        let listing = "table netdev farewell_loss {\n\
            chain egress_fw_ma {\n\
            meta protocol ip numgen random mod 10000 < 100 counter packets 7 bytes 9000 drop\n}\n\
            chain egress_fw_mb {\n\
            meta protocol ip numgen random mod 10000 < 100 counter packets 5 bytes 300 drop\n}\n}";
        assert_eq!(sum_counters(listing), 12);
        assert_eq!(sum_counters(""), 0);
    }
}
