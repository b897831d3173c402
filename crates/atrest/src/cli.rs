//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The address `atrest serve` listens on by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8445";
/// The NBD port: 10809 is the port IANA assigned to NBD, and the default of every NBD client.
pub const DEFAULT_NBD_LISTEN: &str = "127.0.0.1:10809";

#[derive(Debug, Parser)]
#[command(
    name = "atrest",
    version,
    about = "Self-hosted encryption at rest: an AWS-compatible KMS on an HSM"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: every API on one port, on embedded storage.
    Serve(ServeArgs),
    /// Manage principals (works while the server is stopped).
    #[command(subcommand)]
    User(UserCommand),
    /// Operate on the HSM key store.
    #[command(subcommand)]
    Hsm(HsmCommand),
    /// Check or search the tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Encrypt a file or stream on this machine (AWS Encryption SDK message format).
    Encrypt(EncryptArgs),
    /// Decrypt an AWS Encryption SDK message (from atrest or any official SDK).
    Decrypt(DecryptArgs),
    /// Field-level encryption of database columns (PostgreSQL), keys wrapped by a KMS key.
    #[command(subcommand)]
    Fields(FieldsCommand),
}

#[derive(Debug, Subcommand)]
pub enum FieldsCommand {
    /// Encrypt an existing plaintext column in place, in batches; resumes after a crash.
    EncryptColumn {
        #[command(flatten)]
        target: ColumnArgs,
        /// The KMS key that wraps the column's data key (ARN, key ID, alias name or alias ARN).
        #[arg(long)]
        kms_key_id: String,
        /// AES-SIV instead of AES-GCM: equal values encrypt equally, for `WHERE col = ...`.
        #[arg(long)]
        deterministic: bool,
        #[command(flatten)]
        batches: BatchArgs,
    },
    /// Decrypt an encrypted column back to plaintext (its original type); resumes after a crash.
    DecryptColumn {
        #[command(flatten)]
        target: ColumnArgs,
        #[command(flatten)]
        batches: BatchArgs,
    },
    /// Re-wrap the column's data keys under a new KMS key (no row changes) and/or add a new
    /// data key version that new writes use.
    RotateKeys {
        #[command(flatten)]
        target: ColumnArgs,
        /// Re-wrap every data key version under this KMS key.
        #[arg(long)]
        new_kms_key_id: Option<String>,
        /// Add a data key version; old rows keep decrypting until `reencrypt` moves them.
        #[arg(long)]
        new_data_key: bool,
    },
    /// Move rows still under older data key versions to the newest; resumes after a crash.
    Reencrypt {
        #[command(flatten)]
        target: ColumnArgs,
        #[command(flatten)]
        batches: BatchArgs,
    },
    /// Print the column's mode and data key versions as JSON (no key material).
    Describe {
        #[command(flatten)]
        target: ColumnArgs,
    },
    /// Print the column's keyset in Google Tink's JSON format, IN CLEAR, for a Tink program that
    /// must read the column. Anyone holding it can decrypt the column.
    ExportKeyset {
        #[command(flatten)]
        target: ColumnArgs,
    },
}

/// A column of a PostgreSQL database, and the KMS that holds its master key.
#[derive(Debug, Args)]
pub struct ColumnArgs {
    /// e.g. postgres://user@db.example:5432/db?sslmode=verify-full&sslrootcert=ca.pem (libpq
    /// key=value strings work too). TLS follows libpq: sslmode disable|allow|prefer (default)|
    /// require|verify-ca|verify-full, sslrootcert=FILE|system, sslcert/sslkey, or PGSSL*.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// A table in the search path, with a one-column primary key.
    #[arg(long)]
    pub table: String,
    #[arg(long)]
    pub column: String,
    #[command(flatten)]
    pub kms: KmsArgs,
}

/// Where the KMS client connects and as whom, as the aws CLI would.
#[derive(Debug, Args)]
pub struct KmsArgs {
    /// The KMS endpoint (default: as the aws CLI finds it: AWS_ENDPOINT_URL_KMS, profile, AWS).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// The KMS region (default: AWS_REGION, AWS_DEFAULT_REGION or the profile's).
    #[arg(long)]
    pub region: Option<String>,
    /// The shared-config profile to take credentials and region from (default: AWS_PROFILE).
    #[arg(long)]
    pub profile: Option<String>,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Rows per transaction.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: i64,
    /// Milliseconds to pause after each batch, to spare a live database.
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
}

