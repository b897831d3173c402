//! Key lifecycle: CreateKey, DescribeKey, ListKeys, UpdateKeyDescription, EnableKey,
//! DisableKey, ScheduleKeyDeletion, CancelKeyDeletion, and the deletion that follows the window.

use std::collections::BTreeMap;

use atrest_hsm::WrappedKey;

use crate::api::{
    CreateKeyRequest, KeyIdRequest, KeyListEntry, KeyMetadata, KeyMetadataResponse,
    ListKeysResponse, PageRequest, ScheduleKeyDeletionRequest, ScheduleKeyDeletionResponse,
    UpdateKeyDescriptionRequest,
};
use crate::model::{KeyManager, KeyRecord, KeySpec, KeyState, KeyUsage, KeyVersion, Origin};
use crate::resolve::{Aliases, material_label, page_limit};
use atrest_policy::Context;

use crate::{Kms, KmsError, RequestContext};

const DESCRIPTION_MAX: usize = 8192;
const SECONDS_PER_DAY: i64 = 86_400;

impl Kms {
    pub fn create_key(
        &self,
        ctx: &RequestContext,
        request: CreateKeyRequest,
    ) -> Result<KeyMetadataResponse, KmsError> {
        self.authorize_account(ctx, "kms:CreateKey")?;
        let (spec, usage) = key_spec_and_usage(&request)?;
        let Some(kind) = spec.key_kind() else {
            return Err(KmsError::UnsupportedOperation(format!(
                "KeySpec {} is not supported by atrest",
                spec.name()
            )));
        };
        if usage == KeyUsage::KeyAgreement {
            return Err(KmsError::UnsupportedOperation(
                "KEY_AGREEMENT keys are not supported by atrest".into(),
            ));
        }
        let origin = match (request.origin.as_deref(), &request.custom_key_store_id) {
            (Some("AWS_CLOUDHSM"), Some(_)) => Origin::AwsCloudhsm,
            (Some("AWS_CLOUDHSM"), None) => {
                return Err(KmsError::Validation(
                    "Origin AWS_CLOUDHSM needs a CustomKeyStoreId".into(),
                ));
            }
            // AWS: a key in a CloudHSM key store is created with Origin AWS_CLOUDHSM.
            (None | Some("AWS_KMS" | "EXTERNAL"), Some(_)) => {
                return Err(KmsError::Validation(
                    "To create a key in a custom key store, set Origin to AWS_CLOUDHSM".into(),
                ));
            }
            (None | Some("AWS_KMS"), None) => Origin::AwsKms,
            (Some("EXTERNAL"), None) => Origin::External,
            (Some(origin @ "EXTERNAL_KEY_STORE"), _) => {
                return Err(KmsError::UnsupportedOperation(format!(
                    "Origin {origin} is not supported"
                )));
            }
            (Some(origin), _) => {
                return Err(enum_error(
                    "origin",
                    origin,
                    "[AWS_KMS, EXTERNAL, AWS_CLOUDHSM, EXTERNAL_KEY_STORE]",
                ));
            }
        };
        if request.multi_region == Some(true) {
            return Err(KmsError::UnsupportedOperation(
                "Multi-Region keys are not supported".into(),
            ));
        }
        if origin == Origin::AwsCloudhsm && spec != KeySpec::SYMMETRIC_DEFAULT {
            return Err(KmsError::UnsupportedOperation(format!(
                "KeySpec {}: keys in a custom key store are symmetric encryption keys \
                 (SYMMETRIC_DEFAULT)",
                spec.name()
            )));
        }
        let key_store = match &request.custom_key_store_id {
            Some(id) => Some(self.connected_key_store(id)?),
            None => None,
        };
        let description = request.description.unwrap_or_default();
        validate_description(&description)?;
        let tags =
            crate::ops::tags::validated_tags(request.tags.unwrap_or_default(), &BTreeMap::new())?;

        let key_id = new_key_id(&self.hsm.random(16));
        let now = self.clock.now();
        // An EXTERNAL key starts without material, waiting for ImportKeyMaterial.
        let versions = match (origin, &key_store) {
            (Origin::External, _) => Vec::new(),
            // Generated on the token, labelled with the key id; the record holds no material.
            (Origin::AwsCloudhsm, Some((store, keys))) => {
                keys.generate_key(&key_id).map_err(|error| {
                    KmsError::CloudHsmClusterInvalidConfiguration(format!(
                        "The key could not be generated on token {:?} of custom key store {}: {error}",
                        store.token_label, store.id
                    ))
                })?;
                vec![KeyVersion {
                    number: 1,
                    wrapped: Vec::new(),
                    created: now,
                    rotation_type: None,
                }]
            }
            _ => {
                let wrapped = self
                    .hsm
                    .generate_key(kind, &material_label(&key_id, 1))
                    .map_err(|error| KmsError::internal("HSM key generation", error))?;
                vec![KeyVersion {
                    number: 1,
                    wrapped: wrapped.as_bytes().to_vec(),
                    created: now,
                    rotation_type: None,
                }]
            }
        };
        let state = match origin {
            Origin::External => KeyState::PendingImport,
            Origin::AwsKms | Origin::AwsCloudhsm => KeyState::Enabled,
        };
        let record = KeyRecord {
            key_id,
            created: now,
            description,
            key_spec: spec,
            key_usage: usage,
            state,
            deletion_date: None,
            pending_window_days: None,
            versions,
            rotation_enabled: false,
            rotation_period_days: None,
            next_rotation: None,
            on_demand_rotation_started: None,
            tags,
            principal_ids: match &request.policy {
                Some(text) => self.resolve_principal_ids(&*self.parsed_policy(text, true)?)?,
                None => BTreeMap::new(),
            },
            policy: request.policy,
            grants: Vec::new(),
            manager: KeyManager::Customer,
            origin,
            import_parameters: Vec::new(),
            imported: None,
            material_check: None,
            custom_key_store_id: key_store.map(|(store, _)| store.id),
            parsed_policy: Default::default(),
        };
        if let Some(text) = &record.policy {
            let policy = self.parsed_policy(text, true)?;
            if request.bypass_policy_lockout_safety_check != Some(true) {
                self.check_lockout(ctx, &record, &policy)?;
            }
        }
        self.store.insert_key(&record)?;
        ctx.touched(&self.key_arn(&record.key_id));
        tracing::info!(key_id = %record.key_id, key_spec = %spec.name(), "created KMS key");
        Ok(KeyMetadataResponse {
            key_metadata: self.metadata(&record),
        })
    }

