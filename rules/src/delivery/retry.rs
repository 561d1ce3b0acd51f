//! What an HTTP answer means for a delivery, and how long to wait before the next try.
//!
//! Only answers that say "later" are retried (timeouts, rate limits, server errors); a
//! request the sink refuses outright will be refused again, so it is given up at once
//! rather than retried until `cdc_health.delivery_max_age`.

/// How one HTTP answer settles a delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Delivered,
    /// Try again; `after` is the server's Retry-After in seconds, if it sent one we understood.
    Retry {
        after: Option<f64>,
        reason: String,
    },
    Permanent {
        reason: String,
    },
}

/// 2xx Delivered; 408, 425, 429 and 5xx Retry; everything else (1xx, 3xx — redirects are not
/// followed —, other 4xx) Permanent.
///
/// `reason` reads like "HTTP 503 Service Unavailable" (the code alone when the phrase is not
/// known). `retry_after` is the raw header value, see [`parse_retry_after`]; it only counts
/// on a Retry.
pub fn classify(status: u16, retry_after: Option<&str>, now_unix: f64) -> Verdict {
    let reason = match reason_phrase(status) {
        Some(phrase) => format!("HTTP {status} {phrase}"),
        None => format!("HTTP {status}"),
    };
    match status {
        200..=299 => Verdict::Delivered,
        408 | 425 | 429 | 500..=599 => Verdict::Retry {
            after: retry_after.and_then(|v| parse_retry_after(v, now_unix)),
            reason,
        },
        _ => Verdict::Permanent { reason },
    }
}

/// A Retry-After value in seconds from `now_unix`: delta-seconds ("120") or an IMF-fixdate
/// ("Wed, 21 Oct 2015 07:28:00 GMT"; a date in the past gives 0). `None` for anything else,
/// including the obsolete RFC 850 and asctime date forms, negative or fractional numbers.
pub fn parse_retry_after(value: &str, now_unix: f64) -> Option<f64> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Every digit string parses as f64 (huge ones become large, not an error).
        return value.parse::<f64>().ok();
    }
    let date = parse_imf_fixdate(value)?;
    let wait = date - now_unix;
    // NaN (a NaN `now`) is not a wait we understood.
    if wait.is_nan() {
        None
    } else {
        Some(wait.max(0.0))
    }
}

pub const MIN_BACKOFF_SECS: f64 = 1.0;
pub const MAX_BACKOFF_SECS: f64 = 300.0;
/// The longest Retry-After honoured (a server asking for a day is capped here).
pub const MAX_RETRY_AFTER_SECS: f64 = 3600.0;

/// Seconds to wait before attempt number `attempts + 1`, after `attempts` >= 1 failed ones:
/// MIN * 2^(attempts-1), capped at MAX, times a jitter factor 0.8 + 0.4 * jitter, never below
/// MIN; then at least Retry-After (capped at MAX_RETRY_AFTER_SECS) when given.
///
/// The jitter keeps sinks that failed together from being retried in lockstep; it is applied
/// after the cap, so waits at the cap spread over 240-360 s. `attempts` 0 counts as 1; a
/// jitter outside [0, 1] is clamped and NaN counts as 0.5; a negative or NaN Retry-After is
/// ignored.
pub fn backoff_secs(attempts: u32, retry_after: Option<f64>, jitter: f64) -> f64 {
    // 2^9 already passes the cap: a larger exponent changes nothing and cannot overflow.
    let doublings = attempts.saturating_sub(1).min(16) as i32;
    let base = (MIN_BACKOFF_SECS * 2f64.powi(doublings)).min(MAX_BACKOFF_SECS);
    let jitter = if jitter.is_nan() {
        0.5
    } else {
        jitter.clamp(0.0, 1.0)
    };
    let wait = (base * (0.8 + 0.4 * jitter)).max(MIN_BACKOFF_SECS);
    match retry_after {
        Some(after) if after > 0.0 => wait.max(after.min(MAX_RETRY_AFTER_SECS)),
        _ => wait,
    }
}

