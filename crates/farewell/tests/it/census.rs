//! The census against the kernel's real socket table, on loopback only.
//!
//! Every test binds port 0, so tests run in parallel without sharing sockets,
//! and filters by its own ports. Privileged tests check `has_net_admin()` and
//! print why they skip.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use farewell::census::{self, CensusError, Families, Filter, SocketEntry, Source, StateSet};
use farewell::TcpState;

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A listener on `ip` with one accepted connection.
struct Pair {
    listener: TcpListener,
    client: TcpStream,
    server: TcpStream,
}

impl Pair {
    fn port(&self) -> u16 {
        self.addr().port()
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }
}

/// A listener on `ip`, on a port with no TIME-WAIT entries left over from
/// earlier tests or runs (they last 60 s, and `bind(0)` may hand the port out
/// again), so tests can count the entries on their port exactly.
fn listen(ip: IpAddr) -> Option<TcpListener> {
    for _ in 0..100 {
        let listener = match TcpListener::bind(SocketAddr::new(ip, 0)) {
            Ok(l) => l,
            Err(e) if ip.is_ipv6() => {
                farewell_testkit::support::tools::skip(
                    "the IPv6 half of the census tests",
                    &format!("cannot bind [::1] ({e}); is IPv6 disabled?"),
                );
                return None;
            }
            Err(e) => panic!("bind {ip}: {e}"),
        };
        let port = listener.local_addr().unwrap().port();
        let leftovers = census::count_by_state(&Filter::local_port(port))
            .unwrap()
            .total()
            + census::count_by_state(&Filter::remote_port(port))
                .unwrap()
                .total();
        // Our listener is the one socket expected.
        if leftovers == 1 {
            return Some(listener);
        }
    }
    panic!("no port free of leftover sockets on {ip} after 100 tries");
}

fn pair(ip: IpAddr) -> Option<Pair> {
    let listener = listen(ip)?;
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    Some(Pair {
        listener,
        client,
        server,
    })
}

/// Closes one connection to `listener` so that the *server* side holds
/// TIME-WAIT (the server sends the first FIN: farewell::facts F1, F2). Returns
/// (server local, client local): the TIME-WAIT entry's 4-tuple.
fn server_time_wait(listener: &TcpListener) -> (SocketAddr, SocketAddr) {
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let tuple = (server.local_addr().unwrap(), server.peer_addr().unwrap());
    server.shutdown(Shutdown::Write).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        client.read(&mut buf).unwrap(),
        0,
        "client sees the server's FIN"
    );
    drop(client);
    assert_eq!(
        server.read(&mut buf).unwrap(),
        0,
        "server sees the client's FIN"
    );
    drop(server);
    tuple
}

fn find(entries: &[SocketEntry], local: SocketAddr, remote: SocketAddr) -> Option<&SocketEntry> {
    entries
        .iter()
        .find(|e| e.local == local && e.remote == remote)
}

