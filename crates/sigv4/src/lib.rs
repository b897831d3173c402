//! AWS Signature Version 4 verification for requests signed in the `Authorization` header.
//!
//! Follows the AWS SigV4 specification ("Create a signed AWS API request", IAM user guide):
//! canonical request → string to sign → HMAC-SHA256 chain from the secret over
//! date/region/service/`aws4_request` → signature, compared in constant time. Sans-io: the caller
//! passes the request's parts and the secret for the access key named in the header.

mod canonical;
mod time;

use aws_lc_rs::{digest, hmac};
use subtle::ConstantTimeEq;

pub use canonical::UriEncoding;
pub use time::{format_amz_date, format_iso8601, parse_amz_date, parse_http_date};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Requests signed further than this from the server's clock are refused (AWS: 5 minutes).
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 300;

/// Why a request failed authentication. The server maps each variant to AWS's error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigV4Error {
    #[error("Missing Authentication Token")]
    Missing,
    #[error("{0}")]
    Incomplete(String),
    #[error("{0}")]
    WrongScope(String),
    #[error("Signature expired: {signed} is now earlier than {earliest} ({now} - 5 min.)")]
    Expired {
        signed: String,
        earliest: String,
        now: String,
    },
    #[error("Signature not yet current: {signed} is still later than {latest} ({now} + 5 min.)")]
    NotYetCurrent {
        signed: String,
        latest: String,
        now: String,
    },
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS \
         Secret Access Key and signing method. Consult the service documentation for details."
    )]
    Mismatch,
}

/// The parsed `Authorization` header, borrowing from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key_id: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    /// The `SignedHeaders` list as sent: lower-case names joined by `;`.
    pub signed_headers: &'a str,
    pub signature: [u8; 32],
    /// The `Signature` was not 64 hex digits. It fails [`verify`], but only after the scope and
    /// clock checks, so clients learn about an expired request first, as AWS reports it.
    pub malformed_signature: bool,
}

impl Authorization<'_> {
    pub fn signed_header_names(&self) -> impl Iterator<Item = &str> {
        self.signed_headers.split(';')
    }
}

/// Read access to a request's headers without copying them.
pub trait HeaderSource {
    /// Calls `each` with every value of the header `name` (lower case), in arrival order.
    fn for_each_value(&self, name: &str, each: &mut dyn FnMut(&str));
}

/// Headers as `(lower-case name, value)` pairs; repeated headers appear repeatedly.
impl HeaderSource for Vec<(String, String)> {
    fn for_each_value(&self, name: &str, each: &mut dyn FnMut(&str)) {
        for (header, value) in self {
            if header == name {
                each(value);
            }
        }
    }
}

/// The parts of a request that SigV4 covers.
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The path exactly as it arrived, still percent-encoded.
    pub raw_path: &'a str,
    /// The query string exactly as it arrived, without the `?`.
    pub raw_query: &'a str,
    pub headers: &'a dyn HeaderSource,
    /// Lower-case hex SHA-256 of the body, or the literal the client signed (S3's
    /// `UNSIGNED-PAYLOAD`, `STREAMING-...`).
    pub payload_hash: &'a str,
    pub uri_encoding: UriEncoding,
}

impl std::fmt::Debug for RequestParts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestParts")
            .field("method", &self.method)
            .field("raw_path", &self.raw_path)
            .finish()
    }
}

/// What the server expects of the credential scope.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    pub region: &'a str,
    pub service: &'a str,
    /// The server's clock, Unix seconds.
    pub now: i64,
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
/// SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(header: &str) -> Result<Authorization<'_>, SigV4Error> {
    let rest = header.strip_prefix(ALGORITHM).ok_or_else(|| {
        SigV4Error::Incomplete(format!(
            "Unsupported authorization type; expected {ALGORITHM}"
        ))
    })?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(value) = part.strip_prefix("Credential=") {
            credential = Some(value);
        } else if let Some(value) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(value);
        } else if let Some(value) = part.strip_prefix("Signature=") {
            signature = Some(value);
        }
    }
    let missing = |name: &str| {
        SigV4Error::Incomplete(format!(
            "Authorization header requires '{name}' parameter. Authorization={header}"
        ))
    };
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| missing("SignedHeaders"))?;
    let signature_hex = signature.ok_or_else(|| missing("Signature"))?;
    let mut scope = credential.split('/');
    let malformed = || SigV4Error::Incomplete(format!("Credential is malformed: {credential}"));
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some("aws4_request"), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(malformed());
    };
    if date.len() != 8 || access_key_id.is_empty() {
        return Err(malformed());
    }
    let mut signature = [0u8; 32];
    let malformed_signature = hex::decode_to_slice(signature_hex, &mut signature).is_err();
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
        malformed_signature,
    })
}

