//! The NBD wire format (the protocol document of the NBD project, "proto.md"): fixed newstyle
//! negotiation and simple replies. All integers are big-endian.

pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

// Handshake flags (server) and client flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
pub const CLIENT_FLAGS_KNOWN: u32 = (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES) as u32;

// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;

// Option replies.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_ERR_UNSUP: u32 = (1 << 31) | 1;
pub const REP_ERR_INVALID: u32 = (1 << 31) | 3;
pub const REP_ERR_UNKNOWN: u32 = (1 << 31) | 6;
pub const REP_ERR_TOO_BIG: u32 = (1 << 31) | 9;

// Information types.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

// Transmission flags.
pub const TFLAG_HAS_FLAGS: u16 = 1 << 0;
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
pub const TFLAG_SEND_FUA: u16 = 1 << 3;
pub const TFLAG_SEND_TRIM: u16 = 1 << 5;
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
/// FLUSH on any connection makes every connection's completed writes durable (it is one
/// fsync of the one backing file), so clients may spread I/O over several connections.
pub const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;

// Commands and command flags.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_WRITE_ZEROES: u16 = 6;
pub const CMD_FLAG_FUA: u16 = 1 << 0;

// Errors (errno values fixed by the protocol).
pub const EIO: u32 = 5;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const ESHUTDOWN: u32 = 108;

/// Option data larger than this is refused without being buffered.
pub const MAX_OPTION_LEN: u32 = 64 * 1024;
/// The largest READ or WRITE payload served, advertised as the maximum block size.
pub const MAX_PAYLOAD: u32 = 32 * 1024 * 1024;
/// The block sizes advertised in NBD_INFO_BLOCK_SIZE: any byte alignment works (unaligned
/// writes are read-modify-write), 4 KiB is the sector size.
pub const MIN_BLOCK: u32 = 1;
pub const PREFERRED_BLOCK: u32 = 4096;

/// The payload of NBD_OPT_INFO and NBD_OPT_GO.
#[derive(Debug, PartialEq, Eq)]
pub struct InfoRequest {
    pub name: String,
    pub requested: Vec<u16>,
}

impl InfoRequest {
    /// Parses `u32 name length, name, u16 count, count × u16`; `None` if the lengths do not
    /// add up or the name is not UTF-8.
    pub fn parse(data: &[u8]) -> Option<Self> {
        let name_len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
        let name_end = 4usize.checked_add(name_len)?;
        let name = std::str::from_utf8(data.get(4..name_end)?).ok()?.to_owned();
        let count_end = name_end.checked_add(2)?;
        let count = u16::from_be_bytes(data.get(name_end..count_end)?.try_into().ok()?) as usize;
        let rest = data.get(count_end..)?;
        if rest.len() != count * 2 {
            return None;
        }
        let requested = rest
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
            .collect();
        Some(Self { name, requested })
    }
}

/// A transmission-phase request header (28 bytes).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Request {
    pub flags: u16,
    pub command: u16,
    pub cookie: u64,
    pub offset: u64,
    pub length: u32,
}

impl Request {
    pub const LEN: usize = 28;

    /// `None` if the magic is wrong: the stream is out of sync and must be closed.
    pub fn parse(header: &[u8; Self::LEN]) -> Option<Self> {
        let u16_at = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
        let u32_at = |at: usize| {
            u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let u64_at = |at: usize| (u64::from(u32_at(at)) << 32) | u64::from(u32_at(at + 4));
        (u32_at(0) == REQUEST_MAGIC).then(|| Self {
            flags: u16_at(4),
            command: u16_at(6),
            cookie: u64_at(8),
            offset: u64_at(16),
            length: u32_at(24),
        })
    }
}

/// An option reply header followed by its data.
pub fn option_reply(option: u32, reply: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + data.len());
    out.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// A simple reply header.
pub fn simple_reply(error: u32, cookie: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..].copy_from_slice(&cookie.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_requests_parse_and_refuse_bad_lengths() {
        let mut data = Vec::new();
        data.extend_from_slice(&3u32.to_be_bytes());
        data.extend_from_slice(b"vol");
        data.extend_from_slice(&1u16.to_be_bytes());
        data.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        assert_eq!(
            InfoRequest::parse(&data),
            Some(InfoRequest {
                name: "vol".into(),
                requested: vec![INFO_BLOCK_SIZE]
            })
        );
        assert_eq!(InfoRequest::parse(&data[..data.len() - 1]), None);
        data[3] = 200;
        assert_eq!(InfoRequest::parse(&data), None);
        assert_eq!(InfoRequest::parse(&[0xff; 4]), None);
    }

    #[test]
    fn request_headers_parse() {
        let mut header = [0u8; Request::LEN];
        header[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        header[6..8].copy_from_slice(&CMD_WRITE.to_be_bytes());
        header[8..16].copy_from_slice(&7u64.to_be_bytes());
        header[16..24].copy_from_slice(&4096u64.to_be_bytes());
        header[24..].copy_from_slice(&512u32.to_be_bytes());
        let request = Request::parse(&header).expect("valid header");
        assert_eq!(
            (
                request.command,
                request.cookie,
                request.offset,
                request.length
            ),
            (CMD_WRITE, 7, 4096, 512)
        );
        header[0] ^= 1;
        assert_eq!(Request::parse(&header), None);
    }
}
