//! The raw AES keyring (framework/raw-aes-keyring.md): wraps the data key with a local AES-GCM
//! key, the serialized encryption context as AAD. Provider ID = key namespace; provider info =
//! key name || tag length in bits (u32) || IV length (u32) || IV; ciphertext = wrapped key || tag.

use atrest_crypto::SecretBytes;
use aws_lc_rs::aead::{AES_128_GCM, AES_192_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use super::{DecryptionMaterials, EncryptionMaterials, Keyring, generate_data_key, none_opened};
use crate::context;
use crate::error::{Error, Result};
use crate::header::{EncryptedDataKey, IV_LEN, TAG_LEN};

/// A local AES-128/192/256 wrapping key with its namespace and name.
pub struct RawAesKeyring {
    namespace: String,
    name: String,
    key: LessSafeKey,
}

impl std::fmt::Debug for RawAesKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawAesKeyring")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish()
    }
}

impl RawAesKeyring {
    /// `wrapping_key` must be 16, 24 or 32 bytes.
    pub fn new(namespace: &str, name: &str, wrapping_key: &SecretBytes) -> Result<Self> {
        let algorithm = match wrapping_key.len() {
            16 => &AES_128_GCM,
            24 => &AES_192_GCM,
            32 => &AES_256_GCM,
            other => {
                return Err(Error::Config(format!(
                    "a raw AES wrapping key must be 16, 24 or 32 bytes, not {other}"
                )));
            }
        };
        if namespace.starts_with("aws-kms") {
            return Err(Error::Config(
                "the key namespace \"aws-kms\" is reserved for AWS KMS".into(),
            ));
        }
        let key = UnboundKey::new(algorithm, wrapping_key.expose())
            .map_err(|_| Error::Config("bad AES key".into()))?;
        Ok(Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            key: LessSafeKey::new(key),
        })
    }

    fn provider_info(&self, iv: &[u8; IV_LEN]) -> Vec<u8> {
        let mut info = self.name.as_bytes().to_vec();
        info.extend_from_slice(&((TAG_LEN * 8) as u32).to_be_bytes());
        info.extend_from_slice(&(IV_LEN as u32).to_be_bytes());
        info.extend_from_slice(iv);
        info
    }

    /// The IV if `key` names this keyring (namespace, name, tag and IV lengths all match).
    fn iv_for(&self, key: &EncryptedDataKey) -> Option<[u8; IV_LEN]> {
        if key.provider_id != self.namespace {
            return None;
        }
        let name = self.name.as_bytes();
        let rest = key.provider_info.strip_prefix(name)?;
        if rest.len() != 8 + IV_LEN
            || rest[..4] != ((TAG_LEN * 8) as u32).to_be_bytes()
            || rest[4..8] != (IV_LEN as u32).to_be_bytes()
        {
            return None;
        }
        rest[8..].try_into().ok()
    }
}

impl Keyring for RawAesKeyring {
    fn on_encrypt(&self, materials: &mut EncryptionMaterials) -> Result<()> {
        let aad = context::serialize(&materials.context)?;
        let data_key = materials.data_key.get_or_insert_with(generate_data_key);
        let mut iv = [0u8; IV_LEN];
        atrest_crypto::random::fill(&mut iv);
        let mut ciphertext = data_key.expose().to_vec();
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(&aad),
                &mut ciphertext,
            )
            .map_err(|_| Error::Keyring("AES-GCM wrap failed".into()))?;
        ciphertext.extend_from_slice(tag.as_ref());
        materials.encrypted_data_keys.push(EncryptedDataKey {
            provider_id: self.namespace.clone(),
            provider_info: self.provider_info(&iv),
            ciphertext,
        });
        Ok(())
    }

    fn on_decrypt(
        &self,
        materials: &mut DecryptionMaterials,
        keys: &[EncryptedDataKey],
    ) -> Result<()> {
        let aad = context::serialize(&materials.context)?;
        for key in keys {
            let Some(iv) = self.iv_for(key) else { continue };
            if key.ciphertext.len() < TAG_LEN {
                continue;
            }
            let mut buffer = zeroize::Zeroizing::new(key.ciphertext.clone());
            if let Ok(plaintext) = self.key.open_in_place(
                Nonce::assume_unique_for_key(iv),
                Aad::from(&aad),
                &mut buffer,
            ) {
                materials.data_key = Some(SecretBytes::copy_from(plaintext));
                return Ok(());
            }
        }
        Err(none_opened("AES", &self.namespace, &self.name))
    }
}
