//! Browser form uploads (POST object), read as a stream in front of s3s.
//!
//! s3s 0.14 reads a POST object's whole file into memory before anything checks who sent it
//! (an anonymous 1 GiB form took the server to 1 GiB). Here the form's fields are read first
//! (bounded: [`multipart::MAX_FIELDS_BYTES`]), its policy signature verified (SigV4 or SigV2,
//! in constant time) and its policy checked; only then is the file streamed, as the body of
//! an internal PutObject for the same object that carries the form's fields as the headers a
//! PUT would carry. That PutObject is authorized like any other (`s3:PutObject` on the
//! object's ARN, with the same condition keys), is encrypted like any other, and is cut off
//! as soon as the file passes the policy's `content-length-range` or AWS's 5 GiB limit.

pub mod multipart;
pub mod policy;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use atrest_kms::Kms;
use base64::Engine as _;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use s3s::StdError;
use s3s::stream::ByteStream;

use crate::host::BucketDomains;
use crate::signature_gate::{Refusal, now, xml_escape};
use multipart::{Event, FormError, FormParser};
use policy::PostPolicy;

/// AWS's largest single upload (PutObject and POST object).
pub const MAX_OBJECT_SIZE: u64 = 5 << 30;

/// Marks the internal PutObject of a form upload whose signature the form reader verified:
/// the access key it was signed with. Only the HTTP front creates it.
#[derive(Debug, Clone)]
pub struct FormCaller {
    pub access_key: String,
}

/// Whether a request is a form upload: a POST with a `multipart/form-data` body (s3s's test).
pub fn is_form_upload(method: &Method, headers: &HeaderMap) -> bool {
    *method == Method::POST
        && headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("multipart/form-data"))
}

/// Reads form uploads for the S3 service.
pub struct FormUploads {
    kms: Arc<Kms>,
    region: String,
    domains: BucketDomains,
}

/// A form upload turned into the PutObject that stores it.
pub struct PreparedUpload {
    pub request: Request<s3s::Body>,
    pub responder: FormResponder,
}

/// Turns the PutObject's response into the form upload's.
pub struct FormResponder {
    shape: ResponseShape,
    sizes: Arc<Mutex<Option<Refusal>>>,
}

/// How the form asked to be answered (`success_action_redirect`, `success_action_status`).
struct ResponseShape {
    bucket: String,
    key: String,
    redirect: Option<String>,
    status: Option<u16>,
}

impl FormUploads {
    pub fn new(kms: Arc<Kms>, domains: BucketDomains) -> Self {
        let region = kms.region().to_owned();
        Self {
            kms,
            region,
            domains,
        }
    }

    /// Reads the form's fields from `body`, authenticates and checks them, and returns the
    /// PutObject whose body is the rest of the file.
    pub async fn prepare<S, E>(
        &self,
        parts: &http::request::Parts,
        mut body: S,
    ) -> Result<PreparedUpload, Refusal>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Sync + Unpin + 'static,
        E: Into<StdError>,
    {
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|value| value.to_str().ok());
        let virtual_bucket = host.and_then(|host| self.domains.bucket(host));
        let Some(bucket) = self.domains.bucket_of_request(host, parts.uri.path()) else {
            return Err(refusal(
                405,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
            ));
        };
        let boundary = boundary(&parts.headers).ok_or_else(|| {
            refusal(
                400,
                "MalformedPOSTRequest",
                "The body of your POST request is not well-formed multipart/form-data.",
            )
        })?;
        let mut parser = FormParser::new(&boundary);
        let (fields, filename) = read_fields(&mut parser, &mut body).await?;
        let field = |name: &str| {
            fields
                .iter()
                .find(|(field, _)| field.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        };
        let access_key = self.authenticate(&field)?;
        let policy_text = field("policy").ok_or_else(|| {
            refusal(
                400,
                "InvalidArgument",
                "Bucket POST must contain a field named 'policy'.",
            )
        })?;
        let policy = PostPolicy::parse(policy_text)
            .map_err(|violation| refusal(violation.status, violation.code, violation.message))?;
        let (min, max) = policy
            .check(&fields, &bucket, now())
            .map_err(|violation| refusal(violation.status, violation.code, violation.message))?;
        let key = field("key").ok_or_else(|| {
            refusal(400, "InvalidArgument", "Bucket POST must contain a field named 'key'.  If it is specified, please check the order of the fields.")
        })?;
        // AWS substitutes the file's name for `${filename}` in the key.
        let key = key.replace("${filename}", filename.as_deref().unwrap_or_default());
        let shape = ResponseShape {
            bucket: bucket.clone(),
            key: key.clone(),
            redirect: field("success_action_redirect")
                .or_else(|| field("redirect"))
                .map(str::to_owned),
            status: field("success_action_status").and_then(|status| status.parse().ok()),
        };
        let sizes = Arc::new(Mutex::new(None));
        let file = FileBody {
            inner: body,
            parser,
            received: 0,
            min,
            max: max.min(MAX_OBJECT_SIZE),
            verdict: Arc::clone(&sizes),
            done: false,
        };
        let path = match virtual_bucket {
            Some(_) => format!("/{}", encode_key(&key)),
            None => format!("/{bucket}/{}", encode_key(&key)),
        };
        let mut request = Request::builder()
            .method(Method::PUT)
            .uri(path)
            .body(s3s::Body::from(Box::pin(file) as s3s::stream::DynByteStream))
            .map_err(|_| refusal(400, "InvalidArgument", "The object key is not valid."))?;
        *request.headers_mut() = put_headers(&fields, parts.headers.get(http::header::HOST));
        request.extensions_mut().insert(FormCaller { access_key });
        Ok(PreparedUpload {
            request,
            responder: FormResponder { shape, sizes },
        })
    }

