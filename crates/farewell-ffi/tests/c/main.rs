//! The C side of libfarewell, built and run by `cargo test`: the examples and
//! test programs are compiled with `cc` against `include/farewell.h` and the
//! library cargo just built, then driven by clients we did not write (Python's
//! `socket`, `nc`), and every TIME-WAIT claim is checked in the kernel's own
//! socket table (sock_diag), never in the library's bookkeeping.
//!
//! Needs `cc`, `pkg-config` and libuv's headers (`libuv1-dev`), `python3`,
//! `nc`, `valgrind`; each test skips with the reason when one is missing (and
//! fails under `FAREWELL_REQUIRE_TOOLS`, as `scripts/test` sets it).

mod bad_input;
mod examples;

use std::io::{BufRead, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use farewell::census::{self, Filter, StateSet};
use farewell::TcpState;

/// This crate's directory.
fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put `libfarewell_ffi.so` and `.a`: beside this test binary
/// (`target/<profile>/deps`), built by the same rustc run as the rlib it links.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe
        .parent()
        .expect("the test binary's directory")
        .to_path_buf();
    for dir in [
        deps.clone(),
        deps.parent().map(Path::to_path_buf).unwrap_or_default(),
    ] {
        if dir.join("libfarewell_ffi.so").exists() && dir.join("libfarewell_ffi.a").exists() {
            return dir;
        }
    }
    panic!(
        "libfarewell_ffi.so/.a not found beside {}: build them with `cargo build -p farewell-ffi`",
        exe.display()
    );
}

/// True when libuv's headers are installed (`pkg-config --exists libuv`);
/// otherwise says why `test` is skipped, as `tools::require` does (and fails
/// under `FAREWELL_REQUIRE_TOOLS`).
fn require_libuv(test: &str) -> bool {
    let found = Command::new("pkg-config")
        .args(["--exists", "libuv"])
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    farewell_testkit::support::tools::skip(
        test,
        "needs libuv's headers (pkg-config libuv); install with \
         `apt-get install libuv1-dev pkg-config`, or run `scripts/test` as root",
    )
}

/// How a C program links libfarewell.
enum Link {
    /// Against `libfarewell_ffi.so`, found at run time through an rpath.
    Shared,
    /// Against `libfarewell_ffi.a` (and what the Rust standard library needs).
    Static,
}

/// Compiles `source` (relative to this crate) into an executable named
/// `name`, as C99 with every warning an error, against the header and the
/// library; `extra` are more arguments (e.g. libuv's flags). Give each test
/// its own `name`: tests run in parallel, and running a file another test is
/// writing fails (`ETXTBSY`).
fn compile(source: &str, name: &str, link: Link, extra: &[String]) -> PathBuf {
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ffi-c");
    std::fs::create_dir_all(&out_dir).unwrap();
    let exe = out_dir.join(name);
    let lib = lib_dir();
    let mut cc = Command::new("cc");
    cc.args([
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        "-g",
        "-O1",
    ])
    .arg("-I")
    .arg(crate_dir().join("include"))
    .arg(crate_dir().join(source))
    .arg("-o")
    .arg(&exe);
    match link {
        Link::Shared => {
            cc.arg("-L").arg(&lib).arg("-lfarewell_ffi");
            // DT_RPATH, searched before LD_LIBRARY_PATH: `cargo test` puts
            // target/<profile> there, whose copy of the library may be older.
            cc.arg(format!("-Wl,--disable-new-dtags,-rpath,{}", lib.display()));
        }
        Link::Static => {
            cc.arg(lib.join("libfarewell_ffi.a"));
            cc.args(["-lpthread", "-ldl", "-lm"]);
        }
    }
    cc.args(extra);
    let output = cc.output().expect("run cc");
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "cc {source}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    exe
}

