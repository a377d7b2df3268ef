//! Abuse of the connection limits of `farewell serve-http` and of the metrics
//! endpoint of `farewell serve`, each run as a child under a low descriptor
//! limit (`ulimit -n` in the shell that execs it): idle clients beyond the
//! limit are reset at accept (a fast answer, not a wait in the backlog, no
//! server TIME-WAIT), accept errors log once per burst, and a probe client is
//! served as soon as a slot frees.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{self, BOUND};
use crate::http::server_time_wait;

/// `farewell serve-http` under `ulimit -n fds`, on a loopback port no other
/// socket uses (so the census on it counts this server's sockets only).
fn serve_http(fds: u32, args: &[&str]) -> harness::Server {
    let quiet = farewell_lab::support::port::bind_quiet_port([127, 0, 0, 1].into()).unwrap();
    let listen = quiet.local_addr().unwrap().to_string();
    drop(quiet);
    harness::Server::serve_http_with_fd_limit(fds, &listen, args)
}

/// Opens `n` idle connections to `addr`; a connect refused or reset (the
/// server shed it before connect() returned) is counted, not kept.
fn open_idle(addr: SocketAddr, n: usize, first_bytes: &[u8]) -> (Vec<TcpStream>, usize) {
    let mut open = Vec::new();
    let mut reset = 0;
    for _ in 0..n {
        match TcpStream::connect_timeout(&addr, BOUND) {
            Ok(mut s) => {
                let _ = s.write_all(first_bytes);
                open.push(s);
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => reset += 1,
            Err(e) => panic!("connect to {addr}: {e}"),
        }
    }
    (open, reset)
}

/// The start of what a shed client of serve-http reads before the reset.
const SHED_503: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n";

/// Splits `streams` into the ones still open and the count that the server
/// ended (reset or EOF, after nothing or a `503`), waiting (bounded by
/// `within`) until `expect_ended` have ended; returns early once that many
/// have.
fn ended_within(
    streams: Vec<TcpStream>,
    expect_ended: usize,
    within: Duration,
) -> (Vec<TcpStream>, usize) {
    for s in &streams {
        s.set_nonblocking(true).unwrap();
    }
    let mut open: Vec<(TcpStream, Vec<u8>)> =
        streams.into_iter().map(|s| (s, Vec::new())).collect();
    let mut ended = 0;
    let deadline = Instant::now() + within;
    loop {
        let mut still = Vec::new();
        for (mut s, mut got) in open {
            let mut buf = [0u8; 256];
            let end = loop {
                match s.read(&mut buf) {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                    Ok(0) | Err(_) => break true,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            };
            let n = got.len().min(SHED_503.len());
            assert_eq!(
                &got[..n],
                &SHED_503[..n],
                "an idle client read {:?}",
                String::from_utf8_lossy(&got)
            );
            if end {
                ended += 1;
            } else {
                still.push((s, got));
            }
        }
        open = still;
        if ended >= expect_ended || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let open: Vec<TcpStream> = open.into_iter().map(|(s, _)| s).collect();
    for s in &open {
        s.set_nonblocking(false).unwrap();
    }
    (open, ended)
}

/// curl once, bounded by its --max-time; returns its exit code and what it
/// printed: the HTTP status, then its error if any.
fn curl(url: &str) -> (Option<i32>, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--max-time", "10", url])
        .output()
        .expect("curl runs (apt-get install curl)");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), printed)
}

/// curl until it is served (exit 0), bounded.
fn curl_until_served(url: &str) {
    let deadline = Instant::now() + BOUND;
    loop {
        let (code, stderr) = curl(url);
        if code == Some(0) && stderr == "200" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "curl {url} not served within {BOUND:?}: exit {code:?} {stderr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_http_under_a_low_fd_limit_resets_the_surplus_at_once_and_serves_a_probe_when_a_slot_frees()
{
    if !farewell_lab::support::tools::require(
        "serve_http_under_a_low_fd_limit_resets_the_surplus_at_once_and_serves_a_probe_when_a_slot_frees",
        &["curl"],
    ) {
        return;
    }
    // `ulimit -n 128` and no --max-connections: the default limit fits the
    // descriptors, (128 - 64) / 2 = 32 (farewell::accept::default_max_connections).
    let limit = 32;
    let server = serve_http(128, &["--grace", "500ms", "--drain-timeout", "3s"]);
    let port = server.addr.port();
    let url = format!("http://{}/", server.addr);
    curl_until_served(&url);
    // Let that connection's task end (curl closed it), so all 32 slots are free.
    std::thread::sleep(Duration::from_millis(500));

    let clients = 50;
    let (open, reset_at_connect) = open_idle(server.addr, clients, b"");
    let expect_shed = clients - limit;
    let (mut held, ended) = ended_within(
        open,
        expect_shed - reset_at_connect,
        Duration::from_secs(10),
    );
    assert_eq!(
        ended + reset_at_connect,
        expect_shed,
        "{} of {clients} idle clients ended, not the {expect_shed} over the limit",
        ended + reset_at_connect
    );
    // The served ones are not ended by more waiting.
    let (still, more) = ended_within(held, 1, Duration::from_millis(300));
    assert_eq!(more, 0, "a served idle client was ended");
    held = still;
    assert_eq!(held.len(), limit);

    // A real client while full: a fast answer, the 503 (or a reset when it
    // came before curl's connect() returned), not curl's timeout (28).
    let (code, printed) = curl(&url);
    assert!(
        (code == Some(0) && printed == "503") || matches!(code, Some(c) if c != 0 && c != 28),
        "curl while full: exit {code:?}: {printed}"
    );
    // One slot frees: the probe is served.
    drop(held.pop());
    curl_until_served(&url);
    // Shedding is not an error: no warning per shed connection.
    assert_eq!(server.warnings(), Vec::<String>::new());

    drop(held);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
    let summary = stderr.lines().find(|l| l.contains("shut down: ")).unwrap();
    assert!(
        summary.contains(" shed (reset at once), 0 failed (paused)"),
        "{summary}"
    );
    eprintln!("{summary}");
    // Shed connections were reset, served ones closed by their client first.
    assert_eq!(server_time_wait(port), 0);
}

#[test]
fn serve_http_out_of_descriptors_resets_the_waiting_clients_warns_once_per_burst_and_recovers() {
    if !farewell_lab::support::tools::require(
        "serve_http_out_of_descriptors_resets_the_waiting_clients_warns_once_per_burst_and_recovers",
        &["curl"],
    ) {
        return;
    }
    // A connection limit above the descriptor limit: accept() fails with EMFILE.
    let mut server = serve_http(
        32,
        &[
            "--max-connections",
            "1000",
            "--grace",
            "500ms",
            "--drain-timeout",
            "3s",
        ],
    );
    let port = server.addr.port();
    let url = format!("http://{}/", server.addr);
    curl_until_served(&url);

    let clients = 40;
    let (open, reset_at_connect) = open_idle(server.addr, clients, b"");
    server.wait_for_stderr("accept failed");
    // The clients the process has no descriptor for are reset (through the
    // spare descriptor), not left waiting in the backlog: watch for 3 s of
    // exhaustion (the old loop warned every 50 ms meanwhile: 60 lines).
    let (mut held, ended) = ended_within(open, clients, Duration::from_secs(3));
    let during = server.warnings();
    assert_eq!(during.len(), 1, "{during:#?}");
    assert!(during[0].contains("Too many open files"), "{during:#?}");
    assert!(
        ended + reset_at_connect > 0 && !held.is_empty(),
        "{} clients reset, {} open",
        ended + reset_at_connect,
        held.len()
    );
    // Those left open are served, not waiting: each gets its response.
    for s in &mut held {
        s.set_read_timeout(Some(BOUND)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut response = [0u8; 15];
        s.read_exact(&mut response).unwrap();
        assert_eq!(&response, b"HTTP/1.1 200 OK");
    }
    // A real client while out of descriptors: a fast answer (the 503 or a
    // reset), not curl's timeout (28).
    let (code, printed) = curl(&url);
    assert!(
        (code == Some(0) && printed == "503") || matches!(code, Some(c) if c != 0 && c != 28),
        "curl while out of descriptors: exit {code:?}: {printed}"
    );
    eprintln!(
        "ulimit -n 32: {} of {clients} idle clients served, {} reset",
        held.len(),
        ended + reset_at_connect
    );

    // The clients leave: descriptors free up, accept succeeds, the probe is served.
    drop(held);
    curl_until_served(&url);
    server.wait_for_stderr("accepting again after");
    let warnings = server.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        warnings[1].contains("clients were reset meanwhile"),
        "{warnings:#?}"
    );

    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
    let summary = stderr.lines().find(|l| l.contains("shut down: ")).unwrap();
    assert!(summary.contains(" failed (paused)"), "{summary}");
    eprintln!("{summary}");
    assert_eq!(server_time_wait(port), 0);
}

#[test]
fn serve_metrics_flooded_under_a_low_fd_limit_leaves_the_flp_service_serving() {
    if !farewell_lab::support::tools::require(
        "serve_metrics_flooded_under_a_low_fd_limit_leaves_the_flp_service_serving",
        &["curl"],
    ) {
        return;
    }
    // `ulimit -n 128` (FLP's own limit: (128 - 64) / 2 = 32) and a flood of
    // 150: an endpoint without its own limit took every descriptor for the
    // flood, and FLP clients then sat in the backlog.
    const FLOOD: usize = 150;
    let mut server = harness::Server::start_with_fd_limit(
        128,
        &[
            "--metrics",
            "127.0.0.1:0",
            "--grace",
            "300ms",
            "--drain-timeout",
            "3s",
        ],
    );
    let metrics = harness::metrics_addr(&mut server);
    // A slowloris on the endpoint: partial request headers, never finished.
    let (open, reset_at_connect) = open_idle(metrics, FLOOD, b"GET /metrics HTTP/1.1\r\n");
    // The endpoint serves 16 at once; the rest are reset at accept.
    let (flood, ended) = ended_within(open, FLOOD - 16 - reset_at_connect, Duration::from_secs(10));
    assert_eq!(ended + reset_at_connect, FLOOD - 16, "the endpoint's limit");

    // FLP clients are served meanwhile, several at once.
    let mut clients: Vec<_> = (0..5)
        .map(|i| harness::hello(server.addr, &format!("probe{i}")))
        .collect();
    for (i, s) in clients.iter_mut().enumerate() {
        assert_eq!(harness::read_line(s), format!("WELCOME probe{i}\n"));
        s.write_all(b"still serving\n").unwrap();
        assert_eq!(harness::read_line(s), "still serving\n");
    }
    for mut s in clients {
        s.write_all(b"QUIT\n").unwrap();
        assert_eq!(harness::read_line(&mut s), "BYE quit\n");
    }
    harness::assert_clean(server.addr, 1);
    assert!(
        !server.stderr().contains("accept failed"),
        "{}",
        server.stderr()
    );
    // The shed scrapers were reset: no TIME-WAIT on the endpoint.
    assert_eq!(
        harness::census(metrics).get(farewell::TcpState::TimeWait),
        0
    );
    // The flood leaves: the endpoint scrapes again.
    drop(flood);
    curl_until_served(&format!("http://{metrics}/metrics"));
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}