    pub fn describe_key(
        &self,
        ctx: &RequestContext,
        request: KeyIdRequest,
    ) -> Result<KeyMetadataResponse, KmsError> {
        let action = "kms:DescribeKey";
        let record = self.resolve_authorized(
            ctx,
            &request.key_id,
            Aliases::Accepted,
            action,
            &Context::new,
        )?;
        Ok(KeyMetadataResponse {
            key_metadata: self.metadata(&record),
        })
    }

    pub fn list_keys(
        &self,
        ctx: &RequestContext,
        request: PageRequest,
    ) -> Result<ListKeysResponse, KmsError> {
        self.authorize_account(ctx, "kms:ListKeys")?;
        let limit = page_limit(request.limit, 1000, 100)?;
        if let Some(marker) = &request.marker
            && uuid::Uuid::try_parse(marker).is_err()
        {
            return Err(KmsError::InvalidMarker(format!("Invalid marker: {marker}")));
        }
        let mut records = self
            .store
            .keys_after(request.marker.as_deref(), limit + 1)?;
        let truncated = records.len() > limit;
        records.truncate(limit);
        let next_marker = truncated
            .then(|| records.last().map(|r| r.key_id.clone()))
            .flatten();
        // A page may come out one short: the marker still points past the hidden key.
        records.retain(|record| record.manager != KeyManager::Owned);
        let keys = records
            .iter()
            .map(|record| KeyListEntry {
                key_id: record.key_id.clone(),
                key_arn: self.key_arn(&record.key_id),
            })
            .collect();
        Ok(ListKeysResponse {
            keys,
            truncated,
            next_marker,
        })
    }

    pub fn update_key_description(
        &self,
        ctx: &RequestContext,
        request: UpdateKeyDescriptionRequest,
    ) -> Result<(), KmsError> {
        validate_description(&request.description)?;
        let action = "kms:UpdateKeyDescription";
        self.update_authorized(ctx, &request.key_id, action, &mut |record| {
            self.require_not_pending_deletion(record)?;
            record.description = request.description.clone();
            Ok(())
        })?;
        Ok(())
    }

    pub fn enable_key(&self, ctx: &RequestContext, request: KeyIdRequest) -> Result<(), KmsError> {
        self.set_enabled(ctx, &request.key_id, true)
    }

    pub fn disable_key(&self, ctx: &RequestContext, request: KeyIdRequest) -> Result<(), KmsError> {
        self.set_enabled(ctx, &request.key_id, false)
    }

