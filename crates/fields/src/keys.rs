//! The key hierarchy in use: KMS key → per-column data key versions (wrapped, in the key table) →
//! field values. Unwrapped data keys live only in this cache, expanded, for at most a TTL and a
//! number of uses; then they are dropped (AWS-LC cleanses a freed AEAD context; the AES-SIV and
//! AES key schedules zeroize on drop) and the next use unwraps again through the KMS, where the
//! key policy and the audit log see it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::Zeroizing;

use crate::encryptor::FieldEncryptor;
use crate::error::{FieldError, Result};
use crate::kms::{self, MasterKeys};
use crate::table::{ColumnKeys, ColumnRecord, DataKeyRecord, KeyTable};
use crate::tink::{FieldCipher, Mode, serialized_key_proto};

/// How long and how much an unwrapped data key may be used before it is unwrapped again.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    /// Also how long a process keeps using a primary after another process rotated it.
    pub ttl: Duration,
    /// Encryptions plus decryptions with one unwrapped key before it is evicted.
    pub max_uses: u64,
}

impl Default for CachePolicy {
    /// Five minutes and 2^32 uses, the AWS Encryption SDK caching CMM's message limit.
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            max_uses: 1 << 32,
        }
    }
}

/// One data key version, summarised for callers and the CLI (no key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersion {
    pub version: i32,
    pub key_id: u32,
    pub kms_key_arn: String,
}

impl From<&DataKeyRecord> for KeyVersion {
    fn from(key: &DataKeyRecord) -> Self {
        Self {
            version: key.version,
            key_id: key.key_id,
            kms_key_arn: key.wrapped.kms_key_arn.clone(),
        }
    }
}

/// Data keys of every column, over one key table and one KMS.
pub struct FieldKeys<T> {
    table: T,
    kms: MasterKeys,
    policy: CachePolicy,
    columns: Mutex<HashMap<(String, String), Arc<ColumnCache>>>,
}

impl<T> std::fmt::Debug for FieldKeys<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldKeys")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// What one process knows of one column: its key list (refreshed after the TTL, so a rotation
/// by another process is picked up) and the data keys unwrapped so far.
pub(crate) struct ColumnCache {
    pub(crate) table: String,
    pub(crate) column: String,
    list: RwLock<Option<Arc<KeyList>>>,
    ciphers: RwLock<HashMap<u32, Arc<CachedCipher>>>,
    /// The primary's cipher, for `encrypt`'s fast path: one lock and one clock read.
    primary: RwLock<Option<HotPrimary>>,
    /// One KMS round trip per miss, not one per waiting task.
    loading: tokio::sync::Mutex<()>,
}

pub(crate) struct KeyList {
    pub(crate) keys: ColumnKeys,
    read_at: Instant,
}

struct HotPrimary {
    /// When the key list naming this primary was read: past the TTL, re-read it (a rotation
    /// elsewhere may have made another version primary).
    list_read_at: Instant,
    cached: Arc<CachedCipher>,
}

struct CachedCipher {
    cipher: FieldCipher,
    unwrapped_at: Instant,
    uses: AtomicU64,
}

impl CachedCipher {
    /// Counts one use; false once the key is past its TTL or use limit.
    fn take_use(&self, policy: &CachePolicy, now: Instant) -> bool {
        now.duration_since(self.unwrapped_at) < policy.ttl
            && self.uses.fetch_add(1, Ordering::Relaxed) < policy.max_uses
    }
}

impl<T: KeyTable> FieldKeys<T> {
    /// Inside a tokio runtime this also starts a task that evicts expired keys every TTL/2, so
    /// an idle key does not outlive its TTL in memory; it ends when the last `Arc` is dropped.
    pub fn new(table: T, kms: aws_sdk_kms::Client, policy: CachePolicy) -> Arc<Self> {
        let keys = Arc::new(Self {
            table,
            kms: MasterKeys::new(kms),
            policy,
            columns: Mutex::new(HashMap::new()),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&keys);
            let period = (policy.ttl / 2).max(Duration::from_millis(10));
            runtime.spawn(evict_until_dropped(weak, period));
        }
        keys
    }

    pub fn key_table(&self) -> &T {
        &self.table
    }

    pub fn policy(&self) -> CachePolicy {
        self.policy
    }

    /// Creates the key table if needed.
    pub async fn install(&self) -> Result<()> {
        self.table.install().await
    }

