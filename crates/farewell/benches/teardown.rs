//! Micro-benchmarks of one teardown's own cost, on real loopback sockets.
//!
//! `cargo bench -p farewell --bench teardown`. Times are the benchmark
//! thread's CPU time, not wall time, so they hold on a busy machine. The peer
//! has already half-closed (its FIN is queued; it still ACKs), so these
//! measure farewell's work — probes, the goodbye write, the EOF read, the
//! close — not a wait on the peer. The baselines are what a server does
//! without farewell: `plain_drop` (close only) and `plain_write_drop` (write
//! the goodbye, close: the fair one for a policy that writes a goodbye); next
//! to them, one `farewell::close` per policy (`<policy>_close_after_peer_fin`)
//! and a whole peer-first teardown through a `Closer`
//! (`closer_peer_first_after_peer_fin`). The last two wait for a FIN that
//! comes after the hand-over, in a task of the closer's
//! (`closer_peer_first_waiting`) or in the caller's own
//! (`close_here_peer_first_waiting`): for those, `plain_write_drop` is still
//! the baseline, as a plain server never waits for the client.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use farewell::{Closer, Policy};
use farewell_testkit::cpu::thread_cpu_now;
use tokio::io::AsyncWriteExt;

/// The thread's CPU time (user + system): the runtime is current-thread, so
/// the teardown's work, and on loopback the kernel's for both ends, happens
/// on this thread. Unlike a wall clock, it does not count waits for a core
/// on a loaded machine.
fn cpu() -> Duration {
    thread_cpu_now().expect("CLOCK_THREAD_CPUTIME_ID (Linux)")
}

/// A connected pair whose client has already sent its FIN (a half-close:
/// `shutdown(Write)`, so it still takes the goodbye and ACKs it, as a
/// cooperative client does), the server's end handed to the runtime as a
/// server would hold it after serving: registered, with tokio already knowing
/// it is readable and writable (a stream fresh
/// from `from_std` would cost every contender an extra trip through epoll).
fn peer_closed_pair(
    runtime: &tokio::runtime::Runtime,
    listener: &TcpListener,
    addr: SocketAddr,
) -> (tokio::net::TcpStream, TcpStream) {
    let (server, client) = open_pair(runtime, listener, addr);
    client.shutdown(Shutdown::Write).unwrap();
    runtime.block_on(server.readable()).unwrap();
    (server, client)
}

/// As [`peer_closed_pair`], the client still open: the teardown has to
/// wait for its FIN.
fn open_pair(
    runtime: &tokio::runtime::Runtime,
    listener: &TcpListener,
    addr: SocketAddr,
) -> (tokio::net::TcpStream, TcpStream) {
    let client = TcpStream::connect(addr).unwrap();
    let (server, _) = listener.accept().unwrap();
    // Readable once the client's FIN comes (below), writable now.
    client.set_nodelay(true).unwrap();
    server.set_nonblocking(true).unwrap();
    runtime.block_on(async {
        let stream = tokio::net::TcpStream::from_std(server).unwrap();
        stream.writable().await.unwrap();
        (stream, client)
    })
}

/// Runs `future` to its first wait (one poll), as the task it would be
/// part of does before the peer's FIN comes.
fn poll_once<F: std::future::Future + Unpin>(runtime: &tokio::runtime::Runtime, future: &mut F) {
    runtime.block_on(std::future::poll_fn(|cx| {
        let _ = std::pin::Pin::new(&mut *future).poll(cx);
        std::task::Poll::Ready(())
    }));
}

/// The CPU time `f` takes on this thread.
fn timed(f: impl FnOnce()) -> Duration {
    let start = cpu();
    f();
    cpu() - start
}

/// The CPU time `run` reports over `iters` fresh pairs from `pair`: the
/// setup (connect, accept, the peer's FIN) and the client's close are not
/// timed, only what `run` times.
fn over_pairs(
    iters: u64,
    mut pair: impl FnMut() -> (tokio::net::TcpStream, TcpStream),
    mut run: impl FnMut(tokio::net::TcpStream, &TcpStream) -> Duration,
) -> Duration {
    (0..iters)
        .map(|_| {
            let (stream, client) = pair();
            let spent = run(stream, &client);
            drop(client);
            spent
        })
        .sum()
}

