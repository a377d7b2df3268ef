//! `farewell bench overhead`: what farewell-http costs over plain hyper, in
//! instructions counted by callgrind (which machine noise does not move) and
//! in wrk's keep-alive rate, side by side in one run (issue 25).
//!
//! The server is the `overhead` example of farewell-http
//! (`crates/farewell-http/examples/overhead.rs`): the demo handler on one
//! thread, served by farewell-http (default settings, peer-first) or by
//! plain hyper-util. For each server and mode (keep-alive: every request on
//! one connection; close: each request with `Connection: close` on its own
//! connection; farewell-http once with every client light, once with every
//! client heavy; and, for the close, plain hyper that waits for the client's
//! FIN before it closes, as peer-first does, which prices that one event
//! apart from the rest) it runs under `valgrind --tool=callgrind` twice, with `n1` and
//! `n2` requests sent by a client in this process (outside valgrind), every
//! response checked. The figure is `(Ir(n2) - Ir(n1)) / (n2 - n1)`: start-up
//! and shutdown cancel out. Then the same binary runs natively under `wrk`
//! (keep-alive), the two servers interleaved round by round.
//!
//! Last, the switch an axum user makes: the example's axum `Router` under
//! `axum::serve` and under `farewell_http::serve`, keep-alive and close,
//! counted the same way. axum's router puts its own extensions on every
//! request, so this pair is the cost an axum application would see.
//!
//! Everything is on loopback and bounded: a fixed count of requests, socket
//! timeouts, a deadline per run, every server stopped by its PID.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use super::http::{wrk, Mode, WrkSettings};
use crate::support::http_demo::HELLO;

/// How the `overhead` example runs a server: its name on the command line,
/// the name of its profiles, and the farewell-http heavy-client threshold it
/// sets (`OVERHEAD_HEAVY_CLIENT_THRESHOLD`; `None`: the default, 500 endings
/// per client and minute).
#[derive(Clone, Copy)]
struct Variant {
    server: &'static str,
    label: &'static str,
    heavy_client_threshold: Option<u32>,
}

const HYPER: Variant = Variant {
    server: "hyper",
    label: "hyper",
    heavy_client_threshold: None,
};
/// Plain hyper that ends a close like peer-first's light ending and does
/// nothing else: no FIN of its own, the close after the client's
/// ([`Baseline::PassiveClose`](crate::support::http_baseline::Baseline::PassiveClose)).
const HYPER_PASSIVE: Variant = Variant {
    server: "hyper-passive",
    label: "hyper-passive",
    heavy_client_threshold: None,
};
/// Plain hyper with the one defence it offers itself: its HTTP/1
/// header-read timeout (30 s, on `TokioTimer`)
/// ([`Baseline::HeaderReadTimeout`](crate::support::http_baseline::Baseline::HeaderReadTimeout)).
const HYPER_TIMEOUTS: Variant = Variant {
    server: "hyper-timeouts",
    label: "hyper-timeouts",
    heavy_client_threshold: None,
};
/// farewell-http as `Server::new()` makes it.
const FAREWELL: Variant = Variant {
    server: "farewell",
    label: "farewell",
    heavy_client_threshold: None,
};
/// Every client light: the passive close after its FIN (it keeps TIME-WAIT).
/// (With the default threshold, the connections of one client past the 500th
/// in a minute would be heavy: one run would mix both endings.)
const FAREWELL_LIGHT: Variant = Variant {
    server: "farewell",
    label: "farewell-light",
    heavy_client_threshold: Some(u32::MAX),
};
/// `axum::serve` with the example's axum `Router`.
const AXUM: Variant = Variant {
    server: "axum",
    label: "axum",
    heavy_client_threshold: None,
};
/// `farewell_http::serve` with the same `Router`, every client light (the
/// passive close after its FIN, as in [`FAREWELL_LIGHT`]).
const FAREWELL_AXUM: Variant = Variant {
    server: "farewell-axum",
    label: "farewell-axum",
    heavy_client_threshold: Some(u32::MAX),
};
/// Every client heavy: a reset after its FIN (nobody keeps TIME-WAIT).
const FAREWELL_HEAVY: Variant = Variant {
    server: "farewell",
    label: "farewell-heavy",
    heavy_client_threshold: Some(0),
};

/// How long one callgrind run may take (valgrind runs the server ~50x slower).
const RUN_DEADLINE: Duration = Duration::from_secs(300);
/// How long a client waits for one response.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Clone, Debug)]
pub struct OverheadConfig {
    /// The `overhead` example binary.
    pub binary: PathBuf,
    /// Requests of the two callgrind runs per server and mode (`n1 < n2`).
    pub requests: (u32, u32),
    /// Where callgrind writes its profiles (`cg.SERVER.MODE.N`).
    pub out_dir: PathBuf,
    /// The wrk keep-alive runs (`rounds` of hyper then farewell).
    pub wrk: WrkSettings,
}