    /// Verifies the policy's signature; returns the access key that made it.
    fn authenticate<'a>(
        &self,
        field: &impl Fn(&str) -> Option<&'a str>,
    ) -> Result<String, Refusal> {
        let policy = field("policy").unwrap_or_default();
        if let Some(signature) = field("x-amz-signature") {
            let missing = || {
                refusal(
                    400,
                    "InvalidArgument",
                    "Bucket POST signed with Signature Version 4 must contain the fields x-amz-algorithm, x-amz-credential, x-amz-date and policy.",
                )
            };
            if field("x-amz-algorithm") != Some("AWS4-HMAC-SHA256") {
                return Err(missing());
            }
            let credential = field("x-amz-credential").ok_or_else(missing)?;
            field("x-amz-date").ok_or_else(missing)?;
            let rules = crate::signature_gate::Rules {
                region: &self.region,
                allow_sigv2_headers: false,
                now: now(),
            };
            crate::signature_gate::check_scope(credential, &rules).map_err(|detail| {
                refusal(
                    400,
                    "InvalidArgument",
                    format!("Error parsing the X-Amz-Credential parameter; {detail}"),
                )
            })?;
            let mut scope = credential.split('/');
            let (access_key, date) = (scope.next().unwrap_or_default(), scope.next());
            let secret = self.secret(access_key)?;
            let key = atrest_sigv4::SigningKey::derive(
                secret.expose(),
                date.unwrap_or_default(),
                &self.region,
                "s3",
            );
            if atrest_sigv4::verify_string(&key, policy.as_bytes(), signature) {
                return Ok(access_key.to_owned());
            }
            return Err(signature_mismatch());
        }
        if let Some(signature) = field("signature") {
            let access_key = field("awsaccesskeyid").ok_or_else(|| {
                refusal(
                    400,
                    "InvalidArgument",
                    "Bucket POST must contain a field named 'AWSAccessKeyId'.",
                )
            })?;
            let secret = self.secret(access_key)?;
            let tag = base64::engine::general_purpose::STANDARD
                .decode(signature.as_bytes())
                .unwrap_or_default();
            if atrest_crypto::mac::hmac_sha1_verify(secret.expose(), policy.as_bytes(), &tag) {
                return Ok(access_key.to_owned());
            }
            return Err(signature_mismatch());
        }
        Err(refusal(
            403,
            "AccessDenied",
            "Anonymous access is not allowed: sign the form's policy",
        ))
    }

    fn secret(&self, access_key: &str) -> Result<atrest_crypto::SecretBytes, Refusal> {
        match self.kms.credentials(access_key) {
            Ok(Some((_, secret))) => Ok(secret),
            Ok(None) => Err(refusal(
                403,
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )),
            Err(error) => {
                tracing::error!(%error, "principal store");
                Err(refusal(
                    500,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                ))
            }
        }
    }
}

