//! What every benchmark binary needs: the real `atrest` server on a free port, and settings
//! from the environment.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "AKIABENCHBENCHBENCH0";
pub const SECRET: &str = "bench-secret-bench-secret-bench-secret00";

/// Starts `atrest serve` on `port` over `data_dir` with the bench's root credentials and
/// `extra_args`; returns once it accepts connections.
pub fn start_atrest(data_dir: &Path, port: u16, extra_args: &[&str]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_atrest"))
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--nbd-listen", &format!("127.0.0.1:{}", free_port())])
        .args(extra_args)
        .env("ATREST_ROOT_ACCESS_KEY_ID", ACCESS_KEY)
        .env("ATREST_ROOT_SECRET_ACCESS_KEY", SECRET)
        .env("ATREST_LOG", "warn")
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
