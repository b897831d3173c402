//! A streaming `multipart/form-data` reader (RFC 7578 over RFC 2046 §5.1), sans-io: bytes go
//! in with [`FormParser::feed`], events come out of [`FormParser::next_event`].
//!
//! Fields are held (bounded by [`MAX_FIELDS_BYTES`] and [`MAX_FIELDS`]); the `file` part is
//! never held: its bytes come out as they arrive, less the few that could still be the start
//! of the closing delimiter. S3 ignores anything after the file part (the file must be the
//! last field), and so does this reader.

/// The most field bytes (names and values) a form may carry before its file: AWS allows a
/// 20 KB policy document; everything else in a form is small.
pub const MAX_FIELDS_BYTES: usize = 64 * 1024;
/// The most fields before the file.
pub const MAX_FIELDS: usize = 100;
/// The longest header block of one part.
const MAX_PART_HEADERS: usize = 8 * 1024;

/// Why a form cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the multipart form is malformed: {0}")]
    Malformed(&'static str),
    #[error("the form's fields exceed {MAX_FIELDS_BYTES} bytes or {MAX_FIELDS} fields")]
    TooLarge,
    #[error("the form ended before its file field")]
    NoFile,
}

/// What the reader found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Field {
        name: String,
        value: String,
    },
    /// The `file` part begins; its bytes follow as [`Event::FileData`].
    FileStart {
        filename: Option<String>,
        content_type: Option<String>,
    },
    FileData(Vec<u8>),
    /// The file part ended at its delimiter; the rest of the body is ignored.
    FileEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first delimiter (a preamble may precede it).
    Preamble,
    /// Just after a delimiter: `--` closes the form, CRLF starts a part.
    AfterDelimiter,
    Headers,
    FieldValue,
    File,
    Done,
}

pub struct FormParser {
    /// `\r\n--BOUNDARY`: what ends every part.
    delimiter: Vec<u8>,
    buffer: Vec<u8>,
    state: State,
    field_name: String,
    fields_bytes: usize,
    fields: usize,
    ended: bool,
    /// Bytes of a preamble were dropped: the body did not open with a delimiter.
    preamble_dropped: bool,
}

impl FormParser {
    pub fn new(boundary: &str) -> Self {
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        Self {
            delimiter,
            buffer: Vec::new(),
            state: State::Preamble,
            field_name: String::new(),
            fields_bytes: 0,
            fields: 0,
            ended: false,
            preamble_dropped: false,
        }
    }

