//! The async driver: runs a [`Policy`] on a tokio `TcpStream` and reports the [`Outcome`].

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::os::fd::AsFd;
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf, ReuniteError};
use tokio::net::TcpStream;

use crate::outcome::{Outcome, PeerFinChoice};
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
    teardown(stream, policy, goodbye.into(), Report::Full, NoHurry, ())
}

/// Sees every byte a teardown reads and throws away, and adds what it made of
/// them to the [`Outcome`]: the hook through which the TLS layer
/// ([`crate::tls`]) decrypts the drained bytes to notice the peer's
/// `close_notify`. `()` sees nothing and costs nothing.
pub(crate) trait Drain: Send + 'static {
    /// `bytes` were just read from the socket (and will be discarded).
    fn drained(&mut self, bytes: &[u8]);

    /// The teardown is over; `outcome` is its report.
    fn finish(self, outcome: &mut Outcome);
}

impl Drain for () {
    #[inline]
    fn drained(&mut self, _: &[u8]) {}

    #[inline]
    fn finish(self, _: &mut Outcome) {}
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

    /// Records one ending from `peer` in the closer's table of recent endings
    /// ([`PeerTimeWait::Auto`](crate::PeerTimeWait::Auto)) and says whether
    /// that makes it a heavy client. Without a closer nothing counts: every
    /// peer is light.
    fn classify(&self, _peer: Option<std::net::IpAddr>, _now: Instant) -> PeerFinChoice {
        PeerFinChoice::Light { recent: 0 }
    }
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

/// How much of its [`Outcome`] a teardown fills in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Report {
    /// Someone reads the outcome (a hook, the reaper, a debug log, the
    /// caller of [`close`]): ask the kernel for the addresses (two syscalls)
    /// and for its last word on the socket before releasing it (`TCP_INFO`,
    /// and `SIOCOUTQ` unless `TCP_INFO` already tells).
    Full,
    /// Only [`Outcome::ending`] is counted (a [`Closer`](crate::Closer)
    /// without a hook): skip those calls. The ending and the release are the
    /// same either way; the rest of the outcome is left as if the kernel
    /// could not be asked.
    EndingOnly,
}

/// [`close`], with the choice of what to report.
pub(crate) fn teardown<H: Urgency, D: Drain>(
    stream: TcpStream,
    policy: Policy,
    goodbye: Bytes,
    report: Report,
    hurry: H,
    drain: D,
) -> impl Future<Output = Outcome> + Send + 'static {
    drive(
        Teardown::new(stream, None, policy, goodbye, report, drain),
        hurry,
        LeaveOpen,
    )
}

/// What becomes of a teardown whose future is dropped before it finished
/// (its task aborted, its runtime shut down, a [`Closing`](crate::Closing)
/// dropped).
pub(crate) trait Unfinished: Send + 'static {
    /// `t` was dropped at its last wait.
    fn dropped<D: Drain>(&mut self, t: Teardown<D>);
}

/// [`close`]'s choice: the stream is dropped as it is, so the kernel closes
/// it plainly. The caller dropped the future, and with it the outcome.
pub(crate) struct LeaveOpen;

impl Unfinished for LeaveOpen {
    fn dropped<D: Drain>(&mut self, t: Teardown<D>) {
        drop(t);
    }
}

/// Holds a teardown while its future runs (`None` once it concluded), and
/// hands it to `U` if the future is dropped first.
struct Held<D: Drain, U: Unfinished> {
    t: Option<Teardown<D>>,
    unfinished: U,
}

impl<D: Drain, U: Unfinished> Held<D, U> {
    fn get(&mut self) -> &mut Teardown<D> {
        self.t.as_mut().expect("held until the end")
    }
}

impl<D: Drain, U: Unfinished> Drop for Held<D, U> {
    fn drop(&mut self) {
        if let Some(t) = self.t.take() {
            self.unfinished.dropped(t);
        }
    }
}

/// A wait the machine asked for, after one non-blocking look found nothing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wait {
    write: bool,
    read: bool,
    until: Instant,
}

/// Both ends of a connection, as far as the kernel told.
struct Addrs {
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
}

