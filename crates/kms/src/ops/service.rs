//! Keys that atrest's own services create on the account's behalf, as AWS services do:
//! - the AWS managed key `alias/aws/<service>` (SSE-KMS's default key): visible, and its policy
//!   lets principals of the account use it only through that service (`kms:ViaService`);
//! - a service-owned key (SSE-S3's): never listed, and its policy refuses every API caller, so
//!   only the service itself, in-process, can use it.
//!
//! Both rotate yearly, as AWS managed keys do.

use crate::api::CreateKeyRequest;
use crate::model::{AliasRecord, KeyManager};
use crate::principals::Caller;
use crate::{Kms, KmsError, RequestContext};

const ROTATION_PERIOD_DAYS: u32 = 365;
const SECONDS_PER_DAY: i64 = 86_400;
/// Owned keys are found through alias records whose names can never be API aliases.
const OWNED_PREFIX: &str = "owned/";

/// Refuses every principal: an owned key is used in-process by its service only.
const OWNED_KEY_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Owned by an atrest service","Effect":"Deny","Principal":{"AWS":"*"},"Action":"kms:*","Resource":"*"}]}"#;

impl Kms {
    /// The id of `alias/aws/<service>`, created on first use, usable through `<service>`.
    pub fn aws_managed_key(&self, service: &str) -> Result<String, KmsError> {
        self.aws_managed_key_via(service, service)
    }

    /// The id of `alias/aws/<alias_service>`, usable through `<via_service>.<region>`: EBS's
    /// key is `alias/aws/ebs`, and EC2 is the service that uses it.
    pub fn aws_managed_key_via(
        &self,
        alias_service: &str,
        via_service: &str,
    ) -> Result<String, KmsError> {
        let service = alias_service;
        let via = format!("{via_service}.{}.amazonaws.com", self.region);
        let policy = aws_managed_policy(&self.account, &via);
        let description = format!(
            "Default key that protects my {} objects when no other key is defined",
            service.to_uppercase()
        );
        self.service_key(
            &format!("alias/aws/{service}"),
            KeyManager::Aws,
            policy,
            description,
        )
    }

    /// The id of the key `service` owns, created on first use.
    pub fn service_owned_key(&self, service: &str) -> Result<String, KmsError> {
        self.service_key(
            &format!("{OWNED_PREFIX}{service}"),
            KeyManager::Owned,
            OWNED_KEY_POLICY.to_owned(),
            format!("Owned by the atrest {service} service"),
        )
    }

    fn service_key(
        &self,
        alias: &str,
        manager: KeyManager,
        policy: String,
        description: String,
    ) -> Result<String, KmsError> {
        if let Some(found) = self.store.alias(alias)? {
            return Ok(found.target_key_id);
        }
        let _creating = self
            .service_keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(found) = self.store.alias(alias)? {
            return Ok(found.target_key_id);
        }
        let root = RequestContext::new(
            Caller {
                arn: self.root_arn().into(),
                account: self.account.as_str().into(),
                access_key_id: "".into(),
                user_id: None,
            },
            None,
            true,
        );
        let request = CreateKeyRequest {
            description: Some(description),
            policy: Some(policy),
            bypass_policy_lockout_safety_check: Some(true),
            ..CreateKeyRequest::default()
        };
        let key_id = self.create_key(&root, request)?.key_metadata.key_id;
        let now = self.clock.now();
        self.store.update_key(&key_id, &mut |record| {
            record.manager = manager;
            record.rotation_enabled = true;
            record.rotation_period_days = Some(ROTATION_PERIOD_DAYS);
            record.next_rotation = Some(now + i64::from(ROTATION_PERIOD_DAYS) * SECONDS_PER_DAY);
            Ok(())
        })?;
        let record = AliasRecord {
            target_key_id: key_id.clone(),
            created: now,
            updated: now,
        };
        self.store.create_alias(alias, &record)?;
        tracing::info!(%alias, %key_id, "created a service key");
        Ok(key_id)
    }
}

/// The policy AWS gives its managed keys (AWS KMS Developer Guide, "AWS managed keys").
fn aws_managed_policy(account: &str, via_service: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": format!("auto-{}-2", via_service.split('.').next().unwrap_or_default()),
        "Statement": [
            {
                "Sid": "Allow access through the service for all principals in the account that are authorized to use it",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:CallerAccount": account, "kms:ViaService": via_service}}
            },
            {
                "Sid": "Allow direct access to key metadata to the account",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
                "Action": ["kms:Describe*", "kms:Get*", "kms:List*"],
                "Resource": "*"
            }
        ]
    })
    .to_string()
}