fn unspecified(ip: IpAddr) -> SocketAddr {
    match ip {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

/// Polls `cond` for up to 2 s: the peer's kernel acts on segments a moment
/// after our call returns.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------- dump

fn dump_finds_listener_and_both_established_ends(ip: IpAddr) {
    let Some(p) = pair(ip) else { return };
    let addr = p.addr();
    let entries = census::dump(&Filter::local(addr)).unwrap();

    let listen = find(&entries, p.listener.local_addr().unwrap(), unspecified(ip))
        .expect("the listener is in the dump");
    assert_eq!(listen.state, TcpState::Listen);
    assert_ne!(listen.inode, 0, "a full socket has an inode");

    let server = find(
        &entries,
        p.server.local_addr().unwrap(),
        p.server.peer_addr().unwrap(),
    )
    .expect("the accepted socket is in the dump");
    assert_eq!(server.state, TcpState::Established);
    assert_ne!(server.cookie, 0, "netlink reports cookies");
    assert_eq!(
        entries.len(),
        2,
        "only our listener and accepted socket: {entries:#?}"
    );

    // The client end has the listener's port as its remote port.
    let client_side = census::dump(&Filter::remote_port(addr.port())).unwrap();
    let client = find(
        &client_side,
        p.client.local_addr().unwrap(),
        p.client.peer_addr().unwrap(),
    )
    .expect("the client end is in the dump");
    assert_eq!(client.state, TcpState::Established);
    assert_eq!(client_side.len(), 1);
}

#[test]
fn dump_v4_finds_listener_and_both_established_ends() {
    dump_finds_listener_and_both_established_ends(V4);
}

#[test]
fn dump_v6_finds_listener_and_both_established_ends() {
    dump_finds_listener_and_both_established_ends(V6);
}

#[test]
fn dump_family_filter_keeps_families_apart() {
    let Some(p4) = pair(V4) else { return };
    let ours = census::dump(&Filter::local(p4.addr())).unwrap();
    assert_eq!(ours.len(), 2, "listener and accepted socket: {ours:?}");
    // Other processes may hold IPv6 sockets with the same port number; none
    // of them is one of ours.
    let v6_only = census::dump(&Filter::local_port(p4.port()).family(Families::V6)).unwrap();
    assert!(
        v6_only
            .iter()
            .all(|e| ours.iter().all(|o| o.inode != e.inode)),
        "an IPv4 socket is not in an IPv6 dump: {v6_only:?}"
    );
    let v4_only = census::dump(&Filter::local(p4.addr()).family(Families::V4)).unwrap();
    assert_eq!(v4_only.len(), 2);
}

#[test]
fn dump_reports_queued_bytes() {
    let Some(mut p) = pair(V4) else { return };
    p.client.write_all(b"0123456789").unwrap();
    let tuple = (
        p.server.local_addr().unwrap(),
        p.server.peer_addr().unwrap(),
    );
    eventually("the server's receive queue holds 10 bytes", || {
        census::lookup(tuple.0, tuple.1)
            .unwrap()
            .map(|e| e.recv_queue)
            == Some(10)
    });
}

#[test]
fn time_wait_only_dump_finds_the_server_side_entry() {
    for ip in [V4, V6] {
        let Some(listener) = listen(ip) else { continue };
        let addr = listener.local_addr().unwrap();
        let (local, remote) = server_time_wait(&listener);
        let _live = TcpStream::connect(listener.local_addr().unwrap()).unwrap();

        let tw = census::dump(&Filter::local(addr).states(TcpState::TimeWait)).unwrap();
        assert_eq!(tw.len(), 1, "exactly our TIME-WAIT entry: {tw:#?}");
        let entry = &tw[0];
        assert_eq!((entry.local, entry.remote), (local, remote));
        assert_eq!(entry.state, TcpState::TimeWait);
        // A time-wait entry is not a full socket: no file, no owner.
        assert_eq!(entry.inode, 0);
        assert_eq!(entry.uid, 0);
        assert_ne!(
            entry.cookie, 0,
            "the time-wait entry keeps the socket's cookie"
        );

        // The client closed second: it holds no TIME-WAIT.
        let client_tw: Vec<_> =
            census::dump(&Filter::remote_port(addr.port()).states(TcpState::TimeWait))
                .unwrap()
                .into_iter()
                .filter(|e| e.remote == addr)
                .collect();
        assert!(client_tw.is_empty(), "{client_tw:#?}");
    }
}

#[test]
fn empty_state_set_finds_nothing() {
    let Some(p) = pair(V4) else { return };
    let filter = Filter::local(p.addr()).states(StateSet::empty());
    assert!(census::dump(&filter).unwrap().is_empty());
    assert!(census::dump_procfs(&filter).unwrap().is_empty());
}

// ---------------------------------------------------------------- lookup

#[test]
fn lookup_finds_an_exact_four_tuple_in_any_state() {
    for ip in [V4, V6] {
        let Some(p) = pair(ip) else { continue };
        let client = census::lookup(
            p.client.local_addr().unwrap(),
            p.client.peer_addr().unwrap(),
        )
        .unwrap()
        .expect("client end");
        assert_eq!(client.state, TcpState::Established);
        assert_eq!(client.local, p.client.local_addr().unwrap());

        let listener = census::lookup(p.listener.local_addr().unwrap(), unspecified(ip))
            .unwrap()
            .expect("listener");
        assert_eq!(listener.state, TcpState::Listen);

        let (local, remote) = server_time_wait(&p.listener);
        let tw = census::lookup(local, remote)
            .unwrap()
            .expect("time-wait entry");
        assert_eq!(tw.state, TcpState::TimeWait);
    }
}

#[test]
fn lookup_of_an_unknown_four_tuple_is_none_even_on_a_listening_port() {
    let Some(p) = pair(V4) else { return };
    // The kernel's lookup falls back to the listener for an unknown peer;
    // the census must not report that as the connection asked for.
    let stranger = SocketAddr::new(V4, 9);
    assert_eq!(
        census::lookup(p.listener.local_addr().unwrap(), stranger).unwrap(),
        None
    );
}

#[test]
fn lookup_with_mixed_families_is_an_error() {
    let err =
        census::lookup("127.0.0.1:1".parse().unwrap(), "[::1]:1".parse().unwrap()).unwrap_err();
    assert!(matches!(err, CensusError::MixedFamilies { .. }), "{err}");
}

// ---------------------------------------------------------------- sources agree

#[test]
fn netlink_and_procfs_agree_on_the_same_sockets() {
    for ip in [V4, V6] {
        let Some(p) = pair(ip) else { continue };
        let _tw = server_time_wait(&p.listener);
        let filter = Filter::local(p.addr());

        // What both sources know identically; queues of a listener differ
        // (netlink reports the backlog as send_queue, /proc reports 0).
        let key = |e: &SocketEntry| (e.local, e.remote, e.state, e.inode, e.uid);
        let mut netlink: Vec<_> = census::dump_netlink(&filter)
            .unwrap()
            .iter()
            .map(key)
            .collect();
        let procfs_entries = census::dump_procfs(&filter).unwrap();
        let mut procfs: Vec<_> = procfs_entries.iter().map(key).collect();
        netlink.sort();
        procfs.sort();
        assert_eq!(netlink, procfs);
        assert_eq!(
            netlink.len(),
            3,
            "listener, accepted socket, time-wait entry"
        );
        assert!(procfs_entries.iter().all(|e| e.cookie == 0));
        assert_eq!(
            census::dump_from(Source::Procfs, &filter).unwrap(),
            procfs_entries
        );
    }
}

// ---------------------------------------------------------------- counts

#[test]
fn counts_agree_with_the_dump() {
    let Some(p) = pair(V4) else { return };
    let _tw1 = server_time_wait(&p.listener);
    let _tw2 = server_time_wait(&p.listener);
    let filter = Filter::local(p.addr());

    let counts = census::count_by_state(&filter).unwrap();
    let entries = census::dump(&filter).unwrap();
    assert_eq!(counts.total(), entries.len());
    for state in TcpState::ALL {
        assert_eq!(
            counts.get(state),
            entries.iter().filter(|e| e.state == state).count(),
            "{state}"
        );
    }
    assert_eq!(counts.get(TcpState::Listen), 1);
    assert_eq!(counts.get(TcpState::Established), 1);
    assert_eq!(counts.get(TcpState::TimeWait), 2);
    assert_eq!(counts.to_string(), "ESTABLISHED 1, TIME-WAIT 2, LISTEN 1");
}

// ---------------------------------------------------------------- destroy

#[test]
fn destroy_of_a_socket_nobody_has_is_no_such_socket() {
    // No privilege needed: the cookie lookup fails before SOCK_DESTROY is sent.
    let Some(listener) = listen(V4) else { return };
    let entry = SocketEntry {
        local: listener.local_addr().unwrap(),
        remote: SocketAddr::new(V4, 9),
        state: TcpState::Established,
        recv_queue: 0,
        send_queue: 0,
        inode: 0,
        uid: 0,
        cookie: 0,
    };
    let err = census::destroy(&entry).unwrap_err();
    assert!(matches!(err, CensusError::NoSuchSocket { .. }), "{err}");
    assert!(
        census::lookup(listener.local_addr().unwrap(), unspecified(V4))
            .unwrap()
            .is_some()
    );
}

fn skip_without_net_admin(test: &str) -> bool {
    !farewell_testkit::support::tools::require_net_admin(test)
}

#[test]
fn destroy_removes_exactly_one_time_wait_entry() {
    if skip_without_net_admin("destroy_removes_exactly_one_time_wait_entry") {
        return;
    }
    for ip in [V4, V6] {
        let Some(listener) = listen(ip) else { continue };
        let addr = listener.local_addr().unwrap();
        let doomed = server_time_wait(&listener);
        let kept = server_time_wait(&listener);
        let filter = Filter::local(addr).states(TcpState::TimeWait);

        let before = census::dump(&filter).unwrap();
        assert_eq!(before.len(), 2, "{before:#?}");
        let entry = find(&before, doomed.0, doomed.1).unwrap();
        census::destroy(entry).unwrap();

        let after = census::dump(&filter).unwrap();
        assert_eq!(after.len(), 1, "{after:#?}");
        assert_eq!((after[0].local, after[0].remote), kept);

        // Destroying it again: it is gone.
        let err = census::destroy(entry).unwrap_err();
        assert!(matches!(err, CensusError::NoSuchSocket { .. }), "{err}");
        assert!(err.to_string().contains("no such socket"));
    }
}

#[test]
fn destroy_of_a_procfs_entry_finds_its_cookie_first() {
    if skip_without_net_admin("destroy_of_a_procfs_entry_finds_its_cookie_first") {
        return;
    }
    let Some(listener) = listen(V4) else { return };
    let addr = listener.local_addr().unwrap();
    let (local, remote) = server_time_wait(&listener);
    let filter = Filter::local(addr).states(TcpState::TimeWait);
    let entries = census::dump_procfs(&filter).unwrap();
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0].cookie, 0);
    census::destroy(&entries[0]).unwrap();
    assert_eq!(census::lookup(local, remote).unwrap(), None);
    // The listener on that port survived.
    assert!(
        census::lookup(listener.local_addr().unwrap(), unspecified(V4))
            .unwrap()
            .is_some()
    );
}

