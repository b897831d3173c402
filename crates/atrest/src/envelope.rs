//! `atrest encrypt` and `atrest decrypt`: client-side encryption in the AWS Encryption SDK
//! message format, on files or pipes, with KMS, raw AES and raw RSA keys.
//!
//! Output to a file goes to a temporary file beside it that is fsynced and renamed into place
//! only when the whole message was written (encrypt) or verified (decrypt), so a failure never
//! leaves a partial file, and a signed message's plaintext never appears before its signature
//! verified. Output to `-` (stdout) streams; there a non-zero exit means: discard what was read.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atrest_client::keyring::{
    DiscoveryFilter, KmsClient, KmsDiscoveryKeyring, KmsKeyring, KmsSettings, MultiKeyring,
    RawAesKeyring, RawRsaKeyring,
};
use atrest_client::{
    AlgorithmSuite, Config, Decryptor, EncryptionContext, Encryptor, Error, Keyring,
};
use atrest_crypto::SecretBytes;
use base64::Engine;

use crate::cli::{DecryptArgs, EncryptArgs, KeyArgs};

/// Exit codes a script can rely on (also in the README).
pub mod exit {
    /// The message is malformed, damaged, truncated, or not what `--context` required.
    pub const BAD_MESSAGE: u8 = 1;
    /// Bad arguments or key files (clap's own usage errors also exit 2).
    pub const USAGE: u8 = 2;
    /// No key could open the message, or the key service refused or failed.
    pub const KEY: u8 = 3;
    /// Reading the input or writing the output failed.
    pub const IO: u8 = 4;
}

/// A failure and the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            code: exit::USAGE,
            message: message.into(),
        }
    }

    fn io(path: &str, error: std::io::Error) -> Self {
        Self {
            code: exit::IO,
            message: format!("{path}: {error}"),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let code = match &error {
            Error::Io(_) => exit::IO,
            Error::Config(_) => exit::USAGE,
            Error::NoDecryptableKey(_) | Error::Keyring(_) => exit::KEY,
            _ => exit::BAD_MESSAGE,
        };
        Self {
            code,
            message: error.to_string(),
        }
    }
}

const IO_BUFFER: usize = 1 << 20;

pub fn encrypt(args: &EncryptArgs) -> Result<(), Failure> {
    let context = parse_context(&args.context)?;
    // Checked before any key service is contacted; a bad context is a usage error.
    atrest_client::context::check_caller_context(&context)
        .map_err(|error| Failure::usage(error.to_string()))?;
    let keyring = build_keyring(&args.keys, false)?;
    let suite = match args.suite.as_str() {
        "0x0478" | "0478" => AlgorithmSuite::AesGcmCommitKey,
        "0x0578" | "0578" => AlgorithmSuite::AesGcmCommitKeyEcdsaP384,
        other => {
            return Err(Failure::usage(format!(
                "--suite must be 0x0478 or 0x0578, not {other}"
            )));
        }
    };
    let config = Config {
        suite,
        frame_length: args.frame_size,
        max_encrypted_data_keys: args.keys.max_encrypted_data_keys,
        ..Config::default()
    };
    let (input, size) = open_input(&args.input)?;
    let output = Output::create(&args.output)?;
    let mut progress = Progress::new("encrypt", size);
    let result = (|| {
        let mut encryptor = Encryptor::new(output.writer()?, keyring.as_ref(), context, &config)?;
        let mut input = input;
        let mut buffer = vec![0u8; IO_BUFFER];
        loop {
            let n = match input.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(Failure::io(&args.input, error)),
            };
            encryptor
                .write_all(&buffer[..n])
                .map_err(|error| Failure::io(&args.output, error))?;
            progress.advance(n as u64);
        }
        encryptor
            .finish()?
            .flush()
            .map_err(|error| Failure::io(&args.output, error))?;
        Ok(())
    })();
    progress.done();
    output.commit(result)
}

pub fn decrypt(args: &DecryptArgs) -> Result<(), Failure> {
    let required = parse_context(&args.context)?;
    let keyring = build_keyring(&args.keys, true)?;
    let config = Config {
        max_encrypted_data_keys: args.keys.max_encrypted_data_keys,
        ..Config::default()
    };
    let (input, size) = open_input(&args.input)?;
    let output = Output::create(&args.output)?;
    let mut progress = Progress::new("decrypt", size);
    let result = (|| {
        let counted = Counted {
            inner: input,
            progress: &mut progress,
        };
        let decryptor = Decryptor::new(counted, keyring.as_ref(), &config, &required)?;
        let mut writer = output.writer()?;
        decryptor.read_to_end_verified(&mut writer)?;
        writer
            .flush()
            .map_err(|error| Failure::io(&args.output, error))?;
        Ok(())
    })();
    progress.done();
    output.commit(result)
}

