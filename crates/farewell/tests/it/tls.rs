//! TLS over TCP (`farewell::tls`, feature `rustls`): close_notify without a
//! FIN, then the policy; the handshake deadline. Clients are tokio-rustls,
//! judged by the kernel's socket table (farewell-http's tests use curl,
//! openssl and Python).

use std::sync::Arc;
use std::time::Duration;

use farewell::tls::{self, rustls, tokio_rustls};
use farewell::{Delivery, Ending, PeerFirst, Policy, TcpState, TimeWait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::common::{clean_listener, kernel_state, settle};

/// A self-signed certificate for `localhost`: the server's acceptor and a
/// client's connector that trusts it. The certificate is a committed
/// fixture (`tests/fixtures/`, valid until 9999), not made by `rcgen`: a
/// dev-dependency cannot be optional, and `cargo test -p farewell` without
/// the `rustls` feature would build it for nothing.
fn tls_pair() -> (TlsAcceptor, TlsConnector) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let der = CertificateDer::from_pem_slice(include_bytes!("../fixtures/localhost.cert.pem"))
        .expect("the fixture certificate parses");
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("../fixtures/localhost.key.pem"))
        .expect("the fixture key parses");
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        TlsAcceptor::from(Arc::new(server)),
        TlsConnector::from(Arc::new(client)),
    )
}

fn peer_first() -> Policy {
    Policy::PeerFirst(PeerFirst {
        grace: Duration::from_millis(500),
        stall_timeout: Duration::from_millis(500),
        drain_limit: 1 << 20,
        ..PeerFirst::default()
    })
}

const BOUND: Duration = Duration::from_secs(10);

/// The fact the module stands on: tokio-rustls's `shutdown()` sends
/// close_notify *and a FIN*, so a peer that then closes leaves the server in
/// TIME-WAIT.
#[tokio::test]
async fn tokio_rustls_shutdown_sends_a_fin_and_leaves_server_time_wait() {
    let (acceptor, connector) = tls_pair();
    let listener = clean_listener().await;
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let mut got = Vec::new();
        // Ok(0): close_notify came (an EOF without it would be UnexpectedEof).
        tls.read_to_end(&mut got).await.unwrap();
        let server_state = kernel_state(addr, local);
        tls.shutdown().await.unwrap();
        drop(tls);
        (got, local, server_state)
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let mut stream = acceptor.accept(tcp).await.unwrap();
    stream.write_all(b"hello\n").await.unwrap();
    stream.shutdown().await.unwrap();
    let (got, client_addr, server_state) =
        tokio::time::timeout(BOUND, client).await.unwrap().unwrap();
    assert_eq!(got, b"hello\n");
    // Our FIN went with close_notify: FIN-WAIT-2 once the client ACKed it.
    assert!(
        matches!(
            server_state,
            Some(TcpState::FinWait2 | TcpState::FinWait1 | TcpState::TimeWait)
        ),
        "server after tokio-rustls shutdown: {server_state:?}"
    );
    settle(addr, client_addr).await;
    assert_eq!(kernel_state(addr, client_addr), Some(TcpState::TimeWait));
    drop(stream);
}

/// A client that reads to the server's close_notify, then closes (sending
/// its own close_notify): the server sent no FIN, the client closed first.
#[tokio::test]
async fn close_sends_close_notify_without_fin_and_the_peer_closes_first() {
    let (acceptor, connector) = tls_pair();
    let listener = clean_listener().await;
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.unwrap(); // close_notify, not UnexpectedEof
        let server_state = kernel_state(addr, local);
        tls.shutdown().await.unwrap(); // our close_notify, then our FIN
        (got, local, server_state)
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let mut stream = acceptor.accept(tcp).await.unwrap();
    stream.write_all(b"hello\n").await.unwrap();
    let outcome = tokio::time::timeout(BOUND, tls::close(stream, peer_first(), &b"BYE idle\n"[..]))
        .await
        .unwrap();
    let (got, client_addr, server_state) = client.await.unwrap();
    assert_eq!(got, b"hello\nBYE idle\n");
    assert_eq!(
        server_state,
        Some(TcpState::Established),
        "no FIN from the server"
    );
    assert_eq!(outcome.ending, Ending::PeerClosed, "{outcome}");
    assert_eq!(outcome.time_wait, TimeWait::Peer);
    assert_eq!(outcome.goodbye, Delivery::Confirmed);
    assert_eq!(outcome.peer_close_notify, Some(true), "{outcome}");
    settle(addr, client_addr).await;
    assert_eq!(
        kernel_state(addr, client_addr),
        None,
        "nothing left on the server"
    );
    assert_eq!(
        kernel_state(client_addr, addr),
        Some(TcpState::TimeWait),
        "the client keeps TIME-WAIT"
    );
}

