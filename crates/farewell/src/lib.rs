//! farewell: end TCP connections the right way.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub mod census;
pub mod sys;
mod tcp_state;

pub use tcp_state::TcpState;
