//! The demo handler behind `farewell serve-http` and `farewell bench http`.
//!
//! | request | response |
//! |---|---|
//! | `GET /` | `200`, `hello from farewell-http\n` |
//! | `GET /bytes/N` | `200`, `N` bytes of [`pattern`] (`N` ≤ 64 MiB), with `Content-Length`, generated in chunks of at most [`STREAM_CHUNK`] as the client takes them (memory per response: one chunk, not `N`) |
//! | `GET /stream/N` | `200`, the same `N` bytes streamed in chunks of at most [`STREAM_CHUNK`], length unknown to hyper: chunked to HTTP/1.1 clients, **close-delimited** to HTTP/1.0 clients (the body ends only where the server closes) |
//! | `GET /sleep/MS` | `200`, `slept MS ms\n`, after `MS` ms (at most 60 000): a slow handler |
//! | `POST /upload` with a body ≤ [`UPLOAD_LIMIT`] | `200`, `received N bytes\n`, after reading it all |
//! | `POST /upload` with a larger `Content-Length` | `413` at once, body **not** read |
//! | `POST /upload` whose body cannot be read (bad chunk size, LF-only chunk lines, cut short) | `400` |
//! | `GET /ws` with a WebSocket upgrade (RFC 6455 §4.2) | `101`, then a WebSocket echo (see [`WS_MAX_MESSAGE`]); at the server's shutdown ([`farewell_http::Shutdown`]) it sends close 1001 and finishes |
//! | `GET /ws` without one | `400` |
//! | anything else | `404` |
//!
//! The early 413 is the case RFC 9112 §9.6 warns about: the server answers
//! before reading the request, and a close with the body still arriving would
//! reset the connection and could erase the response at the client. The
//! server drains the body instead (within its policy's drain limit).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};

/// The largest upload `/upload` reads; a larger `Content-Length` gets an early 413.
pub const UPLOAD_LIMIT: u64 = 64 * 1024;

/// The largest body `/bytes/N` sends.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;

/// The largest chunk of a `/stream/N` body.
pub const STREAM_CHUNK: usize = 16 * 1024;

/// The body of every demo response: whole ([`Full`]) or streamed ([`PatternStream`]).
pub type DemoBody = Either<Full<Bytes>, PatternStream>;

/// The body of `GET /stream/N`: `N` bytes of [`pattern`], in chunks of at most
/// [`STREAM_CHUNK`], whose length it does not tell (no exact size hint), so
/// hyper cannot send a `Content-Length`.
#[derive(Debug)]
pub struct PatternStream {
    sent: usize,
    len: usize,
    /// Tell the length (an exact size hint): hyper sends `Content-Length`.
    exact: bool,
}

impl PatternStream {
    /// A stream of `len` bytes of [`pattern`] whose length hyper does not know.
    pub fn new(len: usize) -> PatternStream {
        PatternStream {
            sent: 0,
            len,
            exact: false,
        }
    }

    /// A stream of `len` bytes of [`pattern`] with an exact size hint, so
    /// hyper still sends `Content-Length` (the body of `/bytes/N`).
    pub fn sized(len: usize) -> PatternStream {
        PatternStream {
            exact: true,
            ..PatternStream::new(len)
        }
    }
}

impl http_body::Body for PatternStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let n = (self.len - self.sent).min(STREAM_CHUNK);
        if n == 0 {
            return Poll::Ready(None);
        }
        let start = self.sent % 26;
        self.sent += n;
        // A slice of one static buffer: no allocation, no copy per chunk.
        let chunk = Bytes::from_static(&PATTERN[start..start + n]);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent == self.len
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact((self.len - self.sent) as u64)
        } else {
            // Unknown on purpose: an exact hint would become a Content-Length.
            SizeHint::default()
        }
    }
}

/// The largest WebSocket message (and frame) `/ws` takes; a larger one ends
/// the connection with close 1009 (message too big), so a flooding client
/// costs bounded memory. A malformed frame ends it with 1002, invalid UTF-8
/// text with 1007.
pub const WS_MAX_MESSAGE: usize = 1024 * 1024;

