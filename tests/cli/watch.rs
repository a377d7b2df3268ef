//! `farewell watch` against sockets in known states on a listener this test
//! owns, checked against the census itself.

use farewell_lab::support::flp_fixture;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use farewell::census::{self, Filter};
use farewell::TcpState;
use serde_json::Value;

/// A listener on 127.0.0.1 with three accepted connections (all ESTABLISHED).
struct ThreePairs {
    listener: TcpListener,
    _pairs: Vec<(TcpStream, TcpStream)>,
}

impl ThreePairs {
    fn open() -> ThreePairs {
        let listener = flp_fixture::unused_port_listener();
        listener.set_nonblocking(false).unwrap();
        let pairs = (0..3)
            .map(|_| {
                let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                let (server, _) = listener.accept().unwrap();
                (client, server)
            })
            .collect();
        ThreePairs {
            listener,
            _pairs: pairs,
        }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }
}

fn watch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_farewell"))
        .arg("watch")
        .args(args)
        .output()
        .expect("farewell ran")
}

#[test]
fn watch_once_json_counts_exactly_the_ports_sockets() {
    let pairs = ThreePairs::open();
    let port = pairs.port().to_string();
    let out = watch(&["--once", "--json", "--clients", "--port", &port]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one snapshot: {text}");
    let snap: Value = serde_json::from_str(&text).unwrap();

    assert_eq!(snap["port"], pairs.port());
    assert!(snap["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(snap["total"], 4);
    assert_eq!(snap["clients"]["total"], 3);
    // What the census itself says, state by state.
    let server = census::count_by_state(&Filter::local_port(pairs.port())).unwrap();
    let clients = census::count_by_state(&Filter::remote_port(pairs.port())).unwrap();
    assert_eq!(server.get(TcpState::Listen), 1);
    assert_eq!(server.get(TcpState::Established), 3);
    for state in TcpState::ALL
        .into_iter()
        .filter(|s| *s != TcpState::NewSynReceived)
    {
        let name = state.rfc_name();
        assert_eq!(snap["counts"][name], server.get(state), "{name}");
        assert_eq!(
            snap["clients"]["counts"][name],
            clients.get(state),
            "clients {name}"
        );
    }
    assert_eq!(snap["counts"]["ESTABLISHED"], 3);
    assert_eq!(snap["counts"]["LISTEN"], 1);
    assert_eq!(snap["clients"]["counts"]["ESTABLISHED"], 3);
}

#[test]
fn watch_count_prints_one_line_per_sample_when_not_a_tty() {
    let pairs = ThreePairs::open();
    let port = pairs.port();
    let out = watch(&[
        "--count",
        "3",
        "--interval",
        "20ms",
        "--port",
        &port.to_string(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for line in lines {
        assert!(
            line.ends_with(&format!("port {port}: ESTABLISHED 3, LISTEN 1 (total 4)")),
            "{line}"
        );
        assert!(
            !line.contains('\x1b'),
            "no terminal codes when stdout is a pipe"
        );
    }
}

#[test]
fn watch_without_port_counts_every_socket_on_the_host() {
    let _pairs = ThreePairs::open();
    let out = watch(&["--once", "--json"]);
    let snap: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snap["port"], Value::Null);
    // Our own 7 sockets at least (other processes come and go).
    assert!(snap["total"].as_u64().unwrap() >= 7, "{snap}");
    assert!(
        snap["counts"]["ESTABLISHED"].as_u64().unwrap() >= 6,
        "{snap}"
    );
}

#[test]
fn watch_ctrl_c_exits_zero() {
    let pairs = ThreePairs::open();
    let mut child = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args([
            "watch",
            "--interval",
            "50ms",
            "--port",
            &pairs.port().to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first sample, so the Ctrl-C handler is installed.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("ESTABLISHED 3"), "{first}");
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let until = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > until {
            child.kill().unwrap();
            panic!("watch did not stop on SIGINT within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}
