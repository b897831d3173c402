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
    /// [`fork_generation`] when the pool was filled: a forked child must not hand out its
    /// parent's remaining nonces, so a changed generation empties the pool.
    generation: u64,
}

thread_local! {
    static NONCE_POOL: std::cell::RefCell<NoncePool> = const {
        std::cell::RefCell::new(NoncePool {
            bytes: [0; 12 * NONCES_PER_FILL],
            next: 12 * NONCES_PER_FILL,
            generation: u64::MAX,
        })
    };
}

/// A fresh random 96-bit AES-GCM nonce from the CSPRNG. Each is handed out once: the pool is
/// per thread, advanced before a nonce leaves it, and refilled (not reused) when empty or
/// when the process has forked since it was filled.
pub fn gcm_nonce() -> [u8; 12] {
    let generation = fork_generation();
    NONCE_POOL.with(|pool| pool.borrow_mut().draw(generation))
}

impl NoncePool {
    fn draw(&mut self, generation: u64) -> [u8; 12] {
        if self.next == self.bytes.len() || self.generation != generation {
            fill(&mut self.bytes);
            self.next = 0;
            self.generation = generation;
        }
        let start = self.next;
        self.next += 12;
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&self.bytes[start..start + 12]);
        self.bytes[start..start + 12].fill(0);
        nonce
    }
}

/// How many times this process's ancestry forked since the handler was installed: 0 in the
/// process that installed it, bumped in each child as fork(2) returns there.
///
/// Why not compare `getpid()`: it is a system call on every nonce (glibc stopped caching the
/// pid), and on this VM it cost about half a microsecond, as much as the seal itself.
fn fork_generation() -> u64 {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(install_fork_handler);
    FORK_GENERATION.load(std::sync::atomic::Ordering::Acquire)
}

static FORK_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs in the child, in the forking thread, before fork(2) returns there: one atomic add,
/// which is async-signal-safe as POSIX requires of atfork child handlers.
extern "C" fn count_fork_in_child() {
    FORK_GENERATION.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
}

// SAFETY: `pthread_atfork` only records the handler; ours touches nothing but a static atomic,
// which is valid in a freshly forked child. There is no safe binding for it in std.
#[allow(unsafe_code)]
fn install_fork_handler() {
    // SAFETY: see above; null prepare/parent handlers are allowed by POSIX.
    let status = unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
    // ENOMEM is the only documented failure; without the handler nonces could repeat in a
    // forked child, so nothing may draw nonces at all.
    assert_eq!(status, 0, "pthread_atfork failed: {status}");
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

    #[test]
    fn a_new_fork_generation_discards_the_rest_of_the_pool() {
        let mut pool = NoncePool {
            bytes: [0; 12 * NONCES_PER_FILL],
            next: 12 * NONCES_PER_FILL,
            generation: u64::MAX,
        };
        pool.draw(0);
        pool.draw(0);
        assert_eq!(pool.next, 24);
        let remaining = pool.bytes[24..36].to_vec();
        let after_fork = pool.draw(1);
        assert_eq!(
            (pool.next, pool.generation),
            (12, 1),
            "the pool was refilled"
        );
        assert_ne!(after_fork.as_slice(), remaining.as_slice());
    }

    /// The child of a real fork(2) sees a new generation, so its first nonce comes from a fresh
    /// fill and not from the pool it inherited.
    #[test]
    #[allow(unsafe_code)]
    fn a_forked_child_sees_a_new_fork_generation() {
        use std::io::{Read, Write};
        let parent = fork_generation();
        let _ = gcm_nonce();
        let (mut reader, mut writer) = std::io::pipe().unwrap();
        // SAFETY: between fork and _exit the child only loads an atomic and writes 8 bytes to
        // a pipe, both async-signal-safe, as POSIX requires in the child of a threaded process.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let seen = FORK_GENERATION.load(std::sync::atomic::Ordering::Acquire);
            let _ = writer.write_all(&seen.to_le_bytes());
            // SAFETY: ends the child at once, running no atexit handlers or destructors.
            unsafe { libc::_exit(0) };
        }
        drop(writer);
        let mut seen = [0u8; 8];
        reader.read_exact(&mut seen).unwrap();
        // SAFETY: reaps the child forked above; a null status pointer is allowed.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        assert_eq!(u64::from_le_bytes(seen), parent + 1);
        assert_eq!(
            fork_generation(),
            parent,
            "the parent's generation is unchanged"
        );
    }
}
