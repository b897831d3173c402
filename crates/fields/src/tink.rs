//! Google Tink's wire formats for one field value, so a Tink program in any language that holds
//! the column's keyset reads what we write (and we read what it writes).
//!
//! Every value starts with Tink's 5-byte `TINK` output prefix: `0x01 || key_id (u32, big endian)`
//! (Tink's "Wire format" page). The key id names the data key version, so a column keeps
//! decrypting after its data key rotates. After the prefix:
//! - randomized (Tink `AesGcmKey`, AEAD): `iv (12) || ciphertext || tag (16)`, AES-256-GCM with the
//!   associated data as AAD (NIST SP 800-38D);
//! - deterministic (Tink `AesSivKey`, deterministic AEAD): `siv (16) || ciphertext`, AES-SIV with a
//!   64-byte key and the associated data as the single header (RFC 5297; S2V over `[ad, plaintext]`).
//!
//! The associated data itself is not stored; see [`crate::aad`].

use std::fmt;

use aes_siv::KeyInit;
use aes_siv::siv::Aes256Siv;
use atrest_crypto::SecretBytes;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::error::{FieldError, Result};

/// Tink's `OutputPrefixType.TINK` marker byte.
pub const TINK_START_BYTE: u8 = 0x01;
/// Marker byte plus the 4-byte key id.
pub const PREFIX_LEN: usize = 5;
const GCM_TAG_LEN: usize = 16;
const SIV_LEN: usize = 16;

/// How a column is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// AES-256-GCM with a random IV: equal values encrypt differently; the row is bound too.
    Randomized,
    /// AES-SIV: equal values encrypt equally within a key version, so `WHERE col = $1` works.
    Deterministic,
}

impl Mode {
    /// Bytes of data key material: AES-256 for GCM, two AES-256 keys for SIV.
    pub fn key_len(self) -> usize {
        match self {
            Self::Randomized => 32,
            Self::Deterministic => 64,
        }
    }

    /// The name stored in the key table and shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Randomized => "randomized",
            Self::Deterministic => "deterministic",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "randomized" => Ok(Self::Randomized),
            "deterministic" => Ok(Self::Deterministic),
            other => Err(FieldError::Corrupt(format!(
                "unknown column mode {other:?}"
            ))),
        }
    }

    /// Tink's key type URL for this mode.
    pub fn type_url(self) -> &'static str {
        match self {
            Self::Randomized => "type.googleapis.com/google.crypto.tink.AesGcmKey",
            Self::Deterministic => "type.googleapis.com/google.crypto.tink.AesSivKey",
        }
    }

    /// The protobuf field number of `key_value` in Tink's `AesGcmKey` (3) and `AesSivKey` (2).
    fn key_value_field(self) -> u8 {
        match self {
            Self::Randomized => 3,
            Self::Deterministic => 2,
        }
    }

    /// Bytes a value grows by when encrypted (prefix included).
    pub fn overhead(self) -> usize {
        match self {
            Self::Randomized => PREFIX_LEN + NONCE_LEN + GCM_TAG_LEN,
            Self::Deterministic => PREFIX_LEN + SIV_LEN,
        }
    }
}

/// The 5-byte prefix of values written under `key_id`.
pub fn prefix(key_id: u32) -> [u8; PREFIX_LEN] {
    let id = key_id.to_be_bytes();
    [TINK_START_BYTE, id[0], id[1], id[2], id[3]]
}

/// The key id a value names, or an error for a value too short or without Tink's prefix.
pub fn key_id_of(value: &[u8]) -> Result<u32> {
    match value {
        [TINK_START_BYTE, a, b, c, d, ..] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ if value.len() < PREFIX_LEN => Err(FieldError::Malformed(
            "value is shorter than the 5-byte key prefix (truncated?)",
        )),
        _ => Err(FieldError::Malformed(
            "value does not start with Tink's 0x01 prefix (not encrypted by atrest or Tink)",
        )),
    }
}

/// One data key version, expanded and ready: the thing the cache holds.
pub struct FieldCipher {
    key_id: u32,
    inner: Inner,
}

enum Inner {
    /// Nonces come from [`atrest_crypto::random::gcm_nonce`] (the CSPRNG, drawn in batches):
    /// `RandomizedNonceKey` draws each one alone, which cost more than the sealing.
    Gcm(LessSafeKey),
    /// AES-SIV keeps mutable CMAC state and is not `Clone`: one expanded instance is reused by
    /// whichever call finds it free (expanding took a quarter of a 64-byte encryption); a call
    /// that finds it busy expands its own from the key rather than wait.
    Siv {
        material: Zeroizing<[u8; 64]>,
        expanded: Box<std::sync::Mutex<Aes256Siv>>,
    },
}

impl fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldCipher({:?}, key id {})", self.mode(), self.key_id)
    }
}

