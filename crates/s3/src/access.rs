//! Who is calling, and may they: SigV4 secrets come from the KMS's principal store (s3s checks
//! the signature, including presigned URLs and aws-chunked bodies), and each operation is
//! authorized as the IAM action AWS names for it, against the caller's identity policies.

use std::net::IpAddr;
use std::sync::Arc;

use atrest_kms::{Caller, Kms, KmsError, RequestContext};
use s3s::S3Request;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::{CopySource, DeleteObjectsInput, PutObjectInput};
use s3s::path::S3Path;
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};

use atrest_policy::{Context, Policy};

use crate::audit::AuditSlot;
use crate::bucket_policy;
use crate::form::FormCaller;
use crate::meta::{ObjectIndex, UploadRecord};

/// What the HTTP front knows about the connection; it puts this in the request's extensions.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub secure: bool,
}

/// Marks a POST object request, whose authorization waits for its parsed fields.
#[derive(Debug, Clone, Copy)]
struct FormUpload;

/// The authenticated caller, put in the extensions by [`Access::check`].
#[derive(Debug, Clone)]
struct Authenticated(Caller);

/// The KMS request context of an authorized S3 request.
pub fn client_context(extensions: &http::Extensions) -> S3Result<RequestContext> {
    let caller = extensions
        .get::<Authenticated>()
        .ok_or_else(|| s3_error!(AccessDenied, "Signature is required"))?;
    let client = extensions.get::<ClientInfo>();
    let ctx = RequestContext::new(
        caller.0.clone(),
        client.map(|client| client.ip),
        client.is_some_and(|client| client.secure),
    );
    Ok(match extensions.get::<AuditSlot>() {
        Some(slot) => ctx.recording_into(slot.resources()),
        None => ctx,
    })
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

/// Authorizes each operation against the caller's IAM policies and the bucket's policy, as
/// S3 does for a caller in the bucket's account: either may allow, a Deny in either refuses.
/// The root needs no Allow, and may always read, replace or delete a bucket policy, even one
/// that denies it everything (AWS's way out of a lockout).
pub struct Access {
    kms: Arc<Kms>,
    index: Arc<dyn ObjectIndex>,
}

impl Access {
    pub fn new(kms: Arc<Kms>, index: Arc<dyn ObjectIndex>) -> Self {
        Self { kms, index }
    }

    /// The policy of `bucket`, if it exists and has one.
    fn bucket_policy(&self, bucket: &str) -> S3Result<Option<Policy>> {
        let Some(record) = self.index.bucket(bucket).map_err(store_internal)? else {
            return Ok(None);
        };
        let Some(text) = record.policy else {
            return Ok(None);
        };
        // Validated when stored; a document that no longer parses denies rather than opens.
        bucket_policy::parse(bucket, &text)
            .map(|policy| Some(policy.bind_principals(&record.principal_ids)))
            .map_err(|error| {
                tracing::error!(bucket, ?error, "stored bucket policy does not parse");
                s3_error!(AccessDenied, "The bucket policy cannot be evaluated")
            })
    }

    /// The multipart upload a part, copy-part or completion request belongs to.
    fn upload_of(&self, operation: &str, query: Option<&str>) -> S3Result<Option<UploadRecord>> {
        if !matches!(
            operation,
            "UploadPart" | "UploadPartCopy" | "CompleteMultipartUpload"
        ) {
            return Ok(None);
        }
        match bucket_policy::upload_id(query) {
            Some(id) => self.index.upload(&id).map_err(store_internal),
            None => Ok(None),
        }
    }
}

/// [`Access`] shared between s3s (every operation) and the encryption-configuration route.
pub struct SharedAccess(pub Arc<Access>);

#[async_trait::async_trait]
impl S3Access for SharedAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        // A form upload reaches s3s as an unsigned PutObject: the form reader in front of it
        // verified the policy's signature and names the access key that made it.
        let form_caller = cx.extensions_mut().get::<FormCaller>().cloned();
        let access_key = cx
            .credentials()
            .map(|credentials| credentials.access_key.clone())
            .or_else(|| form_caller.as_ref().map(|form| form.access_key.clone()));
        let client = cx.extensions_mut().get::<ClientInfo>().cloned();
        let slot = cx.extensions_mut().get::<AuditSlot>().cloned();
        let operation = cx.s3_op().name();
        let target = match cx.s3_path() {
            S3Path::Root => None,
            S3Path::Bucket { bucket } => Some((bucket.as_ref(), None)),
            S3Path::Object { bucket, key } => Some((bucket.as_ref(), Some(key.as_ref()))),
        };
        let request = Request {
            operation,
            headers: cx.headers(),
            query: cx.uri().query(),
        };
        let checked = self.0.check_request(
            access_key.as_deref(),
            client,
            slot.clone(),
            &request,
            target,
        );
        if let (Some(_), Some(slot)) = (&form_caller, &slot) {
            slot.record(|call| call.operation = Some("PostObject".to_owned()));
        }
        let caller = checked?;
        let form_upload = operation == "PostObject";
        cx.extensions_mut().insert(Authenticated(caller));
        if form_upload {
            cx.extensions_mut().insert(FormUpload);
        }
        Ok(())
    }

    /// s3s calls this for PutObject and for POST object (with the form parsed into a
    /// PutObject input). A form upload is authorized here, as `s3:PutObject` on the object's
    /// ARN with the condition keys a PutObject of the same fields would carry.
    async fn put_object(&self, req: &mut S3Request<PutObjectInput>) -> S3Result<()> {
        if req.extensions.get::<FormUpload>().is_none() {
            return Ok(());
        }
        let ctx = client_context(&req.extensions)?;
        let headers = form_upload_headers(&req.input);
        let request = Request {
            operation: "PutObject",
            headers: &headers,
            query: req.uri.query(),
        };
        let target = Some((req.input.bucket.as_str(), Some(req.input.key.as_str())));
        self.0.authorize(&ctx, &request, "s3:PutObject", target)
    }

    /// DeleteObjects is authorized key by key, as `s3:DeleteObject` on each object's ARN with
    /// the batch request's condition keys: a key the caller may not delete is taken out of the
    /// batch and answered in `Errors` as `AccessDenied` (what AWS does), the others go ahead.
    async fn delete_objects(&self, req: &mut S3Request<DeleteObjectsInput>) -> S3Result<()> {
        let ctx = client_context(&req.extensions)?;
        let bucket = req.input.bucket.clone();
        let request = Request {
            operation: "DeleteObject",
            headers: &req.headers,
            query: req.uri.query(),
        };
        let mut refused = Vec::new();
        let mut allowed = Vec::new();
        for object in std::mem::take(&mut req.input.delete.objects) {
            let target = Some((bucket.as_str(), Some(object.key.as_str())));
            match self.0.authorize(&ctx, &request, "s3:DeleteObject", target) {
                Ok(()) => allowed.push(object),
                Err(error) if *error.code() == S3ErrorCode::AccessDenied => {
                    refused.push(RefusedDelete {
                        key: object.key,
                        version_id: object.version_id,
                        message: error.message().unwrap_or("Access Denied").to_owned(),
                    });
                }
                Err(error) => return Err(error),
            }
        }
        req.input.delete.objects = allowed;
        req.extensions.insert(RefusedDeletes(refused));
        Ok(())
    }
}

