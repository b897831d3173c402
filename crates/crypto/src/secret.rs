//! Secret newtypes: zeroized on drop, redacted in `Debug`, compared in constant time.
//!
//! They deliberately do not implement `Clone`: a copy of a secret must be an explicit
//! `expose()` followed by a new constructor call, so it shows up in review.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// A variable-length secret (a data key, a plaintext, an access secret).
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Copies `bytes` into a new secret; the caller remains responsible for its own copy.
    pub fn copy_from(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([REDACTED; {}])", self.0.len())
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl Eq for SecretBytes {}

/// A 256-bit symmetric key (AES-256 or an HMAC key of that size).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretKey32([u8; 32]);

impl SecretKey32 {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Returns `None` unless `bytes` is exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(array))
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey32([REDACTED])")
    }
}

impl PartialEq for SecretKey32 {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SecretKey32 {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_secret() {
        let secret = SecretBytes::copy_from(b"hunter2-hunter2");
        let printed = format!("{secret:?}");
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("15"));
        let key = SecretKey32::from_bytes([0x41; 32]);
        assert!(!format!("{key:?}").contains("AAAA"));
    }

    #[test]
    fn equality_compares_contents() {
        assert_eq!(
            SecretBytes::copy_from(b"abc"),
            SecretBytes::copy_from(b"abc")
        );
        assert_ne!(
            SecretBytes::copy_from(b"abc"),
            SecretBytes::copy_from(b"abd")
        );
        assert_ne!(
            SecretBytes::copy_from(b"abc"),
            SecretBytes::copy_from(b"ab")
        );
        assert!(SecretKey32::from_slice(&[0; 31]).is_none());
    }
}
