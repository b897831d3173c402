//! SigV4 authentication of a request against the principals the KMS stores.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atrest_kms::{Caller, Kms};
use atrest_sigv4::{
    self as sigv4, Authorization, Expectations, HeaderSource, RequestParts, SigV4Error, SigningKey,
    UriEncoding,
};
use hyper::http::request::Parts;

/// Why a request is not authenticated; mapped to AWS's error types by each protocol.
#[derive(Debug)]
pub enum AuthError {
    /// No `Authorization` header at all.
    Missing,
    /// The header or its scope is malformed.
    Incomplete(String),
    /// The access key id is unknown.
    UnknownAccessKey,
    /// Scope, clock or signature do not check out.
    InvalidSignature(String),
    /// The principal store failed.
    Internal(String),
}

/// Derived signing keys by access key id, so a request costs one HMAC and no store or HSM
/// access. Entries expire after [`CACHE_TTL`] so later credential changes (deactivated or
/// deleted keys) take effect within that time even without an explicit invalidation.
#[derive(Debug, Default)]
pub struct CredentialCache {
    entries: Mutex<HashMap<String, CachedCredential>>,
}

const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_CAPACITY: usize = 10_000;

#[derive(Debug)]
struct CachedCredential {
    /// Date, region and service of the scope the key was derived for.
    scope: [String; 3],
    key: Arc<SigningKey>,
    caller: Caller,
    loaded: Instant,
    /// `Kms::credentials_generation` when loaded: any key change since makes the entry stale.
    generation: u64,
}

impl CredentialCache {
    fn lookup(
        &self,
        authorization: &Authorization<'_>,
        generation: u64,
    ) -> Option<(Arc<SigningKey>, Caller)> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = entries.get(authorization.access_key_id)?;
        let [date, region, service] = &entry.scope;
        let same_scope = date == authorization.date
            && region == authorization.region
            && service == authorization.service;
        let fresh =
            entry.loaded.elapsed() < CACHE_TTL && same_scope && entry.generation == generation;
        fresh.then(|| (Arc::clone(&entry.key), entry.caller.clone()))
    }

    fn store(
        &self,
        authorization: &Authorization<'_>,
        key: Arc<SigningKey>,
        caller: Caller,
        generation: u64,
    ) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= CACHE_CAPACITY {
            entries.clear();
        }
        let scope = [
            authorization.date,
            authorization.region,
            authorization.service,
        ]
        .map(str::to_owned);
        let entry = CachedCredential {
            scope,
            key,
            caller,
            loaded: Instant::now(),
            generation,
        };
        entries.insert(authorization.access_key_id.to_owned(), entry);
    }
}

/// hyper's header map, read in place by the SigV4 canonicaliser.
struct HttpHeaders<'a>(&'a hyper::HeaderMap);

impl HeaderSource for HttpHeaders<'_> {
    fn for_each_value(&self, name: &str, each: &mut dyn FnMut(&str)) {
        for value in self.0.get_all(name) {
            each(&String::from_utf8_lossy(value.as_bytes()));
        }
    }
}

/// Authenticates `parts` + `body` for `service`, returning who sent it. Each header in
/// `must_sign` has to be among the signed ones: for KMS the `X-Amz-Target` that names the
/// operation, or a signature over `host;x-amz-date` alone would serve any operation.
pub fn authenticate(
    kms: &Kms,
    cache: &CredentialCache,
    parts: &Parts,
    body: &[u8],
    service: &str,
    must_sign: &[&str],
) -> Result<Caller, AuthError> {
    let header = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    let header = header
        .to_str()
        .map_err(|_| AuthError::Incomplete("Authorization header is not ASCII".into()))?;
    let authorization = sigv4::parse_authorization(header).map_err(map_sigv4)?;
    let amz_date = parts.headers.get("x-amz-date").and_then(|value| value.to_str().ok()).ok_or_else(|| {
        AuthError::Incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".into(),
        )
    })?;
    let expect = Expectations {
        region: kms.region(),
        service,
        now: now(),
    };
    sigv4::check_scope(&authorization, amz_date, &expect).map_err(map_sigv4)?;
    for name in must_sign {
        if !authorization
            .signed_header_names()
            .any(|signed| signed == *name)
        {
            return Err(AuthError::Incomplete(format!(
                "'{name}' must be a signed header"
            )));
        }
    }
    // Read before the store so a key change racing this request makes the entry stale.
    let generation = kms.credentials_generation();
    let (key, caller) = match cache.lookup(&authorization, generation) {
        Some(cached) => cached,
        None => {
            let (caller, secret) = kms
                .credentials(authorization.access_key_id)
                .map_err(|error| AuthError::Internal(error.to_string()))?
                .ok_or(AuthError::UnknownAccessKey)?;
            let key = Arc::new(SigningKey::derive(
                secret.expose(),
                authorization.date,
                authorization.region,
                authorization.service,
            ));
            cache.store(&authorization, Arc::clone(&key), caller.clone(), generation);
            (key, caller)
        }
    };
    let payload_hash = sigv4::sha256_hex(body);
    let request = RequestParts {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query().unwrap_or(""),
        headers: &HttpHeaders(&parts.headers),
        payload_hash: &payload_hash,
        uri_encoding: UriEncoding::Double,
    };
    sigv4::verify_with(&request, &authorization, amz_date, &key).map_err(map_sigv4)?;
    Ok(caller)
}

fn map_sigv4(error: SigV4Error) -> AuthError {
    match error {
        SigV4Error::Missing => AuthError::Missing,
        SigV4Error::Incomplete(message) => AuthError::Incomplete(message),
        other => AuthError::InvalidSignature(other.to_string()),
    }
}

fn now() -> i64 {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    i64::try_from(seconds).unwrap_or(i64::MAX)
}
