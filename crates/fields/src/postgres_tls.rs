//! TLS for tokio-postgres connections, with libpq's `sslmode` meanings ([`crate::sslmode`]):
//! [`connect`] takes a connection string as psql would and returns a tokio-postgres client whose
//! connection is encrypted (rustls on aws-lc-rs) and checked as the string asks.
//!
//! tokio-postgres leaves certificates to the connector; this one checks nothing, the chain
//! (`verify-ca`), or the chain and the host name (`verify-full`), and presents the client
//! certificate (`sslcert`/`sslkey`) when the server asks for one. Channel binding (SCRAM's
//! `tls-server-end-point`) is not offered: `channel_binding=require` is refused by
//! tokio-postgres with its own error.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::{Client, Connection, Socket};

use crate::error::FieldError;
use crate::sslmode::{
    self, ClientIdentity, DefaultFiles, Negotiation, RootCert, TlsPolicy, Verify,
};

/// Connects as libpq would to `connection_string` (a `postgres://` URI or `key=value` pairs,
/// with `sslmode`/`sslrootcert` or `PGSSLMODE`/`PGSSLROOTCERT`). Spawn or poll the returned
/// connection, as with `tokio_postgres::connect`.
pub async fn connect(
    connection_string: &str,
) -> Result<(Client, Connection<Socket, RustlsStream<Socket>>), FieldError> {
    let invalid = FieldError::ConnectionString;
    let (rest, settings) = sslmode::split(connection_string).map_err(invalid)?;
    let settings = settings
        .or_env(|name| std::env::var(name).ok())
        .map_err(invalid)?;
    let policy = sslmode::resolve(settings, default_files()).map_err(invalid)?;
    let mut config: tokio_postgres::Config = rest.parse()?;
    config.ssl_mode(match policy.negotiation {
        Negotiation::Disable => tokio_postgres::config::SslMode::Disable,
        Negotiation::Prefer => tokio_postgres::config::SslMode::Prefer,
        Negotiation::Require => tokio_postgres::config::SslMode::Require,
    });
    let tls = MakeRustlsConnect::new(&policy)?;
    Ok(config.connect(tls).await?)
}

/// libpq's files in `~/.postgresql`, those that exist.
fn default_files() -> DefaultFiles {
    let Some(home) = std::env::var_os("HOME") else {
        return DefaultFiles::default();
    };
    let existing = |name: &str| {
        let path = PathBuf::from(&home).join(".postgresql").join(name);
        path.is_file().then_some(path)
    };
    DefaultFiles {
        root: existing("root.crt"),
        client_cert: existing("postgresql.crt"),
        client_key: existing("postgresql.key"),
    }
}

/// Makes a rustls connection per host tokio-postgres connects to.
#[derive(Clone)]
pub struct MakeRustlsConnect {
    config: Arc<ClientConfig>,
}

