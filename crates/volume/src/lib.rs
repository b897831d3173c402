//! Block volumes, the EBS model: each volume is a sparse file of AES-256-XTS sectors under a
//! volume key that the KMS wraps; the plaintext key lives in memory only while the volume is
//! attached. Snapshots are point-in-time copies; volumes are served over NBD.
//!
//! XTS gives confidentiality at rest without integrity, as dm-crypt's and EBS's sector
//! encryption do: a party that can write the backing files can scramble sectors undetected.

mod disk;
mod error;
mod files;
mod filter;
mod gate;
pub mod nbd;
mod sector;
mod service;
mod store;

pub use disk::{Disk, DiskError};
pub use error::Ec2Error;
pub use filter::Filter;
pub use gate::WriteGate;
pub use sector::{SECTOR_SIZE, SectorCipher, VOLUME_KEY_LEN};
pub use service::{NewVolume, Page, Volumes};
pub use store::{
    Attachment, SEALED_TABLES, SnapshotRecord, SnapshotState, VolumeRecord, VolumeState,
};

impl nbd::Exports for Volumes {
    fn export(&self, name: &str) -> Option<std::sync::Arc<Disk>> {
        Volumes::export(self, name)
    }

    fn export_names(&self) -> Vec<String> {
        Volumes::export_names(self)
    }
}
