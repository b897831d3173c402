//! An attached volume's data path: a sparse file of XTS-encrypted 4 KiB sectors.
//!
//! A sector whose ciphertext is all zeros has never been written (or was trimmed): it reads
//! as zeros and costs no disk space. A written sector's ciphertext is all zeros with
//! probability 2^-32768, so the two never collide. Unaligned writes read, patch and rewrite
//! their first and last sectors under a per-sector lock.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use rustix::fs::{FallocateFlags, fallocate};

use crate::gate::WriteGate;
use crate::sector::{SECTOR_SIZE, SectorCipher};

const SECTOR: u64 = SECTOR_SIZE as u64;
/// Locks striped by sector number, taken only around read-modify-write of partial sectors.
const EDGE_LOCKS: usize = 64;

/// What a request asked that the volume cannot do; the NBD layer maps it to an errno.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("request [{offset}, +{length}) is outside the volume of {size} bytes")]
    OutOfRange { offset: u64, length: u64, size: u64 },
    #[error("the volume was detached")]
    Detached,
    #[error(transparent)]
    Io(#[from] io::Error),
}

pub struct Disk {
    file: File,
    size: u64,
    /// `None` once detached: the key schedule is dropped (and wiped) at detach even while an
    /// NBD connection still holds this disk.
    cipher: RwLock<Option<SectorCipher>>,
    gate: Arc<WriteGate>,
    edge_locks: Vec<Mutex<()>>,
    detached: AtomicBool,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Disk {
    /// Serves `file` (already `size` bytes long) with `cipher`; writes pass through `gate`.
    pub fn new(file: File, size: u64, cipher: SectorCipher, gate: Arc<WriteGate>) -> Self {
        Self {
            file,
            size,
            cipher: RwLock::new(Some(cipher)),
            gate,
            edge_locks: (0..EDGE_LOCKS).map(|_| Mutex::new(())).collect(),
            detached: AtomicBool::new(false),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Refuses every later request (connections still open see `Detached`) and wipes the key
    /// once requests in flight finish.
    pub fn detach(&self) {
        self.detached.store(true, Ordering::SeqCst);
        *self.cipher.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn is_detached(&self) -> bool {
        self.detached.load(Ordering::SeqCst)
    }

    /// Reads `out.len()` bytes at `offset`.
    pub fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), DiskError> {
        self.check(offset, out.len() as u64)?;
        let cipher = self.cipher();
        let cipher = cipher.as_ref().ok_or(DiskError::Detached)?;
        if out.is_empty() {
            return Ok(());
        }
        if offset.is_multiple_of(SECTOR) && out.len().is_multiple_of(SECTOR_SIZE) {
            self.file.read_exact_at(out, offset)?;
            decrypt_sectors(cipher, out, offset / SECTOR);
            return Ok(());
        }
        let (start, span) = sector_span(offset, out.len() as u64);
        let mut sectors = vec![0u8; span];
        self.file.read_exact_at(&mut sectors, start)?;
        decrypt_sectors(cipher, &mut sectors, start / SECTOR);
        let skip = (offset - start) as usize;
        out.copy_from_slice(&sectors[skip..skip + out.len()]);
        Ok(())
    }

    /// Writes `data` at `offset`. `data` is used as scratch space (encrypted in place when the
    /// write is sector-aligned), so its contents are unspecified afterwards.
    pub fn write(&self, offset: u64, data: &mut [u8], durable: bool) -> Result<(), DiskError> {
        self.check(offset, data.len() as u64)?;
        let _pass = self.gate.enter();
        let cipher = self.cipher();
        let cipher = cipher.as_ref().ok_or(DiskError::Detached)?;
        if offset.is_multiple_of(SECTOR) && data.len().is_multiple_of(SECTOR_SIZE) {
            cipher.encrypt(data, offset / SECTOR);
            self.file.write_all_at(data, offset)?;
        } else {
            let length = data.len() as u64;
            self.patch(cipher, offset, length, |plain| plain.copy_from_slice(data))?;
        }
        if durable {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes `[offset, offset+length)` read as zeros: whole sectors become holes in the file
    /// (TRIM and WRITE_ZEROES both end here), partial ones are rewritten.
    pub fn zero(&self, offset: u64, length: u64, durable: bool) -> Result<(), DiskError> {
        self.check(offset, length)?;
        if length == 0 {
            return Ok(());
        }
        let _pass = self.gate.enter();
        let cipher = self.cipher();
        let cipher = cipher.as_ref().ok_or(DiskError::Detached)?;
        let end = offset + length;
        let first_whole = offset.div_ceil(SECTOR) * SECTOR;
        let end_whole = end / SECTOR * SECTOR;
        if first_whole < end_whole {
            fallocate(
                &self.file,
                FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                first_whole,
                end_whole - first_whole,
            )
            .map_err(io::Error::from)?;
            if offset < first_whole {
                self.patch(cipher, offset, first_whole - offset, |plain| plain.fill(0))?;
            }
            if end_whole < end {
                self.patch(cipher, end_whole, end - end_whole, |plain| plain.fill(0))?;
            }
        } else {
            self.patch(cipher, offset, length, |plain| plain.fill(0))?;
        }
        if durable {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes every write acknowledged so far durable.
    pub fn flush(&self) -> Result<(), DiskError> {
        if self.is_detached() {
            return Err(DiskError::Detached);
        }
        self.file.sync_data()?;
        Ok(())
    }

    /// Read-modify-write of the sectors around `[offset, offset+length)`: `edit` gets the
    /// plaintext of exactly that range.
    fn patch(
        &self,
        cipher: &SectorCipher,
        offset: u64,
        length: u64,
        edit: impl FnOnce(&mut [u8]),
    ) -> Result<(), DiskError> {
        let (start, span) = sector_span(offset, length);
        let first = start / SECTOR;
        let last = first + (span / SECTOR_SIZE) as u64 - 1;
        let _first_lock = self.edge_lock(first);
        let _last_lock = (self.stripe(last) != self.stripe(first)).then(|| self.edge_lock(last));
        let mut sectors = vec![0u8; span];
        let head = &mut sectors[..SECTOR_SIZE];
        self.file.read_exact_at(head, start)?;
        decrypt_sectors(cipher, head, first);
        if last != first {
            let tail = &mut sectors[span - SECTOR_SIZE..];
            self.file.read_exact_at(tail, last * SECTOR)?;
            decrypt_sectors(cipher, tail, last);
        }
        let skip = (offset - start) as usize;
        edit(&mut sectors[skip..skip + length as usize]);
        cipher.encrypt(&mut sectors, first);
        self.file.write_all_at(&sectors, start)?;
        Ok(())
    }

    fn cipher(&self) -> RwLockReadGuard<'_, Option<SectorCipher>> {
        self.cipher.read().unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self, offset: u64, length: u64) -> Result<(), DiskError> {
        if self.is_detached() {
            return Err(DiskError::Detached);
        }
        match offset.checked_add(length) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(DiskError::OutOfRange {
                offset,
                length,
                size: self.size,
            }),
        }
    }

    fn stripe(&self, sector: u64) -> usize {
        (sector % EDGE_LOCKS as u64) as usize
    }

    fn edge_lock(&self, sector: u64) -> std::sync::MutexGuard<'_, ()> {
        self.edge_locks[self.stripe(sector)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// Decrypts each sector of `sectors` in place, leaving never-written (all-zero) ones zero.
fn decrypt_sectors(cipher: &SectorCipher, sectors: &mut [u8], first: u64) {
    for (index, sector) in sectors.chunks_exact_mut(SECTOR_SIZE).enumerate() {
        if !is_zero(sector) {
            cipher.decrypt(sector, first + index as u64);
        }
    }
}

/// The sector-aligned range covering `[offset, offset+length)`: its start and its length.
fn sector_span(offset: u64, length: u64) -> (u64, usize) {
    let start = offset / SECTOR * SECTOR;
    let end = (offset + length).div_ceil(SECTOR) * SECTOR;
    (start, (end - start) as usize)
}

pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&byte| byte == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrest_crypto::secret::SecretBytes;
    use proptest::prelude::*;

    const SIZE: u64 = 64 * 1024;

    fn disk(dir: &std::path::Path) -> Disk {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("disk.img"))
            .expect("create");
        file.set_len(SIZE).expect("size");
        let key = SecretBytes::new((0..64).collect());
        let cipher = SectorCipher::new(&key).expect("key");
        Disk::new(file, SIZE, cipher, Arc::default())
    }

    fn temp_dir() -> std::path::PathBuf {
        let mut name = [0u8; 8];
        atrest_crypto::random::fill(&mut name);
        let dir =
            std::env::temp_dir().join(format!("atrest-disk-{:016x}", u64::from_le_bytes(name)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any sequence of writes and zeroings reads back like the same edits on a plain
        /// buffer, and the file never holds a written byte pattern in the clear.
        #[test]
        fn behaves_like_a_plain_buffer(
            edits in proptest::collection::vec((0u64..SIZE, 1usize..9000, any::<bool>(), any::<u8>()), 1..12)
        ) {
            let dir = temp_dir();
            let disk = disk(&dir);
            let mut model = vec![0u8; SIZE as usize];
            for (offset, length, zero, fill) in edits {
                let length = length.min((SIZE - offset) as usize);
                let end = offset as usize + length;
                if zero {
                    disk.zero(offset, length as u64, false).expect("zero");
                    model[offset as usize..end].fill(0);
                } else {
                    let mut data = vec![fill | 1; length];
                    disk.write(offset, &mut data, false).expect("write");
                    model[offset as usize..end].fill(fill | 1);
                }
            }
            let mut all = vec![0u8; SIZE as usize];
            disk.read(0, &mut all).expect("read");
            prop_assert_eq!(&all, &model);
            let mut piece = vec![0u8; 5000];
            disk.read(777, &mut piece).expect("unaligned read");
            prop_assert_eq!(&piece[..], &model[777..5777]);
            let raw = std::fs::read(dir.join("disk.img")).expect("raw");
            prop_assert!(!raw.windows(64).any(|w| w.iter().all(|&b| b == w[0] && b != 0)));
            std::fs::remove_dir_all(&dir).ok();
        }
    }

    #[test]
    fn refuses_out_of_range_and_detached_requests() {
        let dir = temp_dir();
        let disk = disk(&dir);
        let mut buf = vec![0u8; 10];
        assert!(matches!(
            disk.read(SIZE - 5, &mut buf),
            Err(DiskError::OutOfRange { .. })
        ));
        assert!(matches!(
            disk.write(u64::MAX - 2, &mut buf, false),
            Err(DiskError::OutOfRange { .. })
        ));
        assert!(matches!(
            disk.zero(SIZE, 1, false),
            Err(DiskError::OutOfRange { .. })
        ));
        disk.detach();
        assert!(matches!(disk.read(0, &mut buf), Err(DiskError::Detached)));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn trimmed_sectors_become_holes() {
        let dir = temp_dir();
        let disk = disk(&dir);
        let mut data = vec![0xa5u8; SIZE as usize];
        disk.write(0, &mut data, true).expect("write");
        disk.zero(0, SIZE, true).expect("trim");
        let raw = std::fs::read(dir.join("disk.img")).expect("raw");
        assert!(is_zero(&raw));
        std::fs::remove_dir_all(&dir).ok();
    }
}
