//! The keys of a custom key store (AWS KMS's CloudHSM key store, on any PKCS#11 token): each
//! KMS key is an AES-256 object on the token labelled with the KMS key id, as CloudHSM labels
//! them. It is generated there, sensitive and never extractable, and every encryption,
//! decryption and data key made with it runs there, so its material never exists elsewhere.

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;

use atrest_crypto::SecretBytes;
use cryptoki::error::Error as CkError;
use cryptoki::object::ObjectHandle;

use super::token::{Token, is_stale_handle};
use crate::HsmError;

/// A connected custom key store: a logged-in token and the handles of the keys found on it.
pub struct TokenKeys {
    token: Token,
    handles: RwLock<HashMap<String, ObjectHandle>>,
}

impl TokenKeys {
    /// Connects: loads the module, finds the token and logs in as its user.
    pub fn connect(module: &Path, token_label: &str, pin: &SecretBytes) -> Result<Self, HsmError> {
        Ok(Self {
            token: Token::open(module, token_label, pin)?,
            handles: RwLock::default(),
        })
    }

    pub fn token_label(&self) -> &str {
        self.token.label()
    }

    /// Generates the key `label` on the token.
    pub fn generate_key(&self, label: &str) -> Result<(), HsmError> {
        if self.token.find_aes_key(label)?.is_some() {
            return Err(HsmError::Backend(format!(
                "token {:?} already holds a key labelled {label:?}",
                self.token.label()
            )));
        }
        let handle = self.token.generate_aes_key(label)?;
        self.remember(label, handle);
        Ok(())
    }

    /// AES-256-GCM under the key `label`; returns `nonce || ciphertext || tag`.
    pub fn encrypt(&self, label: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.with_key(label, "encrypt", |key| {
            self.token.gcm_seal(key, plaintext, aad)
        })
    }

    /// Reverses [`TokenKeys::encrypt`]; input that does not authenticate is
    /// [`HsmError::DecryptFailed`].
    pub fn decrypt(&self, label: &str, sealed: &[u8], aad: &[u8]) -> Result<SecretBytes, HsmError> {
        self.with_key(label, "decrypt", |key| {
            self.token.gcm_open(key, sealed, aad)
        })?
        .ok_or(HsmError::DecryptFailed)
    }

    /// `len` random bytes from the token's generator, sealed under the key `label` in the
    /// same pass: a data key whose plaintext goes only to the caller.
    pub fn generate_data_key(
        &self,
        label: &str,
        len: usize,
        aad: &[u8],
    ) -> Result<(SecretBytes, Vec<u8>), HsmError> {
        let plaintext = self.random(len)?;
        let sealed = self.encrypt(label, plaintext.expose(), aad)?;
        Ok((plaintext, sealed))
    }

    /// Random bytes from the token (GenerateRandom with a CustomKeyStoreId).
    pub fn random(&self, len: usize) -> Result<SecretBytes, HsmError> {
        let len = u32::try_from(len).map_err(|_| HsmError::InputTooLong { max: 1024 })?;
        self.token
            .with_session("random", |session| session.generate_random_vec(len))
            .map(SecretBytes::new)
            .map_err(|error| self.token.failure("generating random bytes", &error))
    }

    /// Destroys the key `label` (its KMS key was deleted). `false` if it was not there.
    pub fn destroy_key(&self, label: &str) -> Result<bool, HsmError> {
        self.forget(label);
        let Some(key) = self.token.find_aes_key(label)? else {
            return Ok(false);
        };
        self.token
            .with_session("destroy", |session| session.destroy_object(key))
            .map_err(|error| self.token.failure("destroying a key", &error))?;
        Ok(true)
    }

    /// Runs `operation` with the key's handle, finding it on first use and once more if the
    /// token says the cached handle went stale.
    fn with_key<T>(
        &self,
        label: &str,
        what: &str,
        operation: impl Fn(ObjectHandle) -> Result<T, CkError>,
    ) -> Result<T, HsmError> {
        let cached = self
            .handles
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(label)
            .copied();
        if let Some(key) = cached {
            match operation(key) {
                Err(error) if is_stale_handle(&error) => self.forget(label),
                other => return other.map_err(|error| self.token.failure(what, &error)),
            }
        }
        let key = self.token.find_aes_key(label)?.ok_or_else(|| {
            HsmError::Backend(format!(
                "the key {label:?} is not on token {:?} (deleted there, or this is another token)",
                self.token.label()
            ))
        })?;
        self.remember(label, key);
        operation(key).map_err(|error| self.token.failure(what, &error))
    }

    fn remember(&self, label: &str, key: ObjectHandle) {
        self.handles
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(label.to_owned(), key);
    }

    fn forget(&self, label: &str) {
        self.handles
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(label);
    }
}
