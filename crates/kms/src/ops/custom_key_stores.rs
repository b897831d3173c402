//! Custom key stores, as AWS KMS has them for CloudHSM: CreateCustomKeyStore,
//! DescribeCustomKeyStores, ConnectCustomKeyStore, DisconnectCustomKeyStore,
//! UpdateCustomKeyStore and DeleteCustomKeyStore.
//!
//! A store is a PKCS#11 token reached through the server's module; its label stands where AWS
//! has the CloudHSM cluster id, and `KeyStorePassword` is the token's user PIN, either given
//! (kept wrapped by the HSM) or as `file:/absolute/path` (read at every connection, so the PIN
//! need not be in atrest's metadata at all). Connecting is synchronous here, so a store moves
//! straight from DISCONNECTED to CONNECTED or FAILED; AWS's CONNECTING and DISCONNECTING never
//! show. A failed connection is reported as AWS reports it: ConnectCustomKeyStore succeeds
//! and the store's state says FAILED with a ConnectionErrorCode.

use std::path::Path;

use atrest_crypto::SecretBytes;
use atrest_hsm::pkcs11::{self, TokenKeys};
use atrest_hsm::{HsmError, WrappedKey};

use crate::api::{
    CreateCustomKeyStoreRequest, CustomKeyStoreEntry, CustomKeyStoreIdRequest,
    CustomKeyStoreIdResponse, DescribeCustomKeyStoresRequest, DescribeCustomKeyStoresResponse,
    SecretText, UpdateCustomKeyStoreRequest,
};
use crate::model::{ConnectionState, CustomKeyStoreRecord, StoredPin};
use crate::ops::keys::enum_error;
use crate::resolve::page_limit;
use crate::{Kms, KmsError, RequestContext};

const CLOUDHSM: &str = "AWS_CLOUDHSM";
const NAME_MAX: usize = 256;
/// PKCS#11 token labels are 32 bytes (`CK_TOKEN_INFO.label`).
const TOKEN_LABEL_MAX: usize = 32;
const PIN_MAX: usize = 255;
const TRUST_ANCHOR_MAX: usize = 5000;
const PIN_FILE_PREFIX: &str = "file:";
/// The largest PIN file read (a PKCS#11 PIN is at most 255 bytes here).
const PIN_FILE_MAX: u64 = 1024;

impl Kms {
    pub fn create_custom_key_store(
        &self,
        ctx: &RequestContext,
        request: CreateCustomKeyStoreRequest,
    ) -> Result<CustomKeyStoreIdResponse, KmsError> {
        self.authorize_account(ctx, "kms:CreateCustomKeyStore")?;
        validate_name("customKeyStoreName", &request.custom_key_store_name)?;
        match request.custom_key_store_type.as_deref() {
            None | Some(CLOUDHSM) => {}
            Some("EXTERNAL_KEY_STORE") => {
                return Err(KmsError::UnsupportedOperation(
                    "atrest's custom key stores are PKCS#11 tokens (AWS_CLOUDHSM); external key \
                     stores are not supported"
                        .into(),
                ));
            }
            Some(other) => {
                return Err(enum_error(
                    "customKeyStoreType",
                    other,
                    "[AWS_CLOUDHSM, EXTERNAL_KEY_STORE]",
                ));
            }
        }
        let token_label = request.cloud_hsm_cluster_id.ok_or_else(|| {
            KmsError::Validation("CloudHsmClusterId is required for an AWS_CLOUDHSM key store (atrest: the PKCS#11 token's label)".into())
        })?;
        let password = request.key_store_password.ok_or_else(|| {
            KmsError::Validation(
                "KeyStorePassword is required for an AWS_CLOUDHSM key store (atrest: the token's user PIN, or file:/path/to/pin)".into(),
            )
        })?;
        if let Some(certificate) = &request.trust_anchor_certificate
            && certificate.len() > TRUST_ANCHOR_MAX
        {
            return Err(KmsError::validation(
                "trustAnchorCertificate",
                "[CERTIFICATE]",
                "Member must have length less than or equal to 5000",
            ));
        }
        let _admin = self.key_stores.admin();
        let stores = self.store.custom_key_stores()?;
        if stores
            .iter()
            .any(|store| store.name == request.custom_key_store_name)
        {
            return Err(name_in_use(&request.custom_key_store_name));
        }
        self.check_token_free(&token_label, &stores, None)?;
        let id = format!("cks-{}", &hex::encode(self.hsm.random(9))[..17]);
        let record = CustomKeyStoreRecord {
            pin: self.stored_pin(&id, password)?,
            id,
            name: request.custom_key_store_name,
            token_label,
            trust_anchor_certificate: request.trust_anchor_certificate,
            created: self.clock.now(),
            connection: ConnectionState::Disconnected,
            connection_error: None,
        };
        self.store.create_custom_key_store(&record)?;
        tracing::info!(custom_key_store_id = %record.id, token = %record.token_label, "created custom key store");
        Ok(CustomKeyStoreIdResponse {
            custom_key_store_id: record.id,
        })
    }

