//! Key rotation: EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus,
//! RotateKeyOnDemand, ListKeyRotations, and the automatic rotation the server runs when due.
//!
//! A rotation adds a new key version generated in the HSM; earlier versions stay so that every
//! ciphertext made under them still decrypts, and new ciphertext uses the newest version.

use atrest_hsm::KeyKind;

use crate::api::{
    EnableKeyRotationRequest, KeyIdRequest, KeyIdResponse, KeyRotationStatusResponse,
    ListKeyRotationsResponse, PageRequest, RotationEntry,
};
use crate::model::{KeyRecord, KeySpec, KeyState, KeyVersion, Origin, RotationType};
use crate::resolve::{Aliases, material_label, page_limit};
use atrest_policy::Context;

use crate::{Kms, KmsError, RequestContext};

const SECONDS_PER_DAY: i64 = 86_400;
const DEFAULT_PERIOD_DAYS: u32 = 365;
/// AWS allows ten on-demand rotations per key.
const ON_DEMAND_LIMIT: usize = 10;

impl Kms {
    pub fn enable_key_rotation(
        &self,
        ctx: &RequestContext,
        request: EnableKeyRotationRequest,
    ) -> Result<(), KmsError> {
        let period = match request.rotation_period_in_days {
            None => DEFAULT_PERIOD_DAYS,
            Some(days) if (90..=2560).contains(&days) => {
                u32::try_from(days).unwrap_or(DEFAULT_PERIOD_DAYS)
            }
            Some(days) => {
                return Err(KmsError::validation(
                    "rotationPeriodInDays",
                    days,
                    "Member must have value less than or equal to 2560 and greater than or equal to 90",
                ));
            }
        };
        self.update_authorized(
            ctx,
            &request.key_id,
            "kms:EnableKeyRotation",
            &mut |record| {
                self.require_rotatable(record)?;
                self.require_enabled(record)?;
                let last = record
                    .current_version()
                    .map_or(record.created, |version| version.created);
                record.rotation_enabled = true;
                record.rotation_period_days = Some(period);
                record.next_rotation = Some(last + i64::from(period) * SECONDS_PER_DAY);
                Ok(())
            },
        )?;
        Ok(())
    }

    pub fn disable_key_rotation(
        &self,
        ctx: &RequestContext,
        request: KeyIdRequest,
    ) -> Result<(), KmsError> {
        self.update_authorized(
            ctx,
            &request.key_id,
            "kms:DisableKeyRotation",
            &mut |record| {
                self.require_rotatable(record)?;
                self.require_enabled(record)?;
                record.rotation_enabled = false;
                record.next_rotation = None;
                Ok(())
            },
        )?;
        Ok(())
    }

    pub fn key_rotation_status(
        &self,
        ctx: &RequestContext,
        request: KeyIdRequest,
    ) -> Result<KeyRotationStatusResponse, KmsError> {
        let action = "kms:GetKeyRotationStatus";
        let record = self.resolve_authorized(
            ctx,
            &request.key_id,
            Aliases::Refused,
            action,
            &Context::new,
        )?;
        self.require_rotatable(&record)?;
        let enabled = record.rotation_enabled;
        Ok(KeyRotationStatusResponse {
            key_rotation_enabled: enabled,
            key_id: self.key_arn(&record.key_id),
            rotation_period_in_days: if enabled {
                record.rotation_period_days
            } else {
                None
            },
            next_rotation_date: if enabled { record.next_rotation } else { None },
            on_demand_rotation_start_date: None,
        })
    }

    pub fn rotate_key_on_demand(
        &self,
        ctx: &RequestContext,
        request: KeyIdRequest,
    ) -> Result<KeyIdResponse, KmsError> {
        let action = "kms:RotateKeyOnDemand";
        let record = self.update_authorized(ctx, &request.key_id, action, &mut |record| {
            self.require_rotatable(record)?;
            self.require_enabled(record)?;
            let on_demand = record
                .versions
                .iter()
                .filter(|v| v.rotation_type == Some(RotationType::OnDemand))
                .count();
            if on_demand >= ON_DEMAND_LIMIT {
                return Err(KmsError::LimitExceeded(format!(
                    "{} has reached the maximum of {ON_DEMAND_LIMIT} on-demand rotations",
                    self.key_arn(&record.key_id)
                )));
            }
            self.add_version(record, RotationType::OnDemand)
        })?;
        tracing::info!(key_id = %record.key_id, versions = record.versions.len(), "rotated KMS key on demand");
        Ok(KeyIdResponse {
            key_id: self.key_arn(&record.key_id),
        })
    }

