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

/// Where a message's bytes come from. Any `Read` is a source: each frame is copied once into the
/// decryptor's frame buffer. A [`SliceSource`] lends its frames instead, so a frame read into a
/// large enough buffer is opened straight from the message into it, with no copy at all.
pub trait MessageSource {
    /// The source as a plain reader, for the header and the small fields.
    fn reader(&mut self) -> &mut dyn Read;

    /// The next `len` bytes: lent (`Some`) if the source holds them, otherwise read into
    /// `scratch[..len]` (`None`).
    fn next_bytes(
        &mut self,
        len: usize,
        scratch: &mut Vec<u8>,
        field: &'static str,
    ) -> Result<Option<&[u8]>>;
}

impl<R: Read> MessageSource for R {
    fn reader(&mut self) -> &mut dyn Read {
        self
    }

    fn next_bytes(
        &mut self,
        len: usize,
        scratch: &mut Vec<u8>,
        field: &'static str,
    ) -> Result<Option<&[u8]>> {
        scratch.resize(len, 0);
        read_exact_or_truncated(self, &mut scratch[..len], field)?;
        Ok(None)
    }
}

/// A message already in memory.
#[derive(Debug)]
pub struct SliceSource<'m>(pub &'m [u8]);

impl MessageSource for SliceSource<'_> {
    fn reader(&mut self) -> &mut dyn Read {
        &mut self.0
    }

    fn next_bytes(
        &mut self,
        len: usize,
        _scratch: &mut Vec<u8>,
        field: &'static str,
    ) -> Result<Option<&[u8]>> {
        if self.0.len() < len {
            return Err(Error::Truncated(field));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(Some(head))
    }
}

/// The IV field must be the sequence number, as the format fixes it.
fn check_iv(iv: &[u8], sequence: u32) -> Result<()> {
    if iv == keys::iv(sequence) {
        Ok(())
    } else {
        Err(Error::Malformed(format!(
            "frame {sequence} has an IV other than its sequence number"
        )))
    }
}

/// Reads one message from `R` (any `Read`, or a [`SliceSource`]) and yields its authenticated
/// plaintext.
pub struct Decryptor<R: MessageSource> {
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

impl<R: MessageSource> std::fmt::Debug for Decryptor<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("next_sequence", &self.next_sequence)
            .field("done", &self.done)
            .finish()
    }
}

impl<R: MessageSource> Decryptor<R> {
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
            Header::read(input.reader(), config.max_encrypted_data_keys)?;
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

    /// The next `len` bytes into the frame buffer (fed to the signature hash).
    fn read_raw(&mut self, len: usize, field: &'static str) -> Result<()> {
        if let Some(lent) = self.input.next_bytes(len, &mut self.buffer, field)? {
            self.buffer.clear();
            self.buffer.extend_from_slice(lent);
        }
        if let Some(verifier) = &mut self.verifier {
            verifier.update(&self.buffer[..len]);
        }
        Ok(())
    }

    /// A small fixed-size field (fed to the signature hash).
    fn read_array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let mut bytes = [0u8; N];
        read_exact_or_truncated(self.input.reader(), &mut bytes, field)?;
        if let Some(verifier) = &mut self.verifier {
            verifier.update(&bytes);
        }
        Ok(bytes)
    }

    fn read_u32(&mut self, field: &'static str) -> Result<u32> {
        self.read_array::<4>(field).map(u32::from_be_bytes)
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
        let (iv, content_len) = if is_final {
            let prefix = self.read_array::<{ IV_LEN + 4 }>("final frame header")?;
            let len = u32::from_be_bytes([prefix[12], prefix[13], prefix[14], prefix[15]]);
            if len > self.header.frame_length {
                return Err(Error::Malformed(format!(
                    "a final frame of {len} bytes is longer than the frame length {}",
                    self.header.frame_length
                )));
            }
            let mut iv = [0u8; IV_LEN];
            iv.copy_from_slice(&prefix[..IV_LEN]);
            (iv, len as usize)
        } else {
            let iv = self.read_array::<IV_LEN>("frame IV")?;
            (iv, self.header.frame_length as usize)
        };
        check_iv(&iv, sequence)?;
        let kind = if is_final {
            BodyKind::FinalFrame
        } else {
            BodyKind::Frame
        };
        let (aad, aad_len) =
            keys::body_aad(&self.header.message_id, kind, sequence, content_len as u64);
        let aad = &aad[..aad_len];
        self.next_sequence = sequence.saturating_add(1);
        let len = content_len + TAG_LEN;
        // A signed message's last plaintext waits for the signature, so it never goes direct.
        let signed_final = is_final && self.header.suite.is_signed();
        if let Some(out) = direct.filter(|out| out.len() >= content_len && !signed_final) {
            let Self {
                input,
                buffer,
                key,
                verifier,
                ..
            } = self;
            let lent = input.next_bytes(len, buffer, "frame")?;
            let frame = match lent {
                Some(lent) => lent,
                None => &buffer[..len],
            };
            if let Some(verifier) = verifier {
                verifier.update(frame);
            }
            let (ciphertext, tag) = frame.split_at(content_len);
            key.open_into(sequence, aad, ciphertext, tag, &mut out[..content_len])?;
            if is_final {
                self.finish_message()?;
            }
            return Ok(Some(content_len));
        }
        self.read_raw(len, "frame")?;
        self.key.open(sequence, aad, &mut self.buffer[..len])?;
        if is_final {
            self.finish_message()?;
        }
        self.start = 0;
        self.end = content_len;
        Ok(None)
    }

    /// Non-framed body: IV, 8-byte content length, content, tag; authenticated as one block.
    fn read_single_block(&mut self, max_len: u64) -> Result<()> {
        self.read_raw(IV_LEN + 8, "non-framed body header")?;
        check_iv(&self.buffer[..IV_LEN], 1)?;
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
            read_exact_or_truncated(self.input.reader(), &mut len, "footer")?;
            let mut signature = vec![0u8; usize::from(u16::from_be_bytes(len))];
            read_exact_or_truncated(self.input.reader(), &mut signature, "footer signature")?;
            verifier.verify(&signature)?;
        }
        let mut probe = [0u8; 1];
        loop {
            match self.input.reader().read(&mut probe) {
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

impl<R: MessageSource> Read for Decryptor<R> {
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