#[test]
fn destroy_of_a_live_socket_resets_the_peer() {
    if skip_without_net_admin("destroy_of_a_live_socket_resets_the_peer") {
        return;
    }
    for ip in [V4, V6] {
        let Some(mut p) = pair(ip) else { continue };
        let entry = census::lookup(
            p.server.local_addr().unwrap(),
            p.server.peer_addr().unwrap(),
        )
        .unwrap()
        .expect("accepted socket");
        census::destroy(&entry).unwrap();

        p.client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 16];
        let err = p.client.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
        // Our own end was aborted, not closed.
        let own = p.server.read(&mut buf).unwrap_err();
        assert_eq!(own.kind(), ErrorKind::ConnectionAborted, "{own}");
        // Neither side holds TIME-WAIT.
        let tw = census::dump(&Filter::local(p.addr()).states(TcpState::TimeWait)).unwrap();
        assert!(tw.is_empty(), "{tw:#?}");
    }
}

#[test]
fn orphaned_fin_wait_2_is_a_reduced_entry_reported_as_fin_wait_2() {
    for ip in [V4, V6] {
        let Some(p) = pair(ip) else { continue };
        let addr = p.addr();
        let tuple = (
            p.server.local_addr().unwrap(),
            p.server.peer_addr().unwrap(),
        );
        // The server closes first and the client never does: once the client
        // ACKs the FIN, the orphaned server socket waits in FIN-WAIT-2, kept
        // by the kernel as a time-wait entry with that sub-state.
        drop(p.server);
        let filter = Filter::local(addr).states(TcpState::FinWait2);
        let mut found = Vec::new();
        eventually("the server side reaches FIN-WAIT-2", || {
            found = census::dump(&filter).unwrap();
            !found.is_empty()
        });
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!((found[0].local, found[0].remote), tuple);
        assert_eq!(found[0].inode, 0, "an orphan has no file");
        let tw_only = census::dump(&Filter::local(addr).states(TcpState::TimeWait)).unwrap();
        assert!(tw_only.is_empty(), "{tw_only:#?}");
        // /proc says the same.
        let procfs = census::dump_procfs(&filter).unwrap();
        assert_eq!(procfs.len(), 1);
        assert_eq!(procfs[0].state, TcpState::FinWait2);
        drop(p.client);
    }
}

