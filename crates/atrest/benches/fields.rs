//! Field-level encryption benchmark (issue 8), all in one run against the real `atrest` KMS and a
//! real PostgreSQL:
//!
//! 1. Field encryptions/s on one core with a cached data key, 64-byte values, through
//!    `FieldEncryptor` (cache lookup, use counting, AAD, Tink prefix), next to the peer: bare
//!    AES-256-GCM seals of the same values in the same process. Target: 1,000,000/s.
//! 2. Rows/s inserting 100,000 rows with 3 encrypted 64-byte columns, against the same insert of
//!    the plaintext into an identical table. Target: at least 80% of plaintext. Both insert in
//!    batches of 1,000 rows per statement (`unnest` of arrays), the fast path an application
//!    loading data would use, so the encryption's share is not hidden behind round trips; both
//!    prepare the next batch in a task and keep two statements in flight, so the database never
//!    waits for the client to encode and send the next batch.
//!
//! A second pair inserts one row per statement (pipelined, 1,000 per transaction), as an
//! application writing rows does. Each also inserts plaintext padded to the ciphertexts' sizes, which shows
//! how much of the difference is the format's bigger rows rather than the cryptography.
//!
//! Run: `scripts/with-postgres cargo bench -p atrest --bench fields` (it needs
//! `ATREST_TEST_DATABASE_URL`; optional `ATREST_BENCH_ROWS`, `ATREST_BENCH_ENCRYPTIONS`).

// A benchmark binary: it panics and unwraps on setup failures, which end the run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use atrest_fields::{CachePolicy, FieldEncryptor, FieldKeys, Mode};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use futures_util::StreamExt;
use tokio_postgres::types::ToSql;
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
    // Two workers: the insert benchmark prepares the next batch while the database takes this one.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
    let columns = Arc::new([
        keys.encryptor("people", "name").await.unwrap(),
        keys.encryptor("people", "email").await.unwrap(),
        keys.encryptor("people", "note").await.unwrap(),
    ]);
    let [name, email, _] = columns.as_ref();

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
    // The peer: the same seal with nothing around it, its random nonce drawn as the field's is.
    let peer = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).unwrap());
    let started = Instant::now();
    for i in 0..encryptions {
        let mut buffer = Vec::with_capacity(64 + 16);
        buffer.extend_from_slice(VALUE);
        let aad = (i as u64).to_be_bytes();
        let nonce = Nonce::assume_unique_for_key(atrest_crypto::random::gcm_nonce());
        peer.seal_in_place_append_tag(nonce, Aad::from(&aad), &mut buffer)
            .unwrap();
        black_box(buffer);
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
    let app = Arc::new(fresh_database(url).await);
    for (style, rounds) in [(Style::Bulk, 5), (Style::PerRow, 3)] {
        let [plain, padded, encrypted] = compare(&app, &columns, rows, style, rounds).await;
        println!(
            "inserting {rows} rows, 3 x 64-byte columns, {} (best of {rounds}):",
            style.describe()
        );
        println!(
            "  plaintext {:>10.0} rows/s; encrypted {:>10.0} rows/s = {:.2} of plaintext \
             (target 0.80)",
            rows as f64 / plain,
            rows as f64 / encrypted,
            plain / encrypted
        );
        println!(
            "  (diagnostic: plaintext padded to the ciphertext sizes {:.0} rows/s = {:.2} of \
             plaintext; encrypted = {:.2} of padded)",
            rows as f64 / padded,
            plain / padded,
            padded / encrypted
        );
    }
}

type Encryptors = Arc<[FieldEncryptor<Arc<Client>>; 3]>;

/// How rows reach the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// One `INSERT ... SELECT * FROM unnest(...)` per 1,000 rows, two statements in flight: a
    /// bulk load, the fastest path, where encryption's share is largest.
    Bulk,
    /// One `INSERT ... VALUES` per row, 1,000 in flight on the connection (pipelined), one
    /// transaction per 1,000 rows: what an application writing rows does.
    PerRow,
}

impl Style {
    fn describe(self) -> &'static str {
        match self {
            Self::Bulk => "bulk: 1,000 rows per statement",
            Self::PerRow => "one statement per row, pipelined, 1,000 per transaction",
        }
    }
}