    /// Adds the next bytes of the body.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.state != State::Done {
            self.buffer.extend_from_slice(bytes);
        }
    }

    /// Says the body ended: what is buffered is all there is.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// Bytes held and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The next event, `Ok(None)` when more input is needed (or after [`Event::FileEnd`]).
    pub fn next_event(&mut self) -> Result<Option<Event>, FormError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Preamble => {
                    // The first delimiter may open the body without its leading CRLF (only
                    // there: later in a preamble it needs its CRLF).
                    let bare = &self.delimiter[2..];
                    if !self.preamble_dropped && self.buffer.starts_with(bare) {
                        self.buffer.drain(..bare.len());
                        self.state = State::AfterDelimiter;
                        continue;
                    }
                    match find(&self.buffer, &self.delimiter) {
                        Some(at) => {
                            self.buffer.drain(..at + self.delimiter.len());
                            self.preamble_dropped = true;
                            self.state = State::AfterDelimiter;
                        }
                        None => {
                            // Keep only what could still begin the delimiter.
                            let keep = self.delimiter.len().min(self.buffer.len());
                            let drop = self.buffer.len() - keep;
                            if drop > 0 {
                                self.preamble_dropped = true;
                                self.buffer.drain(..drop);
                            }
                            return self.need_more(FormError::NoFile);
                        }
                    }
                }
                State::AfterDelimiter => {
                    if self.buffer.len() < 2 {
                        return self.need_more(FormError::NoFile);
                    }
                    if self.buffer.starts_with(b"--") {
                        return Err(FormError::NoFile);
                    }
                    // RFC 2046 allows transport padding (spaces, tabs) before the CRLF.
                    let padding = self
                        .buffer
                        .iter()
                        .take_while(|byte| matches!(byte, b' ' | b'\t'))
                        .count();
                    if padding > 64 {
                        return Err(FormError::Malformed("delimiter line too long"));
                    }
                    match self.buffer.get(padding..padding + 2) {
                        Some(b"\r\n") => {
                            self.buffer.drain(..padding + 2);
                            self.state = State::Headers;
                        }
                        Some(_) => return Err(FormError::Malformed("bad delimiter line")),
                        None => return self.need_more(FormError::NoFile),
                    }
                }
                State::Headers => {
                    // A CRLF right away is an empty header block.
                    let end = if self.buffer.starts_with(b"\r\n") {
                        Some(2)
                    } else {
                        find(&self.buffer, b"\r\n\r\n").map(|at| at + 4)
                    };
                    let Some(end) = end else {
                        if self.buffer.len() > MAX_PART_HEADERS {
                            return Err(FormError::Malformed("part headers too long"));
                        }
                        return self.need_more(FormError::NoFile);
                    };
                    if end > MAX_PART_HEADERS {
                        return Err(FormError::Malformed("part headers too long"));
                    }
                    let headers: Vec<u8> = self.buffer.drain(..end).collect();
                    let part = PartHeaders::parse(&headers)?;
                    if part.name == "file" {
                        self.state = State::File;
                        return Ok(Some(Event::FileStart {
                            filename: part.filename,
                            content_type: part.content_type,
                        }));
                    }
                    self.fields += 1;
                    if self.fields > MAX_FIELDS {
                        return Err(FormError::TooLarge);
                    }
                    self.count_field(part.name.len())?;
                    self.field_name = part.name;
                    self.state = State::FieldValue;
                }
                State::FieldValue => {
                    let Some(at) = find(&self.buffer, &self.delimiter) else {
                        if self.fields_bytes + self.buffer.len() > MAX_FIELDS_BYTES {
                            return Err(FormError::TooLarge);
                        }
                        return self.need_more(FormError::NoFile);
                    };
                    self.count_field(at)?;
                    let value: Vec<u8> = self.buffer.drain(..at).collect();
                    self.buffer.drain(..self.delimiter.len());
                    self.state = State::AfterDelimiter;
                    let value = String::from_utf8(value)
                        .map_err(|_| FormError::Malformed("a field is not UTF-8"))?;
                    return Ok(Some(Event::Field {
                        name: std::mem::take(&mut self.field_name),
                        value,
                    }));
                }
                State::File => return self.file_event(),
            }
        }
    }

    /// The file's next bytes: everything that cannot be the start of the delimiter.
    fn file_event(&mut self) -> Result<Option<Event>, FormError> {
        if let Some(at) = find(&self.buffer, &self.delimiter) {
            if at == 0 {
                self.state = State::Done;
                self.buffer = Vec::new();
                return Ok(Some(Event::FileEnd));
            }
            let data: Vec<u8> = self.buffer.drain(..at).collect();
            return Ok(Some(Event::FileData(data)));
        }
        if self.ended {
            return Err(FormError::Malformed(
                "the file part has no closing delimiter",
            ));
        }
        let safe = self.buffer.len().saturating_sub(self.delimiter.len() - 1);
        if safe == 0 {
            return Ok(None);
        }
        let data: Vec<u8> = self.buffer.drain(..safe).collect();
        Ok(Some(Event::FileData(data)))
    }

    fn count_field(&mut self, bytes: usize) -> Result<(), FormError> {
        self.fields_bytes += bytes;
        if self.fields_bytes > MAX_FIELDS_BYTES {
            return Err(FormError::TooLarge);
        }
        Ok(())
    }

    /// More input is needed; if the body already ended, `error` is why it cannot come.
    fn need_more(&self, error: FormError) -> Result<Option<Event>, FormError> {
        if self.ended { Err(error) } else { Ok(None) }
    }
}

/// The headers of one part that matter: `Content-Disposition: form-data; name=...;
/// filename=...` and `Content-Type`.
struct PartHeaders {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
}