impl FormResponder {
    /// Turns the PutObject's response into the form's: its requested status or redirect on
    /// success, EntityTooLarge/EntityTooSmall when the file broke the policy's size range.
    pub fn respond(&self, response: Response<s3s::Body>, request_id: &str) -> Response<s3s::Body> {
        if !response.status().is_success() {
            let sizes = self
                .sizes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            return match sizes {
                Some(refused) => refusal_response(&refused, request_id),
                None => response,
            };
        }
        let etag = response
            .headers()
            .get(http::header::ETAG)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("\"\""));
        let shape = &self.shape;
        let mut answer = if let Some(location) = shape
            .redirect
            .as_deref()
            .and_then(|url| redirect_location(url, shape, &etag))
        {
            let mut answer = Response::new(s3s::Body::empty());
            *answer.status_mut() = StatusCode::SEE_OTHER;
            answer
                .headers_mut()
                .insert(http::header::LOCATION, location);
            answer
        } else {
            match shape.status {
                Some(200) => Response::new(s3s::Body::empty()),
                Some(201) => {
                    let etag = etag.to_str().unwrap_or_default();
                    let body = format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>/{}/{}</Location>\
                         <Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></PostResponse>",
                        xml_escape(&shape.bucket),
                        xml_escape(&encode_key(&shape.key)),
                        xml_escape(&shape.bucket),
                        xml_escape(&shape.key),
                        xml_escape(etag)
                    );
                    let mut answer = Response::new(s3s::Body::from(body));
                    *answer.status_mut() = StatusCode::CREATED;
                    answer
                }
                _ => {
                    let mut answer = Response::new(s3s::Body::empty());
                    *answer.status_mut() = StatusCode::NO_CONTENT;
                    answer
                }
            }
        };
        answer.headers_mut().insert(http::header::ETAG, etag);
        for (name, value) in response.headers() {
            if name.as_str().starts_with("x-amz-") {
                answer.headers_mut().insert(name.clone(), value.clone());
            }
        }
        answer
    }
}

/// A refusal as the S3 XML error response.
pub fn refusal_response(refused: &Refusal, request_id: &str) -> Response<s3s::Body> {
    let mut response = Response::new(s3s::Body::from(refused.body(request_id)));
    *response.status_mut() =
        StatusCode::from_u16(refused.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    response
}

/// Reads fields up to the start of the file part.
async fn read_fields<S, E>(
    parser: &mut FormParser,
    body: &mut S,
) -> Result<(Vec<(String, String)>, Option<String>), Refusal>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<StdError>,
{
    let mut fields = Vec::new();
    loop {
        match parser.next_event().map_err(form_refusal)? {
            Some(Event::Field { name, value }) => fields.push((name, value)),
            Some(Event::FileStart { filename, .. }) => return Ok((fields, filename)),
            Some(_) => return Err(form_refusal(FormError::NoFile)),
            None => match body.next().await {
                Some(Ok(bytes)) => parser.feed(&bytes),
                Some(Err(error)) => {
                    let error: StdError = error.into();
                    tracing::debug!(%error, "form upload body");
                    return Err(refusal(
                        400,
                        "IncompleteBody",
                        "The request body ended before the form's file field.",
                    ));
                }
                None => parser.end(),
            },
        }
    }
}

/// The file part, as the PutObject's body.
struct FileBody<S> {
    inner: S,
    parser: FormParser,
    received: u64,
    min: u64,
    max: u64,
    verdict: Arc<Mutex<Option<Refusal>>>,
    done: bool,
}

impl<S> FileBody<S> {
    fn fail(&mut self, refused: Refusal) -> Poll<Option<Result<Bytes, StdError>>> {
        self.done = true;
        let message = refused.message.clone();
        *self
            .verdict
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(refused);
        Poll::Ready(Some(Err(message.into())))
    }
}

impl<S, E> Stream for FileBody<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<StdError>,
{
    type Item = Result<Bytes, StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match self.parser.next_event() {
                Err(error) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(Box::new(error))));
                }
                Ok(Some(Event::FileData(data))) => {
                    self.received += data.len() as u64;
                    if self.received > self.max {
                        let max = self.max;
                        return self.fail(refusal(
                            400,
                            "EntityTooLarge",
                            format!("Your proposed upload exceeds the maximum allowed size ({max} bytes)"),
                        ));
                    }
                    return Poll::Ready(Some(Ok(Bytes::from(data))));
                }
                Ok(Some(_)) => {
                    if self.received < self.min {
                        let min = self.min;
                        return self.fail(refusal(
                            400,
                            "EntityTooSmall",
                            format!("Your proposed upload is smaller than the minimum allowed size ({min} bytes)"),
                        ));
                    }
                    self.done = true;
                    return Poll::Ready(None);
                }
                Ok(None) => match Pin::new(&mut self.inner).poll_next(cx) {
                    Poll::Ready(Some(Ok(bytes))) => self.parser.feed(&bytes),
                    Poll::Ready(Some(Err(error))) => {
                        self.done = true;
                        return Poll::Ready(Some(Err(error.into())));
                    }
                    Poll::Ready(None) => self.parser.end(),
                    Poll::Pending => return Poll::Pending,
                },
            }
        }
    }
}

