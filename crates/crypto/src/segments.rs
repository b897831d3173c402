//! Segmented streaming AEAD for stored objects: the STREAM construction (Hoang, Reyhanitabar,
//! Rogaway, Vizár, "Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance",
//! CRYPTO 2015), as age uses it, over AES-256-GCM.
//!
//! A sealed stream (one object, or one part of a multipart object) is FROZEN as:
//!
//! ```text
//! header (40 bytes):  magic "ATOB" | version 0x01 or 0x02 | log2(segment size) 0x10 | 0x00 0x00 | salt (32)
//! segment 0:          AES-256-GCM(segment key, nonce(0, last?), plaintext[0 .. 64 KiB]) || tag (16)
//! segment 1:          ...
//! last segment:       1 ..= 64 KiB of plaintext (0 only for an empty stream) || tag (16)
//! ```
//!
//! - The segment key is HKDF-SHA256 (RFC 5869) of the caller's 256-bit data key, with the
//!   header's random salt and the info `"atrest segments v1"` (version 1) or `"atrest segments
//!   v2"` (version 2): every stream gets a fresh key even when a data key is reused (the parts
//!   of one multipart upload share a data key).
//! - Version 2 binds the stream to its place: every segment is sealed with the caller's
//!   *binding* as AES-GCM associated data (for S3: bucket, key, upload id and part number), so a
//!   stream moved to another place (parts swapped within an object, or a stream transplanted
//!   from another object under the same data key) fails authentication. Version 1 streams,
//!   written before, have no binding and stay readable; new streams are always version 2.
//! - The nonce of segment `i` is `i` as an 88-bit big-endian counter followed by one flag byte,
//!   `0x01` on the last segment and `0x00` otherwise. Reordered or swapped segments fail
//!   authentication; a truncated stream fails because no remaining segment carries the last
//!   flag; an appended one fails because it follows a last segment.
//! - Segments are fixed size, so a ranged read opens only the segments it touches.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::aead::{OpenError, TAG_LEN};
use crate::secret::SecretKey32;

/// Plaintext bytes per segment (all but the last, which holds 1 ..= this many).
pub const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;
const SEGMENT_SHIFT: u8 = 16;
/// Stored bytes per full segment.
pub const SEALED_SEGMENT_SIZE: usize = SEGMENT_SIZE + TAG_LEN;
pub const HEADER_LEN: usize = 40;
const MAGIC: &[u8; 4] = b"ATOB";
/// DO NOT CHANGE: the versions and their key-derivation labels are part of stored data.
const UNBOUND: u8 = 1;
const BOUND: u8 = 2;
const KDF_INFO_UNBOUND: &[u8] = b"atrest segments v1";
const KDF_INFO_BOUND: &[u8] = b"atrest segments v2";

/// The header could not be read as a version this build knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("segment stream header is {0} bytes, need {HEADER_LEN}")]
    Truncated(usize),
    #[error("not a segment stream (bad magic)")]
    BadMagic,
    #[error("unsupported segment stream version {0}")]
    UnsupportedVersion(u8),
    #[error("unsupported segment size 2^{0}")]
    UnsupportedSegmentSize(u8),
}

/// The per-stream header: everything but the data key (and the binding) needed to open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    /// Whether segments carry the stream's binding as associated data (version 2).
    pub bound: bool,
    pub salt: [u8; 32],
}

impl StreamHeader {
    /// A version 2 header with a fresh random salt, for a new stream.
    pub fn random() -> Self {
        let mut salt = [0u8; 32];
        crate::random::fill(&mut salt);
        Self { bound: true, salt }
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(MAGIC);
        out[4] = if self.bound { BOUND } else { UNBOUND };
        out[5] = SEGMENT_SHIFT;
        out[8..].copy_from_slice(&self.salt);
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, HeaderError> {
        let header = bytes
            .get(..HEADER_LEN)
            .ok_or(HeaderError::Truncated(bytes.len()))?;
        if &header[..4] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let bound = match header[4] {
            UNBOUND => false,
            BOUND => true,
            other => return Err(HeaderError::UnsupportedVersion(other)),
        };
        if header[5] != SEGMENT_SHIFT || header[6..8] != [0, 0] {
            return Err(HeaderError::UnsupportedSegmentSize(header[5]));
        }
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&header[8..]);
        Ok(Self { bound, salt })
    }
}

/// The AES-256-GCM key of one stream, derived from a data key and the stream's header, with
/// the binding its segments are sealed under.
pub struct SegmentKey {
    key: LessSafeKey,
    binding: Vec<u8>,
}

