//! Object-store metadata: buckets, objects and multipart uploads, behind [`ObjectIndex`] so a
//! PostgreSQL backend can serve several nodes later. The embedded default keeps its tables in
//! the KMS's redb file, so one fsynced commit makes each change durable.
//!
//! Records hold no plaintext secret: data keys are stored wrapped (by the KMS or, for SSE-C,
//! by a key derived from the customer's key), and user metadata is sealed with the object key.

use std::collections::BTreeMap;
use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition, TableHandle};
use serde::{Deserialize, Serialize};

const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("s3_buckets");
/// Key: `bucket/object-key` (bucket names cannot contain `/`, so a bucket's objects are one
/// contiguous range in UTF-8 byte order, which is the order S3 lists in).
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("s3_objects");
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("s3_uploads");

#[derive(Debug, thiserror::Error)]
#[error("object metadata store: {0}")]
pub struct StoreError(pub String);

macro_rules! store_error_from {
    ($($error:ty),*) => {$(
        impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                Self(error.to_string())
            }
        }
    )*};
}
store_error_from!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    pub created: i64,
    pub encryption: Option<BucketEncryption>,
    /// The bucket policy as PutBucketPolicy stored it (validated then).
    #[serde(default)]
    pub policy: Option<String>,
    /// The unique id of each IAM user the policy names, resolved when it was stored.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub principal_ids: std::collections::BTreeMap<String, String>,
}

/// The bucket's default encryption (PutBucketEncryption).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BucketEncryption {
    /// `AES256` or `aws:kms`.
    pub algorithm: String,
    pub kms_key_id: Option<String>,
    pub bucket_key_enabled: bool,
    /// Encryption types new objects may not use (only `SSE-C` exists), from
    /// `BlockedEncryptionTypes`.
    #[serde(default)]
    pub blocked_encryption_types: Vec<String>,
}

impl BucketEncryption {
    /// Whether writes that ask for SSE-C are refused.
    pub fn blocks_sse_c(&self) -> bool {
        self.blocked_encryption_types
            .iter()
            .any(|kind| kind == crate::encryption_config::SSE_C)
    }
}

/// How an object's data key is protected.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum KeyProtection {
    /// SSE-S3: a KMS blob under the S3 service's own key.
    S3 {
        #[serde(with = "b64")]
        blob: Vec<u8>,
    },
    /// SSE-KMS: a KMS blob under the customer's (or the AWS managed) key.
    Kms {
        key_arn: String,
        #[serde(with = "b64")]
        blob: Vec<u8>,
        /// The caller's context (without `aws:s3:arn`, which is added when decrypting).
        context: BTreeMap<String, String>,
        bucket_key_enabled: bool,
        /// With a bucket key: `blob` wraps the bucket key, and this hex salt derives the
        /// object's data key from it (see `bucket_keys`).
        #[serde(default)]
        bucket_key_salt: Option<String>,
    },
    /// SSE-C: wrapped under HKDF(customer key, salt); `verifier` recognises the key.
    Customer {
        #[serde(with = "b64")]
        salt: Vec<u8>,
        #[serde(with = "b64")]
        verifier: Vec<u8>,
        #[serde(with = "b64")]
        wrapped: Vec<u8>,
    },
}

/// One sealed segment stream on the blob store: a whole object, or one part of one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamRecord {
    pub blob: String,
    /// Plaintext bytes.
    pub size: u64,
    /// The part number the stream's segments are bound to (segment format v2: 1 for a single
    /// PUT). `None`: written before bindings, an unbound (v1) stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub size: u64,
    pub etag: String,
    pub last_modified: i64,
    pub key: KeyProtection,
    /// In part order; one entry for a single-part object.
    pub streams: Vec<StreamRecord>,
    /// Set for objects made by CompleteMultipartUpload (ETag `-N`, `partNumber` reads).
    pub multipart: bool,
    pub headers: ContentHeaders,
    /// `x-amz-meta-*`, sealed with the object key (see `sealed_metadata` in the service).
    #[serde(with = "b64")]
    pub sealed_metadata: Vec<u8>,
    #[serde(default)]
    pub checksums: BTreeMap<String, String>,
    /// The multipart upload the object's parts were sealed in (their binding names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
}

