//! The echo servers of `examples/libuv` and `examples/epoll` against clients
//! we did not write: the same protocol, arguments and output, so the same
//! scenarios run against both.

use std::time::{Duration, Instant};

use farewell::census::{self, Filter, StateSet};
use farewell::TcpState;
use farewell_testkit::support::tools::require;

use super::{
    compile, libuv_flags, quiet_port, require_libuv, settled_server_sockets, table, Client, Link,
    Server,
};

/// Which example.
#[derive(Clone, Copy, Debug)]
enum Example {
    Libuv,
    Epoll,
}

/// The example, built against the shared library; None when a tool is missing.
fn echo_server(test: &str, example: Example) -> Option<std::path::PathBuf> {
    if !require(test, &["cc", "python3", "nc"]) {
        return None;
    }
    Some(match example {
        Example::Libuv => {
            if !require(test, &["pkg-config"]) || !require_libuv(test) {
                return None;
            }
            compile(
                "examples/libuv/echo_server.c",
                test,
                Link::Shared,
                &libuv_flags(),
            )
        }
        Example::Epoll => compile("examples/epoll/echo_server.c", test, Link::Shared, &[]),
    })
}

/// `field=value` of an outcome or client line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name).and_then(|w| w.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

#[test]
fn libuv_example_leaves_no_server_time_wait_with_real_clients() {
    clients_end_without_server_time_wait(
        "libuv_example_leaves_no_server_time_wait_with_real_clients",
        Example::Libuv,
    );
}

#[test]
fn epoll_example_leaves_no_server_time_wait_with_real_clients() {
    clients_end_without_server_time_wait(
        "epoll_example_leaves_no_server_time_wait_with_real_clients",
        Example::Epoll,
    );
}

#[test]
fn libuv_example_shutdown_hurries_teardowns_in_their_grace() {
    shutdown_hurries_teardowns_in_their_grace(
        "libuv_example_shutdown_hurries_teardowns_in_their_grace",
        Example::Libuv,
    );
}

#[test]
fn epoll_example_shutdown_hurries_teardowns_in_their_grace() {
    shutdown_hurries_teardowns_in_their_grace(
        "epoll_example_shutdown_hurries_teardowns_in_their_grace",
        Example::Epoll,
    );
}

/// Cooperative clients (Python, `nc -N`) keep TIME-WAIT themselves; ignoring
/// and silent ones (Python, a silent `nc`) are reset once their goodbye is
/// ACKed; the server keeps nothing in the kernel's table.
fn clients_end_without_server_time_wait(test: &str, example: Example) {
    let Some(exe) = echo_server(test, example) else {
        return;
    };
    let port = quiet_port();
    // handshake 500 ms, idle 500 ms, grace 700 ms
    let args: Vec<String> = [port.to_string(), "500".into(), "500".into(), "700".into()].into();
    let mut server = Server::start(&exe, &args);

    let clients = vec![
        Client::python("cooperative", port),
        Client::python("cooperative", port),
        Client::python("bad-handshake", port),
        Client::python("ignoring", port),
        Client::python("silent", port),
        Client::nc("nc cooperative", port, Some("HELLO nc\nhello\nQUIT\n")),
        Client::nc("nc silent", port, None),
    ];
    let outputs: Vec<(String, String)> = clients
        .into_iter()
        .map(|c| c.finish(Duration::from_secs(15)))
        .collect();
    let outcomes = server.outcomes(outputs.len(), Duration::from_secs(10));
    let server_side = settled_server_sockets(port);
    let client_time_wait = census::count_by_state(
        &Filter::remote_port(port).states(StateSet::single(TcpState::TimeWait)),
    )
    .expect("census")
    .get(TcpState::TimeWait);

    println!("--- clients");
    for (name, out) in &outputs {
        println!("{name}: {}", out.trim_end().replace('\n', "\\n"));
    }
    println!("--- server: {example:?} echo_server {}", args.join(" "));
    for line in &outcomes {
        println!("{line}");
    }
    println!("--- the kernel's table for port {port} (sock_diag), listener included");
    println!("{}", table(port));
    println!(
        "server side, listener left out: {} sockets, {} in TIME-WAIT; client side in TIME-WAIT: {client_time_wait}",
        server_side.total(),
        server_side.get(TcpState::TimeWait)
    );

    // Each python client's outcome, found by its port.
    for (name, out) in outputs.iter().filter(|(n, _)| n.starts_with("python")) {
        let peer = format!("127.0.0.1:{}", field(out, "port"));
        let outcome = outcomes
            .iter()
            .find(|o| field(o, "peer") == peer)
            .unwrap_or_else(|| panic!("no outcome for {name} ({peer})"));
        let (ending, time_wait, end) = match name.as_str() {
            "python cooperative" | "python bad-handshake" => ("peer-closed", "peer", "we-closed"),
            _ => ("reset-after-grace", "nobody", "reset"),
        };
        assert_eq!(field(outcome, "ending"), ending, "{name}: {outcome}");
        assert_eq!(field(outcome, "time_wait"), time_wait, "{name}: {outcome}");
        assert_eq!(field(outcome, "goodbye"), "confirmed", "{name}: {outcome}");
        assert_eq!(field(out, "end"), end, "{name}: {out}");
        assert!(out.contains("BYE "), "{name} got no goodbye: {out}");
    }
    // nc: the cooperative one closes (after -N's FIN), the silent one is reset.
    let nc_cooperative = &outputs
        .iter()
        .find(|(n, _)| n == "nc cooperative")
        .unwrap()
        .1;
    let nc_silent = &outputs.iter().find(|(n, _)| n == "nc silent").unwrap().1;
    assert!(
        nc_cooperative.contains("WELCOME nc\nhello\nBYE quit\n"),
        "{nc_cooperative:?}"
    );
    assert!(
        nc_silent.contains("BYE handshake-timeout\n"),
        "{nc_silent:?}"
    );
    let count = |ending: &str| {
        outcomes
            .iter()
            .filter(|o| field(o, "ending") == ending)
            .count()
    };
    assert_eq!(count("peer-closed"), 4, "{outcomes:#?}");
    assert_eq!(count("reset-after-grace"), 3, "{outcomes:#?}");
    assert!(
        outcomes.iter().all(|o| field(o, "goodbye") == "confirmed"),
        "{outcomes:#?}"
    );

    // The kernel's table: the cooperative clients keep TIME-WAIT, the server nothing.
    assert_eq!(
        server_side.get(TcpState::TimeWait),
        0,
        "server TIME-WAIT: {server_side:?}"
    );
    assert_eq!(
        server_side.total(),
        0,
        "server sockets left: {server_side:?}"
    );
    assert_eq!(
        client_time_wait, 4,
        "the 4 cooperative clients keep TIME-WAIT"
    );

    let status = server
        .terminate(Duration::from_secs(10))
        .expect("the server exits on SIGTERM");
    assert!(
        status.success(),
        "exit: {status}; said:\n{}",
        server.seen.join("\n")
    );
    assert!(
        server
            .seen
            .iter()
            .any(|l| l.starts_with("closer freed: success")),
        "{}",
        server.seen.join("\n")
    );
}

