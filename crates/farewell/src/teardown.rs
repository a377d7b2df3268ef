//! The async driver: runs a [`Policy`] on a tokio `TcpStream` and reports the [`Outcome`].

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf, ReuniteError};
use tokio::net::TcpStream;

use crate::outcome::Outcome;
use crate::policy::{Event, Finish, Machine, Policy, Probe, Release, Step};
use crate::sys;
use crate::TcpState;

/// Bytes read and thrown away per read call. One buffer per runtime thread,
/// shared by every teardown on it, so a pending teardown holds no buffer.
const SCRATCH_LEN: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_LEN].into_boxed_slice());
}

/// Tears `stream` down with `policy`, after saying `goodbye`, and reports what happened.
///
/// This is the whole teardown in one call: it never blocks a thread (no
/// non-zero `SO_LINGER`, reads and writes are non-blocking, waits are tokio
/// timers), always ends within the policy's deadlines (each clamped to
/// [`MAX_WAIT`](crate::policy::MAX_WAIT)), and always closes the descriptor.
/// Peer resets and I/O errors end the teardown early and show in
/// [`Outcome::ending`]; they are not errors.
///
/// `goodbye` is the protocol's last message (for example `b"BYE idle\n"`); it
/// may be empty. With the default [`Policy::PeerFirst`], the server never sends
/// the first FIN, so it never keeps a TIME-WAIT entry, and the outcome says
/// whether the goodbye was confirmed delivered.
///
/// A socket that is not established (still connecting) is reset at once
/// ([`Ending::NotEstablished`](crate::Ending::NotEstablished)); one the peer
/// already reset is just closed ([`Ending::PeerReset`](crate::Ending::PeerReset)).
///
/// To hand a stream over and move on, use a [`Closer`](crate::Closer).
///
/// # Notes
///
/// A process that forks while a teardown ends (to run a child program, say)
/// hands the child a copy of every descriptor until the child calls `exec`;
/// for that moment the kernel sees the socket as still open, and the close,
/// reset or orphaning takes effect only when the child's copy goes. Sockets
/// opened by std and tokio are close-on-exec, so this lasts only from `fork`
/// to `exec`.
///
/// A stream cannot be torn down twice: `close` takes it by value, so a second
/// call does not compile.
///
/// ```compile_fail
/// # async fn twice(stream: tokio::net::TcpStream) {
/// use farewell::Policy;
/// farewell::close(stream, Policy::default(), &b""[..]).await;
/// farewell::close(stream, Policy::default(), &b""[..]).await; // error: use of moved value
/// # }
/// ```
///
/// # Examples
///
/// ```no_run
/// use farewell::{Policy, TimeWait};
/// use tokio::net::TcpListener;
///
/// # #[allow(dead_code)]
/// # async fn demo() -> std::io::Result<()> {
/// let listener = TcpListener::bind("127.0.0.1:7878").await?;
/// let (stream, _) = listener.accept().await?;
/// // ... the protocol decides the client must go ...
/// let outcome = farewell::close(stream, Policy::default(), &b"BYE idle\n"[..]).await;
/// println!("{outcome}");
/// assert_ne!(outcome.time_wait, TimeWait::Us);
/// # Ok(())
/// # }
/// ```
pub fn close(
    stream: TcpStream,
    policy: Policy,
    goodbye: impl Into<Bytes>,
) -> impl Future<Output = Outcome> + Send + 'static {
    teardown(stream, policy, goodbye.into(), Addresses::Ask, NoHurry)
}

/// Where a teardown learns that its closer was hurried ([`Closer::hurry`](crate::Closer::hurry)).
///
/// Generic so that [`close`], which has no closer, pays nothing for it.
pub(crate) trait Urgency: Send + 'static {
    /// Completes once the closer is hurried after [`Urgency::wait`] was called.
    type Wait<'a>: Future<Output = ()> + Send + 'a
    where
        Self: 'a;

    /// The closer was hurried.
    fn is_hurried(&self) -> bool;

    /// A future that completes on the next hurry. Create it, then check
    /// [`Urgency::is_hurried`], so a hurry in between is not missed.
    fn wait(&self) -> Self::Wait<'_>;
}

/// No closer, no hurry: the teardown runs on its policy's deadlines alone.
pub(crate) struct NoHurry;

impl Urgency for NoHurry {
    type Wait<'a> = std::future::Pending<()>;

    fn is_hurried(&self) -> bool {
        false
    }

    fn wait(&self) -> Self::Wait<'_> {
        std::future::pending()
    }
}

/// Whether a teardown asks the kernel for the connection's addresses (two
/// syscalls) to put in its [`Outcome`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Addresses {
    /// Someone will read the outcome's addresses.
    Ask,
    /// Nobody will: leave [`Outcome::local`] and [`Outcome::peer`] empty.
    Skip,
}