    pub fn describe_custom_key_stores(
        &self,
        ctx: &RequestContext,
        request: DescribeCustomKeyStoresRequest,
    ) -> Result<DescribeCustomKeyStoresResponse, KmsError> {
        self.authorize_account(ctx, "kms:DescribeCustomKeyStores")?;
        let limit = page_limit(request.limit, 1000, 1000)?;
        let mut stores = self.store.custom_key_stores()?;
        let filtered =
            request.custom_key_store_id.is_some() || request.custom_key_store_name.is_some();
        stores.retain(|store| {
            request
                .custom_key_store_id
                .as_ref()
                .is_none_or(|id| *id == store.id)
                && request
                    .custom_key_store_name
                    .as_ref()
                    .is_none_or(|name| *name == store.name)
        });
        if filtered && stores.is_empty() {
            let named = request
                .custom_key_store_id
                .or(request.custom_key_store_name)
                .unwrap_or_default();
            return Err(not_found(&named));
        }
        if let Some(marker) = &request.marker {
            if !marker.starts_with("cks-") {
                return Err(KmsError::InvalidMarker(format!("Invalid marker: {marker}")));
            }
            stores.retain(|store| store.id.as_str() > marker.as_str());
        }
        let truncated = stores.len() > limit;
        stores.truncate(limit);
        let next_marker = truncated
            .then(|| stores.last().map(|store| store.id.clone()))
            .flatten();
        Ok(DescribeCustomKeyStoresResponse {
            custom_key_stores: stores.iter().map(entry).collect(),
            truncated,
            next_marker,
        })
    }

    pub fn connect_custom_key_store(
        &self,
        ctx: &RequestContext,
        request: CustomKeyStoreIdRequest,
    ) -> Result<crate::api::Empty, KmsError> {
        self.authorize_account(ctx, "kms:ConnectCustomKeyStore")?;
        let _admin = self.key_stores.admin();
        let mut record = self.custom_key_store_record(&request.custom_key_store_id)?;
        match record.connection {
            ConnectionState::Failed => {
                return Err(KmsError::CustomKeyStoreInvalidState(format!(
                    "Custom key store {} is FAILED ({}); disconnect it, then connect it again",
                    record.id,
                    record
                        .connection_error
                        .as_deref()
                        .unwrap_or("INTERNAL_ERROR")
                )));
            }
            ConnectionState::Connected if self.key_stores.is_connected(&record.id) => {}
            ConnectionState::Connected | ConnectionState::Disconnected => {
                self.connect(&mut record);
                self.store.replace_custom_key_store(&record)?;
            }
        }
        Ok(crate::api::Empty {})
    }

