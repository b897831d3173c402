//! The volume service behind the EC2 API: volumes, attachments, snapshots, and the account's
//! EBS encryption defaults. Every volume is encrypted; its key comes from the KMS as
//! `GenerateDataKeyWithoutPlaintext` (64 bytes for XTS-AES-256) with the encryption context
//! `aws:ebs:id = <volume id>`, and exists in plaintext only while the volume is attached.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use atrest_kms::api::{Blob, DecryptRequest, GenerateDataKeyRequest, KeyIdRequest};
use atrest_kms::{Kms, RequestContext};
use redb::Database;

use crate::disk::Disk;
use crate::error::Ec2Error;
use crate::files::{self, Transform};
use crate::filter::{Filter, matches, tag_field};
use crate::gate::{ClosedGate, WriteGate};
use crate::sector::{SectorCipher, VOLUME_KEY_LEN};
use crate::store::{
    Attachment, SnapshotRecord, SnapshotState, Store, StoreError, VolumeRecord, VolumeState,
    WrappedKey,
};

const GIB: u64 = 1 << 30;
/// EC2's limit for gp2/gp3 volumes.
const MAX_SIZE_GIB: u64 = 16_384;
/// AWS's size range per volume type (EC2 User Guide, "Amazon EBS volume types").
fn size_range_gib(volume_type: &str) -> (u64, u64) {
    match volume_type {
        "standard" => (1, 1024),
        "io1" | "io2" => (4, MAX_SIZE_GIB),
        "st1" | "sc1" => (125, MAX_SIZE_GIB),
        _ => (1, MAX_SIZE_GIB),
    }
}
const VOLUME_TYPES: &[&str] = &["standard", "gp2", "gp3", "io1", "io2", "st1", "sc1"];
/// The encryption-context key EBS binds a volume key to.
const CONTEXT_KEY: &str = "aws:ebs:id";

/// CreateVolume's parameters.
#[derive(Debug, Default)]
pub struct NewVolume {
    pub size_gib: Option<u64>,
    pub snapshot_id: Option<String>,
    pub kms_key_id: Option<String>,
    pub volume_type: Option<String>,
    pub availability_zone: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// DescribeVolumes/DescribeSnapshots paging: `MaxResults` and the previous page's token.
#[derive(Debug, Default)]
pub struct Page {
    pub max_results: Option<usize>,
    pub next_token: Option<String>,
}

pub struct Volumes {
    kms: Arc<Kms>,
    store: Store,
    volume_dir: PathBuf,
    snapshot_dir: PathBuf,
    via_service: String,
    /// Attached volumes by id: what the NBD server exports.
    attached: Mutex<HashMap<String, Arc<Disk>>>,
    gates: Mutex<HashMap<String, Arc<WriteGate>>>,
    /// Serializes state changes (attach, detach, delete), which read then write a record.
    transitions: Mutex<()>,
}

impl std::fmt::Debug for Volumes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volumes")
            .field("volume_dir", &self.volume_dir)
            .finish_non_exhaustive()
    }
}

