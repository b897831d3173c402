use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kms::primitives::Blob;

use crate::harness::{ROOT_ACCESS_KEY, Server, error_code, new_key, raw_request};

fn records(server: &Server, filters: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["audit", "search"];
    args.extend_from_slice(filters);
    let output = server.run_cli(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn verify(server: &Server) -> (bool, String) {
    let output = server.run_cli(&["audit", "verify"]);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn every_request_is_recorded_without_secrets() {
    let mut server = Server::start();
    let kms = server.client();
    let key = new_key(&kms).await;
    let secret = b"audited plaintext that must never be logged";
    let encrypted = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(&secret[..]))
        .encryption_context("purpose", "audit-test")
        .send()
        .await
        .unwrap();
    let data_key = kms
        .generate_data_key()
        .key_id(&key)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    let failed = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(vec![0u8; 5000]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&failed), "ValidationException");
    let denied = server
        .client_as("AKIAUNKNOWNUNKNOWN00", "whatever-secret-123")
        .list_keys()
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&denied), "UnrecognizedClientException");
    let unsigned = "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: TrentService.ListKeys\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    raw_request(server.port, unsigned).unwrap();

    let for_key = records(&server, &["--key", &key]);
    let names: Vec<&str> = for_key
        .iter()
        .map(|r| r["event_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["CreateKey", "Encrypt", "GenerateDataKey", "Encrypt"],
        "{for_key:#?}"
    );
    let encrypt = &for_key[1];
    assert_eq!(encrypt["caller_arn"], "arn:aws:iam::000000000000:root");
    assert_eq!(encrypt["access_key_id"], ROOT_ACCESS_KEY);
    assert_eq!(encrypt["source_ip"], "127.0.0.1");
    assert_eq!(encrypt["encryption_context"]["purpose"], "audit-test");
    assert!(encrypt["request_id"].as_str().unwrap().len() == 36);
    assert!(encrypt.get("error_code").is_none());
    assert!(encrypt["request_parameters"].get("Plaintext").is_none());
    assert_eq!(for_key[3]["error_code"], "ValidationException");

    let unknown = records(&server, &["--principal", "AKIAUNKNOWNUNKNOWN00"]);
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0]["error_code"], "UnrecognizedClientException");
    let all = records(&server, &[]);
    assert!(
        all.iter()
            .any(|r| r["error_code"] == "MissingAuthenticationToken")
    );

    server.terminate();
    assert!(verify(&server).0);
    server.assert_not_on_disk(secret, "an Encrypt plaintext");
    server.assert_not_on_disk(data_key.plaintext().unwrap().as_ref(), "a data key");
    let ciphertext = encrypted.ciphertext_blob().unwrap().as_ref();
    let log = std::fs::read(server.data_dir().join("audit/audit.log")).unwrap();
    assert!(
        !log.windows(16)
            .any(|w| w == &ciphertext[ciphertext.len() - 16..]),
        "ciphertext is not logged"
    );
}

#[tokio::test]
async fn audit_verify_names_a_modified_record() {
    let mut server = Server::start();
    let kms = server.client();
    for _ in 0..3 {
        kms.create_key().send().await.unwrap();
    }
    server.terminate();
    assert!(verify(&server).0);
    let path = server.data_dir().join("audit/audit.log");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[1] = lines[1].replace("CreateKey", "DeleteKey");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let (ok, report) = verify(&server);
    assert!(!ok);
    assert!(
        report.contains("TAMPERED") && report.contains("record 2 (line 2) was modified"),
        "{report}"
    );
}

/// kill -9 under load: the log still verifies, and every acknowledged Encrypt is on record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_leaves_a_log_that_verifies() {
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
    let acknowledged = Arc::new(Mutex::new(0usize));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let kms = server.client();
        let key = key.clone();
        let acknowledged = Arc::clone(&acknowledged);
        workers.push(tokio::spawn(async move {
            while kms
                .encrypt()
                .key_id(&key)
                .plaintext(Blob::new(b"load"))
                .send()
                .await
                .is_ok()
            {
                *acknowledged.lock().unwrap() += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    for worker in workers {
        worker.await.unwrap();
    }
    let acknowledged = *acknowledged.lock().unwrap();
    assert!(
        acknowledged > 10,
        "the load ran ({acknowledged} acknowledged)"
    );
    let (ok, report) = verify(&server);
    assert!(ok, "{report}");
    let encrypts = records(&server, &["--key", &key])
        .iter()
        .filter(|r| r["event_name"] == "Encrypt")
        .count();
    assert!(
        encrypts >= acknowledged,
        "{encrypts} records for {acknowledged} acknowledged Encrypts"
    );

    // The server restarts on the same log and keeps the chain going.
    server.spawn().unwrap();
    server
        .client()
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    server.terminate();
    assert!(verify(&server).0);
}

/// Every S3 request is recorded, naming the object and each KMS key it used; the audit log
/// never holds object data.
#[tokio::test(flavor = "multi_thread")]
async fn s3_requests_are_recorded_with_the_keys_they_used() {
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::ServerSideEncryption;

    let mut server = Server::start_s3();
    let s3 = server.s3_client();
    let key = new_key(&server.client()).await;
    s3.create_bucket().bucket("audited").send().await.unwrap();
    let body = b"<atrest-audited-object-data> never in the log".to_vec();
    s3.put_object()
        .bucket("audited")
        .key("doc")
        .body(ByteStream::from(body.clone()))
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key)
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("audited")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().to_vec(),
        body
    );
    let missing = s3
        .get_object()
        .bucket("audited")
        .key("missing")
        .send()
        .await;
    assert!(missing.is_err());

    let used_key = records(&server, &["--key", &key]);
    let s3_events: Vec<_> = used_key
        .iter()
        .filter(|record| record["event_source"] == "s3.amazonaws.com")
        .map(|record| record["event_name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(s3_events, ["PutObject", "GetObject"], "{used_key:#?}");
    let put = used_key
        .iter()
        .find(|record| record["event_name"] == "PutObject")
        .unwrap();
    assert_eq!(put["caller_arn"], "arn:aws:iam::000000000000:root");
    assert_eq!(put["resources"][0], "arn:aws:s3:::audited/doc");
    assert_eq!(put["request_parameters"]["bucketName"], "audited");
    let all = records(&server, &[]);
    let failed = all
        .iter()
        .find(|record| record["request_parameters"]["key"] == "missing")
        .unwrap();
    assert_eq!(failed["error_code"], "HTTP 404");
    // The head is written as the server stops (until then a verify sees a log still growing).
    server.terminate();
    let (ok, report) = verify(&server);
    assert!(ok, "{report}");
    server.assert_not_on_disk(b"<atrest-audited-object-data>", "object data");
}

/// `--audit-log off` (what the load benchmark compares against) really records nothing, and
/// the default server records the same request.
#[tokio::test]
async fn audit_log_off_records_nothing_and_default_records_everything() {
    let unaudited =
        Server::start_in(tempfile::tempdir().unwrap(), &[], &["--audit-log", "off"]).unwrap();
    let key = new_key(&unaudited.client()).await;
    let log = unaudited
        .data_dir()
        .join("audit")
        .join(atrest_audit::LOG_FILE);
    assert!(
        !log.exists(),
        "{} was written with the log off",
        log.display()
    );

    let audited = Server::start();
    let key_on = new_key(&audited.client()).await;
    assert!(
        records(&audited, &["--key", &key_on])
            .iter()
            .any(|record| record["event_name"] == "CreateKey"),
        "the default server did not record CreateKey"
    );
    assert_ne!(key, key_on);
}