    pub fn schedule_key_deletion(
        &self,
        ctx: &RequestContext,
        request: ScheduleKeyDeletionRequest,
    ) -> Result<ScheduleKeyDeletionResponse, KmsError> {
        let days = request.pending_window_in_days.unwrap_or(30);
        if !(7..=30).contains(&days) {
            return Err(KmsError::validation(
                "pendingWindowInDays",
                days,
                "Member must have value greater than or equal to 7 and less than or equal to 30",
            ));
        }
        let days = u32::try_from(days).unwrap_or(30);
        let deletion_date = self.clock.now() + i64::from(days) * SECONDS_PER_DAY;
        let action = "kms:ScheduleKeyDeletion";
        let record = self.update_authorized(ctx, &request.key_id, action, &mut |record| {
            self.require_not_pending_deletion(record)?;
            record.state = KeyState::PendingDeletion;
            record.deletion_date = Some(deletion_date);
            record.pending_window_days = Some(days);
            Ok(())
        })?;
        tracing::info!(key_id = %record.key_id, deletion_date, "scheduled KMS key deletion");
        Ok(ScheduleKeyDeletionResponse {
            key_id: self.key_arn(&record.key_id),
            deletion_date,
            key_state: "PendingDeletion".into(),
            pending_window_in_days: days,
        })
    }

    /// AWS leaves a key whose deletion was cancelled in the Disabled state.
    pub fn cancel_key_deletion(
        &self,
        ctx: &RequestContext,
        request: KeyIdRequest,
    ) -> Result<crate::api::KeyIdResponse, KmsError> {
        let action = "kms:CancelKeyDeletion";
        let record = self.update_authorized(ctx, &request.key_id, action, &mut |record| {
            if record.state != KeyState::PendingDeletion {
                return Err(KmsError::InvalidState(format!(
                    "{} is not pending deletion.",
                    self.key_arn(&record.key_id)
                )));
            }
            // AWS: Disabled, or PendingImport for an EXTERNAL key whose material is gone.
            record.state = if record.versions.is_empty() {
                KeyState::PendingImport
            } else {
                KeyState::Disabled
            };
            record.deletion_date = None;
            record.pending_window_days = None;
            Ok(())
        })?;
        Ok(crate::api::KeyIdResponse {
            key_id: self.key_arn(&record.key_id),
        })
    }

    /// Destroys every key whose deletion date has passed: its record, its wrapped material and
    /// its aliases go in one transaction, and the HSM drops any loaded copy.
    pub(crate) fn delete_due_keys(&self, now: i64) -> Result<usize, KmsError> {
        let mut deleted = 0;
        for record in self.all_keys()? {
            let due = record.state == KeyState::PendingDeletion
                && record.deletion_date.is_some_and(|date| date <= now);
            if !due {
                continue;
            }
            self.store.delete_key(&record.key_id)?;
            if let Some(store_id) = &record.custom_key_store_id {
                self.destroy_token_key(store_id, &record.key_id);
            }
            for version in &record.versions {
                let wrapped = WrappedKey::from_bytes(version.wrapped.clone());
                self.hsm
                    .forget(&wrapped, &material_label(&record.key_id, version.number));
            }
            tracing::info!(key_id = %record.key_id, "deleted KMS key and destroyed its key material");
            deleted += 1;
        }
        Ok(deleted)
    }

