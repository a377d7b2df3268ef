//! The lab's network paths ([`farewell_lab::lab::path`]) are what they claim,
//! proven with real sockets: a slow path is no faster than its rate, a wan
//! path has at least its configured round-trip time and loses frames while
//! TCP still delivers every byte, and nothing is left behind.
//!
//! Paths other than loopback need `CAP_NET_ADMIN` and `CAP_SYS_ADMIN` and
//! the `ip`, `tc` and `nft` tools; without them those tests print why they
//! are skipped and return. Every wait is bounded.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use farewell::census;
use farewell_lab::lab::path::{NetPath, PathKind, PathSpec, Slow, Wan};

/// No socket operation in these tests may wait longer; past it the test fails.
const IO_BOUND: Duration = Duration::from_secs(30);

/// How long connecting across a path may take (a lost SYN is sent again after 1 s, 3 s).
const CONNECT_BOUND: Duration = Duration::from_secs(10);

const MIB: usize = 1 << 20;

/// True when a path of `kind` can be made here; otherwise prints why the test is skipped.
fn may_run(test: &str, kind: PathKind) -> bool {
    match kind.unavailable() {
        None => true,
        Some(why) => farewell_lab::support::tools::skip(
            test,
            &format!(
                "{why} (run the tests as root, or in a container with --cap-add NET_ADMIN \
                 --cap-add SYS_ADMIN, iproute2 and nftables installed)"
            ),
        ),
    }
}

fn make(spec: PathSpec) -> NetPath {
    let path = NetPath::new(spec).unwrap_or_else(|e| panic!("making {spec:?}: {e}"));
    eprintln!("{path}");
    path
}

/// The byte at offset `i` of every transfer: a pattern a lost, repeated or
/// reordered segment would break.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8 ^ (i / 251) as u8
}

/// A connection across `path`: (server side, client side).
fn connect(path: &NetPath) -> (TcpStream, TcpStream) {
    let listener = path
        .server(|| TcpListener::bind((path.server_ip(), 0)))
        .expect("enter the server's namespace")
        .expect("bind in the server's namespace");
    let to = listener.local_addr().unwrap();
    let client = path
        .client(|| TcpStream::connect_timeout(&to, CONNECT_BOUND))
        .expect("enter the client's namespace")
        .unwrap_or_else(|e| panic!("connect across the path to {to}: {e}"));
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + CONNECT_BOUND;
    let server = loop {
        match listener.accept() {
            Ok((server, _)) => break server,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("accept across the path: {e}"),
        }
    };
    server.set_nonblocking(false).unwrap();
    for socket in [&server, &client] {
        socket.set_read_timeout(Some(IO_BOUND)).unwrap();
        socket.set_write_timeout(Some(IO_BOUND)).unwrap();
    }
    (server, client)
}

/// Writes `len` pattern bytes on `from` and half-closes it, while `to` reads
/// to EOF; returns how long until `to` had every byte, after checking each.
fn transfer(mut from: TcpStream, mut to: TcpStream, len: usize) -> Duration {
    let start = Instant::now();
    let writer = thread::spawn(move || {
        let data: Vec<u8> = (0..len).map(pattern).collect();
        from.write_all(&data).expect("write the transfer");
        from.shutdown(Shutdown::Write)
            .expect("half-close after the transfer");
        from
    });
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match to.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            read => read.expect("read the transfer (bounded)"),
        };
        if n == 0 {
            break;
        }
        for (k, &byte) in buf[..n].iter().enumerate() {
            assert_eq!(byte, pattern(got + k), "byte {} of the transfer", got + k);
        }
        got += n;
        assert!(
            start.elapsed() < IO_BOUND,
            "the transfer took over {IO_BOUND:?}"
        );
    }
    let took = start.elapsed();
    assert_eq!(got, len, "bytes received before EOF");
    drop(writer.join().expect("the writer"));
    took
}

/// Whether a namespace named `name` exists (`ip netns` binds it in /run/netns).
fn namespace_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// The names of this process's threads (`/proc/self/task/*/comm`).
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|comm| comm.trim_end().to_owned())
        .collect()
}

// ---- loopback ----

#[test]
fn a_path_can_be_shared_between_threads_and_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<NetPath>();
}

#[test]
fn loopback_path_is_127_0_0_1_without_namespaces() {
    let path = make(PathSpec::Loopback);
    assert_eq!(path.kind(), PathKind::Loopback);
    assert!(path.namespaces().is_empty());
    assert!(path.thread_names().is_empty());
    let (server, client) = connect(&path);
    assert!(server.local_addr().unwrap().ip().is_loopback());
    transfer(server, client, 64 * 1024);
}

// ---- slow ----

#[test]
fn slow_path_is_no_faster_than_its_rate_in_either_direction() {
    if !may_run(
        "slow_path_is_no_faster_than_its_rate_in_either_direction",
        PathKind::Slow,
    ) {
        return;
    }
    let rate = 8_000_000;
    let path = make(PathSpec::Slow(Slow {
        rate,
        ..Slow::default()
    }));
    // htb lets at most its burst (two frames) through ahead of the rate.
    let least = Duration::from_secs_f64((MIB - 16 * 1024) as f64 * 8.0 / rate as f64);
    let (server, client) = connect(&path);
    let (server_up, client_up) = connect(&path);
    // Both directions at once: each has its own rate limit.
    let down = thread::spawn(move || transfer(server, client, MIB));
    let up = transfer(client_up, server_up, MIB);
    let down = down.join().expect("the download");
    eprintln!(
        "1 MiB over {}: down {down:.2?} ({:.2} Mbit/s), up {up:.2?} ({:.2} Mbit/s), at least {least:.2?}",
        path.mechanism(),
        MIB as f64 * 8.0 / down.as_secs_f64() / 1e6,
        MIB as f64 * 8.0 / up.as_secs_f64() / 1e6,
    );
    assert!(
        down >= least,
        "server to client took {down:?}, under {least:?}"
    );
    assert!(up >= least, "client to server took {up:?}, under {least:?}");
}

