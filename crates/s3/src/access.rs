//! Who is calling, and may they: SigV4 secrets come from the KMS's principal store (s3s checks
//! the signature, including presigned URLs and aws-chunked bodies), and each operation is
//! authorized as the IAM action AWS names for it, against the caller's identity policies.

use std::net::IpAddr;
use std::sync::Arc;

use atrest_kms::{Caller, Kms, KmsError, RequestContext};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};

/// What the HTTP front knows about the connection; it puts this in the request's extensions.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub secure: bool,
}

/// The authenticated caller, put in the extensions by [`Access::check`].
#[derive(Debug, Clone)]
struct Authenticated(Caller);

/// The KMS request context of an authorized S3 request.
pub fn client_context(extensions: &http::Extensions) -> S3Result<RequestContext> {
    let caller = extensions
        .get::<Authenticated>()
        .ok_or_else(|| s3_error!(AccessDenied, "Signature is required"))?;
    let client = extensions.get::<ClientInfo>();
    Ok(RequestContext::new(
        caller.0.clone(),
        client.map(|client| client.ip.to_string()),
        client.is_some_and(|client| client.secure),
    ))
}

/// Looks up SigV4 secrets.
pub struct Auth {
    kms: Arc<Kms>,
}

impl Auth {
    pub fn new(kms: Arc<Kms>) -> Self {
        Self { kms }
    }
}

#[async_trait::async_trait]
impl S3Auth for Auth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let found = self.kms.credentials(access_key).map_err(kms_internal)?;
        match found {
            Some((_, secret)) => {
                let text = std::str::from_utf8(secret.expose())
                    .map_err(|_| s3_error!(InternalError, "stored secret is not UTF-8"))?;
                Ok(SecretKey::from(text))
            }
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

/// Authorizes each operation against the caller's IAM policies (the account root may do
/// everything, as in AWS).
pub struct Access {
    kms: Arc<Kms>,
}

impl Access {
    pub fn new(kms: Arc<Kms>) -> Self {
        Self { kms }
    }
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let credentials = cx
            .credentials()
            .ok_or_else(|| s3_error!(AccessDenied, "Anonymous access is not allowed"))?;
        let (caller, _) = self
            .kms
            .credentials(&credentials.access_key)
            .map_err(kms_internal)?
            .ok_or_else(|| s3_error!(InvalidAccessKeyId))?;
        let action = iam_action(cx.s3_op().name());
        let resource = match cx.s3_path() {
            S3Path::Root => "*".to_owned(),
            S3Path::Bucket { bucket } => format!("arn:aws:s3:::{bucket}"),
            S3Path::Object { bucket, key } => format!("arn:aws:s3:::{bucket}/{key}"),
        };
        let client = cx.extensions_mut().get::<ClientInfo>().cloned();
        let ctx = RequestContext::new(
            caller.clone(),
            client.as_ref().map(|client| client.ip.to_string()),
            client.is_some_and(|client| client.secure),
        );
        self.kms
            .authorize_identity(&ctx, &action, &resource)
            .map_err(|error| match error {
                KmsError::AccessDenied(message) => {
                    S3Error::with_message(S3ErrorCode::AccessDenied, message)
                }
                other => kms_internal(other),
            })?;
        cx.extensions_mut().insert(Authenticated(caller));
        Ok(())
    }
}

fn kms_internal(error: KmsError) -> S3Error {
    tracing::error!(%error, "principal store");
    s3_error!(
        InternalError,
        "We encountered an internal error. Please try again."
    )
}

/// The IAM action AWS checks for each S3 operation (Service Authorization Reference, S3).
fn iam_action(operation: &str) -> String {
    let action = match operation {
        "HeadObject" => "GetObject",
        "HeadBucket" | "ListObjects" | "ListObjectsV2" => "ListBucket",
        "ListObjectVersions" => "ListBucketVersions",
        "CreateMultipartUpload"
        | "UploadPart"
        | "CompleteMultipartUpload"
        | "CopyObject"
        | "UploadPartCopy" => "PutObject",
        "ListParts" => "ListMultipartUploadParts",
        "ListMultipartUploads" => "ListBucketMultipartUploads",
        "DeleteObjects" => "DeleteObject",
        "ListBuckets" => "ListAllMyBuckets",
        "PutBucketEncryption" | "DeleteBucketEncryption" => "PutEncryptionConfiguration",
        "GetBucketEncryption" => "GetEncryptionConfiguration",
        "DeleteBucketPolicy" => "DeleteBucketPolicy",
        "GetObjectAttributes" => "GetObjectAttributes",
        other => other,
    };
    format!("s3:{action}")
}
