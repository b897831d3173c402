//! Appending: each request chains its own record onto an in-memory tail, on its own thread
//! under a short lock, then waits for the flusher thread. The flusher writes and `fdatasync`s
//! in a loop while records wait, so one write and one sync cover everything chained while the
//! previous ones ran (group commit, as PostgreSQL's WAL writer does). A record is durable
//! before `append` returns, and so before the response is sent.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use crate::anchor::{Anchored, HeadAnchor};
use crate::chain::{GENESIS, Head, line_hash};
use crate::record::{Event, Record};
use crate::segments::{ROTATE_BYTES, last_finished_line, segment_name};
use crate::signer::DigestSigner;
use crate::{AuditError, DIGEST_EVERY, HEAD_FILE, LOG_FILE};

/// The next active file, prepared before a rotation swaps it in.
const NEXT_FILE: &str = ".audit.log.next";

/// The flusher keeps at least this much zero padding past the end of the log...
const PADDING_LOW_WATER: u64 = 1 << 20;
/// ...by adding this much at a time. Overwriting blocks that already exist lets `fdatasync`
/// skip the metadata journal commit an append needs (measured here: 144 µs against 424 µs for
/// 8 KiB).
const PADDING_STEP: u64 = 1 << 20;
/// The head is rewritten at most this often (and at every digest the flusher sees). Rewriting
/// it after every flush cost more than the flush (a rename each); between rewrites, cutting off
/// the newest records goes unnoticed until the next head, at most this long.
const HEAD_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// A digest record is written at least this often while records arrive.
const DIGEST_INTERVAL_SECONDS: u64 = 1;

type Ack = oneshot::Sender<Result<(), String>>;

#[derive(Debug)]
pub struct AuditLog {
    shared: Arc<Shared>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    /// The active file. Only the flusher thread writes it (and swaps it on rotation), so the
    /// lock is uncontended; it exists so rotation can replace the file.
    file: Mutex<File>,
    dir: PathBuf,
    signer: DigestSigner,
    tail: Mutex<Tail>,
    /// Wakes the flusher when records wait and it is idle, or when the log closes.
    wake: Condvar,
    /// Mirrors `Tail::failed.is_some()`, so every request can check it without the lock.
    unavailable: std::sync::atomic::AtomicBool,
    /// The active file is finished once its records reach this size.
    rotate_bytes: u64,
    /// Where every head is also kept, outside the log directory.
    anchor: Option<Arc<dyn HeadAnchor>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

/// The end of the chain: what the next record links to and where it goes.
struct Tail {
    seq: u64,
    prev: String,
    /// Records chained but not yet handed to the flusher, which writes them at `end`.
    pending: Vec<u8>,
    /// Where the pending records go: the log is preallocated with zeros past it.
    end: u64,
    since_digest: u64,
    last_digest: Instant,
    /// When signing a digest last failed (the HSM or its token unavailable): the records keep
    /// going down, chained and fsynced, and the digest is tried again an interval later.
    digest_failed_at: Option<Instant>,
    clock: SecondClock,
    /// The requests whose records are pending.
    waiting: Vec<Ack>,
    flusher_idle: bool,
    closing: bool,
    /// Set when a write or an `fdatasync` failed. Records chained after the failed ones are
    /// already pending, so the chain in memory is ahead of the file: every append fails (none
    /// is acknowledged unrecorded) until the flusher recovers the tail from what the file
    /// holds, as a restart would, and has room for the padding again.
    failed: Option<String>,
    /// The sequence number of the active file's first record (names it when it is finished).
    file_first_seq: u64,
}

/// The current time as ISO 8601, formatted once per second rather than once per record.
#[derive(Default)]
struct SecondClock {
    second: u64,
    text: String,
}

impl SecondClock {
    fn now(&mut self) -> &str {
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = atrest_sigv4::format_iso8601(i64::try_from(second).unwrap_or(i64::MAX));
        }
        &self.text
    }
}

