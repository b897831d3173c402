//! The transmission phase: one thread reads requests off the socket (and WRITE payloads)
//! while a few workers run them (AES-XTS and file I/O) and send the replies, so a single
//! connection keeps both cores busy. Replies may leave out of order; NBD matches them to
//! requests by cookie. FLUSH covers every write already replied to (one fdatasync of the one
//! file), which is all the protocol asks.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, MutexGuard};

use super::proto::*;
use crate::disk::{Disk, DiskError};

/// Requests run at once per connection; more than the cores only adds contention.
const MAX_WORKERS: usize = 4;
/// Buffers kept for reuse: a fresh 256 KiB allocation per request is an mmap and page faults.
const POOLED_BUFFERS: usize = 8;

struct Job {
    request: Request,
    /// The WRITE payload, or the buffer a READ fills.
    buffer: Vec<u8>,
}

/// State the reader and the workers share.
struct Shared<'a, W> {
    disk: &'a Disk,
    writer: Mutex<W>,
    buffers: Mutex<Vec<Vec<u8>>>,
    jobs: Mutex<Receiver<Job>>,
}

/// Serves requests until the client disconnects (DISC or EOF) or breaks the protocol.
pub fn serve<W: Write + Send>(reader: &mut impl Read, writer: W, disk: &Disk) -> io::Result<()> {
    let workers = std::thread::available_parallelism()
        .map_or(2, usize::from)
        .clamp(1, MAX_WORKERS);
    let (sender, receiver) = sync_channel(workers * 2);
    let shared = Shared {
        disk,
        writer: Mutex::new(writer),
        buffers: Mutex::default(),
        jobs: Mutex::new(receiver),
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| scope.spawn(|| work(&shared)))
            .collect();
        let read = read_requests(reader, &shared, &sender);
        drop(sender);
        let mut result = read;
        for handle in handles {
            let worked = handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("an NBD worker panicked")));
            result = result.and(worked);
        }
        result?;
        lock(&shared.writer).flush()
    })
}

fn read_requests<W: Write>(
    reader: &mut impl Read,
    shared: &Shared<'_, W>,
    jobs: &SyncSender<Job>,
) -> io::Result<()> {
    let mut header = [0u8; Request::LEN];
    loop {
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error),
        }
        let request =
            Request::parse(&header).ok_or_else(|| protocol_error("request with a bad magic"))?;
        let length = u64::from(request.length);
        let in_range = request
            .offset
            .checked_add(length)
            .is_some_and(|end| end <= shared.disk.size());
        let oversized = request.length > MAX_PAYLOAD;
        let buffer = match request.command {
            CMD_DISC => return Ok(()),
            CMD_READ if oversized || !in_range => {
                reply(shared, EINVAL, request.cookie, None)?;
                continue;
            }
            CMD_WRITE if oversized || !in_range => {
                // Refused before the payload is buffered; the payload is still consumed so the
                // stream stays in step.
                io::copy(&mut reader.take(length), &mut io::sink())?;
                let error = if oversized { EINVAL } else { ENOSPC };
                reply(shared, error, request.cookie, None)?;
                continue;
            }
            CMD_READ => shared.buffer(request.length as usize),
            CMD_WRITE => {
                let mut buffer = shared.buffer(request.length as usize);
                reader.read_exact(&mut buffer)?;
                buffer
            }
            CMD_FLUSH | CMD_TRIM | CMD_WRITE_ZEROES => Vec::new(),
            _ => {
                reply(shared, EINVAL, request.cookie, None)?;
                continue;
            }
        };
        if jobs.send(Job { request, buffer }).is_err() {
            // Every worker has stopped: one failed to send a reply, so the socket is gone.
            return Ok(());
        }
        if shared.disk.is_detached() {
            return Ok(());
        }
    }
}

/// Runs jobs until the reader hangs up the queue; stops at the first reply it cannot send.
fn work<W: Write>(shared: &Shared<'_, W>) -> io::Result<()> {
    loop {
        let Ok(Job {
            request,
            mut buffer,
        }) = lock(&shared.jobs).recv()
        else {
            return Ok(());
        };
        let disk = shared.disk;
        let durable = request.flags & CMD_FLAG_FUA != 0;
        let result = match request.command {
            CMD_READ => disk.read(request.offset, &mut buffer),
            CMD_WRITE => disk.write(request.offset, &mut buffer, durable),
            CMD_FLUSH => disk.flush(),
            _ => disk.zero(request.offset, u64::from(request.length), durable),
        };
        let error = match &result {
            Ok(()) => 0,
            Err(DiskError::OutOfRange { .. }) if request.command == CMD_TRIM => EINVAL,
            Err(DiskError::OutOfRange { .. }) => ENOSPC,
            Err(DiskError::Detached) => ESHUTDOWN,
            Err(DiskError::Io(io_error)) => {
                tracing::error!(error = %io_error, "volume I/O failed");
                EIO
            }
        };
        let data = (request.command == CMD_READ && error == 0).then_some(buffer.as_slice());
        reply(shared, error, request.cookie, data)?;
        shared.recycle(buffer);
    }
}

impl<W> Shared<'_, W> {
    fn buffer(&self, length: usize) -> Vec<u8> {
        let mut buffer = lock(&self.buffers).pop().unwrap_or_default();
        buffer.resize(length, 0);
        buffer
    }

    fn recycle(&self, buffer: Vec<u8>) {
        let mut buffers = lock(&self.buffers);
        if buffers.len() < POOLED_BUFFERS && buffer.capacity() <= MAX_PAYLOAD as usize {
            buffers.push(buffer);
        }
    }
}

fn reply<W: Write>(
    shared: &Shared<'_, W>,
    error: u32,
    cookie: u64,
    data: Option<&[u8]>,
) -> io::Result<()> {
    let mut writer = lock(&shared.writer);
    writer.write_all(&simple_reply(error, cookie))?;
    if let Some(data) = data {
        writer.write_all(data)?;
    }
    writer.flush()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn protocol_error(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}
