//! The KMI management layer: an AWS-KMS-compatible key service over an [`atrest_hsm::Hsm`].
//!
//! [`Kms`] owns the rules (key states, usages, limits, AWS error types) and the metadata; key
//! material only ever passes through it wrapped, and every cryptographic operation happens
//! inside the HSM. The operations take and return the AWS wire shapes in [`api`], so the server
//! only decodes JSON and dispatches.

pub mod api;
mod authz;
mod cache;
mod clock;
mod error;
pub mod iam;
mod key_stores;
pub mod model;
mod ops;
mod principals;
pub mod record_seal;
mod resolve;
pub mod store;

use std::sync::Arc;

use atrest_hsm::Hsm;

pub use authz::RequestContext;
pub use cache::CachingStore;
pub use clock::Clock;
pub use error::KmsError;
pub use principals::{Caller, NewCredentials};
pub use record_seal::RecordSeal;
pub use store::{MetadataStore, RedbStore};

/// The key service. Cheap to share behind an `Arc`; every method is synchronous.
pub struct Kms {
    store: Arc<dyn MetadataStore>,
    hsm: Arc<dyn Hsm>,
    region: String,
    account: String,
    /// `arn:aws:kms:REGION:ACCOUNT:`, which every key and alias ARN starts with (formatted once,
    /// since requests build several ARNs).
    arn_prefix: String,
    clock: Clock,
    policies: authz::PolicyCache,
    credentials_generation: std::sync::atomic::AtomicU64,
    /// Serialises the first-use creation of service keys.
    service_keys: std::sync::Mutex<()>,
    /// Custom key stores that are connected, with their tokens.
    key_stores: key_stores::KeyStores,
    record_seal: Option<Arc<RecordSeal>>,
}

impl Kms {
    pub fn new(
        store: Arc<dyn MetadataStore>,
        hsm: Arc<dyn Hsm>,
        region: &str,
        account: &str,
        clock: Clock,
    ) -> Self {
        Self {
            store,
            hsm,
            region: region.to_owned(),
            account: account.to_owned(),
            arn_prefix: format!("arn:aws:kms:{region}:{account}:"),
            clock,
            policies: authz::PolicyCache::new(account),
            credentials_generation: std::sync::atomic::AtomicU64::new(0),
            service_keys: std::sync::Mutex::new(()),
            key_stores: key_stores::KeyStores::default(),
            record_seal: None,
        }
    }

    /// Lets custom key stores reach PKCS#11 tokens through `module` (the server's
    /// `--pkcs11-module`); without one, CreateCustomKeyStore is unsupported.
    pub fn with_pkcs11_module(mut self, module: Option<std::path::PathBuf>) -> Self {
        self.key_stores = key_stores::KeyStores::new(module);
        self
    }

    /// The seal of the metadata store's records, for the other services' tables.
    pub fn with_record_seal(mut self, seal: Option<Arc<RecordSeal>>) -> Self {
        self.record_seal = seal;
        self
    }

    pub fn record_seal(&self) -> Option<Arc<RecordSeal>> {
        self.record_seal.clone()
    }

