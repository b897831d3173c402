//! aws-sdk-s3 against atrest: each encryption mode round-trips, headers echo as AWS's do,
//! multipart and ranged reads cross part and segment boundaries, presigned URLs work, errors
//! carry AWS's codes, and nothing stored is found in plaintext.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest, Md5};

use crate::harness::{Server, assert_code, error_code, new_key, raw_request};

const MIB: usize = 1024 * 1024;

/// Recognisable plaintext for the search of the data dir.
fn marked(tag: &str, size: usize) -> Vec<u8> {
    let unit = format!("<atrest-sdk-plaintext-{tag}>");
    unit.bytes().cycle().take(size).collect()
}

/// Random bytes: where a part boundary falls must show in the data, not hide in a pattern.
fn random(size: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; size];
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ size as u64;
    for chunk in bytes.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    bytes
}

struct CustomerKey {
    key: String,
    md5: String,
}

fn customer_key(seed: u8) -> CustomerKey {
    let raw: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(31).wrapping_add(seed))
        .collect();
    CustomerKey {
        key: B64.encode(&raw),
        md5: B64.encode(Md5::digest(&raw)),
    }
}

async fn read_all(client: &Client, bucket: &str, key: &str, range: Option<String>) -> Vec<u8> {
    client
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_range(range)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_mode_round_trips_with_aws_headers_and_nothing_in_plaintext() {
    let server = Server::start_s3();
    let s3 = server.s3_client();
    let kms = server.client();
    s3.create_bucket().bucket("sdk-modes").send().await.unwrap();

    // SSE-S3 by default; the ETag is the MD5.
    let body = marked("default", 200_000);
    let put = s3
        .put_object()
        .bucket("sdk-modes")
        .key("default")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    assert_eq!(
        put.e_tag().unwrap().trim_matches('"'),
        hex::encode(Md5::digest(&body))
    );
    assert_eq!(read_all(&s3, "sdk-modes", "default", None).await, body);

    // SSE-KMS under a customer key, with an encryption context.
    let key_id = new_key(&kms).await;
    let context = B64.encode(r#"{"project":"atrest"}"#);
    let body = marked("kms", 150_000);
    let put = s3
        .put_object()
        .bucket("sdk-modes")
        .key("kms")
        .body(ByteStream::from(body.clone()))
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key_id)
        .ssekms_encryption_context(&context)
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert!(put.ssekms_key_id().unwrap().ends_with(&key_id));
    let head = s3
        .head_object()
        .bucket("sdk-modes")
        .key("kms")
        .send()
        .await
        .unwrap();
    assert!(head.ssekms_key_id().unwrap().ends_with(&key_id));
    assert_eq!(read_all(&s3, "sdk-modes", "kms", None).await, body);

    // SSE-C: the key is needed to read, and a wrong one is refused.
    let customer = customer_key(7);
    let body = marked("ssec", 100_000);
    s3.put_object()
        .bucket("sdk-modes")
        .key("ssec")
        .body(ByteStream::from(body.clone()))
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&customer.key)
        .sse_customer_key_md5(&customer.md5)
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("sdk-modes")
        .key("ssec")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&customer.key)
        .sse_customer_key_md5(&customer.md5)
        .send()
        .await
        .unwrap();
    assert_eq!(got.sse_customer_key_md5(), Some(customer.md5.as_str()));
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().to_vec(),
        body
    );
    let wrong = customer_key(8);
    let refused = s3
        .get_object()
        .bucket("sdk-modes")
        .key("ssec")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&wrong.key)
        .sse_customer_key_md5(&wrong.md5)
        .send()
        .await;
    assert_code(refused, "AccessDenied");
    assert_code(
        s3.get_object().bucket("sdk-modes").key("ssec").send().await,
        "InvalidRequest",
    );

    for tag in ["default", "kms", "ssec"] {
        server.assert_not_on_disk(format!("<atrest-sdk-plaintext-{tag}>").as_bytes(), tag);
    }
    server.assert_not_on_disk(customer.key.as_bytes(), "the customer key (base64)");
}

/// Uploads `parts` as one multipart upload (SSE-KMS if `kms`) and completes it.
async fn upload_parts(
    s3: &Client,
    bucket: &str,
    key: &str,
    parts: &[Vec<u8>],
    kms: bool,
) -> Result<
    aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput,
    aws_sdk_s3::error::SdkError<
        aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadError,
        aws_sdk_s3::config::http::HttpResponse,
    >,