    pub fn disconnect_custom_key_store(
        &self,
        ctx: &RequestContext,
        request: CustomKeyStoreIdRequest,
    ) -> Result<crate::api::Empty, KmsError> {
        self.authorize_account(ctx, "kms:DisconnectCustomKeyStore")?;
        let _admin = self.key_stores.admin();
        let mut record = self.custom_key_store_record(&request.custom_key_store_id)?;
        if record.connection == ConnectionState::Disconnected {
            return Err(KmsError::CustomKeyStoreInvalidState(format!(
                "Custom key store {} is already DISCONNECTED",
                record.id
            )));
        }
        self.key_stores.remove(&record.id);
        record.connection = ConnectionState::Disconnected;
        record.connection_error = None;
        self.store.replace_custom_key_store(&record)?;
        tracing::info!(custom_key_store_id = %record.id, "disconnected custom key store");
        Ok(crate::api::Empty {})
    }

    pub fn update_custom_key_store(
        &self,
        ctx: &RequestContext,
        request: UpdateCustomKeyStoreRequest,
    ) -> Result<crate::api::Empty, KmsError> {
        self.authorize_account(ctx, "kms:UpdateCustomKeyStore")?;
        let _admin = self.key_stores.admin();
        let mut record = self.custom_key_store_record(&request.custom_key_store_id)?;
        let stores = self.store.custom_key_stores()?;
        if let Some(name) = request.new_custom_key_store_name {
            validate_name("newCustomKeyStoreName", &name)?;
            if stores
                .iter()
                .any(|store| store.name == name && store.id != record.id)
            {
                return Err(name_in_use(&name));
            }
            record.name = name;
        }
        let changes_connection =
            request.key_store_password.is_some() || request.cloud_hsm_cluster_id.is_some();
        if changes_connection && record.connection != ConnectionState::Disconnected {
            return Err(KmsError::CustomKeyStoreInvalidState(format!(
                "Custom key store {} must be DISCONNECTED to change its KeyStorePassword or \
                 CloudHsmClusterId (it is {})",
                record.id,
                record.connection.name()
            )));
        }
        if let Some(token_label) = request.cloud_hsm_cluster_id {
            self.check_token_free(&token_label, &stores, Some(&record.id))?;
            record.token_label = token_label;
        }
        if let Some(password) = request.key_store_password {
            record.pin = self.stored_pin(&record.id, password)?;
        }
        self.store.replace_custom_key_store(&record)?;
        Ok(crate::api::Empty {})
    }

    pub fn delete_custom_key_store(
        &self,
        ctx: &RequestContext,
        request: CustomKeyStoreIdRequest,
    ) -> Result<crate::api::Empty, KmsError> {
        self.authorize_account(ctx, "kms:DeleteCustomKeyStore")?;
        let _admin = self.key_stores.admin();
        let record = self.custom_key_store_record(&request.custom_key_store_id)?;
        if record.connection != ConnectionState::Disconnected {
            return Err(KmsError::CustomKeyStoreInvalidState(format!(
                "Custom key store {} must be DISCONNECTED before it is deleted (it is {})",
                record.id,
                record.connection.name()
            )));
        }
        let keys = self
            .all_keys()?
            .into_iter()
            .filter(|key| key.custom_key_store_id.as_deref() == Some(record.id.as_str()))
            .count();
        if keys > 0 {
            return Err(KmsError::CustomKeyStoreHasKeys(format!(
                "Custom key store {} still has {keys} KMS keys; delete them first \
                 (ScheduleKeyDeletion, then wait for the waiting period)",
                record.id
            )));
        }
        self.store.delete_custom_key_store(&record.id)?;
        tracing::info!(custom_key_store_id = %record.id, "deleted custom key store");
        Ok(crate::api::Empty {})
    }

    /// Connects again, at server start, every store that was left CONNECTED (AWS keeps a
    /// store connected until it is disconnected). Returns how many are connected now.
    pub fn reconnect_custom_key_stores(&self) -> Result<usize, KmsError> {
        let _admin = self.key_stores.admin();
        let mut connected = 0;
        for mut record in self.store.custom_key_stores()? {
            if record.connection != ConnectionState::Connected {
                continue;
            }
            self.connect(&mut record);
            if record.connection == ConnectionState::Connected {
                connected += 1;
            } else {
                self.store.replace_custom_key_store(&record)?;
            }
        }
        Ok(connected)
    }

