//! The IAM subset atrest serves: users, their access keys and inline policies (IAM API
//! reference: CreateUser, GetUser, ListUsers, DeleteUser, CreateAccessKey, ListAccessKeys,
//! UpdateAccessKey, DeleteAccessKey, PutUserPolicy, GetUserPolicy, ListUserPolicies,
//! DeleteUserPolicy). Callers need `iam:*` permissions from their identity policies; the
//! account root has them all.

use std::sync::atomic::Ordering;

use atrest_crypto::SecretBytes;
use atrest_policy::{Context, Decision, RequestFacts, decide_identity_only};

use crate::model::{AccessKeyStatus, PrincipalRecord, UserRecord};
use crate::{Kms, KmsError, NewCredentials, RequestContext};

/// IAM allows two access keys per user.
const ACCESS_KEYS_PER_USER: usize = 2;

/// IAM's error codes (each maps to one wire code and status in the server).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IamError {
    #[error("{0}")]
    NoSuchEntity(String),
    #[error("{0}")]
    EntityAlreadyExists(String),
    #[error("{0}")]
    DeleteConflict(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    MalformedPolicyDocument(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    ServiceFailure(String),
}

impl From<KmsError> for IamError {
    fn from(error: KmsError) -> Self {
        match error {
            KmsError::AccessDenied(message) => IamError::AccessDenied(message),
            KmsError::AlreadyExists(message) => IamError::EntityAlreadyExists(message),
            KmsError::Validation(message) => IamError::InvalidInput(message),
            KmsError::MalformedPolicyDocument(message) => {
                IamError::MalformedPolicyDocument(message)
            }
            other => IamError::ServiceFailure(other.to_string()),
        }
    }
}

/// A user as IAM describes it.
#[derive(Debug, Clone)]
pub struct IamUser {
    /// `None` for the account root (GetUser without a name, called by the root).
    pub user_name: Option<String>,
    pub user_id: String,
    pub arn: String,
    pub created: i64,
}

#[derive(Debug, Clone)]
pub struct IamAccessKey {
    pub user_name: String,
    pub access_key_id: String,
    pub status: AccessKeyStatus,
    pub created: i64,
}

impl Kms {
    pub fn iam_create_user(&self, ctx: &RequestContext, name: &str) -> Result<IamUser, IamError> {
        self.authorize_iam(ctx, "iam:CreateUser", Some(name))?;
        let arn = self.user_arn(name);
        let record = UserRecord {
            arn,
            user_id: self.generate_id("AIDA"),
            created: self.clock.now(),
            policies: Default::default(),
        };
        crate::principals::validate_user_name(name)?;
        self.store
            .create_user(name, &record)
            .map_err(|error| match error {
                KmsError::AlreadyExists(_) => {
                    IamError::EntityAlreadyExists(format!("User with name {name} already exists."))
                }
                other => other.into(),
            })?;
        Ok(user(name, record))
    }

    /// Without a name, describes the caller (the root has no user name).
    pub fn iam_get_user(
        &self,
        ctx: &RequestContext,
        name: Option<&str>,
    ) -> Result<IamUser, IamError> {
        let name = match name.or(ctx.caller.user_name()) {
            Some(name) => name,
            None => {
                return Ok(IamUser {
                    user_name: None,
                    user_id: self.account.clone(),
                    arn: self.root_arn(),
                    created: 0,
                });
            }
        };
        self.authorize_iam(ctx, "iam:GetUser", Some(name))?;
        Ok(user(name, self.existing_user(name)?))
    }

    pub fn iam_list_users(&self, ctx: &RequestContext) -> Result<Vec<IamUser>, IamError> {
        self.authorize_iam(ctx, "iam:ListUsers", None)?;
        Ok(self
            .store
            .users()?
            .into_iter()
            .map(|(name, record)| user(&name, record))
            .collect())
    }

    /// IAM refuses to delete a user that still has access keys or policies.
    pub fn iam_delete_user(&self, ctx: &RequestContext, name: &str) -> Result<(), IamError> {
        self.authorize_iam(ctx, "iam:DeleteUser", Some(name))?;
        let record = self.existing_user(name)?;
        if !self.keys_of(name)?.is_empty() || !record.policies.is_empty() {
            return Err(IamError::DeleteConflict(
                "Cannot delete entity, must delete access keys and policies first.".into(),
            ));
        }
        self.store.delete_user(name)?;
        Ok(())
    }

    pub fn iam_create_access_key(
        &self,
        ctx: &RequestContext,
        name: Option<&str>,
    ) -> Result<(NewCredentials, i64), IamError> {
        let name = self.target_user(ctx, name)?;
        self.authorize_iam(ctx, "iam:CreateAccessKey", name.as_deref())?;
        if let Some(name) = &name {
            self.existing_user(name)?;
        }
        let count = self.keys_of_arn(&self.arn_of(name.as_deref()))?.len();
        if count >= ACCESS_KEYS_PER_USER {
            return Err(IamError::LimitExceeded(format!(
                "Cannot exceed quota for AccessKeysPerUser: {ACCESS_KEYS_PER_USER}"
            )));
        }
        let created = self.clock.now();
        let credentials = self.add_access_key(name.as_deref(), None, None)?;
        Ok((credentials, created))
    }

    pub fn iam_list_access_keys(
        &self,
        ctx: &RequestContext,
        name: Option<&str>,
    ) -> Result<Vec<IamAccessKey>, IamError> {
        let name = self.target_user(ctx, name)?;
        self.authorize_iam(ctx, "iam:ListAccessKeys", name.as_deref())?;
        if let Some(name) = &name {
            self.existing_user(name)?;
        }
        let keys = self.keys_of_arn(&self.arn_of(name.as_deref()))?;
        Ok(keys
            .into_iter()
            .map(|(access_key_id, record)| IamAccessKey {
                user_name: record.user_name.unwrap_or_else(|| "root".into()),
                access_key_id,
                status: record.status,
                created: record.created,
            })
            .collect())
    }

    pub fn iam_update_access_key(
        &self,
        ctx: &RequestContext,
        name: Option<&str>,
        access_key_id: &str,
        status: AccessKeyStatus,
    ) -> Result<(), IamError> {
        let name = self.target_user(ctx, name)?;
        self.authorize_iam(ctx, "iam:UpdateAccessKey", name.as_deref())?;
        let mut record = self.owned_key(name.as_deref(), access_key_id)?;
        record.status = status;
        self.store.replace_principal(access_key_id, &record)?;
        self.credentials_generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    pub fn iam_delete_access_key(
        &self,
        ctx: &RequestContext,
        name: Option<&str>,
        access_key_id: &str,
    ) -> Result<(), IamError> {
        let name = self.target_user(ctx, name)?;
        self.authorize_iam(ctx, "iam:DeleteAccessKey", name.as_deref())?;
        self.owned_key(name.as_deref(), access_key_id)?;
        self.store.delete_principal(access_key_id)?;
        self.credentials_generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    pub fn iam_put_user_policy(
        &self,
        ctx: &RequestContext,
        name: &str,
        policy_name: &str,
        document: &str,
    ) -> Result<(), IamError> {
        self.authorize_iam(ctx, "iam:PutUserPolicy", Some(name))?;
        validate_policy_name(policy_name)?;
        self.parsed_policy(document, false)?;
        let mut record = self.existing_user(name)?;
        record
            .policies
            .insert(policy_name.to_owned(), document.to_owned());
        self.store.replace_user(name, &record)?;
        Ok(())
    }

    pub fn iam_get_user_policy(
        &self,
        ctx: &RequestContext,
        name: &str,
        policy_name: &str,
    ) -> Result<String, IamError> {
        self.authorize_iam(ctx, "iam:GetUserPolicy", Some(name))?;
        let record = self.existing_user(name)?;
        record.policies.get(policy_name).cloned().ok_or_else(|| {
            IamError::NoSuchEntity(format!(
                "The user policy with name {policy_name} cannot be found."
            ))
        })
    }

    pub fn iam_list_user_policies(
        &self,
        ctx: &RequestContext,
        name: &str,
    ) -> Result<Vec<String>, IamError> {
        self.authorize_iam(ctx, "iam:ListUserPolicies", Some(name))?;
        Ok(self.existing_user(name)?.policies.into_keys().collect())
    }

    pub fn iam_delete_user_policy(
        &self,
        ctx: &RequestContext,
        name: &str,
        policy_name: &str,
    ) -> Result<(), IamError> {
        self.authorize_iam(ctx, "iam:DeleteUserPolicy", Some(name))?;
        let mut record = self.existing_user(name)?;
        if record.policies.remove(policy_name).is_none() {
            return Err(IamError::NoSuchEntity(format!(
                "The user policy with name {policy_name} cannot be found."
            )));
        }
        self.store.replace_user(name, &record)?;
        Ok(())
    }

    /// STS GetCallerIdentity: who the caller is. Needs no permission, as in AWS.
    pub fn caller_identity(&self, ctx: &RequestContext) -> Result<IamUser, IamError> {
        match ctx.caller.user_name() {
            None => Ok(IamUser {
                user_name: None,
                user_id: self.account.clone(),
                arn: self.root_arn(),
                created: 0,
            }),
            Some(name) => Ok(user(name, self.existing_user(name)?)),
        }
    }

    /// Changes whenever an access key is deactivated or deleted, so credential caches can tell.
    pub fn credentials_generation(&self) -> u64 {
        self.credentials_generation.load(Ordering::SeqCst)
    }

    /// IAM actions are decided by identity policies alone; the resource is the user's ARN.
    fn authorize_iam(
        &self,
        ctx: &RequestContext,
        action: &str,
        user: Option<&str>,
    ) -> Result<(), IamError> {
        let resource = match user {
            Some(name) => self.user_arn(name),
            None => "*".to_owned(),
        };
        let identity = self.identity_policies_of(&ctx.caller)?;
        let principal = ctx.caller.principal();
        let context = Context::new();
        let request = RequestFacts {
            principal: &principal,
            action,
            resource: &resource,
            context: &context,
        };
        match decide_identity_only(&identity, &request) {
            Decision::Allow => Ok(()),
            _ => Err(IamError::AccessDenied(format!(
                "User: {} is not authorized to perform: {action} on resource: {resource}",
                ctx.caller.arn
            ))),
        }
    }

    /// Access-key operations without a UserName act on the caller's own keys.
    fn target_user(
        &self,
        ctx: &RequestContext,
        name: Option<&str>,
    ) -> Result<Option<String>, IamError> {
        Ok(name.or(ctx.caller.user_name()).map(str::to_owned))
    }

    fn owned_key(
        &self,
        name: Option<&str>,
        access_key_id: &str,
    ) -> Result<PrincipalRecord, IamError> {
        let arn = self.arn_of(name);
        match self.store.principal(access_key_id)? {
            Some(record) if record.arn == arn => Ok(record),
            _ => Err(IamError::NoSuchEntity(format!(
                "The Access Key with id {access_key_id} cannot be found."
            ))),
        }
    }

    fn existing_user(&self, name: &str) -> Result<UserRecord, IamError> {
        self.store.user(name)?.ok_or_else(|| {
            IamError::NoSuchEntity(format!("The user with name {name} cannot be found."))
        })
    }

    fn keys_of(&self, name: &str) -> Result<Vec<(String, PrincipalRecord)>, IamError> {
        self.keys_of_arn(&self.user_arn(name))
    }

    fn keys_of_arn(&self, arn: &str) -> Result<Vec<(String, PrincipalRecord)>, IamError> {
        Ok(self
            .store
            .principals()?
            .into_iter()
            .filter(|(_, record)| record.arn == arn)
            .collect())
    }

    fn arn_of(&self, name: Option<&str>) -> String {
        name.map_or_else(|| self.root_arn(), |name| self.user_arn(name))
    }

    pub(crate) fn user_arn(&self, name: &str) -> String {
        format!("arn:aws:iam::{}:user/{name}", self.account)
    }

    /// Adds an access key for `name` (or the root), with generated credentials unless given.
    pub(crate) fn add_access_key(
        &self,
        name: Option<&str>,
        access_key_id: Option<String>,
        secret: Option<SecretBytes>,
    ) -> Result<NewCredentials, KmsError> {
        self.create_access_key_record(name, self.arn_of(name), access_key_id, secret)
    }
}

fn user(name: &str, record: UserRecord) -> IamUser {
    IamUser {
        user_name: Some(name.to_owned()),
        user_id: record.user_id,
        arn: record.arn,
        created: record.created,
    }
}

fn validate_policy_name(name: &str) -> Result<(), IamError> {
    if crate::principals::is_iam_name(name, 128) {
        Ok(())
    } else {
        Err(IamError::InvalidInput(format!(
            "The specified value for policyName is invalid: {name}"
        )))
    }
}
