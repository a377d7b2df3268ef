//! The background closer on real sockets: many concurrent teardowns, outcomes
//! reported for each, nothing left in the kernel's table on the server's port.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{connected_pair, kernel_state, test_policy, GOODBYE, V4};
use farewell::census::{self, Filter, StateSet};
use farewell::{Closer, Ending, Policy, TcpState, TimeWait};
use tokio::io::AsyncReadExt;

/// Sockets on the server's address other than the listener, per the kernel,
/// after waiting (bounded) for transient closing states to pass.
async fn leftovers_on(server: std::net::SocketAddr) -> census::StateCounts {
    let filter = Filter::local(server).states(StateSet::all().without(TcpState::Listen));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let counts = census::count_by_state(&filter).unwrap();
        let transient = counts.get(TcpState::LastAck) + counts.get(TcpState::FinWait1);
        if transient == 0 || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closer_peer_first_many_concurrent_peers_leave_nothing_on_the_server_port() {
    const N: usize = 300;
    let listener = common::clean_listener().await;
    let addr = listener.local_addr().unwrap();
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&outcomes);
    let closer = Closer::builder(test_policy("peer-first"))
        .on_outcome(move |o| sink.lock().unwrap().push(o))
        .build();

    // Two thirds cooperate (close on BYE), one third ignores the goodbye.
    let mut clients = Vec::new();
    for i in 0..N {
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        closer.close(server, GOODBYE);
        clients.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while let Ok(n @ 1..) = client.read(&mut buf).await {
                got.extend_from_slice(&buf[..n]);
                if i % 3 != 0 && got.ends_with(GOODBYE) {
                    break; // cooperative: close now
                }
            }
            got.ends_with(GOODBYE)
        }));
    }
    assert!(
        closer.in_flight() > 0,
        "close() hands over and returns before the teardown ends"
    );
    tokio::time::timeout(Duration::from_secs(20), closer.idle())
        .await
        .expect("every teardown ends");
    for client in clients {
        assert!(
            client.await.unwrap(),
            "every peer received the whole goodbye"
        );
    }

    let stats = closer.stats();
    eprintln!("closer stats: {stats}");
    assert_eq!(stats.finished(), N as u64);
    assert_eq!(stats.in_flight, 0);
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    assert_eq!(outcomes.len(), N);
    assert!(outcomes.iter().all(|o| o.time_wait != TimeWait::Us));
    assert_eq!(
        stats.count(Ending::PeerClosed) + stats.count(Ending::ResetAfterGrace),
        N as u64
    );
    assert!(
        stats.count(Ending::ResetAfterGrace) >= (N / 3) as u64,
        "the ignoring third is reset: {stats}"
    );

    let left = leftovers_on(addr).await;
    assert_eq!(
        left.total(),
        0,
        "kernel still has sockets on the server port: {left}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closer_plain_policy_does_leave_time_wait_on_the_server_port() {
    // The contrast that makes the test above meaningful: the same census check fails for plain.
    const N: usize = 20;
    let listener = common::clean_listener().await;
    let addr = listener.local_addr().unwrap();
    let closer = Closer::new(test_policy("plain"));
    let mut clients = Vec::new();
    for _ in 0..N {
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        closer.close(server, GOODBYE);
        clients.push(tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = client.read_to_end(&mut buf).await;
        }));
    }
    tokio::time::timeout(Duration::from_secs(10), closer.idle())
        .await
        .unwrap();
    for client in clients {
        client.await.unwrap();
    }
    let left = leftovers_on(addr).await;
    assert_eq!(
        left.get(TcpState::TimeWait),
        N,
        "plain leaves one server TIME-WAIT per connection: {left}"
    );
}