// ---------------------------------------------------------------- scale

/// Opens `pairs` connections to one listener and checks that one dump sees
/// every accepted socket; returns how long the dump took.
fn dump_sees_every_socket_of(pairs: usize) -> Duration {
    let listener = listen(V4).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut streams = Vec::with_capacity(2 * pairs);
    for _ in 0..pairs {
        streams.push(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
        streams.push(listener.accept().unwrap().0);
    }
    let filter = Filter::local(addr).states(TcpState::Established);
    let started = Instant::now();
    let entries = census::dump_netlink(&filter).unwrap();
    let took = started.elapsed();
    assert_eq!(entries.len(), pairs);
    let all = census::dump_netlink(&Filter::all()).unwrap();
    eprintln!(
        "dump of {} sockets ({} on our port) took {took:?}",
        all.len(),
        entries.len()
    );
    took
}

#[test]
fn dump_reads_a_multipart_reply_of_a_thousand_connections() {
    // 2000 sockets span many netlink datagrams (each at most ~32 KiB).
    dump_sees_every_socket_of(1000);
}

#[test]
#[ignore = "opens 10,000 sockets; run with --ignored"]
fn dump_of_ten_thousand_sockets_is_fast() {
    let took = dump_sees_every_socket_of(5000);
    assert!(took < Duration::from_millis(500), "took {took:?}");
}
