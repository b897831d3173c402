//! HTTPS: a rustls server configuration from PEM files, on the aws-lc-rs provider the rest of
//! atrest already uses. SSE-C keys and `aws:SecureTransport` depend on knowing which
//! connections are encrypted, so the accept loop records that per connection.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A ready TLS configuration for [`crate::serve`].
#[derive(Clone)]
pub struct TlsConfig(pub(crate) Arc<rustls::ServerConfig>);

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig")
    }
}

impl TlsConfig {
    /// Loads a certificate chain and its private key (PKCS#8, PKCS#1 or SEC1), both PEM.
    /// HTTP/1.1 only, as the rest of the front serves.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, String> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|error| format!("reading TLS certificate {}: {error}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("no certificate in {}", cert.display()));
        }
        let private_key = PrivateKeyDer::from_pem_file(key)
            .map_err(|error| format!("reading TLS key {}: {error}", key.display()))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("TLS protocol versions: {error}"))?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(|error| format!("TLS certificate and key do not fit: {error}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self(Arc::new(config)))
    }
}