/// The most the echo queues for the client, unsent (tungstenite's
/// `max_write_buffer_size`, whose default is unbounded): room for one
/// largest echo and tungstenite's 128 KiB write buffer. A client that sends
/// pings and never reads makes tungstenite queue a pong per ping; past this
/// the handler's write fails and it ends, and the connection with it.
pub const WS_MAX_WRITE_BUFFER: usize = 2 * WS_MAX_MESSAGE + 128 * 1024;

/// At shutdown, how long `/ws` waits for the client's close frame after its own (1001).
pub const WS_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// [`pattern`] for `STREAM_CHUNK + 26` bytes: every chunk is a slice of it.
static PATTERN: [u8; STREAM_CHUNK + 26] = {
    let mut bytes = [0u8; STREAM_CHUNK + 26];
    let mut i = 0;
    while i < bytes.len() {
        bytes[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    bytes
};

/// The body of `GET /`.
pub const HELLO: &str = "hello from farewell-http\n";

/// Byte `i` of a `/bytes/N` body: `a` to `z`, repeating, so a client can check
/// every byte arrived in place.
pub fn pattern(i: usize) -> u8 {
    b'a' + (i % 26) as u8
}

/// Handles one request (see the [module docs](self)). Use it with
/// `hyper::service::service_fn(farewell_lab::support::http_demo::handle)`.
/// A WebSocket echo sees the server's shutdown if the request carries a
/// [`farewell_http::Shutdown`] in its extensions
/// ([`farewell_http::Server::shutdown_extension`]); [`handle_with`] takes it
/// from the caller instead.
///
/// # Errors
///
/// Never: every failure is an HTTP status.
pub fn handle<B>(
    request: Request<B>,
) -> impl std::future::Future<Output = Result<Response<DemoBody>, Infallible>>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Not an `async fn` awaiting `handle_with`: its future would hold that
    // one inside it, twice the size, and the server moves it a few times.
    let shutdown = request
        .extensions()
        .get::<farewell_http::Shutdown>()
        .cloned();
    handle_with(request, shutdown)
}

/// [`handle`] with the server's shutdown signal given by the caller
/// ([`farewell_http::Server::shutdown_handle`]): a WebSocket echo sends close
/// 1001 when it is requested. `None`: the echo ignores the shutdown.
///
/// # Errors
///
/// Never: every failure is an HTTP status.
pub async fn handle_with<B>(
    request: Request<B>,
    shutdown: Option<farewell_http::Shutdown>,
) -> Result<Response<DemoBody>, Infallible>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = request.uri().path();
    let response = match (request.method(), path) {
        (&Method::GET, "/") => text(StatusCode::OK, HELLO),
        (&Method::GET, p) if p.starts_with("/bytes/") => match p["/bytes/".len()..].parse() {
            Ok(n) if n <= MAX_BYTES => {
                return Ok(Response::new(Either::Right(PatternStream::sized(n))))
            }
            _ => text(
                StatusCode::BAD_REQUEST,
                "want /bytes/N with N <= 67108864\n",
            ),
        },
        (&Method::GET, p) if p.starts_with("/stream/") => match p["/stream/".len()..].parse() {
            Ok(n) if n <= MAX_BYTES => {
                return Ok(Response::new(Either::Right(PatternStream::new(n))))
            }
            _ => text(
                StatusCode::BAD_REQUEST,
                "want /stream/N with N <= 67108864\n",
            ),
        },
        (&Method::GET, p) if p.starts_with("/sleep/") => match p["/sleep/".len()..].parse() {
            Ok(ms) if ms <= 60_000 => {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                text(StatusCode::OK, format!("slept {ms} ms\n"))
            }
            _ => text(StatusCode::BAD_REQUEST, "want /sleep/MS with MS <= 60000\n"),
        },
        (&Method::POST, "/upload") => upload(request).await,
        (&Method::GET, "/ws") => websocket(request, shutdown),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(response.map(Either::Left))
}

async fn upload<B>(request: Request<B>) -> Response<Full<Bytes>>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > UPLOAD_LIMIT) {
        // Answer before reading: the body stays unread in the socket.
        return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
    }
    match http_body_util::Limited::new(request.into_body(), UPLOAD_LIMIT as usize)
        .collect()
        .await
    {
        Ok(body) => text(
            StatusCode::OK,
            format!("received {} bytes\n", body.to_bytes().len()),
        ),
        // Over the limit: 413. Anything else is a body that could not be
        // read (a bad chunk size, LF-only chunk lines, a body cut short): the
        // request is malformed, 400 (RFC 9110 §15.5.1).
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
        }
        Err(_) => text(StatusCode::BAD_REQUEST, "malformed request body\n"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    response
}