/// One figure for farewell-http and the server it replaces.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Pair {
    /// farewell-http's.
    pub farewell: f64,
    /// The baseline's: plain hyper-util's, or `axum::serve`'s in the axum
    /// pairs.
    pub baseline: f64,
}

impl Pair {
    /// farewell-http's figure ÷ the baseline's.
    pub fn ratio(&self) -> f64 {
        self.farewell / self.baseline
    }
}

/// What the bench measured.
#[derive(Clone, Debug, Serialize)]
pub struct OverheadReport {
    /// Instructions per keep-alive request.
    pub keepalive_ir: Pair,
    /// The same, against hyper with its own header-read timeout (the one
    /// bound hyper has; farewell-http has it and the body-read, send and
    /// idle bounds besides): what plain hyper costs once it defends itself
    /// at all.
    pub keepalive_vs_timeouts_ir: Pair,
    /// Instructions per `Connection: close` connection (one request each),
    /// every client light: farewell-http closes after the client's FIN.
    pub close_ir: Pair,
    /// The same, every client heavy: farewell-http resets after the client's
    /// FIN (plain hyper's figure is the same as in `close_ir`).
    pub close_heavy_ir: Pair,
    /// farewell-http's light close against plain hyper that also waits for
    /// the client's FIN and closes after it (and does nothing else): the
    /// baseline then has the one event peer-first adds, so the ratio is
    /// farewell-http's own cost. `baseline - close_ir.baseline` is that
    /// event's cost.
    pub close_vs_passive_ir: Pair,
    /// wrk keep-alive requests per second (mean over the rounds).
    pub wrk_rate: Pair,
    /// The switch a user makes: the same axum `Router` under
    /// `farewell_http::serve` and `axum::serve`, instructions per keep-alive
    /// request.
    pub axum_keepalive_ir: Pair,
    /// The same, per `Connection: close` connection (every client light).
    pub axum_close_ir: Pair,
    /// The two request counts of the callgrind runs.
    pub requests: (u32, u32),
    /// Where the profiles are (`callgrind_annotate DIR/cg.farewell.keepalive.N2`).
    pub out_dir: PathBuf,
}

impl OverheadReport {
    /// The report as a table, with the goals.
    pub fn table(&self) -> String {
        let row = |what: &str, pair: &Pair, goal: &str| {
            format!(
                "{what:<34} {:>14.0} {:>12.0} {:>7.3}x  {goal}\n",
                pair.farewell,
                pair.baseline,
                pair.ratio()
            )
        };
        let mut out = format!(
            "{:<34} {:>14} {:>12} {:>8}  goal\n",
            "", "farewell-http", "plain hyper", "ratio"
        );
        out += &row("Ir per keep-alive request", &self.keepalive_ir, "<= 1.03x");
        out += &row(
            "  vs hyper with header timeout",
            &self.keepalive_vs_timeouts_ir,
            "(hyper's own bound on a slow head)",
        );
        out += &row("Ir per Connection: close conn", &self.close_ir, "<= 1.15x");
        out += &row(
            "  the same, heavy clients (reset)",
            &self.close_heavy_ir,
            "(reported)",
        );
        out += &row(
            "  light, vs hyper closing after FIN",
            &self.close_vs_passive_ir,
            &format!(
                "(the FIN's event alone: {:+.0} Ir)",
                self.close_vs_passive_ir.baseline - self.close_ir.baseline
            ),
        );
        out += &row("wrk keep-alive requests/s", &self.wrk_rate, ">= 0.98x");
        out += &format!(
            "{:<34} {:>14} {:>12} {:>8}\n",
            "same axum Router", "farewell_http", "axum::serve", "ratio"
        );
        out += &row("Ir per keep-alive request", &self.axum_keepalive_ir, "");
        out += &row("Ir per Connection: close conn", &self.axum_close_ir, "");
        out += &format!(
            "Ir: callgrind, one server thread, ({} - {} requests) / {}; profiles in {} \
             (callgrind_annotate {}/cg.farewell.keepalive.{})\n",
            self.requests.1,
            self.requests.0,
            self.requests.1 - self.requests.0,
            self.out_dir.display(),
            self.out_dir.display(),
            self.requests.1
        );
        out
    }
}