    /// The connected token of a store, for CreateKey and GenerateRandom: the store must exist
    /// and be CONNECTED.
    pub(crate) fn connected_key_store(
        &self,
        id: &str,
    ) -> Result<(CustomKeyStoreRecord, std::sync::Arc<TokenKeys>), KmsError> {
        let record = self.custom_key_store_record(id)?;
        match self.key_stores.connection(id) {
            Some(keys) => Ok((record, keys)),
            None => Err(KmsError::CustomKeyStoreInvalidState(format!(
                "Custom key store {id} is not connected (it is {})",
                record.connection.name()
            ))),
        }
    }

    /// Destroys a deleted key's object on its store's token. As with AWS, a store that is not
    /// connected at that moment leaves the object orphaned on the token (logged), since the
    /// key itself is gone either way.
    pub(crate) fn destroy_token_key(&self, store_id: &str, key_id: &str) {
        let Some(keys) = self.key_stores.connection(store_id) else {
            tracing::warn!(custom_key_store_id = %store_id, %key_id, "custom key store not connected: the deleted key's object stays on the token (orphaned); destroy it there");
            return;
        };
        match keys.destroy_key(key_id) {
            Ok(true) => {
                tracing::info!(custom_key_store_id = %store_id, %key_id, "destroyed the key object on the token");
            }
            Ok(false) => {
                tracing::warn!(custom_key_store_id = %store_id, %key_id, "the deleted key's object was already gone from the token");
            }
            Err(error) => {
                tracing::error!(custom_key_store_id = %store_id, %key_id, %error, "could not destroy the deleted key's object on the token (orphaned)");
            }
        }
    }

    pub(crate) fn custom_key_store_record(
        &self,
        id: &str,
    ) -> Result<CustomKeyStoreRecord, KmsError> {
        self.store
            .custom_key_store(id)?
            .ok_or_else(|| not_found(id))
    }

    /// Logs in to the store's token; the outcome goes into the record.
    fn connect(&self, record: &mut CustomKeyStoreRecord) {
        match self.open_token(record) {
            Ok(keys) => {
                self.key_stores.insert(&record.id, keys);
                record.connection = ConnectionState::Connected;
                record.connection_error = None;
                tracing::info!(custom_key_store_id = %record.id, token = %record.token_label, "connected custom key store");
            }
            Err((code, error)) => {
                self.key_stores.remove(&record.id);
                record.connection = ConnectionState::Failed;
                record.connection_error = Some(code.into());
                tracing::error!(custom_key_store_id = %record.id, token = %record.token_label, code, %error, "custom key store failed to connect");
            }
        }
    }

    /// The token, logged in; on failure AWS's `ConnectionErrorCode` and the reason.
    fn open_token(
        &self,
        record: &CustomKeyStoreRecord,
    ) -> Result<TokenKeys, (&'static str, String)> {
        let module = self.key_stores.module().ok_or((
            "INTERNAL_ERROR",
            "the server was started without --pkcs11-module".to_owned(),
        ))?;
        let pin = self
            .read_pin(record)
            .map_err(|error| ("INVALID_CREDENTIALS", error))?;
        TokenKeys::connect(module, &record.token_label, &pin).map_err(|error| {
            let code = match &error {
                HsmError::TokenNotFound(_) => "CLUSTER_NOT_FOUND",
                HsmError::PinRejected(_) => "INVALID_CREDENTIALS",
                HsmError::PinLocked(_) => "USER_LOCKED_OUT",
                _ => "INTERNAL_ERROR",
            };
            (code, error.to_string())
        })
    }

