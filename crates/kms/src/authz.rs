//! Authorization: whether the caller may perform an action, decided as AWS KMS decides it
//! (KMS Developer Guide, "Key policies" and "Determining access to a KMS key"): the key policy
//! is the root of access; where it allows the account, the caller's IAM policies decide; an
//! explicit Deny anywhere wins. Actions on no key (CreateKey, ListKeys, ...) are IAM-only.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use atrest_policy::{Context, Decision, Policy, Principal, RequestFacts, decide, decide_union};

use crate::api::EncryptionContext;
use crate::model::{GrantRecord, KeyRecord};
use crate::principals::Caller;
use crate::{Kms, KmsError};

/// The binding of a principal that did not exist: matches no caller (ids are base32).
pub(crate) const NO_SUCH_USER: &str = "AIDA-NO-SUCH-USER";

/// Parsed policies kept in memory, by their text.
const POLICY_CACHE_CAPACITY: usize = 10_000;

/// The condition keys an operation contributes, built only if some policy has conditions.
pub(crate) type Facts<'a> = &'a dyn Fn() -> Context;

/// Whether a grant of the caller's permits a request no policy allows; the second argument
/// builds the request's encryption context, for grants whose constraints need it.
pub(crate) type GrantPermits<'a> =
    dyn Fn(&GrantRecord, &mut dyn FnMut() -> EncryptionContext) -> bool + 'a;

/// Who sent a request and how: the facts global condition keys are made of. It also collects
/// the key ARNs the request was decided on, for the audit record.
#[derive(Debug)]
pub struct RequestContext {
    pub caller: Caller,
    pub source_ip: Option<std::net::IpAddr>,
    pub secure_transport: bool,
    /// `kms:ViaService`: set when an atrest service (S3, volumes) calls on the caller's behalf.
    pub via_service: Option<String>,
    /// Shared with the contexts [`Self::acting_via`] makes, so a service's audit record sees
    /// every key its calls touched. `None` when nothing will read the list (no audit log).
    resources: Option<Arc<std::sync::Mutex<Vec<String>>>>,
}

impl RequestContext {
    /// A context that records nothing; [`Self::recording`] makes one whose touched key ARNs
    /// can be read back for an audit record.
    pub fn new(
        caller: Caller,
        source_ip: Option<std::net::IpAddr>,
        secure_transport: bool,
    ) -> Self {
        Self {
            caller,
            source_ip,
            secure_transport,
            via_service: None,
            resources: None,
        }
    }

    /// Records the key ARNs authorization is asked about, for [`Self::resources`].
    pub fn recording(self) -> Self {
        self.recording_into(Arc::default())
    }

    /// Records touched resources into `shared` (the audit record of the request that made
    /// this context) as well.
    pub fn recording_into(mut self, shared: Arc<std::sync::Mutex<Vec<String>>>) -> Self {
        self.resources = Some(shared);
        self
    }

    /// The same caller acting through `service`, recording into the same resource list.
    pub fn acting_via(&self, service: &str) -> Self {
        Self {
            caller: self.caller.clone(),
            source_ip: self.source_ip,
            secure_transport: self.secure_transport,
            via_service: Some(service.to_owned()),
            resources: self.resources.clone(),
        }
    }

    /// The same caller, acting through `service` (for example `s3.us-east-1.amazonaws.com`).
    pub fn via(mut self, service: &str) -> Self {
        self.via_service = Some(service.to_owned());
        self
    }

    /// The key ARNs authorization was asked about, in order, without repeats (none unless
    /// the context is recording).
    pub fn resources(&self) -> Vec<String> {
        self.resources.as_ref().map_or_else(Vec::new, |resources| {
            resources.lock().unwrap_or_else(|e| e.into_inner()).clone()
        })
    }

    pub(crate) fn touched(&self, resource: &str) {
        let Some(resources) = &self.resources else {
            return;
        };
        let mut resources = resources.lock().unwrap_or_else(|e| e.into_inner());
        if !resources.iter().any(|seen| seen == resource) {
            resources.push(resource.to_owned());
        }
    }
}

