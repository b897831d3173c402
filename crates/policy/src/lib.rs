//! The AWS IAM policy language, as key policies and IAM identity policies use it.
//!
//! Follows the IAM User Guide's "IAM JSON policy elements reference" (Version, Statement, Sid,
//! Effect, Principal/NotPrincipal, Action/NotAction, Resource/NotResource, Condition) and its
//! condition-operator semantics, and the KMS Developer Guide's rules for combining a key policy
//! with IAM policies. Sans-io: a [`Policy`] is parsed once and evaluated against a
//! [`RequestFacts`] describing one request.

use std::borrow::Borrow;

mod condition;
mod context;
mod document;
mod matching;
mod variables;

pub use context::Context;
pub use document::{Effect, Policy, PolicyError};
/// `*`/`?` wildcard matching as IAM does it; EC2 filters use the same rules.
pub use matching::wildcard;

/// Who is asking, as policies see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `arn:aws:iam::ACCOUNT:root` or `arn:aws:iam::ACCOUNT:user/NAME`.
    pub arn: std::sync::Arc<str>,
    pub account: std::sync::Arc<str>,
    /// The IAM user's unique id (`AIDA...`); `None` for the account root.
    pub unique_id: Option<std::sync::Arc<str>>,
}

impl Principal {
    pub fn is_root(&self) -> bool {
        let account = self
            .arn
            .strip_prefix("arn:aws:iam::")
            .and_then(|rest| rest.strip_suffix(":root"));
        account == Some(&*self.account)
    }
}

/// One request to decide.
#[derive(Debug)]
pub struct RequestFacts<'a> {
    pub principal: &'a Principal,
    /// `service:Operation`, e.g. `kms:Encrypt`.
    pub action: &'a str,
    /// The resource ARN, e.g. the key's ARN.
    pub resource: &'a str,
    pub context: &'a Context,
}

/// What one policy says about one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    /// A matching Deny statement.
    pub explicit_deny: bool,
    /// A matching Allow statement that names the caller (or `*`) directly.
    pub allow: bool,
    /// A matching Allow statement that names the caller's account: in a key policy this
    /// delegates the decision to the account's IAM policies.
    pub allow_account: bool,
}

/// The final decision of AWS's evaluation logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

