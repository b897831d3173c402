//! PutBucketEncryption and GetBucketEncryption, including `BlockedEncryptionTypes` (SSE-C may be
//! blocked per bucket: every write that asks for SSE-C is then refused with 403 AccessDenied,
//! while existing SSE-C objects stay readable).
//!
//! s3s 0.14's model predates `BlockedEncryptionTypes` and answers MalformedXML to a rule that
//! has it, so these two operations are served by a custom s3s route. s3s still verifies the
//! signature and the payload hash (the body arrives wrapped in its checking stream); the route
//! authenticates and authorizes through [`Access`] exactly as every other operation, and the
//! XML is read and written with s3s's own XML reader and writer.

use std::sync::Arc;

use http::Extensions;
use http::{HeaderMap, Method, StatusCode, Uri};
use s3s::dto::{ServerSideEncryption, ServerSideEncryptionByDefault};
use s3s::route::S3Route;
use s3s::xml::{DeError, Deserializer, Serializer};
use s3s::{Body, S3Request, S3Response, S3Result, s3_error};

use crate::access::Access;
use crate::host::BucketDomains;
use crate::meta::{BucketEncryption, ObjectIndex};
use crate::sse::{AES256, AWS_KMS};

/// The only encryption type S3 can block today.
pub const SSE_C: &str = "SSE-C";
const NONE: &str = "NONE";
/// Far above any real configuration; the body is read into memory.
const MAX_BODY: usize = 64 * 1024;

/// The bucket this route's request addresses (found by `is_match`).
#[derive(Debug, Clone)]
struct RouteBucket(String);

/// Parses a `ServerSideEncryptionConfiguration` document into the bucket's setting, with AWS's
/// checks: exactly one rule, a default algorithm of AES256 or aws:kms (a key ID only with
/// aws:kms), encryption types among `SSE-C` and `NONE`.
pub fn parse(body: &[u8]) -> S3Result<BucketEncryption> {
    let mut defaults: Option<ServerSideEncryptionByDefault> = None;
    let mut bucket_key_enabled: Option<bool> = None;
    let mut blocked: Option<Vec<String>> = None;
    let mut rules = 0;
    let mut de = Deserializer::new(body);
    let parsed = de
        .named_element("ServerSideEncryptionConfiguration", |de| {
            de.for_each_element(|de, name| match name {
                b"Rule" => {
                    rules += 1;
                    de.for_each_element(|de, name| match name {
                        b"ApplyServerSideEncryptionByDefault" if defaults.is_none() => {
                            defaults = Some(de.content()?);
                            Ok(())
                        }
                        b"BucketKeyEnabled" if bucket_key_enabled.is_none() => {
                            bucket_key_enabled = Some(de.content()?);
                            Ok(())
                        }
                        b"BlockedEncryptionTypes" if blocked.is_none() => {
                            let mut types = Vec::new();
                            de.for_each_element(|de, name| match name {
                                b"EncryptionType" => {
                                    types.push(de.content::<String>()?);
                                    Ok(())
                                }
                                _ => Err(DeError::UnexpectedTagName),
                            })?;
                            blocked = Some(types);
                            Ok(())
                        }
                        _ => Err(DeError::UnexpectedTagName),
                    })
                }
                _ => Err(DeError::UnexpectedTagName),
            })
        })
        .and_then(|()| de.expect_eof());
    if let Err(error) = parsed {
        return Err(s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema: {}",
            error
        ));
    }
    if rules != 1 {
        return Err(s3_error!(
            MalformedXML,
            "exactly one encryption rule is required"
        ));
    }
    let Some(defaults) = defaults else {
        return Err(s3_error!(
            MalformedXML,
            "ApplyServerSideEncryptionByDefault is required"
        ));
    };
    let algorithm = defaults.sse_algorithm.as_str();
    match algorithm {
        AES256 if defaults.kms_master_key_id.is_some() => {
            return Err(s3_error!(
                InvalidArgument,
                "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms"
            ));
        }
        AES256 | AWS_KMS => {}
        other => {
            return Err(s3_error!(
                InvalidArgument,
                "The encryption algorithm {} is not supported",
                other
            ));
        }
    }
    let mut blocked_encryption_types = Vec::new();
    for kind in blocked.unwrap_or_default() {
        match kind.as_str() {
            SSE_C if !blocked_encryption_types.contains(&kind) => {
                blocked_encryption_types.push(kind)
            }
            SSE_C | NONE => {}
            other => {
                return Err(s3_error!(
                    InvalidArgument,
                    "The encryption type {} is not supported",
                    other
                ));
            }
        }
    }
    Ok(BucketEncryption {
        algorithm: algorithm.to_owned(),
        kms_key_id: defaults.kms_master_key_id,
        bucket_key_enabled: bucket_key_enabled.unwrap_or(false),
        blocked_encryption_types,
    })
}

/// The GetBucketEncryption document for a bucket's setting.
pub fn to_xml(encryption: &BucketEncryption) -> S3Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut ser = Serializer::new(&mut out);
    let defaults = ServerSideEncryptionByDefault {
        kms_master_key_id: encryption.kms_key_id.clone(),
        sse_algorithm: ServerSideEncryption::from(encryption.algorithm.clone()),
    };
    let written = ser.decl().and_then(|()| {
        ser.element_with_ns(
            "ServerSideEncryptionConfiguration",
            "http://s3.amazonaws.com/doc/2006-03-01/",
            |ser| {
                ser.element("Rule", |ser| {
                    ser.content("ApplyServerSideEncryptionByDefault", &defaults)?;
                    ser.content("BucketKeyEnabled", &encryption.bucket_key_enabled)?;
                    let types: Vec<&str> = if encryption.blocked_encryption_types.is_empty() {
                        vec![NONE]
                    } else {
                        encryption
                            .blocked_encryption_types
                            .iter()
                            .map(String::as_str)
                            .collect()
                    };
                    ser.element("BlockedEncryptionTypes", |ser| {
                        types
                            .iter()
                            .try_for_each(|kind| ser.content("EncryptionType", *kind))
                    })
                })
            },
        )
    });
    written.map_err(|error| {
        s3_error!(
            InternalError,
            "serializing the encryption configuration: {:?}",
            error
        )
    })?;
    Ok(out)
}