impl Volumes {
    /// Opens the service on `data_dir/ebs`. Attachments do not survive a restart (their keys
    /// were only in memory): attached volumes come back `available`, and snapshots whose copy
    /// was cut short come back `error`.
    pub fn open(kms: Arc<Kms>, db: Arc<Database>, data_dir: &Path) -> Result<Self, Ec2Error> {
        let volume_dir = data_dir.join("ebs").join("volumes");
        let snapshot_dir = data_dir.join("ebs").join("snapshots");
        std::fs::create_dir_all(&volume_dir)?;
        std::fs::create_dir_all(&snapshot_dir)?;
        files::remove_leftovers(&volume_dir)?;
        files::remove_leftovers(&snapshot_dir)?;
        let store = Store::open(db)?.with_seal(kms.record_seal())?;
        for mut record in store.volumes()? {
            if record.state == VolumeState::InUse {
                tracing::info!(volume = %record.id, "volume was attached when the server stopped; it is available again");
                record.state = VolumeState::Available;
                record.attachment = None;
                store.put_volume(&record)?;
            }
        }
        for mut record in store.snapshots()? {
            if record.state == SnapshotState::Pending {
                tracing::warn!(snapshot = %record.id, "snapshot copy was interrupted; marking it error");
                record.state = SnapshotState::Error;
                store.put_snapshot(&record)?;
            }
        }
        let volume_ids: Vec<String> = store.volumes()?.into_iter().map(|v| v.id).collect();
        let snapshot_ids: Vec<String> = store.snapshots()?.into_iter().map(|s| s.id).collect();
        files::remove_orphans(&volume_dir, &volume_ids)?;
        files::remove_orphans(&snapshot_dir, &snapshot_ids)?;
        let via_service = format!("ec2.{}.amazonaws.com", kms.region());
        Ok(Self {
            kms,
            store,
            volume_dir,
            snapshot_dir,
            via_service,
            attached: Mutex::default(),
            gates: Mutex::default(),
            transitions: Mutex::default(),
        })
    }

    pub fn region(&self) -> &str {
        self.kms.region()
    }

    pub fn account(&self) -> &str {
        self.kms.account()
    }

    /// The attached volume `name`, for the NBD server.
    pub fn export(&self, name: &str) -> Option<Arc<Disk>> {
        lock(&self.attached).get(name).cloned()
    }

