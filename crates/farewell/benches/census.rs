//! Micro-benchmark of the kernel socket census: one dump of ~10,000 sockets.
//!
//! `cargo bench -p farewell --bench census`. Opens 5,000 loopback
//! connections (10,000 sockets plus a listener; raises RLIMIT_NOFILE as far
//! as allowed, fewer connections if it cannot) and dumps them by port, over
//! netlink sock_diag and over `/proc/net/tcp` for comparison.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use farewell::census::{self, Filter};

fn census(c: &mut Criterion) {
    let wanted: u64 = 5_000;
    let limit = rlimit::increase_nofile_limit(wanted * 2 + 256).unwrap_or(1024);
    let pairs = wanted.min(limit.saturating_sub(256) / 2) as usize;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut held = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        held.push((client, server));
    }
    let server_side = Filter::local_port(port);
    let both_sides = Filter::all();
    let n = census::dump(&server_side).unwrap().len();
    let total = census::count_by_state(&both_sides).unwrap().total();
    eprintln!(
        "census bench: {} connections; {n} sockets on the server port, {total} TCP sockets in all",
        held.len()
    );

    let mut group = c.benchmark_group("census");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function(format!("netlink_dump_{}_sockets_by_port", n), |b| {
        b.iter(|| census::dump_netlink(&server_side).unwrap().len())
    });
    group.bench_function(format!("netlink_count_all_{total}_sockets"), |b| {
        b.iter(|| census::count_by_state(&both_sides).unwrap().total())
    });
    group.bench_function(format!("procfs_dump_{}_sockets_by_port", n), |b| {
        b.iter(|| census::dump_procfs(&server_side).unwrap().len())
    });
    group.finish();
    drop(held);
}

criterion_group!(benches, census);
criterion_main!(benches);
