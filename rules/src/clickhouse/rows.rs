//! The rows of a `TabSeparatedWithNamesAndTypes` answer, read as they stream in.
//!
//! ClickHouse sends the HTTP status with the first bytes of the answer, so an exception raised
//! later is written into a 200 body. It is told from data by position and framing, never by
//! its prefix alone (a row may well hold `Code: 1. DB::Exception: ...`, e.g. from
//! `system.query_log.exception`):
//!
//! - An answer starts with two header lines, names and types. A first line that reads like an
//!   exception without a valid types line after it is the error: the body is the exception
//!   (a server that sent its headers before it failed).
//! - 25.11 and later frame the exception, with the tag from the `X-ClickHouse-Exception-Tag`
//!   header ([`RowReader::set_exception_tag`]):
//!   `\r\n__exception__\r\n<tag>\r\n<message>\n<length> <tag>\r\n__exception__\r\n`. With a tag
//!   only such a frame is an error. A `\r` cannot be data: TabSeparated escapes it.
//! - Older servers append the exception text raw after the last row (`Code: 241. DB::...`,
//!   18.16 `Code: 241, e.displayText() = DB::...`; some 25.x put `__exception__\r\n` first).
//!   Such a line is still data when it is a valid row: as many fields as the header and, in a
//!   text column, no bare `'` (TabSeparated writes `\'`; exception messages quote names
//!   bare). Only a line that cannot be a row is the error. A quote-free exception after the
//!   rows of a single text column is indistinguishable from a row; only the tag settles that.

use super::{remote_error, RemoteError};
use crate::units::pretty_bytes;

/// The longest line a reader takes unless told otherwise (`cdc_health.clickhouse_max_line`).
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 20;

/// The smallest line limit a reader applies: an exception frame is recognised within the
/// first bytes after a line, which a smaller limit could cut off.
pub const MIN_MAX_LINE_BYTES: usize = 1024;

/// ClickHouse's exception tags are 16 letters; a longer header value is not one.
const MAX_TAG_BYTES: usize = 64;

/// Opens and closes a framed exception.
const MARK: &[u8] = b"__exception__";

/// Splits one TabSeparated line (without its newline) into fields; `\N` is NULL.
/// `out` is reused between rows so a scan does not allocate a vector per row.
pub fn parse_row(line: &[u8], out: &mut Vec<Option<String>>) -> Result<(), String> {
    out.clear();
    for raw in line.split(|&b| b == b'\t') {
        if raw == b"\\N" {
            out.push(None);
            continue;
        }
        let mut bytes = Vec::with_capacity(raw.len());
        let mut iter = raw.iter();
        while let Some(&b) = iter.next() {
            if b != b'\\' {
                bytes.push(b);
                continue;
            }
            let Some(&e) = iter.next() else {
                return Err("a line ends in a lone backslash".into());
            };
            bytes.push(match e {
                b'n' => b'\n',
                b't' => b'\t',
                b'r' => b'\r',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'0' => 0,
                b'a' => 0x07,
                b'v' => 0x0b,
                other => other,
            });
        }
        out.push(Some(String::from_utf8(bytes).map_err(|_| {
            "a value is not valid UTF-8 (ClickHouse strings may hold any bytes; \
             convert them in the query, e.g. with base64Encode)"
                .to_string()
        })?));
    }
    Ok(())
}

/// What PostgreSQL type a value is read into, where that changes the text handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    TimestampTz,
    Other,
}

/// `Nullable(T)` and `LowCardinality(T)` as `T`.
pub fn base_type(mut ch_type: &str) -> &str {
    loop {
        let inner = ["Nullable(", "LowCardinality("]
            .iter()
            .find_map(|w| ch_type.strip_prefix(w).and_then(|t| t.strip_suffix(')')));
        match inner {
            Some(t) => ch_type = t,
            None => return ch_type,
        }
    }
}

/// The zone a DateTime type is printed in: its own (`DateTime('Europe/Berlin')`,
/// `DateTime64(3, 'UTC')`) or the server's.
fn zone_of<'a>(ch_type: &'a str, server_zone: &'a str) -> &'a str {
    ch_type
        .split_once('\'')
        .and_then(|(_, rest)| rest.split_once('\''))
        .map_or(server_zone, |(zone, _)| zone)
}

/// Turns a ClickHouse value into text for the PostgreSQL type's input function.
/// `None` is SQL NULL: ClickHouse's zero date (`0000-00-00`, what 18.16 returns for `max()`
/// of nothing) has no PostgreSQL equivalent and means "no value".
pub fn pg_text(ch_type: &str, value: String, target: Target, server_zone: &str) -> Option<String> {
    let t = base_type(ch_type);
    if t.starts_with("FixedString(") {
        // Padded to its length with NUL bytes, which no PostgreSQL text can hold; ClickHouse's
        // own clients show the value without them. A NUL inside the value stays (and fails).
        let mut value = value;
        value.truncate(value.trim_end_matches('\0').len());
        return Some(value);
    }
    if t.starts_with("Date") {
        if value.starts_with("0000-00-00") {
            return None;
        }
        if t.starts_with("DateTime") && target == Target::TimestampTz {
            return Some(format!("{value} {}", zone_of(t, server_zone)));
        }
        return Some(value);
    }
    if t.starts_with("Float") {
        let special = match value.as_str() {
            "inf" | "+inf" => Some("Infinity"),
            "-inf" => Some("-Infinity"),
            "nan" | "-nan" => Some("NaN"),
            _ => None,
        };
        if let Some(s) = special {
            return Some(s.to_string());
        }
    }
    Some(value)
}

