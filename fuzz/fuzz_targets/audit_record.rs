//! The audit record parser (what `audit verify` and `audit search` read): arbitrary lines never
//! panic, and a parsed record serializes back to a line that parses to the same record.
#![no_main]

use atrest_audit::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = serde_json::from_slice::<Record>(data) {
        let line = serde_json::to_vec(&record).expect("a parsed record serializes");
        let again: Record = serde_json::from_slice(&line).expect("a written record parses");
        assert_eq!(again.seq, record.seq);
        assert_eq!(again.prev, record.prev);
        assert_eq!(again.event.request_id, record.event.request_id);
    }
});
