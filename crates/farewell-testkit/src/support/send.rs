//! A server's write that fills its send buffer, for the tests that hand a
//! stream over with bytes of it still in flight.

use tokio::net::TcpStream;

/// Writes as much of `bytes` as `stream`'s send buffer takes now, without
/// waiting, and returns how much that was.
///
/// # Panics
///
/// On a write error other than "would block".
pub fn write_what_fits(stream: &TcpStream, bytes: &[u8]) -> usize {
    let mut written = 0;
    while written < bytes.len() {
        match stream.try_write(&bytes[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    written
}