    /// The ids of attached volumes, sorted.
    pub fn export_names(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.attached).keys().cloned().collect();
        names.sort();
        names
    }

    pub fn create_volume(
        &self,
        ctx: &RequestContext,
        request: NewVolume,
    ) -> Result<VolumeRecord, Ec2Error> {
        let id = new_id("vol");
        self.authorize(ctx, "ec2:CreateVolume", &self.volume_arn(&id))?;
        let availability_zone = self.check_zone(request.availability_zone.as_deref())?;
        let volume_type = request.volume_type.unwrap_or_else(|| "gp2".into());
        if !VOLUME_TYPES.contains(&volume_type.as_str()) {
            return Err(Ec2Error::invalid_parameter(format!(
                "Value ({volume_type}) for parameter volumeType is invalid."
            )));
        }
        let snapshot = match &request.snapshot_id {
            Some(snapshot_id) => Some(self.completed_snapshot(snapshot_id)?),
            None => None,
        };
        let size_gib = match (request.size_gib, &snapshot) {
            (Some(size), _) => size,
            (None, Some(snapshot)) => snapshot.volume_size_gib,
            (None, None) => {
                return Err(Ec2Error::missing_parameter("size or snapshotId"));
            }
        };
        let (minimum, maximum) = size_range_gib(&volume_type);
        if !(minimum..=maximum).contains(&size_gib) {
            let limit = if size_gib < minimum {
                format!("too small; minimum is {minimum}GiB")
            } else {
                format!("too large; maximum is {maximum}GiB")
            };
            return Err(Ec2Error::invalid_parameter(format!(
                "Volume of {size_gib}GiB is {limit} for volume type {volume_type}."
            )));
        }
        if let Some(snapshot) = &snapshot
            && size_gib < snapshot.volume_size_gib
        {
            return Err(Ec2Error::invalid_parameter(format!(
                "Volume of {size_gib}GiB is smaller than snapshot '{}', which is {}GiB.",
                snapshot.id, snapshot.volume_size_gib
            )));
        }
        let path = self.volume_path(&id);
        let key = match (&snapshot, &request.kms_key_id) {
            (None, requested) => {
                let key_id = self.key_or_default(requested.as_deref())?;
                let key = self.new_wrapped_key(ctx, &key_id, &id)?;
                files::create_sparse(&path, size_gib * GIB)
                    .map_err(|error| too_large_for_the_file_system(error, size_gib))?;
                key
            }
            (Some(snapshot), None) => {
                let source = File::open(self.snapshot_path(&snapshot.id))?;
                files::copy_sparse(&source, &path, size_gib * GIB, Transform::Keep)
                    .map_err(|error| too_large_for_the_file_system(error, size_gib))?;
                snapshot.key.clone()
            }
            (Some(snapshot), Some(requested)) => {
                let from = self.unwrap(ctx, &snapshot.key)?;
                let key_id = self.key_or_default(Some(requested))?;
                let (key, to) = self.new_key(ctx, &key_id, &id)?;
                let source = File::open(self.snapshot_path(&snapshot.id))?;
                let transform = Transform::Reencrypt {
                    from: &from,
                    to: &to,
                };
                files::copy_sparse(&source, &path, size_gib * GIB, transform)
                    .map_err(|error| too_large_for_the_file_system(error, size_gib))?;
                key
            }
        };
        let record = VolumeRecord {
            id,
            size_gib,
            volume_type,
            availability_zone,
            snapshot_id: request.snapshot_id,
            key,
            state: VolumeState::Available,
            attachment: None,
            create_time: self.now(),
            tags: request.tags,
        };
        if let Err(error) = self.store.put_volume(&record) {
            files::remove(&path).ok();
            return Err(error.into());
        }
        Ok(record)
    }

    pub fn describe_volumes(
        &self,
        ctx: &RequestContext,
        ids: &[String],
        filters: &[Filter],
        page: &Page,
    ) -> Result<(Vec<VolumeRecord>, Option<String>), Ec2Error> {
        self.authorize(ctx, "ec2:DescribeVolumes", "*")?;
        let selected = select(
            ids,
            || self.store.volumes(),
            |id| self.store.volume(id),
            Ec2Error::volume_not_found,
            |record| matches(filters, |name| volume_field(record, name)),
        )?;
        paginate(selected, page, |record| &record.id, ids.is_empty())
    }

    pub fn delete_volume(&self, ctx: &RequestContext, id: &str) -> Result<(), Ec2Error> {
        self.authorize(ctx, "ec2:DeleteVolume", &self.volume_arn(id))?;
        let _transition = lock(&self.transitions);
        let record = self.volume(id)?;
        if let Some(attachment) = &record.attachment {
            return Err(Ec2Error::client(
                "VolumeInUse",
                format!(
                    "Volume {id} is currently attached to {}",
                    attachment.instance_id
                ),
            ));
        }
        self.store.remove_volume(id)?;
        files::remove(&self.volume_path(id))?;
        lock(&self.gates).remove(id);
        Ok(())
    }

    /// Unwraps the volume key through the KMS (so a disabled key or a denying policy stops
    /// the attach) and exports the volume over NBD.
    pub fn attach_volume(
        &self,
        ctx: &RequestContext,
        id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<(VolumeRecord, Attachment), Ec2Error> {
        self.authorize(ctx, "ec2:AttachVolume", &self.volume_arn(id))?;
        check_instance_id(instance_id)?;
        if !(device.starts_with("/dev/") || device.starts_with("xvd")) || device.len() > 32 {
            return Err(Ec2Error::invalid_parameter(format!(
                "Value ({device}) for parameter device is invalid. {device} is not a valid EBS device name."
            )));
        }
        let _transition = lock(&self.transitions);
        let mut record = self.volume(id)?;
        if record.state == VolumeState::InUse {
            return Err(Ec2Error::client(
                "VolumeInUse",
                format!("{id} is already attached to an instance"),
            ));
        }
        let cipher = self.unwrap(ctx, &record.key)?;
        let file = files::open_rw(&self.volume_path(id))?;
        let size = record.size_gib * GIB;
        if file.metadata()?.len() != size {
            return Err(Ec2Error::internal(format!(
                "the backing file of {id} is not {size} bytes long"
            )));
        }
        let disk = Arc::new(Disk::new(file, size, cipher, self.gate(id)));
        let attachment = Attachment {
            instance_id: instance_id.to_owned(),
            device: device.to_owned(),
            attach_time: self.now(),
        };
        record.state = VolumeState::InUse;
        record.attachment = Some(attachment.clone());
        self.store.put_volume(&record)?;
        lock(&self.attached).insert(id.to_owned(), disk);
        Ok((record, attachment))
    }

    /// Stops the export, makes its writes durable and drops the volume key.
    pub fn detach_volume(
        &self,
        ctx: &RequestContext,
        id: &str,
        instance_id: Option<&str>,
        device: Option<&str>,
    ) -> Result<(VolumeRecord, Attachment), Ec2Error> {
        self.authorize(ctx, "ec2:DetachVolume", &self.volume_arn(id))?;
        let _transition = lock(&self.transitions);
        let mut record = self.volume(id)?;
        let Some(attachment) = record.attachment.clone() else {
            return Err(Ec2Error::incorrect_state(format!(
                "Volume '{id}' is in the '{}' state.",
                record.state.as_str()
            )));
        };
        let wrong_instance = instance_id.is_some_and(|given| given != attachment.instance_id);
        let wrong_device = device.is_some_and(|given| given != attachment.device);
        if wrong_instance || wrong_device {
            return Err(Ec2Error::client(
                "InvalidAttachment.NotFound",
                format!(
                    "The volume '{id}' is not attached to instance '{}' as device '{}'",
                    instance_id.unwrap_or(&attachment.instance_id),
                    device.unwrap_or(&attachment.device)
                ),
            ));
        }
        if let Some(disk) = lock(&self.attached).remove(id) {
            let synced = disk.flush();
            disk.detach();
            synced.map_err(|error| Ec2Error::internal(format!("flushing {id}: {error}")))?;
        }
        record.state = VolumeState::Available;
        record.attachment = None;
        self.store.put_volume(&record)?;
        Ok((record, attachment))
    }

    /// Starts a point-in-time snapshot: writes are held from now until the copy is done, so
    /// the snapshot has every write acknowledged before this call and none after it.
    pub fn create_snapshot(
        &self,
        ctx: &RequestContext,
        volume_id: &str,
        description: Option<String>,
        tags: Vec<(String, String)>,
    ) -> Result<SnapshotRecord, Ec2Error> {
        let id = new_id("snap");
        self.authorize(ctx, "ec2:CreateSnapshot", &self.volume_arn(volume_id))?;
        let volume = self.volume(volume_id)?;
        let closed = self.gate(volume_id).close();
        let source = File::open(self.volume_path(volume_id))?;
        let record = SnapshotRecord {
            id,
            volume_id: volume_id.to_owned(),
            volume_size_gib: volume.size_gib,
            description: description.unwrap_or_default(),
            key: volume.key.clone(),
            state: SnapshotState::Pending,
            start_time: self.now(),
            tags,
        };
        self.start_snapshot_copy(record, source, None, Some(closed))
    }

    /// Copies a completed snapshot; with `kms_key_id`, re-encrypts it under a new volume key
    /// from that KMS key.
    pub fn copy_snapshot(
        &self,
        ctx: &RequestContext,
        source_id: &str,
        description: Option<String>,
        kms_key_id: Option<&str>,
        tags: Vec<(String, String)>,
    ) -> Result<SnapshotRecord, Ec2Error> {
        let id = new_id("snap");
        self.authorize(ctx, "ec2:CopySnapshot", &self.snapshot_arn(source_id))?;
        let source = self.completed_snapshot(source_id)?;
        let (key, ciphers) = match kms_key_id {
            None => (source.key.clone(), None),
            Some(requested) => {
                let from = self.unwrap(ctx, &source.key)?;
                let key_id = self.key_or_default(Some(requested))?;
                let (key, to) = self.new_key(ctx, &key_id, &id)?;
                (key, Some((from, to)))
            }
        };
        let input = File::open(self.snapshot_path(source_id))?;
        let record = SnapshotRecord {
            id,
            volume_id: source.volume_id.clone(),
            volume_size_gib: source.volume_size_gib,
            description: description.unwrap_or_default(),
            key,
            state: SnapshotState::Pending,
            start_time: self.now(),
            tags,
        };
        self.start_snapshot_copy(record, input, ciphers, None)
    }

    /// Records `record` as pending and copies `input` into its file on a thread (re-encrypting
    /// from the first cipher to the second when given); `closed`, a volume's write gate held
    /// shut, reopens when the copy is done.
    fn start_snapshot_copy(
        &self,
        record: SnapshotRecord,
        input: File,
        ciphers: Option<(SectorCipher, SectorCipher)>,
        closed: Option<ClosedGate>,
    ) -> Result<SnapshotRecord, Ec2Error> {
        self.store.put_snapshot(&record)?;
        let (store, target) = (self.store.clone(), self.snapshot_path(&record.id));
        let finished = record.clone();
        std::thread::spawn(move || {
            let transform = match &ciphers {
                None => Transform::Keep,
                Some((from, to)) => Transform::Reencrypt { from, to },
            };
            let size = finished.volume_size_gib * GIB;
            let copied = files::copy_sparse(&input, &target, size, transform);
            drop(closed);
            drop(ciphers);
            finish_snapshot(&store, finished, copied);
        });
        Ok(record)
    }

    pub fn describe_snapshots(
        &self,
        ctx: &RequestContext,
        ids: &[String],
        filters: &[Filter],
        page: &Page,
    ) -> Result<(Vec<SnapshotRecord>, Option<String>), Ec2Error> {
        self.authorize(ctx, "ec2:DescribeSnapshots", "*")?;
        let account = self.account();
        let selected = select(
            ids,
            || self.store.snapshots(),
            |id| self.store.snapshot(id),
            Ec2Error::snapshot_not_found,
            |record| matches(filters, |name| snapshot_field(record, account, name)),
        )?;
        paginate(selected, page, |record| &record.id, ids.is_empty())
    }

    pub fn delete_snapshot(&self, ctx: &RequestContext, id: &str) -> Result<(), Ec2Error> {
        self.authorize(ctx, "ec2:DeleteSnapshot", &self.snapshot_arn(id))?;
        let _transition = lock(&self.transitions);
        let record = self
            .store
            .snapshot(id)?
            .ok_or_else(|| Ec2Error::snapshot_not_found(id))?;
        if record.state == SnapshotState::Pending {
            return Err(Ec2Error::incorrect_state(format!(
                "Snapshot '{id}' is still pending."
            )));
        }
        self.store.remove_snapshot(id)?;
        files::remove(&self.snapshot_path(id))?;
        Ok(())
    }

    /// `EbsEncryptionByDefault`: always true, because atrest encrypts every volume.
    pub fn encryption_by_default(
        &self,
        ctx: &RequestContext,
        action: &str,
    ) -> Result<bool, Ec2Error> {
        self.authorize(ctx, &format!("ec2:{action}"), "*")?;
        Ok(true)
    }

    /// The KMS key ARN (or alias ARN) new volumes use when CreateVolume names none.
    pub fn default_kms_key(&self, ctx: &RequestContext) -> Result<String, Ec2Error> {
        self.authorize(ctx, "ec2:GetEbsDefaultKmsKeyId", "*")?;
        Ok(match self.store.default_kms_key()? {
            Some(key) => key,
            None => self.managed_alias_arn(),
        })
    }

    /// Sets the default key after checking through the KMS that the caller can see it.
    pub fn set_default_kms_key(
        &self,
        ctx: &RequestContext,
        key_id: &str,
    ) -> Result<String, Ec2Error> {
        self.authorize(ctx, "ec2:ModifyEbsDefaultKmsKeyId", "*")?;
        self.ensure_managed_key(key_id)?;
        let request = KeyIdRequest {
            key_id: key_id.to_owned(),
            grant_tokens: None,
        };
        let described = self.kms.describe_key(ctx, request).map_err(Ec2Error::kms)?;
        let arn = described.key_metadata.arn;
        self.store.set_default_kms_key(Some(&arn))?;
        Ok(arn)
    }

    pub fn reset_default_kms_key(&self, ctx: &RequestContext) -> Result<String, Ec2Error> {
        self.authorize(ctx, "ec2:ResetEbsDefaultKmsKeyId", "*")?;
        self.store.set_default_kms_key(None)?;
        Ok(self.managed_alias_arn())
    }

    /// Whether the caller's IAM policies allow `ec2:<action>` at all (for DryRun).
    pub fn check_permission(&self, ctx: &RequestContext, action: &str) -> Result<(), Ec2Error> {
        self.authorize(ctx, &format!("ec2:{action}"), "*")
    }

    fn volume(&self, id: &str) -> Result<VolumeRecord, Ec2Error> {
        self.store
            .volume(id)?
            .ok_or_else(|| Ec2Error::volume_not_found(id))
    }

    fn completed_snapshot(&self, id: &str) -> Result<SnapshotRecord, Ec2Error> {
        let snapshot = self
            .store
            .snapshot(id)?
            .ok_or_else(|| Ec2Error::snapshot_not_found(id))?;
        if snapshot.state != SnapshotState::Completed {
            return Err(Ec2Error::incorrect_state(format!(
                "Snapshot '{id}' is in the '{}' state.",
                snapshot.state.as_str()
            )));
        }
        Ok(snapshot)
    }

    fn gate(&self, volume_id: &str) -> Arc<WriteGate> {
        Arc::clone(lock(&self.gates).entry(volume_id.to_owned()).or_default())
    }

    fn authorize(
        &self,
        ctx: &RequestContext,
        action: &str,
        resource: &str,
    ) -> Result<(), Ec2Error> {
        self.kms
            .authorize_identity(ctx, action, resource)
            .map_err(Ec2Error::unauthorized)
    }

    fn key_or_default(&self, requested: Option<&str>) -> Result<String, Ec2Error> {
        let key_id = match requested {
            Some(key_id) => key_id.to_owned(),
            None => match self.store.default_kms_key()? {
                Some(key_id) => key_id,
                None => return self.managed_key(),
            },
        };
        self.ensure_managed_key(&key_id)?;
        Ok(key_id)
    }

    /// `alias/aws/ebs` exists once anything asks for it.
    fn ensure_managed_key(&self, key_id: &str) -> Result<(), Ec2Error> {
        if key_id == "alias/aws/ebs" || key_id == self.managed_alias_arn() {
            self.managed_key()?;
        }
        Ok(())
    }

    fn managed_key(&self) -> Result<String, Ec2Error> {
        self.kms
            .aws_managed_key_via("ebs", "ec2")
            .map_err(Ec2Error::kms)
    }

    fn managed_alias_arn(&self) -> String {
        format!(
            "arn:aws:kms:{}:{}:alias/aws/ebs",
            self.region(),
            self.account()
        )
    }

    fn new_wrapped_key(
        &self,
        ctx: &RequestContext,
        key_id: &str,
        resource: &str,
    ) -> Result<WrappedKey, Ec2Error> {
        let context = key_context(resource);
        let response = self
            .kms
            .generate_data_key_without_plaintext(&self.via(ctx), data_key_request(key_id, &context))
            .map_err(Ec2Error::kms)?;
        Ok(WrappedKey {
            kms_key_arn: response.key_id,
            blob: response.ciphertext_blob.0,
            context,
        })
    }

    /// A new volume key, wrapped and in plaintext (for re-encrypting a copy).
    fn new_key(
        &self,
        ctx: &RequestContext,
        key_id: &str,
        resource: &str,
    ) -> Result<(WrappedKey, SectorCipher), Ec2Error> {
        let context = key_context(resource);
        let response = self
            .kms
            .generate_data_key(&self.via(ctx), data_key_request(key_id, &context))
            .map_err(Ec2Error::kms)?;
        let plaintext = response
            .plaintext
            .ok_or_else(|| Ec2Error::internal("the KMS returned no plaintext data key"))?;
        let cipher = SectorCipher::new(&plaintext.0)
            .ok_or_else(|| Ec2Error::internal("the KMS returned an unusable volume key"))?;
        let key = WrappedKey {
            kms_key_arn: response.key_id,
            blob: response.ciphertext_blob.0,
            context,
        };
        Ok((key, cipher))
    }

    fn unwrap(&self, ctx: &RequestContext, key: &WrappedKey) -> Result<SectorCipher, Ec2Error> {
        let request = DecryptRequest {
            ciphertext_blob: Blob(key.blob.clone()),
            key_id: Some(key.kms_key_arn.clone()),
            encryption_context: Some(key.context.clone()),
            encryption_algorithm: None,
            grant_tokens: None,
        };
        let response = self
            .kms
            .decrypt(&self.via(ctx), request)
            .map_err(Ec2Error::kms)?;
        SectorCipher::new(&response.plaintext.0)
            .ok_or_else(|| Ec2Error::internal("a stored volume key has the wrong length"))
    }

    fn via(&self, ctx: &RequestContext) -> RequestContext {
        ctx.acting_via(&self.via_service)
    }

    fn check_zone(&self, zone: Option<&str>) -> Result<String, Ec2Error> {
        let Some(zone) = zone else {
            return Err(Ec2Error::missing_parameter("AvailabilityZone"));
        };
        let valid = zone
            .strip_prefix(self.region())
            .is_some_and(|suffix| suffix.len() == 1 && suffix.as_bytes()[0].is_ascii_lowercase());
        if !valid {
            return Err(Ec2Error::invalid_parameter(format!(
                "Invalid availability zone: [{zone}]"
            )));
        }
        Ok(zone.to_owned())
    }

    fn volume_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:ec2:{}:{}:volume/{id}",
            self.region(),
            self.account()
        )
    }

    fn snapshot_arn(&self, id: &str) -> String {
        format!("arn:aws:ec2:{}::snapshot/{id}", self.region())
    }

    fn volume_path(&self, id: &str) -> PathBuf {
        self.volume_dir.join(format!("{id}.img"))
    }

    fn snapshot_path(&self, id: &str) -> PathBuf {
        self.snapshot_dir.join(format!("{id}.img"))
    }

    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() as i64)
    }
}

