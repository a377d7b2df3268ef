//! The integration tests of the lab crate, one binary.

mod load;
