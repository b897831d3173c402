//! The system CSPRNG (AWS-LC's), the only source of randomness atrest uses.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::secret::{SecretBytes, SecretKey32};

/// Fills `buffer` from the CSPRNG. AWS-LC aborts the process rather than return weak bytes, so
/// a failure here means the platform has no usable entropy source at all.
pub fn fill(buffer: &mut [u8]) {
    #[allow(clippy::expect_used)] // no entropy source: nothing secure can continue.
    SystemRandom::new()
        .fill(buffer)
        .expect("system CSPRNG failed");
}

pub fn bytes(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fill(&mut out);
    out
}

pub fn secret_bytes(len: usize) -> SecretBytes {
    let mut out = vec![0u8; len];
    fill(&mut out);
    SecretBytes::new(out)
}

pub fn key32() -> SecretKey32 {
    let mut key = [0u8; 32];
    fill(&mut key);
    let secret = SecretKey32::from_bytes(key);
    zeroize::Zeroize::zeroize(&mut key);
    secret
}
