//! What every benchmark binary needs: the real `atrest` server on a free port, and settings
//! from the environment.

// Each bench binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use atrest_sigv4::{
    Authorization, RequestParts, UriEncoding, format_amz_date, sha256_hex, signature,
};

pub const ACCESS_KEY: &str = "AKIABENCHBENCHBENCH0";
pub const SECRET: &str = "bench-secret-bench-secret-bench-secret00";

/// Starts `atrest serve` on `port` over `data_dir` with the bench's root credentials and
/// `extra_args`; returns once it accepts connections.
pub fn start_atrest(data_dir: &Path, port: u16, extra_args: &[&str]) -> Child {
    start_atrest_with_nbd(data_dir, port, free_port(), extra_args)
}

/// [`start_atrest`] with the NBD server on `nbd_port`.
pub fn start_atrest_with_nbd(
    data_dir: &Path,
    port: u16,
    nbd_port: u16,
    extra_args: &[&str],
) -> Child {
    start_atrest_with_env(data_dir, port, nbd_port, extra_args, &[])
}

/// [`start_atrest_with_nbd`] with extra environment variables (a PKCS#11 token's settings).
pub fn start_atrest_with_env(
    data_dir: &Path,
    port: u16,
    nbd_port: u16,
    extra_args: &[&str],
    env: &[(String, String)],
) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_atrest"))
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--nbd-listen", &format!("127.0.0.1:{nbd_port}")])
        .args(extra_args)
        .env("ATREST_ROOT_ACCESS_KEY_ID", ACCESS_KEY)
        .env("ATREST_ROOT_SECRET_ACCESS_KEY", SECRET)
        .env("ATREST_LOG", "warn")
        .envs(
            env.iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("atrest starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("atrest did not start");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port")
}

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A complete SigV4-signed `POST /` for `service` (as the AWS SDKs send it), with the bench's
/// root credentials: an `X-Amz-Target` JSON request when `target` is given, else a Query one.
pub fn signed_post(service: &str, content_type: &str, target: Option<&str>, body: &str) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let amz_date = format_amz_date(now);
    let mut headers = vec![
        ("content-type".to_owned(), content_type.to_owned()),
        ("host".to_owned(), "127.0.0.1".to_owned()),
        ("x-amz-date".to_owned(), amz_date.clone()),
    ];
    if let Some(target) = target {
        headers.push(("x-amz-target".to_owned(), target.to_owned()));
    }
    let signed_headers = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let auth = Authorization {
        access_key_id: ACCESS_KEY,
        date: &amz_date[..8],
        region: "us-east-1",
        service,
        signed_headers: &signed_headers,
        signature: [0; 32],
        malformed_signature: false,
    };
    let payload_hash = sha256_hex(body.as_bytes());
    let parts = RequestParts {
        method: "POST",
        raw_path: "/",
        raw_query: "",
        headers: &headers,
        payload_hash: &payload_hash,
        uri_encoding: UriEncoding::Double,
    };
    let signature = hex::encode(signature(&parts, &auth, &amz_date, SECRET.as_bytes()));
    let target_header = target
        .map(|target| format!("X-Amz-Target: {target}\r\n"))
        .unwrap_or_default();
    format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nX-Amz-Date: {amz_date}\r\n\
         {target_header}Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{}/us-east-1/{service}/aws4_request, \
         SignedHeaders={}, Signature={signature}\r\nContent-Length: {}\r\n\r\n{body}",
        &amz_date[..8],
        auth.signed_headers,
        body.len()
    )
    .into_bytes()
}
