//! Starts the real `atrest` binary on a free port with a temporary data dir, and hands out
//! aws-sdk-kms clients signed with the root's (or a user's) credentials.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kms::Client;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};

pub const ROOT_ACCESS_KEY: &str = "AKIAATRESTTESTROOT01";
pub const ROOT_SECRET: &str = "atrest-test-root-secret-key-0000000000000";

pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The SoftHSM2 token of a server on the PKCS#11 backend.
    pub token: Option<Token>,
    child: Option<Child>,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl Server {
    /// A fresh data dir, dev-mode HSM, maintenance every second.
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        Self::start_with(env, &[])
    }

    /// For S3 tests: SSE-C is accepted over plain HTTP (the SDK tests have no TLS).
    pub fn start_s3() -> Self {
        Self::start_with(&[], &["--allow-sse-c-over-http"])
    }

    fn start_with(env: &[(&str, &str)], args: &[&str]) -> Self {
        Self::start_in(tempfile::tempdir().expect("temp dir"), env, args).expect("server starts")
    }

    /// Starts on a data dir prepared beforehand (by `atrest hsm init` or `restore`); returns
    /// the server's stderr if it refuses to start.
    pub fn start_in(
        dir: tempfile::TempDir,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Result<Self, String> {
        let mut server = Server {
            dir,
            port: 0,
            token: None,
            child: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        };
        // The KMS suite runs a second time with its root key on a SoftHSM2 token.
        if std::env::var("ATREST_TEST_HSM").as_deref() == Ok("pkcs11") {
            server.use_token(Token::new("atrest-e2e"));
        }
        server.spawn()?;
        Ok(server)
    }

    /// A fresh data dir whose root key is created on `token`.
    pub fn start_on_token(token: Token) -> Self {
        let mut server = Server {
            dir: tempfile::tempdir().expect("temp dir"),
            port: 0,
            token: None,
            child: None,
            env: Vec::new(),
            args: Vec::new(),
        };
        server.use_token(token);
        server.spawn().expect("server starts on the token");
        server
    }

    /// Puts this server's root key on `token` (set before the data dir is initialised).
    pub fn use_token(&mut self, token: Token) {
        self.env.extend(token.server_env());
        self.token = Some(token);
    }

    /// Swaps in another token (as if the data dir moved to a machine with a different HSM).
    pub fn replace_token(&mut self, token: Token) {
        let old: Vec<String> = token.server_env().into_iter().map(|(key, _)| key).collect();
        self.env.retain(|(key, _)| !old.contains(key));
        self.use_token(token);
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the binary (again) on a new free port; returns its stderr if it exits instead.
    pub fn spawn(&mut self) -> Result<(), String> {
        self.port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_atrest"));
        command
            .args(["serve", "--data-dir"])
            .arg(self.dir.path())
            .args([
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--maintenance-interval-secs",
                "1",
                "--nbd-listen",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .args(&self.args)
            .env("ATREST_ROOT_ACCESS_KEY_ID", ROOT_ACCESS_KEY)
            .env("ATREST_ROOT_SECRET_ACCESS_KEY", ROOT_SECRET)
            .env_remove("ATREST_HSM_PASSPHRASE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let mut child = command.spawn().map_err(|error| error.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(_status) = child.try_wait().map_err(|e| e.to_string())? {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(stderr);
            }
            if health(self.port) {
                // Drain stderr in the background so the server never blocks on a full pipe.
                if let Some(mut pipe) = child.stderr.take() {
                    std::thread::spawn(move || std::io::copy(&mut pipe, &mut std::io::sink()));
                }
                self.child = Some(child);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        Err("server did not become healthy in 30 s".into())
    }

    /// SIGKILL: no shutdown path runs, as in a crash or power loss.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait: the server's orderly shutdown path.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success());
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() {
                assert!(Instant::now() < deadline, "server ignored SIGTERM for 15 s");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) -> Result<(), String> {
        self.kill9();
        // The token's settings first, so that `env` can override them (a wrong PIN file).
        self.env = self
            .token
            .as_ref()
            .map(Token::server_env)
            .unwrap_or_default();
        self.env
            .extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self.spawn()
    }

    pub fn client(&self) -> Client {
        self.client_as(ROOT_ACCESS_KEY, ROOT_SECRET)
    }

    pub fn client_as(&self, access_key: &str, secret: &str) -> Client {
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .credentials_provider(Credentials::new(
                access_key,
                secret,
                None,
                None,
                "atrest-test",
            ))
            .build();
        Client::from_conf(config)
    }

    /// An aws-sdk-s3 client for the root, path-style as for any endpoint without bucket DNS.
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                ROOT_ACCESS_KEY,
                ROOT_SECRET,
                None,
                None,
                "atrest-test",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Runs another `atrest` subcommand against this data dir.
    pub fn run_cli(&self, args: &[&str]) -> std::process::Output {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        run_cli_in(self.dir.path(), args, &env)
    }

    /// Fails if `needle` occurs in any file under the data dir.
    pub fn assert_not_on_disk(&self, needle: &[u8], what: &str) {
        assert!(needle.len() >= 8, "needle too short to be meaningful");
        for file in files_under(self.dir.path()) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            let found = bytes.windows(needle.len()).any(|window| window == needle);
            assert!(!found, "{what} found in plaintext in {}", file.display());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The PKCS#11 module Debian's `softhsm2` installs.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const TOKEN_PIN: &str = "4321-user-pin";

/// A fresh SoftHSM2 token in its own directory (SOFTHSM2_CONF points at it), with a user PIN.
pub struct Token {
    pub dir: tempfile::TempDir,
    pub label: String,
}

impl Token {
    pub fn new(label: &str) -> Self {
        assert!(
            Path::new(SOFTHSM_MODULE).exists(),
            "{SOFTHSM_MODULE} is missing: install Debian's softhsm2 (the README's test command does)"
        );
        let dir = tempfile::tempdir().expect("token dir");
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("pin"), format!("{TOKEN_PIN}\n")).unwrap();
        let token = Token {
            dir,
            label: label.to_owned(),
        };
        let output = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label])
            .args(["--pin", TOKEN_PIN, "--so-pin", "8765-so-pin"])
            .env("SOFTHSM2_CONF", token.conf())
            .output()
            .expect("softhsm2-util runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        token
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    pub fn pin_file(&self) -> PathBuf {
        self.dir.path().join("pin")
    }

    /// What `atrest` needs to use this token.
    pub fn server_env(&self) -> Vec<(String, String)> {
        vec![
            ("SOFTHSM2_CONF".into(), self.conf().display().to_string()),
            ("ATREST_HSM".into(), "pkcs11".into()),
            ("ATREST_PKCS11_MODULE".into(), SOFTHSM_MODULE.into()),
            ("ATREST_PKCS11_TOKEN_LABEL".into(), self.label.clone()),
            (
                "ATREST_PKCS11_PIN_FILE".into(),
                self.pin_file().display().to_string(),
            ),
            // Custom key stores on this token name the same PIN file.
            (
                "ATREST_KEY_STORE_PIN_DIR".into(),
                self.dir.path().display().to_string(),
            ),
        ]
    }
}

/// Runs an `atrest` subcommand against `data_dir`, with no server needed.
pub fn run_cli_in(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_atrest"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("ATREST_HSM_PASSPHRASE")
        .env_remove("ATREST_HSM_OFFICER_PASSPHRASE")
        .envs(env.iter().copied())
        .output()
        .expect("atrest runs")
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&path) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path);
                }
            }
        }
    }
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("free port")
}