/// Whether a transition created at `created_unix` is past `max_age_secs`
/// (cdc_health.delivery_max_age) at `now_unix`: then it is given up. Exactly at the age it
/// is still tried; NaN anywhere means not expired (never give up on bad arithmetic).
pub fn expired(created_unix: f64, now_unix: f64, max_age_secs: f64) -> bool {
    now_unix - created_unix > max_age_secs
}

/// RFC 9110 reason phrases for the codes a sink plausibly answers with.
fn reason_phrase(status: u16) -> Option<&'static str> {
    Some(match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        511 => "Network Authentication Required",
        _ => return None,
    })
}

/// "Sun, 06 Nov 1994 08:49:37 GMT" as Unix seconds. The day name must be one of the seven
/// but is not checked against the date: a server that gets it wrong still means the date.
fn parse_imf_fixdate(text: &str) -> Option<f64> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = text.as_bytes();
    // Fixed width: "Sun, 06 Nov 1994 08:49:37 GMT" is 29 bytes.
    if b.len() != 29 || !text.is_ascii() {
        return None;
    }
    let literal_ok = &b[3..5] == b", "
        && b[7] == b' '
        && b[11] == b' '
        && b[16] == b' '
        && b[19] == b':'
        && b[22] == b':'
        && &b[25..] == b" GMT";
    if !literal_ok || !DAYS.contains(&&text[0..3]) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = &text[range];
        if digits.bytes().all(|d| d.is_ascii_digit()) {
            digits.parse().ok()
        } else {
            None
        }
    };
    let day = number(5..7)?;
    let month = MONTHS.iter().position(|m| *m == &text[8..11])? as i64 + 1;
    let year = number(12..16)?;
    let (hour, minute, second) = (number(17..19)?, number(20..22)?, number(23..25)?);
    // 60 is a leap second; it is read as the first second of the next minute.
    if day < 1 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3600 + minute * 60 + second) as f64)
}

