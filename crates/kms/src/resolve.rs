//! Turning a `KeyId` parameter (key id, key ARN, alias name or alias ARN) into a key record,
//! and the ARNs atrest hands out.

use std::sync::Arc;

use atrest_policy::Context;

use crate::authz::Facts;
use crate::model::{KeyRecord, KeyState};
use crate::store::KeyUpdate;
use crate::{Kms, KmsError, RequestContext};

/// Whether an operation accepts alias names for its `KeyId` (AWS lists this per operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aliases {
    Accepted,
    Refused,
}

impl Kms {
    pub(crate) fn key_arn(&self, key_id: &str) -> String {
        [self.arn_prefix.as_str(), "key/", key_id].concat()
    }

    pub(crate) fn alias_arn(&self, alias_name: &str) -> String {
        [self.arn_prefix.as_str(), alias_name].concat()
    }

    /// Resolves `key_ref` and authorizes `action` on the key, adding `kms:RequestAlias` when
    /// the caller named the key by an alias.
    pub(crate) fn resolve_authorized(
        &self,
        ctx: &RequestContext,
        key_ref: &str,
        aliases: Aliases,
        action: &str,
        facts: Facts<'_>,
    ) -> Result<Arc<KeyRecord>, KmsError> {
        let (record, alias) = self.resolve_record(key_ref, aliases)?;
        self.authorize(ctx, action, &record, alias.as_deref(), facts)?;
        Ok(record)
    }

    /// Resolves `key_ref` to its record and the alias it was named by, if any, without
    /// authorizing: for an operation that authorizes in its own way.
    pub(crate) fn resolve_record(
        &self,
        key_ref: &str,
        aliases: Aliases,
    ) -> Result<(Arc<KeyRecord>, Option<String>), KmsError> {
        let (key_id, alias) = self.resolve_id_and_alias(key_ref, aliases)?;
        let record = self.store.key(&key_id)?.ok_or_else(|| {
            KmsError::NotFound(format!("Key '{}' does not exist", self.key_arn(&key_id)))
        })?;
        Ok((record, alias))
    }

    /// Resolves and authorizes, then applies `update` to the key in one store transaction.
    pub(crate) fn update_authorized(
        &self,
        ctx: &RequestContext,
        key_ref: &str,
        action: &str,
        update: KeyUpdate<'_>,
    ) -> Result<KeyRecord, KmsError> {
        let record =
            self.resolve_authorized(ctx, key_ref, Aliases::Refused, action, &Context::new)?;
        self.store.update_key(&record.key_id, update)
    }

    /// Resolves a `KeyId` parameter to a key id without loading the key.
    pub(crate) fn resolve_id(&self, key_ref: &str, aliases: Aliases) -> Result<String, KmsError> {
        self.resolve_id_and_alias(key_ref, aliases)
            .map(|(key_id, _)| key_id)
    }

    /// The key id, and the alias name if the reference was an alias.
    fn resolve_id_and_alias(
        &self,
        key_ref: &str,
        aliases: Aliases,
    ) -> Result<(String, Option<String>), KmsError> {
        if key_ref.is_empty() || key_ref.len() > 2048 {
            return Err(KmsError::validation(
                "keyId",
                key_ref,
                "Member must have length between 1 and 2048",
            ));
        }
        let local = match key_ref.strip_prefix("arn:") {
            Some(_) => self.strip_arn(key_ref)?,
            None => key_ref,
        };
        if local.starts_with("alias/") {
            if aliases == Aliases::Refused {
                return Err(KmsError::NotFound(format!("Invalid keyId {key_ref}")));
            }
            return match self.store.alias(local)? {
                Some(alias) => Ok((alias.target_key_id, Some(local.to_owned()))),
                None => Err(KmsError::NotFound(format!(
                    "Alias {} is not found.",
                    self.alias_arn(local)
                ))),
            };
        }
        let key_id = local.strip_prefix("key/").unwrap_or(local);
        if uuid::Uuid::try_parse(key_id).is_err() {
            return Err(KmsError::NotFound(format!("Invalid keyId {key_ref}")));
        }
        Ok((key_id.to_ascii_lowercase(), None))
    }

