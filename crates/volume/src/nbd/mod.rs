//! The NBD server: exports each attached volume under its volume id, so nbd-client, qemu and
//! libnbd tools use it as a block device.

mod connection;
pub mod proto;
mod transmission;

pub use connection::{Exports, NbdLimits, serve as serve_connection, serve_tcp};
