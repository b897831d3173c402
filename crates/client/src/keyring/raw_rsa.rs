//! The raw RSA keyring (framework/raw-rsa-keyring.md) with OAEP, SHA-256 and MGF1-SHA-256
//! padding: provider ID = key namespace, provider info = key name, ciphertext = the OAEP
//! encryption of the data key. A keyring with only the public key can encrypt but not decrypt.

use atrest_crypto::SecretBytes;
use aws_lc_rs::rsa::{
    OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};

use super::{DecryptionMaterials, EncryptionMaterials, Keyring, generate_data_key, none_opened};
use crate::error::{Error, Result};
use crate::header::EncryptedDataKey;

pub struct RawRsaKeyring {
    namespace: String,
    name: String,
    public: OaepPublicEncryptingKey,
    private: Option<OaepPrivateDecryptingKey>,
}

impl std::fmt::Debug for RawRsaKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRsaKeyring")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("can_decrypt", &self.private.is_some())
            .finish()
    }
}

impl RawRsaKeyring {
    /// From a PEM file: a PKCS#8 private key (`BEGIN PRIVATE KEY`, encrypts and decrypts) or an
    /// X.509 public key (`BEGIN PUBLIC KEY`, encrypts only).
    pub fn from_pem(namespace: &str, name: &str, pem: &[u8]) -> Result<Self> {
        if let Ok(der) = PrivatePkcs8KeyDer::from_pem_slice(pem) {
            let private = PrivateDecryptingKey::from_pkcs8(der.secret_pkcs8_der())
                .map_err(|error| Error::Config(format!("not an RSA private key: {error}")))?;
            let public = OaepPublicEncryptingKey::new(private.public_key())
                .map_err(|_| Error::Config("unusable RSA public key".into()))?;
            let private = OaepPrivateDecryptingKey::new(private)
                .map_err(|_| Error::Config("unusable RSA private key".into()))?;
            return Ok(Self::with_keys(namespace, name, public, Some(private)));
        }
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem).map_err(|_| {
            Error::Config("expected a PEM \"PRIVATE KEY\" (PKCS#8) or \"PUBLIC KEY\" (X.509 SubjectPublicKeyInfo)".into())
        })?;
        let public = PublicEncryptingKey::from_der(der.as_ref())
            .map_err(|error| Error::Config(format!("not an RSA public key: {error}")))?;
        let public = OaepPublicEncryptingKey::new(public)
            .map_err(|_| Error::Config("unusable RSA public key".into()))?;
        Ok(Self::with_keys(namespace, name, public, None))
    }

    fn with_keys(
        namespace: &str,
        name: &str,
        public: OaepPublicEncryptingKey,
        private: Option<OaepPrivateDecryptingKey>,
    ) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            public,
            private,
        }
    }
}

impl Keyring for RawRsaKeyring {
    fn on_encrypt(&self, materials: &mut EncryptionMaterials) -> Result<()> {
        let data_key = materials.data_key.get_or_insert_with(generate_data_key);
        let mut ciphertext = vec![0u8; self.public.ciphertext_size()];
        let written = self
            .public
            .encrypt(
                &OAEP_SHA256_MGF1SHA256,
                data_key.expose(),
                &mut ciphertext,
                None,
            )
            .map_err(|_| Error::Keyring("RSA-OAEP wrap failed".into()))?
            .len();
        ciphertext.truncate(written);
        materials.encrypted_data_keys.push(EncryptedDataKey {
            provider_id: self.namespace.clone(),
            provider_info: self.name.as_bytes().to_vec(),
            ciphertext,
        });
        Ok(())
    }

    fn on_decrypt(
        &self,
        materials: &mut DecryptionMaterials,
        keys: &[EncryptedDataKey],
    ) -> Result<()> {
        let Some(private) = &self.private else {
            return Err(Error::Keyring(format!(
                "raw RSA key {:?} has no private key",
                self.name
            )));
        };
        for key in keys {
            if key.provider_id != self.namespace || key.provider_info != self.name.as_bytes() {
                continue;
            }
            let mut plaintext = zeroize::Zeroizing::new(vec![0u8; private.min_output_size()]);
            if let Ok(opened) = private.decrypt(
                &OAEP_SHA256_MGF1SHA256,
                &key.ciphertext,
                &mut plaintext,
                None,
            ) {
                materials.data_key = Some(SecretBytes::copy_from(opened));
                return Ok(());
            }
        }
        Err(none_opened("RSA", &self.namespace, &self.name))
    }
}
