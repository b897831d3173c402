//! The sector cipher: AES-256-XTS (IEEE Std 1619-2007, NIST SP 800-38E) over 4 KiB sectors,
//! tweak = the sector number as a 128-bit little-endian integer. This is dm-crypt's
//! `aes-xts-plain64` with `sector_size=4096` and `iv_large_sectors`, and what EBS uses.
//!
//! XTS is length-preserving, so a volume needs no per-sector metadata and a sector's
//! ciphertext sits at the sector's own offset. It gives confidentiality, not integrity
//! (as with every disk-encryption mode of this kind): see the crate documentation.

use std::fmt;

use aes::Aes256;
use aes::cipher::KeyInit;
use atrest_crypto::secret::SecretBytes;
use xts_mode::{Xts128, get_tweak_default};

/// Bytes per sector: the unit of encryption, tweak numbering and read-modify-write.
pub const SECTOR_SIZE: usize = 4096;

/// XTS-AES-256 takes two AES-256 keys: one for the data, one for the tweak.
pub const VOLUME_KEY_LEN: usize = 64;

/// A volume's plaintext key schedule, alive only while the volume is attached. The AES key
/// schedules are wiped on drop (the `aes` crate's `zeroize` feature).
pub struct SectorCipher(Xts128<Aes256>);

impl SectorCipher {
    /// Builds the cipher from a 64-byte volume key; `None` for any other length or for two
    /// equal halves, which IEEE 1619-2018 and FIPS forbid.
    pub fn new(key: &SecretBytes) -> Option<Self> {
        let key = key.expose();
        if key.len() != VOLUME_KEY_LEN {
            return None;
        }
        let (data_key, tweak_key) = key.split_at(VOLUME_KEY_LEN / 2);
        if bool::from(subtle_eq(data_key, tweak_key)) {
            return None;
        }
        let data = Aes256::new_from_slice(data_key).ok()?;
        let tweak = Aes256::new_from_slice(tweak_key).ok()?;
        Some(Self(Xts128::new(data, tweak)))
    }

    /// Encrypts whole sectors in place; `sectors` starts at sector number `first`.
    pub fn encrypt(&self, sectors: &mut [u8], first: u64) {
        debug_assert!(sectors.len().is_multiple_of(SECTOR_SIZE));
        self.0
            .encrypt_area(sectors, SECTOR_SIZE, u128::from(first), get_tweak_default);
    }

    /// Decrypts whole sectors in place; `sectors` starts at sector number `first`.
    pub fn decrypt(&self, sectors: &mut [u8], first: u64) {
        debug_assert!(sectors.len().is_multiple_of(SECTOR_SIZE));
        self.0
            .decrypt_area(sectors, SECTOR_SIZE, u128::from(first), get_tweak_default);
    }
}

impl fmt::Debug for SectorCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SectorCipher([REDACTED])")
    }
}

fn subtle_eq(a: &[u8], b: &[u8]) -> subtle::Choice {
    use subtle::ConstantTimeEq;
    a.ct_eq(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SecretBytes {
        SecretBytes::new((0..VOLUME_KEY_LEN as u8).map(|i| i ^ seed).collect())
    }

    /// IEEE 1619-2007 Annex B, vector 10 (XTS-AES-256, data unit 0xff, 512 bytes): the
    /// tweak layout and key split are the standard's.
    #[test]
    fn matches_ieee_1619_vector_10() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&hex(
            "2718281828459045235360287471352662497757247093699959574966967627",
        ));
        bytes.extend_from_slice(&hex(
            "3141592653589793238462643383279502884197169399375105820974944592",
        ));
        let key = SecretBytes::new(bytes);
        let plaintext: Vec<u8> = (0..512).map(|i| i as u8).collect();
        let mut data = plaintext.clone();
        let SectorCipher(xts) = SectorCipher::new(&key).expect("valid key");
        xts.encrypt_sector(&mut data, get_tweak_default(0xff));
        assert_eq!(
            &data[..32],
            &hex("1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b")[..]
        );
        assert_eq!(
            &data[480..],
            &hex("773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151")[..]
        );
    }

    #[test]
    fn sectors_round_trip_and_depend_on_their_number() {
        let cipher = SectorCipher::new(&key(7)).expect("valid key");
        let plaintext = vec![0x5au8; 2 * SECTOR_SIZE];
        let mut at_zero = plaintext.clone();
        cipher.encrypt(&mut at_zero, 0);
        let mut at_nine = plaintext.clone();
        cipher.encrypt(&mut at_nine, 9);
        assert_ne!(at_zero, at_nine);
        assert_ne!(at_zero[..SECTOR_SIZE], at_zero[SECTOR_SIZE..]);
        cipher.decrypt(&mut at_nine, 9);
        assert_eq!(at_nine, plaintext);
    }

    #[test]
    fn refuses_bad_keys() {
        assert!(SectorCipher::new(&SecretBytes::new(vec![1; 32])).is_none());
        assert!(SectorCipher::new(&SecretBytes::new(vec![1; 64])).is_none());
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }
}
