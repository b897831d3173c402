use std::time::{Duration, Instant};

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::RotationType;

use crate::harness::{Server, assert_code, error_code, new_key};

const DAY: i64 = 86_400;

#[tokio::test]
async fn on_demand_rotation_keeps_old_ciphertext_decryptable() {
    let server = Server::start();
    let kms = server.client();
    let key = new_key(&kms).await;
    let before = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"before rotation"))
        .send()
        .await
        .unwrap();
    let before = before.ciphertext_blob().unwrap().clone();

    let status = kms
        .get_key_rotation_status()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert!(!status.key_rotation_enabled());
    assert_code(
        kms.enable_key_rotation()
            .key_id(&key)
            .rotation_period_in_days(89)
            .send()
            .await,
        "ValidationException",
    );
    kms.enable_key_rotation()
        .key_id(&key)
        .rotation_period_in_days(90)
        .send()
        .await
        .unwrap();
    let status = kms
        .get_key_rotation_status()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert!(status.key_rotation_enabled());
    assert_eq!(status.rotation_period_in_days(), Some(90));
    assert!(status.next_rotation_date().is_some());

    kms.rotate_key_on_demand()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let after = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"after rotation"))
        .send()
        .await
        .unwrap();
    let after = after.ciphertext_blob().unwrap().clone();
    assert_ne!(
        before.as_ref()[17..21],
        after.as_ref()[17..21],
        "new ciphertext must use the new version"
    );
    for (blob, expected) in [
        (before, &b"before rotation"[..]),
        (after, &b"after rotation"[..]),
    ] {
        let decrypted = kms.decrypt().ciphertext_blob(blob).send().await.unwrap();
        assert_eq!(decrypted.plaintext().unwrap().as_ref(), expected);
    }
    let rotations = kms.list_key_rotations().key_id(&key).send().await.unwrap();
    assert_eq!(rotations.rotations().len(), 1);
    assert_eq!(
        rotations.rotations()[0].rotation_type(),
        Some(&RotationType::OnDemand)
    );

    kms.disable_key_rotation()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert!(
        !kms.get_key_rotation_status()
            .key_id(&key)
            .send()
            .await
            .unwrap()
            .key_rotation_enabled()
    );
    kms.disable_key().key_id(&key).send().await.unwrap();
    assert_code(
        kms.rotate_key_on_demand().key_id(&key).send().await,
        "DisabledException",
    );
}

#[tokio::test]
async fn automatic_rotation_happens_when_due() {
    let mut server = Server::start();
    let kms = server.client();
    let key = new_key(&kms).await;
    let old = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"year one"))
        .send()
        .await
        .unwrap();
    let old = old.ciphertext_blob().unwrap().clone();
    kms.enable_key_rotation()
        .key_id(&key)
        .rotation_period_in_days(90)
        .send()
        .await
        .unwrap();

    let offset = (91 * DAY).to_string();
    server
        .restart_with_env(&[("ATREST_TEST_CLOCK_OFFSET_SECONDS", &offset)])
        .unwrap();
    let kms = server.client();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rotations = kms.list_key_rotations().key_id(&key).send().await.unwrap();
        if let Some(rotation) = rotations.rotations().first() {
            assert_eq!(rotation.rotation_type(), Some(&RotationType::Automatic));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no automatic rotation within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let decrypted = kms.decrypt().ciphertext_blob(old).send().await.unwrap();
    assert_eq!(decrypted.plaintext().unwrap().as_ref(), b"year one");
    let status = kms
        .get_key_rotation_status()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let next = status.next_rotation_date().unwrap().secs();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        next > now + 91 * DAY + 80 * DAY,
        "the next rotation is a period after this one"
    );
}

#[tokio::test]
async fn deletion_destroys_the_key_when_the_window_passes() {
    let mut server = Server::start();
    let kms = server.client();
    let doomed = new_key(&kms).await;
    let kept = new_key(&kms).await;
    kms.create_alias()
        .alias_name("alias/doomed")
        .target_key_id(&doomed)
        .send()
        .await
        .unwrap();
    let blob = kms
        .encrypt()
        .key_id(&doomed)
        .plaintext(Blob::new(b"soon unreadable"))
        .send()
        .await
        .unwrap();
    let blob = blob.ciphertext_blob().unwrap().clone();
    kms.schedule_key_deletion()
        .key_id(&doomed)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();

    // Six days on, nothing has happened yet.
    let offset = (6 * DAY).to_string();
    server
        .restart_with_env(&[("ATREST_TEST_CLOCK_OFFSET_SECONDS", &offset)])
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server
        .client()
        .describe_key()
        .key_id(&doomed)
        .send()
        .await
        .unwrap();

    let offset = (8 * DAY).to_string();
    server
        .restart_with_env(&[("ATREST_TEST_CLOCK_OFFSET_SECONDS", &offset)])
        .unwrap();
    let kms = server.client();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match kms.describe_key().key_id(&doomed).send().await {
            Err(error) if error_code(&error) == "NotFoundException" => break,
            _ => assert!(
                Instant::now() < deadline,
                "key still exists 20 s after its deletion date"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_code(
        kms.decrypt().ciphertext_blob(blob).send().await,
        "NotFoundException",
    );
    assert_code(
        kms.describe_key().key_id("alias/doomed").send().await,
        "NotFoundException",
    );
    assert!(
        kms.list_aliases()
            .send()
            .await
            .unwrap()
            .aliases()
            .is_empty()
    );
    kms.describe_key().key_id(&kept).send().await.unwrap();
}
