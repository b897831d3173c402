//! Errors: each names what went wrong and never carries plaintext or key bytes.

pub type Result<T, E = FieldError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    /// The value does not have the shape of an encrypted field (too short, wrong prefix).
    #[error("malformed encrypted value: {0}")]
    Malformed(&'static str),
    /// The tag did not verify: the value was changed, or it belongs to another row, column or
    /// table (the associated data differs), or to another key with the same id.
    #[error(
        "the value failed authentication: it was modified, or it belongs to another row, column or key"
    )]
    Authentication,
    /// The value names a key id this column does not have.
    #[error("the value was encrypted under key id {0}, which this column does not have")]
    UnknownKeyId(u32),
    /// The value names a different key than the cipher used to open it.
    #[error("the value was encrypted under another key")]
    WrongKey,
    /// The column has no data key yet (encrypt-column or `FieldKeys::create_column` makes one).
    #[error("column {table}.{column} has no data key")]
    NoKeys { table: String, column: String },
    /// The operation needs a mode the column does not have.
    #[error("column {table}.{column} is {actual}, not {wanted}")]
    ModeMismatch {
        table: String,
        column: String,
        actual: &'static str,
        wanted: &'static str,
    },
    /// A KMS call failed (the message keeps the service's error type, e.g. DisabledException).
    #[error("KMS {operation}: {message}")]
    Kms {
        operation: &'static str,
        message: String,
    },
    /// The key table or a column job's SQL failed.
    #[error("database: {0}")]
    Database(String),
    /// Stored key table content that cannot be right.
    #[error("key table: {0}")]
    Corrupt(String),
    /// A database connection string (or `PGSSLMODE`/`PGSSLROOTCERT`) that cannot be used as
    /// given, or root certificates that cannot be loaded.
    #[error("database connection string: {0}")]
    ConnectionString(String),
    /// A column job was asked for something the column's state does not allow.
    #[error("{0}")]
    Job(String),
}

#[cfg(feature = "tokio-postgres")]
impl From<tokio_postgres::Error> for FieldError {
    fn from(error: tokio_postgres::Error) -> Self {
        // The Display of a database error is only "db error"; the source holds the server's text.
        let detail = match error.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            // Nor does it show its cause (why a TLS handshake or a connection failed): add
            // each cause in the chain.
            None => {
                let mut detail = error.to_string();
                let mut cause = std::error::Error::source(&error);
                while let Some(inner) = cause {
                    detail.push_str(": ");
                    detail.push_str(&inner.to_string());
                    cause = inner.source();
                }
                detail
            }
        };
        Self::Database(detail)
    }
}
