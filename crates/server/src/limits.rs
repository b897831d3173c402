//! What a listener bounds before anyone is authenticated: how many connections it holds, how
//! long a client may take to send a request head, how slowly it may send a body or read a
//! response, and what happens when the process runs out of descriptors.
//!
//! Defaults, next to nginx's and AWS's:
//! - request head: 30 s (nginx `client_header_timeout` 60 s); this is also the keep-alive idle
//!   timeout, since hyper starts it when it begins waiting for the next request (nginx
//!   `keepalive_timeout` 75 s; S3 closes idle connections after about 20 s).
//! - body and response pace: at least 16 KiB per 60 s the server spends waiting on the client,
//!   either way (nginx `client_body_timeout`/`send_timeout`: 60 s between two reads or writes;
//!   S3 answers `RequestTimeout` after about 20 s without data).
//! - connections: three quarters of the descriptors `RLIMIT_NOFILE` leaves after a reserve for
//!   files, the metadata store and the audit log (nginx: `worker_connections` 512).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Descriptors kept back from connection caps: blob files, the metadata store, the audit log,
/// volume files, PKCS#11 sessions.
const RESERVED_DESCRIPTORS: u64 = 64;
/// How often a waiting connection is looked at; a gap much longer than this between two polls
/// means the server was busy elsewhere, which is not the client's time.
const PACE_TICK: Duration = Duration::from_secs(1);

/// The limits of one HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// On SIGTERM/SIGINT, how long requests in flight may take to finish.
    pub shutdown_grace: Duration,
    /// The client must send (or take) [`HttpLimits::min_bytes_per_window`] within each such
    /// span of time the server waits on it.
    pub pace_window: Duration,
    pub min_bytes_per_window: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: default_connection_cap(3, 4),
            header_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            pace_window: Duration::from_secs(60),
            min_bytes_per_window: 16 * 1024,
        }
    }
}

/// A share (`numerator / denominator`) of the descriptors `RLIMIT_NOFILE` allows beyond the
/// reserve; at least 8.
pub fn default_connection_cap(numerator: u64, denominator: u64) -> usize {
    let limit = open_file_limit().unwrap_or(1024);
    let share = limit.saturating_sub(RESERVED_DESCRIPTORS) * numerator / denominator;
    usize::try_from(share.max(8)).unwrap_or(usize::MAX)
}

/// The soft `RLIMIT_NOFILE` of this process, read from `/proc/self/limits` (Linux; no unsafe
/// `getrlimit` call needed).
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    match soft {
        "unlimited" => Some(u64::MAX / 2),
        number => number.parse().ok(),
    }
}

/// Accepts connections while a slot is free, backing off on resource errors (EMFILE, ENFILE,
/// ENOBUFS, ENOMEM) instead of giving up: the listener serves again once descriptors free.
pub struct Acceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    capacity: usize,
    name: &'static str,
}

impl Acceptor {
    pub fn new(listener: TcpListener, max_connections: usize, name: &'static str) -> Self {
        // Semaphore permits are counted in u32 when acquired together (see `drain`).
        let capacity = max_connections.clamp(1, u32::MAX as usize >> 1);
        Self {
            listener,
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            name,
        }
    }

    /// Stops accepting (the listening socket closes, so new clients are refused at once) and
    /// waits up to `grace` for every connection to end; false if some were still open.
    pub async fn drain(self, grace: Duration) -> bool {
        let Self {
            listener,
            slots,
            capacity,
            name,
        } = self;
        drop(listener);
        let busy = capacity.saturating_sub(slots.available_permits());
        if busy > 0 {
            tracing::info!(
                listener = name,
                connections = busy,
                "waiting for open connections to finish"
            );
        }
        // Every slot back means every connection has ended.
        let all = u32::try_from(capacity).unwrap_or(u32::MAX);
        tokio::time::timeout(grace, slots.acquire_many(all))
            .await
            .is_ok()
    }

    /// The next connection and the slot it holds until it is dropped.
    pub async fn accept(&self) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
        let permit = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                tracing::warn!(
                    listener = self.name,
                    "connection limit reached; new connections wait until one closes"
                );
                #[allow(clippy::expect_used)] // the semaphore is never closed.
                Arc::clone(&self.slots)
                    .acquire_owned()
                    .await
                    .expect("semaphore never closed")
            }
        };
        let mut backoff = Duration::from_millis(10);
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => return (stream, peer, permit),
                Err(error) if is_resource_exhaustion(&error) => {
                    tracing::warn!(listener = self.name, %error, backoff_ms = backoff.as_millis() as u64,
                        "cannot accept a connection; waiting for resources to free");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                // A connection that failed before it was accepted (ECONNABORTED, a reset):
                // nothing to do but take the next.
                Err(error) => {
                    tracing::debug!(listener = self.name, %error, "accept failed");
                }
            }
        }
    }
}

fn is_resource_exhaustion(error: &io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 (Linux).
    matches!(error.raw_os_error(), Some(24 | 23 | 105 | 12))
        || error.kind() == io::ErrorKind::OutOfMemory
}

/// Marks request boundaries for [`PacedIo`]: each request starts a fresh pace window.
#[derive(Debug, Clone, Default)]
pub struct RequestEpoch(Arc<AtomicU64>);

