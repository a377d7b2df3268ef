//! The per-connection decisions, with no I/O: when an idle keep-alive
//! connection ends, which request is the last one, whether the client is
//! owed the server's FIN, and which teardown a connection gets once hyper
//! lets go of it.
//!
//! The clock and the counters are passed in, so the unit tests at the bottom
//! drive them by hand; the integration tests in `tests/` prove the whole on
//! real sockets against the kernel's socket table.

use std::time::{Duration, Instant};

use farewell::PeerTimeWait;
use http::{Method, StatusCode, Version};

/// What the idle timer found when it fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Idle {
    /// Nothing in flight and nothing moved for the whole timeout: end the connection.
    Expired,
    /// Something is going on (or went on lately): look again at this instant.
    CheckAt(Instant),
}

/// Whether a connection with `in_flight` requests, whose last byte moved at
/// `last_activity`, has been idle for `timeout` at `now`.
///
/// A request in flight keeps the connection alive however long the handler
/// takes: the idle timeout is about a client that sends nothing, not a slow
/// handler (RFC 9112 §9.8 lets a server close an idle connection at any time,
/// but a response it already owes must not be cut off).
pub(crate) fn idle(
    in_flight: usize,
    last_activity: Instant,
    timeout: Duration,
    now: Instant,
) -> Idle {
    if in_flight > 0 {
        return Idle::CheckAt(now + timeout);
    }
    let due = last_activity + timeout;
    if due > now {
        Idle::CheckAt(due)
    } else {
        Idle::Expired
    }
}

/// What the `n`-th request (counting from 1) on a connection means for it,
/// given the max-requests-per-connection limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RequestLimit {
    /// This request reaches the limit: the connection ends after its response.
    pub(crate) last: bool,
    /// The response must say so itself, with `Connection: close` (HTTP/1.x,
    /// RFC 9112 §9.6). h2 gets a GOAWAY from the connection task instead.
    pub(crate) close_header: bool,
}

/// See [`RequestLimit`].
pub(crate) fn request_limit(n: u64, max: Option<u64>, version: Version) -> RequestLimit {
    let last = max.is_some_and(|max| n >= max);
    RequestLimit {
        last,
        close_header: last && version <= Version::HTTP_11,
    }
}

/// Which of the server's two policies tears a connection down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Teardown {
    /// The connection's last bytes are a goodbye (a `Connection: close`
    /// response, an h2 GOAWAY), or the client closed: the server's policy, which
    /// waits for the client's FIN within its grace.
    AfterGoodbye,
    /// The server ends the connection with nothing to say (an idle HTTP/1.1
    /// keep-alive connection, a laggard at a forced shutdown): reset once
    /// everything written is ACKed. A grace would wait for a FIN the client has
    /// no reason to send.
    Quiet,
    /// The client is owed the server's FIN ([`owes_fin`]: it reads the last
    /// response until the server closes): the FIN, sent once the response is
    /// ACKed and reset by the kernel on its ACK (see [`crate::delimited`]).
    OwedFin,
}

/// The teardown for a connection hyper let go of.
///
/// `quiet_mark` is how many bytes had been written when the server decided to
/// end the connection with nothing in flight (idle timeout, shutdown), if it
/// did; `written` is the count now. If hyper wrote nothing since (HTTP/1.1
/// ends an idle connection silently), the teardown is quiet; if it did write
/// (a response finishing, an h2 GOAWAY), those bytes are a goodbye.
/// `owes_fin` says the client reads the last response until the server
/// closes (see [`owes_fin`]).
pub(crate) fn teardown(
    quiet_mark: Option<u64>,
    written: u64,
    forcing: bool,
    owes_fin: bool,
) -> Teardown {
    if forcing || quiet_mark == Some(written) {
        Teardown::Quiet
    } else if owes_fin {
        Teardown::OwedFin
    } else {
        Teardown::AfterGoodbye
    }
}