fn health(port: u16) -> bool {
    raw_request(
        port,
        "GET /_atrest/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .is_some_and(|response| response.starts_with("HTTP/1.1 200"))
}

/// Sends raw bytes and returns the whole response, for requests no SDK would send.
pub fn raw_request(port: u16, request: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// Creates a symmetric key with default settings and returns its id.
pub async fn new_key(kms: &Client) -> String {
    kms.create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned()
}

/// Encrypts `plaintext` under `key` (no encryption context) and returns the ciphertext blob.
pub async fn encrypt(kms: &Client, key: &str, plaintext: &[u8]) -> aws_sdk_kms::primitives::Blob {
    kms.encrypt()
        .key_id(key)
        .plaintext(aws_sdk_kms::primitives::Blob::new(plaintext))
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone()
}

/// Decrypts a symmetric ciphertext blob (its header names the key).
pub async fn decrypt(kms: &Client, blob: aws_sdk_kms::primitives::Blob) -> Vec<u8> {
    kms.decrypt()
        .ciphertext_blob(blob)
        .send()
        .await
        .unwrap()
        .plaintext()
        .unwrap()
        .as_ref()
        .to_vec()
}

/// Asserts that an SDK call failed with the AWS error code `expected`.
#[track_caller]
pub fn assert_code<T, E, R>(result: Result<T, aws_sdk_kms::error::SdkError<E, R>>, expected: &str)
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => panic!("expected {expected}, but the call succeeded"),
        Err(error) => assert_eq!(error_code(&error), expected),
    }
}

/// The AWS error code of an SDK error, e.g. "NotFoundException".
pub fn error_code<E, R>(error: &aws_sdk_kms::error::SdkError<E, R>) -> String
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    match error.as_service_error() {
        Some(service_error) => service_error.code().unwrap_or("<no code>").to_owned(),
        None => format!("<not a service error: {error:?}>"),
    }
}