/// [`close`], with the choice of asking for the addresses.
pub(crate) fn teardown<H: Urgency>(
    stream: TcpStream,
    policy: Policy,
    goodbye: Bytes,
    addresses: Addresses,
    hurry: H,
) -> impl Future<Output = Outcome> + Send + 'static {
    // Everything is set up here, outside the future, and the future keeps it
    // in place: an async fn would hold a second copy of each argument for its
    // whole life (rust-lang/rust#62958), and a pending teardown should be small.
    let started = Instant::now();
    let machine = Machine::new(policy, goodbye.len(), started);
    let (local, peer) = match addresses {
        Addresses::Ask => (stream.local_addr().ok(), stream.peer_addr().ok()),
        Addresses::Skip => (None, None),
    };
    drive(Teardown {
        local,
        peer,
        stream,
        goodbye,
        machine,
        hurry,
    })
}

/// What a teardown holds while it waits.
struct Teardown<H> {
    stream: TcpStream,
    goodbye: Bytes,
    /// The decisions; also keeps when the teardown started.
    machine: Machine,
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    hurry: H,
}

// A plain fn returning an `async move` block: the block keeps `t` in place,
// where an `async fn` would copy its argument into a second slot.
#[allow(clippy::manual_async_fn)] // deliberate: see the comment above
fn drive<H: Urgency>(mut t: Teardown<H>) -> impl Future<Output = Outcome> + Send + 'static {
    async move {
        // One timer for the whole teardown, re-armed per wait, and readiness polled
        // straight on the t.stream (no per-wait readiness futures): a pending
        // teardown stays small (see `Closer`'s memory note).
        // The hurry's waiter is created before the first look at the flag, so no
        // hurry is missed. One pinned pair, so each wait captures one pointer.
        let deadlines = Deadlines {
            timer: tokio::time::sleep_until(t.machine.started().into()),
            hurry: t.hurry.wait(),
        };
        tokio::pin!(deadlines);
        let finish = loop {
            let now = Instant::now();
            if !t.machine.hurried() && t.hurry.is_hurried() {
                t.machine.on_event(now, Event::Hurry);
            }
            match t.machine.step(now) {
                Step::Finish(finish) => break finish,
                Step::CheckState => {
                    let event = sys::tcp_info(&t.stream).map_or(Event::ProbeFailed, Event::StateIs);
                    t.machine.on_event(now, event);
                }
                Step::Probe => {
                    let event = probe(&t.stream).map_or(Event::ProbeFailed, Event::Probed);
                    t.machine.on_event(now, event);
                }
                Step::ShutdownWrite => {
                    let before = sys::tcp_state(&t.stream).ok();
                    let event = match socket2::SockRef::from(&t.stream).shutdown(Shutdown::Write) {
                        Ok(()) => Event::HalfClosed(before),
                        Err(e) => Event::Failed(e.kind()),
                    };
                    t.machine.on_event(Instant::now(), event);
                }
                Step::TryWrite => {
                    let pending = &t.goodbye[t.machine.written()..];
                    let event = try_io(&t.stream, Some(pending), false).unwrap_or(Event::Timer);
                    t.machine.on_event(Instant::now(), event);
                }
                Step::Wait { write, read, until } => {
                    let pending = &t.goodbye[t.machine.written()..];
                    if let Some(event) = try_io(&t.stream, write.then_some(pending), read) {
                        t.machine.on_event(Instant::now(), event);
                        continue;
                    }
                    deadlines.as_mut().project().timer.reset(until.into());
                    let event = std::future::poll_fn(|cx| {
                        // Read, then write, then the hurry and the timer: an EOF or
                        // the last byte of a flood wins over a deadline that passed meanwhile.
                        if read {
                            if let Poll::Ready(ready) = t.stream.poll_read_ready(cx) {
                                return Poll::Ready(ready.err().map(|e| Event::Failed(e.kind())));
                            }
                        }
                        if write {
                            if let Poll::Ready(ready) = t.stream.poll_write_ready(cx) {
                                return Poll::Ready(ready.err().map(|e| Event::Failed(e.kind())));
                            }
                        }
                        deadlines.as_mut().poll_next(cx).map(Some)
                    })
                    .await;
                    if let Some(event) = event {
                        t.machine.on_event(Instant::now(), event);
                    }
                }
            }
        };

        let last = if t.machine.saw_eof() {
            // After the peer's FIN was read nothing can be left unread: spare the ioctl.
            probe_after_eof(&t.stream).ok()
        } else {
            probe(&t.stream).ok()
        };
        if last.is_some_and(|p| p.state() == TcpState::Closed) {
            // CLOSED after our FIN: either the peer's FIN came (TIME-WAIT is ours)
            // or a reset did. One read tells which.
            if let Some(event @ Event::Eof) = try_io(&t.stream, None, true) {
                t.machine.on_event(Instant::now(), event);
            }
        }
        let finish = release(t.stream, finish, &mut t.machine);
        let mut outcome = t
            .machine
            .outcome(finish, last, t.machine.started().elapsed());
        outcome.local = t.local;
        outcome.peer = t.peer;
        tracing::debug!(%outcome, "teardown finished");
        outcome
    }
}

