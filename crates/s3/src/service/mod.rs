//! The S3 operations, over [`ObjectIndex`] (metadata), [`BlobStore`] (sealed bytes) and
//! [`DataKeys`] (the SSE modes). Operations that block on an fsync run in `block_in_place`.

/// The SSE-C key a request's `x-amz-server-side-encryption-customer-*` headers carry, checked.
/// Every input type that has them names them alike; a macro spares repeating the three.
macro_rules! customer_key_of {
    ($service:expr, $input:expr, $ctx:expr) => {
        $service.customer_key(
            customer_headers(
                &$input.sse_customer_algorithm,
                &$input.sse_customer_key,
                &$input.sse_customer_key_md5,
            ),
            $ctx,
        )
    };
}

/// The encryption headers of a write (PutObject, CopyObject, CreateMultipartUpload).
macro_rules! sse_headers_of {
    ($input:expr) => {
        sse_headers(
            $input.server_side_encryption.as_ref(),
            $input.ssekms_key_id.as_deref(),
            $input.ssekms_encryption_context.as_deref(),
            $input.bucket_key_enabled,
            customer_headers(
                &$input.sse_customer_algorithm,
                &$input.sse_customer_key,
                &$input.sse_customer_key_md5,
            ),
        )
    };
}

mod attributes;
mod copy;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use atrest_crypto::{AeadKey, SecretKey32, kdf};
use atrest_kms::RequestContext;
use s3s::checksum::ChecksumHasher;
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use crate::access::{RefusedDeletes, client_context};
use crate::blobs::BlobStore;
use crate::bucket_policy;
use crate::meta::{
    BucketDeletion, BucketEncryption, BucketRecord, ContentHeaders, KeyProtection, ObjectIndex,
    ObjectRecord, PartRecord, StreamRecord, UploadRecord,
};
use crate::seal::{OpenStream, Place, SealedBody, md5_hex, read_range, seal_body};
use crate::sse::{AES256, CustomerHeaders, CustomerKey, DataKeys, Requested, SseHeaders};

/// AWS's multipart limits (Amazon S3 User Guide, "Amazon S3 multipart upload limits").
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const MAX_PART_NUMBER: i32 = 10_000;
const METADATA_INFO: &[u8] = b"atrest s3 user metadata v1";

/// Operator settings that change behaviour.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Accept SSE-C over plain HTTP (tests and trusted networks only).
    pub allow_sse_c_over_http: bool,
    /// Accept SigV2 header authentication (legacy clients; see `signature_gate`).
    pub allow_sigv2_headers: bool,
}

pub struct ObjectService {
    index: Arc<dyn ObjectIndex>,
    blobs: Arc<dyn BlobStore>,
    keys: DataKeys,
    settings: Settings,
}

impl ObjectService {
    pub fn new(
        index: Arc<dyn ObjectIndex>,
        blobs: Arc<dyn BlobStore>,
        keys: DataKeys,
        settings: Settings,
    ) -> Self {
        Self {
            index,
            blobs,
            keys,
            settings,
        }
    }

    fn region(&self) -> &str {
        self.keys.kms().region()
    }

    fn bucket(&self, name: &str) -> S3Result<BucketRecord> {
        self.index
            .bucket(name)
            .map_err(internal)?
            .ok_or_else(|| s3_error!(NoSuchBucket, "The specified bucket does not exist"))
    }

    fn object(&self, bucket: &str, key: &str) -> S3Result<ObjectRecord> {
        match self.index.object(bucket, key).map_err(internal)? {
            Some(record) => Ok(record),
            None => {
                self.bucket(bucket)?;
                Err(s3_error!(NoSuchKey, "The specified key does not exist."))
            }
        }
    }

    fn customer_key(
        &self,
        headers: CustomerHeaders<'_>,
        ctx: &RequestContext,
    ) -> S3Result<Option<CustomerKey>> {
        headers.parse(ctx.secure_transport, self.settings.allow_sse_c_over_http)
    }

    fn resolve_sse(
        &self,
        headers: &SseHeaders<'_>,
        bucket: &BucketRecord,
        ctx: &RequestContext,
    ) -> S3Result<Requested> {
        let requested = headers.resolve(
            bucket.encryption.as_ref(),
            ctx.secure_transport,
            self.settings.allow_sse_c_over_http,
        )?;
        if matches!(requested, Requested::Customer(_)) {
            refuse_blocked_sse_c(bucket)?;
        }
        Ok(requested)
    }

    fn delete_blobs(&self, streams: &[StreamRecord]) {
        for stream in streams {
            if let Err(error) = self.blobs.delete(&stream.blob) {
                tracing::warn!(%error, blob = %stream.blob, "could not delete a replaced blob");
            }
        }
    }

    /// Opens an object's streams and its sealed metadata.
    fn open_object(
        &self,
        record: &ObjectRecord,
        ctx: &RequestContext,
        arn: &str,
        customer: Option<&CustomerKey>,
    ) -> S3Result<(SecretKey32, Option<Metadata>)> {
        let data_key = self.keys.open(&record.key, ctx, arn, customer)?;
        let metadata = open_metadata(&data_key, arn, &record.sealed_metadata)?;
        Ok((data_key, metadata))
    }

    /// Opens the streams of `record`, the object `key` in `bucket`.
    fn open_streams(
        &self,
        record: &ObjectRecord,
        (bucket, key): (&str, &str),
        data_key: &SecretKey32,
    ) -> S3Result<Vec<OpenStream>> {
        let place = Place {
            bucket,
            key,
            upload_id: record.upload_id.as_deref(),
        };
        record
            .streams
            .iter()
            .map(|stream| OpenStream::open(self.blobs.as_ref(), stream, data_key, place))
            .collect()
    }