/// Whether `text` starts like a ClickHouse exception: `Code: 241. DB::` (current servers) or
/// `Code: 241, e.displayText() = DB::` (18.16).
fn starts_like_exception(text: &[u8]) -> bool {
    let Some(rest) = text.strip_prefix(b"Code: ") else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = &rest[digits..];
    (1..=6).contains(&digits)
        && (rest.starts_with(b". DB::") || rest.starts_with(b", e.displayText() = DB::"))
}

/// Where an exception's text starts in `line`, if anywhere.
fn find_exception(line: &[u8]) -> Option<usize> {
    (0..line.len()).find(|&i| line[i] == b'C' && starts_like_exception(&line[i..]))
}

/// `line` as an exception, when it starts like one.
pub fn exception_in_stream(line: &[u8]) -> Option<RemoteError> {
    starts_like_exception(line).then(|| remote_error(200, None, &String::from_utf8_lossy(line)))
}

/// Whether a value of `ch_type` is written as plain escaped text (so it may start with
/// `Code: `), with each `'` escaped.
fn is_text_type(ch_type: &str) -> bool {
    let t = base_type(ch_type);
    [
        "String",
        "FixedString(",
        "Enum8(",
        "Enum16(",
        "Enum(",
        "Dynamic",
        "Variant(",
    ]
    .iter()
    .any(|p| t.starts_with(p))
}

/// A `'` that no backslash escapes; TabSeparated never writes one in a text value.
fn has_bare_quote(field: &[u8]) -> bool {
    let mut escaped = false;
    for &b in field {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'\'' => return true,
            _ => {}
        }
    }
    false
}

/// Whether `text` reads as a ClickHouse type: `UInt64`, `Nullable(String)`,
/// `DateTime64(3, 'UTC')`. Type names all start with a capital letter.
fn is_type_name(text: &str) -> bool {
    let (name, args) = text.split_at(text.find('(').unwrap_or(text.len()));
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && (args.is_empty() || args.ends_with(')'))
}

/// How `want` compares with the start of `have`.
#[derive(Clone, Copy, PartialEq)]
enum Prefix {
    Whole,
    /// `have` is shorter and agrees so far.
    SoFar,
    Differs,
}

fn prefix(have: &[u8], want: &[u8]) -> Prefix {
    if have.len() >= want.len() {
        if have.starts_with(want) {
            Prefix::Whole
        } else {
            Prefix::Differs
        }
    } else if want.starts_with(have) {
        Prefix::SoFar
    } else {
        Prefix::Differs
    }
}

/// A line as the buffer holds it.
enum Raw {
    /// `buf[begin..end]`; `end` is the newline (or the end of a last, unterminated line).
    Line(usize, usize),
    TooLong,
    More,
    End,
}

/// A line once exception frames are taken out.
enum Next {
    Line(usize, usize),
    More,
    End,
}

/// What a line ending in `\r` is to the exception frame.
enum Framing {
    Data,
    /// Undecided until more bytes come.
    More,
    /// The frame starts right after this line, which ends with the frame's `\r\n`.
    Before,
    /// This line is the frame's first (`__exception__` and, for 25.11's frame, the tag line
    /// next).
    Opens {
        tag_line_next: bool,
    },
}

/// An exception frame (or an untagged `__exception__` marker) being read.
#[derive(Debug)]
struct Frame {
    tag_line_next: bool,
    message: Vec<u8>,
}

/// Splits a byte stream into the header (names, types) and rows, keeping at most one
/// partial line between chunks. Each byte is searched for a newline once, and no line may be
/// longer than the limit given to [`RowReader::new`]. Once it has returned an error, every
/// later call returns the same error.
#[derive(Debug)]
pub struct RowReader {
    buf: Vec<u8>,
    /// First byte not yet read.
    start: usize,
    /// No newline in `buf[start..scanned]`: the search for the end of a line resumes here.
    scanned: usize,
    /// Bytes after the last newline pushed (the line still arriving).
    tail: usize,
    /// A line grew past the limit: the buffer ends one byte past it and takes no more.
    overflow: bool,
    finished: bool,
    max_line: usize,
    tag: Option<Vec<u8>>,
    failed: Option<String>,
    frame: Option<Frame>,
    names: Option<Vec<String>>,
    /// The names line while it reads like an exception and the types line is to come.
    names_text: Option<String>,
    types: Option<Vec<String>>,
    fields: Vec<Option<String>>,
}

impl Default for RowReader {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LINE_BYTES)
    }
}