/// Checks scope and clock before the caller fetches a secret, so bad requests cost no HSM work.
pub fn check_scope(
    auth: &Authorization<'_>,
    amz_date: &str,
    expect: &Expectations<'_>,
) -> Result<(), SigV4Error> {
    if auth.service != expect.service {
        return Err(SigV4Error::WrongScope(format!(
            "Credential should be scoped to correct service: '{}'. ",
            expect.service
        )));
    }
    if auth.region != expect.region {
        return Err(SigV4Error::WrongScope(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            auth.region
        )));
    }
    if !auth.signed_header_names().any(|name| name == "host") {
        return Err(SigV4Error::Incomplete(
            "'Host' must be a signed header".into(),
        ));
    }
    let signed_at = parse_amz_date(amz_date)
        .ok_or_else(|| SigV4Error::Incomplete(format!("X-Amz-Date is malformed: {amz_date}")))?;
    if !amz_date.starts_with(auth.date) {
        return Err(SigV4Error::WrongScope(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
            auth.date,
            amz_date.get(..8).unwrap_or(amz_date)
        )));
    }
    if signed_at < expect.now - MAX_CLOCK_SKEW_SECONDS {
        return Err(SigV4Error::Expired {
            signed: amz_date.to_owned(),
            earliest: format_amz_date(expect.now - MAX_CLOCK_SKEW_SECONDS),
            now: format_amz_date(expect.now),
        });
    }
    if signed_at > expect.now + MAX_CLOCK_SKEW_SECONDS {
        return Err(SigV4Error::NotYetCurrent {
            signed: amz_date.to_owned(),
            latest: format_amz_date(expect.now + MAX_CLOCK_SKEW_SECONDS),
            now: format_amz_date(expect.now),
        });
    }
    Ok(())
}

/// The key derived from a secret for one credential scope (date, region, service). It is what
/// signs; deriving it takes four HMACs, so servers keep it for the day as AWS does.
pub struct SigningKey(hmac::Key);

impl SigningKey {
    pub fn derive(secret: &[u8], date: &str, region: &str, service: &str) -> Self {
        Self(signing_key(secret, date, region, service))
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([REDACTED])")
    }
}

/// Checks a hex signature over `string_to_sign` itself, in constant time: a browser form
/// upload (POST object) signs its base64 policy document this way (AWS S3 API reference,
/// "Calculating a signature" for POST policies).
pub fn verify_string(key: &SigningKey, string_to_sign: &[u8], signature_hex: &str) -> bool {
    let mut signature = [0u8; 32];
    if hex::decode_to_slice(signature_hex, &mut signature).is_err() {
        return false;
    }
    hmac::verify(&key.0, string_to_sign, &signature).is_ok()
}

/// Recomputes the signature with `secret` and compares it in constant time.
pub fn verify(
    request: &RequestParts<'_>,
    auth: &Authorization<'_>,
    amz_date: &str,
    secret: &[u8],
) -> Result<(), SigV4Error> {
    let key = SigningKey::derive(secret, auth.date, auth.region, auth.service);
    verify_with(request, auth, amz_date, &key)
}

/// [`verify`] with an already derived key for the request's scope.
pub fn verify_with(
    request: &RequestParts<'_>,
    auth: &Authorization<'_>,
    amz_date: &str,
    key: &SigningKey,
) -> Result<(), SigV4Error> {
    if auth.malformed_signature {
        return Err(SigV4Error::Mismatch);
    }
    let expected = signature_with(request, auth, amz_date, key);
    if expected.as_slice().ct_eq(auth.signature.as_slice()).into() {
        Ok(())
    } else {
        Err(SigV4Error::Mismatch)
    }
}

/// The signature a correct client computes for `request`.
pub fn signature(
    request: &RequestParts<'_>,
    auth: &Authorization<'_>,
    amz_date: &str,
    secret: &[u8],
) -> Vec<u8> {
    let key = SigningKey::derive(secret, auth.date, auth.region, auth.service);
    signature_with(request, auth, amz_date, &key)
}

