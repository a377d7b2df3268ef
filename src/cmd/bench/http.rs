//! `farewell bench http`: wrk against farewell-http, plain hyper and nginx, on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use farewell::census::{self, Filter, StateSet};
use farewell::TcpState;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::duration::parse_duration_in;

pub const HTTP_HELP: &str = "\
Benchmark farewell-http against plain hyper (and nginx, if installed) with wrk.

Each run starts a fresh server on its own loopback port (so the TIME-WAIT count is that run's
alone): farewell-http with peer-first, plain hyper-util with the same handler (GET / answers
`hello from farewell-http`), and nginx with a generated config (temp dir, its own pid and log
files, `return 200` with the same body; killed after). Runs are interleaved (A B C A B C ...),
once with `-H 'Connection: close'` (every request a new connection, ended by the server) and
once with keep-alive.

Columns:
  server       farewell-http, hyper (plain hyper-util), nginx
  mode         close (`Connection: close`) or keep-alive
  req/s        wrk's Requests/sec, mean over the rounds
  vs hyper     req/s divided by plain hyper's in the same mode
  server TW    TIME-WAIT entries on the server's port after the run (census, sock_diag),
               mean over the rounds
  errors       wrk socket errors + non-2xx responses, summed over the rounds

Needs wrk (`apt-get install wrk`). --quick runs short, small loads (for tests); --json prints
one object with every run and the summary rows.";

