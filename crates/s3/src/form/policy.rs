//! The POST policy of a browser form upload (AWS S3 API reference, "Creating a POST policy"):
//! a base64 JSON document with an `expiration` and `conditions` that every form field must
//! meet. Checked before a byte of the file is read, except `content-length-range`, which the
//! upload enforces while the file streams.

use base64::Engine as _;
use serde_json::Value;

/// Why a form does not satisfy its policy, as the S3 error it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Violation {
    fn denied(message: impl Into<String>) -> Self {
        Self {
            status: 403,
            code: "AccessDenied",
            message: format!("Invalid according to Policy: {}", message.into()),
        }
    }

    fn malformed(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            code: "InvalidPolicyDocument",
            message: format!("Invalid Policy: {}", message.into()),
        }
    }
}

/// One condition of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    /// `{"field": "value"}` or `["eq", "$field", "value"]`; the field name in lower case.
    Equals(String, String),
    /// `["starts-with", "$field", "prefix"]`; an empty prefix allows any value.
    StartsWith(String, String),
    ContentLengthRange(u64, u64),
}

/// A parsed POST policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostPolicy {
    /// Unix seconds.
    pub expiration: i64,
    conditions: Vec<Condition>,
}

/// Fields a policy need not name: the signature's own and `x-ignore-*` (AWS's list).
fn exempt(name: &str) -> bool {
    matches!(
        name,
        "policy" | "signature" | "x-amz-signature" | "awsaccesskeyid" | "file"
    ) || name.starts_with("x-ignore-")
}

impl PostPolicy {
    /// Decodes and parses the `policy` field.
    pub fn parse(policy_base64: &str) -> Result<Self, Violation> {
        let json = base64::engine::general_purpose::STANDARD
            .decode(policy_base64.trim().as_bytes())
            .map_err(|_| Violation::malformed("the policy is not base64"))?;
        let document: Value = serde_json::from_slice(&json)
            .map_err(|_| Violation::malformed("the policy is not a JSON document"))?;
        let expiration = document
            .get("expiration")
            .and_then(Value::as_str)
            .ok_or_else(|| Violation::malformed("Policy missing expiration."))?;
        let expiration = parse_expiration(expiration)
            .ok_or_else(|| Violation::malformed("Invalid 'expiration' value"))?;
        let conditions = document
            .get("conditions")
            .and_then(Value::as_array)
            .ok_or_else(|| Violation::malformed("Policy missing conditions."))?
            .iter()
            .map(parse_condition)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            expiration,
            conditions,
        })
    }

    /// Checks the form's fields (names as sent) and the URL's bucket at `now`; returns the
    /// allowed file sizes.
    pub fn check(
        &self,
        fields: &[(String, String)],
        bucket: &str,
        now: i64,
    ) -> Result<(u64, u64), Violation> {
        if now >= self.expiration {
            return Err(Violation::denied("Policy expired."));
        }
        let value = |name: &str| -> Option<&str> {
            if name == "bucket" {
                return Some(bucket);
            }
            fields
                .iter()
                .find(|(field, _)| field.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        };
        let mut range = (0, u64::MAX);
        for condition in &self.conditions {
            let met = match condition {
                Condition::Equals(name, expected) => value(name) == Some(expected.as_str()),
                Condition::StartsWith(name, prefix) => {
                    value(name).is_some_and(|actual| actual.starts_with(prefix.as_str()))
                }
                Condition::ContentLengthRange(min, max) => {
                    range = (*min, *max);
                    true
                }
            };
            if !met {
                return Err(Violation::denied(format!(
                    "Policy Condition failed: {}",
                    describe(condition)
                )));
            }
        }
        for (name, _) in fields {
            let name = name.to_ascii_lowercase();
            if exempt(&name) {
                continue;
            }
            let covered = self.conditions.iter().any(|condition| match condition {
                Condition::Equals(field, _) | Condition::StartsWith(field, _) => *field == name,
                Condition::ContentLengthRange(..) => false,
            });
            if !covered {
                return Err(Violation::denied(format!("Extra input fields: {name}")));
            }
        }
        Ok(range)
    }
}

fn parse_condition(condition: &Value) -> Result<Condition, Violation> {
    let invalid = || Violation::malformed(format!("Invalid Policy condition: {condition}"));
    if let Some(object) = condition.as_object() {
        let mut pairs = object.iter();
        return match (pairs.next(), pairs.next()) {
            (Some((name, Value::String(value))), None) => Ok(Condition::Equals(
                name.trim_start_matches('$').to_ascii_lowercase(),
                value.clone(),
            )),
            _ => Err(invalid()),
        };
    }
    let items = condition.as_array().ok_or_else(invalid)?;
    let operator = items.first().and_then(Value::as_str).ok_or_else(invalid)?;
    match (operator.to_ascii_lowercase().as_str(), items.len()) {
        ("content-length-range", 3) => {
            let bound = |value: &Value| -> Option<u64> {
                value
                    .as_u64()
                    .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
            };
            let (min, max) = (
                bound(&items[1]).ok_or_else(invalid)?,
                bound(&items[2]).ok_or_else(invalid)?,
            );
            Ok(Condition::ContentLengthRange(min, max))
        }
        (operator @ ("eq" | "starts-with"), 3) => {
            let field = items[1]
                .as_str()
                .and_then(|field| field.strip_prefix('$'))
                .ok_or_else(invalid)?
                .to_ascii_lowercase();
            let value = items[2].as_str().ok_or_else(invalid)?.to_owned();
            Ok(if operator == "eq" {
                Condition::Equals(field, value)
            } else {
                Condition::StartsWith(field, value)
            })
        }
        _ => Err(invalid()),
    }
}

