//! farewell: end TCP connections the right way.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub mod census;
mod closer;
pub mod lab;
pub mod outcome;
pub mod policy;
pub mod sys;
mod tcp_state;
mod teardown;

pub use closer::{Closer, CloserBuilder, CloserStats};
pub use outcome::{Delivery, Outcome, Path, TimeWait};
pub use policy::{FinThenReset, Lingering, PeerFirst, Plain, Policy};
pub use tcp_state::TcpState;
pub use teardown::{close, close_split};