/// `GET /ws`: answers the upgrade with `101` and runs [`echo`] on the upgraded
/// stream in a task of its own.
fn websocket<B>(
    mut request: Request<B>,
    shutdown: Option<farewell_http::Shutdown>,
) -> Response<Full<Bytes>> {
    let headers = request.headers();
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    let key = headers.get(header::SEC_WEBSOCKET_KEY);
    let (true, true, true, Some(key)) = (
        has(header::CONNECTION, "upgrade"),
        has(header::UPGRADE, "websocket"),
        has(header::SEC_WEBSOCKET_VERSION, "13"),
        key,
    ) else {
        return text(
            StatusCode::BAD_REQUEST,
            "want a WebSocket upgrade: Connection: Upgrade, Upgrade: websocket, \
             Sec-WebSocket-Version: 13, Sec-WebSocket-Key\n",
        );
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => echo(hyper_util::rt::TokioIo::new(upgraded), shutdown).await,
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("upgrade"),
    );
    headers.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    if let Ok(accept) = header::HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// A WebSocket echo on an upgraded stream: every text and binary message
/// comes back as it came. Ends when the client's close handshake completes
/// (tungstenite answers the close frame), on an error, or, when `shutdown` is
/// requested, after sending close 1001 ("going away", RFC 6455 §7.4.1) and
/// reading until the client's close (at most [`WS_CLOSE_WAIT`]). Dropping the
/// stream then lets the server close the TCP connection (RFC 6455 §7.1.1).
pub async fn echo<S>(stream: S, shutdown: Option<farewell_http::Shutdown>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
    use tokio_tungstenite::tungstenite::{Error as WsError, Message};

    let config = WebSocketConfig::default()
        .max_message_size(Some(WS_MAX_MESSAGE))
        .max_write_buffer_size(WS_MAX_WRITE_BUFFER)
        .max_frame_size(Some(WS_MAX_MESSAGE));
    let mut ws =
        tokio_tungstenite::WebSocketStream::from_raw_socket(stream, Role::Server, Some(config))
            .await;
    let going_away = async {
        match &shutdown {
            Some(shutdown) => shutdown.requested().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(going_away);
    loop {
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    if ws.send(message).await.is_err() {
                        return;
                    }
                }
                // A ping's pong goes out now, not when tungstenite next
                // writes: a client that pings and never reads then fills the
                // socket, and the server's send timeout cuts it.
                Some(Ok(Message::Ping(_))) => {
                    if ws.flush().await.is_err() {
                        return;
                    }
                }
                // Pong, and the client's close: tungstenite answers a close
                // on the next read, which then ends the stream.
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "WebSocket ended");
                    // Say why where the protocol has a code for it (RFC 6455 §7.4.1).
                    let code = match e {
                        WsError::Capacity(_) => CloseCode::Size,
                        WsError::Protocol(_) => CloseCode::Protocol,
                        WsError::Utf8(_) => CloseCode::Invalid,
                        _ => return,
                    };
                    return goodbye(&mut ws, code, "message too big or malformed").await;
                }
                None => return,
            },
            () = &mut going_away => {
                return goodbye(&mut ws, CloseCode::Away, "server shutting down").await;
            }
        }
    }
}

/// Sends a close frame, then reads (at most [`WS_CLOSE_WAIT`]) until the
/// client's close, so the server's TCP close comes after the close handshake
/// (RFC 6455 §7.1.1).
async fn goodbye<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode,
    reason: &'static str,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::Message;
    let close = CloseFrame {
        code,
        reason: reason.into(),
    };
    if ws.send(Message::Close(Some(close))).await.is_ok() {
        let _ = tokio::time::timeout(WS_CLOSE_WAIT, async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
}
