//! Field-level encryption benchmark (issue 8), all in one run against the real `atrest` KMS and a
//! real PostgreSQL:
//!
//! 1. Field encryptions/s on one core with a cached data key, 64-byte values, through
//!    `FieldEncryptor` (cache lookup, use counting, AAD, Tink prefix), next to the peer: bare
//!    AES-256-GCM seals of the same values in the same process. Target: 1,000,000/s.
//! 2. Rows/s inserting 100,000 rows with 3 encrypted 64-byte columns, against the same insert of
//!    the plaintext into an identical table. Target: at least 80% of plaintext. Both insert in
//!    batches of 1,000 rows per statement (`unnest` of arrays), the fast path an application
//!    loading data would use, so the encryption's share is not hidden behind round trips.
//!
//! Run: `scripts/with-postgres cargo bench -p atrest --bench fields` (it needs
//! `ATREST_TEST_DATABASE_URL`; optional `ATREST_BENCH_ROWS`, `ATREST_BENCH_ENCRYPTIONS`).

// A benchmark binary: it panics and unwraps on setup failures, which end the run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use atrest_fields::{CachePolicy, FieldKeys, Mode};
use aws_lc_rs::aead::{AES_256_GCM, Aad, RandomizedNonceKey};
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use tokio_postgres::{Client, NoTls};

use support::{ACCESS_KEY, SECRET, env_or, free_port, start_atrest};

const VALUE: &[u8; 64] = b"a 64-byte field value: an address, a name, an email, a note.....";
const BATCH: usize = 1000;

fn main() {
    let url = std::env::var("ATREST_TEST_DATABASE_URL").expect(
        "ATREST_TEST_DATABASE_URL is unset: run scripts/with-postgres cargo bench -p atrest --bench fields",
    );
    let rows: usize = env_or("ATREST_BENCH_ROWS", 100_000);
    let encryptions: usize = env_or("ATREST_BENCH_ENCRYPTIONS", 2_000_000);
    let data_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start_atrest(data_dir.path(), port, &[]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&url, port, rows, encryptions));
    let _ = server.kill();
    let _ = server.wait();
}