/// What a teardown holds while it waits.
pub(crate) struct Teardown<D> {
    stream: TcpStream,
    goodbye: Bytes,
    /// The decisions; also keeps when the teardown started.
    machine: Machine,
    /// Our address and the peer's, asked for at the start when the outcome
    /// is reported in full (a reset peer's address cannot be had later).
    /// Boxed: 8 bytes in every pending teardown rather than 64.
    addrs: Option<Box<Addrs>>,
    /// The peer's address, as the caller gave it ([`Handoff`](crate::Handoff))
    /// or as the full report asked it at the start: the heavy-client count
    /// then needs no `getpeername` of its own.
    peer: Option<IpAddr>,
    report: Report,
    /// [`Teardown::advance`] stopped at a wait whose non-blocking attempt
    /// found nothing: the next run need not try again before waiting.
    blocked: bool,
    /// No run yet: the first one takes the start's clock reading instead of
    /// its own. It usually runs right after [`Teardown::new`]; when a task
    /// runs it, the reading is a scheduling round old, which only makes
    /// every deadline (all counted from the start) look further away.
    fresh: bool,
    drain: D,
}

impl<D: Drain> Teardown<D> {
    /// Sets a teardown up, outside any future: the caller may run it inline
    /// ([`Teardown::advance`]) before it needs a task. (An async fn would also
    /// hold a second copy of each argument for its whole life,
    /// rust-lang/rust#62958, and a pending teardown should be small.)
    pub(crate) fn new(
        stream: TcpStream,
        peer: Option<SocketAddr>,
        policy: Policy,
        goodbye: Bytes,
        report: Report,
        drain: D,
    ) -> Self {
        let started = Instant::now();
        let machine = Machine::new(policy, goodbye.len(), started);
        let (peer, addrs) = match report {
            Report::Full => {
                let peer = peer.or_else(|| stream.peer_addr().ok());
                let local = stream.local_addr().ok();
                (peer, Some(Box::new(Addrs { local, peer })))
            }
            Report::EndingOnly => (peer, None),
        };
        Teardown {
            stream,
            goodbye,
            machine,
            peer: peer.map(|peer| peer.ip()),
            addrs,
            report,
            blocked: false,
            fresh: true,
            drain,
        }
    }

    /// The caller read the peer's FIN before the hand-over
    /// ([`Handoff::peer_fin_read`](crate::Handoff::peer_fin_read)): the
    /// machine knows it from the start, and nothing is left to read.
    pub(crate) fn peer_fin_read(&mut self) {
        self.machine.on_event(self.machine.started(), Event::Eof);
    }

    /// Runs every step that needs no waiting: probes, the half-close, and
    /// writes and reads that do not block. Returns the machine's decision, or
    /// the wait it asked for once a non-blocking attempt found nothing to do.
    /// `hurry` is where the closer's hurry shows.
    ///
    /// Needs no runtime context and never blocks, so a teardown whose peer's
    /// FIN is already queued ends here, without a task or a timer.
    pub(crate) fn advance(&mut self, hurry: &impl Urgency) -> Result<Finish, Wait> {
        // Right after a run that stopped at a wait, nothing has happened on
        // the socket that the readiness poll would not tell: a wait asked for
        // again at once needs no second attempt (a syscall).
        let mut blocked = std::mem::take(&mut self.blocked);
        // One clock reading per run, a few non-blocking calls microseconds
        // apart (the machine's deadlines are milliseconds at the least),
        // read again after each read that found bytes: a flood may keep the
        // loop reading, and its deadlines must still come.
        let mut now = if std::mem::take(&mut self.fresh) {
            self.machine.started()
        } else {
            Instant::now()
        };
        loop {
            if !self.machine.hurried() && hurry.is_hurried() {
                self.machine.on_event(now, Event::Hurry);
            }
            let step = self.machine.step(now);
            if let Step::Wait { write, read, until } = step {
                if std::mem::take(&mut blocked) {
                    return Err(Wait { write, read, until });
                }
            } else {
                blocked = false;
            }
            match step {
                Step::Finish(finish) => return Ok(finish),
                Step::CheckState => match sys::tcp_info_and_unacked(&self.stream) {
                    Ok((info, unacked)) => {
                        self.machine.on_event(now, Event::StateIs(info));
                        if unacked == Some(0) {
                            self.machine.on_event(now, Event::NothingInFlight);
                        }
                    }
                    Err(_) => self.machine.on_event(now, Event::ProbeFailed),
                },
                Step::CheckUnacked => {
                    let event = sys::unacked_bytes(&self.stream)
                        .map_or(Event::ProbeFailed, Event::UnackedAtStart);
                    self.machine.on_event(now, event);
                }
                Step::Probe => {
                    let probed = if self.machine.saw_eof() {
                        // After the peer's FIN was read nothing is left unread: spare the ioctl.
                        probe_after_eof(&self.stream)
                    } else {
                        probe(&self.stream)
                    };
                    let event = probed.map_or(Event::ProbeFailed, Event::Probed);
                    self.machine.on_event(now, event);
                }
                Step::Classify => {
                    let peer = self
                        .peer
                        .or_else(|| self.stream.peer_addr().ok().map(|peer| peer.ip()));
                    let choice = hurry.classify(peer, now);
                    self.machine.on_event(now, Event::Classified(choice));
                }
                Step::ShutdownWrite => {
                    let before = sys::tcp_state(&self.stream).ok();
                    let event = match socket2::SockRef::from(&self.stream).shutdown(Shutdown::Write)
                    {
                        Ok(()) => Event::HalfClosed(before),
                        Err(e) => Event::Failed(e.kind()),
                    };
                    self.machine.on_event(now, event);
                }
                Step::TryWrite => {
                    let pending = &self.goodbye[self.machine.written()..];
                    let event = try_io(&self.stream, Some(pending), false, &mut self.drain)
                        .unwrap_or(Event::Timer);
                    self.machine.on_event(now, event);
                }
                Step::Wait { write, read, until } => {
                    let pending = &self.goodbye[self.machine.written()..];
                    match try_io(
                        &self.stream,
                        write.then_some(pending),
                        read,
                        &mut self.drain,
                    ) {
                        Some(event) => {
                            let more = matches!(event, Event::Read(_));
                            self.machine.on_event(now, event);
                            if more {
                                now = Instant::now();
                            }
                        }
                        None => {
                            self.blocked = true;
                            return Err(Wait { write, read, until });
                        }
                    }
                }
            }
        }
    }

