//! The farewell lab, load generator and bench engine, and the support every
//! test of the workspace shares. **Not published**: nothing here is under
//! semver, and the library crates a user adds (`farewell`,
//! `farewell-server`, `farewell-http`) do not depend on it.
//!
//! What the core's tests share with the lab lives in `farewell-testkit`
//! (so that they need not build hyper and rustls) and is re-exported here:
//! one connection of the lab, its peers and namespaces (in [`lab`]), and the
//! support that needs no HTTP or TLS (in [`support`]).
//!
//! * [`lab`] — `farewell lab`: every policy against every peer behaviour,
//!   judged by the kernel's socket table and by what the peers received;
//! * [`load`] — `farewell load`: client populations against any FLP/1 server;
//! * [`bench`](mod@bench) — `farewell bench`: what peer-first costs, side by side;
//! * [`support`] — the peer scripts both the lab and the load generator play,
//!   client source addresses (127.1.x.y), the kernel's settings, quiet ports,
//!   the HTTP demo handler and plain-hyper baseline, the FLP/1 fixture
//!   server, the namespace test harness, and the check for external tools a
//!   test needs.
//!
//! Linux only: the lab's namespaces, the census and the bench's CPU readings
//! need it.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod bench;
pub mod lab;
pub mod load;
pub mod support;
mod sys;
