//! wrk as a child process: check it is there, run it (bounded), read its report.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};

use super::{Mode, WrkSettings};

/// A wrk Lua script that stops each thread after `max` responses; removed on drop.
struct WrkScript {
    path: PathBuf,
}

impl WrkScript {
    /// `tag` keeps the scripts of wrks running at once apart.
    fn new(max: u32, tag: &str) -> anyhow::Result<WrkScript> {
        let path = std::env::temp_dir().join(format!(
            "farewell-bench-wrk-{}-{max}{tag}.lua",
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

/// Fails with an install hint when wrk is not on `PATH`.
pub(crate) fn check() -> anyhow::Result<()> {
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

/// Runs wrk against `addr`, inside namespace `ns` when given (`ip netns
/// exec`, which execs wrk); returns (requests, requests/s, errors).
pub(crate) async fn run(
    ns: Option<&str>,
    addr: SocketAddr,
    mode: Mode,
    wrk: WrkSettings,
    tls: bool,
) -> anyhow::Result<(u64, f64, u64)> {
    let mut command = match ns {
        None => tokio::process::Command::new("wrk"),
        Some(ns) => {
            let mut c = tokio::process::Command::new("ip");
            c.args(["netns", "exec", ns, "wrk"]);
            c
        }
    };
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
            let script = WrkScript::new(max, ns.unwrap_or(""))?;
            command.arg("-s").arg(&script.path);
            Some(script)
        }
        None => None,
    };
    command
        .arg(format!("{}://{addr}/", if tls { "https" } else { "http" }))
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
    parse(&stdout).with_context(|| format!("unexpected wrk output:\n{stdout}"))
}

/// Reads requests, Requests/sec and errors (socket errors + non-2xx/3xx) from wrk's report.
fn parse(out: &str) -> Option<(u64, f64, u64)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_report() {
        let out = "Running 1s test @ http://127.0.0.1:1/\n  1 threads and 4 connections\n\
                   12345 requests in 1.00s, 1.23MB read\n  Socket errors: connect 0, read 2, write 1, timeout 0\n\
                   Non-2xx or 3xx responses: 5\nRequests/sec:  12345.67\nTransfer/sec:      1.23MB\n";
        assert_eq!(parse(out), Some((12345, 12345.67, 8)));
        assert_eq!(parse("garbage"), None);
    }
}