/// Parsed key and identity policies by document text, so evaluation does no JSON parsing.
#[derive(Debug)]
pub(crate) struct PolicyCache {
    default_key_policy: Arc<Policy>,
    resource: RwLock<HashMap<String, Arc<Policy>>>,
    identity: RwLock<HashMap<String, Arc<Policy>>>,
}

impl PolicyCache {
    pub(crate) fn new(account: &str) -> Self {
        #[allow(clippy::expect_used)] // a fixed document, covered by the unit tests.
        let default_key_policy = Policy::parse_resource_policy(&default_key_policy(account))
            .expect("the default key policy parses");
        Self {
            default_key_policy: Arc::new(default_key_policy),
            resource: RwLock::default(),
            identity: RwLock::default(),
        }
    }
}

impl Kms {
    /// Authorizes `action` on `record`. `facts` holds the operation's own condition keys.
    pub(crate) fn authorize(
        &self,
        ctx: &RequestContext,
        action: &str,
        record: &KeyRecord,
        request_alias: Option<&str>,
        facts_of: Facts<'_>,
    ) -> Result<(), KmsError> {
        let grant_permits =
            |grant: &GrantRecord, context: &mut dyn FnMut() -> EncryptionContext| {
                grant.allows_use(action)
                    && grant
                        .constraints
                        .as_ref()
                        .is_none_or(|c| c.allow(&context()))
            };
        self.authorize_with_grants(ctx, action, record, request_alias, facts_of, &grant_permits)
    }

    /// [`Self::authorize`], with `grant_permits` deciding whether one of the caller's grants
    /// allows the request when no policy does (CreateGrant under a grant has its own rule).
    pub(crate) fn authorize_with_grants(
        &self,
        ctx: &RequestContext,
        action: &str,
        record: &KeyRecord,
        request_alias: Option<&str>,
        facts_of: Facts<'_>,
        grant_permits: &GrantPermits<'_>,
    ) -> Result<(), KmsError> {
        let key_policy = self.key_policy(record)?;
        let identity = self.identity_policies_of(&ctx.caller)?;
        // Most keys keep the default policy, which has no conditions: then no context is built.
        let mut facts = Context::new();
        if key_policy.has_conditions() || identity.iter().any(|policy| policy.has_conditions()) {
            facts = facts_of();
            if let Some(alias) = request_alias {
                facts.set("kms:RequestAlias", alias);
            }
            let wanted = |key: &str| {
                key_policy.mentions(key) || identity.iter().any(|policy| policy.mentions(key))
            };
            self.add_global_facts(ctx, &mut facts, &wanted);
            facts.set("kms:KeySpec", record.key_spec.name());
            facts.set("kms:KeyUsage", record.key_usage.name());
            facts.set("kms:KeyOrigin", "AWS_KMS");
        }
        if key_policy.mentions("kms:ResourceAliases") {
            let aliases = self.store.aliases()?;
            let names = aliases
                .into_iter()
                .filter(|(_, alias)| alias.target_key_id == record.key_id)
                .map(|(name, _)| name);
            facts.set_many("kms:ResourceAliases", names);
        }
        let principal = principal(&ctx.caller);
        let resource = self.key_arn(&record.key_id);
        ctx.touched(&resource);
        let request = RequestFacts {
            principal: &principal,
            action,
            resource: &resource,
            context: &facts,
        };
        match decide(&key_policy, &identity, &request) {
            Decision::Allow => Ok(()),
            Decision::ExplicitDeny => Err(access_denied(
                &ctx.caller,
                action,
                &resource,
                "with an explicit deny in a resource-based policy",
            )),
            Decision::ImplicitDeny
                if self
                    .grant_allows(ctx, record, grant_permits, || request_context(&facts_of())) =>
            {
                Ok(())
            }
            Decision::ImplicitDeny => Err(access_denied(
                &ctx.caller,
                action,
                &resource,
                "because no resource-based policy allows the action",
            )),
        }
    }

    /// Authorizes an action that names no key (IAM policies only; the root always may).
    pub(crate) fn authorize_account(
        &self,
        ctx: &RequestContext,
        action: &str,
    ) -> Result<(), KmsError> {
        self.authorize_identity(ctx, action, "*")
    }

