//! Field-level encryption through real PostgreSQL (started by scripts/test in a temp dir) with
//! data keys wrapped by the real atrest KMS, driven by aws-sdk-kms.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use atrest_fields::{CachePolicy, FieldError, FieldKeys, Mode};
use tokio_postgres::{Client, NoTls};

use crate::harness::{Server, files_under, new_key};

type Keys = FieldKeys<Arc<Client>>;

/// A fresh database on the test server; the URL of the server comes from scripts/test.
async fn fresh_database() -> (Client, String) {
    let url = std::env::var("ATREST_TEST_DATABASE_URL").expect(
        "ATREST_TEST_DATABASE_URL is unset: run scripts/test (or scripts/with-postgres cargo test)",
    );
    let admin = connect(&url).await;
    let name = format!("fields_{}", hex::encode(atrest_crypto::random::bytes(6)));
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = url.rsplit_once('/').unwrap().0.to_string() + "/" + &name;
    (connect(&url).await, name)
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn keys_for(server: &Server, db: Client, policy: CachePolicy) -> Arc<Keys> {
    let keys = FieldKeys::new(Arc::new(db), server.client(), policy);
    keys.install().await.unwrap();
    keys
}

fn pg_bin(tool: &str) -> String {
    format!("{}/{tool}", std::env::var("ATREST_TEST_PG_BIN").unwrap())
}

/// Every file of the PostgreSQL cluster (heap, WAL, everything) and a pg_dump of `database`
/// must lack `needle`.
async fn assert_not_in_database(db: &Client, database: &str, needle: &[u8]) {
    db.batch_execute("CHECKPOINT").await.unwrap();
    let pgdata = std::env::var("ATREST_TEST_PGDATA").unwrap();
    for path in files_under(Path::new(&pgdata)) {
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "plaintext found in {}",
                path.display()
            );
        }
    }
    let url = std::env::var("ATREST_TEST_DATABASE_URL").unwrap();
    let url = url.rsplit_once('/').unwrap().0.to_string() + "/" + database;
    let dump = std::process::Command::new(pg_bin("pg_dump"))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(dump.stdout.len() > 1000, "pg_dump printed too little");
    assert!(
        !dump.stdout.windows(needle.len()).any(|w| w == needle),
        "plaintext found in pg_dump"
    );
}

#[tokio::test]
async fn insert_select_lookup_update_delete_keep_plaintext_out_of_the_database() {
    let server = Server::start();
    let kms_key = new_key(&server.client()).await;
    let (db, database) = fresh_database().await;
    db.batch_execute(
        "CREATE TABLE patients (id bigint PRIMARY KEY, ssn bytea NOT NULL, note bytea)",
    )
    .await
    .unwrap();
    let app_db = connect_same(&database).await;
    let keys = keys_for(&server, db, CachePolicy::default()).await;
    keys.create_column("patients", "ssn", Mode::Deterministic, &kms_key)
        .await
        .unwrap();
    keys.create_column("patients", "note", Mode::Randomized, &kms_key)
        .await
        .unwrap();
    let ssn = keys.encryptor("patients", "ssn").await.unwrap();
    let note = keys.encryptor("patients", "note").await.unwrap();

    let insert = app_db
        .prepare("INSERT INTO patients (id, ssn, note) VALUES ($1, $2, $3)")
        .await
        .unwrap();
    for id in 0..50i64 {
        let row = id.to_string();
        let ssn_value = ssn
            .encrypt(format!("ssn-secret-{id:04}").as_bytes(), row.as_bytes())
            .await
            .unwrap();
        let note_value = note
            .encrypt(format!("note-secret-{id:04}").as_bytes(), row.as_bytes())
            .await
            .unwrap();
        app_db
            .execute(&insert, &[&id, &ssn_value, &note_value])
            .await
            .unwrap();
    }

    // Select and decrypt every row.
    for row in app_db
        .query("SELECT id, ssn, note FROM patients ORDER BY id", &[])
        .await
        .unwrap()
    {
        let id: i64 = row.get(0);
        let row_id = id.to_string();
        let plain_ssn = ssn.decrypt(row.get(1), row_id.as_bytes()).await.unwrap();
        let plain_note = note.decrypt(row.get(2), row_id.as_bytes()).await.unwrap();
        assert_eq!(plain_ssn.expose(), format!("ssn-secret-{id:04}").as_bytes());
        assert_eq!(
            plain_note.expose(),
            format!("note-secret-{id:04}").as_bytes()
        );
    }

    // Equality lookup on the deterministic column, in SQL.
    let wanted = ssn.lookup_values(b"ssn-secret-0042").await.unwrap();
    let found = app_db
        .query("SELECT id FROM patients WHERE ssn = ANY($1)", &[&wanted])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].get::<_, i64>(0), 42);

    // Update, then read back.
    let updated = note.encrypt(b"note-secret-changed", b"42").await.unwrap();
    app_db
        .execute("UPDATE patients SET note = $1 WHERE id = 42", &[&updated])
        .await
        .unwrap();
    let value: Vec<u8> = app_db
        .query_one("SELECT note FROM patients WHERE id = 42", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        note.decrypt(&value, b"42").await.unwrap().expose(),
        b"note-secret-changed"
    );

    // Delete by an encrypted lookup.
    let wanted = ssn.lookup_values(b"ssn-secret-0007").await.unwrap();
    let deleted = app_db
        .execute("DELETE FROM patients WHERE ssn = ANY($1)", &[&wanted])
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let left: i64 = app_db
        .query_one("SELECT count(*) FROM patients", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 49);

    for needle in [
        &b"ssn-secret-00"[..],
        b"note-secret-00",
        b"note-secret-changed",
    ] {
        assert_not_in_database(&app_db, &database, needle).await;
    }
}

