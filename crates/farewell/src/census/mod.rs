//! Kernel socket census (sock_diag).
