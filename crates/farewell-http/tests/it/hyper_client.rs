//! The hyper client against farewell-http: HTTP/1.1 `Connection: close`, h2
//! streams on one connection ended by the idle timeout (GOAWAY), and an idle
//! HTTP/1.1 keep-alive connection (reset once everything is ACKed). Then the
//! kernel's socket table on the server's port.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use farewell::Ending;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const N: usize = 300_000;

fn get(path: &str, close: bool) -> Request<Empty<Bytes>> {
    let mut request = Request::get(path).header("host", "127.0.0.1");
    if close {
        request = request.header("connection", "close");
    }
    request.body(Empty::new()).unwrap()
}

async fn assert_whole_body(response: hyper::Response<hyper::body::Incoming>) {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_pattern(&body, N);
}

/// Waits (bounded) for the hyper client's connection task to finish cleanly.
async fn client_connection_ends(conn: tokio::task::JoinHandle<hyper::Result<()>>) {
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the client connection ends within 5s")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_hyper_client_http1_connection_close() {
    let server = start(server(peer_first())).await;
    let port = server.addr.port();
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let response = sender
        .send_request(get(&format!("/bytes/{N}"), true))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_whole_body(response).await;
    drop(sender);
    // The client's connection ends after a `Connection: close` response: it closes first.
    client_connection_ends(conn).await;

    let outcomes = std::sync::Arc::clone(&server.outcomes);
    server.shutdown().await;
    assert_eq!(count(&outcomes, Ending::PeerClosed), 1);
    assert_no_server_time_wait_nor_leftovers(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_h2_idle_timeout_sends_goaway_and_the_client_closes_first() {
    let server = start(server(peer_first()).idle_timeout(Duration::from_millis(300))).await;
    let port = server.addr.port();
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    for _ in 0..3 {
        let response = sender
            .send_request(get(&format!("http://127.0.0.1/bytes/{N}"), false))
            .await
            .unwrap();
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        assert_whole_body(response).await;
    }
    // Idle now: the server's GOAWAY ends the client's connection, which then closes.
    client_connection_ends(conn).await;

    let outcomes = std::sync::Arc::clone(&server.outcomes);
    let report = server.shutdown().await;
    assert_eq!(report.requests, 3);
    // The client ended first either way: with a FIN, or with a reset when h2's
    // second GOAWAY (or PING) was still unread as it closed (farewell::facts F4).
    let client_first = count(&outcomes, Ending::PeerClosed) + count(&outcomes, Ending::PeerReset);
    assert_eq!(client_first, 1, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_idle_http1_keep_alive_is_reset_after_the_response_was_acked() {
    let server = start(server(peer_first()).idle_timeout(Duration::from_millis(300))).await;
    let port = server.addr.port();
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let client_addr = client.local_addr().unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    // Read until the connection ends: the response, then the reset.
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match client.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the idle connection ends within 5s");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.ends_with(farewell_lab::support::http_demo::HELLO),
        "whole body: {text}"
    );
    assert_eq!(
        end.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "an idle HTTP/1.1 connection is reset, not FINed"
    );

    let outcomes = std::sync::Arc::clone(&server.outcomes);
    server.shutdown().await;
    assert_eq!(count(&outcomes, Ending::ResetAfterGrace), 1);
    assert_no_server_time_wait_nor_leftovers(port).await;
    // Nobody keeps TIME-WAIT: the client's end is gone too.
    let client_side = farewell::census::lookup(client_addr, server_addr(port)).unwrap();
    assert!(client_side.is_none(), "{client_side:?}");
}

fn server_addr(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// The server's request count is kept per connection and added in batches
/// (no shared atomic per request): a connection of 130 requests the client
/// ends, and one of 70 still open at the shutdown, count 200 in the report,
/// and each connection's own count is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_count_is_whole_across_batches_and_at_shutdown() {
    let server = start(server(peer_first())).await;
    let port = server.addr.port();
    let mut ended = None;
    let mut open = None;
    for (requests, keep_open) in [(130, false), (70, true)] {
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        for _ in 0..requests {
            sender.ready().await.unwrap();
            let response = sender.send_request(get("/", false)).await.unwrap();
            assert_eq!(response.status(), 200);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, farewell_lab::support::http_demo::HELLO.as_bytes());
        }
        if keep_open {
            open = Some((sender, conn));
        } else {
            drop(sender);
            ended = Some(conn);
        }
    }
    client_connection_ends(ended.unwrap()).await;
    let connections = std::sync::Arc::clone(&server.connections);
    let report = server.shutdown().await;
    assert_eq!(report.requests, 200, "{report}");
    let mut per_connection: Vec<u64> = connections
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.requests)
        .collect();
    per_connection.sort_unstable();
    assert_eq!(per_connection, [70, 130]);
    drop(open);
    assert_no_server_time_wait_nor_leftovers(port).await;
}
