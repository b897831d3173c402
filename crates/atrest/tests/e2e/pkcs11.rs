//! The PKCS#11 backend on a real SoftHSM2 token: the root key is created there as a sensitive,
//! non-extractable object, keys work through it, and the data dir alone opens nothing.

use aws_sdk_kms::primitives::Blob;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

use crate::harness::{SOFTHSM_MODULE, Server, TOKEN_PIN, Token, decrypt, encrypt, new_key};

fn root_key_label(server: &Server) -> String {
    let settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(server.data_dir().join("atrest.json")).unwrap())
            .unwrap();
    assert_eq!(settings["hsm"]["backend"], "pkcs11", "{settings}");
    settings["hsm"]["root_key_label"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Reads the root key object's attributes straight from the token, as `pkcs11-tool -O` would.
fn root_key_attributes(token_label: &str, label: &str) -> Vec<Attribute> {
    let context = Pkcs11::new(SOFTHSM_MODULE).unwrap();
    context
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = context
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|slot| context.get_token_info(*slot).unwrap().label().trim_end() == token_label)
        .expect("the token is present");
    let session = context.open_ro_session(slot).unwrap();
    session
        .login(UserType::User, Some(&AuthPin::from(TOKEN_PIN)))
        .unwrap();
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1, "exactly one root key object on the token");
    let attributes = session
        .get_attributes(
            found[0],
            &[
                AttributeType::Token,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
                AttributeType::Value,
            ],
        )
        .unwrap();
    context.finalize().ok();
    attributes
}

#[tokio::test]
async fn keys_work_through_a_root_key_that_never_leaves_the_token() {
    let token = Token::new("atrest-pkcs11-test");
    let mut server = Server::start_on_token(token);
    let kms = server.client();
    let key = new_key(&kms).await;
    let sealed = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"wrapped on the token"))
        .send()
        .await
        .unwrap();
    let sealed = sealed.ciphertext_blob().unwrap().clone();
    let health =
        crate::harness::raw_request(server.port, "GET /_atrest/health HTTP/1.0\r\n\r\n").unwrap();
    assert!(health.contains("pkcs11"), "{health}");

    let label = root_key_label(&server);
    let token = server.token.as_ref().unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pkcs11::read_root_key_attributes_in_a_child",
            "--nocapture",
        ])
        .env("SOFTHSM2_CONF", token.conf())
        .env("ATREST_TEST_TOKEN_LABEL", &token.label)
        .env("ATREST_TEST_ROOT_KEY_LABEL", &label)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains("ROOT KEY: token=true sensitive=true extractable=false never_extractable=true value=withheld"),
        "{printed}"
    );

    // Restarts find the same root key; old ciphertext decrypts.
    server.restart_with_env(&[]).unwrap();
    let decrypted = server
        .client()
        .decrypt()
        .ciphertext_blob(sealed.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        decrypted.plaintext().unwrap().as_ref(),
        b"wrapped on the token"
    );

    // A PIN the token refuses is a clear error.
    let wrong_pin = server.token.as_ref().unwrap().dir.path().join("wrong-pin");
    std::fs::write(&wrong_pin, "0000\n").unwrap();
    let refused = server
        .restart_with_env(&[("ATREST_PKCS11_PIN_FILE", wrong_pin.to_str().unwrap())])
        .unwrap_err();
    assert!(refused.contains("refused the PIN"), "{refused}");

    // The data dir alone opens nothing: on another token (same label) the root key is missing.
    server.kill9();
    let other = Token::new("atrest-pkcs11-test");
    server.replace_token(other);
    let elsewhere = server.spawn().unwrap_err();
    assert!(elsewhere.contains("is not on token"), "{elsewhere}");
}

/// Runs in a child process of the test binary (SoftHSM2 reads its configuration once per
/// process, so the parent cannot point it at the server's token).
#[test]
fn read_root_key_attributes_in_a_child() {
    let (Ok(token_label), Ok(label)) = (
        std::env::var("ATREST_TEST_TOKEN_LABEL"),
        std::env::var("ATREST_TEST_ROOT_KEY_LABEL"),
    ) else {
        return; // only meaningful when the test above starts it
    };
    let mut summary = std::collections::BTreeMap::new();
    let mut value = "missing";
    for attribute in root_key_attributes(&token_label, &label) {
        match attribute {
            Attribute::Token(v) => {
                summary.insert("token", v);
            }
            Attribute::Sensitive(v) => {
                summary.insert("sensitive", v);
            }
            Attribute::Extractable(v) => {
                summary.insert("extractable", v);
            }
            Attribute::NeverExtractable(v) => {
                summary.insert("never_extractable", v);
            }
            Attribute::Value(_) => value = "READABLE",
            _ => {}
        }
    }
    if value == "missing" {
        value = "withheld";
    }
    println!(
        "ROOT KEY: token={} sensitive={} extractable={} never_extractable={} value={value}",
        summary["token"],
        summary["sensitive"],
        summary["extractable"],
        summary["never_extractable"]
    );
}

