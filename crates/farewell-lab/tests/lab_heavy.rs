//! The lab's heavy client next to a light one ([`run_heavy`]), over the slow
//! path (two namespaces, a rate-limited veth pair), judged by the census of
//! each namespace:
//!
//! * peer-first with `PeerTimeWait::Auto` and a closer threshold of 50: the
//!   heavy client (one address, 300 connections as fast as it can) keeps at
//!   most 50 TIME-WAIT entries, the light client (5 connections from another
//!   address) keeps one per connection, the server none, and no goodbye
//!   byte is lost;
//! * plain: the server keeps the TIME-WAIT entries.
//!
//! Every namespace the run made is gone afterwards. Needs `CAP_NET_ADMIN`,
//! `CAP_SYS_ADMIN` and the `ip` and `tc` tools; without them each test
//! prints why it is skipped, and fails under `FAREWELL_REQUIRE_TOOLS`. A
//! binary of its own: making a path forks `ip` and `tc` (see `lab::netns`,
//! "Fork hazard"), and its tests take turns for the same reason.

use std::time::Duration;

use farewell::PeerTimeWait;
use farewell_lab::lab::heavy::ClientReport;
use farewell_lab::lab::path::PathKind;
use farewell_lab::lab::{netns, run_heavy, HeavyConfig, HeavyPolicy, HeavyReport};
use farewell_lab::support::tools;

/// No test may run longer; past it the test fails.
const TEST_BOUND: Duration = Duration::from_secs(120);

/// The closer's heavy-client threshold for these runs: endings per minute.
const THRESHOLD: u32 = 50;

/// The heavy client's connections: six times the threshold.
const HEAVY: usize = 300;

/// The light client's connections.
const LIGHT: usize = 5;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// True when the slow path can be made here; otherwise prints why the test
/// is skipped, or fails under `FAREWELL_REQUIRE_TOOLS`.
fn may_run(test: &str) -> bool {
    if !tools::require(test, &["ip", "tc"]) {
        return false;
    }
    let Some(why) = PathKind::Slow.unavailable() else {
        return true;
    };
    tools::skip(
        test,
        &format!(
            "{why} (run the tests as root, or in a container with --cap-add NET_ADMIN \
             --cap-add SYS_ADMIN and iproute2 installed)"
        ),
    )
}

/// One policy's heavy-client run over the slow path: `HEAVY` connections
/// from the heavy client (whatever time they take, within 30 s), `LIGHT`
/// from the light one, threshold `THRESHOLD`.
async fn run(policy: HeavyPolicy) -> HeavyReport {
    let _turn = TURN.lock().await;
    let config = HeavyConfig {
        policies: vec![policy],
        path: PathKind::Slow.into(),
        connections: HEAVY,
        duration: Duration::from_secs(30),
        light: LIGHT,
        threshold: THRESHOLD,
        ..HeavyConfig::default()
    };
    let mut reports =
        tokio::time::timeout(TEST_BOUND, run_heavy(&config, std::sync::Arc::new(|| {})))
            .await
            .expect("the run ends within its bound")
            .expect("the heavy-client run runs");
    let mine = netns::namespaces_of(std::process::id());
    assert!(mine.is_empty(), "namespaces left behind: {mine:?}");
    assert_eq!(reports.len(), 1);
    let report = reports.remove(0);
    eprintln!("{report:#?}");
    report
}

/// Every connection of `client` ran to the end: connected, the whole goodbye received.
fn all_done(client: &ClientReport, connections: usize) {
    assert_eq!(client.completed, connections, "{client:#?}");
    assert_eq!(client.bytes_lost, 0, "{client:#?}");
}

// ---- peer-first ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_auto_heavy_client_keeps_at_most_the_threshold_light_keeps_all_server_none() {
    if !may_run(
        "peer_first_auto_heavy_client_keeps_at_most_the_threshold_light_keeps_all_server_none",
    ) {
        return;
    }
    let report = run(HeavyPolicy {
        name: "peer-first",
        peer_time_wait: PeerTimeWait::Auto,
    })
    .await;
    let (heavy, light) = (&report.heavy, &report.light);
    all_done(heavy, HEAVY);
    all_done(light, LIGHT);

    // The census: the heavy client holds at most the threshold, the light
    // one every connection's entry, the server none.
    assert!(
        heavy.client_time_wait <= THRESHOLD as usize,
        "heavy client keeps {} TIME-WAIT, threshold {THRESHOLD}",
        heavy.client_time_wait
    );
    assert_eq!(light.client_time_wait, LIGHT, "{light:#?}");
    assert_eq!(heavy.server_time_wait, 0, "{heavy:#?}");
    assert_eq!(light.server_time_wait, 0, "{light:#?}");

    // The closer's word: the first THRESHOLD endings of the heavy client are
    // passive closes, every later one a reset after its FIN.
    let ended = |c: &ClientReport, name: &str| c.endings.get(name).copied().unwrap_or(0);
    assert_eq!(
        ended(heavy, "peer-closed"),
        THRESHOLD as usize,
        "{heavy:#?}"
    );
    assert_eq!(
        ended(heavy, "reset-after-peer-fin"),
        HEAVY - THRESHOLD as usize,
        "{heavy:#?}"
    );
    assert_eq!(ended(light, "peer-closed"), LIGHT, "{light:#?}");
    assert!(report.unattributed.is_empty(), "{report:#?}");
}

// ---- plain -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_server_holds_time_wait_for_heavy_and_light_clients() {
    if !may_run("plain_server_holds_time_wait_for_heavy_and_light_clients") {
        return;
    }
    let report = run(HeavyPolicy {
        name: "plain",
        peer_time_wait: PeerTimeWait::Auto,
    })
    .await;
    let (heavy, light) = (&report.heavy, &report.light);
    all_done(heavy, HEAVY);
    all_done(light, LIGHT);
    assert_eq!(light.server_time_wait, LIGHT, "{light:#?}");
    // Not one per connection: a client that reuses a port (it holds no
    // TIME-WAIT for it) replaces the server's entry with its new SYN.
    assert!(
        heavy.server_time_wait >= HEAVY / 2,
        "the server keeps only {} TIME-WAIT for {HEAVY} heavy connections",
        heavy.server_time_wait
    );
}
