//! Encryption context: the non-secret key/value pairs bound to a ciphertext as AAD.
//!
//! The canonical encoding (FROZEN, it is authenticated inside every stored ciphertext) is
//! `count: u16 BE` then, for each pair in ascending byte order of the key,
//! `key_len: u16 BE || key || value_len: u16 BE || value`. Sorting makes the encoding independent
//! of the order a client sent the pairs in, as AWS KMS requires.

use std::collections::BTreeMap;

/// Pairs as a client sent them; a `BTreeMap` keeps them sorted by key.
pub type EncryptionContext = BTreeMap<String, String>;

/// Why a context cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("encryption context is too large to encode")]
pub struct ContextTooLarge;

/// Encodes `context` canonically for use as additional authenticated data.
pub fn canonical_bytes(context: &EncryptionContext) -> Result<Vec<u8>, ContextTooLarge> {
    let count = u16::try_from(context.len()).map_err(|_| ContextTooLarge)?;
    let mut out = Vec::with_capacity(
        2 + context
            .iter()
            .map(|(k, v)| 4 + k.len() + v.len())
            .sum::<usize>(),
    );
    out.extend_from_slice(&count.to_be_bytes());
    for (key, value) in context {
        for field in [key.as_bytes(), value.as_bytes()] {
            let len = u16::try_from(field.len()).map_err(|_| ContextTooLarge)?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_independent_of_insertion_order() {
        let mut a = EncryptionContext::new();
        a.insert("b".into(), "2".into());
        a.insert("a".into(), "1".into());
        let mut b = EncryptionContext::new();
        b.insert("a".into(), "1".into());
        b.insert("b".into(), "2".into());
        assert_eq!(canonical_bytes(&a).unwrap(), canonical_bytes(&b).unwrap());
        assert_eq!(
            canonical_bytes(&a).unwrap(),
            [0, 2, 0, 1, b'a', 0, 1, b'1', 0, 1, b'b', 0, 1, b'2']
        );
    }

    #[test]
    fn empty_and_split_pairs_differ() {
        let empty = canonical_bytes(&EncryptionContext::new()).unwrap();
        assert_eq!(empty, [0, 0]);
        let mut joined = EncryptionContext::new();
        joined.insert("ab".into(), "".into());
        let mut split = EncryptionContext::new();
        split.insert("a".into(), "b".into());
        assert_ne!(
            canonical_bytes(&joined).unwrap(),
            canonical_bytes(&split).unwrap()
        );
    }
}