/// Seconds (best of `rounds`, runs interleaved) for plaintext, plaintext padded to the
/// ciphertexts' sizes, and encrypted rows, each table fresh.
async fn compare(
    app: &Arc<Client>,
    columns: &Encryptors,
    rows: usize,
    style: Style,
    rounds: usize,
) -> [f64; 3] {
    let tables = ["people_plain", "people_padded", "people"];
    for table in tables {
        app.batch_execute(&format!(
            "DROP TABLE IF EXISTS {table};
             CREATE TABLE {table} (id bigint PRIMARY KEY, name bytea, email bytea, note bytea)"
        ))
        .await
        .unwrap();
    }
    let mut best = [f64::MAX; 3];
    for round in 0..rounds {
        let offset = (round * rows) as i64;
        // Each round starts with a different kind, so none always runs while autovacuum or the
        // background writer deals with the run before it; each run starts after a checkpoint, so
        // none pays for writing back another's pages.
        for index in (0..3).map(|i| (i + round) % 3) {
            let table = tables[index];
            app.batch_execute("CHECKPOINT").await.unwrap();
            let started = Instant::now();
            let (sender, batches) = tokio::sync::mpsc::channel(2);
            tokio::spawn(produce(index, Arc::clone(columns), offset, rows, sender));
            insert_all(app, table, style, batches).await;
            best[index] = best[index].min(started.elapsed().as_secs_f64());
        }
    }
    // Every kind wrote every row (a rate is only worth its rows).
    for table in tables {
        let count: i64 = app
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(count as usize, rounds * rows, "{table} lost rows");
    }
    best
}

/// Ids and three columns of values, one batch's worth.
type Batch = (Vec<i64>, Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Prepares batches in its own task, so preparing the next batch overlaps the database writing
/// this one, as a loader would do: `kind` 0 copies the plaintext, 1 copies padding of the
/// ciphertexts' sizes (a diagnostic that splits the cost between bigger rows and the
/// cryptography), 2 encrypts.
async fn produce(
    kind: usize,
    columns: Encryptors,
    offset: i64,
    rows: usize,
    sender: tokio::sync::mpsc::Sender<Batch>,
) {
    let [name, email, note] = columns.as_ref();
    for chunk in (0..rows).step_by(BATCH) {
        let count = BATCH.min(rows - chunk);
        let mut batch: Batch = (
            Vec::with_capacity(count),
            Vec::with_capacity(count),
            Vec::with_capacity(count),
            Vec::with_capacity(count),
        );
        for i in chunk..chunk + count {
            let id = offset + i as i64;
            batch.0.push(id);
            match kind {
                0 => {
                    batch.1.push(VALUE.to_vec());
                    batch.2.push(VALUE.to_vec());
                    batch.3.push(VALUE.to_vec());
                }
                1 => {
                    batch.1.push(vec![b'p'; 64 + Mode::Randomized.overhead()]);
                    batch
                        .2
                        .push(vec![b'p'; 64 + Mode::Deterministic.overhead()]);
                    batch.3.push(vec![b'p'; 64 + Mode::Randomized.overhead()]);
                }
                _ => {
                    let row = id.to_string();
                    batch
                        .1
                        .push(name.encrypt(VALUE, row.as_bytes()).await.unwrap());
                    batch
                        .2
                        .push(email.encrypt(VALUE, row.as_bytes()).await.unwrap());
                    batch
                        .3
                        .push(note.encrypt(VALUE, row.as_bytes()).await.unwrap());
                }
            }
        }
        sender.send(batch).await.unwrap();
    }
}

async fn insert_all(
    app: &Client,
    table: &str,
    style: Style,
    batches: tokio::sync::mpsc::Receiver<Batch>,
) {
    match style {
        Style::Bulk => insert_bulk(app, table, batches).await,
        Style::PerRow => insert_per_row(app, table, batches).await,
    }
}

/// One `unnest` statement per batch, two statements in flight: the client encodes and sends the
/// next batch while the database inserts this one, so the database never waits on the client.
async fn insert_bulk(app: &Client, table: &str, mut batches: tokio::sync::mpsc::Receiver<Batch>) {
    let statement = app
        .prepare(&format!(
            "INSERT INTO {table} (id, name, email, note)
             SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[], $4::bytea[])"
        ))
        .await
        .unwrap();
    let statement = &statement;
    futures_util::stream::poll_fn(|context| batches.poll_recv(context))
        .map(|(ids, names, emails, notes)| async move {
            app.execute(statement, &[&ids, &names, &emails, &notes])
                .await
                .unwrap()
        })
        .buffered(2)
        .for_each(|_| async {})
        .await;
}

/// One statement per row, all of a batch in flight on the connection, one transaction per batch.
async fn insert_per_row(
    app: &Client,
    table: &str,
    mut batches: tokio::sync::mpsc::Receiver<Batch>,
) {
    let statement = app
        .prepare(&format!(
            "INSERT INTO {table} (id, name, email, note) VALUES ($1, $2, $3, $4)"
        ))
        .await
        .unwrap();
    while let Some((ids, names, emails, notes)) = batches.recv().await {
        let inserts = (0..ids.len()).map(|i| {
            let params: [&(dyn ToSql + Sync); 4] = [&ids[i], &names[i], &emails[i], &notes[i]];
            app.execute_raw(&statement, params)
        });
        app.batch_execute("BEGIN").await.unwrap();
        futures_util::future::try_join_all(inserts).await.unwrap();
        app.batch_execute("COMMIT").await.unwrap();
    }
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
