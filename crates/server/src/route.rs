//! Deciding which API a request belongs to, before anything else looks at it.

use hyper::{Method, Request};

/// Bodies larger than this are refused before they are read (AWS KMS requests are small:
/// the largest member, a ciphertext blob, is 6144 bytes before base64).
pub const KMS_BODY_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    /// `POST /` with `X-Amz-Target: TrentService.<operation>`.
    Kms {
        operation: String,
    },
    /// An AWS Query-protocol request (IAM, STS): `Action=` parameters, no target header.
    Query,
    /// A JSON-protocol target for some other service.
    UnknownTarget {
        target: String,
    },
    /// Anything else: S3 requests, which this build does not serve yet.
    S3,
    /// `/_atrest/...` paths that do not exist.
    NotFound,
}

pub fn endpoint<B>(request: &Request<B>) -> Endpoint {
    let path = request.uri().path();
    if let Some(rest) = path.strip_prefix("/_atrest/") {
        return match (request.method(), rest) {
            (&Method::GET | &Method::HEAD, "health") => Endpoint::Health,
            _ => Endpoint::NotFound,
        };
    }
    if let Some(target) = request.headers().get("x-amz-target")
        && request.method() == Method::POST
        && path == "/"
    {
        let target = String::from_utf8_lossy(target.as_bytes());
        return match target.strip_prefix("TrentService.") {
            Some(operation) => Endpoint::Kms {
                operation: operation.to_owned(),
            },
            None => Endpoint::UnknownTarget {
                target: target.into_owned(),
            },
        };
    }
    let form = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|value| {
            value
                .as_bytes()
                .starts_with(b"application/x-www-form-urlencoded")
        });
    let action_in_query = request
        .uri()
        .query()
        .is_some_and(|query| query.split('&').any(|p| p.starts_with("Action=")));
    let query_method = request.method() == Method::POST || request.method() == Method::GET;
    if path == "/" && query_method && (form || action_in_query) {
        return Endpoint::Query;
    }
    Endpoint::S3
}