/// A custom key store on the very token that holds the root key, through aws-sdk-kms: the
/// module is loaded once and shared, disconnecting the store leaves the root key's sessions
/// alone, and keys that do not need the store keep working while it is disconnected.
#[tokio::test]
async fn a_custom_key_store_shares_the_root_keys_token_and_module() {
    let token = Token::new("atrest-root-and-cks-token");
    let server = Server::start_on_token(token);
    let kms = server.client();
    let token = server.token.as_ref().unwrap();
    let ordinary = new_key(&kms).await;

    let store_id = kms
        .create_custom_key_store()
        .custom_key_store_name("shared-token")
        .cloud_hsm_cluster_id(&token.label)
        .key_store_password(format!("file:{}", token.pin_file().display()))
        .send()
        .await
        .unwrap()
        .custom_key_store_id()
        .unwrap()
        .to_owned();
    kms.connect_custom_key_store()
        .custom_key_store_id(&store_id)
        .send()
        .await
        .unwrap();
    let described = kms
        .describe_custom_key_stores()
        .custom_key_store_name("shared-token")
        .send()
        .await
        .unwrap();
    let store = &described.custom_key_stores()[0];
    assert_eq!(store.custom_key_store_id(), Some(store_id.as_str()));
    assert_eq!(store.cloud_hsm_cluster_id(), Some(token.label.as_str()));
    assert_eq!(
        store.connection_state(),
        Some(&aws_sdk_kms::types::ConnectionStateType::Connected)
    );

    let on_token = kms
        .create_key()
        .custom_key_store_id(&store_id)
        .origin(aws_sdk_kms::types::OriginType::AwsCloudhsm)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();
    let sealed = encrypt(&kms, &on_token, b"on the shared token").await;
    // ReEncrypt from the token's key to an ordinary one and back.
    let moved = kms
        .re_encrypt()
        .ciphertext_blob(sealed.clone())
        .destination_key_id(&ordinary)
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();
    assert_eq!(decrypt(&kms, moved).await, b"on the shared token");

    kms.disconnect_custom_key_store()
        .custom_key_store_id(&store_id)
        .send()
        .await
        .unwrap();
    crate::harness::assert_code(
        kms.decrypt().ciphertext_blob(sealed.clone()).send().await,
        "KMSInvalidStateException",
    );
    // The root key's sessions survived the store's disconnection.
    let fresh = new_key(&kms).await;
    encrypt(&kms, &fresh, b"root key still there").await;
    kms.connect_custom_key_store()
        .custom_key_store_id(&store_id)
        .send()
        .await
        .unwrap();
    let reopened = kms.decrypt().ciphertext_blob(sealed).send().await.unwrap();
    assert_eq!(
        reopened.plaintext().unwrap().as_ref(),
        b"on the shared token"
    );
}

/// The root key's token goes away under a running server: what needs the token (a new key)
/// fails with a clear error; what does not (a key already loaded, metadata) keeps working.
#[tokio::test]
async fn a_root_token_that_vanishes_fails_only_what_needs_it() {
    let server = Server::start_on_token(Token::new("atrest-vanishing-root"));
    let kms = server.client();
    let key = new_key(&kms).await;
    let sealed = encrypt(&kms, &key, b"loaded before the token went").await;
    let tokens = server.token.as_ref().unwrap().dir.path().join("tokens");
    std::fs::remove_dir_all(&tokens).unwrap();
    std::fs::create_dir(&tokens).unwrap();
    // Let an audit digest fall due: one that cannot be signed must not stop the records.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;

    let refused = kms.create_key().send().await.unwrap_err();
    assert_eq!(crate::harness::error_code(&refused), "KMSInternalException");
    let message = format!("{:?}", refused.into_service_error());
    assert!(message.contains("atrest-vanishing-root"), "{message}");
    assert_eq!(decrypt(&kms, sealed).await, b"loaded before the token went");
    encrypt(&kms, &key, b"still served").await;
    kms.describe_key().key_id(&key).send().await.unwrap();
    kms.list_keys().send().await.unwrap();
}