    /// Authorizes `action` on `resource` by the caller's IAM policies alone (the account root
    /// always may): what other atrest services ask before they act.
    pub fn authorize_identity(
        &self,
        ctx: &RequestContext,
        action: &str,
        resource: &str,
    ) -> Result<(), KmsError> {
        self.authorize_with_resource_policy(ctx, action, resource, None, Context::new())
    }

    /// Authorizes `action` on `resource` by the caller's IAM policies and the resource's own
    /// policy (a bucket policy) together, as services other than KMS do: either may allow,
    /// a Deny in either refuses. `facts` holds the service's condition keys; the global
    /// `aws:*` keys are added here.
    pub fn authorize_with_resource_policy(
        &self,
        ctx: &RequestContext,
        action: &str,
        resource: &str,
        resource_policy: Option<&Policy>,
        mut facts: Context,
    ) -> Result<(), KmsError> {
        self.add_global_facts(ctx, &mut facts, &|_| true);
        let identity = self.identity_policies_of(&ctx.caller)?;
        let principal = principal(&ctx.caller);
        let request = RequestFacts {
            principal: &principal,
            action,
            resource,
            context: &facts,
        };
        match decide_union(resource_policy, &identity, &request) {
            Decision::Allow => Ok(()),
            Decision::ExplicitDeny => Err(access_denied(
                &ctx.caller,
                action,
                resource,
                "with an explicit deny in an identity-based or resource-based policy",
            )),
            Decision::ImplicitDeny => Err(access_denied(
                &ctx.caller,
                action,
                resource,
                "because no identity-based or resource-based policy allows the action",
            )),
        }
    }

    /// The lockout safety check: would `policy_text` still let this caller change the policy?
    pub(crate) fn check_lockout(
        &self,
        ctx: &RequestContext,
        record: &KeyRecord,
        policy: &Policy,
    ) -> Result<(), KmsError> {
        let mut facts = Context::new();
        self.add_global_facts(ctx, &mut facts, &|_| true);
        let identity = self.identity_policies_of(&ctx.caller)?;
        let principal = principal(&ctx.caller);
        let resource = self.key_arn(&record.key_id);
        let request = RequestFacts {
            principal: &principal,
            action: "kms:PutKeyPolicy",
            resource: &resource,
            context: &facts,
        };
        if decide(policy, &identity, &request) == Decision::Allow {
            Ok(())
        } else {
            Err(KmsError::MalformedPolicyDocument(
                "The new key policy will not allow you to update the key policy in the future."
                    .into(),
            ))
        }
    }

    /// The key's policy document: as stored, or AWS's default for keys created without one.
    pub(crate) fn key_policy_text(&self, record: &KeyRecord) -> String {
        record
            .policy
            .clone()
            .unwrap_or_else(|| default_key_policy(&self.account))
    }

    pub(crate) fn key_policy(&self, record: &KeyRecord) -> Result<Arc<Policy>, KmsError> {
        match &record.policy {
            Some(text) => record.parsed_policy.get_or_try_init(|| {
                let parsed = self.parsed_policy(text, true)?;
                Ok(match record.principal_ids.is_empty() {
                    true => parsed,
                    false => Arc::new(parsed.bind_principals(&record.principal_ids)),
                })
            }),
            None => Ok(Arc::clone(&self.policies.default_key_policy)),
        }
    }

    /// The unique id of every IAM user of this account that `policy` names, as AWS resolves
    /// principals when a policy is stored; a user that does not exist makes the policy
    /// invalid (AWS: "invalid principals").
    pub fn resolve_principal_ids(
        &self,
        policy: &Policy,
    ) -> Result<std::collections::BTreeMap<String, String>, KmsError> {
        let mut ids = std::collections::BTreeMap::new();
        let own = format!("arn:aws:iam::{}:user/", self.account);
        for arn in policy.user_principal_arns() {
            let Some(name) = arn.strip_prefix(&own) else {
                continue; // another account's user: not ours to resolve
            };
            let user = self.store.user(name)?.ok_or_else(|| {
                KmsError::MalformedPolicyDocument(
                    "Policy contains a statement with one or more invalid principals.".into(),
                )
            })?;
            ids.insert(arn.to_owned(), user.user_id);
        }
        Ok(ids)
    }