    /// Seals `body` as part `part` of the object at `place` (part 1 of a single PUT).
    async fn seal(
        &self,
        data_key: &SecretKey32,
        body: Option<StreamingBlob>,
        checksums: ChecksumHasher,
        place: (Place<'_>, u32),
    ) -> S3Result<SealedBody> {
        let body = body.unwrap_or_else(|| StreamingBlob::from(s3s::Body::empty()));
        seal_body(self.blobs.as_ref(), data_key, body, checksums, place).await
    }
}

#[async_trait::async_trait]
impl S3 for ObjectService {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let input = req.input;
        if let Some(constraint) = input
            .create_bucket_configuration
            .as_ref()
            .and_then(|config| config.location_constraint.as_ref())
            && constraint.as_str() != self.region()
        {
            return Err(s3_error!(
                IllegalLocationConstraintException,
                "The {} location constraint is incompatible for the region specific endpoint this request was sent to.",
                constraint.as_str()
            ));
        }
        let record = BucketRecord {
            name: input.bucket.clone(),
            created: now(),
            encryption: None,
            policy: None,
            principal_ids: Default::default(),
        };
        let created =
            tokio::task::block_in_place(|| self.index.create_bucket(&record)).map_err(internal)?;
        if !created {
            return Err(s3_error!(
                BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it."
            ));
        }
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{}", input.bucket)),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(self.region().to_owned()),
            ..HeadBucketOutput::default()
        }))
    }

    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self
            .index
            .buckets()
            .map_err(internal)?
            .into_iter()
            .map(|bucket| Bucket {
                name: Some(bucket.name),
                creation_date: Some(timestamp(bucket.created)),
                bucket_region: Some(self.region().to_owned()),
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(self.owner()),
            ..ListBucketsOutput::default()
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let name = req.input.bucket;
        match tokio::task::block_in_place(|| self.index.delete_bucket(&name)).map_err(internal)? {
            BucketDeletion::Deleted => Ok(S3Response::new(DeleteBucketOutput::default())),
            BucketDeletion::NotFound => Err(s3_error!(
                NoSuchBucket,
                "The specified bucket does not exist"
            )),
            BucketDeletion::NotEmpty => Err(s3_error!(
                BucketNotEmpty,
                "The bucket you tried to delete is not empty"
            )),
        }
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.bucket(&req.input.bucket)?;
        // us-east-1 is reported as an empty constraint, as AWS does.
        let location_constraint = (self.region() != "us-east-1")
            .then(|| BucketLocationConstraint::from(self.region().to_owned()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint,
        }))
    }

    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        let mut bucket = self.bucket(&req.input.bucket)?;
        bucket.encryption = None;
        tokio::task::block_in_place(|| self.index.replace_bucket(&bucket)).map_err(internal)?;
        Ok(S3Response::new(DeleteBucketEncryptionOutput::default()))
    }

    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        let input = req.input;
        let mut bucket = self.bucket(&input.bucket)?;
        let policy = bucket_policy::parse(&bucket.name, &input.policy)?;
        // Users the policy names are bound to their unique ids now, as AWS binds them.
        bucket.principal_ids = self
            .keys
            .kms
            .resolve_principal_ids(&policy)
            .map_err(|_| s3_error!(MalformedPolicy, "Invalid principal in policy"))?;
        bucket.policy = Some(input.policy);
        tokio::task::block_in_place(|| self.index.replace_bucket(&bucket)).map_err(internal)?;
        Ok(S3Response::new(PutBucketPolicyOutput::default()))
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        let bucket = self.bucket(&req.input.bucket)?;
        let policy = bucket
            .policy
            .ok_or_else(|| s3_error!(NoSuchBucketPolicy, "The bucket policy does not exist"))?;
        Ok(S3Response::new(GetBucketPolicyOutput {
            policy: Some(policy),
        }))
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        let mut bucket = self.bucket(&req.input.bucket)?;
        bucket.principal_ids.clear();
        if bucket.policy.take().is_some() {
            tokio::task::block_in_place(|| self.index.replace_bucket(&bucket)).map_err(internal)?;
        }
        Ok(S3Response::new(DeleteBucketPolicyOutput::default()))
    }

    async fn put_object(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let mut body = req.input.body.take();
        let result = self.put_object_with(req, &mut body).await;
        if result.is_err() {
            drain(body).await;
        }
        result
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let ctx = client_context(&req.extensions)?;
        Ok(S3Response::new(self.read_object(&ctx, req.input, true)?))
    }

    /// A GET without the body (AWS: HeadObject takes GetObject's headers and checks).
    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let ctx = client_context(&req.extensions)?;
        let input = req.input;
        let get = GetObjectInput {
            bucket: input.bucket,
            key: input.key,
            if_match: input.if_match,
            if_none_match: input.if_none_match,
            if_modified_since: input.if_modified_since,
            if_unmodified_since: input.if_unmodified_since,
            part_number: input.part_number,
            range: input.range,
            sse_customer_algorithm: input.sse_customer_algorithm,
            sse_customer_key: input.sse_customer_key,
            sse_customer_key_md5: input.sse_customer_key_md5,
            ..GetObjectInput::default()
        };
        let out = self.read_object(&ctx, get, false)?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: out.content_length,
            content_range: out.content_range,
            parts_count: out.parts_count,
            accept_ranges: out.accept_ranges,
            e_tag: out.e_tag,
            last_modified: out.last_modified,
            metadata: out.metadata,
            content_type: out.content_type,
            content_encoding: out.content_encoding,
            content_disposition: out.content_disposition,
            content_language: out.content_language,
            cache_control: out.cache_control,
            server_side_encryption: out.server_side_encryption,
            ssekms_key_id: out.ssekms_key_id,
            bucket_key_enabled: out.bucket_key_enabled,
            sse_customer_algorithm: out.sse_customer_algorithm,
            sse_customer_key_md5: out.sse_customer_key_md5,
            checksum_crc32: out.checksum_crc32,
            checksum_crc32c: out.checksum_crc32c,
            checksum_sha1: out.checksum_sha1,
            checksum_sha256: out.checksum_sha256,
            checksum_crc64nvme: out.checksum_crc64nvme,
            ..HeadObjectOutput::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        let removed =
            tokio::task::block_in_place(|| self.index.delete_object(&input.bucket, &input.key))
                .map_err(internal)?;
        if let Some(removed) = removed {
            self.delete_blobs(&removed.streams);
        }
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        let refused = req
            .extensions
            .get::<RefusedDeletes>()
            .map(|refused| refused.0.clone())
            .unwrap_or_default();
        if input.delete.objects.len() + refused.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "at most 1000 keys may be deleted at once"
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors: Vec<Error> = refused
            .into_iter()
            .map(|refused| Error {
                code: Some("AccessDenied".into()),
                key: Some(refused.key),
                message: Some(refused.message),
                version_id: refused.version_id,
            })
            .collect();
        for object in input.delete.objects {
            match tokio::task::block_in_place(|| {
                self.index.delete_object(&input.bucket, &object.key)
            }) {
                Ok(removed) => {
                    if let Some(removed) = removed {
                        self.delete_blobs(&removed.streams);
                    }
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(object.key),
                            ..DeletedObject::default()
                        });
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "DeleteObjects");
                    errors.push(Error {
                        code: Some("InternalError".into()),
                        key: Some(object.key),
                        message: Some("We encountered an internal error. Please try again.".into()),
                        version_id: None,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..DeleteObjectsOutput::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.copy_object_op(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.upload_part_copy_op(req).await
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        self.get_object_attributes_op(req)
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        self.list_object_versions_op(req)
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let page = self.list(
            &input.bucket,
            input.prefix.as_deref(),
            input.delimiter.as_deref(),
            input.marker.as_deref(),
            input.max_keys,
        )?;
        let next_marker = (page.truncated && input.delimiter.is_some())
            .then(|| page.last.clone())
            .flatten();
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(input.prefix.unwrap_or_default()),
            marker: Some(input.marker.unwrap_or_default()),
            max_keys: Some(page.max_keys),
            is_truncated: Some(page.truncated),
            contents: Some(page.contents),
            common_prefixes: Some(page.common_prefixes),
            delimiter: input.delimiter,
            next_marker,
            encoding_type: input.encoding_type,
            ..ListObjectsOutput::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let after = match &input.continuation_token {
            Some(token) => Some(decode_token(token)?),
            None => input.start_after.clone(),
        };
        let page = self.list(
            &input.bucket,
            input.prefix.as_deref(),
            input.delimiter.as_deref(),
            after.as_deref(),
            input.max_keys,
        )?;
        let key_count =
            i32::try_from(page.contents.len() + page.common_prefixes.len()).unwrap_or(i32::MAX);
        let next_continuation_token = page
            .truncated
            .then(|| page.last.as_deref().map(encode_token))
            .flatten();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(input.prefix.unwrap_or_default()),
            max_keys: Some(page.max_keys),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            is_truncated: Some(page.truncated),
            next_continuation_token,
            contents: Some(page.contents),
            common_prefixes: Some(page.common_prefixes),
            delimiter: input.delimiter,
            encoding_type: input.encoding_type,
            start_after: input.start_after,
            ..ListObjectsV2Output::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let ctx = client_context(&req.extensions)?;
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let headers = sse_headers_of!(input);
        let requested = self.resolve_sse(&headers, &bucket, &ctx)?;
        let arn = object_arn(&input.bucket, &input.key);
        let data_key = self.keys.create(&requested, &ctx, &arn)?;
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let record = UploadRecord {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            initiated: now(),
            headers: ContentHeaders {
                content_type: input.content_type.as_ref().map(ToString::to_string),
                content_encoding: input.content_encoding,
                content_disposition: input.content_disposition,
                content_language: input.content_language,
                cache_control: input.cache_control,
            },
            sealed_metadata: seal_metadata(&data_key.key, &arn, input.metadata.as_ref()),
            data_key: data_key.protection,
            parts: BTreeMap::new(),
        };
        tokio::task::block_in_place(|| self.index.create_upload(&upload_id, &record))
            .map_err(internal)?;
        let sse = SseFields::of(&record.data_key, customer_md5(&requested));
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            server_side_encryption: sse.algorithm,
            ssekms_key_id: sse.kms_key_id,
            bucket_key_enabled: sse.bucket_key_enabled,
            sse_customer_algorithm: sse.customer_algorithm,
            sse_customer_key_md5: sse.customer_key_md5,
            ..CreateMultipartUploadOutput::default()
        }))
    }

    async fn upload_part(
        &self,
        mut req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let mut body = req.input.body.take();
        let result = self.upload_part_with(req, &mut body).await;
        if result.is_err() {
            drain(body).await;
        }
        result
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let upload = self.upload(&input.upload_id, &input.bucket, &input.key)?;
        let requested = input
            .multipart_upload
            .and_then(|upload| upload.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "You must specify at least one part"
            ));
        }
        let mut streams = Vec::new();
        let mut md5s = Vec::new();
        let numbers: Vec<i32> = requested
            .iter()
            .map(|part| part.part_number.unwrap_or(0))
            .collect();
        if numbers.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(s3_error!(
                InvalidPartOrder,
                "The list of parts was not in ascending order. The parts list must be specified in order by part number."
            ));
        }
        let mut used = Vec::new();
        for (position, (part, number)) in requested.iter().zip(numbers).enumerate() {
            let stored = u32::try_from(number)
                .ok()
                .and_then(|number| upload.parts.get(&number))
                .filter(|stored| {
                    part.e_tag
                        .as_ref()
                        .is_some_and(|etag| etag.value().trim_matches('"') == stored.etag)
                })
                .ok_or_else(|| s3_error!(InvalidPart, "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag."))?;
            let last = position + 1 == requested.len();
            if !last && stored.stream.size < MIN_PART_SIZE {
                return Err(s3_error!(
                    EntityTooSmall,
                    "Your proposed upload is smaller than the minimum allowed object size."
                ));
            }
            md5s.extend(hex::decode(&stored.etag).unwrap_or_default());
            streams.push(stored.stream.clone());
            used.push(stored.stream.blob.clone());
        }
        let etag = format!(
            "{}-{}",
            md5_hex(&<s3s::crypto::Md5 as s3s::crypto::Checksum>::checksum(
                &md5s
            )),
            streams.len()
        );
        let record = ObjectRecord {
            size: streams.iter().map(|stream| stream.size).sum(),
            etag: etag.clone(),
            last_modified: now(),
            key: upload.data_key.clone(),
            streams,
            multipart: true,
            headers: upload.headers.clone(),
            sealed_metadata: upload.sealed_metadata.clone(),
            checksums: BTreeMap::new(),
            upload_id: Some(input.upload_id.clone()),
        };
        let replaced = match tokio::task::block_in_place(|| {
            self.index.complete_upload(&input.upload_id, &record)
        })
        .map_err(internal)?
        {
            Some(replaced) => replaced,
            None => return Err(no_such_upload()),
        };
        let unused: Vec<StreamRecord> = upload
            .parts
            .values()
            .filter(|part| !used.contains(&part.stream.blob))
            .map(|part| part.stream.clone())
            .collect();
        self.delete_blobs(&unused);
        if let Some(replaced) = replaced {
            self.delete_blobs(&replaced.streams);
        }
        let sse = SseFields::of(&record.key, None);
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            e_tag: Some(ETag::Strong(etag)),
            server_side_encryption: sse.algorithm,
            ssekms_key_id: sse.kms_key_id,
            bucket_key_enabled: sse.bucket_key_enabled,
            ..CompleteMultipartUploadOutput::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.upload(&input.upload_id, &input.bucket, &input.key)?;
        let removed = tokio::task::block_in_place(|| self.index.delete_upload(&input.upload_id))
            .map_err(internal)?;
        let Some(removed) = removed else {
            return Err(no_such_upload());
        };
        let streams: Vec<StreamRecord> = removed
            .parts
            .values()
            .map(|part| part.stream.clone())
            .collect();
        self.delete_blobs(&streams);
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let upload = self.upload(&input.upload_id, &input.bucket, &input.key)?;
        let max_parts = input.max_parts.unwrap_or(1000).clamp(0, 1000);
        let marker = input.part_number_marker.unwrap_or(0);
        let mut parts: Vec<Part> = upload
            .parts
            .iter()
            .filter(|(number, _)| i64::from(**number) > i64::from(marker))
            .map(|(number, part)| Part {
                part_number: i32::try_from(*number).ok(),
                e_tag: Some(ETag::Strong(part.etag.clone())),
                size: Some(to_i64(part.stream.size)),
                last_modified: Some(timestamp(part.last_modified)),
                ..Part::default()
            })
            .collect();
        let truncated = parts.len() > usize::try_from(max_parts).unwrap_or(0);
        parts.truncate(usize::try_from(max_parts).unwrap_or(0));
        let next = parts.last().and_then(|part| part.part_number);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max_parts),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            is_truncated: Some(truncated),
            parts: Some(parts),
            owner: Some(self.owner()),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..ListPartsOutput::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let mut uploads: Vec<(String, UploadRecord)> = self
            .index
            .uploads(&input.bucket)
            .map_err(internal)?
            .into_iter()
            .filter(|(_, upload)| upload.key.starts_with(&prefix))
            .collect();
        uploads.sort_by(|a, b| (&a.1.key, a.1.initiated).cmp(&(&b.1.key, b.1.initiated)));
        let list = uploads
            .into_iter()
            .map(|(id, upload)| MultipartUpload {
                key: Some(upload.key),
                upload_id: Some(id),
                initiated: Some(timestamp(upload.initiated)),
                owner: Some(self.owner()),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                ..MultipartUpload::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            max_uploads: Some(input.max_uploads.unwrap_or(1000)),
            is_truncated: Some(false),
            uploads: Some(list),
            ..ListMultipartUploadsOutput::default()
        }))
    }
}

