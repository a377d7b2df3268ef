//! `farewell serve-http` over TLS: `--tls-self-signed` (fingerprint and
//! certificate file on stderr) and `--tls-cert`/`--tls-key` (PEM files),
//! with curl as the client and the kernel's socket table as the judge.

use std::io::{BufRead, BufReader};
use std::process::Command;

use crate::http::{serve_http, server_time_wait, terminate, Server};

/// Starts `farewell serve-http` on a quiet port with a 1 s grace, a 3 s
/// drain and `args`; returns the server, its port, and its stderr after the
/// `listening on` line.
fn serve_https(args: &[&str]) -> (Server, u16, BufReader<std::process::ChildStderr>) {
    let all = [&["--grace", "1s", "--drain-timeout", "3s"][..], args].concat();
    let (server, addr, stderr) = serve_http(&all);
    let port = addr.rsplit(':').next().unwrap().parse().unwrap();
    (server, port, stderr)
}

/// curl over HTTPS to localhost:`port` (resolved to 127.0.0.1), trusting `cafile`.
fn curl_https(cafile: &str, port: u16, args: &[&str]) -> Vec<u8> {
    let resolve = format!("localhost:{port}:127.0.0.1");
    let all: Vec<&str> = ["--cacert", cafile, "--resolve", resolve.as_str()]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    crate::http::curl(&all)
}

#[test]
fn serve_http_tls_self_signed_prints_fingerprint_and_a_cacert_file() {
    if !farewell_lab::support::tools::require(
        "serve_http_tls_self_signed_prints_fingerprint_and_a_cacert_file",
        &["curl", "openssl"],
    ) {
        return;
    }
    let (server, port, mut stderr) = serve_https(&["--tls-self-signed"]);
    let mut lines = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        lines.push(line);
    }
    let fingerprint = lines[0]
        .trim()
        .strip_prefix("TLS: self-signed certificate, SHA-256 fingerprint ")
        .unwrap_or_else(|| panic!("{lines:?}"))
        .to_owned();
    let cafile = lines[1]
        .trim()
        .strip_prefix("TLS: certificate for clients in ")
        .unwrap_or_else(|| panic!("{lines:?}"))
        .to_owned();
    // The printed fingerprint is the file's, as openssl computes it.
    let x509 = Command::new("openssl")
        .args(["x509", "-in", &cafile, "-noout", "-fingerprint", "-sha256"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&x509.stdout);
    assert!(
        printed.trim().ends_with(&format!("={fingerprint}")),
        "{printed}"
    );

    let url = format!("https://localhost:{port}/");
    let body = curl_https(
        &cafile,
        port,
        &["--http1.1", "-H", "Connection: close", &url, &url],
    );
    assert_eq!(
        body,
        b"hello from farewell-http\nhello from farewell-http\n"
    );
    let body = curl_https(&cafile, port, &["--http2", &url]);
    assert_eq!(body, b"hello from farewell-http\n");

    let summary = terminate(server, stderr);
    assert!(summary.contains("3 connections, 3 requests"), "{summary}");
    assert!(summary.contains("TLS: 0 handshakes failed"), "{summary}");
    assert_eq!(server_time_wait(port), 0, "{summary}");
    assert!(
        !std::path::Path::new(&cafile).exists(),
        "the certificate file is removed at exit"
    );
}

#[test]
fn serve_http_tls_cert_and_key_files_serve_curl() {
    if !farewell_lab::support::tools::require(
        "serve_http_tls_cert_and_key_files_serve_curl",
        &["curl"],
    ) {
        return;
    }
    let made = farewell_lab::support::tls::SelfSigned::localhost();
    let dir = std::env::temp_dir().join(format!("farewell-cli-tls-{}", std::process::id()));
    let (cert, key) = made.write_pem(&dir).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let (server, port, stderr) = serve_https(&["--tls-cert", cert, "--tls-key", key]);
    let url = format!("https://localhost:{port}/bytes/100000");
    let body = curl_https(cert, port, &["-H", "Connection: close", &url]);
    assert_eq!(body.len(), 100_000);
    let summary = terminate(server, stderr);
    assert!(summary.contains("peer-closed 1"), "{summary}");
    assert_eq!(server_time_wait(port), 0, "{summary}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serve_http_tls_refuses_a_key_that_is_not_pem() {
    let dir = std::env::temp_dir().join(format!("farewell-cli-tls-bad-{}", std::process::id()));
    let made = farewell_lab::support::tls::SelfSigned::localhost();
    let (cert, _) = made.write_pem(&dir).unwrap();
    let bad = dir.join("bad.pem");
    std::fs::write(&bad, "not a key").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(["serve-http", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("farewell: cannot use --tls-cert/--tls-key"),
        "{err}"
    );
    assert!(err.contains("bad.pem"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serve_http_tls_key_without_cert_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(["serve-http", "--tls-key", "key.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-cert"), "{err}");
}
