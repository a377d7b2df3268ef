//! `farewell_lab::load` against a test-fixture FLP/1 server on real loopback
//! sockets: what each behaviour's clients report must match what the server
//! did, and the kernel's table must show nothing left open afterwards.

use farewell_lab::support::flp_fixture;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use farewell::census::{self, Filter};
use farewell::TcpState;
use farewell_lab::load::{self, Behaviour, ClientConfig, LoadConfig, LoadReport, Mix};
use flp_fixture::{Fixture, FixtureConfig};

/// Every behaviour, twice.
const EVERY_BEHAVIOUR: &str = "cooperative=2,ignore=2,silent=2,flood=2,never-read=2,bad-handshake=2,overlong=2,reset=2,half-close=2";

fn quick_client() -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_secs(10),
        flood_bytes: 256 * 1024,
        flood_time: Duration::from_millis(300),
        ..ClientConfig::default()
    }
}

async fn run_against(fixture: &Fixture, mix: &str, connections: u64) -> LoadReport {
    let mut config = LoadConfig::new(vec![fixture.addr], mix.parse::<Mix>().unwrap(), connections);
    config.concurrency = 32;
    config.client = quick_client();
    let finished = Arc::new(AtomicU64::new(0));
    let counter = finished.clone();
    let report = load::run(
        &config,
        Arc::new(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        }),
        std::future::pending(),
    )
    .await
    .expect("load runs");
    assert_eq!(
        finished.load(Ordering::Relaxed),
        connections,
        "on_conn once per client"
    );
    report
}

