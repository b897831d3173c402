//! What the S3 front reads before any signature is verified: the signature gate's view of a
//! query string and `Authorization` header, the SigV2 string to sign, and aws-chunked framing
//! (which must never accept a chunk above its cap, however the body is split).
#![no_main]

use atrest_s3::chunk_guard::{ChunkFraming, FramingError, MAX_CHUNK_SIZE};
use atrest_s3::signature_gate::{Rules, inspect, sigv2_string_to_sign};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (query, authorization) = text.split_once('\n').unwrap_or((&text, ""));
    let mut headers = http::HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_str(authorization) {
        headers.insert(http::header::AUTHORIZATION, value.clone());
        headers.insert("x-amz-date", value);
    }
    let rules = Rules {
        region: "us-east-1",
        allow_sigv2_headers: data.first().is_some_and(|byte| byte & 1 == 1),
        now: 1_765_000_000,
    };
    let _ = inspect(Some(query), &headers, &rules);
    let _ = sigv2_string_to_sign(&http::Method::GET, "/b/k", Some(query), &headers, None, true);

    let mut whole = ChunkFraming::default();
    let at_once = whole.scan(data);
    let mut split = ChunkFraming::default();
    let piecewise = data.chunks(3).try_for_each(|piece| split.scan(piece));
    assert_eq!(at_once.is_ok(), piecewise.is_ok());
    if let Err(FramingError::ChunkTooLarge(size)) = at_once {
        assert!(size > MAX_CHUNK_SIZE);
    }
});
