//! Streaming decryption (client-apis/decrypt.md). [`Decryptor`] is a `Read` that yields a
//! frame's plaintext only after that frame's tag verified.
//!
//! **Signed messages (0x0578):** plaintext of regular frames is released as each frame verifies,
//! before the footer signature can be checked. The verdict on the whole message comes at the end:
//! `read` returns `Ok(0)` only after the signature verified, and an error at any point means the
//! caller must discard everything read so far. The last frame's plaintext is held back until the
//! signature verifies. (The CLI writes to a temporary file and renames it only on success.)

use std::io::Read;
use zeroize::Zeroizing;

use atrest_crypto::SecretBytes;

use crate::config::Config;
use crate::context::{EncryptionContext, PUBLIC_KEY_FIELD};
use crate::error::{Error, Result};
use crate::header::{ContentType, Header, IV_LEN, TAG_LEN};
use crate::keyring::{DecryptionMaterials, Keyring};
use crate::keys::{self, BodyKind, MessageKey};
use crate::signature::Verifier;
use crate::wire::read_exact_or_truncated;

const FINAL_MARKER: u32 = u32::MAX;

/// Reads one message from `R` and yields its authenticated plaintext.
pub struct Decryptor<R: Read> {
    input: R,
    key: MessageKey,
    header: Header,
    next_sequence: u32,
    max_frames: u32,
    /// The current frame: ciphertext and tag, then plaintext in place.
    buffer: Zeroizing<Vec<u8>>,
    start: usize,
    end: usize,
    done: bool,
    verifier: Option<Verifier>,
}

impl<R: Read> std::fmt::Debug for Decryptor<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("next_sequence", &self.next_sequence)
            .field("done", &self.done)
            .finish()
    }
}

impl<R: Read> Decryptor<R> {
    /// Reads and verifies the header: parses it (refusing too many encrypted data keys before
    /// reading them), asks `keyring` for the data key, checks the key commitment and the header
    /// tag, then checks that every pair of `required_context` is in the message's context.
    pub fn new(
        mut input: R,
        keyring: &dyn Keyring,
        config: &Config,
        required_context: &EncryptionContext,
    ) -> Result<Self> {
        let (header, header_body, header_tag) =
            Header::read(&mut input, config.max_encrypted_data_keys)?;
        config.commitment_policy.check_decrypt(header.suite)?;
        if header.frame_length > crate::config::MAX_FRAME_LENGTH {
            return Err(Error::Malformed(format!(
                "a frame length of {} bytes is over the limit",
                header.frame_length
            )));
        }
        let mut verifier = match (
            header.suite.is_signed(),
            header.context.get(PUBLIC_KEY_FIELD),
        ) {
            (true, Some(public_key)) => Some(Verifier::from_base64(public_key)?),
            (true, None) => {
                return Err(Error::Malformed(
                    "a signed suite without a public key in the context".into(),
                ));
            }
            (false, Some(_)) => {
                return Err(Error::Malformed(
                    "an unsigned suite with a public key in the context".into(),
                ));
            }
            (false, None) => None,
        };
        let mut materials = DecryptionMaterials {
            suite: header.suite,
            context: header.context.clone(),
            data_key: None,
        };
        keyring.on_decrypt(&mut materials, &header.encrypted_data_keys)?;
        let data_key: SecretBytes = materials
            .data_key
            .ok_or_else(|| Error::NoDecryptableKey(String::new()))?;
        let (key, commit_key) = keys::derive(header.suite, data_key.expose(), &header.message_id)?;
        drop(data_key);
        keys::check_commitment(&header.commit_key, &commit_key)?;
        key.verify_header(&header_body, &header_tag)?;
        for (name, value) in required_context {
            if header.context.get(name) != Some(value) {
                return Err(Error::Context(format!(
                    "the message does not carry the required pair {name}={value}"
                )));
            }
        }
        if let Some(verifier) = &mut verifier {
            verifier.update(&header_body);
            verifier.update(&header_tag);
        }
        let mut decryptor = Self {
            input,
            key,
            next_sequence: 1,
            max_frames: config.max_frames,
            // Sized once for the largest frame, so plaintext is never left in a freed allocation.
            buffer: Zeroizing::new(Vec::with_capacity(
                IV_LEN + header.frame_length as usize + TAG_LEN,
            )),
            start: 0,
            end: 0,
            done: false,
            verifier,
            header,
        };
        if decryptor.header.content_type == ContentType::NonFramed {
            decryptor.read_single_block(config.max_non_framed_length)?;
        }
        Ok(decryptor)
    }

    /// The verified header: suite, encryption context, encrypted data keys.
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn read_raw(&mut self, len: usize, field: &'static str) -> Result<()> {
        self.buffer.resize(len, 0);
        read_exact_or_truncated(&mut self.input, &mut self.buffer[..len], field)?;
        if let Some(verifier) = &mut self.verifier {
            verifier.update(&self.buffer[..len]);
        }
        Ok(())
    }

    fn read_u32(&mut self, field: &'static str) -> Result<u32> {
        let mut bytes = [0u8; 4];
        read_exact_or_truncated(&mut self.input, &mut bytes, field)?;
        if let Some(verifier) = &mut self.verifier {
            verifier.update(&bytes);
        }
        Ok(u32::from_be_bytes(bytes))
    }

