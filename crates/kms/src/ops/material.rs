//! Where a symmetric key version is used: inside the HSM, from the wrapped blob the key record
//! holds, or on the token of the key's custom key store, where its material lives and
//! nowhere else. The ciphertext layout is the same for both, so the blob framing above does
//! not care which.

use std::sync::Arc;

use atrest_crypto::SecretBytes;
use atrest_hsm::pkcs11::TokenKeys;
use atrest_hsm::{Hsm, HsmError, WrappedKey};

use crate::model::{KeyRecord, KeyVersion};
use crate::resolve::material_label;
use crate::{Kms, KmsError};

pub(crate) enum SymmetricKey {
    Hsm {
        wrapped: WrappedKey,
        label: Vec<u8>,
    },
    /// The token object is labelled with the KMS key id.
    Token {
        keys: Arc<TokenKeys>,
        label: String,
    },
}

impl Kms {
    /// The usable form of one version of a symmetric key.
    pub(crate) fn symmetric_key(
        &self,
        record: &KeyRecord,
        version: &KeyVersion,
    ) -> Result<SymmetricKey, KmsError> {
        let Some(store_id) = &record.custom_key_store_id else {
            let (wrapped, label) = wrapped_material(record, version);
            return Ok(SymmetricKey::Hsm { wrapped, label });
        };
        let keys = self
            .key_stores
            .connection(store_id)
            .ok_or_else(|| self.unavailable(record))?;
        Ok(SymmetricKey::Token {
            keys,
            label: record.key_id.clone(),
        })
    }

    /// A key whose custom key store is not connected (AWS's `Unavailable` key state).
    pub(crate) fn unavailable(&self, record: &KeyRecord) -> KmsError {
        KmsError::InvalidState(format!(
            "{} is unavailable: its custom key store {} is not connected.",
            self.key_arn(&record.key_id),
            record.custom_key_store_id.as_deref().unwrap_or_default()
        ))
    }

    /// Whether the key is in a custom key store that is not connected now.
    pub(crate) fn is_unavailable(&self, record: &KeyRecord) -> bool {
        record
            .custom_key_store_id
            .as_deref()
            .is_some_and(|id| !self.key_stores.is_connected(id))
    }
}

/// The newest version of a key; every key past PendingImport has one.
pub(crate) fn newest_version(record: &KeyRecord) -> Result<&KeyVersion, KmsError> {
    record
        .current_version()
        .ok_or_else(|| KmsError::Internal(format!("key {} has no key material", record.key_id)))
}

/// A version's HSM-wrapped material and the label it was wrapped under.
pub(crate) fn wrapped_material(record: &KeyRecord, version: &KeyVersion) -> (WrappedKey, Vec<u8>) {
    (
        WrappedKey::from_bytes(version.wrapped.clone()),
        material_label(&record.key_id, version.number),
    )
}

impl SymmetricKey {
    pub(crate) fn encrypt(
        &self,
        hsm: &dyn Hsm,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        match self {
            SymmetricKey::Hsm { wrapped, label } => hsm.encrypt(wrapped, label, plaintext, aad),
            SymmetricKey::Token { keys, label } => keys.encrypt(label, plaintext, aad),
        }
    }

    pub(crate) fn decrypt(
        &self,
        hsm: &dyn Hsm,
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes, HsmError> {
        match self {
            SymmetricKey::Hsm { wrapped, label } => hsm.decrypt(wrapped, label, sealed, aad),
            SymmetricKey::Token { keys, label } => keys.decrypt(label, sealed, aad),
        }
    }

    pub(crate) fn generate_data_key(
        &self,
        hsm: &dyn Hsm,
        len: usize,
        aad: &[u8],
    ) -> Result<(SecretBytes, Vec<u8>), HsmError> {
        match self {
            SymmetricKey::Hsm { wrapped, label } => hsm.generate_data_key(wrapped, label, len, aad),
            SymmetricKey::Token { keys, label } => keys.generate_data_key(label, len, aad),
        }
    }
}
