//! What one audit record says, and searching records.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the server knows about a request once it has been answered.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Event {
    pub event_source: String,
    pub event_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    pub request_id: String,
    /// Key ARNs the request named or was decided on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_context: Option<Value>,
    /// AWS error type; absent when the request succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Request parameters with every secret and plaintext removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_parameters: Option<Value>,
}

/// One line of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    /// ISO 8601 UTC.
    pub time: String,
    #[serde(flatten)]
    pub event: Event,
    /// Hex HMAC-SHA256 over `"{seq}:{prev}"`, present on digest records only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Hex SHA-256 of the previous line.
    pub prev: String,
}

/// `atrest audit search` criteria; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    /// Substring of a resource ARN (a key id matches its ARN).
    pub key: Option<String>,
    /// Substring of the caller ARN or the access key id.
    pub principal: Option<String>,
    /// ISO 8601 bounds, compared as text (the log's times are all UTC `...Z`).
    pub since: Option<String>,
    pub until: Option<String>,
}

impl SearchFilter {
    pub fn matches(&self, record: &Record) -> bool {
        let event = &record.event;
        let key = self.key.as_ref().is_none_or(|key| {
            event.resources.iter().any(|arn| arn.contains(key.as_str())) || names_key(event, key)
        });
        let principal = self.principal.as_ref().is_none_or(|who| {
            event
                .caller_arn
                .as_deref()
                .is_some_and(|arn| arn.contains(who.as_str()))
                || event.access_key_id.as_deref() == Some(who.as_str())
        });
        let since = self
            .since
            .as_ref()
            .is_none_or(|since| record.time.as_str() >= since.as_str());
        let until = self
            .until
            .as_ref()
            .is_none_or(|until| record.time.as_str() <= until.as_str());
        key && principal && since && until && record.digest.is_none()
    }
}

/// Whether a request parameter such as `KeyId` or `DestinationKeyId` names `key`: requests
/// refused before their key was resolved are still found by it.
fn names_key(event: &Event, key: &str) -> bool {
    let Some(Value::Object(members)) = &event.request_parameters else {
        return false;
    };
    members.iter().any(|(name, value)| {
        name.ends_with("KeyId") && value.as_str().is_some_and(|text| text.contains(key))
    })
}

/// Records of the log in `dir` (every segment) that match `filter`, in order. Lines that do
/// not parse are skipped here; `verify` is the tool that reports them.
pub fn search(
    dir: &std::path::Path,
    filter: &SearchFilter,
) -> Result<Vec<Record>, crate::AuditError> {
    let bytes = crate::segments::read_all(dir)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<Record>(line).ok())
        .filter(|record| filter.matches(record))
        .collect())
}
