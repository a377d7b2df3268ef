//! `Closer::hurry` on real sockets: teardowns that would wait for a long
//! time end at once, by a reset the peer sees, or by the passive close when
//! the peer's FIN is in; the kernel's table shows no TIME-WAIT on our side.

use crate::common;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{
    clean_listener, closer_with_outcomes, kernel_state, read_to_end_or_error, read_whole_goodbye,
    settle, GOODBYE, PEER_BOUND,
};
use farewell::census::{self, Filter, StateSet};
use farewell::{Delivery, Ending, Lingering, PeerFirst, Policy, TcpState};
use tokio::net::TcpStream;

/// Policies that, without the hurry, would keep a peer that ignores the
/// goodbye for a minute.
fn slow_policies() -> [Policy; 2] {
    let minute = Duration::from_secs(60);
    [
        Policy::Lingering(Lingering {
            stall_timeout: minute,
            delivery_timeout: minute,
            reset_on_timeout: false,
        }),
        Policy::PeerFirst(PeerFirst {
            grace: minute,
            ..PeerFirst::default()
        }),
    ]
}

/// Sockets on the server's address other than the listener, per the kernel.
fn server_sockets(server: SocketAddr) -> census::StateCounts {
    census::count_by_state(&Filter::local(server).states(StateSet::all().without(TcpState::Listen)))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hurry_resets_slow_teardowns_of_peers_that_ignore_the_goodbye() {
    for policy in slow_policies() {
        let listener = clean_listener().await;
        let server_addr = listener.local_addr().unwrap();
        let (closer, mut outcomes) = closer_with_outcomes(policy);
        let mut clients = Vec::new();
        for _ in 0..3 {
            let mut client = TcpStream::connect(server_addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            closer.close(server, GOODBYE);
            // The client takes the goodbye and keeps its socket open.
            read_whole_goodbye(&mut client).await;
            clients.push(client);
        }
        assert_eq!(closer.in_flight(), 3, "{policy}: all wait for the peers");

        closer.hurry();
        tokio::time::timeout(PEER_BOUND, closer.idle())
            .await
            .unwrap_or_else(|_| panic!("{policy}: hurried teardowns end"));

        for client in &mut clients {
            let (rest, error) = read_to_end_or_error(client).await;
            assert!(rest.is_empty(), "{policy}: nothing after the goodbye");
            // Lingering sent its FIN after the goodbye: EOF, unless the RST
            // came first (a pending error wins over EOF on read).
            assert!(
                matches!(error, Some(io::ErrorKind::ConnectionReset))
                    || (error.is_none() && matches!(policy, Policy::Lingering(_))),
                "{policy}: the peer sees the reset, got {error:?}"
            );
            // Reset: the peer's kernel dropped the connection (else CLOSE-WAIT).
            let (local, peer) = (client.local_addr().unwrap(), client.peer_addr());
            assert!(
                peer.is_err(),
                "{policy}: the peer's socket is no longer connected"
            );
            assert_eq!(kernel_state(local, server_addr), None, "{policy}");
        }
        for _ in 0..3 {
            let outcome = outcomes.try_recv().expect("an outcome per teardown");
            assert_eq!(outcome.ending, Ending::ResetAtDeadline, "{outcome}");
            assert_eq!(outcome.goodbye, Delivery::Confirmed, "{outcome}");
        }
        let left = server_sockets(server_addr);
        assert_eq!(
            left.total(),
            0,
            "{policy}: nothing left on our side: {left}"
        );
        assert_eq!(left.get(TcpState::TimeWait), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hurry_before_the_handover_still_sends_the_goodbye_once_then_resets() {
    let listener = clean_listener().await;
    let server_addr = listener.local_addr().unwrap();
    let [_, peer_first] = slow_policies();
    let (closer, mut outcomes) = closer_with_outcomes(peer_first);
    closer.hurry();
    let mut client = TcpStream::connect(server_addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    closer.close(server, GOODBYE);
    tokio::time::timeout(PEER_BOUND, closer.idle())
        .await
        .unwrap();

    let (got, error) = read_to_end_or_error(&mut client).await;
    assert_eq!(got, GOODBYE, "one write attempt: the goodbye went out");
    assert_eq!(error, Some(io::ErrorKind::ConnectionReset));
    let outcome = outcomes.try_recv().unwrap();
    assert_eq!(outcome.ending, Ending::ResetAtDeadline, "{outcome}");
    assert_eq!(server_sockets(server_addr).total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hurry_closes_passively_when_the_peer_fin_is_in_and_the_peer_keeps_time_wait() {
    let listener = clean_listener().await;
    let server_addr = listener.local_addr().unwrap();
    let [_, peer_first] = slow_policies();
    let (closer, mut outcomes) = closer_with_outcomes(peer_first);
    let mut client = TcpStream::connect(server_addr).await.unwrap();
    let client_addr = client.local_addr().unwrap();
    let (server, _) = listener.accept().await.unwrap();
    // The peer half-closes first; its FIN waits, unread, in our socket.
    socket2::SockRef::from(&client)
        .shutdown(std::net::Shutdown::Write)
        .unwrap();
    let deadline = Instant::now() + PEER_BOUND;
    while kernel_state(server_addr, client_addr) != Some(TcpState::CloseWait) {
        assert!(Instant::now() < deadline, "the peer's FIN arrives");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    closer.hurry();
    closer.close(server, GOODBYE);
    tokio::time::timeout(PEER_BOUND, closer.idle())
        .await
        .unwrap();

    let (got, error) = read_to_end_or_error(&mut client).await;
    assert_eq!(
        (got.as_slice(), error),
        (GOODBYE, None),
        "goodbye, then our FIN"
    );
    let outcome = outcomes.try_recv().unwrap();
    assert_eq!(outcome.ending, Ending::PeerClosed, "{outcome}");
    drop(client);
    settle(server_addr, client_addr).await;
    assert_eq!(
        kernel_state(server_addr, client_addr),
        None,
        "nothing on our side"
    );
    assert_eq!(
        kernel_state(client_addr, server_addr),
        Some(TcpState::TimeWait),
        "the peer, which closed first, keeps TIME-WAIT"
    );
}