/// The abuse bounds the connection task enforces ([`watchdog`]); `None` turns one off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// From the first byte of a request head to its end (HTTP/1.1, and the
    /// first request of an h2 connection).
    pub(crate) header_read: Option<Duration>,
    /// How long a read of a request body may wait for a byte (HTTP/1.1).
    pub(crate) body_read: Option<Duration>,
    /// How long a response may wait to be sent with no progress at all.
    pub(crate) send: Option<Duration>,
}

impl Limits {
    /// How often the connection task looks: a quarter of the shortest bound,
    /// between 25 ms and 15 s; `None` when every bound is off.
    pub(crate) fn tick(&self) -> Option<Duration> {
        [self.header_read, self.body_read, self.send]
            .into_iter()
            .flatten()
            .min()
            .map(|d| (d / 4).clamp(Duration::from_millis(25), Duration::from_secs(15)))
    }
}

/// What the connection task sees when it looks ([`watchdog`]). Times are
/// milliseconds since the connection started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Watch {
    pub(crate) now: u64,
    /// The connection served an h2 request: its reads are frames, not requests.
    pub(crate) h2: bool,
    /// Requests whose response has not been produced yet.
    pub(crate) in_flight: usize,
    /// When the first byte of a request head not yet complete was read.
    pub(crate) head_started: Option<u64>,
    /// Since when hyper has been waiting on a read that found nothing.
    pub(crate) read_pending: Option<u64>,
    /// Something is waiting to be sent: a write found the socket full, or a
    /// response body gave a frame and has not been asked for the next one.
    pub(crate) send_waiting: bool,
    /// The last progress of the sending side: a byte written, a body polled,
    /// or (sampled from the kernel) a byte newly ACKed by the client.
    pub(crate) send_progress: u64,
}

/// Why the connection task cuts a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Header or body read timeout: nothing is owed to the client.
    Read,
    /// The client stopped taking the response.
    Send,
}

fn over(since: Option<u64>, now: u64, bound: Option<Duration>) -> bool {
    match (since, bound) {
        (Some(since), Some(bound)) => now.saturating_sub(since) >= bound.as_millis() as u64,
        _ => false,
    }
}

/// Whether a connection is to be cut now, and why.
///
/// - Header read: nothing in flight, a request head begun at `head_started`
///   and still incomplete after the bound. The clock starts at the head's
///   first byte and a trickle does not restart it (a slowloris sending one
///   byte a second is cut all the same). An idle keep-alive connection (no
///   byte of a new request) is the idle timeout's, not this one's. h2 is
///   exempt after its first request (its reads are frames: PING, WINDOW_UPDATE).
/// - Body read (HTTP/1.1): a request in flight and a read pending with no
///   byte for the bound. With half-close on, hyper reads while a request is
///   in flight only when the service polls the body, so a slow handler that
///   is not reading is not cut.
/// - Send: something waits to be sent and nothing moved (no write, no body
///   poll, no new ACK) for the bound. A slow reader whose kernel keeps
///   ACKing is never cut.
pub(crate) fn watchdog(w: &Watch, limits: &Limits) -> Option<Cut> {
    if send_stalled(w, limits) {
        return Some(Cut::Send);
    }
    if w.h2 {
        return None;
    }
    if w.in_flight == 0 && over(w.head_started, w.now, limits.header_read) {
        return Some(Cut::Read);
    }
    if w.in_flight > 0 && over(w.read_pending, w.now, limits.body_read) {
        return Some(Cut::Read);
    }
    None
}

/// Something waits to be sent and nothing moved (no byte written, none newly
/// ACKed) for the send timeout: the client stopped taking what we send. The
/// one bound an upgraded connection shares with HTTP.
pub(crate) fn send_stalled(w: &Watch, limits: &Limits) -> bool {
    w.send_waiting && over(Some(w.send_progress), w.now, limits.send)
}

