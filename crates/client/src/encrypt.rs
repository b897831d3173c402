//! Streaming encryption (client-apis/encrypt.md). [`Encryptor`] is a `Write`: plaintext goes in,
//! the message comes out frame by frame, so memory stays at one frame whatever the input size.

use std::io::Write;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::context::{self, EncryptionContext, PUBLIC_KEY_FIELD};
use crate::error::{Error, Result};
use crate::header::{ContentType, Header, IV_LEN, MESSAGE_ID_LEN, TAG_LEN};
use crate::keyring::{EncryptionMaterials, Keyring};
use crate::keys::{self, BodyKind, MessageKey};
use crate::signature::Signer;

/// Bytes before a final frame's content: end marker, sequence number, IV, content length.
/// A regular frame's prefix (sequence number, IV) is the last 16 of these.
const FINAL_PREFIX: usize = 4 + 4 + IV_LEN + 4;
const REGULAR_PREFIX: usize = 4 + IV_LEN;
/// The largest sequence number; 0xFFFFFFFF marks the final frame.
pub(crate) const MAX_SEQUENCE: u32 = u32::MAX - 1;

/// A message's header, written and authenticated, with the key and signer for its body.
struct Begun {
    header: Header,
    /// Header body and tag, as they go on the wire.
    header_bytes: Vec<u8>,
    key: MessageKey,
    signer: Option<Signer>,
}

/// The header half of encryption: suite and policy checks, the signing key (0x0578), the data
/// key from the keyring, key derivation, the header and its tag (already fed to the signer).
fn begin(keyring: &dyn Keyring, context: EncryptionContext, config: &Config) -> Result<Begun> {
    config.validate()?;
    config.commitment_policy.check_encrypt(config.suite)?;
    context::check_caller_context(&context)?;
    let mut context = context;
    let mut signer = None;
    if config.suite.is_signed() {
        let new_signer = Signer::generate()?;
        context.insert(
            PUBLIC_KEY_FIELD.to_string(),
            new_signer.public_key_base64()?,
        );
        signer = Some(new_signer);
    }
    let mut materials = EncryptionMaterials {
        suite: config.suite,
        context,
        data_key: None,
        encrypted_data_keys: Vec::new(),
    };
    keyring.on_encrypt(&mut materials)?;
    let data_key = materials
        .data_key
        .ok_or_else(|| Error::Keyring("the keyring produced no data key".into()))?;
    let count = materials.encrypted_data_keys.len();
    if count > usize::from(config.max_encrypted_data_keys) {
        return Err(Error::TooManyEncryptedDataKeys {
            count,
            max: config.max_encrypted_data_keys,
        });
    }
    let mut message_id = [0u8; MESSAGE_ID_LEN];
    atrest_crypto::random::fill(&mut message_id);
    let (key, commit_key) = keys::derive(config.suite, data_key.expose(), &message_id)?;
    drop(data_key);
    let header = Header {
        suite: config.suite,
        message_id,
        context: materials.context,
        encrypted_data_keys: materials.encrypted_data_keys,
        content_type: ContentType::Framed,
        frame_length: config.frame_length,
        commit_key,
    };
    let mut header_bytes = header.serialize_body()?;
    let tag = key.header_tag(&header_bytes)?;
    header_bytes.extend_from_slice(&tag);
    if let Some(signer) = &mut signer {
        signer.update(&header_bytes);
    }
    Ok(Begun {
        header,
        header_bytes,
        key,
        signer,
    })
}

/// The largest DER encoding of an ECDSA P-384 signature (two 49-byte INTEGERs in a SEQUENCE).
const MAX_SIGNATURE_LEN: usize = 104;

