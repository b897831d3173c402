//! CopyObject and UploadPartCopy: both open a source object (with its own SSE-C key, if any)
//! and re-seal its plaintext under the destination's data key. Nothing is copied as
//! ciphertext, so a copy can change the encryption mode and never shares a key with its source.

use std::collections::BTreeMap;
use std::ops::Range;

use atrest_crypto::SecretKey32;
use atrest_kms::RequestContext;
use s3s::checksum::ChecksumHasher;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::{
    ObjectService, SseFields, check_conditions, customer_headers, customer_md5, now, object_arn,
    object_etag, seal_metadata, sse_headers, timestamp,
};
use crate::access::client_context;
use crate::meta::{ContentHeaders, ObjectRecord, PartRecord};
use crate::seal::{Place, read_range};

/// An opened copy source.
struct Source {
    record: ObjectRecord,
    data_key: SecretKey32,
    metadata: Option<Metadata>,
}

/// The `x-amz-copy-source-if-*` headers.
struct SourceConditions<'a> {
    if_match: Option<&'a ETagCondition>,
    if_none_match: Option<&'a ETagCondition>,
    if_modified_since: Option<&'a Timestamp>,
    if_unmodified_since: Option<&'a Timestamp>,
}

/// Opens the copy source of a CopyObject or UploadPartCopy input (they name the fields alike).
macro_rules! open_copy_source {
    ($service:expr, $input:expr, $ctx:expr) => {
        $service.open_copy_source(
            &$input.copy_source,
            [
                &$input.copy_source_sse_customer_algorithm,
                &$input.copy_source_sse_customer_key,
                &$input.copy_source_sse_customer_key_md5,
            ],
            &SourceConditions {
                if_match: $input.copy_source_if_match.as_ref(),
                if_none_match: $input.copy_source_if_none_match.as_ref(),
                if_modified_since: $input.copy_source_if_modified_since.as_ref(),
                if_unmodified_since: $input.copy_source_if_unmodified_since.as_ref(),
            },
            $ctx,
        )
    };
}