// ---- wan ----

#[test]
fn wan_path_has_its_delay_and_tcp_delivers_every_byte_through_its_loss() {
    if !may_run(
        "wan_path_has_its_delay_and_tcp_delivers_every_byte_through_its_loss",
        PathKind::Wan,
    ) {
        return;
    }
    let wan = Wan::default();
    let path = make(PathSpec::Wan(wan));
    assert!(
        path.rtt() >= 2 * wan.delay,
        "measured RTT {:?} under twice the one-way delay {:?}",
        path.rtt(),
        wan.delay
    );
    let (server, client) = connect(&path);
    let (local, remote) = (server.local_addr().unwrap(), server.peer_addr().unwrap());
    let took = transfer(server, client, MIB);
    // The census read through the path sees the server's namespace, where
    // the connection is; this process's own namespace has no such socket.
    let entry = path
        .server(|| census::lookup(local, remote).expect("census in the server's namespace"))
        .expect("enter the server's namespace");
    assert!(
        entry.is_some(),
        "the server's census does not show {local} -> {remote}"
    );
    assert!(census::lookup(local, remote)
        .expect("census here")
        .is_none());
    let dropped = path.dropped().expect("read the loss counters");
    let stats = path.forwarder_stats().expect("a wan path has a forwarder");
    eprintln!(
        "1 MiB over {path} took {took:.2?}; dropped at random: {dropped:?}; forwarder: {stats:?}"
    );
    // About 1,500 frames crossed; with 1% loss, none lost has odds of e^-15.
    assert!(
        dropped.is_some_and(|n| n > 0),
        "the loss rule dropped nothing"
    );
    assert!(stats.forwarded > 700, "forwarded {stats:?}");
}

#[test]
fn wan_path_round_trip_time_follows_the_configured_delay() {
    if !may_run(
        "wan_path_round_trip_time_follows_the_configured_delay",
        PathKind::Wan,
    ) {
        return;
    }
    for delay in [Duration::from_millis(5), Duration::from_millis(60)] {
        let path = make(PathSpec::Wan(Wan {
            delay,
            loss_percent: 0.0,
            rate: None,
        }));
        assert!(
            path.rtt() >= 2 * delay,
            "measured RTT {:?} under twice the one-way delay {delay:?}",
            path.rtt()
        );
        let again = path.measure_rtt().expect("measure again");
        assert!(again >= 2 * delay, "measured again: {again:?}");
        assert_eq!(path.dropped().unwrap(), None, "no loss rule without loss");
    }
}

#[test]
fn wan_path_with_a_rate_is_no_faster_than_it() {
    if !may_run("wan_path_with_a_rate_is_no_faster_than_it", PathKind::Wan) {
        return;
    }
    let spec: PathSpec = "wan:delay=5ms,loss=0,rate=8mbit".parse().unwrap();
    let path = make(spec);
    let least = Duration::from_secs_f64((MIB - 16 * 1024) as f64 * 8.0 / 8e6);
    let (server, client) = connect(&path);
    let took = transfer(server, client, MIB);
    eprintln!(
        "1 MiB over {path}: {took:.2?} ({:.2} Mbit/s), at least {least:.2?}",
        MIB as f64 * 8.0 / took.as_secs_f64() / 1e6
    );
    assert!(took >= least, "took {took:?}, under {least:?}");
    assert!(path.rtt() >= Duration::from_millis(10));
}

// ---- cleanup ----

#[test]
fn dropping_a_path_leaves_no_namespace_and_no_thread() {
    if !may_run(
        "dropping_a_path_leaves_no_namespace_and_no_thread",
        PathKind::Wan,
    ) {
        return;
    }
    let slow = PathSpec::Slow(Slow::default());
    let wan = PathSpec::Wan(Wan {
        delay: Duration::from_millis(1),
        ..Wan::default()
    });
    for spec in [slow, wan] {
        let path = make(spec);
        let namespaces = path.namespaces();
        let threads = path.thread_names();
        let expected = if spec.kind() == PathKind::Wan { 3 } else { 2 };
        assert_eq!(namespaces.len(), expected, "{namespaces:?}");
        assert!(namespaces.iter().all(|name| namespace_exists(name)));
        if spec.kind() == PathKind::Wan {
            assert_eq!(threads.len(), 4, "{threads:?}");
            let running = thread_names();
            assert!(
                threads.iter().all(|t| running.contains(t)),
                "{threads:?} not among {running:?}"
            );
        }
        drop(path);
        let left: Vec<_> = namespaces.iter().filter(|n| namespace_exists(n)).collect();
        assert!(left.is_empty(), "namespaces left after drop: {left:?}");
        let running = thread_names();
        let left: Vec<_> = threads.iter().filter(|t| running.contains(t)).collect();
        assert!(left.is_empty(), "threads left after drop: {left:?}");
    }
}