> {
    let mut create = s3.create_multipart_upload().bucket(bucket).key(key);
    if kms {
        create = create.server_side_encryption(ServerSideEncryption::AwsKms);
    }
    let upload = create.send().await.unwrap();
    let upload_id = upload.upload_id().unwrap();
    let mut completed = Vec::new();
    for (number, part) in (1..).zip(parts) {
        let uploaded = s3
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(part.clone()))
            .send()
            .await
            .unwrap();
        completed.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(uploaded.e_tag().unwrap())
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_and_ranges_across_part_and_segment_boundaries() {
    let server = Server::start_s3();
    let s3 = server.s3_client();
    s3.create_bucket()
        .bucket("sdk-multipart")
        .send()
        .await
        .unwrap();
    let parts = [random(5 * MIB), random(5 * MIB + 1), random(70_000)];
    let done = upload_parts(&s3, "sdk-multipart", "big", &parts, true)
        .await
        .unwrap();
    assert!(done.e_tag().unwrap().ends_with("-3\""));
    let whole: Vec<u8> = parts.concat();
    assert_eq!(read_all(&s3, "sdk-multipart", "big", None).await, whole);
    let boundaries = [
        (5 * MIB - 3, 5 * MIB + 2),         // part 1 → part 2
        (10 * MIB - 1, 10 * MIB + 65_537),  // part 2 → part 3, over a segment edge
        (64 * 1024 - 1, 64 * 1024),         // a segment edge inside part 1
        (whole.len() - 5, whole.len() - 1), // the last bytes
    ];
    for (first, last) in boundaries {
        let got = read_all(
            &s3,
            "sdk-multipart",
            "big",
            Some(format!("bytes={first}-{last}")),
        )
        .await;
        assert_eq!(got, whole[first..=last], "range {first}-{last}");
    }
    let second = s3
        .get_object()
        .bucket("sdk-multipart")
        .key("big")
        .part_number(2)
        .send()
        .await
        .unwrap();
    assert_eq!(second.parts_count(), Some(3));
    assert_eq!(
        second.body.collect().await.unwrap().into_bytes().to_vec(),
        parts[1]
    );
    // Parts under 5 MiB other than the last are refused at completion.
    let small = [vec![b'x'; 1024], vec![b'y'; 1024]];
    let refused = upload_parts(&s3, "sdk-multipart", "small", &small, false).await;
    assert_code(refused, "EntityTooSmall");
}

#[tokio::test(flavor = "multi_thread")]
async fn presigned_urls_and_error_codes() {
    let server = Server::start_s3();
    let s3 = server.s3_client();
    s3.create_bucket()
        .bucket("sdk-presign")
        .send()
        .await
        .unwrap();
    let expires = PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();

    let put = s3
        .put_object()
        .bucket("sdk-presign")
        .key("via-url")
        .presigned(expires.clone())
        .await
        .unwrap();
    let body = "presigned body";
    let path = put.uri().split_once(&server.port.to_string()).unwrap().1;
    let request = format!(
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.port,
        body.len()
    );
    let response = raw_request(server.port, &request).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let get = s3
        .get_object()
        .bucket("sdk-presign")
        .key("via-url")
        .presigned(expires)
        .await
        .unwrap();
    let path = get.uri().split_once(&server.port.to_string()).unwrap().1;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        server.port
    );
    let response = raw_request(server.port, &request).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(body));
    // A tampered presigned URL is refused.
    let tampered = path.replace("via-url", "other-key");
    let request = format!(
        "GET {tampered} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        server.port
    );
    let response = raw_request(server.port, &request).unwrap();
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");

    assert_code(
        s3.get_object()
            .bucket("sdk-presign")
            .key("missing")
            .send()
            .await,
        "NoSuchKey",
    );
    assert_code(
        s3.get_object()
            .bucket("no-such-bucket")
            .key("k")
            .send()
            .await,
        "NoSuchBucket",
    );
    let conflicting = s3
        .put_object()
        .bucket("sdk-presign")
        .key("conflict")
        .body(ByteStream::from_static(b"x"))
        .server_side_encryption(ServerSideEncryption::Aes256)
        .ssekms_key_id("alias/aws/s3")
        .send()
        .await;
    let error = conflicting.unwrap_err();
    assert_eq!(error_code(&error), "InvalidArgument");
    assert_eq!(error.raw_response().unwrap().status().as_u16(), 400);
    assert_code(
        s3.delete_bucket().bucket("sdk-presign").send().await,
        "BucketNotEmpty",
    );
}
