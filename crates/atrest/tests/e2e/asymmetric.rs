use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    DataKeyPairSpec, EncryptionAlgorithmSpec, KeySpec, KeyUsageType, MessageType,
    SigningAlgorithmSpec,
};

use crate::harness::{Server, assert_code, error_code, new_key};

#[tokio::test]
async fn signing_keys_sign_and_verify_with_every_aws_algorithm() {
    let server = Server::start();
    let kms = server.client();
    let cases = [
        (
            KeySpec::Rsa2048,
            vec![
                SigningAlgorithmSpec::RsassaPssSha256,
                SigningAlgorithmSpec::RsassaPssSha384,
                SigningAlgorithmSpec::RsassaPssSha512,
                SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
                SigningAlgorithmSpec::RsassaPkcs1V15Sha384,
                SigningAlgorithmSpec::RsassaPkcs1V15Sha512,
            ],
        ),
        (
            KeySpec::EccNistP256,
            vec![SigningAlgorithmSpec::EcdsaSha256],
        ),
        (
            KeySpec::EccNistP384,
            vec![SigningAlgorithmSpec::EcdsaSha384],
        ),
        (
            KeySpec::EccNistP521,
            vec![SigningAlgorithmSpec::EcdsaSha512],
        ),
        (
            KeySpec::EccSecgP256K1,
            vec![SigningAlgorithmSpec::EcdsaSha256],
        ),
    ];
    for (spec, algorithms) in cases {
        let created = kms
            .create_key()
            .key_spec(spec.clone())
            .key_usage(KeyUsageType::SignVerify)
            .send()
            .await
            .unwrap();
        let metadata = created.key_metadata().unwrap();
        assert_eq!(metadata.signing_algorithms(), algorithms.as_slice());
        let key = metadata.key_id().to_owned();
        let public = kms.get_public_key().key_id(&key).send().await.unwrap();
        assert_eq!(public.key_spec(), Some(&spec));
        assert!(
            public.public_key().unwrap().as_ref().len() > 60,
            "SubjectPublicKeyInfo DER"
        );
        for algorithm in algorithms {
            let signed = kms
                .sign()
                .key_id(&key)
                .message(Blob::new(b"release v1.0"))
                .signing_algorithm(algorithm.clone())
                .send()
                .await
                .unwrap();
            let signature = signed.signature().unwrap().clone();
            let verified = kms
                .verify()
                .key_id(&key)
                .message(Blob::new(b"release v1.0"))
                .signing_algorithm(algorithm.clone())
                .signature(signature.clone())
                .send()
                .await
                .unwrap();
            assert!(verified.signature_valid());
            let error = kms
                .verify()
                .key_id(&key)
                .message(Blob::new(b"release v1.1"))
                .signing_algorithm(algorithm.clone())
                .signature(signature)
                .send()
                .await
                .unwrap_err();
            assert_eq!(
                error_code(&error),
                "KMSInvalidSignatureException",
                "{spec:?} {algorithm:?}"
            );
        }
    }
}

#[tokio::test]
async fn digest_messages_and_signing_errors() {
    let server = Server::start();
    let kms = server.client();
    let key = kms
        .create_key()
        .key_spec(KeySpec::EccNistP256)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();
    // SHA-256("abc"), FIPS 180-2 appendix B.1.
    let digest = hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    let signed = kms
        .sign()
        .key_id(&key)
        .message(Blob::new(digest.clone()))
        .message_type(MessageType::Digest)
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap();
    // A signature over the digest verifies as a signature over the raw message.
    let verified = kms
        .verify()
        .key_id(&key)
        .message(Blob::new(b"abc"))
        .message_type(MessageType::Raw)
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .signature(signed.signature().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert!(verified.signature_valid());

    let sign = |message: &[u8], message_type: MessageType, algorithm: SigningAlgorithmSpec| {
        kms.sign()
            .key_id(&key)
            .message(Blob::new(message))
            .message_type(message_type)
            .signing_algorithm(algorithm)
            .send()
    };
    let error = sign(
        &digest[..31],
        MessageType::Digest,
        SigningAlgorithmSpec::EcdsaSha256,
    )
    .await
    .unwrap_err();
    assert_eq!(error_code(&error), "ValidationException");
    let error = sign(
        b"m",
        MessageType::Raw,
        SigningAlgorithmSpec::RsassaPssSha256,
    )
    .await
    .unwrap_err();
    assert_eq!(error_code(&error), "InvalidKeyUsageException");
    let error = sign(
        &[0u8; 4097],
        MessageType::Raw,
        SigningAlgorithmSpec::EcdsaSha256,
    )
    .await
    .unwrap_err();
    assert_eq!(error_code(&error), "ValidationException");
    assert_code(
        kms.encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"x"))
            .send()
            .await,
        "InvalidKeyUsageException",
    );

    let symmetric = new_key(&kms).await;
    assert_code(
        kms.get_public_key().key_id(&symmetric).send().await,
        "UnsupportedOperationException",
    );
    assert_code(
        kms.sign()
            .key_id(&symmetric)
            .message(Blob::new(b"m"))
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await,
        "InvalidKeyUsageException",
    );
    assert_code(
        kms.create_key()
            .key_spec(KeySpec::EccNistP256)
            .key_usage(KeyUsageType::EncryptDecrypt)
            .send()
            .await,
        "ValidationException",
    );
    kms.disable_key().key_id(&key).send().await.unwrap();
    let error = sign(b"m", MessageType::Raw, SigningAlgorithmSpec::EcdsaSha256)
        .await
        .unwrap_err();
    assert_eq!(error_code(&error), "DisabledException");
}

