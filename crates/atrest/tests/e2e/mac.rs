use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MacAlgorithmSpec};

use crate::harness::{Server, assert_code, new_key};

#[tokio::test]
async fn hmac_keys_generate_and_verify_macs() {
    let server = Server::start();
    let kms = server.client();
    for (spec, algorithm, len) in [
        (KeySpec::Hmac224, MacAlgorithmSpec::HmacSha224, 28),
        (KeySpec::Hmac256, MacAlgorithmSpec::HmacSha256, 32),
        (KeySpec::Hmac384, MacAlgorithmSpec::HmacSha384, 48),
        (KeySpec::Hmac512, MacAlgorithmSpec::HmacSha512, 64),
    ] {
        let created = kms
            .create_key()
            .key_spec(spec)
            .key_usage(KeyUsageType::GenerateVerifyMac)
            .send()
            .await
            .unwrap();
        let key = created.key_metadata().unwrap().key_id().to_owned();
        assert_eq!(
            created.key_metadata().unwrap().mac_algorithms(),
            std::slice::from_ref(&algorithm)
        );
        let mac = kms
            .generate_mac()
            .key_id(&key)
            .message(Blob::new(b"message"))
            .mac_algorithm(algorithm.clone())
            .send()
            .await
            .unwrap();
        let mac = mac.mac().unwrap().clone();
        assert_eq!(mac.as_ref().len(), len);
        let verified = kms
            .verify_mac()
            .key_id(&key)
            .message(Blob::new(b"message"))
            .mac_algorithm(algorithm.clone())
            .mac(mac.clone())
            .send()
            .await
            .unwrap();
        assert!(verified.mac_valid());
        assert_code(
            kms.verify_mac()
                .key_id(&key)
                .message(Blob::new(b"messagE"))
                .mac_algorithm(algorithm.clone())
                .mac(mac)
                .send()
                .await,
            "KMSInvalidMacException",
        );
        assert_code(
            kms.encrypt()
                .key_id(&key)
                .plaintext(Blob::new(b"x"))
                .send()
                .await,
            "InvalidKeyUsageException",
        );
        assert_code(
            kms.enable_key_rotation().key_id(&key).send().await,
            "UnsupportedOperationException",
        );
    }

    let hmac = kms
        .create_key()
        .key_spec(KeySpec::Hmac256)
        .key_usage(KeyUsageType::GenerateVerifyMac)
        .send()
        .await
        .unwrap();
    let hmac = hmac.key_metadata().unwrap().key_id().to_owned();
    assert_code(
        kms.generate_mac()
            .key_id(&hmac)
            .message(Blob::new(b"m"))
            .mac_algorithm(MacAlgorithmSpec::HmacSha512)
            .send()
            .await,
        "InvalidKeyUsageException",
    );
    let symmetric = new_key(&kms).await;
    assert_code(
        kms.generate_mac()
            .key_id(&symmetric)
            .message(Blob::new(b"m"))
            .mac_algorithm(MacAlgorithmSpec::HmacSha256)
            .send()
            .await,
        "InvalidKeyUsageException",
    );
}
