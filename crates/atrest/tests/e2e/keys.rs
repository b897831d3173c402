use aws_sdk_kms::types::{KeyState, Tag};

use crate::harness::{Server, assert_code, error_code, new_key};

#[tokio::test]
async fn key_lifecycle_follows_aws_states() {
    let server = Server::start();
    let kms = server.client();
    let tag = Tag::builder()
        .tag_key("team")
        .tag_value("storage")
        .build()
        .unwrap();
    let created = kms
        .create_key()
        .description("first")
        .tags(tag)
        .send()
        .await
        .unwrap();
    let metadata = created.key_metadata().unwrap();
    let key_id = metadata.key_id().to_owned();
    let arn = metadata.arn().unwrap().to_owned();
    assert_eq!(
        arn,
        format!("arn:aws:kms:us-east-1:000000000000:key/{key_id}")
    );
    assert_eq!(metadata.key_state(), Some(&KeyState::Enabled));
    assert!(metadata.enabled());

    for reference in [key_id.as_str(), arn.as_str()] {
        let described = kms.describe_key().key_id(reference).send().await.unwrap();
        assert_eq!(
            described.key_metadata().unwrap().description(),
            Some("first")
        );
    }
    kms.update_key_description()
        .key_id(&key_id)
        .description("second")
        .send()
        .await
        .unwrap();
    let tags = kms
        .list_resource_tags()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags()[0].tag_value(), "storage");

    kms.disable_key().key_id(&key_id).send().await.unwrap();
    assert_code(
        kms.encrypt()
            .key_id(&key_id)
            .plaintext(b"x".to_vec().into())
            .send()
            .await,
        "DisabledException",
    );
    kms.enable_key().key_id(&key_id).send().await.unwrap();
    kms.encrypt()
        .key_id(&key_id)
        .plaintext(b"x".to_vec().into())
        .send()
        .await
        .unwrap();

    assert_code(
        kms.schedule_key_deletion()
            .key_id(&key_id)
            .pending_window_in_days(6)
            .send()
            .await,
        "ValidationException",
    );
    let scheduled = kms
        .schedule_key_deletion()
        .key_id(&key_id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(scheduled.key_state(), Some(&KeyState::PendingDeletion));
    assert_eq!(scheduled.pending_window_in_days(), Some(7));
    assert_code(
        kms.encrypt()
            .key_id(&key_id)
            .plaintext(b"x".to_vec().into())
            .send()
            .await,
        "KMSInvalidStateException",
    );
    assert_code(
        kms.enable_key().key_id(&key_id).send().await,
        "KMSInvalidStateException",
    );

    kms.cancel_key_deletion()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    let described = kms.describe_key().key_id(&key_id).send().await.unwrap();
    assert_eq!(
        described.key_metadata().unwrap().key_state(),
        Some(&KeyState::Disabled)
    );
    assert_code(
        kms.cancel_key_deletion().key_id(&key_id).send().await,
        "KMSInvalidStateException",
    );
}

#[tokio::test]
async fn list_keys_pages_and_unknown_keys_are_not_found() {
    let server = Server::start();
    let kms = server.client();
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(new_key(&kms).await);
    }
    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let page = kms
            .list_keys()
            .limit(2)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        assert!(page.keys().len() <= 2);
        seen.extend(
            page.keys()
                .iter()
                .map(|key| key.key_id().unwrap().to_owned()),
        );
        if !page.truncated() {
            break;
        }
        marker = page.next_marker().map(str::to_owned);
    }
    created.sort();
    assert_eq!(seen, created);

    assert_code(kms.list_keys().limit(0).send().await, "ValidationException");
    assert_code(
        kms.list_keys().marker("not-a-marker").send().await,
        "InvalidMarkerException",
    );
    let missing = "11111111-2222-4333-8444-555555555555";
    assert_code(
        kms.describe_key().key_id(missing).send().await,
        "NotFoundException",
    );
    assert_code(
        kms.describe_key()
            .key_id("arn:aws:kms:eu-west-1:000000000000:key/x")
            .send()
            .await,
        "NotFoundException",
    );
}

#[tokio::test]
async fn key_specs_and_usages_are_validated() {
    let server = Server::start();
    let kms = server.client();
    assert_code(
        kms.create_key().key_spec("HMAC_256".into()).send().await,
        "ValidationException",
    );
    assert_code(
        kms.create_key()
            .key_spec("SYMMETRIC_DEFAULT".into())
            .key_usage("SIGN_VERIFY".into())
            .send()
            .await,
        "ValidationException",
    );
    assert_code(
        kms.create_key().multi_region(true).send().await,
        "UnsupportedOperationException",
    );
    let long = "d".repeat(8193);
    assert_code(
        kms.create_key().description(long).send().await,
        "ValidationException",
    );
    let bad_tag = aws_sdk_kms::types::Tag::builder()
        .tag_key("aws:reserved")
        .tag_value("v")
        .build()
        .unwrap();
    assert_code(kms.create_key().tags(bad_tag).send().await, "TagException");
}

#[tokio::test]
async fn operations_atrest_does_not_offer_are_unsupported_not_404() {
    let server = Server::start();
    let kms = server.client();
    assert_code(
        kms.update_primary_region()
            .key_id("alias/x")
            .primary_region("eu-west-1")
            .send()
            .await,
        "UnsupportedOperationException",
    );
    assert_code(
        kms.replicate_key()
            .key_id("alias/x")
            .replica_region("eu-west-1")
            .send()
            .await,
        "UnsupportedOperationException",
    );
}

#[tokio::test]
async fn tags_are_added_replaced_removed_and_limited() {
    let server = Server::start();
    let kms = server.client();
    let key = new_key(&kms).await;
    let tag = |key: &str, value: &str| {
        Tag::builder()
            .tag_key(key)
            .tag_value(value)
            .build()
            .unwrap()
    };
    kms.tag_resource()
        .key_id(&key)
        .tags(tag("a", "1"))
        .tags(tag("b", "2"))
        .send()
        .await
        .unwrap();
    kms.tag_resource()
        .key_id(&key)
        .tags(tag("a", "replaced"))
        .send()
        .await
        .unwrap();
    kms.untag_resource()
        .key_id(&key)
        .tag_keys("b")
        .send()
        .await
        .unwrap();
    let tags = kms.list_resource_tags().key_id(&key).send().await.unwrap();
    let pairs: Vec<_> = tags
        .tags()
        .iter()
        .map(|t| (t.tag_key(), t.tag_value()))
        .collect();
    assert_eq!(pairs, [("a", "replaced")]);

    let many: Vec<Tag> = (0..50).map(|i| tag(&format!("k{i:02}"), "v")).collect();
    let error = kms
        .tag_resource()
        .key_id(&key)
        .set_tags(Some(many))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error),
        "TagException",
        "51 tags with the existing one"
    );
    assert_code(
        kms.tag_resource()
            .key_id(&key)
            .tags(tag(&"k".repeat(129), "v"))
            .send()
            .await,
        "TagException",
    );
    let page = kms
        .list_resource_tags()
        .key_id(&key)
        .limit(1)
        .send()
        .await
        .unwrap();
    assert!(!page.truncated());

    kms.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_code(
        kms.tag_resource()
            .key_id(&key)
            .tags(tag("c", "3"))
            .send()
            .await,
        "KMSInvalidStateException",
    );
}
