//! The key that signs digests: an HMAC-SHA256 key generated in the HSM, stored only wrapped.

use std::path::Path;
use std::sync::Arc;

use atrest_hsm::{Hsm, KeyKind, WrappedKey, fsio};

use crate::AuditError;

const KEY_FILE: &str = "digest-key.wrapped";
const LABEL: &[u8] = b"audit-digest-v1";

#[derive(Clone)]
pub struct DigestSigner {
    hsm: Arc<dyn Hsm>,
    key: WrappedKey,
}

impl std::fmt::Debug for DigestSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestSigner")
    }
}

impl DigestSigner {
    /// Loads the digest key from `dir`, generating it (in the HSM) on first use.
    pub fn open(dir: &Path, hsm: Arc<dyn Hsm>) -> Result<Self, AuditError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(KEY_FILE);
        let key = if path.exists() {
            WrappedKey::from_bytes(std::fs::read(&path)?)
        } else {
            let key = hsm
                .generate_key(KeyKind::Hmac256, LABEL)
                .map_err(|e| AuditError::Key(e.to_string()))?;
            fsio::write_atomically(&path, key.as_bytes(), 0o600)?;
            key
        };
        Ok(Self { hsm, key })
    }

    pub fn sign(&self, seq: u64, prev: &str) -> Result<String, AuditError> {
        let mac = self
            .hsm
            .mac(&self.key, LABEL, message(seq, prev).as_bytes())
            .map_err(|e| AuditError::Key(e.to_string()))?;
        Ok(hex::encode(mac))
    }

    pub fn check(&self, seq: u64, prev: &str, digest: &str) -> Result<bool, AuditError> {
        let Ok(mac) = hex::decode(digest) else {
            return Ok(false);
        };
        self.hsm
            .verify_mac(&self.key, LABEL, message(seq, prev).as_bytes(), &mac)
            .map_err(|e| AuditError::Key(e.to_string()))
    }
}

fn message(seq: u64, prev: &str) -> String {
    format!("atrest-audit-digest-v1:{seq}:{prev}")
}
