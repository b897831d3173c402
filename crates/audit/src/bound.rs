//! Keeping every record small, whatever a request carried: a caller (signed or not) decides
//! how long its parameters, encryption context, operation name and key names are, and none of
//! that may make the log grow faster than requests arrive. A record whose fields exceed
//! [`MAX_EVENT_BYTES`] has its long strings cut to a prefix plus a marker naming their length
//! and SHA-256 (so a value can still be matched against a suspect one), then, if still too
//! large, whole members replaced by such a marker.

use serde_json::Value;

use crate::record::Event;

/// The most bytes an event's JSON may take in the log.
pub const MAX_EVENT_BYTES: usize = 8 * 1024;
/// Strings longer than this are cut when a record is too large.
const MAX_STRING: usize = 256;
/// What is kept of a cut string.
const KEPT_PREFIX: usize = 64;
/// Resource ARNs kept when a record is too large.
const MAX_RESOURCES: usize = 32;

impl Event {
    /// This event, cut down to [`MAX_EVENT_BYTES`] if it is larger.
    pub fn bounded(mut self) -> Self {
        if size(&self) <= MAX_EVENT_BYTES {
            return self;
        }
        for text in [
            &mut self.event_source,
            &mut self.event_name,
            &mut self.request_id,
        ] {
            shorten(text);
        }
        for text in [
            &mut self.caller_arn,
            &mut self.access_key_id,
            &mut self.source_ip,
            &mut self.error_code,
        ]
        .into_iter()
        .flatten()
        {
            shorten(text);
        }
        self.resources.iter_mut().for_each(shorten);
        if self.resources.len() > MAX_RESOURCES {
            let dropped = self.resources.len() - MAX_RESOURCES;
            self.resources.truncate(MAX_RESOURCES);
            self.resources
                .push(format!("[{dropped} more resources omitted]"));
        }
        for value in [&mut self.request_parameters, &mut self.encryption_context]
            .into_iter()
            .flatten()
        {
            shorten_strings(value);
        }
        if size(&self) > MAX_EVENT_BYTES {
            omit(&mut self.request_parameters);
        }
        if size(&self) > MAX_EVENT_BYTES {
            omit(&mut self.encryption_context);
        }
        self
    }
}

/// Replaces a member by a marker of what it was.
fn omit(member: &mut Option<Value>) {
    if let Some(value) = member.take() {
        *member = Some(serde_json::json!({ "omitted": marker(&value.to_string()) }));
    }
}

fn size(event: &Event) -> usize {
    serde_json::to_vec(event).map_or(usize::MAX, |json| json.len())
}

/// Cuts every long string in `value`, keys included.
fn shorten_strings(value: &mut Value) {
    match value {
        Value::String(text) => shorten(text),
        Value::Array(items) => items.iter_mut().for_each(shorten_strings),
        Value::Object(members) => {
            let owned = std::mem::take(members);
            for (mut key, mut member) in owned {
                shorten(&mut key);
                shorten_strings(&mut member);
                members.insert(key, member);
            }
        }
        _ => {}
    }
}

fn shorten(text: &mut String) {
    if text.len() <= MAX_STRING {
        return;
    }
    let mut cut = KEPT_PREFIX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    *text = format!("{}…{}", &text[..cut], marker(text));
}

fn marker(text: &str) -> String {
    format!(
        "[truncated: {} bytes, sha256 {}]",
        text.len(),
        atrest_sigv4::sha256_hex(text.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_with(parameters: Value) -> Event {
        Event {
            event_source: "kms.amazonaws.com".into(),
            event_name: "Encrypt".into(),
            request_id: "r".into(),
            request_parameters: Some(parameters),
            ..Event::default()
        }
    }

    #[test]
    fn small_records_are_untouched() {
        let event = event_with(serde_json::json!({"KeyId": "alias/a", "Long": "x".repeat(300)}));
        let before = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::to_string(&event.bounded()).unwrap(), before);
    }

    #[test]
    fn huge_values_keys_and_names_are_cut_with_their_hash() {
        let big = "é".repeat(600_000);
        let mut event = event_with(serde_json::json!({
            "KeyId": "alias/a",
            "Junk": big,
            big.clone(): 1,
            "Context": {"k": "v".repeat(10_000)},
        }));
        event.event_name = "E".repeat(1 << 20);
        event.encryption_context = Some(serde_json::json!({"purpose": "p".repeat(1 << 20)}));
        event.resources = (0..10_000)
            .map(|i| format!("arn:aws:kms:::key/{i}"))
            .collect();
        let bounded = event.bounded();
        let json = serde_json::to_string(&bounded).unwrap();
        assert!(json.len() <= MAX_EVENT_BYTES, "{}", json.len());
        assert!(json.contains(&atrest_sigv4::sha256_hex(big.as_bytes())));
        assert!(json.contains("alias/a"));
        assert!(json.contains("more resources omitted"));
    }

    #[test]
    fn many_short_members_are_replaced_whole() {
        let members: serde_json::Map<String, Value> = (0..5000)
            .map(|i| (format!("m{i}"), Value::from(i)))
            .collect();
        let bounded = event_with(Value::Object(members)).bounded();
        let json = serde_json::to_string(&bounded).unwrap();
        assert!(json.len() <= MAX_EVENT_BYTES, "{}", json.len());
        assert!(json.contains("omitted"));
    }
}
