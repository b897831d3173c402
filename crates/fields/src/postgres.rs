//! [`KeyTable`] on a `tokio_postgres::Client`: every method is one statement, so each is atomic
//! without needing `&mut` for a transaction.

use tokio_postgres::Client;

use crate::error::{FieldError, Result};
use crate::kms::WrappedKey;
use crate::table::{ColumnKeys, ColumnRecord, DataKeyRecord, KeyTable, SCHEMA};
use crate::tink::Mode;

impl KeyTable for Client {
    async fn install(&self) -> Result<()> {
        self.batch_execute(SCHEMA).await?;
        Ok(())
    }

    async fn load(&self, table: &str, column: &str) -> Result<Option<ColumnKeys>> {
        let rows = self
            .query(
                "SELECT c.mode, k.version, k.key_id, k.kms_key_arn, k.wrapped_key
                 FROM atrest_field_columns c
                 LEFT JOIN atrest_field_keys k USING (table_name, column_name)
                 WHERE c.table_name = $1 AND c.column_name = $2
                 ORDER BY k.version",
                &[&table, &column],
            )
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mode = Mode::parse(first.try_get::<_, &str>(0)?)?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(version) = row.try_get::<_, Option<i32>>(1)? else {
                continue; // the column exists but has no key yet (LEFT JOIN)
            };
            let key_id: i64 = row.try_get(2)?;
            keys.push(DataKeyRecord {
                version,
                key_id: u32::try_from(key_id)
                    .map_err(|_| FieldError::Corrupt(format!("key id {key_id} out of range")))?,
                wrapped: WrappedKey {
                    kms_key_arn: row.try_get(3)?,
                    ciphertext: row.try_get(4)?,
                },
            });
        }
        Ok(Some(ColumnKeys {
            column: ColumnRecord {
                table: table.to_string(),
                column: column.to_string(),
                mode,
            },
            keys,
        }))
    }

    async fn add_key(&self, column: &ColumnRecord, key: &DataKeyRecord) -> Result<()> {
        // One statement: the column row (if new) and the key land together or not at all.
        self.execute(
            "WITH new_column AS (
                 INSERT INTO atrest_field_columns (table_name, column_name, mode)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING
             )
             INSERT INTO atrest_field_keys
                 (table_name, column_name, version, key_id, kms_key_arn, wrapped_key)
             VALUES ($1, $2, $4, $5, $6, $7)",
            &[
                &column.table,
                &column.column,
                &column.mode.as_str(),
                &key.version,
                &i64::from(key.key_id),
                &key.wrapped.kms_key_arn,
                &key.wrapped.ciphertext,
            ],
        )
        .await?;
        Ok(())
    }

    async fn replace_wrapping(
        &self,
        table: &str,
        column: &str,
        keys: &[DataKeyRecord],
    ) -> Result<()> {
        let versions: Vec<i32> = keys.iter().map(|key| key.version).collect();
        let arns: Vec<&str> = keys
            .iter()
            .map(|key| key.wrapped.kms_key_arn.as_str())
            .collect();
        let blobs: Vec<&[u8]> = keys
            .iter()
            .map(|key| key.wrapped.ciphertext.as_slice())
            .collect();
        let updated = self
            .execute(
                "UPDATE atrest_field_keys k
                 SET kms_key_arn = u.arn, wrapped_key = u.blob
                 FROM unnest($3::integer[], $4::text[], $5::bytea[]) AS u(version, arn, blob)
                 WHERE k.table_name = $1 AND k.column_name = $2 AND k.version = u.version",
                &[&table, &column, &versions, &arns, &blobs],
            )
            .await?;
        if updated != keys.len() as u64 {
            return Err(FieldError::Job(format!(
                "{table}.{column}: re-wrapped {updated} of {} key versions; another process \
                 changed the key table, run again",
                keys.len()
            )));
        }
        Ok(())
    }

    async fn columns(&self) -> Result<Vec<ColumnRecord>> {
        let rows = self
            .query(
                "SELECT table_name, column_name, mode FROM atrest_field_columns
                 ORDER BY table_name, column_name",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ColumnRecord {
                    table: row.try_get(0)?,
                    column: row.try_get(1)?,
                    mode: Mode::parse(row.try_get::<_, &str>(2)?)?,
                })
            })
            .collect()
    }
}