    /// Ends the teardown now, the way [`Closer::hurry`](crate::Closer::hurry)
    /// ends one: closes passively if the peer's FIN is in, otherwise one
    /// non-blocking write of what is left of the goodbye, one probe, and a
    /// reset. Never waits.
    pub(crate) fn cut(mut self) -> Outcome {
        self.machine.on_event(Instant::now(), Event::Hurry);
        self.blocked = false;
        // A hurried machine never waits (one write attempt, one probe, the
        // end); should it ever ask to, it is reset as a hurry would.
        let finish = self.advance(&NoHurry).unwrap_or_else(|_| {
            debug_assert!(false, "a hurried teardown asked to wait");
            Finish {
                release: Release::Reset,
                ending: crate::Ending::ResetAtDeadline,
            }
        });
        self.conclude(finish)
    }

    /// Releases the socket as `finish` says and writes the report.
    pub(crate) fn conclude(mut self, finish: Finish) -> Outcome {
        let last = match self.report {
            Report::EndingOnly => None,
            Report::Full => {
                let last = if self.machine.saw_eof() {
                    // After the peer's FIN was read nothing can be left unread: spare the ioctl.
                    probe_after_eof(&self.stream).ok()
                } else {
                    probe(&self.stream).ok()
                };
                if last.is_some_and(|p| p.state() == TcpState::Closed) {
                    // CLOSED after our FIN: either the peer's FIN came (TIME-WAIT is ours)
                    // or a reset did. One read tells which.
                    if let Some(event @ Event::Eof) =
                        try_io(&self.stream, None, true, &mut self.drain)
                    {
                        self.machine.on_event(Instant::now(), event);
                    }
                }
                last
            }
        };
        let finish = release(self.stream, finish, &mut self.machine);
        let mut outcome = self
            .machine
            .outcome(finish, last, self.machine.started().elapsed());
        if let Some(addrs) = self.addrs {
            outcome.local = addrs.local;
            outcome.peer = addrs.peer;
        }
        self.drain.finish(&mut outcome);
        tracing::debug!(%outcome, "teardown finished");
        outcome
    }
}