async fn connect_same(database: &str) -> Client {
    let url = std::env::var("ATREST_TEST_DATABASE_URL").unwrap();
    connect(&(url.rsplit_once('/').unwrap().0.to_string() + "/" + database)).await
}

#[tokio::test]
async fn moved_truncated_or_foreign_values_are_clean_errors() {
    let server = Server::start();
    let kms_key = new_key(&server.client()).await;
    let (db, _) = fresh_database().await;
    let keys = keys_for(&server, db, CachePolicy::default()).await;
    for column in ["email", "phone"] {
        keys.create_column("users", column, Mode::Randomized, &kms_key)
            .await
            .unwrap();
    }
    keys.create_column("users", "tax_id", Mode::Deterministic, &kms_key)
        .await
        .unwrap();
    let email = keys.encryptor("users", "email").await.unwrap();
    let phone = keys.encryptor("users", "phone").await.unwrap();
    let tax_id = keys.encryptor("users", "tax_id").await.unwrap();
    let value = email.encrypt(b"alice@example.com", b"1").await.unwrap();

    // Copied to another row.
    assert!(matches!(
        email.decrypt(&value, b"2").await,
        Err(FieldError::Authentication)
    ));
    // Moved to another column: that column has other keys.
    assert!(matches!(
        phone.decrypt(&value, b"1").await,
        Err(FieldError::UnknownKeyId(_))
    ));
    // Truncated, at every length.
    for len in 0..value.len() {
        let error = email.decrypt(&value[..len], b"1").await.unwrap_err();
        assert!(
            matches!(error, FieldError::Malformed(_) | FieldError::Authentication),
            "length {len}: {error}"
        );
    }
    // One flipped bit anywhere.
    for index in 0..value.len() {
        let mut changed = value.clone();
        changed[index] ^= 0x01;
        assert!(email.decrypt(&changed, b"1").await.is_err(), "byte {index}");
    }
    // A plaintext value (never encrypted).
    assert!(matches!(
        email.decrypt(b"alice@example.com", b"1").await,
        Err(FieldError::Malformed(_))
    ));
    // Deterministic: bound to the column too.
    let id = tax_id.encrypt(b"123-45-6789", b"").await.unwrap();
    assert_eq!(
        tax_id.decrypt(&id, b"any row").await.unwrap().expose(),
        b"123-45-6789"
    );
    assert!(email.lookup_values(b"x").await.is_err());

    // A wrong key: the same table and column in another database has its own data key.
    let (other_db, _) = fresh_database().await;
    let other = keys_for(&server, other_db, CachePolicy::default()).await;
    other
        .create_column("users", "email", Mode::Randomized, &kms_key)
        .await
        .unwrap();
    let other_email = other.encryptor("users", "email").await.unwrap();
    assert!(matches!(
        other_email.decrypt(&value, b"1").await,
        Err(FieldError::UnknownKeyId(_))
    ));
}

