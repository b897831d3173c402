//! The hyper accept loop and per-request flow: route → read a bounded body → authenticate →
//! dispatch → respond.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use atrest_kms::RequestContext;
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::AppState;
use crate::audit;
use crate::auth::{AuthError, authenticate};
use crate::kms::{self, WireError};
use crate::limits::{Acceptor, HttpLimits, PacedIo, RequestEpoch};
use crate::query::{
    self,
    xml::{self, QueryError},
};
use crate::route::{self, Endpoint};
use crate::tls::TlsConfig;

/// Serves connections from `listener` until `shutdown` resolves; HTTPS when `tls` is given.
/// Accept errors (out of descriptors, ...) are waited out, never fatal. On shutdown the
/// listener closes, idle connections close, and requests in flight get
/// `limits.shutdown_grace` to finish before this returns.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    tls: Option<TlsConfig>,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tls.map(|tls| tokio_rustls::TlsAcceptor::from(tls.0));
    let connections = Acceptor::new(listener, limits.max_connections, "http");
    let limits = Arc::new(limits);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer, slot) = tokio::select! {
            accepted = connections.accept() => accepted,
            () = &mut shutdown => break,
        };
        // Without TCP_NODELAY small responses wait on Nagle + delayed ACK (~40 ms each).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%error, %peer, "could not set TCP_NODELAY");
        }
        let state = Arc::clone(&state);
        let acceptor = acceptor.clone();
        let limits = Arc::clone(&limits);
        let stopping = stopping.clone();
        tokio::spawn(async move {
            // The slot is held for as long as the connection lives.
            let _slot = slot;
            let epoch = RequestEpoch::default();
            let Some(acceptor) = acceptor else {
                let stream = PacedIo::new(stream, &limits, epoch.clone());
                let client = Client {
                    peer,
                    secure: false,
                };
                return serve_connection(stream, state, client, &limits, epoch, stopping).await;
            };
            let handshake = tokio::time::timeout(limits.header_timeout, acceptor.accept(stream));
            match handshake.await {
                Ok(Ok(stream)) => {
                    let stream = PacedIo::new(stream, &limits, epoch.clone());
                    let client = Client { peer, secure: true };
                    serve_connection(stream, state, client, &limits, epoch, stopping).await;
                }
                Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
    let grace = limits.shutdown_grace;
    let _ = stop.send(true);
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: no new connections; finishing requests in flight"
    );
    if !connections.drain(grace).await {
        tracing::warn!("the shutdown grace period ended with requests still in flight");
    }
    Ok(())
}

/// Where a request came from, and whether it came over TLS (`aws:SecureTransport`).
#[derive(Debug, Clone, Copy)]
struct Client {
    peer: SocketAddr,
    secure: bool,
}

async fn serve_connection<Io>(
    stream: Io,
    state: Arc<AppState>,
    client: Client,
    limits: &HttpLimits,
    epoch: RequestEpoch,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        epoch.next_request();
        handle(Arc::clone(&state), client, request)
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = stopped(&mut stopping) => {
            // Finish the request in flight (if any), then close instead of keeping alive.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        tracing::debug!(%error, peer = %client.peer, "connection ended with an error");
    }
}

/// Resolves once the server is shutting down (or the signal's sender is gone).
async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    // `wait_for` holds a read guard in its output; only whether it resolved matters.
    let _ = stopping.wait_for(|stopping| *stopping).await.map(|_| ());
}

/// KMS, IAM and STS answer with buffered bodies; S3 streams.
type ResponseBody = Either<Full<Bytes>, s3s::Body>;

