//! Every policy against every unprivileged peer behaviour, on real loopback
//! sockets. Each cell checks three witnesses against each other:
//!
//! 1. the kernel's socket table (sock_diag census): who holds TIME-WAIT;
//! 2. what the peer application actually received;
//! 3. the `Outcome` the library reported.
//!
//! The expected column values are the claims of the policy table in
//! `farewell::policy`, resting on the kernel facts in `farewell::facts`.

use crate::common;

use common::{run_cell, test_policy, Behaviour, Cell, TEARDOWN_BOUND, V4, V6};
use farewell::{Delivery, Ending, TimeWait};

/// What a cell must show.
struct Expect {
    /// Acceptable paths (more than one only where the wire genuinely races).
    paths: &'static [Ending],
    /// Server TIME-WAIT per the kernel; `None` where a race decides it (then
    /// only consistency with the outcome is checked).
    server_time_wait: Option<bool>,
    /// Did the peer application receive the goodbye? `None`: not asserted.
    peer_got_goodbye: Option<bool>,
}

const fn expect(paths: &'static [Ending], server_tw: Option<bool>, got: Option<bool>) -> Expect {
    Expect {
        paths,
        server_time_wait: server_tw,
        peer_got_goodbye: got,
    }
}

/// The claims every cell must satisfy, whatever the policy: the outcome agrees with the kernel.
fn check_consistency(cell: &Cell, label: &str) {
    let o = &cell.outcome;
    match o.time_wait {
        TimeWait::Us => assert!(
            cell.server_time_wait,
            "{label}: outcome says TIME-WAIT is ours, kernel has none: {o}"
        ),
        TimeWait::Peer => {
            assert!(
                !cell.server_time_wait,
                "{label}: outcome says the peer holds TIME-WAIT, kernel has it here: {o}"
            );
            assert!(
                cell.client_time_wait,
                "{label}: outcome says the peer holds TIME-WAIT, kernel has none there: {o}"
            );
        }
        TimeWait::Nobody => {
            assert!(
                !cell.server_time_wait,
                "{label}: outcome says nobody holds TIME-WAIT, kernel has it here: {o}"
            );
            assert!(
                !cell.client_time_wait,
                "{label}: outcome says nobody holds TIME-WAIT, kernel has it at the peer: {o}"
            );
        }
        // Depends on whether the peer closes before tcp_fin_timeout: no claim.
        TimeWait::UsIfPeerCloses => {}
        other => panic!("{label}: a TIME-WAIT holder this test does not know: {other}"),
    }
    assert!(
        !cell.server_leftover,
        "{label}: the kernel still holds the server's socket after the teardown: {o}"
    );
    if o.goodbye == Delivery::Confirmed {
        assert!(
            cell.peer_got_goodbye,
            "{label}: outcome says the goodbye was ACKed, the peer never read it: {o}"
        );
    }
    if cell.peer_got_goodbye {
        assert_eq!(o.goodbye_written, common::GOODBYE.len(), "{label}: {o}");
    }
    assert!(o.elapsed < TEARDOWN_BOUND, "{label}: {o}");
}

async fn check(policy: &str, behaviour: Behaviour, ip: std::net::IpAddr, want: Expect) {
    let cell = run_cell(test_policy(policy), behaviour, ip).await;
    let label = format!("{policy} × {behaviour:?} on {ip}");
    eprintln!(
        "{label}: {} | kernel: server TIME-WAIT {}, client TIME-WAIT {} | peer got goodbye: {}",
        cell.outcome, cell.server_time_wait, cell.client_time_wait, cell.peer_got_goodbye
    );
    assert!(
        want.paths.contains(&cell.outcome.ending),
        "{label}: path {} not in {:?}",
        cell.outcome.ending,
        want.paths
    );
    if let Some(tw) = want.server_time_wait {
        assert_eq!(
            cell.server_time_wait, tw,
            "{label}: server TIME-WAIT per the kernel: {}",
            cell.outcome
        );
    }
    if let Some(got) = want.peer_got_goodbye {
        assert_eq!(
            cell.peer_got_goodbye, got,
            "{label}: peer received the goodbye: {}",
            cell.outcome
        );
    }
    check_consistency(&cell, &label);
}

macro_rules! matrix {
    ($( $name:ident: $policy:literal, $behaviour:ident, $ip:ident => $paths:expr, tw $tw:expr, got $got:expr; )*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            check($policy, Behaviour::$behaviour, $ip, expect($paths, $tw, $got)).await;
        }
    )*};
}

use Ending::*;