    /// Binds the principals of keys stored before policies and grants were bound to unique
    /// ids (a data dir from an earlier atrest), to the users they name now; a user that no
    /// longer exists is bound to no one. Run at start; returns how many keys it changed.
    pub fn bind_stored_principals(&self) -> Result<usize, KmsError> {
        let mut changed = 0;
        let mut after: Option<String> = None;
        loop {
            let page = self.store.keys_after(after.as_deref(), 100)?;
            let Some(last) = page.last() else {
                return Ok(changed);
            };
            after = Some(last.key_id.clone());
            for record in &page {
                let unbound_policy = record.principal_ids.is_empty()
                    && record
                        .policy
                        .as_ref()
                        .is_some_and(|text| text.contains(":user/"));
                let unbound_grant = record
                    .grants
                    .iter()
                    .any(|grant| grant.grantee_id.is_none() && grant.grantee.contains(":user/"));
                if !unbound_policy && !unbound_grant {
                    continue;
                }
                let mut ids = std::collections::BTreeMap::new();
                if let Some(text) = record.policy.as_deref().filter(|_| unbound_policy) {
                    let policy = self.parsed_policy(text, true)?;
                    for arn in policy.user_principal_arns() {
                        if let Some(id) = self.bind_principal(arn)? {
                            ids.insert(arn.to_owned(), id);
                        }
                    }
                }
                let mut grant_ids = Vec::new();
                for grant in &record.grants {
                    let grantee = match grant.grantee_id {
                        Some(_) => None,
                        None => self.bind_principal(&grant.grantee)?,
                    };
                    let retiring = match (&grant.retiring, &grant.retiring_id) {
                        (Some(arn), None) => self.bind_principal(arn)?,
                        _ => None,
                    };
                    grant_ids.push((grant.grant_id.clone(), grantee, retiring));
                }
                self.store.update_key(&record.key_id, &mut |stored| {
                    if stored.principal_ids.is_empty() {
                        stored.principal_ids.clone_from(&ids);
                    }
                    for grant in &mut stored.grants {
                        if let Some((_, grantee, retiring)) =
                            grant_ids.iter().find(|(id, _, _)| *id == grant.grant_id)
                        {
                            if grant.grantee_id.is_none() {
                                grant.grantee_id.clone_from(grantee);
                            }
                            if grant.retiring_id.is_none() {
                                grant.retiring_id.clone_from(retiring);
                            }
                        }
                    }
                    Ok(())
                })?;
                changed += 1;
            }
        }
    }

    /// The unique id `arn` has now, if it is an IAM user of this account; a user that does
    /// not exist gets an id no user can have, so a later user of that name is not it.
    pub fn bind_principal(&self, arn: &str) -> Result<Option<String>, KmsError> {
        let own = format!("arn:aws:iam::{}:user/", self.account);
        let Some(name) = arn.strip_prefix(&own) else {
            return Ok(None);
        };
        Ok(Some(match self.store.user(name)? {
            Some(user) => user.user_id,
            None => NO_SUCH_USER.to_owned(),
        }))
    }

    /// Parses (or fetches from the cache) a resource or identity policy.
    pub(crate) fn parsed_policy(
        &self,
        text: &str,
        resource_policy: bool,
    ) -> Result<Arc<Policy>, KmsError> {
        let cache = if resource_policy {
            &self.policies.resource
        } else {
            &self.policies.identity
        };
        if let Some(policy) = cache.read().unwrap_or_else(|e| e.into_inner()).get(text) {
            return Ok(Arc::clone(policy));
        }
        let parsed = if resource_policy {
            Policy::parse_resource_policy(text)
        } else {
            Policy::parse_identity_policy(text)
        };
        let policy =
            Arc::new(parsed.map_err(|error| KmsError::MalformedPolicyDocument(error.to_string()))?);
        let mut cache = cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= POLICY_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(text.to_owned(), Arc::clone(&policy));
        Ok(policy)
    }