#[tokio::test]
async fn rsa_encryption_keys_use_oaep() {
    let server = Server::start();
    let kms = server.client();
    let created = kms
        .create_key()
        .key_spec(KeySpec::Rsa3072)
        .key_usage(KeyUsageType::EncryptDecrypt)
        .send()
        .await
        .unwrap();
    let metadata = created.key_metadata().unwrap();
    assert_eq!(
        metadata.encryption_algorithms(),
        [
            EncryptionAlgorithmSpec::RsaesOaepSha1,
            EncryptionAlgorithmSpec::RsaesOaepSha256
        ]
    );
    let key = metadata.key_id().to_owned();
    for (algorithm, max) in [
        (EncryptionAlgorithmSpec::RsaesOaepSha1, 342),
        (EncryptionAlgorithmSpec::RsaesOaepSha256, 318),
    ] {
        let plaintext = vec![0x5a; max];
        let encrypted = kms
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(plaintext.clone()))
            .encryption_algorithm(algorithm.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(encrypted.ciphertext_blob().unwrap().as_ref().len(), 384);
        let decrypted = kms
            .decrypt()
            .key_id(&key)
            .ciphertext_blob(encrypted.ciphertext_blob().unwrap().clone())
            .encryption_algorithm(algorithm.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            decrypted.plaintext().unwrap().as_ref(),
            plaintext.as_slice()
        );
        assert_eq!(decrypted.encryption_algorithm(), Some(&algorithm));
        let error = kms
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(vec![0x5a; max + 1]))
            .encryption_algorithm(algorithm.clone())
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&error), "ValidationException");
        // Without the KeyId there is nothing to say which key made an RSA ciphertext.
        assert_code(
            kms.decrypt()
                .ciphertext_blob(encrypted.ciphertext_blob().unwrap().clone())
                .encryption_algorithm(algorithm.clone())
                .send()
                .await,
            "InvalidKeyUsageException",
        );
    }
    assert_code(
        kms.encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"x"))
            .send()
            .await,
        "InvalidKeyUsageException",
    );
    assert_code(
        kms.encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"x"))
            .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
            .encryption_context("k", "v")
            .send()
            .await,
        "ValidationException",
    );
    assert_code(
        kms.generate_data_key()
            .key_id(&key)
            .number_of_bytes(32)
            .send()
            .await,
        "InvalidKeyUsageException",
    );
}

#[tokio::test]
async fn data_key_pairs_are_wrapped_under_a_symmetric_key() {
    let server = Server::start();
    let kms = server.client();
    let key = new_key(&kms).await;
    let mut private_keys = Vec::new();
    for spec in [
        DataKeyPairSpec::Rsa2048,
        DataKeyPairSpec::EccNistP256,
        DataKeyPairSpec::EccNistP384,
    ] {
        let pair = kms
            .generate_data_key_pair()
            .key_id(&key)
            .key_pair_spec(spec.clone())
            .encryption_context("purpose", "pair")
            .send()
            .await
            .unwrap();
        assert_eq!(pair.key_pair_spec(), Some(&spec));
        let private = pair.private_key_plaintext().unwrap().as_ref().to_vec();
        let unwrapped = kms
            .decrypt()
            .ciphertext_blob(pair.private_key_ciphertext_blob().unwrap().clone())
            .encryption_context("purpose", "pair")
            .send()
            .await
            .unwrap();
        assert_eq!(unwrapped.plaintext().unwrap().as_ref(), private.as_slice());
        assert!(pair.public_key().unwrap().as_ref().len() > 60);
        private_keys.push(private);
    }
    let without = kms
        .generate_data_key_pair_without_plaintext()
        .key_id(&key)
        .key_pair_spec(DataKeyPairSpec::EccNistP521)
        .send()
        .await
        .unwrap();
    assert!(without.private_key_ciphertext_blob().is_some() && without.public_key().is_some());
    assert_code(
        kms.generate_data_key_pair()
            .key_id(&key)
            .key_pair_spec(DataKeyPairSpec::Sm2)
            .send()
            .await,
        "UnsupportedOperationException",
    );
    for private in &private_keys {
        server.assert_not_on_disk(private, "a data key pair's private key");
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