    /// Reads and authenticates the next frame. With `direct`, a regular frame (or an unsigned
    /// final frame) is decrypted straight into it and its length returned; otherwise the
    /// plaintext is left in the buffer for `start..end`.
    fn next_frame(&mut self, direct: Option<&mut [u8]>) -> Result<Option<usize>> {
        let first = self.read_u32("frame sequence number")?;
        let is_final = first == FINAL_MARKER;
        let sequence = if is_final {
            self.read_u32("final frame sequence number")?
        } else {
            first
        };
        if sequence != self.next_sequence {
            return Err(Error::Malformed(format!(
                "frame {sequence} where frame {} was due",
                self.next_sequence
            )));
        }
        if sequence > self.max_frames {
            return Err(Error::TooManyFrames(self.max_frames));
        }
        let (offset, content_len) = if is_final {
            // IV and the content length, then the content.
            self.read_raw(IV_LEN + 4, "final frame header")?;
            let len = u32::from_be_bytes([
                self.buffer[12],
                self.buffer[13],
                self.buffer[14],
                self.buffer[15],
            ]);
            if len > self.header.frame_length {
                return Err(Error::Malformed(format!(
                    "a final frame of {len} bytes is longer than the frame length {}",
                    self.header.frame_length
                )));
            }
            self.check_iv(sequence)?;
            self.read_raw(len as usize + TAG_LEN, "final frame")?;
            (0, len as usize)
        } else {
            // IV, content and tag in one read; the content is decrypted where it lies.
            let len = self.header.frame_length as usize;
            self.read_raw(IV_LEN + len + TAG_LEN, "frame")?;
            self.check_iv(sequence)?;
            (IV_LEN, len)
        };
        let kind = if is_final {
            BodyKind::FinalFrame
        } else {
            BodyKind::Frame
        };
        let (aad, aad_len) =
            keys::body_aad(&self.header.message_id, kind, sequence, content_len as u64);
        let aad = &aad[..aad_len];
        self.next_sequence = sequence.saturating_add(1);
        // A signed message's last plaintext waits for the signature, so it never goes direct.
        let signed_final = is_final && self.header.suite.is_signed();
        if let Some(out) = direct.filter(|out| out.len() >= content_len && !signed_final) {
            let frame = &self.buffer[offset..offset + content_len + TAG_LEN];
            let (ciphertext, tag) = frame.split_at(content_len);
            self.key
                .open_into(sequence, aad, ciphertext, tag, &mut out[..content_len])?;
            if is_final {
                self.finish_message()?;
            }
            return Ok(Some(content_len));
        }
        self.key.open(
            sequence,
            aad,
            &mut self.buffer[offset..offset + content_len + TAG_LEN],
        )?;
        if is_final {
            self.finish_message()?;
        }
        self.start = offset;
        self.end = offset + content_len;
        Ok(None)
    }

    /// The IV field must be the sequence number, as the format fixes it.
    fn check_iv(&self, sequence: u32) -> Result<()> {
        if self.buffer[..IV_LEN] == keys::iv(sequence) {
            Ok(())
        } else {
            Err(Error::Malformed(format!(
                "frame {sequence} has an IV other than its sequence number"
            )))
        }
    }

    /// Non-framed body: IV, 8-byte content length, content, tag; authenticated as one block.
    fn read_single_block(&mut self, max_len: u64) -> Result<()> {
        self.read_raw(IV_LEN + 8, "non-framed body header")?;
        self.check_iv(1)?;
        let mut len_bytes = [0u8; 8];
        len_bytes.copy_from_slice(&self.buffer[IV_LEN..IV_LEN + 8]);
        let len = u64::from_be_bytes(len_bytes);
        if len > max_len {
            return Err(Error::Malformed(format!(
                "a non-framed body of {len} bytes is over the limit of {max_len}"
            )));
        }
        self.read_raw(len as usize + TAG_LEN, "non-framed body")?;
        let (aad, aad_len) = keys::body_aad(&self.header.message_id, BodyKind::SingleBlock, 1, len);
        self.key.open(
            1,
            &aad[..aad_len],
            &mut self.buffer[..len as usize + TAG_LEN],
        )?;
        self.finish_message()?;
        self.start = 0;
        self.end = len as usize;
        Ok(())
    }

    /// After the last frame: the footer signature (signed suites), then the end of the input.
    fn finish_message(&mut self) -> Result<()> {
        if let Some(verifier) = self.verifier.take() {
            let mut len = [0u8; 2];
            read_exact_or_truncated(&mut self.input, &mut len, "footer")?;
            let mut signature = vec![0u8; usize::from(u16::from_be_bytes(len))];
            read_exact_or_truncated(&mut self.input, &mut signature, "footer signature")?;
            verifier.verify(&signature)?;
        }
        let mut probe = [0u8; 1];
        loop {
            match self.input.read(&mut probe) {
                Ok(0) => break,
                Ok(_) => return Err(Error::TrailingBytes),
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(Error::Io(error)),
            }
        }
        self.done = true;
        Ok(())
    }

    /// Reads the rest of the message into `out`, returning the header once everything verified.
    pub fn read_to_end_verified(mut self, out: &mut impl std::io::Write) -> Result<Header> {
        loop {
            if self.start < self.end {
                out.write_all(&self.buffer[self.start..self.end])?;
                self.start = self.end;
            }
            if self.done {
                return Ok(self.header.clone());
            }
            self.next_frame(None)?;
        }
    }
}

impl<R: Read> Read for Decryptor<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.start == self.end {
            if self.done || out.is_empty() {
                return Ok(0);
            }
            if out.len() >= self.header.frame_length as usize {
                match self.next_frame(Some(&mut *out))? {
                    Some(0) => continue,
                    Some(n) => return Ok(n),
                    None => break,
                }
            }
            self.next_frame(None)?;
        }
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buffer[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}
