//! The key engine of both backends: keys are used in process memory, unwrapped on demand from
//! blobs sealed under a [`RootKey`]. The default (software) backend's root key is sealed in
//! [`keystore`]; the PKCS#11 backend's never leaves its token (`crate::pkcs11`).
//!
//! Unwrapped keys are cached (as a hardware HSM keeps loaded key handles), bounded in number, and
//! are zeroized when evicted: `AeadKey` and `hmac::Key` live inside AWS-LC, which cleanses key
//! schedules on free.

pub mod backup;
pub mod keystore;
pub mod officer;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use atrest_crypto::{AeadKey, SecretBytes, SecretKey32, random};
use aws_lc_rs::hmac;

pub use keystore::{KeystoreStatus, OpenReport, Role, UnsealWith};

use crate::asymmetric::{self, AsymmetricKey};
use crate::root::RootKey;
use crate::{Hsm, HsmError, KeyKind, Message, OaepHash, SigningAlgorithm, WrappedKey};

/// Unwrapped keys kept loaded; beyond this the cache is emptied and refilled on demand.
const CACHE_CAPACITY: usize = 4096;

/// Loaded keys by label, with the wrapped bytes each was loaded from.
type KeyCache = HashMap<Vec<u8>, (Vec<u8>, Arc<LoadedKey>)>;

pub struct SoftwareHsm {
    root: Box<dyn RootKey>,
    backend: &'static str,
    /// Loaded keys by label, each with the wrapped bytes it came from (checked on every hit, so
    /// a different blob under a reused label is never served from the cache).
    loaded: RwLock<KeyCache>,
    /// The keystore file tamper events are recorded in (None for a keyless test instance).
    keystore: Option<PathBuf>,
    /// Labels whose blobs already failed their integrity check, so a flood of requests for a
    /// tampered key records one event rather than rewriting the keystore per request.
    reported: Mutex<HashSet<Vec<u8>>>,
}

enum LoadedKey {
    Aes(AeadKey),
    Hmac(Box<hmac::Key>),
    Asymmetric(Box<AsymmetricKey>),
}

impl SoftwareHsm {
    /// Opens (or on first use creates) the keystore in `dir` and unseals the root key.
    pub fn open(dir: &Path, unseal: &UnsealWith) -> Result<(Self, OpenReport), HsmError> {
        let (root, report) = keystore::open_or_create(dir, unseal)?;
        let mut hsm = Self::with_root(Box::new(AeadKey::new(&root)), "software");
        hsm.keystore = Some(dir.join(keystore::KEYSTORE_FILE));
        Ok((hsm, report))
    }

    /// The engine over any root key; `backend` names it in logs and health output. Tamper
    /// events go to the log only (a token keeps its own audit).
    pub fn with_root(root: Box<dyn RootKey>, backend: &'static str) -> Self {
        Self {
            root,
            backend,
            loaded: RwLock::new(HashMap::new()),
            keystore: None,
            reported: Mutex::new(HashSet::new()),
        }
    }

    /// The keystore's state, failed attempts and tamper record; needs no passphrase.
    pub fn status(dir: &Path) -> Result<KeystoreStatus, HsmError> {
        keystore::status(dir)
    }

    /// A blob failed its integrity check: never used, and recorded once per label.
    fn tampered(&self, label: &[u8]) -> HsmError {
        let first = self
            .reported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(label.to_vec());
        if first && let Some(path) = &self.keystore {
            let what = format!(
                "wrapped key {:?} failed its integrity check",
                String::from_utf8_lossy(label)
            );
            keystore::record_tamper(path, &what);
        }
        HsmError::WrappedKeyCorrupt
    }

    fn unwrap_material(
        &self,
        wrapped: &WrappedKey,
        label: &[u8],
    ) -> Result<(KeyKind, SecretBytes), HsmError> {
        let kind = wrapped.kind().ok_or_else(|| self.tampered(label))?;
        let material = self
            .root
            .open(wrapped.sealed_part(), &WrappedKey::aad(kind, label))
            .map_err(|error| match error {
                HsmError::WrappedKeyCorrupt => self.tampered(label),
                unavailable => unavailable,
            })?;
        if kind
            .material_lengths()
            .is_some_and(|lengths| !lengths.contains(&material.len()))
        {
            return Err(self.tampered(label));
        }
        Ok((kind, material))
    }