/// What a form upload's fields say, as the headers a PutObject would carry them in: the
/// condition keys of the two calls are then the same by construction.
fn form_upload_headers(input: &PutObjectInput) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    let fields = [
        (
            "x-amz-server-side-encryption",
            input
                .server_side_encryption
                .as_ref()
                .map(|sse| sse.as_str()),
        ),
        (
            "x-amz-server-side-encryption-aws-kms-key-id",
            input.ssekms_key_id.as_deref(),
        ),
        (
            "x-amz-server-side-encryption-customer-algorithm",
            input.sse_customer_algorithm.as_deref(),
        ),
    ];
    for (name, value) in fields {
        if let Some(value) = value.and_then(|value| http::HeaderValue::from_str(value).ok()) {
            headers.insert(name, value);
        }
    }
    headers
}

/// The keys of a DeleteObjects batch that authorization took out, for the service to list in
/// the response's `Errors`.
#[derive(Debug, Clone, Default)]
pub struct RefusedDeletes(pub Vec<RefusedDelete>);

#[derive(Debug, Clone)]
pub struct RefusedDelete {
    pub key: String,
    pub version_id: Option<String>,
    pub message: String,
}

impl Access {
    /// Authenticates and authorizes a request s3s routed to a custom route (it has verified the
    /// signature already), for `operation` on `bucket`.
    pub fn check_route(
        &self,
        req: &mut s3s::S3Request<s3s::Body>,
        operation: &str,
        bucket: &str,
    ) -> S3Result<()> {
        let access_key = req.credentials.as_ref().map(|c| c.access_key.clone());
        let client = req.extensions.get::<ClientInfo>().cloned();
        let slot = req.extensions.get::<AuditSlot>().cloned();
        let request = Request {
            operation,
            headers: &req.headers,
            query: req.uri.query(),
        };
        let caller = self.check_request(
            access_key.as_deref(),
            client,
            slot,
            &request,
            Some((bucket, None)),
        )?;
        req.extensions.insert(Authenticated(caller));
        Ok(())
    }

