//! `farewell serve` driven by clients we did not write (nc, socat, CPython's
//! socket module) and by Rust clients; every scenario is judged by the
//! kernel's socket table: under peer-first, no server TIME-WAIT and nothing
//! left on the port but the listener.

use crate::harness;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use farewell::TcpState;
use harness::*;

/// Short deadlines so every goodbye is quick to reach (peer-first's grace:
/// [`args`] adds it).
const FAST: &[&str] = &[
    "--handshake-timeout",
    "400ms",
    "--idle-timeout",
    "600ms",
    "--max-line",
    "64",
    "--send-timeout",
    "300ms",
];

/// [`FAST`], a short peer-first grace, then `extra`.
fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let grace: &[&str] = &["--grace", "300ms"];
    grace
        .iter()
        .chain(without_grace(extra).iter())
        .copied()
        .collect()
}

/// [`FAST`] then `extra`, for a policy that has no grace.
fn without_grace<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    FAST.iter().copied().chain(extra.iter().copied()).collect()
}

// ---- FLP/1 with client programs we did not write ----

#[test]
fn nc_session_gets_welcome_echo_and_bye_quit() {
    if !farewell_lab::support::tools::require("nc_session_gets_welcome_echo_and_bye_quit", &["nc"])
    {
        return;
    }
    let server = Server::start(FAST);
    let out = shell_client(
        "nc -q 2 127.0.0.1 $PORT",
        server.port(),
        b"HELLO me\nping\nQUIT\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        "WELCOME me\nping\nBYE quit\n"
    );
    assert_clean(server.addr, 1);
}

#[test]
fn socat_session_echoes_binary_lines_unchanged() {
    if !farewell_lab::support::tools::require(
        "socat_session_echoes_binary_lines_unchanged",
        &["socat"],
    ) {
        return;
    }
    let server = Server::start(FAST);
    let input = b"HELLO socat\n\x00\xff\xfebinary\x01\r\nQUIT\n";
    let out = shell_client("socat -t 2 - TCP:127.0.0.1:$PORT", server.port(), input);
    assert_eq!(out, b"WELCOME socat\n\x00\xff\xfebinary\x01\r\nBYE quit\n");
    assert_clean(server.addr, 1);
}

#[test]
fn every_goodbye_reason_is_reachable_and_counted_in_metrics() {
    if !farewell_lab::support::tools::require(
        "every_goodbye_reason_is_reachable_and_counted_in_metrics",
        &["python3"],
    ) {
        return;
    }
    let mut server = Server::start(&args(&["--metrics", "127.0.0.1:0"]));
    let metrics_addr = metrics_addr(&mut server);
    let addr = server.addr;
    let cases: &[(&str, &[u8], &[u8])] = &[
        ("quit", b"HELLO a\nQUIT\n", b"WELCOME a\nBYE quit\n"),
        (
            "bad-handshake (http)",
            b"GET / HTTP/1.1\r\n\r\n",
            b"BYE bad-handshake\n",
        ),
        (
            "bad-handshake (binary)",
            b"\x00\xff\x10\x02\n",
            b"BYE bad-handshake\n",
        ),
        ("handshake-timeout", b"", b"BYE handshake-timeout\n"),
        (
            "handshake-timeout (no newline)",
            b"HELLO a",
            b"BYE handshake-timeout\n",
        ),
        ("idle", b"HELLO a\n", b"WELCOME a\nBYE idle\n"),
        (
            "line-too-long",
            &[b"HELLO a\nshort\n".as_slice(), &[b'x'; 100], b"\n"].concat(),
            b"WELCOME a\nshort\nBYE line-too-long\n",
        ),
        (
            "line-too-long before hello",
            &[b'H'; 200],
            b"BYE line-too-long\n",
        ),
    ];
    // Each case takes a different deadline; run them side by side.
    std::thread::scope(|scope| {
        for &(name, send, want) in cases {
            scope.spawn(move || {
                let got = python(addr, send);
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(want),
                    "{name}"
                );
            });
        }
    });
    assert_clean(server.addr, 1);

    let (body, _) = scrape(metrics_addr);
    for reason in [
        "quit",
        "bad-handshake",
        "handshake-timeout",
        "idle",
        "line-too-long",
    ] {
        let series = format!("farewell_goodbyes_total{{reason=\"{reason}\"}}");
        assert!(
            metric(&body, &series) >= 1.0,
            "{series} did not move:\n{body}"
        );
    }
    assert_eq!(
        metric(&body, "farewell_connections_accepted_total"),
        cases.len() as f64,
        "{body}"
    );
    assert!(body.contains("farewell_teardowns_total{ending="), "{body}");
    assert!(body.contains("farewell_teardown_seconds_bucket"), "{body}");
    assert_eq!(metric(&body, "farewell_connections_open"), 0.0, "{body}");

    let (status, stderr) = server.terminate();
    assert!(status.success(), "{status}\n{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("farewell serve: "))
        .expect("summary line");
    eprintln!("{summary}");
    for reason in [
        "quit 1",
        "bad-handshake 2",
        "handshake-timeout 2",
        "idle 1",
        "line-too-long 2",
    ] {
        assert!(summary.contains(reason), "{reason} missing from {summary}");
    }
}