async fn handle(
    state: Arc<AppState>,
    client: Client,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let request_id = request_id();
    let endpoint = route::endpoint(&request);
    if endpoint == Endpoint::S3
        && let Some(s3) = &state.s3
    {
        let has_body = request
            .headers()
            .contains_key(hyper::header::TRANSFER_ENCODING)
            || request
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .is_some_and(|length| length.as_bytes() != b"0");
        if let Some(refusal) = audit_refusal(&state) {
            let refused = atrest_s3::signature_gate::Refusal {
                status: 503,
                code: "ServiceUnavailable",
                message: format!("{refusal}. The request was not served."),
            };
            let mut response = atrest_s3::form::refusal_response(&refused, &request_id);
            response.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            return Ok(response.map(Either::Right));
        }
        let (parts, body) = request.into_parts();
        let slot = atrest_s3::AuditSlot::default();
        let mut response = s3_call(s3, client, &parts, body, &slot, &request_id).await;
        if let Ok(value) = request_id.parse() {
            response.headers_mut().insert("x-amz-request-id", value);
        }
        let appended = match &state.audit {
            Some(log) => {
                let record = audit::s3_event(
                    &slot.snapshot(),
                    &parts,
                    client.peer,
                    &request_id,
                    response.status(),
                );
                log.append(record).await
            }
            None => Ok(()),
        };
        if let Err(error) = appended {
            tracing::error!(%error, "audit log append failed; failing the S3 request");
            let refused = atrest_s3::signature_gate::Refusal {
                status: 503,
                code: "ServiceUnavailable",
                message: format!("{error}. The request's outcome was not recorded."),
            };
            let mut failed = atrest_s3::form::refusal_response(&refused, &request_id);
            failed.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            return Ok(failed.map(Either::Right));
        }
        // A request refused before its body was read (bad signature, access denied) leaves
        // that body on the connection: close it rather than parse the rest as a request.
        if has_body && !response.status().is_success() {
            response.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
        }
        return Ok(response.map(Either::Right));
    }
    let response = match endpoint {
        Endpoint::Health => health(&state),
        Endpoint::Kms { operation } => {
            kms_request(&state, client, request, operation, &request_id).await
        }
        Endpoint::Query => query_request(&state, client, request, &request_id).await,
        Endpoint::UnknownTarget { target } => kms_error(&WireError::unknown_target(&target)),
        Endpoint::S3 => s3_not_served(),
        Endpoint::NotFound => plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = response;
    if let Ok(value) = request_id.parse() {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    Ok(response.map(Either::Left))
}

async fn kms_request(
    state: &Arc<AppState>,
    client: Client,
    request: Request<Incoming>,
    operation: String,
    request_id: &str,
) -> Response<Full<Bytes>> {
    if let Some(refusal) = audit_refusal(state) {
        return Shape::Kms.unavailable(&refusal);
    }
    let (parts, body) = request.into_parts();
    let mut record = state.audit.is_some().then(|| {
        audit::start(
            "kms.amazonaws.com",
            &operation,
            &parts,
            client.peer,
            request_id,
        )
    });
    let body = match Limited::new(body, route::KMS_BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let error = WireError::too_large(route::KMS_BODY_LIMIT);
            return audited(
                state,
                record,
                Some(error.type_name),
                kms_error(&error),
                Shape::Kms,
            )
            .await;
        }
    };
    if let Some(record) = &mut record {
        audit::add_kms_parameters(record, &body);
    }
    let recording = record.is_some();
    let run = || -> (Result<Vec<u8>, WireError>, Option<RequestContext>) {
        let caller = match authenticate(
            &state.kms,
            &state.credentials,
            &parts,
            &body,
            "kms",
            &["x-amz-target"],
        ) {
            Ok(caller) => caller,
            Err(error) => return (Err(error.into()), None),
        };
        let ctx = RequestContext::new(caller, Some(client.peer.ip()), client.secure);
        let ctx = if recording { ctx.recording() } else { ctx };
        (
            kms::dispatch(&state.kms, &ctx, &operation, &body),
            Some(ctx),
        )
    };
    // Writes wait for an fsync; let the runtime move other tasks off this thread meanwhile.
    let (result, ctx) = if kms::is_mutating(&operation) {
        tokio::task::block_in_place(run)
    } else {
        run()
    };
    if let (Some(ctx), Some(record)) = (&ctx, &mut record) {
        audit::add_context(record, ctx);
    }
    match result {
        Ok(body) => {
            audited(
                state,
                record,
                None,
                json_response(StatusCode::OK, body),
                Shape::Kms,
            )
            .await
        }
        Err(error) => {
            audited(
                state,
                record,
                Some(error.type_name),
                kms_error(&error),
                Shape::Kms,
            )
            .await
        }
    }
}

/// IAM, STS and EC2: the service is the one the request was signed for.
async fn query_request(
    state: &Arc<AppState>,
    client: Client,
    request: Request<Incoming>,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let service = audit::signed_scope(&parts).map(|(_, service)| service);
    let (namespace, source) = match service.as_deref() {
        Some("sts") => (xml::STS_NAMESPACE, "sts.amazonaws.com"),
        Some("ec2") => (xml::EC2_NAMESPACE, "ec2.amazonaws.com"),
        _ => (xml::IAM_NAMESPACE, "iam.amazonaws.com"),
    };
    if let Some(refusal) = audit_refusal(state) {
        let shape = Shape::Query {
            namespace,
            request_id,
        };
        return shape.unavailable(&refusal);
    }
    let mut record = state
        .audit
        .is_some()
        .then(|| audit::start(source, "", &parts, client.peer, request_id));
    let body = match Limited::new(body, route::KMS_BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let error = QueryError {
                code: "RequestEntityTooLarge".into(),
                status: 413,
                message: "Request body too large".into(),
            };
            let shape = Shape::Query {
                namespace,
                request_id,
            };
            let response = query_error(&error, namespace, request_id);
            return audited(state, record, Some(&error.code), response, shape).await;
        }
    };
    let params = query::Params::parse(parts.uri.query(), &body);
    if let Some(record) = &mut record {
        audit::add_query_parameters(record, &params);
    }
    let recording = record.is_some();
    let run = || -> (Result<String, QueryError>, Option<RequestContext>) {
        let service = match service.as_deref() {
            Some(service @ ("iam" | "sts")) => service,
            Some("ec2") if state.volumes.is_some() => "ec2",
            Some(other) => {
                let message = format!("atrest does not serve the {other} Query API");
                return (
                    Err(QueryError {
                        code: "InvalidAction".into(),
                        status: 400,
                        message,
                    }),
                    None,
                );
            }
            None => return (Err(AuthError::Missing.into()), None),
        };
        let caller = match authenticate(&state.kms, &state.credentials, &parts, &body, service, &[])
        {
            Ok(caller) => caller,
            Err(error) => return (Err(error.into()), None),
        };
        let ctx = RequestContext::new(caller, Some(client.peer.ip()), client.secure);
        let ctx = if recording { ctx.recording() } else { ctx };
        let result = match (service, &state.volumes) {
            ("sts", _) => query::sts::dispatch(&state.kms, &ctx, &params, request_id),
            ("ec2", Some(volumes)) => query::ec2::dispatch(volumes, &ctx, &params, request_id),
            _ => query::iam::dispatch(&state.kms, &ctx, &params, request_id),
        };
        (result, Some(ctx))
    };
    // IAM writes wait for an fsync; EC2 calls copy and fsync volume files.
    let (result, ctx) = tokio::task::block_in_place(run);
    if let (Some(ctx), Some(record)) = (&ctx, &mut record) {
        audit::add_context(record, ctx);
    }
    match result {
        Ok(body) => {
            audited(
                state,
                record,
                None,
                xml_response(StatusCode::OK, body),
                Shape::Query {
                    namespace,
                    request_id,
                },
            )
            .await
        }
        Err(error) => {
            let shape = Shape::Query {
                namespace,
                request_id,
            };
            let response = query_error(&error, namespace, request_id);
            audited(state, record, Some(&error.code), response, shape).await
        }
    }
}