/// How often a failed log tries to recover.
const RECOVERY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl AuditLog {
    /// Whether appends are accepted now; the reason when they are not (checked before a
    /// request acts, so a full disk refuses work instead of doing it unrecorded).
    pub fn available(&self) -> Result<(), AuditError> {
        if !self
            .shared
            .unavailable
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        match &self.shared.lock().failed {
            Some(message) => Err(AuditError::Unavailable(message.clone())),
            None => Ok(()),
        }
    }

    /// Opens (or creates) the log in `dir`, cutting off a record torn by a crash, and starts
    /// the flusher thread. Files are finished at [`ROTATE_BYTES`].
    pub fn open(dir: &Path, signer: DigestSigner) -> Result<Self, AuditError> {
        Self::open_rotating_at(dir, signer, ROTATE_BYTES)
    }

    /// [`AuditLog::open`], finishing each file once it holds `rotate_bytes` of records.
    pub fn open_rotating_at(
        dir: &Path,
        signer: DigestSigner,
        rotate_bytes: u64,
    ) -> Result<Self, AuditError> {
        Self::open_anchored(dir, signer, rotate_bytes, None)
    }

    /// [`AuditLog::open_rotating_at`], refusing a log that does not reach the head `anchor`
    /// holds, and keeping the anchor up to date with every head written.
    pub fn open_anchored(
        dir: &Path,
        signer: DigestSigner,
        rotate_bytes: u64,
        anchor: Option<Arc<dyn HeadAnchor>>,
    ) -> Result<Self, AuditError> {
        std::fs::create_dir_all(dir)?;
        let Recovered {
            file,
            seq,
            prev,
            end,
            allocated,
            first_seq,
        } = recover(dir)?;
        if let Some(anchor) = &anchor {
            let anchored = anchor.load().map_err(AuditError::Anchor)?;
            if let Some(anchored) = &anchored
                && !(anchored.seq == seq && anchored.hash == prev)
            {
                // Behind the log's end is normal after a crash (the anchor lags the head);
                // anything else means the log lost records or was replaced.
                let log = crate::segments::read_all(dir)?;
                if let Some(problem) = crate::anchor::check(&log, anchored) {
                    return Err(crate::anchor::refuse(problem));
                }
            }
            // The signed head is never ahead of the anchor (the anchor is written first): if
            // it is, the anchor is an older copy (rolled back).
            if let Some(head) = crate::chain::signed_head(dir, &signer)?
                && anchored
                    .as_ref()
                    .is_some_and(|anchored| anchored.seq < head.seq)
            {
                let anchored_seq = anchored.as_ref().map_or(0, |anchored| anchored.seq);
                return Err(AuditError::Anchor(format!(
                    "the audit anchor is older than the audit log: it anchors record \
                     {anchored_seq}, but the log's signed head is record {}. It was rolled back \
                     (or copied from an older data dir); restore the current one",
                    head.seq
                )));
            }
        }
        let shared = Arc::new(Shared {
            file: Mutex::new(file),
            dir: dir.to_path_buf(),
            signer,
            tail: Mutex::new(Tail {
                seq,
                prev,
                pending: Vec::with_capacity(64 << 10),
                end,
                since_digest: 0,
                last_digest: Instant::now(),
                digest_failed_at: None,
                clock: SecondClock::default(),
                waiting: Vec::new(),
                flusher_idle: false,
                closing: false,
                failed: None,
                file_first_seq: first_seq,
            }),
            wake: Condvar::new(),
            unavailable: std::sync::atomic::AtomicBool::new(false),
            rotate_bytes: rotate_bytes.max(1),
            anchor,
        });
        let flusher = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("audit-flusher".into())
                .spawn(move || shared.flush_loop(allocated))?
        };
        Ok(Self {
            shared,
            flusher: Some(flusher),
        })
    }

    /// Appends one record; returns once it is durable. The record is serialized and chained
    /// here, on the caller's thread; the flusher only writes and syncs.
    pub async fn append(&self, event: Event) -> Result<(), AuditError> {
        let fields = event_fields(&event.bounded())?;
        let (ack, done) = oneshot::channel();
        self.shared.write_record(&fields, ack)?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(AuditError::Unavailable(message)),
            Err(_) => Err(AuditError::WriterStopped),
        }
    }
}

