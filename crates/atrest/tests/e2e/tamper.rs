use aws_sdk_kms::primitives::Blob;

use crate::harness::{Server, assert_code, new_key};

#[tokio::test]
async fn a_flipped_byte_in_a_stored_wrapped_key_breaks_only_that_key() {
    let mut server = Server::start();
    let kms = server.client();
    let victim = new_key(&kms).await;
    let bystander = new_key(&kms).await;
    let blob = kms
        .encrypt()
        .key_id(&victim)
        .plaintext(Blob::new(b"victim data"))
        .send()
        .await
        .unwrap();
    let blob = blob.ciphertext_blob().unwrap().clone();
    // A clean stop: after kill -9, redb verifies page checksums on open and refuses the whole
    // file if any byte changed, which would test redb rather than our wrapped-key check.
    server.terminate();

    let path = server.data_dir().join("metadata.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    let record_start = format!("{{\"key_id\":\"{victim}\"");
    let wrapped_marker = b"\"wrapped\":\"";
    let mut flipped = 0;
    let mut from = 0;
    while let Some(at) = find(&bytes[from..], record_start.as_bytes()) {
        let record = from + at;
        let wrapped =
            record + find(&bytes[record..], wrapped_marker).unwrap() + wrapped_marker.len();
        let target = wrapped + 40; // inside the sealed material, past the format and kind bytes
        bytes[target] = if bytes[target] == b'0' { b'1' } else { b'0' };
        flipped += 1;
        from = record + 1;
    }
    assert!(flipped > 0, "found the victim's record in the store");
    std::fs::write(&path, bytes).unwrap();

    server.spawn().unwrap();
    let kms = server.client();
    assert_code(
        kms.encrypt()
            .key_id(&victim)
            .plaintext(Blob::new(b"x"))
            .send()
            .await,
        "KMSInternalException",
    );
    assert_code(
        kms.decrypt().ciphertext_blob(blob).send().await,
        "KMSInternalException",
    );
    // The failure is recorded once as a tamper event that `atrest hsm status` shows.
    let output = server.run_cli(&["hsm", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let events = status["tamper_events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{status}");
    assert!(
        events[0]["what"].as_str().unwrap().contains(&victim),
        "{status}"
    );
    // The whole key record fails its integrity check (the wrapped key is inside it), so no
    // part of it is used; the failure is reported, not a crash: every other key still works.
    assert_code(
        kms.describe_key().key_id(&victim).send().await,
        "KMSInternalException",
    );
    let ok = kms
        .encrypt()
        .key_id(&bystander)
        .plaintext(Blob::new(b"fine"))
        .send()
        .await
        .unwrap();
    kms.decrypt()
        .ciphertext_blob(ok.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_tampered_keystore_refuses_to_unseal_with_a_clear_error() {
    let mut server = Server::start();
    server.client().create_key().send().await.unwrap();
    server.kill9();
    let path = server.data_dir().join("hsm/keystore.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let marker = "\"sealed_root_key\": \"";
    let at = text.find(marker).unwrap() + marker.len() + 20;
    let replacement = if &text[at..=at] == "a" { "b" } else { "a" };
    std::fs::write(
        &path,
        format!("{}{}{}", &text[..at], replacement, &text[at + 1..]),
    )
    .unwrap();
    let stderr = server.spawn().unwrap_err();
    assert!(stderr.contains("failed its integrity check"), "{stderr}");
    assert!(stderr.contains("tampered"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn zeroize_makes_every_key_unrecoverable_and_the_server_says_so() {
    let mut server = Server::start();
    server.client().create_key().send().await.unwrap();
    // Refused while the server uses the data dir, confirmed or not.
    let running = server.run_cli(&["hsm", "zeroize", "--yes"]);
    let stderr = String::from_utf8_lossy(&running.stderr);
    assert!(
        !running.status.success() && stderr.contains("stop it first"),
        "{stderr}"
    );
    server.client().create_key().send().await.unwrap();
    server.kill9();
    // Not confirmed (no --yes, and no terminal to type the path at): refused.
    let unconfirmed = server.run_cli(&["hsm", "zeroize"]);
    let stderr = String::from_utf8_lossy(&unconfirmed.stderr);
    assert!(
        !unconfirmed.status.success() && stderr.contains("not confirmed"),
        "{stderr}"
    );
    assert!(server.data_dir().join("hsm/dev-unseal.key").exists());
    let output = server.run_cli(&["hsm", "zeroize", "--yes"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = server.spawn().unwrap_err();
    assert!(
        stderr.contains("zeroized") && stderr.contains("unrecoverable"),
        "{stderr}"
    );
    assert!(!server.data_dir().join("hsm/dev-unseal.key").exists());
}

#[tokio::test]
async fn a_passphrase_sealed_keystore_needs_its_passphrase() {
    let mut server = Server::start_with_env(&[("ATREST_HSM_PASSPHRASE", "correct horse battery")]);
    let kms = server.client();
    let key = new_key(&kms).await;
    let blob = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"sealed by passphrase"))
        .send()
        .await
        .unwrap();
    assert!(!server.data_dir().join("hsm/dev-unseal.key").exists());

    let wrong = server
        .restart_with_env(&[("ATREST_HSM_PASSPHRASE", "wrong horse")])
        .unwrap_err();
    assert!(wrong.contains("passphrase is wrong"), "{wrong}");
    let none = server.restart_with_env(&[]).unwrap_err();
    assert!(none.contains("sealed with a passphrase"), "{none}");

    let file = server.data_dir().join("passphrase.txt");
    std::fs::write(&file, "correct horse battery\n").unwrap();
    // The server is stopped (its last start failed); unseal with --hsm-passphrase-file.
    let output = server.run_cli(&[
        "user",
        "add",
        "carol",
        "--hsm-passphrase-file",
        file.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    server
        .restart_with_env(&[("ATREST_HSM_PASSPHRASE", "correct horse battery")])
        .unwrap();
    let decrypted = server
        .client()
        .decrypt()
        .ciphertext_blob(blob.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        decrypted.plaintext().unwrap().as_ref(),
        b"sealed by passphrase"
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
