//! TLS for both listeners (rustls, aws-lc-rs provider): loading the
//! configured certificate chain and key, and an [`axum::serve::Listener`]
//! that terminates TLS for the HTTP API. The gRPC listener uses the same
//! files through tonic's own rustls acceptor.

use crate::config::TlsConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the configured certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.{key}: reading {path}: {source}")]
    Read { key: &'static str, path: PathBuf, source: std::io::Error },
    #[error("tls.cert_file: {path} holds no PEM certificate ({reason})")]
    NoCertificate { path: PathBuf, reason: String },
    #[error("tls.key_file: {path} holds no PEM private key ({reason})")]
    NoKey { path: PathBuf, reason: String },
    #[error("tls: the certificate in {cert} and the key in {key} cannot be used together: {reason}")]
    Mismatch { cert: PathBuf, key: PathBuf, reason: String },
}

/// The loaded certificate chain and key, checked to belong together.
#[derive(Clone)]
pub struct TlsMaterial {
    /// PEM text of the chain and key, as tonic's `Identity` takes them.
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    /// The HTTP listener's rustls configuration (ALPN `http/1.1`); building
    /// it is what checks that the key is the certificate's.
    http: Arc<ServerConfig>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").field("handshake_timeout", &self.handshake_timeout).finish_non_exhaustive()
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { key, path: path.into(), source })
}

impl TlsMaterial {
    /// Reads and checks the configured files.
    pub fn load(config: &TlsConfig) -> Result<TlsMaterial, TlsError> {
        let cert_pem = read("cert_file", &config.cert_file)?;
        let key_pem = read("key_file", &config.key_file)?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::NoCertificate { path: config.cert_file.clone(), reason: e.to_string() })?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                path: config.cert_file.clone(),
                reason: "no BEGIN CERTIFICATE block".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| TlsError::NoKey { path: config.key_file.clone(), reason: e.to_string() })?;
        let mut http = ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).map_err(|e| {
            TlsError::Mismatch { cert: config.cert_file.clone(), key: config.key_file.clone(), reason: e.to_string() }
        })?;
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsMaterial {
            cert_pem,
            key_pem,
            http: Arc::new(http),
            handshake_timeout: Duration::from_millis(config.handshake_timeout_ms),
        })
    }

    /// The tonic server TLS configuration for the gRPC listener.
    pub fn grpc(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem))
            .timeout(self.handshake_timeout)
    }

    /// Wraps the HTTP listener so every connection is TLS (HTTP/1.1 by ALPN).
    /// The HTTP listener's acceptor and how long a handshake may take (the
    /// server runs each handshake in its connection's own task).
    pub fn http_acceptor(&self) -> (TlsAcceptor, Duration) {
        (TlsAcceptor::from(self.http.clone()), self.handshake_timeout)
    }
}