fn parse_context(pairs: &[String]) -> Result<EncryptionContext, Failure> {
    let mut context = EncryptionContext::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("--context {pair:?}: expected KEY=VALUE")))?;
        if key.is_empty() {
            return Err(Failure::usage(format!(
                "--context {pair:?}: the key is empty"
            )));
        }
        if context.insert(key.to_string(), value.to_string()).is_some() {
            return Err(Failure::usage(format!("--context repeats the key {key:?}")));
        }
    }
    Ok(context)
}

/// One keyring from every key named: the first is the generator, the others wrap the data key
/// too (encrypt) or are tried in turn (decrypt).
fn build_keyring(args: &KeyArgs, decrypting: bool) -> Result<Box<dyn Keyring>, Failure> {
    let mut keyrings: Vec<Box<dyn Keyring>> = Vec::new();
    let wants_kms = !args.kms_key_ids.is_empty() || args.discovery;
    if wants_kms {
        let settings = KmsSettings {
            endpoint_url: args.kms.endpoint_url.clone(),
            region: args.kms.region.clone(),
            profile: args.kms.profile.clone(),
            grant_tokens: Vec::new(),
        };
        let kms: Arc<KmsClient> = KmsClient::connect(&settings)?;
        for key_id in &args.kms_key_ids {
            keyrings.push(Box::new(KmsKeyring::new(key_id, Arc::clone(&kms))?));
        }
        if args.discovery {
            if !decrypting {
                return Err(Failure::usage(
                    "--discovery only decrypts; name a --kms-key-id to encrypt",
                ));
            }
            let filter = match (
                &args.discovery_partition,
                args.discovery_accounts.is_empty(),
            ) {
                (None, true) => None,
                (partition, _) => Some(DiscoveryFilter {
                    partition: partition.clone().unwrap_or_else(|| "aws".into()),
                    accounts: args.discovery_accounts.clone(),
                }),
            };
            keyrings.push(Box::new(KmsDiscoveryKeyring::new(filter, kms)?));
        }
    }
    for path in &args.raw_key_files {
        let (namespace, name) = key_names(args, "--raw-key-file")?;
        let key = read_raw_key(path)?;
        keyrings.push(Box::new(RawAesKeyring::new(namespace, name, &key)?));
    }
    for path in &args.rsa_key_files {
        let (namespace, name) = key_names(args, "--rsa-key-file")?;
        let pem =
            std::fs::read(path).map_err(|error| Failure::io(&path.display().to_string(), error))?;
        keyrings.push(Box::new(RawRsaKeyring::from_pem(namespace, name, &pem)?));
    }
    if keyrings.is_empty() {
        return Err(Failure::usage(
            "name a key: --kms-key-id, --raw-key-file or --rsa-key-file (or --discovery to decrypt)",
        ));
    }
    if keyrings.len() == 1 {
        return Ok(keyrings.remove(0));
    }
    let generator = keyrings.remove(0);
    Ok(Box::new(MultiKeyring::new(Some(generator), keyrings)?))
}

fn key_names<'a>(args: &'a KeyArgs, flag: &str) -> Result<(&'a str, &'a str), Failure> {
    match (&args.key_namespace, &args.key_name) {
        (Some(namespace), Some(name)) => Ok((namespace, name)),
        _ => Err(Failure::usage(format!(
            "{flag} needs --key-namespace and --key-name (they identify the key in the message)"
        ))),
    }
}

/// A raw AES key file holds the key itself (16, 24 or 32 bytes) or its base64.
fn read_raw_key(path: &Path) -> Result<SecretBytes, Failure> {
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path).map_err(|error| Failure::io(&path.display().to_string(), error))?,
    );
    if matches!(bytes.len(), 16 | 24 | 32) {
        return Ok(SecretBytes::copy_from(&bytes));
    }
    let text = std::str::from_utf8(&bytes)
        .map(str::trim)
        .unwrap_or_default();
    match base64::engine::general_purpose::STANDARD.decode(text) {
        Ok(decoded) if matches!(decoded.len(), 16 | 24 | 32) => Ok(SecretBytes::new(decoded)),
        _ => Err(Failure::usage(format!(
            "{}: a raw key file must hold 16, 24 or 32 bytes, or their base64",
            path.display()
        ))),
    }
}