fn teardown(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer_closed = || peer_closed_pair(&runtime, &listener, addr);
    let open = || open_pair(&runtime, &listener, addr);
    let mut group = c.benchmark_group("teardown");
    group.measurement_time(Duration::from_secs(3));

    group.bench_function("plain_drop", |b| {
        b.iter_custom(|iters| {
            over_pairs(iters, peer_closed, |stream, _| {
                timed(|| runtime.block_on(async { drop(stream) }))
            })
        })
    });
    // What a server does without farewell, goodbye included: write it, drop.
    // The honest baseline for a policy that writes a goodbye.
    group.bench_function("plain_write_drop", |b| {
        b.iter_custom(|iters| {
            over_pairs(iters, peer_closed, |mut stream, _| {
                timed(|| {
                    runtime.block_on(async {
                        let _ = stream.write_all(b"BYE quit\n").await;
                        drop(stream);
                    })
                })
            })
        })
    });
    // One teardown per policy, each against a peer whose FIN is already in:
    // the cost of the policy's own work next to `plain_drop`. Silent needs
    // CAP_NET_ADMIN and is left out.
    for name in Policy::NAMES.iter().filter(|&&n| n != "silent") {
        let policy: Policy = name.parse().unwrap();
        group.bench_function(format!("{name}_close_after_peer_fin"), |b| {
            b.iter_custom(|iters| {
                over_pairs(iters, peer_closed, |stream, _| {
                    timed(|| {
                        runtime.block_on(farewell::close(stream, policy, &b"BYE quit\n"[..]));
                    })
                })
            })
        });
    }
    // A whole peer-first teardown through a Closer without a hook (as the
    // bench servers and farewell-http without hooks use it): the hand-over
    // and the teardown, until the closer is idle again.
    group.bench_function("closer_peer_first_after_peer_fin", |b| {
        let closer = runtime.block_on(async { Closer::new(Policy::default()) });
        b.iter_custom(|iters| {
            over_pairs(iters, peer_closed, |stream, _| {
                timed(|| {
                    runtime.block_on(async {
                        closer.close(stream, &b"BYE quit\n"[..]);
                        closer.idle().await;
                    })
                })
            })
        })
    });
    // The same, when the peer's FIN comes only after the hand-over (an HTTP
    // client closing once it has read the response): the teardown waits,
    // then wakes for the FIN. Timed: the hand-over with its first poll, and
    // the run after the FIN; not timed: the client's `shutdown`, in whose
    // syscall loopback also runs the server's receive. In a task of the
    // closer's (`close`, then `idle`), or in the caller's own
    // (`close_here`, as farewell-http runs it).
    group.bench_function("closer_peer_first_waiting", |b| {
        let closer = runtime.block_on(async { Closer::new(Policy::default()) });
        b.iter_custom(|iters| {
            over_pairs(iters, open, |stream, client| {
                let handed = timed(|| {
                    runtime.block_on(async {
                        closer.close(stream, &b"BYE quit\n"[..]);
                        // The teardown's task runs to its wait.
                        tokio::task::yield_now().await;
                    })
                });
                client.shutdown(Shutdown::Write).unwrap();
                handed + timed(|| runtime.block_on(closer.idle()))
            })
        })
    });
    group.bench_function("close_here_peer_first_waiting", |b| {
        let closer = runtime.block_on(async { Closer::new(Policy::default()) });
        b.iter_custom(|iters| {
            over_pairs(iters, open, |stream, client| {
                let mut closing = None;
                let handed = timed(|| {
                    let _runtime = runtime.enter();
                    let mut here = closer.close_here(stream, &b"BYE quit\n"[..], Policy::default());
                    poll_once(&runtime, &mut here);
                    closing = Some(here);
                });
                client.shutdown(Shutdown::Write).unwrap();
                let closing = closing.expect("handed over");
                handed + timed(|| runtime.block_on(closing))
            })
        })
    });
    group.finish();
}

criterion_group!(benches, teardown);
criterion_main!(benches);