/// `pkg-config --cflags --libs libuv`, split.
fn libuv_flags() -> Vec<String> {
    let output = Command::new("pkg-config")
        .args(["--cflags", "--libs", "libuv"])
        .output()
        .expect("run pkg-config");
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// A port on 127.0.0.1 that no socket on the machine uses (not even
/// TIME-WAIT), below the ephemeral range: the census of it sees only the
/// example's sockets. Released for the C server to bind.
fn quiet_port() -> u16 {
    let listener =
        farewell_testkit::support::port::bind_quiet_port(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .expect("a quiet port");
    listener.local_addr().unwrap().port()
}

/// A C server under test: its stdout lines arrive on a channel.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    /// Starts `exe` with `args` and waits (at most 10 s) for its "listening" line.
    fn start(exe: &Path, args: &[String]) -> Server {
        let mut child = Command::new(exe)
            .args(args)
            .env_remove("LD_LIBRARY_PATH")
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("start the server");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            lines,
            seen: Vec::new(),
        };
        server
            .wait_for(
                |l| l.starts_with("listening on "),
                1,
                Duration::from_secs(10),
            )
            .expect("the server says it listens");
        server
    }

    /// Waits (bounded) until `count` lines (counted from the start) match
    /// `matches`; returns them, or None on timeout.
    fn wait_for(
        &mut self,
        matches: impl Fn(&str) -> bool,
        count: usize,
        limit: Duration,
    ) -> Option<Vec<String>> {
        let deadline = Instant::now() + limit;
        loop {
            let found: Vec<String> = self.seen.iter().filter(|l| matches(l)).cloned().collect();
            if found.len() >= count {
                return Some(found);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => return None,
            }
        }
    }

    /// The "outcome ..." lines, once there are `count` of them (at most `limit`).
    fn outcomes(&mut self, count: usize, limit: Duration) -> Vec<String> {
        self.wait_for(|l| l.starts_with("outcome "), count, limit)
            .unwrap_or_else(|| {
                panic!(
                    "{count} outcomes expected; the server said:\n{}",
                    self.seen.join("\n")
                )
            })
    }

    /// Sends SIGTERM and waits at most `limit` for the exit (then SIGKILL).
    fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on the pid of a child we started and have not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = wait_bounded(&mut self.child, limit);
        // Whatever it printed before exiting.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits for `child` at most `limit`; kills it when the time is up (None).
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A client process and what it printed.
struct Client {
    name: String,
    child: Child,
    /// Held open for clients that must not see EOF on stdin (a silent `nc`).
    stdin: Option<std::process::ChildStdin>,
}

impl Client {
    fn python(mode: &str, port: u16) -> Client {
        let child = Command::new("python3")
            .arg(crate_dir().join("tests/c/clients.py"))
            .args([mode, &port.to_string()])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("start python3");
        Client {
            name: format!("python {mode}"),
            child,
            stdin: None,
        }
    }

    /// `nc` sending `input` (then EOF, and with `-N` a FIN), or, with `None`,
    /// sending nothing and keeping stdin open.
    fn nc(name: &str, port: u16, input: Option<&str>) -> Client {
        let mut cmd = Command::new("nc");
        if input.is_some() {
            cmd.arg("-N");
        }
        let mut child = cmd
            .args(["127.0.0.1", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start nc");
        let mut stdin = child.stdin.take();
        if let Some(input) = input {
            stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        Client {
            name: name.to_owned(),
            child,
            stdin,
        }
    }

    /// Waits (bounded) and returns what it printed.
    fn finish(mut self, limit: Duration) -> (String, String) {
        let status = wait_bounded(&mut self.child, limit);
        drop(self.stdin.take());
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            use std::io::Read as _;
            let _ = stdout.read_to_string(&mut out);
        }
        assert!(status.is_some(), "{} did not end in {limit:?}", self.name);
        (self.name, out)
    }
}

/// The server's sockets on `port` (the listener left out), once none is in a
/// transient closing state (at most 3 s).
fn settled_server_sockets(port: u16) -> census::StateCounts {
    let filter = Filter::local_port(port).states(StateSet::all().without(TcpState::Listen));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let counts = census::count_by_state(&filter).expect("census");
        let transient = counts.total() - counts.get(TcpState::TimeWait);
        if transient == 0 || Instant::now() > deadline {
            return counts;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every socket of the kernel's table on `port`, either side, as `ss` would list them.
fn table(port: u16) -> String {
    let mut rows = Vec::new();
    for (side, filter) in [
        ("server", Filter::local_port(port)),
        ("client", Filter::remote_port(port)),
    ] {
        for entry in census::dump(&filter).expect("census") {
            rows.push(format!(
                "  {side}  {:<12} {:<21} -> {}",
                entry.state.to_string(),
                entry.local.to_string(),
                entry.remote
            ));
        }
    }
    if rows.is_empty() {
        rows.push("  (empty)".to_owned());
    }
    rows.join("\n")
}

/// The functions `include/farewell.h` declares.
fn declared_functions() -> Vec<String> {
    let header = std::fs::read_to_string(crate_dir().join("include/farewell.h")).unwrap();
    let mut names: Vec<String> = header
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('#') && !l.starts_with("typedef"))
        .filter_map(|l| {
            let before = l.split('(').next()?;
            let name = before.rsplit([' ', '*']).next()?;
            (l.contains('(') && name.starts_with("fw_")).then(|| name.to_owned())
        })
        .collect();
    names.sort();
    names
}

#[test]
fn the_shared_library_exports_exactly_the_headers_functions() {
    if !farewell_testkit::support::tools::require(
        "the_shared_library_exports_exactly_the_headers_functions",
        &["nm"],
    ) {
        return;
    }
    let output = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(lib_dir().join("libfarewell_ffi.so"))
        .output()
        .expect("run nm");
    let mut exported: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .collect();
    exported.sort();
    let declared = declared_functions();
    assert!(declared.len() >= 18, "{declared:?}");
    assert_eq!(exported, declared);
}
