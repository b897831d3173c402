//! Key policies: GetKeyPolicy, PutKeyPolicy, ListKeyPolicies. A key has exactly one policy,
//! named `default`, as in AWS KMS.

use atrest_policy::Context;

use crate::api::{GetKeyPolicyResponse, KeyPolicyRequest, ListKeyPoliciesResponse, PageRequest};
use crate::resolve::{Aliases, page_limit};
use crate::{Kms, KmsError, RequestContext};

const POLICY_NAME: &str = "default";

impl Kms {
    pub fn get_key_policy(
        &self,
        ctx: &RequestContext,
        request: KeyPolicyRequest,
    ) -> Result<GetKeyPolicyResponse, KmsError> {
        check_policy_name(request.policy_name.as_deref())?;
        let action = "kms:GetKeyPolicy";
        let record = self.resolve_authorized(
            ctx,
            &request.key_id,
            Aliases::Refused,
            action,
            &Context::new,
        )?;
        Ok(GetKeyPolicyResponse {
            policy: self.key_policy_text(&record),
            policy_name: POLICY_NAME.into(),
        })
    }

    /// Replaces the key policy. Unless the caller bypasses it, the lockout safety check refuses
    /// a policy under which the caller could not change the policy again.
    pub fn put_key_policy(
        &self,
        ctx: &RequestContext,
        request: KeyPolicyRequest,
    ) -> Result<(), KmsError> {
        check_policy_name(request.policy_name.as_deref())?;
        let text = request
            .policy
            .ok_or_else(|| KmsError::validation("policy", "null", "Member must not be null"))?;
        let policy = self.parsed_policy(&text, true)?;
        let principal_ids = self.resolve_principal_ids(&policy)?;
        let policy = std::sync::Arc::new(policy.bind_principals(&principal_ids));
        let action = "kms:PutKeyPolicy";
        let record = self.resolve_authorized(
            ctx,
            &request.key_id,
            Aliases::Refused,
            action,
            &Context::new,
        )?;
        if request.bypass_policy_lockout_safety_check != Some(true) {
            self.check_lockout(ctx, &record, &policy)?;
        }
        self.store.update_key(&record.key_id, &mut |stored| {
            stored.policy = Some(text.clone());
            stored.principal_ids.clone_from(&principal_ids);
            Ok(())
        })?;
        tracing::info!(key_id = %record.key_id, "replaced key policy");
        Ok(())
    }

    pub fn list_key_policies(
        &self,
        ctx: &RequestContext,
        request: PageRequest,
    ) -> Result<ListKeyPoliciesResponse, KmsError> {
        page_limit(request.limit, 1000, 100)?;
        let key_ref = request
            .key_id
            .as_deref()
            .ok_or_else(|| KmsError::validation("keyId", "null", "Member must not be null"))?;
        let action = "kms:ListKeyPolicies";
        self.resolve_authorized(ctx, key_ref, Aliases::Refused, action, &Context::new)?;
        Ok(ListKeyPoliciesResponse {
            policy_names: vec![POLICY_NAME.into()],
            truncated: false,
        })
    }
}

fn check_policy_name(name: Option<&str>) -> Result<(), KmsError> {
    match name {
        None | Some(POLICY_NAME) => Ok(()),
        Some(other) => Err(KmsError::NotFound(format!(
            "No such policy exists: {other}. The only key policy is named default."
        ))),
    }
}