impl FieldCipher {
    /// Expands `key` (32 bytes for randomized, 64 for deterministic). The caller's copy stays
    /// the caller's to drop; nothing here keeps the raw bytes.
    pub fn new(mode: Mode, key_id: u32, key: &SecretBytes) -> Result<Self> {
        if key.len() != mode.key_len() {
            return Err(FieldError::Corrupt(format!(
                "a {} data key must be {} bytes, not {}",
                mode.as_str(),
                mode.key_len(),
                key.len()
            )));
        }
        let inner = match mode {
            Mode::Randomized => Inner::Gcm(LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, key.expose())
                    .map_err(|_| FieldError::Corrupt("AES-256-GCM refused the key".into()))?,
            )),
            Mode::Deterministic => {
                let mut material = Zeroizing::new([0; 64]);
                material.copy_from_slice(key.expose());
                let expanded = Box::new(std::sync::Mutex::new(Aes256Siv::new(
                    material.as_ref().into(),
                )));
                Inner::Siv { material, expanded }
            }
        };
        Ok(Self { key_id, inner })
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn mode(&self) -> Mode {
        match self.inner {
            Inner::Gcm(_) => Mode::Randomized,
            Inner::Siv { .. } => Mode::Deterministic,
        }
    }

    /// `prefix || body` with `associated_data` bound.
    pub fn encrypt(&self, plaintext: &[u8], associated_data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + self.mode().overhead());
        out.extend_from_slice(&prefix(self.key_id));
        match &self.inner {
            Inner::Gcm(key) => {
                let nonce = atrest_crypto::random::gcm_nonce();
                out.extend_from_slice(&nonce);
                out.extend_from_slice(plaintext);
                let body = &mut out[PREFIX_LEN + NONCE_LEN..];
                #[allow(clippy::expect_used)] // only fails past 64 GiB, far beyond a field.
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(associated_data),
                        body,
                    )
                    .expect("AES-GCM seal");
                out.extend_from_slice(tag.as_ref());
            }
            Inner::Siv { material, expanded } => {
                #[allow(clippy::expect_used)] // fails only for more than 126 headers; we pass one.
                let sealed = with_siv(material, expanded, |siv| {
                    siv.encrypt([associated_data], plaintext)
                })
                .expect("AES-SIV with one header");
                out.extend_from_slice(&sealed);
            }
        }
        out
    }

    /// Checks the prefix names this key, then authenticates before releasing any plaintext.
    pub fn decrypt(&self, value: &[u8], associated_data: &[u8]) -> Result<SecretBytes> {
        if key_id_of(value)? != self.key_id {
            return Err(FieldError::WrongKey);
        }
        let body = &value[PREFIX_LEN..];
        match &self.inner {
            Inner::Gcm(key) => {
                if body.len() < NONCE_LEN + GCM_TAG_LEN {
                    return Err(FieldError::Malformed(
                        "value is shorter than an AES-GCM IV and tag (truncated?)",
                    ));
                }
                let (iv, sealed) = body.split_at(NONCE_LEN);
                let nonce =
                    Nonce::try_assume_unique_for_key(iv).map_err(|_| FieldError::Authentication)?;
                let mut buffer = Zeroizing::new(sealed.to_vec());
                let len = key
                    .open_in_place(nonce, Aad::from(associated_data), &mut buffer)
                    .map_err(|_| FieldError::Authentication)?
                    .len();
                buffer.truncate(len);
                Ok(SecretBytes::new(std::mem::take(&mut *buffer)))
            }
            Inner::Siv { material, expanded } => {
                if body.len() < SIV_LEN {
                    return Err(FieldError::Malformed(
                        "value is shorter than an AES-SIV tag (truncated?)",
                    ));
                }
                with_siv(material, expanded, |siv| {
                    siv.decrypt([associated_data], body)
                })
                .map(SecretBytes::new)
                .map_err(|_| FieldError::Authentication)
            }
        }
    }
}

/// Runs `use_siv` on the shared expanded instance if it is free, else on a fresh one. A
/// poisoned lock only means a panic elsewhere mid-call; S2V state is reset per message, so the
/// instance is still sound, but it is left alone and a fresh one used.
fn with_siv<R>(
    material: &[u8; 64],
    expanded: &std::sync::Mutex<Aes256Siv>,
    use_siv: impl FnOnce(&mut Aes256Siv) -> R,
) -> R {
    match expanded.try_lock() {
        Ok(mut siv) => use_siv(&mut siv),
        Err(_) => use_siv(&mut Aes256Siv::new(material.into())),
    }
}

