//! The root key: the one key that wraps every other. The software backend holds it in memory
//! after unsealing its keystore; the PKCS#11 backend keeps it on the token as a sensitive,
//! non-extractable object and every wrap and unwrap runs there.

use atrest_crypto::{AeadKey, SecretBytes};

use crate::HsmError;

/// AES-256-GCM under the root key; the output layout is `nonce(12) || ciphertext || tag(16)`
/// for both backends, so a wrapped blob does not say where its root lives.
pub trait RootKey: Send + Sync {
    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, HsmError>;

    /// Fails with [`HsmError::WrappedKeyCorrupt`] when the blob or its AAD was changed, and
    /// with another error when the root key cannot be reached (a token that went away).
    fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<SecretBytes, HsmError>;
}

impl RootKey for AeadKey {
    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, HsmError> {
        Ok(AeadKey::seal(self, plaintext, aad))
    }

    fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<SecretBytes, HsmError> {
        AeadKey::open(self, sealed, aad).map_err(|_| HsmError::WrappedKeyCorrupt)
    }
}
