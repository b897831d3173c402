//! Object-storage throughput: the real `atrest` binary against a plaintext S3 server from our
//! own ecosystem, s3s-fs 0.14.1 (the s3s version atrest uses), in the same run on the same
//! machine, both driven by aws-sdk-s3.
//!
//! s3s-fs runs in this process behind the same hyper HTTP/1 loop atrest uses, with
//! `TCP_NODELAY` set: its own binary does not set it and stalls ~40 ms per small GET on
//! delayed ACKs, which would flatter every ratio. It stores objects as plain files, so it is
//! the cost of S3 without encryption.
//!
//! Prints PUT and GET MiB/s for 64 MiB objects and objects/s for 4 KiB objects, for the peer
//! and for atrest with SSE-S3, SSE-KMS, SSE-KMS with a bucket key and SSE-C, then the ratios
//! issue 4 sets: large-object SSE-S3 throughput ≥ 0.80 of the peer's; 4 KiB SSE-KMS PUTs with
//! bucket keys ≥ 0.70 of SSE-S3's.
//!
//! Run: `cargo bench -p atrest --bench s3_load` (optional: `ATREST_BENCH_LARGE_OBJECTS`,
//! default 6, written and read two at a time; `ATREST_BENCH_SMALL_OBJECTS`, default 2000;
//! `ATREST_BENCH_CONCURRENCY`, default 16, for the small objects).

// A benchmark binary: it panics and unwraps on setup failures, which end the run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};

use support::{ACCESS_KEY, SECRET, env_or, free_port, start_atrest};

const LARGE: usize = 64 * 1024 * 1024;
const SMALL: usize = 4 * 1024;

/// How a bench run encrypts (the peer ignores it: it has no encryption).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    SseS3,
    SseKms,
    SseKmsBucketKey,
    SseC,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Plain => "s3s-fs (plaintext peer)",
            Mode::SseS3 => "atrest SSE-S3",
            Mode::SseKms => "atrest SSE-KMS",
            Mode::SseKmsBucketKey => "atrest SSE-KMS + bucket key",
            Mode::SseC => "atrest SSE-C",
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Rates {
    large_put_mib_s: f64,
    large_get_mib_s: f64,
    small_put_per_s: f64,
    small_get_per_s: f64,
}

fn main() {
    let large_objects: usize = env_or("ATREST_BENCH_LARGE_OBJECTS", 6);
    let small_objects: usize = env_or("ATREST_BENCH_SMALL_OBJECTS", 2000);
    let concurrency: usize = env_or("ATREST_BENCH_CONCURRENCY", 16);
    let scratch = std::env::temp_dir().join(format!("atrest-s3-bench-{}", std::process::id()));
    std::fs::create_dir_all(scratch.join("peer")).unwrap();
    let port = free_port();
    let mut atrest = start_atrest(&scratch.join("atrest"), port, &["--allow-sse-c-over-http"]);

    let peer_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let peer_port = peer_runtime.block_on(start_peer(&scratch.join("peer")));
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = client_runtime.block_on(async {
        let plan = Plan {
            large_objects,
            small_objects,
            concurrency,
        };
        let mut results = Vec::new();
        for mode in [
            Mode::Plain,
            Mode::SseS3,
            Mode::SseKms,
            Mode::SseKmsBucketKey,
            Mode::SseC,
        ] {
            let target = if mode == Mode::Plain { peer_port } else { port };
            let rates = run_mode(&client(target), mode, &plan).await;
            print_rates(mode, &rates);
            results.push((mode, rates));
        }
        results
    });
    let _ = atrest.kill();
    let _ = atrest.wait();
    drop(peer_runtime);
    let _ = std::fs::remove_dir_all(&scratch);

    let rates = |mode: Mode| result.iter().find(|(m, _)| *m == mode).unwrap().1;
    let (peer, sse_s3, bucket_key) = (
        rates(Mode::Plain),
        rates(Mode::SseS3),
        rates(Mode::SseKmsBucketKey),
    );
    println!();
    println!(
        "ratio SSE-S3 / plaintext peer, 64 MiB PUT: {:.2}  GET: {:.2}  (target >= 0.80)",
        sse_s3.large_put_mib_s / peer.large_put_mib_s,
        sse_s3.large_get_mib_s / peer.large_get_mib_s
    );
    println!(
        "ratio SSE-KMS with bucket key / SSE-S3, 4 KiB PUT: {:.2}  (target >= 0.70)",
        bucket_key.small_put_per_s / sse_s3.small_put_per_s
    );
    println!(
        "ratio SSE-S3 / plaintext peer, 4 KiB PUT: {:.2}  GET: {:.2}",
        sse_s3.small_put_per_s / peer.small_put_per_s,
        sse_s3.small_get_per_s / peer.small_get_per_s
    );
}

struct Plan {
    large_objects: usize,
    small_objects: usize,
    concurrency: usize,
}