    fn load(&self, wrapped: &WrappedKey, label: &[u8]) -> Result<Arc<LoadedKey>, HsmError> {
        if let Some((cached_wrapped, loaded)) = self.read_cache().get(label)
            && cached_wrapped.as_slice() == wrapped.as_bytes()
        {
            return Ok(Arc::clone(loaded));
        }
        let (kind, material) = self.unwrap_material(wrapped, label)?;
        let loaded = Arc::new(match kind {
            KeyKind::Aes256 => {
                let key = SecretKey32::from_slice(material.expose())
                    .ok_or(HsmError::WrappedKeyCorrupt)?;
                LoadedKey::Aes(AeadKey::new(&key))
            }
            KeyKind::Hmac224 => LoadedKey::Hmac(Box::new(hmac::Key::new(
                hmac::HMAC_SHA224,
                material.expose(),
            ))),
            KeyKind::Hmac256 => LoadedKey::Hmac(Box::new(hmac::Key::new(
                hmac::HMAC_SHA256,
                material.expose(),
            ))),
            KeyKind::Hmac384 => LoadedKey::Hmac(Box::new(hmac::Key::new(
                hmac::HMAC_SHA384,
                material.expose(),
            ))),
            KeyKind::Hmac512 => LoadedKey::Hmac(Box::new(hmac::Key::new(
                hmac::HMAC_SHA512,
                material.expose(),
            ))),
            KeyKind::Secret => {
                return Err(HsmError::WrongKeyKind {
                    actual: kind.name(),
                    operation: "key operations",
                });
            }
            _ => LoadedKey::Asymmetric(Box::new(asymmetric::load(kind, material.expose())?)),
        });
        let mut cache = self.write_cache();
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(
            label.to_vec(),
            (wrapped.as_bytes().to_vec(), Arc::clone(&loaded)),
        );
        Ok(loaded)
    }

    fn aes(
        &self,
        wrapped: &WrappedKey,
        label: &[u8],
        operation: &'static str,
    ) -> Result<Arc<LoadedKey>, HsmError> {
        let loaded = self.load(wrapped, label)?;
        match *loaded {
            LoadedKey::Aes(_) => Ok(loaded),
            _ => Err(wrong_kind(wrapped, operation)),
        }
    }

    fn hmac_key(
        &self,
        wrapped: &WrappedKey,
        label: &[u8],
        operation: &'static str,
    ) -> Result<Arc<LoadedKey>, HsmError> {
        let loaded = self.load(wrapped, label)?;
        match *loaded {
            LoadedKey::Hmac(_) => Ok(loaded),
            _ => Err(wrong_kind(wrapped, operation)),
        }
    }

