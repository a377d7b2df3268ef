//! `Closer::close_here` on real sockets: the teardown runs in the caller's
//! task and ends as a spawned one would, and a teardown whose future is
//! dropped (the task aborted, the runtime shut down) ends at once the way a
//! hurry ends it: the peer gets the goodbye and a reset, never our FIN, and
//! the kernel keeps no TIME-WAIT on our side.

use crate::common;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use common::{
    clean_listener, closer_with_outcomes, kernel_state, read_to_end_or_error, read_whole_goodbye,
    settle, GOODBYE, PEER_BOUND,
};
use farewell::{Closer, Ending, PeerFirst, Policy, TcpState, TimeWait};
use tokio::net::TcpStream;

/// Peer-first with a grace long enough that only the peer or a cut ends it.
fn patient() -> Policy {
    Policy::PeerFirst(PeerFirst {
        grace: Duration::from_secs(60),
        ..PeerFirst::default()
    })
}

/// The peer's view after a cut: the goodbye, then a reset (not EOF), and its
/// socket gone from the kernel's table, as is ours.
async fn assert_cut(client: &mut TcpStream, server: SocketAddr) {
    let local = client.local_addr().unwrap();
    let (rest, error) = read_to_end_or_error(client).await;
    assert!(rest.is_empty(), "nothing after the goodbye, got {rest:?}");
    assert_eq!(
        error,
        Some(io::ErrorKind::ConnectionReset),
        "the peer sees a reset, not our FIN"
    );
    assert_eq!(
        kernel_state(local, server),
        None,
        "the peer's socket is gone"
    );
    assert_eq!(
        kernel_state(server, local),
        None,
        "no socket of ours is left"
    );
}

#[tokio::test]
async fn close_here_runs_the_teardown_in_the_callers_task() {
    let listener = clean_listener().await;
    let server_addr = listener.local_addr().unwrap();
    let (closer, mut outcomes) = closer_with_outcomes(patient());
    let mut client = TcpStream::connect(server_addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let client_addr = client.local_addr().unwrap();

    let closing = closer.close_here(server, GOODBYE, patient());
    assert!(!closing.is_finished(), "the peer has not closed yet");
    assert_eq!(closer.in_flight(), 1, "counted from the call");
    let peer = async move {
        read_whole_goodbye(&mut client).await;
        drop(client); // the peer's FIN: the teardown closes passively
    };
    tokio::time::timeout(PEER_BOUND, async { tokio::join!(closing, peer) })
        .await
        .expect("the teardown ends once the peer closes");

    assert_eq!(closer.in_flight(), 0);
    let outcome = outcomes.try_recv().expect("the hook got the outcome");
    assert_eq!(outcome.ending, Ending::PeerClosed, "{outcome}");
    assert_eq!(outcome.time_wait, TimeWait::Peer, "{outcome}");
    settle(server_addr, client_addr).await;
    assert_eq!(
        kernel_state(server_addr, client_addr),
        None,
        "the server keeps nothing"
    );
    assert_eq!(
        kernel_state(client_addr, server_addr),
        Some(TcpState::TimeWait),
        "the peer keeps TIME-WAIT"
    );
}

#[tokio::test]
async fn close_here_is_ready_at_once_when_the_peers_fin_is_queued() {
    let listener = clean_listener().await;
    let (closer, mut outcomes) = closer_with_outcomes(patient());
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    drop(client);
    // Bounded wait until the kernel has the peer's FIN (CLOSE-WAIT).
    let (local, peer) = (server.local_addr().unwrap(), server.peer_addr().unwrap());
    tokio::time::timeout(PEER_BOUND, async {
        while kernel_state(local, peer) != Some(TcpState::CloseWait) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the peer's FIN arrives");

    let closing = closer.close_here(server, &b""[..], patient());
    assert!(closing.is_finished(), "nothing to wait for");
    let outcome = outcomes.try_recv().expect("reported inside the call");
    assert_eq!(outcome.ending, Ending::PeerClosed, "{outcome}");
    closing.await;
    assert_eq!(closer.in_flight(), 0);
}

#[tokio::test]
async fn dropping_a_closing_cuts_the_teardown_with_a_reset() {
    let listener = clean_listener().await;
    let server_addr = listener.local_addr().unwrap();
    let (closer, mut outcomes) = closer_with_outcomes(patient());
    let mut client = TcpStream::connect(server_addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();

    // The teardown runs in a task of its own; aborting the task drops it.
    let task = tokio::spawn(closer.close_here(server, GOODBYE, patient()));
    read_whole_goodbye(&mut client).await;
    assert_eq!(closer.in_flight(), 1, "waiting for a peer that stays");
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    assert_eq!(closer.in_flight(), 0, "the cut ended it in the drop");
    let outcome = outcomes.try_recv().expect("the cut is reported");
    assert_eq!(outcome.ending, Ending::ResetAtDeadline, "{outcome}");
    assert_eq!(outcome.time_wait, TimeWait::Nobody, "{outcome}");
    assert_cut(&mut client, server_addr).await;
}

/// A runtime shut down with teardowns pending (spawned by `Closer::close`)
/// cuts them as a hurry would: a reset after the goodbye, not the plain
/// close (our FIN, our TIME-WAIT) that dropping the stream would make.
#[test]
fn shutting_the_runtime_down_cuts_pending_teardowns() {
    let clients = tokio::runtime::Runtime::new().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (tx, outcomes) = std::sync::mpsc::channel();
    let (server_addr, mut peers) = runtime.block_on(async {
        let listener = clean_listener().await;
        let closer = Closer::builder(patient())
            .on_outcome(move |o| {
                let _ = tx.send(o);
            })
            .build();
        let mut peers = Vec::new();
        for _ in 0..3 {
            let client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (server, _) = listener.accept().await.unwrap();
            closer.close(server, GOODBYE);
            peers.push(client.into_std().unwrap());
        }
        (listener.local_addr().unwrap(), peers)
    });
    // The peers take their goodbyes on another runtime, then stay.
    let mut clients_std = Vec::new();
    clients.block_on(async {
        for peer in peers.drain(..) {
            let mut client = TcpStream::from_std(peer).unwrap();
            read_whole_goodbye(&mut client).await;
            clients_std.push(client);
        }
    });
    drop(runtime);

    let mut seen = Vec::new();
    while let Ok(outcome) = outcomes.try_recv() {
        seen.push(outcome.ending);
    }
    assert_eq!(
        seen,
        vec![Ending::ResetAtDeadline; 3],
        "each pending teardown is cut and reported"
    );
    clients.block_on(async {
        for mut client in clients_std {
            assert_cut(&mut client, server_addr).await;
        }
    });
}
