//! Browser form uploads, parsed before authentication: the streaming multipart reader never
//! panics, never holds more than its bounds plus one input piece, gives the same events however
//! the body is split, and the POST policy parser and checker never panic on what it reads.
#![no_main]

use atrest_s3::form::multipart::{Event, FormParser, MAX_FIELDS_BYTES};
use atrest_s3::form::policy::PostPolicy;
use libfuzzer_sys::fuzz_target;

/// Runs the reader over `body` in pieces of `piece` bytes; the events (file bytes joined).
fn read(body: &[u8], piece: usize) -> Result<Vec<Event>, String> {
    let mut parser = FormParser::new("B0undary");
    let mut events = Vec::new();
    let mut file = Vec::new();
    let mut pieces = body.chunks(piece.max(1));
    loop {
        match parser.next_event().map_err(|error| error.to_string())? {
            Some(Event::FileData(data)) => file.extend(data),
            Some(Event::FileEnd) => {
                events.push(Event::FileData(file));
                return Ok(events);
            }
            Some(event) => events.push(event),
            None => match pieces.next() {
                Some(bytes) => parser.feed(bytes),
                None => parser.end(),
            },
        }
        assert!(parser.buffered() <= MAX_FIELDS_BYTES + 8 * 1024 + piece + 64);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let whole = read(body, body.len());
    let pieces = read(body, usize::from(split % 16) + 1);
    // Errors may be found at different points, but success is the same either way.
    if let (Ok(whole), Ok(pieces)) = (&whole, &pieces) {
        assert_eq!(whole, pieces);
    }
    if let Ok(events) = whole {
        let fields: Vec<(String, String)> = events
            .iter()
            .filter_map(|event| match event {
                Event::Field { name, value } => Some((name.clone(), value.clone())),
                _ => None,
            })
            .collect();
        for (name, value) in &fields {
            if name.eq_ignore_ascii_case("policy")
                && let Ok(policy) = PostPolicy::parse(value)
            {
                let _ = policy.check(&fields, "bucket", 0);
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(body)
        && let Ok(policy) = PostPolicy::parse(text)
    {
        let _ = policy.check(&[], "bucket", policy.expiration - 1);
    }
});