    fn read_pin(&self, record: &CustomKeyStoreRecord) -> Result<SecretBytes, String> {
        match &record.pin {
            StoredPin::File(path) => {
                let dir = self.key_stores.pin_dir().ok_or_else(|| {
                    "PIN files are disabled: the server runs without --key-store-pin-dir".to_owned()
                })?;
                read_pin_file(dir, Path::new(path))
            }
            StoredPin::Wrapped(wrapped) => self
                .hsm
                .unwrap_secret(
                    &WrappedKey::from_bytes(wrapped.clone()),
                    &pin_label(&record.id),
                )
                .map_err(|error| format!("cannot unwrap the stored PIN: {error}")),
        }
    }

    fn stored_pin(&self, id: &str, password: SecretText) -> Result<StoredPin, KmsError> {
        let text = password.0;
        if let Some(path) = text.expose().strip_prefix(PIN_FILE_PREFIX.as_bytes()) {
            let dir = self.key_stores.pin_dir().ok_or_else(|| {
                KmsError::Validation(
                    "KeyStorePassword file: references are disabled on this server (the operator \
                     enables them for one directory with --key-store-pin-dir); give the PIN itself"
                        .into(),
                )
            })?;
            let path = std::str::from_utf8(path)
                .ok()
                .map(Path::new)
                .filter(|path| pin_path_allowed(dir, path))
                .ok_or_else(|| {
                    KmsError::Validation(format!(
                        "KeyStorePassword file: references must name a file directly in {} \
                         (file:{}/NAME)",
                        dir.display(),
                        dir.display()
                    ))
                })?;
            return Ok(StoredPin::File(path.display().to_string()));
        }
        if text.expose().is_empty() || text.expose().len() > PIN_MAX {
            return Err(KmsError::validation(
                "keyStorePassword",
                "[SENSITIVE]",
                "Member must have length less than or equal to 255 and greater than or equal to 1",
            ));
        }
        let wrapped = self
            .hsm
            .wrap_secret(&text, &pin_label(id))
            .map_err(|error| KmsError::internal("HSM", error))?;
        Ok(StoredPin::Wrapped(wrapped.as_bytes().to_vec()))
    }

    /// The token must be present and not already another store's (AWS: the cluster must
    /// exist and not be in use).
    fn check_token_free(
        &self,
        token_label: &str,
        stores: &[CustomKeyStoreRecord],
        except: Option<&str>,
    ) -> Result<(), KmsError> {
        if token_label.is_empty() || token_label.len() > TOKEN_LABEL_MAX {
            return Err(KmsError::validation(
                "cloudHsmClusterId",
                token_label,
                "Member must have length less than or equal to 32 and greater than or equal to 1",
            ));
        }
        if let Some(other) = stores
            .iter()
            .find(|store| store.token_label == token_label && Some(store.id.as_str()) != except)
        {
            return Err(KmsError::CloudHsmClusterInUse(format!(
                "The token {token_label:?} is already the custom key store {}",
                other.id
            )));
        }
        let module = self.key_stores.module().ok_or_else(|| {
            KmsError::UnsupportedOperation(
                "custom key stores need a PKCS#11 module: start atrest with --pkcs11-module PATH"
                    .into(),
            )
        })?;
        match pkcs11::token_present(module, token_label) {
            Ok(true) => Ok(()),
            Ok(false) => Err(KmsError::CloudHsmClusterNotFound(format!(
                "No PKCS#11 token labelled {token_label:?} is present in {}",
                module.display()
            ))),
            Err(error) => Err(KmsError::CloudHsmClusterInvalidConfiguration(format!(
                "The PKCS#11 module cannot be used: {error}"
            ))),
        }
    }
}

fn entry(record: &CustomKeyStoreRecord) -> CustomKeyStoreEntry {
    CustomKeyStoreEntry {
        custom_key_store_id: record.id.clone(),
        custom_key_store_name: record.name.clone(),
        custom_key_store_type: CLOUDHSM.into(),
        cloud_hsm_cluster_id: record.token_label.clone(),
        trust_anchor_certificate: record.trust_anchor_certificate.clone(),
        connection_state: record.connection.name().into(),
        connection_error_code: record.connection_error.clone(),
        creation_date: record.created,
    }
}

