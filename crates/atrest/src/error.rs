//! Errors the binary reports before exiting non-zero.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Hsm(#[from] atrest_hsm::HsmError),
    #[error(transparent)]
    Kms(#[from] atrest_kms::KmsError),
    #[error(transparent)]
    Audit(#[from] atrest_audit::AuditError),
}

impl CliError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        CliError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
