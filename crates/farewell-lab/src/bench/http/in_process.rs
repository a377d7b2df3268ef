//! farewell-http and plain hyper, serving the demo handler in this process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use farewell::{PeerFirst, Policy};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::{Server, Target};

pub(super) const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A listener on a port below the ephemeral range with no sockets on it, so the
/// census on it counts this server's TIME-WAIT and not that of earlier wrk clients.
fn quiet_listener() -> anyhow::Result<std::net::TcpListener> {
    let listener = crate::support::port::bind_quiet_port(LOOPBACK)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// farewell-http or plain hyper, running the demo handler in this process.
pub(super) struct InProcess {
    pub(super) addr: SocketAddr,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl InProcess {
    /// Starts `server` (farewell-http with its policy, or hyper) on a quiet
    /// loopback port, over TLS when `tls` is given.
    pub(super) async fn start(
        server: Server,
        tls: Option<Arc<farewell_http::rustls::ServerConfig>>,
    ) -> anyhow::Result<InProcess> {
        InProcess::start_on(server, tls, quiet_listener()?).await
    }

    /// Starts `server` on `listener` (non-blocking; made in whichever
    /// network namespace it should serve), over TLS when `tls` is given.
    pub(super) async fn start_on(
        server: Server,
        tls: Option<Arc<farewell_http::rustls::ServerConfig>>,
        listener: std::net::TcpListener,
    ) -> anyhow::Result<InProcess> {
        let listener = TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let service = hyper::service::service_fn(crate::support::http_demo::handle);
        let done = match server.target {
            Target::FarewellHttp => {
                let policy = bench_policy(server.policy);
                tokio::spawn(async move {
                    let mut server = farewell_http::Server::new()
                        .policy(policy)
                        .shutdown_timeout(Duration::from_secs(5));
                    if let Some(config) = tls {
                        server = server.tls(config);
                    }
                    if let Ok(report) = server.serve_hyper(listener, service, stopped).await {
                        eprintln!("  farewell-http: {report}");
                    }
                })
            }
            _ => tokio::spawn(async move {
                let timeout = Duration::from_secs(5);
                match tls {
                    None => {
                        crate::support::http_baseline::serve(listener, service, stopped, timeout)
                            .await
                    }
                    Some(config) => {
                        let acceptor = farewell::tls::tokio_rustls::TlsAcceptor::from(config);
                        crate::support::http_baseline::serve_tls(
                            listener, acceptor, service, stopped, timeout,
                        )
                        .await
                    }
                };
            }),
        };
        Ok(InProcess { addr, stop, done })
    }

    /// Shuts the server down; returns once every connection (and teardown) is over.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
    }
}

/// farewell-http's policy as the bench runs it: peer-first (the default) with
/// a 2 s grace and the server's drain limit, as `serve-http` sets it; any
/// other policy with its defaults and a 2 s delivery timeout.
fn bench_policy(policy: Option<Policy>) -> Policy {
    let grace = Duration::from_secs(2);
    match policy.unwrap_or(Policy::PeerFirst(PeerFirst::default())) {
        Policy::PeerFirst(p) => Policy::PeerFirst(PeerFirst {
            grace,
            drain_limit: farewell_http::DEFAULT_DRAIN_LIMIT,
            ..p
        }),
        other => other.with_delivery_timeout(grace),
    }
}