impl SegmentKey {
    /// `binding` names the stream's place; a version 1 (unbound) header ignores it, as such
    /// streams were sealed without one.
    pub fn derive(data_key: &SecretKey32, header: &StreamHeader, binding: &[u8]) -> Self {
        let (info, binding) = if header.bound {
            (KDF_INFO_BOUND, binding.to_vec())
        } else {
            (KDF_INFO_UNBOUND, Vec::new())
        };
        let derived = crate::kdf::derive_key32(data_key.expose(), &header.salt, info);
        #[allow(clippy::expect_used)] // AES_256_GCM accepts every 32-byte key.
        let key = UnboundKey::new(&AES_256_GCM, derived.expose()).expect("32-byte AES key");
        Self {
            key: LessSafeKey::new(key),
            binding,
        }
    }

    /// Encrypts `segment` (at most [`SEGMENT_SIZE`] bytes) in place and appends its tag.
    pub fn seal_in_place(&self, index: u64, last: bool, segment: &mut Vec<u8>) {
        debug_assert!(segment.len() <= SEGMENT_SIZE);
        #[allow(clippy::expect_used)] // only fails for inputs over 64 GiB.
        self.key
            .seal_in_place_append_tag(nonce(index, last), Aad::from(&self.binding[..]), segment)
            .expect("AES-GCM seal");
    }

    /// Verifies and decrypts one sealed segment in place, returning its plaintext.
    pub fn open_in_place<'a>(
        &self,
        index: u64,
        last: bool,
        sealed: &'a mut [u8],
    ) -> Result<&'a mut [u8], OpenError> {
        if sealed.len() < TAG_LEN || sealed.len() > SEALED_SEGMENT_SIZE {
            return Err(OpenError);
        }
        self.key
            .open_in_place(nonce(index, last), Aad::from(&self.binding[..]), sealed)
            .map_err(|_| OpenError)
    }
}

fn nonce(index: u64, last: bool) -> Nonce {
    let mut bytes = [0u8; NONCE_LEN];
    bytes[3..11].copy_from_slice(&index.to_be_bytes());
    bytes[11] = u8::from(last);
    Nonce::assume_unique_for_key(bytes)
}

/// Where a plaintext of `len` bytes sits once sealed: segment arithmetic in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub plaintext_len: u64,
}

impl Layout {
    pub fn new(plaintext_len: u64) -> Self {
        Self { plaintext_len }
    }

    /// Segments in the stream; an empty plaintext still has one (empty, last) segment.
    pub fn segments(&self) -> u64 {
        self.plaintext_len.div_ceil(SEGMENT_SIZE as u64).max(1)
    }

    /// Total stored bytes, header included.
    pub fn sealed_len(&self) -> u64 {
        HEADER_LEN as u64 + self.plaintext_len + self.segments() * TAG_LEN as u64
    }

    /// Offset of segment `index` in the stored stream.
    pub fn segment_offset(&self, index: u64) -> u64 {
        HEADER_LEN as u64 + index * SEALED_SEGMENT_SIZE as u64
    }

    /// Stored length of segment `index`.
    pub fn sealed_segment_len(&self, index: u64) -> usize {
        let start = index * SEGMENT_SIZE as u64;
        let plain = self
            .plaintext_len
            .saturating_sub(start)
            .min(SEGMENT_SIZE as u64);
        // `plain` is at most SEGMENT_SIZE, so the cast cannot truncate.
        plain as usize + TAG_LEN
    }

    pub fn is_last(&self, index: u64) -> bool {
        index + 1 == self.segments()
    }

    /// The segment holding plaintext byte `offset`.
    pub fn segment_of(offset: u64) -> u64 {
        offset >> SEGMENT_SHIFT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal_all(key: &SegmentKey, plaintext: &[u8]) -> Vec<Vec<u8>> {
        let layout = Layout::new(plaintext.len() as u64);
        (0..layout.segments())
            .map(|index| {
                let start = (index as usize) * SEGMENT_SIZE;
                let end = (start + SEGMENT_SIZE).min(plaintext.len());
                let mut segment = plaintext[start..end].to_vec();
                key.seal_in_place(index, layout.is_last(index), &mut segment);
                segment
            })
            .collect()
    }

    fn open_all(key: &SegmentKey, segments: &mut [Vec<u8>]) -> Result<Vec<u8>, OpenError> {
        let count = segments.len() as u64;
        let mut out = Vec::new();
        for (index, segment) in segments.iter_mut().enumerate() {
            let index = index as u64;
            out.extend_from_slice(key.open_in_place(index, index + 1 == count, segment)?);
        }
        Ok(out)
    }

    #[test]
    fn round_trips_at_segment_boundaries() {
        let data_key = crate::random::key32();
        let header = StreamHeader::random();
        let key = SegmentKey::derive(&data_key, &header, b"place");
        for len in [
            0,
            1,
            SEGMENT_SIZE - 1,
            SEGMENT_SIZE,
            SEGMENT_SIZE + 1,
            3 * SEGMENT_SIZE,
        ] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut sealed = seal_all(&key, &plaintext);
            let layout = Layout::new(len as u64);
            assert_eq!(sealed.len() as u64, layout.segments());
            let stored: u64 = sealed.iter().map(|s| s.len() as u64).sum();
            assert_eq!(stored + HEADER_LEN as u64, layout.sealed_len());
            for (index, segment) in sealed.iter().enumerate() {
                assert_eq!(segment.len(), layout.sealed_segment_len(index as u64));
            }
            assert_eq!(open_all(&key, &mut sealed).unwrap(), plaintext);
        }
    }