/// Encrypts `plaintext` into `out`, sealing each frame straight from the input into its place in
/// the output (no staging copy), and returns the message length. For callers that hold both in
/// memory; `out` must have room for the message, else [`Error::Config`] says how much it needs
/// (the plaintext length plus about 1/100 for 4 KiB frames, plus the header).
pub fn encrypt_to_slice(
    plaintext: &[u8],
    keyring: &dyn Keyring,
    context: EncryptionContext,
    config: &Config,
    out: &mut [u8],
) -> Result<usize> {
    let Begun {
        header,
        header_bytes,
        key,
        mut signer,
    } = begin(keyring, context, config)?;
    let frame = config.frame_length as usize;
    let regular_frames = plaintext.len().saturating_sub(1) / frame;
    if regular_frames >= MAX_SEQUENCE as usize {
        return Err(Error::TooManyFrames(MAX_SEQUENCE));
    }
    let final_len = plaintext.len() - regular_frames * frame;
    let needed = header_bytes.len()
        + regular_frames * (REGULAR_PREFIX + frame + TAG_LEN)
        + FINAL_PREFIX
        + final_len
        + TAG_LEN
        + if signer.is_some() {
            2 + MAX_SIGNATURE_LEN
        } else {
            0
        };
    if out.len() < needed {
        return Err(Error::Config(format!(
            "the output buffer holds {} bytes; this message needs up to {needed}",
            out.len()
        )));
    }
    out[..header_bytes.len()].copy_from_slice(&header_bytes);
    let mut at = header_bytes.len();
    let chunks = plaintext
        .chunks(frame)
        .chain((plaintext.is_empty()).then_some(&[][..]));
    for (sequence, (index, chunk)) in (1u32..).zip(chunks.enumerate()) {
        let start = at;
        let kind = if index == regular_frames {
            BodyKind::FinalFrame
        } else {
            BodyKind::Frame
        };
        if kind == BodyKind::FinalFrame {
            out[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
            at += 4;
        }
        out[at..at + 4].copy_from_slice(&sequence.to_be_bytes());
        out[at + 4..at + 4 + IV_LEN].copy_from_slice(&keys::iv(sequence));
        at += 4 + IV_LEN;
        if kind == BodyKind::FinalFrame {
            out[at..at + 4].copy_from_slice(&(chunk.len() as u32).to_be_bytes());
            at += 4;
        }
        let (aad, aad_len) = keys::body_aad(&header.message_id, kind, sequence, chunk.len() as u64);
        let end = at + chunk.len() + TAG_LEN;
        key.seal_into(sequence, &aad[..aad_len], chunk, &mut out[at..end])?;
        at = end;
        if let Some(signer) = &mut signer {
            signer.update(&out[start..at]);
        }
    }
    if let Some(signer) = signer {
        let signature = signer.finish()?;
        out[at..at + 2].copy_from_slice(&(signature.len() as u16).to_be_bytes());
        out[at + 2..at + 2 + signature.len()].copy_from_slice(&signature);
        at += 2 + signature.len();
    }
    Ok(at)
}

/// Writes one message to `W`. Call [`Encryptor::finish`] at the end: without it the message has
/// no final frame (and no signature) and every reader rejects it as truncated.
pub struct Encryptor<W: Write> {
    out: W,
    key: MessageKey,
    message_id: [u8; MESSAGE_ID_LEN],
    frame_length: usize,
    sequence: u32,
    /// `FINAL_PREFIX` bytes, then room for one frame of plaintext (encrypted in place), then the tag.
    staging: Zeroizing<Vec<u8>>,
    filled: usize,
    signer: Option<Signer>,
    header: Header,
}

impl<W: Write> std::fmt::Debug for Encryptor<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryptor")
            .field("sequence", &self.sequence)
            .finish()
    }
}

impl<W: Write> Encryptor<W> {
    /// Asks `keyring` for the data key, then writes the header to `out`.
    pub fn new(
        mut out: W,
        keyring: &dyn Keyring,
        context: EncryptionContext,
        config: &Config,
    ) -> Result<Self> {
        let Begun {
            header,
            header_bytes,
            key,
            signer,
        } = begin(keyring, context, config)?;
        out.write_all(&header_bytes)?;
        let message_id = header.message_id;
        let frame_length = config.frame_length as usize;
        Ok(Self {
            out,
            key,
            message_id,
            frame_length,
            sequence: 1,
            staging: Zeroizing::new(vec![0; FINAL_PREFIX + frame_length + TAG_LEN]),
            filled: 0,
            signer,
            header,
        })
    }