matrix! {
    // ---- peer-first: never TIME-WAIT here; the goodbye arrives wherever the peer's kernel reads ----
    peer_first_cooperative_peer_leaves_no_server_time_wait: "peer-first", Cooperative, V4 => &[PeerClosed], tw Some(false), got Some(true);
    peer_first_ignoring_peer_gets_goodbye_then_reset: "peer-first", Ignores, V4 => &[ResetAfterGrace], tw Some(false), got Some(true);
    peer_first_never_reading_peer_is_reset_when_delivery_stalls: "peer-first", NeverReads, V4 => &[ResetDeliveryStalled], tw Some(false), got Some(false);
    peer_first_flooding_peer_is_reset_at_drain_limit: "peer-first", Floods, V4 => &[ResetOnDrainLimit], tw Some(false), got None;
    peer_first_peer_that_reset_first_is_just_closed: "peer-first", ResetsFirst, V4 => &[PeerReset], tw Some(false), got Some(false);
    peer_first_half_closing_peer_gets_goodbye_and_keeps_time_wait: "peer-first", HalfClosesFirst, V4 => &[PeerClosed], tw Some(false), got Some(true);

    peer_first_cooperative_peer_ipv6: "peer-first", Cooperative, V6 => &[PeerClosed], tw Some(false), got Some(true);
    peer_first_ignoring_peer_ipv6: "peer-first", Ignores, V6 => &[ResetAfterGrace], tw Some(false), got Some(true);
    peer_first_never_reading_peer_ipv6: "peer-first", NeverReads, V6 => &[ResetDeliveryStalled], tw Some(false), got Some(false);
    peer_first_flooding_peer_ipv6: "peer-first", Floods, V6 => &[ResetOnDrainLimit], tw Some(false), got None;
    peer_first_half_closing_peer_ipv6: "peer-first", HalfClosesFirst, V6 => &[PeerClosed], tw Some(false), got Some(true);

    // ---- plain: the server sends the first FIN and keeps TIME-WAIT when the peer closes ----
    plain_cooperative_peer_leaves_server_time_wait: "plain", Cooperative, V4 => &[PlainClose], tw Some(true), got Some(true);
    plain_ignoring_peer_leaves_server_time_wait_when_it_closes: "plain", Ignores, V4 => &[PlainClose], tw Some(true), got Some(true);
    plain_never_reading_peer_loses_goodbye: "plain", NeverReads, V4 => &[PlainClose], tw Some(false), got Some(false);
    plain_flooding_peer_gets_reset_from_unread_input: "plain", Floods, V4 => &[PlainClose], tw Some(false), got None;
    plain_peer_that_reset_first: "plain", ResetsFirst, V4 => &[PeerReset], tw Some(false), got Some(false);
    plain_half_closing_peer_keeps_time_wait: "plain", HalfClosesFirst, V4 => &[PlainClose], tw Some(false), got Some(true);
    plain_cooperative_peer_ipv6: "plain", Cooperative, V6 => &[PlainClose], tw Some(true), got Some(true);

    // ---- lingering: FIN first, read until EOF: TIME-WAIT here for every peer that closes ----
    lingering_cooperative_peer_leaves_server_time_wait: "lingering", Cooperative, V4 => &[LingeringClose], tw Some(true), got Some(true);
    lingering_ignoring_peer_times_out_and_leaves_time_wait: "lingering", Ignores, V4 => &[LingeringTimeout], tw Some(true), got Some(true);
    lingering_never_reading_peer_times_out: "lingering", NeverReads, V4 => &[LingeringTimeout], tw Some(false), got Some(false);
    lingering_flooding_peer_times_out: "lingering", Floods, V4 => &[LingeringTimeout], tw Some(false), got None;
    lingering_peer_that_reset_first: "lingering", ResetsFirst, V4 => &[PeerReset], tw Some(false), got Some(false);
    lingering_half_closing_peer_keeps_time_wait: "lingering", HalfClosesFirst, V4 => &[LingeringClose], tw Some(false), got Some(true);

    // ---- lingering + reset on timeout (nginx reset_timedout_connection) ----
    lingering_reset_cooperative_peer_leaves_server_time_wait: "lingering-reset", Cooperative, V4 => &[LingeringClose], tw Some(true), got Some(true);
    lingering_reset_ignoring_peer_is_reset: "lingering-reset", Ignores, V4 => &[ResetAfterLinger], tw Some(false), got Some(true);
    lingering_reset_never_reading_peer_is_reset: "lingering-reset", NeverReads, V4 => &[ResetAfterLinger], tw Some(false), got Some(false);
    lingering_reset_flooding_peer_is_reset: "lingering-reset", Floods, V4 => &[ResetAfterLinger], tw Some(false), got None;
    lingering_reset_peer_that_reset_first: "lingering-reset", ResetsFirst, V4 => &[PeerReset], tw Some(false), got Some(false);
    lingering_reset_half_closing_peer_keeps_time_wait: "lingering-reset", HalfClosesFirst, V4 => &[LingeringClose], tw Some(false), got Some(true);

    // ---- fin-then-reset: FIN, wait for its ACK, RST; the peer's FIN can win the race ----
    fin_then_reset_cooperative_peer: "fin-then-reset", Cooperative, V4 => &[ResetAfterFinAck, PeerClosed], tw None, got Some(true);
    fin_then_reset_ignoring_peer_is_reset_after_fin_ack: "fin-then-reset", Ignores, V4 => &[ResetAfterFinAck], tw Some(false), got Some(true);
    fin_then_reset_never_reading_peer_is_reset_unacked: "fin-then-reset", NeverReads, V4 => &[ResetDeliveryStalled], tw Some(false), got Some(false);
    fin_then_reset_flooding_peer_is_reset: "fin-then-reset", Floods, V4 => &[ResetAfterFinAck], tw Some(false), got None;
    fin_then_reset_peer_that_reset_first: "fin-then-reset", ResetsFirst, V4 => &[PeerReset], tw Some(false), got Some(false);
    fin_then_reset_half_closing_peer_keeps_time_wait: "fin-then-reset", HalfClosesFirst, V4 => &[PeerClosed], tw Some(false), got Some(true);

    // ---- abort: RST now; no TIME-WAIT anywhere, the goodbye is a gamble ----
    abort_cooperative_peer: "abort", Cooperative, V4 => &[Aborted], tw Some(false), got None;
    abort_ignoring_peer: "abort", Ignores, V4 => &[Aborted], tw Some(false), got None;
    abort_never_reading_peer: "abort", NeverReads, V4 => &[Aborted], tw Some(false), got Some(false);
    abort_flooding_peer: "abort", Floods, V4 => &[Aborted], tw Some(false), got None;
    abort_peer_that_reset_first: "abort", ResetsFirst, V4 => &[PeerReset], tw Some(false), got Some(false);
    abort_half_closing_peer: "abort", HalfClosesFirst, V4 => &[Aborted], tw Some(false), got None;
}
