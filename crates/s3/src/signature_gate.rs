//! What atrest requires of an S3 request's signature, checked before s3s verifies it.
//!
//! s3s 0.14 accepts every scheme S3 ever had, as loosely as the oldest clients need: SigV2
//! header auth with any `Date`, presigned URLs valid for years, SigV4 scoped to any region or
//! to `sts`, and SigV2 signatures compared with `!=`. This gate applies AWS's own limits first:
//! - **SigV2 header auth** (`Authorization: AWS AKID:signature`) is refused unless the operator
//!   allows it (`--allow-sigv2`): it signs neither the body nor most query parameters, so a
//!   captured request can be replayed with another body or another listing prefix. When allowed,
//!   its `x-amz-date` or `Date` must be within 15 minutes of now (what AWS enforces), and the
//!   signature is checked here in constant time.
//! - **SigV2 presigned URLs** (`AWSAccessKeyId`, `Signature`, `Expires`) stay accepted: boto3
//!   still makes them by default for us-east-1, where AWS still accepts them. `Expires` must lie
//!   in the future, at most 7 days ahead, and the signature is checked here in constant time.
//! - **SigV4** must be scoped to this server's region and the `s3` service; a presigned URL's
//!   `X-Amz-Expires` is at most 604800 seconds and an expired one is refused.
//!
//! The checks are pure functions of the request and the clock ([`inspect`]); only the SigV2
//! signature needs the caller's secret ([`SignatureGate::check`]).

use std::sync::Arc;

use atrest_kms::Kms;
use base64::Engine as _;
use http::{HeaderMap, Method};

use crate::host::BucketDomains;

/// The longest a presigned URL may stay valid, in seconds (AWS: 7 days, for SigV4 and here
/// also for SigV2's `Expires`).
pub const MAX_PRESIGNED_SECONDS: i64 = 604_800;
/// How far a SigV2 header-signed request's date may be from now (AWS: 15 minutes).
pub const MAX_SIGV2_SKEW_SECONDS: i64 = 900;

/// A refused request: the S3 error it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The S3 XML error body.
    pub fn body(&self, request_id: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>\
             <RequestId>{}</RequestId></Error>",
            self.code,
            xml_escape(&self.message),
            xml_escape(request_id)
        )
    }
}

/// The request's signature scheme, as far as the gate needs to know it.
#[derive(Debug, PartialEq, Eq)]
pub enum Scheme<'a> {
    /// No signature (anonymous), or a scheme s3s alone decides on (POST form signatures live
    /// in the body).
    Other,
    SigV4,
    /// SigV2 that passed the clock checks; its signature still needs the secret.
    SigV2 {
        access_key: String,
        signature: String,
        presigned: bool,
        query: Option<&'a str>,
    },
}

/// The limits of this server's S3 signatures.
pub struct SignatureGate {
    kms: Arc<Kms>,
    region: String,
    allow_sigv2_headers: bool,
    domains: BucketDomains,
}

impl SignatureGate {
    pub fn new(kms: Arc<Kms>, allow_sigv2_headers: bool, domains: BucketDomains) -> Self {
        let region = kms.region().to_owned();
        Self {
            kms,
            region,
            allow_sigv2_headers,
            domains,
        }
    }

    /// Refuses what AWS would refuse before s3s looks at the signature; checks SigV2
    /// signatures in constant time.
    pub fn check(
        &self,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
    ) -> Result<(), Refusal> {
        let rules = Rules {
            region: &self.region,
            allow_sigv2_headers: self.allow_sigv2_headers,
            now: now(),
        };
        let Scheme::SigV2 {
            access_key,
            signature,
            presigned,
            query,
        } = inspect(uri.query(), headers, &rules)?
        else {
            return Ok(());
        };
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok());
        let bucket = host.and_then(|host| self.domains.bucket(host));
        let string_to_sign =
            sigv2_string_to_sign(method, uri.path(), query, headers, bucket, presigned);
        let secret = match self.kms.credentials(&access_key) {
            Ok(Some((_, secret))) => secret,
            Ok(None) => {
                return Err(Refusal::new(
                    403,
                    "InvalidAccessKeyId",
                    "The AWS Access Key Id you provided does not exist in our records.",
                ));
            }
            Err(error) => {
                tracing::error!(%error, "principal store");
                return Err(Refusal::new(
                    500,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                ));
            }
        };
        let tag = base64::engine::general_purpose::STANDARD
            .decode(signature.as_bytes())
            .unwrap_or_default();
        if atrest_crypto::mac::hmac_sha1_verify(secret.expose(), string_to_sign.as_bytes(), &tag) {
            Ok(())
        } else {
            Err(Refusal::new(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. \
                 Check your key and signing method.",
            ))
        }
    }
}

