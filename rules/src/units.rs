//! Human-readable sizes and durations for summaries and remediation texts.

/// Bytes in binary units with at most one decimal, e.g. `1.5 GB` (PostgreSQL's `GB` is 1024^3).
/// The figure is rounded before the unit is chosen, so it never reads `1024 kB` or `2.0 kB`:
/// a value that rounds up to 1024 of a unit is shown as 1 of the next.
pub fn pretty_bytes(bytes: i64) -> String {
    const UNITS: [&str; 6] = ["bytes", "kB", "MB", "GB", "TB", "PB"];
    let sign = if bytes < 0 { "-" } else { "" };
    let exact = bytes.unsigned_abs();
    if exact < 1024 {
        return format!("{sign}{exact} bytes");
    }
    // As shown: whole numbers from 100 on, one decimal below.
    let shown = |v: f64| {
        if v >= 100.0 {
            v.round()
        } else {
            (v * 10.0).round() / 10.0
        }
    };
    let mut value = exact as f64;
    let mut unit = 0;
    while unit < UNITS.len() - 1 && shown(value) >= 1024.0 {
        value /= 1024.0;
        unit += 1;
    }
    let value = shown(value);
    if value.fract() == 0.0 {
        format!("{sign}{value:.0} {}", UNITS[unit])
    } else {
        format!("{sign}{value:.1} {}", UNITS[unit])
    }
}

/// A duration in seconds as its two largest units, e.g. `2h 5min`, `37min`, `12s`.
pub fn pretty_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "unknown".to_string();
    }
    let total = secs.round() as u64;
    let (d, h, m, s) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}min"),
        (0, 0, _) => format!("{m}min {s}s"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h {m}min"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d {h}h"),
    }
}

/// Unix seconds as an ISO 8601 UTC time to the millisecond ("2026-12-07T19:55:01.123Z").
pub fn utc_text(unix_secs: f64) -> String {
    let millis = (unix_secs * 1000.0).round() as i64;
    let (secs, ms) = (millis.div_euclid(1000), millis.rem_euclid(1000));
    let (days, second_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = crate::delivery::retry::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(pretty_bytes(0), "0 bytes");
        assert_eq!(pretty_bytes(1023), "1023 bytes");
        assert_eq!(pretty_bytes(1024), "1 kB");
        assert_eq!(pretty_bytes(16 * 1024 * 1024), "16 MB");
        assert_eq!(pretty_bytes(3 * 1024 * 1024 * 1024 / 2), "1.5 GB");
        assert_eq!(pretty_bytes(-2048), "-2 kB");
        assert_eq!(pretty_bytes(i64::MAX), "8192 PB");
    }

    #[test]
    fn rounding_carries_into_the_next_unit_instead_of_showing_1024() {
        assert_eq!(pretty_bytes(1_048_575), "1 MB");
        assert_eq!(pretty_bytes(2047), "2 kB");
        assert_eq!(pretty_bytes(1023 * 1024 + 500), "1023 kB");
        assert_eq!(pretty_bytes((1 << 30) - 1), "1 GB");
        assert_eq!(pretty_bytes(-1_048_575), "-1 MB");
        assert_eq!(pretty_bytes(102_348), "99.9 kB");
        assert_eq!(
            pretty_bytes(102_349),
            "100 kB",
            "99.95 kB rounds to a whole 100"
        );
        assert_eq!(pretty_bytes(1076), "1.1 kB");
        assert_eq!(pretty_bytes(i64::MIN), "-8192 PB");
    }

    #[test]
    fn durations_show_two_units() {
        assert_eq!(pretty_duration(0.0), "0s");
        assert_eq!(pretty_duration(59.4), "59s");
        assert_eq!(pretty_duration(60.0), "1min");
        assert_eq!(pretty_duration(61.0), "1min 1s");
        assert_eq!(pretty_duration(3600.0), "1h");
        assert_eq!(pretty_duration(3600.0 * 2.0 + 300.0), "2h 5min");
        assert_eq!(pretty_duration(86_400.0 * 3.0), "3d");
        assert_eq!(pretty_duration(86_400.0 + 7200.0), "1d 2h");
        assert_eq!(pretty_duration(-1.0), "unknown");
        assert_eq!(pretty_duration(f64::NAN), "unknown");
    }

    #[test]
    fn utc_text_is_iso_8601_to_the_millisecond() {
        assert_eq!(super::utc_text(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::utc_text(1_796_672_101.123_4),
            "2026-12-07T19:35:01.123Z"
        );
    }
}
