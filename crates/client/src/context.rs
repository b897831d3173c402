//! The encryption context and its serialization (framework/structures.md#serialization): a
//! 2-byte pair count, then each key and value as 2-byte length + UTF-8, sorted by key bytes. The
//! empty context serializes to no bytes at all.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::wire::Cursor;

/// Key-value pairs bound to the data key and the header. A `BTreeMap` of `String`s iterates in
/// UTF-8 byte order, which is exactly the order the format requires.
pub type EncryptionContext = BTreeMap<String, String>;

/// The context key the default CMM uses to carry the ECDSA verification key of signed suites.
pub const PUBLIC_KEY_FIELD: &str = "aws-crypto-public-key";
/// Keys with this prefix belong to the SDK; callers may not set them.
pub const RESERVED_PREFIX: &str = "aws-crypto-";

/// Serializes `context` as the format's key-value pairs; empty for an empty context.
pub fn serialize(context: &EncryptionContext) -> Result<Vec<u8>> {
    if context.is_empty() {
        return Ok(Vec::new());
    }
    let count =
        u16::try_from(context.len()).map_err(|_| Error::Context("more than 65535 pairs".into()))?;
    let mut out = count.to_be_bytes().to_vec();
    for (key, value) in context {
        for field in [key, value] {
            let len = u16::try_from(field.len()).map_err(|_| {
                Error::Context(format!("{field:.20}... is longer than 65535 bytes"))
            })?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
    }
    if out.len() > usize::from(u16::MAX) {
        return Err(Error::Context(
            "it serializes to more than 65535 bytes".into(),
        ));
    }
    Ok(out)
}

/// Parses the key-value pairs that [`serialize`] wrote (the header's AAD field, without its
/// length prefix). Duplicate keys and bytes left over are malformed.
pub fn parse(bytes: &[u8]) -> Result<EncryptionContext> {
    let mut context = EncryptionContext::new();
    if bytes.is_empty() {
        return Ok(context);
    }
    let mut cursor = Cursor::new(bytes);
    let count = cursor.u16("encryption context")?;
    if count == 0 {
        return Err(Error::Malformed(
            "encryption context has a length but no pairs".into(),
        ));
    }
    for _ in 0..count {
        let key = utf8(
            cursor.short_bytes("encryption context key")?,
            "encryption context key",
        )?;
        let value = utf8(
            cursor.short_bytes("encryption context value")?,
            "encryption context value",
        )?;
        if context.insert(key, value).is_some() {
            return Err(Error::Malformed("encryption context repeats a key".into()));
        }
    }
    if !cursor.is_empty() {
        return Err(Error::Malformed(
            "encryption context is longer than its pairs".into(),
        ));
    }
    Ok(context)
}

/// Refuses a caller's context that uses the SDK's reserved `aws-crypto-` prefix.
pub fn check_caller_context(context: &EncryptionContext) -> Result<()> {
    match context.keys().find(|key| key.starts_with(RESERVED_PREFIX)) {
        Some(key) => Err(Error::Context(format!(
            "the key {key:?} uses the reserved prefix {RESERVED_PREFIX:?}"
        ))),
        None => Ok(()),
    }
}

pub(crate) fn utf8(bytes: &[u8], what: &str) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::Malformed(format!("{what} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_sorted_by_key_bytes() {
        let context: EncryptionContext = [
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), "1".to_string()),
        ]
        .into();
        let bytes = serialize(&context).unwrap();
        assert_eq!(bytes, b"\x00\x02\x00\x01a\x00\x011\x00\x01b\x00\x012");
        assert_eq!(parse(&bytes).unwrap(), context);
        assert!(serialize(&EncryptionContext::new()).unwrap().is_empty());
    }

    #[test]
    fn rejects_duplicates_and_leftovers() {
        assert!(parse(b"\x00\x02\x00\x01a\x00\x011\x00\x01a\x00\x012").is_err());
        assert!(parse(b"\x00\x01\x00\x01a\x00\x011\xff").is_err());
        assert!(parse(b"\x00\x00").is_err());
        assert!(parse(b"\x00\x01\x00\x05a").is_err());
    }
}