impl RowReader {
    /// A reader that refuses lines longer than `max_line_bytes` (at least
    /// [`MIN_MAX_LINE_BYTES`]): a row must fit in memory, and one endless line must not
    /// take all of it.
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            tail: 0,
            overflow: false,
            finished: false,
            max_line: max_line_bytes.max(MIN_MAX_LINE_BYTES),
            tag: None,
            failed: None,
            frame: None,
            names: None,
            names_text: None,
            types: None,
            fields: Vec::new(),
        }
    }

    /// The answer's `X-ClickHouse-Exception-Tag` header (25.11+), before its bytes are pushed.
    /// With a tag only a frame carrying it is an error; without one, raw exception text after
    /// the rows is. A value that is not 1 to 64 ASCII letters and digits is no tag.
    pub fn set_exception_tag(&mut self, tag: Option<&str>) {
        self.tag = tag
            .map(str::trim)
            .filter(|t| {
                (1..=MAX_TAG_BYTES).contains(&t.len())
                    && t.bytes().all(|b| b.is_ascii_alphanumeric())
            })
            .map(|t| t.as_bytes().to_vec());
    }

    pub fn push(&mut self, chunk: &[u8]) {
        if self.finished || self.overflow || self.failed.is_some() {
            return;
        }
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.scanned = self.scanned.saturating_sub(self.start);
            self.start = 0;
        }
        // The line still arriving may not grow past the limit: keep one byte more (so reading
        // sees it is too long) and drop the rest of the answer.
        let max = self.max_line;
        let keep = match chunk.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                self.tail = chunk.len() - last - 1;
                if self.tail > max {
                    last + max + 2
                } else {
                    chunk.len()
                }
            }
            None => {
                let before = self.tail;
                self.tail += chunk.len();
                if self.tail > max {
                    max + 1 - before
                } else {
                    chunk.len()
                }
            }
        };
        self.overflow = keep < chunk.len();
        self.buf.extend_from_slice(&chunk[..keep]);
    }

    /// No more bytes will come: a last line without a newline is a line too.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Column names, once the header has been read.
    pub fn names(&self) -> Option<&[String]> {
        self.names.as_deref()
    }

    /// ClickHouse column types, once the header has been read.
    pub fn types(&self) -> Option<&[String]> {
        self.types.as_deref()
    }

    /// The row `next_row` last returned.
    pub fn current_row(&self) -> &[Option<String>] {
        &self.fields
    }

    /// Reads the two header lines if they are there; true once names and types are known.
    pub fn read_header(&mut self) -> Result<bool, String> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.types.is_some() {
            return Ok(true);
        }
        const NO_HEADER: &str = "the answer ended before its header (column names and types)";
        if self.names.is_none() {
            let (b, e) = match self.next_line()? {
                Next::Line(b, e) => (b, e),
                Next::More => return Ok(false),
                Next::End => return self.fail(NO_HEADER),
            };
            let line = &self.buf[b..e];
            let text = starts_like_exception(line).then(|| String::from_utf8_lossy(line));
            let text = text.map(|t| t.into_owned());
            if let Err(why) = parse_row(line, &mut self.fields) {
                return self.fail(match text {
                    Some(text) => remote_error(200, None, &text).to_string(),
                    None => why,
                });
            }
            self.names = Some(self.header_fields());
            self.names_text = text;
        }
        let (b, e) = match self.next_line()? {
            Next::Line(b, e) => (b, e),
            Next::More => return Ok(false),
            Next::End => {
                return match self.names_text.take() {
                    Some(text) => self.fail(remote_error(200, None, &text).to_string()),
                    None => self.fail(NO_HEADER),
                }
            }
        };
        let line = &self.buf[b..e];
        let parsed = parse_row(line, &mut self.fields);
        let types: Vec<String> = self
            .fields
            .drain(..)
            .map(Option::unwrap_or_default)
            .collect();
        let valid = parsed.is_ok()
            && types.len() == self.names.as_ref().map_or(0, Vec::len)
            && types.iter().all(|t| is_type_name(t));
        // Without a valid types line, a first (or second) line that reads like an exception
        // is the answer: the error itself.
        if !valid {
            let text = match self.names_text.take() {
                Some(names) => Some(format!("{names}\n{}", String::from_utf8_lossy(line))),
                None => {
                    starts_like_exception(line).then(|| String::from_utf8_lossy(line).into_owned())
                }
            };
            if let Some(text) = text {
                return self.fail(remote_error(200, None, &text).to_string());
            }
        }
        if let Err(why) = parsed {
            return self.fail(why);
        }
        self.names_text = None;
        self.types = Some(types);
        Ok(true)
    }

    /// The next row, `Ok(None)` when more bytes are needed (or, after `finish`, at the end).
    pub fn next_row(&mut self) -> Result<Option<&[Option<String>]>, String> {
        if !self.read_header()? {
            return Ok(None);
        }
        let Next::Line(b, e) = self.next_line()? else {
            return Ok(None);
        };
        let expected = self.names.as_ref().map_or(0, Vec::len);
        let line = &self.buf[b..e];
        let parsed = parse_row(line, &mut self.fields);
        let framed = parsed.is_ok() && self.fields.len() == expected;
        // Without a tag, servers append an exception as raw text after the last row.
        let exception = match self.tag {
            Some(_) => None,
            None if starts_like_exception(line) => {
                (!(framed && self.could_be_text_row(line))).then_some(0)
            }
            None if !framed => find_exception(line),
            None => None,
        };
        if let Some(at) = exception {
            let text = String::from_utf8_lossy(&line[at..]).into_owned();
            return self.fail(remote_error(200, None, &text).to_string());
        }
        if let Err(why) = parsed {
            return self.fail(why);
        }
        if !framed {
            let found = self.fields.len();
            return self.fail(format!(
                "a row of the answer has {found} fields where the header has {expected}"
            ));
        }
        Ok(Some(&self.fields))
    }

    /// Whether a line that starts like an exception is a row all the same: its first field,
    /// which holds the `Code: ...`, is in a text column and escapes its quotes.
    fn could_be_text_row(&self, line: &[u8]) -> bool {
        let first = line.split(|&b| b == b'\t').next().unwrap_or_default();
        let column = self
            .types
            .as_ref()
            .and_then(|t| t.first())
            .map_or("", String::as_str);
        is_text_type(column) && !has_bare_quote(first)
    }

    fn header_fields(&mut self) -> Vec<String> {
        self.fields
            .drain(..)
            .map(Option::unwrap_or_default)
            .collect()
    }

    /// Records `error` for every later call and lets the buffer go.
    fn fail<T>(&mut self, error: impl Into<String>) -> Result<T, String> {
        let error = error.into();
        self.failed = Some(error.clone());
        self.frame = None;
        self.buf = Vec::new();
        (self.start, self.scanned) = (0, 0);
        Err(error)
    }

    fn too_long(&self) -> String {
        format!(
            "a line of ClickHouse's answer is longer than {} (cdc_health.clickhouse_max_line); \
             raise cdc_health.clickhouse_max_line or read fewer or narrower columns",
            pretty_bytes(self.max_line as i64)
        )
    }

    /// The next line in the buffer, not yet consumed; each byte is searched once however
    /// many chunks a line arrives in.
    fn raw_line(&mut self) -> Raw {
        let from = self.scanned.max(self.start);
        match self.buf[from..].iter().position(|&b| b == b'\n') {
            Some(n) => {
                self.scanned = from + n;
                if from + n - self.start > self.max_line {
                    Raw::TooLong
                } else {
                    Raw::Line(self.start, from + n)
                }
            }
            None => {
                self.scanned = self.buf.len();
                let rest = self.buf.len() - self.start;
                if rest > self.max_line {
                    Raw::TooLong
                } else if self.finished && rest > 0 {
                    Raw::Line(self.start, self.buf.len())
                } else if self.finished {
                    Raw::End
                } else {
                    Raw::More
                }
            }
        }
    }

    fn consume(&mut self, end: usize) {
        self.start = (end + 1).min(self.buf.len());
    }

    /// The next line of data, reading past (and failing on) an exception frame.
    fn next_line(&mut self) -> Result<Next, String> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        loop {
            if self.frame.is_some() {
                return self.read_frame();
            }
            let (b, e) = match self.raw_line() {
                Raw::Line(b, e) => (b, e),
                Raw::TooLong => return self.fail(self.too_long()),
                Raw::More => return Ok(Next::More),
                Raw::End => return Ok(Next::End),
            };
            match self.framing(b, e) {
                Framing::Data => {
                    self.consume(e);
                    return Ok(Next::Line(b, e));
                }
                Framing::More => return Ok(Next::More),
                Framing::Before => self.consume(e),
                Framing::Opens { tag_line_next } => {
                    self.consume(e);
                    self.frame = Some(Frame {
                        tag_line_next,
                        message: Vec::new(),
                    });
                }
            }
        }
    }

    /// Whether an exception frame starts in or right after `buf[b..e]`. Every way it starts
    /// has a `\r\n`, so only a line ending in `\r` needs a look, at most a tag's length ahead.
    fn framing(&self, b: usize, e: usize) -> Framing {
        let line = &self.buf[b..e];
        let Some(content) = line.strip_suffix(b"\r") else {
            return Framing::Data;
        };
        let after = &self.buf[(e + 1).min(self.buf.len())..];
        let more_may_come = !self.finished && !self.overflow;
        let undecided = |p: Prefix| p == Prefix::SoFar && more_may_come;
        match self.tag.as_deref() {
            Some(tag) => {
                // The frame's first line: `...__exception__<tag>` or `...__exception__` with
                // the tag on the next line.
                if content.ends_with(tag) && content[..content.len() - tag.len()].ends_with(MARK) {
                    return Framing::Opens {
                        tag_line_next: false,
                    };
                }
                if content.ends_with(MARK) {
                    let tag_line = [tag, b"\r\n"].concat();
                    match prefix(after, &tag_line) {
                        Prefix::Whole => {
                            return Framing::Opens {
                                tag_line_next: true,
                            }
                        }
                        p if undecided(p) => return Framing::More,
                        _ => {}
                    }
                }
                let starts = [
                    [MARK, b"\r\n", tag, b"\r\n"].concat(),
                    [MARK, tag, b"\r\n"].concat(),
                ];
                let found = starts.iter().map(|s| prefix(after, s));
                let (mut whole, mut so_far) = (false, false);
                for p in found {
                    whole |= p == Prefix::Whole;
                    so_far |= undecided(p);
                }
                if whole {
                    Framing::Before
                } else if so_far {
                    Framing::More
                } else {
                    Framing::Data
                }
            }
            None => {
                if content.ends_with(MARK) {
                    return Framing::Opens {
                        tag_line_next: false,
                    };
                }
                match prefix(after, &[MARK, b"\r\n"].concat()) {
                    Prefix::Whole => Framing::Before,
                    p if undecided(p) => Framing::More,
                    _ => Framing::Data,
                }
            }
        }
    }

    /// Reads a frame's lines up to its closing `<length> <tag>` (25.11+) or, for an untagged
    /// marker, up to the end of the answer; then fails with the exception it holds.
    fn read_frame(&mut self) -> Result<Next, String> {
        loop {
            let (b, e) = match self.raw_line() {
                Raw::Line(b, e) => (b, e),
                Raw::More => return Ok(Next::More),
                // Cut short: report what arrived.
                Raw::TooLong | Raw::End => return self.fail_frame(),
            };
            self.consume(e);
            let line = &self.buf[b..e];
            let frame = self.frame.as_mut().expect("reading a frame");
            if frame.tag_line_next {
                frame.tag_line_next = false;
                continue;
            }
            if self
                .tag
                .as_deref()
                .is_some_and(|tag| closes_frame(line, tag))
            {
                return self.fail_frame();
            }
            if frame.message.len() + line.len() >= self.max_line {
                return self.fail_frame();
            }
            frame.message.extend_from_slice(line);
            frame.message.push(b'\n');
        }
    }

    fn fail_frame<T>(&mut self) -> Result<T, String> {
        let message = self.frame.take().map(|f| f.message).unwrap_or_default();
        let text = String::from_utf8_lossy(&message);
        let text = text.trim();
        let error = if text.is_empty() {
            "ClickHouse reported an error in the middle of its answer, but its text was cut off"
                .to_string()
        } else {
            remote_error(200, None, text).to_string()
        };
        self.fail(error)
    }
}