#[derive(Args, Debug)]
pub struct HttpArgs {
    /// Length of each wrk run.
    #[arg(long, default_value = "5s", value_parser = |s: &str| parse_duration_in(s, Duration::from_secs(1), Duration::from_secs(60)))]
    duration: Duration,
    /// wrk connections (-c).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    connections: u32,
    /// wrk threads (-t).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    threads: u32,
    /// Rounds of interleaved runs per mode.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    rounds: u32,
    /// Short runs for tests: 1 thread, 4 connections, 1 round, at most 1s and 300 responses per run.
    #[arg(long)]
    quick: bool,
    /// Leave nginx out even if installed.
    #[arg(long)]
    no_nginx: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Target {
    FarewellHttp,
    Hyper,
    Nginx,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::FarewellHttp => "farewell-http",
            Target::Hyper => "hyper",
            Target::Nginx => "nginx",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    Close,
    KeepAlive,
}

/// One wrk run against one server.
#[derive(Debug, Serialize)]
struct Run {
    server: Target,
    mode: Mode,
    round: u32,
    requests: u64,
    requests_per_sec: f64,
    errors: u64,
    server_time_wait: usize,
}

/// The summary of one server in one mode.
#[derive(Debug, Serialize)]
struct Row {
    server: Target,
    mode: Mode,
    requests_per_sec: f64,
    ratio_to_hyper: Option<f64>,
    server_time_wait: f64,
    errors: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    wrk: WrkSettings,
    rows: Vec<Row>,
    runs: Vec<Run>,
}

#[derive(Clone, Copy, Debug, Serialize)]
struct WrkSettings {
    threads: u32,
    connections: u32,
    duration_s: f64,
    rounds: u32,
    /// --quick: each wrk thread stops after this many responses.
    max_responses_per_thread: Option<u32>,
}

/// A wrk Lua script that stops each thread after `max` responses; removed on drop.
struct WrkScript {
    path: PathBuf,
}

impl WrkScript {
    fn new(max: u32) -> anyhow::Result<WrkScript> {
        let path = std::env::temp_dir().join(format!(
            "farewell-bench-wrk-{}-{max}.lua",
            std::process::id()
        ));
        std::fs::write(
            &path,
            format!(
                "local n = 0\nfunction response(status, headers, body)\n  n = n + 1\n  \
                 if n >= {max} then wrk.thread:stop() end\nend\n"
            ),
        )?;
        Ok(WrkScript { path })
    }
}

impl Drop for WrkScript {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs the benchmark and prints the report.
pub fn run(args: HttpArgs) -> anyhow::Result<()> {
    let wrk = if args.quick {
        WrkSettings {
            threads: 1,
            connections: 4,
            duration_s: 1.0,
            rounds: 1,
            max_responses_per_thread: Some(300),
        }
    } else {
        WrkSettings {
            threads: args.threads,
            connections: args.connections,
            duration_s: args.duration.as_secs_f64(),
            rounds: args.rounds,
            max_responses_per_thread: None,
        }
    };
    check_wrk()?;
    let mut targets = vec![Target::FarewellHttp, Target::Hyper];
    if !args.no_nginx && nginx_installed() {
        targets.push(Target::Nginx);
    } else if !args.no_nginx {
        eprintln!("nginx is not installed (apt-get install nginx); leaving its row out");
    }

    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let mut runs = Vec::new();
    for mode in [Mode::Close, Mode::KeepAlive] {
        for round in 1..=wrk.rounds {
            for &target in &targets {
                eprintln!("{} {mode:?} round {round}/{}", target.name(), wrk.rounds);
                runs.push(runtime.block_on(run_one(target, mode, round, wrk))?);
            }
        }
    }
    let report = Report {
        wrk,
        rows: summarise(&runs),
        runs,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn check_wrk() -> anyhow::Result<()> {
    match std::process::Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("wrk is not installed; install it with `apt-get install wrk`")
        }
        Err(e) => Err(e).context("running wrk"),
    }
}

fn nginx_installed() -> bool {
    std::process::Command::new("nginx")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Starts `target` on a fresh port, runs wrk once, stops it, and counts its port's TIME-WAIT.
async fn run_one(target: Target, mode: Mode, round: u32, wrk: WrkSettings) -> anyhow::Result<Run> {
    let (requests, requests_per_sec, errors, port) = match target {
        Target::Nginx => {
            let nginx = Nginx::start().await?;
            let result = wrk_run(nginx.addr, mode, wrk).await?;
            settle().await;
            (result.0, result.1, result.2, nginx.addr.port())
        }
        _ => {
            let server = InProcess::start(target).await?;
            let addr = server.addr;
            let result = wrk_run(addr, mode, wrk).await;
            server.stop().await;
            let result = result?;
            (result.0, result.1, result.2, addr.port())
        }
    };
    let server_time_wait = census::count_by_state(
        &Filter::local_port(port).states(StateSet::single(TcpState::TimeWait)),
    )
    .context("reading the kernel's socket table")?
    .get(TcpState::TimeWait);
    forget_client_time_wait(port);
    Ok(Run {
        server: target,
        mode,
        round,
        requests,
        requests_per_sec,
        errors,
        server_time_wait,
    })
}

/// Removes the TIME-WAIT entries wrk's clients left (remote port = the run's
/// server port), with `SOCK_DESTROY` when we have `CAP_NET_ADMIN`. Otherwise
/// tens of thousands of them would sit on ephemeral ports for 60 s, and any
/// census of a port-0 listener on this machine (other tests, say) would count
/// them. They are the load generator's, never the server's, and are counted
/// before they go.
fn forget_client_time_wait(server_port: u16) {
    if !census::has_net_admin() {
        return;
    }
    let filter = Filter::remote_port(server_port).states(StateSet::single(TcpState::TimeWait));
    if let Ok(entries) = census::dump(&filter) {
        for entry in entries {
            let _ = census::destroy(&entry);
        }
    }
}

/// Lets the last FINs and ACKs of a run land before the census reads the table.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Runs wrk against `addr`; returns (requests, requests/s, errors).
async fn wrk_run(
    addr: SocketAddr,
    mode: Mode,
    wrk: WrkSettings,
) -> anyhow::Result<(u64, f64, u64)> {
    let mut command = tokio::process::Command::new("wrk");
    command
        .arg(format!("-t{}", wrk.threads))
        .arg(format!("-c{}", wrk.connections))
        .arg(format!("-d{}s", wrk.duration_s))
        .arg("--timeout")
        .arg("2s");
    if mode == Mode::Close {
        command.arg("-H").arg("Connection: close");
    }
    let _script = match wrk.max_responses_per_thread {
        Some(max) => {
            let script = WrkScript::new(max)?;
            command.arg("-s").arg(&script.path);
            Some(script)
        }
        None => None,
    };
    command
        .arg(format!("http://{addr}/"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let bound = Duration::from_secs_f64(wrk.duration_s) + Duration::from_secs(15);
    let output = tokio::time::timeout(bound, command.output())
        .await
        .context("wrk ran past its duration; killed")?
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&stdout).with_context(|| format!("unexpected wrk output:\n{stdout}"))
}

/// Reads requests, Requests/sec and errors (socket errors + non-2xx/3xx) from wrk's report.
fn parse_wrk(out: &str) -> Option<(u64, f64, u64)> {
    let mut requests = None;
    let mut rate = None;
    let mut errors = 0;
    for line in out.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            rate = rest.trim().parse().ok();
        } else if line.contains(" requests in ") {
            requests = line.split_whitespace().next()?.parse().ok();
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            errors += rest
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += rest.trim().parse::<u64>().ok()?;
        }
    }
    Some((requests?, rate?, errors))
}

const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A listener on a port below the ephemeral range with no sockets on it, so the
/// census on it counts this server's TIME-WAIT and not that of earlier wrk clients.
fn quiet_listener() -> anyhow::Result<TcpListener> {
    let listener = farewell_http::port::bind_quiet_port(LOOPBACK)?;
    listener.set_nonblocking(true)?;
    Ok(TcpListener::from_std(listener)?)
}

/// farewell-http or plain hyper, running the demo handler in this process.
struct InProcess {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl InProcess {
    async fn start(target: Target) -> anyhow::Result<InProcess> {
        let listener = quiet_listener()?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let service = hyper::service::service_fn(farewell_http::demo::handle);
        let done = match target {
            Target::FarewellHttp => {
                let policy =
                    super::super::serve_http::http_policy("peer-first", Duration::from_secs(2))?;
                tokio::spawn(async move {
                    let server = farewell_http::Server::new()
                        .policy(policy)
                        .shutdown_timeout(Duration::from_secs(5));
                    if let Ok(report) = server.serve_hyper(listener, service, stopped).await {
                        eprintln!("  farewell-http: {report}");
                    }
                })
            }
            _ => tokio::spawn(async move {
                farewell_http::baseline::serve(listener, service, stopped, Duration::from_secs(5))
                    .await;
            }),
        };
        Ok(InProcess { addr, stop, done })
    }

