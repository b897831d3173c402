//! Column jobs on PostgreSQL: encrypt an existing plaintext column in place, decrypt it back, and
//! re-encrypt old rows to the newest data key version. What `atrest fields ...` runs.
//!
//! Each job walks the table in primary key order, one batch per transaction: the batch's rows are
//! locked (`FOR UPDATE`), rewritten, and the job's position (`atrest_field_jobs.last_row`) moves in
//! the same commit. A job killed at any point therefore resumes exactly after its last committed
//! batch, and no row is encrypted twice or skipped. The row identity bound into randomized values
//! is the primary key's text form, so the table needs a one-column primary key.
//!
//! While `encrypt-column` runs, readers must accept both forms (a value that fails
//! [`crate::tink::key_id_of`] is still plaintext); application writers should already write
//! encrypted values, or pause.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, Transaction};

use crate::error::{FieldError, Result};
use crate::keys::FieldKeys;
use crate::table::KeyTable;
use crate::tink::{self, Mode};

const JOB_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS atrest_field_jobs (
    table_name  text NOT NULL,
    column_name text NOT NULL,
    job         text NOT NULL CHECK (job IN ('encrypt', 'decrypt', 'reencrypt')),
    -- The primary key (as text) of the last row of the last committed batch.
    last_row    text,
    rows_done   bigint NOT NULL DEFAULT 0,
    finished    boolean NOT NULL DEFAULT false,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (table_name, column_name, job)
);
";

/// Which job; also its name in `atrest_field_jobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Encrypt,
    Decrypt,
    Reencrypt,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Encrypt => "encrypt",
            Self::Decrypt => "decrypt",
            Self::Reencrypt => "reencrypt",
        }
    }
}

/// Batch size and pacing.
#[derive(Debug, Clone, Copy)]
pub struct JobOptions {
    pub batch_size: i64,
    /// A pause after each batch, to leave room for a live database's own load.
    pub pause: Duration,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            pause: Duration::ZERO,
        }
    }
}

/// Told how far a job is, for a progress bar.
pub trait Progress {
    /// `total` rows the job touches this run, `done` already done by an earlier, killed run.
    fn begin(&mut self, total: u64, done: u64);
    fn advance(&mut self, rows: u64);
    fn finish(&mut self);
}

/// A progress sink that shows nothing.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&mut self, _total: u64, _done: u64) {}
    fn advance(&mut self, _rows: u64) {}
    fn finish(&mut self) {}
}

/// What a job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    pub job: JobKind,
    /// Rows rewritten by this run.
    pub rows: u64,
    /// Rows a killed earlier run had already committed (0 for a fresh start).
    pub resumed_after: u64,
}

/// The target table's primary key and the column's current SQL type.
struct TableShape {
    table_sql: String,
    column_sql: String,
    pk_sql: String,
    pk_type: String,
    column_type: String,
}

/// Jobs over one column, with their own connection (they need transactions) and the key
/// hierarchy (whose key table may use another connection to the same database).
pub struct ColumnJobs<'a, T> {
    client: &'a mut Client,
    keys: Arc<FieldKeys<T>>,
    table: String,
    column: String,
    options: JobOptions,
}

impl<T> std::fmt::Debug for ColumnJobs<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ColumnJobs({}.{})", self.table, self.column)
    }
}

impl<'a, T: KeyTable> ColumnJobs<'a, T> {
    pub fn new(
        client: &'a mut Client,
        keys: Arc<FieldKeys<T>>,
        table: &str,
        column: &str,
        options: JobOptions,
    ) -> Result<Self> {
        if options.batch_size < 1 {
            return Err(FieldError::Job("the batch size must be at least 1".into()));
        }
        Ok(Self {
            client,
            keys,
            table: table.into(),
            column: column.into(),
            options,
        })
    }