    #[test]
    fn detects_truncation_reordering_and_swaps() {
        let data_key = crate::random::key32();
        let key = SegmentKey::derive(&data_key, &StreamHeader::random(), b"place");
        let plaintext = vec![7u8; 3 * SEGMENT_SIZE];
        // Truncated: dropping the last segment leaves no segment with the last flag.
        let mut truncated = seal_all(&key, &plaintext);
        truncated.pop();
        assert_eq!(open_all(&key, &mut truncated), Err(OpenError));
        // Reordered.
        let mut reordered = seal_all(&key, &plaintext);
        reordered.swap(0, 1);
        assert_eq!(open_all(&key, &mut reordered), Err(OpenError));
        // A segment from another stream under the same data key (different salt).
        let other = SegmentKey::derive(&data_key, &StreamHeader::random(), b"place");
        let mut swapped = seal_all(&key, &plaintext);
        swapped[1] = seal_all(&other, &plaintext).remove(1);
        assert_eq!(open_all(&key, &mut swapped), Err(OpenError));
        // A flipped bit.
        let mut flipped = seal_all(&key, &plaintext);
        flipped[2][5] ^= 1;
        assert_eq!(open_all(&key, &mut flipped), Err(OpenError));
    }

    #[test]
    fn header_round_trips_and_rejects_unknown_versions() {
        let header = StreamHeader::random();
        let bytes = header.to_bytes();
        assert_eq!(StreamHeader::parse(&bytes).unwrap(), header);
        let mut bad = bytes;
        bad[4] = 3;
        assert_eq!(
            StreamHeader::parse(&bad),
            Err(HeaderError::UnsupportedVersion(3))
        );
        let mut unbound = bytes;
        unbound[4] = 1;
        let parsed = StreamHeader::parse(&unbound).unwrap();
        assert!(!parsed.bound);
        assert_eq!(parsed.to_bytes(), unbound);
        assert_eq!(
            StreamHeader::parse(&bytes[..10]),
            Err(HeaderError::Truncated(10))
        );
        let mut magic = bytes;
        magic[0] = b'X';
        assert_eq!(StreamHeader::parse(&magic), Err(HeaderError::BadMagic));
    }

    #[test]
    fn a_bound_stream_opens_only_in_its_place() {
        let data_key = SecretKey32::from_bytes([3; 32]);
        let header = StreamHeader::random();
        let plaintext = vec![9u8; SEGMENT_SIZE + 10];
        let mut sealed = seal_all(
            &SegmentKey::derive(&data_key, &header, b"part 1"),
            &plaintext,
        );
        let elsewhere = SegmentKey::derive(&data_key, &header, b"part 3");
        assert!(open_all(&elsewhere, &mut sealed.clone()).is_err());
        let here = SegmentKey::derive(&data_key, &header, b"part 1");
        assert_eq!(open_all(&here, &mut sealed).unwrap(), plaintext);
    }

    /// A version 1 stream (sealed before bindings, without associated data) stays readable,
    /// whatever binding the reader names; relabelling it version 2 does not open it.
    #[test]
    fn unbound_version_1_streams_still_open() {
        let data_key = SecretKey32::from_bytes([4; 32]);
        let mut header = StreamHeader::random();
        header.bound = false;
        let derived = crate::kdf::derive_key32(data_key.expose(), &header.salt, KDF_INFO_UNBOUND);
        let legacy = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, derived.expose()).unwrap());
        let mut segment = b"written by an older atrest".to_vec();
        legacy
            .seal_in_place_append_tag(nonce(0, true), Aad::empty(), &mut segment)
            .unwrap();
        let key = SegmentKey::derive(&data_key, &header, b"ignored");
        assert_eq!(
            key.open_in_place(0, true, &mut segment.clone()).unwrap(),
            b"written by an older atrest"
        );
        header.bound = true;
        let relabelled = SegmentKey::derive(&data_key, &header, b"");
        assert!(relabelled.open_in_place(0, true, &mut segment).is_err());
    }
}