impl RequestEpoch {
    pub fn next_request(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn current(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A connection that fails with `TimedOut` when its client sends (or takes) less than the
/// minimum per window of time the server spends waiting on it: slow-loris bodies and
/// responses nobody reads end instead of holding the connection.
pub struct PacedIo<Io> {
    inner: Io,
    read: Pace,
    write: Pace,
    epoch: RequestEpoch,
    seen_epoch: u64,
}

impl<Io> PacedIo<Io> {
    pub fn new(inner: Io, limits: &HttpLimits, epoch: RequestEpoch) -> Self {
        let seen_epoch = epoch.current();
        Self {
            inner,
            read: Pace::new(limits.pace_window, limits.min_bytes_per_window),
            write: Pace::new(limits.pace_window, limits.min_bytes_per_window),
            epoch,
            seen_epoch,
        }
    }

    fn new_request_resets(&mut self) {
        let current = self.epoch.current();
        if current != self.seen_epoch {
            self.seen_epoch = current;
            self.read.reset();
            self.write.reset();
        }
    }
}

/// Time spent waiting on one direction, and the bytes that moved meanwhile.
struct Pace {
    window: Duration,
    min_bytes: u64,
    waited: Duration,
    bytes: u64,
    last_pending: Option<Instant>,
    timer: Pin<Box<Sleep>>,
}

impl Pace {
    fn new(window: Duration, min_bytes: u64) -> Self {
        Self {
            window,
            min_bytes,
            waited: Duration::ZERO,
            bytes: 0,
            last_pending: None,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    fn reset(&mut self) {
        self.waited = Duration::ZERO;
        self.bytes = 0;
        self.last_pending = None;
    }

    /// Counts the time since the last `Pending`, if the server kept polling meanwhile.
    fn account(&mut self, now: Instant) {
        if let Some(last) = self.last_pending.take() {
            let gap = now.saturating_duration_since(last);
            if gap <= PACE_TICK * 2 {
                self.waited += gap;
            }
        }
    }

    fn progressed(&mut self, moved: usize) {
        self.account(Instant::now());
        self.bytes += moved as u64;
        if self.bytes >= self.min_bytes {
            self.waited = Duration::ZERO;
            self.bytes = 0;
        }
    }

    /// The inner I/O is pending: time out, or arrange to be polled again within a tick.
    fn pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let now = Instant::now();
        self.account(now);
        if self.waited >= self.window {
            return Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client sent or took too little data for too long",
            ));
        }
        self.last_pending = Some(now);
        self.timer.as_mut().reset(now + PACE_TICK);
        // Registers the waker; the deadline is in the future, so this is Pending.
        let _ = self.timer.as_mut().poll(cx);
        Poll::Pending
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for PacedIo<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.new_request_resets();
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let moved = buf.filled().len() - before;
                self.read.progressed(moved);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.read.pending(cx).map(Err),
        }
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for PacedIo<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.new_request_resets();
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(Ok(written)) => {
                self.write.progressed(written);
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.write.pending(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.new_request_resets();
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(written)) => {
                self.write.progressed(written);
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.write.pending(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => self.write.pending(cx).map(Err),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits(window_secs: u64, min_bytes: u64) -> HttpLimits {
        HttpLimits {
            max_connections: 4,
            header_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            pace_window: Duration::from_secs(window_secs),
            min_bytes_per_window: min_bytes,
        }
    }

    #[test]
    fn the_descriptor_limit_is_read_from_proc() {
        let limit = open_file_limit().expect("Linux /proc/self/limits");
        assert!(limit >= 8, "{limit}");
        assert!(default_connection_cap(3, 4) >= 8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_client_times_out_and_a_steady_one_does_not() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut paced = PacedIo::new(server, &limits(10, 1000), RequestEpoch::default());
        let mut client = client;
        // 100 bytes every 3 s: 1000 bytes take 30 s of waiting, over the 10 s window.
        let trickle = tokio::spawn(async move {
            for _ in 0..20 {
                if client.write_all(&[b'x'; 100]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1900)).await;
            }
        });
        let mut buf = [0u8; 4096];
        let error = loop {
            match paced.read(&mut buf).await {
                Ok(0) => panic!("the client hung up first"),
                Ok(_) => {}
                Err(error) => break error,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        trickle.abort();

        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut paced = PacedIo::new(server, &limits(10, 1000), RequestEpoch::default());
        let steady = tokio::spawn(async move {
            for _ in 0..30 {
                client.write_all(&[b'y'; 600]).await.expect("write");
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
        });
        let mut total = 0;
        while total < 30 * 600 {
            total += paced
                .read(&mut buf)
                .await
                .expect("a steady client is never cut");
        }
        steady.await.expect("writer");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_request_starts_a_fresh_window() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let epoch = RequestEpoch::default();
        let mut paced = PacedIo::new(server, &limits(10, 1000), epoch.clone());
        let mut buf = [0u8; 16];
        for _ in 0..3 {
            // 8 s of waiting per request, 24 s in all: each request resets the window.
            let wait = tokio::time::timeout(Duration::from_secs(8), paced.read(&mut buf)).await;
            assert!(wait.is_err(), "still waiting");
            client.write_all(b"GET").await.expect("write");
            assert_eq!(paced.read(&mut buf).await.expect("read"), 3);
            epoch.next_request();
        }
    }
}
