//! Integration tests of `farewell serve-http` and `farewell bench http`: the
//! real binary, real clients (curl, wrk), and the kernel's socket table.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use farewell::census::{self, Filter, StateSet};
use farewell::TcpState;
use serde_json::Value;

/// Kills the server if a test fails before it exits.
pub(crate) struct Server(Child);

impl Server {
    /// The server process's id (for /proc/PID/status).
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `farewell serve-http --listen 127.0.0.1:PORT ARGS` and reads the
/// bound address from stderr. PORT is below the ephemeral range with no
/// sockets on it (`farewell_lab::support::port`), so the census on it sees only this
/// server's sockets, not TIME-WAIT left by other tests' clients.
pub(crate) fn serve_http(args: &[&str]) -> (Server, String, BufReader<std::process::ChildStderr>) {
    let quiet = farewell_lab::support::port::bind_quiet_port([127, 0, 0, 1].into()).unwrap();
    let listen = quiet.local_addr().unwrap().to_string();
    drop(quiet);
    let mut child = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(["serve-http", "--listen", &listen])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the farewell binary runs");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("first stderr line: {line:?}"))
        .to_owned();
    (Server(child), addr, stderr)
}

/// curl with `args` (10 s at most); its output, asserting it succeeded.
pub(crate) fn curl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs (apt-get install curl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Sends SIGTERM and waits (bounded) for the exit; returns the rest of stderr.
pub(crate) fn terminate(
    mut server: Server,
    mut stderr: BufReader<std::process::ChildStderr>,
) -> String {
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve-http did not exit within 20s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "exit {status}: {rest}");
    rest
}

pub(crate) fn server_time_wait(port: u16) -> usize {
    census::count_by_state(&Filter::local_port(port).states(StateSet::single(TcpState::TimeWait)))
        .unwrap()
        .get(TcpState::TimeWait)
}

#[test]
fn serve_http_connection_close_then_sigterm_leaves_no_server_time_wait() {
    if !farewell_lab::support::tools::require(
        "serve_http_connection_close_then_sigterm_leaves_no_server_time_wait",
        &["curl"],
    ) {
        return;
    }
    let (server, addr, stderr) = serve_http(&["--grace", "1s", "--drain-timeout", "3s"]);
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let url = format!("http://{addr}/");
    let body = curl(&["-H", "Connection: close", &url, &url]);
    assert_eq!(
        body,
        b"hello from farewell-http\nhello from farewell-http\n"
    );
    let summary = terminate(server, stderr);
    assert!(summary.contains("2 connections, 2 requests"), "{summary}");
    assert!(summary.contains("peer-closed 2"), "{summary}");
    assert_eq!(server_time_wait(port), 0);
}

#[test]
fn serve_http_stream_to_http10_client_ends_at_once_with_no_server_time_wait() {
    if !farewell_lab::support::tools::require(
        "serve_http_stream_to_http10_client_ends_at_once_with_no_server_time_wait",
        &["curl", "nc"],
    ) {
        return;
    }
    // A 5 s grace: a client left waiting for it would take that long.
    let (server, addr, stderr) = serve_http(&["--grace", "5s", "--drain-timeout", "3s"]);
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let n = 200_000;
    let started = Instant::now();
    let body = curl(&["--http1.0", &format!("http://{addr}/stream/{n}")]);
    let took = started.elapsed();
    assert_eq!(body.len(), n);
    assert!(
        body.iter()
            .enumerate()
            .all(|(i, &b)| b == b'a' + (i % 26) as u8),
        "body differs from the a-z pattern"
    );
    assert!(
        took < Duration::from_secs(4),
        "curl took {took:?}: it waited for the grace, not the server's FIN"
    );
    // A request, then the client's FIN (nc -N): answered all the same.
    let mut nc = Command::new("nc")
        .args(["-N", "-w", "10", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("nc runs (apt-get install netcat-openbsd)");
    std::io::Write::write_all(
        &mut nc.stdin.take().unwrap(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let out = nc.wait_with_output().unwrap();
    let response = String::from_utf8_lossy(&out.stdout);
    assert!(
        response.starts_with("HTTP/1.1 200 OK") && response.ends_with("hello from farewell-http\n"),
        "{response:?}"
    );
    let summary = terminate(server, stderr);
    assert!(summary.contains("2 connections, 2 requests"), "{summary}");
    assert!(
        summary.contains("read to the close: 1 ended by our FIN"),
        "{summary}"
    );
    assert_eq!(server_time_wait(port), 0);
}

#[test]
fn serve_http_plain_policy_leaves_server_time_wait() {
    if !farewell_lab::support::tools::require(
        "serve_http_plain_policy_leaves_server_time_wait",
        &["python3"],
    ) {
        return;
    }
    let (server, addr, stderr) = serve_http(&["--policy", "plain", "--drain-timeout", "3s"]);
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    // A client that reads until the server closes, then closes: the server's
    // FIN is first for certain (curl closes on `Connection: close` and can win
    // the race, which made this contrast flaky).
    let script = r#"
import socket, sys
for _ in range(3):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    assert b"hello from farewell-http" in data, data
    s.close()
print("ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &port.to_string()])
        .output()
        .expect("python3");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{out:?}");
    let summary = terminate(server, stderr);
    assert!(summary.contains("plain-close 3"), "{summary}");
    assert_eq!(server_time_wait(port), 3);
}

#[test]
fn serve_http_rejects_unknown_policy_and_lists_the_choices() {
    let out = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(["serve-http", "--policy", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("peer-first") && err.contains("lingering"),
        "{err}"
    );
}

#[test]
fn bench_help_names_the_kinds_and_an_unknown_kind_is_refused() {
    let help = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(["bench", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for kind in ["churn", "scale", "http"] {
        assert!(text.contains(kind), "{kind} in {text}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(["bench", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope"), "{err}");
}

/// Runs `farewell bench http --quick --json ARGS`; returns its report.
fn bench_http_quick(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(["bench", "http", "--quick", "--json"])
        .args(args)
        .output()
        .expect("the farewell binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

#[test]
fn bench_http_quick_json_has_every_row_and_peer_first_keeps_no_time_wait() {
    if !farewell_lab::support::tools::require(
        "bench_http_quick_json_has_every_row_and_peer_first_keeps_no_time_wait",
        &["wrk", "nginx"],
    ) {
        return;
    }
    let report = bench_http_quick(&[]);
    let rows = report["rows"].as_array().expect("rows");
    let runs = report["runs"].as_array().expect("runs");
    for field in ["threads", "connections", "duration_s", "rounds"] {
        assert!(report["wrk"][field].is_number(), "wrk.{field}");
    }
    for field in ["threads", "connections", "duration_s", "source_addresses"] {
        assert!(report["spread"][field].is_number(), "spread.{field}");
    }
    let servers = ["farewell-http", "hyper"];
    for mode in ["close", "close-spread", "keep-alive"] {
        for server in servers {
            let row = rows
                .iter()
                .find(|r| r["server"] == server && r["mode"] == mode)
                .unwrap_or_else(|| panic!("no row for {server} {mode}"));
            for field in [
                "requests_per_sec",
                "server_cpu_us_per_request",
                "server_time_wait",
                "client_time_wait",
                "errors",
            ] {
                assert!(row[field].is_number(), "{server} {mode} {field}: {row}");
            }
            assert!(row["ratio_to_hyper"].is_number(), "{row}");
        }
    }
    for run in runs {
        for field in [
            "server",
            "mode",
            "round",
            "requests",
            "requests_per_sec",
            "errors",
            "server_time_wait",
            "client_time_wait",
        ] {
            assert!(!run[field].is_null(), "run.{field}: {run}");
        }
        assert!(
            run["requests"].as_u64().unwrap() > 0,
            "wrk got responses: {run}"
        );
        if run["server"] == "farewell-http" {
            assert_eq!(run["server_time_wait"], 0, "{run}");
        }
    }
    // Plain hyper under Connection: close churn does leave TIME-WAIT: the census can see it.
    let hyper_close = runs
        .iter()
        .find(|r| r["server"] == "hyper" && r["mode"] == "close")
        .unwrap();
    assert!(
        hyper_close["server_time_wait"].as_u64().unwrap() > 0,
        "{hyper_close}"
    );
}

/// The close-spread mode: our own client, every connection from its own
/// 127.1.x.y address. The kernel's table says where TIME-WAIT went: to the
/// clients under peer-first, to the server under plain hyper.
#[test]
fn bench_http_close_spread_moves_time_wait_to_the_many_clients_and_sees_no_errors() {
    if !farewell_lab::support::tools::require(
        "bench_http_close_spread_moves_time_wait_to_the_many_clients_and_sees_no_errors",
        &["wrk"],
    ) {
        return;
    }
    let report = bench_http_quick(&["--no-nginx", "--modes", "close-spread"]);
    let runs = report["runs"].as_array().expect("runs");
    assert!(
        runs.iter().all(|r| r["mode"] == "close-spread"),
        "--modes close-spread runs that mode only: {report}"
    );
    let run = |server: &str| {
        runs.iter()
            .find(|r| r["server"] == server)
            .unwrap_or_else(|| panic!("no close-spread run for {server}: {report}"))
    };
    for server in ["farewell-http", "hyper"] {
        let run = run(server);
        assert!(run["requests"].as_u64().unwrap() > 0, "{run}");
        assert_eq!(
            run["errors"], 0,
            "every response a 200 with the body: {run}"
        );
        for kind in ["connect", "timeout", "reset", "bad_response"] {
            assert_eq!(run["error_kinds"][kind], 0, "{kind}: {run}");
        }
    }
    let farewell = run("farewell-http");
    assert_eq!(farewell["server_time_wait"], 0, "peer-first: {farewell}");
    assert!(
        farewell["client_time_wait"].as_u64().unwrap() > 0,
        "the clients hold TIME-WAIT: {farewell}"
    );
    let hyper = run("hyper");
    assert!(
        hyper["server_time_wait"].as_u64().unwrap() > 0,
        "plain hyper closes first and keeps TIME-WAIT: {hyper}"
    );
}

/// `--rate`: the close-spread clients start request `k` at `k / rate`
/// seconds, so a 1 s run (`--quick`) at 40 requests per second answers at
/// most 40 of the 300 it may start; and a rate that is no number is refused
/// with a message that says what to give.
#[test]
fn bench_http_rate_paces_the_close_spread_clients() {
    let report = bench_http_quick(&["--no-nginx", "--modes", "close-spread", "--rate", "40"]);
    assert_eq!(report["spread"]["rate"], 40.0, "{report}");
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "one run per in-process server: {report}");
    for run in runs {
        let requests = run["requests"].as_u64().unwrap();
        assert!(
            (1..=40).contains(&requests),
            "paced at 40/s for 1 s, answered {requests}: {run}"
        );
        assert_eq!(run["errors"], 0, "{run}");
    }
    // Paced, the machine's CPU per response is the figure to compare: each
    // row has it side by side with hyper's (hyper's own ratio is 1).
    for row in report["rows"].as_array().expect("rows") {
        let ratio = row["machine_cpu_ratio_to_hyper"]
            .as_f64()
            .unwrap_or_else(|| panic!("a machine CPU ratio: {row}"));
        if row["server"] == "hyper" {
            assert!((ratio - 1.0).abs() < 1e-9, "{row}");
        } else {
            assert!(ratio > 0.0, "{row}");
        }
    }

    let out = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(["bench", "http", "--rate", "fast"])
        .output()
        .expect("the farewell binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("requests per second"),
        "the error says what a rate is: {stderr}"
    );
}

/// `bench http --tls`: the three servers over TLS, wrk over https; the
/// close-spread mode is left out (its client speaks plain HTTP) and
/// farewell-http keeps no TIME-WAIT.
#[test]
fn bench_http_tls_quick_runs_every_server_over_tls_and_peer_first_keeps_no_time_wait() {
    if !farewell_lab::support::tools::require(
        "bench_http_tls_quick_runs_every_server_over_tls_and_peer_first_keeps_no_time_wait",
        &["wrk", "nginx"],
    ) {
        return;
    }
    let report = bench_http_quick(&["--tls"]);
    assert_eq!(report["tls"], true, "{report}");
    let runs = report["runs"].as_array().expect("runs");
    for server in ["farewell-http", "hyper", "nginx"] {
        for mode in ["close", "keep-alive"] {
            let run = runs
                .iter()
                .find(|r| r["server"] == server && r["mode"] == mode)
                .unwrap_or_else(|| panic!("no run for {server} {mode}: {report}"));
            assert!(
                run["requests"].as_u64().unwrap() > 0,
                "wrk got responses: {run}"
            );
        }
    }
    assert!(
        runs.iter().all(|r| r["mode"] != "close-spread"),
        "close-spread is left out over TLS: {report}"
    );
    for run in runs.iter().filter(|r| r["server"] == "farewell-http") {
        assert_eq!(run["server_time_wait"], 0, "{run}");
    }
}

/// The live (not zombie) processes that hold a file of, or name, one of the
/// nginx temp dirs of the bench whose pid is `bench` (`farewell-bench-nginx-<pid>-<n>`):
/// nginx's workers keep its error log open, so a leaked one shows up here.
fn processes_of_bench_nginx(bench: u32) -> Vec<String> {
    let marker = format!("farewell-bench-nginx-{bench}-");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .rfind(')')
            .is_some_and(|at| stat[at + 1..].trim_start().starts_with('Z'))
        {
            continue;
        }
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .replace('\0', " ");
        let holds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .any(|target| target.to_string_lossy().contains(&marker));
        if holds || cmdline.contains(&marker) {
            found.push(format!("{pid} {cmdline}"));
        }
    }
    found
}

/// Regression (issue 16): `Drop for Nginx` killed the master only, and
/// nginx's workers outlived every run, re-parented to init and listening.
#[test]
fn bench_http_leaves_no_nginx_process_behind() {
    if !farewell_lab::support::tools::require(
        "bench_http_leaves_no_nginx_process_behind",
        &["wrk", "nginx"],
    ) {
        return;
    }
    let child = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args([
            "bench",
            "http",
            "--quick",
            "--json",
            "--modes",
            "keep-alive",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the farewell binary runs");
    let bench = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert!(
        report["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["server"] == "nginx"),
        "nginx ran: {report}"
    );
    assert_eq!(
        processes_of_bench_nginx(bench),
        Vec::<String>::new(),
        "nginx processes of bench {bench} outlive it"
    );
}

/// `--hosts 2`: wrk from two client namespaces, each over its own veth pair
/// to a fresh server namespace. The census inside the server's namespace
/// says peer-first kept no TIME-WAIT, from many hosts as on loopback.
#[test]
fn bench_http_hosts_quick_reports_many_host_rows_and_peer_first_keeps_no_time_wait() {
    let name = "bench_http_hosts_quick_reports_many_host_rows_and_peer_first_keeps_no_time_wait";
    if !farewell_lab::support::tools::require(name, &["wrk"]) {
        return;
    }
    if let Some(why) = farewell_lab::lab::netns::unavailable() {
        farewell_lab::support::tools::skip(name, &why);
        return;
    }
    let report = bench_http_quick(&["--no-nginx", "--hosts", "2", "--modes", "close"]);
    assert_eq!(report["hosts"]["hosts"], 2, "{report}");
    assert!(report["hosts"]["connections_per_host"].is_number());
    assert!(report["hosts_skipped"].is_null(), "{report}");
    let rows = report["rows"].as_array().expect("rows");
    for server in ["farewell-http", "hyper"] {
        for hosts in [Value::Null, Value::from(2)] {
            let row = rows
                .iter()
                .find(|r| r["server"] == server && r["mode"] == "close" && r["hosts"] == hosts)
                .unwrap_or_else(|| panic!("no row for {server} close, hosts {hosts}"));
            for field in [
                "requests_per_sec",
                "ratio_to_hyper",
                "server_cpu_us_per_request",
                "server_time_wait",
                "client_time_wait",
                "errors",
            ] {
                assert!(row[field].is_number(), "{server} {field}: {row}");
            }
        }
    }
    let many: Vec<&Value> = report["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|r| r["hosts"] == 2)
        .collect();
    assert_eq!(many.len(), 2, "one many-host run per server");
    for run in many {
        assert!(run["requests"].as_u64().unwrap() > 0, "{run}");
        assert_eq!(run["errors"], 0, "{run}");
        // Each host's own census, toward the server: they add up to the column.
        let per_host: Vec<u64> = run["client_time_wait_per_host"]
            .as_array()
            .unwrap_or_else(|| panic!("client_time_wait_per_host: {run}"))
            .iter()
            .map(|tw| tw.as_u64().unwrap())
            .collect();
        assert_eq!(per_host.len(), 2, "one count per host: {run}");
        assert_eq!(
            per_host.iter().sum::<u64>(),
            run["client_time_wait"].as_u64().unwrap(),
            "{run}"
        );
        if run["server"] == "farewell-http" {
            assert_eq!(run["server_time_wait"], 0, "{run}");
            assert!(
                run["client_time_wait"].as_u64().unwrap() > 0,
                "the hosts keep TIME-WAIT: {run}"
            );
        } else {
            assert!(
                run["server_time_wait"].as_u64().unwrap() > 0,
                "plain hyper keeps TIME-WAIT: {run}"
            );
        }
    }
    // The bench has exited: a namespace of its (`farewell-<pid>-<n>-http-…`)
    // whose process is gone is one it left behind.
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("-http-"))
        .filter(|name| {
            let pid = name.split('-').nth(1).unwrap_or_default();
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
        .collect();
    assert_eq!(left, Vec::<String>::new(), "namespaces left behind");
}

/// The network namespaces `ip netns list` shows that bench `pid` made
/// (`farewell-<pid>-<n>-…`).
fn namespaces_of_bench(pid: u32) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    let prefix = format!("farewell-{pid}-");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// `--proxy nginx` (issue 22): nginx with its default upstream settings (a
/// new HTTP/1.0 connection per request, closed by nginx) in a namespace of
/// its own, in front of farewell-http (peer-first, and plain), and hyper,
/// each in a namespace of their own. The JSON has the proxy's and the
/// server's TIME-WAIT and the upstream errors per row; the rate ratio is
/// to the named baseline; peer-first keeps no TIME-WAIT on the server
/// while hyper, closing first, keeps its own; and the run leaves no
/// namespace and no nginx behind.
#[test]
fn bench_http_proxy_nginx_quick_reports_proxy_and_server_time_wait_and_cleans_up() {
    let name = "bench_http_proxy_nginx_quick_reports_proxy_and_server_time_wait_and_cleans_up";
    if !farewell_lab::support::tools::require(name, &["wrk", "nginx", "ip"]) {
        return;
    }
    if let Some(why) = farewell_lab::lab::netns::unavailable() {
        farewell_lab::support::tools::skip(name, &why);
        return;
    }
    #[rustfmt::skip]
    let child = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(["bench", "http", "--quick", "--json", "--no-nginx", "--modes", "keep-alive",
               "--proxy", "nginx", "--policy", "peer-first,plain", "--baseline", "farewell-http/plain"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the farewell binary runs");
    let bench = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(report["proxy"]["proxy"], "nginx", "{report}");
    assert!(report["proxy_skipped"].is_null(), "{report}");
    assert_eq!(report["baseline"], "farewell-http/plain", "{report}");

    let rows = report["rows"].as_array().expect("rows");
    for label in ["farewell-http", "farewell-http/plain", "hyper"] {
        let row = rows
            .iter()
            .find(|r| r["label"] == label && r["proxy"] == "nginx")
            .unwrap_or_else(|| panic!("no row for {label} behind nginx: {report}"));
        assert_eq!(row["mode"], "keep-alive", "{row}");
        assert!(row["requests_per_sec"].as_f64().unwrap() > 0.0, "{row}");
        for field in [
            "ratio_to_baseline",
            "ratio_to_hyper",
            "proxy_time_wait",
            "server_time_wait",
            "client_time_wait",
        ] {
            assert!(row[field].is_number(), "{label} {field}: {row}");
        }
        assert_eq!(row["errors"], 0, "no 502s from nginx: {row}");
        assert_eq!(row["proxy_upstream_errors"], 0, "{row}");
    }
    let plain = rows
        .iter()
        .find(|r| r["label"] == "farewell-http/plain" && r["proxy"] == "nginx")
        .unwrap();
    assert_eq!(plain["policy"], "plain", "{plain}");
    assert_eq!(
        plain["ratio_to_baseline"], 1.0,
        "the baseline's own: {plain}"
    );

    let behind: Vec<&Value> = report["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|r| r["proxy"] == "nginx")
        .collect();
    assert_eq!(behind.len(), 3, "one proxy run per server: {report}");
    for run in behind {
        assert!(run["requests"].as_u64().unwrap() > 0, "{run}");
        assert!(run["proxy_time_wait"].is_u64(), "{run}");
        assert!(run["proxy_upstream_errors"].is_u64(), "{run}");
        match (run["server"].as_str(), run["policy"].as_str()) {
            (Some("farewell-http"), Some("peer-first")) => {
                assert_eq!(run["server_time_wait"], 0, "peer-first behind nginx: {run}");
                // The proxy is one heavy client: past the threshold it keeps
                // no TIME-WAIT from us either.
                assert!(
                    run["proxy_time_wait"].as_u64().unwrap()
                        <= u64::from(farewell::DEFAULT_HEAVY_CLIENT_THRESHOLD),
                    "peer-first behind nginx: {run}"
                );
            }
            (Some("hyper"), None) => assert!(
                run["server_time_wait"].as_u64().unwrap() > 0,
                "plain hyper closes first and keeps TIME-WAIT: {run}"
            ),
            _ => {}
        }
    }
    assert_eq!(
        namespaces_of_bench(bench),
        Vec::<String>::new(),
        "namespaces of bench {bench} outlive it"
    );
    assert_eq!(
        processes_of_bench_nginx(bench),
        Vec::<String>::new(),
        "nginx processes of bench {bench} outlive it"
    );
}

#[test]
fn serve_http_metrics_count_connections_requests_and_causes_live() {
    use crate::harness::{metric, scrape};
    if !farewell_lab::support::tools::require(
        "serve_http_metrics_count_connections_requests_and_causes_live",
        &["curl"],
    ) {
        return;
    }
    let (server, addr, mut stderr) = serve_http(&["--metrics", "127.0.0.1:0"]);
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let metrics: std::net::SocketAddr = line
        .trim()
        .strip_prefix("metrics on http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("second stderr line: {line:?}"));
    let url = format!("http://{addr}/");
    // Two connections, one request each, both asked to close by the client.
    curl(&["-H", "Connection: close", &url, &url]);
    // Live: read while the server runs (the teardowns end within the grace).
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (body, _) = scrape(metrics);
        if metric(
            &body,
            "farewell_http_teardowns_total{ending=\"peer-closed\",time_wait=\"peer\"}",
        ) >= 2.0
            || Instant::now() > deadline
        {
            break body;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The scrapes' own connections are not counted (the endpoint has metrics off).
    assert_eq!(
        metric(&body, "farewell_http_connections_accepted_total"),
        2.0,
        "{body}"
    );
    assert_eq!(metric(&body, "farewell_http_requests_total"), 2.0, "{body}");
    assert_eq!(
        metric(&body, "farewell_http_connections_open"),
        0.0,
        "{body}"
    );
    assert_eq!(
        metric(
            &body,
            "farewell_http_connections_ended_total{cause=\"client-asked\"}"
        ),
        2.0,
        "{body}"
    );
    assert_eq!(
        metric(
            &body,
            "farewell_http_teardowns_total{ending=\"peer-closed\",time_wait=\"peer\"}"
        ),
        2.0,
        "{body}"
    );
    let summary = terminate(server, stderr);
    assert!(summary.contains("2 connections, 2 requests"), "{summary}");
    assert_eq!(server_time_wait(port), 0);
}

/// `--baseline` names a row of the run; anything else is refused before
/// anything runs, with the labels to choose from.
#[test]
fn bench_http_unknown_baseline_is_refused_with_the_labels() {
    let out = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args([
            "bench",
            "http",
            "--policy",
            "peer-first,plain",
            "--baseline",
            "nope",
        ])
        .output()
        .expect("the farewell binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nope") && stderr.contains("farewell-http/plain"),
        "the error names the choices: {stderr}"
    );
}

#[test]
fn bench_http_node_only_takes_a_node_row_as_baseline() {
    let out = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args([
            "bench",
            "http",
            "--node-only",
            "--baseline",
            "farewell-http",
        ])
        .output()
        .expect("the farewell binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--node-only") && stderr.contains("node, node+farewell"),
        "the error names the Node rows: {stderr}"
    );
}
