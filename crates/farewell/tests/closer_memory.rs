//! Memory per pending teardown, measured as the process's RSS growth while
//! thousands of teardowns wait on peers that ignore the goodbye. In its own
//! test binary so no other test's allocations land in the measurement.

use std::time::Duration;

use farewell::{Closer, PeerFirst, Policy};
use tokio::net::{TcpListener, TcpStream};

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// The soft limit on open files, from /proc/self/limits.
fn fd_soft_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closer_pending_teardowns_cost_at_most_one_kib_each() {
    let n = 2000.min(fd_soft_limit().saturating_sub(100) / 2);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut pairs = Vec::with_capacity(n);
    for _ in 0..n {
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        pairs.push((server, client));
    }
    let policy = Policy::PeerFirst(PeerFirst {
        grace: Duration::from_secs(30),
        ..PeerFirst::default()
    });
    let closer = Closer::new(policy);
    let mut clients = Vec::with_capacity(n);
    // Warm up allocator arenas and per-thread scratch buffers with one teardown first.
    let (first, first_client) = pairs.pop().unwrap();
    closer.close(first, farewell_testkit::lab::GOODBYE);
    clients.push(first_client);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let before = rss_bytes();
    let count = pairs.len();
    for (server, client) in pairs {
        closer.close(server, farewell_testkit::lab::GOODBYE);
        clients.push(client);
    }
    // Let every teardown run to its wait (goodbye written, draining).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_bytes();
    assert_eq!(
        closer.in_flight(),
        count + 1,
        "all pending: the peers ignore the goodbye"
    );
    let per = after.saturating_sub(before) / count;
    eprintln!("{count} pending teardowns: RSS {before} -> {after} bytes, {per} B each");
    assert!(
        per <= 1024,
        "a pending teardown should cost at most 1 KiB of user-space memory, costs {per} B"
    );
    drop(clients); // peers close: every teardown ends
    tokio::time::timeout(Duration::from_secs(10), closer.idle())
        .await
        .unwrap();
}
