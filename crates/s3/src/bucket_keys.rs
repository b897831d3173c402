//! S3 Bucket Keys (S3 User Guide, "Reducing the cost of SSE-KMS with Amazon S3 Bucket Keys"):
//! instead of one KMS call per object, a short-lived bucket-level key comes from the KMS (its
//! encryption context names the bucket, `aws:s3:arn = arn:aws:s3:::BUCKET`, as AWS's does)
//! and each object's data key is derived from it: HKDF-SHA256(bucket key, per-object random
//! salt, info = label ‖ object ARN). The object stores the bucket key's KMS blob and its salt.
//!
//! Cached bucket keys live in memory only, zeroized when dropped, for at most [`LIFETIME`].
//! Entries are per caller: each principal's permission on the KMS key is checked by the KMS
//! at least once per lifetime, and one caller's key never serves another. A key disabled or
//! a permission revoked therefore takes effect within the lifetime, the trade-off AWS makes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use atrest_crypto::{SecretKey32, kdf};

/// How long a bucket key is used before the KMS is asked again.
pub const LIFETIME: Duration = Duration::from_secs(300);
/// Beyond this many cached keys, expired ones are dropped, then all.
const MAX_ENTRIES: usize = 4096;
const OBJECT_KEY_INFO: &[u8] = b"atrest s3 bucket-key object key v1|";

/// Identifies a bucket key made for writes: who, which bucket, which KMS key, which context.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MintId {
    pub caller: String,
    pub bucket_arn: String,
    pub kms_key: String,
    pub context: BTreeMap<String, String>,
}

/// A bucket key and the KMS blob that recovers it.
pub struct BucketKey {
    pub key: SecretKey32,
    pub blob: Vec<u8>,
    pub key_arn: String,
}

struct Entry {
    bucket_key: BucketKey,
    expires: Instant,
}

/// Both caches: bucket keys minted for writes, and bucket keys recovered for reads (by caller
/// and blob).
#[derive(Default)]
pub struct BucketKeys {
    minted: Mutex<HashMap<MintId, Entry>>,
    opened: Mutex<HashMap<(String, Vec<u8>), Entry>>,
}

impl BucketKeys {
    /// Runs `derive` with the live bucket key for `id`, minting one with `mint` if there is
    /// none. `mint` runs outside the lock, so a slow KMS call does not stall other buckets.
    pub fn with_minted<R, E>(
        &self,
        id: &MintId,
        mint: impl FnOnce() -> Result<BucketKey, E>,
        derive: impl Fn(&BucketKey) -> R,
    ) -> Result<R, E> {
        if let Some(result) = live(&self.minted, id, |entry| derive(&entry.bucket_key)) {
            return Ok(result);
        }
        let bucket_key = mint()?;
        let result = derive(&bucket_key);
        insert(&self.minted, id.clone(), bucket_key);
        Ok(result)
    }

    /// The bucket key a stored `blob` wraps, for `caller`, recovering it with `open` if it
    /// is not cached.
    pub fn with_opened<R, E>(
        &self,
        caller: &str,
        blob: &[u8],
        open: impl FnOnce() -> Result<BucketKey, E>,
        derive: impl Fn(&BucketKey) -> R,
    ) -> Result<R, E> {
        let id = (caller.to_owned(), blob.to_vec());
        if let Some(result) = live(&self.opened, &id, |entry| derive(&entry.bucket_key)) {
            return Ok(result);
        }
        let bucket_key = open()?;
        let result = derive(&bucket_key);
        insert(&self.opened, id, bucket_key);
        Ok(result)
    }
}

/// The object's data key: HKDF-SHA256(bucket key, salt, label ‖ object ARN).
pub fn object_key(bucket_key: &SecretKey32, salt: &[u8], object_arn: &str) -> SecretKey32 {
    let mut info = OBJECT_KEY_INFO.to_vec();
    info.extend_from_slice(object_arn.as_bytes());
    kdf::derive_key32(bucket_key.expose(), salt, &info)
}

fn live<K: std::hash::Hash + Eq, R>(
    cache: &Mutex<HashMap<K, Entry>>,
    id: &K,
    use_entry: impl FnOnce(&Entry) -> R,
) -> Option<R> {
    let cache = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    cache
        .get(id)
        .filter(|entry| entry.expires > Instant::now())
        .map(use_entry)
}

fn insert<K: std::hash::Hash + Eq>(cache: &Mutex<HashMap<K, Entry>>, id: K, bucket_key: BucketKey) {
    let mut cache = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if cache.len() >= MAX_ENTRIES {
        let now = Instant::now();
        cache.retain(|_, entry| entry.expires > now);
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
    }
    cache.insert(
        id,
        Entry {
            bucket_key,
            expires: Instant::now() + LIFETIME,
        },
    );
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn id(caller: &str) -> MintId {
        MintId {
            caller: caller.into(),
            bucket_arn: "arn:aws:s3:::b".into(),
            kms_key: "k".into(),
            context: BTreeMap::new(),
        }
    }

    fn minted(calls: &Cell<u32>) -> Result<BucketKey, ()> {
        calls.set(calls.get() + 1);
        Ok(BucketKey {
            key: atrest_crypto::random::key32(),
            blob: vec![1, 2, 3],
            key_arn: "k".into(),
        })
    }

    #[test]
    fn one_mint_per_caller_and_distinct_object_keys() {
        let keys = BucketKeys::default();
        let calls = Cell::new(0);
        let derive = |arn: &'static str| {
            move |bucket_key: &BucketKey| {
                object_key(&bucket_key.key, b"salt", arn).expose().to_vec()
            }
        };
        let a = keys
            .with_minted(&id("alice"), || minted(&calls), derive("arn:aws:s3:::b/1"))
            .unwrap();
        let b = keys
            .with_minted(&id("alice"), || minted(&calls), derive("arn:aws:s3:::b/2"))
            .unwrap();
        assert_eq!(calls.get(), 1);
        assert_ne!(a, b, "objects never share a data key");
        keys.with_minted(&id("bob"), || minted(&calls), derive("arn:aws:s3:::b/1"))
            .unwrap();
        assert_eq!(calls.get(), 2, "another caller gets its own bucket key");
        let failed: Result<(), &str> = keys.with_minted(&id("carol"), || Err("denied"), |_| ());
        assert_eq!(failed, Err("denied"));
    }
}