    pub(crate) fn identity_policies_of(
        &self,
        caller: &Caller,
    ) -> Result<Vec<Arc<Policy>>, KmsError> {
        let Some(name) = caller.user_name() else {
            return Ok(Vec::new());
        };
        let Some(user) = self.store.user(name)? else {
            return Ok(Vec::new());
        };
        user.policies
            .values()
            .map(|text| self.parsed_policy(text, false))
            .collect()
    }

    /// Adds the global condition keys `wanted` asks for (keys given in lower case).
    fn add_global_facts(
        &self,
        ctx: &RequestContext,
        facts: &mut Context,
        wanted: &dyn Fn(&str) -> bool,
    ) {
        let caller = &ctx.caller;
        if wanted("aws:principalarn") {
            facts.set("aws:PrincipalArn", &*caller.arn);
        }
        if wanted("aws:principalaccount") {
            facts.set("aws:PrincipalAccount", &*caller.account);
        }
        if let Some(service) = &ctx.via_service
            && wanted("kms:viaservice")
        {
            facts.set("kms:ViaService", service.clone());
        }
        if wanted("kms:calleraccount") {
            facts.set("kms:CallerAccount", &*caller.account);
        }
        if wanted("aws:principaltype") {
            facts.set(
                "aws:PrincipalType",
                if caller.user_name().is_some() {
                    "User"
                } else {
                    "Account"
                },
            );
        }
        if let Some(name) = caller.user_name()
            && wanted("aws:username")
        {
            facts.set("aws:username", name);
        }
        if let Some(ip) = &ctx.source_ip
            && wanted("aws:sourceip")
        {
            facts.set("aws:SourceIp", ip.to_string());
        }
        if wanted("aws:securetransport") {
            facts.set(
                "aws:SecureTransport",
                if ctx.secure_transport {
                    "true"
                } else {
                    "false"
                },
            );
        }
        let now = self.clock.now();
        if wanted("aws:currenttime") {
            facts.set("aws:CurrentTime", current_time_text(now));
        }
        if wanted("aws:epochtime") {
            facts.set("aws:EpochTime", now.to_string());
        }
    }
}

/// Condition keys describing an encryption context (KMS Developer Guide, "Condition keys").
pub(crate) fn encryption_context_facts(context: &crate::api::EncryptionContext) -> Context {
    let mut facts = Context::new();
    for (key, value) in context {
        facts.set(&format!("kms:EncryptionContext:{key}"), value.clone());
    }
    if !context.is_empty() {
        facts.set_many("kms:EncryptionContextKeys", context.keys().cloned());
    }
    // Condition keys are case-insensitive, context keys are not: grant constraints read the
    // context exactly as sent from the attributes.
    for (key, value) in context {
        facts.set_attribute(key, value);
    }
    facts
}

/// The request's encryption context as the operation's facts carry it (empty if none).
fn request_context(facts: &Context) -> crate::api::EncryptionContext {
    facts.attributes().clone()
}

/// `aws:CurrentTime` as ISO 8601, formatted once per second rather than once per request.
fn current_time_text(now: i64) -> String {
    static CACHE: std::sync::Mutex<(i64, String)> =
        std::sync::Mutex::new((i64::MIN, String::new()));
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if cache.0 != now {
        *cache = (now, atrest_sigv4::format_iso8601(now));
    }
    cache.1.clone()
}

/// AWS's default key policy: the account (its root, and through it IAM) may do everything.
pub(crate) fn default_key_policy(account: &str) -> String {
    format!(
        "{{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"key-default-1\",\n  \"Statement\" : [ {{\n    \
         \"Sid\" : \"Enable IAM User Permissions\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {{\n      \
         \"AWS\" : \"arn:aws:iam::{account}:root\"\n    }},\n    \"Action\" : \"kms:*\",\n    \"Resource\" : \"*\"\n  }} ]\n}}"
    )
}

fn principal(caller: &Caller) -> Principal {
    caller.principal()
}

/// AWS's message: "User: ARN is not authorized to perform: ACTION on resource: ARN because ...".
fn access_denied(caller: &Caller, action: &str, resource: &str, reason: &str) -> KmsError {
    KmsError::AccessDenied(format!(
        "User: {} is not authorized to perform: {action} on resource: {resource} {reason}",
        caller.arn
    ))
}