    pub(crate) fn all_keys(&self) -> Result<Vec<KeyRecord>, KmsError> {
        let mut all = Vec::new();
        loop {
            let after = all.last().map(|record: &KeyRecord| record.key_id.clone());
            let page = self.store.keys_after(after.as_deref(), 500)?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }

    fn set_enabled(
        &self,
        ctx: &RequestContext,
        key_ref: &str,
        enabled: bool,
    ) -> Result<(), KmsError> {
        let action = if enabled {
            "kms:EnableKey"
        } else {
            "kms:DisableKey"
        };
        self.update_authorized(ctx, key_ref, action, &mut |record| {
            self.require_not_pending_deletion(record)?;
            self.require_not_pending_import(record)?;
            record.state = if enabled {
                KeyState::Enabled
            } else {
                KeyState::Disabled
            };
            Ok(())
        })?;
        Ok(())
    }

    pub(crate) fn metadata(&self, record: &KeyRecord) -> KeyMetadata {
        let spec = record.key_spec.name();
        let names = |list: &[&str]| {
            Some(
                list.iter()
                    .map(|name| (*name).to_owned())
                    .collect::<Vec<_>>(),
            )
        };
        let spec_of = record.key_spec;
        let (encryption_algorithms, signing_algorithms, mac_algorithms) = match record.key_usage {
            KeyUsage::EncryptDecrypt => (names(spec_of.encryption_algorithms()), None, None),
            KeyUsage::SignVerify => (None, names(spec_of.signing_algorithms()), None),
            KeyUsage::GenerateVerifyMac => (
                None,
                None,
                spec_of.mac_algorithm().map(|alg| vec![alg.to_owned()]),
            ),
            KeyUsage::KeyAgreement => (None, None, None),
        };
        let unavailable = matches!(record.state, KeyState::Enabled | KeyState::Disabled)
            && self.is_unavailable(record);
        let token_label = record.custom_key_store_id.as_ref().and_then(|id| {
            self.store
                .custom_key_store(id)
                .ok()
                .flatten()
                .map(|store| store.token_label)
        });
        KeyMetadata {
            aws_account_id: self.account.clone(),
            key_id: record.key_id.clone(),
            arn: self.key_arn(&record.key_id),
            creation_date: record.created,
            enabled: record.state == KeyState::Enabled && !unavailable,
            description: record.description.clone(),
            key_usage: record.key_usage.name().to_owned(),
            key_state: if unavailable {
                "Unavailable"
            } else {
                record.state.name()
            }
            .to_owned(),
            deletion_date: record.deletion_date,
            pending_deletion_window_in_days: None,
            origin: record.origin.name().into(),
            expiration_model: record
                .imported
                .as_ref()
                .map(|imported| imported.expiration_model.clone()),
            valid_to: record
                .imported
                .as_ref()
                .and_then(|imported| imported.valid_to),
            key_manager: match record.manager {
                KeyManager::Customer => "CUSTOMER",
                KeyManager::Aws | KeyManager::Owned => "AWS",
            }
            .into(),
            customer_master_key_spec: spec.clone(),
            key_spec: spec,
            encryption_algorithms,
            signing_algorithms,
            mac_algorithms,
            multi_region: false,
            custom_key_store_id: record.custom_key_store_id.clone(),
            cloud_hsm_cluster_id: token_label,
        }
    }
}

fn key_spec_and_usage(request: &CreateKeyRequest) -> Result<(KeySpec, KeyUsage), KmsError> {
    if request.key_spec.is_some() && request.customer_master_key_spec.is_some() {
        return Err(KmsError::Validation(
            "You cannot specify KeySpec and CustomerMasterKeySpec in the same request".into(),
        ));
    }
    let spec_text = request
        .key_spec
        .as_deref()
        .or(request.customer_master_key_spec.as_deref());
    let spec = match spec_text {
        None => KeySpec::SYMMETRIC_DEFAULT,
        Some(text) => KeySpec::parse(text).ok_or_else(|| {
            enum_error(
                "keySpec",
                text,
                "[RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521, \
                 ECC_SECG_P256K1, SYMMETRIC_DEFAULT, HMAC_224, HMAC_256, HMAC_384, HMAC_512, SM2]",
            )
        })?,
    };
    let usage = match request.key_usage.as_deref() {
        None => match spec {
            KeySpec::SYMMETRIC_DEFAULT => KeyUsage::EncryptDecrypt,
            _ if spec.is_hmac() => {
                return Err(KmsError::Validation(format!(
                    "You must specify a KeyUsage value for {} keys. Valid values: GENERATE_VERIFY_MAC",
                    spec.name()
                )));
            }
            _ => {
                return Err(KmsError::Validation(format!(
                    "You must specify a KeyUsage value for {} keys.",
                    spec.name()
                )));
            }
        },
        Some(text) => KeyUsage::parse(text).ok_or_else(|| {
            enum_error(
                "keyUsage",
                text,
                "[SIGN_VERIFY, ENCRYPT_DECRYPT, GENERATE_VERIFY_MAC, KEY_AGREEMENT]",
            )
        })?,
    };
    let compatible = match spec {
        KeySpec::SYMMETRIC_DEFAULT => usage == KeyUsage::EncryptDecrypt,
        _ if spec.is_hmac() => usage == KeyUsage::GenerateVerifyMac,
        _ if spec.is_rsa() => matches!(usage, KeyUsage::EncryptDecrypt | KeyUsage::SignVerify),
        _ if spec.is_ecc() => matches!(usage, KeyUsage::SignVerify | KeyUsage::KeyAgreement),
        _ => usage != KeyUsage::GenerateVerifyMac,
    };
    if !compatible {
        return Err(KmsError::Validation(format!(
            "KeyUsage {} is not compatible with KeySpec {}",
            usage.name(),
            spec.name()
        )));
    }
    Ok((spec, usage))
}

fn validate_description(description: &str) -> Result<(), KmsError> {
    if description.chars().count() > DESCRIPTION_MAX {
        return Err(KmsError::validation(
            "description",
            "<description>",
            "Member must have length less than or equal to 8192",
        ));
    }
    Ok(())
}

pub(crate) fn enum_error(field: &str, value: &str, allowed: &str) -> KmsError {
    KmsError::validation(
        field,
        value,
        &format!("Member must satisfy enum value set: {allowed}"),
    )
}

/// A random (version 4) UUID from HSM randomness, as AWS key ids are.
fn new_key_id(random: &[u8]) -> String {
    let mut bytes = [0u8; 16];
    let len = random.len().min(16);
    bytes[..len].copy_from_slice(&random[..len]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}