impl ObjectService {
    fn open_copy_source(
        &self,
        copy_source: &CopySource,
        customer: [&Option<String>; 3],
        conditions: &SourceConditions<'_>,
        ctx: &RequestContext,
    ) -> S3Result<(String, String, Source)> {
        let CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = copy_source
        else {
            return Err(s3_error!(
                NotImplemented,
                "access point copy sources are not supported"
            ));
        };
        // Buckets are unversioned: the only version of an object is `null`.
        if version_id.as_deref().is_some_and(|id| id != "null") {
            return Err(s3_error!(InvalidArgument, "Invalid version id specified"));
        }
        let record = self.object(bucket, key)?;
        // A copy source that fails a condition is 412 whichever condition it was.
        check_conditions(
            &record,
            conditions.if_match,
            conditions.if_none_match,
            conditions.if_modified_since,
            conditions.if_unmodified_since,
        )
        .map_err(|error| match error.code() {
            S3ErrorCode::NotModified => s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ),
            _ => error,
        })?;
        let [algorithm, key_text, md5] = customer;
        let customer = self.customer_key(customer_headers(algorithm, key_text, md5), ctx)?;
        let arn = object_arn(bucket, key);
        let (data_key, metadata) = self.open_object(&record, ctx, &arn, customer.as_ref())?;
        Ok((
            bucket.to_string(),
            key.to_string(),
            Source {
                record,
                data_key,
                metadata,
            },
        ))
    }

    /// The plaintext of `range` of the source (object `key` in `bucket`), as a stream that
    /// decrypts as it is read.
    fn source_body(
        &self,
        source: &Source,
        (bucket, key): (&str, &str),
        range: Range<u64>,
    ) -> S3Result<StreamingBlob> {
        let streams = self.open_streams(&source.record, (bucket, key), &source.data_key)?;
        Ok(StreamingBlob::wrap(read_range(streams, range)?))
    }

    pub(super) async fn copy_object_op(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let ctx = client_context(&req.extensions)?;
        let input = req.input;
        let destination = self.bucket(&input.bucket)?;
        let (source_bucket, source_key, source) = open_copy_source!(self, input, &ctx)?;
        let headers = sse_headers_of!(input);
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|directive| directive.as_str() == MetadataDirective::REPLACE);
        let to_itself = source_bucket == input.bucket && source_key == input.key;
        let changes_encryption = headers.server_side_encryption.is_some()
            || !headers.customer.is_empty()
            || headers.kms_key_id.is_some();
        if to_itself && !replace && !changes_encryption {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        let requested = self.resolve_sse(&headers, &destination, &ctx)?;
        let arn = object_arn(&input.bucket, &input.key);
        let data_key = self.keys.create(&requested, &ctx, &arn)?;
        let body = self.source_body(
            &source,
            (&source_bucket, &source_key),
            0..source.record.size,
        )?;
        let place = Place {
            bucket: &input.bucket,
            key: &input.key,
            upload_id: None,
        };
        let sealed = self
            .seal(
                &data_key.key,
                Some(body),
                ChecksumHasher::default(),
                (place, 1),
            )
            .await?;
        let (metadata, content) = if replace {
            (
                input.metadata,
                ContentHeaders {
                    content_type: input.content_type.as_ref().map(ToString::to_string),
                    content_encoding: input.content_encoding,
                    content_disposition: input.content_disposition,
                    content_language: input.content_language,
                    cache_control: input.cache_control,
                },
            )
        } else {
            (source.metadata, source.record.headers)
        };
        let etag = object_etag(&data_key.protection, &sealed.md5);
        let last_modified = now();
        let record = ObjectRecord {
            size: sealed.stream.size,
            etag: etag.clone(),
            last_modified,
            key: data_key.protection,
            streams: vec![sealed.stream],
            multipart: false,
            headers: content,
            sealed_metadata: seal_metadata(&data_key.key, &arn, metadata.as_ref()),
            checksums: BTreeMap::new(),
            upload_id: None,
        };
        self.store_object(&input.bucket, &input.key, &record)?;
        let sse = SseFields::of(&record.key, customer_md5(&requested));
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(etag)),
                last_modified: Some(timestamp(last_modified)),
                ..CopyObjectResult::default()
            }),
            server_side_encryption: sse.algorithm,
            ssekms_key_id: sse.kms_key_id,
            bucket_key_enabled: sse.bucket_key_enabled,
            sse_customer_algorithm: sse.customer_algorithm,
            sse_customer_key_md5: sse.customer_key_md5,
            copy_source_version_id: None,
            ..CopyObjectOutput::default()
        }))
    }

    pub(super) async fn upload_part_copy_op(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let ctx = client_context(&req.extensions)?;
        let input = req.input;
        let number = super::part_number(input.part_number)?;
        let upload = self.upload(&input.upload_id, &input.bucket, &input.key)?;
        let (source_bucket, source_key, source) = open_copy_source!(self, input, &ctx)?;
        let range = match &input.copy_source_range {
            Some(text) => copy_source_range(text, source.record.size)?,
            None => 0..source.record.size,
        };
        let customer = customer_key_of!(self, input, &ctx)?;
        let arn = object_arn(&input.bucket, &input.key);
        let data_key = self
            .keys
            .open(&upload.data_key, &ctx, &arn, customer.as_ref())?;
        let body = self.source_body(&source, (&source_bucket, &source_key), range)?;
        let place = Place {
            bucket: &input.bucket,
            key: &input.key,
            upload_id: Some(&input.upload_id),
        };
        let sealed = self
            .seal(
                &data_key,
                Some(body),
                ChecksumHasher::default(),
                (place, number),
            )
            .await?;
        let etag = object_etag(&upload.data_key, &sealed.md5);
        let last_modified = now();
        let part = PartRecord {
            stream: sealed.stream,
            etag: etag.clone(),
            last_modified,
        };
        self.store_part(&input.upload_id, number, part)?;
        let sse = SseFields::of(
            &upload.data_key,
            customer.as_ref().map(|c| c.md5_base64.clone()),
        );
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(etag)),
                last_modified: Some(timestamp(last_modified)),
                ..CopyPartResult::default()
            }),
            server_side_encryption: sse.algorithm,
            ssekms_key_id: sse.kms_key_id,
            bucket_key_enabled: sse.bucket_key_enabled,
            sse_customer_algorithm: sse.customer_algorithm,
            sse_customer_key_md5: sse.customer_key_md5,
            ..UploadPartCopyOutput::default()
        }))
    }
}

/// `x-amz-copy-source-range: bytes=first-last`, both inclusive and inside the source, as
/// UploadPartCopy requires (no suffix or open-ended forms).
fn copy_source_range(text: &str, size: u64) -> S3Result<Range<u64>> {
    let invalid = || {
        S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("Range specified is not valid for source object of size: {size}"),
        )
    };
    let (first, last) = text
        .strip_prefix("bytes=")
        .and_then(|range| range.split_once('-'))
        .ok_or_else(|| s3_error!(InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"))?;
    let first: u64 = first.trim().parse().map_err(|_| invalid())?;
    let last: u64 = last.trim().parse().map_err(|_| invalid())?;
    if first > last || last >= size {
        return Err(invalid());
    }
    Ok(first..last + 1)
}

#[cfg(test)]
mod tests {
    use super::copy_source_range;

    #[test]
    fn copy_source_ranges_are_inclusive_and_inside_the_source() {
        assert_eq!(copy_source_range("bytes=0-9", 10).unwrap(), 0..10);
        assert_eq!(copy_source_range("bytes=5-5", 10).unwrap(), 5..6);
        for bad in [
            "bytes=0-10",
            "bytes=6-5",
            "bytes=-5",
            "bytes=5-",
            "0-5",
            "bytes=a-b",
        ] {
            assert!(copy_source_range(bad, 10).is_err(), "{bad}");
        }
    }
}
