//! Building each request's audit record: who, from where, what, on which keys, with which
//! encryption context, and with what outcome; parameters with every secret removed.

use std::net::SocketAddr;

use atrest_audit::Event;
use atrest_kms::RequestContext;
use hyper::http::request::Parts;
use serde_json::Value;

use crate::query::Params;

/// Request members that carry plaintext, secrets or ciphertext: never recorded (CloudTrail
/// omits the same ones).
const SECRET_MEMBERS: [&str; 10] = [
    "Plaintext",
    "EncryptedKeyMaterial",
    "ImportToken",
    "Message",
    "CiphertextBlob",
    "Mac",
    "Signature",
    "PrivateKeyPlaintext",
    "SecretAccessKey",
    "KeyStorePassword",
];

pub fn start(
    source: &str,
    event_name: &str,
    parts: &Parts,
    peer: SocketAddr,
    request_id: &str,
) -> Event {
    Event {
        event_source: source.to_owned(),
        event_name: event_name.to_owned(),
        access_key_id: signed_scope(parts).map(|(access_key_id, _)| access_key_id),
        source_ip: Some(peer.ip().to_string()),
        request_id: request_id.to_owned(),
        ..Event::default()
    }
}

/// The KMS JSON request, minus secret members; its encryption context(s) recorded apart.
pub fn add_kms_parameters(event: &mut Event, body: &[u8]) {
    let Ok(Value::Object(mut members)) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    for member in SECRET_MEMBERS {
        members.remove(member);
    }
    let contexts: serde_json::Map<String, Value> = [
        "EncryptionContext",
        "SourceEncryptionContext",
        "DestinationEncryptionContext",
    ]
    .iter()
    .filter_map(|name| {
        members
            .get(*name)
            .map(|value| ((*name).to_owned(), value.clone()))
    })
    .collect();
    // Recorded once, in `encryption_context`, not again among the parameters.
    for name in contexts.keys() {
        members.remove(name);
    }
    event.encryption_context = match contexts.len() {
        0 => None,
        1 if contexts.contains_key("EncryptionContext") => {
            contexts.get("EncryptionContext").cloned()
        }
        _ => Some(Value::Object(contexts)),
    };
    event.request_parameters = Some(Value::Object(members));
}

/// Query-protocol parameters (IAM requests carry no secrets; responses are not recorded).
pub fn add_query_parameters(event: &mut Event, params: &Params) {
    event.event_name = params.get("Action").unwrap_or_default().to_owned();
    event.request_parameters = Some(params.to_json_without(&["Action", "Version"]));
}

pub fn add_context(event: &mut Event, ctx: &RequestContext) {
    event.caller_arn = Some(ctx.caller.arn.to_string());
    event.resources = ctx.resources();
}

/// An S3 request's record: the operation, caller, bucket and key, the object or bucket ARN
/// and every KMS key the operation used (in `resources`), and, if it failed, its HTTP status
/// (the S3 error code travels only in the response body).
pub fn s3_event(
    call: &atrest_s3::S3Call,
    parts: &Parts,
    peer: SocketAddr,
    request_id: &str,
    status: hyper::StatusCode,
) -> Event {
    let mut event = start("s3.amazonaws.com", "", parts, peer, request_id);
    event.event_name = call
        .operation
        .clone()
        .unwrap_or_else(|| format!("{} (refused before routing)", parts.method));
    event.caller_arn.clone_from(&call.caller_arn);
    event.resources = call.resource_list();
    let mut parameters = serde_json::Map::new();
    if let Some(bucket) = &call.bucket {
        parameters.insert("bucketName".into(), Value::String(bucket.clone()));
    }
    if let Some(key) = &call.key {
        parameters.insert("key".into(), Value::String(key.clone()));
    }
    event.request_parameters = Some(Value::Object(parameters));
    if !status.is_success() && !status.is_redirection() {
        event.error_code = Some(format!("HTTP {}", status.as_u16()));
    }
    event
}

/// The access key id and service a request was signed with, if it is signed at all.
pub fn signed_scope(parts: &Parts) -> Option<(String, String)> {
    let header = parts
        .headers
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let auth = atrest_sigv4::parse_authorization(header).ok()?;
    Some((auth.access_key_id.to_owned(), auth.service.to_owned()))
}
