//! The service wrapper: counts requests in flight (for the idle timer),
//! enforces the max-requests-per-connection limit, and notes a response after
//! which the client is owed the server's FIN (an HTTP/1.0 client reading until
//! the close, a close-delimited body: the teardown must then send it). It
//! answers an HTTP/1.1 request without `Host` itself, with 400 (RFC 9112
//! §3.2), so the user's service never sees one. Its response bodies are
//! [`Watched`], for the send timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING,
};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Empty};
use hyper::service::Service;

use crate::conn::ConnState;
use crate::decide;
use crate::record::Cause;

/// Wraps the user's service for one connection.
pub(crate) struct Counted<S> {
    inner: S,
    conn: Arc<ConnState>,
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S, conn: Arc<ConnState>) -> Counted<S> {
        Counted { inner, conn }
    }
}

impl<S, R, B> Service<Request<R>> for Counted<S>
where
    S: Service<Request<R>, Response = Response<B>>,
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Watched<Either<B, Empty<B::Data>>>>;
    type Error = S::Error;
    type Future = CountedFuture<S::Future>;

    fn call(&self, mut request: Request<R>) -> Self::Future {
        let conn = &self.conn;
        if let Some(shutdown) = &conn.shared.shutdown {
            request.extensions_mut().insert(shutdown.clone());
        }
        conn.head_done();
        if request.version() == Version::HTTP_2 {
            conn.h2.store(true, Ordering::Relaxed);
        }
        let n = conn.count_request();
        let limit = decide::request_limit(n, conn.shared.max_requests, request.version());
        let fields = RequestFields::of(request.headers());
        // Only HTTP/1.x has a `Connection` header (h2 forbids it).
        let connection = (request.version() < Version::HTTP_2)
            .then(|| fields.connection?.to_str().ok())
            .flatten();
        if decide::client_asks_close(request.version(), connection) {
            conn.cause.set(Cause::ClientAsked);
        }
        let reads_to_close = decide::reads_to_close(request.version(), connection);
        if limit.last {
            conn.cause.set(Cause::RequestLimit);
            conn.limit_reached.notify_one();
        }
        let close = limit.close_header;
        let version = request.version();
        let method = request.method().clone();
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        if decide::malformed(version, fields.hosts, fields.chunked) {
            // A malformed request: 400, and the connection ends after it.
            conn.cause.set(Cause::Error);
            return CountedFuture {
                inner: None,
                close: true,
                reads_to_close,
                version,
                method,
                _guard: InFlight(Arc::clone(conn)),
            };
        }
        CountedFuture {
            inner: Some(self.inner.call(request)),
            close,
            reads_to_close,
            version,
            method,
            _guard: InFlight(Arc::clone(conn)),
        }
    }
}

/// The request's fields the service looks at, found in one walk over its
/// header map: a request carries a few fields (hyper bounds them at 100), and
/// comparing each name costs less than hashing three names to look them up.
struct RequestFields<'a> {
    /// The first `Connection` field.
    connection: Option<&'a HeaderValue>,
    /// `Host` field lines.
    hosts: usize,
    /// How often `chunked` appears among the `Transfer-Encoding` codings.
    chunked: usize,
}

impl<'a> RequestFields<'a> {
    fn of(headers: &'a HeaderMap) -> RequestFields<'a> {
        let mut fields = RequestFields {
            connection: None,
            hosts: 0,
            chunked: 0,
        };
        for (name, value) in headers {
            if name == HOST {
                fields.hosts += 1;
            } else if name == CONNECTION {
                fields.connection.get_or_insert(value);
            } else if name == TRANSFER_ENCODING {
                fields.chunked += decide::chunked_codings(std::iter::once(value.as_bytes()));
            }
        }
        fields
    }
}

/// The first `name` field of `headers`: walked when the map is short (the
/// usual response), looked up by hash when it is not.
fn first<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    if headers.len() > 8 {
        return headers.get(name);
    }
    headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// Decrements the connection's in-flight count when the response future ends or is dropped.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// The user's response future, with `Connection: close` added on the last allowed request.
    pub(crate) struct CountedFuture<F> {
        // `None`: the request was refused with 400 without calling the service.
        #[pin]
        inner: Option<F>,
        close: bool,
        // The client reads the response until the server closes.
        reads_to_close: bool,
        version: Version,
        method: Method,
        _guard: InFlight,
    }
}

