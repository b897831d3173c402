//! Algorithm suites and the commitment policy, as the AWS Encryption SDK specification names them
//! (framework/algorithm-suites.md, framework/commitment-policy.md).

use crate::error::{Error, Result};

/// The committing suites of message format version 2.0. Both use AES-256-GCM (12-byte IV,
/// 16-byte tag) with an encryption key and a commit key derived by HKDF-SHA512 from the data key
/// and the 32-byte message ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgorithmSuite {
    /// 0x0478 `ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY`: no signature. atrest's default, because
    /// every holder of a wrapping key is then equally trusted to write.
    AesGcmCommitKey,
    /// 0x0578 `ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384`: adds an ECDSA P-384 footer
    /// signature, so readers who may decrypt cannot forge messages (the SDKs' default).
    AesGcmCommitKeyEcdsaP384,
}

impl AlgorithmSuite {
    pub fn id(self) -> u16 {
        match self {
            Self::AesGcmCommitKey => 0x0478,
            Self::AesGcmCommitKeyEcdsaP384 => 0x0578,
        }
    }

    pub fn from_id(id: u16) -> Result<Self> {
        match id {
            0x0478 => Ok(Self::AesGcmCommitKey),
            0x0578 => Ok(Self::AesGcmCommitKeyEcdsaP384),
            other => Err(Error::UnsupportedSuite(other)),
        }
    }

    pub fn is_signed(self) -> bool {
        matches!(self, Self::AesGcmCommitKeyEcdsaP384)
    }

    /// Every suite atrest supports commits to its key; non-committing (format 1.0) suites are
    /// neither written nor read.
    pub fn is_committing(self) -> bool {
        true
    }
}

/// Which suites encrypt may write and decrypt may read (the SDKs' three policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitmentPolicy {
    /// Write and read only committing suites (the default everywhere).
    #[default]
    RequireEncryptRequireDecrypt,
    /// Write committing suites; also read non-committing ones.
    RequireEncryptAllowDecrypt,
    /// Write non-committing suites (not offered by atrest, so encrypt fails clearly).
    ForbidEncryptAllowDecrypt,
}

impl CommitmentPolicy {
    pub fn name(self) -> &'static str {
        match self {
            Self::RequireEncryptRequireDecrypt => "REQUIRE_ENCRYPT_REQUIRE_DECRYPT",
            Self::RequireEncryptAllowDecrypt => "REQUIRE_ENCRYPT_ALLOW_DECRYPT",
            Self::ForbidEncryptAllowDecrypt => "FORBID_ENCRYPT_ALLOW_DECRYPT",
        }
    }

    pub fn check_encrypt(self, suite: AlgorithmSuite) -> Result<()> {
        let allowed = match self {
            Self::ForbidEncryptAllowDecrypt => !suite.is_committing(),
            _ => suite.is_committing(),
        };
        if allowed {
            Ok(())
        } else {
            Err(Error::CommitmentPolicy {
                policy: self.name(),
                suite: suite.id(),
            })
        }
    }

    pub fn check_decrypt(self, suite: AlgorithmSuite) -> Result<()> {
        if self == Self::RequireEncryptRequireDecrypt && !suite.is_committing() {
            return Err(Error::CommitmentPolicy {
                policy: self.name(),
                suite: suite.id(),
            });
        }
        Ok(())
    }
}

impl std::str::FromStr for CommitmentPolicy {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        let normalized = text.to_ascii_uppercase().replace('-', "_");
        [
            Self::RequireEncryptRequireDecrypt,
            Self::RequireEncryptAllowDecrypt,
            Self::ForbidEncryptAllowDecrypt,
        ]
        .into_iter()
        .find(|policy| policy.name() == normalized)
        .ok_or_else(|| Error::Config(format!("unknown commitment policy {text:?}")))
    }
}
