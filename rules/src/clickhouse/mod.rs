//! ClickHouse over HTTP, without the I/O: the wrapper's options, the SQL sent, the
//! errors ClickHouse reports. The rows that come back are read in `rows`.
//!
//! Written against both ClickHouse 18.16 (Debian) and current servers: old servers put the
//! error code only in the body and have no DateTime64; new ones send
//! `X-ClickHouse-Exception-Code` and fractional seconds.

use std::time::Duration;

mod rows;
pub use rows::{
    base_type, exception_in_stream, parse_row, pg_text, RowReader, Target, DEFAULT_MAX_LINE_BYTES,
    MIN_MAX_LINE_BYTES,
};

/// Where an option is set; each place accepts its own names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionPlace {
    Wrapper,
    Server,
    UserMapping,
    ForeignTable,
    Column,
}

impl OptionPlace {
    pub fn valid_names(self) -> &'static [&'static str] {
        match self {
            Self::Wrapper => &[],
            Self::Server => &["url", "database", "connect_timeout", "timeout", "timezone"],
            Self::UserMapping => &["user", "password"],
            Self::ForeignTable => &["table", "query", "rows"],
            Self::Column => &["column_name"],
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::Wrapper => "foreign-data wrapper",
            Self::Server => "server",
            Self::UserMapping => "user mapping",
            Self::ForeignTable => "foreign table",
            Self::Column => "foreign table column",
        }
    }
}

pub const DEFAULT_DATABASE: &str = "default";
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEZONE: &str = "UTC";
const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);

/// Checks one object's complete option list, as the validator receives it.
pub fn validate(place: OptionPlace, options: &[(String, String)]) -> Result<(), String> {
    let valid = place.valid_names();
    for (name, value) in options {
        if !valid.contains(&name.as_str()) {
            return Err(if valid.is_empty() {
                format!(
                    "invalid option \"{name}\": a cdc_health_clickhouse {} takes no options",
                    place.noun()
                )
            } else {
                format!(
                    "invalid option \"{name}\" for a cdc_health_clickhouse {}; valid options: {}",
                    place.noun(),
                    valid.join(", ")
                )
            });
        }
        check_value(name, value)?;
    }
    if place == OptionPlace::ForeignTable {
        let has = |n: &str| options.iter().any(|(name, _)| name == n);
        match (has("table"), has("query")) {
            (true, true) => {
                return Err("options \"table\" and \"query\" exclude each other; give one".into())
            }
            (false, false) => {
                return Err(
                    "a cdc_health_clickhouse foreign table needs option \"table\" ('db.table') \
                     or \"query\" (a SELECT run in ClickHouse)"
                        .into(),
                )
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_value(name: &str, value: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid value for option \"{name}\": {why}"));
    match name {
        "url" => check_url(value).map_err(|why| format!("invalid value for option \"url\": {why}")),
        "connect_timeout" | "timeout" => match read_duration(value) {
            Ok(d) if d.is_zero() => bad("must be more than 0"),
            Ok(d) if d > MAX_TIMEOUT => bad("must be at most 1 day"),
            Ok(_) => Ok(()),
            Err(DurationError::TooLong) => bad("must be at most 1 day"),
            Err(DurationError::Malformed) => {
                bad("expected a duration such as '10s', '500ms' or '2min'")
            }
        },
        "database" | "user" | "column_name" if value.is_empty() => bad("must not be empty"),
        "timezone" if !is_zone_name(value) => {
            bad("expected a time zone name such as 'UTC' or 'Europe/Berlin'")
        }
        "table" => match table_path(value) {
            Some(_) => Ok(()),
            None => bad("expected 'table' or 'database.table'"),
        },
        "query" if query_text(value).is_empty() => bad("must not be empty"),
        "rows" => match value.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(()),
            _ => bad("expected a positive whole number (the planner's row estimate)"),
        },
        _ => Ok(()),
    }
}

/// `http(s)://host[:port][/path]`; credentials belong in the user mapping, never the URL.
fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("expected http://host:port or https://host:port")?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err("put the user name and password in the user mapping, not in the URL".into());
    }
    if rest.contains('?') || rest.contains('#') {
        return Err("query strings and fragments are not allowed; set options instead".into());
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !authority.ends_with(']') => {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("invalid port \"{port}\""));
            }
            host
        }
        _ => authority,
    };
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    Ok(())
}