pin_project_lite::pin_project! {
    /// What a waiting teardown also waits for: its timer and its closer's hurry.
    struct Deadlines<W> {
        #[pin]
        timer: tokio::time::Sleep,
        #[pin]
        hurry: W,
    }
}

impl<W: Future<Output = ()>> Deadlines<W> {
    /// [`Event::Hurry`] once the closer is hurried, [`Event::Timer`] once the timer fires.
    ///
    /// Once hurried, the machine never waits again, so a finished `hurry` is
    /// not polled twice.
    fn poll_next(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Event> {
        let this = self.project();
        if this.hurry.poll(cx).is_ready() {
            return Poll::Ready(Event::Hurry);
        }
        this.timer.poll(cx).map(|()| Event::Timer)
    }
}

/// Tears down a stream that was split with [`TcpStream::into_split`], as [`close`] does.
///
/// Use this rather than dropping the halves: dropping an [`OwnedWriteHalf`]
/// calls `shutdown(SHUT_WR)`, which sends the first FIN and puts the
/// TIME-WAIT entry on our side ([F2](crate::facts#f2)).
///
/// # Errors
///
/// Fails when the halves come from two different streams; both are handed back
/// in the error, untouched.
pub async fn close_split(
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    policy: Policy,
    goodbye: impl Into<Bytes>,
) -> Result<Outcome, ReuniteError> {
    let stream = read.reunite(write)?;
    Ok(close(stream, policy, goodbye).await)
}

/// Asks the kernel for the connection's state, ACK counter and queues.
fn probe(stream: &TcpStream) -> io::Result<Probe> {
    Ok(Probe {
        info: sys::tcp_info(stream)?,
        unacked: sys::unacked_bytes(stream)?,
        unread: sys::unread_bytes(stream)?,
    })
}

/// As [`probe`], for a socket whose receive queue is known to be empty.
fn probe_after_eof(stream: &TcpStream) -> io::Result<Probe> {
    Ok(Probe {
        info: sys::tcp_info(stream)?,
        unacked: sys::unacked_bytes(stream)?,
        unread: 0,
    })
}

/// One non-blocking attempt to write what is left of the goodbye and to read;
/// returns the first thing that happened, or `None` if both would block.
fn try_io(stream: &TcpStream, pending: Option<&[u8]>, read: bool) -> Option<Event> {
    if let Some(pending) = pending {
        match stream.try_write(pending) {
            Ok(n) => return Some(Event::Wrote(n)),
            Err(e) if is_transient(&e) => {}
            Err(e) => return Some(Event::Failed(e.kind())),
        }
    }
    if read {
        let result = SCRATCH.with(|scratch| stream.try_read(&mut scratch.borrow_mut()));
        match result {
            Ok(0) => return Some(Event::Eof),
            Ok(n) => return Some(Event::Read(n)),
            Err(e) if is_transient(&e) => {}
            Err(e) => return Some(Event::Failed(e.kind())),
        }
    }
    None
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Lets go of the socket the way the machine decided. When the kernel refuses
/// a silent close (no `CAP_NET_ADMIN`), the machine hears of it
/// ([`Event::RepairRefused`]) and decides again; returns the final decision.
fn release(stream: TcpStream, finish: Finish, machine: &mut Machine) -> Finish {
    if finish.release == Release::Close {
        drop(stream);
        return finish;
    }
    let mut stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(e) => {
            // Only fails if the reactor is gone; dropping still closes the fd.
            tracing::warn!(error = %e, "could not take the socket from the runtime; closing it");
            return finish;
        }
    };
    let mut finish = finish;
    // At most two rounds: the machine answers a refused silent close with a reset.
    for _ in 0..2 {
        match finish.release {
            Release::Silent => match sys::close_silently(stream) {
                Ok(()) => return finish,
                Err(refused) => {
                    tracing::warn!(
                        error = %refused.error,
                        "silent close needs CAP_NET_ADMIN (TCP_REPAIR); resetting instead"
                    );
                    stream = refused.stream;
                    machine.on_event(Instant::now(), Event::RepairRefused);
                    match machine.step(Instant::now()) {
                        Step::Finish(next) => finish = next,
                        other => unreachable!("a finished machine only finishes, got {other:?}"),
                    }
                }
            },
            Release::Reset => {
                reset(stream);
                return finish;
            }
            Release::Close => {
                drop(stream);
                return finish;
            }
        }
    }
    // Not reached: the machine answers a refused silent close with a reset.
    reset(stream);
    finish
}

fn reset(stream: std::net::TcpStream) {
    if let Err(e) = sys::abort(stream) {
        tracing::warn!(error = %e, "SO_LINGER 0 failed; the socket was closed without a reset");
    }
}