/// The keys of `atrest encrypt`/`decrypt`. Several may be named: encrypt wraps the data key under
/// each (the first generates it); decrypt tries each.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// A KMS key (ARN, key ID, alias name or alias ARN); repeatable.
    #[arg(long = "kms-key-id", value_name = "KEY")]
    pub kms_key_ids: Vec<String>,
    #[command(flatten)]
    pub kms: KmsArgs,
    /// Decrypt with whichever KMS key the message names (decrypt only).
    #[arg(long)]
    pub discovery: bool,
    /// With --discovery: only keys of this partition (default aws when accounts are given).
    #[arg(long, requires = "discovery")]
    pub discovery_partition: Option<String>,
    /// With --discovery: only keys of this account; repeatable.
    #[arg(
        long = "discovery-account",
        requires = "discovery",
        value_name = "ACCOUNT"
    )]
    pub discovery_accounts: Vec<String>,
    /// A raw AES wrapping key: a file of 16, 24 or 32 bytes, or their base64.
    #[arg(long = "raw-key-file", value_name = "PATH")]
    pub raw_key_files: Vec<PathBuf>,
    /// A raw RSA key (OAEP-SHA256): a PEM PKCS#8 private key, or a PEM public key (encrypt only).
    #[arg(long = "rsa-key-file", value_name = "PATH")]
    pub rsa_key_files: Vec<PathBuf>,
    /// The key namespace (provider ID) of raw keys; must match on decrypt.
    #[arg(long)]
    pub key_namespace: Option<String>,
    /// The key name of raw keys; must match on decrypt.
    #[arg(long)]
    pub key_name: Option<String>,
    /// Refuse messages with more encrypted data keys than this.
    #[arg(long, default_value_t = 10)]
    pub max_encrypted_data_keys: u16,
}

#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// The plaintext: a file, or - for stdin.
    #[arg(short, long)]
    pub input: String,
    /// The message: a file (written whole or not at all), or - for stdout.
    #[arg(short, long)]
    pub output: String,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// An encryption context pair KEY=VALUE, authenticated with the data; repeatable.
    #[arg(long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    /// Plaintext bytes per frame.
    #[arg(long, default_value_t = atrest_client::config::DEFAULT_FRAME_LENGTH)]
    pub frame_size: u32,
    /// 0x0478 (AES-256-GCM, HKDF-SHA512, key commitment) or 0x0578 (also an ECDSA P-384 signature).
    #[arg(long, default_value = "0x0478")]
    pub suite: String,
}

