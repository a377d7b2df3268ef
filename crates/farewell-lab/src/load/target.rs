//! Where load may go: loopback only.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use super::LoadError;

/// True for 127.0.0.0/8, `::1`, and IPv4-mapped loopback (`::ffff:127.x.y.z`).
///
/// # Examples
///
/// ```
/// use farewell_lab::load::is_loopback;
///
/// assert!(is_loopback("127.3.2.1".parse().unwrap()));
/// assert!(is_loopback("::1".parse().unwrap()));
/// assert!(!is_loopback("192.0.2.1".parse().unwrap()));
/// ```
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Resolves `HOST:PORT` (a name, an IPv4 address, or `[v6]:port`) and checks
/// that **every** address it resolves to is loopback; returns them.
///
/// This is the whole rule `farewell load` follows: it creates no network
/// namespaces, so a target must be on this machine's loopback. Nothing is
/// sent anywhere before this check passes (resolving a name may ask the
/// system resolver).
///
/// # Errors
///
/// [`LoadError::Target`] when the text is not `HOST:PORT`, the name does not
/// resolve, or any address is outside 127.0.0.0/8 and `::1`.
///
/// This call blocks while the system resolver works; from async code use
/// [`tokio::task::spawn_blocking`].
///
/// # Examples
///
/// ```
/// use farewell_lab::load::resolve_loopback;
///
/// assert_eq!(resolve_loopback("127.0.0.1:7878")?[0].port(), 7878);
/// assert!(resolve_loopback("192.0.2.1:7878").is_err());
/// # Ok::<(), farewell_lab::load::LoadError>(())
/// ```
pub fn resolve_loopback(target: &str) -> Result<Vec<SocketAddr>, LoadError> {
    let refuse = |why: String| LoadError::Target {
        target: target.to_owned(),
        why,
    };
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return if is_loopback(addr.ip()) {
            Ok(vec![addr])
        } else {
            Err(refuse(format!("{} is not a loopback address", addr.ip())))
        };
    }
    let Some((host, port)) = target.rsplit_once(':') else {
        return Err(refuse("write it as HOST:PORT, e.g. 127.0.0.1:7878".into()));
    };
    if port.parse::<u16>().is_err() {
        return Err(refuse(format!("{port:?} is not a port number")));
    }
    if host.is_empty() {
        return Err(refuse("the host is missing; e.g. 127.0.0.1:7878".into()));
    }
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|e| refuse(format!("cannot resolve {host}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(refuse(format!("{host} resolves to no address")));
    }
    if let Some(outside) = addrs.iter().find(|a| !is_loopback(a.ip())) {
        return Err(refuse(format!(
            "{host} resolves to {}, which is not loopback",
            outside.ip()
        )));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_ranges() {
        for ok in ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ok.parse().unwrap()), "{ok}");
        }
        for no in [
            "128.0.0.1",
            "10.0.0.1",
            "0.0.0.0",
            "::",
            "::ffff:10.0.0.1",
            "fe80::1",
        ] {
            assert!(!is_loopback(no.parse().unwrap()), "{no}");
        }
    }

    #[test]
    fn addresses_and_names() {
        assert_eq!(
            resolve_loopback("[::1]:80").unwrap(),
            ["[::1]:80".parse().unwrap()]
        );
        assert!(resolve_loopback("localhost:80")
            .unwrap()
            .iter()
            .all(|a| is_loopback(a.ip())));
        let err = |t: &str| resolve_loopback(t).unwrap_err().to_string();
        assert!(err("192.0.2.1:7878").contains("192.0.2.1 is not a loopback address"));
        assert!(err("[2001:db8::1]:80").contains("not a loopback address"));
        assert!(err("127.0.0.1").contains("HOST:PORT"));
        assert!(err("127.0.0.1:http").contains("not a port number"));
        assert!(err(":80").contains("host is missing"));
    }
}