/// Tink's serialized `AesGcmKey`/`AesSivKey` message: `version` (field 1) is 0 and so omitted in
/// proto3; `key_value` is a length-delimited field. Key lengths are 32 or 64, so the length
/// fits the single varint byte used here.
pub fn serialized_key_proto(mode: Mode, key: &SecretBytes) -> Zeroizing<Vec<u8>> {
    let mut proto = Zeroizing::new(Vec::with_capacity(key.len() + 2));
    proto.push(mode.key_value_field() << 3 | 2);
    #[allow(clippy::cast_possible_truncation)] // 32 or 64: checked by FieldCipher::new's callers
    proto.push(key.len() as u8);
    proto.extend_from_slice(key.expose());
    proto
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(mode: Mode, byte: u8) -> SecretBytes {
        SecretBytes::new(vec![byte; mode.key_len()])
    }

    #[test]
    fn randomized_values_differ_and_round_trip() {
        let cipher = FieldCipher::new(Mode::Randomized, 7, &key(Mode::Randomized, 1)).unwrap();
        let a = cipher.encrypt(b"alice@example.com", b"ad");
        let b = cipher.encrypt(b"alice@example.com", b"ad");
        assert_ne!(a, b);
        assert_eq!(&a[..5], &[1, 0, 0, 0, 7]);
        assert_eq!(a.len(), 17 + Mode::Randomized.overhead());
        assert_eq!(
            cipher.decrypt(&a, b"ad").unwrap().expose(),
            b"alice@example.com"
        );
        assert!(matches!(
            cipher.decrypt(&a, b"other"),
            Err(FieldError::Authentication)
        ));
    }

    #[test]
    fn deterministic_values_repeat_and_round_trip() {
        let cipher =
            FieldCipher::new(Mode::Deterministic, 9, &key(Mode::Deterministic, 2)).unwrap();
        let a = cipher.encrypt(b"alice", b"ad");
        assert_eq!(a, cipher.encrypt(b"alice", b"ad"));
        assert_ne!(a, cipher.encrypt(b"alice", b"other ad"));
        assert_eq!(cipher.decrypt(&a, b"ad").unwrap().expose(), b"alice");
        // The shared expanded instance is left clean by a failed check, and a fresh one (the
        // instance busy on another thread) gives the same value.
        assert!(cipher.decrypt(&a, b"wrong ad").is_err());
        assert_eq!(a, cipher.encrypt(b"alice", b"ad"));
        let Inner::Siv { expanded, .. } = &cipher.inner else {
            unreachable!()
        };
        let held = expanded.lock().unwrap();
        assert_eq!(a, cipher.encrypt(b"alice", b"ad"));
        assert_eq!(cipher.decrypt(&a, b"ad").unwrap().expose(), b"alice");
        drop(held);
    }

    #[test]
    fn truncated_and_foreign_values_are_clean_errors() {
        let cipher = FieldCipher::new(Mode::Randomized, 7, &key(Mode::Randomized, 1)).unwrap();
        let value = cipher.encrypt(b"x", b"");
        for len in 0..value.len() {
            assert!(cipher.decrypt(&value[..len], b"").is_err(), "len {len}");
        }
        let other = FieldCipher::new(Mode::Randomized, 8, &key(Mode::Randomized, 1)).unwrap();
        assert!(matches!(
            other.decrypt(&value, b""),
            Err(FieldError::WrongKey)
        ));
        assert!(key_id_of(b"plain text").is_err());
    }

    /// RFC 5297 appendix A.1 (deterministic authenticated encryption), with the RFC's 32-byte
    /// key; Tink's AES-SIV is the same construction with a 64-byte key.
    #[test]
    fn aes_siv_matches_rfc_5297_a1() {
        let key = hex("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        let ad = hex("101112131415161718191a1b1c1d1e1f2021222324252627");
        let plaintext = hex("112233445566778899aabbccddee");
        let mut siv = aes_siv::siv::Aes128Siv::new_from_slice(&key).unwrap();
        let out = siv.encrypt([&ad], &plaintext).unwrap();
        assert_eq!(
            out,
            hex("85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c")
        );
    }

    #[test]
    fn key_protos_match_tinks_encoding() {
        // Tink's own keysets show `EiA...` (0x12 0x20 ...) style values: field tag then length.
        let gcm = serialized_key_proto(Mode::Randomized, &key(Mode::Randomized, 0xab));
        assert_eq!(&gcm[..2], &[0x1a, 32]);
        let siv = serialized_key_proto(Mode::Deterministic, &key(Mode::Deterministic, 0xab));
        assert_eq!(&siv[..2], &[0x12, 64]);
    }

    proptest::proptest! {
        #[test]
        fn round_trips_and_binds_the_associated_data(
            plaintext in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            ad in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            key_id in proptest::num::u32::ANY,
            deterministic in proptest::bool::ANY,
        ) {
            let mode = if deterministic { Mode::Deterministic } else { Mode::Randomized };
            let cipher = FieldCipher::new(mode, key_id, &key(mode, 3)).unwrap();
            let value = cipher.encrypt(&plaintext, &ad);
            proptest::prop_assert_eq!(value.len(), plaintext.len() + mode.overhead());
            proptest::prop_assert_eq!(key_id_of(&value).unwrap(), key_id);
            let opened = cipher.decrypt(&value, &ad).unwrap();
            proptest::prop_assert_eq!(opened.expose(), &plaintext[..]);
            let mut other_ad = ad.clone();
            other_ad.push(0);
            proptest::prop_assert!(cipher.decrypt(&value, &other_ad).is_err());
        }
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }
}