/// Fails with what to do when valgrind, wrk or the binary is missing.
pub fn check(config: &OverheadConfig) -> anyhow::Result<()> {
    if !config.binary.is_file() {
        bail!(
            "the overhead example is not at {}; build it with `cargo build --release -p \
             farewell-http --example overhead` (it lands in target/release/examples/, where \
             `farewell bench overhead` looks for it next to the farewell binary), or pass \
             --binary PATH",
            config.binary.display()
        );
    }
    match Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("valgrind is not installed; install it with `apt-get install valgrind`")
        }
        Err(e) => return Err(e).context("running valgrind"),
    }
    wrk::check()?;
    let (n1, n2) = config.requests;
    if n1 == 0 || n2 <= n1 {
        bail!("--requests N1,N2 needs 0 < N1 < N2, got {n1},{n2}");
    }
    Ok(())
}

/// Runs the bench; `progress` hears what runs next.
pub fn run(
    config: &OverheadConfig,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<OverheadReport> {
    check(config)?;
    std::fs::create_dir_all(&config.out_dir)
        .with_context(|| format!("creating {}", config.out_dir.display()))?;
    let (n1, n2) = config.requests;
    let mut per_request = |variant: Variant, mode: Mode| -> anyhow::Result<f64> {
        progress(&format!("callgrind {} {}", variant.label, mode_name(mode)));
        let a = callgrind(config, variant, mode, n1)?;
        let b = callgrind(config, variant, mode, n2)?;
        Ok((b as f64 - a as f64) / f64::from(n2 - n1))
    };
    let keepalive_ir = Pair {
        baseline: per_request(HYPER, Mode::KeepAlive)?,
        farewell: per_request(FAREWELL, Mode::KeepAlive)?,
    };
    let keepalive_vs_timeouts_ir = Pair {
        baseline: per_request(HYPER_TIMEOUTS, Mode::KeepAlive)?,
        farewell: keepalive_ir.farewell,
    };
    let hyper_close = per_request(HYPER, Mode::Close)?;
    let close_ir = Pair {
        baseline: hyper_close,
        farewell: per_request(FAREWELL_LIGHT, Mode::Close)?,
    };
    let close_vs_passive_ir = Pair {
        baseline: per_request(HYPER_PASSIVE, Mode::Close)?,
        farewell: close_ir.farewell,
    };
    let close_heavy_ir = Pair {
        baseline: hyper_close,
        farewell: per_request(FAREWELL_HEAVY, Mode::Close)?,
    };
    let axum_keepalive_ir = Pair {
        baseline: per_request(AXUM, Mode::KeepAlive)?,
        farewell: per_request(FAREWELL_AXUM, Mode::KeepAlive)?,
    };
    let axum_close_ir = Pair {
        baseline: per_request(AXUM, Mode::Close)?,
        farewell: per_request(FAREWELL_AXUM, Mode::Close)?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("a tokio runtime for wrk")?;
    let mut rates = [0.0; 2];
    for round in 0..config.wrk.rounds {
        for (i, variant) in [HYPER, FAREWELL].into_iter().enumerate() {
            let server = variant.server;
            progress(&format!("wrk {server} round {}", round + 1));
            let mut child = Server::start(Command::new(&config.binary), variant)?;
            let (_, rate, errors) = runtime
                .block_on(wrk::run(
                    None,
                    child.addr,
                    Mode::KeepAlive,
                    config.wrk,
                    false,
                ))
                .with_context(|| format!("wrk against {server}"))?;
            child.stop()?;
            if errors > 0 {
                bail!("wrk against {server}: {errors} errors");
            }
            rates[i] += rate / f64::from(config.wrk.rounds);
        }
    }
    Ok(OverheadReport {
        keepalive_ir,
        keepalive_vs_timeouts_ir,
        close_ir,
        close_heavy_ir,
        close_vs_passive_ir,
        wrk_rate: Pair {
            baseline: rates[0],
            farewell: rates[1],
        },
        axum_keepalive_ir,
        axum_close_ir,
        requests: config.requests,
        out_dir: config.out_dir.clone(),
    })
}

fn mode_name(mode: Mode) -> &'static str {
    if mode == Mode::Close {
        "close"
    } else {
        "keepalive"
    }
}

/// One run of `server` under callgrind with `n` requests; its instruction total.
fn callgrind(config: &OverheadConfig, variant: Variant, mode: Mode, n: u32) -> anyhow::Result<u64> {
    let server = variant.label;
    let out = config
        .out_dir
        .join(format!("cg.{server}.{}.{n}", mode_name(mode)));
    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&config.binary);
    let mut child = Server::start(command, variant)?;
    let sent = drive(child.addr, mode, n);
    // Let the last teardown end before the profile is written.
    std::thread::sleep(Duration::from_millis(500));
    child.stop()?;
    sent.with_context(|| format!("{server} {}: request", mode_name(mode)))?;
    total(&out)
}

