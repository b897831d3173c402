//! A cap on aws-chunked chunk sizes, enforced while the body streams in.
//!
//! s3s 0.14 reads each `aws-chunked` chunk whole before it checks that chunk's signature
//! (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`) or passes it on (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`),
//! so one chunk header declaring 1 GiB made the server hold 1 GiB for a request whose signature
//! was never going to verify. [`ChunkFraming`] follows the framing of the body as it arrives
//! (`hex-size[;chunk-signature=...]\r\n data \r\n`, AWS "Signature Calculations for the
//! Authorization Header: Transferring Payload in Multiple Chunks") and refuses a chunk header
//! that declares more than [`MAX_CHUNK_SIZE`], before any of its data is read. The SDKs send
//! 64 KiB (Go, Rust, Java) or 1 MiB (botocore) chunks.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use s3s::StdError;
use s3s::stream::{ByteStream, RemainingLength};

/// The largest chunk a request may declare.
pub const MAX_CHUNK_SIZE: u64 = 8 << 20;
/// The longest chunk header line: hex size, `;chunk-signature=` and 64 hex digits, CRLF
/// (s3s allows 1 KiB).
const MAX_HEADER_LINE: usize = 1024;

/// Why a chunked body was cut off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error(
        "an aws-chunked chunk of {0} bytes exceeds the {MAX_CHUNK_SIZE}-byte limit; send smaller chunks"
    )]
    ChunkTooLarge(u64),
    #[error("malformed aws-chunked chunk header")]
    Malformed,
}

/// Where in the framing the next byte falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a chunk header line: the size digits so far, and whether they ended.
    Header {
        size: u64,
        digits: usize,
        size_done: bool,
        line: usize,
    },
    /// Inside a chunk's data and its trailing CRLF: bytes left.
    Data(u64),
    /// After the final zero-size chunk: trailers, which s3s bounds itself.
    Trailers,
}

/// Follows aws-chunked framing over a body given in arbitrary pieces (sans-io).
#[derive(Debug, Clone)]
pub struct ChunkFraming {
    state: State,
}

impl Default for ChunkFraming {
    fn default() -> Self {
        Self {
            state: State::Header {
                size: 0,
                digits: 0,
                size_done: false,
                line: 0,
            },
        }
    }
}