/// Standard headers stored in the clear, as AWS does (they describe how to serve the bytes).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContentHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartRecord {
    pub stream: StreamRecord,
    pub etag: String,
    pub last_modified: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadRecord {
    pub bucket: String,
    pub key: String,
    pub initiated: i64,
    pub data_key: KeyProtection,
    pub headers: ContentHeaders,
    #[serde(with = "b64")]
    pub sealed_metadata: Vec<u8>,
    pub parts: BTreeMap<u32, PartRecord>,
}

/// What deleting a bucket found.
#[derive(Debug, PartialEq, Eq)]
pub enum BucketDeletion {
    Deleted,
    NotFound,
    NotEmpty,
}

/// The metadata backend.
pub trait ObjectIndex: Send + Sync {
    fn bucket(&self, name: &str) -> Result<Option<BucketRecord>, StoreError>;
    /// Inserts a bucket; `false` if the name is taken.
    fn create_bucket(&self, record: &BucketRecord) -> Result<bool, StoreError>;
    fn replace_bucket(&self, record: &BucketRecord) -> Result<(), StoreError>;
    fn delete_bucket(&self, name: &str) -> Result<BucketDeletion, StoreError>;
    fn buckets(&self) -> Result<Vec<BucketRecord>, StoreError>;

    fn object(&self, bucket: &str, key: &str) -> Result<Option<ObjectRecord>, StoreError>;
    /// Stores an object, returning the one it replaced (whose blobs the caller deletes).
    /// Fails with `Ok(Err(()))` if the bucket no longer exists.
    fn put_object(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
    ) -> Result<Result<Option<ObjectRecord>, ()>, StoreError>;
    fn delete_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectRecord>, StoreError>;
    /// Up to `limit` objects whose keys start with `prefix` and sort after `after`.
    fn objects(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, ObjectRecord)>, StoreError>;

    fn upload(&self, upload_id: &str) -> Result<Option<UploadRecord>, StoreError>;
    fn create_upload(&self, upload_id: &str, record: &UploadRecord) -> Result<(), StoreError>;
    /// Adds or replaces one part, returning the part it replaced; `None` if the upload is gone.
    fn put_part(
        &self,
        upload_id: &str,
        number: u32,
        part: &PartRecord,
    ) -> Result<Option<Option<PartRecord>>, StoreError>;
    fn delete_upload(&self, upload_id: &str) -> Result<Option<UploadRecord>, StoreError>;
    /// Removes the upload and stores the object in one transaction; returns the replaced
    /// object, or `None` if the upload was already gone.
    fn complete_upload(
        &self,
        upload_id: &str,
        record: &ObjectRecord,
    ) -> Result<Option<Option<ObjectRecord>>, StoreError>;
    fn uploads(&self, bucket: &str) -> Result<Vec<(String, UploadRecord)>, StoreError>;
    /// Every blob an object or an upload's part refers to.
    fn referenced_blobs(&self) -> Result<std::collections::HashSet<String>, StoreError>;
}

/// The tables whose records decide access or key use (bucket policies and default
/// encryption), sealed by the metadata store's `RecordSeal`.
pub const SEALED_TABLES: &[&str] = &["s3_buckets"];

/// The embedded default: tables in the shared redb database.
pub struct RedbIndex {
    db: Arc<Database>,
    seal: Option<Arc<atrest_kms::RecordSeal>>,
}

impl RedbIndex {
    pub fn open(db: Arc<Database>) -> Result<Self, StoreError> {
        let txn = db.begin_write()?;
        for table in [BUCKETS, OBJECTS, UPLOADS] {
            txn.open_table(table)?;
        }
        txn.commit()?;
        Ok(Self { db, seal: None })
    }

    /// Seals bucket records when written and checks them when read.
    pub fn with_seal(mut self, seal: Option<Arc<atrest_kms::RecordSeal>>) -> Self {
        self.seal = seal;
        self
    }

    fn get<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        if table.name() == BUCKETS.name() {
            let txn = self.db.begin_read()?;
            let buckets = txn.open_table(BUCKETS)?;
            return match buckets.get(id)? {
                Some(value) => Ok(Some(serde_json::from_slice(
                    self.open_bucket(id, value.value())?,
                )?)),
                None => Ok(None),
            };
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(table)?;
        match table.get(id)? {
            Some(value) => Ok(Some(serde_json::from_slice(value.value())?)),
            None => Ok(None),
        }
    }