fn signature_with(
    request: &RequestParts<'_>,
    auth: &Authorization<'_>,
    amz_date: &str,
    key: &SigningKey,
) -> Vec<u8> {
    let canonical_request = canonical::canonical_request(request, auth.signed_headers);
    let mut string_to_sign = String::with_capacity(160);
    for part in [
        ALGORITHM,
        "\n",
        amz_date,
        "\n",
        auth.date,
        "/",
        auth.region,
        "/",
        auth.service,
        "/aws4_request\n",
    ] {
        string_to_sign.push_str(part);
    }
    let mut digest_hex = [0u8; 64];
    let digest = digest::digest(&digest::SHA256, canonical_request.as_bytes());
    #[allow(clippy::expect_used)] // a 32-byte digest always fits 64 hex digits.
    hex::encode_to_slice(digest.as_ref(), &mut digest_hex).expect("64 hex digits");
    string_to_sign.push_str(std::str::from_utf8(&digest_hex).unwrap_or_default());
    hmac::sign(&key.0, string_to_sign.as_bytes())
        .as_ref()
        .to_vec()
}

/// Hex SHA-256, the payload hash of a body the server holds in full.
pub fn sha256_hex(bytes: &[u8]) -> String {
    lower_hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// Lower-case hex, as SigV4 writes hashes and signatures; a table lookup per nibble, since
/// every request hashes its payload and its canonical request.
fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

fn signing_key(secret: &[u8], date: &str, region: &str, service: &str) -> hmac::Key {
    let mut k_secret = zeroize::Zeroizing::new(Vec::with_capacity(4 + secret.len()));
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret);
    let k_date = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &k_secret),
        date.as_bytes(),
    );
    let k_region = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, k_date.as_ref()),
        region.as_bytes(),
    );
    let k_service = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, k_region.as_ref()),
        service.as_bytes(),
    );
    let k_signing = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, k_service.as_ref()),
        b"aws4_request",
    );
    hmac::Key::new(hmac::HMAC_SHA256, k_signing.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn vanilla_headers() -> Vec<(String, String)> {
        vec![
            ("host".into(), "example.amazonaws.com".into()),
            ("x-amz-date".into(), "20150830T123600Z".into()),
        ]
    }

    /// `get-vanilla` from the AWS SigV4 test suite.
    #[test]
    fn aws_suite_get_vanilla() {
        let header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                      SignedHeaders=host;x-amz-date, \
                      Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        let auth = parse_authorization(header).unwrap();
        let headers = vanilla_headers();
        let request = RequestParts {
            method: "GET",
            raw_path: "/",
            raw_query: "",
            headers: &headers,
            payload_hash: &sha256_hex(b""),
            uri_encoding: UriEncoding::Double,
        };
        verify(&request, &auth, "20150830T123600Z", SECRET).unwrap();
        assert_eq!(
            verify(&request, &auth, "20150830T123600Z", b"wrong"),
            Err(SigV4Error::Mismatch)
        );
    }

    /// `get-vanilla-query-order-key-case` from the AWS SigV4 test suite.
    #[test]
    fn aws_suite_query_order() {
        let header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                      SignedHeaders=host;x-amz-date, \
                      Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500";
        let auth = parse_authorization(header).unwrap();
        let headers = vanilla_headers();
        let request = RequestParts {
            method: "GET",
            raw_path: "/",
            raw_query: "Param2=value2&Param1=value1",
            headers: &headers,
            payload_hash: &sha256_hex(b""),
            uri_encoding: UriEncoding::Double,
        };
        verify(&request, &auth, "20150830T123600Z", SECRET).unwrap();
    }

    #[test]
    fn scope_and_clock_are_checked() {
        let header = format!(
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
            "0".repeat(64)
        );
        let auth = parse_authorization(&header).unwrap();
        let now = parse_amz_date("20150830T123600Z").unwrap();
        let expect = Expectations {
            region: "us-east-1",
            service: "kms",
            now,
        };
        check_scope(&auth, "20150830T123600Z", &expect).unwrap();
        check_scope(&auth, "20150830T124059Z", &expect).unwrap();
        assert!(matches!(
            check_scope(&auth, "20150830T124101Z", &expect),
            Err(SigV4Error::NotYetCurrent { .. })
        ));
        assert!(matches!(
            check_scope(&auth, "20150830T123059Z", &expect),
            Err(SigV4Error::Expired { .. })
        ));
        let elsewhere = Expectations {
            region: "eu-west-1",
            ..expect
        };
        assert!(matches!(
            check_scope(&auth, "20150830T123600Z", &elsewhere),
            Err(SigV4Error::WrongScope(_))
        ));
        let other_service = Expectations {
            service: "s3",
            ..expect
        };
        assert!(matches!(
            check_scope(&auth, "20150830T123600Z", &other_service),
            Err(SigV4Error::WrongScope(_))
        ));
    }

    #[test]
    fn malformed_headers_are_incomplete() {
        for header in [
            "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AKID/2015/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00",
            "Basic dXNlcjpwYXNz",
        ] {
            assert!(
                matches!(parse_authorization(header), Err(SigV4Error::Incomplete(_))),
                "{header}"
            );
        }
    }
}
