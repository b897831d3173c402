//! The NBD server: exports each attached volume under its volume id, so nbd-client, qemu and
//! libnbd tools use it as a block device.

mod connection;
pub mod proto;
mod transmission;

use std::future::Future;
use std::sync::Arc;

pub use connection::{Exports, serve as serve_connection};

/// Accepts NBD clients on `listener` until `shutdown` resolves; each client gets a thread.
pub async fn serve(
    listener: tokio::net::TcpListener,
    exports: Arc<dyn Exports>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%error, %peer, "could not set TCP_NODELAY on an NBD connection");
        }
        let exports = Arc::clone(&exports);
        let spawned = std::thread::Builder::new()
            .name(format!("nbd {peer}"))
            .spawn(move || {
                let reader = match stream.try_clone() {
                    Ok(reader) => reader,
                    Err(error) => {
                        return tracing::warn!(%error, %peer, "NBD connection setup failed");
                    }
                };
                if let Err(error) = serve_connection(reader, &stream, exports.as_ref()) {
                    tracing::debug!(%error, %peer, "NBD connection ended with an error");
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "could not start an NBD connection thread");
        }
    }
}