/// A client that drops the connection after the server's close_notify without
/// sending its own: the outcome says so.
#[tokio::test]
async fn close_reports_a_peer_that_closes_without_close_notify() {
    let (acceptor, connector) = tls_pair();
    let listener = clean_listener().await;
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.unwrap();
        drop(tls); // FIN, no close_notify
        got
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let stream = acceptor.accept(tcp).await.unwrap();
    let outcome = tokio::time::timeout(BOUND, tls::close(stream, peer_first(), &b""[..]))
        .await
        .unwrap();
    assert!(client.await.unwrap().is_empty());
    assert_eq!(outcome.ending, Ending::PeerClosed, "{outcome}");
    assert_eq!(outcome.peer_close_notify, Some(false), "{outcome}");
}

/// A client that sends more after the server's close_notify (TLS 1.3
/// half-close), then closes: the data is drained, the close_notify seen.
#[tokio::test]
async fn close_drains_what_a_half_closed_peer_still_sends() {
    let (acceptor, connector) = tls_pair();
    let listener = clean_listener().await;
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.unwrap();
        tls.write_all(&vec![b'x'; 100_000]).await.unwrap();
        tls.shutdown().await.unwrap();
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let stream = acceptor.accept(tcp).await.unwrap();
    let outcome = tokio::time::timeout(BOUND, tls::close(stream, peer_first(), &b""[..]))
        .await
        .unwrap();
    client.await.unwrap();
    assert_eq!(outcome.ending, Ending::PeerClosed, "{outcome}");
    assert_eq!(outcome.peer_close_notify, Some(true), "{outcome}");
    assert!(outcome.bytes_drained > 100_000, "{outcome}");
}

/// A client that connects and never says hello: the handshake deadline ends
/// it, with no FIN from the server and no TIME-WAIT on it.
#[tokio::test]
async fn handshake_deadline_ends_a_silent_client_without_server_time_wait() {
    let (acceptor, _) = tls_pair();
    let listener = clean_listener().await;
    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect(addr).await.unwrap();
    let client_addr = client.local_addr().unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let failed = tls::accept(&acceptor, tcp, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(failed.timed_out, "{failed}");
    assert_eq!(
        kernel_state(addr, client_addr),
        Some(TcpState::Established),
        "the socket outlives the handshake future"
    );
    let outcome = tokio::time::timeout(BOUND, failed.close(peer_first()))
        .await
        .unwrap();
    assert_eq!(outcome.ending, Ending::ResetAfterGrace, "{outcome}");
    assert_eq!(outcome.time_wait, TimeWait::Nobody);
    assert_eq!(kernel_state(addr, client_addr), None);
    drop(client);
}

/// A client that speaks plain HTTP to the TLS port: rustls's alert goes out,
/// the client closes on it, and the server closes passively.
#[tokio::test]
async fn failed_handshake_sends_an_alert_and_the_peer_closes_first() {
    let (acceptor, _) = tls_pair();
    let listener = clean_listener().await;
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut alert = [0u8; 7];
        tcp.read_exact(&mut alert).await.unwrap();
        (alert, tcp.local_addr().unwrap())
        // dropped: the client's FIN
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let failed = tls::accept(&acceptor, tcp, BOUND).await.unwrap_err();
    assert!(!failed.timed_out, "{failed}");
    let outcome = tokio::time::timeout(BOUND, failed.close(peer_first()))
        .await
        .unwrap();
    let (alert, client_addr) = client.await.unwrap();
    assert_eq!(alert[0], 0x15, "a TLS alert record: {alert:?}");
    assert_eq!(outcome.ending, Ending::PeerClosed, "{outcome}");
    settle(addr, client_addr).await;
    assert_eq!(kernel_state(addr, client_addr), None);
}

/// A server that aborts a connection task in the middle of a handshake (at
/// shutdown, say): `Closer::accept_tls` hands the socket to the closer even
/// then, so it ends with the policy, not a plain close.
#[tokio::test]
async fn closer_accept_tls_dropped_mid_handshake_still_runs_the_policy() {
    let (acceptor, _) = tls_pair();
    let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    let closer = farewell::Closer::builder(peer_first())
        .on_outcome(move |o| {
            let _ = tx.send(o);
        })
        .build();
    let listener = clean_listener().await;
    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect(addr).await.unwrap();
    let client_addr = client.local_addr().unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let task = {
        let closer = closer.clone();
        tokio::spawn(async move {
            closer
                .accept_tls(&acceptor, tcp, Duration::from_secs(30), peer_first())
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    task.abort();
    let outcome = tokio::time::timeout(BOUND, outcomes.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.ending, Ending::ResetAfterGrace, "{outcome}");
    assert_eq!(kernel_state(addr, client_addr), None);
    drop(client);
}