async fn run(url: &str, port: u16, rows: usize, encryptions: usize) {
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET, None, None, "bench"))
            .build(),
    );
    let kms_key = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_string();
    let db = fresh_database(url).await;
    let keys = FieldKeys::new(Arc::new(db), kms, CachePolicy::default());
    keys.install().await.unwrap();
    for (column, mode) in [
        ("name", Mode::Randomized),
        ("email", Mode::Deterministic),
        ("note", Mode::Randomized),
    ] {
        keys.create_column("people", column, mode, &kms_key)
            .await
            .unwrap();
    }
    let name = keys.encryptor("people", "name").await.unwrap();
    let email = keys.encryptor("people", "email").await.unwrap();
    let note = keys.encryptor("people", "note").await.unwrap();

    // 1. Encryptions per second on this one thread, cached key.
    name.encrypt(VALUE, b"warm-up").await.unwrap();
    let started = Instant::now();
    for i in 0..encryptions {
        black_box(
            name.encrypt(VALUE, &(i as u64).to_be_bytes())
                .await
                .unwrap(),
        );
    }
    let field_rate = encryptions as f64 / started.elapsed().as_secs_f64();
    let peer = RandomizedNonceKey::new(&AES_256_GCM, &[7; 32]).unwrap();
    let started = Instant::now();
    for i in 0..encryptions {
        let mut buffer = Vec::with_capacity(64 + 16);
        buffer.extend_from_slice(VALUE);
        let aad = (i as u64).to_be_bytes();
        black_box(
            peer.seal_in_place_append_tag(Aad::from(&aad), &mut buffer)
                .unwrap(),
        );
    }
    let peer_rate = encryptions as f64 / started.elapsed().as_secs_f64();
    let deterministic = encryptions / 4;
    let started = Instant::now();
    for _ in 0..deterministic {
        black_box(email.encrypt(VALUE, b"").await.unwrap());
    }
    let siv_rate = deterministic as f64 / started.elapsed().as_secs_f64();
    let sample = name.encrypt(VALUE, b"1").await.unwrap();
    let started = Instant::now();
    for _ in 0..deterministic {
        black_box(name.decrypt(&sample, b"1").await.unwrap());
    }
    let decrypt_rate = deterministic as f64 / started.elapsed().as_secs_f64();
    println!("field encryption, 64-byte values, one core, cached data key:");
    println!(
        "  randomized (AES-256-GCM) encrypt {field_rate:>12.0}/s  = {:.2} x target 1,000,000/s; \
         bare AES-GCM seal peer {peer_rate:.0}/s (field/peer {:.2})",
        field_rate / 1e6,
        field_rate / peer_rate
    );
    println!("  randomized decrypt             {decrypt_rate:>12.0}/s");
    println!("  deterministic (AES-SIV) encrypt {siv_rate:>11.0}/s");

    // 2. Inserting rows: 3 encrypted columns against the same plaintext, alternating runs.
    let app = fresh_database(url).await;
    for table in ["people_plain", "people"] {
        app.batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, name bytea, email bytea, note bytea)"
        ))
        .await
        .unwrap();
    }
    let mut plain_best = f64::MAX;
    let mut encrypted_best = f64::MAX;
    for round in 0..2 {
        let offset = (round * rows) as i64;
        let started = Instant::now();
        insert_plain(&app, offset, rows).await;
        plain_best = plain_best.min(started.elapsed().as_secs_f64());
        let started = Instant::now();
        for chunk in (0..rows).step_by(BATCH) {
            let count = BATCH.min(rows - chunk);
            let mut ids = Vec::with_capacity(count);
            let mut names = Vec::with_capacity(count);
            let mut emails = Vec::with_capacity(count);
            let mut notes = Vec::with_capacity(count);
            for i in chunk..chunk + count {
                let id = offset + i as i64;
                let row = id.to_string();
                ids.push(id);
                names.push(name.encrypt(VALUE, row.as_bytes()).await.unwrap());
                emails.push(email.encrypt(VALUE, row.as_bytes()).await.unwrap());
                notes.push(note.encrypt(VALUE, row.as_bytes()).await.unwrap());
            }
            insert_batch(&app, "people", &ids, &names, &emails, &notes).await;
        }
        encrypted_best = encrypted_best.min(started.elapsed().as_secs_f64());
    }
    let plain_rate = rows as f64 / plain_best;
    let encrypted_rate = rows as f64 / encrypted_best;
    println!("inserting {rows} rows, 3 x 64-byte columns, {BATCH} rows per statement (best of 2):");
    println!(
        "  plaintext {plain_rate:>10.0} rows/s; encrypted {encrypted_rate:>10.0} rows/s = {:.2} of \
         plaintext (target 0.80)",
        encrypted_rate / plain_rate
    );
}

async fn insert_plain(app: &Client, offset: i64, rows: usize) {
    for chunk in (0..rows).step_by(BATCH) {
        let count = BATCH.min(rows - chunk);
        let ids: Vec<i64> = (chunk..chunk + count).map(|i| offset + i as i64).collect();
        let values: Vec<&[u8]> = vec![VALUE.as_slice(); count];
        insert_batch(app, "people_plain", &ids, &values, &values, &values).await;
    }
}

async fn insert_batch<V: tokio_postgres::types::ToSql + Sync>(
    app: &Client,
    table: &str,
    ids: &[i64],
    names: &[V],
    emails: &[V],
    notes: &[V],
) {
    app.execute(
        &format!(
            "INSERT INTO {table} (id, name, email, note)
             SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[], $4::bytea[])"
        ),
        &[&ids, &names, &emails, &notes],
    )
    .await
    .unwrap();
}

async fn fresh_database(url: &str) -> Client {
    let admin = connect(url).await;
    let name = format!("bench_{}", hex::encode(atrest_crypto::random::bytes(6)));
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    connect(&(url.rsplit_once('/').unwrap().0.to_string() + "/" + &name)).await
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}
