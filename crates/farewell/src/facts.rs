//! The kernel facts farewell stands on, and how each was verified.
//!
//! Every policy, every [`Outcome`](crate::Outcome) claim and every choice in
//! the teardown state machine rests on one of these facts about Linux's TCP
//! (6.x; checked on 6.18). The docs elsewhere cite them by number, e.g.
//! [F5](crate::facts#f5). Each fact names how it was verified: an
//! integration test of this repository that checks it against the kernel's
//! own socket table (sock_diag, see [`census`](crate::census)) on every run,
//! or, where no test can (the path is not loopback, or another project's
//! client is involved), the experiment that showed it.
//!
//! Test names below are functions in `crates/farewell/tests/<file>.rs` unless
//! another crate is named.
//!
//! | # | fact | verified by |
//! |---|---|---|
//! | <a id="f1"></a>F1 | The side that sends the first FIN holds TIME-WAIT once both FINs are exchanged. | `closer.rs`: `closer_plain_policy_does_leave_time_wait_on_the_server_port`; `census.rs`: `time_wait_only_dump_finds_the_server_side_entry`; the `plain` rows of `policy_matrix.rs` |
//! | <a id="f2"></a>F2 | After `shutdown(SHUT_WR)`, the peer's FIN creates the TIME-WAIT entry *at once*, even with our descriptor still open; a later close with linger 0 sends nothing and cannot undo it. | the `lingering` rows of `policy_matrix.rs` (server TIME-WAIT per the kernel); `closer.rs`: `closer_reap_destroys_our_time_wait_entry_after_a_clean_lingering_close` |
//! | <a id="f3"></a>F3 | `close()` with `SO_LINGER {on, 0}` sends RST (no TIME-WAIT) from ESTABLISHED, CLOSE-WAIT, FIN-WAIT-1, FIN-WAIT-2 and SYN-RECEIVED, and discards unsent and unacknowledged data. | the `abort` and `fin-then-reset` rows of `policy_matrix.rs` (no TIME-WAIT on either side per the kernel); `closer_hurry.rs`: `hurry_resets_slow_teardowns_of_peers_that_ignore_the_goodbye` (from ESTABLISHED and FIN-WAIT-2); `delivery.rs`: `closer_hurry_still_cuts_a_progressing_slow_reader_and_says_so` (the unACKed rest never arrives); the other states by experiment |
//! | <a id="f4"></a>F4 | `close()` with unread bytes in the receive queue sends RST whatever the linger setting. | `policy_matrix.rs`: `plain_flooding_peer_gets_reset_from_unread_input` and the other flooding-peer rows |
//! | <a id="f5"></a>F5 | `ioctl(SIOCOUTQ)` is the bytes sent but not yet ACKed plus the unsent (a queued FIN counts 1); 0 means everything we wrote reached the peer's kernel. FIN-WAIT-2 means data and FIN were ACKed. `tcpi_unacked` counts *segments* and reads 0 behind a zero window: never use it alone. After an abort the counters go stale: check the state too. | `census.rs`: `dump_reports_queued_bytes`; `delivery.rs`: the zero-window test (SIOCOUTQ stays above 0 until the reset); the `fin-then-reset` rows of `policy_matrix.rs`; `tcpi_unacked` behind a zero window by experiment (`ss -ti` beside `SIOCOUTQ`) |
//! | <a id="f6"></a>F6 | On Linux, a peer that receives RST can still read what was already in its receive queue; other systems may discard it. | experiment (a client that reads only after the RST arrived still gets the queued bytes, then `ECONNRESET`); no test here reads after the reset yet; other systems not verified |
//! | <a id="f7"></a>F7 | `TCP_USER_TIMEOUT` bounds how long unACKed data keeps a connection alive (`ETIMEDOUT`, no RST). | experiment (a peer behind a dropped link: `ETIMEDOUT` after the timeout, no RST in a packet capture); not covered by a test here (`privileged.rs` covers the vanished peer without it) |
//! | <a id="f8"></a>F8 | `TCP_REPAIR` (`CAP_NET_ADMIN`) closes a socket silently: no FIN, no RST. `SOCK_DESTROY` over netlink sock_diag (`CAP_NET_ADMIN`, kernel 6.0 or later) removes a TIME-WAIT entry silently and aborts a live socket with RST. | `privileged.rs`: `silent_close_sends_no_packet_and_leaves_peer_established`, `silent_without_net_admin_falls_back_to_reset`; `census.rs`: `destroy_removes_exactly_one_time_wait_entry`, `destroy_of_a_live_socket_resets_the_peer` |
//! | <a id="f9"></a>F9 | RFC 9112 §9.6: an immediate close can make the RST erase the client's unread input; half-close and read first. RFC 6455 §7.1.1: a WebSocket server should close first. RFC 9293 §3.5.2 points to Faber, Touch, Yue (INFOCOM 1999): let the client hold TIME-WAIT. | the RFCs themselves (by section); `farewell-http`'s `tests/python.rs`: `peer_first_early_413_with_unread_1mb_body_reaches_the_client` |
//! | <a id="f10"></a>F10 | A grace that counts from the goodbye's write truncates a slow reader: 1 MiB `Connection: close` over a 500 kbit/s veth path, grace 2 s + 1 s ACK wait: the client got about 600 KB, then RST. Delivery must be judged by ACK progress, not a clock. | experiment (two network namespaces, htb at 500 kbit/s, `curl`), which led to the deliver phase; on loopback: `delivery.rs`: `peer_first_slow_reader_gets_every_byte_and_no_server_time_wait` |
//! | <a id="f11"></a>F11 | WebSocket (RFC 6455 §7.1.1 asks the server to close TCP first): a server that, after the close handshake, waits until its Close frame is ACKed and then resets leaves no TIME-WAIT on either side, and Python `websockets` 17.4 reports a clean close (code 1000, no error); closing with a FIN instead leaves the server in TIME-WAIT. Other clients (Node `ws`, browsers) are not checked yet. | experiment (Python `websockets` 17.4 against a test server, kernel census after each close) |
//! | <a id="f12"></a>F12 | `tcpi_bytes_acked` (`TCP_INFO`, Linux 4.1 and later) rises with every ACK that advances the peer's acknowledgement; a peer whose receive buffer is full (zero window) answers the kernel's window probes without advancing it. So a rise between two readings (or a fall of `SIOCOUTQ`) is delivery progress, and neither moving for a while, with `SIOCOUTQ` above 0, is a stall. | `delivery.rs`: `peer_first_slow_reader_gets_every_byte_and_no_server_time_wait` (a reader with a 16 KiB buffer taking 64 KiB every 100 ms is never cut), `peer_first_never_reading_peer_is_reset_when_delivery_stalls` (a zero-window peer is cut by the stall timeout), `fin_then_reset_and_lingering_reset_wait_for_a_progressing_slow_reader`, `plain_writes_a_large_goodbye_to_a_slow_reader_past_its_stall_timeout` |
//!
//! # Notes
//!
//! Loopback has no round-trip time, no rate limit and no loss, so the tests
//! here prove the logic of each fact, not its timing on a real network; F10
//! and F11 were seen over real paths (veth pairs between namespaces) and
//! other programs' clients.
