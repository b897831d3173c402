//! AES-256-GCM (NIST SP 800-38D) with a fresh random 96-bit nonce per message.
//!
//! Sealed layout (FROZEN, it is embedded in stored formats): `nonce (12) || ciphertext || tag (16)`.
//! Random nonces are safe here because no single key seals anywhere near 2^32 messages between
//! rotations in atrest's use (KMS keys rotate; data keys seal one object or record).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use zeroize::Zeroizing;

use crate::secret::{SecretBytes, SecretKey32};

/// Bytes a sealed message adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;
pub const TAG_LEN: usize = 16;

/// Authentication failed or the input was malformed; deliberately carries no detail (no oracle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ciphertext failed authentication")]
pub struct OpenError;

/// An expanded AES-256-GCM key, ready for repeated use (the HSM caches these).
/// Nonces come from [`crate::random::gcm_nonce`] (the CSPRNG, drawn in batches).
pub struct AeadKey(LessSafeKey);

impl AeadKey {
    pub fn new(key: &SecretKey32) -> Self {
        #[allow(clippy::expect_used)] // AES_256_GCM accepts every 32-byte key.
        let inner = UnboundKey::new(&AES_256_GCM, key.expose()).expect("32-byte AES key");
        Self(LessSafeKey::new(inner))
    }

    /// Encrypts `plaintext`, binding `aad`, and returns `nonce || ciphertext || tag`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = crate::random::gcm_nonce();
        let mut sealed = Vec::with_capacity(OVERHEAD + plaintext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plaintext);
        #[allow(clippy::expect_used)] // only fails for inputs over 64 GiB, which never reach here.
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed[NONCE_LEN..],
            )
            .expect("AES-GCM seal");
        sealed.extend_from_slice(tag.as_ref());
        sealed
    }

    /// Verifies the tag (in constant time, inside AWS-LC) before releasing any plaintext.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<SecretBytes, OpenError> {
        if sealed.len() < OVERHEAD {
            return Err(OpenError);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError)?;
        let mut buffer = Zeroizing::new(body.to_vec());
        let plain_len = self
            .0
            .open_in_place(nonce, Aad::from(aad), &mut buffer)
            .map_err(|_| OpenError)?
            .len();
        buffer.truncate(plain_len);
        Ok(SecretBytes::new(std::mem::take(&mut *buffer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random;

    #[test]
    fn seal_then_open_round_trips() {
        let key = AeadKey::new(&random::key32());
        let sealed = key.seal(b"attack at dawn", b"header");
        assert_eq!(sealed.len(), 14 + OVERHEAD);
        assert_eq!(
            key.open(&sealed, b"header").unwrap().expose(),
            b"attack at dawn"
        );
    }

    #[test]
    fn any_flipped_bit_or_wrong_aad_fails() {
        let key = AeadKey::new(&random::key32());
        let sealed = key.seal(b"attack at dawn", b"header");
        for index in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[index] ^= 0x01;
            assert_eq!(key.open(&tampered, b"header"), Err(OpenError));
        }
        assert_eq!(key.open(&sealed, b"headex"), Err(OpenError));
        assert_eq!(key.open(&sealed[..OVERHEAD - 1], b"header"), Err(OpenError));
    }

    #[test]
    fn gcm_spec_test_case_16_opens() {
        // McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", Test Case 16
        // (AES-256, 96-bit IV, 60-byte plaintext, 20-byte AAD).
        let key = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
        let nonce = hex("cafebabefacedbaddecaf888");
        let plaintext = hex(concat!(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72",
            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
        ));
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let ciphertext = hex(concat!(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa",
            "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
        ));
        let tag = hex("76fc6ece0f4e1768cddf8853bb2d551b");
        let sealed = [nonce, ciphertext, tag].concat();
        let key = AeadKey::new(&SecretKey32::from_slice(&key).unwrap());
        assert_eq!(key.open(&sealed, &aad).unwrap().expose(), &plaintext[..]);
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }
}