/// Waits (bounded) until the fixture's port has only its listener and
/// client sockets in TIME-WAIT; returns the last counts (server side, client side).
fn settled(port: u16) -> (census::StateCounts, census::StateCounts) {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let server = census::count_by_state(&Filter::local_port(port)).unwrap();
        let clients = census::count_by_state(&Filter::remote_port(port)).unwrap();
        let open = clients.total() - clients.get(TcpState::TimeWait);
        if (server.total() == 1 && open == 0) || Instant::now() > until {
            return (server, clients);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_behaviour_reports_what_the_server_did() {
    let fixture = Fixture::start(FixtureConfig::default()).await;
    let report = run_against(&fixture, EVERY_BEHAVIOUR, 18).await;
    eprintln!("{}", report.table());
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();

    assert_eq!(report.started, 18);
    assert_eq!(report.unfinished, 0);
    assert_eq!(report.totals.connections, 18);
    assert_eq!(fixture.accepted(), 18, "one server connection per client");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.totals.ends["connect-error"], 0);
    // Only never-read may hit its own bound: the server's reset can fall out
    // of its zero window and be dropped (RFC 5961); see tests/cli_load.rs.
    let never_read = &report.behaviours["never-read"];
    assert_eq!(
        report.totals.ends["timeout"],
        never_read.ends["timeout"],
        "{}",
        report.table()
    );
    assert_eq!(report.totals.echo_mismatches, 0);

    for b in Behaviour::LOAD {
        let name = b.load_name();
        let tally = &report.behaviours[name];
        assert_eq!(tally.connections, 2, "{name}");
        assert_eq!(json["behaviours"][name]["connections"], 2, "{name}");
        let seen = &tally.goodbyes;
        match b {
            // The server's goodbye to a client that never reads cannot arrive.
            Behaviour::NeverReads => {
                assert_eq!(fixture.sent_to(Some("never-read")).values().sum::<u64>(), 2);
                assert!(seen.is_empty(), "never-read saw {seen:?}");
                // It learns of the server's reset or close, or (the reset
                // dropped out of its zero window, see above) its bound ends it.
                let ended = tally.ends["reset"] + tally.ends["eof"] + tally.ends["timeout"];
                assert_eq!(ended, 2, "{tally:?}");
            }
            // No HELLO, so no id: match by reason, which only these get.
            Behaviour::NeverHandshakes | Behaviour::BadHandshake => {
                let reason = b.expected_goodbye().unwrap();
                assert_eq!(seen.get(reason), Some(&2), "{name}: {seen:?}");
                assert_eq!(fixture.sent_to(None).get(reason), Some(&2), "{name}");
                assert_eq!(tally.ends["closed"], 2, "{name}");
            }
            _ => {
                assert_eq!(
                    seen,
                    &fixture.sent_to(Some(name)),
                    "{name}: client saw vs server sent"
                );
                if let Some(reason) = b.expected_goodbye() {
                    assert_eq!(seen.get(reason), Some(&2), "{name}: {seen:?}");
                }
            }
        }
    }
    assert_eq!(report.behaviours["cooperative"].ends["closed"], 2);
    // peer-first never closes first: an ignoring client is reset after the grace.
    assert_eq!(report.behaviours["ignore"].ends["reset"], 2);
    assert_eq!(report.behaviours["reset"].ends["aborted"], 2);
    assert!(report.behaviours["reset"].goodbyes.is_empty());
    // The fixture closes quietly on EOF: no goodbye, just its FIN.
    assert_eq!(report.behaviours["half-close"].eof_without_goodbye, 2);
    assert_eq!(report.totals.latency_ms.connect.count, 18);
    assert!(report.totals.latency_ms.goodbye.count >= 12);

    // The kernel: nothing left open on either side, and no server TIME-WAIT.
    let (server, clients) = settled(fixture.addr.port());
    assert_eq!(server.get(TcpState::Listen), 1);
    assert_eq!(server.total(), 1, "server side after the run: {server}");
    assert_eq!(
        clients.total() - clients.get(TcpState::TimeWait),
        0,
        "client side after the run: {clients}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sources_spread_the_clients_over_127_1_x_y() {
    let fixture = Fixture::start(FixtureConfig::default()).await;
    let mut config = LoadConfig::new(vec![fixture.addr], "cooperative".parse().unwrap(), 12);
    config.sources = load::Sources::Count(4);
    config.client = quick_client();
    let report = load::run(&config, Arc::new(|_| {}), std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.sources, 4);
    assert_eq!(
        report.behaviours["cooperative"].goodbyes.get("quit"),
        Some(&12)
    );
    // The clients closed first, so the kernel keeps their TIME-WAIT entries,
    // under the source addresses they used.
    let port = fixture.addr.port();
    settled(port); // the clients' FIN-WAIT-2 ends in TIME-WAIT when the server's FIN comes
    let mut by_source = BTreeMap::new();
    for e in census::dump(&Filter::remote_port(port).states(TcpState::TimeWait)).unwrap() {
        *by_source.entry(e.local.ip().to_string()).or_insert(0) += 1;
    }
    let expected: BTreeMap<String, i32> = (1..=4).map(|i| (format!("127.1.0.{i}"), 3)).collect();
    assert_eq!(by_source, expected);
}

#[tokio::test]
async fn non_loopback_targets_are_refused() {
    let config = LoadConfig::new(vec!["192.0.2.1:7878".parse().unwrap()], Mix::default(), 1);
    let err = load::run(&config, Arc::new(|_| {}), std::future::pending())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("only connects to loopback"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_signal_ends_the_run_early_and_says_so() {
    let fixture = Fixture::start(FixtureConfig::default()).await;
    let mut config = LoadConfig::new(vec![fixture.addr], "silent".parse().unwrap(), 1000);
    config.concurrency = 4;
    config.client = quick_client();
    let report = load::run(
        &config,
        Arc::new(|_| {}),
        tokio::time::sleep(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    assert!(report.interrupted);
    assert!(report.started < 1000);
    assert_eq!(
        report.started,
        report.totals.connections + report.unfinished
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_starts_no_more_than_rate_times_duration() {
    let fixture = Fixture::start(FixtureConfig::default()).await;
    let mut config = LoadConfig::new(vec![fixture.addr], "cooperative".parse().unwrap(), 1);
    config.connections = None;
    config.rate = Some(100.0);
    config.duration = Duration::from_millis(200);
    config.client = quick_client();
    assert_eq!(config.planned(), 20);
    let report = load::run(&config, Arc::new(|_| {}), std::future::pending())
        .await
        .unwrap();
    assert!(
        report.started >= 1 && report.started <= 20,
        "{}",
        report.started
    );
    assert_eq!(report.totals.goodbyes.get("quit"), Some(&report.started));
    assert_eq!(fixture.accepted() as u64, report.started);
}

/// A measurement, not a check of speed: many cooperative clients, all of
/// which must get their goodbye. Run with `--ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: cargo test -p farewell --test load -- --ignored --nocapture"]
async fn measure_many_clients() {
    let fixture = Fixture::start(FixtureConfig::default()).await;
    let mut config = LoadConfig::new(
        vec![fixture.addr],
        "cooperative=90,silent=5,reset=5".parse().unwrap(),
        5000,
    );
    config.concurrency = 200;
    config.client = quick_client();
    let report = load::run(&config, Arc::new(|_| {}), std::future::pending())
        .await
        .unwrap();
    eprintln!("{}", report.table());
    eprintln!(
        "{:.0} connections/s",
        report.started as f64 / (report.elapsed_ms / 1000.0)
    );
    assert_eq!(
        report.behaviours["cooperative"].goodbyes.get("quit"),
        Some(&4500)
    );
    assert_eq!(
        report.behaviours["silent"]
            .goodbyes
            .get("handshake-timeout"),
        Some(&250)
    );
}