/// The records named by `ids` (each must exist), or all of them, that pass `keep`.
fn select<T>(
    ids: &[String],
    all: impl FnOnce() -> Result<Vec<T>, StoreError>,
    one: impl Fn(&str) -> Result<Option<T>, StoreError>,
    missing: fn(&str) -> Ec2Error,
    keep: impl Fn(&T) -> Result<bool, Ec2Error>,
) -> Result<Vec<T>, Ec2Error> {
    let records = if ids.is_empty() {
        all()?
    } else {
        ids.iter()
            .map(|id| one(id)?.ok_or_else(|| missing(id)))
            .collect::<Result<_, _>>()?
    };
    let mut selected = Vec::new();
    for record in records {
        if keep(&record)? {
            selected.push(record);
        }
    }
    Ok(selected)
}

fn finish_snapshot(store: &Store, mut record: SnapshotRecord, copied: std::io::Result<()>) {
    record.state = match copied {
        Ok(()) => SnapshotState::Completed,
        Err(error) => {
            tracing::error!(snapshot = %record.id, %error, "snapshot copy failed");
            SnapshotState::Error
        }
    };
    // A snapshot deleted while it was copying stays deleted.
    match store.snapshot(&record.id) {
        Ok(Some(_)) => {
            if let Err(error) = store.put_snapshot(&record) {
                tracing::error!(snapshot = %record.id, %error, "could not record the snapshot's state");
            }
        }
        Ok(None) => {}
        Err(error) => tracing::error!(snapshot = %record.id, %error, "could not read the snapshot"),
    }
}

