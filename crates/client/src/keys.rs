//! Key derivation and the AEAD calls of the format.
//!
//! For the committing suites (framework/transitive-requirements.md): one HKDF-SHA512 extract with
//! the message ID as salt and the data key as input, then two expands: the AES-256-GCM key with
//! info `suite ID || "DERIVEKEY"` and the 32-byte commit key with info `"COMMITKEY"`. Every
//! AES-GCM call of the message uses the derived key with an IV that is a sequence number padded
//! with zeros (0 for the header tag), which is safe because the derived key is unique per message.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA512, KeyType, Salt};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::header::{COMMIT_KEY_LEN, IV_LEN, MESSAGE_ID_LEN, TAG_LEN};
use crate::suite::AlgorithmSuite;

/// Data keys of the supported suites are 256 bits.
pub const DATA_KEY_LEN: usize = 32;

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The message's AES-256-GCM key, derived from the data key.
pub struct MessageKey(LessSafeKey);

impl std::fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageKey([REDACTED])")
    }
}

/// Derives the message key and the commit key from a plaintext data key.
pub fn derive(
    suite: AlgorithmSuite,
    data_key: &[u8],
    message_id: &[u8; MESSAGE_ID_LEN],
) -> Result<(MessageKey, [u8; COMMIT_KEY_LEN])> {
    if data_key.len() != DATA_KEY_LEN {
        return Err(Error::Keyring(format!(
            "a data key of {} bytes; the suite needs 32",
            data_key.len()
        )));
    }
    let prk = Salt::new(HKDF_SHA512, message_id).extract(data_key);
    let mut encryption_key = Zeroizing::new([0u8; 32]);
    let info = [&suite.id().to_be_bytes()[..], b"DERIVEKEY"];
    prk.expand(&info, Len(32))
        .and_then(|okm| okm.fill(&mut encryption_key[..]))
        .map_err(|_| Error::Keyring("HKDF expand failed".into()))?;
    let mut commit_key = [0u8; COMMIT_KEY_LEN];
    prk.expand(&[b"COMMITKEY"], Len(COMMIT_KEY_LEN))
        .and_then(|okm| okm.fill(&mut commit_key))
        .map_err(|_| Error::Keyring("HKDF expand failed".into()))?;
    let key = UnboundKey::new(&AES_256_GCM, &encryption_key[..])
        .map_err(|_| Error::Keyring("bad AES key".into()))?;
    Ok((MessageKey(LessSafeKey::new(key)), commit_key))
}

/// Compares the commit key stored in a header with the derived one, in constant time.
pub fn check_commitment(
    stored: &[u8; COMMIT_KEY_LEN],
    derived: &[u8; COMMIT_KEY_LEN],
) -> Result<()> {
    if bool::from(stored.ct_eq(derived)) {
        Ok(())
    } else {
        Err(Error::Commitment)
    }
}

/// The IV of frame `sequence`: the sequence number, big-endian, left-padded with zeros.
pub fn iv(sequence: u32) -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    iv[IV_LEN - 4..].copy_from_slice(&sequence.to_be_bytes());
    iv
}

impl MessageKey {
    /// The header authentication tag: AES-GCM over an empty plaintext, IV 0, AAD = header body.
    pub fn header_tag(&self, header_body: &[u8]) -> Result<[u8; TAG_LEN]> {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv(0)),
                Aad::from(header_body),
                &mut [],
            )
            .map_err(|_| Error::Keyring("AES-GCM seal failed".into()))?;
        Ok(tag_bytes(tag))
    }

    pub fn verify_header(&self, header_body: &[u8], tag: &[u8; TAG_LEN]) -> Result<()> {
        let mut tag_only = *tag;
        self.0
            .open_in_place(
                Nonce::assume_unique_for_key(iv(0)),
                Aad::from(header_body),
                &mut tag_only,
            )
            .map(|_| ())
            .map_err(|_| Error::HeaderAuthentication)
    }

    /// Encrypts `buffer` in place and returns the tag.
    pub fn seal(&self, sequence: u32, aad: &[u8], buffer: &mut [u8]) -> Result<[u8; TAG_LEN]> {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv(sequence)),
                Aad::from(aad),
                buffer,
            )
            .map_err(|_| Error::Keyring("AES-GCM seal failed".into()))?;
        Ok(tag_bytes(tag))
    }

    /// Encrypts `plaintext` into `out` (ciphertext then tag, `plaintext.len() + 16` bytes),
    /// sparing the copy into a staging buffer when the caller's bytes can be read directly.
    pub fn seal_into(
        &self,
        sequence: u32,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<()> {
        let (ciphertext, tag) = out.split_at_mut(plaintext.len());
        self.0
            .seal_out_of_place_scatter(
                Nonce::assume_unique_for_key(iv(sequence)),
                Aad::from(aad),
                plaintext,
                ciphertext,
                &[],
                tag,
            )
            .map_err(|_| Error::Keyring("AES-GCM seal failed".into()))
    }

    /// Decrypts `ciphertext` with `tag` into `out` (same length as `ciphertext`). On failure
    /// `out` is zeroed, so no unauthenticated plaintext is left in the caller's buffer.
    pub fn open_into(
        &self,
        sequence: u32,
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
        out: &mut [u8],
    ) -> Result<()> {
        let opened = self.0.open_separate_gather(
            Nonce::assume_unique_for_key(iv(sequence)),
            Aad::from(aad),
            ciphertext,
            tag,
            out,
        );
        opened.map_err(|_| {
            zeroize::Zeroize::zeroize(out);
            Error::FrameAuthentication(sequence)
        })
    }

    /// Decrypts `ciphertext_and_tag` in place; on success the first `len - 16` bytes are the
    /// plaintext. Nothing is usable on failure.
    pub fn open(&self, sequence: u32, aad: &[u8], ciphertext_and_tag: &mut [u8]) -> Result<()> {
        self.0
            .open_in_place(
                Nonce::assume_unique_for_key(iv(sequence)),
                Aad::from(aad),
                ciphertext_and_tag,
            )
            .map(|_| ())
            .map_err(|_| Error::FrameAuthentication(sequence))
    }
}

fn tag_bytes(tag: Tag) -> [u8; TAG_LEN] {
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Body AAD (data-format/message-body-aad.md): message ID, content string, sequence number and
/// the plaintext length of the frame. Built on the stack (it is needed once per frame); returns
/// the buffer and the used length.
pub fn body_aad(
    message_id: &[u8; MESSAGE_ID_LEN],
    kind: BodyKind,
    sequence: u32,
    content_len: u64,
) -> ([u8; 80], usize) {
    let content: &[u8] = match kind {
        BodyKind::Frame => b"AWSKMSEncryptionClient Frame",
        BodyKind::FinalFrame => b"AWSKMSEncryptionClient Final Frame",
        BodyKind::SingleBlock => b"AWSKMSEncryptionClient Single Block",
    };
    let mut aad = [0u8; 80];
    let mut at = 0;
    for part in [
        &message_id[..],
        content,
        &sequence.to_be_bytes(),
        &content_len.to_be_bytes(),
    ] {
        aad[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    (aad, at)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Frame,
    FinalFrame,
    SingleBlock,
}
