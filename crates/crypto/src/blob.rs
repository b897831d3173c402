//! The KMS ciphertext blob: what Encrypt, GenerateDataKey and ReEncrypt return.
//!
//! Layout, version 1 (FROZEN: blobs are stored by clients indefinitely; DO NOT CHANGE):
//!
//! ```text
//! offset  size  field
//! 0       1     format version, 0x01
//! 1       16    KMS key id (the UUID's 16 bytes)
//! 17      4     key version number, u32 big-endian (1 = the key's original material)
//! 21      12    AES-GCM nonce
//! 33      n     AES-256-GCM ciphertext of the plaintext
//! 33+n    16    GCM tag
//! ```
//!
//! The AAD is the 21-byte header followed by the canonical encryption context
//! (see [`crate::context`]), so changing any byte, the key id, the version or the context makes
//! decryption fail. Bytes 21.. are exactly [`crate::aead`]'s sealed layout.

use crate::aead;

/// Version byte of the only format defined so far.
pub const FORMAT_V1: u8 = 0x01;
/// Length of the authenticated header that precedes the sealed payload.
pub const HEADER_LEN: usize = 1 + 16 + 4;
/// Shortest well-formed blob: a header plus an empty sealed payload.
pub const MIN_LEN: usize = HEADER_LEN + aead::OVERHEAD;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    #[error("ciphertext blob is too short")]
    TooShort,
    #[error("unknown ciphertext blob format version {0}")]
    UnknownVersion(u8),
    #[error("ciphertext blob names key version 0")]
    ZeroKeyVersion,
}

/// A parsed blob; `sealed` is `nonce || ciphertext || tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiphertextBlob {
    pub key_id: [u8; 16],
    pub key_version: u32,
    pub sealed: Vec<u8>,
}

impl CiphertextBlob {
    /// The authenticated header for a blob under `key_id` at `key_version`.
    pub fn header(key_id: &[u8; 16], key_version: u32) -> [u8; HEADER_LEN] {
        let mut header = [0u8; HEADER_LEN];
        header[0] = FORMAT_V1;
        header[1..17].copy_from_slice(key_id);
        header[17..21].copy_from_slice(&key_version.to_be_bytes());
        header
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, BlobError> {
        let version = *bytes.first().ok_or(BlobError::TooShort)?;
        if version != FORMAT_V1 {
            return Err(BlobError::UnknownVersion(version));
        }
        if bytes.len() < MIN_LEN {
            return Err(BlobError::TooShort);
        }
        let mut key_id = [0u8; 16];
        key_id.copy_from_slice(&bytes[1..17]);
        let mut version_bytes = [0u8; 4];
        version_bytes.copy_from_slice(&bytes[17..21]);
        let key_version = u32::from_be_bytes(version_bytes);
        if key_version == 0 {
            return Err(BlobError::ZeroKeyVersion);
        }
        Ok(Self {
            key_id,
            key_version,
            sealed: bytes[HEADER_LEN..].to_vec(),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.sealed.len());
        out.extend_from_slice(&Self::header(&self.key_id, self.key_version));
        out.extend_from_slice(&self.sealed);
        out
    }

    /// The AAD for this blob: header followed by the canonical encryption context bytes.
    pub fn aad(key_id: &[u8; 16], key_version: u32, canonical_context: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(HEADER_LEN + canonical_context.len());
        aad.extend_from_slice(&Self::header(key_id, key_version));
        aad.extend_from_slice(canonical_context);
        aad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_then_write_gives_the_same_bytes() {
        let blob = CiphertextBlob {
            key_id: [7; 16],
            key_version: 3,
            sealed: vec![9; 40],
        };
        let bytes = blob.to_bytes();
        assert_eq!(bytes[0], FORMAT_V1);
        assert_eq!(&bytes[17..21], &[0, 0, 0, 3]);
        assert_eq!(CiphertextBlob::parse(&bytes).unwrap(), blob);
    }

    #[test]
    fn malformed_blobs_are_rejected() {
        assert_eq!(CiphertextBlob::parse(&[]), Err(BlobError::TooShort));
        assert_eq!(
            CiphertextBlob::parse(&[2; 80]),
            Err(BlobError::UnknownVersion(2))
        );
        assert_eq!(
            CiphertextBlob::parse(&[1; MIN_LEN - 1]),
            Err(BlobError::TooShort)
        );
        let mut zero_version = vec![1; MIN_LEN];
        zero_version[17..21].copy_from_slice(&[0; 4]);
        assert_eq!(
            CiphertextBlob::parse(&zero_version),
            Err(BlobError::ZeroKeyVersion)
        );
    }
}