    /// The header written, including the encrypted data keys and the context as stored.
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn emit(&mut self, kind: BodyKind) -> Result<()> {
        let sequence = self.sequence;
        let len = self.filled;
        let (aad, aad_len) = keys::body_aad(&self.message_id, kind, sequence, len as u64);
        let content = FINAL_PREFIX..FINAL_PREFIX + len;
        let tag = self.key.seal(
            sequence,
            &aad[..aad_len],
            &mut self.staging[content.clone()],
        )?;
        self.staging[content.end..content.end + TAG_LEN].copy_from_slice(&tag);
        let start = if kind == BodyKind::FinalFrame {
            self.staging[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
            self.staging[4..8].copy_from_slice(&sequence.to_be_bytes());
            self.staging[8..20].copy_from_slice(&keys::iv(sequence));
            self.staging[20..24].copy_from_slice(&(len as u32).to_be_bytes());
            0
        } else {
            self.staging[8..12].copy_from_slice(&sequence.to_be_bytes());
            self.staging[12..24].copy_from_slice(&keys::iv(sequence));
            FINAL_PREFIX - REGULAR_PREFIX
        };
        let frame = &self.staging[start..content.end + TAG_LEN];
        self.out.write_all(frame)?;
        if let Some(signer) = &mut self.signer {
            signer.update(frame);
        }
        self.filled = 0;
        if kind == BodyKind::Frame {
            if sequence == MAX_SEQUENCE {
                return Err(Error::TooManyFrames(MAX_SEQUENCE));
            }
            self.sequence += 1;
        }
        Ok(())
    }

    /// Writes a regular frame sealed directly from `plaintext` (exactly one frame long).
    fn emit_from(&mut self, plaintext: &[u8]) -> Result<()> {
        let sequence = self.sequence;
        let (aad, aad_len) = keys::body_aad(
            &self.message_id,
            BodyKind::Frame,
            sequence,
            plaintext.len() as u64,
        );
        let start = FINAL_PREFIX - REGULAR_PREFIX;
        self.staging[start..start + 4].copy_from_slice(&sequence.to_be_bytes());
        self.staging[start + 4..FINAL_PREFIX].copy_from_slice(&keys::iv(sequence));
        let end = FINAL_PREFIX + plaintext.len() + TAG_LEN;
        self.key.seal_into(
            sequence,
            &aad[..aad_len],
            plaintext,
            &mut self.staging[FINAL_PREFIX..end],
        )?;
        let frame = &self.staging[start..end];
        self.out.write_all(frame)?;
        if let Some(signer) = &mut self.signer {
            signer.update(frame);
        }
        if sequence == MAX_SEQUENCE {
            return Err(Error::TooManyFrames(MAX_SEQUENCE));
        }
        self.sequence += 1;
        Ok(())
    }

    /// Writes the final frame (with whatever plaintext is buffered, possibly none) and, for
    /// signed suites, the footer; flushes and returns the output.
    pub fn finish(mut self) -> Result<W> {
        self.emit(BodyKind::FinalFrame)?;
        if let Some(signer) = self.signer.take() {
            let signature = signer.finish()?;
            self.out
                .write_all(&(signature.len() as u16).to_be_bytes())?;
            self.out.write_all(&signature)?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Encryptor<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // A full frame becomes a regular frame only once more plaintext arrives, so an input that
        // is an exact multiple of the frame length ends with a full final frame, as the SDKs do.
        if self.filled == self.frame_length {
            self.emit(BodyKind::Frame)?;
        }
        if self.filled == 0 && buf.len() > self.frame_length {
            // A whole frame with more to follow: encrypt straight from the caller's bytes.
            self.emit_from(&buf[..self.frame_length])?;
            return Ok(self.frame_length);
        }
        let take = buf.len().min(self.frame_length - self.filled);
        let start = FINAL_PREFIX + self.filled;
        self.staging[start..start + take].copy_from_slice(&buf[..take]);
        self.filled += take;
        Ok(take)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