impl ObjectService {
    /// GetObject, and HeadObject when `with_body` is false: conditions, the SSE-C key, the
    /// data key, the extent, and (with a body) the first segment opened before answering.
    fn read_object(
        &self,
        ctx: &RequestContext,
        input: GetObjectInput,
        with_body: bool,
    ) -> S3Result<GetObjectOutput> {
        let record = self.object(&input.bucket, &input.key)?;
        check_conditions(
            &record,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let customer = customer_key_of!(self, input, ctx)?;
        let arn = object_arn(&input.bucket, &input.key);
        let (data_key, metadata) = self.open_object(&record, ctx, &arn, customer.as_ref())?;
        let (range, content_range, parts_count) =
            read_extent(&record, input.part_number, input.range.as_ref())?;
        let length = range.end - range.start;
        let body = if with_body {
            let streams = self.open_streams(&record, (&input.bucket, &input.key), &data_key)?;
            Some(StreamingBlob::wrap(read_range(streams, range)?))
        } else {
            None
        };
        let sse = SseFields::of(&record.key, customer.as_ref().map(|c| c.md5_base64.clone()));
        let headers = record.headers;
        // S3 gives whole-object checksums only when the whole object is served.
        let checksums = if content_range.is_none() {
            record.checksums
        } else {
            BTreeMap::new()
        };
        Ok(GetObjectOutput {
            body,
            content_length: Some(to_i64(length)),
            content_range,
            parts_count,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong(record.etag)),
            last_modified: Some(timestamp(record.last_modified)),
            metadata,
            content_type: input
                .response_content_type
                .or_else(|| headers.content_type.and_then(|t| t.parse().ok())),
            content_encoding: input.response_content_encoding.or(headers.content_encoding),
            content_disposition: input
                .response_content_disposition
                .or(headers.content_disposition),
            content_language: input.response_content_language.or(headers.content_language),
            cache_control: input.response_cache_control.or(headers.cache_control),
            server_side_encryption: sse.algorithm,
            ssekms_key_id: sse.kms_key_id,
            bucket_key_enabled: sse.bucket_key_enabled,
            sse_customer_algorithm: sse.customer_algorithm,
            sse_customer_key_md5: sse.customer_key_md5,
            checksum_crc32: checksums.get("crc32").cloned(),
            checksum_crc32c: checksums.get("crc32c").cloned(),
            checksum_sha1: checksums.get("sha1").cloned(),
            checksum_sha256: checksums.get("sha256").cloned(),
            checksum_crc64nvme: checksums.get("crc64nvme").cloned(),
            ..GetObjectOutput::default()
        })
    }
}