#[tokio::test]
async fn teardown_future_is_small() {
    let (server, _client) = connected_pair(V4, None).await;
    let future = farewell::close(server, Policy::default(), GOODBYE);
    let size = std::mem::size_of_val(&future);
    eprintln!("teardown future: {size} bytes");
    assert!(
        size <= 512,
        "a pending teardown's future should stay within 512 B, is {size} B"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closer_reap_destroys_our_time_wait_entry_after_a_clean_lingering_close() {
    if !farewell_testkit::support::tools::require_net_admin(
        "closer_reap_destroys_our_time_wait_entry_after_a_clean_lingering_close",
    ) {
        return;
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let closer = Closer::builder(test_policy("lingering"))
        .reap_time_wait(true)
        .on_outcome(move |o| {
            let _ = tx.send(o);
        })
        .build();
    let (server, mut client) = connected_pair(V4, None).await;
    let (server_addr, client_addr) = (server.local_addr().unwrap(), client.local_addr().unwrap());
    closer.close(server, GOODBYE);
    let mut buf = Vec::new();
    client.read_to_end(&mut buf).await.unwrap(); // cooperative: read to EOF, then close
    drop(client);
    let outcome = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    eprintln!("{outcome}");
    assert_eq!(outcome.ending, Ending::LingeringClose);
    assert_eq!(outcome.time_wait, TimeWait::Us);
    assert!(outcome.reaped, "the entry was reaped: {outcome}");
    assert_eq!(
        kernel_state(server_addr, client_addr),
        None,
        "no entry left on our side"
    );
    assert_eq!(
        kernel_state(client_addr, server_addr),
        None,
        "the peer closed second: nothing there either"
    );
}

/// The kernel: the server's socket is gone (its LAST-ACK passes at once on loopback).
async fn server_released(local: std::net::SocketAddr, peer: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while kernel_state(local, peer) == Some(TcpState::LastAck) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        kernel_state(local, peer),
        None,
        "the server keeps no socket"
    );
}

/// The kernel after a passive close: the server keeps nothing, the client TIME-WAIT.
async fn assert_passive_close_left_time_wait_to_the_client(
    local: std::net::SocketAddr,
    peer: std::net::SocketAddr,
) {
    server_released(local, peer).await;
    assert_eq!(kernel_state(peer, local), Some(TcpState::TimeWait));
}

/// Reads exactly the goodbye (bounded), as a cooperative client does.
async fn read_goodbye(client: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut got = vec![0; GOODBYE.len()];
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
        .await
        .expect("the goodbye within 5 s")
        .expect("reading the goodbye");
    got
}

#[tokio::test]
async fn closer_ends_a_teardown_whose_peer_fin_is_queued_inside_close() {
    use tokio::io::AsyncWriteExt;
    let (server, mut client) = connected_pair(V4, None).await;
    let (local, peer) = (server.local_addr().unwrap(), server.peer_addr().unwrap());
    // The client is done sending: its FIN is queued at the server before the hand-over.
    client.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), server.readable())
        .await
        .expect("the client's FIN within 5 s")
        .unwrap();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let closer = Closer::builder(Policy::default())
        .on_outcome(move |outcome| sink.lock().unwrap().push(outcome))
        .build();
    closer.close(server, GOODBYE);

    // Ended inside close(): nothing in flight, the outcome already reported.
    assert_eq!(closer.in_flight(), 0, "{}", closer.stats());
    let outcomes = seen.lock().unwrap().clone();
    assert_eq!(outcomes.len(), 1, "one outcome, reported inside close()");
    assert_eq!(outcomes[0].ending, Ending::PeerClosed, "{}", outcomes[0]);
    assert_eq!(outcomes[0].time_wait, TimeWait::Peer, "{}", outcomes[0]);
    assert_eq!(
        outcomes[0].peer,
        Some(peer),
        "the hook's outcome has the addresses"
    );

    // The client got the whole goodbye, then EOF.
    assert_eq!(read_goodbye(&mut client).await, GOODBYE);
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest))
        .await
        .expect("EOF within 5 s")
        .unwrap();
    assert!(rest.is_empty(), "nothing after the goodbye: {rest:?}");
    // The kernel: the client keeps TIME-WAIT, the server nothing (LAST-ACK passes at once).
    assert_passive_close_left_time_wait_to_the_client(local, peer).await;
}

#[tokio::test]
async fn closer_without_a_hook_waits_for_the_peer_in_a_task_and_counts_its_ending() {
    let (server, mut client) = connected_pair(V4, None).await;
    let (local, peer) = (server.local_addr().unwrap(), server.peer_addr().unwrap());
    // No hook: the teardown only counts its ending (no addresses, no last probe).
    let closer = Closer::new(Policy::default());
    closer.close(server, GOODBYE);
    // The client has not closed yet: the teardown waits for it, in a task.
    assert_eq!(closer.in_flight(), 1, "{}", closer.stats());

    assert_eq!(read_goodbye(&mut client).await, GOODBYE);
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), closer.idle())
        .await
        .expect("the teardown ends within 5 s of the client's FIN");
    let stats = closer.stats();
    assert_eq!(stats.count(Ending::PeerClosed), 1, "{stats}");
    assert_eq!(stats.finished(), 1, "{stats}");
    assert_ne!(
        kernel_state(local, peer),
        Some(TcpState::TimeWait),
        "no server TIME-WAIT"
    );
}

