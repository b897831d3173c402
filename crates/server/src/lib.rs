//! The HTTP front of atrest: one port, every API.
//!
//! Each request is parsed into a typed [`route::Endpoint`] first (as Garage does), then
//! authenticated with SigV4, then handed to the protocol module for its API. Listeners set
//! `TCP_NODELAY` and bodies are read only up to a per-endpoint limit.

mod audit;
mod auth;
mod http;
mod kms;
pub mod limits;
mod nbd;
mod query;
mod route;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use atrest_audit::AuditLog;
use atrest_kms::Kms;

pub use http::serve;
pub use limits::HttpLimits;
pub use nbd::serve_nbd;
pub use tls::TlsConfig;

/// What every request handler shares.
pub struct AppState {
    pub kms: Arc<Kms>,
    pub hsm_backend: &'static str,
    /// `None` when the operator turned the audit log off (`serve --audit-log off`).
    audit: Option<AuditLog>,
    credentials: auth::CredentialCache,
    /// The S3 API; `None` serves S3 clients a NotImplemented error.
    s3: Option<atrest_s3::EmbeddedS3>,
    /// The EC2 volume API; `None` answers EC2 clients InvalidAction.
    volumes: Option<Arc<atrest_volume::Volumes>>,
}

impl AppState {
    /// `audit` is `None` only when the operator chose to run without an audit log.
    pub fn new(kms: Arc<Kms>, hsm_backend: &'static str, audit: Option<AuditLog>) -> Self {
        Self {
            kms,
            hsm_backend,
            audit,
            credentials: auth::CredentialCache::default(),
            s3: None,
            volumes: None,
        }
    }

    /// Serves the EC2 volume API with `volumes`.
    pub fn with_volumes(mut self, volumes: Arc<atrest_volume::Volumes>) -> Self {
        self.volumes = Some(volumes);
        self
    }

    /// Serves the S3 API with `service`.
    pub fn with_s3(mut self, s3: atrest_s3::EmbeddedS3) -> Self {
        self.s3 = Some(s3);
        self
    }
}

/// Runs due rotations and deletions every `interval` until the process ends.
pub fn spawn_maintenance(kms: Arc<Kms>, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let kms = Arc::clone(&kms);
            match tokio::task::spawn_blocking(move || kms.run_due_work()).await {
                Ok(Ok((rotated, deleted))) if rotated + deleted > 0 => {
                    tracing::info!(rotated, deleted, "key maintenance done");
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::error!(%error, "key maintenance failed"),
                Err(error) => tracing::error!(%error, "key maintenance task panicked"),
            }
        }
    })
}
