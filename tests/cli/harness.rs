//! Harness for the `farewell serve` tests: start the real binary, drive it
//! with client programs we did not write (nc, socat, python3), and judge
//! every scenario by the kernel's socket table.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use farewell::census::{self, Filter, SocketEntry, StateCounts};
use farewell::TcpState;

const BIN: &str = env!("CARGO_BIN_EXE_farewell");

/// Every wait in these tests ends by this bound; nothing hangs.
pub const BOUND: Duration = Duration::from_secs(20);

/// A running `farewell serve` (or `serve-http`), killed on drop if still running.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    /// What the subcommand's last stderr line starts with.
    summary: &'static str,
}

impl Server {
    /// `farewell serve --listen 127.0.0.1:0 ARGS…`
    pub fn start(args: &[&str]) -> Server {
        Server::spawn(Command::new(BIN), "serve", "127.0.0.1:0", args)
    }

    /// As [`Server::start`], listening on `listen`.
    pub fn start_on(listen: &str, args: &[&str]) -> Server {
        Server::spawn(Command::new(BIN), "serve", listen, args)
    }

    /// As [`Server::start`], under `ulimit -n fds` (a shell sets it, then execs the server).
    pub fn start_with_fd_limit(fds: u32, args: &[&str]) -> Server {
        Server::spawn(fd_limited(fds), "serve", "127.0.0.1:0", args)
    }

    /// `farewell serve-http --listen LISTEN ARGS…` under `ulimit -n fds`.
    pub fn serve_http_with_fd_limit(fds: u32, listen: &str, args: &[&str]) -> Server {
        Server::spawn(fd_limited(fds), "serve-http", listen, args)
    }

    fn spawn(
        mut command: Command,
        subcommand: &'static str,
        listen: &str,
        args: &[&str],
    ) -> Server {
        command
            .args([subcommand, "--listen", listen])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn farewell {subcommand}: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut all = sink.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        let mut server = Server {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            stderr,
            summary: match subcommand {
                "serve" => "farewell serve: ",
                _ => "shut down: ",
            },
        };
        let line = server.wait_for_stderr("listening on ");
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("an address after 'listening on'");
        server.addr = addr.parse().expect("a socket address");
        server
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The stderr lines logged at WARN.
    pub fn warnings(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|l| l.contains("WARN"))
            .map(str::to_owned)
            .collect()
    }