/// Closing the log waits for the flusher to finish, then seals the log with a digest.
impl Drop for AuditLog {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        if let Err(error) = self.shared.seal() {
            tracing::error!(%error, "could not write the closing audit digest");
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Tail> {
        // Nothing under the lock panics; were it to, the chain fields are advanced together
        // after the line is built, so the tail is still one the next record can follow.
        self.tail.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Chains one record (and a digest, when one is due) onto the pending tail and queues
    /// `ack` for the flush that writes it.
    fn write_record(&self, fields: &[u8], ack: Ack) -> Result<(), AuditError> {
        let mut guard = self.lock();
        let tail = &mut *guard;
        if let Some(message) = &tail.failed {
            return Err(AuditError::Unavailable(message.clone()));
        }
        if tail.closing {
            return Err(AuditError::WriterStopped);
        }
        let mut pending = std::mem::take(&mut tail.pending);
        tail.push_line(&mut pending, fields, None);
        if tail.digest_due() {
            self.push_digest_or_retry_later(tail, &mut pending);
        }
        tail.pending = pending;
        tail.waiting.push(ack);
        if tail.flusher_idle {
            tail.flusher_idle = false;
            self.wake.notify_one();
        }
        Ok(())
    }

    /// A digest that cannot be signed must not stop the requests being recorded: the chain
    /// still links them, and the next digest that can be signed covers them. (Signing comes
    /// before any state changes, so a failure leaves the chain intact.)
    fn push_digest_or_retry_later(&self, tail: &mut Tail, buffer: &mut Vec<u8>) {
        match tail.push_digest(&self.signer, buffer) {
            Ok(()) => tail.digest_failed_at = None,
            Err(error) => {
                tail.digest_failed_at = Some(Instant::now());
                tracing::error!(%error, "could not sign an audit digest; records are written and the digest is retried");
            }
        }
    }

    /// Writes and syncs the pending records in a loop while requests wait for them; sleeps
    /// when none do. `allocated` is the file's length (records plus zero padding): records go
    /// over the padding while there is enough of it, else past the end of the file.
    fn flush_loop(&self, mut allocated: u64) {
        let mut last_head = Instant::now();
        let mut spare = Vec::with_capacity(64 << 10);
        loop {
            let (acks, buffer, offset, synced) = {
                let mut tail = self.lock();
                while tail.waiting.is_empty() && !tail.closing {
                    if tail.failed.is_some() {
                        drop(tail);
                        std::thread::sleep(RECOVERY_INTERVAL);
                        self.try_recover(&mut allocated);
                        tail = self.lock();
                        continue;
                    }
                    tail.flusher_idle = true;
                    tail = self.wake.wait(tail).unwrap_or_else(PoisonError::into_inner);
                }
                tail.flusher_idle = false;
                if tail.waiting.is_empty() {
                    return; // closing, and nothing left to flush
                }
                if let Some(message) = tail.failed.clone() {
                    // Chained before the failure was seen: refused, never written.
                    for ack in std::mem::take(&mut tail.waiting) {
                        let _ = ack.send(Err(message.clone()));
                    }
                    tail.pending.clear();
                    continue;
                }
                let buffer = std::mem::replace(&mut tail.pending, std::mem::take(&mut spare));
                let offset = tail.end;
                tail.end += buffer.len() as u64;
                (
                    std::mem::take(&mut tail.waiting),
                    buffer,
                    offset,
                    (tail.seq, tail.prev.clone(), tail.since_digest == 0),
                )
            };
            let result = {
                let file = self.active_file();
                file.write_all_at(&buffer, offset)
                    .and_then(|()| file.sync_data())
            }
            .map_err(|error| {
                    let message = format!("audit log write failed: {error}");
                    tracing::error!(%message, "requests are refused until the log can be written again");
                    self.lock().failed = Some(message.clone());
                    self.unavailable.store(true, std::sync::atomic::Ordering::Relaxed);
                    message
                });
            let buffer_len = buffer.len() as u64;
            spare = buffer;
            spare.clear();
            for ack in acks {
                let _ = ack.send(result.clone());
            }
            let (seq, prev, digest_just_written) = synced;
            if result.is_ok() && (digest_just_written || last_head.elapsed() >= HEAD_INTERVAL) {
                last_head = Instant::now();
                if let Err(error) = self.write_head(seq, &prev) {
                    // The head only speeds up checks of the log's end; a stale one understates it.
                    tracing::error!(%error, "could not update the audit head");
                }
            }
            let written_end = offset + buffer_len;
            if result.is_ok() && self.rotate_if_due(written_end, seq, &mut allocated) {
                continue; // the new file comes padded
            }
            if let Err(error) = self.keep_padding_ahead(written_end, &mut allocated) {
                // The disk cannot take the log's next reserve: fail closed now, while the
                // reserve still holds what was acknowledged, rather than let other writers
                // (the metadata store) run into the full disk first.
                let message = format!("the disk cannot take the audit log's reserve: {error}");
                tracing::error!(%message, "requests are refused until the log can be written again");
                self.lock().failed = Some(message);
                self.unavailable
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    fn active_file(&self) -> MutexGuard<'_, File> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Finishes the active file once it is past its rotation size: the next file is prepared
    /// (padded and synced) first, so a full disk only postpones the rotation; then the active
    /// file is cut to its records, renamed after its first record, and replaced. Holds the
    /// tail lock throughout, so no record is chained onto a file being swapped.
    /// `written_seq` is the last record written.
    fn rotate_if_due(&self, written_end: u64, written_seq: u64, allocated: &mut u64) -> bool {
        if written_end < self.rotate_bytes {
            return false;
        }
        let next = self.dir.join(NEXT_FILE);
        let prepared = (|| -> std::io::Result<File> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&next)?;
            file.write_all_at(&vec![0u8; PADDING_STEP as usize], 0)?;
            file.sync_all()?;
            Ok(file)
        })();
        let next_file = match prepared {
            Ok(file) => file,
            Err(error) => {
                tracing::warn!(%error, "could not start a new audit file; rotation postponed");
                let _ = std::fs::remove_file(&next);
                return false;
            }
        };
        let mut tail = self.lock();
        let finished = self.dir.join(segment_name(tail.file_first_seq));
        let swapped = (|| -> std::io::Result<()> {
            let mut file = self.active_file();
            file.set_len(tail.end)?;
            file.sync_all()?;
            std::fs::rename(self.dir.join(LOG_FILE), &finished)?;
            std::fs::rename(&next, self.dir.join(LOG_FILE))?;
            File::open(&self.dir)?.sync_all()?;
            *file = next_file;
            Ok(())
        })();
        match swapped {
            Ok(()) => {
                tail.end = 0;
                tail.file_first_seq = written_seq + 1;
                *allocated = PADDING_STEP;
                tracing::info!(finished = %finished.display(), "audit log file finished; a new one continues the chain");
                true
            }
            Err(error) => {
                let message = format!("audit log rotation failed: {error}");
                tracing::error!(%message, "requests are refused until the log can be written again");
                tail.failed = Some(message);
                self.unavailable
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                false
            }
        }
    }

    /// After a failed write: re-reads the log as the file holds it, cuts a batch left
    /// incomplete, and takes up the chain after its last complete line, once there is room
    /// for the padding again. Until then the log stays failed and requests are refused.
    fn try_recover(&self, allocated: &mut u64) {
        let recovered = (|| -> Result<(u64, String, u64, u64), AuditError> {
            let state = chain_state(&self.dir, &self.active_file())?;
            let mut room = state.allocated;
            self.keep_padding_ahead(state.end, &mut room)?;
            Ok((state.seq, state.prev, state.end, room))
        })();
        match recovered {
            Ok((seq, prev, end, room)) => {
                let mut tail = self.lock();
                for ack in std::mem::take(&mut tail.waiting) {
                    let _ = ack.send(Err("the audit log was recovering".into()));
                }
                tail.pending.clear();
                tail.seq = seq;
                tail.prev = prev;
                tail.end = end;
                tail.failed = None;
                self.unavailable
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                *allocated = room;
                tracing::warn!(seq, "the audit log is writable again; serving resumes");
            }
            Err(error) => tracing::debug!(%error, "the audit log is still not writable"),
        }
    }

    /// Grows the zero padding before records reach its end. Only this thread writes the file
    /// (records and padding), so nothing can land in the range while it is zeroed.
    fn keep_padding_ahead(&self, written_end: u64, allocated: &mut u64) -> Result<(), AuditError> {
        if *allocated >= written_end + PADDING_LOW_WATER {
            return Ok(());
        }
        let from = (*allocated).max(written_end);
        let zeros = vec![0u8; usize::try_from(PADDING_STEP).unwrap_or(0)];
        let file = self.active_file();
        file.write_all_at(&zeros, from)?;
        file.sync_all()?;
        *allocated = from + PADDING_STEP;
        Ok(())
    }

    /// The log is closing and the flusher has stopped: seal it with a digest and a head.
    fn seal(&self) -> Result<(), AuditError> {
        let mut tail = self.lock();
        if tail.failed.is_some() {
            return Ok(());
        }
        if tail.since_digest > 0 {
            let mut buffer = Vec::new();
            tail.push_digest(&self.signer, &mut buffer)?;
            self.active_file().write_all_at(&buffer, tail.end)?;
            tail.end += buffer.len() as u64;
        }
        // A cleanly closed file is plain JSON lines: the padding goes.
        let file = self.active_file();
        file.set_len(tail.end)?;
        file.sync_all()?;
        drop(file);
        self.write_head(tail.seq, &tail.prev)
    }

    /// Replaced atomically; not fsynced: after a crash a stale head only understates the log.
    fn write_head(&self, seq: u64, prev: &str) -> Result<(), AuditError> {
        let head = Head {
            seq,
            hash: prev.to_owned(),
            hmac: self.signer.sign(seq, prev)?,
        };
        let text = serde_json::to_vec(&head)
            .map_err(|error| AuditError::Io(std::io::Error::other(error)))?;
        // The anchor first: after a crash between the two, the metadata store is never behind
        // the signed head, so a metadata store that is behind it was rolled back.
        if let Some(anchor) = &self.anchor {
            let anchored = Anchored {
                seq,
                hash: prev.to_owned(),
            };
            anchor.store(&anchored).map_err(AuditError::Anchor)?;
        }
        let temp = self.dir.join(format!(".{HEAD_FILE}.tmp"));
        std::fs::write(&temp, text)?;
        std::fs::rename(temp, self.dir.join(HEAD_FILE))?;
        Ok(())
    }
}

impl Tail {
    fn digest_due(&self) -> bool {
        let retry_allowed = self
            .digest_failed_at
            .is_none_or(|failed| failed.elapsed().as_secs() >= DIGEST_INTERVAL_SECONDS);
        retry_allowed
            && (self.since_digest >= DIGEST_EVERY
                || self.last_digest.elapsed().as_secs() >= DIGEST_INTERVAL_SECONDS)
    }

    /// Writes `{"seq":N,"time":"T",<fields>,["digest":"D",]"prev":"H"}` and advances the chain:
    /// the same JSON a [`Record`] serializes to, built without re-serializing the event.
    fn push_line(&mut self, buffer: &mut Vec<u8>, fields: &[u8], digest: Option<&str>) {
        let start = buffer.len();
        buffer.extend_from_slice(b"{\"seq\":");
        buffer.extend_from_slice((self.seq + 1).to_string().as_bytes());
        buffer.extend_from_slice(b",\"time\":\"");
        buffer.extend_from_slice(self.clock.now().as_bytes());
        buffer.extend_from_slice(b"\",");
        if !fields.is_empty() {
            buffer.extend_from_slice(fields);
            buffer.push(b',');
        }
        if let Some(digest) = digest {
            buffer.extend_from_slice(b"\"digest\":\"");
            buffer.extend_from_slice(digest.as_bytes());
            buffer.extend_from_slice(b"\",");
        }
        buffer.extend_from_slice(b"\"prev\":\"");
        buffer.extend_from_slice(self.prev.as_bytes());
        buffer.extend_from_slice(b"\"}");
        self.prev = line_hash(&buffer[start..]);
        self.seq += 1;
        self.since_digest += 1;
        buffer.push(b'\n');
    }

    fn push_digest(
        &mut self,
        signer: &DigestSigner,
        buffer: &mut Vec<u8>,
    ) -> Result<(), AuditError> {
        let digest = signer.sign(self.seq + 1, &self.prev)?;
        let event = Event {
            event_source: "atrest".into(),
            event_name: "AuditDigest".into(),
            ..Event::default()
        };
        self.push_line(buffer, &event_fields(&event)?, Some(&digest));
        self.since_digest = 0;
        self.last_digest = Instant::now();
        Ok(())
    }
}

/// Opens the log for writing after its last complete line, returning the chain state there.
/// Anything after that line (a batch torn by a crash, which was never acknowledged) is zeroed,
/// so it can never be read as records once new ones are written over it.
fn recover(dir: &Path) -> Result<Recovered, AuditError> {
    // A next file prepared for a rotation that did not complete.
    match std::fs::remove_file(dir.join(NEXT_FILE)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error.into()),
        _ => {}
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOG_FILE))?;
    let state = chain_state(dir, &file)?;
    Ok(Recovered {
        file,
        seq: state.seq,
        prev: state.prev,
        end: state.end,
        allocated: state.allocated,
        first_seq: state.first_seq,
    })
}

/// The chain state at the end of the active file or, when it holds no record yet (just
/// rotated, or lost mid-rotation), at the end of the newest finished file.
fn chain_state(dir: &Path, file: &File) -> Result<TailState, AuditError> {
    let mut state = read_tail(file)?;
    if state.end == 0
        && let Some(line) = last_finished_line(dir)?
    {
        let record: Record =
            serde_json::from_slice(&line).map_err(|error| AuditError::Corrupt {
                line: 0,
                detail: format!("the last record of the newest finished audit file: {error}"),
            })?;
        state.seq = record.seq;
        state.prev = line_hash(&line);
        state.first_seq = record.seq + 1;
    }
    Ok(state)
}

/// The chain state after the file's last complete line; anything after it is zeroed.
struct TailState {
    seq: u64,
    prev: String,
    end: u64,
    allocated: u64,
    /// The file's first record's sequence number (the next one, if it has none).
    first_seq: u64,
}

fn read_tail(mut file: &File) -> Result<TailState, AuditError> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let content = crate::chain::content(&bytes);
    let end = content
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |index| index + 1);
    let garbage = bytes[end..].iter().any(|b| *b != 0);
    if garbage {
        tracing::warn!(
            dropped = content.len() - end,
            "zeroing an incomplete audit batch left by a crash"
        );
        file.write_all_at(&vec![0u8; bytes.len() - end], end as u64)?;
        file.sync_data()?;
    }
    let last = bytes[..end]
        .split(|b| *b == b'\n')
        .rfind(|line| !line.is_empty());
    let (seq, prev) = match last {
        None => (0, GENESIS.to_owned()),
        Some(line) => {
            let record: Record =
                serde_json::from_slice(line).map_err(|error| AuditError::Corrupt {
                    line: bytes[..end].iter().filter(|b| **b == b'\n').count() as u64,
                    detail: error.to_string(),
                })?;
            (record.seq, line_hash(line))
        }
    };
    let first_seq = bytes[..end]
        .split(|b| *b == b'\n')
        .find(|line| !line.is_empty())
        .and_then(|line| serde_json::from_slice::<Record>(line).ok())
        .map_or(seq + 1, |record| record.seq);
    Ok(TailState {
        seq,
        prev,
        end: end as u64,
        allocated: bytes.len() as u64,
        first_seq,
    })
}

struct Recovered {
    file: File,
    seq: u64,
    prev: String,
    end: u64,
    allocated: u64,
    first_seq: u64,
}

/// The event's JSON members without the enclosing braces.
fn event_fields(event: &Event) -> Result<Vec<u8>, AuditError> {
    let mut json =
        serde_json::to_vec(event).map_err(|error| AuditError::Io(std::io::Error::other(error)))?;
    json.pop();
    json.remove(0);
    Ok(json)
}
