//! The NBD listener: accepts clients within a connection cap (backing off when descriptors run
//! out) and serves each on its own thread, since the NBD protocol code (`atrest_volume::nbd`)
//! is blocking I/O.

use std::future::Future;
use std::sync::Arc;

use atrest_volume::nbd::{Exports, NbdLimits, serve_tcp};
use tokio::net::TcpListener;

use crate::limits::Acceptor;

/// Serves NBD clients from `listener` until `shutdown` resolves.
pub async fn serve_nbd(
    listener: TcpListener,
    exports: Arc<dyn Exports>,
    max_connections: usize,
    limits: NbdLimits,
    shutdown: impl Future<Output = ()>,
) {
    let connections = Acceptor::new(listener, max_connections, "nbd");
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer, slot) = tokio::select! {
            accepted = connections.accept() => accepted,
            () = &mut shutdown => return,
        };
        let stream = match stream.into_std().and_then(|stream| {
            stream.set_nonblocking(false)?;
            Ok(stream)
        }) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, %peer, "NBD connection setup failed");
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%error, %peer, "could not set TCP_NODELAY on an NBD connection");
        }
        let exports = Arc::clone(&exports);
        let limits = Arc::clone(&limits);
        let spawned = std::thread::Builder::new()
            .name(format!("nbd {peer}"))
            .spawn(move || {
                // The slot is held for as long as the connection's thread runs.
                let _slot = slot;
                if let Err(error) = serve_tcp(stream, exports.as_ref(), &limits) {
                    tracing::debug!(%error, %peer, "NBD connection ended with an error");
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "could not start an NBD connection thread");
        }
    }
}