    /// Encrypts every value of a plaintext column in place, making it `bytea` first (text is
    /// taken as UTF-8; the original type is kept for `decrypt_column`).
    pub async fn encrypt_column(
        &mut self,
        mode: Mode,
        kms_key_id: &str,
        progress: &mut dyn Progress,
    ) -> Result<JobReport> {
        self.install().await?;
        let shape = self.shape().await?;
        if self.job_state(JobKind::Encrypt).await? == Some(true) {
            return Err(FieldError::Job(format!(
                "{}.{} is already encrypted (use reencrypt or rotate-keys)",
                self.table, self.column
            )));
        }
        self.keys
            .create_column(&self.table, &self.column, mode, kms_key_id)
            .await?;
        if shape.column_type != "bytea" {
            let tx = self.client.transaction().await?;
            tx.execute(
                "UPDATE atrest_field_columns SET original_type = $3
                 WHERE table_name = $1 AND column_name = $2",
                &[&self.table, &self.column, &shape.column_type],
            )
            .await?;
            tx.batch_execute(&format!(
                "ALTER TABLE {t} ALTER COLUMN {c} TYPE bytea USING convert_to({c}::text, 'UTF8')",
                t = shape.table_sql,
                c = shape.column_sql
            ))
            .await?;
            tx.commit().await?;
        }
        self.run(JobKind::Encrypt, &shape, None, progress).await
    }

