//! A one-line text chart of a series, for psql users.

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Renders `values` (oldest first) as at most `width` bars, each the maximum of its bucket,
/// scaled from zero to the series maximum. `None` (no data, e.g. a lost slot) is a space.
pub fn sparkline(values: &[Option<f64>], width: usize) -> String {
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let buckets = width.min(values.len());
    let peaks: Vec<Option<f64>> = (0..buckets)
        .map(|b| {
            let (from, to) = (b * values.len() / buckets, (b + 1) * values.len() / buckets);
            values[from..to].iter().flatten().copied().reduce(f64::max)
        })
        .collect();
    let top = peaks.iter().flatten().copied().fold(0.0_f64, f64::max);
    peaks
        .iter()
        .map(|p| match p {
            None => ' ',
            Some(_) if top <= 0.0 => BARS[0],
            Some(v) => BARS[((v.max(0.0) / top) * 7.0).round() as usize],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_from_zero_to_the_maximum() {
        let s = sparkline(&[Some(0.0), Some(50.0), Some(100.0)], 10);
        assert_eq!(s, "▁▅█");
    }

    #[test]
    fn buckets_keep_the_peak() {
        let values: Vec<_> = (0..100)
            .map(|i| Some(if i == 42 { 10.0 } else { 1.0 }))
            .collect();
        let s = sparkline(&values, 10);
        assert_eq!(s.chars().count(), 10);
        assert_eq!(s.chars().nth(4), Some('█'));
        assert_eq!(s.chars().filter(|&c| c == '█').count(), 1);
    }

    #[test]
    fn gaps_and_flat_series() {
        assert_eq!(sparkline(&[Some(5.0), None, Some(5.0)], 3), "█ █");
        assert_eq!(sparkline(&[Some(0.0), Some(0.0)], 5), "▁▁");
        assert_eq!(sparkline(&[None, None], 5), "  ");
        assert_eq!(sparkline(&[], 5), "");
        assert_eq!(sparkline(&[Some(1.0)], 0), "");
    }

    #[test]
    fn negative_values_count_as_zero() {
        assert_eq!(sparkline(&[Some(-5.0), Some(10.0)], 2), "▁█");
    }
}
