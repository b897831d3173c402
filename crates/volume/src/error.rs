//! EC2 errors: the code EC2 returns (`InvalidVolume.NotFound`, `IncorrectState`, ...), its
//! HTTP status and message. KMS failures keep the KMS's error type under a `KMS.` prefix, as
//! atrest's S3 reports them, so a disabled key reads as `KMS.DisabledException`.

use atrest_kms::KmsError;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Ec2Error {
    pub code: String,
    pub status: u16,
    pub message: String,
}

impl Ec2Error {
    pub fn client(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            status: 400,
            message: message.into(),
        }
    }

    pub fn volume_not_found(id: &str) -> Self {
        Self::client(
            "InvalidVolume.NotFound",
            format!("The volume '{id}' does not exist."),
        )
    }

    pub fn snapshot_not_found(id: &str) -> Self {
        Self::client(
            "InvalidSnapshot.NotFound",
            format!("The snapshot '{id}' does not exist."),
        )
    }

    pub fn incorrect_state(message: impl Into<String>) -> Self {
        Self::client("IncorrectState", message)
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::client("InvalidParameterValue", message)
    }

    pub fn missing_parameter(name: &str) -> Self {
        Self::client(
            "MissingParameter",
            format!("The request must contain the parameter {name}"),
        )
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::client("UnsupportedOperation", message)
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(%message, "volume service internal error");
        Self {
            code: "InternalError".into(),
            status: 500,
            message: "An internal error has occurred".into(),
        }
    }

    /// A refusal by the caller's IAM policies to perform an `ec2:` action.
    pub fn unauthorized(error: KmsError) -> Self {
        match error {
            KmsError::AccessDenied(message) => Self {
                code: "UnauthorizedOperation".into(),
                status: 403,
                message: format!("You are not authorized to perform this operation. {message}"),
            },
            other => Self::internal(other),
        }
    }

    /// A failure of a KMS call made on the caller's behalf.
    pub fn kms(error: KmsError) -> Self {
        if matches!(error, KmsError::Internal(_)) {
            return Self::internal(error);
        }
        let message = match &error {
            KmsError::InvalidCiphertext => "The volume key could not be decrypted".to_owned(),
            other => other.to_string(),
        };
        Self::client(&format!("KMS.{}", error.type_name()), message)
    }
}

impl From<StoreError> for Ec2Error {
    fn from(error: StoreError) -> Self {
        Self::internal(error)
    }
}

impl From<std::io::Error> for Ec2Error {
    fn from(error: std::io::Error) -> Self {
        match error.raw_os_error() {
            // ENOSPC, EDQUOT: the data directory is full; nothing was kept.
            Some(28 | 122) => Self {
                code: "InsufficientVolumeCapacity".into(),
                status: 503,
                message: "There is not enough free space in the volume store to complete the \
                          request; nothing was created. Free space and try again."
                    .into(),
            },
            _ => Self::internal(error),
        }
    }
}
