//! `farewell serve` at its drain deadline: teardowns still running are
//! hurried (reset after one check that the goodbye was ACKed) instead of
//! being closed plainly when the runtime goes; judged by the kernel's table.

use crate::harness;

use std::io::Read;

use farewell::census;
use farewell::TcpState;
use harness::*;

#[test]
fn drain_deadline_resets_a_lingering_teardown_of_a_client_that_ignores_bye_shutdown() {
    // Lingering waits for the client's FIN up to its --stall-timeout (5 s by
    // default); the drain deadline comes first.
    let server = Server::start(&["--policy", "lingering", "--drain-timeout", "1s"]);
    let addr = server.addr;
    let mut client = hello(addr, "stays");
    assert_eq!(read_line(&mut client), "WELCOME stays\n");
    let client_addr = client.local_addr().unwrap();

    // The client ignores `BYE shutdown` and keeps its socket open throughout.
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("farewell serve: "))
        .unwrap_or_else(|| panic!("a summary line:\n{stderr}"));
    assert!(
        summary.contains("goodbyes: shutdown 1;"),
        "one shutdown goodbye: {summary}"
    );
    assert!(
        summary.contains("teardowns: reset-at-deadline 1;"),
        "the teardown was hurried at the deadline, not left to the runtime: {summary}"
    );
    assert!(summary.contains("; 0 unfinished"), "{summary}");

    // The goodbye arrived before the reset (Linux lets a reset peer read it, F6).
    assert_eq!(read_line(&mut client), "BYE shutdown\n");
    let mut rest = Vec::new();
    let end = client.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing after the goodbye: {rest:?}");
    // Our FIN, then the RST: EOF, or the reset if it came before the read.
    assert!(
        end.is_ok() || end.unwrap_err().kind() == std::io::ErrorKind::ConnectionReset,
        "EOF or reset"
    );
    // The reset removed the client's connection from its kernel, too: a plain
    // close would have left it in CLOSE-WAIT, and the server in FIN-WAIT-2.
    assert_eq!(
        census::lookup(client_addr, addr).unwrap().map(|e| e.state),
        None,
        "the client's connection was reset"
    );
    // No server TIME-WAIT, nothing at all on the server's address.
    assert_clean(addr, 0);
    assert_eq!(census(addr).get(TcpState::TimeWait), 0);
}
