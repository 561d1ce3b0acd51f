//! WAL positions (`pg_lsn`) as plain integers.

use std::fmt;

/// A parse failure that names the text that was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsnParseError(pub String);

impl fmt::Display for LsnParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid WAL position \"{}\": expected two hex numbers like 16/B374D848",
            self.0
        )
    }
}

impl std::error::Error for LsnParseError {}

/// Parses PostgreSQL's text form of a WAL position, `XXXXXXXX/XXXXXXXX`.
pub fn parse_lsn(text: &str) -> Result<u64, LsnParseError> {
    let err = || LsnParseError(text.to_string());
    let (hi, lo) = text.split_once('/').ok_or_else(err)?;
    // Only hex digits, as pg_lsn: `from_str_radix` alone would also take a sign (`+A/+4`).
    let valid =
        |part: &str| (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid(hi) || !valid(lo) {
        return Err(err());
    }
    let hi = u32::from_str_radix(hi, 16).map_err(|_| err())?;
    let lo = u32::from_str_radix(lo, 16).map_err(|_| err())?;
    Ok((u64::from(hi) << 32) | u64::from(lo))
}

/// Formats a WAL position the way PostgreSQL prints it.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Bytes from `older` to `newer`; zero when `older` is ahead (e.g. a standby replaying
/// behind a slot position copied from its primary).
pub fn bytes_between(newer: u64, older: u64) -> i64 {
    i64::try_from(newer.saturating_sub(older)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_round_trip() {
        for text in ["0/0", "0/16B3748", "16/B374D848", "FFFFFFFF/FFFFFFFF"] {
            assert_eq!(format_lsn(parse_lsn(text).unwrap()), text);
        }
        assert_eq!(parse_lsn("1/0").unwrap(), 1 << 32);
        assert_eq!(parse_lsn("0/10").unwrap(), 16);
    }

    #[test]
    fn accepts_lower_case_hex() {
        assert_eq!(parse_lsn("a/ff").unwrap(), (10 << 32) | 255);
    }

    #[test]
    fn rejects_malformed_text_and_names_it() {
        for bad in [
            "",
            "0",
            "/1",
            "1/",
            "g/0",
            "0/1/2",
            "100000000/0",
            "0/-1",
            " 0/1",
        ] {
            let err = parse_lsn(bad).unwrap_err();
            assert!(
                err.to_string().contains(&format!("\"{bad}\"")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn signs_and_non_hex_digits_are_rejected_like_pg_lsn_does() {
        for bad in [
            "+A/+4",
            "+0/0",
            "0/+1",
            "-0/0",
            "0x1/0",
            "1/0 ",
            "\u{0661}/0",
        ] {
            assert!(parse_lsn(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_lsn("00000000/00000001").unwrap(),
            1,
            "leading zeros are digits"
        );
    }

    #[test]
    fn distance_never_goes_negative() {
        assert_eq!(bytes_between(100, 40), 60);
        assert_eq!(bytes_between(40, 100), 0);
        assert_eq!(bytes_between(u64::MAX, 0), i64::MAX);
    }
}
