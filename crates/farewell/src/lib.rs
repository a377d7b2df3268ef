//! End TCP connections the right way: the peer gets the last bytes, and the
//! server keeps no TIME-WAIT entry, whatever the peer does.
//!
//! The side that sends the first FIN keeps the connection's TIME-WAIT entry
//! (60 s on Linux). A server that disconnects many clients piles them up; the
//! usual cures either do not work (`shutdown()`, wait for EOF, `close()`: the
//! peer's FIN still lands us in TIME-WAIT) or lose data (`SO_LINGER` 0 throws
//! away whatever was not delivered yet). farewell's default policy,
//! [`Policy::PeerFirst`], does neither:
//!
//! 1. **deliver:** write the protocol's goodbye (`BYE idle\n`), do **not**
//!    send a FIN, and wait until the peer's kernel has ACKed everything
//!    written, for as long as it keeps taking bytes (a slow reader is never
//!    cut; a peer that stops taking bytes is given up after a stall timeout);
//! 2. **grace:** then wait (bounded) for the peer's FIN and close: the *peer*
//!    keeps TIME-WAIT; or, for a heavy client (a proxy, a load generator, a
//!    NAT: more than [`DEFAULT_HEAVY_CLIENT_THRESHOLD`] endings from its
//!    address in the last minute), reset: nobody keeps it
//!    ([`PeerTimeWait`], [F13](facts#f13));
//! 3. **reset** only if the grace passes: nobody keeps TIME-WAIT, and the
//!    goodbye was delivered.
//!
//! Throughout, input is read and discarded (bounded), and a peer's FIN that
//! comes before everything was ACKed (a half-close) ends in the passive close. Every teardown reports an
//! [`Outcome`]: the [`Ending`] it took (which phase ended it), who keeps
//! TIME-WAIT ([`TimeWait`]), whether the goodbye was confirmed delivered
//! ([`Delivery`]), bytes delivered, drained and still unacknowledged at
//! close, and how long each phase took. The kernel facts all this rests on,
//! and how each was verified, are in [`facts`]. The other policies (plain, lingering, fin-then-reset, abort,
//! silent) are here too, for comparison and for the cases they fit; the
//! [`policy`] module has the table of what each puts on the wire.
//!
//! # Example
//!
//! ```
//! use farewell::{Delivery, Ending, Policy, TimeWait};
//! use tokio::io::AsyncReadExt;
//! use tokio::net::{TcpListener, TcpStream};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let listener = TcpListener::bind("127.0.0.1:0").await?;
//! let mut client = TcpStream::connect(listener.local_addr()?).await?;
//! let (server, _) = listener.accept().await?;
//!
//! // A cooperative client: reads the goodbye, then closes.
//! let peer = tokio::spawn(async move {
//!     let mut goodbye = [0u8; 9];
//!     client.read_exact(&mut goodbye).await?;
//!     Ok::<_, std::io::Error>(goodbye)
//! });
//!
//! let outcome = farewell::close(server, Policy::default(), &b"BYE idle\n"[..]).await;
//! assert_eq!(&peer.await.unwrap()?, b"BYE idle\n");
//! assert_eq!(outcome.ending, Ending::PeerClosed);      // the client closed first...
//! assert_eq!(outcome.time_wait, TimeWait::Peer);   // ...so TIME-WAIT is on its side
//! assert_eq!(outcome.goodbye, Delivery::Confirmed);
//! # Ok(())
//! # }
//! ```
//!
//! To hand a connection over and move on, use a [`Closer`]; to see what the
//! kernel itself holds, the [`census`] reads its socket table (sock_diag).
//! For TLS over TCP (tokio-rustls, feature `rustls`), `farewell::tls` sends
//! `close_notify` without a FIN, then runs the policy, and bounds handshakes.
//!
//! # Platform
//!
//! Linux is the platform farewell is verified on (kernel 6.x): the OS layer in
//! [`sys`] and the [`census`] are Linux-only, and on other systems the probes
//! return `Unsupported`, so teardowns run blind on their deadlines. Nothing
//! ever blocks a thread: no non-zero `SO_LINGER`, no blocking waits.
//! `TCP_REPAIR` ([`Policy::Silent`]) and `SOCK_DESTROY` ([`census::destroy`],
//! [`CloserBuilder::reap_time_wait`]) need `CAP_NET_ADMIN`.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub mod accept;
#[cfg(feature = "census")]
pub mod census;
mod closer;
pub mod facts;
pub mod outcome;
pub mod policy;
mod recent;
pub mod sys;
mod tcp_state;
mod teardown;
#[cfg(feature = "rustls")]
pub mod tls;

pub use closer::{Closer, CloserBuilder, CloserStats, Closing, Handoff};
pub use outcome::{Delivery, Ending, Outcome, PeerFinChoice, TimeWait};
pub use policy::{
    FinThenReset, GraceEnd, Lingering, PeerFirst, PeerTimeWait, Plain, Policy,
    DEFAULT_HEAVY_CLIENT_THRESHOLD,
};
pub use tcp_state::TcpState;
pub use teardown::{close, close_split};