impl ObjectService {
    /// put_object; `body` is taken once the request is known to be acceptable.
    async fn put_object_with(
        &self,
        req: S3Request<PutObjectInput>,
        body: &mut Option<StreamingBlob>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let ctx = client_context(&req.extensions)?;
        let trailers = req.trailing_headers.clone();
        // POST object (a browser form upload; s3s has checked its signed policy) arrives here
        // as a PutObject. s3s does not pass on the file's name, so `${filename}` in the key
        // cannot be substituted as AWS does: refuse it rather than store the literal text.
        if req.method == http::Method::POST && req.input.key.contains("${filename}") {
            return Err(s3_error!(
                InvalidArgument,
                "atrest does not substitute ${{filename}} in a POST object key; give the full key"
            ));
        }
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        if let Some(condition) = &input.if_none_match
            && condition.is_any()
            && self
                .index
                .object(&input.bucket, &input.key)
                .map_err(internal)?
                .is_some()
        {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
        let headers = sse_headers_of!(input);
        let requested = self.resolve_sse(&headers, &bucket, &ctx)?;
        let arn = object_arn(&input.bucket, &input.key);
        let data_key = self.keys.create(&requested, &ctx, &arn)?;
        let checksums = checksum_hasher(input.checksum_algorithm.as_ref(), &input)?;
        let place = Place {
            bucket: &input.bucket,
            key: &input.key,
            upload_id: None,
        };
        let sealed = self
            .seal(&data_key.key, body.take(), checksums, (place, 1))
            .await?;
        if let Err(error) = verify_body(
            &sealed,
            input.content_md5.as_deref(),
            input.content_length,
            &input,
            trailers.as_ref(),
        ) {
            self.delete_blobs(std::slice::from_ref(&sealed.stream));
            return Err(error);
        }
        let etag = object_etag(&data_key.protection, &sealed.md5);
        let record = ObjectRecord {
            size: sealed.stream.size,
            etag: etag.clone(),
            last_modified: now(),
            key: data_key.protection,
            streams: vec![sealed.stream],
            multipart: false,
            headers: ContentHeaders {
                content_type: input.content_type.as_ref().map(ToString::to_string),
                content_encoding: input.content_encoding.clone(),
                content_disposition: input.content_disposition.clone(),
                content_language: input.content_language.clone(),
                cache_control: input.cache_control.clone(),
            },
            sealed_metadata: seal_metadata(&data_key.key, &arn, input.metadata.as_ref()),
            checksums: checksum_map(&sealed.checksum),
            upload_id: None,
        };
        self.store_object(&input.bucket, &input.key, &record)?;
        let sse = SseFields::of(&record.key, customer_md5(&requested));
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            server_side_encryption: sse.algorithm,
            ssekms_key_id: sse.kms_key_id,
            bucket_key_enabled: sse.bucket_key_enabled,
            sse_customer_algorithm: sse.customer_algorithm,
            sse_customer_key_md5: sse.customer_key_md5,
            checksum_crc32: sealed.checksum.checksum_crc32,
            checksum_crc32c: sealed.checksum.checksum_crc32c,
            checksum_sha1: sealed.checksum.checksum_sha1,
            checksum_sha256: sealed.checksum.checksum_sha256,
            checksum_crc64nvme: sealed.checksum.checksum_crc64nvme,
            ..PutObjectOutput::default()
        }))
    }
}

