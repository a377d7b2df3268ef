//! Bad input: streams already reset, sockets still connecting, absurd
//! durations, split halves. Each ends with a documented path, never a panic,
//! and the kernel shows the socket gone.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{connected_pair, kernel_state, run_cell, Behaviour, GOODBYE, V4};
use farewell::{Ending, PeerFirst, Policy, TcpState, TimeWait};
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_zero_durations_still_end_and_keep_no_time_wait() {
    let policy = Policy::PeerFirst(PeerFirst {
        grace: Duration::ZERO,
        stall_timeout: Duration::ZERO,
        delivery_timeout: Duration::ZERO,
        drain_limit: 0,
        peer_time_wait: farewell::PeerTimeWait::default(),
        grace_end: farewell::GraceEnd::Reset,
    });
    for behaviour in [
        Behaviour::Cooperative,
        Behaviour::Ignores,
        Behaviour::NeverReads,
    ] {
        let cell = run_cell(policy, behaviour, V4).await;
        eprintln!("{behaviour:?}: {}", cell.outcome);
        assert!(!cell.server_time_wait, "{behaviour:?}: {}", cell.outcome);
        assert_ne!(cell.outcome.time_wait, TimeWait::Us);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_huge_grace_is_clamped_and_ends_when_the_peer_closes() {
    let policy = Policy::PeerFirst(PeerFirst {
        grace: Duration::MAX,
        stall_timeout: Duration::MAX,
        delivery_timeout: Duration::MAX,
        drain_limit: u64::MAX,
        peer_time_wait: farewell::PeerTimeWait::default(),
        grace_end: farewell::GraceEnd::Reset,
    });
    let cell = run_cell(policy, Behaviour::Cooperative, V4).await;
    assert_eq!(cell.outcome.ending, Ending::PeerClosed);
    assert!(!cell.server_time_wait);
    assert!(cell.peer_got_goodbye);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_of_a_socket_still_connecting_resets_it() {
    // A listener with a full accept queue drops new SYNs: the next connect stays in SYN-SENT.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    let connecting = loop {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into()); // EINPROGRESS
        tokio::time::sleep(Duration::from_millis(20)).await;
        let std: std::net::TcpStream = s.into();
        if farewell::sys::tcp_state(&std).unwrap() == TcpState::SynSent {
            break std;
        }
        queued.push(std);
        assert!(
            queued.len() < 16,
            "could not get a socket stuck in SYN-SENT"
        );
    };
    let local = connecting.local_addr().unwrap();
    let stream = tokio::net::TcpStream::from_std(connecting).unwrap();
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        farewell::close(stream, Policy::default(), GOODBYE),
    )
    .await
    .unwrap();
    eprintln!("{outcome}");
    assert_eq!(outcome.ending, Ending::NotEstablished);
    assert_eq!(outcome.time_wait, TimeWait::Nobody);
    assert_eq!(
        kernel_state(local, addr),
        None,
        "the connecting socket is gone from the kernel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_of_split_halves_reunites_without_sending_fin() {
    let (server, mut client) = connected_pair(V4, None).await;
    let (server_addr, client_addr) = (server.local_addr().unwrap(), client.local_addr().unwrap());
    let (read, write) = server.into_split();
    let peer = tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 64];
        while let Ok(n @ 1..) = client.read(&mut chunk).await {
            buf.extend_from_slice(&chunk[..n]);
            if buf.ends_with(GOODBYE) {
                break;
            }
        }
        buf
    });
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        farewell::close_split(read, write, Policy::default(), GOODBYE),
    )
    .await
    .unwrap()
    .expect("halves of one stream reunite");
    assert_eq!(peer.await.unwrap(), GOODBYE);
    assert_eq!(outcome.ending, Ending::PeerClosed);
    common::settle(server_addr, client_addr).await;
    assert_ne!(
        kernel_state(server_addr, client_addr),
        Some(TcpState::TimeWait)
    );
    assert_eq!(
        kernel_state(client_addr, server_addr),
        Some(TcpState::TimeWait),
        "the peer keeps TIME-WAIT"
    );
}

#[tokio::test]
async fn teardown_of_halves_from_two_streams_is_refused_and_gives_them_back() {
    let (a, _ca) = connected_pair(V4, None).await;
    let (b, _cb) = connected_pair(V4, None).await;
    let (read_a, _write_a) = a.into_split();
    let (_read_b, write_b) = b.into_split();
    let err = farewell::close_split(read_a, write_b, Policy::default(), GOODBYE)
        .await
        .expect_err("halves of different streams");
    let (read_a, write_b) = (err.0, err.1);
    assert!(read_a.peer_addr().is_ok() && write_b.peer_addr().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_of_an_already_reset_stream_is_a_peer_reset() {
    let cell = run_cell(Policy::default(), Behaviour::ResetsFirst, V4).await;
    assert_eq!(cell.outcome.ending, Ending::PeerReset);
    assert_eq!(
        cell.outcome.unacked_at_close, None,
        "counters are stale after a reset (farewell::facts F5)"
    );
}
