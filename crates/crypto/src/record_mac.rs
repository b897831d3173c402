//! Authenticated metadata records: each stored record that decides access or key use carries
//! an HMAC-SHA256 (RFC 2104) under a key only the HSM yields, over its table, its primary key
//! and its bytes. An edited record, or one moved to another key or table, fails; so does a
//! record stored without a tag once tags are in use.
//!
//! Stored form (FROZEN): `"ATM1" || tag (32) || record`, where
//! `tag = HMAC-SHA256(key, "atrest metadata record v1" || len32(table) || table || len32(id)
//! || id || record)`, lengths big-endian.

use aws_lc_rs::hmac;

/// DO NOT CHANGE: stored records begin with it.
const MAGIC: &[u8; 4] = b"ATM1";
const TAG_LEN: usize = 32;
const LABEL: &[u8] = b"atrest metadata record v1";

/// Why a stored record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The tag does not match: the record, its table or its key was changed.
    #[error("the record failed its integrity check")]
    Tampered,
    /// The record carries no tag (written before tags, or stripped of its tag).
    #[error("the record carries no integrity tag")]
    Untagged,
}

/// The MAC key of the metadata store. Deliberately neither `Clone` nor `Debug`-printing.
pub struct RecordMac(hmac::Key);

impl std::fmt::Debug for RecordMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordMac([REDACTED])")
    }
}

impl RecordMac {
    pub fn new(key: &crate::SecretKey32) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, key.expose()))
    }

    /// The stored form of `record`, kept under `id` in `table`.
    pub fn seal(&self, table: &str, id: &str, record: &[u8]) -> Vec<u8> {
        let tag = self.tag(table, id, record);
        let mut out = Vec::with_capacity(MAGIC.len() + TAG_LEN + record.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(tag.as_ref());
        out.extend_from_slice(record);
        out
    }

    /// The record inside `stored`, if its tag holds for `table` and `id`.
    pub fn open<'a>(
        &self,
        table: &str,
        id: &str,
        stored: &'a [u8],
    ) -> Result<&'a [u8], RecordError> {
        let Some(rest) = stored.strip_prefix(MAGIC) else {
            return Err(RecordError::Untagged);
        };
        if rest.len() < TAG_LEN {
            return Err(RecordError::Tampered);
        }
        let (tag, record) = rest.split_at(TAG_LEN);
        let message = message(table, id, record);
        hmac::verify(&self.0, &message, tag).map_err(|_| RecordError::Tampered)?;
        Ok(record)
    }

    /// Whether `stored` carries a tag at all (checked or not).
    pub fn is_tagged(stored: &[u8]) -> bool {
        stored.starts_with(MAGIC)
    }

    fn tag(&self, table: &str, id: &str, record: &[u8]) -> hmac::Tag {
        hmac::sign(&self.0, &message(table, id, record))
    }
}

fn message(table: &str, id: &str, record: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(LABEL.len() + 8 + table.len() + id.len() + record.len());
    message.extend_from_slice(LABEL);
    for part in [table.as_bytes(), id.as_bytes()] {
        // Table names and record keys are far below 4 GiB.
        message.extend_from_slice(&(part.len() as u32).to_be_bytes());
        message.extend_from_slice(part);
    }
    message.extend_from_slice(record);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac() -> RecordMac {
        RecordMac::new(&crate::SecretKey32::from_bytes([9; 32]))
    }

    #[test]
    fn a_record_opens_only_unchanged_and_in_its_place() {
        let mac = mac();
        let record = br#"{"arn":"arn:aws:iam::000000000000:user/mallory"}"#;
        let stored = mac.seal("principals", "AKIAMALLORY", record);
        assert_eq!(
            mac.open("principals", "AKIAMALLORY", &stored).unwrap(),
            record
        );
        assert_eq!(
            mac.open("principals", "AKIAOTHER", &stored),
            Err(RecordError::Tampered)
        );
        assert_eq!(
            mac.open("users", "AKIAMALLORY", &stored),
            Err(RecordError::Tampered)
        );
        let mut edited = stored.clone();
        let at = edited.len() - 10;
        edited[at] ^= 1;
        assert_eq!(
            mac.open("principals", "AKIAMALLORY", &edited),
            Err(RecordError::Tampered)
        );
        assert_eq!(
            mac.open("principals", "AKIAMALLORY", record),
            Err(RecordError::Untagged)
        );
        assert_eq!(
            mac.open("principals", "AKIAMALLORY", b"ATM1short"),
            Err(RecordError::Tampered)
        );
        let other = RecordMac::new(&crate::SecretKey32::from_bytes([8; 32]));
        assert_eq!(
            other.open("principals", "AKIAMALLORY", &stored),
            Err(RecordError::Tampered)
        );
        assert!(RecordMac::is_tagged(&stored) && !RecordMac::is_tagged(record));
    }
}
