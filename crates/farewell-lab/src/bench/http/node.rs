//! Node.js as a child process: the Node rows of `farewell bench http`. The
//! server is `crates/farewell-node/js/fixture/server.mjs`, a plain
//! `http.Server` (`node`) or the same with `farewell.attach(server)`
//! (`node+farewell`, the addon `cargo build [--release] -p farewell-node`
//! made). It answers `GET /` with a 16-byte body, as the demo handler does
//! with its 25 bytes.
//!
//! The server's CPU time is the node process's (utime + stime of
//! `/proc/PID/stat`, every thread: JavaScript, libuv's and, attached, the
//! addon's teardown thread). It stops when its stdin closes: the server
//! closes, waits (bounded) for the teardowns in flight, and exits; a bounded
//! wait, then SIGKILL to it alone as a last resort.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::lab::netns::Netns;

/// The fixture server, found from this crate's sources.
pub(super) const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../farewell-node/js/fixture/server.mjs"
);

/// How long node may take to listen, and to stop once asked.
const BOUND: Duration = Duration::from_secs(25);

/// Why the Node rows cannot run here, if they cannot: no `node`, no fixture,
/// or no addon (`index.js` loads `$FAREWELL_NODE_ADDON`, else the
/// workspace's `target/release/`, then `target/debug/`).
pub(super) fn unavailable() -> Option<String> {
    let runs = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        return Some("node is not installed (apt-get install nodejs)".to_owned());
    }
    let fixture = Path::new(FIXTURE);
    if !fixture.exists() {
        return Some(format!("{FIXTURE} is missing"));
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let addons: Vec<PathBuf> = match std::env::var_os("FAREWELL_NODE_ADDON") {
        Some(given) => vec![PathBuf::from(given)],
        None => ["release", "debug"]
            .iter()
            .map(|p| target.join(p).join("libfarewell_node.so"))
            .collect(),
    };
    (!addons.iter().any(|a| a.exists())).then(|| {
        "the farewell-node addon is not built (cargo build --release -p farewell-node)".to_owned()
    })
}

/// A node process serving the fixture.
pub(super) struct NodeServer {
    pub(super) addr: SocketAddr,
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl NodeServer {
    /// Starts node on `listen` (port 0 for any), attached to farewell or
    /// not, inside `ns` when given (`ip netns exec`, which execs node: the
    /// child is node either way); waits (bounded) until it listens. The
    /// address it reports has `reach` as its IP. Blocks: call it from
    /// `spawn_blocking` in async code.
    pub(super) fn start(
        attached: bool,
        listen: SocketAddr,
        reach: IpAddr,
        ns: Option<&Netns>,
    ) -> anyhow::Result<NodeServer> {
        let mut command = match ns {
            None => Command::new("node"),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.name(), "node"]);
                c
            }
        };
        command
            .arg(FIXTURE)
            .args(["--host", &listen.ip().to_string()])
            .args(["--port", &listen.port().to_string()])
            .args(attached.then_some("--attached"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = {
            // A fork: see the fork hazard in `lab::netns`.
            let _forking = crate::lab::netns::no_forks();
            command.spawn().context("starting node")?
        };
        let stdout = child.stdout.take().context("node's stdout")?;
        let (send, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name("bench-node-out".to_owned())
            .spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if send.send(line).is_err() {
                        break;
                    }
                }
            })?;
        let mut server = NodeServer {
            addr: listen,
            child,
            lines,
        };
        let first = server.lines.recv_timeout(BOUND);
        let port = first
            .as_deref()
            .ok()
            .and_then(|line| line.strip_prefix("{\"port\":")?.strip_suffix('}'))
            .and_then(|port| port.parse::<u16>().ok());
        match port {
            Some(port) => {
                server.addr = SocketAddr::new(reach, port);
                Ok(server)
            }
            None => {
                let status = server.child.try_wait()?;
                bail!("node did not start listening within {BOUND:?} (first line {first:?}, exit {status:?})")
            }
        }
    }

    /// The node process's CPU time so far (user + system, every thread).
    pub(super) fn cpu(&self) -> Option<Duration> {
        crate::bench::cpu::process_cpu(self.child.id())
    }

    /// Closes node's stdin: the server closes and, once its teardowns are
    /// over (bounded), node exits. Waits for that (bounded), then kills it.
    pub(super) fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + BOUND;
        // Its last line is the stats; or nothing, if it died.
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if line.starts_with("{\"stats\"") {
                break;
            }
        }
        for _ in 0..100 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