// A plain fn returning an `async move` block: the block keeps `t` in place,
// where an `async fn` would copy its argument into a second slot.
//
// `t` may have been run inline first ([`Teardown::advance`]); it goes on from
// where that stopped. If the future is dropped before it finished,
// `unfinished` gets the teardown.
#[allow(clippy::manual_async_fn)] // deliberate: see the comment above
pub(crate) fn drive<H: Urgency, D: Drain, U: Unfinished>(
    t: Teardown<D>,
    hurry: H,
    unfinished: U,
) -> impl Future<Output = Outcome> + Send + 'static {
    // Made outside the block, so the block keeps it in place (a local made
    // inside would be a second copy of the teardown).
    let mut held = Held {
        t: Some(t),
        unfinished,
    };
    async move {
        // One timer for the whole teardown, re-armed per wait, and readiness polled
        // straight on the stream (no per-wait readiness futures): a pending
        // teardown stays small (see `Closer`'s memory note).
        // The hurry's waiter is created before the next look at the flag, so no
        // hurry is missed. One pinned pair, so each wait captures one pointer.
        let deadlines = Deadlines {
            timer: tokio::time::sleep_until(held.get().machine.started().into()),
            hurry: hurry.wait(),
        };
        tokio::pin!(deadlines);
        let finish = loop {
            // (A hurry between an inline run and the waiter above is seen here.)
            // The teardown is borrowed anew on each side of the wait, so the
            // future keeps no second pointer to it.
            let (Wait { write, read, until }, stream) = {
                let t = held.get();
                match t.advance(&hurry) {
                    Ok(finish) => break finish,
                    Err(wait) => (wait, &t.stream),
                }
            };
            deadlines.as_mut().project().timer.reset(until.into());
            // A `move` closure: the flags by value and two pointers, the
            // smallest thing a pending teardown can hold while it waits.
            let mut waiting = deadlines.as_mut();
            let event = std::future::poll_fn(move |cx| {
                // Read, then write, then the hurry and the timer: an EOF or
                // the last byte of a flood wins over a deadline that passed meanwhile.
                if read {
                    if let Poll::Ready(ready) = stream.poll_read_ready(cx) {
                        return Poll::Ready(ready.err().map(|e| Event::Failed(e.kind())));
                    }
                }
                if write {
                    if let Poll::Ready(ready) = stream.poll_write_ready(cx) {
                        return Poll::Ready(ready.err().map(|e| Event::Failed(e.kind())));
                    }
                }
                waiting.as_mut().poll_next(cx).map(Some)
            })
            .await;
            let t = held.get();
            // Something happened: the next wait is worth a fresh attempt.
            t.blocked = false;
            if let Some(event) = event {
                t.machine.on_event(Instant::now(), event);
            }
        };
        held.t.take().expect("held until the end").conclude(finish)
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
        unread: sys::unread_bytes(stream)?,
        ..probe_after_eof(stream)?
    })
}

/// As [`probe`], for a socket whose receive queue is known to be empty.
/// `SIOCOUTQ` only when `TCP_INFO` does not already tell (a segment in flight).
fn probe_after_eof(stream: &TcpStream) -> io::Result<Probe> {
    let (info, unacked) = sys::tcp_info_and_unacked(stream)?;
    Ok(Probe {
        info,
        unacked: match unacked {
            Some(unacked) => unacked,
            None => sys::unacked_bytes(stream)?,
        },
        unread: 0,
    })
}

/// One non-blocking attempt to write what is left of the goodbye and to read;
/// returns the first thing that happened, or `None` if both would block.
fn try_io(
    stream: &TcpStream,
    pending: Option<&[u8]>,
    read: bool,
    drain: &mut impl Drain,
) -> Option<Event> {
    if let Some(pending) = pending {
        match stream.try_write(pending) {
            Ok(n) => return Some(Event::Wrote(n)),
            Err(e) if is_transient(&e) => {}
            Err(e) => return Some(Event::Failed(e.kind())),
        }
    }
    if read {
        let result = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let n = stream.try_read(&mut scratch)?;
            drain.drained(&scratch[..n]);
            Ok::<_, io::Error>(n)
        });
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
    match finish.release {
        Release::Close => {
            drop(stream);
            return finish;
        }
        Release::Reset => {
            reset(stream);
            return finish;
        }
        Release::FinResetOnAck => {
            fin_then_kernel_reset(stream);
            return finish;
        }
        Release::Silent => {}
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
            Release::FinResetOnAck => {
                if sys::close_reset_on_fin_ack(stream).is_err() {
                    tracing::warn!("TCP_LINGER2 refused; closed with our FIN");
                }
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

/// Closes `stream` with our FIN, answered by the kernel with an RST once it
/// is ACKed (`TCP_LINGER2` = -1, [`sys::close_reset_on_fin_ack`]). Input that
/// came since the last read is read and discarded first (a bounded amount),
/// or `close()` would send an RST at once ([F4](crate::facts#f4)). Should the
/// kernel refuse the option, it resets instead: a FIN without it could leave
/// TIME-WAIT here.
fn fin_then_kernel_reset(stream: TcpStream) {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        for _ in 0..4 {
            match stream.try_read(&mut scratch) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    });
    if let Err(e) = sys::set_reset_on_fin_ack(&stream) {
        tracing::warn!(error = %e, "TCP_LINGER2 refused; resetting instead of our FIN");
        return reset(stream);
    }
    drop(stream);
}

/// Closes `stream` (the runtime's or a std one) with a reset
/// ([`sys::abort`]'s way), which needs no reactor: a teardown cut while its
/// runtime shuts down still resets.
fn reset(stream: impl AsFd) {
    if let Err(e) = sys::close_with_reset(stream) {
        tracing::warn!(error = %e, "SO_LINGER 0 failed; the socket was closed without a reset");
    }
}
