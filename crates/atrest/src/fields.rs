//! `atrest fields ...`: column jobs and key rotation over a PostgreSQL database (wiring only; the
//! work is in `atrest-fields`).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atrest_fields::jobs::{ColumnJobs, JobOptions, JobReport, Progress};
use atrest_fields::kms::ConnectOptions;
use atrest_fields::{CachePolicy, FieldError, FieldKeys, Mode};
use serde_json::json;
use tokio_postgres::Client;

use crate::cli::{BatchArgs, ColumnArgs, FieldsCommand};
use crate::error::CliError;

pub fn run(command: FieldsCommand) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::Config(format!("cannot start a runtime: {error}")))?;
    runtime
        .block_on(dispatch(command))
        .map_err(|error| CliError::Config(error.to_string()))
}

async fn dispatch(command: FieldsCommand) -> Result<(), FieldError> {
    match command {
        FieldsCommand::EncryptColumn {
            target,
            kms_key_id,
            deterministic,
            batches,
        } => {
            let mode = if deterministic {
                Mode::Deterministic
            } else {
                Mode::Randomized
            };
            let (mut client, keys) = open(&target).await?;
            let mut jobs = jobs(&mut client, keys, &target, &batches)?;
            let report = jobs
                .encrypt_column(mode, &kms_key_id, &mut Bar::new("encrypt"))
                .await?;
            print_report(&target, &report);
        }
        FieldsCommand::DecryptColumn { target, batches } => {
            let (mut client, keys) = open(&target).await?;
            let mut jobs = jobs(&mut client, keys, &target, &batches)?;
            let report = jobs.decrypt_column(&mut Bar::new("decrypt")).await?;
            print_report(&target, &report);
        }
        FieldsCommand::Reencrypt { target, batches } => {
            let (mut client, keys) = open(&target).await?;
            let mut jobs = jobs(&mut client, keys, &target, &batches)?;
            let report = jobs.reencrypt(&mut Bar::new("reencrypt")).await?;
            print_report(&target, &report);
        }
        FieldsCommand::RotateKeys {
            target,
            new_kms_key_id,
            new_data_key,
        } => {
            if new_kms_key_id.is_none() && !new_data_key {
                return Err(FieldError::Job(
                    "say what to rotate: --new-kms-key-id KEY, --new-data-key, or both".into(),
                ));
            }
            let (_client, keys) = open(&target).await?;
            let (table, column) = (&target.table, &target.column);
            let mut rewrapped = 0;
            if let Some(kms_key) = &new_kms_key_id {
                rewrapped = keys.rewrap(table, column, kms_key).await?;
            }
            let added = match new_data_key {
                true => Some(keys.rotate_data_key(table, column, None).await?),
                false => None,
            };
            let (_, versions) = keys.describe(table, column).await?;
            println!(
                "{}",
                json!({
                    "Table": table,
                    "Column": column,
                    "RewrappedVersions": rewrapped,
                    "NewVersion": added.map(|key| key.version),
                    "PrimaryKeyId": versions.last().map(|key| key.key_id),
                    "KmsKeyArn": versions.last().map(|key| key.kms_key_arn.clone()),
                })
            );
        }
        FieldsCommand::Describe { target } => {
            let (_client, keys) = open(&target).await?;
            let (mode, versions) = keys.describe(&target.table, &target.column).await?;
            let versions: Vec<_> = versions
                .iter()
                .map(|key| {
                    json!({
                        "Version": key.version,
                        "KeyId": key.key_id,
                        "KmsKeyArn": key.kms_key_arn,
                    })
                })
                .collect();
            println!(
                "{}",
                json!({
                    "Table": target.table,
                    "Column": target.column,
                    "Mode": mode.as_str(),
                    "Versions": versions,
                })
            );
        }
        FieldsCommand::ExportKeyset { target } => {
            let (_client, keys) = open(&target).await?;
            let keyset = keys
                .export_tink_keyset(&target.table, &target.column)
                .await?;
            println!("{}", keyset.as_str());
        }
    }
    Ok(())
}

/// A database connection for the key table and the KMS client.
async fn open(target: &ColumnArgs) -> Result<(Client, Arc<FieldKeys<Arc<Client>>>), FieldError> {
    let kms = atrest_fields::kms::connect(&ConnectOptions {
        endpoint_url: target.kms.endpoint_url.clone(),
        region: target.kms.region.clone(),
        profile: target.kms.profile.clone(),
    })
    .await?;
    let key_client = Arc::new(connect(&target.database_url).await?);
    let keys = FieldKeys::new(key_client, kms, CachePolicy::default());
    keys.install().await?;
    // The jobs need their own connection: they hold a transaction per batch.
    Ok((connect(&target.database_url).await?, keys))
}

/// Connects as psql would: libpq's `sslmode`/`sslrootcert` (in the URL or `PGSSLMODE`/
/// `PGSSLROOTCERT`) decide whether the connection is encrypted and what is checked.
async fn connect(url: &str) -> Result<Client, FieldError> {
    let (client, connection) = atrest_fields::postgres_tls::connect(url).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::error!(%error, "database connection closed");
        }
    });
    // The idempotent DDL's "already exists, skipping" notices are not news.
    client
        .batch_execute("SET client_min_messages = warning")
        .await?;
    Ok(client)
}

fn jobs<'a>(
    client: &'a mut Client,
    keys: Arc<FieldKeys<Arc<Client>>>,
    target: &ColumnArgs,
    batches: &BatchArgs,
) -> Result<ColumnJobs<'a, Arc<Client>>, FieldError> {
    ColumnJobs::new(
        client,
        keys,
        &target.table,
        &target.column,
        JobOptions {
            batch_size: batches.batch_size,
            pause: Duration::from_millis(batches.pause_ms),
        },
    )
}

fn print_report(target: &ColumnArgs, report: &JobReport) {
    println!(
        "{}",
        json!({
            "Table": target.table,
            "Column": target.column,
            "Job": report.job.as_str(),
            "Rows": report.rows,
            "ResumedAfterRows": report.resumed_after,
        })
    );
}

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
struct Bar {
    label: &'static str,
    total: u64,
    done: u64,
    started: Instant,
    drawn: Instant,
    visible: bool,
}

impl Bar {
    fn new(label: &'static str) -> Self {
        Self {
            label,
            total: 0,
            done: 0,
            started: Instant::now(),
            drawn: Instant::now(),
            visible: std::io::stderr().is_terminal(),
        }
    }

    fn draw(&mut self) {
        if !self.visible {
            return;
        }
        const WIDTH: u64 = 30;
        let filled = (self.done * WIDTH).checked_div(self.total).unwrap_or(WIDTH);
        let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { '-' })
            .collect();
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r{} [{bar}] {}/{} rows, {rate:.0} rows/s ",
            self.label, self.done, self.total
        );
        let _ = stderr.flush();
        self.drawn = Instant::now();
    }
}

impl Progress for Bar {
    fn begin(&mut self, total: u64, done: u64) {
        self.total = total;
        self.done = done;
        self.draw();
    }

    fn advance(&mut self, rows: u64) {
        self.done += rows;
        if self.drawn.elapsed() >= Duration::from_millis(100) {
            self.draw();
        }
    }

    fn finish(&mut self) {
        self.draw();
        if self.visible {
            eprintln!();
        }
    }
}
