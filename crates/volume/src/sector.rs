//! The sector cipher: AES-256-XTS (IEEE Std 1619-2007, NIST SP 800-38E) over 4 KiB sectors,
//! tweak = the sector number as a 128-bit little-endian integer. This is dm-crypt's
//! `aes-xts-plain64` with `sector_size=4096` and `iv_large_sectors`, and what EBS uses.
//!
//! XTS is length-preserving, so a volume needs no per-sector metadata and a sector's
//! ciphertext sits at the sector's own offset. It gives confidentiality, not integrity
//! (as with every disk-encryption mode of this kind): see the crate documentation.

use std::fmt;

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::{Aes256, Block};
use atrest_crypto::secret::SecretBytes;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// Bytes per sector: the unit of encryption, tweak numbering and read-modify-write.
pub const SECTOR_SIZE: usize = 4096;

/// XTS-AES-256 takes two AES-256 keys: one for the data, one for the tweak.
pub const VOLUME_KEY_LEN: usize = 64;

const BLOCK: usize = 16;
const BLOCKS_PER_SECTOR: usize = SECTOR_SIZE / BLOCK;

/// A volume's key schedules, alive only while the volume is attached (and during a
/// re-encrypting copy). The `aes` crate's `zeroize` feature wipes them on drop.
///
/// The mode is written out here rather than taken from the `xts-mode` crate because that crate
/// encrypts one block at a time, and a 4 KiB sector is 256 independent blocks once the tweaks
/// are known: handing all of them to `encrypt_blocks` lets AES-NI pipeline eight at a time,
/// several times the single-block rate. A 4 KiB sector is a whole number of blocks, so XTS's
/// ciphertext stealing never applies. The tests check this against `xts-mode` and IEEE 1619.
pub struct SectorCipher {
    data: Aes256,
    tweak: Aes256,
}

impl SectorCipher {
    /// Builds the cipher from a 64-byte volume key (data key, then tweak key); `None` for any
    /// other length or for two equal halves, which IEEE 1619-2018 and FIPS forbid.
    pub fn new(key: &SecretBytes) -> Option<Self> {
        let key = key.expose();
        if key.len() != VOLUME_KEY_LEN {
            return None;
        }
        let (data_key, tweak_key) = key.split_at(VOLUME_KEY_LEN / 2);
        if bool::from(data_key.ct_eq(tweak_key)) {
            return None;
        }
        Some(Self {
            data: Aes256::new_from_slice(data_key).ok()?,
            tweak: Aes256::new_from_slice(tweak_key).ok()?,
        })
    }

    /// Encrypts whole sectors in place; `sectors` starts at sector number `first`.
    pub fn encrypt(&self, sectors: &mut [u8], first: u64) {
        self.apply(sectors, first, |blocks| self.data.encrypt_blocks(blocks));
    }

    /// Decrypts whole sectors in place; `sectors` starts at sector number `first`.
    pub fn decrypt(&self, sectors: &mut [u8], first: u64) {
        self.apply(sectors, first, |blocks| self.data.decrypt_blocks(blocks));
    }

    /// XTS on each sector: T = AES(tweak key, sector number as 128-bit little-endian); block i
    /// becomes cipher(P_i ^ T_i) ^ T_i with T_(i+1) = T_i * alpha in GF(2^128).
    fn apply(&self, sectors: &mut [u8], first: u64, cipher: impl Fn(&mut [Block])) {
        debug_assert!(sectors.len().is_multiple_of(SECTOR_SIZE));
        let mut blocks = [Block::default(); BLOCKS_PER_SECTOR];
        let mut tweaks = [0u128; BLOCKS_PER_SECTOR];
        for (index, sector) in sectors.chunks_exact_mut(SECTOR_SIZE).enumerate() {
            let mut tweak = Block::from((u128::from(first) + index as u128).to_le_bytes());
            self.tweak.encrypt_block(&mut tweak);
            let mut tweak = u128::from_le_bytes(tweak.into());
            for ((block, slot), bytes) in blocks
                .iter_mut()
                .zip(tweaks.iter_mut())
                .zip(sector.chunks_exact(BLOCK))
            {
                *slot = tweak;
                *block = (le_u128(bytes) ^ tweak).to_le_bytes().into();
                tweak = times_alpha(tweak);
            }
            cipher(&mut blocks);
            for ((block, tweak), bytes) in blocks
                .iter()
                .zip(tweaks.iter())
                .zip(sector.chunks_exact_mut(BLOCK))
            {
                bytes
                    .copy_from_slice(&(u128::from_le_bytes((*block).into()) ^ tweak).to_le_bytes());
            }
        }
        for block in &mut blocks {
            block.as_mut_slice().zeroize();
        }
        tweaks.zeroize();
    }
}

/// Multiplication by the primitive element x of GF(2^128) mod x^128 + x^7 + x^2 + x + 1, on
/// the little-endian representation IEEE 1619 uses.
fn times_alpha(value: u128) -> u128 {
    (value << 1) ^ ((value >> 127) * 0x87)
}

fn le_u128(bytes: &[u8]) -> u128 {
    let mut array = [0u8; BLOCK];
    array.copy_from_slice(bytes);
    u128::from_le_bytes(array)
}

impl fmt::Debug for SectorCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SectorCipher([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SecretBytes {
        SecretBytes::new((0..VOLUME_KEY_LEN as u8).map(|i| i ^ seed).collect())
    }

    /// IEEE 1619-2007 Annex B, vector 10 (XTS-AES-256, data unit number 0xff, 512 bytes),
    /// through the reference implementation (`xts-mode`): the key split and tweak layout.
    #[test]
    fn reference_matches_ieee_1619_vector_10() {
        let mut key = hex("2718281828459045235360287471352662497757247093699959574966967627");
        key.extend_from_slice(&hex(
            "3141592653589793238462643383279502884197169399375105820974944592",
        ));
        let mut data: Vec<u8> = (0..512).map(|i| i as u8).collect();
        reference(&key).encrypt_sector(&mut data, xts_mode::get_tweak_default(0xff));
        assert_eq!(
            &data[..32],
            &hex("1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b")[..]
        );
        assert_eq!(
            &data[480..],
            &hex("773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151")[..]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Our pipelined XTS equals the reference on random keys, data and sector numbers,
        /// including sector numbers past 2^64 - 2 (the tweak is 128 bits wide).
        #[test]
        fn matches_the_reference_implementation(
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 64),
            seed in proptest::prelude::any::<u8>(),
            first in proptest::prelude::any::<u64>(),
        ) {
            proptest::prop_assume!(key[..32] != key[32..]);
            let cipher = SectorCipher::new(&SecretBytes::new(key.clone())).expect("valid key");
            let plaintext: Vec<u8> = (0..2 * SECTOR_SIZE).map(|i| (i as u8).wrapping_mul(seed)).collect();
            let mut ours = plaintext.clone();
            cipher.encrypt(&mut ours, first);
            let mut theirs = plaintext.clone();
            reference(&key).encrypt_area(&mut theirs, SECTOR_SIZE, u128::from(first), xts_mode::get_tweak_default);
            proptest::prop_assert_eq!(&ours, &theirs);
            cipher.decrypt(&mut ours, first);
            proptest::prop_assert_eq!(ours, plaintext);
        }
    }

    fn reference(key: &[u8]) -> xts_mode::Xts128<Aes256> {
        xts_mode::Xts128::new(
            Aes256::new_from_slice(&key[..32]).expect("key"),
            Aes256::new_from_slice(&key[32..]).expect("key"),
        )
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