    fn asymmetric<T>(
        &self,
        wrapped: &WrappedKey,
        label: &[u8],
        operation: &'static str,
        run: impl FnOnce(&AsymmetricKey) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        match &*self.load(wrapped, label)? {
            LoadedKey::Asymmetric(key) => run(key),
            _ => Err(wrong_kind(wrapped, operation)),
        }
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, KeyCache> {
        // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
        self.loaded
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_cache(&self) -> std::sync::RwLockWriteGuard<'_, KeyCache> {
        self.loaded
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Hsm for SoftwareHsm {
    fn backend_name(&self) -> &'static str {
        self.backend
    }

    fn generate_key(&self, kind: KeyKind, label: &[u8]) -> Result<WrappedKey, HsmError> {
        if kind == KeyKind::Secret {
            return Err(HsmError::WrongKeyKind {
                actual: kind.name(),
                operation: "generate_key",
            });
        }
        let material = match kind.material_len() {
            Some(len) => random::secret_bytes(len),
            None => asymmetric::generate_pkcs8(kind)?,
        };
        let sealed = self
            .root
            .seal(material.expose(), &WrappedKey::aad(kind, label))?;
        Ok(WrappedKey::assemble(kind, sealed))
    }

    fn encrypt(
        &self,
        key: &WrappedKey,
        label: &[u8],
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        match &*self.aes(key, label, "encrypt")? {
            LoadedKey::Aes(aes) => Ok(aes.seal(plaintext, aad)),
            _ => Err(wrong_kind(key, "encrypt")),
        }
    }

    fn decrypt(
        &self,
        key: &WrappedKey,
        label: &[u8],
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes, HsmError> {
        match &*self.aes(key, label, "decrypt")? {
            LoadedKey::Aes(aes) => aes.open(sealed, aad).map_err(|_| HsmError::DecryptFailed),
            _ => Err(wrong_kind(key, "decrypt")),
        }
    }

    fn generate_data_key(
        &self,
        key: &WrappedKey,
        label: &[u8],
        len: usize,
        aad: &[u8],
    ) -> Result<(SecretBytes, Vec<u8>), HsmError> {
        let plaintext = random::secret_bytes(len);
        let sealed = self.encrypt(key, label, plaintext.expose(), aad)?;
        Ok((plaintext, sealed))
    }

    fn mac(&self, key: &WrappedKey, label: &[u8], message: &[u8]) -> Result<Vec<u8>, HsmError> {
        match &*self.hmac_key(key, label, "mac")? {
            LoadedKey::Hmac(hmac_key) => Ok(hmac::sign(hmac_key, message).as_ref().to_vec()),
            _ => Err(wrong_kind(key, "mac")),
        }
    }

    fn verify_mac(
        &self,
        key: &WrappedKey,
        label: &[u8],
        message: &[u8],
        mac: &[u8],
    ) -> Result<bool, HsmError> {
        match &*self.hmac_key(key, label, "verify_mac")? {
            LoadedKey::Hmac(hmac_key) => Ok(hmac::verify(hmac_key, message, mac).is_ok()),
            _ => Err(wrong_kind(key, "verify_mac")),
        }
    }

    fn random(&self, len: usize) -> Vec<u8> {
        random::bytes(len)
    }

    fn wrap_secret(&self, secret: &SecretBytes, label: &[u8]) -> Result<WrappedKey, HsmError> {
        let sealed = self
            .root
            .seal(secret.expose(), &WrappedKey::aad(KeyKind::Secret, label))?;
        Ok(WrappedKey::assemble(KeyKind::Secret, sealed))
    }

    fn unwrap_secret(&self, wrapped: &WrappedKey, label: &[u8]) -> Result<SecretBytes, HsmError> {
        match self.unwrap_material(wrapped, label)? {
            (KeyKind::Secret, secret) => Ok(secret),
            (kind, _) => Err(HsmError::WrongKeyKind {
                actual: kind.name(),
                operation: "unwrap_secret",
            }),
        }
    }

    fn public_key(&self, key: &WrappedKey, label: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.asymmetric(key, label, "public_key", |loaded| {
            Ok(loaded.spki().to_vec())
        })
    }

    fn sign(
        &self,
        key: &WrappedKey,
        label: &[u8],
        algorithm: SigningAlgorithm,
        message: Message<'_>,
    ) -> Result<Vec<u8>, HsmError> {
        self.asymmetric(key, label, "sign", |loaded| loaded.sign(algorithm, message))
    }

    fn verify(
        &self,
        key: &WrappedKey,
        label: &[u8],
        algorithm: SigningAlgorithm,
        message: Message<'_>,
        signature: &[u8],
    ) -> Result<bool, HsmError> {
        self.asymmetric(key, label, "verify", |loaded| {
            loaded.verify(algorithm, message, signature)
        })
    }

    fn encrypt_asymmetric(
        &self,
        key: &WrappedKey,
        label: &[u8],
        hash: OaepHash,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        self.asymmetric(key, label, "encrypt", |loaded| {
            loaded.encrypt(hash, plaintext)
        })
    }

    fn decrypt_asymmetric(
        &self,
        key: &WrappedKey,
        label: &[u8],
        hash: OaepHash,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, HsmError> {
        self.asymmetric(key, label, "decrypt", |loaded| {
            loaded.decrypt(hash, ciphertext)
        })
    }

    fn generate_key_pair(&self, kind: KeyKind) -> Result<(SecretBytes, Vec<u8>), HsmError> {
        if !kind.is_asymmetric() {
            return Err(HsmError::WrongKeyKind {
                actual: kind.name(),
                operation: "generate_key_pair",
            });
        }
        let private = asymmetric::generate_pkcs8(kind)?;
        let public = AsymmetricKey::spki_of(kind, private.expose())?;
        Ok((private, public))
    }

    fn import_key(
        &self,
        kind: KeyKind,
        label: &[u8],
        material: &SecretBytes,
    ) -> Result<WrappedKey, HsmError> {
        match kind.material_lengths() {
            _ if kind == KeyKind::Secret => {
                return Err(HsmError::WrongKeyKind {
                    actual: kind.name(),
                    operation: "import_key",
                });
            }
            Some(lengths) if !lengths.contains(&material.len()) => {
                return Err(HsmError::ImportRejected(format!(
                    "{} key material must be {} to {} bytes, not {}",
                    kind.name(),
                    lengths.start(),
                    lengths.end(),
                    material.len()
                )));
            }
            Some(_) => {}
            None => asymmetric::validate_import(kind, material.expose())?,
        }
        let sealed = self
            .root
            .seal(material.expose(), &WrappedKey::aad(kind, label))?;
        Ok(WrappedKey::assemble(kind, sealed))
    }

    fn report_tamper(&self, what: &str) {
        match &self.keystore {
            Some(path) => keystore::record_tamper(path, what),
            None => tracing::error!("HSM TAMPER: {what}"),
        }
    }

    fn forget(&self, key: &WrappedKey, label: &[u8]) {
        let mut cache = self.write_cache();
        if cache
            .get(label)
            .is_some_and(|(cached, _)| cached.as_slice() == key.as_bytes())
        {
            cache.remove(label);
        }
    }
}

fn wrong_kind(key: &WrappedKey, operation: &'static str) -> HsmError {
    let actual = key.kind().map_or("unknown", KeyKind::name);
    HsmError::WrongKeyKind { actual, operation }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev_hsm() -> (tempfile::TempDir, SoftwareHsm) {
        let dir = tempfile::tempdir().unwrap();
        let (hsm, report) = SoftwareHsm::open(dir.path(), &UnsealWith::DevKeyFile).unwrap();
        assert!(report.created && report.dev_mode);
        (dir, hsm)
    }

    #[test]
    fn keys_survive_reopening_and_are_bound_to_their_label() {
        let (dir, hsm) = dev_hsm();
        let key = hsm.generate_key(KeyKind::Aes256, b"kms:a:v1").unwrap();
        let sealed = hsm.encrypt(&key, b"kms:a:v1", b"secret", b"aad").unwrap();
        let (reopened, report) = SoftwareHsm::open(dir.path(), &UnsealWith::DevKeyFile).unwrap();
        assert!(!report.created);
        assert_eq!(
            reopened
                .decrypt(&key, b"kms:a:v1", &sealed, b"aad")
                .unwrap()
                .expose(),
            b"secret"
        );
        assert!(matches!(
            reopened.decrypt(&key, b"kms:b:v1", &sealed, b"aad"),
            Err(HsmError::WrappedKeyCorrupt)
        ));
        assert!(matches!(
            reopened.decrypt(&key, b"kms:a:v1", &sealed, b"aaX"),
            Err(HsmError::DecryptFailed)
        ));
    }

    #[test]
    fn every_flipped_byte_of_a_wrapped_key_is_detected() {
        let (_dir, hsm) = dev_hsm();
        let key = hsm.generate_key(KeyKind::Hmac256, b"label").unwrap();
        for index in 0..key.as_bytes().len() {
            let mut bytes = key.as_bytes().to_vec();
            bytes[index] ^= 0x80;
            let tampered = WrappedKey::from_bytes(bytes);
            assert!(hsm.mac(&tampered, b"label", b"m").is_err(), "byte {index}");
        }
    }

    #[test]
    fn hmac_keys_refuse_encryption_and_verify_their_macs() {
        let (_dir, hsm) = dev_hsm();
        let key = hsm.generate_key(KeyKind::Hmac384, b"h").unwrap();
        let mac = hsm.mac(&key, b"h", b"message").unwrap();
        assert_eq!(mac.len(), 48);
        assert!(hsm.verify_mac(&key, b"h", b"message", &mac).unwrap());
        assert!(!hsm.verify_mac(&key, b"h", b"messagf", &mac).unwrap());
        assert!(matches!(
            hsm.encrypt(&key, b"h", b"x", b""),
            Err(HsmError::WrongKeyKind { .. })
        ));
    }

    #[test]
    fn passphrase_keystore_needs_the_right_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let right = UnsealWith::Passphrase(SecretBytes::copy_from(b"correct horse"));
        let (hsm, report) = SoftwareHsm::open(dir.path(), &right).unwrap();
        assert!(!report.dev_mode);
        let secret = hsm
            .wrap_secret(&SecretBytes::copy_from(b"sigv4 secret"), b"user")
            .unwrap();
        let wrong = UnsealWith::Passphrase(SecretBytes::copy_from(b"battery staple"));
        assert!(matches!(
            SoftwareHsm::open(dir.path(), &wrong),
            Err(HsmError::UnsealFailed { .. })
        ));
        assert!(matches!(
            SoftwareHsm::open(dir.path(), &UnsealWith::DevKeyFile),
            Err(HsmError::PassphraseRequired)
        ));
        let (again, _) = SoftwareHsm::open(dir.path(), &right).unwrap();
        assert_eq!(
            again.unwrap_secret(&secret, b"user").unwrap().expose(),
            b"sigv4 secret"
        );
    }

    #[test]
    fn a_tampered_keystore_refuses_to_unseal() {
        let (dir, _hsm) = dev_hsm();
        let path = dir.path().join(keystore::KEYSTORE_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let marker = "\"sealed_root_key\": \"";
        let at = text.find(marker).unwrap() + marker.len() + 30;
        let flipped = if &text[at..=at] == "0" { "1" } else { "0" };
        let tampered = format!("{}{}{}", &text[..at], flipped, &text[at + 1..]);
        std::fs::write(&path, tampered).unwrap();
        assert!(matches!(
            SoftwareHsm::open(dir.path(), &UnsealWith::DevKeyFile),
            Err(HsmError::Tampered { .. })
        ));
        let status = SoftwareHsm::status(dir.path()).unwrap();
        assert_eq!(status.tamper_events.len(), 1);
        std::fs::write(&path, "{ not json").unwrap();
        assert!(matches!(
            SoftwareHsm::open(dir.path(), &UnsealWith::DevKeyFile),
            Err(HsmError::KeystoreCorrupt { .. })
        ));
    }

    #[test]
    fn zeroize_destroys_the_root_key_for_good() {
        let (dir, hsm) = dev_hsm();
        let _key = hsm.generate_key(KeyKind::Aes256, b"k").unwrap();
        officer::zeroize(dir.path(), None).unwrap();
        assert!(!dir.path().join(keystore::DEV_UNSEAL_KEY_FILE).exists());
        assert!(matches!(
            SoftwareHsm::open(dir.path(), &UnsealWith::DevKeyFile),
            Err(HsmError::Zeroized { .. })
        ));
    }

    fn passphrase(text: &str) -> SecretBytes {
        SecretBytes::copy_from(text.as_bytes())
    }

    fn as_user(text: &str) -> UnsealWith {
        UnsealWith::Passphrase(passphrase(text))
    }

    /// A keystore with a cheap-to-test limit of 3 failed unseals and separate roles.
    fn two_role_keystore() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        officer::init(dir.path(), &passphrase("officer"), &passphrase("user"), 3).unwrap();
        dir
    }

    #[test]
    fn wrong_passphrases_are_counted_and_the_limit_zeroizes() {
        let dir = two_role_keystore();
        for left in [2, 1] {
            match SoftwareHsm::open(dir.path(), &as_user("guess")) {
                Err(HsmError::UnsealFailed { attempts_left, .. }) => {
                    assert_eq!(attempts_left, left)
                }
                other => panic!("expected UnsealFailed, got {:?}", other.err()),
            }
        }
        // A success resets the count.
        SoftwareHsm::open(dir.path(), &as_user("user")).unwrap();
        assert_eq!(
            SoftwareHsm::status(dir.path())
                .unwrap()
                .failed_unseal_attempts,
            0
        );
        for _ in 0..2 {
            assert!(SoftwareHsm::open(dir.path(), &as_user("guess")).is_err());
        }
        assert!(matches!(
            SoftwareHsm::open(dir.path(), &as_user("guess")),
            Err(HsmError::Zeroized { .. })
        ));
        let status = SoftwareHsm::status(dir.path()).unwrap();
        assert_eq!(status.state, "zeroized");
        assert!(
            status
                .zeroized
                .unwrap()
                .reason
                .contains("3 failed unseal attempts")
        );
        let text = std::fs::read_to_string(dir.path().join(keystore::KEYSTORE_FILE)).unwrap();
        assert!(!text.contains("sealed_root_key"), "{text}");
        assert!(matches!(
            SoftwareHsm::open(dir.path(), &as_user("user")),
            Err(HsmError::Zeroized { .. })
        ));
    }

    #[test]
    fn the_officer_administers_and_the_user_only_unseals() {
        let dir = two_role_keystore();
        let (hsm, _) = SoftwareHsm::open(dir.path(), &as_user("user")).unwrap();
        let key = hsm.generate_key(KeyKind::Aes256, b"k").unwrap();
        let sealed = hsm.encrypt(&key, b"k", b"data", b"").unwrap();
        assert_eq!(SoftwareHsm::status(dir.path()).unwrap().officer, "separate");
        // The user's passphrase is not the officer's.
        assert!(officer::authenticate(dir.path(), &passphrase("user")).is_err());
        assert!(officer::zeroize(dir.path(), None).is_err());
        officer::change_passphrase(
            dir.path(),
            &passphrase("officer"),
            Role::User,
            &passphrase("new user"),
        )
        .unwrap();
        assert!(SoftwareHsm::open(dir.path(), &as_user("user")).is_err());
        let (reopened, _) = SoftwareHsm::open(dir.path(), &as_user("new user")).unwrap();
        assert_eq!(
            reopened.decrypt(&key, b"k", &sealed, b"").unwrap().expose(),
            b"data"
        );
        officer::zeroize(dir.path(), Some(&passphrase("officer"))).unwrap();
        assert_eq!(SoftwareHsm::status(dir.path()).unwrap().state, "zeroized");
    }

    #[test]
    fn a_tampered_passphrase_slot_is_reported_not_counted() {
        let dir = two_role_keystore();
        let path = dir.path().join(keystore::KEYSTORE_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let marker = "\"sealed_root_key\": \"";
        let at = text.find(marker).unwrap() + marker.len() + 30;
        let flipped = if &text[at..=at] == "0" { "1" } else { "0" };
        std::fs::write(
            &path,
            format!("{}{}{}", &text[..at], flipped, &text[at + 1..]),
        )
        .unwrap();
        assert!(matches!(
            SoftwareHsm::open(dir.path(), &as_user("user")),
            Err(HsmError::Tampered { .. })
        ));
        let status = SoftwareHsm::status(dir.path()).unwrap();
        assert_eq!(status.failed_unseal_attempts, 0);
        assert_eq!(status.tamper_events.len(), 1);
    }

    #[test]
    fn a_tampered_key_blob_is_recorded_once() {
        let (dir, hsm) = dev_hsm();
        let key = hsm.generate_key(KeyKind::Aes256, b"k").unwrap();
        let mut bytes = key.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = WrappedKey::from_bytes(bytes);
        for _ in 0..3 {
            assert!(hsm.encrypt(&tampered, b"k", b"x", b"").is_err());
        }
        let status = SoftwareHsm::status(dir.path()).unwrap();
        assert_eq!(status.tamper_events.len(), 1, "{:?}", status.tamper_events);
    }
}
