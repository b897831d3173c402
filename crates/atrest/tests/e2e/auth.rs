use aws_sdk_kms::primitives::Blob;

use crate::harness::{ROOT_ACCESS_KEY, Server, assert_code, error_code, raw_request};

#[tokio::test]
async fn sigv4_failures_get_aws_error_types() {
    let server = Server::start();
    assert_code(
        server
            .client_as("AKIAUNKNOWNUNKNOWN00", "whatever-secret-123")
            .list_keys()
            .send()
            .await,
        "UnrecognizedClientException",
    );
    assert_code(
        server
            .client_as(ROOT_ACCESS_KEY, "not-the-right-secret-at-all")
            .list_keys()
            .send()
            .await,
        "InvalidSignatureException",
    );

    let body = "{}";
    let unsigned = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: TrentService.ListKeys\r\n\
         Content-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let response = raw_request(server.port, &unsigned).unwrap();
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(
        response.contains("\"__type\":\"MissingAuthenticationToken\""),
        "{response}"
    );

    let stale = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: TrentService.ListKeys\r\nX-Amz-Date: 20200101T000000Z\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={ROOT_ACCESS_KEY}/20200101/us-east-1/kms/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature=00\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let response = raw_request(server.port, &stale).unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(
        response.contains("InvalidSignatureException") && response.contains("Signature expired"),
        "{response}"
    );

    let wrong_service = stale.replace("20200101T000000Z", &now_amz_date()).replace(
        "20200101/us-east-1/kms",
        &format!("{}/us-east-1/s3", &now_amz_date()[..8]),
    );
    let response = raw_request(server.port, &wrong_service).unwrap();
    assert!(
        response.contains("InvalidSignatureException") && response.contains("'kms'"),
        "{response}"
    );

    let health = raw_request(
        server.port,
        "GET /_atrest/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(health.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn users_added_offline_can_use_keys_and_their_secrets_stay_sealed() {
    let mut server = Server::start();
    let key = server
        .client()
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();

    let while_running = server.run_cli(&["user", "add", "alice"]);
    assert!(
        !while_running.status.success(),
        "user add must refuse while the server holds the store"
    );
    assert!(String::from_utf8_lossy(&while_running.stderr).contains("in use"));

    server.kill9();
    let output = server.run_cli(&["user", "add", "alice"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let user: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(user["UserName"], "alice");
    assert_eq!(user["Arn"], "arn:aws:iam::000000000000:user/alice");
    let access_key = user["AccessKeyId"].as_str().unwrap().to_owned();
    let secret = user["SecretAccessKey"].as_str().unwrap().to_owned();
    let again = server.run_cli(&["user", "add", "alice"]);
    assert!(!again.status.success());

    let chosen = server.run_cli(&[
        "user",
        "add",
        "bob",
        "--access-key-id",
        "AKIABOBBOBBOBBOB0001",
        "--secret-access-key",
        "bob-secret-bob-secret-bob-secret",
    ]);
    assert!(
        chosen.status.success(),
        "{}",
        String::from_utf8_lossy(&chosen.stderr)
    );

    server.spawn().unwrap();
    let alice = server.client_as(&access_key, &secret);
    // The default key policy delegates to IAM, and alice has no IAM policy yet.
    let denied = alice
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&denied), "AccessDeniedException");
    let policy = format!(
        r#"{{"Version": "2012-10-17", "Statement": [
            {{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::000000000000:root"}}, "Action": "kms:*", "Resource": "*"}},
            {{"Effect": "Allow", "Principal": {{"AWS": "{}"}}, "Action": "kms:Encrypt", "Resource": "*"}},
            {{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::000000000000:user/bob"}}, "Action": "kms:Decrypt", "Resource": "*"}}]}}"#,
        user["Arn"].as_str().unwrap()
    );
    server
        .client()
        .put_key_policy()
        .key_id(&key)
        .policy(policy)
        .send()
        .await
        .unwrap();
    let encrypted = alice
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"alice's data"))
        .send()
        .await
        .unwrap();
    let bob = server.client_as("AKIABOBBOBBOBBOB0001", "bob-secret-bob-secret-bob-secret");
    let decrypted = bob
        .decrypt()
        .ciphertext_blob(encrypted.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(decrypted.plaintext().unwrap().as_ref(), b"alice's data");

    server.assert_not_on_disk(secret.as_bytes(), "alice's secret access key");
    server.assert_not_on_disk(
        b"bob-secret-bob-secret-bob-secret",
        "bob's secret access key",
    );
}

#[tokio::test]
async fn generated_root_credentials_are_saved_once_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let mut server = Server::start_with_env(&[
        ("ATREST_ROOT_ACCESS_KEY_ID", ""),
        ("ATREST_ROOT_SECRET_ACCESS_KEY", ""),
    ]);
    let path = server.data_dir().join("root-credentials.json");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let root: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(root["Arn"], "arn:aws:iam::000000000000:root");
    let access_key = root["AccessKeyId"].as_str().unwrap();
    assert!(access_key.starts_with("AKIA") && access_key.len() == 20);
    let kms = server.client_as(access_key, root["SecretAccessKey"].as_str().unwrap());
    kms.create_key().send().await.unwrap();

    // A restart neither makes new credentials nor rewrites the file.
    let before = std::fs::read(&path).unwrap();
    server.kill9();
    server.spawn().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn credentials_from_the_environment_are_never_written_to_disk() {
    let server = Server::start();
    assert!(!server.data_dir().join("root-credentials.json").exists());
    server.assert_not_on_disk(
        crate::harness::ROOT_SECRET.as_bytes(),
        "the root secret access key",
    );
}

fn now_amz_date() -> String {
    let output = std::process::Command::new("date")
        .args(["-u", "+%Y%m%dT%H%M%SZ"])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}
