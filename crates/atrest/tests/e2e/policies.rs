use aws_sdk_kms::primitives::Blob;

use crate::harness::{Server, assert_code, error_code, new_key};

const ROOT: &str = "arn:aws:iam::000000000000:root";

fn policy(statements: &[String]) -> String {
    format!(
        r#"{{"Version": "2012-10-17", "Statement": [{}]}}"#,
        statements.join(",")
    )
}

fn allow(principal: &str, actions: &str, condition: &str) -> String {
    let condition = if condition.is_empty() {
        String::new()
    } else {
        format!(r#", "Condition": {condition}"#)
    };
    format!(
        r#"{{"Effect": "Allow", "Principal": {{"AWS": "{principal}"}}, "Action": {actions}, "Resource": "*"{condition}}}"#
    )
}

fn deny(principal: &str, actions: &str) -> String {
    format!(
        r#"{{"Effect": "Deny", "Principal": {{"AWS": "{principal}"}}, "Action": {actions}, "Resource": "*"}}"#
    )
}

#[tokio::test]
async fn the_default_policy_is_awss_and_there_is_only_one() {
    let server = Server::start();
    let kms = server.client();
    let key = new_key(&kms).await;
    let got = kms
        .get_key_policy()
        .key_id(&key)
        .policy_name("default")
        .send()
        .await
        .unwrap();
    let document: serde_json::Value = serde_json::from_str(got.policy().unwrap()).unwrap();
    assert_eq!(document["Statement"][0]["Principal"]["AWS"], ROOT);
    assert_eq!(document["Statement"][0]["Action"], "kms:*");
    let names = kms.list_key_policies().key_id(&key).send().await.unwrap();
    assert_eq!(names.policy_names(), ["default"]);
    assert_code(
        kms.get_key_policy()
            .key_id(&key)
            .policy_name("other")
            .send()
            .await,
        "NotFoundException",
    );
}

#[tokio::test]
async fn malformed_policies_and_lockouts_are_refused() {
    let server = Server::start();
    let kms = server.client();
    let key = new_key(&kms).await;
    for bad in [
        "not json".to_owned(),
        r#"{"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}"#.to_owned(),
        policy(&[allow(ROOT, r#""kms:*""#, r#"{"StringEqualz": {"a": "b"}}"#)]),
    ] {
        let error = kms
            .put_key_policy()
            .key_id(&key)
            .policy(bad.clone())
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            error_code(&error),
            "MalformedPolicyDocumentException",
            "{bad}"
        );
    }
    // A policy that no longer lets the root change it is refused, unless the check is bypassed.
    let lockout = policy(&[allow(ROOT, r#""kms:Encrypt""#, "")]);
    assert_code(
        kms.put_key_policy()
            .key_id(&key)
            .policy(lockout.clone())
            .send()
            .await,
        "MalformedPolicyDocumentException",
    );
    assert_code(
        kms.create_key().policy(lockout.clone()).send().await,
        "MalformedPolicyDocumentException",
    );
    kms.put_key_policy()
        .key_id(&key)
        .policy(lockout)
        .bypass_policy_lockout_safety_check(true)
        .send()
        .await
        .unwrap();
    kms.encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"still allowed"))
        .send()
        .await
        .unwrap();
    let error = kms.get_key_policy().key_id(&key).send().await.unwrap_err();
    assert_eq!(error_code(&error), "AccessDeniedException");
    use aws_sdk_kms::error::ProvideErrorMetadata;
    let message = error
        .as_service_error()
        .and_then(|e| e.message())
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains(&format!("User: {ROOT} is not authorized to perform: kms:GetKeyPolicy on resource: arn:aws:kms:us-east-1:000000000000:key/{key}")), "{message}");
}

#[tokio::test]
async fn explicit_deny_and_encryption_context_conditions_decide() {
    let server = Server::start();
    let kms = server.client();
    let statements = [
        allow(ROOT, r#""kms:*""#, ""),
        deny(ROOT, r#""kms:ScheduleKeyDeletion""#),
        r#"{"Effect": "Deny", "Principal": "*", "Action": ["kms:Encrypt", "kms:GenerateDataKey"], "Resource": "*",
            "Condition": {"StringNotEquals": {"kms:EncryptionContext:tenant": "acme"}}}"#
            .to_owned(),
    ];
    let key = kms
        .create_key()
        .policy(policy(&statements))
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();
    assert_code(
        kms.schedule_key_deletion()
            .key_id(&key)
            .pending_window_in_days(7)
            .send()
            .await,
        "AccessDeniedException",
    );
    kms.encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x"))
        .encryption_context("tenant", "acme")
        .send()
        .await
        .unwrap();
    for context in [Some("other"), None] {
        let mut request = kms.encrypt().key_id(&key).plaintext(Blob::new(b"x"));
        if let Some(tenant) = context {
            request = request.encryption_context("tenant", tenant);
        }
        assert_code(request.send().await, "AccessDeniedException");
    }
    assert_code(
        kms.generate_data_key()
            .key_id(&key)
            .number_of_bytes(32)
            .send()
            .await,
        "AccessDeniedException",
    );
}
