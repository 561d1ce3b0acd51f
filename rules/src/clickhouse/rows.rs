//! The rows of a `TabSeparatedWithNamesAndTypes` answer, read as they stream in.

use super::{remote_error, RemoteError};

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

/// An exception ClickHouse appended to a result it had already started to stream.
pub fn exception_in_stream(line: &[u8]) -> Option<RemoteError> {
    let text = String::from_utf8_lossy(line);
    (text.starts_with("Code: ") && text.contains("DB::Exception"))
        .then(|| remote_error(200, None, &text))
}

/// Splits a byte stream into the header (names, types) and rows, keeping at most one
/// partial line between chunks.
#[derive(Debug, Default)]
pub struct RowReader {
    buf: Vec<u8>,
    start: usize,
    finished: bool,
    names: Option<Vec<String>>,
    types: Option<Vec<String>>,
    fields: Vec<Option<String>>,
}

impl RowReader {
    pub fn push(&mut self, chunk: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(chunk);
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

    /// Bounds of the next complete line in `buf`, consumed.
    fn next_line(&mut self) -> Option<(usize, usize)> {
        let rest = &self.buf[self.start..];
        let (begin, end, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(n) => (self.start, self.start + n, self.start + n + 1),
            None if self.finished && !rest.is_empty() => {
                (self.start, self.buf.len(), self.buf.len())
            }
            None => return None,
        };
        self.start = next;
        Some((begin, end))
    }

    fn header_line(&mut self) -> Result<Option<Vec<String>>, String> {
        let Some((b, e)) = self.next_line() else {
            return Ok(None);
        };
        if let Some(err) = exception_in_stream(&self.buf[b..e]) {
            return Err(err.to_string());
        }
        parse_row(&self.buf[b..e], &mut self.fields)?;
        Ok(Some(
            self.fields
                .drain(..)
                .map(Option::unwrap_or_default)
                .collect(),
        ))
    }

    /// Reads the two header lines if they are there; true once names and types are known.
    pub fn read_header(&mut self) -> Result<bool, String> {
        if self.names.is_none() {
            match self.header_line()? {
                Some(names) => self.names = Some(names),
                None => return self.incomplete_header(),
            }
        }
        if self.types.is_none() {
            match self.header_line()? {
                Some(types) => self.types = Some(types),
                None => return self.incomplete_header(),
            }
        }
        Ok(true)
    }

    /// The next row, `Ok(None)` when more bytes are needed (or, after `finish`, at the end).
    pub fn next_row(&mut self) -> Result<Option<&[Option<String>]>, String> {
        if !self.read_header()? {
            return Ok(None);
        }
        let Some((b, e)) = self.next_line() else {
            return Ok(None);
        };
        let expected = self.names.as_ref().map_or(0, Vec::len);
        let line = &self.buf[b..e];
        // ClickHouse appends an exception that happens mid-stream as a line of text.
        if line.starts_with(b"Code: ") {
            if let Some(err) = exception_in_stream(line) {
                return Err(err.to_string());
            }
        }
        let parsed = parse_row(line, &mut self.fields);
        if parsed.is_err() || self.fields.len() != expected {
            parsed?;
            return Err(format!(
                "a row of the answer has {} fields where the header has {expected}",
                self.fields.len()
            ));
        }
        Ok(Some(&self.fields))
    }

    fn incomplete_header(&self) -> Result<bool, String> {
        if self.finished {
            Err("the answer ended before its header (column names and types)".into())
        } else {
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