#[test]
fn metrics_on_port_zero_prints_the_bound_address_and_serves_it() {
    if !farewell_lab::support::tools::require(
        "metrics_on_port_zero_prints_the_bound_address_and_serves_it",
        &["python3", "curl"],
    ) {
        return;
    }
    let mut server = Server::start(&args(&["--metrics", "127.0.0.1:0"]));
    let metrics = metrics_addr(&mut server);
    assert_eq!(metrics.ip(), std::net::Ipv4Addr::LOCALHOST);
    assert_ne!(metrics.port(), 0, "the real port, not the requested 0");
    assert_ne!(metrics.port(), server.port());
    assert_eq!(
        python(server.addr, b"HELLO m\nQUIT\n"),
        b"WELCOME m\nBYE quit\n"
    );
    assert_clean(server.addr, 1);

    // A client we did not write, at the printed URL.
    let url = format!("http://{metrics}/metrics");
    let out = Command::new("timeout")
        .args(["30", "curl", "-sS", "--fail", &url])
        .output()
        .expect("run curl (apt-get install curl)");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "curl {url}: {out:?}");
    assert!(
        body.contains("# TYPE farewell_goodbyes_total counter"),
        "{body}"
    );
    assert_eq!(
        metric(&body, "farewell_goodbyes_total{reason=\"quit\"}"),
        1.0,
        "{body}"
    );
    assert_eq!(
        metric(&body, "farewell_connections_accepted_total"),
        1.0,
        "{body}"
    );

    // Only GET (or HEAD) of /metrics and /health: nothing else gets a 200.
    for (method, path, status) in [
        ("GET", "/health", "200"),
        ("HEAD", "/metrics", "200"),
        ("GET", "/", "404"),
        ("GET", "/admin", "404"),
        ("POST", "/metrics", "405"),
        ("DELETE", "/metrics", "405"),
    ] {
        let url = format!("http://{metrics}{path}");
        let mut args = vec!["30", "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}"];
        if method == "HEAD" {
            args.push("-I");
        } else {
            args.extend(["-X", method]);
        }
        args.push(&url);
        let out = Command::new("timeout").args(&args).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            status,
            "{method} {path}: {out:?}"
        );
    }

    // The scrape itself ends peer-first: we close first, so our end keeps the
    // TIME-WAIT entry and the endpoint's end of that connection is gone.
    let (body, client) = scrape(metrics);
    assert!(body.contains("farewell_teardowns_total{ending="), "{body}");
    let deadline = std::time::Instant::now() + BOUND;
    let (ours, theirs) = loop {
        let ours = farewell::census::lookup(client, metrics).unwrap();
        let theirs = farewell::census::lookup(metrics, client).unwrap();
        let settled =
            theirs.is_none() && ours.as_ref().map(|e| e.state) == Some(TcpState::TimeWait);
        if settled || std::time::Instant::now() > deadline {
            break (ours, theirs);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(theirs.is_none(), "the metrics endpoint kept {theirs:?}");
    assert_eq!(ours.map(|e| e.state), Some(TcpState::TimeWait));
}

#[test]
fn metrics_on_a_taken_address_fails_with_a_hint() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics", &addr])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot serve metrics on {addr}")),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
}