#[tokio::test]
async fn rotation_rewrap_and_cache_limits() {
    let server = Server::start();
    let kms = server.client();
    let first_kms_key = new_key(&kms).await;
    let second_kms_key = new_key(&kms).await;
    let (db, _) = fresh_database().await;
    let keys = keys_for(&server, db, CachePolicy::default()).await;
    let v1 = keys
        .create_column("orders", "card", Mode::Randomized, &first_kms_key)
        .await
        .unwrap();
    let card = keys.encryptor("orders", "card").await.unwrap();
    let old_value = card.encrypt(b"4111-1111", b"1").await.unwrap();
    assert_eq!(
        atrest_fields::tink::key_id_of(&old_value).unwrap(),
        v1.key_id
    );

    // A new data key version: new writes use it, old values still decrypt.
    let v2 = keys.rotate_data_key("orders", "card", None).await.unwrap();
    assert_eq!(v2.version, 2);
    let new_value = card.encrypt(b"4111-2222", b"2").await.unwrap();
    assert_eq!(
        atrest_fields::tink::key_id_of(&new_value).unwrap(),
        v2.key_id
    );
    assert_eq!(
        card.decrypt(&old_value, b"1").await.unwrap().expose(),
        b"4111-1111"
    );

    // Re-wrap under another KMS key; then the first KMS key can go, and everything still opens.
    assert_eq!(
        keys.rewrap("orders", "card", &second_kms_key)
            .await
            .unwrap(),
        2
    );
    let (_, versions) = keys.describe("orders", "card").await.unwrap();
    assert!(
        versions
            .iter()
            .all(|v| v.kms_key_arn.ends_with(&second_kms_key))
    );
    kms.disable_key()
        .key_id(&first_kms_key)
        .send()
        .await
        .unwrap();
    keys.clear_cache();
    assert_eq!(
        card.decrypt(&old_value, b"1").await.unwrap().expose(),
        b"4111-1111"
    );
    assert_eq!(
        card.decrypt(&new_value, b"2").await.unwrap().expose(),
        b"4111-2222"
    );

    // The use limit: after two uses the key is unwrapped again, which a disabled KMS key refuses.
    let (db, _) = fresh_database().await;
    let limited = keys_for(
        &server,
        db,
        CachePolicy {
            ttl: Duration::from_secs(300),
            max_uses: 2,
        },
    )
    .await;
    limited
        .create_column("orders", "card", Mode::Randomized, &second_kms_key)
        .await
        .unwrap();
    let card = limited.encryptor("orders", "card").await.unwrap();
    card.encrypt(b"a", b"1").await.unwrap();
    card.encrypt(b"b", b"1").await.unwrap();
    kms.disable_key()
        .key_id(&second_kms_key)
        .send()
        .await
        .unwrap();
    let error = card.encrypt(b"c", b"1").await.unwrap_err();
    assert!(error.to_string().contains("DisabledException"), "{error}");
    kms.enable_key()
        .key_id(&second_kms_key)
        .send()
        .await
        .unwrap();

    // The TTL: an idle key is evicted (and zeroized) by the background sweep.
    let (db, _) = fresh_database().await;
    let short = keys_for(
        &server,
        db,
        CachePolicy {
            ttl: Duration::from_millis(200),
            max_uses: 1 << 32,
        },
    )
    .await;
    short
        .create_column("orders", "card", Mode::Randomized, &second_kms_key)
        .await
        .unwrap();
    let card = short.encryptor("orders", "card").await.unwrap();
    card.encrypt(b"a", b"1").await.unwrap();
    assert_eq!(short.cached_keys(), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(short.cached_keys(), 0);
}