    /// Waits (bounded) for a stderr line containing `needle`; returns it.
    pub fn wait_for_stderr(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(line) = self.stderr().lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Give the reader thread a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "the server exited ({status}) before printing {needle:?}:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} on stderr within {BOUND:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns its status and all of stderr.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        // The shell's own kill builtin: no procps needed.
        let status = Command::new("sh")
            .args(["-c", "kill -TERM \"$0\"", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + BOUND;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within {BOUND:?} after SIGTERM:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        // The reader thread ends at EOF; wait for the summary line it collects.
        let until = Instant::now() + Duration::from_secs(5);
        while !self.stderr().contains(self.summary) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        (status, self.stderr())
    }
}

/// `sh -c 'ulimit -n FDS && exec farewell …'`: the server under a descriptor limit.
fn fd_limited(fds: u32) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("ulimit -n {fds} && exec \"$0\" \"$@\""))
        .arg(BIN);
    sh
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's sockets: local address the server's IP and port (other
/// programs on the machine may use the same port number on another address).
pub fn server_sockets(addr: SocketAddr) -> Vec<SocketEntry> {
    census::dump(&Filter::local_port(addr.port()))
        .expect("census")
        .into_iter()
        .filter(|e| e.local.ip() == addr.ip() || e.local.ip().is_unspecified())
        .collect()
}

/// The server's sockets by state.
pub fn census(addr: SocketAddr) -> StateCounts {
    server_sockets(addr).iter().map(|e| e.state).collect()
}

/// Waits (bounded) until the server's address holds nothing but `listeners`
/// listening sockets and TIME-WAIT entries, then returns the census.
pub fn settled(addr: SocketAddr, listeners: usize) -> StateCounts {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counts = census(addr);
        let settled = counts.get(TcpState::Listen) == listeners
            && counts.total() == listeners + counts.get(TcpState::TimeWait);
        if settled || Instant::now() > deadline {
            return counts;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The peer-first promise, read from the kernel: no server TIME-WAIT and no
/// socket left on the server's address but the listener (`listeners` is 0 after exit).
pub fn assert_clean(addr: SocketAddr, listeners: usize) {
    let counts = settled(addr, listeners);
    assert_eq!(
        counts.get(TcpState::TimeWait),
        0,
        "server TIME-WAIT on {addr}: {counts}\n{:#?}",
        server_sockets(addr)
    );
    assert_eq!(
        counts.total(),
        listeners,
        "sockets left on {addr}: {counts}\n{:#?}",
        server_sockets(addr)
    );
}

/// A Python client (CPython's socket module): connects, sends `send`, reads
/// until a `BYE` line, EOF or reset, prints what it received, closes.
/// With `until-eof` it reads on after `BYE`, until the server closes.
/// With `rcvbuf` it shrinks its receive buffer and never reads.
const PY_CLIENT: &str = r#"
import socket, sys, time
host, port, send, mode = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3]), sys.argv[4]
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
if mode == 'never-reads':
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.settimeout(15)
try:
    s.connect((host, port))
except ConnectionResetError:
    sys.stdout.write('<RESET>')  # reset before connect() returned
    sys.exit(0)
if mode == 'never-reads':
    s.settimeout(2)
    try:
        while True:
            s.sendall(send)
    except OSError:
        pass
    time.sleep(float(sys.argv[5]))
    sys.stdout.write('never-read')
    s.close()
    sys.exit(0)
data = b''
try:
    if send:
        s.sendall(send)
except OSError:
    pass  # the server may have said goodbye (and reset) already: read what came
try:
    while mode == 'until-eof' or not (b'BYE ' in data and data.endswith(b'\n')):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except OSError:
    data += b'<RESET>'
sys.stdout.buffer.write(data)
s.close()
"#;

/// Runs the Python client against `addr`, sending `send`; returns what it received.
pub fn python(addr: SocketAddr, send: &[u8]) -> Vec<u8> {
    python_mode(addr, send, &["talk"])
}

/// The Python client in another mode (e.g. `["never-reads", "3"]`).
pub fn python_mode(addr: SocketAddr, send: &[u8], mode: &[&str]) -> Vec<u8> {
    let hex: String = send.iter().map(|b| format!("{b:02x}")).collect();
    let out = Command::new("timeout")
        .args([
            "30",
            "python3",
            "-c",
            PY_CLIENT,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            &hex,
        ])
        .args(mode)
        .output()
        .expect("python3 must be installed");
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Pipes `input` into `sh -c script` (with `$PORT` set) and returns its stdout.
pub fn shell_client(script: &str, port: u16, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("timeout")
        .args(["30", "sh", "-c", script])
        .env("PORT", port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A blocking Rust client: connect and say HELLO.
pub fn hello(addr: SocketAddr, id: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(BOUND)).unwrap();
    s.write_all(format!("HELLO {id}\n").as_bytes()).unwrap();
    s
}

/// Reads one line (bounded by the socket's read timeout).
pub fn read_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        match s.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => line.push(byte[0]),
            Err(e) => panic!(
                "read failed after {:?}: {e}",
                String::from_utf8_lossy(&line)
            ),
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Scrapes the Prometheus endpoint at `addr`: one HTTP/1.1 GET with
/// `Connection: close`, the body read by its `Content-Length`, then we close
/// first (the endpoint is peer-first: it waits for our FIN and keeps no
/// TIME-WAIT). Returns the body and our end's address.
pub fn scrape(addr: SocketAddr) -> (String, SocketAddr) {
    let mut s = TcpStream::connect(addr).expect("connect to --metrics");
    s.set_read_timeout(Some(BOUND)).unwrap();
    let client = s.local_addr().unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200 "), "{status:?}");
    let mut length = None;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse::<usize>().unwrap());
            }
        }
    }
    let mut body = vec![0; length.expect("a Content-Length header")];
    reader.read_exact(&mut body).unwrap();
    (String::from_utf8(body).unwrap(), client)
}

/// Reads the `metrics on http://ADDR/metrics` line of a server started with `--metrics`.
pub fn metrics_addr(server: &mut Server) -> SocketAddr {
    let line = server.wait_for_stderr("metrics on http://");
    line.split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// The value of one metric line (`name{labels} value`), or 0 when absent.
pub fn metric(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
