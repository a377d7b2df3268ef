//! An attached Node `http.Server` (`js/fixture/server.mjs --attached`) in a
//! network namespace of its own, with its clients in another, over a veth
//! pair rate-limited by htb (`farewell_lab::lab::path`, the `slow` path): a
//! slow reader (curl over 1 Mbit/s) gets the whole body and closes first; a
//! client that vanishes (its address removed) before the response is reset
//! once delivery stalls. Each checks what the client got and both
//! namespaces' socket tables (the census, read inside each namespace).
//!
//! Its own test binary: making a path forks `ip` and `tc`. Needs
//! `CAP_NET_ADMIN` and `CAP_SYS_ADMIN` (root), `ip`, `tc`, `node`, `curl`
//! and `python3`; without them it says why it is skipped.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use farewell::census::{self, Filter, StateSet};
use farewell::TcpState;
use farewell_lab::lab::path::{NetPath, PathKind, PathSpec, Slow};
use farewell_testkit::support::tools;

/// One test at a time: a path forks `ip` and `tc`.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn may_run(test: &str) -> bool {
    if let Some(why) = PathKind::Slow.unavailable() {
        return tools::skip(test, &why);
    }
    tools::require(test, &["node", "curl", "python3"])
}

/// The fixture server, run by `ip netns exec` in the path's server
/// namespace; killed (by its own PID) on drop.
struct NodeServer {
    child: Child,
    lines: mpsc::Receiver<String>,
    addr: SocketAddr,
}

impl NodeServer {
    fn start(path: &NetPath) -> NodeServer {
        let netns = path.server_netns().expect("a path with namespaces");
        let fixture = common::crate_dir().join("js/fixture/server.mjs");
        let ip = path.server_ip().to_string();
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns.name(), "node"])
            .arg(&fixture)
            .args(["--attached", "--outcomes", "--host", &ip])
            .env("FAREWELL_NODE_ADDON", common::addon())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run node in the server namespace");
        let stdout = child.stdout.take().expect("node's stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("node prints its port within 10 s");
        let port: u16 = first
            .strip_prefix("{\"port\":")
            .and_then(|rest| rest.strip_suffix('}'))
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("expected {{\"port\":N}}, got {first:?}"));
        NodeServer {
            child,
            lines,
            addr: SocketAddr::new(path.server_ip(), port),
        }
    }

    /// The next outcome line the server printed, within `bound`.
    fn outcome(&self, bound: Duration) -> String {
        let deadline = Instant::now() + bound;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no farewell outcome within {bound:?}"));
            if line.starts_with("{\"outcome\":") {
                return line;
            }
        }
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sockets by state (but listeners) that `filter` matches, in the calling
/// thread's namespace: call it through `path.server` or `path.client`.
fn census_of(filter: Filter) -> census::StateCounts {
    census::count_by_state(&filter.states(StateSet::all().without(TcpState::Listen)))
        .expect("the census")
}

/// The field `"name":"value"` of a JSON line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let key = format!("\"{name}\":\"");
    let at = line
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    let rest = &line[at + key.len()..];
    &rest[..rest.find('"').expect("a closing quote")]
}

/// 768 KiB at 1 Mbit/s: about 6.3 s on the wire.
const BODY: usize = 768 * 1024;

#[test]
fn node_slow_reader_over_a_rate_limited_path_gets_every_byte_and_closes_first() {
    let test = "node_slow_reader_over_a_rate_limited_path_gets_every_byte_and_closes_first";
    if !may_run(test) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let path = NetPath::new(PathSpec::Slow(Slow {
        rate: 1_000_000,
        queue: 32,
    }))
    .expect("make the slow path");
    let server = NodeServer::start(&path);
    let client_ns = path.client_netns().expect("a client namespace");
    let started = Instant::now();
    let output = Command::new("ip")
        .args(["netns", "exec", client_ns.name(), "curl"])
        .args([
            "-sS",
            "--max-time",
            "30",
            "-H",
            "Connection: close",
            "-o",
            "-",
        ])
        .arg(format!("http://{}/bytes/{BODY}", server.addr))
        .output()
        .expect("run curl in the client namespace");
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout.len(), BODY, "the whole body");
    assert!(
        output
            .stdout
            .iter()
            .enumerate()
            .all(|(i, &b)| b == b'a' + (i % 26) as u8),
        "every byte as sent"
    );
    assert!(took > Duration::from_secs(4), "the path was slow: {took:?}");
    let outcome = server.outcome(Duration::from_secs(10));
    eprintln!("after {took:?}: {outcome}");
    assert_eq!(field(&outcome, "ending"), "peer-closed");
    assert_eq!(field(&outcome, "timeWait"), "peer");
    // The last FIN and ACK cross the slow link: wait (bounded) until neither
    // side has a connection still closing.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (ours, theirs) = loop {
        let ours = path
            .server(|| census_of(Filter::local(server.addr)))
            .expect("in the server namespace");
        let theirs = path
            .client(|| census_of(Filter::remote(server.addr)))
            .expect("in the client namespace");
        let closing = ours.total() + theirs.total() - theirs.get(TcpState::TimeWait);
        if closing == 0 || Instant::now() > deadline {
            break (ours, theirs);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("server side: {ours:?}; client side: {theirs:?}");
    assert_eq!(
        ours.total(),
        0,
        "the server keeps nothing, TIME-WAIT included"
    );
    assert_eq!(
        theirs.get(TcpState::TimeWait),
        1,
        "curl closed first and keeps it"
    );
    assert_eq!(theirs.total(), 1);
}

/// Connects to the server, sends a request, prints `sent`, and waits (the
/// test removes its address, then kills it).
const SENDER: &str = r#"
import socket, sys, time
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
sock.sendall(b"GET /sleep/500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
print("sent", flush=True)
time.sleep(60)
"#;

#[test]
fn node_vanished_client_is_reset_once_delivery_stalls_and_the_server_keeps_nothing() {
    let test = "node_vanished_client_is_reset_once_delivery_stalls_and_the_server_keeps_nothing";
    if !may_run(test) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let path = NetPath::new(PathSpec::Slow(Slow::default())).expect("make the slow path");
    let server = NodeServer::start(&path);
    let client_ns = path.client_netns().expect("a client namespace");
    let mut client = Command::new("ip")
        .args(["netns", "exec", client_ns.name(), "python3", "-c", SENDER])
        .args([server.addr.ip().to_string(), server.addr.port().to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python in the client namespace");
    let mut said = String::new();
    BufReader::new(client.stdout.take().expect("python's stdout"))
        .read_line(&mut said)
        .expect("read python's line");
    assert_eq!(said.trim(), "sent");
    // The request is ACKed on a path this fast; the answer comes 500 ms later.
    std::thread::sleep(Duration::from_millis(100));
    path.vanish_client().expect("remove the client's address");
    let started = Instant::now();
    let outcome = server.outcome(Duration::from_secs(40));
    let took = started.elapsed();
    eprintln!("after {took:?}: {outcome}");
    let _ = client.kill();
    let _ = client.wait();
    assert_eq!(field(&outcome, "ending"), "reset-delivery-stalled");
    assert_eq!(field(&outcome, "timeWait"), "nobody");
    assert_eq!(field(&outcome, "goodbye"), "none-sent");
    let ours = path
        .server(|| census_of(Filter::local(server.addr)))
        .expect("in the server namespace");
    eprintln!("server side: {ours:?}");
    assert_eq!(
        ours.total(),
        0,
        "the server keeps nothing, TIME-WAIT included"
    );
}
