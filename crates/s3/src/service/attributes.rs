//! Read-only views of object metadata: GetObjectAttributes, and ListObjectVersions for buckets
//! that are never versioned (every object is its own only version, `null`, and the latest).

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::{ObjectService, customer_headers, object_arn, timestamp, to_i64};
use crate::access::client_context;
use crate::meta::KeyProtection;

/// Unversioned buckets report this version id (S3 User Guide, "Working with objects in a
/// versioning-suspended bucket"; the same holds before versioning was ever enabled).
const NULL_VERSION: &str = "null";

impl ObjectService {
    pub(super) fn get_object_attributes_op(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let ctx = client_context(&req.extensions)?;
        let input = req.input;
        if input
            .version_id
            .as_deref()
            .is_some_and(|id| id != NULL_VERSION)
        {
            return Err(s3_error!(InvalidArgument, "Invalid version id specified"));
        }
        let record = self.object(&input.bucket, &input.key)?;
        let customer = customer_key_of!(self, input, &ctx)?;
        // An SSE-C object's attributes need its key, as AWS requires; the check is local
        // (the salted verifier), and other objects need no KMS call at all.
        if matches!(record.key, KeyProtection::Customer { .. }) || customer.is_some() {
            let arn = object_arn(&input.bucket, &input.key);
            self.keys.open(&record.key, &ctx, &arn, customer.as_ref())?;
        }
        // SDKs send the list as one comma-separated header, which s3s keeps as one entry.
        let wanted = |name: &str| {
            input
                .object_attributes
                .iter()
                .flat_map(|attribute| attribute.as_str().split(','))
                .any(|attribute| attribute.trim() == name)
        };
        let mut output = GetObjectAttributesOutput {
            last_modified: Some(timestamp(record.last_modified)),
            version_id: input.version_id.clone(),
            ..GetObjectAttributesOutput::default()
        };
        if wanted(ObjectAttributes::ETAG) {
            output.e_tag = Some(ETag::Strong(record.etag.clone()));
        }
        if wanted(ObjectAttributes::OBJECT_SIZE) {
            output.object_size = Some(to_i64(record.size));
        }
        if wanted(ObjectAttributes::STORAGE_CLASS) {
            output.storage_class = Some(StorageClass::from_static(StorageClass::STANDARD));
        }
        if wanted(ObjectAttributes::CHECKSUM) && !record.checksums.is_empty() {
            let get = |name: &str| record.checksums.get(name).cloned();
            output.checksum = Some(Checksum {
                checksum_crc32: get("crc32"),
                checksum_crc32c: get("crc32c"),
                checksum_sha1: get("sha1"),
                checksum_sha256: get("sha256"),
                checksum_crc64nvme: get("crc64nvme"),
                checksum_type: Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT)),
            });
        }
        if wanted(ObjectAttributes::OBJECT_PARTS) && record.multipart {
            let marker = input.part_number_marker.unwrap_or(0).max(0);
            let max_parts = input.max_parts.unwrap_or(1000).clamp(0, 1000);
            let numbered = (1..).zip(&record.streams);
            let after_marker: Vec<(i32, u64)> = numbered
                .filter(|(number, _)| *number > marker)
                .map(|(number, stream)| (number, stream.size))
                .collect();
            let shown = usize::try_from(max_parts)
                .unwrap_or(0)
                .min(after_marker.len());
            let truncated = shown < after_marker.len();
            output.object_parts = Some(GetObjectAttributesParts {
                total_parts_count: Some(i32::try_from(record.streams.len()).unwrap_or(i32::MAX)),
                part_number_marker: Some(marker),
                next_part_number_marker: after_marker[..shown].last().map(|(number, _)| *number),
                max_parts: Some(max_parts),
                is_truncated: Some(truncated),
                parts: Some(
                    after_marker[..shown]
                        .iter()
                        .map(|(number, size)| ObjectPart {
                            part_number: Some(*number),
                            size: Some(to_i64(*size)),
                            ..ObjectPart::default()
                        })
                        .collect(),
                ),
            });
        }
        Ok(S3Response::new(output))
    }

    pub(super) fn list_object_versions_op(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = req.input;
        let page = self.list(
            &input.bucket,
            input.prefix.as_deref(),
            input.delimiter.as_deref(),
            input.key_marker.as_deref(),
            input.max_keys,
        )?;
        let owner = self.owner();
        let versions = page
            .contents
            .into_iter()
            .map(|object| ObjectVersion {
                key: object.key,
                size: object.size,
                e_tag: object.e_tag,
                last_modified: object.last_modified,
                version_id: Some(NULL_VERSION.into()),
                is_latest: Some(true),
                owner: Some(owner.clone()),
                storage_class: Some(ObjectVersionStorageClass::from_static(
                    ObjectVersionStorageClass::STANDARD,
                )),
                ..ObjectVersion::default()
            })
            .collect();
        let (next_key_marker, next_version_id_marker) = if page.truncated {
            (page.last, Some(NULL_VERSION.to_owned()))
        } else {
            (None, None)
        };
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(input.bucket),
            prefix: Some(input.prefix.unwrap_or_default()),
            key_marker: Some(input.key_marker.unwrap_or_default()),
            version_id_marker: Some(input.version_id_marker.unwrap_or_default()),
            max_keys: Some(page.max_keys),
            is_truncated: Some(page.truncated),
            versions: Some(versions),
            common_prefixes: Some(page.common_prefixes),
            delete_markers: Some(Vec::new()),
            delimiter: input.delimiter,
            encoding_type: input.encoding_type,
            next_key_marker,
            next_version_id_marker,
            ..ListObjectVersionsOutput::default()
        }))
    }
}