/// What [`inspect`] checks against.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub region: &'a str,
    pub allow_sigv2_headers: bool,
    /// Unix seconds.
    pub now: i64,
}

/// Classifies the request's signature and applies every check that needs no secret.
pub fn inspect<'a>(
    query: Option<&'a str>,
    headers: &HeaderMap,
    rules: &Rules<'_>,
) -> Result<Scheme<'a>, Refusal> {
    let params = QueryParams::parse(query);
    if params.has("X-Amz-Credential") || params.has("X-Amz-Signature") {
        check_presigned_v4(&params, rules)?;
        return Ok(Scheme::SigV4);
    }
    if params.has("Signature") || params.has("AWSAccessKeyId") {
        let (access_key, signature) = check_presigned_v2(&params, rules)?;
        return Ok(Scheme::SigV2 {
            access_key,
            signature,
            presigned: true,
            query,
        });
    }
    let Some(authorization) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(Scheme::Other);
    };
    let authorization = authorization.to_str().map_err(|_| {
        Refusal::new(
            400,
            "AuthorizationHeaderMalformed",
            "The authorization header is malformed",
        )
    })?;
    if let Some(rest) = authorization.strip_prefix("AWS4-HMAC-SHA256 ") {
        check_header_v4(rest, rules)?;
        return Ok(Scheme::SigV4);
    }
    if let Some(rest) = authorization.strip_prefix("AWS ") {
        let (access_key, signature) = check_header_v2(rest, headers, rules)?;
        return Ok(Scheme::SigV2 {
            access_key,
            signature,
            presigned: false,
            query,
        });
    }
    Ok(Scheme::Other)
}

fn check_header_v4(authorization: &str, rules: &Rules<'_>) -> Result<(), Refusal> {
    let malformed = |detail: String| {
        Refusal::new(
            400,
            "AuthorizationHeaderMalformed",
            format!("The authorization header is malformed; {detail}"),
        )
    };
    let credential = authorization
        .split([',', ' '])
        .find_map(|field| field.trim().strip_prefix("Credential="))
        .ok_or_else(|| malformed("the Credential is missing.".into()))?;
    check_scope(credential, rules).map_err(malformed)
}