    /// Lets `KeyStorePassword=file:PATH` name regular files in `dir` (the server's
    /// `--key-store-pin-dir`), and nothing else.
    pub fn with_key_store_pin_dir(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.key_stores.set_pin_dir(dir);
        self
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// Runs the work the server owes on a schedule: due automatic rotations, then deletion of
    /// keys whose waiting period has passed. Returns how many keys each step touched.
    pub fn run_due_work(&self) -> Result<(usize, usize), KmsError> {
        let now = self.clock.now();
        let rotated = self.rotate_due_keys(now)?;
        self.expire_imported_material(now)?;
        let deleted = self.delete_due_keys(now)?;
        Ok((rotated, deleted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        AliasRequest, CreateKeyRequest, EnableKeyRotationRequest, KeyIdRequest, PageRequest,
    };

    fn kms_with_clock(dir: &std::path::Path, offset_seconds: i64) -> Kms {
        let (hsm, _) =
            atrest_hsm::SoftwareHsm::open(&dir.join("hsm"), &atrest_hsm::UnsealWith::DevKeyFile)
                .unwrap();
        let store = RedbStore::open(&dir.join("meta.redb")).unwrap();
        Kms::new(
            Arc::new(store),
            Arc::new(hsm),
            "us-east-1",
            "111122223333",
            Clock::with_offset(offset_seconds),
        )
    }

    fn root(kms: &Kms) -> RequestContext {
        let caller = Caller {
            arn: kms.root_arn().into(),
            account: kms.account.as_str().into(),
            access_key_id: "AKIATEST".into(),
            user_id: None,
        };
        RequestContext::new(caller, None, false)
    }

    fn key_id(kms: &Kms) -> String {
        kms.create_key(&root(kms), CreateKeyRequest::default())
            .unwrap()
            .key_metadata
            .key_id
    }

    #[test]
    fn key_references_resolve_in_every_form_aws_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let kms = kms_with_clock(dir.path(), 0);
        let id = key_id(&kms);
        kms.create_alias(
            &root(&kms),
            AliasRequest {
                alias_name: "alias/a".into(),
                target_key_id: Some(id.clone()),
            },
        )
        .unwrap();
        let arn = format!("arn:aws:kms:us-east-1:111122223333:key/{id}");
        for reference in [
            id.as_str(),
            &id.to_uppercase(),
            &arn,
            "alias/a",
            "arn:aws:kms:us-east-1:111122223333:alias/a",
        ] {
            assert_eq!(
                kms.resolve_id(reference, resolve::Aliases::Accepted)
                    .unwrap(),
                id,
                "{reference}"
            );
        }
        assert!(matches!(
            kms.resolve_id("alias/a", resolve::Aliases::Refused),
            Err(KmsError::NotFound(_))
        ));
        let foreign = format!("arn:aws:kms:us-east-1:999999999999:key/{id}");
        assert!(matches!(
            kms.resolve_id(&foreign, resolve::Aliases::Accepted),
            Err(KmsError::NotFound(_))
        ));
        assert!(matches!(
            kms.resolve_id("", resolve::Aliases::Accepted),
            Err(KmsError::Validation(_))
        ));
        assert!(matches!(
            kms.resolve_id("not-a-uuid", resolve::Aliases::Accepted),
            Err(KmsError::NotFound(_))
        ));
    }

    #[test]
    fn rotation_runs_only_when_due_and_then_reschedules() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let kms = kms_with_clock(dir.path(), 0);
            let id = key_id(&kms);
            let request = EnableKeyRotationRequest {
                key_id: id.clone(),
                rotation_period_in_days: Some(90),
            };
            kms.enable_key_rotation(&root(&kms), request).unwrap();
            assert_eq!(kms.run_due_work().unwrap(), (0, 0));
            id
        };
        let later = kms_with_clock(dir.path(), 90 * 86_400 + 60);
        assert_eq!(later.run_due_work().unwrap(), (1, 0));
        assert_eq!(
            later.run_due_work().unwrap(),
            (0, 0),
            "the next rotation is a full period away"
        );
        let status = later
            .key_rotation_status(
                &root(&later),
                KeyIdRequest {
                    key_id: id.clone(),
                    grant_tokens: None,
                },
            )
            .unwrap();
        assert!(status.next_rotation_date.unwrap() >= later.clock.now() + 89 * 86_400);
        let rotations = later
            .list_key_rotations(
                &root(&later),
                PageRequest {
                    key_id: Some(id),
                    ..PageRequest::default()
                },
            )
            .unwrap();
        assert_eq!(rotations.rotations.len(), 1);
        assert_eq!(rotations.rotations[0].rotation_type, "AUTOMATIC");
    }

    #[test]
    fn page_limits_follow_aws_ranges() {
        assert_eq!(resolve::page_limit(None, 1000, 100).unwrap(), 100);
        assert_eq!(resolve::page_limit(Some(1000), 1000, 100).unwrap(), 1000);
        assert!(resolve::page_limit(Some(0), 1000, 100).is_err());
        assert!(resolve::page_limit(Some(1001), 1000, 100).is_err());
    }
}
