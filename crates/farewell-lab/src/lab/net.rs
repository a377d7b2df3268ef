//! Where a cell's connections run: loopback in this process's namespace, or
//! a [`NetPath`] (server sockets in its server namespace, clients in its
//! client namespace). One place that makes a connected pair and reads the
//! kernel's verdict for both ends, whichever namespace each lives in.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::path::NetPath;
use super::peer::ClientBuffers;
use super::LabError;
use farewell::TcpState;
use farewell_testkit::lab::{kernel_state, Loopback};

/// How long connecting across a path may take (a lost SYN is sent again
/// after 1 s, then 3 s).
const CONNECT_BOUND: Duration = Duration::from_secs(10);

/// Where a cell runs.
#[derive(Clone, Debug)]
pub(crate) enum Net {
    /// Both ends on this address of this process's namespace.
    Loopback(IpAddr),
    /// The ends in the path's two namespaces.
    Path(Arc<NetPath>),
}

impl farewell_testkit::lab::Net for Net {
    async fn connected_pair(&self, buffers: ClientBuffers) -> io::Result<(TcpStream, TcpStream)> {
        let path = match self {
            Net::Loopback(ip) => return Loopback(*ip).connected_pair(buffers).await,
            Net::Path(path) => Arc::clone(path),
        };
        // Sockets keep the namespace they were made in: make them there (on
        // the path's threads), use them here.
        let (listener, client) = tokio::task::spawn_blocking(move || {
            let listener = path.server(|| {
                let listener = std::net::TcpListener::bind((path.server_ip(), 0))?;
                listener.set_nonblocking(true)?;
                Ok::<_, io::Error>(listener)
            })??;
            let client = path.client(|| {
                let socket = socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::STREAM,
                    Some(socket2::Protocol::TCP),
                )?;
                if let Some(size) = buffers.rcv {
                    socket.set_recv_buffer_size(size as usize)?;
                }
                if let Some(size) = buffers.snd {
                    socket.set_send_buffer_size(size as usize)?;
                }
                socket.set_nonblocking(true)?;
                Ok::<_, io::Error>(std::net::TcpStream::from(socket))
            })??;
            Ok::<_, io::Error>((listener, client))
        })
        .await
        .map_err(io::Error::other)??;
        let listener = TcpListener::from_std(listener)?;
        let to = listener.local_addr()?;
        let client = TcpSocket::from_std_stream(client);
        let both = async { tokio::join!(client.connect(to), listener.accept()) };
        let (client, accepted) = tokio::time::timeout(CONNECT_BOUND, both)
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting across the path took over {CONNECT_BOUND:?}"),
                )
            })?;
        Ok((accepted?.0, client?))
    }

    /// Each end's state is read in its own namespace.
    async fn states(
        &self,
        server: SocketAddr,
        client: SocketAddr,
    ) -> Result<(Option<TcpState>, Option<TcpState>), LabError> {
        match self {
            Net::Loopback(ip) => Loopback(*ip).states(server, client).await,
            Net::Path(path) => {
                let path = Arc::clone(path);
                tokio::task::spawn_blocking(move || {
                    let io = |e| LabError::Io("entering the path's namespace", e);
                    let s = path.server(|| kernel_state(server, client)).map_err(io)??;
                    let c = path.client(|| kernel_state(client, server)).map_err(io)??;
                    Ok((s, c))
                })
                .await
                .map_err(|e| LabError::Peer(e.to_string()))?
            }
        }
    }
}