fn open_input(path: &str) -> Result<(Box<dyn Read>, Option<u64>), Failure> {
    if path == "-" {
        return Ok((
            Box::new(BufReader::with_capacity(IO_BUFFER, std::io::stdin().lock())),
            None,
        ));
    }
    let file = File::open(path).map_err(|error| Failure::io(path, error))?;
    let size = file.metadata().ok().map(|metadata| metadata.len());
    Ok((Box::new(BufReader::with_capacity(IO_BUFFER, file)), size))
}

/// Where the result goes: stdout, or a temporary file renamed into place on success.
enum Output {
    Stdout,
    File {
        target: PathBuf,
        temporary: PathBuf,
        file: File,
    },
}

impl Output {
    fn create(path: &str) -> Result<Self, Failure> {
        if path == "-" {
            return Ok(Self::Stdout);
        }
        let target = PathBuf::from(path);
        let name = target
            .file_name()
            .ok_or_else(|| Failure::usage(format!("{path}: not a file name")))?;
        let mut temporary_name = std::ffi::OsString::from(".");
        temporary_name.push(name);
        temporary_name.push(format!(".atrest-{}.tmp", std::process::id()));
        let temporary = target.with_file_name(temporary_name);
        let file = File::create(&temporary)
            .map_err(|error| Failure::io(&temporary.display().to_string(), error))?;
        Ok(Self::File {
            target,
            temporary,
            file,
        })
    }

    fn writer(&self) -> Result<Box<dyn Write + '_>, Failure> {
        Ok(match self {
            Self::Stdout => Box::new(BufWriter::with_capacity(
                IO_BUFFER,
                std::io::stdout().lock(),
            )),
            Self::File {
                file, temporary, ..
            } => Box::new(BufWriter::with_capacity(
                IO_BUFFER,
                file.try_clone()
                    .map_err(|error| Failure::io(&temporary.display().to_string(), error))?,
            )),
        })
    }

    /// On success: fsync and rename the temporary file into place. On failure: delete it.
    fn commit(self, result: Result<(), Failure>) -> Result<(), Failure> {
        let Self::File {
            target,
            temporary,
            file,
        } = self
        else {
            return result;
        };
        let finished = result.and_then(|()| {
            file.sync_all()
                .map_err(|error| Failure::io(&temporary.display().to_string(), error))?;
            std::fs::rename(&temporary, &target)
                .map_err(|error| Failure::io(&target.display().to_string(), error))?;
            if let Some(directory) = target
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
            {
                File::open(directory).and_then(|dir| dir.sync_all()).ok();
            }
            Ok(())
        });
        if finished.is_err() {
            std::fs::remove_file(&temporary).ok();
        }
        finished
    }
}

/// A progress line on stderr, only when stderr is a terminal and the input is large.
struct Progress {
    label: &'static str,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last: Instant,
    enabled: bool,
}

impl Progress {
    const MIN_SIZE: u64 = 64 << 20;

    fn new(label: &'static str, total: Option<u64>) -> Self {
        let enabled =
            std::io::stderr().is_terminal() && total.is_none_or(|size| size >= Self::MIN_SIZE);
        let now = Instant::now();
        Self {
            label,
            total,
            done: 0,
            started: now,
            last: now,
            enabled,
        }
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if self.enabled && self.last.elapsed() >= Duration::from_millis(250) {
            self.last = Instant::now();
            self.print();
        }
    }

    fn print(&self) {
        let mib = self.done as f64 / f64::from(1 << 20);
        let rate = mib / self.started.elapsed().as_secs_f64().max(1e-6);
        let line = match self.total {
            Some(total) if total > 0 => format!(
                "{}: {:5.1}% {mib:.0} of {:.0} MiB, {rate:.0} MiB/s",
                self.label,
                100.0 * self.done as f64 / total as f64,
                total as f64 / f64::from(1 << 20)
            ),
            _ => format!("{}: {mib:.0} MiB, {rate:.0} MiB/s", self.label),
        };
        eprint!("\r\x1b[2K{line}");
    }

    fn done(&mut self) {
        if self.enabled && self.done > 0 {
            self.print();
            eprintln!();
        }
    }
}

/// Counts bytes read for the progress line.
struct Counted<'p, R> {
    inner: R,
    progress: &'p mut Progress,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
