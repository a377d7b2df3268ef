//! nginx as a child process with a generated config in a temp dir: the third
//! server of `farewell bench http`, answering like the demo handler, or the
//! reverse proxy of `--proxy nginx` in front of another server
//! ([`Serves::ProxyTo`]).
//!
//! nginx runs in its own process group (its master is the group's leader,
//! its workers inherit the group) and is stopped the way nginx is stopped:
//! SIGQUIT to the master (graceful shutdown: the workers finish and exit,
//! then the master), a bounded wait, then SIGKILL to the whole group as a
//! last resort. Killing the master alone would leave the workers running,
//! re-parented to init and still listening (issue 16).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::Signal;

use super::in_process::LOOPBACK;
use crate::lab::netns::Netns;

/// The prefix of every nginx temp dir; the dir's name goes on with the
/// bench's pid, so a test can find what one bench left behind.
pub(super) const DIR_PREFIX: &str = "farewell-bench-nginx-";

/// How long a graceful stop (SIGQUIT) may take before the group is killed.
const QUIT_BOUND: Duration = Duration::from_secs(3);

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// What nginx answers with.
#[derive(Clone, Copy, Debug)]
pub(super) enum Serves {
    /// `return 200` with the demo handler's body.
    Hello,
    /// `proxy_pass http://ADDR` with nginx's default upstream settings
    /// (no `proxy_http_version`, no `upstream` block, no `keepalive`): every
    /// request goes upstream as HTTP/1.0 with `Connection: close` on a new
    /// connection, which nginx closes once it has read the response
    /// (<https://nginx.org/en/docs/http/ngx_http_proxy_module.html#proxy_http_version>).
    ProxyTo(SocketAddr),
}