#[test]
fn busy_beyond_max_connections_and_never_time_wait() {
    if !farewell_lab::support::tools::require(
        "busy_beyond_max_connections_and_never_time_wait",
        &["python3"],
    ) {
        return;
    }
    for mode in ["goodbye", "reset"] {
        // Not FAST's 600 ms idle timeout: on a loaded machine Python can take
        // longer than that to start, and the held connections would idle out
        // (and make room) before the late client connects.
        let server = Server::start(&[
            "--grace",
            "300ms",
            "--idle-timeout",
            "30s",
            "--max-connections",
            "2",
            "--busy",
            mode,
            "--busy-grace",
            "200ms",
        ]);
        let mut held: Vec<_> = (0..2)
            .map(|i| hello(server.addr, &format!("held{i}")))
            .collect();
        for s in &mut held {
            assert!(read_line(s).starts_with("WELCOME"));
        }
        let got = python(server.addr, b"HELLO late\n");
        // Reset mode writes the goodbye once before the RST; Linux lets the peer read it
        // (F6), unless the RST beats the client's own connect() call.
        assert!(
            got.starts_with(b"BYE busy\n") || (mode == "reset" && got.starts_with(b"<RESET>")),
            "{mode}: {:?}",
            String::from_utf8_lossy(&got)
        );
        // The held connections are still served.
        held[0].write_all(b"still here\n").unwrap();
        assert_eq!(read_line(&mut held[0]), "still here\n");
        for mut s in held {
            s.write_all(b"QUIT\n").unwrap();
            assert_eq!(read_line(&mut s), "BYE quit\n");
        }
        assert_clean(server.addr, 1);
        let (status, stderr) = server.terminate();
        assert!(status.success());
        assert!(stderr.contains("busy 1"), "{stderr}");
        eprintln!(
            "--busy {mode}: {}",
            stderr.lines().last().unwrap_or_default()
        );
    }
}