/// Whether a connection looks, before each response, at whether the
/// client's FIN came first (one `TCP_INFO`; see `ConnState::responding`):
/// only where the teardown may answer that FIN with a reset. With
/// [`PeerTimeWait::Auto`] that is a client near the heavy-client threshold
/// when its connection begins (`recent` endings of its address in the last
/// minute, at least half the threshold): a light client's FIN is always
/// answered with the passive close, so its timing does not matter, and a
/// keep-alive request costs no syscall. A client that crosses the threshold
/// during the connection is caught by [`unchecked_fin_may_reset`].
pub(crate) fn check_fins(
    peer_time_wait: Option<PeerTimeWait>,
    recent: u32,
    threshold: u32,
) -> bool {
    match peer_time_wait {
        None | Some(PeerTimeWait::Keep) => false,
        Some(PeerTimeWait::Auto) => recent >= threshold / 2,
        // `Spare` resets every client after its FIN (and a choice added
        // later is taken to as well).
        Some(_) => true,
    }
}

/// For a connection that sent a response without that look
/// ([`check_fins`]): whether its teardown could now answer the client's FIN
/// with a reset (the client's next ending would pass the threshold). Then
/// the FIN's timing is unknown, and the passive close is kept.
pub(crate) fn unchecked_fin_may_reset(
    peer_time_wait: Option<PeerTimeWait>,
    recent: u32,
    threshold: u32,
) -> bool {
    match peer_time_wait {
        None | Some(PeerTimeWait::Keep) => false,
        // The closer counts the ending it classifies: heavy past the threshold.
        Some(PeerTimeWait::Auto) => recent.saturating_add(1) > threshold,
        Some(_) => true,
    }
}

/// Whether a `Connection` header value names the `close` option (RFC 9110 §7.6.1).
pub(crate) fn says_close(connection: &str) -> bool {
    names(connection, "close")
}

fn names(connection: &str, option: &str) -> bool {
    // The usual header is the one option alone: no list to split.
    connection.eq_ignore_ascii_case(option)
        || connection
            .split(',')
            .any(|o| o.trim().eq_ignore_ascii_case(option))
}

/// Whether a request asks that its response be the connection's last:
/// `Connection: close`, or HTTP/1.0 without `Connection: keep-alive`
/// (RFC 9112 §9.3). h2 has no such request.
pub(crate) fn client_asks_close(version: Version, connection: Option<&str>) -> bool {
    let says = |option: &str| connection.is_some_and(|c| names(c, option));
    match version {
        Version::HTTP_10 => !says("keep-alive") || says("close"),
        Version::HTTP_11 => says("close"),
        _ => false,
    }
}

/// Whether the client reads the response to this request until the server
/// closes: an HTTP/1.0 request without `Connection: keep-alive` (or with
/// `close`). Such a client (`ab`, `lynx -dump`, `nc`, a plain socket reader)
/// takes the server's close as the end of the response whatever its framing,
/// `Content-Length` included (RFC 9112 §9.3: without keep-alive an HTTP/1.0
/// connection ends after one response, and §9.6 has the server close it),
/// and sends no FIN of its own before that close.
///
/// An HTTP/1.1 `Connection: close` request is not one: its client stops at
/// the end of a framed response and closes itself (curl, browsers, Python).
pub(crate) fn reads_to_close(version: Version, connection: Option<&str>) -> bool {
    version == Version::HTTP_10 && client_asks_close(version, connection)
}

/// Whether the connection owes the client the server's FIN after this
/// response: the client reads until the server closes ([`reads_to_close`]),
/// or the body is close-delimited ([`close_delimited`]) and only the close
/// can end it. Peer-first's "no FIN, wait for the client's" would leave such
/// a client waiting the whole grace, then reset.
pub(crate) fn owes_fin(reads_to_close: bool, close_delimited: bool) -> bool {
    reads_to_close || close_delimited
}

