//! Keyrings (framework/keyring-interface.md): they generate, wrap and unwrap the data key of a
//! message. A keyring never sees the message itself, only the materials.

mod kms;
mod multi;
mod raw_aes;
mod raw_rsa;

pub use kms::{DiscoveryFilter, KmsClient, KmsDiscoveryKeyring, KmsKeyring, KmsSettings};
pub use multi::MultiKeyring;
pub use raw_aes::RawAesKeyring;
pub use raw_rsa::RawRsaKeyring;

use atrest_crypto::SecretBytes;

use crate::context::EncryptionContext;
use crate::error::Result;
use crate::header::EncryptedDataKey;
use crate::suite::AlgorithmSuite;

/// What encrypt hands the keyring: the suite and context, perhaps a data key already generated
/// by an earlier keyring, and the wrapped copies so far.
#[derive(Debug)]
pub struct EncryptionMaterials {
    pub suite: AlgorithmSuite,
    pub context: EncryptionContext,
    pub data_key: Option<SecretBytes>,
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
}

/// What decrypt hands the keyring; it sets `data_key` when it opens one of the wrapped keys.
#[derive(Debug)]
pub struct DecryptionMaterials {
    pub suite: AlgorithmSuite,
    pub context: EncryptionContext,
    pub data_key: Option<SecretBytes>,
}

/// A source of data keys. Implementations are blocking: the KMS keyring waits for its service.
pub trait Keyring: Send + Sync {
    /// Generates the data key if there is none yet, then appends a wrapped copy of it.
    fn on_encrypt(&self, materials: &mut EncryptionMaterials) -> Result<()>;

    /// Tries `encrypted_data_keys` in order and sets the data key from the first it can open.
    /// Fails (leaving the materials untouched) when it can open none.
    fn on_decrypt(
        &self,
        materials: &mut DecryptionMaterials,
        encrypted_data_keys: &[EncryptedDataKey],
    ) -> Result<()>;
}

/// The failure of a raw keyring that opened none of the message's keys.
pub(crate) fn none_opened(kind: &str, namespace: &str, name: &str) -> crate::Error {
    crate::Error::NoDecryptableKey(format!(
        " (raw {kind} key {namespace:?}/{name:?} opened none)"
    ))
}

/// A fresh random data key for the suite.
pub(crate) fn generate_data_key() -> SecretBytes {
    atrest_crypto::random::secret_bytes(crate::keys::DATA_KEY_LEN)
}
