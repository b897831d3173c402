//! Big-endian field readers shared by every parser of the format. Each read names the field, so a
//! short or bad input yields an error that says where it stopped, never a panic.

use std::io::Read;

use crate::error::{Error, Result};

/// Reads fields from a byte slice.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub(crate) fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8]> {
        if self.bytes.len() < len {
            return Err(Error::Malformed(format!("{field} runs past its container")));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16> {
        let bytes = self.take(2, field)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    /// A 2-byte length followed by that many bytes.
    pub(crate) fn short_bytes(&mut self, field: &'static str) -> Result<&'a [u8]> {
        let len = self.u16(field)?;
        self.take(usize::from(len), field)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Reads fields from a stream and keeps every byte it read, because the header's bytes are
/// themselves authenticated (header tag AAD) and signed.
pub(crate) struct RecordingReader<'r, R: Read + ?Sized> {
    input: &'r mut R,
    pub(crate) recorded: Vec<u8>,
}

impl<'r, R: Read + ?Sized> RecordingReader<'r, R> {
    pub(crate) fn new(input: &'r mut R) -> Self {
        Self {
            input,
            recorded: Vec::new(),
        }
    }

    pub(crate) fn take(&mut self, len: usize, field: &'static str) -> Result<&[u8]> {
        let start = self.recorded.len();
        self.recorded.resize(start + len, 0);
        read_exact_or_truncated(self.input, &mut self.recorded[start..], field)?;
        Ok(&self.recorded[start..])
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.take(1, field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16> {
        let bytes = self.take(2, field)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32> {
        let bytes = self.take(4, field)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub(crate) fn short_bytes(&mut self, field: &'static str) -> Result<Vec<u8>> {
        let len = self.u16(field)?;
        Ok(self.take(usize::from(len), field)?.to_vec())
    }
}

/// `read_exact`, with end of input reported as a truncated message naming the field.
pub(crate) fn read_exact_or_truncated<R: Read + ?Sized>(
    input: &mut R,
    buf: &mut [u8],
    field: &'static str,
) -> Result<()> {
    match input.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(Error::Truncated(field))
        }
        Err(error) => Err(Error::Io(error)),
    }
}

impl<R: Read + ?Sized> RecordingReader<'_, R> {
    /// The underlying stream, for reading bytes that are not recorded.
    pub(crate) fn input(&mut self) -> &mut R {
        self.input
    }
}
