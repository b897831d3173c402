use crate::harness::{Server, assert_code, new_key};

#[tokio::test]
async fn aliases_name_keys_everywhere_aws_accepts_them() {
    let server = Server::start();
    let kms = server.client();
    let first = new_key(&kms).await;
    let second = new_key(&kms).await;

    kms.create_alias()
        .alias_name("alias/app")
        .target_key_id(&first)
        .send()
        .await
        .unwrap();
    assert_code(
        kms.create_alias()
            .alias_name("alias/app")
            .target_key_id(&second)
            .send()
            .await,
        "AlreadyExistsException",
    );
    assert_code(
        kms.create_alias()
            .alias_name("alias/aws/s3")
            .target_key_id(&first)
            .send()
            .await,
        "InvalidAliasNameException",
    );
    assert_code(
        kms.create_alias()
            .alias_name("app")
            .target_key_id(&first)
            .send()
            .await,
        "InvalidAliasNameException",
    );
    assert_code(
        kms.create_alias()
            .alias_name("alias/x")
            .target_key_id("alias/app")
            .send()
            .await,
        "NotFoundException",
    );

    for reference in ["alias/app", "arn:aws:kms:us-east-1:000000000000:alias/app"] {
        let described = kms.describe_key().key_id(reference).send().await.unwrap();
        assert_eq!(described.key_metadata().unwrap().key_id(), first);
        let encrypted = kms
            .encrypt()
            .key_id(reference)
            .plaintext(b"via alias".to_vec().into())
            .send()
            .await
            .unwrap();
        assert!(encrypted.key_id().unwrap().ends_with(&first));
    }

    kms.update_alias()
        .alias_name("alias/app")
        .target_key_id(&second)
        .send()
        .await
        .unwrap();
    let described = kms.describe_key().key_id("alias/app").send().await.unwrap();
    assert_eq!(described.key_metadata().unwrap().key_id(), second);

    kms.create_alias()
        .alias_name("alias/other")
        .target_key_id(&first)
        .send()
        .await
        .unwrap();
    let for_first = kms.list_aliases().key_id(&first).send().await.unwrap();
    let names: Vec<_> = for_first
        .aliases()
        .iter()
        .map(|alias| alias.alias_name().unwrap())
        .collect();
    assert_eq!(names, ["alias/other"]);
    let page = kms.list_aliases().limit(1).send().await.unwrap();
    assert!(page.truncated());
    let rest = kms
        .list_aliases()
        .marker(page.next_marker().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.aliases().len() + rest.aliases().len(), 2);

    kms.delete_alias()
        .alias_name("alias/app")
        .send()
        .await
        .unwrap();
    assert_code(
        kms.delete_alias().alias_name("alias/app").send().await,
        "NotFoundException",
    );
    assert_code(
        kms.describe_key().key_id("alias/app").send().await,
        "NotFoundException",
    );
}