fn is_zone_name(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_/+-:".contains(c))
}

/// The longest duration [`read_duration`] accepts: `u32::MAX` seconds (about 136 years), far
/// past any timeout and well inside what `Duration` holds.
pub const MAX_DURATION: Duration = Duration::from_secs(u32::MAX as u64);

/// Why a duration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationError {
    /// Not a number with a known unit.
    Malformed,
    /// Longer than [`MAX_DURATION`].
    TooLong,
}

impl std::fmt::Display for DurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed => f.write_str("expected a duration such as '10s', '500ms' or '2min'"),
            Self::TooLong => write!(
                f,
                "must be at most {} seconds (about 136 years)",
                MAX_DURATION.as_secs()
            ),
        }
    }
}

/// A duration written as `10s`, `500ms`, `2min`, `1h` or a bare number of seconds; `None`
/// when [`read_duration`] refuses it.
pub fn parse_duration(text: &str) -> Option<Duration> {
    read_duration(text).ok()
}

/// [`parse_duration`], saying why a text was refused.
///
/// Read in whole nanoseconds rather than through `f64`: a float holds few decimals exactly
/// (`3ms` would come back as 2.999999 ms), and `Duration::from_secs_f64` panics on values
/// it cannot hold, which a server option must never make it do.
pub fn read_duration(text: &str) -> Result<Duration, DurationError> {
    const NANOS: u128 = 1_000_000_000;
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let per_unit: u128 = match unit.trim() {
        "" | "s" | "sec" | "secs" | "seconds" => NANOS,
        "ms" => NANOS / 1000,
        "min" | "mins" | "minutes" => 60 * NANOS,
        "h" | "hours" => 3600 * NANOS,
        _ => return Err(DurationError::Malformed),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(DurationError::Malformed);
    }
    let limit = u128::from(MAX_DURATION.as_secs()) * NANOS;
    // Saturating just past the limit: however many digits follow, it stays too long.
    let digits = |text: &str| {
        text.bytes()
            .fold(0u128, |n, d| (n * 10 + u128::from(d - b'0')).min(limit + 1))
    };
    let whole = digits(whole).saturating_mul(per_unit);
    // Digits past the nanosecond change nothing; 21 cover an hour's 3.6e12 ns.
    let fraction = &fraction[..fraction.len().min(21)];
    let nanos = whole + digits(fraction) * per_unit / 10u128.pow(fraction.len() as u32);
    if nanos > limit {
        return Err(DurationError::TooLong);
    }
    Ok(Duration::new(
        (nanos / NANOS) as u64,
        (nanos % NANOS) as u32,
    ))
}

/// `db.table` or `table`, as (database, table).
fn table_path(value: &str) -> Option<(Option<&str>, &str)> {
    let parts: Vec<&str> = value.split('.').collect();
    let ok = |s: &&str| !s.is_empty() && !s.contains('`');
    match parts.as_slice() {
        [t] if ok(t) => Some((None, t)),
        [d, t] if ok(d) && ok(t) => Some((Some(d), t)),
        _ => None,
    }
}

/// A user's query without trailing semicolons: `FORMAT` is appended to it.
fn query_text(value: &str) -> &str {
    value.trim().trim_end_matches(';').trim_end()
}

/// The server's settings, with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub url: String,
    pub database: String,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub timezone: String,
}

impl Server {
    pub fn from_options(options: &[(String, String)]) -> Result<Self, String> {
        validate(OptionPlace::Server, options)?;
        let get = |n: &str| {
            options
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, v)| v.as_str())
        };
        let duration = |n: &str, default| get(n).and_then(parse_duration).unwrap_or(default);
        Ok(Self {
            url: get("url")
                .ok_or("the server needs option \"url\", e.g. 'http://127.0.0.1:8123'")?
                .trim_end_matches('/')
                .to_string(),
            database: get("database").unwrap_or(DEFAULT_DATABASE).to_string(),
            connect_timeout: duration("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
            timeout: duration("timeout", DEFAULT_TIMEOUT),
            timezone: get("timezone").unwrap_or(DEFAULT_TIMEZONE).to_string(),
        })
    }
}

