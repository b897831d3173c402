//! The stored-object segment format: the header parser never panics and round-trips what it
//! accepts, and opening arbitrary bytes as segments under a fixed key never panics and never
//! authenticates (the input is not sealed under that key).
#![no_main]

use atrest_crypto::SecretKey32;
use atrest_crypto::segments::{HEADER_LEN, Layout, SEALED_SEGMENT_SIZE, SegmentKey, StreamHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = StreamHeader::parse(data) else {
        return;
    };
    assert_eq!(&header.to_bytes()[..], &data[..HEADER_LEN]);
    let key = SegmentKey::derive(&SecretKey32::from_bytes([7; 32]), &header, b"binding");
    let body = &data[HEADER_LEN..];
    let layout = Layout::new(body.len() as u64);
    for (index, chunk) in body.chunks(SEALED_SEGMENT_SIZE).enumerate() {
        let mut sealed = chunk.to_vec();
        let index = index as u64;
        assert!(key.open_in_place(index, layout.is_last(index), &mut sealed).is_err());
    }
});
