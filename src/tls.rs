//! TLS termination: a rustls server configuration from PEM files (`server.tls_cert`,
//! `server.tls_key`).
//!
//! The provider is named explicitly (aws-lc-rs, the one rustls provider in the tree), so
//! the configuration never depends on a process-wide default being installed. Protocol
//! versions are rustls's safe defaults (TLS 1.2 and 1.3); no client certificates. actix adds
//! the ALPN protocol (`http/1.1` only: HTTP/2 is not built in, because deployed clients look
//! response headers up by their exact case, which HTTP/2 lower-cases).

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// The server configuration for the certificate chain at `cert` (PEM, leaf first) and the
/// private key at `key` (PEM: PKCS#8, PKCS#1 or SEC1).
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::internal(format!("server.tls_cert {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(Error::internal(format!("server.tls_cert {}: no certificate", cert.display())));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::internal(format!("server.tls_key {}: {e}", key.display())))?;
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| Error::internal(format!("server.tls_cert / server.tls_key: {e}")))
}