/// What a foreign table reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Table(String),
    Query(String),
}

impl Source {
    pub fn from_options(options: &[(String, String)]) -> Result<Self, String> {
        validate(OptionPlace::ForeignTable, options)?;
        let (name, value) = options
            .iter()
            .find(|(n, _)| n == "table" || n == "query")
            .expect("validated");
        Ok(if name == "table" {
            Self::Table(value.clone())
        } else {
            Self::Query(query_text(value).to_string())
        })
    }

    /// As a FROM item: the quoted table, or the query as a subquery.
    pub fn from_item(&self) -> String {
        match self {
            Self::Table(path) => match table_path(path).expect("validated") {
                (Some(db), t) => format!("{}.{}", quote_ident(db), quote_ident(t)),
                (None, t) => quote_ident(t),
            },
            Self::Query(q) => format!("({q})"),
        }
    }

    /// The scan's SQL. A table is read column by column (only those PostgreSQL needs); a query
    /// is sent as written and its result columns are matched by name.
    pub fn scan_sql(&self, columns: &[&str]) -> String {
        let body = match self {
            Self::Table(_) if columns.is_empty() => format!("SELECT 1 FROM {}", self.from_item()),
            Self::Table(_) => {
                let list: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
                format!("SELECT {} FROM {}", list.join(", "), self.from_item())
            }
            Self::Query(q) => q.clone(),
        };
        format!("{body}\nFORMAT {WIRE_FORMAT}")
    }
}

/// Names and types in two header lines, then one tab-separated line per row.
pub const WIRE_FORMAT: &str = "TabSeparatedWithNamesAndTypes";

