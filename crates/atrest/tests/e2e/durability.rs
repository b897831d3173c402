use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kms::primitives::Blob;

use crate::harness::Server;

#[tokio::test]
async fn everything_survives_a_restart() {
    let mut server = Server::start();
    let kms = server.client();
    let key = kms
        .create_key()
        .description("durable")
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();
    kms.create_alias()
        .alias_name("alias/durable")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    let v1 = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"v1 data"))
        .send()
        .await
        .unwrap();
    kms.rotate_key_on_demand()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let v2 = kms
        .encrypt()
        .key_id("alias/durable")
        .plaintext(Blob::new(b"v2 data"))
        .send()
        .await
        .unwrap();

    server.kill9();
    server.spawn().unwrap();
    let kms = server.client();
    let described = kms
        .describe_key()
        .key_id("alias/durable")
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.key_metadata().unwrap().description(),
        Some("durable")
    );
    for (encrypted, expected) in [(v1, &b"v1 data"[..]), (v2, &b"v2 data"[..])] {
        let decrypted = kms
            .decrypt()
            .ciphertext_blob(encrypted.ciphertext_blob().unwrap().clone())
            .send()
            .await
            .unwrap();
        assert_eq!(decrypted.plaintext().unwrap().as_ref(), expected);
    }
    assert_eq!(
        kms.list_key_rotations()
            .key_id(&key)
            .send()
            .await
            .unwrap()
            .rotations()
            .len(),
        1
    );
}

/// kill -9 while four clients create keys and encrypt under them: after restart every key and
/// ciphertext the server acknowledged must still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_concurrent_writes_loses_nothing_acknowledged() {
    let mut server = Server::start();
    let acknowledged_keys = Arc::new(Mutex::new(Vec::<String>::new()));
    let acknowledged_blobs = Arc::new(Mutex::new(Vec::<(Vec<u8>, Vec<u8>)>::new()));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let kms = server.client();
        let keys = Arc::clone(&acknowledged_keys);
        let blobs = Arc::clone(&acknowledged_blobs);
        workers.push(tokio::spawn(async move {
            for round in 0..10_000 {
                let Ok(created) = kms.create_key().send().await else {
                    return;
                };
                let key = created.key_metadata().unwrap().key_id().to_owned();
                keys.lock().unwrap().push(key.clone());
                let plaintext = format!("worker {worker} round {round}").into_bytes();
                let Ok(encrypted) = kms
                    .encrypt()
                    .key_id(&key)
                    .plaintext(Blob::new(plaintext.clone()))
                    .send()
                    .await
                else {
                    return;
                };
                blobs.lock().unwrap().push((
                    encrypted.ciphertext_blob().unwrap().as_ref().to_vec(),
                    plaintext,
                ));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    for worker in workers {
        worker.await.unwrap();
    }
    let keys = acknowledged_keys.lock().unwrap().clone();
    let blobs = acknowledged_blobs.lock().unwrap().clone();
    assert!(
        keys.len() >= 4,
        "the load ran ({} keys acknowledged)",
        keys.len()
    );

    server.spawn().unwrap();
    let kms = server.client();
    for key in &keys {
        kms.describe_key()
            .key_id(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("acknowledged key {key} lost: {e:?}"));
    }
    for (blob, plaintext) in &blobs {
        let decrypted = kms
            .decrypt()
            .ciphertext_blob(Blob::new(blob.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            decrypted.plaintext().unwrap().as_ref(),
            plaintext.as_slice()
        );
    }
}