    /// Makes `table.column` an encrypted column with a first data key under `kms_key_id`; an
    /// existing column of the same mode is left as it is.
    pub async fn create_column(
        &self,
        table: &str,
        column: &str,
        mode: Mode,
        kms_key_id: &str,
    ) -> Result<KeyVersion> {
        if let Some(existing) = self.table.load(table, column).await? {
            check_mode(&existing, mode)?;
            if let Some(primary) = existing.primary() {
                return Ok(primary.into());
            }
        }
        let record = ColumnRecord {
            table: table.into(),
            column: column.into(),
            mode,
        };
        self.add_version(&record, &[], kms_key_id).await
    }

    /// Adds a data key version that new writes use from now on (in this process at once, in
    /// others within the TTL); older values keep decrypting. `kms_key_id` defaults to the KMS key
    /// of the current primary.
    pub async fn rotate_data_key(
        &self,
        table: &str,
        column: &str,
        kms_key_id: Option<&str>,
    ) -> Result<KeyVersion> {
        let existing = self.require(table, column).await?;
        let primary = existing.primary().ok_or_else(|| no_keys(table, column))?;
        let kms_key = kms_key_id
            .unwrap_or(&primary.wrapped.kms_key_arn)
            .to_string();
        let version = self
            .add_version(&existing.column, &existing.keys, &kms_key)
            .await?;
        self.forget(table, column);
        Ok(version)
    }

    /// Re-wraps every data key version of the column under `kms_key_id`. No row changes and no
    /// data key leaves the KMS in plaintext (ReEncrypt). Returns the versions re-wrapped.
    pub async fn rewrap(&self, table: &str, column: &str, kms_key_id: &str) -> Result<usize> {
        let existing = self.require(table, column).await?;
        let mut rewrapped = Vec::with_capacity(existing.keys.len());
        for key in &existing.keys {
            let context = kms::context(table, column, key.key_id);
            let wrapped = self.kms.rewrap(&key.wrapped, context, kms_key_id).await?;
            rewrapped.push(DataKeyRecord {
                version: key.version,
                key_id: key.key_id,
                wrapped,
            });
        }
        self.table
            .replace_wrapping(table, column, &rewrapped)
            .await?;
        self.forget(table, column);
        Ok(rewrapped.len())
    }

    /// The column's mode and key versions, oldest first (no key material).
    pub async fn describe(&self, table: &str, column: &str) -> Result<(Mode, Vec<KeyVersion>)> {
        let existing = self.require(table, column).await?;
        let versions = existing.keys.iter().map(KeyVersion::from).collect();
        Ok((existing.column.mode, versions))
    }

    /// An encryptor for one column (which must exist).
    pub async fn encryptor(
        self: &Arc<Self>,
        table: &str,
        column: &str,
    ) -> Result<FieldEncryptor<T>> {
        let cache = self.column_cache(table, column);
        let list = self.key_list(&cache).await?;
        let mode = list.keys.column.mode;
        Ok(FieldEncryptor::new(Arc::clone(self), cache, mode))
    }

    /// The column's keyset in Tink's JSON keyset format, in clear (every version, the newest
    /// primary). For handing to a Tink program that must read the column; treat it as the key.
    pub async fn export_tink_keyset(&self, table: &str, column: &str) -> Result<Zeroizing<String>> {
        let existing = self.require(table, column).await?;
        let primary = existing.primary().ok_or_else(|| no_keys(table, column))?;
        let mode = existing.column.mode;
        let mut json = Zeroizing::new(String::new());
        let _ = write!(json, "{{\"primaryKeyId\":{},\"key\":[", primary.key_id);
        for (index, key) in existing.keys.iter().enumerate() {
            let material = self
                .kms
                .unwrap(&key.wrapped, kms::context(table, column, key.key_id))
                .await?;
            check_key_len(mode, &material)?;
            let proto = serialized_key_proto(mode, &material);
            let mut value = Zeroizing::new(String::new());
            BASE64.encode_string(proto.as_slice(), &mut value);
            let _ = write!(
                json,
                "{}{{\"keyData\":{{\"typeUrl\":\"{}\",\"value\":\"{}\",\
                 \"keyMaterialType\":\"SYMMETRIC\"}},\"status\":\"ENABLED\",\
                 \"keyId\":{},\"outputPrefixType\":\"TINK\"}}",
                if index == 0 { "" } else { "," },
                mode.type_url(),
                value.as_str(),
                key.key_id
            );
        }
        json.push_str("]}");
        Ok(json)
    }