/// SIGTERM while two teardowns wait in a 10 s grace: `fw_closer_free(closer,
/// 2000)` gives them 2 s, then hurries both to a reset after their ACKed
/// goodbye; nothing is left on either side.
fn shutdown_hurries_teardowns_in_their_grace(test: &str, example: Example) {
    let Some(exe) = echo_server(test, example) else {
        return;
    };
    let port = quiet_port();
    // handshake 5 s, idle 30 s, grace 10 s: nothing ends by itself during the test.
    let args: Vec<String> = [
        port.to_string(),
        "5000".into(),
        "30000".into(),
        "10000".into(),
    ]
    .into();
    let mut server = Server::start(&exe, &args);

    let lingerer = Client::python("lingerer", port); // QUIT, then never closes: in its grace
    let ignoring = Client::python("ignoring", port); // greeted, idle: says goodbye at shutdown
                                                     // Both connected first (bounded): a loaded machine can take longer than
                                                     // the pause below to start two interpreters.
    let established = Filter::local_port(port).states(StateSet::single(TcpState::Established));
    let deadline = Instant::now() + Duration::from_secs(10);
    while census::count_by_state(&established)
        .expect("census")
        .total()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the two clients did not connect in 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(700));
    let started = std::time::Instant::now();
    let status = server
        .terminate(Duration::from_secs(8))
        .expect("the server exits within 8 s");
    let took = started.elapsed();
    let outputs = [
        lingerer.finish(Duration::from_secs(5)),
        ignoring.finish(Duration::from_secs(5)),
    ];
    let outcomes = server.outcomes(2, Duration::from_secs(1));

    println!("--- shutdown: SIGTERM to exit {took:?}");
    for (name, out) in &outputs {
        println!("{name}: {}", out.trim_end());
    }
    for line in &server.seen {
        println!("{line}");
    }
    println!("--- the kernel's table for port {port}");
    println!("{}", table(port));

    assert!(status.success(), "exit: {status}");
    // fw_closer_free(closer, 2000): 2 s for the teardowns, then the hurry.
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    for outcome in &outcomes {
        assert_eq!(field(outcome, "ending"), "reset-at-deadline", "{outcome}");
        assert_eq!(field(outcome, "time_wait"), "nobody", "{outcome}");
        assert_eq!(field(outcome, "goodbye"), "confirmed", "{outcome}");
    }
    let (_, lingerer) = &outputs[0];
    let (_, ignoring) = &outputs[1];
    assert!(
        lingerer.contains("BYE quit") && lingerer.contains("end=reset"),
        "{lingerer}"
    );
    assert!(
        ignoring.contains("BYE shutdown") && ignoring.contains("end=reset"),
        "{ignoring}"
    );
    let all = census::count_by_state(&Filter::local_port(port)).expect("census");
    let clients = census::count_by_state(&Filter::remote_port(port)).expect("census");
    assert_eq!(all.total(), 0, "server sockets left: {all:?}");
    assert_eq!(
        clients.get(TcpState::TimeWait),
        0,
        "client TIME-WAIT: {clients:?}"
    );
}