/// Serves `PUT /BUCKET?encryption` and `GET /BUCKET?encryption` (path or virtual-host style).
pub struct EncryptionConfigRoute {
    domains: BucketDomains,
    access: Arc<Access>,
    index: Arc<dyn ObjectIndex>,
}

impl EncryptionConfigRoute {
    pub fn new(domains: BucketDomains, access: Arc<Access>, index: Arc<dyn ObjectIndex>) -> Self {
        Self {
            domains,
            access,
            index,
        }
    }

    fn bucket_record(&self, name: &str) -> S3Result<crate::meta::BucketRecord> {
        self.index
            .bucket(name)
            .map_err(|error| s3_error!(InternalError, "object index: {}", error))?
            .ok_or_else(|| s3_error!(NoSuchBucket, "The specified bucket does not exist"))
    }
}

fn operation(method: &Method) -> &'static str {
    if method == Method::PUT {
        "PutBucketEncryption"
    } else {
        "GetBucketEncryption"
    }
}

#[async_trait::async_trait]
impl S3Route for EncryptionConfigRoute {
    fn is_match(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        extensions: &mut Extensions,
    ) -> bool {
        if method != Method::PUT && method != Method::GET {
            return false;
        }
        let names_encryption = uri.query().is_some_and(|query| {
            query
                .split('&')
                .any(|pair| pair.split('=').next() == Some("encryption"))
        });
        if !names_encryption {
            return false;
        }
        let host = headers
            .get(http::header::HOST)
            .and_then(|value| value.to_str().ok());
        match self.domains.bucket_of_request(host, uri.path()) {
            Some(bucket) => {
                extensions.insert(RouteBucket(bucket));
                true
            }
            None => false,
        }
    }

    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        let bucket = req
            .extensions
            .get::<RouteBucket>()
            .cloned()
            .ok_or_else(|| s3_error!(InternalError, "route without a bucket"))?;
        let operation = operation(&req.method);
        self.access.check_route(req, operation, &bucket.0)
    }

    async fn call(&self, mut req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let bucket = req
            .extensions
            .get::<RouteBucket>()
            .cloned()
            .ok_or_else(|| s3_error!(InternalError, "route without a bucket"))?;
        let mut record = self.bucket_record(&bucket.0)?;
        if req.method == Method::GET {
            // Every bucket has default encryption since 2023: SSE-S3 unless configured otherwise.
            let encryption = record.encryption.unwrap_or(BucketEncryption {
                algorithm: AES256.into(),
                kms_key_id: None,
                bucket_key_enabled: false,
                blocked_encryption_types: Vec::new(),
            });
            let mut response = S3Response::new(Body::from(to_xml(&encryption)?));
            response.headers.insert(
                http::header::CONTENT_TYPE,
                http::header::HeaderValue::from_static("application/xml"),
            );
            return Ok(response);
        }
        let body = req
            .input
            .store_all_limited(MAX_BODY)
            .await
            .map_err(|error| {
                s3_error!(
                    IncompleteBody,
                    "reading the encryption configuration: {}",
                    error
                )
            })?;
        record.encryption = Some(parse(&body)?);
        let index = Arc::clone(&self.index);
        tokio::task::block_in_place(|| index.replace_bucket(&record))
            .map_err(|error| s3_error!(InternalError, "object index: {}", error))?;
        let mut response = S3Response::new(Body::empty());
        response.status = Some(StatusCode::OK);
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_types_round_trip() {
        let body = b"<ServerSideEncryptionConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule>\
            <ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID>alias/a&amp;b</KMSMasterKeyID></ApplyServerSideEncryptionByDefault>\
            <BucketKeyEnabled>true</BucketKeyEnabled><BlockedEncryptionTypes><EncryptionType>SSE-C</EncryptionType></BlockedEncryptionTypes>\
            </Rule></ServerSideEncryptionConfiguration>";
        let parsed = parse(body).unwrap();
        assert_eq!(parsed.blocked_encryption_types, vec![SSE_C.to_owned()]);
        assert_eq!(parsed.kms_key_id.as_deref(), Some("alias/a&b"));
        assert!(parsed.bucket_key_enabled);
        assert_eq!(parse(&to_xml(&parsed).unwrap()).unwrap(), parsed);
    }

    #[test]
    fn bad_documents_are_refused() {
        let rule = |inner: &str| {
            format!(
                "<ServerSideEncryptionConfiguration><Rule>{inner}</Rule></ServerSideEncryptionConfiguration>"
            )
        };
        let aes = "<ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault>";
        assert!(parse(rule(aes).as_bytes()).is_ok());
        for bad in [
            rule(""),
            rule(&format!("{aes}<Unknown/>")),
            rule(&format!(
                "{aes}<BlockedEncryptionTypes><EncryptionType>SSE-KMS</EncryptionType></BlockedEncryptionTypes>"
            )),
            rule(
                "<ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm><KMSMasterKeyID>k</KMSMasterKeyID></ApplyServerSideEncryptionByDefault>",
            ),
            format!(
                "<ServerSideEncryptionConfiguration><Rule>{aes}</Rule><Rule>{aes}</Rule></ServerSideEncryptionConfiguration>"
            ),
            "<ServerSideEncryptionConfiguration><Rule>".to_owned(),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