    /// Drops every unwrapped key past its TTL or use limit (the cache also does this lazily).
    pub fn evict_expired(&self) {
        let now = Instant::now();
        for cache in self.caches() {
            let mut ciphers = cache
                .ciphers
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let live = |cached: &CachedCipher| {
                now.duration_since(cached.unwrapped_at) < self.policy.ttl
                    && cached.uses.load(Ordering::Relaxed) < self.policy.max_uses
            };
            ciphers.retain(|_, cached| live(cached));
            let mut primary = cache
                .primary
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if primary.as_ref().is_some_and(|hot| !live(&hot.cached)) {
                *primary = None;
            }
        }
    }

    /// Drops every unwrapped key now.
    pub fn clear_cache(&self) {
        for cache in self.caches() {
            cache
                .ciphers
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            *cache
                .primary
                .write()
                .unwrap_or_else(PoisonError::into_inner) = None;
            *cache.list.write().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// How many unwrapped data keys are held now (for tests and metrics).
    pub fn cached_keys(&self) -> usize {
        self.caches()
            .iter()
            .map(|cache| {
                cache
                    .ciphers
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len()
            })
            .sum()
    }

    fn caches(&self) -> Vec<Arc<ColumnCache>> {
        let columns = self.columns.lock().unwrap_or_else(PoisonError::into_inner);
        columns.values().cloned().collect()
    }

    async fn require(&self, table: &str, column: &str) -> Result<ColumnKeys> {
        self.table
            .load(table, column)
            .await?
            .ok_or_else(|| no_keys(table, column))
    }

    async fn add_version(
        &self,
        column: &ColumnRecord,
        existing: &[DataKeyRecord],
        kms_key_id: &str,
    ) -> Result<KeyVersion> {
        let version = existing.iter().map(|key| key.version).max().unwrap_or(0) + 1;
        let key_id = loop {
            let mut id = [0; 4];
            atrest_crypto::random::fill(&mut id);
            let id = u32::from_be_bytes(id);
            if existing.iter().all(|key| key.key_id != id) {
                break id;
            }
        };
        let context = kms::context(&column.table, &column.column, key_id);
        let wrapped = self
            .kms
            .generate(kms_key_id, column.mode.key_len(), context)
            .await?;
        let record = DataKeyRecord {
            version,
            key_id,
            wrapped,
        };
        self.table.add_key(column, &record).await?;
        Ok((&record).into())
    }

    /// Makes this process re-read the column's key list on next use (after a local rotation).
    fn forget(&self, table: &str, column: &str) {
        let columns = self.columns.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cache) = columns.get(&(table.to_string(), column.to_string())) {
            *cache.list.write().unwrap_or_else(PoisonError::into_inner) = None;
            *cache
                .primary
                .write()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    fn column_cache(&self, table: &str, column: &str) -> Arc<ColumnCache> {
        let mut columns = self.columns.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = columns
            .entry((table.to_string(), column.to_string()))
            .or_insert_with(|| {
                Arc::new(ColumnCache {
                    table: table.to_string(),
                    column: column.to_string(),
                    list: RwLock::new(None),
                    ciphers: RwLock::new(HashMap::new()),
                    primary: RwLock::new(None),
                    loading: tokio::sync::Mutex::new(()),
                })
            });
        Arc::clone(entry)
    }

    /// The column's key list, re-read from the key table once older than the TTL.
    pub(crate) async fn key_list(&self, cache: &ColumnCache) -> Result<Arc<KeyList>> {
        if let Some(list) = self.fresh_list(cache) {
            return Ok(list);
        }
        let _loading = cache.loading.lock().await;
        if let Some(list) = self.fresh_list(cache) {
            return Ok(list);
        }
        self.reload_list(cache).await
    }

    /// Reads the key list now (a value names a key id the cached list lacks: a newer version).
    pub(crate) async fn reload_list(&self, cache: &ColumnCache) -> Result<Arc<KeyList>> {
        let keys = self.require(&cache.table, &cache.column).await?;
        if keys.keys.is_empty() {
            return Err(no_keys(&cache.table, &cache.column));
        }
        let list = Arc::new(KeyList {
            keys,
            read_at: Instant::now(),
        });
        *cache.list.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&list));
        Ok(list)
    }

    fn fresh_list(&self, cache: &ColumnCache) -> Option<Arc<KeyList>> {
        let list = cache.list.read().unwrap_or_else(PoisonError::into_inner);
        list.as_ref()
            .filter(|list| list.read_at.elapsed() < self.policy.ttl)
            .cloned()
    }

    /// `encrypt`'s fast path: runs `use_key` with the primary's cipher if it is cached, fresh
    /// and under its use limit; `None` sends the caller to [`Self::with_primary`].
    pub(crate) fn with_hot_primary<R>(
        &self,
        cache: &ColumnCache,
        use_key: impl FnOnce(&FieldCipher) -> R,
    ) -> Option<R> {
        let now = Instant::now();
        let primary = cache.primary.read().unwrap_or_else(PoisonError::into_inner);
        let hot = primary.as_ref()?;
        let usable = now.duration_since(hot.list_read_at) < self.policy.ttl
            && hot.cached.take_use(&self.policy, now);
        usable.then(|| use_key(&hot.cached.cipher))
    }

    /// Runs `use_key` with the cipher of the primary of `list`, and makes it the hot primary.
    pub(crate) async fn with_primary<R>(
        &self,
        cache: &ColumnCache,
        list: &KeyList,
        use_key: impl FnOnce(&FieldCipher) -> R,
    ) -> Result<R> {
        let key = list
            .keys
            .primary()
            .ok_or_else(|| FieldError::Corrupt("a key list without keys".into()))?;
        let cached = self.cipher(cache, key, list.keys.column.mode).await?;
        let result = use_key(&cached.cipher);
        *cache
            .primary
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(HotPrimary {
            list_read_at: list.read_at,
            cached,
        });
        Ok(result)
    }

    /// Runs `use_key` with the unwrapped cipher of `key`.
    pub(crate) async fn with_cipher<R>(
        &self,
        cache: &ColumnCache,
        key: &DataKeyRecord,
        mode: Mode,
        use_key: impl FnOnce(&FieldCipher) -> R,
    ) -> Result<R> {
        let cached = self.cipher(cache, key, mode).await?;
        Ok(use_key(&cached.cipher))
    }

    /// The unwrapped cipher of `key`, one use counted; unwrapped through the KMS on a miss,
    /// past the TTL or past the use limit.
    async fn cipher(
        &self,
        cache: &ColumnCache,
        key: &DataKeyRecord,
        mode: Mode,
    ) -> Result<Arc<CachedCipher>> {
        if let Some(cached) = self.cached(cache, key.key_id) {
            return Ok(cached);
        }
        let _loading = cache.loading.lock().await;
        if let Some(cached) = self.cached(cache, key.key_id) {
            return Ok(cached);
        }
        let material = self
            .kms
            .unwrap(
                &key.wrapped,
                kms::context(&cache.table, &cache.column, key.key_id),
            )
            .await?;
        check_key_len(mode, &material)?;
        let cached = Arc::new(CachedCipher {
            cipher: FieldCipher::new(mode, key.key_id, &material)?,
            unwrapped_at: Instant::now(),
            uses: AtomicU64::new(1),
        });
        drop(material);
        cache
            .ciphers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.key_id, Arc::clone(&cached));
        Ok(cached)
    }

