//! What the audit log learns about an S3 request. The HTTP front puts an [`AuditSlot`] in the
//! request's extensions; authorization fills in the operation, the caller and the bucket or
//! object, and every KMS call the operation makes adds the key it used, so the front can
//! append one record per request (as CloudTrail data events do) naming each key used.

use std::sync::{Arc, Mutex, PoisonError};

/// Filled in while a request runs; read by the front once it has the response.
#[derive(Debug, Clone, Default)]
pub struct AuditSlot(Arc<Mutex<S3Call>>);

/// One S3 request, as audited.
#[derive(Debug, Clone, Default)]
pub struct S3Call {
    /// The S3 operation (`PutObject`); `None` if the request never got that far.
    pub operation: Option<String>,
    pub caller_arn: Option<String>,
    pub bucket: Option<String>,
    pub key: Option<String>,
    /// The bucket or object ARN, then the KMS key ARNs the operation used.
    pub resources: Arc<Mutex<Vec<String>>>,
}

impl AuditSlot {
    pub fn record(&self, update: impl FnOnce(&mut S3Call)) {
        update(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// The call as recorded so far.
    pub fn snapshot(&self) -> S3Call {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The resource list KMS calls made for this request record into.
    pub(crate) fn resources(&self) -> Arc<Mutex<Vec<String>>> {
        Arc::clone(
            &self
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .resources,
        )
    }
}

impl S3Call {
    pub fn resource_list(&self) -> Vec<String> {
        self.resources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