#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// The message: a file, or - for stdin.
    #[arg(short, long)]
    pub input: String,
    /// The plaintext: a file (appears only after the whole message verified), or - for stdout.
    #[arg(short, long)]
    pub output: String,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// A pair KEY=VALUE the message's encryption context must contain; repeatable.
    #[arg(long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain, the signed digests and the head; report the first record that
    /// was modified, removed, reordered or truncated. Exits 1 if there is one.
    Verify {
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Start a new audit chain over a lost or replaced one (say, after restoring a data dir
    /// without its log). The server refuses to start until this is run; the old files are
    /// kept in `audit/replaced-<time>/`, and the new chain's first record says what was
    /// lost. A passphrase keystore needs its officer; the server must be stopped.
    Reset {
        #[command(flatten)]
        data: DataDirArgs,
        /// File holding the officer's passphrase (else ATREST_HSM_OFFICER_PASSPHRASE).
        #[arg(long)]
        officer_passphrase_file: Option<PathBuf>,
        /// Why: recorded in the new chain's first record.
        #[arg(long)]
        reason: String,
        /// Confirm without a prompt.
        #[arg(long)]
        yes: bool,
    },
    /// Print matching records as JSON lines.
    Search {
        #[command(flatten)]
        data: DataDirArgs,
        /// A key id or ARN (matched as a substring of the record's key ARNs).
        #[arg(long)]
        key: Option<String>,
        /// A principal ARN (substring) or access key id.
        #[arg(long)]
        principal: Option<String>,
        /// Earliest time, ISO 8601 (e.g. 2026-11-29T10:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Latest time, ISO 8601.
        #[arg(long)]
        until: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct DataDirArgs {
    /// Where keys, metadata and the HSM keystore live.
    #[arg(long, default_value = "./atrest-data", env = "ATREST_DATA_DIR")]
    pub data_dir: PathBuf,
    /// File holding the HSM passphrase (else ATREST_HSM_PASSPHRASE; with neither, dev mode).
    #[arg(long)]
    pub hsm_passphrase_file: Option<PathBuf>,
    /// The HSM backend: the sealed software keystore, or a PKCS#11 token; fixed when the data
    /// dir is initialised [default: software].
    #[arg(long, value_enum, env = "ATREST_HSM")]
    pub hsm: Option<HsmBackend>,
    /// The PKCS#11 module (shared library), e.g. /usr/lib/softhsm/libsofthsm2.so: the root
    /// key's token with --hsm pkcs11, and the tokens of custom key stores with either backend.
    #[arg(long, env = "ATREST_PKCS11_MODULE")]
    pub pkcs11_module: Option<PathBuf>,
    /// The one directory whose files `CreateCustomKeyStore`'s `KeyStorePassword=file:PATH` may
    /// name (regular files of at most 1 KiB directly in it). Without it, API callers give the
    /// PIN itself: no request makes the server open a path of the caller's choosing.
    #[arg(long, env = "ATREST_KEY_STORE_PIN_DIR")]
    pub key_store_pin_dir: Option<PathBuf>,
    /// The label of the PKCS#11 token that holds the root key.
    #[arg(long, env = "ATREST_PKCS11_TOKEN_LABEL")]
    pub pkcs11_token_label: Option<String>,
    /// File holding the token's user PIN.
    #[arg(long, env = "ATREST_PKCS11_PIN_FILE")]
    pub pkcs11_pin_file: Option<PathBuf>,
    /// AWS region in ARNs and SigV4 scopes; fixed when the data dir is initialised [default: us-east-1].
    #[arg(long)]
    pub region: Option<String>,
    /// Account id in ARNs; fixed when the data dir is initialised [default: 000000000000].
    #[arg(long)]
    pub account_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    /// Address to listen on.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Address the NBD server listens on; it exports each attached volume by its volume id.
    #[arg(long, default_value = DEFAULT_NBD_LISTEN)]
    pub nbd_listen: SocketAddr,
    /// Seconds between checks for due key rotations and deletions.
    #[arg(long, default_value_t = 60)]
    pub maintenance_interval_secs: u64,
    /// Most HTTP connections held at once; more wait in the listen backlog [default: three
    /// quarters of what RLIMIT_NOFILE leaves after 64 descriptors].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Seconds a client may take to send a request's head; also how long an idle keep-alive
    /// connection is kept.
    #[arg(long, default_value_t = 30)]
    pub header_timeout_secs: u64,
    /// A client must send (or read) --min-bytes-per-window bytes in each such span of seconds
    /// the server waits on it, or its connection is closed (slow bodies, unread responses).
    #[arg(long, default_value_t = 60)]
    pub pace_window_secs: u64,
    #[arg(long, default_value_t = 16 * 1024)]
    pub min_bytes_per_window: u64,
    /// The active audit log file is finished (cut to plain JSON lines and renamed
    /// `audit-<first seq>.log`) once it holds this many MiB of records.
    #[arg(long, default_value_t = 64)]
    pub audit_file_mib: u64,
    /// On SIGTERM or SIGINT: stop accepting, then give requests in flight this many seconds
    /// to finish before exiting.
    #[arg(long, default_value_t = 30)]
    pub shutdown_grace_secs: u64,
    /// Most NBD connections held at once [default: an eighth of what RLIMIT_NOFILE leaves
    /// after 64 descriptors].
    #[arg(long)]
    pub nbd_max_connections: Option<usize>,
    /// Seconds an NBD client may take to choose an export.
    #[arg(long, default_value_t = 10)]
    pub nbd_handshake_timeout_secs: u64,
    /// Seconds an NBD client may stay idle between requests; 0 never times out (for a
    /// mounted nbd-client device).
    #[arg(long, default_value_t = 3600)]
    pub nbd_idle_timeout_secs: u64,
    /// Accept SSE-C (customer-provided keys) over plain HTTP. AWS refuses this, because the
    /// key travels in a header; use it only on loopback or a trusted network.
    #[arg(long)]
    pub allow_sse_c_over_http: bool,
    /// Accept S3 requests signed with Signature Version 2 headers (`Authorization: AWS
    /// AKID:signature`), dated within 15 minutes. Off by default: SigV2 signs neither the body
    /// nor most query parameters, so a captured request can be replayed with other ones.
    /// SigV2 presigned URLs are accepted either way (expiring within 7 days).
    #[arg(long)]
    pub allow_sigv2: bool,
    /// A domain under which `BUCKET.DOMAIN` hosts address buckets (virtual-hosted style);
    /// repeatable. Other hosts, such as IP addresses, are path-style.
    #[arg(long = "s3-domain", default_value = "localhost")]
    pub s3_domains: Vec<String>,
    /// `off` runs without the audit log: requests are then not recorded anywhere. For
    /// measuring what the log costs, or where another layer records every request; the server
    /// warns on every start.
    #[arg(long, value_enum, default_value_t = AuditLogSetting::On)]
    pub audit_log: AuditLogSetting,
    /// Serve HTTPS with this PEM certificate chain (needs `--tls-key`).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Whether `serve` keeps the tamper-evident audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditLogSetting {
    On,
    Off,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user with an access key; prints its credentials as JSON.
    Add {
        /// IAM-style user name.
        name: String,
        #[command(flatten)]
        data: DataDirArgs,
        /// Use this access key id instead of a generated one (needs --secret-access-key).
        #[arg(long, requires = "secret_access_key")]
        access_key_id: Option<String>,
        /// Use this secret access key instead of a generated one (needs --access-key-id).
        #[arg(long, requires = "access_key_id")]
        secret_access_key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HsmCommand {
    /// Show the keystore's state, failed unseal attempts, tamper record and whether a server
    /// holds it unsealed (as JSON; needs no passphrase).
    Status {
        #[arg(long, default_value = "./atrest-data", env = "ATREST_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Create a keystore whose officer (administers) and user (the KMS service, which only uses
    /// keys) have different passphrases. `serve` on a new data dir otherwise creates one with a
    /// single passphrase for both roles.
    Init {
        #[arg(long, default_value = "./atrest-data", env = "ATREST_DATA_DIR")]
        data_dir: PathBuf,
        #[command(flatten)]
        officer: OfficerArgs,
        /// File holding the user's passphrase: what `serve` then needs (--hsm-passphrase-file).
        #[arg(long)]
        user_passphrase_file: PathBuf,
        /// Wrong passphrases tolerated before the keystore zeroizes itself.
        #[arg(long, default_value_t = atrest_hsm::software::keystore::DEFAULT_MAX_FAILED_UNSEALS)]
        max_failed_unseals: u32,
    },
    /// Change the officer's or the user's passphrase (the officer authenticates).
    ChangePassphrase {
        #[arg(long, default_value = "./atrest-data", env = "ATREST_DATA_DIR")]
        data_dir: PathBuf,
        #[command(flatten)]
        officer: OfficerArgs,
        /// Whose passphrase changes.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// File holding the new passphrase.
        #[arg(long)]
        new_passphrase_file: PathBuf,
    },
    /// Write an encrypted backup of the keystore and the key metadata (every wrapped key) under
    /// the officer's passphrase. The server must be stopped: the metadata store is copied whole.
    Backup {
        #[arg(long, default_value = "./atrest-data", env = "ATREST_DATA_DIR")]
        data_dir: PathBuf,
        #[command(flatten)]
        officer: OfficerArgs,
        /// Where to write the backup.
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into a new, empty data dir; every key and ciphertext of the old one
    /// works there.
    Restore {
        #[arg(long, default_value = "./atrest-data", env = "ATREST_DATA_DIR")]
        data_dir: PathBuf,
        #[command(flatten)]
        officer: OfficerArgs,
        /// The backup file.
        #[arg(long)]
        backup: PathBuf,
    },
    /// Destroy the HSM root key: every key in this data dir becomes unrecoverable. Refused
    /// while a server uses the data dir; a passphrase keystore needs its officer; asks for
    /// the data dir's path to be typed back, unless --yes.
    Zeroize {
        #[arg(long, default_value = "./atrest-data", env = "ATREST_DATA_DIR")]
        data_dir: PathBuf,
        /// File holding the officer's passphrase (else ATREST_HSM_OFFICER_PASSPHRASE).
        #[arg(long)]
        officer_passphrase_file: Option<PathBuf>,
        /// Confirm without a prompt (for scripts).
        #[arg(long)]
        yes: bool,
    },
}

/// How the security officer authenticates.
#[derive(Debug, Args)]
pub struct OfficerArgs {
    /// File holding the officer's passphrase (else ATREST_HSM_OFFICER_PASSPHRASE).
    #[arg(long)]
    pub officer_passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HsmBackend {
    Software,
    Pkcs11,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Officer,
    User,
}