impl MakeRustlsConnect {
    /// A connector that checks what `policy` says and presents its client certificate, loading
    /// every file now so that a missing or unusable one is reported before any connection.
    pub fn new(policy: &TlsPolicy) -> Result<Self, FieldError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match &policy.verify {
            Verify::Nothing => Arc::new(ShortOfName {
                chain: None,
                provider: Arc::clone(&provider),
            }),
            Verify::Chain(roots) => Arc::new(ShortOfName {
                chain: Some(webpki(roots, &provider)?),
                provider: Arc::clone(&provider),
            }),
            Verify::ChainAndName(roots) => webpki(roots, &provider)?,
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| tls_setup(error.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &policy.identity {
            None => builder.with_no_client_auth(),
            Some(identity) => {
                let (chain, key) = load_identity(identity)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|error| tls_setup(format!("sslcert/sslkey: {error}")))?
            }
        };
        // What libpq 17 sends, and what PostgreSQL 17 wants for `sslnegotiation=direct`.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

fn tls_setup(message: String) -> FieldError {
    FieldError::ConnectionString(format!("TLS: {message}"))
}

/// The client certificate chain and its key. As libpq does, a key that others may read is
/// refused: mode 0600 or stricter, or 0640 if root owns it.
fn load_identity(
    identity: &ClientIdentity,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), FieldError> {
    let chain = pem_certificates("sslcert", &identity.cert)?;
    let key = &identity.key;
    let metadata = std::fs::metadata(key)
        .map_err(|error| tls_setup(format!("sslkey {}: {error}", key.display())))?;
    let others_may_read = {
        use std::os::unix::fs::MetadataExt;
        let allowed = if metadata.uid() == 0 { 0o640 } else { 0o600 };
        metadata.mode() & 0o777 & !allowed != 0
    };
    if others_may_read {
        return Err(tls_setup(format!(
            "sslkey {} has group or world access; it should be u=rw (0600) or less",
            key.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|error| tls_setup(format!("sslkey {}: {error}", key.display())))?;
    Ok((chain, key))
}

/// Every certificate of a PEM file; none is an error naming the `setting` it came from.
fn pem_certificates(
    setting: &str,
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, FieldError> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect())
        .map_err(|error| tls_setup(format!("{setting} {}: {error}", path.display())))?;
    if certificates.is_empty() {
        return Err(tls_setup(format!(
            "{setting} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certificates)
}

fn webpki(
    roots: &RootCert,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, FieldError> {
    let certificates = match roots {
        RootCert::File(path) => pem_certificates("sslrootcert", path)?,
        RootCert::System => rustls_native_certs::load_native_certs().certs,
    };
    let mut store = RootCertStore::empty();
    let (_, unusable) = store.add_parsable_certificates(certificates);
    if store.is_empty() {
        return Err(tls_setup(match roots {
            RootCert::File(path) => format!(
                "sslrootcert {}: none of its {unusable} certificates can be a root",
                path.display()
            ),
            RootCert::System => "the system trust store holds no certificate".to_string(),
        }));
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), Arc::clone(provider))
        .build()
        .map_err(|error| tls_setup(error.to_string()))
}

/// libpq's checks short of `verify-full`: with `chain`, the chain must lead to a trusted root
/// but the name in the certificate is not compared with the host (`verify-ca`; webpki checks the
/// chain first, so a name mismatch means the chain passed); without, any certificate is taken
/// (`prefer`/`require` without roots). Either way the handshake's signature must be made by the
/// key in the certificate.
#[derive(Debug)]
struct ShortOfName {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ShortOfName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl<S> MakeTlsConnect<S> for MakeRustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> io::Result<RustlsConnect> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        Ok(RustlsConnect {
            name,
            connector: tokio_rustls::TlsConnector::from(Arc::clone(&self.config)),
        })
    }
}

/// One TLS handshake to a host.
pub struct RustlsConnect {
    name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let stream = self.connector.connect(self.name, stream).await?;
            Ok(RustlsStream(stream))
        })
    }
}

/// A TLS stream to the database.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(context, buffer)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(context, buffer)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(verify: Verify, identity: Option<ClientIdentity>) -> TlsPolicy {
        TlsPolicy {
            negotiation: Negotiation::Require,
            verify,
            identity,
        }
    }

    fn setup_error(verify: Verify) -> String {
        identity_error(policy(verify, None))
    }

    fn identity_error(policy: TlsPolicy) -> String {
        match MakeRustlsConnect::new(&policy) {
            Ok(_) => panic!("{policy:?} was accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn unusable_root_files_are_reported_before_connecting() {
        let missing = setup_error(Verify::ChainAndName(RootCert::File(
            "/nonexistent/root.crt".into(),
        )));
        assert!(missing.contains("/nonexistent/root.crt"), "{missing}");
        let not_pem = std::env::temp_dir().join(format!("atrest-not-pem-{}", std::process::id()));
        std::fs::write(&not_pem, "not a certificate\n").unwrap();
        let empty = setup_error(Verify::Chain(RootCert::File(not_pem.clone())));
        std::fs::remove_file(&not_pem).unwrap();
        assert!(empty.contains("holds no PEM certificate"), "{empty}");
    }

    #[test]
    fn client_keys_others_may_read_are_refused() {
        let dir = std::env::temp_dir().join(format!("atrest-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("client.crt");
        // PEM framing is all the loader reads before the key; the DER is checked by the handshake.
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let key = dir.join("client.key");
        std::fs::write(&key, "not a key\n").unwrap();
        let identity = || {
            Some(ClientIdentity {
                cert: cert.clone(),
                key: key.clone(),
            })
        };
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let open = identity_error(policy(Verify::Nothing, identity()));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let garbage = identity_error(policy(Verify::Nothing, identity()));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(open.contains("group or world access"), "{open}");
        assert!(garbage.contains("sslkey"), "{garbage}");
    }

    #[test]
    fn unchecked_connections_still_build() {
        assert!(MakeRustlsConnect::new(&policy(Verify::Nothing, None)).is_ok());
    }
}