    fn seal_bucket(&self, record: &BucketRecord) -> Result<Vec<u8>, StoreError> {
        let json = serde_json::to_vec(record)?;
        Ok(match &self.seal {
            Some(seal) => seal.seal(BUCKETS.name(), &record.name, &json),
            None => json,
        })
    }

    fn open_bucket<'a>(&self, name: &str, stored: &'a [u8]) -> Result<&'a [u8], StoreError> {
        match &self.seal {
            Some(seal) => seal.open(BUCKETS.name(), name, stored).map_err(StoreError),
            None => Ok(stored),
        }
    }
}

/// The record an insert or remove displaced, decoded.
fn decode_replaced<T: for<'de> Deserialize<'de>>(
    old: Option<redb::AccessGuard<'_, &[u8]>>,
) -> Result<Option<T>, StoreError> {
    match old {
        Some(old) => Ok(Some(serde_json::from_slice(old.value())?)),
        None => Ok(None),
    }
}

fn object_id(bucket: &str, key: &str) -> String {
    format!("{bucket}/{key}")
}

impl ObjectIndex for RedbIndex {
    fn bucket(&self, name: &str) -> Result<Option<BucketRecord>, StoreError> {
        self.get(BUCKETS, name)
    }

    fn create_bucket(&self, record: &BucketRecord) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(BUCKETS)?;
            if table.get(record.name.as_str())?.is_some() {
                return Ok(false);
            }
            table.insert(record.name.as_str(), self.seal_bucket(record)?.as_slice())?;
        }
        txn.commit()?;
        Ok(true)
    }

    fn replace_bucket(&self, record: &BucketRecord) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        let stored = self.seal_bucket(record)?;
        txn.open_table(BUCKETS)?
            .insert(record.name.as_str(), stored.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    fn delete_bucket(&self, name: &str) -> Result<BucketDeletion, StoreError> {
        let txn = self.db.begin_write()?;
        {
            let prefix = object_id(name, "");
            let objects = txn.open_table(OBJECTS)?;
            if let Some(entry) = objects.range(prefix.as_str()..)?.next() {
                let (id, _) = entry?;
                if id.value().starts_with(&prefix) {
                    return Ok(BucketDeletion::NotEmpty);
                }
            }
            let uploads = txn.open_table(UPLOADS)?;
            for entry in uploads.iter()? {
                let (_, value) = entry?;
                let upload: UploadRecord = serde_json::from_slice(value.value())?;
                if upload.bucket == name {
                    return Ok(BucketDeletion::NotEmpty);
                }
            }
            let mut buckets = txn.open_table(BUCKETS)?;
            if buckets.remove(name)?.is_none() {
                return Ok(BucketDeletion::NotFound);
            }
        }
        txn.commit()?;
        Ok(BucketDeletion::Deleted)
    }

    fn buckets(&self) -> Result<Vec<BucketRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BUCKETS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (name, value) = entry?;
            // A bucket whose record fails its check is left out of listings (and reported);
            // requests naming it fail.
            match self.open_bucket(name.value(), value.value()) {
                Ok(record) => out.push(serde_json::from_slice(record)?),
                Err(error) => tracing::error!(%error, "a bucket record is left out"),
            }
        }
        Ok(out)
    }

    fn object(&self, bucket: &str, key: &str) -> Result<Option<ObjectRecord>, StoreError> {
        self.get(OBJECTS, &object_id(bucket, key))
    }

    fn put_object(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
    ) -> Result<Result<Option<ObjectRecord>, ()>, StoreError> {
        let txn = self.db.begin_write()?;
        let replaced = {
            if txn.open_table(BUCKETS)?.get(bucket)?.is_none() {
                return Ok(Err(()));
            }
            let mut objects = txn.open_table(OBJECTS)?;
            let id = object_id(bucket, key);
            let encoded = serde_json::to_vec(record)?;
            let old = objects.insert(id.as_str(), encoded.as_slice())?;
            decode_replaced(old)?
        };
        txn.commit()?;
        Ok(Ok(replaced))
    }

    fn delete_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectRecord>, StoreError> {
        let txn = self.db.begin_write()?;
        let removed = {
            let mut objects = txn.open_table(OBJECTS)?;
            let old = objects.remove(object_id(bucket, key).as_str())?;
            decode_replaced(old)?
        };
        txn.commit()?;
        Ok(removed)
    }

    fn objects(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, ObjectRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OBJECTS)?;
        let bucket_prefix = object_id(bucket, "");
        let full_prefix = object_id(bucket, prefix);
        let start = match after {
            Some(after) if after >= prefix => object_id(bucket, after),
            _ => full_prefix.clone(),
        };
        let mut out = Vec::new();
        for entry in table.range(start.as_str()..)? {
            let (id, value) = entry?;
            let id = id.value();
            if !id.starts_with(&full_prefix) {
                break;
            }
            let key = &id[bucket_prefix.len()..];
            if after.is_some_and(|after| key <= after) {
                continue;
            }
            out.push((key.to_owned(), serde_json::from_slice(value.value())?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn upload(&self, upload_id: &str) -> Result<Option<UploadRecord>, StoreError> {
        self.get(UPLOADS, upload_id)
    }

    fn create_upload(&self, upload_id: &str, record: &UploadRecord) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(UPLOADS)?
            .insert(upload_id, serde_json::to_vec(record)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    fn put_part(
        &self,
        upload_id: &str,
        number: u32,
        part: &PartRecord,
    ) -> Result<Option<Option<PartRecord>>, StoreError> {
        let txn = self.db.begin_write()?;
        let replaced = {
            let mut uploads = txn.open_table(UPLOADS)?;
            let current = uploads.get(upload_id)?.map(|value| value.value().to_vec());
            let Some(current) = current else {
                return Ok(None);
            };
            let mut upload: UploadRecord = serde_json::from_slice(&current)?;
            let replaced = upload.parts.insert(number, part.clone());
            uploads.insert(upload_id, serde_json::to_vec(&upload)?.as_slice())?;
            replaced
        };
        txn.commit()?;
        Ok(Some(replaced))
    }

    fn delete_upload(&self, upload_id: &str) -> Result<Option<UploadRecord>, StoreError> {
        let txn = self.db.begin_write()?;
        let removed = {
            let mut uploads = txn.open_table(UPLOADS)?;
            let old = uploads.remove(upload_id)?;
            decode_replaced(old)?
        };
        txn.commit()?;
        Ok(removed)
    }

    fn complete_upload(
        &self,
        upload_id: &str,
        record: &ObjectRecord,
    ) -> Result<Option<Option<ObjectRecord>>, StoreError> {
        let txn = self.db.begin_write()?;
        let replaced = {
            let mut uploads = txn.open_table(UPLOADS)?;
            let removed = uploads
                .remove(upload_id)?
                .map(|value| value.value().to_vec());
            let Some(removed) = removed else {
                return Ok(None);
            };
            let upload: UploadRecord = serde_json::from_slice(&removed)?;
            let mut objects = txn.open_table(OBJECTS)?;
            let id = object_id(&upload.bucket, &upload.key);
            let encoded = serde_json::to_vec(record)?;
            let old = objects.insert(id.as_str(), encoded.as_slice())?;
            decode_replaced(old)?
        };
        txn.commit()?;
        Ok(Some(replaced))
    }

    fn referenced_blobs(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let mut referenced = std::collections::HashSet::new();
        for entry in txn.open_table(OBJECTS)?.iter()? {
            let record: ObjectRecord = serde_json::from_slice(entry?.1.value())?;
            referenced.extend(record.streams.into_iter().map(|stream| stream.blob));
        }
        for entry in txn.open_table(UPLOADS)?.iter()? {
            let upload: UploadRecord = serde_json::from_slice(entry?.1.value())?;
            referenced.extend(upload.parts.into_values().map(|part| part.stream.blob));
        }
        Ok(referenced)
    }

    fn uploads(&self, bucket: &str) -> Result<Vec<(String, UploadRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(UPLOADS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (id, value) = entry?;
            let upload: UploadRecord = serde_json::from_slice(value.value())?;
            if upload.bucket == bucket {
                out.push((id.value().to_owned(), upload));
            }
        }
        Ok(out)
    }
}

/// Byte fields as base64 in the JSON records.
mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