impl ObjectService {
    /// upload_part; `body` is taken once the request is known to be acceptable.
    async fn upload_part_with(
        &self,
        req: S3Request<UploadPartInput>,
        body: &mut Option<StreamingBlob>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let ctx = client_context(&req.extensions)?;
        let trailers = req.trailing_headers.clone();
        let input = req.input;
        let number = part_number(input.part_number)?;
        let upload = self.upload(&input.upload_id, &input.bucket, &input.key)?;
        let customer = customer_key_of!(self, input, &ctx)?;
        if customer.is_some() {
            refuse_blocked_sse_c(&self.bucket(&input.bucket)?)?;
        }
        let arn = object_arn(&input.bucket, &input.key);
        let data_key = self
            .keys
            .open(&upload.data_key, &ctx, &arn, customer.as_ref())?;
        let checksums = checksum_hasher(input.checksum_algorithm.as_ref(), &input)?;
        let place = Place {
            bucket: &input.bucket,
            key: &input.key,
            upload_id: Some(&input.upload_id),
        };
        let sealed = self
            .seal(&data_key, body.take(), checksums, (place, number))
            .await?;
        if let Err(error) = verify_body(
            &sealed,
            input.content_md5.as_deref(),
            input.content_length,
            &input,
            trailers.as_ref(),
        ) {
            self.delete_blobs(std::slice::from_ref(&sealed.stream));
            return Err(error);
        }
        let etag = object_etag(&upload.data_key, &sealed.md5);
        let part = PartRecord {
            stream: sealed.stream,
            etag: etag.clone(),
            last_modified: now(),
        };
        self.store_part(&input.upload_id, number, part)?;
        let sse = SseFields::of(
            &upload.data_key,
            customer.as_ref().map(|c| c.md5_base64.clone()),
        );
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(etag)),
            server_side_encryption: sse.algorithm,
            ssekms_key_id: sse.kms_key_id,
            bucket_key_enabled: sse.bucket_key_enabled,
            sse_customer_algorithm: sse.customer_algorithm,
            sse_customer_key_md5: sse.customer_key_md5,
            checksum_crc32: sealed.checksum.checksum_crc32,
            checksum_crc32c: sealed.checksum.checksum_crc32c,
            checksum_sha1: sealed.checksum.checksum_sha1,
            checksum_sha256: sealed.checksum.checksum_sha256,
            checksum_crc64nvme: sealed.checksum.checksum_crc64nvme,
            ..UploadPartOutput::default()
        }))
    }
}