#[test]
fn a_client_that_never_reads_cannot_stall_the_others() {
    if !farewell_lab::support::tools::require(
        "a_client_that_never_reads_cannot_stall_the_others",
        &["python3"],
    ) {
        return;
    }
    let server = Server::start(FAST);
    let addr = server.addr;
    let stalled = std::thread::spawn(move || {
        let lines = [
            b"HELLO slow\n".as_slice(),
            &[b"0123456789abcdef0123456789\n".as_slice(); 200].concat(),
        ]
        .concat();
        python_mode(addr, &lines, &["never-reads", "3"])
    });
    // While it stalls, other clients are served from start to goodbye.
    for i in 0..5 {
        let got = python(addr, format!("HELLO other{i}\nline\nQUIT\n").as_bytes());
        assert_eq!(
            got,
            format!("WELCOME other{i}\nline\nBYE quit\n").into_bytes()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(stalled.join().unwrap(), b"never-read");
    assert_clean(server.addr, 1);
    let (status, stderr) = server.terminate();
    assert!(status.success());
    assert!(
        stderr.contains("send-timeout 1"),
        "the stalled client is let go for not reading:\n{stderr}"
    );
    eprintln!("{}", stderr.lines().last().unwrap_or_default());
}

#[test]
fn ipv6_listen_address_is_accepted() {
    if !farewell_lab::support::tools::require("ipv6_listen_address_is_accepted", &["python3"]) {
        return;
    }
    let server = Server::start_on("[::1]:0", FAST);
    assert!(server.addr.is_ipv6());
    assert_eq!(
        python(server.addr, b"HELLO six\nQUIT\n"),
        b"WELCOME six\nBYE quit\n"
    );
    assert_clean(server.addr, 1);
}

// ---- the contrast: plain close leaves TIME-WAIT on the server ----

#[test]
fn plain_policy_shows_the_server_time_wait_it_causes() {
    if !farewell_lab::support::tools::require(
        "plain_policy_shows_the_server_time_wait_it_causes",
        &["python3"],
    ) {
        return;
    }
    let server = Server::start(&without_grace(&["--policy", "plain"]));
    for i in 0..3 {
        // A client that reads until the server closes: the server's FIN comes first.
        let got = python_mode(
            server.addr,
            format!("HELLO p{i}\nQUIT\n").as_bytes(),
            &["until-eof"],
        );
        assert_eq!(got, format!("WELCOME p{i}\nBYE quit\n").into_bytes());
    }
    let counts = settled(server.addr, 1);
    assert_eq!(
        counts.get(TcpState::TimeWait),
        3,
        "plain close: the server sent the first FIN: {counts}"
    );
}

// ---- flags ----

#[test]
fn bad_flags_say_what_is_accepted() {
    let bin = env!("CARGO_BIN_EXE_farewell");
    for (flags, hint) in [
        (&["--policy", "nope"][..], "peer-first"),
        (&["--grace", "2"][..], "needs a unit"),
        (&["--idle-timeout", "soon"][..], "e.g. 300ms"),
        (&["--listen", "localhost"][..], "--listen"),
        (&["--busy", "maybe"][..], "goodbye"),
    ] {
        let out = Command::new(bin).arg("serve").args(flags).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} was accepted");
        assert!(stderr.contains(hint), "{flags:?}: {stderr}");
    }
    // Every policy name the library knows is accepted (silent falls back without CAP_NET_ADMIN).
    for name in farewell::Policy::NAMES {
        let server = Server::start(&without_grace(&["--policy", name]));
        assert!(server.stderr().contains(&format!("policy {name}")));
    }
}

#[test]
fn help_lists_the_three_deadlines_and_what_each_policy_does_with_them() {
    for subcommand in ["serve", "serve-http"] {
        let out = Command::new(env!("CARGO_BIN_EXE_farewell"))
            .args([subcommand, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        for text in [
            "Teardown deadlines",
            "--grace <DURATION>",
            "--stall-timeout <DURATION>",
            "--delivery-timeout <DURATION>",
            // Per policy: what the stall and the cap do to lingering.
            "lingering, once its FIN is",
            "caps the whole close",
        ] {
            assert!(
                help.contains(text),
                "{subcommand} --help lacks {text:?}:\n{help}"
            );
        }
    }
}

#[test]
fn stall_and_delivery_timeouts_reach_the_policy() {
    let server = Server::start(&without_grace(&[
        "--policy",
        "fin-then-reset",
        "--stall-timeout",
        "1500ms",
        "--delivery-timeout",
        "7s",
    ]));
    let stderr = server.stderr();
    assert!(
        stderr.contains("(policy fin-then-reset (stall timeout 1.5s, delivery timeout 7s))"),
        "{stderr}"
    );
    let server = Server::start(&args(&["--stall-timeout", "2s"]));
    let stderr = server.stderr();
    assert!(
        stderr
            .contains("(policy peer-first (grace 300ms, stall timeout 2s, delivery timeout 60s))"),
        "{stderr}"
    );
    // serve-http the same, lingering's defaults kept where not given.
    let server = Server::serve_http_with_fd_limit(
        1024,
        "127.0.0.1:0",
        &["--policy", "lingering-reset", "--delivery-timeout", "3s"],
    );
    let stderr = server.stderr();
    assert!(
        stderr.contains("(policy lingering-reset (stall timeout 5s, delivery timeout 3s))"),
        "{stderr}"
    );
}

#[test]
fn a_deadline_the_policy_does_not_have_or_a_bad_value_is_refused_with_a_hint() {
    let bin = env!("CARGO_BIN_EXE_farewell");
    for subcommand in ["serve", "serve-http"] {
        for (flags, hint) in [
            (&["--stall-timeout", "5"][..], "needs a unit"),
            (&["--delivery-timeout", "soon"][..], "e.g. 300ms"),
            (&["--delivery-timeout", "2d"][..], "unknown unit"),
            (&["--stall-timeout", "25h"][..], "out of range"),
            (
                &["--policy", "abort", "--stall-timeout", "1s"][..],
                "--policy abort does not wait",
            ),
            (
                &["--policy", "silent", "--delivery-timeout", "1s"][..],
                "--policy silent does not wait",
            ),
            (
                &["--policy", "plain", "--grace", "1s"][..],
                "its deadlines are --stall-timeout (default 15s) and --delivery-timeout (default 60s)",
            ),
        ] {
            let out = Command::new(bin)
                .args([subcommand, "--listen", "127.0.0.1:0"])
                .args(flags)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{subcommand} {flags:?} was accepted");
            assert!(stderr.contains(hint), "{subcommand} {flags:?}: {stderr}");
            assert!(!stderr.contains("listening on"), "{subcommand} {flags:?}: {stderr}");
        }
    }
}
