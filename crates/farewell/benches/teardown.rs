//! Micro-benchmarks of one teardown's own cost, on real loopback sockets.
//!
//! `cargo bench -p farewell --bench teardown`. The peer has already closed
//! (its FIN is queued), so these measure farewell's work — probes, the
//! goodbye write, the EOF read, the close — not a wait on the peer. The
//! baseline `plain_drop` is what a server does without farewell; next to it,
//! one `farewell::close` per policy (`<policy>_close_after_peer_fin`) and the
//! hand-over to a `Closer`.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use farewell::{Closer, Policy};

/// A connected pair whose client side has already closed (its FIN arrived).
fn peer_closed_pair(listener: &TcpListener) -> std::net::TcpStream {
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    drop(client);
    server.set_nonblocking(true).unwrap();
    server
}

fn teardown(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut group = c.benchmark_group("teardown");
    group.measurement_time(Duration::from_secs(3));

    // Setup (connect, accept, peer close) happens outside the timed part.
    group.bench_function("plain_drop", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let server = peer_closed_pair(&listener);
                let start = Instant::now();
                runtime.block_on(async {
                    let stream = tokio::net::TcpStream::from_std(server).unwrap();
                    drop(stream);
                });
                total += start.elapsed();
            }
            total
        })
    });
    // One teardown per policy, each against a peer whose FIN is already in:
    // the cost of the policy's own work next to `plain_drop`. Silent needs
    // CAP_NET_ADMIN and is left out.
    for name in Policy::NAMES.iter().filter(|&&n| n != "silent") {
        let policy: Policy = name.parse().unwrap();
        group.bench_function(format!("{name}_close_after_peer_fin"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let server = peer_closed_pair(&listener);
                    let start = Instant::now();
                    runtime.block_on(async {
                        let stream = tokio::net::TcpStream::from_std(server).unwrap();
                        farewell::close(stream, policy, &b"BYE quit\n"[..]).await
                    });
                    total += start.elapsed();
                }
                total
            })
        });
    }
    group.bench_function("closer_handoff", |b| {
        let closer = runtime.block_on(async { Closer::new(Policy::default()) });
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let server = peer_closed_pair(&listener);
                let start = Instant::now();
                runtime.block_on(async {
                    let stream = tokio::net::TcpStream::from_std(server).unwrap();
                    closer.close(stream, &b"BYE quit\n"[..]);
                });
                total += start.elapsed();
            }
            // Let the handed-over teardowns finish (not timed).
            runtime.block_on(closer.idle());
            total
        })
    });
    group.finish();
}

criterion_group!(benches, teardown);
criterion_main!(benches);