/// A `Handoff` with the address `accept` gave: the teardown counts and
/// reports that address, and asks the kernel for none (here the given
/// address is a documentation one, 192.0.2.7, that no socket has: had the
/// teardown asked the kernel, the loopback address would be counted).
#[tokio::test]
async fn closer_counts_and_reports_the_address_a_handoff_gives() {
    use tokio::io::AsyncWriteExt;
    let given: std::net::SocketAddr = "192.0.2.7:4242".parse().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let closer = Closer::builder(Policy::default())
        .heavy_client_threshold(1)
        .on_outcome(move |outcome| sink.lock().unwrap().push(outcome))
        .build();
    let mut kernel_peers = Vec::new();
    for _ in 0..2 {
        let (server, mut client) = connected_pair(V4, None).await;
        let (local, peer) = (server.local_addr().unwrap(), server.peer_addr().unwrap());
        kernel_peers.push(peer.ip());
        // The client's FIN is in before the hand-over, after everything (nothing) was
        // delivered: the teardown ends inside close(), after classifying the client.
        client.shutdown().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), server.readable())
            .await
            .expect("the client's FIN within 5 s")
            .unwrap();
        closer.close(farewell::Handoff::new(server, given), bytes::Bytes::new());
        assert_eq!(closer.in_flight(), 0, "{}", closer.stats());
        // The client gets EOF (light) or a reset (heavy), never data.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest))
            .await
            .expect("the end within 5 s");
        assert!(rest.is_empty(), "{rest:?}");
        server_released(local, peer).await;
    }
    assert_eq!(
        closer.recent_endings(given.ip()),
        2,
        "the given address is counted"
    );
    for ip in kernel_peers {
        assert_eq!(closer.recent_endings(ip), 0, "the kernel's address is not");
    }
    let outcomes = seen.lock().unwrap().clone();
    assert_eq!(outcomes.len(), 2);
    assert!(
        outcomes.iter().all(|o| o.peer == Some(given)),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[0].ending, Ending::PeerClosed, "{}", outcomes[0]);
    // Past the threshold of 1: the second ending is a heavy client's.
    assert_eq!(
        outcomes[1].ending,
        Ending::ResetAfterPeerFin,
        "{}",
        outcomes[1]
    );
    assert_eq!(outcomes[1].time_wait, TimeWait::Nobody, "{}", outcomes[1]);
}

/// `Handoff::peer_fin_read`: the caller read the client's FIN (and all it
/// sent before); the teardown takes its word, ends inside close(), and the
/// client gets the goodbye, then end of file (the passive close), no reset.
#[tokio::test]
async fn closer_takes_a_fin_the_caller_read_and_closes_passively_at_once() {
    use tokio::io::AsyncWriteExt;
    let (mut server, mut client) = connected_pair(V4, None).await;
    let (local, peer) = (server.local_addr().unwrap(), server.peer_addr().unwrap());
    client.write_all(b"last words").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), server.read_to_end(&mut got))
        .await
        .expect("the client's bytes and FIN within 5 s")
        .unwrap();
    assert_eq!(got, b"last words");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let closer = Closer::builder(Policy::default())
        .on_outcome(move |outcome| sink.lock().unwrap().push(outcome))
        .build();
    closer.close(
        farewell::Handoff::new(server, peer).peer_fin_read(),
        GOODBYE,
    );
    assert_eq!(
        closer.in_flight(),
        0,
        "ended inside close(): {}",
        closer.stats()
    );
    let outcomes = seen.lock().unwrap().clone();
    assert_eq!(outcomes.len(), 1);
    // The FIN came before the goodbye: a half-close, answered passively.
    assert_eq!(outcomes[0].ending, Ending::PeerClosed, "{}", outcomes[0]);
    assert_eq!(outcomes[0].time_wait, TimeWait::Peer, "{}", outcomes[0]);
    assert_eq!(outcomes[0].bytes_drained, 0, "nothing read after the FIN");

    assert_eq!(read_goodbye(&mut client).await, GOODBYE);
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest))
        .await
        .expect("EOF within 5 s")
        .expect("end of file, not a reset");
    assert!(rest.is_empty(), "{rest:?}");
    assert_passive_close_left_time_wait_to_the_client(local, peer).await;
}