impl PartHeaders {
    fn parse(block: &[u8]) -> Result<Self, FormError> {
        let text =
            std::str::from_utf8(block).map_err(|_| FormError::Malformed("headers not UTF-8"))?;
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in text.split("\r\n").filter(|line| !line.is_empty()) {
            let (header, value) = line
                .split_once(':')
                .ok_or(FormError::Malformed("a part header has no colon"))?;
            let value = value.trim();
            if header.trim().eq_ignore_ascii_case("content-disposition") {
                let mut params = value.split(';').map(str::trim);
                if !params
                    .next()
                    .is_some_and(|kind| kind.eq_ignore_ascii_case("form-data"))
                {
                    return Err(FormError::Malformed("a part is not form-data"));
                }
                for param in params {
                    let Some((key, raw)) = param.split_once('=') else {
                        continue;
                    };
                    let unquoted = raw
                        .strip_prefix('"')
                        .and_then(|raw| raw.strip_suffix('"'))
                        .unwrap_or(raw)
                        .to_owned();
                    match key.trim().to_ascii_lowercase().as_str() {
                        "name" => name = Some(unquoted),
                        "filename" => filename = Some(unquoted),
                        _ => {}
                    }
                }
            } else if header.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(value.to_owned());
            }
        }
        let name = name.ok_or(FormError::Malformed("a part has no name"))?;
        Ok(Self {
            name,
            filename,
            content_type,
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(boundary: &str, fields: &[(&str, &str)], file: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            out.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        out.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n")
                .as_bytes(),
        );
        out.extend_from_slice(file);
        out.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"submit\"\r\n\r\nUpload\r\n--{boundary}--\r\n").as_bytes());
        out
    }

    fn read_all(body: &[u8], boundary: &str, piece: usize) -> Result<Vec<Event>, FormError> {
        let mut parser = FormParser::new(boundary);
        let mut events = Vec::new();
        let mut file = Vec::new();
        let mut pieces = body.chunks(piece.max(1)).peekable();
        loop {
            match parser.next_event()? {
                Some(Event::FileData(data)) => file.extend(data),
                Some(Event::FileEnd) => {
                    events.push(Event::FileData(std::mem::take(&mut file)));
                    events.push(Event::FileEnd);
                    return Ok(events);
                }
                Some(event) => events.push(event),
                None => match pieces.next() {
                    Some(bytes) => parser.feed(bytes),
                    None => parser.end(),
                },
            }
            assert!(parser.buffered() <= MAX_FIELDS_BYTES + MAX_PART_HEADERS + piece + 64);
        }
    }

    #[test]
    fn fields_then_the_file_in_any_split() {
        // Everything that could begin the delimiter `\r\n--XYZ`, without ever completing it.
        let file = b"line one\r\n--not the boundary\r\n-\r\n--XY almost\r\r\n--X".repeat(50);
        let body = form("XYZ", &[("key", "a/b.txt"), ("policy", "eyJ9")], &file);
        for piece in [1, 2, 3, 7, 64, 4096, body.len()] {
            let events = read_all(&body, "XYZ", piece).expect("valid form");
            assert_eq!(
                events,
                vec![
                    Event::Field {
                        name: "key".into(),
                        value: "a/b.txt".into()
                    },
                    Event::Field {
                        name: "policy".into(),
                        value: "eyJ9".into()
                    },
                    Event::FileStart {
                        filename: Some("a.txt".into()),
                        content_type: Some("text/plain".into())
                    },
                    Event::FileData(file.clone()),
                    Event::FileEnd,
                ],
                "piece {piece}"
            );
        }
    }

    #[test]
    fn refuses_what_it_cannot_bound_or_read() {
        let big = "v".repeat(MAX_FIELDS_BYTES + 1);
        let body = form("B", &[("key", &big)], b"x");
        assert_eq!(read_all(&body, "B", 1000), Err(FormError::TooLarge));
        let many: Vec<(String, String)> = (0..5000)
            .map(|i| (format!("x-ignore-{i}"), "value".to_owned()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            read_all(&form("B", &many, b"x"), "B", 1000),
            Err(FormError::TooLarge)
        );
        let no_file = b"--B\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--B--\r\n";
        assert_eq!(read_all(no_file, "B", 5), Err(FormError::NoFile));
        let unterminated = b"--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc";
        assert!(matches!(
            read_all(unterminated, "B", 2),
            Err(FormError::Malformed(_))
        ));
        let nameless = b"--B\r\nContent-Disposition: form-data\r\n\r\nabc\r\n--B--";
        assert!(matches!(
            read_all(nameless, "B", 100),
            Err(FormError::Malformed(_))
        ));
        assert_eq!(read_all(b"", "B", 1), Err(FormError::NoFile));
    }

    #[test]
    fn a_preamble_and_an_empty_file() {
        let mut body = b"ignored preamble".to_vec();
        body.extend_from_slice(b"\r\n");
        body.extend(form("Q", &[], b""));
        let events = read_all(&body, "Q", 3).expect("valid");
        assert_eq!(events[1], Event::FileData(Vec::new()));
    }
}
