//! Grants: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant.
//!
//! A grant lets its grantee use the key for the listed operations, within its encryption-context
//! constraints, without a policy change. Grants here take effect at once (there is no eventual
//! consistency to bridge), so a grant token is usable in the very next request; tokens are
//! accepted wherever AWS accepts them and identify the grant for RetireGrant.

use atrest_policy::Context;

use crate::api::EncryptionContext;
use crate::api::{
    CreateGrantRequest, CreateGrantResponse, GrantListEntry, GrantRequest, ListGrantsResponse,
};
use crate::authz::GrantPermits;
use crate::model::{GrantRecord, KeyRecord};
use crate::ops::keys::enum_error;
use crate::resolve::{Aliases, page_limit};
use crate::{Kms, KmsError, RequestContext};

/// The operations a grant can allow (AWS `GrantOperation`).
const GRANT_OPERATIONS: [&str; 17] = [
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "Sign",
    "Verify",
    "GetPublicKey",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
];

impl Kms {
    pub fn create_grant(
        &self,
        ctx: &RequestContext,
        request: CreateGrantRequest,
    ) -> Result<CreateGrantResponse, KmsError> {
        if request.operations.is_empty() {
            return Err(KmsError::validation(
                "operations",
                "[]",
                "Member must have length greater than or equal to 1",
            ));
        }
        for operation in &request.operations {
            if !GRANT_OPERATIONS.contains(&operation.as_str()) {
                return Err(enum_error(
                    "operations",
                    operation,
                    &format!("[{}]", GRANT_OPERATIONS.join(", ")),
                ));
            }
        }
        validate_principal(&request.grantee_principal, "granteePrincipal")?;
        if let Some(retiring) = &request.retiring_principal {
            validate_principal(retiring, "retiringPrincipal")?;
        }
        let facts = || {
            let mut facts = Context::new();
            facts.set_many("kms:GrantOperations", request.operations.iter().cloned());
            facts.set("kms:GranteePrincipal", request.grantee_principal.clone());
            if let Some(retiring) = &request.retiring_principal {
                facts.set("kms:RetiringPrincipal", retiring.clone());
            }
            facts.set("kms:GrantIsForAWSResource", "false");
            if let Some(constraints) = &request.constraints {
                let kind = if constraints.encryption_context_equals.is_some() {
                    "EncryptionContextEquals"
                } else {
                    "EncryptionContextSubset"
                };
                facts.set("kms:GrantConstraintType", kind);
            }
            facts
        };
        let action = "kms:CreateGrant";
        let (record, _) = self.resolve_record(&request.key_id, Aliases::Refused)?;
        // CreateGrant that comes from a grant rather than a policy is limited (AWS): the new
        // grant may allow only operations of the parent grant, under constraints at least as
        // strict as the parent's.
        let within_parent = |parent: &GrantRecord, _: &mut dyn FnMut() -> EncryptionContext| {
            parent.allows_use(action)
                && request
                    .operations
                    .iter()
                    .all(|operation| parent.operations.contains(operation))
                && parent
                    .constraints
                    .as_ref()
                    .is_none_or(|constraints| constraints.covers(request.constraints.as_ref()))
        };
        self.authorize_with_grants(ctx, action, &record, None, &facts, &within_parent)?;
        self.require_not_pending_deletion(&record)?;
        let mut grant = GrantRecord {
            grant_id: hex(&self.hsm.random(32)),
            token: format!("AQ{}", hex(&self.hsm.random(48))),
            name: request.name.clone(),
            grantee: request.grantee_principal.clone(),
            retiring: request.retiring_principal.clone(),
            grantee_id: self.bind_principal(&request.grantee_principal)?,
            retiring_id: match &request.retiring_principal {
                Some(arn) => self.bind_principal(arn)?,
                None => None,
            },
            operations: request.operations.clone(),
            constraints: request.constraints.clone(),
            issuing_account: self.account.clone(),
            created: self.clock.now(),
        };
        self.store.update_key(&record.key_id, &mut |stored| {
            // A repeated request with the same name and terms returns the existing grant (AWS).
            if let Some(existing) = stored
                .grants
                .iter()
                .find(|existing| same_terms(existing, &grant))
            {
                grant = existing.clone();
                return Ok(());
            }
            stored.grants.push(grant.clone());
            Ok(())
        })?;
        Ok(CreateGrantResponse {
            grant_token: grant.token,
            grant_id: grant.grant_id,
        })
    }

