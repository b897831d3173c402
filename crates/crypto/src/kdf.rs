//! HKDF-SHA256 (RFC 5869): deriving purpose-bound 256-bit keys from one secret.

use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};

use crate::secret::SecretKey32;

struct Len32;

impl KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// HKDF-SHA256 extract with `salt`, then expand with `info` to 32 bytes.
pub fn derive_key32(ikm: &[u8], salt: &[u8], info: &[u8]) -> SecretKey32 {
    let mut derived = zeroize::Zeroizing::new([0u8; 32]);
    #[allow(clippy::expect_used)] // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
    Salt::new(HKDF_SHA256, salt)
        .extract(ikm)
        .expand(&[info], Len32)
        .and_then(|okm| okm.fill(derived.as_mut()))
        .expect("HKDF expand of 32 bytes");
    SecretKey32::from_bytes(*derived)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5869 Appendix A.1 (Test Case 1), first 32 bytes of the 42-byte OKM.
    #[test]
    fn rfc5869_test_case_1() {
        let ikm = [0x0b; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let okm = derive_key32(&ikm, &salt, &info);
        assert_eq!(
            hex(okm.expose()),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
