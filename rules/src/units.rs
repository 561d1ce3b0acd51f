//! Human-readable sizes and durations for summaries and remediation texts.

/// Bytes in binary units with at most one decimal, e.g. `1.5 GB` (PostgreSQL's `GB` is 1024^3).
pub fn pretty_bytes(bytes: i64) -> String {
    const UNITS: [&str; 6] = ["bytes", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes.unsigned_abs() as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let sign = if bytes < 0 { "-" } else { "" };
    if unit == 0 {
        format!("{sign}{} bytes", bytes.unsigned_abs())
    } else if value.fract() < 0.05 || value >= 100.0 {
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
}
