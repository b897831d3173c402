//! The SigV4 canonical request:
//! `method \n canonical URI \n canonical query \n canonical headers \n signed headers \n payload hash`.

use std::borrow::Cow;

use crate::RequestParts;

/// How the path is canonicalised. S3 signs the path as sent; every other AWS service signs it
/// URI-encoded once more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriEncoding {
    Single,
    Double,
}

pub(crate) fn canonical_request(request: &RequestParts<'_>, signed_headers: &str) -> String {
    let uri = match request.uri_encoding {
        UriEncoding::Single => Cow::Borrowed(request.raw_path),
        UriEncoding::Double => encode(request.raw_path, false),
    };
    let uri = if uri.is_empty() {
        Cow::Borrowed("/")
    } else {
        uri
    };
    let mut out = String::with_capacity(256 + request.raw_query.len());
    out.push_str(request.method);
    out.push('\n');
    out.push_str(&uri);
    out.push('\n');
    if !request.raw_query.is_empty() {
        out.push_str(&canonical_query(request.raw_query));
    }
    out.push('\n');
    for name in signed_headers.split(';') {
        out.push_str(name);
        out.push(':');
        let mut first = true;
        request.headers.for_each_value(name, &mut |value| {
            if !first {
                out.push(',');
            }
            first = false;
            push_collapsed(&mut out, value);
        });
        out.push('\n');
    }
    out.push('\n');
    out.push_str(signed_headers);
    out.push('\n');
    out.push_str(request.payload_hash);
    out
}

/// A header value trimmed, with inner runs of whitespace collapsed to one space.
fn push_collapsed(out: &mut String, value: &str) {
    for (index, word) in value.split_whitespace().enumerate() {
        if index > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
}

/// Pairs decoded, re-encoded with AWS's rules, sorted by name then value; the presigned-URL
/// signature parameter is excluded.
fn canonical_query(raw: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                encode(&decode(name), true).into_owned(),
                encode(&decode(value), true).into_owned(),
            )
        })
        .filter(|(name, _)| name != "X-Amz-Signature")
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 encoding as AWS specifies it: everything but `A-Za-z0-9-_.~` is `%XX` (upper-case
/// hex); `/` is kept in paths. Borrows when nothing needs encoding, as for `/`.
pub(crate) fn encode(text: &str, encode_slash: bool) -> Cow<'_, str> {
    let keep = |byte: u8| {
        byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || (byte == b'/' && !encode_slash)
    };
    if text.bytes().all(keep) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if keep(byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    Cow::Owned(out)
}

/// Percent-decoding (`+` stays `+`, as AWS treats it); invalid escapes are kept literally.
pub(crate) fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let Some(byte) = text
                .get(index + 1..index + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            index += 3;
            continue;
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_follows_aws_rules() {
        assert_eq!(encode("a b/c~d", false), "a%20b/c~d");
        assert_eq!(encode("a b/c", true), "a%20b%2Fc");
        assert!(matches!(encode("/", false), Cow::Borrowed("/")));
        assert_eq!(decode("a%20b%2"), "a b%2");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("X-Amz-Signature=abc&x=%2a"), "x=%2A");
        let mut collapsed = String::new();
        push_collapsed(&mut collapsed, "  a   b\tc ");
        assert_eq!(collapsed, "a b c");
    }
}