/// A running `overhead` server (under valgrind or not), stopped by its PID.
struct Server {
    child: Child,
    addr: SocketAddr,
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Starts `command SERVER 0` and waits for its `ready ADDRESS` line.
    fn start(mut command: Command, variant: Variant) -> anyhow::Result<Server> {
        let server = variant.server;
        if let Some(threshold) = variant.heavy_client_threshold {
            command.env("OVERHEAD_HEAVY_CLIENT_THRESHOLD", threshold.to_string());
        }
        let mut child = command
            .arg(server)
            .arg("0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the overhead server")?;
        let mut stdout = BufReader::new(child.stdout.take().context("its stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let addr = line
            .strip_prefix("ready ")
            .and_then(|a| a.trim().parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the overhead server ({server}) did not start: printed {line:?}");
        };
        Ok(Server {
            child,
            addr,
            _stdout: stdout,
        })
    }

    /// SIGTERM (callgrind then writes its profile), waited for up to 60 s, then SIGKILL.
    fn stop(&mut self) -> anyhow::Result<()> {
        let _ = crate::sys::signal_process(self.child.id(), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait()?;
        bail!("the overhead server did not stop within 60 s of SIGTERM; killed")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How long the client waits after a `Connection: close` response before it
/// closes. At native speed a server begins its teardown microseconds after
/// the response and the client's FIN comes a round trip later, so a
/// peer-first server waits for it (and wakes when it comes). Under valgrind
/// the server runs about 50 times slower: a client that closed at once would
/// often have its FIN in before the server looks, a cheaper path than the
/// real one, taken more or less often from run to run. The pause keeps the
/// real order every time.
const CLOSE_PAUSE: Duration = Duration::from_millis(5);

/// Sends `n` `GET /` requests (keep-alive: on one connection; close: each
/// with `Connection: close` on its own) and checks every response.
fn drive(addr: SocketAddr, mode: Mode, n: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + RUN_DEADLINE;
    let request: &[u8] = if mode == Mode::Close {
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    } else {
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    };
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(1024);
    for i in 0..n {
        if Instant::now() > deadline {
            bail!("over {} s", RUN_DEADLINE.as_secs());
        }
        let stream = match &mut conn {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
                stream.set_read_timeout(Some(IO_TIMEOUT))?;
                stream.set_write_timeout(Some(IO_TIMEOUT))?;
                conn.insert(stream)
            }
        };
        stream.write_all(request)?;
        buf.clear();
        let body = read_response(stream, &mut buf).with_context(|| format!("response {i}"))?;
        if body != HELLO.as_bytes() {
            bail!(
                "response {i}: unexpected body {:?}",
                String::from_utf8_lossy(body)
            );
        }
        if mode == Mode::Close {
            // The client closes after reading, as python's http.client does,
            // a moment later: see `CLOSE_PAUSE`.
            std::thread::sleep(CLOSE_PAUSE);
            conn = None;
        }
    }
    Ok(())
}

/// Reads one `200` response with a `Content-Length` into `buf`; its body.
fn read_response<'a>(stream: &mut TcpStream, buf: &'a mut Vec<u8>) -> anyhow::Result<&'a [u8]> {
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 16 * 1024 {
            bail!("a response head over 16 KiB");
        }
        let got = stream.read(&mut chunk)?;
        if got == 0 {
            bail!("the server closed before a whole response head");
        }
        buf.extend_from_slice(&chunk[..got]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("a response head not UTF-8")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("not a 200: {:?}", head.lines().next().unwrap_or(""));
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .context("a response without Content-Length")?;
    if len > 16 * 1024 {
        bail!("a body of {len} bytes, not the demo's");
    }
    while buf.len() < head_end + len {
        let got = stream.read(&mut chunk)?;
        if got == 0 {
            bail!("the server closed before the whole body");
        }
        buf.extend_from_slice(&chunk[..got]);
    }
    Ok(&buf[head_end..head_end + len])
}

/// The instruction total of a callgrind profile (`summary:` or `totals:`).
fn total(profile: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(profile)
        .with_context(|| format!("reading the callgrind profile {}", profile.display()))?;
    text.lines()
        .find_map(|l| {
            let rest = l
                .strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .with_context(|| format!("no instruction total in {}", profile.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pair_ratio_is_farewell_over_hyper() {
        let pair = Pair {
            farewell: 110.0,
            baseline: 100.0,
        };
        assert!((pair.ratio() - 1.1).abs() < 1e-9);
    }

    #[test]
    fn test_total_reads_the_summary_line() {
        let path = std::env::temp_dir().join(format!("farewell-cg-total-{}", std::process::id()));
        std::fs::write(&path, "events: Ir\nfl=x\n1 2\nsummary: 12345\n").unwrap();
        assert_eq!(total(&path).unwrap(), 12345);
        std::fs::write(&path, "events: Ir\n").unwrap();
        assert!(total(&path).is_err());
        let _ = std::fs::remove_file(&path);
    }
}