    pub fn list_grants(
        &self,
        ctx: &RequestContext,
        request: GrantRequest,
    ) -> Result<ListGrantsResponse, KmsError> {
        let limit = page_limit(request.limit, 100, 50)?;
        let key_ref = request
            .key_id
            .as_deref()
            .ok_or_else(|| KmsError::validation("keyId", "null", "Member must not be null"))?;
        let record = self.resolve_authorized(
            ctx,
            key_ref,
            Aliases::Refused,
            "kms:ListGrants",
            &Context::new,
        )?;
        let grants = record.grants.iter().filter(|grant| {
            request
                .grant_id
                .as_ref()
                .is_none_or(|id| *id == grant.grant_id)
                && request
                    .grantee_principal
                    .as_ref()
                    .is_none_or(|who| *who == grant.grantee)
        });
        self.grant_page(
            grants.map(|grant| (&*record, grant)).collect(),
            limit,
            request.marker.as_deref(),
        )
    }

    pub fn list_retirable_grants(
        &self,
        ctx: &RequestContext,
        request: GrantRequest,
    ) -> Result<ListGrantsResponse, KmsError> {
        self.authorize_account(ctx, "kms:ListRetirableGrants")?;
        let limit = page_limit(request.limit, 100, 50)?;
        let retiring = request.retiring_principal.ok_or_else(|| {
            KmsError::validation("retiringPrincipal", "null", "Member must not be null")
        })?;
        let records = self.all_keys()?;
        let grants = records
            .iter()
            .flat_map(|record| record.grants.iter().map(move |grant| (record, grant)))
            .filter(|(_, grant)| grant.retiring.as_deref() == Some(retiring.as_str()))
            .collect();
        self.grant_page(grants, limit, request.marker.as_deref())
    }

    /// The retiring principal, the grantee (if the grant allows RetireGrant), the account's
    /// root, or anyone a policy allows kms:RetireGrant may retire a grant.
    pub fn retire_grant(
        &self,
        ctx: &RequestContext,
        request: GrantRequest,
    ) -> Result<(), KmsError> {
        let (record, grant) = match (&request.grant_token, &request.key_id, &request.grant_id) {
            (Some(token), _, _) => self.grant_by_token(token)?,
            (None, Some(key_ref), Some(grant_id)) => {
                let record = self
                    .store
                    .key(&self.resolve_id(key_ref, Aliases::Refused)?)?
                    .ok_or_else(|| KmsError::NotFound(format!("Key '{key_ref}' does not exist")))?;
                let grant = record
                    .grants
                    .iter()
                    .find(|grant| grant.grant_id == *grant_id)
                    .cloned()
                    .ok_or_else(|| {
                        KmsError::InvalidGrantId(format!("Grant {grant_id} does not exist"))
                    })?;
                (KeyRecord::clone(&record), grant)
            }
            _ => {
                return Err(KmsError::Validation(
                    "Specify a GrantToken, or a KeyId and a GrantId.".into(),
                ));
            }
        };
        let caller = &*ctx.caller.arn;
        let may_retire = (grant.retiring.as_deref() == Some(caller)
            && same_principal(grant.retiring_id.as_deref(), &ctx.caller))
            || (grant.grantee == caller
                && same_principal(grant.grantee_id.as_deref(), &ctx.caller)
                && grant.operations.iter().any(|op| op == "RetireGrant"))
            || caller == self.root_arn()
            || self
                .authorize(ctx, "kms:RetireGrant", &record, None, &Context::new)
                .is_ok();
        if !may_retire {
            return Err(KmsError::AccessDenied(format!(
                "User: {caller} is not authorized to perform: kms:RetireGrant on resource: {}",
                self.key_arn(&record.key_id)
            )));
        }
        self.remove_grant(&record.key_id, &grant.grant_id)
    }

    pub fn revoke_grant(
        &self,
        ctx: &RequestContext,
        request: GrantRequest,
    ) -> Result<(), KmsError> {
        let key_ref = request
            .key_id
            .as_deref()
            .ok_or_else(|| KmsError::validation("keyId", "null", "Member must not be null"))?;
        let grant_id = request
            .grant_id
            .as_deref()
            .ok_or_else(|| KmsError::validation("grantId", "null", "Member must not be null"))?;
        let record = self.resolve_authorized(
            ctx,
            key_ref,
            Aliases::Refused,
            "kms:RevokeGrant",
            &Context::new,
        )?;
        self.remove_grant(&record.key_id, grant_id)
    }