fn print_rates(mode: Mode, rates: &Rates) {
    println!(
        "{:<30} 64 MiB PUT {:>7.1} MiB/s  GET {:>7.1} MiB/s | 4 KiB PUT {:>7.0}/s  GET {:>7.0}/s",
        mode.label(),
        rates.large_put_mib_s,
        rates.large_get_mib_s,
        rates.small_put_per_s,
        rates.small_get_per_s
    );
}

/// The per-request encryption parameters of `mode`.
#[derive(Clone)]
struct Encryption {
    mode: Mode,
    customer_key: String,
    customer_key_md5: String,
}

impl Encryption {
    fn new(mode: Mode) -> Self {
        let key = [0x5au8; 32];
        Self {
            mode,
            customer_key: B64.encode(key),
            customer_key_md5: B64.encode(Md5::digest(key)),
        }
    }

    fn put(
        &self,
        request: aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        match self.mode {
            Mode::Plain => request,
            Mode::SseS3 => request.server_side_encryption(ServerSideEncryption::Aes256),
            Mode::SseKms => request.server_side_encryption(ServerSideEncryption::AwsKms),
            Mode::SseKmsBucketKey => request
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .bucket_key_enabled(true),
            Mode::SseC => request
                .sse_customer_algorithm("AES256")
                .sse_customer_key(&self.customer_key)
                .sse_customer_key_md5(&self.customer_key_md5),
        }
    }

    fn get(
        &self,
        request: aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder,
    ) -> aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder {
        match self.mode {
            Mode::SseC => request
                .sse_customer_algorithm("AES256")
                .sse_customer_key(&self.customer_key)
                .sse_customer_key_md5(&self.customer_key_md5),
            _ => request,
        }
    }
}

async fn run_mode(client: &Client, mode: Mode, plan: &Plan) -> Rates {
    let bucket = format!("bench-{}", format!("{mode:?}").to_lowercase());
    client.create_bucket().bucket(&bucket).send().await.unwrap();
    let encryption = Encryption::new(mode);
    let large = Bytes::from(pseudo_random(LARGE));
    let small = Bytes::from(pseudo_random(SMALL));
    // Large objects: two at a time, as a client streaming files would.
    let large_keys: Vec<String> = (0..plan.large_objects)
        .map(|i| format!("large-{i}"))
        .collect();
    let put_seconds = run_all(client, &large_keys, 2, &encryption, Some(&large)).await;
    let get_seconds = run_all(client, &large_keys, 2, &encryption, None).await;
    let small_keys: Vec<String> = (0..plan.small_objects)
        .map(|i| format!("small-{i}"))
        .collect();
    let small_put = run_all(
        client,
        &small_keys,
        plan.concurrency,
        &encryption,
        Some(&small),
    )
    .await;
    let small_get = run_all(client, &small_keys, plan.concurrency, &encryption, None).await;
    let mib = (LARGE * plan.large_objects) as f64 / (1024.0 * 1024.0);
    Rates {
        large_put_mib_s: mib / put_seconds,
        large_get_mib_s: mib / get_seconds,
        small_put_per_s: plan.small_objects as f64 / small_put,
        small_get_per_s: plan.small_objects as f64 / small_get,
    }
}

/// PUTs `body` (or GETs, when `body` is `None`) every key, `concurrency` at a time; returns
/// the wall-clock seconds.
async fn run_all(
    client: &Client,
    keys: &[String],
    concurrency: usize,
    encryption: &Encryption,
    body: Option<&Bytes>,
) -> f64 {
    let bucket = format!("bench-{}", format!("{:?}", encryption.mode).to_lowercase());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let keys = Arc::new(keys.to_vec());
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, bucket, keys, next) = (
                client.clone(),
                bucket.clone(),
                Arc::clone(&keys),
                Arc::clone(&next),
            );
            let encryption = encryption.clone();
            let body = body.cloned();
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(key) = keys.get(index) else { break };
                    match &body {
                        Some(body) => {
                            let request = client
                                .put_object()
                                .bucket(&bucket)
                                .key(key)
                                .body(ByteStream::from(body.clone()));
                            encryption.put(request).send().await.unwrap();
                        }
                        None => {
                            let request = client.get_object().bucket(&bucket).key(key);
                            let response = encryption.get(request).send().await.unwrap();
                            let bytes = response.body.collect().await.unwrap().into_bytes();
                            assert!(!bytes.is_empty());
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    started.elapsed().as_secs_f64()
}

fn client(port: u16) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .force_path_style(true)
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET, None, None, "bench"))
        .build();
    Client::from_conf(config)
}

/// s3s-fs over `root`, served like atrest serves (hyper HTTP/1, TCP_NODELAY).
async fn start_peer(root: &Path) -> u16 {
    let filesystem = s3s_fs::FileSystem::new(root).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(filesystem);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            stream.set_nodelay(true).unwrap();
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

fn pseudo_random(size: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(size);
    out
}
