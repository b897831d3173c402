//! The message header, format version 2.0 (data-format/message-header.md): version, suite,
//! 32-byte message ID, encryption context, encrypted data keys, content type, frame length and
//! the 32-byte commit key, followed by a 16-byte AES-GCM tag over all of it.

use std::io::Read;

use crate::context::{self, EncryptionContext};
use crate::error::{Error, Result};
use crate::suite::AlgorithmSuite;
use crate::wire::RecordingReader;

pub const VERSION_2: u8 = 0x02;
pub const MESSAGE_ID_LEN: usize = 32;
pub const COMMIT_KEY_LEN: usize = 32;
pub const TAG_LEN: usize = 16;
pub const IV_LEN: usize = 12;

/// Whether the body is one block or a sequence of frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    NonFramed,
    Framed,
}

/// A data key wrapped by one keyring: who wrapped it (provider ID and info) and the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedDataKey {
    pub provider_id: String,
    pub provider_info: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// The parsed header body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub suite: AlgorithmSuite,
    pub message_id: [u8; MESSAGE_ID_LEN],
    pub context: EncryptionContext,
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
    pub content_type: ContentType,
    pub frame_length: u32,
    pub commit_key: [u8; COMMIT_KEY_LEN],
}

impl Header {
    /// The header body's bytes, which the header tag authenticates.
    pub fn serialize_body(&self) -> Result<Vec<u8>> {
        let mut out = vec![VERSION_2];
        out.extend_from_slice(&self.suite.id().to_be_bytes());
        out.extend_from_slice(&self.message_id);
        let pairs = context::serialize(&self.context)?;
        out.extend_from_slice(&(pairs.len() as u16).to_be_bytes());
        out.extend_from_slice(&pairs);
        let count = u16::try_from(self.encrypted_data_keys.len())
            .map_err(|_| Error::Keyring("more than 65535 encrypted data keys".into()))?;
        if count == 0 {
            return Err(Error::Keyring(
                "no keyring produced an encrypted data key".into(),
            ));
        }
        out.extend_from_slice(&count.to_be_bytes());
        for key in &self.encrypted_data_keys {
            for field in [
                key.provider_id.as_bytes(),
                &key.provider_info,
                &key.ciphertext,
            ] {
                let len = u16::try_from(field.len()).map_err(|_| {
                    Error::Keyring("an encrypted data key field exceeds 65535 bytes".into())
                })?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(field);
            }
        }
        out.push(match self.content_type {
            ContentType::NonFramed => 0x01,
            ContentType::Framed => 0x02,
        });
        out.extend_from_slice(&self.frame_length.to_be_bytes());
        out.extend_from_slice(&self.commit_key);
        Ok(out)
    }

    /// Reads a header body and its tag from `input`. Returns the header, the body's exact bytes
    /// (as read, for authentication and the signature) and the tag. Stops with
    /// [`Error::TooManyEncryptedDataKeys`] as soon as the count exceeds `max_encrypted_data_keys`,
    /// before reading any key.
    pub fn read<R: Read + ?Sized>(
        input: &mut R,
        max_encrypted_data_keys: u16,
    ) -> Result<(Header, Vec<u8>, [u8; TAG_LEN])> {
        let mut reader = RecordingReader::new(input);
        let version = reader.u8("header version")?;
        if version != VERSION_2 {
            return Err(match version {
                0x01 => Error::Malformed(
                    "message format 1.0 (a non-committing suite) is not supported; re-encrypt with a committing suite".into(),
                ),
                other => Error::Malformed(format!("unknown message format version 0x{other:02X}")),
            });
        }
        let suite = AlgorithmSuite::from_id(reader.u16("algorithm suite ID")?)?;
        let mut message_id = [0u8; MESSAGE_ID_LEN];
        message_id.copy_from_slice(reader.take(MESSAGE_ID_LEN, "message ID")?);
        let aad = reader.short_bytes("encryption context")?;
        let context = context::parse(&aad)?;
        let count = reader.u16("encrypted data key count")?;
        if count == 0 {
            return Err(Error::Malformed(
                "the header has no encrypted data keys".into(),
            ));
        }
        if count > max_encrypted_data_keys {
            return Err(Error::TooManyEncryptedDataKeys {
                count: count.into(),
                max: max_encrypted_data_keys,
            });
        }
        let mut encrypted_data_keys = Vec::with_capacity(count.into());
        for _ in 0..count {
            let provider_id =
                context::utf8(&reader.short_bytes("key provider ID")?, "key provider ID")?;
            let provider_info = reader.short_bytes("key provider information")?;
            let ciphertext = reader.short_bytes("encrypted data key")?;
            encrypted_data_keys.push(EncryptedDataKey {
                provider_id,
                provider_info,
                ciphertext,
            });
        }
        let content_type = match reader.u8("content type")? {
            0x01 => ContentType::NonFramed,
            0x02 => ContentType::Framed,
            other => {
                return Err(Error::Malformed(format!(
                    "unknown content type 0x{other:02X}"
                )));
            }
        };
        let frame_length = reader.u32("frame length")?;
        match content_type {
            ContentType::Framed if frame_length == 0 => {
                return Err(Error::Malformed(
                    "framed content with a frame length of 0".into(),
                ));
            }
            ContentType::NonFramed if frame_length != 0 => {
                return Err(Error::Malformed(
                    "non-framed content with a non-zero frame length".into(),
                ));
            }
            _ => {}
        }
        let mut commit_key = [0u8; COMMIT_KEY_LEN];
        commit_key.copy_from_slice(reader.take(COMMIT_KEY_LEN, "commit key")?);
        let body = std::mem::take(&mut reader.recorded);
        let mut tag = [0u8; TAG_LEN];
        crate::wire::read_exact_or_truncated(
            reader.input(),
            &mut tag,
            "header authentication tag",
        )?;
        let header = Header {
            suite,
            message_id,
            context,
            encrypted_data_keys,
            content_type,
            frame_length,
            commit_key,
        };
        Ok((header, body, tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            suite: AlgorithmSuite::AesGcmCommitKey,
            message_id: [7; 32],
            context: [("purpose".to_string(), "test".to_string())].into(),
            encrypted_data_keys: vec![EncryptedDataKey {
                provider_id: "ns".into(),
                provider_info: b"name".to_vec(),
                ciphertext: vec![1, 2, 3],
            }],
            content_type: ContentType::Framed,
            frame_length: 4096,
            commit_key: [9; 32],
        }
    }

    #[test]
    fn body_round_trips() {
        let header = sample();
        let mut bytes = header.serialize_body().unwrap();
        let body_len = bytes.len();
        bytes.extend_from_slice(&[0xAA; TAG_LEN]);
        let (parsed, body, tag) = Header::read(&mut bytes.as_slice(), 10).unwrap();
        assert_eq!(parsed, header);
        assert_eq!(body, bytes[..body_len]);
        assert_eq!(tag, [0xAA; TAG_LEN]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut bytes = sample().serialize_body().unwrap();
        bytes.extend_from_slice(&[0; TAG_LEN]);
        for len in 0..bytes.len() {
            assert!(
                Header::read(&mut &bytes[..len], 10).is_err(),
                "prefix of {len} bytes parsed"
            );
        }
    }

    #[test]
    fn too_many_keys_stops_before_reading_them() {
        let mut header = sample();
        header.encrypted_data_keys = vec![header.encrypted_data_keys[0].clone(); 11];
        let bytes = header.serialize_body().unwrap();
        assert!(matches!(
            Header::read(&mut bytes.as_slice(), 10),
            Err(Error::TooManyEncryptedDataKeys { count: 11, max: 10 })
        ));
    }
}
