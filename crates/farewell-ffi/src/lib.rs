//! libfarewell: farewell's C ABI, so a libuv (or any C/C++) server ends its
//! connections with no server TIME-WAIT and no lost goodbye.
//!
//! The header, `include/farewell.h`, is generated from this crate by cbindgen
//! (the `header` test checks the committed copy is current). In short:
//!
//! ```c
//! fw_closer *closer;
//! fw_closer_new(NULL, &closer);                       // peer-first, own thread
//! fw_close(closer, fd, "BYE idle\n", 9);              // returns at once; fd is the library's
//! fw_closer_free(closer, 5000);                       // at exit: 5 s, then hurry
//! ```
//!
//! Every entry point catches panics (`FW_ERR_PANIC`), checks its pointers
//! (`FW_ERR_NULL`) and returns a status code that [`fw_strerror`] describes.
//!
//! # Thread safety
//!
//! A closer may be used from any number of threads at once (`fw_close`,
//! `fw_closer_stats`, `fw_closer_ending_count`), except `fw_closer_free`,
//! which must be the last call. Options are not shared while being set.
//! Outcome callbacks run on the library's threads.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod closer;
mod error;
mod names;
mod options;
mod outcome;
mod sys;

pub use closer::{
    fw_close, fw_closer, fw_closer_ending_count, fw_closer_free, fw_closer_new, fw_closer_stats,
    FW_GOODBYE_MAX,
};
pub use error::*;
pub use names::*;
pub use options::*;
pub use outcome::{fw_outcome, fw_stats, FW_ADDR_LEN};

use std::ffi::c_char;

/// The library's version, e.g. `"0.1.0"` (static, NUL-terminated).
#[no_mangle]
pub extern "C" fn fw_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