impl ChunkFraming {
    /// Follows `bytes`, the next piece of the body.
    pub fn scan(&mut self, mut bytes: &[u8]) -> Result<(), FramingError> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Trailers => return Ok(()),
                State::Data(left) => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    *left -= take as u64;
                    bytes = &bytes[take..];
                    if *left == 0 {
                        *self = Self::default();
                    }
                }
                State::Header {
                    size,
                    digits,
                    size_done,
                    line,
                } => {
                    let byte = bytes[0];
                    bytes = &bytes[1..];
                    *line += 1;
                    if *line > MAX_HEADER_LINE {
                        return Err(FramingError::Malformed);
                    }
                    if byte == b'\n' {
                        if *digits == 0 {
                            return Err(FramingError::Malformed);
                        }
                        if *size > MAX_CHUNK_SIZE {
                            return Err(FramingError::ChunkTooLarge(*size));
                        }
                        self.state = match *size {
                            0 => State::Trailers,
                            size => State::Data(size + 2),
                        };
                        continue;
                    }
                    if *size_done {
                        continue;
                    }
                    match (byte as char).to_digit(16) {
                        Some(digit) => {
                            *digits += 1;
                            *size = size
                                .checked_mul(16)
                                .map(|size| size + u64::from(digit))
                                .ok_or(FramingError::ChunkTooLarge(u64::MAX))?;
                        }
                        // The size is complete: refuse it before a byte of its data arrives.
                        None if *size > MAX_CHUNK_SIZE => {
                            return Err(FramingError::ChunkTooLarge(*size));
                        }
                        None => *size_done = true,
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether a request's body is aws-chunked (its payload hash names a streaming mode).
pub fn is_aws_chunked(headers: &http::HeaderMap) -> bool {
    headers
        .get("x-amz-content-sha256")
        .is_some_and(|value| value.as_bytes().starts_with(b"STREAMING-"))
}

/// A request body that fails as soon as its framing declares an oversized chunk.
pub struct GuardedBody<S> {
    inner: S,
    framing: ChunkFraming,
    remaining: Option<u64>,
    failed: bool,
}

impl<S> GuardedBody<S> {
    /// `content_length`: the raw (encoded) length, if the request gave one.
    pub fn new(inner: S, content_length: Option<u64>) -> Self {
        Self {
            inner,
            framing: ChunkFraming::default(),
            remaining: content_length,
            failed: false,
        }
    }
}

impl<S, E> Stream for GuardedBody<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<StdError>,
{
    type Item = Result<Bytes, StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                if let Err(error) = self.framing.scan(&bytes) {
                    self.failed = true;
                    return Poll::Ready(Some(Err(Box::new(error))));
                }
                if let Some(remaining) = &mut self.remaining {
                    *remaining = remaining.saturating_sub(bytes.len() as u64);
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S, E> ByteStream for GuardedBody<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<StdError>,
{
    fn remaining_length(&self) -> RemainingLength {
        match self.remaining.and_then(|left| usize::try_from(left).ok()) {
            Some(left) => RemainingLength::new_exact(left),
            None => RemainingLength::unknown(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(size: usize, signed: bool) -> Vec<u8> {
        let mut out = format!("{size:x}").into_bytes();
        if signed {
            out.extend_from_slice(b";chunk-signature=");
            out.extend_from_slice(&[b'a'; 64]);
        }
        out.extend_from_slice(b"\r\n");
        out.extend(std::iter::repeat_n(b'x', size));
        out.extend_from_slice(b"\r\n");
        out
    }

    #[test]
    fn accepts_sdk_sized_chunks_in_any_split() {
        let mut body = Vec::new();
        for _ in 0..3 {
            body.extend(chunk(65_536, true));
        }
        body.extend(chunk(100, true));
        body.extend(chunk(0, true));
        body.extend_from_slice(b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n");
        for piece in [1, 7, 4096, body.len()] {
            let mut framing = ChunkFraming::default();
            for part in body.chunks(piece) {
                framing.scan(part).expect("within limits");
            }
            assert_eq!(framing.state, State::Trailers, "piece {piece}");
        }
        let mut unsigned = ChunkFraming::default();
        unsigned
            .scan(&chunk(1 << 20, false))
            .expect("1 MiB (botocore)");
        unsigned
            .scan(&chunk(MAX_CHUNK_SIZE as usize, false))
            .expect("at the cap");
    }

    #[test]
    fn refuses_an_oversized_chunk_from_its_header_alone() {
        let mut framing = ChunkFraming::default();
        framing.scan(&chunk(10, true)).expect("small");
        let header = format!("{:x};chunk-signature=", 1u64 << 30);
        assert_eq!(
            framing.scan(header.as_bytes()),
            Err(FramingError::ChunkTooLarge(1 << 30))
        );
        let mut overflow = ChunkFraming::default();
        assert!(overflow.scan(b"ffffffffffffffffffff\r\n").is_err());
        let mut endless = ChunkFraming::default();
        assert_eq!(endless.scan(&[b';'; 2000]), Err(FramingError::Malformed));
        let mut empty = ChunkFraming::default();
        assert_eq!(empty.scan(b"\r\n"), Err(FramingError::Malformed));
    }

    #[test]
    fn only_streaming_payloads_are_framed() {
        let mut headers = http::HeaderMap::new();
        assert!(!is_aws_chunked(&headers));
        headers.insert(
            "x-amz-content-sha256",
            "UNSIGNED-PAYLOAD".parse().expect("value"),
        );
        assert!(!is_aws_chunked(&headers));
        headers.insert(
            "x-amz-content-sha256",
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER".parse().expect("value"),
        );
        assert!(is_aws_chunked(&headers));
    }
}
