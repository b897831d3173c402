//! The root key on the token: every wrap and unwrap of the key engine above it is a
//! `C_Encrypt`/`C_Decrypt` with `CKM_AES_GCM` there, so the data dir holds only blobs that need
//! the token to open.

use atrest_crypto::SecretBytes;
use cryptoki::object::ObjectHandle;

use super::token::{Token, is_token_failure};
use super::{Pkcs11Config, RootKeyPolicy};
use crate::HsmError;
use crate::root::RootKey;

/// The root key object and the token it lives on.
pub struct TokenRootKey {
    token: Token,
    key: ObjectHandle,
}

impl TokenRootKey {
    pub fn open(config: &Pkcs11Config, policy: RootKeyPolicy) -> Result<Self, HsmError> {
        let token =
            Token::open(&config.module, &config.token_label, &config.pin).map_err(|error| {
                match error {
                    HsmError::PinRejected(message) => {
                        HsmError::PinRejected(format!("{message} (check --pkcs11-pin-file)"))
                    }
                    other => other,
                }
            })?;
        let key = match token.find_aes_key(&config.root_key_label)? {
            Some(key) => key,
            None if policy == RootKeyPolicy::MustExist => {
                return Err(HsmError::Backend(format!(
                    "the root key {:?} is not on token {:?}: this data dir was initialised on \
                     another token, or the key was deleted (every key of the data dir is then \
                     unrecoverable)",
                    config.root_key_label, config.token_label
                )));
            }
            None => {
                let key = token.generate_aes_key(&config.root_key_label)?;
                tracing::info!(token = %config.token_label, label = %config.root_key_label, "created the root key on the PKCS#11 token");
                key
            }
        };
        Ok(Self { token, key })
    }
}

impl RootKey for TokenRootKey {
    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.token
            .gcm_seal(self.key, plaintext, aad)
            .map_err(|error| self.token.failure("wrapping under the root key", &error))
    }

    fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<SecretBytes, HsmError> {
        match self.token.gcm_open(self.key, sealed, aad) {
            Ok(Some(plaintext)) => Ok(plaintext),
            Ok(None) => Err(HsmError::WrappedKeyCorrupt),
            Err(error) if is_token_failure(&error) => {
                Err(self.token.failure("unwrapping under the root key", &error))
            }
            Err(_) => Err(HsmError::WrappedKeyCorrupt),
        }
    }
}
