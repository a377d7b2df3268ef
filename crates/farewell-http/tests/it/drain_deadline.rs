//! The shutdown timeout is a hard deadline (issue 23): clients that stopped
//! reading a large response, and a slow reader still taking bytes, are all
//! ended at the deadline (`reset-at-deadline`), not when their delivery
//! stalls (the stall timeout, set to a minute here) or passes its cap.

use crate::common;

use std::io::Read as _;
use std::time::{Duration, Instant};

use common::*;
use farewell::{Ending, PeerFirst, Policy};

const DEADLINE: Duration = Duration::from_millis(1500);
/// Far longer than the deadline: a shutdown that waited for it would show.
const STALL: Duration = Duration::from_secs(60);

fn slow_to_give_up() -> Policy {
    Policy::PeerFirst(PeerFirst {
        grace: Duration::from_secs(2),
        stall_timeout: STALL,
        delivery_timeout: STALL,
        drain_limit: farewell_http::DEFAULT_DRAIN_LIMIT,
        ..PeerFirst::default()
    })
}

/// A client with a 4 KiB receive buffer that asks for 64 MiB and then reads
/// `per_tick` bytes every 100 ms (0: never), for at most 30 s or until the
/// connection ends. Not joined: it ends by itself.
fn reader(port: u16, per_tick: usize) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    std::io::Write::write_all(
        &mut stream,
        b"GET /bytes/67108864 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; per_tick];
        let give_up = Instant::now() + Duration::from_secs(30);
        while Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(100));
            if per_tick > 0 && !matches!(stream.read(&mut buf), Ok(1..)) {
                return;
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_deadline_ends_non_readers_and_slow_readers_at_the_deadline() {
    let server = start(server(slow_to_give_up()).shutdown_timeout(DEADLINE)).await;
    let port = server.addr.port();
    for _ in 0..3 {
        reader(port, 0);
    }
    reader(port, 1000); // about 10 KB/s: still taking bytes
                        // Let every response fill its client's buffer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let report = server.shutdown().await;
    let took = started.elapsed();
    eprintln!("shutdown took {took:?}: {report}");
    // Not a speed claim: the stall timeout and the delivery cap are a minute,
    // so a shutdown that waited for either would take that long.
    assert!(
        took < DEADLINE + Duration::from_secs(5),
        "the shutdown outlived its deadline by far: {took:?}"
    );
    assert_eq!(report.teardowns.in_flight, 0, "{report}");
    assert!(
        report.teardowns.count(Ending::ResetAtDeadline) >= 4,
        "each laggard is reset at the deadline: {report}"
    );
    assert_no_server_time_wait_nor_leftovers(port).await;
}
