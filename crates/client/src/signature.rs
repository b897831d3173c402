//! The ECDSA P-384 / SHA-384 footer signature of suite 0x0578 (data-format/message-footer.md,
//! framework/transitive-requirements.md#ecdsa). The signature covers the header and body bytes;
//! both sides hash them as they stream, so the message never sits in memory. The verification
//! key travels in the encryption context as the base64 of the SEC 1 compressed point.

use aws_lc_rs::digest::{self, SHA384};
use aws_lc_rs::encoding::{AsBigEndian, EcPublicKeyCompressedBin};
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Error, Result};

/// A fresh signing key for one message and the running hash of what it will sign.
pub struct Signer {
    key: EcdsaKeyPair,
    hash: digest::Context,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([REDACTED])")
    }
}

impl Signer {
    pub fn generate() -> Result<Self> {
        let key = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING)
            .map_err(|_| Error::Keyring("ECDSA P-384 key generation failed".into()))?;
        Ok(Self {
            key,
            hash: digest::Context::new(&SHA384),
        })
    }

    /// The value of the `aws-crypto-public-key` context entry.
    pub fn public_key_base64(&self) -> Result<String> {
        let compressed: EcPublicKeyCompressedBin<'_> = self
            .key
            .public_key()
            .as_be_bytes()
            .map_err(|_| Error::Keyring("cannot encode the ECDSA public key".into()))?;
        Ok(STANDARD.encode(compressed.as_ref()))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
    }

    /// The DER `ECDSA-Sig-Value` over everything passed to [`Signer::update`].
    pub fn finish(self) -> Result<Vec<u8>> {
        let digest = self.hash.finish();
        let signature = self
            .key
            .sign_digest(&digest)
            .map_err(|_| Error::Keyring("ECDSA signing failed".into()))?;
        Ok(signature.as_ref().to_vec())
    }
}

/// The verifying side: the public key from the context and the running hash.
pub struct Verifier {
    public_key: Vec<u8>,
    hash: digest::Context,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier")
    }
}

impl Verifier {
    pub fn from_base64(encoded: &str) -> Result<Self> {
        let public_key = STANDARD.decode(encoded).map_err(|_| {
            Error::Malformed("the aws-crypto-public-key context value is not base64".into())
        })?;
        Ok(Self {
            public_key,
            hash: digest::Context::new(&SHA384),
        })
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
    }

    pub fn verify(self, signature: &[u8]) -> Result<()> {
        let digest = self.hash.finish();
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, &self.public_key)
            .verify_digest(&digest, signature)
            .map_err(|_| Error::Signature)
    }
}
