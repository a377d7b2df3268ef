//! Test harness: a thin adapter over `farewell_testkit::lab`, whose peers and
//! per-connection runner are the ones the lab command uses — one
//! implementation, judged by the kernel's socket table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use farewell::{census, Closer, Outcome, Policy, TcpState};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

#[allow(unused_imports)] // each test binary uses its own part
pub use farewell_testkit::lab::{Behaviour, Trial as Cell, GOODBYE, TEARDOWN_BOUND};

pub const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// The grace the tests run with; the lab derives every policy's deadlines from it.
const TEST_GRACE: Duration = Duration::from_millis(300);

/// Short deadlines so the matrix runs quickly; same shape as the defaults.
pub fn test_policy(name: &str) -> Policy {
    farewell_testkit::lab::lab_policy(name, TEST_GRACE).expect("known policy")
}

/// Runs one connection: connects on `ip`, lets the peer behave, tears the
/// server side down with `policy`, and reads the verdict from the kernel.
pub async fn run_cell(policy: Policy, behaviour: Behaviour, ip: IpAddr) -> Cell {
    farewell_testkit::lab::run_connection(policy, behaviour, ip)
        .await
        .unwrap_or_else(|e| panic!("{policy} against a {behaviour:?} peer on {ip}: {e}"))
}

/// A connected pair on `ip`: (server side, client side).
pub async fn connected_pair(ip: IpAddr, client_rcvbuf: Option<u32>) -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
    let socket = if ip.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .unwrap();
    if let Some(size) = client_rcvbuf {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let (client, accepted) = tokio::join!(
        socket.connect(listener.local_addr().unwrap()),
        listener.accept()
    );
    (accepted.unwrap().0, client.unwrap())
}

/// The kernel's state for one 4-tuple, or `None` if it has no such socket.
pub fn kernel_state(local: SocketAddr, remote: SocketAddr) -> Option<TcpState> {
    census::lookup(local, remote)
        .expect("census lookup")
        .map(|entry| entry.state)
}

/// Waits (bounded) until neither end of the connection is in a transient
/// closing state, so the census reads the settled result.
pub async fn settle(server: SocketAddr, client: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let transient = |s: Option<TcpState>| {
        matches!(
            s,
            Some(TcpState::LastAck | TcpState::FinWait1 | TcpState::Closing)
        )
    };
    while (transient(kernel_state(server, client)) || transient(kernel_state(client, server)))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A listener on 127.0.0.1 whose port no other socket uses, on either side,
/// per the kernel: TIME-WAIT entries from earlier runs (they last 60 s) can
/// share a port that `bind(0)` hands out again, and tests that count the
/// sockets on their port must not count those.
pub async fn clean_listener() -> TcpListener {
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let local = farewell::census::count_by_state(&farewell::census::Filter::local_port(port));
        let remote = farewell::census::count_by_state(&farewell::census::Filter::remote_port(port));
        if local.unwrap().total() + remote.unwrap().total() == 1 {
            return listener; // only our listener
        }
    }
    panic!("no port free of leftover sockets after 100 tries");
}

/// Bounds a peer's reads in the closer tests; none is a speed assertion.
pub const PEER_BOUND: Duration = Duration::from_secs(10);

/// A closer with `policy` whose every outcome goes to the returned receiver.
pub fn closer_with_outcomes(policy: Policy) -> (Closer, UnboundedReceiver<Outcome>) {
    let (tx, rx) = unbounded_channel();
    let closer = Closer::builder(policy)
        .on_outcome(move |o| {
            let _ = tx.send(o);
        })
        .build();
    (closer, rx)
}

/// Reads until EOF or an error (bounded): what arrived, and the error if any.
pub async fn read_to_end_or_error(client: &mut TcpStream) -> (Vec<u8>, Option<std::io::ErrorKind>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + PEER_BOUND;
    loop {
        match tokio::time::timeout_at(deadline, client.read(&mut buf)).await {
            Err(_) => panic!("the peer saw neither EOF nor a reset within {PEER_BOUND:?}"),
            Ok(Ok(0)) => return (got, None),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return (got, Some(e.kind())),
        }
    }
}

/// Reads (bounded) until the whole goodbye has arrived.
pub async fn read_whole_goodbye(client: &mut TcpStream) {
    let mut got = vec![0u8; GOODBYE.len()];
    tokio::time::timeout(PEER_BOUND, client.read_exact(&mut got))
        .await
        .expect("the goodbye arrives")
        .unwrap();
    assert_eq!(got, GOODBYE);
}
