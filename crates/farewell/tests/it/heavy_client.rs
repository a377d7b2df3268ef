//! Who keeps TIME-WAIT after the peer's FIN ([F13](farewell::facts#f13)):
//! a light client the textbook passive close, a heavy one a reset that leaves
//! TIME-WAIT nowhere; a half-closed peer still reading always gets its EOF.
//! Judged by the kernel's table on both sides (on loopback both ends are in
//! one table) and by what the peer application read.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{closer_with_outcomes, read_to_end_or_error, GOODBYE, PEER_BOUND};
use farewell::census::{self, Filter, StateSet};
use farewell::{
    Closer, Ending, PeerFinChoice, PeerFirst, PeerTimeWait, Policy, TcpState, TimeWait,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn peer_first(peer_time_wait: PeerTimeWait) -> Policy {
    Policy::PeerFirst(PeerFirst {
        grace: Duration::from_secs(5),
        peer_time_wait,
        ..PeerFirst::default()
    })
}

/// The kernel's sockets toward and from `server`'s port, the listener left
/// out, once transient closing states have passed (bounded wait).
async fn both_sides(server: SocketAddr) -> (census::StateCounts, census::StateCounts) {
    let port = server.port();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let ours = census::count_by_state(
            &Filter::local_port(port).states(StateSet::all().without(TcpState::Listen)),
        )
        .unwrap();
        let theirs = census::count_by_state(&Filter::remote_port(port)).unwrap();
        let transient = [TcpState::LastAck, TcpState::FinWait1, TcpState::FinWait2]
            .iter()
            .map(|&s| ours.get(s) + theirs.get(s))
            .sum::<usize>();
        if transient == 0 || std::time::Instant::now() > deadline {
            return (ours, theirs);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `n` cooperative clients one after the other, each reading the whole
/// goodbye and closing; each teardown ends (bounded) before the next
/// connection, so each ending is counted before the next one is decided.
async fn cooperative_clients(listener: &tokio::net::TcpListener, closer: &Closer, n: usize) {
    let addr = listener.local_addr().unwrap();
    for _ in 0..n {
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        closer.close(server, GOODBYE);
        common::read_whole_goodbye(&mut client).await;
        drop(client);
        tokio::time::timeout(PEER_BOUND, closer.idle())
            .await
            .expect("the teardown ends");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_spare_resets_after_the_peers_fin_and_nobody_keeps_time_wait() {
    const N: usize = 20;
    let listener = common::clean_listener().await;
    let addr = listener.local_addr().unwrap();
    let (closer, mut outcomes) = closer_with_outcomes(peer_first(PeerTimeWait::Spare));
    cooperative_clients(&listener, &closer, N).await;
    for _ in 0..N {
        let o = outcomes.recv().await.unwrap();
        assert_eq!(o.ending, Ending::ResetAfterPeerFin, "{o}");
        assert_eq!(o.time_wait, TimeWait::Nobody, "{o}");
        assert_eq!(o.peer_fin, Some(PeerFinChoice::Spared), "{o}");
    }
    let (ours, theirs) = both_sides(addr).await;
    assert_eq!(ours.total(), 0, "server side: {ours:?}");
    assert_eq!(
        theirs.total(),
        0,
        "client side (TIME-WAIT or FIN-WAIT-2 left): {theirs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_auto_light_client_keeps_time_wait_until_it_turns_heavy() {
    const HEAVY_AFTER: u32 = 5;
    const N: usize = 12;
    let listener = common::clean_listener().await;
    let addr = listener.local_addr().unwrap();
    let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    let closer = Closer::builder(peer_first(PeerTimeWait::Auto))
        .heavy_client_threshold(HEAVY_AFTER)
        .on_outcome(move |o| {
            let _ = tx.send(o);
        })
        .build();
    cooperative_clients(&listener, &closer, N).await;
    for i in 1..=N as u32 {
        let o = outcomes.recv().await.unwrap();
        if i <= HEAVY_AFTER {
            assert_eq!(o.ending, Ending::PeerClosed, "{o}");
            assert_eq!(o.peer_fin, Some(PeerFinChoice::Light { recent: i }), "{o}");
        } else {
            assert_eq!(o.ending, Ending::ResetAfterPeerFin, "{o}");
            assert_eq!(o.peer_fin, Some(PeerFinChoice::Heavy { recent: i }), "{o}");
        }
    }
    let (ours, theirs) = both_sides(addr).await;
    assert_eq!(ours.total(), 0, "the server keeps nothing: {ours:?}");
    // The light endings' TIME-WAIT is the client's, and only theirs.
    assert_eq!(theirs.get(TcpState::TimeWait), HEAVY_AFTER as usize);
    assert_eq!(theirs.total(), HEAVY_AFTER as usize, "{theirs:?}");
}

/// Reads (bounded) what the client sent until its FIN: the server has read
/// the FIN, as a server that hands over with `Handoff::peer_fin_read`.
async fn read_until_fin(server: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(PEER_BOUND, server.read_to_end(&mut got))
        .await
        .expect("the client's bytes and FIN arrive")
        .unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_half_closed_peer_still_reading_gets_eof_not_a_reset() {
    let listener = common::clean_listener().await;
    let addr = listener.local_addr().unwrap();
    let (closer, mut outcomes) = closer_with_outcomes(peer_first(PeerTimeWait::Spare));
    let mut client = TcpStream::connect(addr).await.unwrap();
    let (mut server, _) = listener.accept().await.unwrap();
    // The client sends its request and half-closes (`nc -N`), then reads.
    client.write_all(b"QUIT\n").await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(read_until_fin(&mut server).await, b"QUIT\n");
    closer.close(server, GOODBYE);
    let (got, error) = read_to_end_or_error(&mut client).await;
    assert_eq!(got, GOODBYE);
    assert_eq!(error, None, "the half-closed peer gets EOF, not a reset");
    let o = outcomes.recv().await.unwrap();
    assert_eq!(o.ending, Ending::PeerClosed, "{o}");
    assert_eq!(o.peer_fin, Some(PeerFinChoice::HalfClose), "{o}");
}

/// The kernel fact behind the rule above ([F13](farewell::facts#f13)): a
/// reset after the peer's FIN, once everything was ACKed, hands a peer that
/// half-closed but is still reading its data, then `ECONNRESET` instead of EOF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fact_reset_after_a_half_close_gives_the_reader_its_data_then_econnreset() {
    let (server, mut client) = common::connected_pair(common::V4, None).await;
    server.try_write(b"data").unwrap();
    client.shutdown().await.unwrap();
    // Wait (bounded) until our data is ACKed and the client's FIN is in.
    let deadline = std::time::Instant::now() + PEER_BOUND;
    while !(farewell::sys::unacked_bytes(&server).unwrap() == 0
        && farewell::sys::tcp_state(&server).unwrap() == TcpState::CloseWait)
    {
        assert!(std::time::Instant::now() < deadline, "never ACKed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    farewell::sys::abort(server.into_std().unwrap()).unwrap();
    let (got, error) = read_to_end_or_error(&mut client).await;
    assert_eq!(got, b"data");
    assert_eq!(error, Some(std::io::ErrorKind::ConnectionReset));
}

/// The other half of [F13](farewell::facts#f13): a peer that read everything
/// and closed (its application is gone; its socket waits in FIN-WAIT-1 or -2)
/// is freed by the reset: no socket is left on either side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fact_reset_after_the_peers_fin_frees_both_sides() {
    let (server, client) = common::connected_pair(common::V4, None).await;
    let (server_addr, client_addr) = (server.local_addr().unwrap(), client.local_addr().unwrap());
    drop(client);
    let deadline = std::time::Instant::now() + PEER_BOUND;
    while farewell::sys::tcp_state(&server).unwrap() != TcpState::CloseWait {
        assert!(std::time::Instant::now() < deadline, "no FIN");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // FIN-WAIT-1 until our kernel's delayed ACK of the FIN goes out, then FIN-WAIT-2.
    let client_state = common::kernel_state(client_addr, server_addr);
    assert!(
        matches!(client_state, Some(TcpState::FinWait1 | TcpState::FinWait2)),
        "{client_state:?}"
    );
    farewell::sys::abort(server.into_std().unwrap()).unwrap();
    common::settle(server_addr, client_addr).await;
    assert_eq!(common::kernel_state(server_addr, client_addr), None);
    assert_eq!(common::kernel_state(client_addr, server_addr), None);
}

/// [`GraceEnd::Fin`](farewell::GraceEnd::Fin): a peer that waits for our
/// close (it reads until end of file and sends no FIN of its own) gets the
/// whole goodbye, then end of file, not a reset; nobody keeps TIME-WAIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_grace_end_fin_gives_a_reader_eof_and_nobody_time_wait() {
    let listener = common::clean_listener().await;
    let addr = listener.local_addr().unwrap();
    let (closer, mut outcomes) = closer_with_outcomes(Policy::PeerFirst(PeerFirst {
        grace: Duration::from_millis(50),
        grace_end: farewell::GraceEnd::Fin,
        ..PeerFirst::default()
    }));
    for _ in 0..10 {
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        closer.close(server, GOODBYE);
        let (got, error) = read_to_end_or_error(&mut client).await;
        assert_eq!(got, GOODBYE);
        assert_eq!(error, None, "end of file, not a reset");
        let o = outcomes.recv().await.unwrap();
        assert_eq!(o.ending, Ending::FinAfterGrace, "{o}");
        assert_eq!(o.time_wait, TimeWait::Nobody, "{o}");
        // The client's socket stays until it closes: closing now, after our
        // FIN was ACKed and reset, leaves nothing.
        drop(client);
    }
    let (ours, theirs) = both_sides(addr).await;
    assert_eq!(ours.total(), 0, "server side: {ours:?}");
    assert_eq!(theirs.get(TcpState::TimeWait), 0, "client side: {theirs:?}");
}

/// A server that read the client's FIN itself (`Handoff::peer_fin_read`)
/// and has nothing more to say: everything it wrote ACKed, the FIN is a
/// goodbye, and a spared client gets the reset at once; neither side keeps
/// anything, and the client read the whole reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fin_read_by_the_caller_everything_acked_spared_nobody_keeps_time_wait() {
    let listener = common::clean_listener().await;
    let addr = listener.local_addr().unwrap();
    let (closer, mut outcomes) = closer_with_outcomes(peer_first(PeerTimeWait::Spare));
    let mut client = TcpStream::connect(addr).await.unwrap();
    let (mut server, peer) = listener.accept().await.unwrap();
    server.write_all(b"reply").await.unwrap();
    let mut reply = [0u8; 5];
    tokio::time::timeout(PEER_BOUND, client.read_exact(&mut reply))
        .await
        .expect("the reply arrives")
        .unwrap();
    client.shutdown().await.unwrap();
    assert!(read_until_fin(&mut server).await.is_empty());
    // The reply's ACK came before the FIN, which the server has read.
    closer.close(
        farewell::Handoff::new(server, peer).peer_fin_read(),
        &b""[..],
    );
    let o = outcomes.recv().await.unwrap();
    assert_eq!(o.ending, Ending::ResetAfterPeerFin, "{o}");
    assert_eq!(o.peer_fin, Some(PeerFinChoice::Spared), "{o}");
    assert_eq!(&reply, b"reply");
    drop(client);
    let (ours, theirs) = both_sides(addr).await;
    assert_eq!(ours.total(), 0, "the server keeps nothing: {ours:?}");
    assert_eq!(theirs.total(), 0, "nor does the client: {theirs:?}");
}

/// The same hand-over while the client, having sent its FIN, is still
/// taking the server's bytes (its receive buffer full, a large reply
/// unACKed): the one question the start asks (`SIOCOUTQ`) sees bytes in
/// flight, so it is a half-close: the passive close, never the reset a
/// spared client would get, and the client reads every byte, then EOF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fin_read_by_the_caller_with_bytes_in_flight_is_a_half_close_and_gets_eof() {
    const REPLY: usize = 1 << 20;
    let (mut server, mut client) = common::connected_pair(common::V4, Some(4096)).await;
    let peer = server.peer_addr().unwrap();
    let (closer, mut outcomes) = closer_with_outcomes(peer_first(PeerTimeWait::Spare));
    client.shutdown().await.unwrap();
    assert!(read_until_fin(&mut server).await.is_empty());
    // More than the client's buffers take: the rest stays queued, unACKed
    // (what the server's send buffer does not take is not sent at all).
    let reply: Vec<u8> = (0..REPLY).map(|i| (i % 251) as u8).collect();
    let written = farewell_testkit::support::send::write_what_fits(&server, &reply);
    let unacked = farewell::sys::unacked_bytes(&server).unwrap();
    assert!(unacked > 0, "the client's buffers took the whole reply");
    closer.close(
        farewell::Handoff::new(server, peer).peer_fin_read(),
        &b""[..],
    );
    let (got, error) = read_to_end_or_error(&mut client).await;
    assert_eq!(error, None, "the half-closed client gets EOF, not a reset");
    assert_eq!(got.len(), written);
    assert!(
        got == reply[..written],
        "the bytes arrive whole and in order"
    );
    let o = outcomes.recv().await.unwrap();
    assert_eq!(o.ending, Ending::PeerClosed, "{o}");
    assert_eq!(o.peer_fin, Some(PeerFinChoice::HalfClose), "{o}");
}