fn describe(condition: &Condition) -> String {
    match condition {
        Condition::Equals(name, value) => format!("[\"eq\", \"${name}\", \"{value}\"]"),
        Condition::StartsWith(name, value) => {
            format!("[\"starts-with\", \"${name}\", \"{value}\"]")
        }
        Condition::ContentLengthRange(min, max) => {
            format!("[\"content-length-range\", {min}, {max}]")
        }
    }
}

/// `2026-12-07T12:00:00.000Z` (fractional seconds optional) as Unix seconds.
fn parse_expiration(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (whole, _fraction) = match text.split_once('.') {
        Some((whole, fraction)) if fraction.bytes().all(|b| b.is_ascii_digit()) => {
            (whole, fraction)
        }
        Some(_) => return None,
        None => (text, ""),
    };
    let bytes = whole.as_bytes();
    if bytes.len() != 19
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let basic: String = whole.chars().filter(|c| !matches!(c, '-' | ':')).collect();
    atrest_sigv4::parse_amz_date(&format!("{basic}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_765_000_000;

    fn encoded(document: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(document)
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn policy(conditions: &str) -> PostPolicy {
        let expiration = atrest_sigv4::format_iso8601(NOW + 60);
        PostPolicy::parse(&encoded(&format!(
            "{{\"expiration\": \"{expiration}\", \"conditions\": {conditions}}}"
        )))
        .expect("valid policy")
    }

    #[test]
    fn the_aws_example_policy() {
        let policy = policy(
            r#"[{"acl": "public-read"}, {"bucket": "sigv4examplebucket"},
                ["starts-with", "$key", "user/user1/"],
                ["content-length-range", 1, "1048576"],
                ["starts-with", "$Content-Type", "image/"],
                {"x-amz-meta-uuid": "14365123651274"}]"#,
        );
        let form = fields(&[
            ("key", "user/user1/photo.jpg"),
            ("acl", "public-read"),
            ("Content-Type", "image/jpeg"),
            ("x-amz-meta-uuid", "14365123651274"),
            ("Policy", "..."),
            ("X-Amz-Signature", "..."),
            ("x-ignore-tracking", "anything"),
        ]);
        assert_eq!(
            policy.check(&form, "sigv4examplebucket", NOW),
            Ok((1, 1_048_576))
        );
        let other_bucket = policy.check(&form, "other", NOW).expect_err("bucket");
        assert_eq!(
            (other_bucket.status, other_bucket.code),
            (403, "AccessDenied")
        );
        assert!(
            other_bucket.message.contains("\"$bucket\""),
            "{other_bucket:?}"
        );
        let mut outside = form.clone();
        outside[0].1 = "user/user2/photo.jpg".into();
        let refused = policy
            .check(&outside, "sigv4examplebucket", NOW)
            .expect_err("key");
        assert!(refused.message.contains("starts-with"), "{refused:?}");
        let mut extra = form.clone();
        extra.push(("x-amz-server-side-encryption".into(), "AES256".into()));
        let refused = policy
            .check(&extra, "sigv4examplebucket", NOW)
            .expect_err("extra");
        assert!(
            refused.message.contains("Extra input fields"),
            "{refused:?}"
        );
        let expired = policy
            .check(&form, "sigv4examplebucket", NOW + 60)
            .expect_err("expired");
        assert_eq!(
            expired.message,
            "Invalid according to Policy: Policy expired."
        );
    }

    #[test]
    fn malformed_policies_are_refused() {
        for document in [
            "not base64!",
            &encoded("not json"),
            &encoded(r#"{"conditions": []}"#),
            &encoded(r#"{"expiration": "tomorrow", "conditions": []}"#),
            &encoded(r#"{"expiration": "2030-01-01T00:00:00Z"}"#),
            &encoded(
                r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [["eq", "key", "x"]]}"#,
            ),
            &encoded(
                r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [["in", "$key", "x"]]}"#,
            ),
            &encoded(
                r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [{"a": "1", "b": "2"}]}"#,
            ),
        ] {
            let error = PostPolicy::parse(document).expect_err(document);
            assert_eq!((error.status, error.code), (400, "InvalidPolicyDocument"));
        }
        assert_eq!(
            parse_expiration("2030-01-01T00:00:00.123Z"),
            parse_expiration("2030-01-01T00:00:00Z")
        );
        assert!(parse_expiration("2030-01-01 00:00:00Z").is_none());
    }
}