/// One page of a listing.
struct Page {
    contents: Vec<Object>,
    common_prefixes: Vec<CommonPrefix>,
    truncated: bool,
    /// The last key or common prefix returned: where the next page starts.
    last: Option<String>,
    max_keys: i32,
}

impl ObjectService {
    fn owner(&self) -> Owner {
        Owner {
            id: Some(self.keys.kms().account().to_owned()),
            display_name: Some("atrest".into()),
        }
    }

    fn store_object(&self, bucket: &str, key: &str, record: &ObjectRecord) -> S3Result<()> {
        match tokio::task::block_in_place(|| self.index.put_object(bucket, key, record))
            .map_err(internal)?
        {
            Ok(replaced) => {
                if let Some(replaced) = replaced {
                    self.delete_blobs(&replaced.streams);
                }
                Ok(())
            }
            Err(()) => {
                self.delete_blobs(&record.streams);
                Err(s3_error!(
                    NoSuchBucket,
                    "The specified bucket does not exist"
                ))
            }
        }
    }

    /// Records a sealed part, deleting the blob of a part it replaces; if the upload ended
    /// meanwhile, deletes the new blob instead.
    fn store_part(&self, upload_id: &str, number: u32, part: PartRecord) -> S3Result<()> {
        match tokio::task::block_in_place(|| self.index.put_part(upload_id, number, &part))
            .map_err(internal)?
        {
            Some(replaced) => {
                if let Some(replaced) = replaced {
                    self.delete_blobs(std::slice::from_ref(&replaced.stream));
                }
                Ok(())
            }
            None => {
                self.delete_blobs(std::slice::from_ref(&part.stream));
                Err(no_such_upload())
            }
        }
    }

    fn upload(&self, upload_id: &str, bucket: &str, key: &str) -> S3Result<UploadRecord> {
        self.bucket(bucket)?;
        self.index
            .upload(upload_id)
            .map_err(internal)?
            .filter(|upload| upload.bucket == bucket && upload.key == key)
            .ok_or_else(no_such_upload)
    }

    fn list(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        delimiter: Option<&str>,
        after: Option<&str>,
        max_keys: Option<i32>,
    ) -> S3Result<Page> {
        self.bucket(bucket)?;
        let max_keys = max_keys.unwrap_or(1000).clamp(0, 1000);
        let limit = usize::try_from(max_keys).unwrap_or(0);
        let prefix = prefix.unwrap_or("");
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let mut page = Page {
            contents: Vec::new(),
            common_prefixes: Vec::new(),
            truncated: false,
            last: None,
            max_keys,
        };
        let mut cursor = after.map(str::to_owned);
        'scan: loop {
            let batch = self
                .index
                .objects(bucket, prefix, cursor.as_deref(), 1000)
                .map_err(internal)?;
            if batch.is_empty() {
                break;
            }
            for (key, record) in batch {
                cursor = Some(key.clone());
                let common = delimiter.and_then(|delimiter| {
                    key[prefix.len()..]
                        .find(delimiter)
                        .map(|at| key[..prefix.len() + at + delimiter.len()].to_owned())
                });
                if page.contents.len() + page.common_prefixes.len() >= limit {
                    page.truncated = true;
                    break 'scan;
                }
                match common {
                    Some(common) => {
                        // Skip everything under this prefix: resume after its last possible key.
                        cursor = Some(format!("{common}\u{10FFFF}"));
                        page.last = Some(common.clone());
                        page.common_prefixes.push(CommonPrefix {
                            prefix: Some(common),
                        });
                        continue 'scan;
                    }
                    None => {
                        page.last = Some(key.clone());
                        page.contents.push(Object {
                            key: Some(key),
                            size: Some(to_i64(record.size)),
                            e_tag: Some(ETag::Strong(record.etag)),
                            last_modified: Some(timestamp(record.last_modified)),
                            storage_class: Some(ObjectStorageClass::from_static(
                                ObjectStorageClass::STANDARD,
                            )),
                            ..Object::default()
                        });
                    }
                }
            }
        }
        Ok(page)
    }
}

/// The SSE response headers of an object, as AWS echoes them.
struct SseFields {
    algorithm: Option<ServerSideEncryption>,
    kms_key_id: Option<String>,
    bucket_key_enabled: Option<bool>,
    customer_algorithm: Option<String>,
    customer_key_md5: Option<String>,
}

impl SseFields {
    fn of(protection: &KeyProtection, customer_md5: Option<String>) -> Self {
        match protection {
            KeyProtection::S3 { .. } => Self {
                algorithm: Some(ServerSideEncryption::from_static(
                    ServerSideEncryption::AES256,
                )),
                kms_key_id: None,
                bucket_key_enabled: None,
                customer_algorithm: None,
                customer_key_md5: None,
            },
            KeyProtection::Kms {
                key_arn,
                bucket_key_enabled,
                ..
            } => Self {
                algorithm: Some(ServerSideEncryption::from_static(
                    ServerSideEncryption::AWS_KMS,
                )),
                kms_key_id: Some(key_arn.clone()),
                bucket_key_enabled: bucket_key_enabled.then_some(true),
                customer_algorithm: None,
                customer_key_md5: None,
            },
            KeyProtection::Customer { .. } => Self {
                algorithm: None,
                kms_key_id: None,
                bucket_key_enabled: None,
                customer_algorithm: Some(AES256.into()),
                customer_key_md5: customer_md5,
            },
        }
    }
}