/// ClickHouse identifier quoting.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// ClickHouse string literal quoting.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// An error reported by ClickHouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    pub code: Option<u32>,
    pub message: String,
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(code) => write!(f, "ClickHouse error {code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

const MAX_MESSAGE: usize = 1000;

/// Reads an error body. 18.16 writes `Code: 60, e.displayText() = DB::Exception: msg, e.what()
/// = DB::Exception`; newer servers `Code: 60. DB::Exception: msg. (UNKNOWN_TABLE) (version
/// 23.8.1)` and send the code in `X-ClickHouse-Exception-Code` as well.
pub fn remote_error(status: u16, code_header: Option<&str>, body: &str) -> RemoteError {
    let body = body.trim();
    let code = code_header.and_then(|h| h.trim().parse().ok()).or_else(|| {
        let rest = body.split_once("Code: ")?.1;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    let clickhouse = code.is_some() || body.contains("DB::Exception");
    if !clickhouse {
        // Not ClickHouse's answer (a proxy, a load balancer, a login page, another server a
        // redirect points at): its body may say anything about the network, so it is not
        // repeated in messages that reach the check's owner and the logs.
        let message = match status {
            300..=399 => format!(
                "HTTP status {status}: a redirect, which is not followed (point the server's \
                 url option at ClickHouse itself)"
            ),
            _ if body.is_empty() => format!("HTTP status {status} with an empty body"),
            _ => format!(
                "HTTP status {status} from a server that does not answer as ClickHouse does \
                 (its body is not shown)"
            ),
        };
        return RemoteError { code, message };
    }
    let mut message = match body.split_once("DB::Exception: ") {
        Some((_, rest)) => {
            let end = [", e.what() = ", " (version "]
                .iter()
                .filter_map(|m| rest.find(m))
                .min()
                .unwrap_or(rest.len());
            rest[..end].trim().to_string()
        }
        None if body.is_empty() => format!("HTTP status {status} with an empty body"),
        None => body.to_string(),
    };
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
    RemoteError { code, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn unknown_options_are_named_with_the_valid_ones() {
        let err = validate(OptionPlace::Server, &opts(&[("host", "x")])).unwrap_err();
        assert!(
            err.contains("\"host\"") && err.contains("url, database"),
            "{err}"
        );
        let err = validate(OptionPlace::UserMapping, &opts(&[("url", "x")])).unwrap_err();
        assert!(
            err.contains("user mapping") && err.contains("user, password"),
            "{err}"
        );
        let err = validate(OptionPlace::Wrapper, &opts(&[("a", "b")])).unwrap_err();
        assert!(err.contains("takes no options"), "{err}");
    }

    #[test]
    fn urls_must_be_http_without_credentials() {
        let check = |u: &str| validate(OptionPlace::Server, &opts(&[("url", u)]));
        assert!(check("http://127.0.0.1:8123").is_ok());
        assert!(check("https://abc.clickhouse.cloud:8443/").is_ok());
        assert!(check("http://[::1]:8123").is_ok());
        assert!(check("ftp://x").unwrap_err().contains("http://"));
        assert!(check("http://u:secret@h:8123")
            .unwrap_err()
            .contains("user mapping"));
        assert!(check("http://h:0").unwrap_err().contains("port"));
        assert!(check("http://h:99999").unwrap_err().contains("port"));
        assert!(check("http://h:8123/?user=x").is_err());
        assert!(check("http://").unwrap_err().contains("host"));
    }

    #[test]
    fn durations_parse_with_units_and_bounds() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2min"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5 s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("ten"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
        let check = |v: &str| validate(OptionPlace::Server, &opts(&[("timeout", v)]));
        assert!(check("0s").unwrap_err().contains("more than 0"));
        assert!(check("2d").unwrap_err().contains("duration"));
        assert!(check("25h").unwrap_err().contains("1 day"));
    }

    #[test]
    fn durations_too_long_to_hold_are_refused_instead_of_panicking() {
        for text in [
            "6000000000000000h",
            "400000000000000000min",
            "20000000000000000000",
            &"9".repeat(400),
        ] {
            assert_eq!(read_duration(text), Err(DurationError::TooLong), "{text}");
            assert_eq!(parse_duration(text), None);
            let err = validate(OptionPlace::Server, &opts(&[("timeout", text)])).unwrap_err();
            assert_eq!(
                err, "invalid value for option \"timeout\": must be at most 1 day",
                "{text}"
            );
        }
        assert!(DurationError::TooLong
            .to_string()
            .contains("at most 4294967295 seconds"));
        assert_eq!(read_duration("4294967295s"), Ok(MAX_DURATION));
        assert_eq!(
            read_duration("4294967295.000000001"),
            Err(DurationError::TooLong)
        );
        assert_eq!(
            read_duration("71582788min"),
            Ok(Duration::from_secs(4_294_967_280))
        );
    }

    #[test]
    fn durations_are_read_to_the_nanosecond_without_floats() {
        assert_eq!(read_duration("3ms"), Ok(Duration::from_millis(3)));
        assert_eq!(read_duration("0.001"), Ok(Duration::from_millis(1)));
        assert_eq!(read_duration(".5min"), Ok(Duration::from_secs(30)));
        assert_eq!(read_duration("1."), Ok(Duration::from_secs(1)));
        assert_eq!(
            read_duration("0000000000000000000000001h"),
            Ok(Duration::from_secs(3600))
        );
        assert_eq!(
            read_duration("1.0000000001"),
            Ok(Duration::from_secs(1)),
            "below 1 ns"
        );
        assert_eq!(
            read_duration("0.000000001h"),
            Ok(Duration::from_nanos(3600))
        );
        for bad in [".", "", "1.2.3", "-1s", "+1s", "1e3", "s", "1 2s"] {
            assert_eq!(read_duration(bad), Err(DurationError::Malformed), "{bad}");
        }
    }

    #[test]
    fn a_foreign_table_reads_a_table_or_a_query() {
        let check = |o: &[(&str, &str)]| validate(OptionPlace::ForeignTable, &opts(o));
        assert!(check(&[("table", "db.t")]).is_ok());
        assert!(check(&[("query", "SELECT 1")]).is_ok());
        assert!(check(&[]).unwrap_err().contains("needs option"));
        assert!(check(&[("table", "t"), ("query", "SELECT 1")])
            .unwrap_err()
            .contains("exclude"));
        assert!(check(&[("table", "a.b.c")]).is_err());
        assert!(check(&[("table", "a`b")]).is_err());
        assert!(check(&[("query", " ; ")]).is_err());
        assert!(check(&[("table", "t"), ("rows", "-1")])
            .unwrap_err()
            .contains("positive"));
    }

    #[test]
    fn servers_fill_defaults() {
        let s = Server::from_options(&opts(&[("url", "http://h:8123/")])).unwrap();
        assert_eq!(s.url, "http://h:8123");
        assert_eq!(s.database, "default");
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert_eq!(s.timezone, "UTC");
        assert!(Server::from_options(&[]).unwrap_err().contains("\"url\""));
    }

    #[test]
    fn scan_sql_quotes_and_projects() {
        let t = Source::Table("db.events".into());
        assert_eq!(
            t.scan_sql(&["id", "we`ird"]),
            "SELECT `id`, `we\\`ird` FROM `db`.`events`\nFORMAT TabSeparatedWithNamesAndTypes"
        );
        assert!(t.scan_sql(&[]).starts_with("SELECT 1 FROM `db`.`events`"));
        let q = Source::from_options(&opts(&[("query", "SELECT count() AS n FROM t;")])).unwrap();
        assert_eq!(
            q.scan_sql(&["n"]),
            "SELECT count() AS n FROM t\nFORMAT TabSeparatedWithNamesAndTypes"
        );
        assert_eq!(q.from_item(), "(SELECT count() AS n FROM t)");
        assert_eq!(quote_literal("it's \\"), "'it\\'s \\\\'");
    }

    #[test]
    fn a_body_that_is_not_clickhouses_is_not_echoed() {
        let moved = remote_error(302, None, "<html>moved to http://10.0.0.9/admin</html>");
        assert_eq!(moved.code, None);
        assert!(moved.message.contains("302") && moved.message.contains("redirect"));
        assert!(!moved.to_string().contains("10.0.0.9"), "{moved}");
        let proxy = remote_error(502, None, "Bad gateway: upstream 10.0.0.9:8123 refused");
        assert!(proxy.message.contains("502") && !proxy.message.contains("10.0.0.9"));
        let real = remote_error(
            403,
            Some("516"),
            "Code: 516. DB::Exception: x: Authentication failed",
        );
        assert_eq!(real.code, Some(516));
    }

    #[test]
    fn errors_of_old_and_new_servers() {
        let old = remote_error(
            404,
            None,
            "Code: 60, e.displayText() = DB::Exception: Table default.nope doesn't exist., \
             e.what() = DB::Exception\n",
        );
        assert_eq!(old.code, Some(60));
        assert_eq!(old.message, "Table default.nope doesn't exist.");
        let new = remote_error(
            404,
            Some("60"),
            "Code: 60. DB::Exception: Table default.nope does not exist. (UNKNOWN_TABLE) \
             (version 23.8.2.7 (official build))\n",
        );
        assert_eq!(new.code, Some(60));
        assert_eq!(
            new.message,
            "Table default.nope does not exist. (UNKNOWN_TABLE)"
        );
        assert_eq!(
            new.to_string(),
            "ClickHouse error 60: Table default.nope does not exist. (UNKNOWN_TABLE)"
        );
        let bare = remote_error(502, None, "");
        assert_eq!(bare.code, None);
        assert!(bare.message.contains("502"));
        let long = remote_error(
            500,
            None,
            &format!("Code: 1. DB::Exception: {}", "é".repeat(2000)),
        );
        assert!(long.message.len() <= MAX_MESSAGE + 3);
        assert!(
            exception_in_stream(b"Code: 241, e.displayText() = DB::Exception: Memory limit")
                .is_some()
        );
        assert!(exception_in_stream(b"42\tabc").is_none());
    }
}