impl<S, E> ByteStream for FileBody<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<StdError>,
{
}

/// The headers of a PutObject carrying the form's fields (AWS's POST object form fields).
fn put_headers(fields: &[(String, String)], host: Option<&HeaderValue>) -> HeaderMap {
    const CARRIED: &[&str] = &[
        "cache-control",
        "content-disposition",
        "content-encoding",
        "content-type",
        "expires",
        "x-amz-storage-class",
        "x-amz-website-redirect-location",
    ];
    let mut headers = HeaderMap::new();
    if let Some(host) = host {
        headers.insert(http::header::HOST, host.clone());
    }
    for (name, value) in fields {
        let name = name.to_ascii_lowercase();
        let carried = CARRIED.contains(&name.as_str())
            || name.starts_with("x-amz-meta-")
            || name.starts_with("x-amz-server-side-encryption")
            || name.starts_with("x-amz-checksum-");
        if !carried {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

/// `success_action_redirect` with the bucket, key and ETag appended, as AWS does.
fn redirect_location(url: &str, shape: &ResponseShape, etag: &HeaderValue) -> Option<HeaderValue> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return None;
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    let location = format!(
        "{url}{separator}bucket={}&key={}&etag={}",
        query_encode(&shape.bucket),
        query_encode(&shape.key),
        query_encode(etag.to_str().unwrap_or_default())
    );
    HeaderValue::from_str(&location).ok()
}

fn boundary(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    value.split(';').skip(1).find_map(|param| {
        let (name, value) = param.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|value| value.strip_suffix('"'))
            .unwrap_or(value);
        (!value.is_empty() && value.len() <= 70).then(|| value.to_owned())
    })
}

fn form_refusal(error: FormError) -> Refusal {
    match error {
        FormError::NoFile => refusal(
            400,
            "InvalidArgument",
            "POST requires exactly one file upload per request.",
        ),
        other => refusal(400, "MalformedPOSTRequest", other.to_string()),
    }
}

fn signature_mismatch() -> Refusal {
    refusal(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
    )
}

fn refusal(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
    }
}

/// Percent-encodes a key for a request path, keeping `/` (s3s decodes the path).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn query_encode(text: &str) -> String {
    encode_key(text).replace('/', "%2F")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_uploads_are_recognised_as_s3s_would() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            "Multipart/Form-Data; boundary=\"abc\""
                .parse()
                .expect("value"),
        );
        assert!(is_form_upload(&Method::POST, &headers));
        assert!(!is_form_upload(&Method::PUT, &headers));
        assert_eq!(boundary(&headers).as_deref(), Some("abc"));
        headers.insert(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().expect("value"),
        );
        assert!(!is_form_upload(&Method::POST, &headers));
    }

    #[test]
    fn fields_become_put_headers() {
        let fields: Vec<(String, String)> = [
            ("Content-Type", "image/png"),
            ("x-amz-meta-Owner", "ann"),
            ("X-Amz-Server-Side-Encryption", "aws:kms"),
            ("x-amz-server-side-encryption-aws-kms-key-id", "alias/k"),
            ("acl", "public-read"),
            ("policy", "eyJ9"),
            ("key", "a"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
        let headers = put_headers(&fields, None);
        assert_eq!(headers.len(), 4);
        assert_eq!(headers["content-type"], "image/png");
        assert_eq!(headers["x-amz-meta-owner"], "ann");
        assert_eq!(headers["x-amz-server-side-encryption"], "aws:kms");
        assert_eq!(encode_key("a b/é?.txt"), "a%20b/%C3%A9%3F.txt");
    }
}