pub(crate) fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub(crate) fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1-12), by counting whole
/// years from a March-based year so the leap day falls at the end.
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month 1-12, day 1-31).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wed, 21 Oct 2015 07:28:00 GMT.
    const OCT_2015: f64 = 1_445_412_480.0;

    fn reason(v: &Verdict) -> &str {
        match v {
            Verdict::Delivered => "",
            Verdict::Retry { reason, .. } | Verdict::Permanent { reason } => reason,
        }
    }

    #[test]
    fn success_codes_deliver() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(classify(status, None, 0.0), Verdict::Delivered, "{status}");
        }
        // A Retry-After on a success means nothing.
        assert_eq!(classify(200, Some("120"), 0.0), Verdict::Delivered);
    }

    #[test]
    fn transient_codes_retry_with_the_reason_phrase() {
        let cases = [
            (408, "HTTP 408 Request Timeout"),
            (425, "HTTP 425 Too Early"),
            (429, "HTTP 429 Too Many Requests"),
            (500, "HTTP 500 Internal Server Error"),
            (502, "HTTP 502 Bad Gateway"),
            (503, "HTTP 503 Service Unavailable"),
            (504, "HTTP 504 Gateway Timeout"),
            (599, "HTTP 599"),
        ];
        for (status, text) in cases {
            let verdict = classify(status, None, 0.0);
            assert_eq!(
                verdict,
                Verdict::Retry {
                    after: None,
                    reason: text.to_string()
                }
            );
        }
    }

    #[test]
    fn everything_else_is_permanent() {
        let cases = [
            (100, "HTTP 100 Continue"),
            (301, "HTTP 301 Moved Permanently"),
            (302, "HTTP 302 Found"),
            (304, "HTTP 304 Not Modified"),
            (308, "HTTP 308 Permanent Redirect"),
            (400, "HTTP 400 Bad Request"),
            (401, "HTTP 401 Unauthorized"),
            (403, "HTTP 403 Forbidden"),
            (404, "HTTP 404 Not Found"),
            (410, "HTTP 410 Gone"),
            (413, "HTTP 413 Content Too Large"),
            (422, "HTTP 422 Unprocessable Content"),
            (499, "HTTP 499"),
            (0, "HTTP 0"),
            (600, "HTTP 600"),
            (999, "HTTP 999"),
        ];
        for (status, text) in cases {
            let verdict = classify(status, Some("5"), 0.0);
            assert_eq!(
                verdict,
                Verdict::Permanent {
                    reason: text.to_string()
                },
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_is_carried_on_retries() {
        let verdict = classify(429, Some("120"), 0.0);
        assert_eq!(
            verdict,
            Verdict::Retry {
                after: Some(120.0),
                reason: "HTTP 429 Too Many Requests".to_string()
            }
        );
        let verdict = classify(503, Some("Wed, 21 Oct 2015 07:28:00 GMT"), OCT_2015 - 30.0);
        assert_eq!(reason(&verdict), "HTTP 503 Service Unavailable");
        assert!(matches!(verdict, Verdict::Retry { after: Some(a), .. } if a == 30.0));
        let verdict = classify(503, Some("soon"), 0.0);
        assert!(matches!(verdict, Verdict::Retry { after: None, .. }));
    }

    #[test]
    fn retry_after_delta_seconds() {
        assert_eq!(parse_retry_after("120", 1e9), Some(120.0));
        assert_eq!(parse_retry_after("0", 1e9), Some(0.0));
        assert_eq!(parse_retry_after(" 7 ", 1e9), Some(7.0));
        assert_eq!(parse_retry_after("007", 1e9), Some(7.0));
        assert_eq!(
            parse_retry_after("99999999999999999999999", 0.0),
            Some(1e23)
        );
        for bad in [
            "", " ", "-5", "+5", "1.5", "1e3", "12s", "0x10", "1 2", "١٢",
        ] {
            assert_eq!(parse_retry_after(bad, 0.0), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_http_dates() {
        let date = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(parse_retry_after(date, OCT_2015 - 90.5), Some(90.5));
        assert_eq!(parse_retry_after(date, OCT_2015), Some(0.0));
        assert_eq!(
            parse_retry_after(date, OCT_2015 + 3600.0),
            Some(0.0),
            "past"
        );
        assert_eq!(parse_retry_after(date, f64::NAN), None);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),
            Some(784_111_777.0)
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", -10.0),
            Some(10.0)
        );
        // A leap day and a leap second.
        assert_eq!(
            parse_retry_after("Thu, 29 Feb 2024 00:00:00 GMT", 0.0),
            Some(1_709_164_800.0)
        );
        assert_eq!(
            parse_retry_after("Sat, 31 Dec 2016 23:59:60 GMT", 0.0),
            Some(1_483_228_800.0)
        );
        // The day name is not checked against the date.
        assert_eq!(
            parse_retry_after("Mon, 21 Oct 2015 07:28:00 GMT", OCT_2015),
            Some(0.0)
        );
    }

    #[test]
    fn malformed_http_dates_are_not_understood() {
        for bad in [
            "Wed, 21 Oct 2015 07:28:00 UTC",
            "Wed, 21 Oct 2015 07:28:00",
            "Wed 21 Oct 2015 07:28:00 GMT",
            "Wed, 21 oct 2015 07:28:00 GMT",
            "Xyz, 21 Oct 2015 07:28:00 GMT",
            "Wed, 32 Oct 2015 07:28:00 GMT",
            "Wed, 00 Oct 2015 07:28:00 GMT",
            "Wed, 29 Feb 2015 07:28:00 GMT",
            "Wed, 29 Feb 1900 07:28:00 GMT",
            "Wed, 31 Apr 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 24:00:00 GMT",
            "Wed, 21 Oct 2015 07:60:00 GMT",
            "Wed, 21 Oct 2015 07:28:61 GMT",
            "Wed, 21 Oct 2015 7:28:00 GMT",
            "Wed, 21 Oct 2015 07:2a:00 GMT",
            "Wed, 21 Oct +015 07:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
            "2015-10-21T07:28:00Z",
            "Wed, 21 Oct 2015 07:28:00 GMTé",
        ] {
            assert_eq!(parse_retry_after(bad, 0.0), None, "{bad:?}");
        }
        // Leap years: 2000 is one, 1900 is not (checked above).
        assert!(parse_retry_after("Tue, 29 Feb 2000 00:00:00 GMT", 0.0).is_some());
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn backoff_doubles_from_the_minimum_to_the_cap() {
        // Jitter 0.5 is the neutral factor 1.0.
        let waits: Vec<f64> = (1..=11).map(|n| backoff_secs(n, None, 0.5)).collect();
        assert_eq!(
            waits,
            [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0]
        );
        assert_eq!(backoff_secs(u32::MAX, None, 0.5), 300.0);
        assert_eq!(backoff_secs(0, None, 0.5), 1.0, "0 counts as 1");
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        for attempts in [1, 2, 5, 9, 10, 40] {
            let base = backoff_secs(attempts, None, 0.5);
            let low = backoff_secs(attempts, None, 0.0);
            let high = backoff_secs(attempts, None, 0.999_999);
            assert!((low - (base * 0.8).max(MIN_BACKOFF_SECS)).abs() < 1e-9);
            assert!(high < base * 1.2 + 1e-9 && high > base * 1.19);
            for step in 0..=100 {
                let w = backoff_secs(attempts, None, f64::from(step) / 100.0);
                assert!(w >= low && w <= base * 1.2 + 1e-9, "{attempts} {step}");
                assert!(w >= MIN_BACKOFF_SECS);
            }
        }
        // The first retry never goes below the minimum, even with the lowest jitter.
        assert_eq!(backoff_secs(1, None, 0.0), MIN_BACKOFF_SECS);
        assert_eq!(backoff_secs(2, None, 0.0), 1.6);
        // At the cap the spread is 240..360 s.
        assert_eq!(backoff_secs(20, None, 0.0), 240.0);
        assert!((backoff_secs(20, None, 1.0) - 360.0).abs() < 1e-9);
    }

    #[test]
    fn out_of_range_jitter_is_clamped() {
        assert_eq!(backoff_secs(5, None, -3.0), backoff_secs(5, None, 0.0));
        assert_eq!(backoff_secs(5, None, 7.0), backoff_secs(5, None, 1.0));
        assert_eq!(
            backoff_secs(5, None, f64::INFINITY),
            backoff_secs(5, None, 1.0)
        );
        assert_eq!(
            backoff_secs(5, None, f64::NEG_INFINITY),
            backoff_secs(5, None, 0.0)
        );
        assert_eq!(backoff_secs(5, None, f64::NAN), 16.0);
    }

    #[test]
    fn retry_after_raises_the_wait_up_to_its_own_cap() {
        assert_eq!(backoff_secs(1, Some(120.0), 0.5), 120.0);
        assert_eq!(backoff_secs(1, Some(0.0), 0.5), 1.0);
        assert_eq!(backoff_secs(1, Some(0.2), 0.0), 1.0, "never below MIN");
        // A shorter Retry-After does not shorten the backoff.
        assert_eq!(backoff_secs(6, Some(3.0), 0.5), 32.0);
        // Past the backoff cap but within the Retry-After cap.
        assert_eq!(backoff_secs(3, Some(1800.0), 0.5), 1800.0);
        assert_eq!(backoff_secs(3, Some(86_400.0), 0.5), MAX_RETRY_AFTER_SECS);
        assert_eq!(backoff_secs(3, Some(f64::INFINITY), 0.5), 3600.0);
        assert_eq!(backoff_secs(3, Some(-50.0), 0.5), 4.0);
        assert_eq!(backoff_secs(3, Some(f64::NAN), 0.5), 4.0);
    }

    #[test]
    fn expiry_is_strictly_past_the_age() {
        assert!(!expired(1000.0, 1000.0, 3600.0));
        assert!(!expired(1000.0, 4600.0, 3600.0), "exactly at the age");
        assert!(expired(1000.0, 4600.5, 3600.0));
        assert!(!expired(1000.0, 900.0, 0.0), "clock went back");
        assert!(expired(1000.0, 1000.1, 0.0));
        assert!(!expired(1000.0, 1e12, f64::INFINITY));
        assert!(!expired(f64::NAN, 1000.0, 10.0));
        assert!(!expired(0.0, 1000.0, f64::NAN));
    }
}