/// True when an `nginx` binary runs.
pub(super) fn installed() -> bool {
    std::process::Command::new("nginx")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// nginx started with a generated config in a temp dir; stopped (SIGQUIT,
/// then SIGKILL to its process group) and cleaned up on drop.
pub(super) struct Nginx {
    pub(super) addr: SocketAddr,
    child: std::process::Child,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx on a quiet loopback port, with `ssl` and this
    /// certificate when `tls` is given; waits (bounded, 3 s) until it listens.
    pub(super) async fn start(
        tls: Option<&crate::support::tls::SelfSigned>,
    ) -> anyhow::Result<Nginx> {
        // Find a quiet port, then hand it to nginx.
        let addr = crate::support::port::bind_quiet_port(LOOPBACK)?.local_addr()?;
        let mut nginx = Nginx::spawn(addr, tls, Serves::Hello, None)?;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(nginx);
            }
            nginx.check_running()?;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        bail!("nginx did not start listening on {addr} within 3s")
    }

    /// Starts nginx inside namespace `ns` (`ip netns exec`), listening on
    /// `addr` (an address of that namespace) and answering as `serves` says;
    /// waits (bounded, 3 s) until it listens. Blocks: call it from
    /// `spawn_blocking` in async code.
    pub(super) fn start_in(
        ns: &Netns,
        addr: SocketAddr,
        tls: Option<&crate::support::tls::SelfSigned>,
        serves: Serves,
    ) -> anyhow::Result<Nginx> {
        let mut nginx = Nginx::spawn(addr, tls, serves, Some(ns))?;
        let probe = match addr.ip().is_unspecified() {
            true => SocketAddr::new(LOOPBACK, addr.port()),
            false => addr,
        };
        for _ in 0..100 {
            let up = ns.run(|| {
                std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok()
            })?;
            if up {
                return Ok(nginx);
            }
            nginx.check_running()?;
            std::thread::sleep(Duration::from_millis(30));
        }
        bail!(
            "nginx did not start listening on {addr} in {} within 3s",
            ns.name()
        )
    }

    /// Writes the config and starts the master, in its own process group
    /// (and in `ns` when given).
    fn spawn(
        addr: SocketAddr,
        tls: Option<&crate::support::tls::SelfSigned>,
        serves: Serves,
        ns: Option<&Netns>,
    ) -> anyhow::Result<Nginx> {
        let dir = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let listen = match tls {
            None => format!("listen {addr};"),
            Some(made) => {
                let (cert, key) = made.write_pem(&dir)?;
                format!(
                    "listen {addr} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};",
                    cert.display(),
                    key.display()
                )
            }
        };
        let location = match serves {
            Serves::Hello => format!(
                "default_type text/plain; return 200 \"{}\";",
                crate::support::http_demo::HELLO.replace('\n', "\\n")
            ),
            Serves::ProxyTo(upstream) => format!("proxy_pass http://{upstream};"),
        };
        let d = dir.display();
        let config = format!(
            "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             server {{\n    {listen}\n    location / {{ {location} }}\n  }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), config)?;
        // `ip netns exec` enters the namespace and execs nginx: the child is
        // the master either way.
        let mut command = match ns {
            None => std::process::Command::new("nginx"),
            Some(ns) => {
                let mut c = std::process::Command::new("ip");
                c.args(["netns", "exec", ns.name(), "nginx"]);
                c
            }
        };
        command
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group, so the last resort reaches the workers too.
            .process_group(0);
        let child = {
            // A fork: see the fork hazard in `lab::netns`.
            let _forking = crate::lab::netns::no_forks();
            command.spawn().context("starting nginx")?
        };
        Ok(Nginx { addr, child, dir })
    }

    /// Fails with nginx's error log when the master has exited.
    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
            bail!("nginx exited at start ({status}): {log}");
        }
        Ok(())
    }

    /// Lines of nginx's error log (level `warn` and up) that contain `word`;
    /// e.g. `upstream` for the proxy's failures toward its server (a refused
    /// or impossible connect, a reset or early close while reading the
    /// response, a timeout).
    pub(super) fn error_log_lines_with(&self, word: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("error.log"))
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(word))
            .map(str::to_owned)
            .collect()
    }

    /// The master's pid (also its process group's id).
    #[cfg(test)]
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGQUIT to the master, a wait of at most [`QUIT_BOUND`] for it to
    /// exit, then SIGKILL to its process group (whatever is left of it),
    /// and the master reaped.
    fn stop(&mut self) {
        let pid = self.child.id();
        if let Err(e) = crate::sys::signal_process(pid, Signal::SIGQUIT) {
            tracing::warn!("nginx {pid}: SIGQUIT: {e}");
        }
        // Wait without reaping: while the master is a zombie its pid, which
        // is the group's id, cannot be reused, so the SIGKILL below reaches
        // only nginx's own processes.
        let deadline = Instant::now() + QUIT_BOUND;
        while !exited(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !exited(pid) {
            tracing::warn!("nginx {pid} did not quit within {QUIT_BOUND:?}; killing its group");
        }
        if let Err(e) = crate::sys::signal_group(pid, Signal::SIGKILL) {
            tracing::warn!("nginx {pid}: SIGKILL to its group: {e}");
        }
        let _ = self.child.wait();
    }
}

/// True when process `pid` is a zombie or gone (`/proc/<pid>/stat`, field 3).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|at| stat[at + 1..].split_whitespace().next())
            .map_or(true, |state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pids of live (not zombie) processes in process group `pgid`.
    fn live_in_group(pgid: u32) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| {
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    return false;
                };
                let Some(at) = stat.rfind(')') else {
                    return false;
                };
                let fields: Vec<&str> = stat[at + 1..].split_whitespace().collect();
                // Field 3 is the state, field 5 the process group.
                fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.to_string().as_str())
            })
            .collect()
    }

    #[tokio::test]
    async fn nginx_dropped_leaves_no_worker_alive() {
        if !installed() {
            eprintln!("skipped: nginx is not installed");
            return;
        }
        let nginx = Nginx::start(None).await.expect("nginx starts");
        let pgid = nginx.pid();
        let running = live_in_group(pgid);
        assert!(
            running.len() >= 2,
            "a master and at least one worker run in group {pgid}: {running:?}"
        );
        drop(nginx);
        assert_eq!(
            live_in_group(pgid),
            Vec::<u32>::new(),
            "processes of nginx's group outlive its drop"
        );
    }
}