    /// Shuts the server down; returns once every connection (and teardown) is over.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
    }
}

/// nginx started with a generated config in a temp dir; killed and cleaned up on drop.
struct Nginx {
    addr: SocketAddr,
    child: std::process::Child,
    dir: PathBuf,
}

impl Nginx {
    async fn start() -> anyhow::Result<Nginx> {
        // Find a quiet port, then hand it to nginx.
        let addr = farewell_http::port::bind_quiet_port(LOOPBACK)?.local_addr()?;
        let dir = std::env::temp_dir().join(format!(
            "farewell-bench-nginx-{}-{}",
            std::process::id(),
            addr.port()
        ));
        std::fs::create_dir_all(&dir)?;
        let d = dir.display();
        let config = format!(
            "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             server {{\n    listen {addr};\n    location / {{ default_type text/plain; return 200 \"{}\"; }}\n  }}\n}}\n",
            farewell_http::demo::HELLO.replace('\n', "\\n")
        );
        std::fs::write(dir.join("nginx.conf"), config)?;
        let child = std::process::Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting nginx")?;
        let mut nginx = Nginx { addr, child, dir };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(nginx);
            }
            if let Some(status) = nginx.child.try_wait()? {
                let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
                bail!("nginx exited at start ({status}): {log}");
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        bail!("nginx did not start listening on {addr} within 3s")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn summarise(runs: &[Run]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for mode in [Mode::Close, Mode::KeepAlive] {
        for server in [Target::FarewellHttp, Target::Hyper, Target::Nginx] {
            let these: Vec<&Run> = runs
                .iter()
                .filter(|r| r.server == server && r.mode == mode)
                .collect();
            if these.is_empty() {
                continue;
            }
            let n = these.len() as f64;
            rows.push(Row {
                server,
                mode,
                requests_per_sec: these.iter().map(|r| r.requests_per_sec).sum::<f64>() / n,
                ratio_to_hyper: None,
                server_time_wait: these.iter().map(|r| r.server_time_wait as f64).sum::<f64>() / n,
                errors: these.iter().map(|r| r.errors).sum(),
            });
        }
    }
    let hyper_rate = |mode| {
        rows.iter()
            .find(|r| r.server == Target::Hyper && r.mode == mode)
            .map(|r| r.requests_per_sec)
    };
    let rates: Vec<Option<f64>> = rows.iter().map(|r| hyper_rate(r.mode)).collect();
    for (row, base) in rows.iter_mut().zip(rates) {
        row.ratio_to_hyper = base.filter(|&b| b > 0.0).map(|b| row.requests_per_sec / b);
    }
    rows
}

fn print_table(report: &Report) {
    let w = report.wrk;
    println!(
        "wrk -t{} -c{} -d{}s, {} round(s) per mode, interleaved",
        w.threads, w.connections, w.duration_s, w.rounds
    );
    println!(
        "{:<14} {:<11} {:>10} {:>9} {:>10} {:>7}",
        "server", "mode", "req/s", "vs hyper", "server TW", "errors"
    );
    for row in &report.rows {
        let mode = match row.mode {
            Mode::Close => "close",
            Mode::KeepAlive => "keep-alive",
        };
        let ratio = row
            .ratio_to_hyper
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
        println!(
            "{:<14} {:<11} {:>10.0} {:>9} {:>10.0} {:>7}",
            row.server.name(),
            mode,
            row.requests_per_sec,
            ratio,
            row.server_time_wait,
            row.errors
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_report() {
        let out = "Running 1s test @ http://127.0.0.1:1/\n  1 threads and 4 connections\n\
                   12345 requests in 1.00s, 1.23MB read\n  Socket errors: connect 0, read 2, write 1, timeout 0\n\
                   Non-2xx or 3xx responses: 5\nRequests/sec:  12345.67\nTransfer/sec:      1.23MB\n";
        assert_eq!(parse_wrk(out), Some((12345, 12345.67, 8)));
        assert_eq!(parse_wrk("garbage"), None);
    }
}