    /// `arn:aws:kms:REGION:ACCOUNT:RESOURCE` → `RESOURCE`, if the ARN is ours.
    fn strip_arn<'a>(&self, arn: &'a str) -> Result<&'a str, KmsError> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        match parts.as_slice() {
            ["arn", "aws", "kms", region, account, resource] => {
                if *region != self.region || *account != self.account {
                    return Err(KmsError::NotFound(format!("Key '{arn}' does not exist")));
                }
                Ok(resource)
            }
            _ => Err(KmsError::NotFound(format!("Invalid arn {arn}"))),
        }
    }

    /// Refuses keys that cannot be used for cryptography in their current state.
    pub(crate) fn require_enabled(&self, record: &KeyRecord) -> Result<(), KmsError> {
        if matches!(record.state, KeyState::Enabled | KeyState::Disabled)
            && self.is_unavailable(record)
        {
            return Err(self.unavailable(record));
        }
        match record.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::Disabled(format!(
                "{} is disabled.",
                self.key_arn(&record.key_id)
            ))),
            KeyState::PendingDeletion => Err(self.pending_deletion(record)),
            KeyState::PendingImport => Err(self.pending_import(record)),
        }
    }

    /// Refuses state changes to a key that has no key material yet (or any more).
    pub(crate) fn require_not_pending_import(&self, record: &KeyRecord) -> Result<(), KmsError> {
        match record.state {
            KeyState::PendingImport => Err(self.pending_import(record)),
            _ => Ok(()),
        }
    }

    fn pending_import(&self, record: &KeyRecord) -> KmsError {
        KmsError::InvalidState(format!(
            "{} is pending import.",
            self.key_arn(&record.key_id)
        ))
    }

    /// Refuses changes to keys that are scheduled for deletion.
    pub(crate) fn require_not_pending_deletion(&self, record: &KeyRecord) -> Result<(), KmsError> {
        match record.state {
            KeyState::PendingDeletion => Err(self.pending_deletion(record)),
            _ => Ok(()),
        }
    }

    fn pending_deletion(&self, record: &KeyRecord) -> KmsError {
        KmsError::InvalidState(format!(
            "{} is pending deletion.",
            self.key_arn(&record.key_id)
        ))
    }
}

/// The 16 bytes of a key id, for the ciphertext blob header.
pub(crate) fn key_id_bytes(key_id: &str) -> Result<[u8; 16], KmsError> {
    uuid::Uuid::try_parse(key_id)
        .map(|id| *id.as_bytes())
        .map_err(|_| KmsError::Internal(format!("stored key id {key_id} is not a UUID")))
}

pub(crate) fn key_id_from_bytes(bytes: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*bytes).hyphenated().to_string()
}

/// The HSM label that binds a key version's wrapped material to that key and version.
pub(crate) fn material_label(key_id: &str, version: u32) -> Vec<u8> {
    use std::io::Write;
    // Sized up front: every symmetric request builds one, and `format!` grows its buffer twice.
    let mut label = Vec::with_capacity(key_id.len() + 16);
    label.extend_from_slice(b"kms:");
    label.extend_from_slice(key_id.as_bytes());
    // Writing a number into a Vec cannot fail.
    let _ = write!(label, ":v{version}");
    label
}

/// Validates `Limit` (AWS: 1..=max) and returns it, or `default` when absent.
pub(crate) fn page_limit(limit: Option<i64>, max: i64, default: usize) -> Result<usize, KmsError> {
    match limit {
        None => Ok(default),
        Some(value) if (1..=max).contains(&value) => Ok(usize::try_from(value).unwrap_or(default)),
        Some(value) => Err(KmsError::validation(
            "limit",
            value,
            &format!(
                "Member must have value less than or equal to {max} and greater than or equal to 1"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The label is bound into every wrapped key version on disk: its bytes are frozen.
    #[test]
    fn material_labels_keep_their_frozen_form() {
        assert_eq!(
            material_label("1234abcd-12ab-34cd-56ef-1234567890ab", 12),
            b"kms:1234abcd-12ab-34cd-56ef-1234567890ab:v12"
        );
    }
}
