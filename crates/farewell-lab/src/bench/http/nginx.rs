//! nginx as a child process with a generated config in a temp dir: the third
//! server of `farewell bench http`, answering like the demo handler.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};

use super::in_process::LOOPBACK;

/// True when an `nginx` binary runs.
pub(super) fn installed() -> bool {
    std::process::Command::new("nginx")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// nginx started with a generated config in a temp dir; killed and cleaned up on drop.
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
        let dir = std::env::temp_dir().join(format!(
            "farewell-bench-nginx-{}-{}",
            std::process::id(),
            addr.port()
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
        let d = dir.display();
        let config = format!(
            "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             server {{\n    {listen}\n    location / {{ default_type text/plain; return 200 \"{}\"; }}\n  }}\n}}\n",
            crate::support::http_demo::HELLO.replace('\n', "\\n")
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