/// Appends the request's audit record, durably, before its response may leave. If the log
/// cannot be written the request fails: nothing happens off the record. `record` is `None`
/// only when the server runs without an audit log.
async fn audited(
    state: &AppState,
    record: Option<atrest_audit::Event>,
    error_code: Option<&str>,
    response: Response<Full<Bytes>>,
    shape: Shape<'_>,
) -> Response<Full<Bytes>> {
    let (Some(log), Some(mut record)) = (&state.audit, record) else {
        return response;
    };
    record.error_code = error_code.map(str::to_owned);
    match log.append(record).await {
        Ok(()) => response,
        Err(error) => {
            tracing::error!(%error, "audit log append failed; failing the request");
            shape.unavailable(&error)
        }
    }
}

/// The protocol a request is answered in, for errors raised outside its handler.
#[derive(Clone, Copy)]
enum Shape<'a> {
    Kms,
    Query {
        namespace: &'a str,
        request_id: &'a str,
    },
}

impl Shape<'_> {
    /// 503: the audit log cannot be written (a full disk, say). Clients retry 503s; the
    /// server takes requests again once the log recovers, within seconds of space freeing.
    fn unavailable(self, error: &atrest_audit::AuditError) -> Response<Full<Bytes>> {
        let message = format!("{error}. The request was not served.");
        match self {
            Shape::Kms => kms_error(&WireError {
                type_name: "ServiceUnavailableException",
                status: 503,
                message,
            }),
            Shape::Query {
                namespace,
                request_id,
            } => {
                let error = QueryError {
                    code: "ServiceUnavailable".into(),
                    status: 503,
                    message,
                };
                query_error(&error, namespace, request_id)
            }
        }
    }
}

/// The audit log's refusal, if it cannot take records now: checked before a request acts.
fn audit_refusal(state: &AppState) -> Option<atrest_audit::AuditError> {
    state.audit.as_ref().and_then(|log| log.available().err())
}

fn query_error(error: &QueryError, namespace: &str, request_id: &str) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    xml_response(status, error.body(namespace, request_id))
}

