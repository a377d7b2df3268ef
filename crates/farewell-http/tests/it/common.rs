//! Test harness: a farewell-http (or plain hyper) server on a loopback port,
//! clients we did not write run as processes, and the kernel's socket table.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use farewell::census::{self, Filter, StateCounts, StateSet};
use farewell::{Outcome, PeerFirst, Policy, TcpState};
use farewell_http::{ConnectionOutcome, ServeReport, Server};
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Peer-first with short deadlines and the server's drain limit.
pub fn peer_first() -> Policy {
    Policy::PeerFirst(PeerFirst {
        grace: Duration::from_secs(1),
        stall_timeout: Duration::from_millis(500),
        drain_limit: farewell_http::DEFAULT_DRAIN_LIMIT,
        ..PeerFirst::default()
    })
}

/// [`peer_first`] with another grace: a long one makes a client left
/// waiting for it obvious.
pub fn peer_first_with_grace(grace: Duration) -> Policy {
    let Policy::PeerFirst(p) = peer_first() else {
        unreachable!()
    };
    Policy::PeerFirst(PeerFirst { grace, ..p })
}

/// A server with test-sized deadlines.
pub fn server(policy: Policy) -> Server {
    Server::new()
        .policy(policy)
        .idle_timeout(Duration::from_secs(5))
        .shutdown_timeout(Duration::from_secs(3))
}

/// A farewell-http server running the demo handler, recording every outcome.
pub struct Running {
    pub addr: SocketAddr,
    pub outcomes: Arc<Mutex<Vec<Outcome>>>,
    /// Every connection's end as farewell-http saw it (`Server::on_connection`).
    pub connections: Arc<Mutex<Vec<ConnectionOutcome>>>,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<std::io::Result<ServeReport>>,
}

/// A listener on a port no other socket uses (see `farewell_lab::support::port`), so
/// the census on it counts this server's sockets only.
pub fn quiet_listener() -> TcpListener {
    let listener = farewell_lab::support::port::bind_quiet_port([127, 0, 0, 1].into()).unwrap();
    listener.set_nonblocking(true).unwrap();
    TcpListener::from_std(listener).unwrap()
}

pub async fn start(server: Server) -> Running {
    let listener = quiet_listener();
    let addr = listener.local_addr().unwrap();
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&outcomes);
    let connections = Arc::new(Mutex::new(Vec::new()));
    let ends = Arc::clone(&connections);
    let server = server
        .on_outcome(move |o| sink.lock().unwrap().push(o))
        .on_connection(move |c| ends.lock().unwrap().push(c));
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(server.serve_hyper(
        listener,
        service_fn(farewell_lab::support::http_demo::handle),
        async {
            let _ = stopped.await;
        },
    ));
    Running {
        addr,
        outcomes,
        connections,
        stop,
        done,
    }
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Shuts the server down (bounded) and returns its report; every teardown is over then.
    pub async fn shutdown(self) -> ServeReport {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(20), self.done)
            .await
            .expect("the server shuts down within 20s")
            .unwrap()
            .unwrap()
    }
}

/// Plain hyper (the baseline) running the demo handler; stop it with the sender.
pub async fn start_baseline() -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<u64>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(farewell_lab::support::http_baseline::serve(
        listener,
        service_fn(farewell_lab::support::http_demo::handle),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(3),
    ));
    (addr, stop, done)
}

/// The server-side sockets on `port` (the listener left out), once no
/// connection is in a transient closing state any more (bounded wait).
pub async fn settled_server_sockets(port: u16) -> StateCounts {
    let filter = Filter::local_port(port).states(StateSet::all().without(TcpState::Listen));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let counts = census::count_by_state(&filter).expect("census");
        let transient = counts.total() - counts.get(TcpState::TimeWait);
        if transient == 0 || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The client side of the server on `port`: its sockets by state, once
/// transient closing states have passed (bounded wait).
pub async fn client_sockets(port: u16) -> census::StateCounts {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let counts = census::count_by_state(&Filter::remote_port(port)).expect("census");
        let transient = counts.total() - counts.get(TcpState::TimeWait);
        if transient == 0 || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The census claim every peer-first test makes: nothing left on the server's port.
pub async fn assert_no_server_time_wait_nor_leftovers(port: u16) {
    let counts = settled_server_sockets(port).await;
    assert_eq!(
        counts.get(TcpState::TimeWait),
        0,
        "server TIME-WAIT on port {port}: {counts:?}"
    );
    assert_eq!(
        counts.total(),
        0,
        "server sockets left on port {port}: {counts:?}"
    );
}

/// Runs a client program (bounded), failing loudly when it is not installed.
pub async fn run(program: &str, args: &[&str]) -> std::process::Output {
    let child = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), child)
        .await
        .unwrap_or_else(|_| panic!("{program} ran past 30s"))
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}); install it: apt-get install {program}")
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `program args` with `input` on its stdin (then EOF), bounded; returns
/// stdout and how long the program ran.
pub async fn run_with_stdin(program: &str, args: &[&str], input: &[u8]) -> (Vec<u8>, Duration) {
    use tokio::io::AsyncWriteExt;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e})"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} ran past 20s"))
        .unwrap();
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    (output.stdout, took)
}

/// Checks `body` is exactly `n` bytes of the demo pattern.
pub fn assert_pattern(body: &[u8], n: usize) {
    assert_eq!(body.len(), n, "body length");
    if let Some(i) = (0..n).find(|&i| body[i] != farewell_lab::support::http_demo::pattern(i)) {
        panic!("body differs from the pattern at byte {i}");
    }
}

/// How many recorded outcomes took `path`.
pub fn count(outcomes: &Mutex<Vec<Outcome>>, path: farewell::Ending) -> usize {
    outcomes
        .lock()
        .unwrap()
        .iter()
        .filter(|o| o.ending == path)
        .count()
}

/// Python's `http.client`: POST `size` bytes to /upload (no `Expect:
/// 100-continue`) on 127.0.0.1:`port`; prints the status and the body.
/// Arguments: `port size`.
pub const UPLOAD: &str = r#"
import http.client, sys
port, size = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
conn.request("POST", "/upload", body=b"x" * size)
resp = conn.getresponse()
print(resp.status, resp.read().decode(), end="")
conn.close()
"#;

/// curl's status code for `url` with `extra` (no `--fail`), or its exit code
/// as `exit N` when it got no response.
pub async fn curl_status(url: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "-sS",
        "--max-time",
        "20",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("curl")
            .args(&args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("curl ends within 30s")
    .expect("curl runs");
    match out.status.code() {
        Some(0) => String::from_utf8(out.stdout).unwrap(),
        code => format!("exit {code:?}"),
    }
}
