//! The KMS error enum: one variant per AWS KMS error type the operations can return.
//!
//! Messages follow AWS's wording where callers are known to match on it; the server maps each
//! variant to its wire name and HTTP status (`atrest-server`'s `kms::errors`).

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    CloudHsmClusterInUse(String),
    #[error("{0}")]
    CloudHsmClusterInvalidConfiguration(String),
    #[error("{0}")]
    CloudHsmClusterNotFound(String),
    #[error("{0}")]
    CustomKeyStoreHasKeys(String),
    #[error("{0}")]
    CustomKeyStoreInvalidState(String),
    #[error("{0}")]
    CustomKeyStoreNameInUse(String),
    #[error("{0}")]
    CustomKeyStoreNotFound(String),
    #[error("{0}")]
    Disabled(String),
    #[error("{0}")]
    IncorrectKey(String),
    #[error("{0}")]
    IncorrectKeyMaterial(String),
    #[error("{0}")]
    InvalidImportToken(String),
    #[error("{0}")]
    ExpiredImportToken(String),
    #[error("{0}")]
    InvalidAliasName(String),
    #[error("{0}")]
    InvalidArn(String),
    #[error("{0}")]
    InvalidGrantId(String),
    #[error("{0}")]
    InvalidGrantToken(String),
    /// Deliberately carries no detail beyond a fixed message: no decryption oracle.
    #[error("")]
    InvalidCiphertext,
    #[error("{0}")]
    InvalidKeyUsage(String),
    #[error("{0}")]
    InvalidMarker(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    InvalidMac(String),
    #[error("{0}")]
    InvalidSignature(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    MalformedPolicyDocument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Tag(String),
    #[error("{0}")]
    UnsupportedOperation(String),
    #[error("{0}")]
    Validation(String),
}

impl KmsError {
    /// The AWS KMS error type this variant is on the wire (`__type`); services that call the
    /// KMS on a caller's behalf (EBS, S3) report KMS failures under these names too.
    pub fn type_name(&self) -> &'static str {
        match self {
            KmsError::AccessDenied(_) => "AccessDeniedException",
            KmsError::AlreadyExists(_) => "AlreadyExistsException",
            KmsError::MalformedPolicyDocument(_) => "MalformedPolicyDocumentException",
            KmsError::CloudHsmClusterInUse(_) => "CloudHsmClusterInUseException",
            KmsError::CloudHsmClusterInvalidConfiguration(_) => {
                "CloudHsmClusterInvalidConfigurationException"
            }
            KmsError::CloudHsmClusterNotFound(_) => "CloudHsmClusterNotFoundException",
            KmsError::CustomKeyStoreHasKeys(_) => "CustomKeyStoreHasCMKsException",
            KmsError::CustomKeyStoreInvalidState(_) => "CustomKeyStoreInvalidStateException",
            KmsError::CustomKeyStoreNameInUse(_) => "CustomKeyStoreNameInUseException",
            KmsError::CustomKeyStoreNotFound(_) => "CustomKeyStoreNotFoundException",
            KmsError::Disabled(_) => "DisabledException",
            KmsError::IncorrectKey(_) => "IncorrectKeyException",
            KmsError::IncorrectKeyMaterial(_) => "IncorrectKeyMaterialException",
            KmsError::InvalidImportToken(_) => "InvalidImportTokenException",
            KmsError::ExpiredImportToken(_) => "ExpiredImportTokenException",
            KmsError::InvalidAliasName(_) => "InvalidAliasNameException",
            KmsError::InvalidArn(_) => "InvalidArnException",
            KmsError::InvalidCiphertext => "InvalidCiphertextException",
            KmsError::InvalidGrantId(_) => "InvalidGrantIdException",
            KmsError::InvalidGrantToken(_) => "InvalidGrantTokenException",
            KmsError::InvalidKeyUsage(_) => "InvalidKeyUsageException",
            KmsError::InvalidMarker(_) => "InvalidMarkerException",
            KmsError::InvalidState(_) => "KMSInvalidStateException",
            KmsError::InvalidMac(_) => "KMSInvalidMacException",
            KmsError::InvalidSignature(_) => "KMSInvalidSignatureException",
            KmsError::Internal(_) => "KMSInternalException",
            KmsError::LimitExceeded(_) => "LimitExceededException",
            KmsError::NotFound(_) => "NotFoundException",
            KmsError::Tag(_) => "TagException",
            KmsError::UnsupportedOperation(_) => "UnsupportedOperationException",
            KmsError::Validation(_) => "ValidationException",
        }
    }

    /// An AWS-shaped validation message for one field.
    pub fn validation(field: &str, value: impl std::fmt::Display, constraint: &str) -> Self {
        KmsError::Validation(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
        ))
    }

    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        KmsError::Internal(format!("{context}: {error}"))
    }
}

impl From<redb::Error> for KmsError {
    fn from(error: redb::Error) -> Self {
        KmsError::internal("metadata store", error)
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for KmsError {
            fn from(error: $t) -> Self {
                KmsError::internal("metadata store", error)
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
