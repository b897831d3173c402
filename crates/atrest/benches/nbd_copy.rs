//! Block-volume benchmark: in one run, copies the same data into and out of an atrest volume
//! over NBD and into and out of `qemu-nbd` serving a plain raw file, with `nbdcopy` over one
//! connection for both, and prints both rates and their ratio.
//!
//! atrest's side pays AES-256-XTS on every sector plus its own NBD server; qemu-nbd's side is
//! the unencrypted physical limit of this machine's NBD path. Target (issue 6): atrest at least
//! 70% of qemu-nbd.
//!
//! Run: `cargo bench -p atrest --bench nbd_copy` (needs qemu-utils and libnbd-bin; optional:
//! `ATREST_BENCH_BYTES`, default 1 GiB, a multiple of 1 GiB; `ATREST_BENCH_CONNECTIONS`,
//! default 1).

// A benchmark binary: it panics and unwraps on setup failures, which end the run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{env_or, free_port, signed_post, start_atrest_with_nbd};

const GIB: u64 = 1 << 30;

fn main() {
    let bytes: u64 = env_or("ATREST_BENCH_BYTES", GIB).div_ceil(GIB) * GIB;
    let connections: u32 = env_or("ATREST_BENCH_CONNECTIONS", 1);
    let work = std::env::temp_dir().join(format!("atrest-nbd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let source = work.join("source.raw");
    write_random_file(&source, bytes);

    let (port, nbd_port) = (free_port(), free_port());
    let mut atrest = start_atrest_with_nbd(&work.join("atrest-data"), port, nbd_port, &[]);
    let volume_id = create_attached_volume(port, bytes / GIB);
    let atrest_url = format!("nbd://127.0.0.1:{nbd_port}/{volume_id}");

    let raw = work.join("plain.raw");
    std::fs::File::create(&raw).unwrap().set_len(bytes).unwrap();
    let qemu_port = free_port();
    let mut qemu = start_qemu_nbd(&raw, qemu_port);
    let qemu_url = format!("nbd://127.0.0.1:{qemu_port}/bench");

    // Warm both paths (and the source file's page cache) once before measuring.
    copy(&source, &atrest_url, connections, true);
    copy(&source, &qemu_url, connections, true);
    let mut rows = Vec::new();
    for (direction, into) in [("write", true), ("read", false)] {
        let qemu_rate = rate(bytes, copy(&source, &qemu_url, connections, into));
        let atrest_rate = rate(bytes, copy(&source, &atrest_url, connections, into));
        rows.push((direction, atrest_rate, qemu_rate));
    }

    let _ = qemu.kill();
    let _ = qemu.wait();
    let _ = atrest.kill();
    let _ = atrest.wait();
    let _ = std::fs::remove_dir_all(&work);

    println!(
        "nbdcopy, {} MiB, {connections} connection(s): atrest (AES-256-XTS) vs qemu-nbd (plain raw file)",
        bytes >> 20
    );
    println!(
        "{:<6} {:>14} {:>14} {:>7}",
        "", "atrest MiB/s", "qemu-nbd MiB/s", "ratio"
    );
    for (direction, atrest_rate, qemu_rate) in rows {
        println!(
            "{direction:<6} {atrest_rate:>14.0} {qemu_rate:>14.0} {:>7.2}",
            atrest_rate / qemu_rate
        );
    }
    println!("target: ratio >= 0.70 in both directions");
}

/// Copies `source` into the export (`into`) or the export to `null:`; returns the time taken.
fn copy(source: &Path, url: &str, connections: u32, into: bool) -> Duration {
    let mut command = Command::new("nbdcopy");
    command.arg(format!("--connections={connections}"));
    if into {
        command.arg(source).arg(url);
    } else {
        command.arg(url).arg("null:");
    }
    let started = Instant::now();
    let status = command.status().expect("nbdcopy runs (install libnbd-bin)");
    assert!(status.success(), "nbdcopy failed for {url}");
    started.elapsed()
}

fn rate(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64()
}

/// Incompressible data, so neither side can take a shortcut on zeros.
fn write_random_file(path: &Path, bytes: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..bytes >> 20 {
        atrest_crypto::random::fill(&mut block);
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
}

fn start_qemu_nbd(raw: &Path, port: u16) -> Child {
    let child = Command::new("qemu-nbd")
        .args([
            "--format=raw",
            "--persistent",
            "--shared=8",
            "--export-name=bench",
        ])
        .args(["--bind=127.0.0.1", &format!("--port={port}")])
        .arg(raw)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-nbd starts (install qemu-utils)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "qemu-nbd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// CreateVolume then AttachVolume through the EC2 Query API; returns the volume id.
fn create_attached_volume(port: u16, size_gib: u64) -> String {
    let created = ec2(
        port,
        &format!(
            "Action=CreateVolume&Version=2016-11-15&Size={size_gib}&AvailabilityZone=us-east-1a"
        ),
    );
    let volume_id = between(&created, "<volumeId>", "</volumeId>");
    ec2(
        port,
        &format!(
            "Action=AttachVolume&Version=2016-11-15&VolumeId={volume_id}&InstanceId=i-0123456789abcdef0&Device=%2Fdev%2Fsdf"
        ),
    );
    volume_id
}

fn ec2(port: u16, body: &str) -> String {
    let mut request = signed_post("ec2", "application/x-www-form-urlencoded", None, body);
    let split = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    request.splice(
        split + 2..split + 2,
        b"Connection: close\r\n".iter().copied(),
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(&request).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "EC2 call failed: {response}"
    );
    response
}

fn between(text: &str, start: &str, end: &str) -> String {
    let from = text.find(start).unwrap() + start.len();
    let to = from + text[from..].find(end).unwrap();
    text[from..to].to_owned()
}
