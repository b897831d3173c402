//! Moving object bytes through the segment format (`atrest_crypto::segments`): sealing a
//! request body into a blob, and opening just the segments a (ranged) read needs.

use std::ops::Range;
use std::sync::Arc;

use atrest_crypto::SecretKey32;
use atrest_crypto::segments::{HEADER_LEN, Layout, SEGMENT_SIZE, SegmentKey, StreamHeader};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Md5};
use s3s::dto::StreamingBlob;
use s3s::{S3Error, S3Result, s3_error};

use crate::blobs::{BlobReader, BlobStore};
use crate::meta::StreamRecord;
use crate::sse::integrity_error;

/// Where a stream belongs: the object, and the multipart upload its parts were sealed in. Its
/// segments are sealed with this place (and the part number) as associated data, so a stored
/// stream that is swapped, reordered or moved to another object no longer opens.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub upload_id: Option<&'a str>,
}

impl Place<'_> {
    /// FROZEN (stored data depends on it): `"atrest s3 stream place v1"`, then the bucket, the
    /// key and the upload id (empty for a single PUT) each as a 32-bit big-endian length and
    /// its bytes, then the part number as 32-bit big-endian.
    pub fn binding(&self, part: u32) -> Vec<u8> {
        const LABEL: &[u8] = b"atrest s3 stream place v1";
        let upload = self.upload_id.unwrap_or_default();
        let mut out = Vec::with_capacity(
            LABEL.len() + 16 + self.bucket.len() + self.key.len() + upload.len(),
        );
        out.extend_from_slice(LABEL);
        for field in [self.bucket, self.key, upload] {
            // Bucket names, keys (1 KiB) and upload ids are far below 4 GiB.
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out.extend_from_slice(&part.to_be_bytes());
        out
    }
}

/// What sealing a body produced.
pub struct SealedBody {
    pub stream: StreamRecord,
    pub md5: [u8; 16],
    pub checksum: s3s::dto::Checksum,
}

/// Seals `body` into a new blob under `data_key`, bound to `place` as part `part`, hashing
/// the plaintext on the way.
pub async fn seal_body(
    blobs: &dyn BlobStore,
    data_key: &SecretKey32,
    body: StreamingBlob,
    mut checksums: ChecksumHasher,
    (place, part): (Place<'_>, u32),
) -> S3Result<SealedBody> {
    let header = StreamHeader::random();
    let key = SegmentKey::derive(data_key, &header, &place.binding(part));
    let mut writer = blobs.create().map_err(io_error)?;
    writer.write(&header.to_bytes()).map_err(io_error)?;
    let mut md5 = Md5::new();
    let mut segment: Vec<u8> = Vec::with_capacity(SEGMENT_SIZE + 16);
    let mut index = 0u64;
    let mut size = 0u64;
    let mut body = body;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|error| {
            S3Error::with_message(s3s::S3ErrorCode::IncompleteBody, error.to_string())
        })?;
        md5.update(&chunk);
        checksums.update(&chunk);
        size += chunk.len() as u64;
        let mut rest: &[u8] = &chunk;
        while !rest.is_empty() {
            if segment.len() == SEGMENT_SIZE {
                // More data follows, so the full segment is not the last one.
                key.seal_in_place(index, false, &mut segment);
                writer.write(&segment).map_err(io_error)?;
                segment.clear();
                index += 1;
            }
            let take = rest.len().min(SEGMENT_SIZE - segment.len());
            segment.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
    }
    key.seal_in_place(index, true, &mut segment);
    writer.write(&segment).map_err(io_error)?;
    let blob = tokio::task::block_in_place(|| writer.commit()).map_err(io_error)?;
    Ok(SealedBody {
        stream: StreamRecord {
            blob,
            size,
            part: Some(part),
        },
        md5: md5.finalize(),
        checksum: checksums.finalize(),
    })
}

/// One stored stream, opened for reading.
pub struct OpenStream {
    reader: Box<dyn BlobReader>,
    layout: Layout,
    key: SegmentKey,
}