impl<F, B, E> Future for CountedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<Response<Watched<Either<B, Empty<B::Data>>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let conn = &this._guard.0;
        let (mut parts, body) = match this.inner.as_pin_mut() {
            Some(inner) => {
                let (parts, body) = std::task::ready!(inner.poll(cx))?.into_parts();
                (parts, Either::Left(body))
            }
            None => {
                let (mut parts, body) = Response::new(Either::Right(Empty::new())).into_parts();
                parts.status = StatusCode::BAD_REQUEST;
                (parts, body)
            }
        };
        if *this.close {
            parts
                .headers
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            conn.cause.set(Cause::Upgrade);
        } else if !*this.close
            && first(&parts.headers, &CONNECTION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(decide::says_close)
        {
            conn.cause.set(Cause::ServiceAsked);
        }
        // Only an HTTP/1.0 response can be close-delimited: the lookups are
        // skipped for the others.
        let close_delimited = *this.version == Version::HTTP_10 && {
            let exact_len = if body.is_end_stream() {
                Some(0)
            } else {
                body.size_hint().exact()
            };
            decide::close_delimited(
                *this.version,
                this.method,
                parts.status,
                parts.headers.contains_key(CONTENT_LENGTH),
                exact_len,
            )
        };
        if decide::owes_fin(*this.reads_to_close, close_delimited) {
            conn.owes_fin.store(true, Ordering::Relaxed);
            // Only a framed response lets the client close by itself first.
            conn.body_close_delimited
                .store(close_delimited, Ordering::Relaxed);
        }
        // One rebuild of the response: its parts, the body wrapped once.
        let body = Watched::new(body, Arc::clone(conn));
        Poll::Ready(Ok(Response::from_parts(parts, body)))
    }
}

pin_project_lite::pin_project! {
    /// A response body that tells its connection when it waits to be sent.
    ///
    /// Once a body has given a frame, hyper asks for the next one only when it
    /// has room: in HTTP/1.1 when its write buffer has space, in h2 when the
    /// stream has flow-control capacity. A body that gave a frame and is not
    /// polled again is waiting on the client; the connection task cuts the
    /// connection when that lasts the send timeout with no ACK progress either
    /// (h2 with a zero window, an HTTP/1.1 client that does not read). A body
    /// that returned `Pending` is the service's to finish: never a stall.
    pub(crate) struct Watched<B> {
        #[pin]
        inner: B,
        conn: Arc<ConnState>,
        waiting: bool,
    }

    impl<B> PinnedDrop for Watched<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.waiting {
                this.conn.bodies_waiting.fetch_sub(1, Ordering::AcqRel);
            }
            this.conn.bodies_open.fetch_sub(1, Ordering::AcqRel);
            this.conn.touch();
        }
    }
}

impl<B> Watched<B> {
    fn new(inner: B, conn: Arc<ConnState>) -> Watched<B> {
        conn.bodies_open.fetch_add(1, Ordering::AcqRel);
        Watched {
            inner,
            conn,
            waiting: false,
        }
    }
}

impl<B: Body> Body for Watched<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        this.conn.send_progress();
        if std::mem::take(this.waiting) {
            this.conn.bodies_waiting.fetch_sub(1, Ordering::AcqRel);
        }
        let poll = this.inner.poll_frame(cx);
        if matches!(poll, Poll::Ready(Some(Ok(_)))) {
            *this.waiting = true;
            this.conn.bodies_waiting.fetch_add(1, Ordering::AcqRel);
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
