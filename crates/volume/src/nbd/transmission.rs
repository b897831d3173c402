//! The transmission phase: one thread reads requests off the socket (and WRITE payloads)
//! while a few workers run them (AES-XTS and file I/O) and send the replies, so a single
//! connection keeps both cores busy. Replies may leave out of order; NBD matches them to
//! requests by cookie. FLUSH covers every write already replied to (one fdatasync of the one
//! file), which is all the protocol asks.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::proto::*;
use crate::disk::{Disk, DiskError};

/// Requests run at once per connection; more than the cores only adds contention.
const MAX_WORKERS: usize = 4;
/// Buffers kept for reuse: a fresh 256 KiB allocation per request is an mmap and page faults.
const POOLED_BUFFERS: usize = 8;
/// Only buffers up to this size are kept, so the pool holds at most 8 × 4 MiB.
const POOLED_BUFFER_MAX: usize = 4 << 20;
/// Bytes of request buffers (READ replies to fill, WRITE payloads) one connection may hold.
pub const MAX_IN_FLIGHT_BYTES: usize = 32 << 20;

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
    /// Bytes of request buffers queued or running.
    in_flight: Mutex<usize>,
    freed: Condvar,
    /// A reply could not be sent: the connection is over.
    closed: AtomicBool,
    /// Shuts the connection's socket, so a reader blocked on it returns.
    hang_up: &'a (dyn Fn() + Sync),
}

/// Serves requests until the client disconnects (DISC or EOF) or breaks the protocol.
/// `hang_up` shuts the underlying socket down (a no-op for in-memory streams).
pub fn serve<W: Write + Send>(
    reader: &mut impl Read,
    writer: W,
    disk: &Disk,
    hang_up: &(dyn Fn() + Sync),
) -> io::Result<()> {
    let workers = std::thread::available_parallelism()
        .map_or(2, usize::from)
        .clamp(1, MAX_WORKERS);
    let (sender, receiver) = sync_channel(workers * 2);
    let shared = Shared {
        disk,
        writer: Mutex::new(writer),
        buffers: Mutex::default(),
        jobs: Mutex::new(receiver),
        in_flight: Mutex::new(0),
        freed: Condvar::new(),
        closed: AtomicBool::new(false),
        hang_up,
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
        if shared.closed.load(Ordering::Acquire) {
            return Ok(());
        }
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
            CMD_READ => match shared.reserve(request.length as usize) {
                Some(buffer) => buffer,
                None => return Ok(()),
            },
            CMD_WRITE => {
                let Some(mut buffer) = shared.reserve(request.length as usize) else {
                    return Ok(());
                };
                if let Err(error) = reader.read_exact(&mut buffer) {
                    shared.release(buffer);
                    return Err(error);
                }
                buffer
            }
            CMD_FLUSH | CMD_TRIM | CMD_WRITE_ZEROES => Vec::new(),
            _ => {
                reply(shared, EINVAL, request.cookie, None)?;
                continue;
            }
        };
        if let Err(unsent) = jobs.send(Job { request, buffer }) {
            // Every worker has stopped.
            shared.release(unsent.0.buffer);
            return Ok(());
        }
        if shared.disk.is_detached() {
            return Ok(());
        }
    }
}

/// Runs jobs until the reader hangs up the queue. After a reply cannot be sent, the
/// connection is closed and what is still queued is dropped unrun, so the reader never
/// waits on a full queue nobody empties.
fn work<W: Write>(shared: &Shared<'_, W>) -> io::Result<()> {
    let mut failure = Ok(());
    loop {
        let Ok(Job {
            request,
            mut buffer,
        }) = lock(&shared.jobs).recv()
        else {
            return failure;
        };
        if shared.closed.load(Ordering::Acquire) {
            shared.release(buffer);
            continue;
        }
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
            // The volume store's file system is full: the client sees "no space" (what a
            // full thin-provisioned device reports), not a generic I/O error.
            Err(DiskError::Io(io_error)) if matches!(io_error.raw_os_error(), Some(28 | 122)) => {
                tracing::warn!(error = %io_error, "volume write failed: the volume store is full");
                ENOSPC
            }
            Err(DiskError::Io(io_error)) => {
                tracing::error!(error = %io_error, "volume I/O failed");
                EIO
            }
        };
        let data = (request.command == CMD_READ && error == 0).then_some(buffer.as_slice());
        let sent = reply(shared, error, request.cookie, data);
        shared.release(buffer);
        if let Err(error) = sent {
            shared.close();
            failure = Err(error);
        }
    }
}

impl<W> Shared<'_, W> {
    /// A buffer of `length` bytes once the connection's in-flight bytes allow it (one request
    /// is always allowed, whatever its size); `None` if the connection closed meanwhile.
    fn reserve(&self, length: usize) -> Option<Vec<u8>> {
        let mut in_flight = lock(&self.in_flight);
        while *in_flight > 0 && *in_flight + length > MAX_IN_FLIGHT_BYTES {
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            in_flight = self
                .freed
                .wait(in_flight)
                .unwrap_or_else(|e| e.into_inner());
        }
        *in_flight += length;
        drop(in_flight);
        let mut buffer = lock(&self.buffers).pop().unwrap_or_default();
        buffer.resize(length, 0);
        Some(buffer)
    }

    /// Returns a request's buffer: its bytes leave the in-flight count, and it is pooled if
    /// small enough.
    fn release(&self, buffer: Vec<u8>) {
        *lock(&self.in_flight) -= buffer.len();
        self.freed.notify_all();
        let mut buffers = lock(&self.buffers);
        if buffers.len() < POOLED_BUFFERS && buffer.capacity() <= POOLED_BUFFER_MAX {
            buffers.push(buffer);
        }
    }

    /// Ends the connection after a failed reply.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        (self.hang_up)();
        self.freed.notify_all();
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