fn xml_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/xml"),
    );
    response
}

fn health(state: &AppState) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "status": "ok", "hsm": state.hsm_backend }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn kms_error(error: &WireError) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, error.body());
    if let Ok(value) = error.type_name.parse() {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(kms::CONTENT_TYPE),
    );
    response
}

/// Runs one S3 request: a form upload through the streaming form reader, anything else
/// through the signature gate; then s3s.
async fn s3_call(
    s3: &atrest_s3::EmbeddedS3,
    client: Client,
    parts: &hyper::http::request::Parts,
    body: Incoming,
    slot: &atrest_s3::AuditSlot,
    request_id: &str,
) -> Response<s3s::Body> {
    let (mut request, responder) = if atrest_s3::form::is_form_upload(&parts.method, &parts.headers)
    {
        match s3.forms.prepare(parts, body.into_data_stream()).await {
            Ok(upload) => (upload.request, Some(upload.responder)),
            Err(refusal) => return atrest_s3::form::refusal_response(&refusal, request_id),
        }
    } else {
        if let Err(refusal) = s3.gate.check(&parts.method, &parts.uri, &parts.headers) {
            return atrest_s3::form::refusal_response(&refusal, request_id);
        }
        (
            Request::from_parts(parts.clone(), s3_body(parts, body)),
            None,
        )
    };
    request.extensions_mut().insert(slot.clone());
    request.extensions_mut().insert(atrest_s3::ClientInfo {
        ip: client.peer.ip(),
        secure: client.secure,
    });
    let response = match s3.service.call(request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(?error, "S3 request failed outside the service");
            let mut response = Response::new(s3s::Body::empty());
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    };
    match responder {
        Some(responder) => responder.respond(response, request_id),
        None => response,
    }
}

/// An S3 request's body for s3s; an aws-chunked one goes through the chunk-size guard, so no
/// chunk larger than `chunk_guard::MAX_CHUNK_SIZE` is buffered for its signature check.
fn s3_body(parts: &hyper::http::request::Parts, body: Incoming) -> s3s::Body {
    if !atrest_s3::chunk_guard::is_aws_chunked(&parts.headers) {
        return s3s::Body::from(body);
    }
    let length = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok());
    let guarded = atrest_s3::chunk_guard::GuardedBody::new(body.into_data_stream(), length);
    s3s::Body::from(Box::pin(guarded) as s3s::stream::DynByteStream)
}

/// S3 arrives with the object-storage issue; until then S3 clients get S3's own error shape.
fn s3_not_served() -> Response<Full<Bytes>> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NotImplemented</Code>\
                <Message>This atrest build does not serve the S3 API yet.</Message></Error>\n";
    let mut response = plain(StatusCode::NOT_IMPLEMENTED, body);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// A UUID-shaped request id: a random 64-bit prefix chosen once per process, then a counter.
/// Ids only need to be unique (they name log and audit records), not unpredictable, so a
/// request costs no trip to the CSPRNG for one.
fn request_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        atrest_crypto::random::fill(&mut bytes);
        u64::from_be_bytes(bytes)
    });
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    // The UUID layout 8-4-4-4-12 over the process's random prefix and the count, written
    // by hand: `format!` with five hex fields was a measurable share of a small request.
    let fields: [(u64, usize); 5] = [
        (prefix >> 32, 8),
        ((prefix >> 16) & 0xffff, 4),
        (prefix & 0xffff, 4),
        ((count >> 48) & 0xffff, 4),
        (count & 0xffff_ffff_ffff, 12),
    ];
    let mut id = String::with_capacity(36);
    for (index, (value, width)) in fields.into_iter().enumerate() {
        if index > 0 {
            id.push('-');
        }
        for shift in (0..width).rev() {
            let nibble = (value >> (shift * 4)) & 0xf;
            id.push(char::from(b"0123456789abcdef"[nibble as usize]));
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::request_id;

    #[test]
    fn request_ids_are_distinct_uuid_shaped_hex() {
        let (first, second) = (request_id(), request_id());
        assert_ne!(first, second);
        for id in [&first, &second] {
            assert_eq!(id.len(), 36, "{id}");
            for (index, c) in id.chars().enumerate() {
                if [8, 13, 18, 23].contains(&index) {
                    assert_eq!(c, '-', "{id}");
                } else {
                    assert!(c.is_ascii_hexdigit() && !c.is_ascii_uppercase(), "{id}");
                }
            }
        }
        // The count fills the last fields: consecutive ids differ only there.
        assert_eq!(first[..19], second[..19]);
    }
}