    /// Finds the caller of `access_key`, records the call in the audit slot, and authorizes the
    /// operation's IAM action on `target` (and, for copies, s3:GetObject on the source).
    fn check_request(
        &self,
        access_key: Option<&str>,
        client: Option<ClientInfo>,
        slot: Option<AuditSlot>,
        request: &Request<'_>,
        target: Option<(&str, Option<&str>)>,
    ) -> S3Result<Caller> {
        let access_key =
            access_key.ok_or_else(|| s3_error!(AccessDenied, "Anonymous access is not allowed"))?;
        let (caller, _) = self
            .kms
            .credentials(access_key)
            .map_err(kms_internal)?
            .ok_or_else(|| s3_error!(InvalidAccessKeyId))?;
        let operation = request.operation;
        let ctx = RequestContext::new(
            caller.clone(),
            client.as_ref().map(|client| client.ip),
            client.is_some_and(|client| client.secure),
        );
        if let Some(slot) = &slot {
            slot.record(|call| {
                call.operation = Some(operation.to_owned());
                call.caller_arn = Some(caller.arn.to_string());
                call.bucket = target.map(|(bucket, _)| bucket.to_owned());
                call.key = target.and_then(|(_, key)| key.map(str::to_owned));
                if let Some((bucket, key)) = target {
                    let arn = match key {
                        Some(key) => format!("arn:aws:s3:::{bucket}/{key}"),
                        None => format!("arn:aws:s3:::{bucket}"),
                    };
                    call.resources
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(arn);
                }
            });
        }
        // A batch delete and a form upload name their objects in the body: each is authorized
        // on its own ARN once the body is parsed (SharedAccess::delete_objects / put_object),
        // never on the bucket in their place.
        if !matches!(operation, "DeleteObjects" | "PostObject") {
            self.authorize(&ctx, request, &iam_action(operation), target)?;
        }
        // A copy reads its source: that needs s3:GetObject there, under the source's policy.
        if matches!(operation, "CopyObject" | "UploadPartCopy") {
            let header = request
                .headers
                .get("x-amz-copy-source")
                .and_then(|value| value.to_str().ok())
                .ok_or_else(|| s3_error!(InvalidRequest, "x-amz-copy-source is required"))?;
            let source = CopySource::parse(header)
                .map_err(|_| s3_error!(InvalidArgument, "Invalid copy source object key"))?;
            if let CopySource::Bucket { bucket, key, .. } = source {
                self.authorize(&ctx, request, "s3:GetObject", Some((&bucket, Some(&key))))?;
            }
        }
        Ok(caller)
    }
}

/// What the authorization of one request looks at besides its target.
struct Request<'a> {
    operation: &'a str,
    headers: &'a http::HeaderMap,
    query: Option<&'a str>,
}

impl Access {
    /// Authorizes `action` on a bucket or object (`None`: the account, e.g. ListBuckets).
    fn authorize(
        &self,
        ctx: &RequestContext,
        request: &Request<'_>,
        action: &str,
        target: Option<(&str, Option<&str>)>,
    ) -> S3Result<()> {
        let resource = match target {
            None => "*".to_owned(),
            Some((bucket, None)) => format!("arn:aws:s3:::{bucket}"),
            Some((bucket, Some(key))) => format!("arn:aws:s3:::{bucket}/{key}"),
        };
        let policy_exempt = ctx.caller.is_root()
            && matches!(
                request.operation,
                "GetBucketPolicy" | "PutBucketPolicy" | "DeleteBucketPolicy"
            );
        let policy = match target {
            Some((bucket, _)) if !policy_exempt => self.bucket_policy(bucket)?,
            _ => None,
        };
        // The S3 condition keys (s3:prefix, s3:x-amz-server-side-encryption, ...) matter to a
        // bucket policy and to the caller's IAM policies alike; only the root has neither
        // when the bucket has no policy.
        let facts = if policy.is_some() || !ctx.caller.is_root() {
            let upload = self.upload_of(request.operation, request.query)?;
            bucket_policy::request_facts(request.headers, request.query, upload.as_ref())
        } else {
            Context::new()
        };
        self.kms
            .authorize_with_resource_policy(ctx, action, &resource, policy.as_ref(), facts)
            .map_err(|error| match error {
                KmsError::AccessDenied(message) => {
                    S3Error::with_message(S3ErrorCode::AccessDenied, message)
                }
                other => kms_internal(other),
            })
    }
}

fn store_internal(error: crate::meta::StoreError) -> S3Error {
    tracing::error!(%error, "object index");
    s3_error!(
        InternalError,
        "We encountered an internal error. Please try again."
    )
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
        // A browser form upload (POST object) is a PutObject to IAM.
        "PostObject" => "PutObject",
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
