//! One NBD client's handshake and option haggling, over blocking I/O; the transmission phase
//! is in [`super::transmission`].

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::proto::*;
use crate::disk::Disk;

/// What the NBD server exports: attached volumes, by volume id.
pub trait Exports: Send + Sync {
    fn export(&self, name: &str) -> Option<Arc<Disk>>;
    fn export_names(&self) -> Vec<String>;
}

const TRANSMISSION_FLAGS: u16 = TFLAG_HAS_FLAGS
    | TFLAG_SEND_FLUSH
    | TFLAG_SEND_FUA
    | TFLAG_SEND_TRIM
    | TFLAG_SEND_WRITE_ZEROES
    | TFLAG_CAN_MULTI_CONN;

/// Serves one client until it disconnects or breaks the protocol. `reader` and `writer` are
/// the two halves of one stream.
pub fn serve(
    reader: impl Read,
    writer: impl Write + Send,
    exports: &dyn Exports,
) -> io::Result<()> {
    let mut reader = io::BufReader::with_capacity(256 * 1024, reader);
    let mut writer = io::BufWriter::with_capacity(64 * 1024, writer);
    let Some(disk) = negotiate(&mut reader, &mut writer, exports)? else {
        return Ok(());
    };
    super::transmission::serve(&mut reader, writer, &disk, &|| {})
}

/// How long an NBD client may take, and be idle.
#[derive(Debug, Clone)]
pub struct NbdLimits {
    /// From connecting to choosing an export (the handshake and option haggling).
    pub handshake_timeout: Duration,
    /// Between two requests once an export is open; `None` waits for ever (a mounted
    /// `nbd-client` device may be idle for hours).
    pub idle_timeout: Option<Duration>,
    /// How long a reply may wait for the client to read it.
    pub reply_timeout: Duration,
}

impl Default for NbdLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(3600)),
            reply_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves one client on a TCP socket, with `limits`' timeouts on it.
pub fn serve_tcp(stream: TcpStream, exports: &dyn Exports, limits: &NbdLimits) -> io::Result<()> {
    stream.set_read_timeout(Some(limits.handshake_timeout))?;
    stream.set_write_timeout(Some(limits.reply_timeout))?;
    let mut reader = io::BufReader::with_capacity(256 * 1024, stream.try_clone()?);
    let mut writer = io::BufWriter::with_capacity(64 * 1024, &stream);
    let Some(disk) = negotiate(&mut reader, &mut writer, exports)? else {
        return Ok(());
    };
    stream.set_read_timeout(limits.idle_timeout)?;
    let hang_up = || {
        let _ = stream.shutdown(Shutdown::Both);
    };
    super::transmission::serve(&mut reader, writer, &disk, &hang_up)
}

/// The option haggling phase; returns the export the client chose, or `None` if it aborted.
fn negotiate(
    reader: &mut impl Read,
    writer: &mut impl Write,
    exports: &dyn Exports,
) -> io::Result<Option<Arc<Disk>>> {
    writer.write_all(&NBDMAGIC.to_be_bytes())?;
    writer.write_all(&IHAVEOPT.to_be_bytes())?;
    writer.write_all(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes())?;
    writer.flush()?;
    let client_flags = read_u32(reader)?;
    if client_flags & !CLIENT_FLAGS_KNOWN != 0 {
        return Err(protocol_error("client sent unknown handshake flags"));
    }
    let no_zeroes = client_flags & u32::from(FLAG_NO_ZEROES) != 0;
    loop {
        if read_u64(reader)? != IHAVEOPT {
            return Err(protocol_error("option without IHAVEOPT"));
        }
        let option = read_u32(reader)?;
        let length = read_u32(reader)?;
        if length > MAX_OPTION_LEN {
            // The data cannot be skipped safely without reading it all; refuse and hang up.
            send(
                writer,
                &option_reply(option, REP_ERR_TOO_BIG, b"option data too large"),
            )?;
            return Err(protocol_error("option data too large"));
        }
        let mut data = vec![0u8; length as usize];
        reader.read_exact(&mut data)?;
        match option {
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data);
                // The old-style option has no error reply: an unknown export ends the session.
                let Some(disk) = exports.export(&name) else {
                    return Ok(None);
                };
                writer.write_all(&disk.size().to_be_bytes())?;
                writer.write_all(&TRANSMISSION_FLAGS.to_be_bytes())?;
                if !no_zeroes {
                    writer.write_all(&[0u8; 124])?;
                }
                writer.flush()?;
                return Ok(Some(disk));
            }
            OPT_ABORT => {
                send(writer, &option_reply(option, REP_ACK, &[]))?;
                return Ok(None);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    send(
                        writer,
                        &option_reply(option, REP_ERR_INVALID, b"LIST takes no data"),
                    )?;
                    continue;
                }
                for name in exports.export_names() {
                    let mut entry = (name.len() as u32).to_be_bytes().to_vec();
                    entry.extend_from_slice(name.as_bytes());
                    writer.write_all(&option_reply(option, REP_SERVER, &entry))?;
                }
                send(writer, &option_reply(option, REP_ACK, &[]))?;
            }
            OPT_INFO | OPT_GO => {
                let Some(request) = InfoRequest::parse(&data) else {
                    send(
                        writer,
                        &option_reply(option, REP_ERR_INVALID, b"malformed INFO/GO request"),
                    )?;
                    continue;
                };
                let Some(disk) = exports.export(&request.name) else {
                    let message = format!("no attached volume is named '{}'", request.name);
                    send(
                        writer,
                        &option_reply(option, REP_ERR_UNKNOWN, message.as_bytes()),
                    )?;
                    continue;
                };
                write_info(writer, option, &request, &disk)?;
                send(writer, &option_reply(option, REP_ACK, &[]))?;
                if option == OPT_GO {
                    return Ok(Some(disk));
                }
            }
            _ => {
                let message = format!("option {option} is not supported");
                send(
                    writer,
                    &option_reply(option, REP_ERR_UNSUP, message.as_bytes()),
                )?;
            }
        }
    }
}

fn write_info(
    writer: &mut impl Write,
    option: u32,
    request: &InfoRequest,
    disk: &Disk,
) -> io::Result<()> {
    let mut export = INFO_EXPORT.to_be_bytes().to_vec();
    export.extend_from_slice(&disk.size().to_be_bytes());
    export.extend_from_slice(&TRANSMISSION_FLAGS.to_be_bytes());
    writer.write_all(&option_reply(option, REP_INFO, &export))?;
    let mut block = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
    for size in [MIN_BLOCK, PREFERRED_BLOCK, MAX_PAYLOAD] {
        block.extend_from_slice(&size.to_be_bytes());
    }
    writer.write_all(&option_reply(option, REP_INFO, &block))?;
    for &kind in &request.requested {
        let text = match kind {
            INFO_NAME => request.name.as_str(),
            INFO_DESCRIPTION => "atrest encrypted volume (AES-256-XTS)",
            _ => continue,
        };
        let mut info = kind.to_be_bytes().to_vec();
        info.extend_from_slice(text.as_bytes());
        writer.write_all(&option_reply(option, REP_INFO, &info))?;
    }
    Ok(())
}

fn send(writer: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    writer.write_all(bytes)?;
    writer.flush()
}

fn read_u32(reader: &mut impl Read) -> io::Result<u32> {
    let mut bytes = [0u8; 4];
    reader.read_exact(&mut bytes)?;
    Ok(u32::from_be_bytes(bytes))
}

fn read_u64(reader: &mut impl Read) -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    reader.read_exact(&mut bytes)?;
    Ok(u64::from_be_bytes(bytes))
}

fn protocol_error(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}