fn validate_name(field: &str, name: &str) -> Result<(), KmsError> {
    if name.is_empty() || name.chars().count() > NAME_MAX {
        return Err(KmsError::validation(
            field,
            name,
            "Member must have length less than or equal to 256 and greater than or equal to 1",
        ));
    }
    Ok(())
}

fn name_in_use(name: &str) -> KmsError {
    KmsError::CustomKeyStoreNameInUse(format!(
        "A custom key store named {name:?} already exists in this account"
    ))
}

fn not_found(id: &str) -> KmsError {
    KmsError::CustomKeyStoreNotFound(format!("Custom key store {id} does not exist"))
}

fn pin_label(id: &str) -> Vec<u8> {
    format!("cks:{id}").into_bytes()
}

/// Whether `path` names an entry directly inside `dir`, spelled plainly (absolute, no `..`).
fn pin_path_allowed(dir: &Path, path: &Path) -> bool {
    path.is_absolute()
        && path.parent() == Some(dir)
        && path
            .components()
            .all(|part| !matches!(part, std::path::Component::ParentDir))
}

/// Reads a PIN file, confined to `dir`: the resolved path (symlinks followed) must still lie
/// directly in the resolved `dir`, be a regular file and at most [`PIN_FILE_MAX`] bytes.
fn read_pin_file(dir: &Path, path: &Path) -> Result<SecretBytes, String> {
    use std::io::Read as _;
    let refuse = |why: &str| format!("cannot use the PIN file {}: {why}", path.display());
    let dir = dir
        .canonicalize()
        .map_err(|error| refuse(&format!("the PIN directory: {error}")))?;
    let resolved = path
        .canonicalize()
        .map_err(|error| refuse(&error.to_string()))?;
    if resolved.parent() != Some(dir.as_path()) {
        return Err(refuse("it resolves outside the PIN directory"));
    }
    let file = std::fs::File::open(&resolved).map_err(|error| refuse(&error.to_string()))?;
    let metadata = file
        .metadata()
        .map_err(|error| refuse(&error.to_string()))?;
    if !metadata.is_file() {
        return Err(refuse("not a regular file"));
    }
    if metadata.len() > PIN_FILE_MAX {
        return Err(refuse(&format!("larger than {PIN_FILE_MAX} bytes")));
    }
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    file.take(PIN_FILE_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| refuse(&error.to_string()))?;
    if bytes.len() as u64 > PIN_FILE_MAX {
        return Err(refuse(&format!("larger than {PIN_FILE_MAX} bytes")));
    }
    Ok(SecretBytes::copy_from(bytes.trim_ascii_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_files_are_confined_to_their_directory() {
        let root = std::env::temp_dir().join(format!("atrest-pins-{}", std::process::id()));
        let dir = root.join("pins");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "1234\n").unwrap();
        std::fs::write(root.join("outside"), "secret\n").unwrap();
        std::fs::write(dir.join("big"), vec![b'1'; 4096]).unwrap();
        std::os::unix::fs::symlink(root.join("outside"), dir.join("escape")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).unwrap();

        assert!(pin_path_allowed(&dir, &dir.join("token")));
        assert!(!pin_path_allowed(&dir, &root.join("outside")));
        assert!(!pin_path_allowed(&dir, &dir.join("../outside")));
        assert!(!pin_path_allowed(&dir, Path::new("token")));
        assert!(!pin_path_allowed(&dir, Path::new("/etc/shadow")));

        assert_eq!(
            read_pin_file(&dir, &dir.join("token")).unwrap().expose(),
            b"1234"
        );
        for refused in ["escape", "zero", "big", "missing"] {
            let error = read_pin_file(&dir, &dir.join(refused)).unwrap_err();
            assert!(
                error.contains("cannot use the PIN file"),
                "{refused}: {error}"
            );
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
