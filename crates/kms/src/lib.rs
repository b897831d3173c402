//! The KMI management layer: an AWS-KMS-compatible key service over an [`atrest_hsm::Hsm`].
//!
//! [`Kms`] owns the rules (key states, usages, limits, AWS error types) and the metadata; key
//! material only ever passes through it wrapped, and every cryptographic operation happens
//! inside the HSM. The operations take and return the AWS wire shapes in [`api`], so the server
//! only decodes JSON and dispatches.

pub mod api;
mod clock;
mod error;
pub mod model;
mod ops;
mod principals;
mod resolve;
pub mod store;

use std::sync::Arc;

use atrest_hsm::Hsm;

pub use clock::Clock;
pub use error::KmsError;
pub use principals::{Caller, NewCredentials};
pub use store::{MetadataStore, RedbStore};

/// The key service. Cheap to share behind an `Arc`; every method is synchronous.
pub struct Kms {
    store: Arc<dyn MetadataStore>,
    hsm: Arc<dyn Hsm>,
    region: String,
    account: String,
    clock: Clock,
}

impl Kms {
    pub fn new(
        store: Arc<dyn MetadataStore>,
        hsm: Arc<dyn Hsm>,
        region: &str,
        account: &str,
        clock: Clock,
    ) -> Self {
        Self {
            store,
            hsm,
            region: region.to_owned(),
            account: account.to_owned(),
            clock,
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// Runs the work the server owes on a schedule: due automatic rotations, then deletion of
    /// keys whose waiting period has passed. Returns how many keys each step touched.
    pub fn run_due_work(&self) -> Result<(usize, usize), KmsError> {
        let now = self.clock.now();
        let rotated = self.rotate_due_keys(now)?;
        let deleted = self.delete_due_keys(now)?;
        Ok((rotated, deleted))
    }
}