/// The line that closes a 25.11 frame: `<length> <tag>`, then `\r` (and `__exception__` on
/// the next line) or `__exception__` on the same line.
fn closes_frame(line: &[u8], tag: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(MARK).unwrap_or(line);
    let Some(rest) = line.strip_suffix(tag).and_then(|l| l.strip_suffix(b" ")) else {
        return false;
    };
    !rest.is_empty() && rest.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Row = Vec<Option<String>>;

    /// Rows read from `answer` pushed in `chunks`-byte pieces (reading after each), and how
    /// the answer ended: `Ok` at its end, or the error.
    fn read(mut r: RowReader, answer: &[u8], chunks: usize) -> (Vec<Row>, Result<(), String>) {
        let mut rows = Vec::new();
        let drain = |r: &mut RowReader, rows: &mut Vec<Row>| loop {
            match r.next_row() {
                Ok(Some(row)) => rows.push(row.to_vec()),
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            }
        };
        for piece in answer.chunks(chunks.max(1)) {
            r.push(piece);
            if let Err(e) = drain(&mut r, &mut rows) {
                return (rows, Err(e));
            }
        }
        r.finish();
        let end = drain(&mut r, &mut rows);
        (rows, end)
    }

    fn tagged(tag: &str) -> RowReader {
        let mut r = RowReader::default();
        r.set_exception_tag(Some(tag));
        r
    }

    fn row(values: &[&str]) -> Row {
        values.iter().map(|v| Some(v.to_string())).collect()
    }

    /// `read` at every split into two pieces and at every chunk size up to 7 bytes must give
    /// the same as reading `answer` whole.
    fn read_anyhow(make: impl Fn() -> RowReader, answer: &[u8]) -> (Vec<Row>, Result<(), String>) {
        let whole = read(make(), answer, answer.len());
        for size in 1..8 {
            assert_eq!(read(make(), answer, size), whole, "{size}-byte chunks");
        }
        for cut in 0..answer.len() {
            let mut r = make();
            let mut rows = Vec::new();
            let mut end = Ok(());
            'parts: for part in [&answer[..cut], &answer[cut..]] {
                r.push(part);
                loop {
                    match r.next_row() {
                        Ok(Some(row)) => rows.push(row.to_vec()),
                        Ok(None) => break,
                        Err(e) => {
                            end = Err(e);
                            break 'parts;
                        }
                    }
                }
            }
            if end.is_ok() {
                r.finish();
                loop {
                    match r.next_row() {
                        Ok(Some(row)) => rows.push(row.to_vec()),
                        Ok(None) => break,
                        Err(e) => {
                            end = Err(e);
                            break;
                        }
                    }
                }
            }
            assert_eq!((rows, end), whole, "cut at {cut}");
        }
        whole
    }

    #[test]
    fn a_first_row_that_quotes_an_exception_is_data() {
        // SELECT exception, query_id FROM system.query_log
        let answer = b"exception\tquery_id\nString\tString\n\
            Code: 1. DB::Exception: Not supported. (UNSUPPORTED_METHOD) (version 23.8.2.7 (official build))\tq1\n\
            Code: 60. DB::Exception: Table default.nope does not exist. (UNKNOWN_TABLE) (version 23.8.2.7 (official build))\tq2\n";
        let (rows, end) = read_anyhow(RowReader::default, answer);
        assert_eq!(end, Ok(()));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1][1].as_deref(), Some("q2"));
        assert!(rows[0][0]
            .as_deref()
            .unwrap()
            .starts_with("Code: 1. DB::Exception"));
    }

    #[test]
    fn a_single_text_column_of_stored_exceptions_is_data() {
        // Quotes are escaped in TabSeparated, so this cannot be a raw exception.
        let answer = b"exception\nLowCardinality(String)\n\
            Code: 47. DB::Exception: Unknown identifier \\'x\\'. (UNKNOWN_IDENTIFIER) (version 23.8.2.7 (official build))\n\
            Code: 241. DB::Exception: Memory limit (for query) exceeded. (MEMORY_LIMIT_EXCEEDED) (version 23.8.2.7 (official build))\n";
        let (rows, end) = read_anyhow(RowReader::default, answer);
        assert_eq!(end, Ok(()));
        assert_eq!(
            rows[0][0].as_deref(),
            Some("Code: 47. DB::Exception: Unknown identifier 'x'. (UNKNOWN_IDENTIFIER) (version 23.8.2.7 (official build))")
        );
        assert_eq!(rows.len(), 2, "a quote-free last row is data too");
    }

    #[test]
    fn an_answer_without_a_header_is_the_error() {
        let new = b"Code: 60. DB::Exception: Table default.nope does not exist. (UNKNOWN_TABLE) (version 23.8.2.7 (official build))\n";
        let (rows, end) = read_anyhow(RowReader::default, new);
        assert!(rows.is_empty());
        assert_eq!(
            end.unwrap_err(),
            "ClickHouse error 60: Table default.nope does not exist. (UNKNOWN_TABLE)"
        );
        // 18.16 echoes the query, newlines and all.
        let old = b"Code: 62, e.displayText() = DB::Exception: Syntax error: failed at position 1: SEL\nECT 1\n, expected SELECT, e.what() = DB::Exception\n";
        let error = read_anyhow(RowReader::default, old).1.unwrap_err();
        assert_eq!(
            error,
            "ClickHouse error 62: Syntax error: failed at position 1: SEL\nECT 1"
        );
        // A column that happens to be named like an exception still has its types line.
        let named = b"Code: 1. DB::x\nUInt8\n1\n";
        let (rows, end) = read_anyhow(RowReader::default, named);
        assert_eq!((rows, end), (vec![row(&["1"])], Ok(())));
    }

    #[test]
    fn a_tagged_exception_frame_after_rows_is_the_error() {
        // As ClickHouse 25.12 sends it (X-ClickHouse-Exception-Tag: rnywyenlaeqynhmu).
        let answer = b"n\ts\nUInt64\tString\n1\ta\n2\tb\n\
            \r\n__exception__\r\nrnywyenlaeqynhmu\r\n\
            Code: 159. DB::Exception: Timeout exceeded: elapsed 126.147987 ms, maximum: 100 ms. (TIMEOUT_EXCEEDED) (version 25.12.1.649 (official build))\n\
            142 rnywyenlaeqynhmu\r\n__exception__\r\n";
        let (rows, end) = read_anyhow(|| tagged("rnywyenlaeqynhmu"), answer);
        assert_eq!(rows, [row(&["1", "a"]), row(&["2", "b"])]);
        assert_eq!(
            end.unwrap_err(),
            "ClickHouse error 159: Timeout exceeded: elapsed 126.147987 ms, maximum: 100 ms. (TIMEOUT_EXCEEDED)"
        );
        // The frame cut into a row: the row is dropped, the exception reported.
        let mut cut = b"n\ts\nUInt64\tString\n1\ta\n2\tb".to_vec();
        cut.extend_from_slice(&answer[26..]);
        let (rows, end) = read_anyhow(|| tagged("rnywyenlaeqynhmu"), &cut);
        assert_eq!(rows, [row(&["1", "a"])]);
        assert!(end
            .unwrap_err()
            .starts_with("ClickHouse error 159: Timeout"));
    }

    #[test]
    fn a_frame_before_the_header_and_the_compact_frame_are_errors_too() {
        let before = b"\r\n__exception__\r\nabcdefghijklmnop\r\nCode: 395. DB::Exception: Value passed to 'throwIf' function is non-zero. (FUNCTION_THROW_IF_VALUE_IS_NON_ZERO) (version 25.11.1.1 (official build))\n175 abcdefghijklmnop\r\n__exception__\r\n";
        let (rows, end) = read_anyhow(|| tagged("abcdefghijklmnop"), before);
        assert!(rows.is_empty());
        assert!(end
            .unwrap_err()
            .starts_with("ClickHouse error 395: Value passed"));
        // The frame as `__exception__<tag>\r\n<message>\r\n<len> <tag>__exception__`.
        let compact = b"n\nUInt8\n7\n__exception__abcdefghijklmnop\r\nCode: 241. DB::Exception: Memory limit exceeded. (MEMORY_LIMIT_EXCEEDED)\r\n69 abcdefghijklmnop__exception__";
        let (rows, end) = read_anyhow(|| tagged("abcdefghijklmnop"), compact);
        assert_eq!(rows, [row(&["7"])]);
        assert_eq!(
            end.unwrap_err(),
            "ClickHouse error 241: Memory limit exceeded. (MEMORY_LIMIT_EXCEEDED)"
        );
        // Cut off before its end: what arrived is the error.
        let cut = &before[..80];
        let error = read_anyhow(|| tagged("abcdefghijklmnop"), cut)
            .1
            .unwrap_err();
        assert_eq!(error, "ClickHouse error 395: Value passed to 'th");
    }

    #[test]
    fn with_a_tag_only_a_frame_is_an_error() {
        let answer = b"s\nString\nCode: 395. DB::Exception: Value passed to 'throwIf' function is non-zero.\n";
        let (rows, end) = read_anyhow(|| tagged("abcdefghijklmnop"), answer);
        assert_eq!((rows.len(), end), (1, Ok(())));
        // A frame with another tag is not this answer's.
        let other = b"n\nUInt8\n1\n\r\n__exception__\r\nzzzzzzzzzzzzzzzz\r\n2\n";
        let (rows, end) = read_anyhow(|| tagged("abcdefghijklmnop"), other);
        assert_eq!(rows.len(), 5, "{rows:?}");
        assert_eq!(end, Ok(()));
    }

    #[test]
    fn a_raw_exception_after_rows_is_the_error_on_servers_without_a_tag() {
        let two = b"n\ts\nUInt64\tString\n1\ta\nCode: 241. DB::Exception: Memory limit (for query) exceeded: would use 9.31 GiB. (MEMORY_LIMIT_EXCEEDED) (version 23.8.1.1 (official build))\n";
        let (rows, end) = read_anyhow(RowReader::default, two);
        assert_eq!(rows, [row(&["1", "a"])]);
        assert_eq!(
            end.unwrap_err(),
            "ClickHouse error 241: Memory limit (for query) exceeded: would use 9.31 GiB. (MEMORY_LIMIT_EXCEEDED)"
        );
        // In a text column an exception gives itself away by its bare quotes.
        let text = b"s\nString\nabc\nCode: 395. DB::Exception: Value passed to 'throwIf' function is non-zero. (FUNCTION_THROW_IF_VALUE_IS_NON_ZERO) (version 23.8.1.1 (official build))\n";
        let (rows, end) = read_anyhow(RowReader::default, text);
        assert_eq!(rows, [row(&["abc"])]);
        assert!(end.unwrap_err().starts_with("ClickHouse error 395"));
        // Some 25.x servers mark it without a tag.
        let marked = b"n\nUInt8\n1\n\r\n__exception__\r\nCode: 159. DB::Exception: Timeout exceeded. (TIMEOUT_EXCEEDED)\n";
        let (rows, end) = read_anyhow(RowReader::default, marked);
        assert_eq!(rows, [row(&["1"])]);
        assert_eq!(
            end.unwrap_err(),
            "ClickHouse error 159: Timeout exceeded. (TIMEOUT_EXCEEDED)"
        );
        // Appended to a row it was cut into.
        let glued = b"n\ts\nUInt64\tString\n1Code: 241. DB::Exception: Memory limit exceeded\n";
        let error = read_anyhow(RowReader::default, glued).1.unwrap_err();
        assert_eq!(error, "ClickHouse error 241: Memory limit exceeded");
    }

    #[test]
    fn fixed_string_padding_is_stripped() {
        let mut out = Vec::new();
        parse_row(b"ab\\0\\0\ta\\0b\\0", &mut out).unwrap();
        let text =
            |t: &str, v: &Option<String>| pg_text(t, v.clone().unwrap(), Target::Other, "UTC");
        assert_eq!(text("FixedString(4)", &out[0]), Some("ab".into()));
        assert_eq!(text("Nullable(FixedString(4))", &out[0]), Some("ab".into()));
        assert_eq!(
            text("LowCardinality(FixedString(4))", &out[1]),
            Some("a\0b".into())
        );
        assert_eq!(
            text("FixedString(4)", &Some("\0\0\0\0".into())),
            Some(String::new())
        );
        assert_eq!(
            text("String", &out[0]),
            Some("ab\0\0".into()),
            "only FixedString pads"
        );
    }

    #[test]
    fn a_32_mib_line_fed_in_64_kib_chunks_is_read_whole() {
        let value: String = (0..32 << 20)
            .map(|i| (b'a' + (i % 26) as u8) as char)
            .collect();
        let mut answer = b"n\ts\nUInt8\tString\n".to_vec();
        answer.extend_from_slice(b"1\t");
        answer.extend_from_slice(value.as_bytes());
        answer.extend_from_slice(b"\n2\tb\n");
        let (rows, end) = read(RowReader::default(), &answer, 64 << 10);
        assert_eq!(end, Ok(()));
        assert_eq!(rows.len(), 2);
        assert!(
            rows[0][1].as_deref() == Some(value.as_str()),
            "the long value is intact"
        );
        assert_eq!(rows[1], row(&["2", "b"]));
    }

    #[test]
    fn a_line_over_the_limit_is_an_error_that_names_the_setting() {
        let limit = 1 << 20;
        let mut answer = b"s\nString\nshort\n".to_vec();
        answer.resize(answer.len() + limit + 1, b'x');
        answer.extend_from_slice(b"\nafter\n");
        for chunk in [64 << 10, answer.len()] {
            let mut r = RowReader::new(limit);
            let (rows, end) = {
                let mut rows = Vec::new();
                let mut end = Ok(());
                for piece in answer.chunks(chunk) {
                    r.push(piece);
                    assert!(r.buf.len() <= 2 * limit + chunk, "memory stays bounded");
                }
                r.finish();
                loop {
                    match r.next_row() {
                        Ok(Some(row)) => rows.push(row.to_vec()),
                        Ok(None) => break,
                        Err(e) => {
                            end = Err(e);
                            break;
                        }
                    }
                }
                (rows, end)
            };
            assert_eq!(rows, [row(&["short"])], "lines before it are read");
            let error = end.unwrap_err();
            assert!(
                error.contains("longer than 1 MB (cdc_health.clickhouse_max_line)")
                    && error.contains("raise cdc_health.clickhouse_max_line"),
                "{error}"
            );
            assert_eq!(r.next_row().unwrap_err(), error, "the error sticks");
        }
        // A line of exactly the limit is fine.
        let mut exact = b"s\nString\n".to_vec();
        exact.resize(exact.len() + limit, b'y');
        let (rows, end) = read(RowReader::new(limit), &exact, 1000);
        assert_eq!(
            (rows[0][0].as_ref().map(String::len), end),
            (Some(limit), Ok(()))
        );
        assert_eq!(RowReader::new(1).max_line, MIN_MAX_LINE_BYTES);
    }

    #[test]
    fn rows_unescape_and_null() {
        let mut out = Vec::new();
        parse_row(b"1\ta\\tb\\nc\t\\N\t\t\\\\x", &mut out).unwrap();
        assert_eq!(
            out,
            vec![
                Some("1".into()),
                Some("a\tb\nc".into()),
                None,
                Some(String::new()),
                Some("\\x".into())
            ]
        );
        assert!(parse_row(b"abc\\", &mut out).is_err());
        assert!(parse_row(b"\xff\xfe", &mut out)
            .unwrap_err()
            .contains("UTF-8"));
    }

    #[test]
    fn values_become_postgres_input_text() {
        let s = |v: &str| v.to_string();
        assert_eq!(base_type("Nullable(LowCardinality(String))"), "String");
        assert_eq!(
            pg_text(
                "DateTime",
                s("2024-01-02 03:04:05"),
                Target::TimestampTz,
                "UTC"
            ),
            Some(s("2024-01-02 03:04:05 UTC"))
        );
        assert_eq!(
            pg_text(
                "Nullable(DateTime64(6, 'Europe/Berlin'))",
                s("2024-01-02 03:04:05.123456"),
                Target::TimestampTz,
                "UTC"
            ),
            Some(s("2024-01-02 03:04:05.123456 Europe/Berlin"))
        );
        assert_eq!(
            pg_text("DateTime", s("2024-01-02 03:04:05"), Target::Other, "UTC"),
            Some(s("2024-01-02 03:04:05"))
        );
        assert_eq!(
            pg_text(
                "DateTime",
                s("0000-00-00 00:00:00"),
                Target::TimestampTz,
                "UTC"
            ),
            None
        );
        assert_eq!(pg_text("Date", s("0000-00-00"), Target::Other, "UTC"), None);
        assert_eq!(
            pg_text("Float64", s("-inf"), Target::Other, "UTC"),
            Some(s("-Infinity"))
        );
        assert_eq!(
            pg_text("Float32", s("nan"), Target::Other, "UTC"),
            Some(s("NaN"))
        );
        assert_eq!(
            pg_text("String", s("nan"), Target::Other, "UTC"),
            Some(s("nan"))
        );
    }

    #[test]
    fn a_stream_split_anywhere_reads_the_same_rows() {
        let answer = b"n\tt\nUInt64\tNullable(String)\n1\ta\n2\t\\N\n3\tc\td\n";
        for cut in 0..answer.len() {
            let mut r = RowReader::default();
            let mut rows = Vec::new();
            let mut error = None;
            for part in [&answer[..cut], &answer[cut..]] {
                r.push(part);
                loop {
                    match r.next_row() {
                        Ok(Some(row)) => rows.push(row.to_vec()),
                        Ok(None) => break,
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    }
                }
                if error.is_some() {
                    break;
                }
            }
            assert_eq!(r.names().unwrap(), ["n", "t"]);
            assert_eq!(r.types().unwrap(), ["UInt64", "Nullable(String)"]);
            assert_eq!(
                rows,
                vec![
                    vec![Some("1".into()), Some("a".into())],
                    vec![Some("2".into()), None]
                ],
                "cut at {cut}"
            );
            assert!(error.unwrap().contains("3 fields where the header has 2"));
        }
    }

    #[test]
    fn an_exception_after_rows_is_an_error() {
        let mut r = RowReader::default();
        r.push(b"n\nUInt64\n1\nCode: 241, e.displayText() = DB::Exception: Memory limit exceeded");
        r.finish();
        assert_eq!(r.next_row().unwrap().unwrap(), [Some("1".to_string())]);
        let e = r.next_row().unwrap_err();
        assert_eq!(e, "ClickHouse error 241: Memory limit exceeded");
        let mut r = RowReader::default();
        r.push(b"n\n");
        r.finish();
        assert!(r.next_row().unwrap_err().contains("header"));
        let mut r = RowReader::default();
        r.push(b"n\nUInt64\n");
        r.finish();
        assert!(r.next_row().unwrap().is_none());
    }
}
