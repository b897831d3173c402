//! The PKCS#11 backend (any module; SoftHSM2 in the tests), in two uses:
//!
//! - the HSM's root key is an AES-256 secret-key object on a token, created on first start as
//!   sensitive and non-extractable ([`open`], [`root_key`]); the key engine above it is the
//!   software backend's, and everything that does not need the root key (keys already loaded,
//!   metadata calls) keeps working while the token is away;
//! - a custom key store's KMS keys are objects on a token of their own, generated and used
//!   there and nowhere else ([`TokenKeys`]).
//!
//! Both stand on [`token::Token`]: one module load per process, a logged-in session pool.

mod keys;
pub mod root_key;
pub mod token;

use std::path::PathBuf;

use atrest_crypto::SecretBytes;

use crate::HsmError;
use crate::software::SoftwareHsm;

pub use keys::TokenKeys;
pub use token::token_present;

/// Where the token is and how to log in to it.
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token's label (`CKA_LABEL` of the token, as `softhsm2-util --show-slots` prints).
    pub token_label: String,
    /// The user PIN (the crypto user; the officer's SO PIN is never needed).
    pub pin: SecretBytes,
    /// The label of the root key object on the token; one per data dir.
    pub root_key_label: String,
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("root_key_label", &self.root_key_label)
            .finish_non_exhaustive()
    }
}

/// Whether a missing root key object may be created (a new data dir) or is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKeyPolicy {
    CreateIfMissing,
    MustExist,
}

/// Opens the token and returns the key engine with its root key there.
pub fn open(config: &Pkcs11Config, policy: RootKeyPolicy) -> Result<SoftwareHsm, HsmError> {
    let root = root_key::TokenRootKey::open(config, policy)?;
    Ok(SoftwareHsm::with_root(Box::new(root), "pkcs11"))
}