    /// Decrypts every value back to plaintext, restores the column's original type, and removes
    /// the column's keys from the key table.
    pub async fn decrypt_column(&mut self, progress: &mut dyn Progress) -> Result<JobReport> {
        self.install().await?;
        let shape = self.shape().await?;
        if self.job_state(JobKind::Encrypt).await? == Some(false) {
            return Err(FieldError::Job(format!(
                "encrypt-column of {}.{} has not finished; run it again to complete it first",
                self.table, self.column
            )));
        }
        self.keys.describe(&self.table, &self.column).await?;
        let report = self.run(JobKind::Decrypt, &shape, None, progress).await?;
        let tx = self.client.transaction().await?;
        let original: Option<String> = tx
            .query_opt(
                "SELECT original_type FROM atrest_field_columns
                 WHERE table_name = $1 AND column_name = $2",
                &[&self.table, &self.column],
            )
            .await?
            .and_then(|row| row.get(0));
        if let Some(original) = original {
            tx.batch_execute(&format!(
                "ALTER TABLE {t} ALTER COLUMN {c} TYPE {original}
                 USING convert_from({c}, 'UTF8')::{original}",
                t = shape.table_sql,
                c = shape.column_sql
            ))
            .await?;
        }
        for statement in [
            "DELETE FROM atrest_field_columns WHERE table_name = $1 AND column_name = $2",
            "DELETE FROM atrest_field_jobs WHERE table_name = $1 AND column_name = $2",
        ] {
            tx.execute(statement, &[&self.table, &self.column]).await?;
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Rewrites every value not under the newest data key version with that version.
    pub async fn reencrypt(&mut self, progress: &mut dyn Progress) -> Result<JobReport> {
        self.install().await?;
        let shape = self.shape().await?;
        let encryptor = self.keys.encryptor(&self.table, &self.column).await?;
        let prefix = encryptor.primary_prefix().await?;
        self.run(JobKind::Reencrypt, &shape, Some(prefix), progress)
            .await
    }

    async fn install(&self) -> Result<()> {
        self.keys.install().await?;
        self.client.batch_execute(JOB_SCHEMA).await?;
        Ok(())
    }

    /// `Some(finished)` if the job has a row.
    async fn job_state(&self, job: JobKind) -> Result<Option<bool>> {
        let row = self
            .client
            .query_opt(
                "SELECT finished FROM atrest_field_jobs
                 WHERE table_name = $1 AND column_name = $2 AND job = $3",
                &[&self.table, &self.column, &job.as_str()],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn shape(&self) -> Result<TableShape> {
        let pk = self
            .client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
                 FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                 WHERE i.indrelid = to_regclass(quote_ident($1)) AND i.indisprimary",
                &[&self.table],
            )
            .await?;
        let (pk_name, pk_type): (String, String) = match pk.as_slice() {
            [row] => (row.get(0), row.get(1)),
            [] => {
                return Err(FieldError::Job(format!(
                    "table {:?} does not exist or has no primary key (the job walks rows in \
                     primary key order and binds values to it)",
                    self.table
                )));
            }
            _ => {
                return Err(FieldError::Job(format!(
                    "table {:?} has a composite primary key; the job needs a one-column one",
                    self.table
                )));
            }
        };
        let column_type: String = self
            .client
            .query_opt(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = to_regclass(quote_ident($1)) AND attname = $2
                   AND attnum > 0 AND NOT attisdropped",
                &[&self.table, &self.column],
            )
            .await?
            .map(|row| row.get(0))
            .ok_or_else(|| {
                FieldError::Job(format!(
                    "table {:?} has no column {:?}",
                    self.table, self.column
                ))
            })?;
        if pk_name == self.column {
            return Err(FieldError::Job(
                "the primary key itself cannot be encrypted (it is the row identity)".into(),
            ));
        }
        Ok(TableShape {
            table_sql: quote_ident(&self.table),
            column_sql: quote_ident(&self.column),
            pk_sql: quote_ident(&pk_name),
            pk_type,
            column_type,
        })
    }

    /// The batch loop shared by the three jobs.
    async fn run(
        &mut self,
        job: JobKind,
        shape: &TableShape,
        primary_prefix: Option<[u8; tink::PREFIX_LEN]>,
        progress: &mut dyn Progress,
    ) -> Result<JobReport> {
        // A finished re-encryption is started afresh (a newer version may exist now); any other
        // row is resumed where its last committed batch ended.
        self.client
            .execute(
                "INSERT INTO atrest_field_jobs (table_name, column_name, job) VALUES ($1, $2, $3)
                 ON CONFLICT (table_name, column_name, job) DO UPDATE
                 SET last_row = NULL, rows_done = 0, finished = false, started_at = now(),
                     finished_at = NULL
                 WHERE atrest_field_jobs.finished AND atrest_field_jobs.job = 'reencrypt'",
                &[&self.table, &self.column, &job.as_str()],
            )
            .await?;
        let filter = match primary_prefix {
            Some(_) => format!("AND substring({} FROM 1 FOR 5) <> $3", shape.column_sql),
            None => String::new(),
        };
        let prefix_param: Vec<u8> = primary_prefix.map(|p| p.to_vec()).unwrap_or_default();
        // ORDER BY names the table's column: a bare name would sort by the text output column.
        let select = format!(
            "SELECT {pk}::text, {c} FROM {t}
             WHERE {c} IS NOT NULL AND ($1::text IS NULL OR {pk} > $1::text::{pk_type}) {filter}
             ORDER BY {t}.{pk} LIMIT $2 FOR UPDATE",
            pk = shape.pk_sql,
            c = shape.column_sql,
            t = shape.table_sql,
            pk_type = shape.pk_type,
        );
        let update = format!(
            "UPDATE {t} SET {c} = u.value
             FROM unnest($1::text[], $2::bytea[]) AS u(row_id, value)
             WHERE {t}.{pk} = u.row_id::{pk_type}",
            pk = shape.pk_sql,
            c = shape.column_sql,
            t = shape.table_sql,
            pk_type = shape.pk_type,
        );
        let count = format!(
            "SELECT count(*) FROM {t} WHERE {c} IS NOT NULL
               AND ($1::text IS NULL OR {pk} > $1::text::{pk_type}) {filter}",
            pk = shape.pk_sql,
            c = shape.column_sql,
            t = shape.table_sql,
            pk_type = shape.pk_type,
            filter = filter.replace("$3", "$2"),
        );
        let position = self
            .client
            .query_one(
                "SELECT last_row, rows_done FROM atrest_field_jobs
                 WHERE table_name = $1 AND column_name = $2 AND job = $3",
                &[&self.table, &self.column, &job.as_str()],
            )
            .await?;
        let last_row: Option<String> = position.get(0);
        let resumed_after = u64::try_from(position.get::<_, i64>(1)).unwrap_or(0);
        let remaining: i64 = if primary_prefix.is_some() {
            self.client
                .query_one(&count, &[&last_row, &prefix_param])
                .await?
                .get(0)
        } else {
            self.client.query_one(&count, &[&last_row]).await?.get(0)
        };
        progress.begin(
            resumed_after + u64::try_from(remaining).unwrap_or(0),
            resumed_after,
        );
        let encryptor = self.keys.encryptor(&self.table, &self.column).await?;
        let mut rows_done = 0u64;
        loop {
            let tx = self.client.transaction().await?;
            let last_row: Option<String> = tx
                .query_one(
                    "SELECT last_row FROM atrest_field_jobs
                     WHERE table_name = $1 AND column_name = $2 AND job = $3 FOR UPDATE",
                    &[&self.table, &self.column, &job.as_str()],
                )
                .await?
                .get(0);
            let rows = if primary_prefix.is_some() {
                tx.query(
                    &select,
                    &[&last_row, &self.options.batch_size, &prefix_param],
                )
                .await?
            } else {
                tx.query(&select, &[&last_row, &self.options.batch_size])
                    .await?
            };
            let Some(last) = rows.last().map(|row| row.get::<_, String>(0)) else {
                finish(&tx, &self.table, &self.column, job).await?;
                tx.commit().await?;
                break;
            };
            let mut ids = Vec::with_capacity(rows.len());
            let mut values = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: String = row.get(0);
                let value: &[u8] = row.get(1);
                let new_value = match job {
                    JobKind::Encrypt => encryptor.encrypt(value, id.as_bytes()).await?,
                    JobKind::Decrypt => {
                        let plain = encryptor
                            .decrypt(value, id.as_bytes())
                            .await
                            .map_err(|error| row_error(&id, error))?;
                        plain.expose().to_vec()
                    }
                    JobKind::Reencrypt => {
                        let plain = encryptor
                            .decrypt(value, id.as_bytes())
                            .await
                            .map_err(|error| row_error(&id, error))?;
                        encryptor.encrypt(plain.expose(), id.as_bytes()).await?
                    }
                };
                ids.push(id);
                values.push(new_value);
            }
            tx.execute(&update, &[&ids, &values]).await?;
            tx.execute(
                "UPDATE atrest_field_jobs SET last_row = $4, rows_done = rows_done + $5
                 WHERE table_name = $1 AND column_name = $2 AND job = $3",
                &[
                    &self.table,
                    &self.column,
                    &job.as_str(),
                    &last,
                    &(rows.len() as i64),
                ],
            )
            .await?;
            tx.commit().await?;
            rows_done += rows.len() as u64;
            progress.advance(rows.len() as u64);
            if !self.options.pause.is_zero() {
                tokio::time::sleep(self.options.pause).await;
            }
        }
        progress.finish();
        Ok(JobReport {
            job,
            rows: rows_done,
            resumed_after,
        })
    }
}

async fn finish(tx: &Transaction<'_>, table: &str, column: &str, job: JobKind) -> Result<()> {
    tx.execute(
        "UPDATE atrest_field_jobs SET finished = true, finished_at = now()
         WHERE table_name = $1 AND column_name = $2 AND job = $3",
        &[&table, &column, &job.as_str()],
    )
    .await?;
    Ok(())
}

fn row_error(row: &str, error: FieldError) -> FieldError {
    FieldError::Job(format!("row {row}: {error}"))
}

/// An SQL identifier quoted as PostgreSQL's `quote_ident` does (always quoting is also correct).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