impl OpenStream {
    /// Opens `record`, a stream of the object at `place`.
    pub fn open(
        blobs: &dyn BlobStore,
        record: &StreamRecord,
        data_key: &SecretKey32,
        place: Place<'_>,
    ) -> S3Result<Self> {
        let reader = blobs.open(&record.blob).map_err(io_error)?;
        let layout = Layout::new(record.size);
        let stored = reader.stored_len().map_err(io_error)?;
        if stored != layout.sealed_len() {
            return Err(integrity_error("a stored object stream (wrong length)"));
        }
        let mut header = [0u8; HEADER_LEN];
        reader.read_exact_at(&mut header, 0).map_err(io_error)?;
        let header = StreamHeader::parse(&header)
            .map_err(|_| integrity_error("a stored object stream header"))?;
        // The record says whether the stream was sealed bound; a header that disagrees was
        // swapped or edited.
        let binding = match record.part {
            Some(part) if header.bound => place.binding(part),
            None if !header.bound => Vec::new(),
            _ => return Err(integrity_error("a stored object stream header")),
        };
        Ok(Self {
            reader,
            layout,
            key: SegmentKey::derive(data_key, &header, &binding),
        })
    }

    /// Reads, authenticates and decrypts segment `index`.
    fn segment(&self, index: u64) -> S3Result<Vec<u8>> {
        let mut sealed = vec![0u8; self.layout.sealed_segment_len(index)];
        self.reader
            .read_exact_at(&mut sealed, self.layout.segment_offset(index))
            .map_err(io_error)?;
        let plain_len = self
            .key
            .open_in_place(index, self.layout.is_last(index), &mut sealed)
            .map_err(|_| integrity_error("a stored object segment"))?
            .len();
        sealed.truncate(plain_len);
        Ok(sealed)
    }
}

/// One step of a read: bytes `within` of segment `segment` of stream `stream`.
struct Step {
    stream: usize,
    segment: u64,
    within: Range<usize>,
}

/// The plaintext of `range` (object offsets) across `streams` (the object's parts in order).
/// The first segment is opened before this returns, so a damaged object fails with an S3
/// error before any byte is sent; later damage ends the body with an error, never with
/// unauthenticated bytes.
pub fn read_range(
    streams: Vec<OpenStream>,
    range: Range<u64>,
) -> S3Result<impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static> {
    let mut steps = Vec::new();
    let mut base = 0u64;
    for (stream_index, stream) in streams.iter().enumerate() {
        let size = stream.layout.plaintext_len;
        let start = range.start.max(base);
        let end = range.end.min(base + size);
        if start < end {
            let (local_start, local_end) = (start - base, end - base);
            for segment in Layout::segment_of(local_start)..=Layout::segment_of(local_end - 1) {
                let segment_start = segment * SEGMENT_SIZE as u64;
                let from = local_start.max(segment_start) - segment_start;
                let to = local_end.min(segment_start + SEGMENT_SIZE as u64) - segment_start;
                steps.push(Step {
                    stream: stream_index,
                    segment,
                    // Both are at most SEGMENT_SIZE.
                    within: from as usize..to as usize,
                });
            }
        }
        base += size;
    }
    let streams = Arc::new(streams);
    let run = move |step: Step| -> S3Result<Bytes> {
        let plain = streams[step.stream].segment(step.segment)?;
        let mut bytes = Bytes::from(plain);
        Ok(bytes
            .split_off(step.within.start)
            .split_to(step.within.len()))
    };
    let mut steps = steps.into_iter();
    let first = match steps.next() {
        Some(step) => Some(run(step)?),
        None => None,
    };
    let rest = futures::stream::iter(steps).map(move |step| {
        run(step).map_err(|error| {
            tracing::error!(%error, "object read failed mid-body; ending the response");
            std::io::Error::other(error.to_string())
        })
    });
    Ok(futures::stream::iter(first.map(Ok)).chain(rest))
}

pub fn io_error(error: std::io::Error) -> S3Error {
    tracing::error!(%error, "object store I/O");
    // ENOSPC, EDQUOT: a full disk is the server's condition, not the request's; nothing was
    // stored (the partial blob is removed), and the client may retry once space frees.
    if matches!(error.raw_os_error(), Some(28 | 122)) {
        return S3Error::with_message(
            s3s::S3ErrorCode::ServiceUnavailable,
            "There is not enough free space to store the object; nothing was stored.",
        );
    }
    s3_error!(InternalError, "object store I/O failed")
}

/// ETag text for an MD5.
pub fn md5_hex(md5: &[u8]) -> String {
    hex::encode(md5)
}