/// Whether a request is malformed in a way a server must answer with 400
/// (hyper lets these through):
///
/// - `host_fields`, its `Host` field lines: an HTTP/1.1 request without one,
///   or any request with more than one (RFC 9112 §3.2). HTTP/1.0 may omit
///   it; h2 carries `:authority` instead;
/// - `chunked`, how often `chunked` appears among its `Transfer-Encoding`
///   codings: more than once (RFC 9112 §6.1: a sender must not apply it
///   twice; two readers could split the body differently).
pub(crate) fn malformed(version: Version, host_fields: usize, chunked: usize) -> bool {
    (version == Version::HTTP_11 && host_fields == 0) || host_fields > 1 || chunked > 1
}

/// How often the `chunked` coding appears in these `Transfer-Encoding` field values.
pub(crate) fn chunked_codings<'a>(values: impl Iterator<Item = &'a [u8]>) -> usize {
    values
        .flat_map(|v| v.split(|&b| b == b','))
        .filter(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
        .count()
}

/// Whether hyper sends this response's body close-delimited: neither
/// `Content-Length` nor chunked coding, so it ends only where the connection
/// does (RFC 9112 §6.3, item 8).
///
/// hyper does that for a body whose length it does not know (`exact_len`:
/// the body's exact size hint, `Some(0)` when it is already at its end) on
/// an HTTP/1.0 request, which cannot take chunked coding (RFC 9112 §7.1). A
/// response that has no body (HEAD, 1xx, 204, 304) or a `Content-Length` of
/// its own is not.
pub(crate) fn close_delimited(
    request_version: Version,
    method: &Method,
    status: StatusCode,
    has_content_length: bool,
    exact_len: Option<u64>,
) -> bool {
    let bodiless = method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    request_version == Version::HTTP_10 && !bodiless && !has_content_length && exact_len.is_none()
}

/// When the client's kernel last ACKed a new byte of ours, sampled by the
/// connection task (`ConnState::acked`).
#[derive(Default)]
pub(crate) struct AckClock {
    acked: Option<u64>,
    /// Milliseconds since the connection started of the last rise.
    at: u64,
}

impl AckClock {
    /// Takes the counter's reading `acked` at `now` (ms); returns when it last rose.
    pub(crate) fn sample(&mut self, acked: Option<u64>, now: u64) -> u64 {
        if acked.is_some() && acked != self.acked {
            if self.acked.is_some() {
                self.at = now;
            }
            self.acked = acked;
        }
        self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    // ---- Serving: the idle timer ---------------------------------------------

    #[test]
    fn test_serving_idle_timer_fires_on_a_quiet_connection() {
        let t0 = Instant::now();
        assert_eq!(idle(0, t0, s(60), t0 + s(60)), Idle::Expired);
        assert_eq!(idle(0, t0, s(60), t0 + s(61)), Idle::Expired);
    }

    #[test]
    fn test_serving_idle_timer_recent_activity_moves_the_deadline() {
        let t0 = Instant::now();
        // Timer armed at t0 fires at t0+60s, but bytes moved at t0+50s.
        assert_eq!(
            idle(0, t0 + s(50), s(60), t0 + s(60)),
            Idle::CheckAt(t0 + s(110))
        );
    }

    #[test]
    fn test_serving_idle_timer_request_in_flight_keeps_the_connection() {
        let t0 = Instant::now();
        // A handler that has run for 10 minutes is not an idle client.
        assert_eq!(idle(1, t0, s(60), t0 + s(600)), Idle::CheckAt(t0 + s(660)));
    }

    #[test]
    fn test_serving_idle_timer_zero_timeout_expires_at_once() {
        let t0 = Instant::now();
        assert_eq!(idle(0, t0, Duration::ZERO, t0), Idle::Expired);
    }

    // ---- Serving: the request limit --------------------------------------------

    #[test]
    fn test_serving_request_limit_none_never_ends_the_connection() {
        let limit = request_limit(u64::MAX, None, Version::HTTP_11);
        assert!(!limit.last && !limit.close_header);
    }

    #[test]
    fn test_serving_request_limit_reached_http11_says_connection_close() {
        assert!(!request_limit(2, Some(3), Version::HTTP_11).last);
        let limit = request_limit(3, Some(3), Version::HTTP_11);
        assert!(limit.last && limit.close_header);
        assert!(request_limit(1, Some(1), Version::HTTP_10).close_header);
    }

    #[test]
    fn test_serving_request_limit_reached_h2_leaves_it_to_goaway() {
        let limit = request_limit(3, Some(3), Version::HTTP_2);
        assert!(limit.last);
        assert!(
            !limit.close_header,
            "h2 has no Connection header (RFC 9113 §8.2.2)"
        );
    }

    // ---- Released: which teardown ------------------------------------------------

    #[test]
    fn test_released_after_a_response_waits_for_the_clients_fin() {
        assert_eq!(teardown(None, 1234, false, false), Teardown::AfterGoodbye);
    }

    #[test]
    fn test_released_idle_http11_with_nothing_written_since_is_quiet() {
        assert_eq!(teardown(Some(1234), 1234, false, false), Teardown::Quiet);
    }

    #[test]
    fn test_released_idle_h2_goaway_written_since_is_a_goodbye() {
        // The GOAWAY (17 bytes) went out after the idle decision.
        assert_eq!(
            teardown(Some(1234), 1251, false, false),
            Teardown::AfterGoodbye
        );
    }

    #[test]
    fn test_released_forced_at_shutdown_is_quiet_whatever_was_written() {
        assert_eq!(teardown(None, 1234, true, false), Teardown::Quiet);
        assert_eq!(teardown(Some(1), 1234, true, true), Teardown::Quiet);
    }

    #[test]
    fn test_released_owing_our_fin_ends_with_a_fin() {
        assert_eq!(teardown(None, 1234, false, true), Teardown::OwedFin);
        // Shutdown while the body was streaming: it still ends with the FIN.
        assert_eq!(teardown(Some(1000), 1234, false, true), Teardown::OwedFin);
    }

    #[test]
    fn test_released_owing_our_fin_but_idle_or_forced_is_quiet() {
        // Nothing written since the quiet decision: nothing is owed.
        assert_eq!(teardown(Some(1234), 1234, false, true), Teardown::Quiet);
        assert_eq!(teardown(None, 1234, true, true), Teardown::Quiet);
    }

    // ---- Requests: the client asks to close ------------------------------------

    #[test]
    fn test_request_connection_close_asks_to_close() {
        assert!(client_asks_close(Version::HTTP_11, Some("close")));
        assert!(client_asks_close(Version::HTTP_11, Some("Upgrade, Close")));
        assert!(!client_asks_close(Version::HTTP_11, None));
        assert!(!client_asks_close(Version::HTTP_11, Some("keep-alive")));
        assert!(!client_asks_close(Version::HTTP_2, Some("close")));
    }

    #[test]
    fn test_request_http10_asks_to_close_unless_keep_alive() {
        assert!(client_asks_close(Version::HTTP_10, None));
        assert!(!client_asks_close(Version::HTTP_10, Some("Keep-Alive")));
        assert!(says_close("keep-alive, close"));
        assert!(!says_close("closed"));
    }

    #[test]
    fn test_request_http10_without_keep_alive_reads_to_close() {
        assert!(reads_to_close(Version::HTTP_10, None));
        assert!(reads_to_close(Version::HTTP_10, Some("close")));
        assert!(reads_to_close(Version::HTTP_10, Some("keep-alive, close")));
        assert!(!reads_to_close(Version::HTTP_10, Some("Keep-Alive")));
    }

    #[test]
    fn test_request_http11_connection_close_does_not_read_to_close() {
        // It asks to close, but stops at the response's end and closes itself.
        assert!(client_asks_close(Version::HTTP_11, Some("close")));
        assert!(!reads_to_close(Version::HTTP_11, Some("close")));
        assert!(!reads_to_close(Version::HTTP_11, None));
        assert!(!reads_to_close(Version::HTTP_2, None));
    }

    #[test]
    fn test_request_without_host_or_with_two_or_chunked_twice_is_refused() {
        assert!(malformed(Version::HTTP_11, 0, 0));
        assert!(!malformed(Version::HTTP_11, 1, 0));
        assert!(!malformed(Version::HTTP_10, 0, 0));
        assert!(!malformed(Version::HTTP_2, 0, 0));
        // More than one Host field: 400 whatever the version (RFC 9112 §3.2).
        assert!(malformed(Version::HTTP_11, 2, 0));
        assert!(malformed(Version::HTTP_10, 2, 0));
        // chunked twice (RFC 9112 §6.1).
        assert!(malformed(Version::HTTP_11, 1, 2));
        assert!(!malformed(Version::HTTP_11, 1, 1));
    }

    #[test]
    fn test_request_chunked_codings_are_counted_across_fields_and_lists() {
        let count = |values: &[&str]| chunked_codings(values.iter().map(|v| v.as_bytes()));
        assert_eq!(count(&["chunked"]), 1);
        assert_eq!(count(&["chunked", "chunked"]), 2);
        assert_eq!(count(&["gzip, Chunked", " chunked "]), 2);
        assert_eq!(count(&["gzip"]), 0);
    }

    // ---- Responses: close-delimited bodies ---------------------------------------

    #[test]
    fn test_response_http10_unknown_length_is_close_delimited() {
        let ok = StatusCode::OK;
        assert!(close_delimited(
            Version::HTTP_10,
            &Method::GET,
            ok,
            false,
            None
        ));
        assert!(!close_delimited(
            Version::HTTP_11,
            &Method::GET,
            ok,
            false,
            None
        ));
        assert!(!close_delimited(
            Version::HTTP_2,
            &Method::GET,
            ok,
            false,
            None
        ));
    }

    #[test]
    fn test_response_http10_known_length_or_no_body_is_not() {
        let ok = StatusCode::OK;
        assert!(!close_delimited(
            Version::HTTP_10,
            &Method::GET,
            ok,
            true,
            None
        ));
        assert!(!close_delimited(
            Version::HTTP_10,
            &Method::GET,
            ok,
            false,
            Some(9)
        ));
        assert!(!close_delimited(
            Version::HTTP_10,
            &Method::HEAD,
            ok,
            false,
            None
        ));
        let none = StatusCode::NO_CONTENT;
        assert!(!close_delimited(
            Version::HTTP_10,
            &Method::GET,
            none,
            false,
            None
        ));
        let same = StatusCode::NOT_MODIFIED;
        assert!(!close_delimited(
            Version::HTTP_10,
            &Method::GET,
            same,
            false,
            None
        ));
    }

    // ---- Responses: who is owed our FIN ----------------------------------------------

    #[test]
    fn test_response_to_a_reader_to_close_owes_our_fin_whatever_its_framing() {
        // HTTP/1.0 without keep-alive, Content-Length response (`ab`, `nc`).
        assert!(owes_fin(true, false));
        // ... or close-delimited.
        assert!(owes_fin(true, true));
    }

    #[test]
    fn test_response_close_delimited_owes_our_fin_even_to_a_keep_alive_client() {
        assert!(owes_fin(false, true));
    }

    #[test]
    fn test_response_framed_to_a_client_that_closes_itself_owes_nothing() {
        // HTTP/1.1 (`Connection: close` or not), HTTP/1.0 keep-alive, h2.
        assert!(!owes_fin(false, false));
    }

    const LIMITS: Limits = Limits {
        header_read: Some(Duration::from_secs(2)),
        body_read: Some(Duration::from_secs(3)),
        send: Some(Duration::from_secs(5)),
    };

    #[test]
    fn header_clock_counts_from_the_first_byte_and_a_trickle_does_not_restart_it() {
        let w = Watch {
            now: 1_999,
            head_started: Some(0),
            read_pending: Some(1_900), // the trickle's last byte came at 1.9 s
            ..Watch::default()
        };
        assert_eq!(watchdog(&w, &LIMITS), None);
        assert_eq!(
            watchdog(&Watch { now: 2_000, ..w }, &LIMITS),
            Some(Cut::Read)
        );
        // No byte of a new request: the idle timeout's business.
        let idle = Watch {
            now: 100_000,
            ..Watch::default()
        };
        assert_eq!(watchdog(&idle, &LIMITS), None);
        // h2 after its first request: frames, not heads.
        assert_eq!(
            watchdog(
                &Watch {
                    now: 9_000,
                    h2: true,
                    ..w
                },
                &LIMITS
            ),
            None
        );
    }

    #[test]
    fn body_clock_needs_a_request_in_flight_and_a_read_pending() {
        let w = Watch {
            now: 10_000,
            in_flight: 1,
            read_pending: Some(7_000),
            ..Watch::default()
        };
        assert_eq!(watchdog(&w, &LIMITS), Some(Cut::Read));
        assert_eq!(
            watchdog(
                &Watch {
                    read_pending: Some(7_001),
                    ..w
                },
                &LIMITS
            ),
            None
        );
        // A slow handler: hyper is not reading.
        assert_eq!(
            watchdog(
                &Watch {
                    read_pending: None,
                    ..w
                },
                &LIMITS
            ),
            None
        );
        let off = Limits {
            body_read: None,
            ..LIMITS
        };
        assert_eq!(watchdog(&w, &off), None);
    }

    #[test]
    fn send_stall_needs_something_waiting_and_no_progress() {
        let w = Watch {
            now: 10_000,
            in_flight: 0,
            send_waiting: true,
            send_progress: 5_000,
            ..Watch::default()
        };
        assert_eq!(watchdog(&w, &LIMITS), Some(Cut::Send));
        assert_eq!(watchdog(&Watch { h2: true, ..w }, &LIMITS), Some(Cut::Send));
        // A slow reader: the kernel's ACKs moved 1 ms later.
        assert_eq!(
            watchdog(
                &Watch {
                    send_progress: 5_001,
                    ..w
                },
                &LIMITS
            ),
            None
        );
        // Nothing to send: an idle connection, not a stall.
        assert_eq!(
            watchdog(
                &Watch {
                    send_waiting: false,
                    ..w
                },
                &LIMITS
            ),
            None
        );
    }

    #[test]
    fn tick_is_a_quarter_of_the_shortest_bound_within_limits() {
        assert_eq!(LIMITS.tick(), Some(Duration::from_millis(500)));
        let off = Limits {
            header_read: None,
            body_read: None,
            send: None,
        };
        assert_eq!(off.tick(), None);
        let long = Limits {
            header_read: Some(Duration::from_secs(600)),
            ..off
        };
        assert_eq!(long.tick(), Some(Duration::from_secs(15)));
    }

    #[test]
    fn fins_are_checked_only_where_a_reset_may_follow() {
        use farewell::PeerTimeWait::{Auto, Keep, Spare};
        assert!(!check_fins(None, 1000, 500));
        assert!(!check_fins(Some(Keep), 1000, 500));
        assert!(check_fins(Some(Spare), 0, 500));
        assert!(!check_fins(Some(Auto), 249, 500));
        assert!(check_fins(Some(Auto), 250, 500));
        // Threshold 0: every client heavy, every response checked.
        assert!(check_fins(Some(Auto), 0, 0));
        assert!(!check_fins(Some(Auto), 1_000_000, u32::MAX));
    }

    #[test]
    fn an_unchecked_fin_keeps_the_passive_close_once_a_reset_may_follow() {
        use farewell::PeerTimeWait::{Auto, Keep, Spare};
        assert!(!unchecked_fin_may_reset(Some(Keep), 1000, 500));
        assert!(unchecked_fin_may_reset(Some(Spare), 0, 500));
        // The next ending is the 500th: not past the threshold.
        assert!(!unchecked_fin_may_reset(Some(Auto), 499, 500));
        assert!(unchecked_fin_may_reset(Some(Auto), 500, 500));
        assert!(!unchecked_fin_may_reset(Some(Auto), u32::MAX, u32::MAX));
    }
}
