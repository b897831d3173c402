//! Object storage: an S3-compatible service in which every object is encrypted at rest.
//!
//! **Protocol layer.** The S3 REST/XML protocol, routing, and SigV4 (header, presigned URLs,
//! aws-chunked bodies with signed and unsigned trailers) come from [`s3s`] 0.14. We chose it
//! over our own layer because it covers the whole S3 surface (every operation's XML, POST
//! object, flexible checksums) and is what s3s-fs, the peer our benchmark runs against, uses;
//! 0.15 and later need rustc 1.96, and this toolchain is 1.95. atrest supplies the secrets
//! ([`access::Auth`]), the authorization ([`access::Access`]) and the operations
//! ([`service::ObjectService`]).
//!
//! **At rest.** Each object has its own 256-bit data key (see [`sse`] for the three ways it is
//! protected). Its bytes are sealed in the segment format of `atrest_crypto::segments`
//! (64 KiB AES-256-GCM segments with STREAM nonces), one stream per part, so a ranged read
//! opens only the segments it needs and truncation, reordering or swapped segments fail.
//! User metadata is sealed with a key derived from the data key. Metadata records live in the
//! KMS's redb file ([`meta`]); sealed streams in [`blobs`], behind a trait.

pub mod access;
pub mod audit;
pub mod blobs;
pub mod bucket_keys;
pub mod bucket_policy;
pub mod chunk_guard;
pub mod encryption_config;
pub mod form;
pub mod host;
pub mod meta;
mod seal;
pub mod service;
pub mod signature_gate;
pub mod sse;

use std::path::Path;
use std::sync::Arc;

use atrest_kms::Kms;

pub use access::ClientInfo;
pub use audit::{AuditSlot, S3Call};
pub use service::Settings;

/// The S3 API as the HTTP front serves it: the signature limits checked first, then s3s.
pub struct EmbeddedS3 {
    pub gate: signature_gate::SignatureGate,
    pub forms: form::FormUploads,
    pub service: s3s::service::S3Service,
}

/// Builds the s3s service over the embedded stores under `data_dir`; hosts under one of
/// `domains` are virtual-hosted-style requests.
pub fn embedded_service(
    kms: Arc<Kms>,
    database: Arc<redb::Database>,
    data_dir: &Path,
    settings: Settings,
    domains: Vec<String>,
) -> Result<EmbeddedS3, String> {
    let index = meta::RedbIndex::open(database)
        .map_err(|error| error.to_string())?
        .with_seal(kms.record_seal());
    let blobs = blobs::FsBlobStore::open(&data_dir.join("objects"))
        .map_err(|error| format!("opening the object store: {error}"))?;
    let keys = sse::DataKeys::new(Arc::clone(&kms)).map_err(|error| error.to_string())?;
    let swept = blobs::sweep_orphans(&index, &blobs)?;
    if swept > 0 {
        tracing::info!(swept, "deleted blobs no object referred to");
    }
    bind_bucket_policy_principals(&kms, &index)?;
    let index: Arc<dyn meta::ObjectIndex> = Arc::new(index);
    let domains = host::BucketDomains::new(domains);
    let gate = signature_gate::SignatureGate::new(
        Arc::clone(&kms),
        settings.allow_sigv2_headers,
        domains.clone(),
    );
    let service = service::ObjectService::new(Arc::clone(&index), Arc::new(blobs), keys, settings);
    let mut builder = s3s::service::S3ServiceBuilder::new(service);
    let access = Arc::new(access::Access::new(kms.clone(), Arc::clone(&index)));
    let forms_domains = domains.clone();
    builder.set_host(domains.clone());
    builder.set_auth(access::Auth::new(Arc::clone(&kms)));
    builder.set_route(encryption_config::EncryptionConfigRoute::new(
        domains,
        Arc::clone(&access),
        Arc::clone(&index),
    ));
    builder.set_access(access::SharedAccess(access));
    Ok(EmbeddedS3 {
        gate,
        forms: form::FormUploads::new(Arc::clone(&kms), forms_domains),
        service: builder.build(),
    })
}

/// Binds the users named by bucket policies stored before policies were bound to unique ids
/// (a data dir from an earlier atrest) to the users of those names now; a user that no
/// longer exists is bound to no one.
fn bind_bucket_policy_principals(kms: &Kms, index: &meta::RedbIndex) -> Result<(), String> {
    use meta::ObjectIndex as _;
    for mut bucket in index.buckets().map_err(|error| error.to_string())? {
        let Some(text) = bucket.policy.as_deref() else {
            continue;
        };
        if !bucket.principal_ids.is_empty() || !text.contains(":user/") {
            continue;
        }
        let policy = bucket_policy::parse(&bucket.name, text)
            .map_err(|error| format!("bucket {}: {error:?}", bucket.name))?;
        for arn in policy.user_principal_arns() {
            if let Some(id) = kms.bind_principal(arn).map_err(|error| error.to_string())? {
                bucket.principal_ids.insert(arn.to_owned(), id);
            }
        }
        if !bucket.principal_ids.is_empty() {
            index
                .replace_bucket(&bucket)
                .map_err(|error| error.to_string())?;
        }
    }
    Ok(())
}