fn customer_md5(requested: &Requested) -> Option<String> {
    match requested {
        Requested::Customer(customer) => Some(customer.md5_base64.clone()),
        _ => None,
    }
}

fn customer_headers<'a>(
    algorithm: &'a Option<String>,
    key: &'a Option<String>,
    key_md5: &'a Option<String>,
) -> CustomerHeaders<'a> {
    CustomerHeaders {
        algorithm: algorithm.as_deref(),
        key: key.as_deref(),
        key_md5: key_md5.as_deref(),
    }
}

/// A bucket whose encryption configuration blocks SSE-C refuses writes that ask for it (S3
/// answers 403 AccessDenied); SSE-C objects already there stay readable.
fn refuse_blocked_sse_c(bucket: &BucketRecord) -> S3Result<()> {
    if bucket
        .encryption
        .as_ref()
        .is_some_and(BucketEncryption::blocks_sse_c)
    {
        return Err(s3_error!(
            AccessDenied,
            "Requests specifying Server Side Encryption with Customer provided keys are blocked for this bucket"
        ));
    }
    Ok(())
}

fn sse_headers<'a>(
    server_side_encryption: Option<&'a ServerSideEncryption>,
    kms_key_id: Option<&'a str>,
    kms_context: Option<&'a str>,
    bucket_key_enabled: Option<bool>,
    customer: CustomerHeaders<'a>,
) -> SseHeaders<'a> {
    SseHeaders {
        server_side_encryption: server_side_encryption.map(ServerSideEncryption::as_str),
        kms_key_id,
        kms_context,
        bucket_key_enabled,
        customer,
    }
}

/// SSE-S3 single-part ETags are the content MD5; other modes' are not (as AWS's are not).
fn object_etag(protection: &KeyProtection, md5: &[u8; 16]) -> String {
    match protection {
        KeyProtection::S3 { .. } => md5_hex(md5),
        _ => hex::encode(atrest_crypto::random::bytes(16)),
    }
}

/// The checksums a write asked for (by header value or by algorithm).
trait ChecksumInput {
    fn sent(&self) -> [Option<&String>; 5];
}

impl ChecksumInput for PutObjectInput {
    fn sent(&self) -> [Option<&String>; 5] {
        [
            self.checksum_crc32.as_ref(),
            self.checksum_crc32c.as_ref(),
            self.checksum_sha1.as_ref(),
            self.checksum_sha256.as_ref(),
            self.checksum_crc64nvme.as_ref(),
        ]
    }
}

impl ChecksumInput for UploadPartInput {
    fn sent(&self) -> [Option<&String>; 5] {
        [
            self.checksum_crc32.as_ref(),
            self.checksum_crc32c.as_ref(),
            self.checksum_sha1.as_ref(),
            self.checksum_sha256.as_ref(),
            self.checksum_crc64nvme.as_ref(),
        ]
    }
}

const CHECKSUM_NAMES: [&str; 5] = ["crc32", "crc32c", "sha1", "sha256", "crc64nvme"];

fn checksum_hasher(
    algorithm: Option<&ChecksumAlgorithm>,
    input: &dyn ChecksumInput,
) -> S3Result<ChecksumHasher> {
    let mut hasher = ChecksumHasher::default();
    let mut wanted = input.sent().map(|sent| sent.is_some());
    if let Some(algorithm) = algorithm {
        let index = match algorithm.as_str() {
            ChecksumAlgorithm::CRC32 => 0,
            ChecksumAlgorithm::CRC32C => 1,
            ChecksumAlgorithm::SHA1 => 2,
            ChecksumAlgorithm::SHA256 => 3,
            ChecksumAlgorithm::CRC64NVME => 4,
            other => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Unsupported checksum algorithm {}",
                    other
                ));
            }
        };
        wanted[index] = true;
    }
    if wanted[0] {
        hasher.crc32 = Some(Default::default());
    }
    if wanted[1] {
        hasher.crc32c = Some(Default::default());
    }
    if wanted[2] {
        hasher.sha1 = Some(Default::default());
    }
    if wanted[3] {
        hasher.sha256 = Some(Default::default());
    }
    if wanted[4] {
        hasher.crc64nvme = Some(Default::default());
    }
    Ok(hasher)
}

fn computed(checksum: &Checksum) -> [Option<&String>; 5] {
    [
        checksum.checksum_crc32.as_ref(),
        checksum.checksum_crc32c.as_ref(),
        checksum.checksum_sha1.as_ref(),
        checksum.checksum_sha256.as_ref(),
        checksum.checksum_crc64nvme.as_ref(),
    ]
}

fn checksum_map(checksum: &Checksum) -> BTreeMap<String, String> {
    CHECKSUM_NAMES
        .iter()
        .zip(computed(checksum))
        .filter_map(|(name, value)| value.map(|value| ((*name).to_owned(), value.clone())))
        .collect()
}

