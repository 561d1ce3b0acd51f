//! Text that other sessions wrote (queries, application names, transaction gids, role and
//! database names), as the extension reads it: raw bytes in whatever encoding they came in.
//!
//! `pg_stat_activity` shows text in the encoding of the database it came from, so a UTF8
//! database sees LATIN1 bytes from a LATIN1 database, and a LATIN1 or SQL_ASCII database
//! holds text that is not UTF-8 at all. Rust must never hold invalid UTF-8 in a `String`,
//! and a pass must never fail over a stranger's text: what cannot be represented is replaced.

/// The server encoding the bytes are read in, as far as decoding them needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEncoding {
    /// UTF8: the bytes should be UTF-8; any that are not are replaced by U+FFFD.
    Utf8,
    /// Any other (LATIN1, SQL_ASCII, ...): ASCII kept, every other byte replaced by `?`.
    /// What the extension writes back into such a database must be ASCII: pgrx reads text
    /// there only while it is, and a SQL_ASCII database's clients decode it as ASCII.
    NotUtf8,
}

/// Text read from another session, and whether it came through whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub text: String,
    /// False when bytes were replaced: the text no longer names what it came from exactly.
    pub exact: bool,
}

/// `bytes` as a `String`, never failing: pure ASCII as it is, then by `encoding`.
pub fn decode(bytes: &[u8], encoding: ServerEncoding) -> Decoded {
    if bytes.is_ascii() {
        // Cannot fail: ASCII is UTF-8.
        let text = String::from_utf8(bytes.to_vec()).unwrap_or_default();
        return Decoded { text, exact: true };
    }
    match encoding {
        ServerEncoding::Utf8 => match String::from_utf8(bytes.to_vec()) {
            Ok(text) => Decoded { text, exact: true },
            Err(e) => Decoded {
                text: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                exact: false,
            },
        },
        ServerEncoding::NotUtf8 => Decoded {
            text: bytes
                .iter()
                .map(|&b| if b.is_ascii() { char::from(b) } else { '?' })
                .collect(),
            exact: false,
        },
    }
}

/// The command word a statement starts with ("ALTER", "SELECT"), upper-cased, past leading
/// blanks and comments; `None` when it starts with no word. The rest of a statement (its
/// literals: passwords, personal data) is never kept or shipped.
pub fn statement_head(query: &str) -> Option<String> {
    let mut rest = query;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, tail)| tail);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, tail)| tail);
        } else {
            break;
        }
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .take(32)
        .collect();
    (!word.is_empty()).then(|| word.to_ascii_uppercase())
}

/// Characters that must not reach a reader as they are: control characters, line and
/// paragraph separators, and the invisible format characters (zero-width, bidirectional
/// overrides and isolates) that can make text read differently from what it is.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A string literal for SQL that names `text` exactly on one line: `'...'` with quotes
/// doubled, or `E'...'` with backslash escapes when it holds a backslash (which a session
/// with `standard_conforming_strings = off` would read as an escape in `'...'`) or an unsafe
/// character (a line break in a gid must not start a line of its own in a remedy).
pub fn sql_literal(text: &str) -> String {
    if !text.chars().any(|c| c == '\\' || is_unsafe_char(c)) {
        return format!("'{}'", text.replace('\'', "''"));
    }
    let mut out = String::from("E'");
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe_char(c) => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_is_kept_and_other_bytes_are_decoded_or_replaced() {
        let text = |b: &[u8], e| decode(b, e).text;
        assert_eq!(
            decode(b"plain", ServerEncoding::NotUtf8),
            Decoded {
                text: "plain".into(),
                exact: true
            }
        );
        assert_eq!(
            decode("café".as_bytes(), ServerEncoding::Utf8),
            Decoded {
                text: "café".into(),
                exact: true
            }
        );
        // "café" in LATIN1 (0xE9 is é) seen from a UTF8 database, and in a LATIN1 one.
        assert_eq!(text(b"caf\xe9", ServerEncoding::Utf8), "caf\u{FFFD}");
        assert_eq!(text(b"caf\xe9", ServerEncoding::NotUtf8), "caf?");
        assert_eq!(text("café".as_bytes(), ServerEncoding::NotUtf8), "caf??");
        assert!(!decode(b"caf\xe9", ServerEncoding::Utf8).exact);
        assert!(!decode(b"caf\xe9", ServerEncoding::NotUtf8).exact);
    }

    #[test]
    fn only_the_command_word_of_a_statement_is_kept() {
        assert_eq!(
            statement_head("ALTER ROLE app PASSWORD 'hunter2'").as_deref(),
            Some("ALTER")
        );
        assert_eq!(
            statement_head("  /* app */ -- note\n select 1").as_deref(),
            Some("SELECT")
        );
        assert_eq!(statement_head("(SELECT 1)"), None);
        assert_eq!(statement_head(""), None);
        assert_eq!(statement_head("/* never closed"), None);
        assert_eq!(statement_head(&"x".repeat(100)).map(|w| w.len()), Some(32));
    }

    #[test]
    fn literals_stay_on_one_line_and_name_the_text_exactly() {
        assert_eq!(sql_literal("it's"), "'it''s'");
        assert_eq!(
            sql_literal("a\nFALSE POSITIVE\\ '"),
            "E'a\\nFALSE POSITIVE\\\\ '''"
        );
        assert_eq!(sql_literal("\u{7}"), "E'\\u0007'");
        assert!(!sql_literal("x\r\ny").contains(['\n', '\r']));
        // A backslash is an escape only in E'...', whatever standard_conforming_strings says.
        assert_eq!(
            sql_literal("x\\'; SELECT 1; --"),
            "E'x\\\\''; SELECT 1; --'"
        );
        assert_eq!(sql_literal("a\u{2028}b\u{202E}c"), "E'a\\u2028b\\u202Ec'");
    }
}