/// Combines a resource policy (the key policy) with the caller's identity policies, as KMS does
/// for a caller in the key's own account: an explicit Deny anywhere wins; otherwise the key
/// policy must allow the caller directly, or allow the account and an identity policy allow
/// the caller. The account root needs no identity policy: the account *is* the root.
pub fn decide<P: Borrow<Policy>>(
    resource_policy: &Policy,
    identity_policies: &[P],
    request: &RequestFacts<'_>,
) -> Decision {
    let resource = resource_policy.evaluate(request);
    let identity = identity_policies
        .iter()
        .map(|policy| policy.borrow().evaluate_identity(request));
    let mut identity_allow = false;
    for verdict in identity {
        if verdict.explicit_deny {
            return Decision::ExplicitDeny;
        }
        identity_allow |= verdict.allow;
    }
    if resource.explicit_deny {
        return Decision::ExplicitDeny;
    }
    let root = request.principal.is_root();
    if resource.allow || (resource.allow_account && (root || identity_allow)) {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// Combines a bucket-style resource policy with the caller's identity policies for a caller in
/// the resource's own account (S3 User Guide, "How Amazon S3 authorizes a request"): an
/// explicit Deny in either wins; otherwise an Allow in either suffices (the union). A resource
/// policy that names the account grants only the root, since users still need IAM's Allow.
pub fn decide_union<P: Borrow<Policy>>(
    resource_policy: Option<&Policy>,
    identity_policies: &[P],
    request: &RequestFacts<'_>,
) -> Decision {
    let root = request.principal.is_root();
    let mut allow = root;
    for policy in identity_policies {
        let verdict = policy.borrow().evaluate_identity(request);
        if verdict.explicit_deny {
            return Decision::ExplicitDeny;
        }
        allow |= verdict.allow;
    }
    if let Some(policy) = resource_policy {
        let verdict = policy.evaluate(request);
        if verdict.explicit_deny {
            return Decision::ExplicitDeny;
        }
        allow |= verdict.allow || (verdict.allow_account && root);
    }
    if allow {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// Decides an action on no particular resource (CreateKey, ListKeys, IAM calls): the root may;
/// a user needs an identity-policy Allow and no Deny.
pub fn decide_identity_only<P: Borrow<Policy>>(
    identity_policies: &[P],
    request: &RequestFacts<'_>,
) -> Decision {
    let mut allow = request.principal.is_root();
    for policy in identity_policies {
        let verdict = policy.borrow().evaluate_identity(request);
        if verdict.explicit_deny {
            return Decision::ExplicitDeny;
        }
        allow |= verdict.allow;
    }
    if allow {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ACCOUNT: &str = "111122223333";
    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn root() -> Principal {
        Principal {
            arn: format!("arn:aws:iam::{ACCOUNT}:root").into(),
            account: ACCOUNT.into(),
            unique_id: None,
        }
    }

    fn user(name: &str) -> Principal {
        Principal {
            arn: format!("arn:aws:iam::{ACCOUNT}:user/{name}").into(),
            account: ACCOUNT.into(),
            unique_id: Some(format!("AIDA{:A<16}", name.to_ascii_uppercase()).into()),
        }
    }

    fn decide_for(
        key_policy: &str,
        identity: &[&str],
        principal: &Principal,
        action: &str,
        context: &Context,
    ) -> Decision {
        let key_policy = Policy::parse_resource_policy(key_policy).unwrap();
        let identity: Vec<Policy> = identity
            .iter()
            .map(|p| Policy::parse_identity_policy(p).unwrap())
            .collect();
        decide(
            &key_policy,
            &identity,
            &RequestFacts {
                principal,
                action,
                resource: KEY,
                context,
            },
        )
    }

    /// The default key policy (KMS Developer Guide, "Default key policy").
    const DEFAULT_POLICY: &str = r#"{
        "Version": "2012-10-17", "Id": "key-default-1",
        "Statement": [{"Sid": "Enable IAM User Permissions", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"}]}"#;

    #[test]
    fn the_default_policy_allows_root_and_delegates_users_to_iam() {
        let none = Context::new();
        assert_eq!(
            decide_for(DEFAULT_POLICY, &[], &root(), "kms:Encrypt", &none),
            Decision::Allow
        );
        assert_eq!(
            decide_for(DEFAULT_POLICY, &[], &user("alice"), "kms:Encrypt", &none),
            Decision::ImplicitDeny
        );
        let iam = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow",
            "Action": ["kms:Encrypt", "kms:GenerateDataKey*"], "Resource": "arn:aws:kms:*:111122223333:key/*"}}"#;
        assert_eq!(
            decide_for(
                DEFAULT_POLICY,
                &[iam],
                &user("alice"),
                "kms:GenerateDataKeyWithoutPlaintext",
                &none
            ),
            Decision::Allow
        );
        assert_eq!(
            decide_for(DEFAULT_POLICY, &[iam], &user("alice"), "kms:Decrypt", &none),
            Decision::ImplicitDeny
        );
        let other_account = Principal {
            arn: "arn:aws:iam::444455556666:root".into(),
            account: "444455556666".into(),
            unique_id: None,
        };
        assert_eq!(
            decide_for(DEFAULT_POLICY, &[], &other_account, "kms:Encrypt", &none),
            Decision::ImplicitDeny
        );
    }

    /// "Allows key users to use the KMS key" from the default console key policy.
    #[test]
    fn a_key_policy_can_allow_a_user_without_iam() {
        let policy = r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "Allow use of the key", "Effect": "Allow",
             "Principal": {"AWS": ["arn:aws:iam::111122223333:user/ExampleUser"]},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
             "Resource": "*"}]}"#;
        let none = Context::new();
        assert_eq!(
            decide_for(
                policy,
                &[],
                &user("ExampleUser"),
                "kms:ReEncryptFrom",
                &none
            ),
            Decision::Allow
        );
        assert_eq!(
            decide_for(
                policy,
                &[],
                &user("ExampleUser"),
                "kms:ScheduleKeyDeletion",
                &none
            ),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decide_for(policy, &[], &user("Other"), "kms:Encrypt", &none),
            Decision::ImplicitDeny
        );
        // No statement names the account, so not even the root gets in.
        assert_eq!(
            decide_for(policy, &[], &root(), "kms:Encrypt", &none),
            Decision::ImplicitDeny
        );
    }

    /// kms:EncryptionContext:context-key example (KMS Developer Guide, "Condition keys").
    #[test]
    fn encryption_context_conditions() {
        let policy = r#"{"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/app"}, "Action": "kms:Decrypt",
             "Resource": "*", "Condition": {"StringEquals": {"kms:EncryptionContext:AppName": "ExampleApp"}}},
            {"Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
             "Condition": {"Null": {"kms:EncryptionContextKeys": "true"}}}]}"#;
        let mut with_app = Context::new();
        with_app
            .set("kms:EncryptionContext:AppName", "ExampleApp")
            .set_many("kms:EncryptionContextKeys", ["AppName".into()]);
        let mut other_app = Context::new();
        other_app
            .set("kms:EncryptionContext:AppName", "Other")
            .set_many("kms:EncryptionContextKeys", ["AppName".into()]);
        assert_eq!(
            decide_for(policy, &[], &user("app"), "kms:Decrypt", &with_app),
            Decision::Allow
        );
        assert_eq!(
            decide_for(policy, &[], &user("app"), "kms:Decrypt", &other_app),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decide_for(policy, &[], &root(), "kms:Encrypt", &Context::new()),
            Decision::ExplicitDeny
        );
        assert_eq!(
            decide_for(policy, &[], &root(), "kms:Encrypt", &with_app),
            Decision::Allow
        );
    }

    /// The bucket policy that enforces SSE-KMS (S3 User Guide, "Requiring server-side
    /// encryption"), plus an Allow for a user that has no IAM policy of its own.
    #[test]
    fn bucket_policies_are_a_union_with_iam_and_their_deny_binds_the_root() {
        let bucket_policy = Policy::parse_resource_policy(
            r#"{"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/*",
             "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}},
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/reader"},
             "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]}"#,
        )
        .unwrap();
        let decide_s3 = |principal: &Principal, action: &str, sse: Option<&str>| {
            let mut context = Context::new();
            if let Some(sse) = sse {
                context.set("s3:x-amz-server-side-encryption", sse);
            }
            let no_iam: [Policy; 0] = [];
            decide_union(
                Some(&bucket_policy),
                &no_iam,
                &RequestFacts {
                    principal,
                    action,
                    resource: "arn:aws:s3:::b/k",
                    context: &context,
                },
            )
        };
        assert_eq!(
            decide_s3(&root(), "s3:PutObject", Some("aws:kms")),
            Decision::Allow
        );
        assert_eq!(
            decide_s3(&root(), "s3:PutObject", Some("AES256")),
            Decision::ExplicitDeny
        );
        assert_eq!(
            decide_s3(&root(), "s3:PutObject", None),
            Decision::ExplicitDeny
        );
        assert_eq!(
            decide_s3(&user("reader"), "s3:GetObject", None),
            Decision::Allow
        );
        assert_eq!(
            decide_s3(&user("other"), "s3:GetObject", None),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn not_principal_and_not_action() {
        let policy = r#"{"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::111122223333:user/admin"},
             "NotAction": ["kms:Encrypt", "kms:Decrypt", "kms:Describe*"], "Resource": "*"}]}"#;
        let none = Context::new();
        assert_eq!(
            decide_for(
                policy,
                &[],
                &user("admin"),
                "kms:ScheduleKeyDeletion",
                &none
            ),
            Decision::ImplicitDeny
        );
        let admin_iam = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}}"#;
        assert_eq!(
            decide_for(
                policy,
                &[admin_iam],
                &user("admin"),
                "kms:ScheduleKeyDeletion",
                &none
            ),
            Decision::Allow
        );
        assert_eq!(
            decide_for(
                policy,
                &[admin_iam],
                &user("bob"),
                "kms:ScheduleKeyDeletion",
                &none
            ),
            Decision::ExplicitDeny
        );
        assert_eq!(
            decide_for(policy, &[admin_iam], &user("bob"), "kms:DescribeKey", &none),
            Decision::Allow
        );
    }

    #[test]
    fn malformed_policies_name_their_fault() {
        let cases = [
            ("not json", "not valid JSON"),
            (r#"{"Statement": []}"#, "at least one statement"),
            (r#"{"Version": "2020-01-01", "Statement": {}}"#, "Version"),
            (
                r#"{"Statement": {"Effect": "Permit", "Principal": "*", "Action": "kms:*", "Resource": "*"}}"#,
                "Effect",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}}"#,
                "no Principal",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Resource": "*"}}"#,
                "no Action",
            ),
            (
                r#"{"Statement": {"Sid": "x", "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*",
                "Condition": {"StringEqualz": {"a": "b"}}}}"#,
                "Statement 1 (Sid x): Unknown condition operator",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "kms:*", "Resource": "*"}}"#,
                "invalid principal",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Extra": 1}}"#,
                "unknown element Extra",
            ),
        ];
        for (text, expected) in cases {
            let error = Policy::parse_resource_policy(text).unwrap_err();
            assert!(error.to_string().contains(expected), "{text}: {error}");
        }
        let with_principal = r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}}"#;
        assert!(Policy::parse_identity_policy(with_principal).is_err());
    }

    fn statement(effect: &str, principal: &str, action: &str) -> String {
        format!(
            r#"{{"Effect": "{effect}", "Principal": {{"AWS": "{principal}"}}, "Action": "{action}", "Resource": "*"}}"#
        )
    }

    /// The IAM User Guide's home-directory example: one policy for every user, each confined to
    /// `home/<their user name>/` by `${aws:username}` in the Resource and in a condition.
    #[test]
    fn policy_variables_confine_each_user_to_their_own_prefix() {
        let policy = |version: &str| {
            Policy::parse_identity_policy(&format!(
                r#"{{"Version": "{version}", "Statement": [
                    {{"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
                      "Resource": "arn:aws:s3:::shared/home/${{aws:username}}/*"}},
                    {{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::shared",
                      "Condition": {{"StringLike": {{"s3:prefix": ["home/${{aws:username}}/*"]}}}}}},
                    {{"Effect": "Allow", "Action": "s3:GetObjectTagging",
                      "Resource": "arn:aws:s3:::shared/public/*",
                      "Condition": {{"DateLessThan": {{"aws:CurrentTime": "${{aws:EpochTime, '2000-01-01T00:00:00Z'}}"}}}}}}
                ]}}"#
            ))
            .unwrap()
        };
        let current = policy("2012-10-17");
        assert!(current.mentions("aws:username") && current.has_conditions());
        let allowed =
            |policy: &Policy, name: Option<&str>, action: &str, resource: &str, prefix: &str| {
                let mut context = Context::new();
                if let Some(name) = name {
                    context.set("aws:username", name);
                }
                context.set("s3:prefix", prefix);
                context.set("aws:CurrentTime", "2026-11-29T00:00:00Z");
                let caller = user(name.unwrap_or("nobody"));
                policy
                    .evaluate_identity(&RequestFacts {
                        principal: &caller,
                        action,
                        resource,
                        context: &context,
                    })
                    .allow
            };
        let own = "arn:aws:s3:::shared/home/alice/notes.txt";
        let other = "arn:aws:s3:::shared/home/bob/notes.txt";
        assert!(allowed(&current, Some("alice"), "s3:GetObject", own, ""));
        assert!(!allowed(&current, Some("alice"), "s3:GetObject", other, ""));
        assert!(allowed(&current, Some("bob"), "s3:PutObject", other, ""));
        // No user name in the request (the account root): the variable matches nothing.
        assert!(!allowed(&current, None, "s3:GetObject", own, ""));
        let bucket = "arn:aws:s3:::shared";
        assert!(allowed(
            &current,
            Some("alice"),
            "s3:ListBucket",
            bucket,
            "home/alice/"
        ));
        assert!(!allowed(
            &current,
            Some("alice"),
            "s3:ListBucket",
            bucket,
            "home/bob/"
        ));
        // A date value with a variable is checked once substituted: here the default, so the
        // current time is not before it.
        let public = "arn:aws:s3:::shared/public/a";
        assert!(!allowed(
            &current,
            Some("alice"),
            "s3:GetObjectTagging",
            public,
            ""
        ));
        // Before the 2012-10-17 language there are no variables: `${aws:username}` is text.
        let old = Policy::parse_identity_policy(
            r#"{"Version": "2008-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::shared/home/${aws:username}/*"}}"#,
        )
        .unwrap();
        assert!(!old.has_conditions());
        assert!(!allowed(&old, Some("alice"), "s3:GetObject", own, ""));
        assert!(allowed(
            &old,
            Some("alice"),
            "s3:GetObject",
            "arn:aws:s3:::shared/home/${aws:username}/x",
            ""
        ));
    }

    proptest! {
        /// Whatever else any policy says, a matching Deny statement anywhere means Deny.
        #[test]
        fn an_explicit_deny_always_wins(
            allows in proptest::collection::vec((0usize..4, 0usize..4), 0..6),
            deny_principal in 0usize..3,
            deny_in_identity in any::<bool>(),
            caller_is_root in any::<bool>(),
        ) {
            let principals = ["*", ACCOUNT, "arn:aws:iam::111122223333:root", "arn:aws:iam::111122223333:user/alice"];
            let actions = ["kms:*", "kms:Encrypt", "kms:Enc*", "*"];
            let mut statements: Vec<String> =
                allows.iter().map(|(p, a)| statement("Allow", principals[*p], actions[*a])).collect();
            // A Deny statement whose Principal matches the caller: "*", the account, or the caller.
            let caller_entry = if caller_is_root { principals[2] } else { principals[3] };
            let deny_principal = [principals[0], principals[1], caller_entry][deny_principal];
            if !deny_in_identity {
                statements.push(statement("Deny", deny_principal, "kms:Encrypt"));
            }
            let key_policy = format!(r#"{{"Version": "2012-10-17", "Statement": [{}]}}"#,
                if statements.is_empty() { statement("Allow", "*", "kms:Decrypt") } else { statements.join(",") });
            let mut identity = vec![r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#.to_owned()];
            if deny_in_identity {
                identity.push(r#"{"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "kms:Encrypt", "Resource": "*"}}"#.to_owned());
            }
            let identity_refs: Vec<&str> = identity.iter().map(String::as_str).collect();
            let caller = if caller_is_root { root() } else { user("alice") };
            let decision = decide_for(&key_policy, &identity_refs, &caller, "kms:Encrypt", &Context::new());
            // The root's identity policies do not exist in AWS, but a Deny still binds the test.
            prop_assert_eq!(decision, Decision::ExplicitDeny);
        }
    }

    #[test]
    fn a_bound_user_principal_matches_only_the_user_with_that_id() {
        let policy = Policy::parse_resource_policy(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/ivan"},"Action":"kms:Encrypt","Resource":"*"}]}"#,
        )
        .unwrap();
        assert_eq!(
            policy.user_principal_arns(),
            ["arn:aws:iam::111122223333:user/ivan"]
        );
        let ivan = user("ivan");
        let ids = std::collections::BTreeMap::from([(
            "arn:aws:iam::111122223333:user/ivan".to_owned(),
            ivan.unique_id.as_deref().unwrap().to_owned(),
        )]);
        let bound = policy.bind_principals(&ids);
        let none = Context::new();
        let ask = |policy: &Policy, principal: &Principal| {
            let principal = principal.clone();
            let facts = RequestFacts {
                principal: &principal,
                action: "kms:Encrypt",
                resource: KEY,
                context: &none,
            };
            decide::<Policy>(policy, &[], &facts)
        };
        assert_eq!(ask(&bound, &ivan), Decision::Allow);
        let mut recreated = ivan.clone();
        recreated.unique_id = Some("AIDAZZZZZZZZZZZZZZZZ".into());
        assert_eq!(ask(&bound, &recreated), Decision::ImplicitDeny);
        // Unbound (stored before bindings), the ARN alone decides.
        assert_eq!(ask(&policy, &recreated), Decision::Allow);
        // A unique id names the user itself.
        let by_id = Policy::parse_resource_policy(&format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{}"}},"Action":"kms:Encrypt","Resource":"*"}}]}}"#,
            ivan.unique_id.as_deref().unwrap()
        ))
        .unwrap();
        assert_eq!(ask(&by_id, &ivan), Decision::Allow);
        assert_eq!(ask(&by_id, &recreated), Decision::ImplicitDeny);
    }
}