/// Content-MD5, Content-Length and flexible checksums (headers or trailers) against the body.
fn verify_body(
    sealed: &SealedBody,
    content_md5: Option<&str>,
    content_length: Option<i64>,
    input: &dyn ChecksumInput,
    trailers: Option<&s3s::TrailingHeaders>,
) -> S3Result<()> {
    if let Some(expected) = content_md5 {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(expected)
            .map_err(|_| s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid."))?;
        if decoded != sealed.md5 {
            return Err(s3_error!(
                BadDigest,
                "The Content-MD5 you specified did not match what we received."
            ));
        }
    }
    if let Some(length) = content_length
        && u64::try_from(length).ok() != Some(sealed.stream.size)
    {
        return Err(s3_error!(
            IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header"
        ));
    }
    let mut sent: [Option<String>; 5] = input.sent().map(|value| value.cloned());
    if let Some(trailers) = trailers.and_then(s3s::TrailingHeaders::take) {
        for (index, name) in CHECKSUM_NAMES.iter().enumerate() {
            if let Some(value) = trailers.get(format!("x-amz-checksum-{name}")) {
                sent[index] = Some(
                    value
                        .to_str()
                        .map_err(|_| s3_error!(InvalidArgument))?
                        .to_owned(),
                );
            }
        }
    }
    for (index, got) in computed(&sealed.checksum).into_iter().enumerate() {
        if let (Some(sent), Some(got)) = (&sent[index], got)
            && sent != got
        {
            return Err(s3_error!(
                BadDigest,
                "The {} you specified did not match the calculated checksum.",
                CHECKSUM_NAMES[index]
            ));
        }
    }
    Ok(())
}

/// The bytes a GET or HEAD covers: a part, a range, or everything.
fn read_extent(
    record: &ObjectRecord,
    part_number: Option<i32>,
    range: Option<&s3s::dto::Range>,
) -> S3Result<(Range<u64>, Option<String>, Option<i32>)> {
    if let Some(number) = part_number {
        if range.is_some() {
            return Err(s3_error!(
                InvalidRequest,
                "Cannot specify both Range header and partNumber query parameter"
            ));
        }
        let index = usize::try_from(number - 1)
            .ok()
            .filter(|index| *index < record.streams.len())
            .ok_or_else(|| {
                let mut error = S3Error::with_message(
                    S3ErrorCode::Custom("InvalidPartNumber".into()),
                    "The requested partnumber is not satisfiable",
                );
                error.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
                error
            })?;
        let start: u64 = record.streams[..index].iter().map(|s| s.size).sum();
        let end = start + record.streams[index].size;
        let parts = record
            .multipart
            .then(|| i32::try_from(record.streams.len()).unwrap_or(i32::MAX));
        let content_range = (record.multipart && end > start)
            .then(|| format!("bytes {start}-{}/{}", end - 1, record.size));
        return Ok((start..end, content_range, parts));
    }
    match range {
        Some(range) => {
            let checked = range
                .check(record.size)
                .map_err(|_| s3_error!(InvalidRange, "The requested range is not satisfiable"))?;
            let content_range = format!(
                "bytes {}-{}/{}",
                checked.start,
                checked.end - 1,
                record.size
            );
            Ok((checked, Some(content_range), None))
        }
        None => Ok((0..record.size, None, None)),
    }
}

fn check_conditions(
    record: &ObjectRecord,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let matches = |condition: &ETagCondition| match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(etag) => etag.value().trim_matches('"') == record.etag,
    };
    if let Some(condition) = if_match
        && !matches(condition)
    {
        return Err(s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        ));
    }
    if if_match.is_none()
        && let Some(since) = if_unmodified_since
        && record.last_modified > seconds(since)
    {
        return Err(s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        ));
    }
    if let Some(condition) = if_none_match
        && matches(condition)
    {
        return Err(S3Error::new(S3ErrorCode::NotModified));
    }
    if if_none_match.is_none()
        && let Some(since) = if_modified_since
        && record.last_modified <= seconds(since)
    {
        return Err(S3Error::new(S3ErrorCode::NotModified));
    }
    Ok(())
}

/// `x-amz-meta-*` sealed with a key derived from the object's data key, bound to its ARN.
fn seal_metadata(data_key: &SecretKey32, arn: &str, metadata: Option<&Metadata>) -> Vec<u8> {
    let key = kdf::derive_key32(data_key.expose(), b"", METADATA_INFO);
    let sorted: BTreeMap<&String, &String> = metadata.into_iter().flatten().collect();
    let json = serde_json::to_vec(&sorted).unwrap_or_default();
    AeadKey::new(&key).seal(&json, arn.as_bytes())
}

fn open_metadata(data_key: &SecretKey32, arn: &str, sealed: &[u8]) -> S3Result<Option<Metadata>> {
    let key = kdf::derive_key32(data_key.expose(), b"", METADATA_INFO);
    let json = AeadKey::new(&key)
        .open(sealed, arn.as_bytes())
        .map_err(|_| crate::sse::integrity_error("the object's metadata"))?;
    let map: HashMap<String, String> = serde_json::from_slice(json.expose())
        .map_err(|_| crate::sse::integrity_error("the object's metadata"))?;
    Ok((!map.is_empty()).then_some(map))
}

pub fn object_arn(bucket: &str, key: &str) -> String {
    format!("arn:aws:s3:::{bucket}/{key}")
}

fn encode_token(key: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

fn decode_token(token: &str) -> S3Result<String> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

/// Reads and discards what is left of a rejected request's body (up to 64 MiB), so the
/// connection can carry the client's next request; a larger rest is dropped, which closes it.
async fn drain(body: Option<StreamingBlob>) {
    use futures::StreamExt as _;
    let Some(mut body) = body else {
        return;
    };
    let mut left: usize = 64 * 1024 * 1024;
    while let Some(Ok(chunk)) = body.next().await {
        left = left.saturating_sub(chunk.len());
        if left == 0 {
            return;
        }
    }
}

/// A part number as AWS accepts it: 1 to 10,000.
fn part_number(number: i32) -> S3Result<u32> {
    u32::try_from(number)
        .ok()
        .filter(|number| (1..=MAX_PART_NUMBER.unsigned_abs()).contains(number))
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            )
        })
}

fn no_such_upload() -> S3Error {
    s3_error!(
        NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
    )
}

fn internal(error: impl std::fmt::Display) -> S3Error {
    tracing::error!(%error, "object store");
    s3_error!(
        InternalError,
        "We encountered an internal error. Please try again."
    )
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

fn timestamp(seconds: i64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

fn seconds(timestamp: &Timestamp) -> i64 {
    time::OffsetDateTime::from(timestamp.clone()).unix_timestamp()
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