    pub fn list_key_rotations(
        &self,
        ctx: &RequestContext,
        request: PageRequest,
    ) -> Result<ListKeyRotationsResponse, KmsError> {
        let limit = page_limit(request.limit, 1000, 100)?;
        let key_ref = request
            .key_id
            .as_deref()
            .ok_or_else(|| KmsError::validation("keyId", "null", "Member must not be null"))?;
        let action = "kms:ListKeyRotations";
        let record =
            self.resolve_authorized(ctx, key_ref, Aliases::Refused, action, &Context::new)?;
        self.require_rotatable(&record)?;
        let start = match &request.marker {
            None => 0,
            Some(marker) => marker
                .parse::<usize>()
                .map_err(|_| KmsError::InvalidMarker(format!("Invalid marker: {marker}")))?,
        };
        let rotations: Vec<RotationEntry> = record
            .versions
            .iter()
            .filter_map(|version| {
                version.rotation_type.map(|kind| RotationEntry {
                    key_id: self.key_arn(&record.key_id),
                    rotation_date: version.created,
                    rotation_type: match kind {
                        RotationType::Automatic => "AUTOMATIC".into(),
                        RotationType::OnDemand => "ON_DEMAND".into(),
                    },
                })
            })
            .skip(start)
            .collect();
        let truncated = rotations.len() > limit;
        let next_marker = truncated.then(|| (start + limit).to_string());
        Ok(ListKeyRotationsResponse {
            rotations: rotations.into_iter().take(limit).collect(),
            truncated,
            next_marker,
        })
    }

    /// Rotates every enabled key whose rotation date has come.
    pub(crate) fn rotate_due_keys(&self, now: i64) -> Result<usize, KmsError> {
        let mut rotated = 0;
        for record in self.all_keys()? {
            let due = record.rotation_enabled
                && record.state == KeyState::Enabled
                && record.next_rotation.is_some_and(|date| date <= now);
            if !due {
                continue;
            }
            self.store.update_key(&record.key_id, &mut |record| {
                let still_due =
                    record.rotation_enabled && record.next_rotation.is_some_and(|date| date <= now);
                if !still_due {
                    return Ok(());
                }
                self.add_version(record, RotationType::Automatic)?;
                let period = record.rotation_period_days.unwrap_or(DEFAULT_PERIOD_DAYS);
                record.next_rotation = Some(now + i64::from(period) * SECONDS_PER_DAY);
                Ok(())
            })?;
            tracing::info!(key_id = %record.key_id, "rotated KMS key automatically");
            rotated += 1;
        }
        Ok(rotated)
    }

    fn add_version(
        &self,
        record: &mut KeyRecord,
        rotation_type: RotationType,
    ) -> Result<(), KmsError> {
        let number = record
            .versions
            .last()
            .map_or(1, |version| version.number + 1);
        let wrapped = self
            .hsm
            .generate_key(KeyKind::Aes256, &material_label(&record.key_id, number))
            .map_err(|error| KmsError::internal("HSM key generation", error))?;
        record.versions.push(KeyVersion {
            number,
            wrapped: wrapped.as_bytes().to_vec(),
            created: self.clock.now(),
            rotation_type: Some(rotation_type),
        });
        Ok(())
    }

    /// Only symmetric encryption keys with KMS-generated material rotate (AWS rule).
    fn require_rotatable(&self, record: &KeyRecord) -> Result<(), KmsError> {
        self.require_not_pending_deletion(record)?;
        if record.origin == Origin::External {
            return Err(KmsError::UnsupportedOperation(format!(
                "{} has imported key material; atrest does not rotate imported key material",
                self.key_arn(&record.key_id)
            )));
        }
        if record.custom_key_store_id.is_some() {
            return Err(KmsError::UnsupportedOperation(format!(
                "{} is in a custom key store; keys in custom key stores do not rotate",
                self.key_arn(&record.key_id)
            )));
        }
        if record.key_spec != KeySpec::SYMMETRIC_DEFAULT {
            return Err(KmsError::UnsupportedOperation(format!(
                "{} is not a symmetric encryption key and does not support rotation",
                self.key_arn(&record.key_id)
            )));
        }
        Ok(())
    }
}