fn key_context(resource: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(CONTEXT_KEY.to_owned(), resource.to_owned())])
}

fn data_key_request(key_id: &str, context: &BTreeMap<String, String>) -> GenerateDataKeyRequest {
    GenerateDataKeyRequest {
        key_id: key_id.to_owned(),
        encryption_context: Some(context.clone()),
        number_of_bytes: Some(VOLUME_KEY_LEN as i64),
        key_spec: None,
        grant_tokens: None,
    }
}

fn volume_field(record: &VolumeRecord, name: &str) -> Option<Vec<String>> {
    let one = |value: &str| Some(vec![value.to_owned()]);
    let attachment = record.attachment.as_ref();
    match name {
        "volume-id" => one(&record.id),
        "status" => one(record.state.as_str()),
        "size" => one(&record.size_gib.to_string()),
        "snapshot-id" => one(record.snapshot_id.as_deref().unwrap_or("")),
        "availability-zone" => one(&record.availability_zone),
        "volume-type" => one(&record.volume_type),
        "encrypted" => one("true"),
        "attachment.instance-id" => Some(
            attachment
                .map(|a| a.instance_id.clone())
                .into_iter()
                .collect(),
        ),
        "attachment.device" => Some(attachment.map(|a| a.device.clone()).into_iter().collect()),
        "attachment.status" => Some(
            attachment
                .map(|_| "attached".to_owned())
                .into_iter()
                .collect(),
        ),
        other => tag_field(other, &record.tags),
    }
}

