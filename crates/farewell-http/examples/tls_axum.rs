//! An axum app over TLS with farewell-http: certificate and key from PEM
//! files, peer-first teardown, graceful shutdown on Ctrl-C.
//!
//! ```sh
//! # a certificate for localhost, for trying it (openssl, or any CA's files):
//! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
//!     -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
//!     -keyout target/key.pem -out target/cert.pem
//! cargo run -p farewell-http --features rustls --example tls_axum -- \
//!     target/cert.pem target/key.pem 127.0.0.1:8443
//! curl --cacert target/cert.pem https://localhost:8443/
//! ```
//!
//! Each connection ends inside TLS: the last response, then `close_notify`
//! with no FIN, then the policy: the client closes first (a heavy client is
//! reset once everything is ACKed), so the server keeps no TIME-WAIT.

use std::sync::Arc;
use std::time::Duration;

use axum::{routing::get, Router};
use farewell_http::rustls::pki_types::pem::PemObject;
use farewell_http::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use farewell_http::{rustls, Server};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(cert), Some(key)) = (args.next(), args.next()) else {
        return Err("usage: tls_axum CERT.pem KEY.pem [ADDR]".into());
    };
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8443".to_owned());

    // The chain, leaf first, and its key (PKCS #8, PKCS #1 or SEC1).
    let chain = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| format!("cannot read certificates from {cert}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate in {cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| format!("cannot read a key from {key}: {e}"))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;

    let app = Router::new().route("/", get(|| async { "hello over TLS\n" }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening on https://{}", listener.local_addr()?);
    let report = Server::new()
        .tls(Arc::new(config))
        .tls_handshake_timeout(Duration::from_secs(10))
        .max_requests_per_connection(Some(1000))
        .shutdown_timeout(Duration::from_secs(10))
        .serve(listener, app, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    eprintln!("{report}");
    Ok(())
}
