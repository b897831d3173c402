//! Bucket policies: validating a document on PutBucketPolicy, and the S3 condition keys a
//! request supplies when it is evaluated (S3 User Guide, "Policy condition keys for Amazon
//! S3"; "Requiring server-side encryption" is the pattern they exist for).

use atrest_policy::{Context, Policy};
use http::HeaderMap;
use s3s::{S3Result, s3_error};

use crate::meta::{KeyProtection, UploadRecord};
use crate::sse::{AES256, AWS_KMS};

/// Bucket policies are limited to 20 KB (S3 User Guide, "Bucket policy size").
const MAX_BUCKET_POLICY_BYTES: usize = 20 * 1024;

const SSE: &str = "s3:x-amz-server-side-encryption";
const SSE_KMS_KEY: &str = "s3:x-amz-server-side-encryption-aws-kms-key-id";
const SSE_CUSTOMER_ALGORITHM: &str = "s3:x-amz-server-side-encryption-customer-algorithm";

/// Parses `text` as a policy for `bucket`: principals are required and every Resource must
/// name the bucket or objects in it, as S3 requires. Errors are AWS's `MalformedPolicy`.
pub fn parse(bucket: &str, text: &str) -> S3Result<Policy> {
    if text.len() > MAX_BUCKET_POLICY_BYTES {
        return Err(s3_error!(
            MalformedPolicy,
            "Policies must be no more than 20 KB"
        ));
    }
    let policy = Policy::parse_resource_policy(text)
        .map_err(|error| s3_error!(MalformedPolicy, "{error}"))?;
    let own = format!("arn:aws:s3:::{bucket}");
    for resource in policy.resources() {
        let in_bucket = resource == own
            || resource
                .strip_prefix(own.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
        if !in_bucket {
            return Err(s3_error!(
                MalformedPolicy,
                "Policy has invalid resource: {resource}"
            ));
        }
    }
    for action in policy.actions() {
        if !(action == "*" || action.starts_with("s3:")) {
            return Err(s3_error!(
                MalformedPolicy,
                "Policy has invalid action: {action}"
            ));
        }
    }
    Ok(policy)
}

/// The S3 condition keys of one request. Encryption keys come from the request's headers; a
/// part upload or completion carries none, so its keys are the ones its upload was created
/// with (the parts are encrypted that way), and a policy that requires SSE-KMS on PutObject
/// does not break the multipart uploads that honour it.
pub fn request_facts(
    headers: &HeaderMap,
    query: Option<&str>,
    upload: Option<&UploadRecord>,
) -> Context {
    let mut facts = Context::new();
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(value) = header("x-amz-server-side-encryption") {
        facts.set(SSE, value);
    }
    if let Some(value) = header("x-amz-server-side-encryption-aws-kms-key-id") {
        facts.set(SSE_KMS_KEY, value);
    }
    if let Some(value) = header("x-amz-server-side-encryption-customer-algorithm") {
        facts.set(SSE_CUSTOMER_ALGORITHM, value);
    }
    if let Some(upload) = upload {
        match &upload.data_key {
            KeyProtection::S3 { .. } => {
                facts.set(SSE, AES256);
            }
            KeyProtection::Kms { key_arn, .. } => {
                facts.set(SSE, AWS_KMS).set(SSE_KMS_KEY, key_arn.clone());
            }
            KeyProtection::Customer { .. } => {
                facts.set(SSE_CUSTOMER_ALGORITHM, AES256);
            }
        }
    }
    for (name, value) in query_pairs(query) {
        match name.as_str() {
            "prefix" => facts.set("s3:prefix", value),
            "delimiter" => facts.set("s3:delimiter", value),
            "max-keys" => facts.set("s3:max-keys", value),
            _ => &mut facts,
        };
    }
    facts
}

/// The `uploadId` of a multipart request.
pub fn upload_id(query: Option<&str>) -> Option<String> {
    query_pairs(query).find_map(|(name, value)| (name == "uploadId").then_some(value))
}

fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let decoded = match bytes[index] {
            b'%' => text
                .get(index + 1..index + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok()),
            _ => None,
        };
        match (bytes[index], decoded) {
            (_, Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                index += 1;
            }
            (byte, None) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_outside_the_bucket_and_foreign_actions_are_refused() {
        let statement = |action: &str, resource: &str| {
            format!(
                r#"{{"Version": "2012-10-17", "Statement": {{"Effect": "Deny", "Principal": "*",
                "Action": "{action}", "Resource": "{resource}"}}}}"#
            )
        };
        assert!(
            parse(
                "photos",
                &statement("s3:GetObject", "arn:aws:s3:::photos/*")
            )
            .is_ok()
        );
        assert!(parse("photos", &statement("s3:*", "arn:aws:s3:::photos")).is_ok());
        for (action, resource) in [
            ("s3:GetObject", "arn:aws:s3:::photosx/*"),
            ("s3:GetObject", "*"),
            ("kms:Decrypt", "arn:aws:s3:::photos/*"),
        ] {
            let error = parse("photos", &statement(action, resource)).unwrap_err();
            assert_eq!(error.code(), &s3s::S3ErrorCode::MalformedPolicy);
        }
    }

    #[test]
    fn query_facts_are_decoded() {
        let facts = request_facts(
            &HeaderMap::new(),
            Some("list-type=2&prefix=a%2Fb+c&delimiter=%2F"),
            None,
        );
        assert_eq!(facts.get("s3:prefix"), Some(&["a/b c".to_owned()][..]));
        assert_eq!(facts.get("s3:delimiter"), Some(&["/".to_owned()][..]));
        assert_eq!(
            upload_id(Some("partNumber=2&uploadId=abc%3D")),
            Some("abc=".into())
        );
    }
}