    /// Checks the grant tokens a request carries: at most 10, each naming an existing grant
    /// (AWS answers an unknown token with `InvalidGrantTokenException`). Grants here are in
    /// effect as soon as CreateGrant returns, so a valid token needs no further handling.
    pub fn check_grant_tokens(&self, tokens: &[String]) -> Result<(), KmsError> {
        if tokens.len() > 10 {
            return Err(KmsError::validation(
                "grantTokens",
                "[LIST]",
                "Member must have length less than or equal to 10",
            ));
        }
        if tokens.is_empty() {
            return Ok(());
        }
        let known: std::collections::HashSet<String> = self
            .all_keys()?
            .iter()
            .flat_map(|record| record.grants.iter().map(|grant| grant.token.clone()))
            .collect();
        match tokens.iter().find(|token| !known.contains(token.as_str())) {
            Some(_) => Err(KmsError::InvalidGrantToken(
                "The grant token is not valid".into(),
            )),
            None => Ok(()),
        }
    }

    /// Whether a grant on `record` lets the caller perform `action`: the fallback when no policy
    /// allows it (grants only ever allow; an explicit Deny has already been decided).
    /// Whether one of the caller's grants on `record` permits the request. The request's
    /// encryption context is built only if a grant's constraints need it.
    pub(crate) fn grant_allows(
        &self,
        ctx: &RequestContext,
        record: &KeyRecord,
        grant_permits: &GrantPermits<'_>,
        context: impl Fn() -> crate::api::EncryptionContext,
    ) -> bool {
        let mut request_context = None;
        record.grants.iter().any(|grant| {
            *grant.grantee == *ctx.caller.arn
                && same_principal(grant.grantee_id.as_deref(), &ctx.caller)
                && grant_permits(grant, &mut || {
                    request_context.get_or_insert_with(&context).clone()
                })
        })
    }

    fn grant_by_token(&self, token: &str) -> Result<(KeyRecord, GrantRecord), KmsError> {
        for record in self.all_keys()? {
            if let Some(grant) = record
                .grants
                .iter()
                .find(|grant| grant.token == token)
                .cloned()
            {
                return Ok((record, grant));
            }
        }
        Err(KmsError::InvalidGrantToken(
            "The grant token is not valid".into(),
        ))
    }

    fn remove_grant(&self, key_id: &str, grant_id: &str) -> Result<(), KmsError> {
        self.store.update_key(key_id, &mut |stored| {
            let before = stored.grants.len();
            stored.grants.retain(|grant| grant.grant_id != grant_id);
            if stored.grants.len() == before {
                return Err(KmsError::InvalidGrantId(format!(
                    "Grant {grant_id} does not exist"
                )));
            }
            Ok(())
        })?;
        Ok(())
    }

    fn grant_page(
        &self,
        grants: Vec<(&KeyRecord, &GrantRecord)>,
        limit: usize,
        marker: Option<&str>,
    ) -> Result<ListGrantsResponse, KmsError> {
        let start = match marker {
            None => 0,
            Some(marker) => marker
                .parse::<usize>()
                .map_err(|_| KmsError::InvalidMarker(format!("Invalid marker: {marker}")))?,
        };
        let total = grants.len();
        let grants: Vec<GrantListEntry> = grants
            .into_iter()
            .skip(start)
            .take(limit)
            .map(|(record, grant)| GrantListEntry {
                key_id: self.key_arn(&record.key_id),
                grant_id: grant.grant_id.clone(),
                name: grant.name.clone(),
                creation_date: grant.created,
                grantee_principal: grant.grantee.clone(),
                retiring_principal: grant.retiring.clone(),
                issuing_account: format!("arn:aws:iam::{}:root", grant.issuing_account),
                operations: grant.operations.clone(),
                constraints: grant.constraints.clone(),
            })
            .collect();
        let truncated = start + grants.len() < total;
        Ok(ListGrantsResponse {
            grants,
            truncated,
            next_marker: truncated.then(|| (start + limit).to_string()),
        })
    }
}

/// Whether the caller is the principal a grant was bound to (grants made before bindings, or
/// naming principals outside this account's users, are matched by ARN alone).
fn same_principal(bound: Option<&str>, caller: &crate::principals::Caller) -> bool {
    bound.is_none_or(|id| caller.user_id.as_deref() == Some(id))
}

fn same_terms(existing: &GrantRecord, new: &GrantRecord) -> bool {
    existing.name.is_some()
        && existing.name == new.name
        && existing.grantee == new.grantee
        && existing.grantee_id == new.grantee_id
        && existing.retiring == new.retiring
        && existing.operations == new.operations
        && existing.constraints == new.constraints
}

/// Principals are ARNs (or `*`-free account ids), 1–256 characters.
fn validate_principal(principal: &str, field: &str) -> Result<(), KmsError> {
    let valid =
        !principal.is_empty() && principal.len() <= 256 && !principal.contains(char::is_whitespace);
    if valid {
        Ok(())
    } else {
        Err(KmsError::validation(
            field,
            principal,
            "Member must have length between 1 and 256",
        ))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