    fn cached(&self, cache: &ColumnCache, key_id: u32) -> Option<Arc<CachedCipher>> {
        let now = Instant::now();
        let ciphers = cache.ciphers.read().unwrap_or_else(PoisonError::into_inner);
        let cached = ciphers.get(&key_id)?;
        cached
            .take_use(&self.policy, now)
            .then(|| Arc::clone(cached))
    }
}

async fn evict_until_dropped<T: KeyTable>(keys: Weak<FieldKeys<T>>, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        match keys.upgrade() {
            Some(keys) => keys.evict_expired(),
            None => return,
        }
    }
}

fn check_mode(existing: &ColumnKeys, wanted: Mode) -> Result<()> {
    let actual = existing.column.mode;
    if actual == wanted {
        Ok(())
    } else {
        Err(FieldError::ModeMismatch {
            table: existing.column.table.clone(),
            column: existing.column.column.clone(),
            actual: actual.as_str(),
            wanted: wanted.as_str(),
        })
    }
}

fn check_key_len(mode: Mode, material: &atrest_crypto::SecretBytes) -> Result<()> {
    if material.len() == mode.key_len() {
        Ok(())
    } else {
        Err(FieldError::Corrupt(format!(
            "the KMS returned a {}-byte data key for a {} column",
            material.len(),
            mode.as_str()
        )))
    }
}

fn no_keys(table: &str, column: &str) -> FieldError {
    FieldError::NoKeys {
        table: table.into(),
        column: column.into(),
    }
}
