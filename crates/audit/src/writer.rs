//! Appending: one writer thread group-commits records. A request's record is written and
//! fsynced (with whatever else arrived meanwhile) before `append` returns, and so before the
//! response is sent. The head is rewritten after every batch.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use crate::chain::{GENESIS, Head, line_hash};
use crate::record::{Event, Record};
use crate::signer::DigestSigner;
use crate::{AuditError, DIGEST_EVERY, HEAD_FILE, LOG_FILE};

/// At most this many records share one write and fsync.
const MAX_BATCH: usize = 1024;
/// A digest record is written at least this often while records arrive.
const DIGEST_INTERVAL_SECONDS: u64 = 1;

type Ack = oneshot::Sender<Result<(), String>>;

#[derive(Debug)]
pub struct AuditLog {
    /// `None` only while dropping.
    sender: Option<mpsc::Sender<(Event, Ack)>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

struct Writer {
    file: File,
    dir: PathBuf,
    signer: DigestSigner,
    seq: u64,
    prev: String,
    since_digest: u64,
    last_digest: Instant,
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, cutting off a record torn by a crash, and starts
    /// the writer thread.
    pub fn open(dir: &Path, signer: DigestSigner) -> Result<Self, AuditError> {
        std::fs::create_dir_all(dir)?;
        let (file, seq, prev) = recover(&dir.join(LOG_FILE))?;
        let mut writer = Writer {
            file,
            dir: dir.to_path_buf(),
            signer,
            seq,
            prev,
            since_digest: 0,
            last_digest: Instant::now(),
        };
        let (sender, receiver) = mpsc::channel::<(Event, Ack)>();
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(&receiver))?;
        Ok(Self {
            sender: Some(sender),
            writer: Some(handle),
        })
    }

    /// Appends one record; returns once it is durable.
    pub async fn append(&self, event: Event) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        let sender = self.sender.as_ref().ok_or(AuditError::WriterStopped)?;
        sender
            .send((event, ack))
            .map_err(|_| AuditError::WriterStopped)?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(AuditError::Io(std::io::Error::other(message))),
            Err(_) => Err(AuditError::WriterStopped),
        }
    }
}

/// Closing the log waits for the writer to seal it with a digest.
impl Drop for AuditLog {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Writer {
    fn run(&mut self, receiver: &mpsc::Receiver<(Event, Ack)>) {
        while let Ok(first) = receiver.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let result = self
                .commit(batch.iter().map(|(event, _)| event))
                .map_err(|error| error.to_string());
            if let Err(message) = &result {
                tracing::error!(%message, "audit log write failed; the requests in this batch fail");
            }
            for (_, ack) in batch {
                let _ = ack.send(result.clone());
            }
        }
        // Every sender is gone: the server is stopping. Seal the log with a digest.
        if self.since_digest > 0
            && let Err(error) = self.commit_digest_only()
        {
            tracing::error!(%error, "could not write the closing audit digest");
        }
    }

    fn commit<'a>(&mut self, events: impl Iterator<Item = &'a Event>) -> Result<(), AuditError> {
        let mut buffer = Vec::with_capacity(4096);
        for event in events {
            self.push_record(&mut buffer, event.clone(), None)?;
        }
        let digest_due = self.since_digest >= DIGEST_EVERY
            || self.last_digest.elapsed().as_secs() >= DIGEST_INTERVAL_SECONDS;
        if digest_due {
            self.push_digest(&mut buffer)?;
        }
        self.file.write_all(&buffer)?;
        self.file.sync_data()?;
        self.write_head()
    }

    fn commit_digest_only(&mut self) -> Result<(), AuditError> {
        let mut buffer = Vec::new();
        self.push_digest(&mut buffer)?;
        self.file.write_all(&buffer)?;
        self.file.sync_data()?;
        self.write_head()
    }

    fn push_record(
        &mut self,
        buffer: &mut Vec<u8>,
        event: Event,
        digest: Option<String>,
    ) -> Result<(), AuditError> {
        let record = Record {
            seq: self.seq + 1,
            time: now_iso8601(),
            event,
            digest,
            prev: self.prev.clone(),
        };
        let mut line = serde_json::to_vec(&record)
            .map_err(|error| AuditError::Io(std::io::Error::other(error)))?;
        self.prev = line_hash(&line);
        self.seq += 1;
        self.since_digest += 1;
        line.push(b'\n');
        buffer.extend_from_slice(&line);
        Ok(())
    }

    fn push_digest(&mut self, buffer: &mut Vec<u8>) -> Result<(), AuditError> {
        let digest = self.signer.sign(self.seq + 1, &self.prev)?;
        let event = Event {
            event_source: "atrest".into(),
            event_name: "AuditDigest".into(),
            ..Event::default()
        };
        self.push_record(buffer, event, Some(digest))?;
        self.since_digest = 0;
        self.last_digest = Instant::now();
        Ok(())
    }

    /// Replaced atomically; not fsynced: after a crash a stale head only understates the log.
    fn write_head(&self) -> Result<(), AuditError> {
        let head = Head {
            seq: self.seq,
            hash: self.prev.clone(),
            hmac: self.signer.sign(self.seq, &self.prev)?,
        };
        let text = serde_json::to_vec(&head)
            .map_err(|error| AuditError::Io(std::io::Error::other(error)))?;
        let temp = self.dir.join(format!(".{HEAD_FILE}.tmp"));
        std::fs::write(&temp, text)?;
        std::fs::rename(temp, self.dir.join(HEAD_FILE))?;
        Ok(())
    }
}

/// Opens the log for appending after its last complete line, returning the chain state there.
fn recover(path: &Path) -> Result<(File, u64, String), AuditError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let end = bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |index| index + 1);
    if end < bytes.len() {
        tracing::warn!(
            dropped = bytes.len() - end,
            "cutting an incomplete audit record left by a crash"
        );
        file.set_len(end as u64)?;
        file.sync_data()?;
    }
    file.seek(SeekFrom::Start(end as u64))?;
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
    Ok((file, seq, prev))
}

fn now_iso8601() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    atrest_sigv4::format_iso8601(i64::try_from(seconds).unwrap_or(i64::MAX))
}
