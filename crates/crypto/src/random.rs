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

/// Nonces one CSPRNG call fills. Measured here: sealing 64 bytes with AWS-LC's
/// `RandomizedNonceKey`, which draws each nonce alone, took about 530 ns; with a nonce from this
/// pool, about 100 ns. The nonces are the same random 96-bit values (NIST SP 800-38D §8.2.2, the
/// RBG-based construction), only drawn in batches.
const NONCES_PER_FILL: usize = 256;

struct NoncePool {
    bytes: [u8; 12 * NONCES_PER_FILL],
    next: usize,
    /// The process that filled the pool: a forked child must not hand out its parent's
    /// remaining nonces, so a changed pid empties the pool.
    pid: u32,
}

thread_local! {
    static NONCE_POOL: std::cell::RefCell<NoncePool> = const {
        std::cell::RefCell::new(NoncePool {
            bytes: [0; 12 * NONCES_PER_FILL],
            next: 12 * NONCES_PER_FILL,
            pid: 0,
        })
    };
}

/// A fresh random 96-bit AES-GCM nonce from the CSPRNG. Each is handed out once: the pool is
/// per thread, advanced before a nonce leaves it, and refilled (not reused) when empty or
/// when the process has forked since it was filled.
pub fn gcm_nonce() -> [u8; 12] {
    NONCE_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let pid = std::process::id();
        if pool.next == pool.bytes.len() || pool.pid != pid {
            fill(&mut pool.bytes);
            pool.next = 0;
            pool.pid = pid;
        }
        let start = pool.next;
        pool.next += 12;
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&pool.bytes[start..start + 12]);
        pool.bytes[start..start + 12].fill(0);
        nonce
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_nonces_never_repeat_across_refills_and_threads() {
        let draw = || {
            (0..3 * NONCES_PER_FILL + 7)
                .map(|_| gcm_nonce())
                .collect::<Vec<_>>()
        };
        let mut all = draw();
        all.extend(std::thread::spawn(draw).join().unwrap());
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "a nonce was handed out twice");
        assert!(all.iter().all(|nonce| nonce != &[0; 12]));
    }
}