fn check_presigned_v4(params: &QueryParams, rules: &Rules<'_>) -> Result<(), Refusal> {
    let refuse = |message: String| Refusal::new(400, "AuthorizationQueryParametersError", message);
    let credential = params.unique("X-Amz-Credential").ok_or_else(|| {
        refuse("Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.".into())
    })?;
    check_scope(&credential, rules).map_err(|detail| {
        refuse(format!(
            "Error parsing the X-Amz-Credential parameter; {detail}"
        ))
    })?;
    let expires = params
        .unique("X-Amz-Expires")
        .ok_or_else(|| refuse("X-Amz-Expires must be present.".into()))?;
    let expires: i64 = expires
        .parse()
        .ok()
        .filter(|seconds| *seconds >= 0)
        .ok_or_else(|| refuse("X-Amz-Expires should be a number".into()))?;
    if expires > MAX_PRESIGNED_SECONDS {
        return Err(refuse(format!(
            "X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGNED_SECONDS}"
        )));
    }
    let signed_at = params
        .unique("X-Amz-Date")
        .and_then(|date| atrest_sigv4::parse_amz_date(&date))
        .ok_or_else(|| {
            refuse("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"".into())
        })?;
    if rules.now > signed_at.saturating_add(expires) {
        return Err(Refusal::new(403, "AccessDenied", "Request has expired"));
    }
    Ok(())
}

/// `AKID/DATE/REGION/SERVICE/aws4_request`: the region must be this server's, the service s3.
pub(crate) fn check_scope(credential: &str, rules: &Rules<'_>) -> Result<(), String> {
    let mut fields = credential.rsplitn(5, '/');
    let (terminator, service, region) = (fields.next(), fields.next(), fields.next());
    let (Some(terminator), Some(service), Some(region), Some(_date), Some(_key)) =
        (terminator, service, region, fields.next(), fields.next())
    else {
        return Err("the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".".into());
    };
    if terminator != "aws4_request" {
        return Err(format!(
            "incorrect terminal \"{terminator}\". This endpoint uses \"aws4_request\"."
        ));
    }
    if service != "s3" {
        return Err(format!(
            "incorrect service \"{service}\". This endpoint belongs to \"s3\"."
        ));
    }
    if region != rules.region {
        return Err(format!(
            "the region '{region}' is wrong; expecting '{}'",
            rules.region
        ));
    }
    Ok(())
}

fn check_header_v2(
    authorization: &str,
    headers: &HeaderMap,
    rules: &Rules<'_>,
) -> Result<(String, String), Refusal> {
    if !rules.allow_sigv2_headers {
        return Err(Refusal::new(
            400,
            "InvalidRequest",
            "The authorization mechanism you have provided is not supported. Please use \
             AWS4-HMAC-SHA256 (Signature Version 4); this server accepts Signature Version 2 \
             headers only with --allow-sigv2.",
        ));
    }
    let (access_key, signature) = authorization.trim().split_once(':').ok_or_else(|| {
        Refusal::new(
            400,
            "InvalidArgument",
            "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
        )
    })?;
    // x-amz-date wins over Date, as the string to sign has it.
    let date = ["x-amz-date", "date"]
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|value| value.to_str().ok());
    let signed_at = date
        .and_then(atrest_sigv4::parse_http_date)
        .ok_or_else(|| {
            Refusal::new(
                403,
                "AccessDenied",
                "AWS authentication requires a valid Date or x-amz-date header",
            )
        })?;
    if (rules.now - signed_at).abs() > MAX_SIGV2_SKEW_SECONDS {
        return Err(Refusal::new(
            403,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        ));
    }
    Ok((access_key.to_owned(), signature.to_owned()))
}

fn check_presigned_v2(
    params: &QueryParams,
    rules: &Rules<'_>,
) -> Result<(String, String), Refusal> {
    let missing = || {
        Refusal::new(
            403,
            "AccessDenied",
            "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters",
        )
    };
    let access_key = params.unique("AWSAccessKeyId").ok_or_else(missing)?;
    let signature = params.unique("Signature").ok_or_else(missing)?;
    let expires: i64 = params
        .unique("Expires")
        .ok_or_else(missing)?
        .parse()
        .map_err(|_| missing())?;
    if rules.now > expires {
        return Err(Refusal::new(403, "AccessDenied", "Request has expired"));
    }
    if expires - rules.now > MAX_PRESIGNED_SECONDS {
        return Err(Refusal::new(
            400,
            "AuthorizationQueryParametersError",
            format!(
                "Expires must be at most a week (in seconds) that is {MAX_PRESIGNED_SECONDS} ahead"
            ),
        ));
    }
    Ok((access_key, signature))
}

/// The sub-resources SigV2 signs (AWS: "Constructing the CanonicalizedResource Element"),
/// sorted, as s3s signs them.
const SIGNED_SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// The SigV2 StringToSign (AWS S3 developer guide, "Signing and authenticating REST requests").
pub fn sigv2_string_to_sign(
    method: &Method,
    raw_path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    virtual_host_bucket: Option<&str>,
    presigned: bool,
) -> String {
    let header = |name: &str| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().unwrap_or(""),
            _ => "",
        }
    };
    let params = QueryParams::parse(query);
    let mut out = String::with_capacity(256);
    out.push_str(method.as_str());
    out.push('\n');
    out.push_str(header("content-md5"));
    out.push('\n');
    out.push_str(header("content-type"));
    out.push('\n');
    if presigned {
        out.push_str(params.unique("Expires").as_deref().unwrap_or(""));
    } else if !headers.contains_key("x-amz-date") {
        out.push_str(header("date"));
    }
    out.push('\n');
    let mut amz_names: Vec<&str> = headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|name| name.starts_with("x-amz-"))
        .collect();
    amz_names.sort_unstable();
    amz_names.dedup();
    for name in amz_names {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .map(str::trim)
            .collect();
        if values.is_empty() {
            continue;
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    if let Some(bucket) = virtual_host_bucket {
        out.push('/');
        out.push_str(bucket);
    }
    out.push_str(raw_path);
    let mut separator = '?';
    for name in SIGNED_SUBRESOURCES {
        if let Some(value) = params.unique(name) {
            out.push(separator);
            separator = '&';
            out.push_str(name);
            if !value.is_empty() {
                out.push('=');
                out.push_str(&value);
            }
        }
    }
    out
}

/// A query string's decoded pairs (`application/x-www-form-urlencoded`).
struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    fn parse(query: Option<&str>) -> Self {
        let pairs = query
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (form_decode(name), form_decode(value))
            })
            .collect();
        Self(pairs)
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(key, _)| key == name)
    }

    /// The value of a parameter given exactly once.
    fn unique(&self, name: &str) -> Option<String> {
        let mut values = self.0.iter().filter(|(key, _)| key == name);
        match (values.next(), values.next()) {
            (Some((_, value)), None) => Some(value.clone()),
            _ => None,
        }
    }
}

fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(index + 1..index + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes element text (quotes need no escaping there, and AWS's messages keep theirs).
pub(crate) fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_765_000_000;

    fn rules(allow_sigv2_headers: bool) -> Rules<'static> {
        Rules {
            region: "us-east-1",
            allow_sigv2_headers,
            now: NOW,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("test header"));
        }
        map
    }

    fn refusal(query: Option<&str>, pairs: &[(&'static str, &str)], allow: bool) -> Refusal {
        inspect(query, &headers(pairs), &rules(allow)).expect_err("refused")
    }

    #[test]
    fn sigv4_headers_must_be_scoped_to_this_region_and_s3() {
        let auth = |scope: &str| {
            format!(
                "AWS4-HMAC-SHA256 Credential=AKID/20251206/{scope}/aws4_request, SignedHeaders=host, Signature=00"
            )
        };
        let good = headers(&[("authorization", &auth("us-east-1/s3"))]);
        assert_eq!(inspect(None, &good, &rules(false)), Ok(Scheme::SigV4));
        let wrong = refusal(None, &[("authorization", &auth("eu-west-1/s3"))], false);
        assert_eq!(
            (wrong.status, wrong.code),
            (400, "AuthorizationHeaderMalformed")
        );
        assert!(wrong.message.contains("'eu-west-1' is wrong"), "{wrong:?}");
        let sts = refusal(None, &[("authorization", &auth("us-east-1/sts"))], false);
        assert!(sts.message.contains("\"sts\""), "{sts:?}");
        // s3cmd writes the fields without spaces.
        let compact = "AWS4-HMAC-SHA256 Credential=AKID/20251206/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=00";
        assert_eq!(
            inspect(None, &headers(&[("authorization", compact)]), &rules(false)),
            Ok(Scheme::SigV4)
        );
    }

    #[test]
    fn presigned_v4_limits_are_aws_limits() {
        let url = |region: &str, expires: i64, signed_at: i64| {
            format!(
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20251206%2F{region}%2Fs3%2Faws4_request&X-Amz-Date={}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host&X-Amz-Signature=00",
                atrest_sigv4::format_amz_date(signed_at)
            )
        };
        let ok = url("us-east-1", 3600, NOW - 60);
        assert_eq!(
            inspect(Some(&ok), &HeaderMap::new(), &rules(false)),
            Ok(Scheme::SigV4)
        );
        let week = url("us-east-1", 604_800, NOW);
        assert!(inspect(Some(&week), &HeaderMap::new(), &rules(false)).is_ok());
        let too_long = refusal(Some(&url("us-east-1", 604_801, NOW)), &[], false);
        assert_eq!(
            (too_long.status, too_long.code),
            (400, "AuthorizationQueryParametersError")
        );
        let expired = refusal(Some(&url("us-east-1", 60, NOW - 61)), &[], false);
        assert_eq!((expired.status, expired.code), (403, "AccessDenied"));
        assert_eq!(expired.message, "Request has expired");
        let region = refusal(Some(&url("ap-south-1", 60, NOW)), &[], false);
        assert_eq!(region.code, "AuthorizationQueryParametersError");
    }

    #[test]
    fn sigv2_headers_are_refused_unless_allowed_and_then_must_be_current() {
        let date = |at: i64| {
            // IMF-fixdate for `at`, built from the amz date (the weekday is not checked).
            let amz = atrest_sigv4::format_amz_date(at);
            let months = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            let month: usize = amz[4..6].parse().expect("month");
            format!(
                "Sun, {} {} {} {}:{}:{} GMT",
                &amz[6..8],
                months[month - 1],
                &amz[0..4],
                &amz[9..11],
                &amz[11..13],
                &amz[13..15]
            )
        };
        let current = date(NOW - 30);
        let signed = [
            ("authorization", "AWS AKID:c2lnbmF0dXJl"),
            ("date", current.as_str()),
        ];
        let refused = refusal(None, &signed, false);
        assert_eq!((refused.status, refused.code), (400, "InvalidRequest"));
        assert!(refused.message.contains("AWS4-HMAC-SHA256"));
        match inspect(None, &headers(&signed), &rules(true)) {
            Ok(Scheme::SigV2 {
                access_key,
                presigned: false,
                ..
            }) => assert_eq!(access_key, "AKID"),
            other => panic!("{other:?}"),
        }
        let old = date(946_684_800);
        let stale = refusal(
            None,
            &[("authorization", "AWS AKID:c2ln"), ("date", &old)],
            true,
        );
        assert_eq!((stale.status, stale.code), (403, "RequestTimeTooSkewed"));
        // x-amz-date is the date that counts when both are sent.
        let both = [
            ("authorization", "AWS AKID:c2ln"),
            ("date", current.as_str()),
            ("x-amz-date", old.as_str()),
        ];
        assert_eq!(refusal(None, &both, true).code, "RequestTimeTooSkewed");
        let undated = refusal(None, &[("authorization", "AWS AKID:c2ln")], true);
        assert_eq!(undated.code, "AccessDenied");
    }

    #[test]
    fn presigned_v2_urls_expire_within_a_week() {
        let url = |expires: i64| format!("AWSAccessKeyId=AKID&Signature=c2ln%2B&Expires={expires}");
        match inspect(Some(&url(NOW + 3600)), &HeaderMap::new(), &rules(false)) {
            Ok(Scheme::SigV2 {
                signature,
                presigned: true,
                ..
            }) => assert_eq!(signature, "c2ln+"),
            other => panic!("{other:?}"),
        }
        let expired = refusal(Some(&url(NOW - 1)), &[], false);
        assert_eq!(
            (expired.status, expired.message.as_str()),
            (403, "Request has expired")
        );
        let far = refusal(Some(&url(NOW + MAX_PRESIGNED_SECONDS + 1)), &[], false);
        assert_eq!(
            (far.status, far.code),
            (400, "AuthorizationQueryParametersError")
        );
        let partial = refusal(Some("AWSAccessKeyId=AKID&Expires=1"), &[], false);
        assert_eq!(partial.code, "AccessDenied");
    }

    /// The example of AWS's "Signing and authenticating REST requests" (Object GET).
    #[test]
    fn string_to_sign_matches_the_aws_example() {
        let headers = headers(&[("date", "Tue, 27 Mar 2007 19:36:42 +0000")]);
        let text = sigv2_string_to_sign(
            &Method::GET,
            "/photos/puppy.jpg",
            None,
            &headers,
            Some("awsexamplebucket1"),
            false,
        );
        assert_eq!(
            text,
            "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg"
        );
        let secret = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let tag = base64::engine::general_purpose::STANDARD
            .decode("qgk2+6Sv9/oM7G3qLEjTH1a1l1g=")
            .expect("base64");
        assert!(atrest_crypto::mac::hmac_sha1_verify(
            secret,
            text.as_bytes(),
            &tag
        ));
        let with_amz = sigv2_string_to_sign(
            &Method::PUT,
            "/b/k",
            Some("uploadId=u1&partNumber=2&foo=bar"),
            &self::headers(&[
                ("x-amz-meta-b", " 2 "),
                ("x-amz-date", "d"),
                ("x-amz-meta-a", "1"),
            ]),
            None,
            false,
        );
        assert_eq!(
            with_amz,
            "PUT\n\n\n\nx-amz-date:d\nx-amz-meta-a:1\nx-amz-meta-b:2\n/b/k?partNumber=2&uploadId=u1"
        );
    }

    #[test]
    fn unsigned_and_form_requests_pass_to_s3s() {
        assert_eq!(
            inspect(None, &HeaderMap::new(), &rules(false)),
            Ok(Scheme::Other)
        );
        assert_eq!(
            inspect(
                Some("list-type=2&prefix=a"),
                &HeaderMap::new(),
                &rules(false)
            ),
            Ok(Scheme::Other)
        );
    }
}
