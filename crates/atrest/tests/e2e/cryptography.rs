use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;

use crate::harness::{Server, assert_code, error_code, new_key};

const SECRET: &[u8] = b"the quarterly numbers are 42 and 17";

#[tokio::test]
async fn encryption_context_is_bound_exactly() {
    let server = Server::start();
    let kms = server.client();
    let key = new_key(&kms).await;
    let encrypted = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(SECRET))
        .encryption_context("tenant", "acme")
        .encryption_context("purpose", "test")
        .send()
        .await
        .unwrap();
    assert_eq!(
        encrypted.encryption_algorithm().unwrap().as_str(),
        "SYMMETRIC_DEFAULT"
    );
    let blob = encrypted.ciphertext_blob().unwrap().clone();

    // KeyId is optional for symmetric ciphertext; the order of context pairs does not matter.
    let decrypted = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("purpose", "test")
        .encryption_context("tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(decrypted.plaintext().unwrap().as_ref(), SECRET);
    assert!(decrypted.key_id().unwrap().ends_with(&key));

    let changed = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("tenant", "acme")
        .encryption_context("purpose", "prod");
    let missing = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("tenant", "acme");
    let extra = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("tenant", "acme")
        .encryption_context("purpose", "test")
        .encryption_context("extra", "pair");
    for attempt in [changed, missing, extra] {
        assert_code(attempt.send().await, "InvalidCiphertextException");
    }

    let other = new_key(&kms).await;
    assert_code(
        kms.decrypt()
            .ciphertext_blob(blob)
            .key_id(&other)
            .encryption_context("tenant", "acme")
            .encryption_context("purpose", "test")
            .send()
            .await,
        "IncorrectKeyException",
    );
    server.assert_not_on_disk(SECRET, "Encrypt plaintext");
}

#[tokio::test]
async fn every_changed_byte_of_a_ciphertext_is_rejected() {
    let server = Server::start();
    let kms = server.client();
    let key = new_key(&kms).await;
    let blob = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(SECRET))
        .send()
        .await
        .unwrap();
    let bytes = blob.ciphertext_blob().unwrap().as_ref().to_vec();
    for index in 0..bytes.len() {
        let mut tampered = bytes.clone();
        tampered[index] ^= 0x04;
        let error = kms
            .decrypt()
            .ciphertext_blob(Blob::new(tampered))
            .send()
            .await
            .unwrap_err();
        let code = error_code(&error);
        // Flipping a key-id byte names a key that does not exist: AWS answers NotFound there.
        assert!(
            code == "InvalidCiphertextException"
                || (code == "NotFoundException" && (1..17).contains(&index)),
            "byte {index}: {code}"
        );
    }
    assert_code(
        kms.decrypt()
            .ciphertext_blob(Blob::new(&bytes[..bytes.len() - 1]))
            .send()
            .await,
        "InvalidCiphertextException",
    );
    assert_code(
        kms.decrypt()
            .ciphertext_blob(Blob::new(b"garbage"))
            .send()
            .await,
        "InvalidCiphertextException",
    );
}

#[tokio::test]
async fn plaintext_limits_match_aws() {
    let server = Server::start();
    let kms = server.client();
    let key = new_key(&kms).await;
    kms.encrypt()
        .key_id(&key)
        .plaintext(Blob::new(vec![7u8; 4096]))
        .send()
        .await
        .unwrap();
    let error = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(vec![7u8; 4097]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&error), "ValidationException");
    assert_code(
        kms.encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"x"))
            .encryption_algorithm("RSAES_OAEP_SHA_256".into())
            .send()
            .await,
        "InvalidKeyUsageException",
    );
}

#[tokio::test]
async fn re_encrypt_moves_ciphertext_between_keys_and_contexts() {
    let server = Server::start();
    let kms = server.client();
    let source = new_key(&kms).await;
    let destination = new_key(&kms).await;
    let blob = kms
        .encrypt()
        .key_id(&source)
        .plaintext(Blob::new(SECRET))
        .encryption_context("v", "1")
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();
    let moved = kms
        .re_encrypt()
        .ciphertext_blob(blob)
        .source_encryption_context("v", "1")
        .destination_key_id(&destination)
        .destination_encryption_context("v", "2")
        .send()
        .await
        .unwrap();
    assert!(moved.source_key_id().unwrap().ends_with(&source));
    assert!(moved.key_id().unwrap().ends_with(&destination));
    let decrypted = kms
        .decrypt()
        .ciphertext_blob(moved.ciphertext_blob().unwrap().clone())
        .encryption_context("v", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(decrypted.plaintext().unwrap().as_ref(), SECRET);
    assert!(decrypted.key_id().unwrap().ends_with(&destination));
}

#[tokio::test]
async fn data_keys_are_envelope_encrypted_and_never_stored() {
    let server = Server::start();
    let kms = server.client();
    let key = new_key(&kms).await;
    let mut plaintexts = Vec::new();
    for (spec, bytes, expected) in [
        (Some(DataKeySpec::Aes256), None, 32),
        (Some(DataKeySpec::Aes128), None, 16),
        (None, Some(64), 64),
    ] {
        let generated = kms
            .generate_data_key()
            .key_id(&key)
            .set_key_spec(spec)
            .set_number_of_bytes(bytes)
            .encryption_context("object", "a/b")
            .send()
            .await
            .unwrap();
        let plaintext = generated.plaintext().unwrap().as_ref().to_vec();
        assert_eq!(plaintext.len(), expected);
        let decrypted = kms
            .decrypt()
            .ciphertext_blob(generated.ciphertext_blob().unwrap().clone())
            .encryption_context("object", "a/b")
            .send()
            .await
            .unwrap();
        assert_eq!(
            decrypted.plaintext().unwrap().as_ref(),
            plaintext.as_slice()
        );
        plaintexts.push(plaintext);
    }
    let without = kms
        .generate_data_key_without_plaintext()
        .key_id(&key)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    let recovered = kms
        .decrypt()
        .ciphertext_blob(without.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(recovered.plaintext().unwrap().as_ref().len(), 32);
    plaintexts.push(recovered.plaintext().unwrap().as_ref().to_vec());

    assert_code(
        kms.generate_data_key()
            .key_id(&key)
            .key_spec(DataKeySpec::Aes256)
            .number_of_bytes(32)
            .send()
            .await,
        "ValidationException",
    );
    assert_code(
        kms.generate_data_key().key_id(&key).send().await,
        "ValidationException",
    );
    assert_code(
        kms.generate_data_key()
            .key_id(&key)
            .number_of_bytes(1025)
            .send()
            .await,
        "ValidationException",
    );

    let random = kms
        .generate_random()
        .number_of_bytes(1024)
        .send()
        .await
        .unwrap();
    assert_eq!(random.plaintext().unwrap().as_ref().len(), 1024);
    assert_code(
        kms.generate_random().number_of_bytes(1025).send().await,
        "ValidationException",
    );

    for plaintext in &plaintexts {
        server.assert_not_on_disk(plaintext, "a data key");
    }
}