fn snapshot_field(record: &SnapshotRecord, account: &str, name: &str) -> Option<Vec<String>> {
    let one = |value: &str| Some(vec![value.to_owned()]);
    match name {
        "snapshot-id" => one(&record.id),
        "volume-id" => one(&record.volume_id),
        "status" => one(record.state.as_str()),
        "owner-id" => one(account),
        "description" => one(&record.description),
        "volume-size" => one(&record.volume_size_gib.to_string()),
        "encrypted" => one("true"),
        "kms-key-id" => one(&record.key.kms_key_arn),
        other => tag_field(other, &record.tags),
    }
}

/// EC2 paging: `MaxResults` (5–1000) only without explicit ids; the token is the last id
/// of the previous page.
fn paginate<T>(
    mut records: Vec<T>,
    page: &Page,
    id: impl Fn(&T) -> &String,
    may_page: bool,
) -> Result<(Vec<T>, Option<String>), Ec2Error> {
    records.sort_by(|a, b| id(a).cmp(id(b)));
    if let Some(token) = &page.next_token {
        records.retain(|record| id(record) > token);
    }
    let Some(max) = page.max_results else {
        return Ok((records, None));
    };
    if !may_page {
        return Err(Ec2Error::client(
            "InvalidParameterCombination",
            "The parameter ids cannot be used with the parameter maxResults",
        ));
    }
    if !(5..=1000).contains(&max) {
        return Err(Ec2Error::invalid_parameter(format!(
            "Value ( {max} ) for parameter maxResults is invalid. Expecting a value between 5 and 1000."
        )));
    }
    if records.len() <= max {
        return Ok((records, None));
    }
    records.truncate(max);
    let token = records.last().map(|record| id(record).clone());
    Ok((records, token))
}

fn check_instance_id(id: &str) -> Result<(), Ec2Error> {
    let valid = id.strip_prefix("i-").is_some_and(|hex| {
        (8..=17).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if valid {
        Ok(())
    } else {
        Err(Ec2Error::client(
            "InvalidInstanceID.Malformed",
            format!("Invalid id: \"{id}\""),
        ))
    }
}

/// `vol-` or `snap-` and 17 lowercase hex digits, as EC2 makes them.
fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 9];
    atrest_crypto::random::fill(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{}", &hex[..17])
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// EFBIG: the data directory's file system cannot hold a (sparse) file that large, which is a
/// property of the request on this server, not an internal error.
fn too_large_for_the_file_system(error: std::io::Error, size_gib: u64) -> Ec2Error {
    if error.raw_os_error() == Some(27) {
        return Ec2Error::invalid_parameter(format!(
            "Volume of {size_gib}GiB is larger than the volume store's file system can hold; \
             choose a smaller size."
        ));
    }
    error.into()
}
