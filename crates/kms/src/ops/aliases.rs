//! Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases.

use crate::api::{AliasListEntry, AliasRequest, ListAliasesResponse, PageRequest};
use crate::model::{AliasRecord, KeyRecord};
use crate::resolve::{Aliases, page_limit};
use atrest_policy::Context;

use std::sync::Arc;

use crate::{Kms, KmsError, RequestContext};

const RESERVED_PREFIX: &str = "alias/aws/";

impl Kms {
    pub fn create_alias(
        &self,
        ctx: &RequestContext,
        request: AliasRequest,
    ) -> Result<(), KmsError> {
        validate_alias_name(&request.alias_name)?;
        let target = self.alias_target(ctx, request.target_key_id.as_deref(), "kms:CreateAlias")?;
        let now = self.clock.now();
        let record = AliasRecord {
            target_key_id: target.key_id.clone(),
            created: now,
            updated: now,
        };
        self.store
            .create_alias(&request.alias_name, &record)
            .map_err(|error| match error {
                KmsError::AlreadyExists(_) => KmsError::AlreadyExists(format!(
                    "An alias with the name {} already exists",
                    self.alias_arn(&request.alias_name)
                )),
                other => other,
            })
    }

    /// The new target must have the same key type and usage as the current one (AWS rule).
    pub fn update_alias(
        &self,
        ctx: &RequestContext,
        request: AliasRequest,
    ) -> Result<(), KmsError> {
        validate_alias_name(&request.alias_name)?;
        let existing = self.existing_alias(&request.alias_name)?;
        let target = self.alias_target(ctx, request.target_key_id.as_deref(), "kms:UpdateAlias")?;
        if let Some(current) = self.store.key(&existing.target_key_id)? {
            self.authorize(ctx, "kms:UpdateAlias", &current, None, &Context::new)?;
            let same_type = current.key_spec.is_hmac() == target.key_spec.is_hmac()
                && current.key_usage == target.key_usage;
            if !same_type {
                return Err(KmsError::Validation(format!(
                    "Alias {} cannot be changed to a key of a different type or key usage",
                    request.alias_name
                )));
            }
        }
        let record = AliasRecord {
            target_key_id: target.key_id.clone(),
            created: existing.created,
            updated: self.clock.now(),
        };
        self.store.replace_alias(&request.alias_name, &record)
    }

    pub fn delete_alias(
        &self,
        ctx: &RequestContext,
        request: AliasRequest,
    ) -> Result<(), KmsError> {
        validate_alias_name(&request.alias_name)?;
        let existing = self.existing_alias(&request.alias_name)?;
        if let Some(target) = self.store.key(&existing.target_key_id)? {
            self.authorize(ctx, "kms:DeleteAlias", &target, None, &Context::new)?;
        }
        if self.store.delete_alias(&request.alias_name)? {
            Ok(())
        } else {
            Err(self.alias_not_found(&request.alias_name))
        }
    }

    pub fn list_aliases(
        &self,
        ctx: &RequestContext,
        request: PageRequest,
    ) -> Result<ListAliasesResponse, KmsError> {
        self.authorize_account(ctx, "kms:ListAliases")?;
        let limit = page_limit(request.limit, 100, 50)?;
        let filter = match request.key_id.as_deref() {
            Some(key_ref) => Some(self.resolve_id(key_ref, Aliases::Refused)?),
            None => None,
        };
        let mut aliases: Vec<(String, AliasRecord)> = self
            .store
            .aliases()?
            .into_iter()
            .filter(|(name, alias)| {
                name.starts_with("alias/")
                    && filter
                        .as_ref()
                        .is_none_or(|key_id| &alias.target_key_id == key_id)
            })
            .collect();
        if let Some(marker) = &request.marker {
            if !marker.starts_with("alias/") {
                return Err(KmsError::InvalidMarker(format!("Invalid marker: {marker}")));
            }
            aliases.retain(|(name, _)| name.as_str() > marker.as_str());
        }
        let truncated = aliases.len() > limit;
        aliases.truncate(limit);
        let next_marker = truncated
            .then(|| aliases.last().map(|(name, _)| name.clone()))
            .flatten();
        let aliases = aliases
            .into_iter()
            .map(|(name, alias)| AliasListEntry {
                alias_arn: self.alias_arn(&name),
                alias_name: name,
                target_key_id: alias.target_key_id,
                creation_date: alias.created,
                last_updated_date: alias.updated,
            })
            .collect();
        Ok(ListAliasesResponse {
            aliases,
            truncated,
            next_marker,
        })
    }

    fn alias_target(
        &self,
        ctx: &RequestContext,
        target: Option<&str>,
        action: &str,
    ) -> Result<Arc<KeyRecord>, KmsError> {
        let target = target.ok_or_else(|| {
            KmsError::validation("targetKeyId", "null", "Member must not be null")
        })?;
        let record =
            self.resolve_authorized(ctx, target, Aliases::Refused, action, &Context::new)?;
        self.require_not_pending_deletion(&record)?;
        Ok(record)
    }

    fn existing_alias(&self, name: &str) -> Result<AliasRecord, KmsError> {
        self.store
            .alias(name)?
            .ok_or_else(|| self.alias_not_found(name))
    }

    fn alias_not_found(&self, name: &str) -> KmsError {
        KmsError::NotFound(format!("Alias {} is not found.", self.alias_arn(name)))
    }
}

/// AWS: 1–256 characters of `[a-zA-Z0-9:/_-]`, starting `alias/`; `alias/aws/` is reserved.
fn validate_alias_name(name: &str) -> Result<(), KmsError> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '_' | '-'));
    if name.is_empty() || name.len() > 256 || !valid_chars {
        return Err(KmsError::validation(
            "aliasName",
            name,
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$",
        ));
    }
    if !name.starts_with("alias/") || name.len() == "alias/".len() {
        return Err(KmsError::InvalidAliasName(format!(
            "Alias must start with the prefix \"alias/\": {name}"
        )));
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(KmsError::InvalidAliasName(format!(
            "Alias {name} is reserved: the prefix alias/aws/ is reserved for AWS managed keys"
        )));
    }
    Ok(())
}
