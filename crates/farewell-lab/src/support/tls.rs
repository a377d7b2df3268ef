//! TLS material for the tests, the bench and `farewell serve-http`: a
//! self-signed certificate made on the spot (rcgen), PEM files for clients
//! (`curl --cacert`, nginx), and rustls server configurations with the ring
//! provider (the one farewell builds; no aws-lc).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use farewell_http::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A self-signed certificate and its key, made at start.
pub struct SelfSigned {
    /// The certificate, DER.
    pub cert: CertificateDer<'static>,
    /// The certificate, PEM (what `curl --cacert` and nginx read).
    pub cert_pem: String,
    /// The private key (PKCS #8), PEM.
    pub key_pem: String,
}

impl SelfSigned {
    /// A new certificate for `localhost`, `127.0.0.1` and `::1`.
    pub fn localhost() -> SelfSigned {
        let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
        let made = rcgen::generate_simple_self_signed(names)
            .expect("rcgen makes a certificate for fixed, valid names");
        SelfSigned {
            cert: made.cert.der().clone(),
            cert_pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
        }
    }

    /// The certificate's SHA-256 fingerprint, as `openssl x509 -fingerprint
    /// -sha256` prints it (`AB:CD:...`).
    pub fn fingerprint_sha256(&self) -> String {
        fingerprint_sha256(&self.cert)
    }

    /// A rustls server configuration serving this certificate (ALPN left
    /// empty: farewell-http offers h2 and http/1.1).
    pub fn server_config(&self) -> rustls::ServerConfig {
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .expect("rcgen's key is valid PEM");
        server_config(vec![self.cert.clone()], key).expect("rcgen's key matches its certificate")
    }

    /// Writes `cert.pem` and `key.pem` into `dir`; returns their paths.
    ///
    /// # Errors
    ///
    /// When `dir` cannot be written.
    pub fn write_pem(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, &self.cert_pem)
            .with_context(|| format!("cannot write {}", cert.display()))?;
        std::fs::write(&key, &self.key_pem)
            .with_context(|| format!("cannot write {}", key.display()))?;
        Ok((cert, key))
    }
}

/// The SHA-256 fingerprint of a DER certificate, `AB:CD:...`.
pub fn fingerprint_sha256(cert: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3) for a
/// certificate chain and its key.
///
/// # Errors
///
/// When the key does not fit the certificate, or is of a kind ring cannot use.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<rustls::ServerConfig> {
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the key does not fit the certificate")
}

/// A rustls server configuration from PEM files: a certificate chain (leaf
/// first) and a private key (PKCS #8, PKCS #1 or SEC1).
///
/// # Errors
///
/// When a file cannot be read, holds no certificate or key, or the key does
/// not fit the certificate.
pub fn load_pem(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
        cert.display()
    );
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{} holds no PEM private key", key.display()))?;
    server_config(chain, key_der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_round_trips_through_pem_files() {
        let made = SelfSigned::localhost();
        let dir = std::env::temp_dir().join(format!("farewell-tls-test-{}", std::process::id()));
        let (cert, key) = made.write_pem(&dir).unwrap();
        load_pem(&cert, &key).unwrap();
        assert_eq!(made.fingerprint_sha256().len(), 32 * 3 - 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn load_pem_says_which_file_is_wrong() {
        let dir = std::env::temp_dir().join(format!("farewell-tls-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "not pem").unwrap();
        let err = load_pem(&bad, &bad).unwrap_err();
        assert!(format!("{err:#}").contains("bad.pem"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
